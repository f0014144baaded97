"""Scores for one extraction, and the cross-language consistency of a parallel group.

Every function accepts whatever a model produced: ``None`` (unparseable answer), wrong types,
missing keys or lists of non-objects score as wrong, never raise. A missing key is not the same as
``null``: a prediction without ``end_date`` gets no credit even when the gold end date is null.
"""

from __future__ import annotations

import itertools
from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Any

from lingoforge.scoring import normalize_text, set_f1

METRICS = (
    "effective_date_match", "end_date_match", "governing_law_match",
    "parties_f1", "clause_types_f1", "obligations_f1",
)
_MISSING = object()


def _objects(value: Any) -> list[Mapping[str, Any]]:
    """The dict items of a list (anything else counts as an empty list)."""
    return [item for item in value if isinstance(item, Mapping)] if isinstance(value, list) else []


def _nullable_match(pred: Any, gold: Any) -> float:
    """Exact match after normalization, where ``null`` only matches ``null`` and a missing key nothing."""
    if pred is _MISSING:
        return 0.0
    if gold is None or pred is None:
        return float(pred is None and gold is None)
    return float(isinstance(pred, str) and normalize_text(pred) == normalize_text(gold))


def _parties(value: Any) -> list[str]:
    return [f"{normalize_text(p.get('name'))} :: {normalize_text(p.get('role'))}" for p in _objects(value)]


def _clause_types(value: Any) -> list[str]:
    return [str(c["type"]) for c in _objects(value) if isinstance(c.get("type"), str)]


def _token_f1(a: str, b: str) -> float:
    """Bag-of-words F1 of two normalized strings (obligations are paraphrased, not copied, by models)."""
    ta, tb = Counter(a.split()), Counter(b.split())
    common = sum((ta & tb).values())
    if common == 0:
        return 0.0
    precision, recall = common / sum(ta.values()), common / sum(tb.values())
    return 2 * precision * recall / (precision + recall)


def obligations_f1(pred: Any, gold: Any) -> float:
    """Soft set-F1: each gold obligation is paired one-to-one with a predicted obligation of the same
    party (normalized name), greedily by best token-F1; the pairs' similarities count as true positives."""
    p = [(normalize_text(o.get("party")), normalize_text(o.get("obligation"))) for o in _objects(pred)]
    g = [(normalize_text(o.get("party")), normalize_text(o.get("obligation"))) for o in _objects(gold)]
    if not p and not g:
        return 1.0
    if not p or not g:
        return 0.0
    candidates = itertools.product(enumerate(p), enumerate(g))
    pairs = sorted(
        ((_token_f1(pt, gt), i, j) for (i, (pp, pt)), (j, (gp, gt)) in candidates if pp == gp),
        key=lambda s: (-s[0], s[1], s[2]),
    )
    used_p: set[int] = set()
    used_g: set[int] = set()
    true_positive = 0.0
    for similarity, i, j in pairs:
        if similarity > 0 and i not in used_p and j not in used_g:
            used_p.add(i)
            used_g.add(j)
            true_positive += similarity
    if true_positive == 0:
        return 0.0
    precision, recall = true_positive / len(p), true_positive / len(g)
    return 2 * precision * recall / (precision + recall)


def score(pred: Mapping[str, Any] | None, gold: Mapping[str, Any]) -> dict[str, float]:
    """Per-field scores in [0, 1] plus ``overall``, their unweighted mean (the primary metric)."""
    if not isinstance(pred, Mapping):
        return dict.fromkeys((*METRICS, "overall"), 0.0)
    result = {
        "effective_date_match": _nullable_match(pred.get("effective_date", _MISSING), gold.get("effective_date")),
        "end_date_match": _nullable_match(pred.get("end_date", _MISSING), gold.get("end_date")),
        "governing_law_match": _nullable_match(pred.get("governing_law", _MISSING), gold.get("governing_law")),
        "parties_f1": set_f1(_parties(pred.get("parties")), _parties(gold.get("parties"))),
        "clause_types_f1": set_f1(_clause_types(pred.get("clauses")), _clause_types(gold.get("clauses"))),
        "obligations_f1": obligations_f1(pred.get("obligations"), gold.get("obligations")),
    }
    result["overall"] = sum(result.values()) / len(METRICS)
    return result


def structure(pred: Mapping[str, Any] | None) -> tuple[Any, ...] | None:
    """The language-independent part of an extraction: parties, dates, law and the clause type set.

    Summaries and obligation wording are left out because they are written in each document's language.
    """
    if not isinstance(pred, Mapping):
        return None

    def norm(value: Any) -> str | None:
        return normalize_text(value) if isinstance(value, str) else None

    return (
        tuple(sorted(set(_parties(pred.get("parties"))))),
        norm(pred.get("effective_date")),
        norm(pred.get("end_date")),
        norm(pred.get("governing_law")),
        tuple(sorted(set(_clause_types(pred.get("clauses"))))),
    )


def consistency(preds: Sequence[Mapping[str, Any] | None]) -> float:
    """Share of prediction pairs of one parallel group whose structures agree.

    An unparseable prediction (``None``) agrees with nothing. A group of fewer than two predictions
    has no pair to disagree and scores 1.0.
    """
    structures = [structure(p) for p in preds]
    pairs = list(itertools.combinations(structures, 2))
    if not pairs:
        return 1.0
    return sum(a is not None and a == b for a, b in pairs) / len(pairs)
