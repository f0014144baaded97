"""Choosing the adapter by what the user measures, and stopping when it stops improving (issue 24): the selection
key and the stopping count as pure functions, generated validation on a tiny model, and real (tiny, CPU) training
driven by a validator whose scores per evaluation are planted."""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
from lingoforge.config import TrainConfig, make_config
from lingoforge.plugins import get_task
from lingoforge.selection import (
    SELECT_KEY,
    Selection,
    curve,
    evaluations_since_best,
    select_value,
    selection_record,
    stop_plan,
    stopped_record,
)
from lingoforge.task import Example
from lingoforge.validation import LABEL_ACCURACY, GeneratedValidation, selection_for
from test_train import tiny_examples, tiny_task

BY_METRIC = Selection("metric", "planted", patience=2, metric="exact")


# --- the key and the count -------------------------------------------------------------------------------------


def test_macro_f1_breaks_ties_then_the_loss_and_neither_outvotes_one_item() -> None:
    for n in (4, 12, 40, 999):
        for hits in range(1, n + 1):
            assert select_value(hits / n, 0.0, 10.0) > select_value((hits - 1) / n, 1.0, 0.0)
    assert select_value(0.5, 0.6, 2.0) > select_value(0.5, 0.4, 0.1)  # macro-F1 over the loss
    # equal answers: the lower loss (a saturated small split must not keep the first checkpoint that saturated it)
    assert select_value(1.0, 0.7, 0.20) > select_value(1.0, 0.7, 0.25)
    assert select_value(0.5, 0.6 + 1e-4, 3.0) > select_value(0.5, 0.6, 0.0)  # nor outvotes a macro-F1 step


def test_evaluations_since_best_counts_from_the_first_best() -> None:
    assert evaluations_since_best([], True) == 0
    assert evaluations_since_best([0.2, 0.5, 0.5, 0.4], True) == 2  # a tie is no improvement
    assert evaluations_since_best([0.2, 0.5, 0.6], True) == 0
    assert evaluations_since_best([3.0, 2.0, 2.5], False) == 1


def _history(values: Sequence[float], losses: Sequence[float] | None = None, every: int = 10) -> list[dict[str, Any]]:
    """A log history of evaluations every ``every`` steps with the planted metric, macro-F1 0.5, and a loss."""
    losses = losses or [2.0 - 0.1 * i for i in range(len(values))]
    out: list[dict[str, Any]] = []
    for i, (value, loss) in enumerate(zip(values, losses, strict=True)):
        step = every * (i + 1)
        out.append({"loss": loss + 0.1, "step": step})
        out.append({"eval_loss": loss, "eval_loss_en": loss, "eval_loss_de": loss + 0.2, "eval_exact": value,
                    "eval_exact_en": value, "eval_exact_de": value, "eval_macro_f1": 0.5,
                    SELECT_KEY: select_value(value, 0.5, 0.0), "step": step})
    return out


def test_stopped_says_early_ceiling_or_max_steps_with_the_steps() -> None:
    plateau = _history([0.2, 0.8, 0.8, 0.7])
    early = stopped_record(plateau, BY_METRIC, step=40, total_steps=120, max_steps=-1, epochs=4)
    assert (early["reason"], early["at_step"], early["best_step"], early["patience"]) == ("early", 40, 20, 2)
    assert early["text"] == ("stopped at step 40 of 120: validation exact has not improved for 2 evaluations since "
                             "step 20 (best 0.80)")
    rising = _history([0.2, 0.4, 0.6])
    ceiling = stopped_record(rising, BY_METRIC, step=30, total_steps=30, max_steps=-1, epochs=2)
    assert ceiling["reason"] == "ceiling" and ceiling["best_step"] == 30
    assert ceiling["text"] == ("trained to the ceiling, step 30 of 30 (2 epochs): validation exact best at step 30 "
                               "(0.60)")
    capped = stopped_record(rising, BY_METRIC, step=30, total_steps=30, max_steps=30, epochs=4)
    assert capped["reason"] == "max_steps" and "--max-steps" in capped["text"]
    # patience reached on the very last step is the ceiling, not an early stop
    assert stopped_record(plateau, BY_METRIC, step=40, total_steps=40, max_steps=-1, epochs=1)["reason"] == "ceiling"
    last = Selection("last", "no validation examples")
    assert stopped_record([], last, step=8, total_steps=8, max_steps=-1, epochs=1)["text"].endswith(
        "no validation, the adapter is the last checkpoint")


