"""Tasks declared in a YAML file, for custom taxonomies without writing Python.

A file either declares its fields (the output schema and the scoring are derived from the field types,
unless it gives ``output_schema`` and per-field ``scoring``), or starts from another task with
``extends:`` and changes only what differs: an enum field's labels, the languages, the prompts, added or
removed fields. An extending task keeps the template's prompts, scoring and field types, because those are
what a support team wants from a built-in task when its own taxonomy differs. Every error names the file
and key path.
"""

from __future__ import annotations

import os
import random
import re
import string
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from .errors import LingoforgeError, TaskDefinitionError, yaml_problem
from .scoring import field_value, normalize_text, set_f1
from .task import (
    LANGUAGE_PATTERN,
    TASK_NAME_PATTERN,
    Example,
    Generator,
    Scorer,
    Task,
    field_line,
    scored_fields,
    without_fields,
)

ENV_TASK_PATH = "LINGOFORGE_TASK_PATH"
FIELD_TYPES = ("enum", "text", "date", "list", "object")
SCORING_KINDS = ("exact", "normalized", "set_f1")
DATE_PATTERN = r"^\d{4}-\d{2}-\d{2}$"
DECLARED_KEYS = ("name", "version", "description", "languages", "system_prompt", "instruction", "fields",
                 "output_schema", "primary_metric", "scoring", "slots", "examples")
EXTENDS_KEYS = ("name", "extends", "version", "description", "languages", "system_prompt", "instruction", "fields",
                "remove_fields", "primary_metric", "scoring", "slots", "examples")
OVERRIDE_KEYS = ("labels", "description")  # what an extending file may change in a template's field
Relabeled = dict[str, tuple[list[str], list[str]]]  # field -> (the template's labels, the file's labels)
_SLOT = re.compile(r"\{(\w+)\}")


@dataclass(frozen=True)
class YamlTask(Task):
    """A task read from a YAML file.

    ``extends`` names the template task, if any. ``metric_fields`` (a field of every ``Task``) maps each metric
    to the output fields it scores (``None`` when unknown: a Python template without a generator to measure it
    on), so a file extending this task can drop the metrics of the fields it removes. ``generation_off`` says why the
    template's generator cannot make this task's examples (it does not know the new labels); ``generate``
    says so instead of producing examples with the template's labels.
    """

    extends: str = ""
    generation_off: str = ""

    def generate(self, n: int, seed: int = 0, languages: Sequence[str] | None = None) -> list[Example]:
        if self.generation_off:
            raise LingoforgeError(self.generation_off)
        return super().generate(n, seed, languages)


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

    def string(self, data: Mapping[str, Any], key: str, prefix: str = "", required: bool = True,
               default: str = "") -> str:
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


def enum_node(node: Any) -> dict[str, Any] | None:
    """The part of a field's JSON schema that lists its labels: the field itself, its non-null alternative
    (a nullable enum) or its items (a list of labels); ``None`` for a field without labels."""
    if not isinstance(node, dict):
        return None
    if "enum" in node:
        return node
    for part in (*node.get("anyOf", ()), node.get("items")):
        found = enum_node(part)
        if found is not None:
            return found
    return None


def _field_schema(spec: _Spec, raw: Any, key: str) -> dict[str, Any]:
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
        item: dict[str, Any] = {"type": "string"}
        if labels is not None:
            item["enum"] = spec.string_list(labels, f"{key}.labels")
        schema = {"type": "array", "items": item}
    else:
        children = spec.mapping(node.get("fields"), f"{key}.fields")
        if not children:
            raise spec.fail(f"{key}.fields", "an object needs at least one field")
        schema = {
            "type": "object",
            "properties": {c: _field_schema(spec, v, f"{key}.fields.{c}") for c, v in children.items()},
            "required": list(children),
            "additionalProperties": False,
        }
    if node.get("description"):
        schema["description"] = spec.string(node, "description", f"{key}.")
    if node.get("nullable"):
        described = {"description": schema["description"]} if "description" in schema else {}
        schema = {"anyOf": [schema, {"type": "null"}], **described}
    return schema


def _scorers(spec: _Spec, fields: Mapping[str, Any], overrides: Mapping[str, Any],
             prefix: str = "") -> list[tuple[str, str, str]]:
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


def make_scorer(leaves: Sequence[tuple[str, str, str]]) -> Scorer:
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


