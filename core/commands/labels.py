"""``lingoforge labels``: label counts per language, rare and near-duplicate labels, and a task file from them."""

from __future__ import annotations

import json
import re
from pathlib import Path

import click
from rich.console import Console
from rich.table import Table

from ..data.mapping import ColumnMap
from .options import file_reading, language_option, map_option, old_out_spelling


@click.command("labels", context_settings={"token_normalize_func": old_out_spelling})
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
@map_option
@language_option
@click.option("--field", default="category", show_default=True, help="The label field to look at.")
@click.option("--min-examples", type=click.IntRange(1), default=10, show_default=True,
              help="Flag labels with fewer examples than this in some language.")
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path),
              help="Write a task YAML that extends --extends with the labels found (near-duplicates merged).")
@click.option("--extends", "template", default="support_tickets", show_default=True,
              help="The template task the written YAML extends.")
@click.option("--name", help="Task name in the written YAML (default: from the -o file name).")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
def labels(file: Path, mapping: ColumnMap | None, language: str | None, field: str, min_examples: int,
           output: Path | None, template: str, name: str | None, as_json: bool) -> None:
    """Count FILE's labels per language; flag rare and near-duplicate labels; -o writes an `extends:` task."""
    from ..errors import DataError
    from ..fsutil import write_text
    from ..labels import extends_yaml, label_report
    from ..task import TASK_NAME_PATTERN

    report = label_report(file, field, file_reading(mapping, language), min_examples)
    if output is not None:
        task_name = name or re.sub(r"[^a-z0-9_]+", "_", output.stem.lower()).strip("_")
        if not TASK_NAME_PATTERN.match(task_name):
            given = f"--name {task_name!r}" if name else f"the name {task_name!r} taken from {output.name}"
            raise DataError(f"{given} is not a task name (a lowercase letter, then lowercase letters, digits or _, "
                            "2 to 64 in all); pass --name")
        if output.exists() and output.resolve() == Path(template).resolve():
            raise DataError(f"-o {output} is the task file --extends names; choose another -o file (nothing was "
                            "written)")
        text = extends_yaml(report, task_name, template)
        _check_task_text(output, text)
        write_text(output, text)
        report["written"] = str(output)
    if as_json:
        click.echo(json.dumps(report, ensure_ascii=False, indent=2))
        return
    console = Console()
    languages = report["languages"]
    table = Table(title=f"{field} in {file} ({report['examples']} examples)")
    for column in ("label", "total", *languages):
        table.add_column(column, justify="left" if column == "label" else "right")
    for label, by_language in report["labels"].items():
        style = "yellow" if label in report["rare"] else None
        cells = [str(by_language.get(lang, 0)) for lang in languages]
        table.add_row(repr(label), str(sum(by_language.values())), *cells, style=style)
    console.print(table)
    if report["rare"]:
        console.print(f"[yellow]{len(report['rare'])} label(s) with fewer than {min_examples} examples in some "
                      f"language:[/yellow] {', '.join(map(repr, report['rare']))}")
    for group in report["near_duplicates"]:
        console.print(f"near-duplicates: {', '.join(map(repr, group['labels']))} — keep {group['keep']!r}")
    if report["missing"]:
        console.print(f"{report['missing']} record(s) without {field!r}, e.g. lines "
                      f"{', '.join(map(str, report['missing_lines']))}")
    if output is not None:
        console.print(f"wrote {output}: check it with `lingoforge tasks --task {output} --show`")


def _check_task_text(output: Path, text: str) -> None:
    """Load the task file about to be written, from a temporary file beside ``output`` (a relative ``extends:``
    path resolves the same), so a file that would not load (an unknown template, a field that is not a label
    field) is refused instead of written."""
    import os
    import tempfile

    from ..errors import DataError, TaskDefinitionError
    from ..plugins import get_registry
    from ..yaml_task import load_yaml_task

    output.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{output.stem}.", suffix=".yaml", dir=output.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
        load_yaml_task(tmp, known=lambda: get_registry().tasks)
    except TaskDefinitionError as exc:
        raise DataError(f"the task file {output} would not load: {str(exc).replace(tmp, str(output))}; nothing was "
                        "written") from None
    finally:
        os.unlink(tmp)
