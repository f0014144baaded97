"""Is it worth deploying? References equal scikit-learn's, intervals equal the libraries', each verdict outcome is
worded on its evidence, and a collapse is said in eval's output, run's summary and report.html."""

from __future__ import annotations

import json
import random
import shutil
import subprocess
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from click.testing import CliRunner
from lingoforge.backends import Backend, Generation
from lingoforge.evaluate import build_report, score_answer
from lingoforge.references import Reference, classifier, majority, retrieval
from lingoforge.stats import items_for_margin, paired_difference, wilson
from lingoforge.task import Example, Task
from lingoforge.verdict import collapse_lines
from lingoforge.yaml_task import load_yaml_task

TASK_YAML = """
name: tickets
languages: [en, de]
instruction: Classify the ticket.
fields:
  category: {type: enum, labels: [shipping, billing, tech]}
  priority: {type: enum, labels: [low, high]}
"""
WORDS = {
    "shipping": {"en": "parcel delivery late courier", "de": "Paket Lieferung spät Kurier"},
    "billing": {"en": "invoice charge refund payment", "de": "Rechnung Abbuchung Erstattung Zahlung"},
    "tech": {"en": "login password crash error", "de": "Anmeldung Passwort Absturz Fehler"},
}


@pytest.fixture
def task(tmp_path: Path) -> Task:
    path = tmp_path / "tickets.yaml"
    path.write_text(TASK_YAML, encoding="utf-8")
    return load_yaml_task(path)


def tickets(n: int, seed: int, skew: Mapping[str, float] | None = None) -> list[Example]:
    """``n`` tickets per language whose words carry their category, with some noise; ``skew`` weighs categories."""
    rng = random.Random(seed)
    labels = list(WORDS)
    weights = [(skew or {}).get(c, 1.0) for c in labels]
    out = []
    for lang in ("en", "de"):
        for i in range(n):
            category = rng.choices(labels, weights)[0]
            shown = category if rng.random() < 0.8 else rng.choice(labels)
            words = WORDS[shown][lang].split()
            text = " ".join(rng.choices(words, k=4)) + f" #{rng.randint(100, 999)}"
            out.append(Example("", text, {"category": category, "priority": "high" if i % 3 == 0 else "low"}, lang))
    return out


def answered(task: Task, examples: Sequence[Example], answer: Callable[[int, Example], Mapping[str, Any]]
             ) -> list[dict[str, Any]]:
    """Scored prediction records of a 'model' that answers ``answer(i, example)``."""
    return [score_answer(task, i, ex, Generation(json.dumps(answer(i, ex)), 0.01, 4)) for i, ex in enumerate(examples)]


# --------------------------------------------------------------------------- references equal scikit-learn's


def test_references_equal_dummy_classifier_and_the_same_pipeline_fitted_here(task: Task) -> None:
    from sklearn.dummy import DummyClassifier
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline, make_union

    train, test = tickets(40, seed=1, skew={"billing": 3.0}), tickets(15, seed=2)
    got_majority, got_classifier = majority(task, train, test), classifier(task, train, test)
    for field in task.fields:
        dummy = DummyClassifier(strategy="most_frequent").fit([[0]] * len(train), [e.output[field] for e in train])
        assert [a[field] for a in got_majority.answers] == list(dummy.predict([[0]] * len(test)))
        pipeline = make_pipeline(
            make_union(TfidfVectorizer(analyzer="word", ngram_range=(1, 2), sublinear_tf=True),
                       TfidfVectorizer(analyzer="char_wb", ngram_range=(2, 5), sublinear_tf=True)),
            LogisticRegression(C=10.0, max_iter=2000),
        ).fit([e.input for e in train], [e.output[field] for e in train])
        assert [a[field] for a in got_classifier.answers] == list(pipeline.predict([e.input for e in test]))
    # the words carry the category: the classifier must have learned it (well above the majority)
    hits = np.mean([a["category"] == e.output["category"] for a, e in zip(got_classifier.answers, test, strict=True)])
    assert hits > 0.6


