"""Label balance within each language: rare labels drawn up to the cap, every micro-batch still mixed in language."""

from __future__ import annotations

import json
import math
from collections import Counter
from dataclasses import replace
from pathlib import Path
from types import SimpleNamespace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from lingoforge.data.balance import (
    CAP,
    IMBALANCE,
    balance_decision,
    balanced_draws,
    example_labels,
    primary_field,
)
from lingoforge.data.interleave import MixedLanguageSampler
from lingoforge.task import Example
from test_data_interleave import batches, distinct
from test_train import TEXTS, tiny_examples, tiny_task


def dataset(counts: dict[str, list[int]]) -> tuple[list[str], list[str]]:
    """Languages and labels of a data set with ``counts[lang][k]`` examples of label ``k`` in ``lang``, the
    languages interleaved as a file would hold them."""
    rows = [(lang, f"k{k}") for lang, per_label in counts.items() for k, c in enumerate(per_label) for _ in range(c)]
    rows = rows[::2] + rows[1::2]
    return [lang for lang, _ in rows], [lab for _, lab in rows]


def target(c: int, commonest: int, cap: int = CAP) -> float:
    """What the rule asks for a label with ``c`` examples next to a language's ``commonest``: square-root sampling
    under the cap (written out here, apart from the module, so a changed rule shows)."""
    return min(cap * c, math.sqrt(commonest * c))


def epoch(langs: list[str], labs: list[str | None], batch_size: int, seed: int, n: int, cap: int = CAP) -> list[int]:
    sampler = MixedLanguageSampler(langs, batch_size, seed, balanced_draws(langs, labs, cap))
    sampler.set_epoch(n)
    return list(sampler)


@settings(max_examples=150, deadline=None)
@given(
    counts=st.dictionaries(
        st.sampled_from(["en", "de", "fr", "zh", "ja"]), st.lists(st.integers(1, 40), min_size=1, max_size=5),
        min_size=1, max_size=4,
    ),
    batch_size=st.integers(1, 6),
    cap=st.integers(1, 5),
    seed=st.integers(0, 2**32),
    n=st.integers(0, 3),
)
def test_balanced_batches_stay_mixed_and_each_language_reaches_its_label_targets(
    counts: dict[str, list[int]], batch_size: int, cap: int, seed: int, n: int
) -> None:
    langs, labs = dataset(counts)
    order = epoch(langs, labs, batch_size, seed, n, cap)
    # mixed: the interleave guarantee, over the draws (a language's draws count as its examples)
    drawn = [langs[i] for i in order]
    m = math.ceil(len(order) / batch_size)
    per_language = Counter(drawn)
    bound = sum(min(c, m) for c in per_language.values()) // m
    positions = list(range(len(order)))
    assert all(distinct(drawn, b) >= bound for b in batches(positions, batch_size) if len(b) == batch_size)
    # within each language, every label drawn as the rule asks, up to rounding
    realized = Counter((langs[i], labs[i]) for i in order)
    for lang, per_label in counts.items():
        for k, c in enumerate(per_label):
            assert abs(realized[lang, f"k{k}"] - target(c, max(per_label), cap)) <= 0.5
    # the cap: every example drawn at least once, none more than cap times
    times = Counter(order)
    assert set(times) == set(range(len(langs))) and max(times.values()) <= cap


def test_rare_labels_are_capped_and_the_rest_rounded_by_a_seeded_draw() -> None:
    langs, labs = dataset({"en": [64, 2, 9], "de": [5, 5]})
    order = epoch(langs, labs, 4, seed=0, n=0)
    times = Counter(order)
    by_label = {(langs[i], labs[i]): set() for i in range(len(langs))}
    for i in range(len(langs)):
        by_label[langs[i], labs[i]].add(times[i])
    # en k1: sqrt(64·2) = 11.3 draws asked, the cap allows 4 each; en k2: sqrt(64·9) = 24 = 2.67 per example,
    # so some examples twice and some three times; de is balanced already: once each
    assert by_label == {("en", "k0"): {1}, ("en", "k1"): {CAP}, ("en", "k2"): {2, 3}, ("de", "k0"): {1},
                        ("de", "k1"): {1}}
    assert Counter(labs[i] for i in order if langs[i] == "en") == {"k0": 64, "k1": 8, "k2": 24}


