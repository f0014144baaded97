"""Per-language evaluation: metrics against hand-computed values, malformed answers counted, every report
section present on a tiny random Qwen2 (junk answers) and in comparison mode."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest
from lingoforge.advice import examples_to_add, lagging_languages
from lingoforge.backends import Backend, Generation
from lingoforge.evaluate import compare, evaluate, stratified
from lingoforge.metrics import INVALID, confusion_matrix, macro_f1, percentile
from lingoforge.task import Example, Task
from lingoforge.yaml_task import load_yaml_task

TASK_YAML = """
name: tickets
languages: [en, es, de]
instruction: Classify the ticket and reply in its language.
system_prompt: You answer with one JSON object.
fields:
  category: {type: enum, labels: [shipping, billing, tech]}
  priority: {type: enum, labels: [low, high]}
  reply: {type: text, in_input_language: true}
scoring: {reply: normalized}
examples:
  - language: en
    input: "My parcel {p} is late"
    output: {category: shipping, priority: high, reply: "We are checking where your parcel is right now."}
  - language: es
    input: "Mi paquete {p} llega tarde"
    output: {category: shipping, priority: high, reply: "Estamos comprobando dónde está su paquete ahora mismo."}
  - language: de
    input: "Mein Paket {p} ist spät"
    output: {category: shipping, priority: high, reply: "Wir prüfen gerade, wo sich Ihr Paket befindet."}
slots:
  p: ["A1", "B2", "C3", "D4", "E5", "F6"]
