"""Batch prediction to JSONL: resumable, crash-safe, one output line per input.

Each output line is ``{"id", "output", "valid", "retried"}`` (+ ``language`` when the input gave one, + ``raw``
for an unusable answer). The output is append-only: whole lines, flushed and fsynced per batch, so a
killed run loses at most the batch in flight. On start, an existing output file is checked to be a
prediction file (else it is refused untouched), a partial trailing line (a kill in the middle of a write)
is cut off and ids already written are skipped, so rerunning the same command finishes the job.
"""

from __future__ import annotations

import json
import os
import re
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from rich.console import Console

from .backends import DEFAULT_MAX_NEW_TOKENS, Backend, ModelSpec, Servers, get_backend
from .data.findings import Finding
from .data.io import read_rows, read_text
from .data.mapping import RECORD_KEYS, ColumnMap
from .errors import DataError
from .fsutil import append_text
from .progress import items_bar
from .prompts import prompt_messages
from .schema import parse_output
from .task import Task

TEXT_KEYS = ("input", "text")


@dataclass(frozen=True)
class Item:
    """One input: its id (the ``id`` field, else its line/row number), text and optional instruction/language."""

    id: Any
    text: str
    instruction: str | None = None
    language: str | None = None


def _item(record: Any, number: int, where: str) -> Item:
    if isinstance(record, str):
        return Item(number, record)
    if not isinstance(record, dict):
        raise DataError(
            f"{where}: expected a JSON object with an `input` (or `text`) field, got {type(record).__name__}"
        )
    text = next((record[k] for k in TEXT_KEYS if isinstance(record.get(k), str)), None)
    if text is None:
        raise DataError(f"{where}: no `input` (or `text`) string field; found keys {sorted(record)}")
    given = record.get("id")
    return Item(
        number if given in (None, "") else given,
        text,
        record.get("instruction") or None,
        record.get("language") or None,
    )


def parse_inputs(text: str, name: str, csv_format: bool | None = None, mapping: ColumnMap | None = None) -> list[Item]:
    """Items from JSONL (one object or string per line) or CSV with a header (``input``/``text`` column,
    optional ``id``, ``language``), parsed by the data reader every command uses; ``mapping`` (``--map``) names
    the file's own columns for them. ``csv_format=None`` guesses from the first non-blank character. A CSV row's
    default id is its row number, a JSONL line's its line."""
    mapping = mapping.only(RECORD_KEYS) if mapping else None
    text = text.removeprefix("\ufeff")  # files are read without it; piped text may still carry it
    if csv_format is None:
        csv_format = not text.lstrip().startswith(("{", '"'))

    def columns(header: list[str]) -> None:
        if not set(TEXT_KEYS) & set(header):
            raise DataError(f"{name}: CSV needs an `input` (or `text`) column; header is {header}")

    items: list[Item] = []
    fmt = "csv" if csv_format else "jsonl"
    for row in read_rows(text, name, fmt, columns, tsv=name.lower().endswith(".tsv"), mapping=mapping):
        if isinstance(row, Finding):
            raise DataError(str(row))
        number = len(items) + 1 if csv_format else row.line
        items.append(_item(row.value, number, f"{name}: row {number}" if csv_format else f"{name}:{row.line}"))
    seen: dict[str, int] = {}
    for position, item in enumerate(items, 1):
        key = str(item.id)
        if key in seen:
            raise DataError(
                f"{name}: id {item.id!r} appears twice (items {seen[key]} and {position}); ids must be "
                "unique for resuming to know what is done"
            )
        seen[key] = position
    return items


def read_inputs(source: str | Path, stdin: IO[str] | None = None, mapping: ColumnMap | None = None) -> list[Item]:
    """Items from a file path, or from stdin when ``source`` is ``-``."""
    if str(source) == "-":
        return parse_inputs((stdin or sys.stdin).read(), "<stdin>", mapping=mapping)
    path = Path(source)
    if not path.is_file():
        raise DataError(f"input {path} does not exist")
    suffix = path.suffix.lower()
    csv_format = True if suffix in (".csv", ".tsv") else False if suffix in (".jsonl", ".json", ".ndjson") else None
    return parse_inputs(read_text(path), str(path), csv_format, mapping)


PREDICTION_KEYS = ("id", "output", "valid")
_LINE_HEAD = '{"id":'  # every line this tool writes starts so (id is the record's first key), whitespace aside
_AFTER_ID = ',"output":'


def _compact(text: str) -> str:
    """``text`` without whitespace, to compare JSON written with or without spaces after separators."""
    return "".join(text.split())


def _prediction_problem(line: bytes) -> str | None:
    """Why a complete line is not one ``predict`` wrote, or ``None`` when it is one."""
    try:
        record = json.loads(line.decode("utf-8"))
    except UnicodeDecodeError:
        return "not UTF-8 text"
    except json.JSONDecodeError as exc:
        return f"not JSON ({exc.msg}, column {exc.colno})"
    if not isinstance(record, dict):
        return f"a JSON {type(record).__name__}, not an object"
    missing = [key for key in PREDICTION_KEYS if key not in record]
    if missing:
        return f"no {', '.join(f'`{key}`' for key in missing)} field; found keys {sorted(record)}"
    if not isinstance(record["valid"], bool):
        return f"field `valid` is {record['valid']!r}, not true/false"
    return None


