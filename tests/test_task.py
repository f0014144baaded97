"""Task/Example contract, prompts and output parsing."""

from __future__ import annotations

import dataclasses

import pytest
from lingoforge import Example, Task
from lingoforge.prompts import answer_text, example_messages, prompt_completion
from lingoforge.schema import parse_output
from lingoforge.testing import assert_task_contract

SCHEMA = {"type": "object", "properties": {"category": {"type": "string", "enum": ["shipping", "billing"]},
                                           "note": {"type": "string"}},
          "required": ["category", "note"], "additionalProperties": False}


def _score(pred, gold):
    return {"category_accuracy": float(bool(pred) and pred.get("category") == gold["category"])}


def _gen(n, seed, langs):
    return [Example("Classify.", f"ticket {seed}-{i}", {"note": "x", "category": "shipping"}, langs[i % len(langs)])
            for i in range(n)]


TASK = Task("demo", "1", "d", ("en", "es"), "You triage.", "Classify.", SCHEMA, _score, "category_accuracy",
            ("category",), generator=_gen)


def test_task_is_frozen_and_owns_its_schema() -> None:
    schema = {"type": "object", "properties": {}}
    task = dataclasses.replace(TASK, output_schema=schema)
    schema["properties"]["x"] = {}
    assert task.output_schema["properties"] == {}
    with pytest.raises(dataclasses.FrozenInstanceError):
        task.name = "other"  # type: ignore[misc]
    assert TASK.label_values("category") == ["shipping", "billing"]


def test_messages_use_schema_key_order_and_keep_unicode() -> None:
    ex = Example("Classify.", "Han pasado 10 días", {"note": "¿dónde?", "category": "shipping"}, "es")
    assert answer_text(TASK, ex.output) == '{"category": "shipping", "note": "¿dónde?"}'
    messages = example_messages(TASK, ex)
    assert [m["role"] for m in messages] == ["system", "user", "assistant"]
    assert messages[1]["content"] == "Classify.\n\nHan pasado 10 días"
    pc = prompt_completion(TASK, ex)
    assert pc["completion"][0]["role"] == "assistant" and len(pc["prompt"]) == 2


def test_contract_passes_for_a_good_task_and_lists_problems_of_a_bad_one() -> None:
    assert_task_contract(TASK)
    bad = dataclasses.replace(TASK, generator=lambda n, seed, langs: [
        Example("c", "same", {"category": "nope", "note": "x"}, "en") for _ in range(n)])
    with pytest.raises(AssertionError) as info:
        assert_task_contract(bad, n=4)
    text = str(info.value)
    assert "duplicate inputs" in text and "languages never generated: ['es']" in text and "output invalid" in text
    assert "ignores the seed" in text


@pytest.mark.parametrize(("text", "value", "valid", "lenient"), [
    ('{"category": "billing", "note": "n"}', {"category": "billing", "note": "n"}, True, False),
    ('Sure! ```json\n{"category": "billing", "note": "n",}\n```', {"category": "billing", "note": "n"}, True, True),
    ('{"category": "refund", "note": "n"}', {"category": "refund", "note": "n"}, False, False),
    ("no json here", None, False, False),
    ('{"category": "billing", "note": "a } b"} trailing', {"category": "billing", "note": "a } b"}, True, True),
])
def test_parse_output_strict_then_lenient(text, value, valid, lenient) -> None:
    parsed = parse_output(text, SCHEMA)
    assert parsed.value == value and parsed.valid is valid and parsed.lenient is lenient
    if value is not None and not valid:
        assert "/category" in (parsed.error or "")


def test_restrict_keeps_the_named_fields_with_their_metrics_prompt_lines_and_examples() -> None:
    from lingoforge import get_task
    from lingoforge.errors import LingoforgeError
    from lingoforge.task import restrict

    tickets = get_task("support_tickets")
    task = restrict(tickets, ["language", "priority"])  # the primary metric (category_accuracy) scores a removed field
    assert (task.name, task.version, task.source) == (tickets.name, tickets.version, tickets.source)
    assert task.only == ("priority", "language") and list(task.output_schema["properties"]) == list(task.only)
    assert task.primary_metric == "priority_accuracy"
    assert list(task.score(None, {})) == ["priority_accuracy", "language_accuracy"]
    assert task.metric_fields == {"priority_accuracy": ("priority",), "language_accuracy": ("language",)}
    lines = [line for line in task.instruction.splitlines() if line.startswith("- ")]
    assert [line.split(":")[0] for line in lines] == ["- priority", "- language"]
    assert task.fields == ("priority", "language") and task.text_fields == ()
    assert {tuple(e.output) for e in task.generate(4, 0)} == {("priority", "language")}
    assert restrict(tickets, list(tickets.output_schema["properties"])) is tickets
    with pytest.raises(LingoforgeError, match="cannot generate an example to tell which of its metrics"):
        restrict(dataclasses.replace(tickets, generator=None), ["category"])
