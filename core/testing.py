"""The task contract test, reusable by any plugin author.

    from lingoforge.testing import assert_task_contract
    def test_contract():
        assert_task_contract(get_task("my_task"))

Every problem found is listed in one AssertionError, so a plugin author fixes them in one pass. The other
checks here are stricter properties the built-in tasks keep (``tests/test_plugin_contract.py`` runs all of
them on every registered task), offered to plugins that want the same guarantees.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

from .prompts import example_messages
from .samples import write_samples
from .schema import validate
from .task import Example, Task


def assert_task_contract(task: Task, n: int | None = None, examples: Sequence[Example] | None = None) -> None:
    """Check a task: deterministic generator per seed, every language covered, outputs valid against the
    schema, no duplicate inputs, ``score(gold, gold)`` perfect and ``score(None, gold)`` zero.

    Tasks without a generator are checked on ``examples`` (required then).
    """
    problems: list[str] = []
    n = n or max(4 * len(task.languages), 20)
    if task.has_generator:
        first = task.generate(n, 0)
        again = task.generate(n, 0)
        if [e.to_record() for e in first] != [e.to_record() for e in again]:
            problems.append("generator is not deterministic: generate(n, seed=0) differs between two calls")
        other = task.generate(n, 1)
        if [e.input for e in other] == [e.input for e in first]:
            problems.append("generator ignores the seed: seeds 0 and 1 give the same inputs")
        if len(first) != n:
            problems.append(f"generate({n}) returned {len(first)} examples")
        examples = first
    elif not examples:
        raise ValueError(f"task {task.name!r} has no generator: pass examples=[...] to check it")
    langs = {e.language for e in examples}
    if task.has_generator:
        missing = [lang for lang in task.languages if lang not in langs]
        if missing:
            problems.append(f"languages never generated: {missing}")
    extra = sorted(langs - set(task.languages))
    if extra:
        problems.append(f"examples in undeclared languages: {extra}")
    inputs = [e.input for e in examples]
    if len(set(inputs)) != len(inputs):
        problems.append(f"{len(inputs) - len(set(inputs))} duplicate inputs")
    for i, ex in enumerate(examples):
        issues = validate(task.schema, dict(ex.output))
        if issues:
            problems.append(f"example {i} ({ex.language}) output invalid: {issues[0]}")
            continue
        if not ex.input.strip():
            problems.append(f"example {i} ({ex.language}) has an empty input")
        example_messages(task, ex)
        perfect = task.score(dict(ex.output), dict(ex.output))
        if task.primary_metric not in perfect:
            problems.append(f"primary metric {task.primary_metric!r} missing from scores {sorted(perfect)}")
        imperfect = {k: v for k, v in perfect.items() if abs(v - 1.0) > 1e-9}
        if imperfect:
            problems.append(f"example {i} ({ex.language}): score(gold, gold) is not perfect: {imperfect}")
        try:
            empty = task.score(None, dict(ex.output))
        except Exception as exc:  # the contract is precisely that this must not raise
            problems.append(f"score(None, gold) raised {exc!r}")
        else:
            nonzero = {k: v for k, v in empty.items() if v != 0.0}
            if nonzero:
                problems.append(f"example {i} ({ex.language}): score(None, gold) is not zero: {nonzero}")
        if len(problems) > 20:
            break
    if problems:
        raise AssertionError(f"task {task.name!r} breaks the task contract:\n  - " + "\n  - ".join(problems[:20]))


def jsonl_bytes(examples: Sequence[Example]) -> bytes:
    """The examples as canonical JSON lines: equal bytes mean equal text, values and key order."""
    return "".join(json.dumps(e.to_record(), ensure_ascii=False) + "\n" for e in examples).encode("utf-8")


def assert_reproducible(task: Task, n: int, seed: int = 0) -> None:
    """``generate(n, seed)`` gives the same bytes twice, and in a fresh interpreter with another string-hash seed:
    a dataset is named by its seed, so no set or dict-hash order may leak into the text or the key order.

    The fresh interpreter looks the task up by name, so ``task`` must be registered (an installed plugin, or a
    YAML file on ``$LINGOFORGE_TASK_PATH``).
    """
    here = jsonl_bytes(task.generate(n, seed))
    if jsonl_bytes(task.generate(n, seed)) != here:
        raise AssertionError(f"task {task.name!r}: generate({n}, {seed}) gives other bytes on a second call")
    hash_seed = "54321" if os.environ.get("PYTHONHASHSEED") == "12345" else "12345"  # not this process's
    code = (
        "import hashlib; from lingoforge import get_task; from lingoforge.testing import jsonl_bytes; "
        f"print(hashlib.sha256(jsonl_bytes(get_task({task.name!r}).generate({n}, {seed}))).hexdigest())"
    )
    child = subprocess.run([sys.executable, "-c", code], env={**os.environ, "PYTHONHASHSEED": hash_seed},
                           capture_output=True, text=True, check=False)
    if child.returncode != 0:
        raise AssertionError(f"task {task.name!r}: generating in a fresh interpreter failed:\n{child.stderr}")
    if child.stdout.strip() != hashlib.sha256(here).hexdigest():
        raise AssertionError(f"task {task.name!r}: generate({n}, {seed}) gives other bytes in a fresh interpreter "
                             f"(PYTHONHASHSEED={hash_seed}): iteration order of a set or dict leaks into the data")


def assert_languages_interleaved(task: Task, examples: Sequence[Example]) -> None:
    """Example ``i`` is in ``task.languages[i % len(languages)]``: every prefix of a generated file, and so every
    ``-n``, holds each language within one example of its equal share."""
    expected = [task.languages[i % len(task.languages)] for i in range(len(examples))]
    wrong = [(i, e.language, expected[i]) for i, e in enumerate(examples) if e.language != expected[i]]
    if wrong:
        raise AssertionError(f"task {task.name!r}: languages are not interleaved; (index, got, expected): {wrong[:5]}")


def assert_samples_current(task: Task, folder: Path) -> None:
    """``folder`` holds exactly what ``lingoforge.samples.write_samples(task, folder)`` writes, byte for byte,
    so the samples a reviewer reads are the generator's real output."""
    with tempfile.TemporaryDirectory() as fresh:
        written = {path.name: path.read_bytes() for path in write_samples(task, Path(fresh))}
    committed = {path.name: path.read_bytes() for path in folder.glob("*.jsonl")}
    stale = sorted(name for name in written.keys() | committed.keys() if written.get(name) != committed.get(name))
    if stale:
        raise AssertionError(f"{folder}: {', '.join(stale)} differ from the generator's samples; rewrite them with "
                             f"python -m lingoforge.samples {task.name}")