def _is_unfinished_prediction(tail: bytes) -> bool:
    """Whether ``tail`` (bytes after the last newline) is the start of a prediction line cut by a kill.

    Checked up to the key after ``id`` so that a one-line file of someone else's ``{"id": …, "input": …}``
    records is not mistaken for one and cut."""
    if _prediction_problem(tail) is None:  # a whole line whose newline was not written yet
        return True
    text = tail.decode("utf-8", errors="replace")  # a kill may cut a character in two
    head = re.match(r'\{\s*"id"\s*:\s*', text)
    if head is None:
        return _LINE_HEAD.startswith(_compact(text))
    try:
        _, end = json.JSONDecoder().raw_decode(text, head.end())
    except json.JSONDecodeError:
        return True  # cut inside the id value
    after = _compact(text[end : end + 4 * len(_AFTER_ID)])
    return after.startswith(_AFTER_ID) or _AFTER_ID.startswith(after)


def completed_ids(out: Path) -> set[str]:
    """Ids already in ``out``, which must be a prediction file of this tool.

    The whole file is checked before anything is cut, so a file this tool did not write is refused byte for
    byte unchanged; only then is a partial trailing line (a kill mid-write) truncated away to resume."""
    if not out.is_file():
        return set()
    data = out.read_bytes()
    keep = data.rfind(b"\n") + 1
    lines = data[:keep].split(b"\n")[:-1]  # split on \n only: raw answers may hold U+2028 and the like
    refuse = f"is {out} the output of another command? It was left unchanged; choose a new -o file"
    done: set[str] = set()
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        problem = _prediction_problem(line)
        if problem is not None:
            raise DataError(f"{out}:{number}: not a prediction line ({problem}); {refuse}")
        done.add(str(json.loads(line)["id"]))
    if keep != len(data):
        if not _is_unfinished_prediction(data[keep:]):
            raise DataError(
                f"{out}:{len(lines) + 1}: unfinished last line that does not start like a prediction line "
                f"({_LINE_HEAD}…); {refuse}"
            )
        with open(out, "rb+") as fh:
            fh.truncate(keep)
            fh.flush()
            os.fsync(fh.fileno())
    return done


def _line(item: Item, text: str, task: Task, retried: bool) -> tuple[dict[str, Any], bool]:
    parsed = parse_output(text, task.schema)
    record: dict[str, Any] = {
        "id": item.id,
        "output": parsed.value if parsed.valid else None,
        "valid": parsed.valid,
        "retried": retried,
    }
    if item.language:
        record["language"] = item.language
    if not parsed.valid:
        record["raw"] = text
        record["error"] = parsed.error
    return record, parsed.valid


def predict(
    model: str | ModelSpec | Backend,
    task: Task,
    source: str | Path,
    out: str | Path,
    *,
    backend: str | None = None,
    constrained: bool = False,
    concurrency: int = 8,
    servers: Servers | None = None,
    max_new_tokens: int = DEFAULT_MAX_NEW_TOKENS,
    stdin: IO[str] | None = None,
    mapping: ColumnMap | None = None,
    console: Console | None = None,
) -> dict[str, Any]:
    """Predict every input not yet in ``out``; returns counts (``total``, ``skipped``, ``written``, ``valid``,
    ``retried``, ``invalid``), ``seconds``, ``items_per_s``, ``out`` and, for served models, ``servers`` (each
    one's share and why it failed, if it did).

    ``concurrency`` is the batch size for hf; served backends send ``servers.parallel`` requests per server;
    llama.cpp answers one at a time. Lines are written in input order as soon as every earlier input is
    answered. An answer that is not valid against the schema is asked again once with constrained decoding."""
    out = Path(out)
    items = read_inputs(source, stdin, mapping)
    done = completed_ids(out)
    todo = [item for item in items if str(item.id) not in done]
    written = valid = retried = 0
    seconds = 0.0
    served: list[dict[str, Any]] = []

    def summary() -> dict[str, Any]:
        return {
            "total": len(items),
            "skipped": len(items) - len(todo),
            "written": written,
            "valid": valid,
            "retried": retried,
            "invalid": written - valid,
            "seconds": seconds,
            "items_per_s": written / seconds if seconds else None,
            "out": str(out),
            **({"servers": served} if served else {}),
        }

    if not todo:
        return summary()
    created = not out.exists()
    append_text(out, "")  # an output that cannot be written is told before the model loads
    try:
        opened = model if isinstance(model, Backend) else get_backend(model, backend, servers=servers)
    except BaseException:
        if created:  # a model that does not load leaves no output behind
            out.unlink(missing_ok=True)
        raise
    schema = task.schema
    conversations = [prompt_messages(task, it.text, it.instruction) for it in todo]
    waiting: dict[int, tuple[dict[str, Any], bool]] = {}  # answered, not yet written: an earlier input is still out
    started = time.perf_counter()
    try:
        hosts = getattr(opened, "hosts", ())
        with items_bar(f"predict {opened.name}", len(todo), hosts, console) as advance:
            answers = opened.stream(conversations, schema if constrained else None, max_new_tokens, concurrency)
            for at, gen in answers:
                line = _line(todo[at], gen.text, task, False)
                if not line[1] and not constrained and opened.supports_constrained:
                    [again] = opened.generate([conversations[at]], schema=schema, max_new_tokens=max_new_tokens)
                    line = _line(todo[at], again.text, task, True)
                    retried += 1
                waiting[at] = line
                advance(gen.server)
                ready = []
                while written + len(ready) in waiting:
                    ready.append(waiting.pop(written + len(ready)))
                if ready:
                    append_text(out, "".join(json.dumps(r, ensure_ascii=False, separators=(",", ":")) + "\n"
                                             for r, _ in ready))
                    written += len(ready)
                    valid += sum(ok for _, ok in ready)
    finally:
        served = opened.describe().get("servers", [])
        if not isinstance(model, Backend):
            opened.close()
    seconds = time.perf_counter() - started
    return summary()
