"""``lingoforge labels``: label counts per language, rare and near-duplicate labels, and a task file from them."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click
from rich.console import Console
from rich.table import Table

from ..data.mapping import ColumnMap
from .options import file_reading, language_option, map_option, old_out_spelling

if TYPE_CHECKING:
    from ..yaml_task import YamlTask


@click.command("labels", context_settings={"token_normalize_func": old_out_spelling})
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
@map_option
@language_option
@click.option("--field", default="category", show_default=True, help="The label field to look at.")
@click.option("--min-examples", type=click.IntRange(1), default=10, show_default=True,
              help="Flag labels with fewer examples than this in some language.")
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path),
              help="Write a task YAML that extends --extends with the labels found (near-duplicates merged) for "
                   "--field and every other label field of the template the file carries, the language enum "
                   "following the file's languages, and the template's prompts rewritten for those labels.")
@click.option("--extends", "template", default="support_tickets", show_default=True,
              help="The template task the written YAML extends.")
@click.option("--name", help="Task name in the written YAML (default: from the -o file name).")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
def labels(file: Path, mapping: ColumnMap | None, language: str | None, field: str, min_examples: int,
           output: Path | None, template: str, name: str | None, as_json: bool) -> None:
    """Count FILE's labels per language; flag rare and near-duplicate labels; -o writes an `extends:` task."""
    from ..errors import DataError
    from ..fsutil import write_text
    from ..labels import enum_fields, extends_yaml, label_report, propose
    from ..task import TASK_NAME_PATTERN

    reading = file_reading(mapping, language)
    report = label_report(file, field, reading, min_examples)
    reports = [report]
    if output is not None:
        task_name = name or re.sub(r"[^a-z0-9_]+", "_", output.stem.lower()).strip("_")
        if not TASK_NAME_PATTERN.match(task_name):
            given = f"--name {task_name!r}" if name else f"the name {task_name!r} taken from {output.name}"
            raise DataError(f"{given} is not a task name (a lowercase letter, then lowercase letters, digits or _, "
                            "2 to 64 in all); pass --name")
        if output.exists() and output.resolve() == Path(template).resolve():
            raise DataError(f"-o {output} is the task file --extends names; choose another -o file (nothing was "
                            "written)")
        base = _check_task_text(output, f"name: {task_name}\nextends: {json.dumps(template)}\n")  # the template
        reports += _other_fields(file, reading, field, enum_fields(base), min_examples)
        text = extends_yaml(reports, task_name, template, base)
        _check_task_text(output, text)
        write_text(output, text)
        report["written"] = str(output)
        proposal = propose(reports, base)
        report["proposed"] = {"fields": proposal["fields"], "dropped": proposal["dropped"]}
        report["fields"] = {r["field"]: r for r in reports[1:]}
    if as_json:
        click.echo(json.dumps(report, ensure_ascii=False, indent=2))
        return
    console = Console()
    for one in reports:
        _print_report(console, file, one, min_examples)
    if output is not None:
        for f, proposed in report["proposed"]["fields"].items():
            lacks = (f"; not in the data, left out: {', '.join(map(repr, proposed['data_lacks']))}"
                     if proposed["data_lacks"] else "")
            new = f"; not in {template}: {', '.join(map(repr, proposed['template_lacks']))}" \
                if proposed["template_lacks"] else ""
            console.print(f"{f}: {', '.join(map(repr, proposed['labels']))}{lacks}{new}", highlight=False)
        for note in report["proposed"]["dropped"]:
            console.print(f"dropped from the {note}", highlight=False)
        console.print(f"wrote {output} (its `instruction:` and `system_prompt:` are {template}'s with these labels: "
                      f"edit them to describe your task): check it with `lingoforge tasks --task {output} --show`")


def _other_fields(file: Path, reading: ColumnMap | None, field: str, fields: list[str],
                  min_examples: int) -> list[dict[str, Any]]:
    """The label reports of the template's other one-label fields that the data carries (mapped by --map, or
    under their own names); ``language`` follows the data's languages instead."""
    from ..errors import DataError
    from ..labels import label_report

    mapped = [target for target, _ in reading.fields] if reading else []
    out = []
    for other in (f for f in fields if f not in (field, "language")):
        try:
            out.append(label_report(file, other, reading, min_examples))
        except DataError:
            if other in mapped:  # mapped, yet no record has it: say so rather than leave it out
                raise
    return out


def _print_report(console: Console, file: Path, report: dict[str, Any], min_examples: int) -> None:
    field, languages = report["field"], report["languages"]
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


def _check_task_text(output: Path, text: str) -> YamlTask:
    """Load the task file about to be written, from a temporary file beside ``output`` (a relative ``extends:``
    path resolves the same), so a file that would not load (an unknown template, a field that is not a label
    field) is refused instead of written. Returns the task it loads."""
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
        return load_yaml_task(tmp, known=lambda: get_registry().tasks)
    except TaskDefinitionError as exc:
        raise DataError(f"the task file {output} would not load: {str(exc).replace(tmp, str(output))}; nothing was "
                        "written") from None
    finally:
        os.unlink(tmp)
