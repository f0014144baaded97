"""The figures of one report slice (a language, or all of them): accuracy and macro-F1 per labelled field with
their confusion matrices, the task's own metrics, schema validity, wrong-language answers, cross-language
consistency, latency. Pure functions of scored prediction records (see ``lingoforge.evaluate.score_answer``).

Every rate a report prints carries its 95% interval (``lingoforge.stats``), so a slice of 4 items is read as
the noise it is.
"""

from __future__ import annotations

import json
import math
from collections import defaultdict
from collections.abc import Mapping, Sequence
from typing import Any

from .scoring import field_value
from .stats import mean_interval
from .task import Task

INVALID = "(invalid)"
MIN_TEXT_CHARS = 12  # shorter free text (a name, "n/a") says too little about its language


def confusion_matrix(gold: Sequence[str], pred: Sequence[str], labels: Sequence[str] = ()) -> dict[str, Any]:
    """Counts of (gold, predicted). Rows: ``labels`` first (the schema's order), then other gold values;
    columns: the row labels, other predicted values, and ``(invalid)`` last when any answer was unusable."""
    rows = list(dict.fromkeys([*labels, *sorted(set(gold) - set(labels))]))
    extra = sorted(set(pred) - set(rows) - {INVALID})
    cols = rows + extra + ([INVALID] if INVALID in pred else [])
    index_r, index_c = {v: i for i, v in enumerate(rows)}, {v: i for i, v in enumerate(cols)}
    matrix = [[0] * len(cols) for _ in rows]
    for g, p in zip(gold, pred, strict=True):
        matrix[index_r[g]][index_c[p]] += 1
    return {"labels": rows, "predicted": cols, "matrix": matrix}


def macro_f1(gold: Sequence[str], pred: Sequence[str]) -> float:
    """Unweighted mean F1 over the classes seen in gold or (usable) predictions of this slice.

    An unusable answer (``(invalid)``) is a miss for its gold class but not a class of its own, so it
    lowers recall without adding a zero-F1 class to the mean."""
    classes = sorted((set(gold) | set(pred)) - {INVALID})
    if not classes:
        return 0.0
    scores = []
    for c in classes:
        tp = sum(1 for g, p in zip(gold, pred, strict=True) if g == c and p == c)
        fp = sum(1 for g, p in zip(gold, pred, strict=True) if g != c and p == c)
        fn = sum(1 for g, p in zip(gold, pred, strict=True) if g == c and p != c)
        scores.append(2 * tp / (2 * tp + fp + fn) if tp else 0.0)
    return sum(scores) / len(scores)


def percentile(values: Sequence[float], q: float) -> float | None:
    """Linear-interpolated percentile (numpy's default method); ``None`` for no values."""
    if not values:
        return None
    ordered = sorted(values)
    pos = (len(ordered) - 1) * q / 100
    lo, hi = math.floor(pos), math.ceil(pos)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (pos - lo)



def detect_languages(texts: Sequence[str], candidates: Sequence[str]) -> list[str | None]:
    """ISO 639-1 code of each text, ``None`` where the detector is unsure (short or ambiguous text), so an
    unsure guess never counts as a wrong-language answer."""
    from .data.langid import LanguageDetector

    return [d.language if d.sure else None for d in LanguageDetector(candidates).detect(texts)]


# --------------------------------------------------------------------------- evaluation


def label(value: Any) -> str:
    """A label as a confusion-matrix key (JSON text for non-strings, so ``null`` and ``true`` stay distinct)."""
    return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)



def answered(record: Mapping[str, Any], field: str) -> str:
    """The label a prediction record gives ``field``: ``(invalid)`` when the answer broke the schema."""
    return label(field_value(record["output"], field)) if record["valid"] else INVALID


def field_hits(records: Sequence[Mapping[str, Any]], field: str) -> list[float]:
    """1.0 per record whose answer gives ``field`` its gold label, else 0.0 (unusable answers are misses)."""
    return [float(answered(r, field) == label(field_value(r["gold"], field))) for r in records]


