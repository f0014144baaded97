"""The plugin contract: a ``Task`` says what to ask, what shape the answer has and how to score it.

Tasks are plain frozen dataclasses carrying callables (the style of simonw's ``llm``): the core never
dispatches on a task name, it only calls the methods of the object a plugin registered.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from .errors import LingoforgeError

TASK_NAME_PATTERN = re.compile(r"^[a-z][a-z0-9_]{1,63}$")
LANGUAGE_PATTERN = re.compile(r"^[a-z]{2}$")
_FIELD_LINE = re.compile(r"^\s*[-*]\s*([\w.]+)\s*:")  # ``- category: one of ...``: a prompt line about one field

Generator = Callable[[int, int, Sequence[str]], "list[Example]"]
Scorer = Callable[[Mapping[str, Any] | None, Mapping[str, Any]], dict[str, float]]
Consistency = Callable[[Sequence[Mapping[str, Any] | None]], float]


@dataclass(frozen=True)
class Example:
    """One training or test item. ``output`` is a dict valid against the task's output schema."""

    instruction: str
    input: str
    output: Mapping[str, Any]
    language: str
    meta: Mapping[str, Any] = field(default_factory=dict)

    def to_record(self) -> dict[str, Any]:
        """The canonical JSONL record (``meta`` only when non-empty, so files stay small)."""
        record: dict[str, Any] = {
            "instruction": self.instruction,
            "input": self.input,
            "output": dict(self.output),
            "language": self.language,
        }
        if self.meta:
            record["meta"] = dict(self.meta)
        return record

    @classmethod
    def from_record(cls, record: Mapping[str, Any]) -> Example:
        """Inverse of :meth:`to_record` for canonical records (importers normalise other formats first)."""
        output = record["output"]
        if isinstance(output, str):
            output = json.loads(output)
        return cls(
            instruction=str(record.get("instruction", "")),
            input=str(record["input"]),
            output=output,
            language=str(record.get("language", "")),
            meta=dict(record.get("meta") or {}),
        )


@dataclass(frozen=True)
class Task:
    """A business task a model is fine-tuned for.

    ``fields`` names the label fields reported per language (accuracy, macro-F1, confusion matrix);
    ``text_fields`` names free-text output fields that must be written in the input's language.
    ``generator`` is ``None`` for tasks that only learn from user data (YAML tasks without templates).
    ``metric_fields`` maps each metric to the output fields it scores when the task knows it (a YAML task does;
    ``None``: measured on a generated answer when needed, see :func:`scored_fields`). ``only`` is set by
    :func:`restrict`: the output fields, of the task this one is named after, that it answers.
    """

    name: str
    version: str
    description: str
    languages: tuple[str, ...]
    system_prompt: str
    instruction: str
    output_schema: Mapping[str, Any]
    scorer: Scorer
    primary_metric: str
    fields: tuple[str, ...] = ()
    text_fields: tuple[str, ...] = ()
    generator: Generator | None = None
    consistency: Consistency | None = None
    max_input_tokens: int | None = None
    source: str = ""
    metric_fields: Mapping[str, tuple[str, ...]] | None = None
    only: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        # Own a deep copy of the schema, so a plugin mutating its dict later cannot change the task.
        object.__setattr__(self, "output_schema", copy.deepcopy(dict(self.output_schema)))
        object.__setattr__(self, "languages", tuple(self.languages))
        object.__setattr__(self, "fields", tuple(self.fields))
        object.__setattr__(self, "text_fields", tuple(self.text_fields))

    @property
    def has_generator(self) -> bool:
        return self.generator is not None

    @property
    def schema(self) -> dict[str, Any]:
        """A deep copy of the output schema, safe to hand to code that may modify it."""
        return copy.deepcopy(dict(self.output_schema))

    def generate(self, n: int, seed: int = 0, languages: Sequence[str] | None = None) -> list[Example]:
        """``n`` synthetic examples, deterministic for ``seed``, balanced over ``languages``."""
        if self.generator is None:
            raise LingoforgeError(
                f"task {self.name!r} has no example generator; bring your own data with --data FILE "
                "(a YAML task gets one when it declares `examples:` templates)"
            )
        langs = tuple(languages) if languages else self.languages
        unknown = [lang for lang in langs if lang not in self.languages]
        if unknown:
            raise LingoforgeError(
                f"task {self.name!r} has no generator text for {', '.join(unknown)}; "
                f"it covers {', '.join(self.languages)}"
            )
        return self.generator(n, seed, langs)

    def score(self, pred: Mapping[str, Any] | None, gold: Mapping[str, Any]) -> dict[str, float]:
        """Per-example metrics in [0, 1]; ``pred`` is ``None`` when the model output did not parse."""
        return self.scorer(pred, gold)

    def label_values(self, field_name: str) -> list[str]:
        """The allowed labels of an enum field, read from the output schema (``[]`` if not an enum)."""
        node: Any = self.output_schema
        for part in field_name.split("."):
            node = (node.get("properties") or {}).get(part, {}) if isinstance(node, Mapping) else {}
        values = node.get("enum") if isinstance(node, Mapping) else None
        if values is None and isinstance(node, Mapping):
            values = next((alt.get("enum") for alt in node.get("anyOf", []) if "enum" in alt), None)
        return [v for v in (values or []) if v is not None]


