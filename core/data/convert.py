"""Turn one raw record (a JSONL object or a CSV row) into a task ``Example``, losslessly.

Accepted shapes, each counted under its ``source`` name so the report says what was converted:

- ``canonical``: ``{"input", "output": {...}, "instruction"?, "language"?, "meta"?}``
- ``json_string``: the same with ``output`` as a JSON string of an object
- ``key_value``: ``output`` as the seed article's ``key: value`` lines (``category: shipping\\npriority: high``)
- ``messages``: a chat record ``{"messages": [system?, user, assistant]}``
- ``csv_output`` / ``csv_columns``: CSV with an ``output`` column, or one column per output field

Nothing is dropped: keys lingoforge does not know go to ``meta``, a system prompt that differs from the
task's goes to ``meta["system"]``, and ``key: value`` text is typed only where the schema says so (a
value that does not fit stays text, and the schema check then points at it).
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ..task import Example, Task
from .findings import Finding

KNOWN_KEYS = ("instruction", "input", "output", "language", "meta")
_KEY = re.compile(r"[\w.-]+")
_LANGUAGE = re.compile(r"^([a-z]{2})(?:[-_][a-z0-9]+)*$")
ISO_639_1 = frozenset(
    """
    aa ab ae af ak am an ar as av ay az ba be bg bh bi bm bn bo br bs ca ce ch co cr cs cu cv cy da de dv dz ee
    el en eo es et eu fa ff fi fj fo fr fy ga gd gl gn gu gv ha he hi ho hr ht hu hy hz ia id ie ig ii ik io is
    it iu ja jv ka kg ki kj kk kl km kn ko kr ks ku kv kw ky la lb lg li ln lo lt lu lv mg mh mi mk ml mn mr ms
    mt my na nb nd ne ng nl nn no nr nv ny oc oj om or os pa pi pl ps pt qu rm rn ro ru rw sa sc sd se sg si sk
    sl sm sn so sq sr ss st su sv sw ta te tg th ti tk tl tn to tr ts tt tw ty ug uk ur uz ve vi vo wa wo xh yi
    yo za zh zu
    """.split()
)  # every two-letter code of ISO 639-1: "xx" or "sp" is a typo, not a language


@dataclass(frozen=True)
class Record:
    """A converted example and where it came from (1-based line of the record's first line)."""

    line: int
    example: Example
    source: str


def normalize_language(value: Any) -> str | None:
    """``"ES"``, ``"es-MX"`` and ``"es_419"`` → ``"es"``; anything else (``"Spanish"``, ``"xx"``) → ``None``."""
    if not isinstance(value, str):
        return None
    match = _LANGUAGE.match(value.strip().lower())
    return match.group(1) if match and match.group(1) in ISO_639_1 else None


def _schema_node(schema: Mapping[str, Any], key: str) -> Mapping[str, Any]:
    return (schema.get("properties") or {}).get(key) or {}


def coerce(node: Mapping[str, Any], text: str) -> Any:
    """Type a text value (from ``key: value`` or a CSV cell) as the schema node asks; text that does not
    fit is returned unchanged so validation reports it instead of the value silently changing."""
    text = text.strip()
    alternatives = node.get("anyOf") or node.get("oneOf")
    if alternatives:
        if text.lower() in ("", "null", "none") and any(alt.get("type") == "null" for alt in alternatives):
            return None
        for alt in alternatives:
            if alt.get("type") != "null":
                return coerce(alt, text)
    kind = node.get("type")
    try:
        if kind == "integer":
            return int(text)
        if kind == "number":
            return float(text)
        if kind == "boolean" and text.lower() in ("true", "false", "yes", "no"):
            return text.lower() in ("true", "yes")
        if kind == "null" and text.lower() in ("", "null", "none"):
            return None
        if kind == "object":
            return json.loads(text)
        if kind == "array":
            if text.startswith("["):
                return json.loads(text)
            items = node.get("items") or {}
            return [coerce(items, part) for part in text.split(",") if part.strip()]
    except ValueError:
        return text
    return text


def parse_key_value(text: str, schema: Mapping[str, Any]) -> dict[str, Any]:
    """Parse ``key: value`` lines; a line without ``key:`` continues the previous value (multi-line text).
    Raises ``ValueError`` with the reason when the text is not in that format."""
    properties = schema.get("properties") or {}
    raw: dict[str, str] = {}
    last: str | None = None
    for line in text.replace("\r\n", "\n").split("\n"):
        key, sep, value = line.partition(":")
        key = key.strip()
        # An unknown key after a known one is more likely text inside a multi-line value ("Note: ...").
        is_key = bool(sep) and _KEY.fullmatch(key) is not None and (key in properties or not properties or last is None)
        if is_key:
            if key in raw:
                raise ValueError(f"key {key!r} appears twice")
            raw[key] = value.strip()
            last = key
        elif last is not None:
            raw[last] += "\n" + line.rstrip()
        elif line.strip():
            raise ValueError(f"expected `key: value` lines or a JSON object, got {line.strip()[:60]!r}")
    if not raw:
        raise ValueError("empty output")
    return {k: coerce(_schema_node(schema, k), v.strip()) for k, v in raw.items()}


def _output(value: Any, schema: Mapping[str, Any]) -> tuple[dict[str, Any], str]:
    """The output dict and how it was written; ``ValueError`` says why it is unusable."""
    if isinstance(value, Mapping):
        return dict(value), "canonical"
    if isinstance(value, str):
        stripped = value.strip()
        if stripped.startswith("{"):
            try:
                parsed = json.loads(stripped)
            except json.JSONDecodeError as exc:
                raise ValueError(f"not valid JSON: {exc.msg} at column {exc.colno}") from None
            if not isinstance(parsed, dict):
                raise ValueError("expected a JSON object")
            return parsed, "json_string"
        return parse_key_value(value, schema), "key_value"
    raise ValueError(f"expected an object, a JSON string or `key: value` lines, got {type(value).__name__}")


def _user_split(task: Task, content: str) -> tuple[str, str]:
    """(instruction, input) of a user turn built like ``prompts.user_text``; the task's instruction is
    recognised and split off, any other text is all input."""
    instruction = task.instruction.strip()
    if instruction and content.startswith(instruction + "\n\n"):
        return instruction, content[len(instruction) + 2 :]
    return "", content


def _from_messages(obj: Mapping[str, Any], line: int, task: Task, file: str) -> Record | Finding:
    messages = obj["messages"]
    roles = (
        [m.get("role") for m in messages]
        if isinstance(messages, list) and all(isinstance(m, Mapping) for m in messages)
        else None
    )
    if roles is None or roles.count("user") != 1 or roles.count("assistant") != 1:
        return Finding(
            "error",
            "bad_messages",
            line,
            "/messages",
            "expected a list with one user and one assistant message (and an optional system message)",
            file,
        )
    by_role = {m["role"]: m.get("content") for m in messages}
    if not all(isinstance(by_role[r], str) for r in by_role):
        return Finding("error", "bad_messages", line, "/messages", "every message needs a text `content`", file)
    try:
        output, _ = _output(by_role["assistant"], task.output_schema)
    except ValueError as exc:
        return Finding("error", "bad_output", line, f"/messages/{roles.index('assistant')}/content", str(exc), file)
    instruction, text = _user_split(task, by_role["user"])
    meta = {k: v for k, v in obj.items() if k not in ("messages", "language")}
    system = by_role.get("system")
    if system is not None and system != task.system_prompt:
        meta["system"] = system
    return _example(line, instruction, text, output, obj.get("language"), meta, "messages", file)


def _example(
    line: int,
    instruction: str,
    text: str,
    output: dict[str, Any],
    language: Any,
    meta: dict[str, Any],
    source: str,
    file: str,
) -> Record | Finding:
    declared = language or (output.get("language") if isinstance(output.get("language"), str) else None)
    code = "" if declared in (None, "") else normalize_language(declared)
    if code is None:
        return Finding(
            "error",
            "bad_language",
            line,
            "/language",
            f"{declared!r} is not an ISO 639-1 language code (like 'en', 'es', 'zh')",
            file,
        )
    return Record(line, Example(instruction, text, output, code, meta), source)


def from_json(obj: Any, line: int, task: Task, file: str = "") -> Record | Finding:
    """Convert one parsed JSONL value; a ``Finding`` (error) says why it cannot be used."""
    if not isinstance(obj, dict):
        return Finding("error", "not_object", line, "", f"expected a JSON object, got {type(obj).__name__}", file)
    if "messages" in obj and "input" not in obj:
        return _from_messages(obj, line, task, file)
    for key in ("input", "output"):
        if key not in obj:
            return Finding(
                "error",
                "missing_field",
                line,
                f"/{key}",
                f"missing field {key!r} (found: {', '.join(obj) or 'nothing'})",
                file,
            )
    if not isinstance(obj["input"], str):
        return Finding("error", "bad_input", line, "/input", f"expected text, got {type(obj['input']).__name__}", file)
    instruction = obj.get("instruction", "")
    if not isinstance(instruction, str):
        return Finding(
            "error", "bad_instruction", line, "/instruction", f"expected text, got {type(instruction).__name__}", file
        )
    try:
        output, source = _output(obj["output"], task.output_schema)
    except ValueError as exc:
        return Finding("error", "bad_output", line, "/output", str(exc), file)
    meta = dict(obj["meta"]) if isinstance(obj.get("meta"), Mapping) else {}
    meta.update({k: v for k, v in obj.items() if k not in KNOWN_KEYS or (k == "meta" and not isinstance(v, Mapping))})
    return _example(line, instruction, obj["input"], output, obj.get("language"), meta, source, file)


def from_csv_row(row: Mapping[str, str], line: int, task: Task, file: str = "") -> Record | Finding:
    """Convert one CSV row (header → cell). With an ``output`` column it is parsed like JSONL's
    ``output``; otherwise each schema property is read from its own column and typed by the schema."""
    if "output" in row:
        result = from_json(dict(row), line, task, file)
        return Record(result.line, result.example, "csv_output") if isinstance(result, Record) else result
    properties = task.output_schema.get("properties") or {}
    required = set(task.output_schema.get("required") or ())
    output = {
        key: coerce(node, row[key])
        for key, node in properties.items()
        if key in row and (row[key].strip() or key in required)
    }
    meta = {k: v for k, v in row.items() if k not in properties and k not in KNOWN_KEYS}
    return _example(
        line, row.get("instruction", ""), row["input"], output, row.get("language"), meta, "csv_columns", file
    )


def required_csv_columns(task: Task, header: list[str]) -> list[str]:
    """Columns a CSV must have: ``input``, plus ``output`` or every required output field."""
    needed = ["input"]
    if "output" not in header:
        needed += list(task.output_schema.get("required") or ())
    return [c for c in needed if c not in header]
