"""``lingoforge plan``: a thin click wrapper over ``lingoforge.plan``."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Any

import click
from click.core import ParameterSource

from ..config import DEFAULT_MAX_LEN, POSITIVE_FLOAT, FiniteRange, TrainConfig, on_device
from .options import config_options

# Without flags, the estimate is for what a GPU run without a token report trains with.
GPU_RUN = replace(TrainConfig(), max_len=DEFAULT_MAX_LEN, load_in_4bit=on_device(None, cuda=True))


@click.command("plan")
@click.option("--base", help="Preset name or local model folder.")
@click.option(
    "--from",
    "from_run",
    type=click.Path(path_type=Path),
    help="A trained run folder (runs/NAME): re-plan its base, settings and data, beside the speed it measured; "
    "flags given override its settings.",
)
@config_options("rank", "max_len", "batch_size", "load_in_4bit", defaults=GPU_RUN)
@click.option("--gpu-mem", type=POSITIVE_FLOAT, help="GPU memory in GB to check the fit against.")
@click.option("--examples", type=click.IntRange(1), help="Training examples (for the time estimate).")
@click.option("--mean-tokens", type=FiniteRange(1), help="Mean tokens per example (default: max length).")
@click.option(
    "--prefix-tokens",
    type=FiniteRange(0),
    default=0.0,
    show_default=True,
    help="Tokens every example starts with (chat template, system prompt, instruction), computed once per "
    "micro-batch; 0 makes the time an upper bound.",
)
@config_options("epochs", "select", "patience", defaults=GPU_RUN)
@click.option(
    "--device",
    help="Time the run on this device: a GPU name (H100, A100, 4090, ...) or cpu [default: the visible GPU].",
)
@click.option("--tflops", type=POSITIVE_FLOAT, help="Peak bf16 TFLOP/s of a GPU the name does not tell.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_context
def plan(
    ctx: click.Context,
    base: str | None,
    from_run: Path | None,
    gpu_mem: float | None,
    examples: int | None,
    mean_tokens: float | None,
    prefix_tokens: float,
    device: str | None,
    tflops: float | None,
    as_json: bool,
    **settings: Any,
) -> None:
    """Estimate peak GPU memory and time per step and epoch for QLoRA training of a base model, and say how a run
    with validation will stop, or re-plan a trained run (--from runs/NAME) beside the step time and tokens/s it
    measured."""
    from ..plan import format_plan, format_run_plan, plan_run
    from ..plan import plan as make_plan
    from ..runfolder import RunFolder

    if from_run is not None:
        if base is not None:
            raise click.UsageError("--from re-plans the run's own base model: pass --from or --base, not both")
        given = [
            f"--{name.replace('_', '-')}"
            for name in ("examples", "mean_tokens", "prefix_tokens")
            if ctx.get_parameter_source(name) is ParameterSource.COMMANDLINE
        ]
        if given:
            raise click.UsageError(f"--from takes the data figures from the run: drop {', '.join(given)}")
        typed = {k: v for k, v in settings.items() if ctx.get_parameter_source(k) is ParameterSource.COMMANDLINE}
        result = plan_run(RunFolder(from_run), device=device, tflops=tflops, gpu_mem=gpu_mem, **typed)
        text = format_run_plan(result)
    elif base is None:
        raise click.UsageError("say what to plan: --base MODEL, or --from RUN for a trained run folder")
    else:
        cuda = (device or "").lower() != "cpu"
        if not cuda and ctx.get_parameter_source("load_in_4bit") is ParameterSource.DEFAULT:
            settings["load_in_4bit"] = None  # the device rule: a CPU run trains unquantized unless --4bit says so
        result = make_plan(
            base,
            gpu_mem=gpu_mem,
            examples=examples,
            mean_tokens=mean_tokens,
            prefix_tokens=prefix_tokens,
            device=device if cuda else None,
            tflops=tflops,
            cuda=cuda,
            weight_bytes=2 if cuda else 4,
            **settings,
        )
        text = format_plan(result)
    click.echo(json.dumps(result, indent=2) if as_json else text)
    if gpu_mem is not None and not result["fits"]:
        raise click.exceptions.Exit(1)
