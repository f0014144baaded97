"""``lingoforge tasks`` and ``lingoforge plugins``: what is installed and what failed to load."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping
from typing import Any

import click
from rich.console import Console
from rich.table import Table

from ..plugins import get_registry, get_task
from ..task import Task
from ..yaml_task import YamlTask, enum_node


@click.command()
@click.option("--task", "task_name", metavar="TASK", help="Only this task: a registered name or a YAML file.")
@click.option("--show", is_flag=True,
              help="Print what the model will be asked: fields and labels, languages, JSON output schema, prompts.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def tasks(task_name: str | None, show: bool, as_json: bool) -> None:
    """List the available tasks (plugins, and YAML files on $LINGOFORGE_TASK_PATH).

    ``--task my.yaml --show`` prints a task as resolved, with everything an ``extends:`` template contributed,
    so a user sees the labels, schema and prompts the model will be trained on before spending GPU time.
    """
    registry = get_registry()
    found = [get_task(task_name)] if task_name else sorted(registry.tasks.values(), key=lambda t: t.name)
    if as_json:
        click.echo(json.dumps([{**_summary(t), **(_details(t) if show else {})} for t in found],
                              ensure_ascii=False, indent=2))
    elif show:
        click.echo("\n\n".join(_render(t) for t in found))
    else:
        table = Table(title="lingoforge tasks")
        for col in ("task", "languages", "labels", "generator", "plugin", "description"):
            table.add_column(col)
        for t in found:
            table.add_row(t.name, " ".join(t.languages), ", ".join(t.fields), "yes" if t.has_generator else "no",
                          t.source, t.description)
        Console().print(table)
    if not task_name:
        _print_errors(registry.errors)


def _summary(t: Task) -> dict[str, Any]:
    return {"name": t.name, "version": t.version, "description": t.description, "languages": list(t.languages),
            "fields": list(t.fields), "primary_metric": t.primary_metric, "has_generator": t.has_generator,
            "source": t.source}


def _details(t: Task) -> dict[str, Any]:
    """What ``--show`` adds: the resolved output fields, the schema and both prompts."""
    props = t.output_schema.get("properties") or {}
    return {
        "extends": t.extends if isinstance(t, YamlTask) else "",
        "generation_off": t.generation_off if isinstance(t, YamlTask) else "",
        "output_fields": [{"name": name, "type": _type(node), "labels": _labels(node),
                           "description": node.get("description", "")} for name, node in props.items()],
        "text_fields": list(t.text_fields),
        "output_schema": t.schema,
        "system_prompt": t.system_prompt,
        "instruction": t.instruction,
    }


def _render(t: Task) -> str:
    d = _details(t)
    generator = f"off: {d['generation_off']}" if d["generation_off"] else ("yes" if t.has_generator else "no")
    width = max(len(f["name"]) for f in d["output_fields"]) if d["output_fields"] else 0
    fields = [f"  {f['name']:<{width}}  {f['type']}" + (f": {', '.join(f['labels'])}" if f["labels"] else "")
              for f in d["output_fields"]]
    head = [f"task {t.name} {t.version} ({t.source})", *([f"extends: {d['extends']}"] if d["extends"] else []),
            f"languages: {' '.join(t.languages)}", f"generator: {generator}",
            f"primary metric: {t.primary_metric}", "fields:", *fields]
    return "\n".join([*head, "output schema:", json.dumps(d["output_schema"], ensure_ascii=False, indent=2),
                      "system prompt:", t.system_prompt, "instruction:", t.instruction])


def _type(node: Mapping[str, Any]) -> str:
    """A field's JSON schema type in a few words: ``enum``, ``string | null``, ``list of enum``."""
    if "anyOf" in node:
        return " | ".join(_type(alt) for alt in node["anyOf"])
    if "enum" in node:
        return "enum"
    if node.get("type") == "array":
        return f"list of {_type(node.get('items') or {})}"
    kind = node.get("type", "any")
    return " | ".join(kind) if isinstance(kind, list) else str(kind)


def _labels(node: Mapping[str, Any]) -> list[str]:
    labels = enum_node(dict(node))
    return [str(v) for v in labels["enum"] if v is not None] if labels else []


@click.command()
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def plugins(as_json: bool) -> None:
    """List plugins with version, source, hooks, tasks and load errors."""
    registry = get_registry()
    _ = registry.tasks  # registering tasks fills in each plugin's task list and errors
    infos = sorted(registry.infos.values(), key=lambda i: i.name)
    if as_json:
        click.echo(json.dumps([dataclasses.asdict(i) for i in infos], ensure_ascii=False, indent=2))
        return
    table = Table(title="lingoforge plugins")
    for col in ("plugin", "version", "source", "hooks", "tasks", "errors"):
        table.add_column(col, overflow="fold")
    for i in infos:
        table.add_row(i.name, i.version, i.source, ", ".join(i.hooks), ", ".join(i.tasks),
                      "\n".join(e.splitlines()[0] for e in i.errors) or "-")
    Console().print(table)


def _print_errors(errors: list) -> None:
    for err in errors:
        click.secho(f"warning: {err}", fg="yellow", err=True)
