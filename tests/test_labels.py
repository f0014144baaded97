"""``lingoforge labels``: counts per language, rare labels, planted near-duplicates, and a task file that loads."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import pytest
from click.testing import CliRunner
from lingoforge.cli import cli
from lingoforge.errors import DataError
from lingoforge.labels import label_report, normalized
from lingoforge.plugins import get_task

MAP = "input=Description,category=Type,language=Locale"
LANGUAGES = ("en-US", "de", "es_MX", "fr")
# Four clean labels with 12 examples per language, and planted spellings of two of them.
CLEAN = {"delivery": 12, "invoice": 12, "login": 12, "refund": 12}
PLANTED = {"Delivery": 2, "delivery ": 1, "deliveries": 1, "lgoin": 1, "Refund": 3}


def export(path: Path) -> Path:
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(["Subject", "Description", "Type", "Locale"])
    n = 0
    for label, count in [*CLEAN.items(), *PLANTED.items()]:
        for lang in LANGUAGES if label in CLEAN else LANGUAGES[:1]:
            for _ in range(count):
                n += 1
                writer.writerow([f"subject {n}", f"ticket {n}", label, lang])
    path.write_text(out.getvalue(), encoding="utf-8")
    return path


def test_labels_counts_per_language_and_finds_the_planted_spellings(tmp_path: Path) -> None:
    from lingoforge.data.mapping import ColumnMap

    report = label_report(export(tmp_path / "export.csv"), "category", ColumnMap.parse(MAP))
    assert report["languages"] == ["de", "en", "es", "fr"]
    assert report["labels"]["login"] == {"de": 12, "en": 12, "es": 12, "fr": 12}
    groups = {group["keep"]: sorted(group["labels"]) for group in report["near_duplicates"]}
    # "delivery " arrives stripped (a mapped cell is trimmed), so it counts as "delivery" itself.
    assert groups == {"delivery": ["Delivery", "deliveries", "delivery"], "login": ["lgoin", "login"],
                      "refund": ["Refund", "refund"]}
    assert set(report["rare"]) == {"Delivery", "deliveries", "lgoin", "Refund"}


def test_distinct_short_labels_are_not_merged() -> None:
    from lingoforge.labels import near_duplicates

    assert near_duplicates({"low": 5, "lot": 5, "high": 5, "urgent": 5, "billing": 5, "shipping": 5}) == []
    assert normalized("Account_Access ") == normalized("account-access") == "account access"


def test_labels_writes_an_extends_task_that_loads(tmp_path: Path) -> None:
    out = tmp_path / "my_helpdesk.yaml"
    result = CliRunner().invoke(cli, ["labels", str(export(tmp_path / "export.csv")), "--map", MAP, "-o", str(out),
                                      "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["written"] == str(out)
    task = get_task(str(out))
    assert task.name == "my_helpdesk"
    assert task.label_values("category") == ["delivery", "invoice", "login", "refund"]
    assert "merged 'Delivery', 'deliveries' into 'delivery'" in out.read_text(encoding="utf-8")


def test_a_file_without_the_field_names_its_keys(tmp_path: Path) -> None:
    path = tmp_path / "d.jsonl"
    path.write_text('{"input": "x", "output": {"topic": "a"}}\n', encoding="utf-8")
    with pytest.raises(DataError, match=r"d.jsonl: line 1: no record has a 'category' field \(keys: input, output\)"):
        label_report(path, "category")
    result = CliRunner().invoke(cli, ["labels", str(path), "--field", "topic", "--json"])
    assert result.exit_code == 0 and json.loads(result.output)["labels"] == {"a": {"?": 1}}


def test_a_task_name_taken_from_the_file_name_says_so(tmp_path: Path) -> None:
    result = CliRunner().invoke(cli, ["labels", str(export(tmp_path / "export.csv")), "--map", MAP,
                                      "-o", str(tmp_path / "t.yaml")])
    assert result.exit_code == 1
    assert "the name 't' taken from t.yaml is not a task name" in result.output and "pass --name" in result.output
    assert not (tmp_path / "t.yaml").exists()


HELPDESK_MAP = "input=Subject+Body,category=Queue,priority=Priority,language=Lang"
QUEUES = ("Technical Support", "Billing and Payments", "Returns")


def helpdesk(path: Path) -> Path:
    """Two mapped label fields (a queue of the team's own, and a priority without 'urgent') in de and en."""
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(["Subject", "Body", "Queue", "Priority", "Lang"])
    for n in range(60):
        writer.writerow([f"subject {n}", f"ticket {n}", QUEUES[n % 3], ("low", "medium", "high")[n % 3 - 1],
                         ("de", "en")[n % 2]])
    path.write_text(out.getvalue(), encoding="utf-8")
    return path


def test_labels_proposes_every_mapped_field_and_an_instruction_that_follows_the_data(tmp_path: Path) -> None:
    import yaml
    from lingoforge.plugins import get_tasks
    from lingoforge.yaml_task import load_yaml_task

    out = tmp_path / "helpdesk.yaml"
    result = CliRunner().invoke(cli, ["labels", str(helpdesk(tmp_path / "export.csv")), "--map", HELPDESK_MAP,
                                      "-o", str(out), "--json"])
    assert result.exit_code == 0, result.output
    proposed = json.loads(result.output)["proposed"]
    assert proposed["fields"]["priority"] == {"labels": ["low", "medium", "high"], "template_lacks": [],
                                              "data_lacks": ["urgent"]}
    assert proposed["dropped"] == ["instruction: rule 'urgent: the service is down for a business or many users' "
                                   "(names 'urgent')"]

    task = get_task(str(out))
    assert task.name == "helpdesk" and task.extends == "support_tickets"
    assert set(task.label_values("category")) == set(QUEUES)
    assert task.label_values("priority") == ["low", "medium", "high"]
    assert task.label_values("language") == ["de", "en"] and task.languages == ("de", "en")
    assert load_yaml_task(out, known=get_tasks).instruction == task.instruction
    written = yaml.safe_load(out.read_text(encoding="utf-8"))
    assert written["instruction"] == task.instruction  # in the file, for the team to edit
    assert "urgent" not in task.instruction and "shipping" not in task.instruction
    assert "- category: one of Technical Support, Billing and Payments, Returns" in task.instruction
    assert "(high: money was taken twice; low: a how-to question; otherwise medium)" in task.instruction
    assert "(de, en)" in task.instruction and "zh" not in task.instruction
    assert "# priority: left out, as the data has none: 'urgent'" in out.read_text(encoding="utf-8")

    shown = CliRunner().invoke(cli, ["tasks", "--task", str(out), "--show"])
    assert shown.exit_code == 0, shown.output


def test_labels_prints_what_it_proposed_per_field(tmp_path: Path) -> None:
    result = CliRunner().invoke(cli, ["labels", str(helpdesk(tmp_path / "export.csv")), "--map", HELPDESK_MAP,
                                      "-o", str(tmp_path / "helpdesk.yaml")], terminal_width=400)
    assert result.exit_code == 0, result.output
    assert "priority: 'low', 'medium', 'high'; not in the data, left out: 'urgent'" in result.output
    assert "language: 'de', 'en'; not in the data, left out: 'fr'" in result.output
    assert "dropped from the instruction: rule 'urgent: the service is down" in result.output


def test_rules_and_sentences_about_missing_labels_are_dropped() -> None:
    from lingoforge.yaml_task import adapt_prompt, drop_stale_rules

    relabeled = {"priority": (["low", "high", "urgent"], ["low", "high"]), "topic": (["spam", "ham"], ["news"])}
    text = adapt_prompt("Triage tickets. Spam goes to spam first.\n- priority: one of low, high, urgent "
                        "(urgent: outage; high: double charge)\n- topic: spam or ham", relabeled)
    out, notes = drop_stale_rules(text, relabeled)
    assert out == "Triage tickets.\n- priority: one of low, high (high: double charge)\n- topic: one of news"
    assert len(notes) == 3 and notes[0].startswith("sentence 'Spam goes to spam first.'")