"""


@pytest.fixture
def task(tmp_path: Path) -> Task:
    path = tmp_path / "tickets.yaml"
    path.write_text(TASK_YAML, encoding="utf-8")
    return load_yaml_task(path)


def ex(lang: str, category: str, text: str = "x", group: str | None = None, reply: str = "ok") -> Example:
    meta = {"group": group} if group else {}
    return Example(
        "", f"{text} {lang} {category}", {"category": category, "priority": "low", "reply": reply}, lang, meta
    )


class ScriptedBackend(Backend):
    """Answers with ``answer(user_text)``: lets a test decide exactly what the 'model' says."""

    name = "scripted"

    def __init__(self, answer: Callable[[str], str], model: str = "scripted") -> None:
        super().__init__(model)
        self.answer = answer
        self.calls: list[tuple[int, bool]] = []

    def generate(
        self,
        batch: Sequence[Sequence[Mapping[str, str]]],
        schema: Mapping[str, Any] | None = None,
        max_new_tokens: int = 256,
    ) -> list[Generation]:
        self.calls.append((len(batch), schema is not None))
        return [Generation(self.answer(conv[-1]["content"]), 0.01 * (i + 1), 5) for i, conv in enumerate(batch)]


def answer_json(category: str, priority: str = "low", reply: str = "ok") -> str:
    return json.dumps({"category": category, "priority": priority, "reply": reply})


# --------------------------------------------------------------------------- pure metrics


def test_macro_f1_matches_hand_computation() -> None:
    gold = ["a", "a", "b", "b", "c"]
    pred = ["a", "b", "b", INVALID, "c"]
    # a: tp1 fp0 fn1 -> 2/3; b: tp1 fp1 fn1 -> 1/2; c: tp1 -> 1; (invalid) is no class of its own.
    assert macro_f1(gold, pred) == pytest.approx((2 / 3 + 1 / 2 + 1) / 3)
    assert macro_f1(["a"], ["b"]) == 0.0  # a: fn, b: fp -> both 0


def test_confusion_matrix_keeps_schema_order_and_puts_invalid_last() -> None:
    m = confusion_matrix(["b", "a", "a", "c"], ["b", "b", INVALID, "zzz"], labels=["a", "b", "c"])
    assert m["labels"] == ["a", "b", "c"]
    assert m["predicted"] == ["a", "b", "c", "zzz", INVALID]
    assert m["matrix"] == [[0, 1, 0, 0, 1], [0, 1, 0, 0, 0], [0, 0, 0, 1, 0]]


def test_percentile_interpolates_like_numpy() -> None:
    assert percentile([1.0, 2.0, 3.0, 4.0], 50) == 2.5
    assert percentile([1.0, 2.0, 3.0, 4.0], 95) == pytest.approx(3.85)
    assert percentile([], 50) is None


@pytest.mark.parametrize(("gap", "add"), [(0.051, 20), (0.11, 25), (0.15, 30), (0.40, 30)])
def test_examples_to_add_follows_the_recipe(gap: float, add: int) -> None:
    assert examples_to_add(gap) == add


def test_lagging_language_advice_in_numbers() -> None:
    mean, lagging = lagging_languages(
        {"en": 0.95, "de": 1.00, "hi": 0.81}, {"en": 50, "de": 52, "hi": 48}, {"en": 20, "de": 20, "hi": 20}
    )
    assert mean == pytest.approx(0.92)
    assert [r["language"] for r in lagging] == ["hi"]
    assert (
        lagging[0]["advice"] == "hi: 81% vs 92% mean; 48 training examples — add about 25 more hi examples and retrain"
    )
    assert lagging[0]["add_examples"] == 25 and lagging[0]["n_test"] == 20


def test_a_language_missing_from_training_is_called_that_not_short_of_30() -> None:
    _, lagging = lagging_languages({"en": 0.9, "es": 0.9, "de": 0.0}, {"en": 40, "es": 30}, {"de": 10})
    assert [r["language"] for r in lagging] == ["de"]
    assert lagging[0]["advice"] == "de: 0% vs 60% mean; not in the training data — add about 35 de examples and retrain"
    assert lagging[0]["training_examples"] == 0 and lagging[0]["add_examples"] == 35


def test_lagging_by_threshold_and_unknown_training_counts() -> None:
    _, lagging = lagging_languages({"en": 0.70, "es": 0.72}, None, threshold=0.80)
    assert [r["language"] for r in lagging] == ["en", "es"]
    assert (
        lagging[0]["advice"]
        == "en: 70% vs 80% threshold; training examples unknown — add about 25 more en examples and retrain"
    )
    _, none_lag = lagging_languages({"en": 0.90, "es": 0.86})  # 2 points under the mean of 0.88
    assert none_lag == []


def test_limit_keeps_every_language() -> None:
    data = [ex("en", "tech", str(i)) for i in range(10)] + [ex("de", "tech", str(i)) for i in range(3)]
    assert sorted(e.language for e in stratified(data, 4)) == ["de", "de", "en", "en"]


# --------------------------------------------------------------------------- evaluation with a scripted model


def test_malformed_answers_are_counted_not_crashes(task: Task) -> None:
    answers = {
        "en": answer_json("shipping"),  # valid, right
        "es": "Sure! ```json\n" + answer_json("billing") + "\n```",  # lenient parse, wrong category
        "de": '{"category": "refund", "priority": "low", "reply": "x"}',  # parses, not in the enum
    }
    data = [ex("en", "shipping"), ex("es", "shipping"), ex("de", "shipping"), ex("de", "tech", "junk")]

    def answer(user: str) -> str:
        return "I cannot help with that" if "junk" in user else answers[user.split()[-2]]

    report = evaluate(ScriptedBackend(answer), task, data, batch_size=3)
    overall = report["overall"]
    assert overall["n"] == 4
    assert overall["schema_valid_rate"] == 0.5
    assert overall["parse_failure_rate"] == 0.25
    assert overall["lenient_parse_rate"] == 0.25
    cat = overall["fields"]["category"]
    assert cat["accuracy"] == 0.25
    assert cat["confusion"]["predicted"] == ["shipping", "billing", "tech", INVALID]
    assert cat["confusion"]["matrix"] == [[1, 1, 0, 1], [0, 0, 0, 0], [0, 0, 0, 1]]
    assert report["languages"]["de"]["schema_valid_rate"] == 0.0
    assert report["languages"]["de"]["metrics"]["category_accuracy"] == 0.0  # invalid answers score as misses
    assert report["languages"]["en"]["primary"] == 1.0
    advice = {lag["language"]: lag["advice"] for lag in report["lagging"]}
    assert advice["es"].endswith("add about 30 more es examples and retrain")  # valid answers, wrong label
    assert advice["de"].endswith(
        "only 0% of its answers are schema-valid — check the chat template or evaluate with --constrained"
    )
    preds = report["predictions"]
    assert [p["valid"] for p in preds] == [True, True, False, False]
    assert preds[3]["output"] is None and preds[3]["error"] == "no JSON object in the answer"


def test_wrong_language_rate_of_free_text(task: Task) -> None:
    replies = {
        "en": "We are checking where your parcel is right now.",
        "es": "We are checking where your parcel is right now.",  # English answer to a Spanish ticket
        "de": "Wir prüfen gerade, wo sich Ihr Paket befindet.",
    }
    data = [ex(lang, "shipping") for lang in ("en", "es", "de")]
    report = evaluate(ScriptedBackend(lambda u: answer_json("shipping", reply=replies[u.split()[-2]])), task, data)
    assert report["overall"]["wrong_language_rate"]["reply"] == {"rate": pytest.approx(1 / 3), "checked": 3}
    assert report["languages"]["es"]["wrong_language_rate"]["reply"]["rate"] == 1.0
    assert report["languages"]["de"]["wrong_language_rate"]["reply"]["rate"] == 0.0


def test_consistency_over_parallel_groups(task: Task) -> None:
    data = [
        ex("en", "tech", group="g1"),
        ex("es", "tech", group="g1"),
        ex("de", "tech", group="g1"),
        ex("en", "billing", group="g2"),
        ex("de", "billing", group="g2"),
        ex("es", "tech"),
    ]
    # g1 agrees; in g2 the German answer differs.
    report = evaluate(
        ScriptedBackend(lambda u: answer_json("tech" if "tech" in u or " de " in u else "billing")), task, data
    )
    cons = report["consistency"]
    assert cons["groups"] == 2 and cons["score"] == 0.5
    assert cons["languages"] == {"de": 0.5, "en": 0.5, "es": 1.0}
    assert cons["inconsistent_groups"] == ["g2"]
    custom = dataclasses.replace(task, consistency=lambda preds: 0.25)
    assert evaluate(ScriptedBackend(lambda u: answer_json("tech")), custom, data)["consistency"]["score"] == 0.25


def test_no_groups_means_no_consistency_section(task: Task) -> None:
    report = evaluate(ScriptedBackend(lambda u: answer_json("tech")), task, [ex("en", "tech")])
    assert report["consistency"] is None


def test_compare_gives_per_language_deltas(task: Task) -> None:
    data = [ex("en", "tech"), ex("en", "billing"), ex("es", "tech"), ex("es", "billing")]
    weak = ScriptedBackend(lambda u: answer_json("tech"), "weak")
    strong = ScriptedBackend(lambda u: answer_json("tech" if "tech" in u else "billing"), "strong")
    report = compare(weak, strong, task, data)
    c = report["comparison"]
    assert c["a"]["model"] == "weak" and c["b"]["model"] == "strong"
    assert {k: c["languages"]["en"]["primary"][k] for k in ("a", "b", "delta", "ci")} == {
        "a": 0.5, "b": 1.0, "delta": 0.5, "ci": [0.0, 1.0]}  # paired: 2 items
    assert c["overall"]["fields"]["category"]["delta"] == 0.5
    assert report["compared"]["languages"]["es"]["primary"] == 1.0


def test_training_counts_come_from_the_run_folder(task: Task, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from lingoforge import backends
    from lingoforge import evaluate as evaluate_module

    run = tmp_path / "run"
    (run / "adapter").mkdir(parents=True)
    (run / "adapter" / "adapter_config.json").write_text("{}")
    (run / "data").mkdir()
    (run / "run.json").write_text(json.dumps({"task": {"name": "tickets"}, "base": {"location": "unused"}}))
    (run / "data" / "train.jsonl").write_text(
        "".join(json.dumps(ex(lang, "tech", f"t{i}").to_record()) + "\n"
                for i, lang in enumerate(["en"] * 30 + ["es"] * 12))
    )
    scripted = ScriptedBackend(lambda u: answer_json("tech" if " en " in u else "billing"))
    monkeypatch.setattr(evaluate_module, "get_backend", lambda spec, backend, **kw: scripted)
    report = evaluate(str(run), task, [ex("en", "tech"), ex("es", "tech")])
    # es trained on 'tech' only: always answering it would have been right, so that is the advice's evidence
    assert report["lagging"][0]["advice"] == (
        "es: 0% [0%–79%] vs 50% mean; 12 training examples — always answering the commonest training label scores "
        "100% [21%–100%] on category, the model 0% [0%–79%]: the model did not learn what the data holds; train "
        "more epochs, balance the labels, or use a larger base model")
    assert report["lagging"][0]["add_examples"] == 0
    assert backends.resolve_model(str(run)).task_name() == "tickets"


def test_compare_cli_advises_each_model_fine_tuned_first(
    task: Task, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from click.testing import CliRunner
    from lingoforge import evaluate as evaluate_module
    from lingoforge.cli import cli

    run = tmp_path / "run"
    (run / "adapter").mkdir(parents=True)
    (run / "adapter" / "adapter_config.json").write_text("{}")
    (run / "data").mkdir()
    (run / "run.json").write_text(json.dumps({"task": {"name": "tickets"}, "base": {"location": "unused"}}))
    (run / "data" / "train.jsonl").write_text(
        "".join(json.dumps(ex(lang, "tech", f"t{i}").to_record()) + "\n"
                for i, lang in enumerate(["en"] * 30 + ["es"] * 12))
    )
    base = ScriptedBackend(lambda u: answer_json("tech"), "base")  # 50% everywhere: nothing lags
    base.name = "ollama"
    tuned = ScriptedBackend(lambda u: answer_json("tech" if "tech" in u or " de " in u else "billing"), "tuned")
    tuned.name = "hf"  # right in en and es, 50% in de (not in its training data)
    monkeypatch.setattr(evaluate_module, "get_backend", lambda spec, backend, **kw: tuned if spec.run else base)
    data = tmp_path / "test.jsonl"
    data.write_text(
        "".join(json.dumps(ex(lang, c).to_record()) + "\n" for lang in ("en", "es", "de") for c in ("tech", "billing")),
        encoding="utf-8",
    )
    out = tmp_path / "eval"
    result = CliRunner().invoke(
        cli, ["eval", "ollama:base", "--compare", str(run), "--task", task.source, "--data", str(data), "-o", str(out)]
    )
    assert result.exit_code == 0, result.output
    text = result.stdout
    second = text.index(f"second model {run} (fine-tuned):")
    advice = text.index("de: 50% [9%–91%] vs 83% mean; not in the training data — add about 21 de examples and retrain")
    first = text.index("first model ollama:base:")
    assert second < advice < first
    assert "no language lags the mean by more than 5 points" in text[first:]
    html = (out / "report.html").read_text(encoding="utf-8")
    tuned_advice = f"<h3>second model {run} (fine-tuned)</h3>\n<ul><li class='lag'>de: 50% [9%–91%] vs 83% mean"
    base_advice = "<h3>first model ollama:base</h3>\n<p>No language lags the mean by more than 5 points.</p>"
    assert html.index(tuned_advice) < html.index(base_advice)


# --------------------------------------------------------------------------- gold data against the task's schema


def test_gold_outputs_that_do_not_fit_the_schema_are_refused_by_file_line_and_field(task: Task, tmp_path: Path) -> None:
    from lingoforge.data.io import load_examples as read
    from lingoforge.errors import DataError

    def load_examples(path: Path, task: Task) -> list:
        return [item.example for item in read(path, task, gold=True)]

    good = ex("en", "tech").to_record()
    wrong_label = {**good, "output": {**good["output"], "category": "refund"}}
    missing = {**good, "output": {"category": "tech", "reply": "ok"}}
    path = tmp_path / "test.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in [good, wrong_label, good, missing]), encoding="utf-8")
    with pytest.raises(DataError) as caught:
        load_examples(path, task)
    message = str(caught.value)
    assert "2 of 4 gold outputs do not fit the output schema of task 'tickets'" in message
    assert f"{path}:2: /output/category: 'refund' is not one of ['shipping', 'billing', 'tech']" in message
    assert f"{path}:4: /output: 'priority' is a required property" in message
    path.write_text(json.dumps(good) + "\n", encoding="utf-8")
    assert load_examples(path, task) == [ex("en", "tech")]


def test_eval_refuses_another_tasks_data_before_generating(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from click.testing import CliRunner
    from lingoforge import evaluate as evaluate_module
    from lingoforge.cli import cli

    def no_model(*args: Any, **kwargs: Any) -> Backend:
        raise AssertionError("a model was opened for data that cannot be scored")

    monkeypatch.setattr(evaluate_module, "get_backend", no_model)
    products = Path(__file__).resolve().parents[1] / "plugins" / "ecommerce_taxonomy" / "samples" / "de.jsonl"
    out = tmp_path / "eval"
    result = CliRunner().invoke(
        cli, ["eval", "ollama:tickets", "--task", "support_tickets", "--data", str(products), "-o", str(out)]
    )
    assert result.exit_code == 1
    assert "do not fit the output schema of task 'support_tickets'" in result.output
    assert f"{products}:1: /output" in result.output
    assert not out.exists()


# --------------------------------------------------------------------------- a real (tiny, random) model

REPORT_SECTIONS = {
    "format",
    "model",
    "task",
    "data",
    "overall",
    "languages",
    "primary_mean",
    "lagging",
    "consistency",
    "throughput",
}
SLICE_KEYS = {
    "n",
    "primary",
    "metrics",
    "schema_valid_rate",
    "parse_failure_rate",
    "lenient_parse_rate",
    "fields",
    "wrong_language_rate",
    "latency",
}


def test_eval_cli_on_tiny_qwen2_counts_junk_and_writes_every_section(
    task: Task, tiny_qwen2_dir: Path, tmp_path: Path
) -> None:
    from click.testing import CliRunner
    from lingoforge.cli import cli

    data = tmp_path / "test.jsonl"
    data.write_text("".join(json.dumps(e.to_record()) + "\n" for e in task.generate(6, seed=1)), encoding="utf-8")
    out = tmp_path / "eval"
    result = CliRunner().invoke(
        cli,
        [
            "eval",
            str(tiny_qwen2_dir),
            "--task",
            task.source,
            "--data",
            str(data),
            "-o",
            str(out),
            "--json",
            "--batch-size",
            "3",
            "--max-new-tokens",
            "6",
        ],
    )
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert REPORT_SECTIONS <= set(report)
    assert set(report["languages"]) == {"en", "es", "de"}
    for s in [report["overall"], *report["languages"].values()]:
        assert SLICE_KEYS <= set(s)
        assert set(s["fields"]) == {"category", "priority"}
    # A random model writes junk: every answer is a parse failure, scored zero, and nothing crashes.
    assert report["overall"]["parse_failure_rate"] == 1.0
    assert report["overall"]["primary"] == 0.0
    assert report["throughput"]["items_per_s"] > 0 and report["throughput"]["p95_s"] >= report["throughput"]["p50_s"]
    assert {p.name for p in (out / "charts").iterdir()} == {
        "languages.png",
        "confusion-category.png",
        "confusion-priority.png",
    }
    assert len((out / "predictions.jsonl").read_text().splitlines()) == 6
    assert (out / "report.html").read_text().count("data:image/png;base64,") == 3


def test_constrained_decoding_makes_even_a_random_model_schema_valid(task: Task, tiny_qwen2_dir: Path) -> None:
    # Labels only: a random model never closes a free-text string, whatever the grammar.
    labels_only = dict(
        task.schema,
        properties={k: v for k, v in task.schema["properties"].items() if k != "reply"},
        required=["category", "priority"],
    )
    labels_task = dataclasses.replace(task, output_schema=labels_only, text_fields=())
    from lingoforge.backends import get_backend

    data = task.generate(3, seed=2)
    with get_backend(str(tiny_qwen2_dir)) as backend:  # one backend: compiling the 151k-token vocab takes a while
        report = compare(backend, backend, labels_task, data, batch_size=3, max_new_tokens=24, constrained=True)
    assert report["overall"]["schema_valid_rate"] == 1.0
    assert report["comparison"]["overall"]["primary"]["delta"] == 0.0  # same model, greedy: same answers


@pytest.mark.slow
def test_eval_on_smollm2_produces_every_section(task: Task, smollm2_dir: Path, tmp_path: Path) -> None:
    from lingoforge.report import write_report

    data = task.generate(6, seed=3)
    report = evaluate(str(smollm2_dir), task, data, batch_size=6, max_new_tokens=48)
    assert REPORT_SECTIONS <= set(report)
    assert set(report["languages"]) == {"en", "es", "de"}
    assert 0.0 <= report["overall"]["schema_valid_rate"] <= 1.0
    paths = write_report(report, tmp_path / "eval")
    assert json.loads(paths["json"].read_text())["data"]["n"] == 6
