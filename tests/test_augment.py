"""``run --augment``: a team's data topped up with generated examples for lagging languages, in training only."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner
from lingoforge import get_task
from lingoforge.cli import cli
from lingoforge.errors import LingoforgeError
from lingoforge.pipeline import SYNTHETIC, Options, Pipeline


def own_data(path: Path) -> Path:
    """The team's data: 20 tickets in each of four languages (from the template's generator, seed 7)."""
    examples = get_task("support_tickets").generate(80, 7, ["en", "de", "es", "fr"])
    path.write_text("".join(json.dumps(e.to_record(), ensure_ascii=False) + "\n" for e in examples), encoding="utf-8")
    return path


def pipeline(tmp_path: Path, augment, data: Path | None = None) -> Pipeline:
    data = data if data is not None else own_data(tmp_path / "own.jsonl")
    return Pipeline(Options(task=get_task("support_tickets"), base="smollm2-135m", out=tmp_path / "run", data=data,
                            augment=augment, val=0.1, test=0.2))


def lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def test_generated_examples_join_training_only_and_are_marked(tmp_path: Path) -> None:
    p = pipeline(tmp_path, {"es": 12, "de": 5})
    p.augment = p._resolve_augment()
    p.data()
    p.split()
    data = tmp_path / "run" / "data"
    synthetic = lines(data / SYNTHETIC)
    assert sorted(r["language"] for r in synthetic) == ["de"] * 5 + ["es"] * 12
    assert all(r["meta"]["synthetic"] for r in synthetic)
    train, val, test = (lines(data / f"{k}.jsonl") for k in ("train", "val", "test"))
    assert sum(bool(r.get("meta", {}).get("synthetic")) for r in train) == 17
    assert not any(r.get("meta", {}).get("synthetic") for r in val + test)
    assert len(train) + len(val) + len(test) == 80 + 17
    recorded = json.loads((tmp_path / "run" / "run.json").read_text())["pipeline"]["data"]["result"]
    assert recorded["synthetic"] == {"es": 12, "de": 5}


def test_auto_follows_the_last_evaluation_advice(tmp_path: Path) -> None:
    p = pipeline(tmp_path, "auto")
    with pytest.raises(LingoforgeError, match="--augment auto follows the advice of an evaluation"):
        p._resolve_augment()
    (tmp_path / "run" / "eval").mkdir(parents=True)
    (tmp_path / "run" / "eval" / "report.json").write_text(json.dumps(
        {"languages": {"es": {"primary": 0.4}, "en": {"primary": 0.9}},
         "lagging": [{"language": "es", "add_examples": 30}]}), encoding="utf-8")
    assert p._resolve_augment() == {"es": 30}


def test_augment_refusals_come_before_anything_is_written(tmp_path: Path) -> None:
    with pytest.raises(LingoforgeError, match="without --data, raise -n instead"):
        Pipeline(Options(task=get_task("support_tickets"), base="smollm2-135m", out=tmp_path / "r", augment={"es": 5}))\
            ._resolve_augment()
    with pytest.raises(LingoforgeError, match="--augment sv: task 'support_tickets' has no generator text for sv"):
        pipeline(tmp_path, {"sv": 5})._resolve_augment()
    task_file = tmp_path / "own.yaml"
    task_file.write_text("name: own\nextends: support_tickets\nfields:\n  category:\n    labels: [a, b, c]\n")
    result = CliRunner().invoke(cli, ["run", str(task_file), "--base", "smollm2-135m", "-o", str(tmp_path / "o"),
                                      "--data", str(own_data(tmp_path / "d.jsonl")), "--augment", "es=5"])
    assert result.exit_code == 1 and "generating examples is off" in result.output, result.output
    assert not (tmp_path / "o").exists()
    bad = CliRunner().invoke(cli, ["run", "support_tickets", "--base", "x", "-o", str(tmp_path / "o2"),
                                   "--augment", "es"])
    assert bad.exit_code == 2 and "'es' is not LANG=N" in bad.output
