"""``lingoforge plan``: a thin click wrapper over ``lingoforge.plan``."""

from __future__ import annotations

import json
from dataclasses import replace
from typing import Any

import click

from ..config import DEFAULT_MAX_LEN, TrainConfig, on_device
from .options import config_options

# Without flags, the estimate is for what a GPU run without a token report trains with.
GPU_RUN = replace(TrainConfig(), max_len=DEFAULT_MAX_LEN, load_in_4bit=on_device(None, cuda=True))


@click.command("plan")
@click.option("--base", required=True, help="Preset name or local model folder.")
@config_options("rank", "max_len", "batch_size", "load_in_4bit", defaults=GPU_RUN)
@click.option("--gpu-mem", type=float, help="GPU memory in GB to check the fit against.")
@click.option("--examples", type=int, help="Training examples (for the time estimate).")
@click.option("--mean-tokens", type=float, help="Mean tokens per example (default: max length).")
@config_options("epochs", defaults=GPU_RUN)
@click.option("--tflops", type=float, help="Peak bf16 TFLOP/s of the GPU (default: from the visible GPU's name).")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def plan(
    base: str, gpu_mem: float | None, examples: int | None, mean_tokens: float | None, tflops: float | None,
    as_json: bool, **settings: Any,
) -> None:
    """Estimate peak GPU memory and time per epoch for QLoRA training of a base model."""
    from ..plan import format_plan
    from ..plan import plan as make_plan

    result = make_plan(base, gpu_mem=gpu_mem, examples=examples, mean_tokens=mean_tokens, tflops=tflops, **settings)
    click.echo(json.dumps(result, indent=2) if as_json else format_plan(result))
    if gpu_mem is not None and not result["fits"]:
        raise click.exceptions.Exit(1)
