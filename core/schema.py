"""JSON Schema validation and parsing model output into a dict (strict first, then lenient)."""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import jsonschema
from jsonschema.validators import validator_for

from .errors import TaskDefinitionError


@dataclass(frozen=True)
class Issue:
    """One schema violation: JSON pointer of the failing part and the validator's message."""

    pointer: str
    message: str

    def __str__(self) -> str:
        return f"{self.pointer or '/'}: {self.message}"


def check_schema(schema: Mapping[str, Any], where: str) -> None:
    """Raise ``TaskDefinitionError`` naming ``where`` if ``schema`` is not a valid JSON Schema."""
    try:
        validator_for(schema).check_schema(schema)
    except jsonschema.SchemaError as exc:
        path = "/".join(str(p) for p in exc.path)
        message = f"{where}: output schema is not valid JSON Schema at /{path}: {exc.message}"
        raise TaskDefinitionError(message) from None
    if schema.get("type") != "object":
        raise TaskDefinitionError(f"{where}: output schema must describe a JSON object (type: object)")


@functools.lru_cache(maxsize=64)
def _validator(schema_json: str) -> jsonschema.protocols.Validator:
    schema = json.loads(schema_json)
    return validator_for(schema)(schema, format_checker=jsonschema.FormatChecker())


def validate(schema: Mapping[str, Any], value: Any) -> list[Issue]:
    """All violations of ``value`` against ``schema``, sorted by pointer (empty list = valid)."""
    validator = _validator(json.dumps(schema, sort_keys=True, default=dict))
    issues = [
        Issue("/" + "/".join(str(p) for p in err.absolute_path) if err.absolute_path else "", err.message)
        for err in validator.iter_errors(value)
    ]
    return sorted(issues, key=lambda i: i.pointer)


@dataclass(frozen=True)
class Parsed:
    """A parsed model answer. ``value`` is None when no JSON object could be recovered."""

    value: dict[str, Any] | None
    valid: bool
    lenient: bool
    error: str | None


_FENCE = re.compile(r"^```(?:json)?\s*|\s*```$", re.MULTILINE)
_TRAILING_COMMA = re.compile(r",\s*([}\]])")


def _first_object(text: str) -> str | None:
    """The first balanced ``{...}`` in ``text``, respecting strings and escapes."""
    start = text.find("{")
    while start != -1:
        depth, in_str, escape = 0, False, False
        for i in range(start, len(text)):
            ch = text[i]
            if in_str:
                if escape:
                    escape = False
                elif ch == "\\":
                    escape = True
                elif ch == '"':
                    in_str = False
            elif ch == '"':
                in_str = True
            elif ch == "{":
                depth += 1
            elif ch == "}":
                depth -= 1
                if depth == 0:
                    return text[start : i + 1]
        start = text.find("{", start + 1)
    return None


def parse_output(text: str, schema: Mapping[str, Any]) -> Parsed:
    """Parse a model answer: exact JSON first; else the first JSON object in it (fences, chatter and
    trailing commas removed). ``valid`` says whether the recovered object satisfies ``schema``."""
    candidates: list[tuple[str, bool]] = [(text.strip(), False)]
    cleaned = _FENCE.sub("", text.strip())
    found = _first_object(cleaned)
    if found is not None:
        candidates += [(found, True), (_TRAILING_COMMA.sub(r"\1", found), True)]
    for candidate, lenient in candidates:
        try:
            value = json.loads(candidate)
        except (json.JSONDecodeError, RecursionError):
            continue
        if isinstance(value, dict):
            issues = validate(schema, value)
            return Parsed(value, not issues, lenient, str(issues[0]) if issues else None)
    return Parsed(None, False, False, "no JSON object in the answer")
