"""Advice for a lagging language rests on evidence: its own trend across retrainings, and a collapsed label."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
from lingoforge.advice import history_of, lagging_languages, record_history, trend_advice
from lingoforge.runfolder import RunFolder
from lingoforge.task import Task
from lingoforge.verdict import collapse


def needed(count: int, before: tuple[int, float], value: float, target: float) -> int:
    """The test's own arithmetic of the log-linear trend: examples to add, rounded up to 5."""
    slope = (value - before[1]) / math.log(count / before[0])
    return 5 * math.ceil((count * math.exp((target - value) / slope) - count) / 5)


def test_the_count_scales_with_the_gap_on_the_language_trend() -> None:
    history = [{"training": {"hi": 20, "en": 50, "de": 52}, "primary": {"hi": 0.61, "en": 0.93, "de": 0.97}}]
    _, lagging = lagging_languages({"en": 0.95, "de": 1.00, "hi": 0.81}, {"en": 50, "de": 52, "hi": 48},
                                   history=history)
    (hi,) = lagging
    assert hi["add_examples"] == needed(48, (20, 0.61), 0.81, 0.92) == 30
    assert hi["advice"] == ("hi: 81% vs 92% mean; 48 training examples — 20 → 48 examples took it from 61% to 81%; "
                            "on that trend, add about 30 more hi examples and retrain")
    small = trend_advice("hi", 48, 0.81, 0.86, history)
    large = trend_advice("hi", 48, 0.81, 1.00, history)
    assert small is not None and large is not None and small[0] < hi["add_examples"] < large[0]


def test_a_flat_trend_says_more_data_is_unlikely_to_help() -> None:
    history = [{"training": {"es": 30}, "primary": {"es": 0.50}}]
    add, advice = trend_advice("es", 60, 0.505, 0.80, history)  # type: ignore[misc]
    assert add == 0 and "30 → 60 examples took it from 50% to 50%: more of the same examples is unlikely" in advice
    far = trend_advice("es", 60, 0.56, 0.99, history)
    assert far is not None and "needs over 10x its examples" in far[1]


def test_without_history_the_rule_of_thumb_stays() -> None:
    assert trend_advice("hi", 48, 0.81, 0.92, []) is None
    assert trend_advice("hi", 48, 0.81, 0.92, [{"training": {"hi": 48}, "primary": {"hi": 0.7}}]) is None


def test_a_language_whose_answers_collapsed_to_one_label_is_named() -> None:
    gold = ["a", "b", "c"] * 4
    collapsed = collapse(["b"] * 10 + ["a", "c"], gold)
    assert collapsed == {"label": "b", "count": 10, "n": 12, "gold_share": pytest.approx(1 / 3), "gold_of_label": 4}
    assert collapse(gold, gold) is None  # balanced answers
    assert collapse(["a"] * 12, ["a"] * 12) is None  # the gold is one label too
    assert collapse(["b"] * 5, gold[:5]) is None  # too few answers to tell
    assert collapse(["b"] * 9 + ["(invalid)"] * 3, gold) is None  # unusable answers are not answers


def test_history_is_recorded_once_per_evaluation_result(tmp_path: Path) -> None:
    run = RunFolder(tmp_path)
    report = {"languages": {"en": {"primary": 0.9}, "es": {"primary": 0.7}}}
    record_history(run, {"en": 40, "es": 20}, report)
    record_history(run, {"en": 40, "es": 20}, report)  # evaluated again: no new point
    record_history(run, {"en": 40, "es": 50}, {"languages": {"en": {"primary": 0.9}, "es": {"primary": 0.8}}})
    assert history_of(run) == [{"training": {"en": 40, "es": 20}, "primary": {"en": 0.9, "es": 0.7}},
                               {"training": {"en": 40, "es": 50}, "primary": {"en": 0.9, "es": 0.8}}]


def test_history_follows_the_runs_own_test_split_only(tiny_run: Path, tmp_path: Path) -> None:
    import shutil

    from lingoforge import get_task
    from lingoforge.data.io import load_examples
    from lingoforge.evaluate import evaluate

    run = Path(shutil.copytree(tiny_run, tmp_path / "run", ignore=shutil.ignore_patterns("export", "eval")))
    test = run / "data" / "test.jsonl"
    shutil.copy(test, run / "data" / "train.jsonl")  # training counts come from the run's train split
    other = Path(shutil.copy(test, tmp_path / "other.jsonl"))
    task = get_task("support_tickets")
    examples = [item.example for item in load_examples(test, task, gold=True)]
    evaluate(str(run), task, examples, source=str(other), max_new_tokens=4)
    assert history_of(RunFolder(run)) == []  # other data is not a point of this run's curve
    evaluate(str(run), task, examples, source=str(test), max_new_tokens=4)
    assert [sorted(p["training"]) for p in history_of(RunFolder(run))] == [sorted({e.language for e in examples})]


def test_without_a_generator_the_advice_names_the_commonest_confusion() -> None:
    from lingoforge.advice import most_confused

    confusion = {"labels": ["a", "b", "c"], "predicted": ["a", "b", "c", "(invalid)"],
                 "matrix": [[3, 4, 0, 6], [1, 5, 0, 0], [0, 2, 1, 0]]}
    assert most_confused(confusion) == ("a", "b", 4)  # invalid answers are not a confusion between labels
    assert most_confused({"labels": ["a"], "predicted": ["a"], "matrix": [[3]]}) is None


def test_a_language_the_base_model_knew_poorly_is_pointed_to_a_larger_base() -> None:
    from lingoforge.pipeline import weak_base_advice

    base = {"languages": {"en": {"primary": 0.5}, "de": {"primary": 0.45}, "hi": {"primary": 0.1}}}
    lagging = [{"language": "hi", "advice": "hi: 60% vs 80% mean; 40 training examples — add about 25"},
               {"language": "de", "advice": "de: 70% vs 80% mean"}]
    hi, de = weak_base_advice(lagging, base)
    assert hi["advice"].endswith("; the base model was 10% there before training, against 35% on average: a larger "
                                 "or more multilingual base may help more than more examples")
    assert de["advice"] == "de: 70% vs 80% mean"


def test_the_report_of_a_task_without_generator_says_which_examples_to_write_first() -> None:
    import json as _json

    from lingoforge.backends.base import Generation
    from lingoforge.evaluate import build_report, score_answer
    from lingoforge.task import Example

    schema = {"type": "object", "properties": {"category": {"type": "string", "enum": ["a", "b"]}},
              "required": ["category"]}
    task = Task("t", "1", "", ("en", "hi"), "", "", schema,
                lambda p, g: {"acc": float(bool(p) and p.get("category") == g["category"])}, "acc",
                fields=("category",))
    golds = [("en", "a", "a")] * 4 + [("en", "b", "b")] * 4 + [("hi", "a", "b")] * 3 + [("hi", "b", "b")] * 3
    records = [score_answer(task, i, Example("", f"x{i}", {"category": g}, lang),
                            Generation(_json.dumps({"category": p}), 0.1, 3)) for i, (lang, g, p) in enumerate(golds)]
    report = build_report(task, records, model={"spec": "m"}, seconds=1.0, batch_size=1)
    (hi,) = report["lagging"]
    assert hi["most_confused"] == {"gold": "a", "answered": "b", "count": 3,
                                   "hint": "write hi examples of 'a' first: 3 of them were answered 'b'"}