def summarize(task: Task, records: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """One report slice (see the module docstring) over ``records``."""
    n = len(records)
    metric_names = list(dict.fromkeys(k for r in records for k in r["scores"]))
    metrics = {m: sum(r["scores"].get(m, 0.0) for r in records) / n for m in metric_names} if n else {}
    fields = {}
    for f in task.fields:
        hits = field_hits(records, f)
        gold = [label(field_value(r["gold"], f)) for r in records]
        pred = [answered(r, f) for r in records]
        fields[f] = {
            "accuracy": sum(hits) / n if n else 0.0,
            "accuracy_ci": mean_interval(hits)["ci"],
            "macro_f1": macro_f1(gold, pred),
            "confusion": confusion_matrix(gold, pred, [label(v) for v in task.label_values(f)]),
        }
    latencies = [r["latency_s"] for r in records]
    valid = [float(bool(r["valid"])) for r in records]
    return {
        "n": n,
        "primary": metrics.get(task.primary_metric, 0.0),
        "primary_ci": mean_interval([r["scores"].get(task.primary_metric, 0.0) for r in records])["ci"],
        "metrics": metrics,
        "metrics_ci": {m: mean_interval([r["scores"].get(m, 0.0) for r in records])["ci"] for m in metric_names},
        "schema_valid_rate": sum(valid) / n if n else 0.0,
        "schema_valid_ci": mean_interval(valid)["ci"],
        "parse_failure_rate": sum(r["output"] is None for r in records) / n if n else 0.0,
        "lenient_parse_rate": sum(bool(r["lenient"]) for r in records) / n if n else 0.0,
        "fields": fields,
        "wrong_language_rate": {f: wrong_language(records, f, task.languages) for f in task.text_fields},
        "latency": {"p50_s": percentile(latencies, 50), "p95_s": percentile(latencies, 95)},
    }


def wrong_language(records: Sequence[Mapping[str, Any]], text_field: str, languages: Sequence[str]) -> dict[str, Any]:
    """Share of usable answers whose free-text ``text_field`` is not in the input's language (texts
    under ``MIN_TEXT_CHARS`` characters or with an unsure detection are not checked)."""
    pairs = [
        (text, r["language"])
        for r in records
        if r["valid"]
        for text in [field_value(r["output"], text_field)]
        if isinstance(text, str) and len(text.strip()) >= MIN_TEXT_CHARS
    ]
    detected = detect_languages([t for t, _ in pairs], [*languages, *{lang for _, lang in pairs}]) if pairs else []
    checked = [(d, lang) for d, (_, lang) in zip(detected, pairs, strict=True) if d is not None]
    wrong = sum(d != lang for d, lang in checked)
    return {"rate": wrong / len(checked) if checked else None, "checked": len(checked)}


def consistency(task: Task, records: Sequence[Mapping[str, Any]]) -> dict[str, Any] | None:
    """Agreement of answers across the languages of a parallel group (examples sharing ``meta.group``).

    Uses ``task.consistency`` when the task defines it; otherwise a group agrees when every member gave a
    usable answer with identical label fields. ``None`` when the data has no group of two or more."""
    groups: dict[str, list[Mapping[str, Any]]] = defaultdict(list)
    for r in records:
        if r.get("group") is not None:
            groups[str(r["group"])].append(r)
    groups = {g: members for g, members in groups.items() if len(members) > 1}
    if not groups or (task.consistency is None and not task.fields):
        return None
    scores: dict[str, float] = {}
    for g, members in groups.items():
        preds = [m["output"] if m["valid"] else None for m in members]
        if task.consistency is not None:
            scores[g] = float(task.consistency(preds))
        else:
            keys = {tuple(label(field_value(p, f)) for f in task.fields) if p is not None else None for p in preds}
            scores[g] = float(len(keys) == 1 and None not in keys)
    per_lang: dict[str, list[float]] = defaultdict(list)
    for g, members in groups.items():
        for lang in {m["language"] for m in members}:
            per_lang[lang].append(scores[g])
    return {
        "groups": len(groups),
        "score": sum(scores.values()) / len(scores),
        "languages": {lang: sum(v) / len(v) for lang, v in sorted(per_lang.items())},
        "inconsistent_groups": sorted(g for g, s in scores.items() if s < 1.0)[:20],
    }



def chrf(hypothesis: Any, reference: Any) -> float:
    """chrF of one free-text answer against its gold text, in [0, 1] (sacrebleu's sentence score / 100); 0 for a
    missing or non-text answer."""
    if not isinstance(hypothesis, str) or not isinstance(reference, str) or not reference.strip():
        return 0.0
    from sacrebleu.metrics import CHRF

    return CHRF().sentence_score(hypothesis, [reference]).score / 100
