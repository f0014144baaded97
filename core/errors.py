"""Domain errors. The CLI turns these into ``click.ClickException`` at its edge only."""

from __future__ import annotations


class LingoforgeError(Exception):
    """Base class for errors a user can act on; the message says what to do."""


class TaskNotFound(LingoforgeError):
    """A task name or path did not resolve to a task."""


class TaskDefinitionError(LingoforgeError):
    """A task (Python or YAML) is malformed; the message names the file and key path."""


class DataError(LingoforgeError):
    """User data cannot be read or does not fit the task; the message names file, line and field."""


class WriteError(LingoforgeError):
    """An output could not be written (read-only folder, full disk); the message names the path and the reason."""


def listed(head: str, problems: list[str], limit: int = 10) -> str:
    """``head`` and the first ``limit`` problems, one per line: every multi-problem error reads the same way."""
    more = f"\n  ... and {len(problems) - limit} more" if len(problems) > limit else ""
    return head + ":\n  " + "\n  ".join(problems[:limit]) + more


def yaml_problem(exc: Exception) -> str:
    """A PyYAML error as one line, ``line L, column C: invalid YAML: <problem>``, for every YAML file we read."""
    mark = getattr(exc, "problem_mark", None)
    where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
    return f"{where}invalid YAML: {getattr(exc, 'problem', None) or exc}"
