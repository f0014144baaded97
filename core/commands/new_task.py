"""``lingoforge new-task``: scaffold an installable task plugin."""

from __future__ import annotations

from pathlib import Path

import click

from ..scaffold import scaffold


def _csv(value: str) -> list[str]:
    return [v.strip() for v in value.split(",") if v.strip()]


@click.command("new-task")
@click.argument("name")
@click.option("--labels", default="positive,negative", show_default=True, help="Comma-separated label set.")
@click.option("--languages", default="en,de,fr,es", show_default=True, help="Comma-separated ISO 639-1 codes.")
@click.option("--dir", "directory", type=click.Path(file_okay=False, path_type=Path), default=Path("."),
              show_default=True, help="Where to create the package folder.")
def new_task(name: str, labels: str, languages: str, directory: Path) -> None:
    """Scaffold an installable plugin package for task NAME (pip install -e it, then it is in `lingoforge tasks`)."""
    root = scaffold(name, _csv(labels), _csv(languages), directory)
    click.echo(f"created {root}\nnext: pip install -e {root} && lingoforge tasks && pytest {root / 'tests'}")
