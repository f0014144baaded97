"""Readers: every accepted format converts losslessly with line numbers; every bad input gets a clear DataError."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from lingoforge.data.convert import coerce, normalize_language, parse_key_value
from lingoforge.data.io import MAX_RECORD_BYTES, load_examples, read_records, read_text, write_examples
from lingoforge.errors import DataError
from lingoforge.prompts import example_messages, user_text
from lingoforge.task import Example, Task

SCHEMA = {
    "type": "object",
    "properties": {
        "category": {
            "type": "string",
            "enum": ["shipping", "billing", "returns", "technical", "account", "product", "complaint", "other"],
        },
        "priority": {"type": "string", "enum": ["low", "medium", "high", "urgent"]},
        "language": {"type": "string", "enum": ["en", "es", "de", "fr"]},
        "suggested_response": {"type": "string"},
    },
    "required": ["category", "priority", "language"],
    "additionalProperties": False,
}


def make_task() -> Task:
    return Task(
        name="tickets",
        version="1",
        description="",
        languages=("en", "es", "de", "fr"),
        system_prompt="You triage tickets.",
        instruction="Classify the ticket.",
        output_schema=SCHEMA,
        scorer=lambda p, g: {},
        primary_metric="category_accuracy",
        fields=("category", "priority"),
    )


TASK = make_task()
OUTPUT = {"category": "shipping", "priority": "high", "language": "es"}


def write(tmp_path: Path, name: str, content: str | bytes) -> Path:
    path = tmp_path / name
    path.write_bytes(content if isinstance(content, bytes) else content.encode("utf-8"))
    return path


def test_canonical_jsonl_keeps_line_numbers_and_unknown_keys(tmp_path: Path) -> None:
    lines = [
        json.dumps({"input": "Mi pedido no llega", "output": OUTPUT, "language": "es", "id": 7}),
        "",
        json.dumps({"instruction": "Classify the ticket.", "input": "Hola", "output": OUTPUT, "meta": {"src": "crm"}}),
    ]
    result = read_records(write(tmp_path, "d.jsonl", "\n".join(lines)), TASK)
    assert [r.line for r in result.records] == [1, 3]
    first, second = (r.example for r in result.records)
    assert first.output == OUTPUT and first.language == "es" and first.meta == {"id": 7}
    assert second.meta == {"src": "crm"} and second.language == "es"  # taken from output.language
    assert result.sources == {"canonical": 2}


def test_seed_key_value_output_converts() -> None:
    assert parse_key_value("category: shipping\npriority: high\nlanguage: es", SCHEMA) == OUTPUT


def test_key_value_multiline_value_and_typing() -> None:
    schema = {
        "type": "object",
        "properties": {
            "note": {"type": "string"},
            "n": {"type": "integer"},
            "tags": {"type": "array", "items": {"type": "string"}},
            "ok": {"type": "boolean"},
            "x": {"anyOf": [{"type": "string"}, {"type": "null"}]},
        },
    }
    parsed = parse_key_value("n: 3\nnote: first line\nPS: second line\ntags: a, b\nok: yes\nx: null", schema)
    assert parsed == {"n": 3, "note": "first line\nPS: second line", "tags": ["a", "b"], "ok": True, "x": None}
    assert coerce({"type": "integer"}, "three") == "three"  # left as text so validation points at it
    with pytest.raises(ValueError, match="twice"):
        parse_key_value("n: 1\nn: 2", schema)


def test_output_as_json_string_and_key_value_lines(tmp_path: Path) -> None:
    lines = [
        json.dumps({"input": "a", "output": json.dumps(OUTPUT)}),
        json.dumps({"input": "b", "output": "category: shipping\npriority: high\nlanguage: es"}),
    ]
    result = read_records(write(tmp_path, "d.jsonl", "\n".join(lines)), TASK)
    assert [r.example.output for r in result.records] == [OUTPUT, OUTPUT]
    assert result.sources == {"json_string": 1, "key_value": 1}


def test_chat_messages_record_splits_off_the_task_instruction(tmp_path: Path) -> None:
    record = {
        "messages": [
            {"role": "system", "content": "Other system prompt"},
            {"role": "user", "content": user_text(TASK.instruction, "Mi pedido no llega\n\nGracias")},
            {"role": "assistant", "content": json.dumps(OUTPUT)},
        ],
        "language": "es",
    }
    (rec,) = read_records(write(tmp_path, "d.jsonl", json.dumps(record)), TASK).records
    assert rec.source == "messages"
    assert rec.example.input == "Mi pedido no llega\n\nGracias"
    assert rec.example.meta == {"system": "Other system prompt"}
    # Round trip: the rebuilt user turn is exactly the original one.
    assert example_messages(TASK, rec.example)[1]["content"] == record["messages"][1]["content"]


def test_csv_with_output_field_columns_types_values(tmp_path: Path) -> None:
    text = (
        "input,category,priority,language,ticket_id\n"
        '"Multi\nline, with comma",shipping,high,es,T1\n'
        "Hello,billing,low,en,T2\n"
    )
    result = read_records(write(tmp_path, "d.csv", text), TASK)
    assert [r.line for r in result.records] == [2, 4]
    first = result.records[0].example
    assert (
        first.input == "Multi\nline, with comma"
        and first.output == OUTPUT
        and first.language == "es"
        and first.meta == {"ticket_id": "T1"}
    )
    assert result.sources == {"csv_columns": 2}


def test_csv_with_output_column_and_semicolons(tmp_path: Path) -> None:
    text = 'input;output;language\nHola;"category: shipping\npriority: high\nlanguage: es";es\n'
    (rec,) = read_records(write(tmp_path, "d.csv", text), TASK).records
    assert rec.example.output == OUTPUT and rec.source == "csv_output"


def test_csv_missing_column_names_it_and_suggests(tmp_path: Path) -> None:
    with pytest.raises(
        DataError, match=r"d.csv: line 1 \(header\): missing column 'priority' \(did you mean 'priorty'\?\)"
    ):
        read_records(write(tmp_path, "d.csv", "input,category,priorty,language\nx,shipping,high,es\n"), TASK)


def test_csv_row_with_wrong_field_count_is_a_finding(tmp_path: Path) -> None:
    result = read_records(write(tmp_path, "d.csv", "input,output\na,b,c\n"), TASK)
    (finding,) = result.findings
    assert finding.line == 2 and finding.code == "bad_row"


def test_bom_and_crlf_are_accepted(tmp_path: Path) -> None:
    line = json.dumps({"input": "Hola", "output": OUTPUT}, ensure_ascii=False)
    path = write(tmp_path, "d.jsonl", b"\xef\xbb\xbf" + (line + "\r\n" + line + "\r\n").encode())
    result = read_records(path, TASK)
    assert len(result.records) == 2 and not result.findings
    assert read_text(write(tmp_path, "c.csv", b"\xef\xbb\xbfinput,output\r\n")).startswith("input")


def test_binary_file(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"line 1: binary data"):
        read_records(write(tmp_path, "d.jsonl", b"\x00\x01\x02garbage" * 10), TASK)
    with pytest.raises(DataError, match="gzip archive"):
        read_records(write(tmp_path, "e.jsonl", b"\x1f\x8b\x08\x00rest"), TASK)


def test_utf16_is_named(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="UTF-16 little-endian"):
        read_records(write(tmp_path, "d.jsonl", '{"input": "x"}\n'.encode("utf-16")), TASK)
    with pytest.raises(DataError, match="UTF-16"):
        read_records(write(tmp_path, "e.jsonl", '{"input": "x", "output": "y"}\n'.encode("utf-16-le")), TASK)


def test_non_utf8_names_line_and_likely_encoding(tmp_path: Path) -> None:
    text = (
        json.dumps({"input": "ok", "output": OUTPUT})
        + "\n"
        + '{"input": "Le colis est arrivé endommagé, très déçu", "output": "category: returns"}\n'
    )
    path = write(tmp_path, "d.jsonl", text.encode("cp1252"))
    with pytest.raises(DataError) as info:
        read_records(path, TASK)
    message = str(info.value)
    assert "line 2: not valid UTF-8 (byte 0xe9" in message
    assert "it looks like" in message and ("1252" in message or "8859" in message or "LATIN" in message.upper())
    assert "iconv" in message


@pytest.mark.parametrize(
    ("text", "encoding", "named"),
    [
        ("注文はどこですか？荷物がまだ届きません", "shift_jis", "SHIFT_JIS"),
        ("Где мой заказ? Посылка до сих пор не пришла", "cp1251", "CP1251"),
        ("Où est ma commande ? Le colis est arrivé abîmé", "cp1252", "CP1252"),
    ],
)
def test_guessed_encodings(tmp_path: Path, text: str, encoding: str, named: str) -> None:
    path = write(
        tmp_path, "d.jsonl", json.dumps({"input": text, "output": OUTPUT}, ensure_ascii=False).encode(encoding)
    )
    with pytest.raises(
        DataError, match=f"line 1: not valid UTF-8.*it looks like {named}; convert it with: iconv -f {named}"
    ):
        read_records(path, TASK)


def test_empty_and_blank_files(tmp_path: Path) -> None:
    for name, content in (("a.jsonl", b""), ("b.jsonl", b"\n \r\n"), ("c.csv", b"\xef\xbb\xbf")):
        with pytest.raises(DataError, match="the file is empty"):
            read_records(write(tmp_path, name, content), TASK)


def test_missing_file_and_directory(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="cannot read"):
        read_records(tmp_path / "nope.jsonl", TASK)
    with pytest.raises(DataError, match="is a directory"):
        read_records(tmp_path, TASK)


def test_a_single_5mb_line_is_a_finding_not_a_crash(tmp_path: Path) -> None:
    big = json.dumps({"input": "x" * 5_000_000, "output": OUTPUT})
    good = json.dumps({"input": "fine", "output": OUTPUT})
    result = read_records(write(tmp_path, "d.jsonl", big + "\n" + good + "\n"), TASK)
    (finding,) = result.findings
    assert (
        finding.line == 1
        and finding.code == "too_large"
        and "5.0 MB" in finding.message
        and str(MAX_RECORD_BYTES >> 20) in finding.message
    )
    assert [r.line for r in result.records] == [2]
    only = read_records(write(tmp_path, "e.jsonl", big), TASK)
    assert not only.records and only.findings[0].code == "too_large"


def test_json_array_file_is_explained(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="JSON array.*jq -c"):
        read_records(write(tmp_path, "d.jsonl", json.dumps([{"input": "a"}])), TASK)


def test_bad_lines_become_findings_with_line_and_field(tmp_path: Path) -> None:
    lines = [
        "{not json",
        json.dumps({"output": OUTPUT}),
        json.dumps({"input": 5, "output": OUTPUT}),
        json.dumps({"input": "a", "output": "{broken"}),
        json.dumps({"input": "a", "output": OUTPUT, "language": "Spanish"}),
        json.dumps([1, 2]),
        json.dumps({"messages": [{"role": "user", "content": "x"}]}),
    ]
    result = read_records(write(tmp_path, "d.jsonl", "\n".join(lines)), TASK)
    got = [(f.line, f.code, f.field) for f in result.findings]
    assert got == [
        (1, "invalid_json", ""),
        (2, "missing_field", "/input"),
        (3, "bad_input", "/input"),
        (4, "bad_output", "/output"),
        (5, "bad_language", "/language"),
        (6, "not_object", ""),
        (7, "bad_messages", "/messages"),
    ]
    assert all(str(tmp_path / "d.jsonl") in str(f) for f in result.findings)


def test_load_examples_refuses_unusable_lines(tmp_path: Path) -> None:
    path = write(tmp_path, "d.jsonl", json.dumps({"input": "a", "output": OUTPUT}) + "\n{oops\n")
    with pytest.raises(DataError, match=r"(?s)1 unusable line.*d.jsonl:2: not valid JSON.*--fix"):
        load_examples(path, TASK)


def test_write_examples_round_trips(tmp_path: Path) -> None:
    examples = [Example("", "Hola 你好", OUTPUT, "es", {"id": 1}), Example("Classify.", "b", OUTPUT, "en")]
    assert write_examples(tmp_path / "out.jsonl", examples) == 2
    assert [i.example for i in load_examples(tmp_path / "out.jsonl", TASK)] == examples


@pytest.mark.parametrize(
    ("value", "code"), [("ES", "es"), ("es-MX", "es"), ("pt_BR", "pt"), ("Spanish", None), (None, None), ("e", None)]
)
def test_normalize_language(value: object, code: str | None) -> None:
    assert normalize_language(value) == code


def test_through_the_cli_bad_input_is_one_clean_message(tmp_path: Path) -> None:
    from click.testing import CliRunner
    from lingoforge.cli import cli

    task = tmp_path / "t.yaml"
    task.write_text(
        "name: tickets\nlanguages: [en]\ninstruction: Classify.\n"
        "fields:\n  category:\n    type: enum\n    labels: [a, b]\n"
    )
    for name, content, said in (
        ("bin.jsonl", b"\x00\x01" * 40, "bin.jsonl: line 1: the file looks like UTF-16 big-endian without a BOM"),
        ("empty.jsonl", b"", "empty.jsonl: the file is empty; expected one JSON object per line"),
        ("latin.jsonl", "café".encode("cp1252"), "latin.jsonl: line 1: not valid UTF-8 (byte 0xe9 at column 4); "
                                                 "it looks like CP1252"),
    ):
        result = CliRunner().invoke(cli, ["data", "check", str(write(tmp_path, name, content)), "--task", str(task)])
        assert result.exit_code == 1 and "Traceback" not in result.output
        assert said in " ".join(result.output.split()), result.output
        assert result.output.count("Error:") == 1, result.output  # one message
