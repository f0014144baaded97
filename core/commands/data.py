"""``lingoforge data check`` and ``lingoforge data split``: what is wrong with the data, and a leak-free split."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click

from ..config import TrainConfig
from ..data.mapping import ColumnMap
from .options import config_options, fields_option, file_reading, language_option, map_option, old_out_spelling

SPLIT_NAMES = ("train", "val", "test")
SHOWN_FINDINGS = 40


@click.group("data")
def data() -> None:
    """Check and split training data."""


def _siblings(path: Path) -> list[Path]:
    """The other split files beside ``train/val/test.jsonl``, checked for leaks by default."""
    if path.stem not in SPLIT_NAMES:
        return []
    return [p for name in SPLIT_NAMES if name != path.stem and (p := path.with_name(f"{name}{path.suffix}")).is_file()]


@data.command("check")
@click.argument("file", type=click.Path(path_type=Path))
@click.option("--task", "task_name", required=True, help="Task name or path to a task YAML file.")
@click.option("--json", "as_json", is_flag=True, help="Print the full report as JSON.")
@click.option(
    "--fix",
    "fix_out",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Write a cleaned canonical JSONL here (atomically; the input is never touched).",
)
@click.option(
    "--against",
    multiple=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="Another split to look for leaked duplicates in (repeatable; default: sibling train/val/test.jsonl).",
)
@map_option
@language_option
@fields_option
@click.pass_context
def check(
    ctx: click.Context,
    file: Path,
    task_name: str,
    as_json: bool,
    fix_out: Path | None,
    against: tuple[Path, ...],
    mapping: ColumnMap | None,
    language: str | None,
    fields: tuple[str, ...] | None,
) -> None:
    """Check FILE (JSONL, CSV, chat messages or key: value outputs) against a task.

    Exit code 0 when the file is usable for training, 1 when it has errors (even when --fix wrote a
    clean copy, so scripts notice the input needed fixing). --fix writes nothing when no record is usable."""
    from ..data.checks import check_file, cleaned_examples
    from ..data.io import data_task, same_file, write_examples
    from ..errors import DataError
    from ..plugins import get_task
    from ..progress import rich_stages

    mapping = file_reading(mapping, language)
    task = data_task(file, get_task(task_name), mapping=mapping, fields=fields)
    if fix_out is not None and same_file(file, fix_out):
        raise DataError(f"--fix {fix_out}: that is the input file; write the cleaned data to a new file")
    with rich_stages() as stages:
        report = check_file(file, task, list(against) or _siblings(file), stages, mapping)
    fixed: dict[str, Any] | None = None
    examples = cleaned_examples(report) if fix_out is not None else []
    if fix_out is not None and examples:
        written = write_examples(fix_out, examples)
        fixed = {
            "path": str(fix_out),
            "records": written,
            "dropped": len(report.records) - written,
            "unusable_lines": report.unusable,
            "repaired": len(report.fixes),
        }
    if as_json:
        out = report.to_dict()
        if fixed:
            out["fix"] = fixed
        click.echo(json.dumps(out, ensure_ascii=False, indent=2))
    else:
        _print_check(report, fixed)
    if fix_out is not None and not examples:
        raise DataError(f"--fix {fix_out}: {file} has no usable record, nothing written; fix the errors listed above")
    if not report.usable:
        ctx.exit(1)


def _print_check(report: Any, fixed: dict[str, Any] | None) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console()
    status = "[green]usable[/]" if report.usable else "[red]not usable[/]"
    converted = ", ".join(f"{n} {k}" for k, n in report.sources.items())
    console.print(
        f"[bold]{report.file}[/] ({report.format}, task {report.task}): {len(report.records)} records "
        f"({converted}); {report.errors} errors, {report.warnings} warnings: {status}"
    )
    primary = next(iter(report.labels), None)
    table = Table(title="examples per language" + (f" and {primary}" if primary else ""))
    table.add_column("language")
    table.add_column("examples", justify="right")
    table.add_column("add", justify="right")
    if primary:
        table.add_column(primary)
    for lang, n in report.languages.items():
        row = [lang, str(n), str(report.suggestions.get(lang, "")) or ""]
        if primary:
            row.append(", ".join(f"{label} {count}" for label, count in report.labels[primary].get(lang, {}).items()))
        table.add_row(*row)
    console.print(table)
    det = report.detection
    console.print(
        f"language detection ({det['library']}): {det['mismatches']} mismatches, {det['unsure']} unsure, "
        f"{det['undeclared']} undeclared"
        + (f"; cannot verify {', '.join(det['unverifiable_languages'])}" if det["unverifiable_languages"] else "")
    )
    dup = report.duplicates
    console.print(
        f"duplicates: {dup['exact']} exact, {dup['near']} near "
        f"(in {dup['near_groups']} groups, Jaccard ≥ {dup['threshold']})"
        + (
            f"; across splits: {dup['cross_split_exact']} exact, {dup['cross_split_near']} near"
            if report.against
            else ""
        )
    )
    if report.findings:
        shown = Table(title=f"issues ({', '.join(f'{code} {n}' for code, n in report.counts_by_code().items())})")
        for col in ("line", "", "field", "issue"):
            shown.add_column(col)
        for f in report.findings[:SHOWN_FINDINGS]:
            shown.add_row(
                str(f.line or "-"), "[red]error[/]" if f.severity == "error" else "[yellow]warn[/]", f.field, f.message
            )
        console.print(shown)
        if len(report.findings) > SHOWN_FINDINGS:
            console.print(f"... and {len(report.findings) - SHOWN_FINDINGS} more (--json lists all)")
    if fixed:
        console.print(
            f"wrote {fixed['path']}: {fixed['records']} records ({fixed['dropped']} dropped, "
            f"{fixed['unusable_lines']} unusable lines left out, {fixed['repaired']} repaired)"
        )


@data.command("split", context_settings={"token_normalize_func": old_out_spelling})
@click.argument("file", type=click.Path(path_type=Path))
@click.option("--task", "task_name", required=True, help="Task name or path to a task YAML file.")
@click.option(
    "-o",
    "--output",
    "out_dir",
    required=True,
    type=click.Path(file_okay=False, path_type=Path),
    help="Folder for the splits.",
)
@click.option("--val", default=TrainConfig.val_fraction, show_default=True, type=float, help="Fraction for validation.")
@click.option("--test", default=0.1, show_default=True, type=float, help="Fraction for test.")
@config_options("seed", defaults=TrainConfig())
@map_option
@language_option
@fields_option
@click.option("--json", "as_json", is_flag=True, help="Print data_report.json.")
def split(
    file: Path, task_name: str, out_dir: Path, val: float, test: float, seed: int, mapping: ColumnMap | None,
    language: str | None, fields: tuple[str, ...] | None, as_json: bool,
) -> None:
    """Split FILE into train/val/test, stratified by language and primary label, near duplicates kept together."""
    from ..data.io import data_task
    from ..data.split import split_dataset
    from ..plugins import get_task
    from ..progress import rich_stages

    mapping = file_reading(mapping, language)
    task = data_task(file, get_task(task_name), mapping=mapping, fields=fields)
    with rich_stages() as stages:
        report = split_dataset(file, task, out_dir, val=val, test=test, seed=seed, stages=stages, mapping=mapping)
    if as_json:
        click.echo(json.dumps(report, ensure_ascii=False, indent=2))
        return
    from rich.console import Console
    from rich.table import Table

    languages = sorted({lang for counts in report["languages"].values() for lang in counts})
    table = Table(title=f"{file} → {out_dir} (seed {seed}): examples per split, and the share got vs asked")
    table.add_column("language")
    for name in SPLIT_NAMES:
        table.add_column(name, justify="right")
    table.add_row("asked", *(f"{report['fractions'][name]:.0%}" for name in SPLIT_NAMES), end_section=True)
    for lang in [*languages, "all"]:
        cells = []
        for name in SPLIT_NAMES:
            count = report["files"][name]["records"] if lang == "all" else report["languages"][name].get(lang, 0)
            cells.append(f"{count} ({report['delivered'][name][lang]:.0%})")
        table.add_row(lang, *cells)
    console = Console()
    console.print(table)
    console.print(
        f"{report['near_duplicate_groups']} near-duplicate groups kept within one split; "
        f"{report['dropped_duplicates']} exact duplicates written once; report: {out_dir / 'data_report.json'}"
    )
    missing = {k: v for k, v in report["missing_languages"].items() if v}
    if missing:
        console.print(f"[yellow]languages missing from a split (too few examples): {missing}[/]")
