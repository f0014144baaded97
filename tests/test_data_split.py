"""``data split``: stratified by language × label, no near duplicate across splits, small languages everywhere."""

from __future__ import annotations

import errno
import json
import os
from collections import Counter
from pathlib import Path

import pytest
from click.testing import CliRunner
from lingoforge.cli import cli
from lingoforge.commands.data import data
from lingoforge.data.dedup import find_duplicates
from lingoforge.data.split import assign_splits, split_dataset
from lingoforge.errors import DataError
from lingoforge.task import Example, Task

LABELS = ["shipping", "billing", "returns", "other"]
SCHEMA = {
    "type": "object",
    "properties": {"category": {"type": "string", "enum": LABELS}},
    "required": ["category"],
    "additionalProperties": False,
}
TASK = Task(
    name="tickets",
    version="1",
    description="",
    languages=("en", "es", "de", "fr"),
    system_prompt="",
    instruction="Classify.",
    output_schema=SCHEMA,
    scorer=lambda p, g: {},
    primary_metric="category_accuracy",
    fields=("category",),
)
WORDS = {
    "en": "order parcel refund invoice delivery account password broken late missing charge address cancel".split(),
    "es": "pedido paquete reembolso factura entrega cuenta contraseña roto tarde falta cobro dirección".split(),
    "de": "Bestellung Paket Erstattung Rechnung Lieferung Konto Passwort kaputt spät fehlt Adresse".split(),
    "fr": "commande colis remboursement facture livraison compte passe cassé retard manque adresse".split(),
}


def examples(counts: dict[str, int], seed: int = 0) -> list[Example]:
    import random

    rng = random.Random(seed)
    out = []
    for lang, n in counts.items():
        for i in range(n):
            text = " ".join(rng.choices(WORDS[lang], k=12)) + f" {rng.randint(10**6, 10**7)}"
            out.append(Example("", text, {"category": LABELS[i % len(LABELS)]}, lang))
    return out


def test_stratified_by_language_and_label() -> None:
    data_ = examples({"en": 400, "es": 200})
    names = assign_splits(data_, TASK, val=0.1, test=0.1, seed=1)
    counts = Counter((e.language, e.output["category"], k) for e, k in zip(data_, names, strict=True))
    for lang, n in (("en", 100), ("es", 50)):  # per label
        for label in LABELS:
            assert counts[(lang, label, "val")] == pytest.approx(n * 0.1, abs=1)
            assert counts[(lang, label, "test")] == pytest.approx(n * 0.1, abs=1)
    assert Counter(names) == {"train": 480, "val": 60, "test": 60}


def test_small_languages_are_in_every_split() -> None:
    data_ = examples({"en": 300, "de": 3, "fr": 5})
    names = assign_splits(data_, TASK, seed=3)
    for lang in ("de", "fr"):
        assert {k for e, k in zip(data_, names, strict=True) if e.language == lang} == {"train", "val", "test"}


def test_near_duplicates_never_straddle_splits() -> None:
    data_ = examples({"en": 200, "es": 100})
    base = data_[0].input
    for i in range(1, 30):  # a cluster of 30 look-alikes
        data_[i * 7] = Example("", base + f" x{i}", data_[i * 7].output, "en")
    names = assign_splits(data_, TASK, seed=0)
    groups = find_duplicates([e.input for e in data_]).near
    assert max(len(g) for g in groups) >= 30
    for group in groups:
        assert len({names[i] for i in group}) == 1


def test_deterministic_per_seed() -> None:
    data_ = examples({"en": 100, "es": 50})
    assert assign_splits(data_, TASK, seed=5) == assign_splits(data_, TASK, seed=5)
    assert assign_splits(data_, TASK, seed=5) != assign_splits(data_, TASK, seed=6)


def test_zero_test_fraction_and_bad_fractions() -> None:
    names = assign_splits(examples({"en": 50}), TASK, val=0.2, test=0.0)
    assert set(names) == {"train", "val"}
    with pytest.raises(DataError, match="fractions"):
        assign_splits(examples({"en": 5}), TASK, val=0.6, test=0.5)


def _write(path: Path, items: list[Example]) -> Path:
    path.write_text("\n".join(json.dumps(e.to_record(), ensure_ascii=False) for e in items) + "\n", encoding="utf-8")
    return path


def test_split_dataset_writes_files_and_report(tmp_path: Path) -> None:
    items = examples({"en": 120, "es": 60, "de": 4})
    items.append(items[0])  # an exact duplicate: written once
    source = _write(tmp_path / "all.jsonl", items)
    before = source.read_bytes()
    report = split_dataset(source, TASK, tmp_path / "out", seed=2)
    written = {
        k: [json.loads(x) for x in (tmp_path / "out" / f"{k}.jsonl").read_text().splitlines()]
        for k in ("train", "val", "test")
    }
    assert sum(len(v) for v in written.values()) == 184 and report["dropped_duplicates"] == 1
    assert {k: v["records"] for k, v in report["files"].items()} == {k: len(v) for k, v in written.items()}
    assert report["languages"]["test"]["de"] >= 1 and report["missing_languages"] == {
        "train": [],
        "val": [],
        "test": [],
    }
    assert report["labels"]["val"]["en"]["shipping"] >= 2 and report["primary_label"] == "category"
    inputs = [{r["input"] for r in v} for v in written.values()]
    assert not (inputs[0] & inputs[1]) and not (inputs[0] & inputs[2]) and not (inputs[1] & inputs[2])
    on_disk = json.loads((tmp_path / "out" / "data_report.json").read_text())
    assert on_disk == report and source.read_bytes() == before


