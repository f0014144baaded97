"""``lingoforge new-task``: write an installable task plugin package the user then fills with real text.

The package registers through the ``lingoforge`` entry-point group exactly like the built-in tasks, has
their layout (``schema.json``, ``prompts.py``, ``generator.py``, ``scoring.py``, wired in ``__init__.py``),
and ships a test that runs the task contract, so a plugin author starts from a green test.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from string import Template

from .errors import LingoforgeError
from .fsutil import write_text
from .task import LANGUAGE_PATTERN, TASK_NAME_PATTERN

_LABEL = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_\- ]{0,63}$")

# One neutral request phrase per language; the author replaces these with real phrase banks.
_PHRASES = {
    "en": "Customer message about {label}, case {n}.",
    "de": "Kundennachricht zum Thema {label}, Fall {n}.",
    "fr": "Message client concernant {label}, dossier {n}.",
    "es": "Mensaje de cliente sobre {label}, caso {n}.",
    "it": "Messaggio del cliente su {label}, pratica {n}.",
    "pt": "Mensagem do cliente sobre {label}, caso {n}.",
    "zh": "关于{label}的客户留言，编号{n}。",
    "ja": "{label}に関するお客様からのメッセージ、番号{n}。",
}

_PYPROJECT = Template('''[build-system]
requires = ["setuptools>=69"]
build-backend = "setuptools.build_meta"

[project]
name = "lingoforge-$dist_name"
version = "0.1.0"
description = "lingoforge task plugin: $name"
requires-python = ">=3.10"
dependencies = ["lingoforge"]

[project.entry-points.lingoforge]
$name = "$package"

[tool.setuptools]
packages = ["$package"]

[tool.setuptools.package-data]
"$package" = ["schema.json"]
''')

_INIT = Template('''"""lingoforge task plugin `$name`: wiring only; the output is in schema.json, the prompts in
prompts.py, the examples in generator.py and the metrics in scoring.py."""

from __future__ import annotations

import json
from importlib.resources import files

from lingoforge import Task, hookimpl

from .generator import generate
from .prompts import INSTRUCTION, SYSTEM_PROMPT
from .scoring import score

TASK = Task(
    name="$name",
    version="0.1.0",
    description="Classify a message into one of the $name labels.",
    languages=$languages,
    system_prompt=SYSTEM_PROMPT,
    instruction=INSTRUCTION,
    output_schema=json.loads(files(__package__).joinpath("schema.json").read_text(encoding="utf-8")),
    scorer=score,
    primary_metric="label_accuracy",
    fields=("label",),
    generator=generate,
)


@hookimpl
def register_tasks(register):
    register(TASK)
''')

_GENERATOR = Template('''"""Seeded examples. Replace PHRASES with real, native phrasings per label and language."""

from __future__ import annotations

import random
from collections.abc import Sequence

from lingoforge import Example

from .prompts import INSTRUCTION

LABELS = $labels
PHRASES = $phrases


def generate(n: int, seed: int, languages: Sequence[str]) -> list[Example]:
    """`n` examples balanced over languages and labels; the same seed gives the same list."""
    rng = random.Random(seed)
    examples = []
    for i in range(n):
        language = languages[i % len(languages)]
        label = LABELS[(i // len(languages)) % len(LABELS)]
        phrase = PHRASES.get(language, "[" + language + "] {label} #{n}")
        text = phrase.format(label=label, n=f"{seed}-{i}-{rng.randrange(10**6)}")
        examples.append(Example(INSTRUCTION, text, {"label": label}, language))
    return examples
''')

_PROMPTS = Template('''"""The system prompt, and the instruction before every input in training, eval and serving."""

from __future__ import annotations

SYSTEM_PROMPT = "You label customer messages. Answer with JSON only."
INSTRUCTION = "Label this message. Reply with a JSON object {\\"label\\": ...} using one of: $label_list."
''')

_SCORING = '''"""Per-example metrics in [0, 1]; `pred` is None when the model answer did not parse."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


def score(pred: Mapping[str, Any] | None, gold: Mapping[str, Any]) -> dict[str, float]:
    """Exact match of the label."""
    if not isinstance(pred, Mapping):
        return {"label_accuracy": 0.0}
    return {"label_accuracy": float(pred.get("label") == gold.get("label"))}
'''

_TEST = Template('''"""The lingoforge task contract, run on this plugin's task."""

from lingoforge.testing import assert_task_contract

from $package import TASK


def test_task_contract():
    assert_task_contract(TASK)


def test_registered_through_entry_point():
    from lingoforge.plugins import get_task, reset_registry

    reset_registry()
    assert get_task("$name").source == "$name"
''')

_README = Template('''# lingoforge-$dist_name

A [lingoforge](https://pypi.org/project/lingoforge/) task plugin. Install it next to lingoforge and the task
appears in `lingoforge tasks`:

    pip install -e .
    lingoforge tasks
    pytest tests

Edit `$package/generator.py` (native phrasings per label and language), `$package/schema.json` (the output),
`$package/prompts.py` (system prompt and instruction) and `$package/scoring.py` (metrics). Keep the contract
test green.
''')


def scaffold(name: str, labels: list[str], languages: list[str], directory: Path) -> Path:
    """Write the plugin package for task ``name`` into ``directory/name``; returns that folder."""
    problems = []
    if not TASK_NAME_PATTERN.match(name):
        problems.append(f"task name {name!r} must match {TASK_NAME_PATTERN.pattern}")
    problems += [
        f"label {lab!r} must be 1-64 letters, digits, spaces, '_' or '-'" for lab in labels if not _LABEL.match(lab)
    ]
    if len(set(labels)) != len(labels) or len(labels) < 2:
        problems.append("give at least two distinct labels")
    problems += [
        f"language {lang!r} is not an ISO 639-1 code" for lang in languages if not LANGUAGE_PATTERN.match(lang)
    ]
    if problems:
        raise LingoforgeError("cannot create the task:\n  - " + "\n  - ".join(problems))
    root = directory / name
    if root.exists():
        raise LingoforgeError(f"{root} already exists; choose another --dir or remove it")
    package = f"lingoforge_{name}"
    values = {
        "name": name,
        "dist_name": name.replace("_", "-"),
        "package": package,
        "labels": json.dumps(labels, ensure_ascii=False),
        "label_list": ", ".join(labels),
        "languages": repr(tuple(languages)),
        "phrases": json.dumps({lang: _PHRASES.get(lang, "[" + lang + "] {label} #{n}") for lang in languages},
                              ensure_ascii=False, indent=4),
    }
    schema = {
        "type": "object",
        "properties": {"label": {"type": "string", "enum": labels}},
        "required": ["label"],
        "additionalProperties": False,
    }
    write_text(root / "pyproject.toml", _PYPROJECT.substitute(values))
    write_text(root / "README.md", _README.substitute(values))
    write_text(root / package / "__init__.py", _INIT.substitute(values))
    write_text(root / package / "prompts.py", _PROMPTS.substitute(values))
    write_text(root / package / "generator.py", _GENERATOR.substitute(values))
    write_text(root / package / "scoring.py", _SCORING)
    write_text(root / package / "schema.json", json.dumps(schema, ensure_ascii=False, indent=2) + "\n")
    write_text(root / "tests" / f"test_{name}.py", _TEST.substitute(values))
    return root