def test_a_constrained_answer_cut_short_still_gives_the_labels_it_completed(task: Task) -> None:
    from lingoforge.references import from_predictions

    cut = {"valid": False, "output": None,
           "raw": '{"category": "billing", "priority": "urgent", "reply": "Dear customer, we'}
    whole = {"valid": True, "raw": "", "output": {"category": "tech", "priority": "low"}}
    answers = from_predictions("base", task, [cut, whole, {"valid": False, "raw": "no JSON", "output": None}]).answers
    assert answers == ({"category": "billing"}, {"category": "tech", "priority": "low"}, None)  # 'urgent': no label


def test_retrieval_answers_the_nearest_training_input_of_the_same_language() -> None:
    schema = {"type": "object", "properties": {"reply": {"type": "string"}}, "required": ["reply"]}
    task = Task("r", "1", "", ("en", "de"), "", "", schema, lambda p, g: {}, "x", text_fields=("reply",))
    train = [Example("", "my parcel is late", {"reply": "tracking"}, "en"),
             Example("", "wrong invoice amount", {"reply": "billing"}, "en"),
             Example("", "my parcel is late", {"reply": "Sendungsverfolgung"}, "de")]
    test = [Example("", "parcel late again", {"reply": "?"}, "en"), Example("", "invoice wrong", {"reply": "?"}, "en"),
            Example("", "parcel late", {"reply": "?"}, "de")]
    assert [a["reply"] for a in retrieval(task, train, test).answers] == ["tracking", "billing", "Sendungsverfolgung"]


# --------------------------------------------------------------------------- intervals equal the libraries'


def test_every_accuracy_interval_equals_statsmodels_wilson(task: Task) -> None:
    from statsmodels.stats.proportion import proportion_confint

    test = tickets(23, seed=3)
    records = answered(task, test, lambda i, e: {"category": e.output["category"] if i % 3 else "tech",
                                                 "priority": "low"})
    report = build_report(task, records, model={"spec": "m"}, seconds=1.0, batch_size=1,
                          references=[majority(task, tickets(30, seed=4), test)])
    checked = 0
    for s in [report["overall"], *report["languages"].values()]:
        for stats in s["fields"].values():
            k = round(stats["accuracy"] * s["n"])
            assert stats["accuracy_ci"] == pytest.approx(proportion_confint(k, s["n"], 0.05, "wilson"), abs=1e-9)
            checked += 1
        k = round(s["schema_valid_rate"] * s["n"])
        assert s["schema_valid_ci"] == pytest.approx(proportion_confint(k, s["n"], 0.05, "wilson"), abs=1e-9)
    block = report["verdict"]["fields"]["category"]["overall"]["references"]["majority"]
    k = round(block["value"] * block["n"])
    assert block["ci"] == pytest.approx(proportion_confint(k, block["n"], 0.05, "wilson"), abs=1e-9)
    assert checked == 6
    assert wilson(7, 10) == pytest.approx(proportion_confint(7, 10, 0.05, "wilson"), abs=1e-9)


def test_paired_bootstrap_is_seeded_and_centred_on_the_mean_difference() -> None:
    rng = random.Random(0)
    a = [float(rng.random() < 0.7) for _ in range(200)]
    b = [float(rng.random() < 0.4) for _ in range(200)]
    diff = paired_difference(a, b)
    assert diff["delta"] == pytest.approx(np.mean(a) - np.mean(b), abs=1e-12)
    assert diff == paired_difference(a, b)  # seeded: the same interval every time
    assert diff["ci"][0] < diff["delta"] < diff["ci"][1] and diff["ci"][0] > 0
    assert paired_difference(a, a)["ci"] == [0.0, 0.0]  # the same answers: no difference at all
    assert paired_difference(a, b, seed=1)["ci"] != diff["ci"]


def test_items_for_a_ten_point_margin() -> None:
    n = items_for_margin(0.5)
    low, high = wilson(round(0.5 * n), n)
    assert (high - low) / 2 <= 0.10
    low, high = wilson(round(0.5 * (n - 1)), n - 1)
    assert (high - low) / 2 > 0.10  # the fewest that do
    assert 90 <= n <= 100


# --------------------------------------------------------------------------- one verdict line per outcome


def _reference(name: str, test: Sequence[Example], right: Callable[[int], bool]) -> Reference:
    return Reference(name, tuple({"category": e.output["category"] if right(i) else "(wrong)", "priority": "low"}
                                 for i, e in enumerate(test)))


