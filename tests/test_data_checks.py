"""``data check``: report fields, findings with line/field, language detection, duplicates, exit codes and --fix."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner
from lingoforge.cli import cli
from lingoforge.commands.data import data
from lingoforge.data.checks import check_file, cleaned_examples
from lingoforge.errors import DataError
from lingoforge.task import Example, Task

LABELS = ["shipping", "billing", "returns", "technical", "account", "product", "complaint", "other"]
SCHEMA = {
    "type": "object",
    "properties": {
        "category": {"type": "string", "enum": LABELS},
        "priority": {"type": "string", "enum": ["low", "medium", "high", "urgent"]},
        "suggested_response": {"type": "string"},
    },
    "required": ["category", "priority"],
    "additionalProperties": False,
}
TASK = Task(
    name="tickets",
    version="1",
    description="",
    languages=("en", "es", "de"),
    system_prompt="You triage tickets.",
    instruction="Classify the ticket.",
    output_schema=SCHEMA,
    scorer=lambda p, g: {},
    primary_metric="category_accuracy",
    fields=("category",),
)

EN = [
    "My parcel arrived broken and the box was open",
    "I was charged twice for my subscription this month",
    "The app crashes every time I try to log in",
    "How long does delivery to Canada usually take",
    "Please close my account and delete my personal data",
]
ES = [
    "Mi paquete llegó roto y la caja estaba abierta",
    "Me cobraron dos veces la suscripción este mes",
    "La aplicación se cierra cada vez que intento entrar",
    "Cuánto tarda normalmente el envío a México",
    "Por favor cierren mi cuenta y borren mis datos personales",
]


def record(text: str, lang: str, category: str = "shipping", **extra: object) -> str:
    return json.dumps(
        {"input": text, "output": {"category": category, "priority": "high"}, "language": lang, **extra},
        ensure_ascii=False,
    )


def dataset(n_en: int, n_es: int) -> list[str]:
    """Distinct, real-language inputs: each sentence with a different order number and customer name."""
    names = ["Ana", "Ben", "Chloe", "Dmitri", "Eva", "Farid", "Greta", "Hugo", "Ines", "Jonas", "Kira", "Luis"]
    lines = [
        record(f"{EN[i % 5]}, order {1000 + 37 * i} for {names[i % 12]} {names[(i // 12) % 12]}", "en", LABELS[i % 8])
        for i in range(n_en)
    ]
    lines += [
        record(f"{ES[i % 5]}, pedido {2000 + 41 * i} de {names[i % 12]} {names[(i // 12) % 12]}", "es", LABELS[i % 8])
        for i in range(n_es)
    ]
    return lines


def write(tmp_path: Path, lines: list[str], name: str = "data.jsonl") -> Path:
    path = tmp_path / name
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def test_clean_file_reports_counts_and_is_usable(tmp_path: Path) -> None:
    report = check_file(write(tmp_path, dataset(60, 20)), TASK)
    assert report.usable and report.errors == 0
    assert report.languages == {"en": 60, "es": 20}
    assert report.labels["category"]["en"]["shipping"] == 8
    assert report.detection["mismatches"] == 0 and report.detection["detected"].get("en", 0) >= 55
    # es: < 50 examples and < half of en; total 80 < 300: targets are max(50, 60/2, 300/2) = 150.
    assert report.suggestions == {"en": 90, "es": 130}
    codes = {f.code for f in report.findings}
    assert {"few_examples", "total_size"} <= codes
    few = next(f for f in report.findings if f.code == "few_examples")
    assert few.line == 0 and "'es' has 20 examples" in few.message and "add 130" in few.message


def test_unbalanced_language_warning(tmp_path: Path) -> None:
    report = check_file(write(tmp_path, dataset(300, 100)), TASK)
    (warning,) = [f for f in report.findings if f.code == "unbalanced"]
    assert "'es' has 100 examples, less than half of the largest language (300); add 50" in warning.message
    assert report.suggestions == {"es": 50}
    assert not [f for f in report.findings if f.code == "total_size"]  # 400 is inside 300-500


def test_errors_have_line_field_and_closest_label(tmp_path: Path) -> None:
    lines = dataset(3, 0)
    lines += [
        json.dumps(
            {
                "input": "Where is my parcel, it is late",
                "output": {"category": "shiping", "priority": "high"},
                "language": "en",
            }
        ),
        json.dumps(
            {"input": "Wrong item in my box", "output": {"category": "Returns", "priority": "low"}, "language": "en"}
        ),
        json.dumps({"input": "Help", "output": {"category": "other"}, "language": "en"}),
        json.dumps(
            {"input": "Help me", "output": {"category": "other", "priority": "low", "mood": "sad"}, "language": "en"}
        ),
        json.dumps({"input": "   ", "output": {"category": "other", "priority": "low"}, "language": "en"}),
        "{broken",
    ]
    report = check_file(write(tmp_path, lines), TASK)
    found = {(f.line, f.code, f.field) for f in report.findings if f.severity == "error"}
    assert found == {
        (4, "unknown_label", "/output/category"),
        (5, "unknown_label", "/output/category"),
        (6, "missing_field", "/output/priority"),
        (7, "schema", "/output"),
        (8, "empty_input", "/input"),
        (9, "invalid_json", ""),
    }
    by_line = {f.line: f for f in report.findings if f.severity == "error"}
    assert "closest valid label: 'shipping'" in by_line[4].message
    assert "--fix changes it to 'returns'" in by_line[5].message
    assert "mood" in by_line[7].message
    assert not report.usable and report.unusable == 1
    cleaned = cleaned_examples(report)
    assert [e.input for e in cleaned][-1] == "Wrong item in my box" and cleaned[-1].output["category"] == "returns"
    assert len(cleaned) == 4


def test_language_mismatch_and_missing_language(tmp_path: Path) -> None:
    lines = dataset(5, 0) + [
        record("Mi paquete llegó roto y la caja estaba abierta, qué desastre", "en"),
        json.dumps(
            {
                "input": "Ich wurde diesen Monat zweimal für mein Abonnement belastet",
                "output": {"category": "billing", "priority": "low"},
            }
        ),
    ]
    report = check_file(write(tmp_path, lines), TASK)
    mismatch = next(f for f in report.findings if f.code == "language_mismatch")
    assert mismatch.line == 6 and "declared 'en', but the input reads as 'es'" in mismatch.message
    missing = next(f for f in report.findings if f.code == "no_language")
    assert missing.line == 7 and "detected 'de'" in missing.message
    assert report.detection["mismatches"] == 1 and report.detection["undeclared"] == 1
    assert cleaned_examples(report)[-1].language == "de"


def test_long_inputs_are_flagged(tmp_path: Path) -> None:
    long_text = "My parcel arrived broken and nobody answers my emails. " * 60
    report = check_file(write(tmp_path, [*dataset(20, 0), record(long_text, "en")]), TASK)
    (flag,) = [f for f in report.findings if f.code == "long_input"]
    assert flag.line == 21 and flag.severity == "warning" and "× the median" in flag.message


def test_exact_and_near_duplicates_inside_the_file(tmp_path: Path) -> None:
    base = "Mi pedido número 48213 no ha llegado todavía y necesito el regalo para el sábado, por favor ayúdenme"
    lines = dataset(6, 0) + [
        record(base, "es"),
        record(base.upper().replace(",", " ,"), "es"),  # exact after normalization
        record(base.replace("sábado", "domingo"), "es"),  # near
        record(base, "es", category="billing"),  # exact, different output
    ]
    report = check_file(write(tmp_path, lines), TASK)
    codes = {(f.line, f.code) for f in report.findings if "duplicate" in f.code}
    assert codes == {(8, "exact_duplicate"), (9, "near_duplicate"), (10, "conflicting_duplicate")}
    assert report.duplicates["exact"] == 2 and report.duplicates["near"] == 1 and report.duplicates["near_groups"] == 1
    assert len(cleaned_examples(report)) == 8  # the two exact copies are dropped


def test_duplicates_across_splits(tmp_path: Path) -> None:
    train = write(tmp_path, dataset(10, 0), "train.jsonl")
    leaked_exact = json.loads(dataset(10, 0)[3])["input"]
    leaked_near = json.loads(dataset(10, 0)[5])["input"].replace("order", "order no.")
    write(
        tmp_path,
        [
            record(leaked_exact, "en"),
            record(leaked_near, "en"),
            record("Completely different question about invoices", "en"),
        ],
        "val.jsonl",
    )
    report = check_file(tmp_path / "val.jsonl", TASK, against=[train])
    assert {(f.line, f.code) for f in report.findings if f.code.startswith("leak")} == {
        (1, "leak_exact"),
        (2, "leak_near"),
    }
    leak = next(f for f in report.findings if f.code == "leak_exact")
    assert "train.jsonl:4" in leak.message and leak.severity == "error"


def test_cli_exit_codes_json_and_sibling_splits(tmp_path: Path) -> None:
    runner = CliRunner()
    good = write(tmp_path, dataset(60, 60))
    result = runner.invoke(data, ["check", str(good), "--task", _task_yaml(tmp_path)])
    assert result.exit_code == 0, result.output
    assert "examples per language" in result.output
    bad = write(tmp_path, [*dataset(5, 0), "{oops"], "bad.jsonl")
    result = runner.invoke(data, ["check", str(bad), "--task", _task_yaml(tmp_path), "--json"])
    assert result.exit_code == 1
    report = json.loads(result.output)
    assert report["usable"] is False and report["errors"] == 1 and report["findings"][0]["line"] in (0, 6)
    assert {"languages", "labels", "language_detection", "duplicates", "suggested_additions", "issue_counts"} <= set(
        report
    )
    # train.jsonl beside val.jsonl is checked for leaks without --against.
    split_dir = tmp_path / "split"
    split_dir.mkdir()
    write(split_dir, dataset(60, 60), "train.jsonl")
    write(split_dir, dataset(2, 0), "val.jsonl")
    result = runner.invoke(data, ["check", str(split_dir / "val.jsonl"), "--task", _task_yaml(tmp_path), "--json"])
    assert result.exit_code == 1 and json.loads(result.output)["duplicates"]["cross_split_exact"] == 2


def test_fix_writes_atomically_and_never_touches_the_input(tmp_path: Path) -> None:
    lines = [*dataset(8, 0), "{oops", record("Where is my parcel, it is late", "en", category="Shipping")]
    path = write(tmp_path, lines)
    before = (path.read_bytes(), os.stat(path).st_mtime_ns)
    out = tmp_path / "clean" / "fixed.jsonl"
    result = CliRunner().invoke(data, ["check", str(path), "--task", _task_yaml(tmp_path), "--fix", str(out)])
    assert result.exit_code == 1  # the input had errors
    assert (path.read_bytes(), os.stat(path).st_mtime_ns) == before
    fixed = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(fixed) == 9 and fixed[-1]["output"]["category"] == "shipping"
    assert not [p for p in out.parent.iterdir() if p.name.startswith(".")]  # no temp file left behind
    again = CliRunner().invoke(data, ["check", str(out), "--task", _task_yaml(tmp_path)])
    assert again.exit_code == 0, again.output


def test_fix_refuses_to_overwrite_the_input(tmp_path: Path) -> None:
    path = write(tmp_path, dataset(3, 0))
    result = CliRunner().invoke(
        data, ["check", str(path), "--task", _task_yaml(tmp_path), "--fix", str(tmp_path / "." / "data.jsonl")]
    )
    assert isinstance(result.exception, DataError) and "that is the input file" in str(result.exception)


def test_fix_failure_leaves_no_output(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import lingoforge.data.checks as checks

    path = write(tmp_path, dataset(3, 0))
    out = tmp_path / "fixed.jsonl"
    real = checks.cleaned_examples

    def failing(report: checks.CheckReport) -> Iterator[Example]:
        yield real(report)[0]
        raise OSError("disk full")

    monkeypatch.setattr(checks, "cleaned_examples", failing)
    result = CliRunner().invoke(cli, ["data", "check", str(path), "--task", _task_yaml(tmp_path), "--fix", str(out)])
    assert result.exit_code == 1 and isinstance(result.exception, SystemExit)  # a clean exit, not a crash
    assert f"Error: cannot write {out}: disk full" in result.output and "Traceback" not in result.output
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data.jsonl", "tickets.yaml"]


def test_fix_into_an_unwritable_folder_names_the_path(tmp_path: Path) -> None:
    path = write(tmp_path, dataset(3, 0))
    (tmp_path / "blocker").write_text("a file, not a folder", encoding="utf-8")
    out = tmp_path / "blocker" / "fixed.jsonl"
    result = CliRunner().invoke(cli, ["data", "check", str(path), "--task", _task_yaml(tmp_path), "--fix", str(out)])
    assert result.exit_code == 1 and isinstance(result.exception, SystemExit)
    assert f"Error: cannot write {out}: " in result.output and "Traceback" not in result.output


def test_fix_with_no_usable_line_writes_nothing_and_fails(tmp_path: Path) -> None:
    path = write(tmp_path, ["{broken", "not json at all", json.dumps({"input": "Help"})])
    out = tmp_path / "fixed.jsonl"
    runner = CliRunner()
    result = runner.invoke(cli, ["data", "check", str(path), "--task", _task_yaml(tmp_path), "--fix", str(out)])
    assert result.exit_code == 1 and isinstance(result.exception, SystemExit)
    assert f"Error: --fix {out}: {path} has no usable record, nothing written" in result.output
    assert "invalid_json" in result.output  # the report saying why is still shown
    as_json = runner.invoke(
        cli, ["data", "check", str(path), "--task", _task_yaml(tmp_path), "--fix", str(out), "--json"]
    )
    assert as_json.exit_code == 1 and "fix" not in json.loads(as_json.stdout)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data.jsonl", "tickets.yaml"]


def _task_yaml(tmp_path: Path) -> str:
    path = tmp_path / "tickets.yaml"
    if not path.exists():
        path.write_text(
            "name: tickets\nlanguages: [en, es, de]\nsystem_prompt: You triage tickets.\n"
            "instruction: Classify the ticket.\n"
            "fields:\n  category:\n    type: enum\n    labels: [" + ", ".join(LABELS) + "]\n"
            "  priority:\n    type: enum\n    labels: [low, medium, high, urgent]\n",
            encoding="utf-8",
        )
    return str(path)