def test_the_module_docstring_figures_for_issue_24s_shape() -> None:
    langs, labs = dataset({"fr": [300, 200, 150, 120, 90, 60, 19, 15, 10, 6]})
    draws = balanced_draws(langs, labs)
    assert draws.total == 1444 and round(100 * 300 / len(labs)) == 31 and round(100 * 300 / draws.total) == 21
    assert dict(Counter(labs[i] for i in draws.indices(0)))["k9"] == 24  # 6 examples, capped at 4 draws each


def test_unlabelled_examples_are_drawn_once() -> None:
    langs, labs = dataset({"en": [20, 2]})
    labs[0] = labs[5] = None  # partial labels: these examples lack the field
    times = Counter(epoch(langs, labs, 4, seed=1, n=0))
    assert times[0] == times[5] == 1 and max(times.values()) > 1


def test_same_seed_and_epoch_same_order_and_every_epoch_the_same_length() -> None:
    langs, labs = dataset({"en": [30, 3, 8], "de": [12, 2], "fr": [9]})
    sampler = MixedLanguageSampler(langs, 4, 5, balanced_draws(langs, labs))
    first = list(sampler)
    assert list(sampler) == first and len(sampler) == len(first) > len(langs)
    orders = []
    for n in range(1, 4):
        sampler.set_epoch(n)
        orders.append(list(sampler))
        assert len(orders[-1]) == len(sampler) == len(first)
    assert all(o != first for o in orders) and len({tuple(o) for o in orders}) == 3
    # the rounding draw differs by epoch too: which of en's 8 k2 examples (15 draws) is drawn once only
    once = [{i for i, t in Counter(o).items() if (langs[i], labs[i], t) == ("en", "k2", 1)} for o in [first, *orders]]
    assert all(len(s) == 1 for s in once) and len({frozenset(s) for s in once}) > 1
    sampler.set_epoch(0)
    assert list(sampler) == first  # a resumed run replays epoch 0
    assert epoch(langs, labs, 4, seed=6, n=0) != first


def test_decision_is_off_on_a_balanced_set_with_its_evidence() -> None:
    langs, labs = dataset({"en": [10, 10, 10], "de": [10, 9, 8]})
    decision = balance_decision(langs, labs, field="category")
    assert decision["on"] is False and decision["examples_per_epoch"] == len(labs)
    assert decision["ratio"] == {"value": 1.25, "language": "de", "commonest": "k0", "rarest": "k2"}
    assert decision["counts"] == {"de": {"k0": 10, "k1": 9, "k2": 8}, "en": {"k0": 10, "k1": 10, "k2": 10}}
    assert decision["why"] == ("label balance off: in de, category 'k0' has 10 examples and 'k2' 8 "
                               f"(1.2:1, under {IMBALANCE:g}:1); every example drawn once per epoch")


def test_decision_is_on_at_ten_to_one_and_the_setting_overrides_it() -> None:
    langs, labs = dataset({"en": [40, 4, 20], "de": [10, 9]})
    decision = balance_decision(langs, labs, field="category")
    per_epoch = balanced_draws(langs, labs).total
    assert decision["on"] is True and decision["ratio"]["value"] == 10.0 and decision["ratio"]["language"] == "en"
    assert decision["examples_per_epoch"] == per_epoch > len(labs)
    assert decision["why"].startswith("label balance on: in en, category 'k0' has 40 examples and 'k1' 4 (10.0:1, "
                                      f"at least {IMBALANCE:g}:1)")
    assert f"{per_epoch:,} examples per epoch instead of {len(labs)}" in decision["why"]
    assert balance_decision(langs, labs, "off")["on"] is False
    forced = balance_decision(*dataset({"en": [10, 9]}), "on")
    assert forced["on"] is True and "--balance on" in forced["why"]
    assert balance_decision(langs, [None] * len(langs))["on"] is False  # nothing labelled: nothing to balance
    with pytest.raises(ValueError, match="balance setting"):
        balance_decision(langs, labs, "sometimes")


def test_the_primary_metrics_field_gives_the_labels() -> None:
    task = tiny_task()  # primary metric "exact" scores no one field: the first labelled field, category
    assert primary_field(task) == "category"
    assert primary_field(replace(task, primary_metric="priority_accuracy")) == "priority"
    assert primary_field(replace(task, fields=())) is None
    examples = [Example("", "a", {"category": "refund", "priority": "low"}, "en"),
                Example("", "b", {"priority": "high"}, "de")]  # partial labels: no category
    assert example_labels(task, examples) == ["refund", None]
    assert example_labels(replace(task, fields=()), examples) == [None, None]