def test_selection_record_and_curve_name_the_adapter_step() -> None:
    history = _history([0.2, 0.8, 0.8, 0.7])
    record = selection_record(history, BY_METRIC, adapter_step=20, generate_seconds=[1.0, 2.0])
    assert (record["best_step"], record["value"], record["metric"], record["key"]) == (20, 0.8, "eval_exact",
                                                                                       SELECT_KEY)
    assert record["generate_s"] == 1.5 and record["evaluations"] == 4
    assert record["text"] == ("adapter: the checkpoint of step 20, validation exact 0.80, macro-F1 0.50, best of 4 "
                              "evaluations")
    by_loss = selection_record(history, Selection("loss", "--select loss", 2), adapter_step=40)
    assert (by_loss["best_step"], by_loss["metric"]) == (40, "eval_loss")
    drawn = curve(history, BY_METRIC)
    assert drawn is not None and drawn["steps"] == [10, 20, 30, 40] and drawn["metric"] == "exact"
    assert drawn["primary"]["all"] == [0.2, 0.8, 0.8, 0.7] and set(drawn["loss"]) == {"all", "de", "en"}
    assert drawn["macro_f1"] == [0.5] * 4


def test_plan_says_how_training_will_stop() -> None:
    said = stop_plan(epochs=4, max_steps=-1, patience=2, select="metric", metric="category_accuracy",
                     steps_per_epoch=90)
    assert said == ("validates twice per epoch, every 45 steps; stops when validation category_accuracy has not "
                    "improved for 2 evaluations; at most 4 epochs = 360 steps")
    assert "no early stopping" in stop_plan(epochs=2, max_steps=-1, patience=0, select="loss", metric=None,
                                            steps_per_epoch=None)


# --- what is measured ------------------------------------------------------------------------------------------


def test_selection_follows_the_data_and_the_settings() -> None:
    val = tiny_examples(4, seed=1)
    assert selection_for(TrainConfig(), tiny_task(), []).by == "last"
    assert selection_for(make_config({"select": "loss"}), tiny_task(), val).key == "eval_loss"
    by_metric = selection_for(TrainConfig(), tiny_task(), val)
    assert (by_metric.by, by_metric.metric, by_metric.key, by_metric.patience) == ("metric", "exact", SELECT_KEY, 2)
    tickets = get_task("support_tickets")  # labels first, then the reply: category_accuracy needs no reply
    assert selection_for(TrainConfig(), tickets, tickets.generate(1, 3)).metric == "category_accuracy"
    contracts = get_task("contract_extraction")  # `overall` also scores clauses and obligations, after the label
    chosen = selection_for(TrainConfig(), contracts, contracts.generate(1, 3))
    assert chosen.metric == LABEL_ACCURACY and "clauses" in chosen.why and "obligations" in chosen.why


