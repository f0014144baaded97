"""``lingoforge train``: a thin click wrapper over ``lingoforge.train``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from ..data.mapping import ColumnMap
from .options import config_options, fields_option, file_reading, language_option, map_option, old_out_spelling


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
@config_options("rank", "alpha", "lr", "epochs", "batch_size", "grad_accum", "max_len")
@click.option(
    "--tokens",
    "tokens_file",
    type=click.Path(exists=True, dir_okay=False),
    help="Token report (`lingoforge tokens FILE --json`) whose max_seq_length sets --max-len.",
)
@config_options(
    "val_fraction", "load_in_4bit", "gradient_checkpointing", "balance", "seed", "max_steps", "save_steps",
    "eval_steps",
)
@config_options("select", "patience")
@map_option
@language_option
@fields_option
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
    mapping: ColumnMap | None,
    language: str | None,
    fields: tuple[str, ...] | None,
    resume: bool,
    force: bool,
    quiet: bool,
    **flags: Any,
) -> None:
    """Train one LoRA adapter for TASK on mixed-language DATA into the run folder -o."""
    from ..config import load_config_file, make_config
    from ..plugins import get_task
    from ..runfolder import RunFolder
    from ..train import train_from_files

    if flags["val_fraction"] is not None and Path(data).is_dir():
        raise click.UsageError(
            f"--val holds out part of one data file; {data} is a split folder with its own val.jsonl "
            "(split again with `lingoforge data split --val`, or pass the JSONL file)"
        )
    # A resumed run starts from the settings it recorded, so `--resume` alone continues the same recipe.
    recorded = RunFolder(Path(out)).training().config if resume else None
    config = make_config(recorded, load_config_file(config_file) if config_file else None, flags)
    result = train_from_files(
        get_task(task_name), data, base, out, config, resume=resume, force=force, quiet=quiet, tokens=tokens_file,
        mapping=file_reading(mapping, language), fields=fields,
    )
    per_lang = ", ".join(f"{k} {v:.4f}" for k, v in result.eval_loss_by_language.items())
    click.echo(
        f"adapter: {result.adapter_dir}  (validation loss {result.best_eval_loss:.4f}; {per_lang})"
        if result.best_eval_loss is not None
        else f"adapter: {result.adapter_dir}"
    )
    for said in (result.selection.get("text"), result.stopped.get("text")):
        if said:
            click.echo(said)
    click.echo(
        f"{result.steps} steps in {result.seconds:.0f} s, {result.tokens_per_second:,.0f} tokens/s, "
        f"micro-batch {result.batch_size} x accumulation {result.grad_accum}; details in {result.run_json}"
    )
