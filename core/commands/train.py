"""``lingoforge train`` and ``lingoforge plan``: thin click wrappers over ``lingoforge.train`` and ``lingoforge.plan``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click


def old_out_spelling(token: str) -> str:
    """Read ``--out`` as ``--output``: train and export took ``-o/--out`` while the other commands take
    ``-o/--output``; the old spelling keeps working but help shows one. Click's token normaliser sees option
    names without their dashes (and choice values, none of which is ``out``)."""
    return "output" if token == "out" else token


@click.command("train", context_settings={"token_normalize_func": old_out_spelling})
@click.argument("task_name", metavar="TASK")
@click.option(
    "--data",
    "data",
    required=True,
    type=click.Path(exists=True),
    help="Canonical JSONL file, or a folder with train.jsonl + val.jsonl.",
)
@click.option(
    "--base", required=True, help="Preset (qwen2.5-7b-instruct, smollm2-135m, ...), hub id, local folder or .gguf file."
)
@click.option("-o", "--output", "out", required=True, type=click.Path(), help="Run folder (runs/NAME).")
@click.option(
    "--config",
    "config_file",
    type=click.Path(exists=True, dir_okay=False),
    help="YAML file of settings; flags override it.",
)
@click.option("--rank", type=int, help="LoRA rank [32].")
@click.option("--alpha", type=int, help="LoRA alpha [64].")
@click.option("--lr", type=float, help="Learning rate [1.5e-4].")
@click.option("--epochs", type=float, help="Epochs [4].")
@click.option("--batch-size", type=int, help="Micro-batch per device [4].")
@click.option("--grad-accum", type=int, help="Gradient accumulation steps [1].")
@click.option("--max-len", type=int, help="Max sequence length [--tokens, else the run's data/tokens.json, else 2048].")
@click.option(
    "--tokens",
    "tokens_file",
    type=click.Path(exists=True, dir_okay=False),
    help="Token report (`lingoforge tokens FILE --json`) whose max_seq_length sets --max-len.",
)
@click.option(
    "--val",
    "val_fraction",
    type=click.FloatRange(0, 1, max_open=True),
    help="Fraction of each language held out for validation when --data is one file [0.1]; 0: no validation.",
)
@click.option(
    "--4bit/--no-4bit", "load_in_4bit", default=None, help="4-bit NF4 base weights [on for CUDA, off on CPU]."
)
@click.option("--seed", type=int, help="Random seed [0].")
@click.option("--max-steps", type=int, help="Stop after N optimizer steps.")
@click.option("--save-steps", type=int, help="Checkpoint every N steps [50].")
@click.option("--eval-steps", type=int, help="Validate every N steps [= save steps].")
@click.option("--resume", is_flag=True, help="Continue from the last complete checkpoint.")
@click.option("--force", is_flag=True, help="Train even when the memory plan says it does not fit.")
@click.option("--quiet", is_flag=True, help="No progress bar.")
def train(
    task_name: str,
    data: str,
    base: str,
    out: str,
    config_file: str | None,
    tokens_file: str | None,
    resume: bool,
    force: bool,
    quiet: bool,
    **flags: Any,
) -> None:
    """Train one LoRA adapter for TASK on mixed-language DATA into the run folder -o."""
    from ..plugins import get_task
    from ..runfolder import RunFolder
    from ..train import load_config_file, make_config, train_from_files

    if flags["val_fraction"] is not None and Path(data).is_dir():
        raise click.UsageError(
            f"--val holds out part of one data file; {data} is a split folder with its own val.jsonl "
            "(split again with `lingoforge data split --val`, or pass the JSONL file)"
        )
    # A resumed run starts from the settings it recorded, so `--resume` alone continues the same recipe.
    recorded = (RunFolder(Path(out)).read().get("train") or {}).get("config") if resume else None
    config = make_config(recorded, load_config_file(config_file) if config_file else None, flags)
    result = train_from_files(
        get_task(task_name), data, base, out, config, resume=resume, force=force, quiet=quiet, tokens=tokens_file
    )
    per_lang = ", ".join(f"{k} {v:.4f}" for k, v in result.eval_loss_by_language.items())
    click.echo(
        f"adapter: {result.adapter_dir}  (best validation loss {result.best_eval_loss:.4f}; {per_lang})"
        if result.best_eval_loss is not None
        else f"adapter: {result.adapter_dir}"
    )
    click.echo(
        f"{result.steps} steps in {result.seconds:.0f} s, {result.tokens_per_second:,.0f} tokens/s, "
        f"micro-batch {result.batch_size} x accumulation {result.grad_accum}; details in {result.run_json}"
    )


@click.command("plan")
@click.option("--base", required=True, help="Preset name or local model folder.")
@click.option("--rank", type=int, default=32, show_default=True)
@click.option("--max-len", type=int, default=2048, show_default=True)
@click.option("--batch-size", type=int, default=4, show_default=True, help="Micro-batch.")
@click.option("--4bit/--no-4bit", "load_in_4bit", default=True, show_default=True)
@click.option("--gpu-mem", type=float, help="GPU memory in GB to check the fit against.")
@click.option("--examples", type=int, help="Training examples (for the time estimate).")
@click.option("--mean-tokens", type=float, help="Mean tokens per example (default: max length).")
@click.option("--epochs", type=float, default=4.0, show_default=True)
@click.option("--tflops", type=float, help="Peak bf16 TFLOP/s of the GPU (default: from the visible GPU's name).")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def plan(
    base: str,
    rank: int,
    max_len: int,
    batch_size: int,
    load_in_4bit: bool,
    gpu_mem: float | None,
    examples: int | None,
    mean_tokens: float | None,
    epochs: float,
    tflops: float | None,
    as_json: bool,
) -> None:
    """Estimate peak GPU memory and time per epoch for QLoRA training of a base model."""
    from ..plan import format_plan
    from ..plan import plan as make_plan

    result = make_plan(
        base,
        rank=rank,
        max_len=max_len,
        batch_size=batch_size,
        load_in_4bit=load_in_4bit,
        gpu_mem=gpu_mem,
        examples=examples,
        mean_tokens=mean_tokens,
        epochs=epochs,
        tflops=tflops,
    )
    click.echo(json.dumps(result, indent=2) if as_json else format_plan(result))
    if gpu_mem is not None and not result["fits"]:
        raise click.exceptions.Exit(1)
