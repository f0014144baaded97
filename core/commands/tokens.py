"""``lingoforge tokens``: token counts of the real training sequences per language, and the length to train with."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click


def _untyped_task() -> Any:
    """A task with no system prompt, no instruction and any JSON object as output, for counting a
    file's own fields when no ``--task`` is given (the real task adds its system prompt and instruction)."""
    from ..task import Task

    return Task(
        name="untyped",
        version="0",
        description="records counted as they are",
        languages=("en",),
        system_prompt="",
        instruction="",
        output_schema={"type": "object"},
        scorer=lambda pred, gold: {},
        primary_metric="none",
    )


@click.command("tokens")
@click.argument("file", type=click.Path(path_type=Path))
@click.option("--tokenizer", "tokenizer", required=True, help="Hub id, local folder or .gguf file.")
@click.option("--compare", default=None, help="A second tokenizer: prints its token count ratio per language.")
@click.option(
    "--task", "task_name", default=None, help="Task name or YAML path (adds its system prompt and instruction)."
)
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
@click.option(
    "--percentile",
    type=float,
    default=None,
    help="Size max_seq_length from this percentile (e.g. 99) instead of the max.",
)
@click.option(
    "--max-len",
    "max_len",
    type=click.IntRange(16),
    default=None,
    help="Count examples truncated at this length (default: the recommendation).",
)
def tokens(
    file: Path,
    tokenizer: str,
    compare: str | None,
    task_name: str | None,
    as_json: bool,
    percentile: float | None,
    max_len: int | None,
) -> None:
    """Count the tokens of FILE's training sequences per language and recommend max_seq_length."""
    from ..data.io import read_records
    from ..errors import DataError
    from ..plugins import get_task
    from ..progress import rich_stages
    from ..tokens import token_report

    task = get_task(task_name) if task_name else _untyped_task()
    with rich_stages() as stages:
        result = read_records(file, task, stages(f"reading {file.name}", None))
        if not result.records:
            raise DataError(f"{file}: no usable records; run `lingoforge data check` on it")
        report = token_report(
            [r.example for r in result.records],
            task,
            tokenizer,
            compare=compare,
            percentile=percentile,
            max_len=max_len,
            stages=stages,
        )
    report["skipped_lines"] = len(result.findings)
    if as_json:
        click.echo(json.dumps(report, ensure_ascii=False, indent=2))
        return
    _print(report, task_name is None)


def _print(report: dict[str, Any], untyped: bool) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console()
    table = Table(title=f"tokens per training sequence ({report['tokenizer']}, {report['examples']} examples)")
    columns = [
        "language",
        "examples",
        "mean",
        "p50",
        "p95",
        "max",
        "tokens/char",
        "tokens/word",
        f"> {report['max_len']}",
    ]
    compare = report.get("compare")
    if compare:
        columns.append(f"× {Path(compare['tokenizer']).name}")
    for col in columns:
        table.add_column(col, justify="left" if col == "language" else "right")
    for lang, s in report["languages"].items():
        row = [
            lang,
            str(s["examples"]),
            f"{s['mean']:.0f}",
            str(s["p50"]),
            str(s["p95"]),
            str(s["max"]),
            f"{s['tokens_per_char']:.2f}",
            "-" if s["tokens_per_word"] is None else f"{s['tokens_per_word']:.2f}",
            str(report["truncated"][lang]),
        ]
        if compare:
            row.append(f"{compare['languages'][lang]['input_ratio']:.2f}")
        table.add_row(*row)
    console.print(table)
    context = f", capped at the context of {report['context_length']}" if report["context_length"] else ""
    console.print(
        f"max_seq_length = [bold]{report['max_seq_length']}[/] "
        f"({report['basis']} of {report['most_verbose_language']!r} + 20 %, "
        f"multiple of 64{context}); Ollama num_ctx = {report['num_ctx']}"
    )
    if compare:
        console.print(
            f"ratio = tokens with {compare['tokenizer']} / tokens with {report['tokenizer']}, on inputs; "
            f"overall {compare['input_ratio']:.2f}"
        )
    if report.get("warning"):
        console.print(f"[yellow]{report['warning']}[/]")
    if report["skipped_lines"]:
        console.print(f"[yellow]{report['skipped_lines']} unusable lines skipped; see `lingoforge data check`[/]")
    if untyped:
        console.print("[yellow]no --task: the task's system prompt and instruction are not counted[/]")