def test_generated_validation_scores_each_language_and_its_answers_parse(tiny_qwen2_dir: Path) -> None:
    """The tiny random model answers every validation example under the labels-first grammar: every answer parses,
    the figures are the task's (hand-checked from the records), per language, and the model's mode is restored."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(tiny_qwen2_dir).train()
    examples = tiny_examples(12, seed=1)
    validation = GeneratedValidation(tiny_task(), examples, AutoTokenizer.from_pretrained(tiny_qwen2_dir), "exact")
    records = validation.answers(model)
    assert model.training and len(records) == 12
    assert all(r["valid"] and set(r["output"]) == {"category", "priority"} for r in records)
    started = time.perf_counter()
    scores = validation(model)
    print(f"one generated validation of 12 items on the tiny model: {time.perf_counter() - started:.2f} s")
    assert set(scores) == {"exact", "exact_en", "exact_de", "exact_fr", "exact_zh", "macro_f1"}
    for lang in ("en", "de", "fr", "zh"):
        mine = [r for r in records if r["language"] == lang]
        assert scores[f"exact_{lang}"] == sum(r["output"] == r["gold"] for r in mine) / len(mine)
    assert scores["exact"] == sum(r["output"] == r["gold"] for r in records) / 12
    assert 0.0 <= scores["macro_f1"] <= 1.0 and len(validation.seconds) == 2


# --- training driven by planted scores -------------------------------------------------------------------------


def planted(values: Sequence[float]) -> type:
    """A stand-in for ``GeneratedValidation`` whose score at the k-th evaluation is ``values[k]``."""

    class Planted:
        def __init__(self, task: Any, examples: Sequence[Example], tokenizer: Any, metric: str,
                     batch_size: int = 8) -> None:
            self.metric, self.seconds, self.calls = metric, [], 0
            self.languages = sorted({ex.language for ex in examples})

        def __call__(self, model: Any) -> dict[str, float]:
            value = values[min(self.calls, len(values) - 1)]
            self.calls += 1
            self.seconds.append(0.0)
            return {self.metric: value, **{f"{self.metric}_{lang}": value for lang in self.languages},
                    "macro_f1": 0.5}

    return Planted


def _train(model: Path, out: Path, monkeypatch: pytest.MonkeyPatch, values: Sequence[float], n: int = 16,
           **settings: Any) -> dict[str, Any]:
    import lingoforge.train
    from lingoforge.train import train

    monkeypatch.setattr(lingoforge.train, "GeneratedValidation", planted(values))
    config = TrainConfig(lr=5e-3, **settings)
    train(tiny_task(), tiny_examples(n), tiny_examples(8, seed=1), str(model), out, config, quiet=True)
    return json.loads((out / "run.json").read_text())["train"]


def _adapter_equals_checkpoint(out: Path, step: int) -> bool:
    from safetensors.torch import load_file

    kept = load_file(str(out / "adapter" / "adapter_model.safetensors"))
    saved = load_file(str(out / "adapter" / "checkpoints" / f"checkpoint-{step}" / "adapter_model.safetensors"))
    return kept.keys() == saved.keys() and all(kept[k].equal(saved[k]) for k in kept)


def test_the_adapter_is_the_checkpoint_the_planted_metric_ranks_best(
    tiny_qwen2_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Four evaluations, the planted metric best at the second while the validation loss keeps falling: the
    adapter is step 2's checkpoint (selecting by the loss would keep step 4)."""
    out = tmp_path / "run"
    t = _train(tiny_qwen2_dir, out, monkeypatch, [0.25, 0.75, 0.5, 0.5], max_steps=4, save_steps=1, patience=0)
    losses = [h["eval_loss"] for h in t["history"] if "eval_loss" in h]
    assert len(losses) == 4 and all(b < a for a, b in zip(losses, losses[1:], strict=False))
    assert t["selection"]["best_step"] == t["best_step"] == 2 and t["selection"]["value"] == 0.75
    assert t["best_eval_loss"] == losses[1]
    assert _adapter_equals_checkpoint(out, 2) and not _adapter_equals_checkpoint(out, 4)
    assert t["stopped"]["reason"] == "max_steps" and t["curve"]["primary"]["all"] == [0.25, 0.75, 0.5, 0.5]


