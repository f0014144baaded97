"""The one progress display: rich bars on stderr, so ``--json`` output on stdout stays clean.

``bar(...)`` is the bar every long job draws (eval, predict, training, data work, export, deploy), with its
extra columns. Library functions that report progress take an optional ``Stages``: ``stages(description,
total)`` opens one stage and returns the function that advances it; commands pass ``rich_stages()``, library
callers get silence by default. The libraries' own bars (transformers' "Loading weights" and "Writing model
shards") are turned off by :func:`quiet_library_bars` wherever a model is loaded or saved.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any, Protocol, TypeVar

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.text import Text

Advance = Callable[[int], None]
T = TypeVar("T")


class Stages(Protocol):
    def __call__(self, description: str, total: int | None) -> Advance: ...


class ItemsPerSecond(ProgressColumn):
    """Mean items/s since the bar started (rich's speed column needs several updates and shows bytes)."""

    def render(self, task: Any) -> Text:
        speed = task.completed / task.elapsed if task.elapsed and task.completed else None
        return Text(f"{speed:.2f} items/s" if speed else "-- items/s", style="progress.data.speed")


def bar(*columns: ProgressColumn, console: Console | None = None, transient: bool = False) -> Progress:
    """A bar with the description, the bar itself and done/total, then ``columns``; on stderr by default."""
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        *columns,
        console=console or Console(stderr=True),
        transient=transient,
    )


@contextlib.contextmanager
def items_bar(
    description: str, total: int, servers: Sequence[str] = (), console: Console | None = None
) -> Iterator[Callable[[str], None]]:
    """The bar of per-item work (eval, predict): items/s and time remaining, plus, when several ``servers`` share
    the work, a row per server with its own items/s, so a slow or failed one shows. Yields ``advance(server)``."""
    with bar(ItemsPerSecond(), TimeRemainingColumn(), console=console) as progress:
        main = progress.add_task(description, total=total)
        rows = {host: progress.add_task(f"  {host}", total=total) for host in servers} if len(servers) > 1 else {}

        def advance(server: str = "") -> None:
            progress.advance(main)
            if server in rows:
                progress.advance(rows[server])

        yield advance


def track(items: Iterable[T], description: str, total: int | None = None, enabled: bool = True) -> Iterator[T]:
    """``items`` with a bar while they are consumed (nothing drawn when ``enabled`` is false)."""
    if not enabled:
        yield from items
        return
    with bar(TimeElapsedColumn()) as progress:
        yield from progress.track(items, total=total, description=description)


def silent(description: str, total: int | None) -> Advance:
    """The default: no output."""
    return lambda n: None


@contextlib.contextmanager
def rich_stages() -> Iterator[Stages]:
    """Bars on stderr, removed when the block ends; nothing when stderr is not a terminal."""
    console = Console(stderr=True)
    if not console.is_terminal:
        yield silent
        return
    with bar(TimeElapsedColumn(), console=console, transient=True) as progress:

        def stage(description: str, total: int | None) -> Advance:
            task_id = progress.add_task(description, total=total)
            return lambda n: progress.advance(task_id, n)

        yield stage


def quiet_library_bars() -> None:
    """Turn off transformers' own tqdm bars ("Loading weights", "Writing model shards"): our commands say what they
    do with their own progress, and a tqdm bar in a CI log is a line per refresh. The hub's download bars are left
    alone (a first download takes minutes and they are all that shows it moving; ``HF_HUB_DISABLE_PROGRESS_BARS=1``
    turns them off). Idempotent and cheap: callers run it before each load or save."""
    from transformers.utils import logging

    set_hook = getattr(logging, "set_tqdm_hook", None)
    if set_hook is None:  # transformers before the hook: its switch turns the hub's bars off too
        logging.disable_progress_bar()
    else:
        set_hook(_no_bar)
    # Dequantizing a GGUF (a preset's first use) draws tqdm directly, past the hook: its module's tqdm is replaced
    # by one drawn disabled.
    with contextlib.suppress(ImportError):
        from transformers import modeling_gguf_pytorch_utils as gguf

        drawn = getattr(gguf, "tqdm", None)
        if drawn is not None and not isinstance(drawn, functools.partial):
            gguf.tqdm = functools.partial(drawn, disable=True)


def _no_bar(factory: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    return factory(*args, **{**kwargs, "disable": True})
