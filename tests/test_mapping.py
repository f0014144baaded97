"""``--map``: a support team's own export (its column names, its labels, quoted newlines, a BOM) read as it is."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import pytest
from click.testing import CliRunner
from lingoforge.cli import cli
from lingoforge.data.io import load_examples
from lingoforge.data.mapping import ColumnMap
from lingoforge.errors import DataError
from lingoforge.predict import parse_inputs
from lingoforge.yaml_task import load_yaml_task

# The team's own taxonomy, not a built-in template's labels.
TASK_YAML = """
name: helpdesk
languages: [en, de, es, fr]
instruction: Classify the ticket.
system_prompt: You answer with one JSON object.
fields:
  category: {type: enum, labels: [delivery, invoice, login, refund]}
  priority: {type: enum, labels: [low, normal, urgent]}
examples:
  - {language: en, input: "Parcel {n} late", output: {category: delivery, priority: normal}}
  - {language: de, input: "Paket {n} fehlt", output: {category: delivery, priority: normal}}
  - {language: es, input: "Paquete {n} tarde", output: {category: delivery, priority: normal}}
  - {language: fr, input: "Colis {n} en retard", output: {category: delivery, priority: normal}}
slots:
  n: ["1", "2", "3", "4", "5", "6"]
"""
MAP = "input=Subject+Description,category=Type,priority=Priority,language=Locale"
ROWS = [
    ("Where is my parcel?", "Ordered two weeks ago.\nStill nothing.", "delivery", "urgent", "en-US"),
    ("Rechnung doppelt", "Ich wurde zweimal belastet.", "invoice", "normal", "de-DE"),
    ("No puedo entrar", "La contraseña no funciona,\nayuda.", "login", "urgent", "es_MX"),
    ("Remboursement", "Je veux être remboursé.", "refund", "low", "fr"),
    ("Login broken", "Reset link expired.", "login", "normal", "en"),
    ("Lieferung", "Das Paket kam beschädigt an.", "delivery", "low", "de"),
]


@pytest.fixture
def task_file(tmp_path: Path) -> Path:
    path = tmp_path / "helpdesk.yaml"
    path.write_text(TASK_YAML, encoding="utf-8")
    return path


def zendesk_csv(path: Path, rows: list[tuple[str, ...]] = ROWS) -> Path:
    """A Zendesk-style export: its own header, quoted newlines, a UTF-8 BOM, a column we do not use."""
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(["Subject", "Description", "Type", "Priority", "Locale", "Tags"])
    writer.writerows([(*row, "vip") for row in rows])
    path.write_bytes(b"\xef\xbb\xbf" + out.getvalue().encode("utf-8"))
    return path


def test_a_zendesk_export_is_read_with_its_own_column_names(tmp_path: Path, task_file: Path) -> None:
    items = load_examples(zendesk_csv(tmp_path / "export.csv"), load_yaml_task(task_file), mapping=ColumnMap.parse(MAP))
    first = items[0].example
    assert first.input == "Where is my parcel?\nOrdered two weeks ago.\nStill nothing."
    assert (dict(first.output), first.language) == ({"category": "delivery", "priority": "urgent"}, "en")
    assert [i.example.language for i in items] == ["en", "de", "es", "fr", "en", "de"]
    assert items[2].where.endswith("export.csv:5")  # row 1 spans lines 2-3 (a quoted newline): lines stay true


def test_data_check_and_split_take_the_mapping(tmp_path: Path, task_file: Path) -> None:
    data = zendesk_csv(tmp_path / "export.csv")
    runner = CliRunner()
    checked = runner.invoke(cli, ["data", "check", str(data), "--task", str(task_file), "--map", MAP, "--json"])
    assert checked.exit_code == 0, checked.output
    assert json.loads(checked.output[checked.output.index("{"):])["errors"] == 0
    split = runner.invoke(cli, ["data", "split", str(data), "--task", str(task_file), "--map", MAP,
                                "-o", str(tmp_path / "split"), "--val", "0.2", "--test", "0.2", "--json"])
    assert split.exit_code == 0, split.output
    report = json.loads((tmp_path / "split" / "data_report.json").read_text(encoding="utf-8"))
    assert report["map"] == MAP
    written = [json.loads(line) for k in ("train", "val", "test")
               for line in (tmp_path / "split" / f"{k}.jsonl").read_text(encoding="utf-8").splitlines()]
    assert sorted(r["output"]["category"] for r in written) == sorted(r[2] for r in ROWS)


def test_nested_jsonl_keys_are_reached_with_dotted_paths(tmp_path: Path, task_file: Path) -> None:
    path = tmp_path / "export.jsonl"
    records = [{"ticket": {"subject": s, "body": d}, "fields": {"type": t, "prio": p}, "locale": loc}
               for s, d, t, p, loc in ROWS]
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records), encoding="utf-8")
    mapping = ColumnMap.parse("input=ticket.subject+ticket.body,category=fields.type,priority=fields.prio,"
                              "language=locale")
    items = load_examples(path, load_yaml_task(task_file), mapping=mapping)
    assert items[1].example.input == "Rechnung doppelt\nIch wurde zweimal belastet."
    assert dict(items[1].example.output) == {"category": "invoice", "priority": "normal"}


def test_a_mapping_to_a_missing_column_lists_the_file_columns_and_writes_nothing(tmp_path: Path,
                                                                                  task_file: Path) -> None:
    data = zendesk_csv(tmp_path / "export.csv")
    result = CliRunner().invoke(cli, ["data", "split", str(data), "--task", str(task_file), "-o", str(tmp_path / "s"),
                                      "--map", "input=Body,category=Type,priority=Priority,language=Locale"])
    assert result.exit_code == 1
    assert "--map input=Body: no column 'Body'" in result.output
    assert "the file's columns: Subject, Description, Type, Priority, Locale, Tags" in result.output
    assert not (tmp_path / "s").exists()


def test_a_mapping_to_a_field_the_task_lacks_suggests_the_closest(tmp_path: Path, task_file: Path) -> None:
    data = zendesk_csv(tmp_path / "export.csv")
    with pytest.raises(DataError, match=r"task 'helpdesk' has no field 'categroy' \(did you mean 'category'\?\)"):
        load_examples(data, load_yaml_task(task_file), mapping=ColumnMap.parse("input=Subject,categroy=Type"))


@pytest.mark.parametrize("spec", ["input", "input=", "=Type", "input=A+,x=B", "input=A,input=B"])
def test_malformed_mappings_are_usage_errors(tmp_path: Path, task_file: Path, spec: str) -> None:
    data = zendesk_csv(tmp_path / "export.csv")
    result = CliRunner().invoke(cli, ["data", "check", str(data), "--task", str(task_file), "--map", spec])
    assert result.exit_code == 2 and "Invalid value for '--map'" in result.output, result.output


def test_a_record_without_a_mapped_key_is_a_line_numbered_error(tmp_path: Path, task_file: Path) -> None:
    path = tmp_path / "export.jsonl"
    path.write_text('{"body": "x", "type": "login", "prio": "low", "loc": "en"}\n{"type": "login"}\n', encoding="utf-8")
    mapping = ColumnMap.parse("input=body,category=type,priority=prio,language=loc")
    with pytest.raises(DataError, match=r"export.jsonl:2: no 'body' \(--map input=body\); the record's keys: type"):
        load_examples(path, load_yaml_task(task_file), mapping=mapping)


def test_predict_reads_the_same_export_without_its_label_columns() -> None:
    text = "\ufeffTicket ID,Subject,Description,Locale\n17,Hi,\"Two\nlines\",de\n"
    items = parse_inputs(text, "new.csv", mapping=ColumnMap.parse(MAP.replace("Subject+", "") + ",id=Ticket ID"))
    assert [(i.id, i.text, i.language) for i in items] == [("17", "Two\nlines", "de")]


def test_train_records_the_mapping_with_its_data(tmp_path: Path, task_file: Path, monkeypatch) -> None:
    import lingoforge.train
    from lingoforge.config import make_config

    seen: dict[str, object] = {}
    monkeypatch.setattr(lingoforge.train, "train", lambda *a, **k: seen.update(k))
    data = zendesk_csv(tmp_path / "export.csv", ROWS * 3)
    lingoforge.train.train_from_files(load_yaml_task(task_file), data, "qwen2.5-0.5b", tmp_path / "run",
                                      make_config({"val_fraction": 0.3}), mapping=ColumnMap.parse(MAP), quiet=True)
    assert seen["sources"] == {"train+val": {"path": str(data), "sha256": lingoforge.train.file_sha256(data),
                                             "map": MAP}}


def test_an_export_without_a_language_column_gets_detected_languages(tmp_path: Path, task_file: Path, capsys) -> None:
    rows = [("Where is my parcel?", "It was due last Monday and the tracking page shows nothing at all.", "delivery",
             "urgent", ""),
            ("Rechnung doppelt", "Ich wurde für dieselbe Bestellung zweimal belastet, bitte erstatten Sie das.",
             "invoice", "normal", ""),
            ("Ok", "?", "login", "low", "")]
    data = zendesk_csv(tmp_path / "export.csv", rows)
    items = load_examples(data, load_yaml_task(task_file), mapping=ColumnMap.parse(MAP.replace(",language=Locale", "")))
    assert [i.example.language for i in items[:2]] == ["en", "de"]
    assert items[0].example.meta["language_detected"] > 0.6
    assert "3 example(s) name no language; detected it from the input; unsure for 1" in capsys.readouterr().err


def test_a_language_code_that_is_not_iso_639_1_is_an_error(tmp_path: Path, task_file: Path) -> None:
    data = zendesk_csv(tmp_path / "export.csv", [(*ROWS[0][:4], "xx")])
    with pytest.raises(DataError, match=r"export.csv:2: /language: 'xx' is not an ISO 639-1 language code"):
        load_examples(data, load_yaml_task(task_file), mapping=ColumnMap.parse(MAP))


def test_language_fills_records_of_a_one_language_file(tmp_path: Path, task_file: Path) -> None:
    german = [("Rechnung doppelt", "Ich wurde zweimal belastet.", "invoice", "normal", ""),
              ("Paket fehlt", "Meine Lieferung ist nicht angekommen.", "delivery", "urgent", ""),
              ("Passwort", "Ich kann mich nicht mehr anmelden.", "login", "low", "")]
    data = zendesk_csv(tmp_path / "export.csv", german)
    checked = CliRunner().invoke(cli, ["data", "check", str(data), "--task", str(task_file), "--json",
                                       "--map", MAP.replace(",language=Locale", ""), "--language", "de-AT"])
    assert checked.exit_code == 0, checked.output
    assert json.loads(checked.output[checked.output.index("{"):])["languages"] == {"de": 3}
    bad = CliRunner().invoke(cli, ["data", "check", str(data), "--task", str(task_file), "--language", "xx"])
    assert bad.exit_code == 2 and "'xx' is not an ISO 639-1 language code" in bad.output