def test_training_stops_patience_evaluations_after_the_plateau_began(
    tiny_qwen2_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The metric improves at evaluations 1 and 2, then is flat: with patience 2, training stops at evaluation 4
    (step 4 of 8), and the adapter is the plateau's checkpoint with the lowest validation loss (equal answers)."""
    out = tmp_path / "run"
    t = _train(tiny_qwen2_dir, out, monkeypatch, [0.2, 0.6, 0.6, 0.6, 0.6, 0.6, 0.6, 0.6], max_steps=8,
               save_steps=1, patience=2)
    assert t["steps"] == 4 and [h["step"] for h in t["history"] if "eval_loss" in h] == [1, 2, 3, 4]
    stopped = t["stopped"]
    assert (stopped["reason"], stopped["at_step"], stopped["best_step"], stopped["patience"]) == ("early", 4, 2, 2)
    assert stopped["text"] == ("stopped at step 4 of 8: validation exact has not improved for 2 evaluations since "
                               "step 2 (best 0.60)")
    loss = {h["step"]: h["eval_loss"] for h in t["history"] if "eval_loss" in h}
    lowest = min((2, 3, 4), key=loss.__getitem__)
    assert t["selection"]["best_step"] == lowest and _adapter_equals_checkpoint(out, lowest)


def test_without_a_plateau_training_reaches_the_ceiling_validating_twice_per_epoch(
    tiny_qwen2_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """16 examples in micro-batches of 4 make 4 steps per epoch: left unset, validation and checkpoints come every
    2 steps; a metric that keeps rising trains both epochs and says it reached the ceiling."""
    out = tmp_path / "run"
    t = _train(tiny_qwen2_dir, out, monkeypatch, [0.1, 0.2, 0.3, 0.4], epochs=2)
    assert [h["step"] for h in t["history"] if "eval_loss" in h] == [2, 4, 6, 8]
    assert (t["stopped"]["reason"], t["stopped"]["at_step"], t["selection"]["best_step"]) == ("ceiling", 8, 8)
    assert t["stopped"]["text"].startswith("trained to the ceiling, step 8 of 8 (2 epochs)")
    assert t["config"]["save_steps"] is None and t["config"]["eval_steps"] is None


# --- what the commands say ---------------------------------------------------------------------------------------


def test_train_and_run_print_why_training_stopped_and_which_checkpoint(tmp_path: Path, monkeypatch) -> None:
    import dataclasses

    import lingoforge.plugins
    import lingoforge.train
    from click.testing import CliRunner
    from lingoforge.cli import cli
    from lingoforge.pipeline import _training_lines
    from lingoforge.runfolder import RunFolder
    from test_run_summary import _printed, _summary
    from test_train import finished

    stopped = {"reason": "early", "text": "stopped at step 40 of 120: validation exact has not improved"}
    selection = {"best_step": 20, "text": "adapter: the checkpoint of step 20, validation exact 0.80"}
    seen: dict[str, Any] = {}

    def fake(task: Any, data: Any, base: Any, out: Any, config: TrainConfig, **kw: Any) -> Any:
        seen["config"] = config
        return dataclasses.replace(finished(out), selection=selection, stopped=stopped)

    monkeypatch.setattr(lingoforge.plugins, "get_task", lambda name: tiny_task())
    monkeypatch.setattr(lingoforge.train, "train_from_files", fake)
    data = tmp_path / "all.jsonl"
    data.write_text("".join(json.dumps(e.to_record()) + "\n" for e in tiny_examples(12)))
    args = ["train", "mini_tickets", "--data", str(data), "--base", "qwen2.5-0.5b", "-o", str(tmp_path / "run"),
            "--select", "loss", "--patience", "3"]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output
    assert (seen["config"].select, seen["config"].patience) == ("loss", 3)
    assert selection["text"] in result.output and stopped["text"] in result.output

    run = RunFolder(tmp_path / "done")
    run.update(train={"status": "done", "stopped": stopped, "selection": selection})
    lines = _training_lines(run)
    assert lines == [stopped["text"], selection["text"]]
    printed = _printed(_summary(training=lines))
    assert f"training: {stopped['text']}" in printed and f"training: {selection['text']}" in printed


def test_plan_command_says_how_a_run_with_validation_will_stop() -> None:
    from click.testing import CliRunner
    from lingoforge.cli import cli

    shown = CliRunner().invoke(cli, ["plan", "--base", "smollm2-135m", "--device", "cpu", "--examples", "100",
                                     "--epochs", "2", "--patience", "3"])
    assert shown.exit_code == 0, shown.output
    assert ("stopping, with validation: validates twice per epoch, every 13 steps; stops when the task's primary "
            "metric on validation answers") in shown.output
    assert "has not improved for 3 evaluations; at most 2 epochs = 50 steps" in shown.output