def imbalanced_examples() -> list[Example]:
    """Per language 12 shipping, 3 billing, 1 refund ticket (12:1)."""
    out = []
    for lang, texts in TEXTS.items():
        for k, (category, n) in enumerate([("shipping", 12), ("billing", 3), ("refund", 1)]):
            out += [Example("", f"{texts[k]} #{lang}{k}{j}", {"category": category, "priority": "low"}, lang)
                    for j in range(n)]
    return out


@pytest.mark.parametrize("imbalanced", [True, False])
def test_train_records_the_decision_and_hands_lingotrainer_the_balanced_sampler(
    imbalanced: bool, tiny_qwen2_dir: Path, tmp_path: Path, monkeypatch, capsys
) -> None:
    """train() as far as ``fit`` (stubbed): run.json records the decision, and the labels it hands on make
    LingoTrainer's own sampler the balanced one exactly when the decision is on."""
    import lingoforge.train
    from lingoforge.sft_trainer import LingoTrainer

    handed: dict[str, object] = {}

    class Stop(Exception):
        pass

    def fit(*args: object, train_labels: list[str | None] | None = None, **kwargs: object) -> None:
        handed["languages"] = [e.language for e in args[4]]  # train_enc
        handed["labels"] = train_labels
        raise Stop

    monkeypatch.setattr(lingoforge.train, "fit", fit)
    examples = imbalanced_examples() if imbalanced else tiny_examples(24)
    with pytest.raises(Stop):
        lingoforge.train.train(tiny_task(), examples, tiny_examples(4, seed=1), str(tiny_qwen2_dir), tmp_path / "run")
    recorded = json.loads((tmp_path / "run" / "run.json").read_text(encoding="utf-8"))["train"]["balance"]
    assert recorded["on"] is imbalanced and recorded["setting"] == "auto" and recorded["field"] == "category"
    assert recorded["why"] in capsys.readouterr().err
    trainer = SimpleNamespace(train_languages=handed["languages"], train_labels=handed["labels"],
                              args=SimpleNamespace(per_device_train_batch_size=4, seed=0))
    sampler = LingoTrainer._get_train_sampler(trainer)  # type: ignore[arg-type]
    assert (sampler.draws is not None) is imbalanced
    assert len(sampler) == len(list(sampler)) == recorded["examples_per_epoch"]
    if imbalanced:
        assert recorded["examples_per_epoch"] > len(examples)
        assert Counter(examples[i].output["category"] for i in sampler) == {"shipping": 48, "billing": 24, "refund": 12}


def test_the_run_plan_and_a_replan_count_the_balanced_epoch(tiny_qwen2_dir: Path, tmp_path: Path) -> None:
    """`run`'s plan stage says how many steps training will take: on imbalanced data, the balanced epoch's (64
    examples draw as 84 here: 21 steps of 4 per epoch instead of 16), and `plan --from` re-plans a run with its
    recorded draws."""
    from lingoforge.fsutil import write_jsonl
    from lingoforge.pipeline import Options, Pipeline
    from lingoforge.plan import plan_run
    from lingoforge.runfolder import RunFolder
    from rich.console import Console

    examples = imbalanced_examples()
    per_epoch = balance_decision([e.language for e in examples], example_labels(tiny_task(), examples))[
        "examples_per_epoch"]
    assert (len(examples), per_epoch) == (64, 84)
    out = tmp_path / "run"
    write_jsonl(out / "data" / "train.jsonl", [e.to_record() for e in examples])
    write_jsonl(out / "data" / "val.jsonl", [e.to_record() for e in tiny_examples(4, seed=1)])
    console = Console(record=True, width=400)
    for setting, steps in (("auto", 42), ("off", 32)):
        Pipeline(Options(task=tiny_task(), base=str(tiny_qwen2_dir), out=out, train={
            "max_len": 128, "epochs": 2, "balance": setting}), console).plan()
        assert f"at most 2 epochs = {steps} steps" in console.export_text(), console.export_text()

    run = RunFolder(out)
    run.update(base={"location": str(tiny_qwen2_dir)}, train={
        "config": {"rank": 8, "max_len": 128, "epochs": 1, "batch_size": 4, "grad_accum": 1, "load_in_4bit": False,
                   "gradient_checkpointing": False},
        "tokens_by_language": {"train": {"en": {"examples": 64, "tokens": 6400}}},
        "balance": {"on": True, "examples_per_epoch": per_epoch}, "device": "cpu"})
    replanned = plan_run(run)
    assert replanned["time"]["steps_per_epoch"] == 21 and replanned["time"]["tokens_per_epoch"] == 84 * 100