def _template_generator(spec: _Spec, data: Mapping[str, Any], languages: Sequence[str], instruction: str) -> Generator:
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
                raise LingoforgeError(f"{spec.path}: the `examples:` templates for {lang!r} give too few distinct "
                                      f"inputs for {n} examples; add templates or slot values")
            seen.add(text)
            output = {k: fill(v, chosen) if isinstance(v, str) else v for k, v in tpl["output"].items()}
            out.append(Example(instruction, text, output, lang, {"template": by_lang[lang].index(tpl)}))
        return out

    return generate


class _Defaulting(dict[str, str]):
    def __missing__(self, key: str) -> str:
        return "{" + key + "}"


Known = Mapping[str, Task] | Callable[[], Mapping[str, Task]] | None


def load_yaml_task(path: str | Path, known: Known = None) -> YamlTask:
    """Build a Task from a YAML file; raises ``TaskDefinitionError`` naming the file and key path.

    ``known`` are the tasks an ``extends:`` name may refer to besides the YAML files on ``$LINGOFORGE_TASK_PATH``:
    a mapping, or a function giving one, called only when a file extends a task by name (``lingoforge.get_task``
    passes the registry's this way; the registry itself passes the tasks it has collected so far, so loading
    ``$LINGOFORGE_TASK_PATH`` never asks the registry that is being built). ``None``: no other tasks.
    """
    return _load(Path(path), known, ())


def task_path_files() -> Iterable[Path]:
    """The YAML task files on ``$LINGOFORGE_TASK_PATH`` (files, or folders of ``.yaml``/``.yml`` files)."""
    for folder in filter(None, os.environ.get(ENV_TASK_PATH, "").split(os.pathsep)):
        base = Path(folder)
        if base.is_file():
            yield base
        elif base.is_dir():
            yield from sorted(p for p in base.iterdir() if p.suffix in (".yaml", ".yml"))


def _read(path: Path) -> Any:
    try:
        return yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as exc:
        raise TaskDefinitionError(f"{path}: cannot read: {exc}") from None
    except yaml.YAMLError as exc:
        raise TaskDefinitionError(f"{path}: {yaml_problem(exc)}") from None


def _load(path: Path, known: Known, chain: tuple[Path, ...]) -> YamlTask:
    """``chain`` holds the files whose ``extends:`` led here, to catch a file that extends itself in a loop."""
    spec = _Spec(path)
    data = spec.mapping(_read(path), "(top level)")
    name = spec.string(data, "name")
    if not TASK_NAME_PATTERN.match(name):
        raise spec.fail("name", f"{name!r} must match {TASK_NAME_PATTERN.pattern}")
    if data.get("extends") is None:
        unknown = [key for key in data if key not in DECLARED_KEYS]
        if unknown:  # a typo (system_promt) would otherwise leave its setting silently empty
            raise spec.fail(str(unknown[0]), f"unknown key; a task file takes {', '.join(DECLARED_KEYS)}")
        return _declared(spec, data, name)
    unknown = [key for key in data if key not in EXTENDS_KEYS]
    if unknown:
        raise spec.fail(str(unknown[0]), f"is not a key of a task that extends another; use {', '.join(EXTENDS_KEYS)}")
    return _extend(spec, data, name, _template(spec, data, known, (*chain, path)))


def _declared(spec: _Spec, data: Mapping[str, Any], name: str) -> YamlTask:
    """A task whose fields are all declared in the file."""
    languages = spec.string_list(data.get("languages"), "languages", LANGUAGE_PATTERN, "an ISO 639-1 code")
    fields = spec.mapping(data.get("fields"), "fields")
    if not fields:
        raise spec.fail("fields", "declare at least one output field")
    properties = {f: _field_schema(spec, raw, f"fields.{f}") for f, raw in fields.items()}
    schema: dict[str, Any] = {"type": "object", "properties": properties, "required": list(fields),
                              "additionalProperties": False}
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
    generator = _template_generator(spec, data, languages, instruction) if data.get("examples") is not None else None
    return YamlTask(
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
        source=str(spec.path),
        metric_fields={m: (dotted.split(".")[0],) for dotted, m, _ in leaves},
    )


# -- extends ---------------------------------------------------------------------------------------------


def _template(spec: _Spec, data: Mapping[str, Any], known: Known,
              chain: tuple[Path, ...]) -> Task:
    """The task ``extends:`` names: a YAML file (relative to this one), else a task by name, from ``known``
    (the plugins, and YAML tasks already registered) or from the YAML files on ``$LINGOFORGE_TASK_PATH``."""
    target = spec.string(data, "extends")
    if target.endswith((".yaml", ".yml")) or "/" in target or os.sep in target:
        file = spec.path.parent / target
        if not file.is_file():
            raise spec.fail("extends", f"file {file} does not exist")
        return _load_template(spec, target, file, known, chain)
    tasks = (known() if callable(known) else known) or {}
    if target in tasks:
        return tasks[target]
    on_path = {_declared_name(file): file for file in task_path_files()}
    if target in on_path:
        return _load_template(spec, target, on_path[target], known, chain)
    names = sorted(set(tasks) | {n for n in on_path if n})
    hint = "" if known is not None else (" (a file loaded by itself knows only $LINGOFORGE_TASK_PATH; "
                                         "lingoforge.get_task knows every registered task)")
    raise spec.fail("extends", f"unknown task {target!r}; known tasks: {', '.join(names) or 'none'}{hint}")


