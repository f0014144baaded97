"""The support_tickets plugin: label balance, priority cues, native text and scoring.

The generic checks (contract, determinism, schema, languages, samples) run in test_plugin_contract.py.
"""

from __future__ import annotations

import re
from collections import Counter

import pytest
from lingoforge_plugins.support_tickets import TASK
from lingoforge_plugins.support_tickets.labels import CATEGORIES, LANGUAGES, PRIORITY_BY_CUE
from lingoforge_plugins.support_tickets.scoring import METRICS, detect_language

N = 500


@pytest.fixture(scope="module")
def examples():
    return TASK.generate(N, 0)


def test_the_language_field_is_the_ticket_language(examples):
    assert all(e.language == e.output["language"] for e in examples)


def test_categories_are_balanced_per_language(examples):
    for lang in LANGUAGES:
        counts = Counter(e.output["category"] for e in examples if e.language == lang)
        assert set(counts) == set(CATEGORIES), (lang, counts)
        assert max(counts.values()) - min(counts.values()) <= 1, (lang, counts)


def test_uneven_split_and_language_subset():
    subset = TASK.generate(23, 4, ["ja", "pt", "ar"])
    counts = Counter(e.language for e in subset)
    assert counts == {"ja": 8, "pt": 8, "ar": 7}


def test_priority_follows_the_cue_of_the_phrasing(examples):
    for e in examples:
        cue = e.meta["template"].split(".")[1]
        assert e.output["priority"] == PRIORITY_BY_CUE[cue], e.meta
    assert {e.output["priority"] for e in examples} == set(PRIORITY_BY_CUE.values())


NATIVE_SCRIPT = {
    "zh": re.compile(r"[\u4e00-\u9fff]"),
    "ja": re.compile(r"[\u3040-\u30ff]"),
    "ar": re.compile(r"[\u0600-\u06ff]"),
    "hi": re.compile(r"[\u0900-\u097f]"),
}


def test_inputs_and_replies_are_in_their_native_script(examples):
    for e in examples:
        script = NATIVE_SCRIPT.get(e.language)
        if script is not None:
            assert script.search(e.input) and script.search(e.output["suggested_response"]), (e.language, e.input)
    assert not any(re.search(r"[\u3040-\u30ff]", e.input) for e in examples if e.language == "zh")


def test_slots_are_filled_and_local_formats_appear(examples):
    assert not any(re.search(r"\{\w+\}", e.input + e.output["suggested_response"]) for e in examples)
    text = {lang: " ".join(e.input for e in examples if e.language == lang) for lang in LANGUAGES}
    assert re.search(r"\d,\d\d ?(€|EUR|euro)", text["de"] + text["fr"] + text["es"] + text["it"])
    assert re.search(r"[¥￥]\d|\d円", text["ja"])
    assert "R$" in text["pt"] or "reais" in text["pt"]


def test_replies_are_in_the_ticket_language(examples):
    wrong = [
        (e.language, e.output["suggested_response"])
        for e in examples
        if detect_language(e.output["suggested_response"], e.language) != e.language
    ]
    assert not wrong, wrong[:3]


GOLD = {
    "category": "billing",
    "priority": "high",
    "language": "es",
    "suggested_response": "Sentimos mucho el cobro duplicado. Le devolveremos el importe en 3 a 5 días laborables.",
}


def test_wrong_category_lowers_category_accuracy_only():
    scores = TASK.score({**GOLD, "category": "shipping"}, GOLD)
    assert scores == {**dict.fromkeys(METRICS, 1.0), "category_accuracy": 0.0}


def test_reply_in_another_language_is_flagged():
    pred = {
        **GOLD,
        "suggested_response": "We are very sorry about the double charge. You will get your money back in 3-5 days.",
    }
    scores = TASK.score(pred, GOLD)
    assert scores["response_language_ok"] == 0.0
    assert scores["category_accuracy"] == scores["priority_accuracy"] == scores["language_accuracy"] == 1.0
    assert scores["response_chrf"] < 0.5


@pytest.mark.parametrize(
    "text, language",
    [
        ("ご連絡ありがとうございます。", "ja"),
        ("感谢您的来信。", "zh"),
        ("شكراً لرسالتك.", "ar"),
        ("धन्यवाद!", "hi"),
        ("Obrigado pelo contato!", "pt"),
    ],
)
def test_short_replies_are_identified(text, language):
    assert detect_language(text, language) == language


@pytest.mark.parametrize(
    "pred",
    [
        None,
        {},
        {"category": 3},
        {"category": ["billing"], "suggested_response": None},
        {"suggested_response": 42, "language": {"es": 1}},
        "not a dict",
        {"suggested_response": "   "},
    ],
)
def test_malformed_predictions_score_zero_without_raising(pred):
    scores = TASK.score(pred, GOLD)
    assert set(scores) == set(METRICS)
    assert all(v == 0.0 for v in scores.values()), scores
