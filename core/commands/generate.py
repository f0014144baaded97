"""``lingoforge generate TASK -n N --seed S [--languages ...] -o FILE.jsonl``."""

from __future__ import annotations

import json
from pathlib import Path

import click
from rich.console import Console
from rich.table import Table

from ..generate import generate_file
from ..plugins import get_task
from .options import languages_option


@click.command()
@click.argument("task_name", metavar="TASK")
@click.option("-n", "n", type=click.IntRange(1), default=400, show_default=True, help="Number of examples.")
@click.option("--seed", type=int, default=0, show_default=True)
@languages_option
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path), required=True)
@click.option("--json", "as_json", is_flag=True, help="Print the statistics as JSON.")
def generate(task_name: str, n: int, seed: int, languages: tuple[str, ...] | None, output: Path,
             as_json: bool) -> None:
    """Write N synthetic examples of TASK as canonical JSONL, balanced across languages and labels."""
    task = get_task(task_name)
    langs = list(languages) if languages else None
    stats = generate_file(task, n, seed, langs, output)
    if as_json:
        summary = {"output": str(output), "n": n, "seed": seed, "languages": stats}
        click.echo(json.dumps(summary, ensure_ascii=False, indent=2))
        return
    table = Table(title=f"{n} {task.name} examples → {output}")
    for col in ("language", "count", "distinct bigrams", "mean chars", "labels"):
        table.add_column(col)
    for lang, s in stats.items():
        labels = ", ".join(f"{k}:{v}" for k, v in s["labels"].items())
        table.add_row(lang, str(s["count"]), f"{s['distinct_bigram_ratio']:.2f}", f"{s['mean_chars']:.0f}", labels)
    Console().print(table)
