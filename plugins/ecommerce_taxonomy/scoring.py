"""Scoring: per-example metrics for the evaluator, plus corpus-level helpers for reports.

The evaluator computes per-language accuracy and macro-F1 for every label field generically;
``macro_f1`` and ``cjk_misclassification_rate`` exist so a report or notebook can get the numbers that
matter for this task (rare leaves, CJK listings) without the evaluator knowing about products.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from lingoforge.scoring import normalize_text
from lingoforge.task import Example

from .taxonomy import SEPARATOR

METRICS = ("category_accuracy", "top_level_accuracy", "brand_accuracy")
CJK_LANGUAGES = ("zh", "ja", "ko")


def _category(value: Mapping[str, Any] | str | None) -> str | None:
    """The category of an output dict (or a bare category string); ``None`` when there is none."""
    if isinstance(value, Mapping):
        value = value.get("category")
    return value if isinstance(value, str) else None


def _top_level(path: str) -> str:
    return path.split(SEPARATOR.strip(), 1)[0].strip()


def _same_brand(pred: Any, gold: Any) -> bool:
    """Brands match when both are null, or both are strings equal after NFKC, case and punctuation folding."""
    if gold is None or pred is None:
        return gold is None and pred is None
    if not isinstance(pred, str) or not isinstance(gold, str):
        return False
    folded = normalize_text(gold)
    return folded != "" and normalize_text(pred) == folded


def score(pred: Mapping[str, Any] | None, gold: Mapping[str, Any]) -> dict[str, float]:
    """``category_accuracy`` (exact leaf), ``top_level_accuracy`` (first path segment) and ``brand_accuracy``.

    A missing or malformed prediction scores zero on everything and never raises: the evaluator
    passes whatever the model produced, including ``None`` for unparseable answers.
    """
    if not isinstance(pred, Mapping):
        return dict.fromkeys(METRICS, 0.0)
    p, g = _category(pred), _category(gold)
    return {
        "category_accuracy": float(p is not None and p == g),
        "top_level_accuracy": float(p is not None and g is not None and _top_level(p) == _top_level(g)),
        "brand_accuracy": float("brand" in pred and _same_brand(pred["brand"], gold.get("brand"))),
    }


def macro_f1(
    preds: Sequence[Mapping[str, Any] | str | None],
    golds: Sequence[Mapping[str, Any] | str],
    labels: Iterable[str] | None = None,
) -> float:
    """Unweighted mean of per-leaf F1, so a rare leaf counts as much as a frequent one.

    ``preds``/``golds`` are outputs (dicts; ``None`` for an unparsed answer) or category strings.
    Leaves default to those seen in golds or preds (as scikit-learn does); pass ``labels`` (e.g. the
    taxonomy's paths) to fix the set. A leaf with no gold and no prediction has F1 0.
    """
    if len(preds) != len(golds):
        raise ValueError(f"macro_f1: {len(preds)} predictions for {len(golds)} gold outputs")
    pred_cats = [_category(p) for p in preds]
    gold_cats = [_category(g) for g in golds]
    label_set = sorted(set(labels) if labels is not None else {c for c in gold_cats + pred_cats if c is not None})
    if not label_set:
        return 0.0
    f1s = []
    for label in label_set:
        tp = sum(p == g == label for p, g in zip(pred_cats, gold_cats, strict=True))
        fp = sum(p == label != g for p, g in zip(pred_cats, gold_cats, strict=True))
        fn = sum(g == label != p for p, g in zip(pred_cats, gold_cats, strict=True))
        f1s.append(2 * tp / (2 * tp + fp + fn) if tp else 0.0)
    return sum(f1s) / len(f1s)


def cjk_misclassification_rate(examples: Sequence[Example], preds: Sequence[Mapping[str, Any] | None]) -> float:
    """Share of zh/ja/ko examples whose predicted leaf is wrong (``None`` counts as wrong).

    Dense CJK titles pack brand, model and accessory words without spaces, which is where small models
    confuse an accessory with the device it fits; this isolates that error. 0.0 when there are no CJK examples.
    """
    if len(preds) != len(examples):
        raise ValueError(f"cjk_misclassification_rate: {len(preds)} predictions for {len(examples)} examples")
    pairs = zip(examples, preds, strict=True)
    outcomes = [_category(p) != _category(ex.output) for ex, p in pairs if ex.language in CJK_LANGUAGES]
    return sum(outcomes) / len(outcomes) if outcomes else 0.0
