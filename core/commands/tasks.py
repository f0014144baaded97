"""``lingoforge tasks`` and ``lingoforge plugins``: what is installed and what failed to load."""

from __future__ import annotations

import dataclasses
import json

import click
from rich.console import Console
from rich.table import Table

from ..plugins import get_registry


@click.command()
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def tasks(as_json: bool) -> None:
    """List the available tasks (plugins, and YAML files on $LINGOFORGE_TASK_PATH)."""
    registry = get_registry()
    found = registry.tasks
    if as_json:
        click.echo(json.dumps([
            {"name": t.name, "version": t.version, "description": t.description, "languages": list(t.languages),
             "fields": list(t.fields), "primary_metric": t.primary_metric, "has_generator": t.has_generator,
             "source": t.source} for t in sorted(found.values(), key=lambda t: t.name)
        ], ensure_ascii=False, indent=2))
    else:
        table = Table(title="lingoforge tasks")
        for col in ("task", "languages", "labels", "generator", "plugin", "description"):
            table.add_column(col)
        for t in sorted(found.values(), key=lambda t: t.name):
            table.add_row(t.name, " ".join(t.languages), ", ".join(t.fields), "yes" if t.has_generator else "no",
                          t.source, t.description)
        Console().print(table)
    _print_errors(registry.errors)


@click.command()
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def plugins(as_json: bool) -> None:
    """List plugins with version, source, hooks, tasks and load errors."""
    registry = get_registry()
    registry.tasks  # registering tasks fills in each plugin's task list and errors
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