def test_split_refuses_a_file_with_errors(tmp_path: Path) -> None:
    source = _write(tmp_path / "all.jsonl", examples({"en": 10}))
    with source.open("a") as fh:
        fh.write('{"input": "x", "output": {"category": "shiping"}}\n')
    with pytest.raises(DataError, match=r"(?s)1 error.*all.jsonl:11.*closest valid label: 'shipping'.*--fix"):
        split_dataset(source, TASK, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def _task_file(tmp_path: Path) -> Path:
    """The YAML twin of ``TASK`` for the CLI."""
    path = tmp_path / "t.yaml"
    path.write_text(
        "name: tickets\nlanguages: [en, es]\ninstruction: Classify.\nfields:\n  category:\n    type: enum\n"
        f"    labels: [{', '.join(LABELS)}]\n",
        encoding="utf-8",
    )
    return path


def test_cli_split(tmp_path: Path) -> None:
    source = _write(tmp_path / "all.jsonl", examples({"en": 40, "es": 20}))
    task_file = _task_file(tmp_path)
    result = CliRunner().invoke(
        data,
        ["split", str(source), "--task", str(task_file), "-o", str(tmp_path / "out"), "--val", "0.2", "--seed", "1"],
    )
    assert result.exit_code == 0, result.output
    assert "train" in result.output and (tmp_path / "out" / "data_report.json").is_file()
    report = json.loads((tmp_path / "out" / "data_report.json").read_text())
    assert report["fractions"]["val"] == 0.2 and report["files"]["val"]["records"] == 12


@pytest.mark.parametrize("failure", ["not_a_folder", "disk_full"])
def test_cli_split_write_failure_is_one_clear_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, failure: str
) -> None:
    source = _write(tmp_path / "all.jsonl", examples({"en": 40, "es": 20}))
    task_file = _task_file(tmp_path)
    if failure == "not_a_folder":
        (tmp_path / "blocker").write_text("a file, not a folder", encoding="utf-8")
        out_dir, reason = tmp_path / "blocker" / "out", "Not a directory"
        said = f"Error: cannot write in {out_dir}: "
    else:
        out_dir, reason = tmp_path / "out", "No space left on device"
        said = f"Error: cannot write {out_dir / 'train.jsonl'}: "  # the final path, not the staging folder's

        def no_space(*args: object) -> None:
            raise OSError(errno.ENOSPC, reason)

        monkeypatch.setattr(os, "fsync", no_space)
    result = CliRunner().invoke(cli, ["data", "split", str(source), "--task", str(task_file), "-o", str(out_dir)])
    assert result.exit_code == 1 and isinstance(result.exception, SystemExit)  # a clean exit, not a crash
    assert said in result.output and reason in result.output
    assert "Traceback" not in result.output
    assert not out_dir.exists() or list(out_dir.iterdir()) == []  # no partial or temp file


def test_many_labels_still_deliver_the_test_fraction_asked_and_say_so(tmp_path: Path) -> None:
    """45 labels × 9 languages in 400 rows: most (language, label) strata hold one example, and rounding each
    stratum alone sent every one of them to training (9 test items instead of 100)."""
    from lingoforge import get_task

    task = get_task("ecommerce_taxonomy")
    rows = task.generate(400, seed=0)
    assert len({r.output["category"] for r in rows}) == 45 and len({r.language for r in rows}) == 9
    source = _write(tmp_path / "eco.jsonl", rows)
    out = tmp_path / "out"
    result = CliRunner().invoke(cli, ["data", "split", str(source), "--task", "ecommerce_taxonomy", "-o", str(out),
                                      "--test", "0.25"], terminal_width=200)
    assert result.exit_code == 0, result.output
    report = json.loads((out / "data_report.json").read_text())
    total = sum(f["records"] for f in report["files"].values())
    assert abs(report["files"]["test"]["records"] / total - 0.25) <= 0.02
    assert report["delivered"]["test"]["all"] == report["files"]["test"]["records"] / total
    assert all(abs(share - 0.25) <= 0.05 for share in report["delivered"]["test"].values())
    lines = [" ".join(line.replace("│", " ").split()) for line in result.output.splitlines()]
    assert "asked 65% 10% 25%" in lines
    test_count = report["files"]["test"]["records"]
    assert any(line.startswith("all ") and f"{test_count} ({test_count / total:.0%})" in line for line in lines)
