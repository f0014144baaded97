"""The hooks a lingoforge plugin may implement. Keep this set tiny: behaviour lives on objects."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import pluggy

if TYPE_CHECKING:
    import click

    from .task import Task

PROJECT = "lingoforge"
hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)


@hookspec
def register_tasks(register: Callable[[Task], None]) -> None:
    """Called once when tasks are first needed; call ``register(task)`` for every Task the plugin provides.

    Each task is validated on registration (name, schema, templates, duplicates); an invalid one is
    reported under the plugin's name and left out, the plugin's other tasks still register.
    """


@hookspec
def register_commands(cli: click.Group) -> None:
    """Called while the CLI is built; add click commands or groups to ``cli`` with ``cli.add_command``.

    Import heavy libraries inside the command functions, not at module level: every CLI call pays for
    module-level imports.
    """