@pytest.mark.parametrize(("model_right", "ref_right", "said"), [
    (lambda i: i % 10 != 0, lambda i: i % 10 < 4, "beats every reference; the best is"),
    (lambda i: i % 10 < 5, lambda i: i % 10 in (0, 1, 2, 3, 5), "no better than"),
    (lambda i: i % 10 < 2, lambda i: i % 10 < 9, "worse than"),
])
def test_one_verdict_line_per_field_worded_on_the_evidence(
    task: Task, model_right: Callable[[int], bool], ref_right: Callable[[int], bool], said: str
) -> None:
    test = tickets(100, seed=5)
    records = answered(task, test, lambda i, e: {
        "category": e.output["category"] if model_right(i) else "(wrong)", "priority": e.output["priority"]})
    for r in records:  # a wrong label breaks the schema; make it a valid wrong label instead
        if not r["valid"]:
            r.update(valid=True, output={"category": "tech" if r["gold"]["category"] != "tech" else "billing",
                                         "priority": r["gold"]["priority"]})
    report = build_report(task, records, model={"spec": "m"}, seconds=1.0, batch_size=1,
                          references=[_reference("classifier", test, ref_right)])
    lines = report["verdict"]["lines"]
    assert len(lines) == len(task.fields)
    category = lines[0]
    model = report["verdict"]["fields"]["category"]["overall"]
    assert category.startswith(f"category: {model['model']['value']:.0%} [")
    assert f"on 200 items — {said} a TF-IDF classifier" in category
    expected = {"beats every reference; the best is": "beats", "no better than": "no_better", "worse than": "worse"}
    assert model["outcome"] == expected[said]
    diff = model["versus"]["classifier"]
    assert f"({diff['delta'] * 100:+.0f} pts [{diff['ci'][0] * 100:+.0f}, {diff['ci'][1] * 100:+.0f}])" in category


def test_without_references_the_verdict_says_so(task: Task) -> None:
    test = tickets(5, seed=6)
    records = answered(task, test, lambda i, e: dict(e.output))
    report = build_report(task, records, model={"spec": "m"}, seconds=1.0, batch_size=1)
    assert report["verdict"]["lines"][0] == "category: 100% [72%–100%] on 10 items — no reference to compare with"
    assert report["verdict"]["warnings"] == [
        f"{field}: too few items per language to separate models in de (5), en (5); ±10 points needs about "
        f"{items_for_margin(1.0)} items per language" for field in ("category", "priority")]


# --------------------------------------------------------------------------- a collapse is said everywhere


class OneLabel(Backend):
    """A 'model' that learned the prior: 'tech' and 'high' whatever the ticket."""

    name = "scripted"

    def generate(self, batch: Sequence[Any], schema: Mapping[str, Any] | None = None,
                 max_new_tokens: int = 256) -> list[Generation]:
        return [Generation(json.dumps({"category": "tech", "priority": "high"}), 0.01, 4) for _ in batch]


def _write(path: Path, examples: Sequence[Example]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(e.to_record()) + "\n" for e in examples), encoding="utf-8")
    return path


