"""Progress reporting for long data work, decoupled from rich so library calls stay silent.

Library functions take an optional ``Stages``: ``stages(description, total)`` opens one stage and
returns the function that advances it. Commands pass ``rich_stages()``, which draws bars on stderr (so
``--json`` output on stdout stays clean) and draws nothing when stderr is not a terminal.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import Protocol

Advance = Callable[[int], None]


class Stages(Protocol):
    def __call__(self, description: str, total: int | None) -> Advance: ...


def silent(description: str, total: int | None) -> Advance:
    """The default: no output."""
    return lambda n: None


@contextlib.contextmanager
def rich_stages() -> Iterator[Stages]:
    """Rich progress bars on stderr, removed when the block ends."""
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    console = Console(stderr=True)
    if not console.is_terminal:
        yield silent
        return
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with Progress(*columns, console=console, transient=True) as progress:

        def stage(description: str, total: int | None) -> Advance:
            task_id = progress.add_task(description, total=total)
            return lambda n: progress.advance(task_id, n)

        yield stage
