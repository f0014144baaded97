"""YAML tasks that extend another task: own labels, languages, prompts, added and removed fields."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner
from lingoforge.cli import cli
from lingoforge.errors import LingoforgeError, TaskDefinitionError, TaskNotFound
from lingoforge.plugins import get_registry, get_task, reset_registry, validate_task
from lingoforge.schema import validate
from lingoforge.testing import assert_task_contract
from lingoforge.yaml_task import load_yaml_task

LABELS = ["delivery", "invoice", "login", "refund", "damaged_item", "other"]

ACME = f"""
name: acme_tickets
extends: support_tickets
languages: [en, de, es, fr]
system_prompt: You triage the customer tickets of ACME, in any language.
fields:
  category:
    labels: [{", ".join(LABELS)}]
remove_fields: [suggested_response]
"""

GOLD = [
    {"category": "delivery", "priority": "high", "language": "en"},
    {"category": "invoice", "priority": "medium", "language": "de"},
    {"category": "login", "priority": "urgent", "language": "es"},
    {"category": "damaged_item", "priority": "low", "language": "fr"},
]

CLAIMS = """
name: insurance_claims
languages: [en, de]
instruction: Classify the claim. Answer with JSON only.
fields:
  category: {type: enum, labels: [water_damage, theft, fire]}
  summary: {type: text}
  items: {type: list}
slots:
  item: {en: [bike, laptop, ring], de: [Fahrrad, Laptop, Ring]}
examples:
  - language: en
    input: "My {item} was stolen."
    output: {category: theft, summary: "{item} stolen", items: ["{item}"]}
  - language: de
    input: "Mein {item} wurde gestohlen."
    output: {category: theft, summary: "{item} weg", items: ["{item}"]}
