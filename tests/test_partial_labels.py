"""Partial labels: data carrying a subset of a template's output fields trains a task restricted to them."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner
from lingoforge import get_task
from lingoforge.cli import cli
from lingoforge.data.io import data_task, load_examples
from lingoforge.errors import DataError, LingoforgeError
from lingoforge.runfolder import RunFolder

# The seed article's own record format: labels as `key: value` lines, no model-written reply.
TICKETS = {
    "es": ("Mi pedido #{n} no ha llegado", "shipping", "high"),
    "de": ("Ich wurde für Bestellung {n} doppelt belastet", "billing", "high"),
    "en": ("How do I change my password? ({n})", "account_management", "low"),
    "fr": ("Le produit {n} est arrivé cassé", "product_defect", "medium"),
}


def seed_records(count: int = 3) -> list[dict[str, str]]:
    return [
        {"instruction": "Classify this support ticket.", "input": text.format(n=4521 + k),
         "output": f"category: {category}\npriority: {priority}\nlanguage: {lang}"}
        for lang, (text, category, priority) in TICKETS.items() for k in range(count)
    ]


def write(path: Path, records: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records), encoding="utf-8")
    return path


def test_the_seed_article_record_gives_a_task_without_the_reply(tmp_path: Path) -> None:
    path = write(tmp_path / "seed.jsonl", seed_records())
    task = data_task(path, get_task("support_tickets"))
    assert list(task.output_schema["properties"]) == ["category", "priority", "language"]
    assert task.output_schema["required"] == ["category", "priority", "language"]
    assert "suggested_response" not in task.instruction and "- priority: one of low" in task.instruction
    gold = {"category": "shipping", "priority": "high", "language": "es"}
    assert task.score(gold, gold) == {"category_accuracy": 1.0, "priority_accuracy": 1.0, "language_accuracy": 1.0}
    items = load_examples(path, task)
    assert [i.example.language for i in items[::3]] == ["es", "de", "en", "fr"]  # from output.language
    checked = CliRunner().invoke(cli, ["data", "check", str(path), "--task", "support_tickets", "--json"])
    assert checked.exit_code == 0 and json.loads(checked.output)["errors"] == 0, checked.output


def test_a_field_only_some_records_carry_names_the_lines_and_the_fix(tmp_path: Path) -> None:
    records = seed_records()
    records[4]["output"] = records[4]["output"].replace("\npriority: high", "")
    path = write(tmp_path / "mixed.jsonl", records)
    with pytest.raises(DataError, match=r"mixed.jsonl: field 'priority' is in 11 of 12 records but not on line\(s\) 5: "
                                        r"give it in every record, or train without it: --fields category,language"):
        data_task(path, get_task("support_tickets"))
    assert list(data_task(path, get_task("support_tickets"), fields=["category", "language"])
                .output_schema["properties"]) == ["category", "language"]


def test_unknown_fields_are_refused_with_the_task_fields() -> None:
    result = CliRunner().invoke(cli, ["data", "check", "x.jsonl", "--task", "support_tickets", "--fields", "categry"])
    assert result.exit_code == 1
    assert "--fields: task 'support_tickets' has no field 'categry'; its fields: category, priority, language, " \
           "suggested_response" in result.output


def test_a_csv_column_one_letter_off_a_missing_field_is_a_typo_not_a_smaller_task(tmp_path: Path) -> None:
    path = tmp_path / "t.csv"
    path.write_text("input,category,priorty,language\nx,shipping,high,es\n", encoding="utf-8")
    with pytest.raises(DataError, match=r"missing column 'priority' \(did you mean 'priorty'\? map it with --map"):
        data_task(path, get_task("support_tickets"))


def test_the_run_records_and_restores_the_restricted_task(tmp_path: Path, monkeypatch) -> None:
    import lingoforge.train
    from lingoforge.config import make_config

    seen: dict[str, object] = {}

    def fake_train(task, *args, **kwargs):  # the recipe itself is tested elsewhere: here, the task it is given
        seen["task"] = task
        RunFolder(tmp_path / "run").record_task(task)

    monkeypatch.setattr(lingoforge.train, "train", fake_train)
    data = write(tmp_path / "seed.jsonl", seed_records(5))
    lingoforge.train.train_from_files(get_task("support_tickets"), data, "qwen2.5-0.5b", tmp_path / "run",
                                      make_config({"val_fraction": 0.2}), quiet=True)
    run = RunFolder(tmp_path / "run")
    assert run.task_record()["fields"] == ["category", "priority", "language"]
    restored = run.task()
    assert restored.name == "support_tickets" and "suggested_response" not in restored.output_schema["properties"]
    assert restored.output_schema == seen["task"].output_schema  # type: ignore[attr-defined]
    assert run.resolve_task("support_tickets").output_schema == restored.output_schema


def test_fields_restrict_generation_too() -> None:
    from lingoforge.task import restrict

    task = restrict(get_task("support_tickets"), ["category", "language"])
    assert {tuple(e.output) for e in task.generate(8, 0)} == {("category", "language")}
    with pytest.raises(LingoforgeError, match="name at least one output field"):
        restrict(task, [])
