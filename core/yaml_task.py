"""Tasks declared in a YAML file, for custom taxonomies without writing Python.

The output schema and the scoring are derived from the declared field types, unless the file gives
``output_schema`` (and per-field ``scoring``) explicitly. Every error names the file and key path.
"""

from __future__ import annotations

import random
import re
import string
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml

from .errors import LingoforgeError, TaskDefinitionError
from .scoring import field_value, normalize_text, set_f1
from .task import LANGUAGE_PATTERN, TASK_NAME_PATTERN, Example, Task

FIELD_TYPES = ("enum", "text", "date", "list", "object")
SCORING_KINDS = ("exact", "normalized", "set_f1")
DATE_PATTERN = r"^\d{4}-\d{2}-\d{2}$"
_SLOT = re.compile(r"\{(\w+)\}")


class _Spec:
    """Reads keys from the YAML mapping and raises with ``file: key.path`` on the first problem."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def fail(self, key: str, message: str) -> TaskDefinitionError:
        return TaskDefinitionError(f"{self.path}: {key}: {message}")

    def mapping(self, value: Any, key: str) -> Mapping[str, Any]:
        if not isinstance(value, Mapping):
            raise self.fail(key, f"expected a mapping, got {type(value).__name__}")
        return value

    def string(self, data: Mapping[str, Any], key: str, prefix: str = "", required: bool = True, default: str = "") -> str:
        value = data.get(key)
        if value is None:
            if required:
                raise self.fail(prefix + key, "is required")
            return default
        if not isinstance(value, (str, int, float)) or isinstance(value, bool):
            raise self.fail(prefix + key, f"expected text, got {type(value).__name__}")
        return str(value)

    def string_list(self, value: Any, key: str, pattern: re.Pattern[str] | None = None, what: str = "") -> list[str]:
        if not isinstance(value, list) or not value:
            raise self.fail(key, "expected a non-empty list")
        seen: set[str] = set()
        out: list[str] = []
        for i, item in enumerate(value):
            if not isinstance(item, str) or not item.strip():
                raise self.fail(f"{key}[{i}]", f"expected a non-empty string, got {item!r}")
            if pattern is not None and not pattern.match(item):
                raise self.fail(f"{key}[{i}]", f"{item!r} is not {what}")
            if item in seen:
                raise self.fail(f"{key}[{i}]", f"duplicate value {item!r}")
            seen.add(item)
            out.append(item)
        return out


def _field_schema(spec: _Spec, name: str, raw: Any, key: str) -> dict[str, Any]:
    node = spec.mapping(raw, key)
    kind = node.get("type")
    if kind not in FIELD_TYPES:
        raise spec.fail(f"{key}.type", f"must be one of {', '.join(FIELD_TYPES)}, got {kind!r}")
    schema: dict[str, Any]
    if kind == "enum":
        schema = {"type": "string", "enum": spec.string_list(node.get("labels"), f"{key}.labels")}
    elif kind == "text":
        schema = {"type": "string"}
    elif kind == "date":
        schema = {"type": "string", "pattern": DATE_PATTERN}
    elif kind == "list":
        labels = node.get("labels")
        item = {"type": "string", "enum": spec.string_list(labels, f"{key}.labels")} if labels is not None else {"type": "string"}
        schema = {"type": "array", "items": item}
    else:
        children = spec.mapping(node.get("fields"), f"{key}.fields")
        if not children:
            raise spec.fail(f"{key}.fields", "an object needs at least one field")
        schema = {
            "type": "object",
            "properties": {c: _field_schema(spec, c, v, f"{key}.fields.{c}") for c, v in children.items()},
            "required": list(children),
            "additionalProperties": False,
        }
    if node.get("description"):
        schema["description"] = spec.string(node, "description", f"{key}.")
    if node.get("nullable"):
        schema = {"anyOf": [schema, {"type": "null"}], **({"description": schema["description"]} if "description" in schema else {})}
    return schema


def _scorers(spec: _Spec, fields: Mapping[str, Any], overrides: Mapping[str, Any], prefix: str = "") -> list[tuple[str, str, str]]:
    """(dotted field, metric name, scoring kind) for every leaf field."""
    out: list[tuple[str, str, str]] = []
    for name, raw in fields.items():
        dotted = f"{prefix}{name}"
        kind = raw["type"]
        if kind == "object":
            out += _scorers(spec, raw["fields"], overrides, f"{dotted}.")
            continue
        default = {"enum": "exact", "text": "normalized", "date": "normalized", "list": "set_f1"}[kind]
        how = overrides.get(dotted, default)
        if how not in SCORING_KINDS:
            raise spec.fail(f"scoring.{dotted}", f"must be one of {', '.join(SCORING_KINDS)}, got {how!r}")
        metric = {"exact": "accuracy", "normalized": "match", "set_f1": "f1"}[how]
        out.append((dotted, f"{dotted}_{metric}", how))
    return out


def make_scorer(leaves: Sequence[tuple[str, str, str]]) -> Any:
    """A scorer from (field, metric, kind) triples: exact, normalized-string match or set-F1."""

    def score(pred: Mapping[str, Any] | None, gold: Mapping[str, Any]) -> dict[str, float]:
        result: dict[str, float] = {}
        for dotted, metric, how in leaves:
            if pred is None:
                result[metric] = 0.0
                continue
            p, g = field_value(pred, dotted), field_value(gold, dotted)
            if how == "exact":
                result[metric] = float(p == g)
            elif how == "normalized":
                result[metric] = float(normalize_text(p) == normalize_text(g))
            else:
                result[metric] = set_f1(p if isinstance(p, list) else [], g if isinstance(g, list) else [])
        return result

    return score


def _template_generator(spec: _Spec, data: Mapping[str, Any], languages: Sequence[str]) -> Any:
    """A seeded generator that fills ``{slot}`` placeholders of ``examples:`` templates."""
    slots_raw = spec.mapping(data.get("slots") or {}, "slots")
    templates = data["examples"]
    if not isinstance(templates, list) or not templates:
        raise spec.fail("examples", "expected a non-empty list of templates")
    by_lang: dict[str, list[Mapping[str, Any]]] = {}
    for i, raw in enumerate(templates):
        tpl = spec.mapping(raw, f"examples[{i}]")
        lang = spec.string(tpl, "language", f"examples[{i}].")
        if lang not in languages:
            raise spec.fail(f"examples[{i}].language", f"{lang!r} is not one of the task's languages {list(languages)}")
        spec.string(tpl, "input", f"examples[{i}].")
        spec.mapping(tpl.get("output"), f"examples[{i}].output")
        for slot in _SLOT.findall(tpl["input"]):
            if slot not in slots_raw:
                raise spec.fail(f"examples[{i}].input", f"uses slot {{{slot}}} that `slots:` does not define")
        by_lang.setdefault(lang, []).append(tpl)
    missing = [lang for lang in languages if lang not in by_lang]
    if missing:
        raise spec.fail("examples", f"no template for language(s) {', '.join(missing)}")

    def values(slot: str, lang: str) -> list[str]:
        raw = slots_raw[slot]
        if isinstance(raw, Mapping):
            raw = raw.get(lang) or raw.get("default") or []
        return [str(v) for v in raw]

    def fill(text: str, chosen: Mapping[str, str]) -> str:
        return string.Formatter().vformat(text, (), _Defaulting(chosen))

    def generate(n: int, seed: int, langs: Sequence[str]) -> list[Example]:
        rng = random.Random(seed)
        seen: set[str] = set()
        out: list[Example] = []
        for i in range(n):
            lang = langs[i % len(langs)]
            for _attempt in range(200):
                tpl = rng.choice(by_lang[lang])
                chosen = {s: rng.choice(values(s, lang) or [""]) for s in _SLOT.findall(tpl["input"])}
                text = fill(tpl["input"], chosen)
                if text not in seen:
                    break
            else:
                raise LingoforgeError(f"{spec.path}: the `examples:` templates for {lang!r} give too few distinct inputs "
                                      f"for {n} examples; add templates or slot values")
            seen.add(text)
            output = {k: fill(v, chosen) if isinstance(v, str) else v for k, v in tpl["output"].items()}
            out.append(Example(str(data["instruction"]), text, output, lang, {"template": by_lang[lang].index(tpl)}))
        return out

    return generate


class _Defaulting(dict[str, str]):
    def __missing__(self, key: str) -> str:
        return "{" + key + "}"


def load_yaml_task(path: str | Path) -> Task:
    """Build a Task from a YAML file; raises ``TaskDefinitionError`` naming the file and key path."""
    path = Path(path)
    spec = _Spec(path)
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as exc:
        raise TaskDefinitionError(f"{path}: cannot read: {exc}") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        raise TaskDefinitionError(f"{path}: {where}invalid YAML: {getattr(exc, 'problem', exc)}") from None
    data = spec.mapping(data, "(top level)")
    name = spec.string(data, "name")
    if not TASK_NAME_PATTERN.match(name):
        raise spec.fail("name", f"{name!r} must match {TASK_NAME_PATTERN.pattern}")
    languages = spec.string_list(data.get("languages"), "languages", LANGUAGE_PATTERN, "an ISO 639-1 code")
    fields = spec.mapping(data.get("fields"), "fields")
    if not fields:
        raise spec.fail("fields", "declare at least one output field")
    properties = {f: _field_schema(spec, f, raw, f"fields.{f}") for f, raw in fields.items()}
    schema: dict[str, Any] = {"type": "object", "properties": properties, "required": list(fields), "additionalProperties": False}
    if data.get("output_schema") is not None:
        schema = dict(spec.mapping(data["output_schema"], "output_schema"))
    leaves = _scorers(spec, fields, spec.mapping(data.get("scoring") or {}, "scoring"))
    metrics = [m for _, m, _ in leaves]
    enum_fields = tuple(f for f, raw in fields.items() if raw["type"] == "enum")
    default_primary = f"{enum_fields[0]}_accuracy" if enum_fields else metrics[0]
    primary = spec.string(data, "primary_metric", required=False, default=default_primary)
    if primary not in metrics:
        raise spec.fail("primary_metric", f"{primary!r} is not one of the derived metrics {metrics}")
    instruction = spec.string(data, "instruction")
    generator = _template_generator(spec, data, languages) if data.get("examples") is not None else None
    return Task(
        name=name,
        version=spec.string(data, "version", required=False, default="1"),
        description=spec.string(data, "description", required=False),
        languages=tuple(languages),
        system_prompt=spec.string(data, "system_prompt", required=False),
        instruction=instruction,
        output_schema=schema,
        scorer=make_scorer(leaves),
        primary_metric=primary,
        fields=enum_fields,
        text_fields=tuple(f for f, raw in fields.items() if raw["type"] == "text" and raw.get("in_input_language")),
        generator=generator,
        source=str(path),
    )