# -- a task answering some of its output fields ------------------------------------------------------------------


def field_line(line: str) -> str:
    """The output field a ``- field: …`` prompt line is about ("" for any other line)."""
    match = _FIELD_LINE.match(line)
    return match.group(1) if match else ""


def without_field_lines(text: str, removed: Sequence[str]) -> str:
    """``text`` without its ``- field: …`` lines about the ``removed`` fields."""
    return "\n".join(line for line in text.split("\n") if field_line(line) not in removed)


def scored_fields(task: Task) -> dict[str, tuple[str, ...]] | None:
    """Which output fields each metric of ``task`` scores: as the task records it, else measured on one generated
    answer (a metric scores a field when taking the field out of both the answer and the gold changes it).
    ``None`` for a task that neither records it nor has a generator."""
    if task.metric_fields is not None:
        return {m: tuple(fs) for m, fs in task.metric_fields.items()}
    if not task.has_generator:
        return None
    gold = dict(task.generate(1, 0)[0].output)
    full = task.score(gold, gold)
    uses: dict[str, list[str]] = {m: [] for m in full}
    for f in gold:
        rest = {k: v for k, v in gold.items() if k != f}
        for metric, value in task.score(rest, rest).items():
            if full.get(metric) != value:
                uses.setdefault(metric, []).append(f)
    return {m: tuple(fs) for m, fs in uses.items()}


def dropping(scorer: Scorer, dropped: set[str]) -> Scorer:
    """``scorer`` without the ``dropped`` metrics."""

    def score(pred: Mapping[str, Any] | None, gold: Mapping[str, Any]) -> dict[str, float]:
        return {m: v for m, v in scorer(pred, gold).items() if m not in dropped}

    return score


def without_fields(generator: Generator, instruction: str, removed: Sequence[str]) -> Generator:
    """``generator``'s examples without the ``removed`` output fields, asked with ``instruction``."""

    def generate(n: int, seed: int, languages: Sequence[str]) -> list[Example]:
        return [dataclasses.replace(ex, instruction=instruction,
                                    output={k: v for k, v in ex.output.items() if k not in removed})
                for ex in generator(n, seed, languages)]

    return generate


def restrict(task: Task, fields: Sequence[str]) -> Task:
    """``task`` answering only ``fields`` of its output: the schema, the prompts' ``- field:`` lines, the scoring (the
    metrics of the other fields dropped) and the generator follow.

    This is the run's task when the user's data carries a subset of the template's labels (an export has a
    category and a priority, not a model-written reply). It keeps the task's name, version and source, so the
    run records the task it came from, and ``only`` records these ``fields``.
    """
    props = list(task.output_schema.get("properties") or {})
    if not fields:
        raise LingoforgeError("--fields: name at least one output field")
    unknown = [f for f in fields if f not in props]
    if unknown:
        raise LingoforgeError(f"--fields: task {task.name!r} has no field {unknown[0]!r}; its fields: "
                              f"{', '.join(props)}")
    removed = [f for f in props if f not in fields]
    if not removed:
        return task
    uses = scored_fields(task)
    if uses is None:
        raise LingoforgeError(f"--fields: {task.name} cannot generate an example to tell which of its metrics score "
                              f"{', '.join(removed)}; declare the task's fields in a YAML file instead")
    dropped = {m for m, fs in uses.items() if set(fs) & set(removed)}
    kept = [m for m in task.score(None, {}) if m not in dropped]
    if not kept:
        raise LingoforgeError(f"--fields: every metric of {task.name} scores {', '.join(removed)}; keep one of them")
    schema = task.schema
    for f in removed:
        del schema["properties"][f]
    schema["required"] = [f for f in schema.get("required", ()) if f not in removed]
    instruction = without_field_lines(task.instruction, removed)
    return dataclasses.replace(
        task,
        system_prompt=without_field_lines(task.system_prompt, removed),
        instruction=instruction,
        output_schema=schema,
        scorer=dropping(task.scorer, dropped),
        primary_metric=task.primary_metric if task.primary_metric in kept else kept[0],
        fields=tuple(f for f in task.fields if f not in removed),
        text_fields=tuple(f for f in task.text_fields if f not in removed),
        generator=None if task.generator is None else without_fields(task.generator, instruction, removed),
        metric_fields={m: fs for m, fs in uses.items() if m not in dropped},
        only=tuple(f for f in props if f in fields),
    )
