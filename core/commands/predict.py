"""``lingoforge predict``: batch prediction to JSONL, resumable."""

from __future__ import annotations

import json
from pathlib import Path

import click
from rich.console import Console

from ..backends import Servers, resolve_model
from ..data.mapping import ColumnMap
from .options import echo_servers, file_reading, language_option, map_option, model_options, task_for


@click.command()
@click.argument("model")
@click.argument("input_path", metavar="INPUT")
@model_options
@click.option(
    "-o",
    "--output",
    type=click.Path(dir_okay=False, path_type=Path),
    required=True,
    help="Output JSONL; rerunning skips ids already in it.",
)
@click.option(
    "--concurrency",
    type=click.IntRange(1),
    default=8,
    show_default=True,
    help="Batch size for hf (served models: --parallel).",
)
@map_option
@language_option
def predict(
    model: str,
    input_path: str,
    task_name: str | None,
    backend: str | None,
    constrained: bool,
    servers: Servers,
    max_new_tokens: int,
    as_json: bool,
    output: Path,
    concurrency: int,
    mapping: ColumnMap | None,
    language: str | None,
) -> None:
    """Predict INPUT (JSONL, CSV or - for stdin) into a JSONL file, resumably.

    Each line: the input's id (its `id` field or line number), the parsed `output` and `valid`; an invalid
    answer is retried once with constrained decoding.
    """
    from ..predict import predict as run_predict

    spec = resolve_model(model)
    summary = run_predict(
        spec,
        task_for(task_name, spec),
        input_path,
        output,
        backend=backend,
        constrained=constrained,
        concurrency=concurrency,
        servers=servers,
        max_new_tokens=max_new_tokens,
        console=Console(stderr=True),
        mapping=file_reading(mapping, language),
    )
    if as_json:
        click.echo(json.dumps(summary, indent=2))
        echo_servers(summary.get("servers", []), summary["seconds"], shares=False)
        return
    rate = f", {summary['items_per_s']:.2f} items/s" if summary["items_per_s"] else ""
    click.echo(
        f"{summary['written']} written ({summary['valid']} valid, {summary['retried']} retried constrained, "
        f"{summary['invalid']} invalid), {summary['skipped']} already done{rate} → {summary['out']}"
    )
    echo_servers(summary.get("servers", []), summary["seconds"])
