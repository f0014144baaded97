"""The task contract test, reusable by any plugin author.

    from lingoforge.testing import assert_task_contract
    def test_contract():
        assert_task_contract(get_task("my_task"))

Every problem found is listed in one AssertionError, so a plugin author fixes them in one pass.
"""

from __future__ import annotations

from collections.abc import Sequence

from .prompts import example_messages
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
