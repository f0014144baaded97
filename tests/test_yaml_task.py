"""YAML tasks: derived schema and scoring, templates generator, discovery and errors with key paths."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner
from lingoforge.cli import cli
from lingoforge.errors import LingoforgeError, TaskDefinitionError
from lingoforge.plugins import get_registry, get_task, reset_registry
from lingoforge.schema import validate
from lingoforge.testing import assert_task_contract
from lingoforge.yaml_task import load_yaml_task

CLAIMS = """
name: insurance_claims
description: Route insurance claims.
languages: [en, de]
system_prompt: You route insurance claims.
instruction: Classify the claim and extract its fields. Answer with JSON only.
fields:
  category: {type: enum, labels: [water_damage, theft, fire]}
  summary: {type: text, in_input_language: true}
  incident_date: {type: date, nullable: true}
  items: {type: list}
  address:
    type: object
    fields:
      city: {type: text}
slots:
  item: {en: [bike, laptop, ring], de: [Fahrrad, Laptop, Ring]}
  city: [Berlin, Leeds, Graz]
examples:
  - language: en
    input: "My {item} was stolen in {city}."
    output: {category: theft, summary: "{item} stolen", incident_date: null, items: ["{item}"],
             address: {city: "{city}"}}
  - language: de
    input: "Mein {item} wurde in {city} gestohlen."
    output: {category: theft, summary: "{item} gestohlen", incident_date: "2025-03-01", items: ["{item}"],
             address: {city: "{city}"}}
"""


def write(tmp_path: Path, text: str, name: str = "task.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def test_schema_and_scoring_are_derived_from_field_types(tmp_path: Path) -> None:
    task = load_yaml_task(write(tmp_path, CLAIMS))
    props = task.output_schema["properties"]
    assert props["category"]["enum"] == ["water_damage", "theft", "fire"]
    assert props["incident_date"]["anyOf"][1] == {"type": "null"}
    assert props["address"]["properties"]["city"] == {"type": "string"}
    assert task.fields == ("category",) and task.text_fields == ("summary",)
    assert task.primary_metric == "category_accuracy"
    gold = {"category": "theft", "summary": "Bike stolen!", "incident_date": "2025-03-01",
            "items": ["bike", "helmet"], "address": {"city": "Leeds"}}
    pred = {"category": "fire", "summary": "bike  STOLEN", "incident_date": "2025-03-01",
            "items": ["Bike"], "address": {"city": "leeds"}}
    scores = task.score(pred, gold)
    assert scores == {"category_accuracy": 0.0, "summary_match": 1.0, "incident_date_match": 1.0,
                      "items_f1": pytest.approx(2 / 3), "address.city_match": 1.0}
    assert set(task.score(None, gold).values()) == {0.0}


def test_templates_make_a_generator_that_passes_the_contract(tmp_path: Path) -> None:
    task = load_yaml_task(write(tmp_path, CLAIMS))
    assert_task_contract(task, n=12)
    ex = task.generate(2, 0)[1]
    assert ex.language == "de" and "gestohlen" in ex.input
    assert not validate(task.schema, dict(ex.output))


def test_bad_label_list_names_file_and_key_path(tmp_path: Path) -> None:
    bad = CLAIMS.replace("labels: [water_damage, theft, fire]", "labels: [water_damage, theft, fire, theft]")
    path = write(tmp_path, bad)
    with pytest.raises(TaskDefinitionError) as info:
        load_yaml_task(path)
    assert str(info.value) == f"{path}: fields.category.labels[3]: duplicate value 'theft'"


@pytest.mark.parametrize(("old", "new", "where"), [
    ("type: enum, labels", "type: enumm, labels", "fields.category.type: must be one of"),
    ("languages: [en, de]", "languages: [en, deu]", "languages[1]: 'deu' is not an ISO 639-1 code"),
    ("name: insurance_claims", "name: Insurance Claims", "name: 'Insurance Claims' must match"),
    ("city: {type: text}", "city: {type: text, nullable: 3}\n      zip: 5",
     "fields.address.fields.zip: expected a mapping"),
    ("input: \"My {item}", "input: \"My {itm}", "examples[0].input: uses slot {itm}"),
    ("instruction: Classify", "instruction: [Classify", "line "),
])
def test_errors_name_the_key_path(tmp_path: Path, old: str, new: str, where: str) -> None:
    path = write(tmp_path, CLAIMS.replace(old, new))
    with pytest.raises(TaskDefinitionError) as info:
        load_yaml_task(path)
    assert str(info.value).startswith(f"{path}: ") and where in str(info.value)


def test_yaml_without_templates_has_no_generator_and_says_so(tmp_path: Path) -> None:
    text = CLAIMS.split("slots:")[0]
    task = get_task(str(write(tmp_path, text)))
    assert not task.has_generator
    with pytest.raises(LingoforgeError, match="has no example generator; bring your own data"):
        task.generate(3, 0)
    result = CliRunner().invoke(cli, ["generate", str(tmp_path / "task.yaml"), "-o", str(tmp_path / "o.jsonl")])
    assert result.exit_code == 1 and "has no example generator" in result.output


def test_task_path_discovery_and_path_as_task_name(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    folder = tmp_path / "tasks"
    folder.mkdir()
    write(folder, CLAIMS, "claims.yaml")
    broken = CLAIMS.replace("name: insurance_claims", "name: broken").replace("type: enum,", "type: 5,")
    write(folder, broken, "broken.yml")
    monkeypatch.setenv("LINGOFORGE_TASK_PATH", str(folder))
    reset_registry()
    try:
        registry = get_registry()
        assert registry.tasks["insurance_claims"].source == str(folder / "claims.yaml")
        assert registry.infos["task-path"].tasks == ["insurance_claims"]
        assert any("broken.yml" in e.message and "fields.category.type" in e.message for e in registry.errors)
    finally:
        reset_registry()
    out = tmp_path / "gen.jsonl"
    result = CliRunner().invoke(cli, ["generate", str(folder / "claims.yaml"), "-n", "6", "-o", str(out), "--json"])
    assert result.exit_code == 0, result.output
    rows = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    assert [r["language"] for r in rows] == ["en", "de"] * 3
    assert json.loads(result.stdout)["languages"]["de"]["count"] == 3


def test_a_system_prompt_no_modelfile_can_hold_is_refused_when_the_task_loads(tmp_path: Path) -> None:
    path = write(tmp_path, CLAIMS.replace("system_prompt: You route insurance claims.",
                                          'system_prompt: \'You route claims. Answer """JSON"""\''))
    with pytest.raises(TaskDefinitionError, match='the system prompt contains """ which a Modelfile cannot hold'):
        get_task(str(path))