def test_a_collapse_is_said_in_eval_output_and_report_html(
    task: Task, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from lingoforge import evaluate as evaluate_module
    from lingoforge.cli import cli

    monkeypatch.setattr(evaluate_module, "get_backend", lambda spec, backend, **kw: OneLabel("prior"))
    data = _write(tmp_path / "test.jsonl", tickets(12, seed=7))
    train = _write(tmp_path / "train.jsonl", tickets(30, seed=8))
    out = tmp_path / "eval"
    result = CliRunner().invoke(cli, ["eval", "ollama:prior", "--task", task.source, "--data", str(data),
                                      "--train-data", str(train), "-o", str(out)])
    assert result.exit_code == 0, result.output
    report = json.loads((out / "report.json").read_text(encoding="utf-8"))
    line = next(x for x in report["collapse_lines"] if x.startswith("category (all languages)"))
    assert "answers piled up on 'tech': 24 of 24 answers" in line
    text = " ".join(result.stdout.split())
    assert " ".join(line.split()) in text
    assert text.index(" ".join(report["verdict"]["lines"][0].split())) < text.index(" ".join(line.split()))
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    if browser is None:
        pytest.skip("report.html is checked in a browser: needs Debian's chromium (apt-get install -y chromium)")
    dom = subprocess.run([browser, "--headless", "--no-sandbox", "--disable-gpu", "--dump-dom",
                          (out / "report.html").resolve().as_uri()], check=True, capture_output=True, text=True,
                         timeout=120).stdout
    assert line in dom.replace("&#x27;", "'").replace("&amp;", "&")
    assert dom.index("Verdict: is it worth deploying?") < dom.index("Where answers pile up")


def test_a_collapse_is_said_in_the_run_summary(task: Task, tmp_path: Path) -> None:
    from lingoforge.commands.run import print_summary
    from lingoforge.pipeline import Options, build_summary
    from lingoforge.report import write_report
    from lingoforge.runfolder import RunFolder
    from rich.console import Console

    test = tickets(12, seed=9)
    collapsed = answered(task, test, lambda i, e: {"category": "tech", "priority": "high"})
    refs = [majority(task, tickets(30, seed=10), test)]
    run = RunFolder(tmp_path / "run")
    for folder, records in (("", collapsed), ("base", collapsed), ("base-constrained", collapsed)):
        report = build_report(task, records, model={"spec": folder or "tuned", "backend": "hf"}, seconds=1.0,
                              batch_size=1, references=refs if not folder else ())
        report["predictions"] = records
        write_report(report, run.eval / folder)
    summary = build_summary(run, Options(task=task, base="smollm2-135m", out=run.root))
    console = Console(record=True, width=400)
    print_summary(summary, console)
    printed = console.export_text()
    tuned = json.loads((run.eval / "report.json").read_text(encoding="utf-8"))
    assert tuned["collapse_lines"] and all(line in printed for line in tuned["collapse_lines"])
    assert printed.index(tuned["verdict"]["lines"][0]) < printed.index(tuned["collapse_lines"][0])


def test_the_base_reference_is_asked_the_schema_up_to_its_last_label(task: Task) -> None:
    from lingoforge import get_task
    from lingoforge.evaluate import labels_first

    tickets_task = labels_first(get_task("support_tickets"))
    assert list(tickets_task.schema["properties"]) == ["category", "priority", "language"]
    assert tickets_task.schema["required"] == ["category", "priority", "language"] and tickets_task.text_fields == ()
    assert tickets_task.instruction == get_task("support_tickets").instruction  # the same prompt
    assert labels_first(task).schema == task.schema  # labels only: nothing to cut


def test_deploy_says_the_verdict_and_the_collapse_before_it_creates_anything(task: Task, tmp_path: Path) -> None:
    from lingoforge.cli import cli
    from lingoforge.report import write_report

    test = tickets(12, seed=11)
    records = answered(task, test, lambda i, e: {"category": "tech", "priority": "high"})
    report = build_report(task, records, model={"spec": "tuned", "backend": "hf"}, seconds=1.0, batch_size=1,
                          references=[majority(task, tickets(30, seed=12), test)])
    run = tmp_path / "run"
    write_report(report, run / "eval")
    (run / "run.json").write_text("{}", encoding="utf-8")
    result = CliRunner().invoke(cli, ["deploy", str(run), "--name", "tickets", "--host", "http://127.0.0.1:9"])
    assert result.exit_code == 1  # nothing to deploy here: the verdict came first all the same
    said = " ".join(result.output.split())
    for line in [*report["verdict"]["lines"], *report["collapse_lines"]]:
        assert " ".join(line.split()) in said
    assert said.index(" ".join(report["collapse_lines"][0].split())) < said.index("Error")


def test_a_collapse_onto_a_label_that_is_not_the_commonest_is_not_called_the_prior() -> None:
    piled = {"answers": {"low": 16}, "gold": {"medium": 10, "urgent": 3, "low": 2, "high": 1},
             "collapsed": {"label": "low", "count": 16, "n": 16, "gold_share": 10 / 16, "gold_of_label": 2}}
    prior = {"answers": {"medium": 16}, "gold": piled["gold"],
             "collapsed": {"label": "medium", "count": 16, "n": 16, "gold_share": 10 / 16, "gold_of_label": 10}}
    (line,) = collapse_lines({"priority": {"all": piled}})
    assert line.endswith("one answer whatever the input, and not the commonest label either"), line
    (line,) = collapse_lines({"priority": {"all": prior}})
    assert line.endswith("the model learned the prior, not the inputs"), line