def _load_template(spec: _Spec, target: str, file: Path, known: Known,
                   chain: tuple[Path, ...]) -> Task:
    if file.resolve() in {p.resolve() for p in chain}:
        loop = " → ".join(str(p) for p in (*chain, file))
        raise spec.fail("extends", f"{target!r} is a circular extends: {loop}")
    return _load(file, known, chain)


def _declared_name(file: Path) -> str:
    """The ``name:`` a task file declares ("" when unreadable: its own load reports why)."""
    try:
        data = _read(file)
    except TaskDefinitionError:
        return ""
    name = data.get("name") if isinstance(data, Mapping) else None
    return name if isinstance(name, str) else ""


def _extend(spec: _Spec, data: Mapping[str, Any], name: str, base: Task) -> YamlTask:
    """``base`` with this file's changes. The template's scorer still scores its remaining fields (the metrics
    of removed fields are dropped); added fields are scored by their type, as in a declared task."""
    if name == base.name:
        raise spec.fail("name", f"{name!r} is the name of the task it extends; give the new task its own name")
    schema = base.schema
    props: dict[str, Any] = schema.setdefault("properties", {})
    removed = _removed_fields(spec, data, base.name, list(props))
    relabeled, added = _change_fields(spec, data, base.name, props, removed)
    for f in removed:
        del props[f]
    if not props:
        raise spec.fail("remove_fields", "leaves the task without output fields")
    schema["required"] = [*(f for f in schema.get("required", ()) if f not in removed), *added]

    metric_fields = scored_fields(base)
    dropped: set[str] = set()
    if removed:
        if metric_fields is None:
            raise spec.fail("remove_fields", f"{base.name} cannot generate an example to tell which of its metrics "
                                             f"score {', '.join(removed)}; declare the task's fields instead")
        dropped = {m for m, fs in metric_fields.items() if set(fs) & set(removed)}
    kept = [m for m in base.score(None, {}) if m not in dropped]
    leaves = _scorers(spec, added, spec.mapping(data.get("scoring") or {}, "scoring"))
    for dotted, metric, _ in leaves:
        if metric in kept:
            raise spec.fail(f"fields.{dotted.split('.')[0]}", f"its metric {metric!r} is a metric of {base.name} "
                                                             "already; give the field another name")
    metrics = [*kept, *(m for _, m, _ in leaves)]
    if data.get("primary_metric") is None and base.primary_metric not in metrics:
        raise spec.fail("primary_metric", f"the primary metric of {base.name}, {base.primary_metric!r}, scores a "
                                          f"removed field; name one of {metrics}")
    primary = spec.string(data, "primary_metric", required=False, default=base.primary_metric)
    if primary not in metrics:
        raise spec.fail("primary_metric", f"{primary!r} is not one of the metrics {metrics}")

    languages = (spec.string_list(data["languages"], "languages", LANGUAGE_PATTERN, "an ISO 639-1 code")
                 if data.get("languages") is not None else list(base.languages))
    system_prompt = (spec.string(data, "system_prompt") if data.get("system_prompt") is not None
                     else _adapt(spec, "system_prompt", base.system_prompt, base.name, relabeled, removed, []))
    bullets = [_bullet(f, props[f]) for f in added]
    instruction = (spec.string(data, "instruction") if data.get("instruction") is not None
                   else _adapt(spec, "instruction", base.instruction, base.name, relabeled, removed, bullets))

    changes = [f"its own labels for {', '.join(relabeled)}"] if relabeled else []
    changes += [f"added field(s) {', '.join(added)}"] if added else []
    outside = [lang for lang in languages if lang not in base.languages]
    changes += [f"language(s) {', '.join(outside)} it does not cover"] if outside else []
    generator, off = _generation(spec, data, name, base, changes, languages, removed, instruction)
    return YamlTask(
        name=name,
        version=spec.string(data, "version", required=False, default="1"),
        description=spec.string(data, "description", required=False,
                                default=f"{base.name} with the changes of {spec.path.name}"),
        languages=tuple(languages),
        system_prompt=system_prompt,
        instruction=instruction,
        output_schema=schema,
        scorer=_extended_scorer(base.scorer, dropped, make_scorer(leaves)),
        primary_metric=primary,
        fields=(*(f for f in base.fields if f not in removed),
                *(f for f, raw in added.items() if raw["type"] == "enum")),
        text_fields=(*(f for f in base.text_fields if f not in removed),
                     *(f for f, raw in added.items() if raw["type"] == "text" and raw.get("in_input_language"))),
        generator=generator,
        consistency=base.consistency,
        max_input_tokens=base.max_input_tokens,
        source=str(spec.path),
        extends=base.name,
        metric_fields=None if metric_fields is None else {
            **{m: fs for m, fs in metric_fields.items() if m not in dropped},
            **{m: (dotted.split(".")[0],) for dotted, m, _ in leaves},
        },
        generation_off=off,
    )


