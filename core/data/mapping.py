"""``--map``: read a team's own export, whose columns have its own names, without rewriting the file.

``--map input=Subject+Description,category=Type,priority=Priority,language=Locale`` names, for each of our fields,
the file's column (CSV/TSV) or key (JSONL; a dotted path such as ``ticket.body`` reaches into nested objects)
that holds it; ``a+b`` joins several columns with a newline (a subject line above its description). Columns
that are not mapped stay as they were, so a file that already uses our names needs no mapping at all.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from ..errors import DataError

RECORD_KEYS = ("input", "language", "instruction", "id")  # what a record holds besides its output fields


@dataclass(frozen=True)
class ColumnMap:
    """Our field → the file's columns (joined by newlines), in the order given on the command line; ``defaults``
    fill a field a record leaves empty (``--language de`` for a file in one language)."""

    fields: tuple[tuple[str, tuple[str, ...]], ...]
    defaults: tuple[tuple[str, str], ...] = ()

    def with_default(self, target: str, value: str) -> ColumnMap:
        """This mapping, and ``target`` set to ``value`` where a record has none."""
        return ColumnMap(self.fields, (*((t, v) for t, v in self.defaults if t != target), (target, value)))

    @classmethod
    def parse(cls, text: str | None) -> ColumnMap | None:
        """``FIELD=COLUMN[+COLUMN...],...`` → a ColumnMap (``None`` for no mapping); bad syntax is a DataError."""
        if not text or not text.strip():
            return None
        fields: dict[str, tuple[str, ...]] = {}
        for part in text.split(","):
            target, sep, source = part.partition("=")
            target, columns = target.strip(), tuple(c.strip() for c in source.split("+"))
            if not sep or not target or not all(columns):
                raise DataError(f"--map: {part.strip()!r} is not FIELD=COLUMN (e.g. input=Description,category=Type)")
            if target in fields:
                raise DataError(f"--map: {target!r} is mapped twice")
            fields[target] = columns
        return cls(tuple(fields.items()))

    def only(self, targets: Iterable[str]) -> ColumnMap | None:
        """The part of the mapping for ``targets`` (``predict`` needs the input, not the labels a file may lack)."""
        keep = set(targets)
        fields = tuple((t, c) for t, c in self.fields if t in keep)
        defaults = tuple((t, v) for t, v in self.defaults if t in keep)
        return ColumnMap(fields, defaults) if fields or defaults else None

    def __str__(self) -> str:
        return ",".join(f"{target}={'+'.join(columns)}" for target, columns in self.fields)

    def check_targets(self, known: Iterable[str], task_name: str) -> None:
        """Refuse a mapping to a field the task does not have (a typo would otherwise be dropped silently)."""
        known = [*RECORD_KEYS, *known]
        for target, _ in self.fields:
            if target not in known:
                close = difflib.get_close_matches(target, known, n=1)
                hint = f" (did you mean {close[0]!r}?)" if close else ""
                raise DataError(
                    f"--map: task {task_name!r} has no field {target!r}{hint}; its fields: {', '.join(known)}"
                )

    def check_header(self, file: str, header: list[str]) -> None:
        """Refuse a CSV header that lacks a mapped column, listing the columns the file has."""
        for target, columns in self.fields:
            for column in columns:
                if column not in header:
                    close = difflib.get_close_matches(column, header, n=1)
                    hint = f" (did you mean {close[0]!r}?)" if close else ""
                    raise DataError(f"{file}: line 1 (header): --map {target}={'+'.join(columns)}: no column "
                                    f"{column!r}{hint}; the file's columns: {', '.join(header)}")

    def apply_row(self, row: Mapping[str, str]) -> dict[str, str]:
        """A CSV row with our names: mapped columns (joined) replace their sources, the rest stay."""
        sources = {c for _, columns in self.fields for c in columns}
        mapped = {k: v for k, v in row.items() if k not in sources}
        for target, columns in self.fields:
            mapped[target] = "\n".join(row[c].strip() for c in columns if row[c].strip())
        for target, value in self.defaults:
            if not str(mapped.get(target) or "").strip():
                mapped[target] = value
        return mapped

    def apply_record(self, record: Any, output_fields: Iterable[str]) -> dict[str, Any] | str:
        """A JSONL record with our names, output fields gathered under ``output``; or why it cannot be mapped."""
        if not isinstance(record, dict):
            return f"expected a JSON object, got {type(record).__name__}"
        output_fields = set(output_fields)
        sources = {c for _, columns in self.fields for c in columns}
        mapped: dict[str, Any] = {k: v for k, v in record.items() if k not in sources}
        output: dict[str, Any] = {}
        for target, columns in self.fields:
            values = []
            for column in columns:
                value = _at(record, column)
                if value is _MISSING:
                    return (f"no {column!r} (--map {target}={'+'.join(columns)}); the record's keys: "
                            f"{', '.join(record) or 'none'}")
                values.append(value)
            value = values[0] if len(values) == 1 else "\n".join(str(v).strip() for v in values if str(v).strip())
            if target in output_fields:
                output[target] = value
            else:
                mapped[target] = value
        if output:
            given = mapped.get("output")
            mapped["output"] = {**given, **output} if isinstance(given, dict) else output
        for target, value in self.defaults:
            if not str(mapped.get(target) or "").strip():
                mapped[target] = value
        return mapped


_MISSING = object()


def _at(record: Mapping[str, Any], path: str) -> Any:
    """``record[path]``, or for a dotted path the nested value (a key with a dot in it is tried whole first)."""
    if path in record:
        return record[path]
    node: Any = record
    for key in path.split("."):
        if not isinstance(node, Mapping) or key not in node:
            return _MISSING
        node = node[key]
    return node
