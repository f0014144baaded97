"""Streamed, resumable eval predictions: a killed evaluation keeps its answers in predictions.jsonl, a rerun
with the same settings generates only the missing items (and reports what an uninterrupted run reports),
and other settings start the file over instead of mixing answers."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest
from lingoforge.backends import Backend, Generation
from lingoforge.errors import DataError
from lingoforge.evaluate import compare, evaluate
from lingoforge.predlog import model_identity, settings_path
from lingoforge.report import write_report
from lingoforge.task import Example, Task
from lingoforge.yaml_task import load_yaml_task

TASK_YAML = """
name: tickets
languages: [en, es, de]
instruction: Classify the ticket.
fields:
  category: {type: enum, labels: [shipping, billing, tech]}
"""


class Killed(RuntimeError):
    """Stands for the process being killed in the middle of an evaluation."""


class CountingBackend(Backend):
    """Answers the category named in the ticket (``tech`` for German ones) followed by ``suffix``, records every
    input it was asked about, and raises ``Killed`` once it has answered ``fail_after`` items."""

    def __init__(
        self, model: str = "fake", name: str = "fake", fail_after: int | None = None, suffix: str = ""
    ) -> None:
        super().__init__(model)
        self.name = name
        self.fail_after = fail_after
        self.suffix = suffix
        self.asked: list[str] = []

    def generate(
        self,
        batch: Sequence[Sequence[Mapping[str, str]]],
        schema: Mapping[str, Any] | None = None,
        max_new_tokens: int = 256,
    ) -> list[Generation]:
        if self.fail_after is not None and len(self.asked) + len(batch) > self.fail_after:
            raise Killed(f"killed after {len(self.asked)} items")
        out = []
        for i, conv in enumerate(batch):
            text = conv[-1]["content"].split("\n")[-1]
            self.asked.append(text)
            category = "tech" if " de " in f" {text} " else text.split()[-1]
            out.append(Generation(json.dumps({"category": category}) + self.suffix, 0.01 * (i + 1), 4))
        return out


@pytest.fixture
def task(tmp_path: Path) -> Task:
    path = tmp_path / "tickets.yaml"
    path.write_text(TASK_YAML, encoding="utf-8")
    return load_yaml_task(path)


def data(n: int = 9) -> list[Example]:
    labels = ["shipping", "billing", "tech"]
    langs = ["en", "es", "de"]
    return [
        Example(
            "", f"ticket {i} {langs[i % 3]} {labels[(i // 3) % 3]}", {"category": labels[(i // 3) % 3]}, langs[i % 3]
        )
        for i in range(n)
    ]


def timeless(report: Mapping[str, Any]) -> dict[str, Any]:
    """The report without what depends on the clock or on how many items were resumed."""
    out = json.loads(json.dumps(report))
    for r in [out, out.get("compared") or {}]:
        for key in ("items_per_s", "total_s"):
            (r.get("throughput") or {}).pop(key, None)
        (r.get("data") or {}).pop("resumed", None)
    (out.get("comparison") or {}).pop("throughput", None)
    return out


def lines(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def test_killed_eval_resumes_only_the_missing_items_and_reports_like_an_uninterrupted_run(
    task: Task, tmp_path: Path
) -> None:
    examples = data(9)
    out = tmp_path / "eval" / "predictions.jsonl"
    with pytest.raises(Killed):
        evaluate(CountingBackend(fail_after=4), task, examples, batch_size=2, predictions=out)
    assert [p["index"] for p in lines(out)] == [0, 1, 2, 3]  # two whole batches were on disk before the kill
    with open(out, "a", encoding="utf-8") as fh:
        fh.write('{"model":"fake","backend":"fake","index":4,"raw":"{\\"categ')  # killed in the middle of a write

    again = CountingBackend()
    resumed = evaluate(again, task, examples, batch_size=2, predictions=out)
    assert again.asked == [ex.input for ex in examples[4:]]
    assert [p["index"] for p in lines(out)] == list(range(9))
    assert resumed["data"]["resumed"] == 4

    whole = evaluate(CountingBackend(), task, examples, batch_size=2, predictions=tmp_path / "whole.jsonl")
    assert timeless(resumed) == timeless(whole)
    assert resumed["overall"]["primary"] == pytest.approx(7 / 9)  # 2 of the 3 German answers are wrong


def test_other_settings_model_or_data_start_over_instead_of_mixing(task: Task, tmp_path: Path) -> None:
    examples = data(6)
    out = tmp_path / "predictions.jsonl"
    evaluate(CountingBackend(), task, examples, predictions=out, max_new_tokens=32)
    for label, model, options in [
        ("generation settings", CountingBackend(), {"max_new_tokens": 64}),
        ("model", CountingBackend("other-model"), {"max_new_tokens": 64}),
        ("data", CountingBackend("other-model"), {"max_new_tokens": 64, "limit": 3}),
    ]:
        report = evaluate(model, task, examples, predictions=out, **options)
        assert len(model.asked) == report["data"]["n"], label
        assert report["data"]["resumed"] == 0, label
        assert len(lines(out)) == report["data"]["n"], f"{label}: old answers were kept beside new ones"
        assert json.loads(settings_path(out).read_text()) == report["settings"], label
    changed_gold = [Example("", ex.input, {"category": "billing"}, ex.language) for ex in examples[:3]]
    model = CountingBackend("other-model")
    evaluate(model, task, changed_gold, predictions=out, max_new_tokens=64)
    assert len(model.asked) == 3


def test_retrained_weights_at_the_same_path_change_the_model_identity(tmp_path: Path) -> None:
    folder = tmp_path / "merged"
    folder.mkdir()
    (folder / "config.json").write_text("{}")
    (folder / "model.safetensors").write_bytes(b"old weights")
    before = model_identity(str(folder))
    assert before == model_identity(str(folder))
    (folder / "model.safetensors").write_bytes(b"retrained weights")
    assert model_identity(str(folder)) != before


def test_finished_report_folder_is_reused_whole_and_a_report_without_settings_is_not(
    task: Task, tmp_path: Path
) -> None:
    from lingoforge.evaluate import build_report

    examples = data(6)
    folder = tmp_path / "eval"
    first = evaluate(CountingBackend(), task, examples, predictions=folder / "predictions.jsonl")
    write_report(first, folder)  # rewrites predictions.jsonl whole, with its settings
    idle = CountingBackend()
    again = evaluate(idle, task, examples, predictions=folder / "predictions.jsonl")
    assert idle.asked == []
    assert again["data"]["resumed"] == 6 and again["throughput"]["items_per_s"] is None
    assert timeless(again) == timeless(first)

    bare = build_report(task, first["predictions"], model=first["model"], seconds=1.0, batch_size=8)
    write_report({**bare, "predictions": first["predictions"]}, folder)
    assert not settings_path(folder / "predictions.jsonl").exists()
    fresh = CountingBackend()
    evaluate(fresh, task, examples, predictions=folder / "predictions.jsonl")
    assert len(fresh.asked) == 6


def test_compare_resumes_each_model_in_the_shared_file(task: Task, tmp_path: Path) -> None:
    examples = data(6)
    out = tmp_path / "predictions.jsonl"
    with pytest.raises(Killed):
        killed = CountingBackend("tuned", fail_after=2)
        compare(CountingBackend("base"), killed, task, examples, batch_size=2, predictions=out)
    base, tuned = CountingBackend("base"), CountingBackend("tuned")
    report = compare(base, tuned, task, examples, batch_size=2, predictions=out)
    assert base.asked == [] and tuned.asked == [ex.input for ex in examples[2:]]
    assert sorted((p["model"], p["index"]) for p in lines(out)) == sorted(
        (m, i) for m in ("base", "tuned") for i in range(6)
    )
    whole = compare(CountingBackend("base"), CountingBackend("tuned"), task, examples, batch_size=2)
    assert timeless(report) == timeless(whole)


def test_answers_holding_unicode_line_separators_resume_whole(task: Task, tmp_path: Path) -> None:
    out = tmp_path / "predictions.jsonl"
    first = evaluate(CountingBackend(suffix="\u2028\u0085"), task, data(3), predictions=out)
    again = CountingBackend(suffix="\u2028\u0085")
    resumed = evaluate(again, task, data(3), predictions=out)
    assert again.asked == []
    assert [p["raw"] for p in resumed["predictions"]] == [p["raw"] for p in first["predictions"]]
    assert resumed["overall"]["schema_valid_rate"] == 1.0


def test_a_foreign_line_is_named_by_file_and_line(task: Task, tmp_path: Path) -> None:
    examples = data(3)
    out = tmp_path / "predictions.jsonl"
    evaluate(CountingBackend(), task, examples, predictions=out)
    out.write_text(out.read_text() + '{"id": 7, "output": null}\n')
    with pytest.raises(DataError, match=re.escape(f"{out}:4: not an eval prediction line")):
        evaluate(CountingBackend(), task, examples, predictions=out)


def test_eval_cli_streams_into_the_report_folder_and_resumes(
    task: Task, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from click.testing import CliRunner
    from lingoforge import evaluate as evaluate_module
    from lingoforge.cli import cli

    test_file = tmp_path / "test.jsonl"
    test_file.write_text("".join(json.dumps(ex.to_record()) + "\n" for ex in data(9)), encoding="utf-8")
    backends = [CountingBackend("fake", "ollama", fail_after=4), CountingBackend("fake", "ollama")]
    monkeypatch.setattr(evaluate_module, "get_backend", lambda spec, backend, **kw: backends.pop(0))
    out = tmp_path / "eval"
    args = ["eval", "ollama:fake", "--task", task.source, "--data", str(test_file), "-o", str(out), "--batch-size", "2"]
    killed = CliRunner().invoke(cli, args)
    assert isinstance(killed.exception, Killed)
    assert len(lines(out / "predictions.jsonl")) == 4
    second = backends[0]
    result = CliRunner().invoke(cli, [*args, "--json"])
    assert result.exit_code == 0, result.output
    assert len(second.asked) == 5
    report = json.loads(result.stdout)
    assert report["data"]["resumed"] == 4 and report["data"]["n"] == 9
    assert [(p["model"], p["backend"], p["index"]) for p in lines(out / "predictions.jsonl")] == [
        ("ollama:fake", "ollama", i) for i in range(9)
    ]


def test_a_model_that_fails_to_open_loses_no_earlier_predictions(tmp_path: Path) -> None:
    from lingoforge.predlog import PredictionLog

    path = tmp_path / "eval" / "predictions.jsonl"
    PredictionLog(path, {"n": 1}).append({"spec": "a", "backend": "hf"}, [{"index": 0, "raw": "{}", "latency_s": 0.1,
                                                                            "n_tokens": 2}])
    before = path.read_bytes(), settings_path(path).read_bytes()
    PredictionLog(path, {"n": 2})  # other settings, then the backend fails before any answer
    assert (path.read_bytes(), settings_path(path).read_bytes()) == before
    PredictionLog(tmp_path / "new" / "predictions.jsonl", {"n": 1})
    assert not (tmp_path / "new").exists()