def _generation(spec: _Spec, data: Mapping[str, Any], name: str, base: Task, changes: Sequence[str],
                languages: Sequence[str], removed: Sequence[str], instruction: str) -> tuple[Generator | None, str]:
    """The generator of an extending task and, when there is none, why (the message ``generate`` gives).

    The template's generator still serves when the labels, fields and languages it knows are unchanged
    (its examples lose the removed fields); otherwise it would produce the template's labels, so the file's
    own ``examples:`` templates, or user data, must provide the examples.
    """
    if data.get("examples") is not None:
        return _template_generator(spec, data, languages, instruction), ""
    if changes:
        return None, (f"task {name!r} extends {base.name} with {', '.join(changes)}; generating examples is off for "
                      f"it — bring your own data (--data FILE), or give `examples:` templates in {spec.path}")
    if base.has_generator:
        return without_fields(base.generate, instruction, removed), ""
    if isinstance(base, YamlTask) and base.generation_off:
        return None, f"task {name!r} extends {base.name}, which cannot generate examples: {base.generation_off}"
    return None, ""


def _removed_fields(spec: _Spec, data: Mapping[str, Any], template: str, fields: list[str]) -> list[str]:
    if data.get("remove_fields") is None:
        return []
    removed = spec.string_list(data["remove_fields"], "remove_fields")
    for i, f in enumerate(removed):
        if f not in fields:
            raise spec.fail(f"remove_fields[{i}]", f"unknown field {f!r}; {template} has {', '.join(fields)}")
    return removed


def _change_fields(spec: _Spec, data: Mapping[str, Any], template: str, props: dict[str, Any],
                   removed: Sequence[str]) -> tuple[Relabeled, dict[str, Mapping[str, Any]]]:
    """Apply ``fields:`` to the template's schema properties (a copy): new labels and descriptions of its
    fields, and added fields. Returns the relabeled fields (old and new labels) and the added fields' YAML."""
    relabeled: Relabeled = {}
    added: dict[str, Mapping[str, Any]] = {}
    for f, raw in spec.mapping(data.get("fields") or {}, "fields").items():
        key = f"fields.{f}"
        node = spec.mapping(raw, key)
        if f in removed:
            raise spec.fail(key, f"{f!r} is also in remove_fields")
        if "type" in node:
            if f in props:
                raise spec.fail(f"{key}.type", f"{template} already has a field {f!r}; change its labels or "
                                               "description without `type:`, or add a field with another name")
            props[f] = _field_schema(spec, node, key)
            added[f] = node
            continue
        if f not in props:
            raise spec.fail(key, f"unknown field {f!r}; {template} has {', '.join(props)} "
                                 "(give `type:` to add a field)")
        for k in node:
            if k not in OVERRIDE_KEYS:
                raise spec.fail(f"{key}.{k}", f"a field of {template} takes only {' and '.join(OVERRIDE_KEYS)} here; "
                                              "add a field with another name to change more")
        if "labels" in node:
            target = enum_node(props[f])
            if target is None:
                kind = props[f].get("type", "structured")
                raise spec.fail(f"{key}.labels", f"{f!r} is a {kind} field of {template}, not an enum; "
                                                 "only enum fields take labels")
            labels = spec.string_list(node["labels"], f"{key}.labels")
            old = [v for v in target["enum"] if v is not None]
            target["enum"] = labels + [None] * (None in target["enum"])
            if set(labels) != set(old):
                relabeled[f] = (old, labels)
                props[f].pop("description", None)  # it described the template's labels
        if "description" in node:
            props[f]["description"] = spec.string(node, "description", f"{key}.")
    return relabeled, added