"""


def load(path: Path):
    """The file loaded against the registered tasks, as ``get_task`` loads it (without its validation)."""
    return load_yaml_task(path, known=lambda: get_registry().tasks)


def write(folder: Path, text: str, name: str = "acme.yaml") -> Path:
    path = folder / name
    path.write_text(text, encoding="utf-8")
    return path


def test_own_labels_replace_the_template_labels_and_keep_its_rules(tmp_path: Path) -> None:
    path = write(tmp_path, ACME)
    task = load(path)
    validate_task(task, str(path))
    assert task.extends == "support_tickets" and task.languages == ("en", "de", "es", "fr")
    props = task.output_schema["properties"]
    assert props["category"]["enum"] == LABELS
    assert list(props) == ["category", "priority", "language"] and task.output_schema["required"] == list(props)
    assert task.fields == ("category", "priority", "language") and task.text_fields == ()
    assert task.primary_metric == "category_accuracy"
    assert "- category: one of " + ", ".join(LABELS) in task.instruction
    assert "shipping" not in task.instruction and "suggested_response" not in task.instruction
    assert task.system_prompt == "You triage the customer tickets of ACME, in any language."
    for gold in GOLD:
        assert not validate(task.schema, gold)
        assert task.score(gold, gold) == {"category_accuracy": 1.0, "priority_accuracy": 1.0, "language_accuracy": 1.0}
        assert set(task.score(None, gold).values()) == {0.0}
    assert validate(task.schema, {**GOLD[0], "category": "shipping"})
    assert task.score({**GOLD[0], "category": "invoice"}, GOLD[0])["category_accuracy"] == 0.0
    assert get_task(str(path)).output_schema == task.output_schema


def test_generating_is_off_when_labels_change_and_says_so(tmp_path: Path) -> None:
    path = write(tmp_path, ACME)
    task = get_task(str(path))
    assert not task.has_generator
    message = (f"task 'acme_tickets' extends support_tickets with its own labels for category; generating examples "
               f"is off for it — bring your own data (--data FILE), or give `examples:` templates in {path}")
    with pytest.raises(LingoforgeError) as info:
        task.generate(4, 0)
    assert str(info.value) == message
    out = tmp_path / "out.jsonl"
    result = CliRunner().invoke(cli, ["generate", str(path), "-n", "8", "-o", str(out)])
    assert result.exit_code == 1 and "generating examples is off" in result.output and not out.exists()
    result = CliRunner().invoke(cli, ["run", str(path), "--base", "smollm2-135m", "-o", str(tmp_path / "run")])
    assert result.exit_code == 1 and message in result.output
    polish = get_task(str(write(tmp_path, "name: pl_tickets\nextends: support_tickets\nlanguages: [en, pl]\n",
                                "pl.yaml")))
    with pytest.raises(LingoforgeError, match="extends support_tickets with language.s. pl it does not cover; gener"):
        polish.generate(2, 0)


def test_unchanged_labels_keep_the_template_generator_for_a_subset_of_languages(tmp_path: Path) -> None:
    text = ("name: short_tickets\nextends: support_tickets\nlanguages: [en, de]\nremove_fields: [suggested_response]\n"
            "instruction: Triage the ticket. Answer with JSON only.\n")
    task = get_task(str(write(tmp_path, text)))
    assert task.has_generator
    assert_task_contract(task, n=8)
    examples = task.generate(4, 0)
    assert [e.language for e in examples] == ["en", "de", "en", "de"]
    assert all(set(e.output) == {"category", "priority", "language"} for e in examples)
    assert {e.instruction for e in examples} == {"Triage the ticket. Answer with JSON only."}


def test_tasks_show_prints_the_resolved_task(tmp_path: Path) -> None:
    path = write(tmp_path, ACME)
    result = CliRunner().invoke(cli, ["tasks", "--task", str(path), "--show"])
    assert result.exit_code == 0, result.output
    assert "extends: support_tickets" in result.stdout and "languages: en de es fr" in result.stdout
    assert f"category  enum: {', '.join(LABELS)}" in result.stdout
    assert "generator: off: task 'acme_tickets' extends support_tickets" in result.stdout
    assert "You triage the customer tickets of ACME" in result.stdout and "- category: one of delivery" in result.stdout
    result = CliRunner().invoke(cli, ["tasks", "--task", str(path), "--show", "--json"])
    assert result.exit_code == 0, result.output
    [shown] = json.loads(result.stdout)
    assert shown["output_schema"]["properties"]["category"]["enum"] == LABELS
    assert shown["output_fields"][0] == {"name": "category", "type": "enum", "labels": LABELS, "description": ""}
    assert shown["extends"] == "support_tickets" and shown["instruction"].startswith("Classify the support ticket")


def test_added_fields_are_scored_by_type_and_listed_in_the_instruction(tmp_path: Path) -> None:
    added = "  team: {type: enum, labels: [logistics, finance], description: who handles it}\n" \
            "  product: {type: text, nullable: true}\n"
    text = ACME.replace("remove_fields:", added + "remove_fields:")
    task = get_task(str(write(tmp_path, text)))
    assert list(task.output_schema["properties"]) == ["category", "priority", "language", "team", "product"]
    assert task.fields == ("category", "priority", "language", "team")
    assert task.instruction.endswith("- team: one of logistics, finance; who handles it\n- product")
    gold = {**GOLD[0], "team": "logistics", "product": "Kettle 2000"}
    assert task.score(gold, gold) == {"category_accuracy": 1.0, "priority_accuracy": 1.0, "language_accuracy": 1.0,
                                      "team_accuracy": 1.0, "product_match": 1.0}
    assert task.score({**gold, "product": "kettle-2000"}, gold)["product_match"] == 1.0
    with pytest.raises(LingoforgeError, match="own labels for category, added field.s. team, product; generating"):
        task.generate(2, 0)


def test_a_yaml_extends_a_yaml_that_extends_a_plugin_task(tmp_path: Path) -> None:
    write(tmp_path, ACME)
    text = "name: acme_lite\nextends: ./acme.yaml\nremove_fields: [priority]\nlanguages: [en, de]\n"
    task = get_task(str(write(tmp_path, text, "lite.yaml")))
    assert task.extends == "acme_tickets" and task.output_schema["properties"]["category"]["enum"] == LABELS
    gold = {"category": "refund", "language": "de"}
    assert task.score(gold, gold) == {"category_accuracy": 1.0, "language_accuracy": 1.0}
    assert "- priority:" not in task.instruction
    with pytest.raises(LingoforgeError, match="extends acme_tickets, which cannot generate examples: task 'acme_t"):
        task.generate(2, 0)


def test_extending_a_declared_yaml_task(tmp_path: Path) -> None:
    write(tmp_path, CLAIMS, "claims.yaml")
    narrowed = get_task(str(write(tmp_path, "name: claims_en\nextends: claims.yaml\nlanguages: [en]\n"
                                            "remove_fields: [items]\n", "en.yaml")))
    assert_task_contract(narrowed, n=3)
    assert narrowed.score({"category": "fire", "summary": "x"}, {"category": "fire", "summary": "x"}) == {
        "category_accuracy": 1.0, "summary_match": 1.0}
    relabeled = get_task(str(write(tmp_path, "name: claims_own\nextends: claims.yaml\n"
                                             "fields: {category: {labels: [flood, burglary]}}\n", "own.yaml")))
    assert relabeled.label_values("category") == ["flood", "burglary"] and not relabeled.has_generator


def test_task_path_resolves_names_and_reports_a_circular_extends(tmp_path: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    folder = tmp_path / "tasks"
    folder.mkdir()
    write(folder, "name: a_task\nextends: b_task\nlanguages: [en]\n", "a.yaml")  # loaded before b.yaml
    write(folder, ACME.replace("acme_tickets", "b_task"), "b.yaml")
    write(folder, "name: c_task\nextends: d_task\n", "c.yaml")
    write(folder, "name: d_task\nextends: c_task\n", "d.yaml")
    monkeypatch.setenv("LINGOFORGE_TASK_PATH", str(folder))
    reset_registry()
    try:
        registry = get_registry()
        assert registry.tasks["a_task"].label_values("category") == LABELS
        assert registry.tasks["a_task"].languages == ("en",)
        assert "c_task" not in registry.tasks and "d_task" not in registry.tasks
        circular = [e.message for e in registry.errors if "circular extends" in e.message]
        assert f"{folder / 'd.yaml'}: extends: 'c_task' is a circular extends: {folder / 'c.yaml'} → " \
               f"{folder / 'd.yaml'} → {folder / 'c.yaml'}" in circular[0]
        with pytest.raises(TaskNotFound, match="circular extends"):
            get_task("c_task")
    finally:
        reset_registry()


def test_circular_extends_between_files(tmp_path: Path) -> None:
    first = write(tmp_path, "name: first\nextends: second.yaml\n", "first.yaml")
    second = write(tmp_path, "name: second\nextends: first.yaml\n", "second.yaml")
    with pytest.raises(TaskDefinitionError) as info:
        load_yaml_task(first)
    assert str(info.value) == f"{second}: extends: 'first.yaml' is a circular extends: {first} → {second} → {first}"


@pytest.mark.parametrize(("old", "new", "where"), [
    ("extends: support_tickets", "extends: support_tikets",
     "extends: unknown task 'support_tikets'; known tasks: contract_extraction, ecommerce_taxonomy, support_tickets"),
    ("extends: support_tickets", "extends: ./nowhere.yaml", "extends: file "),
    ("remove_fields: [suggested_response]", "  suggested_response: {labels: [short, long]}",
     "fields.suggested_response.labels: 'suggested_response' is a string field of support_tickets, not an enum"),
    ("  category:\n", "  categry:\n",
     "fields.categry: unknown field 'categry'; support_tickets has category, priority"),
    ("remove_fields: [suggested_response]", "remove_fields: [reply]", "remove_fields[0]: unknown field 'reply'"),
    ("remove_fields:", "remove_field:", "remove_field: is not a key of a task that extends another"),
    ("    labels: [", "    type: enum\n    labels: [", "fields.category.type: support_tickets already has a field"),
    ("    labels: [", "    nullable: true\n    labels: [",
     "fields.category.nullable: a field of support_tickets takes"),
    ("labels: [delivery", "labels: [delivery, delivery", "fields.category.labels[1]: duplicate value 'delivery'"),
    ("name: acme_tickets", "name: support_tickets", "name: 'support_tickets' is the name of the task it extends"),
    ("remove_fields: [suggested_response]", "remove_fields: [category]",
     "fields.category: 'category' is also in remove_fields"),
    ("labels: [delivery, invoice, login, refund, damaged_item, other]",
     "labels: [delivery, invoice, login, refund, damaged_item, other]\n  priority: {labels: [p1, p2, p3]}",
     "instruction: the instruction of support_tickets still names its label(s) 'low', 'medium', 'high', 'urgent'; "
     "give your own `instruction:`"),
])
def test_bad_extends_names_file_and_key(tmp_path: Path, old: str, new: str, where: str) -> None:
    path = write(tmp_path, ACME.replace(old, new))
    with pytest.raises(TaskDefinitionError) as info:
        load(path)
    assert str(info.value).startswith(f"{path}: {where}"), str(info.value)


def test_a_file_loaded_by_itself_extends_only_files_and_says_where_names_come_from(tmp_path: Path) -> None:
    path = write(tmp_path, ACME)
    with pytest.raises(TaskDefinitionError, match=r"unknown task 'support_tickets'; known tasks: none \(a file "
                                                  r"loaded by itself knows only \$LINGOFORGE_TASK_PATH"):
        load_yaml_task(path)
    assert load(path).extends == "support_tickets"


def test_removing_the_primary_metric_field_asks_for_another(tmp_path: Path) -> None:
    text = ACME.replace("remove_fields: [suggested_response]", "remove_fields: [suggested_response, category]")
    text = text.replace(f"  category:\n    labels: [{', '.join(LABELS)}]\n", "  priority: {description: urgency}\n")
    path = write(tmp_path, text)
    with pytest.raises(TaskDefinitionError, match=r"primary_metric: the primary metric of support_tickets, "
                                                  r"'category_accuracy', scores a removed field; name one of"):
        load(path)
    task = load(write(tmp_path, text + "primary_metric: priority_accuracy\n"))
    assert task.primary_metric == "priority_accuracy" and task.has_generator
    assert task.output_schema["properties"]["priority"]["description"] == "urgency"


def test_own_examples_templates_generate_the_own_labels(tmp_path: Path) -> None:
    templates = "".join(
        f"  - language: {lang}\n    input: \"{text} #{{n}}\"\n"
        f"    output: {{category: {label}, priority: medium, language: {lang}}}\n"
        for lang, text, label in [("en", "Where is my parcel", "delivery"), ("de", "Rechnung falsch", "invoice"),
                                  ("es", "No puedo entrar", "login"), ("fr", "Colis abîmé", "damaged_item")])
    path = write(tmp_path, ACME + "slots: {n: ['1', '2', '3', '4']}\nexamples:\n" + templates)
    task = get_task(str(path))
    assert_task_contract(task, n=8)
    assert {e.output["category"] for e in task.generate(8, 0)} == {"delivery", "invoice", "login", "damaged_item"}
