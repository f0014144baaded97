"""The plugin contract: a ``Task`` says what to ask, what shape the answer has and how to score it.

Tasks are plain frozen dataclasses carrying callables (the style of simonw's ``llm``): the core never
dispatches on a task name, it only calls the methods of the object a plugin registered.
"""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

TASK_NAME_PATTERN = re.compile(r"^[a-z][a-z0-9_]{1,63}$")
LANGUAGE_PATTERN = re.compile(r"^[a-z]{2}$")

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
            from .errors import LingoforgeError

            raise LingoforgeError(
                f"task {self.name!r} has no example generator; bring your own data with --data FILE "
                "(a YAML task gets one when it declares `examples:` templates)"
            )
        langs = tuple(languages) if languages else self.languages
        unknown = [lang for lang in langs if lang not in self.languages]
        if unknown:
            from .errors import LingoforgeError

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