def _extended_scorer(template: Scorer, dropped: set[str], added: Scorer) -> Scorer:
    def score(pred: Mapping[str, Any] | None, gold: Mapping[str, Any]) -> dict[str, float]:
        result = {m: v for m, v in template(pred, gold).items() if m not in dropped}
        result.update(added(pred, gold))
        return result

    return score


def _adapt(spec: _Spec, key: str, text: str, template: str, relabeled: Relabeled,
           removed: Sequence[str], bullets: Sequence[str]) -> str:
    """The template's prompt adapted by :func:`adapt_prompt`, refused when it still names a replaced label.

    A prompt that still names a replaced label after that (priority rules written in prose, a grouped
    taxonomy) would teach the model the template's labels, so the file must give its own (``lingoforge labels
    -o`` writes one, with :func:`drop_stale_rules`).
    """
    text = adapt_prompt(text, relabeled, removed, bullets)
    stale = stale_labels(text, relabeled)
    if stale:
        raise spec.fail(key, f"the {key.replace('_', ' ')} of {template} still names its label(s) "
                             f"{', '.join(map(repr, stale))}; give your own `{key}:` (`lingoforge tasks --task "
                             f"{template} --show` prints the template's)")
    return text


def adapt_prompt(text: str, relabeled: Relabeled, removed: Sequence[str] = (), bullets: Sequence[str] = ()) -> str:
    """A template's prompt for the changed fields: its comma-separated list of a field's old labels becomes
    the new list, its ``- field: …`` lines of removed fields go and lines for added fields follow its own."""
    for old, new in relabeled.values():
        text = text.replace(", ".join(old), ", ".join(new))
    lines = [line for line in text.split("\n") if field_line(line) not in removed]
    field_lines = [i for i, line in enumerate(lines) if field_line(line)]
    if field_lines:
        lines[field_lines[-1] + 1:field_lines[-1] + 1] = bullets
    return "\n".join(lines)


def _names(label: str) -> re.Pattern[str]:
    return re.compile(rf"(?<!\w){re.escape(label)}(?!\w)")


def stale_labels(text: str, relabeled: Relabeled) -> list[str]:
    """The replaced labels ``text`` still names. Labels shorter than 3 characters are not looked for: language
    codes such as ``it`` are ordinary words too."""
    return [label for old, new in relabeled.values() for label in old
            if label not in new and len(label) >= 3 and _names(label).search(text)]


def drop_stale_rules(text: str, relabeled: Relabeled) -> tuple[str, list[str]]:
    """``text`` (adapted) without what it says about replaced labels, and a note for each thing taken out.

    In a ``- field: …`` line, a ``;``-separated rule inside parentheses that names a replaced label goes
    (``(urgent: the service is down…; high: …)`` keeps ``high: …``); a field line that still names one becomes
    ``- field: one of`` its new labels; elsewhere, a sentence that names one goes.
    """
    notes: list[str] = []

    def named(part: str) -> str:
        return ", ".join(map(repr, stale_labels(part, relabeled)))

    def rules(match: re.Match[str]) -> str:
        kept = []
        for rule in match.group(1).split(";"):
            if stale_labels(rule, relabeled):
                notes.append(f"rule {rule.strip()!r} (names {named(rule)})")
            else:
                kept.append(rule.strip())
        return f" ({'; '.join(kept)})" if kept else ""

    out: list[str] = []
    for line in text.split("\n"):
        field = field_line(line)
        if not stale_labels(line, relabeled):
            out.append(line)
            continue
        if field:
            line = re.sub(r"\s*\(([^()]*)\)", rules, line)
        if not stale_labels(line, relabeled):
            out.append(line)
        elif field in relabeled:
            notes.append(f"line {line.strip()!r} (names {named(line)}), rewritten with its labels")
            out.append(f"- {field}: one of {', '.join(relabeled[field][1])}")
        else:
            kept = []
            for sentence in re.split(r"(?<=[.!?])\s+", line):
                if stale_labels(sentence, relabeled):
                    notes.append(f"sentence {sentence.strip()!r} (names {named(sentence)})")
                else:
                    kept.append(sentence)
            if kept:
                out.append(" ".join(kept))
    return "\n".join(out), notes


def _bullet(field: str, schema: Mapping[str, Any]) -> str:
    """A prompt line for an added field, in the ``- field: …`` style of the template's lines."""
    labels = enum_node(schema)
    parts = [f"one of {', '.join(str(v) for v in labels['enum'] if v is not None)}"] if labels else []
    parts += [str(schema["description"])] if schema.get("description") else []
    return f"- {field}: {'; '.join(parts)}" if parts else f"- {field}"
