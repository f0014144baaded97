"""Per-example metrics: label accuracies, chrF of the reply and whether the reply is in the right language.

``response_language_ok`` catches the classic failure of multilingual fine-tunes (answering a Spanish
ticket in English). Scripts decide for zh/ja/ar/hi, which is exact even for a one-line reply; py3langid,
restricted to the Latin-script candidates, decides between the Latin-script languages.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from .labels import LANGUAGES

if TYPE_CHECKING:
    from sacrebleu.metrics import CHRF

METRICS = ("category_accuracy", "priority_accuracy", "language_accuracy", "response_chrf", "response_language_ok")
_SCRIPT_LANGUAGES = ("zh", "ja", "ar", "hi")


@functools.cache
def _chrf() -> CHRF:
    """Imported on first use: sacrebleu costs 0.15 s, which every ``lingoforge tasks`` would pay."""
    from sacrebleu.metrics import CHRF

    return CHRF()


@functools.cache
def _identifier(candidates: tuple[str, ...]) -> Any:
    """A private py3langid identifier (the module-level one is shared process state others may restrict)."""
    from py3langid.langid import MODEL_FILE, LanguageIdentifier

    identifier = LanguageIdentifier.from_model_file(MODEL_FILE)
    identifier.set_languages(list(candidates))
    return identifier


def _script_counts(text: str) -> dict[str, int]:
    counts = {"kana": 0, "han": 0, "arabic": 0, "devanagari": 0, "latin": 0}
    for ch in text:
        code = ord(ch)
        if 0x3040 <= code <= 0x30FF or 0xFF66 <= code <= 0xFF9D:
            counts["kana"] += 1
        elif 0x4E00 <= code <= 0x9FFF or 0x3400 <= code <= 0x4DBF:
            counts["han"] += 1
        elif 0x0600 <= code <= 0x06FF:
            counts["arabic"] += 1
        elif 0x0900 <= code <= 0x097F:
            counts["devanagari"] += 1
        elif ch.isalpha():
            counts["latin"] += 1
    return counts


def detect_language(text: str, expected: str | None = None) -> str:
    """The language of a reply among the task's languages (plus ``expected`` when it is another Latin one).

    The dominant script decides first: kana means Japanese, Han without kana Chinese, Arabic and
    Devanagari script their languages. Latin text goes to py3langid over the Latin candidates only, so
    a short reply cannot be mistaken for a language the task never sees.
    """
    counts = _script_counts(text)
    cjk = counts["kana"] + counts["han"]
    best = max(
        ("cjk", cjk),
        ("ar", counts["arabic"]),
        ("hi", counts["devanagari"]),
        ("latin", counts["latin"]),
        key=lambda kv: kv[1],
    )
    if best[1] == 0:
        return "und"
    if best[0] == "cjk":
        return "ja" if counts["kana"] else "zh"
    if best[0] != "latin":
        return best[0]
    candidates = [lang for lang in LANGUAGES if lang not in _SCRIPT_LANGUAGES]
    if expected and expected not in candidates and expected not in _SCRIPT_LANGUAGES:
        candidates.append(expected)
    try:
        identifier = _identifier(tuple(candidates))
    except ValueError:  # an ``expected`` code py3langid does not know
        identifier = _identifier(tuple(c for c in candidates if c != expected))
    return str(identifier.classify(text)[0])


def score(pred: Mapping[str, Any] | None, gold: Mapping[str, Any]) -> dict[str, float]:
    """All metrics in [0, 1]; a missing or wrongly typed field scores 0 instead of raising, because a
    fine-tuned model's output is untrusted input."""
    if not isinstance(pred, Mapping):
        return dict.fromkeys(METRICS, 0.0)
    result = {
        f"{field}_accuracy": float(_text(pred.get(field)) is not None and pred.get(field) == gold.get(field))
        for field in ("category", "priority", "language")
    }
    hyp, ref = _text(pred.get("suggested_response")), _text(gold.get("suggested_response"))
    if hyp is None or not hyp.strip() or ref is None:
        result["response_chrf"] = result["response_language_ok"] = 0.0
        return result
    result["response_chrf"] = _chrf().sentence_score(hyp, [ref]).score / 100.0
    language = gold.get("language")
    result["response_language_ok"] = float(isinstance(language, str) and detect_language(hyp, language) == language)
    return result


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) else None
