"""Is it worth deploying? The model set beside its references, item by item, with intervals, and said in one line.

For each labelled field (and each free-text field a reference answers), on the whole test split and on each
language: the model's figure and its 95% interval, each reference's, and the paired-bootstrap interval of the
model's difference from each (``lingoforge.stats``). The outcome is worded on that evidence:

- ``beats``: the difference from every reference is above zero with 95% confidence;
- ``worse``: some reference is better with 95% confidence (the clearest one is named);
- ``no_better``: neither, so the best reference is named: on a small test split this is the common outcome, and
  the warnings say how many items an interval of ±10 points would need.

It also shows where answers pile up: per field and language, the model's answers beside the gold labels, and a
*collapse* (one label takes most answers while the gold labels are spread), the signature of a model that learned
the prior instead of the inputs.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Any

from .metrics import INVALID, answered, chrf, field_hits, label
from .references import TITLES, Reference
from .scoring import field_value
from .stats import half_width, items_for_margin, mean_interval, paired_difference
from .task import Task

MARGIN = 0.10  # an interval wider than ± this cannot separate two models that differ by less
COLLAPSE_SHARE = 0.7  # one label takes at least this share of the valid answers...
COLLAPSE_GAP = 0.3  # ...while the gold's commonest label has at least this much less
COLLAPSE_MIN_ANSWERS = 10  # fewer answers than this prove nothing either way
ORDER = ("majority", "classifier", "base", "retrieval")  # on a tie, the simplest reference is named


# --------------------------------------------------------------------------- wording


def rate(block: Mapping[str, Any], points: bool = False) -> str:
    """``38% [18–61%]``: a figure with its interval (chrF and other scores in points: ``41 [38–44]``)."""
    value, ci = block.get("value"), block.get("ci")
    if value is None:
        return "-"
    if points:
        return f"{value * 100:.0f}" + (f" [{ci[0] * 100:.0f}–{ci[1] * 100:.0f}]" if ci else "")
    return f"{value:.0%}" + (f" [{ci[0]:.0%}–{ci[1]:.0%}]" if ci else "")


def difference(block: Mapping[str, Any]) -> str:
    """``+12 pts [−3, +27]``: a paired difference with its interval."""
    if block.get("delta") is None:
        return "-"
    said = f"{block['delta'] * 100:+.0f} pts"
    if not block.get("ci"):
        return said
    lo, hi = block["ci"]
    return f"{said} [{lo * 100:+.0f}, {hi * 100:+.0f}]"


def title(name: str) -> str:
    return TITLES.get(name, name)


# --------------------------------------------------------------------------- model vs references


def judge(block: dict[str, Any]) -> dict[str, Any]:
    """The outcome of one slice (see the module docstring) and the reference it names."""
    versus = block["versus"]
    if not versus:
        return {"outcome": None, "against": None}
    refs = block["references"]
    best = max(versus, key=lambda n: (refs[n]["value"] or 0.0, -ORDER.index(n) if n in ORDER else -len(ORDER)))
    worse_than = [n for n, d in versus.items() if d["ci"] is not None and d["ci"][1] < 0]
    if all(d["ci"] is not None and d["ci"][0] > 0 for d in versus.values()):
        return {"outcome": "beats", "against": best}
    if worse_than:
        return {"outcome": "worse", "against": min(worse_than, key=lambda n: versus[n]["ci"][1])}
    return {"outcome": "no_better", "against": best}


def slice_versus(scores: Mapping[str, Sequence[float]], items: Sequence[int]) -> dict[str, Any]:
    """One slice (the items at ``items``): the model's and each reference's figure, and the paired differences."""
    model = [scores["model"][i] for i in items]
    others = {name: [values[i] for i in items] for name, values in scores.items() if name != "model"}
    block: dict[str, Any] = {
        "n": len(items),
        "model": mean_interval(model),
        "references": {name: mean_interval(values) for name, values in others.items()},
        "versus": {name: paired_difference(model, values) for name, values in others.items()},
    }
    block.update(judge(block))
    model_ci = block["model"]["ci"]
    block["separable"] = half_width(model_ci) <= MARGIN
    block["items_for_margin"] = None if block["separable"] else items_for_margin(block["model"]["value"] or 0.0)
    return block


def versus_references(scores: Mapping[str, Sequence[float]], languages: Sequence[str]) -> dict[str, Any]:
    """The whole split and each language, for one field's per-item ``scores`` (``model`` and each reference)."""
    by_language: dict[str, list[int]] = {}
    for i, lang in enumerate(languages):
        by_language.setdefault(lang, []).append(i)
    return {
        "overall": slice_versus(scores, range(len(languages))),
        "languages": {lang: slice_versus(scores, items) for lang, items in sorted(by_language.items())},
    }


def label_scores(task: Task, field: str, records: Sequence[Mapping[str, Any]],
                 references: Sequence[Reference]) -> dict[str, list[float]]:
    """Hits per item of the model and of every reference that answers ``field``."""
    gold = [label(field_value(r["gold"], field)) for r in records]
    scores = {"model": field_hits(records, field)}
    for ref in references:
        if any(a is not None and field in a for a in ref.answers):
            scores[ref.name] = [float(a is not None and a.get(field) == g) for a, g in zip(ref.answers, gold,
                                                                                          strict=True)]
    return scores


def text_scores(field: str, records: Sequence[Mapping[str, Any]],
                references: Sequence[Reference]) -> dict[str, list[float]]:
    """chrF per item of the model's free text and of every reference that answers ``field``."""
    gold = [field_value(r["gold"], field) for r in records]
    scores = {"model": [chrf(field_value(r["output"], field) if r["valid"] else None, g)
                        for r, g in zip(records, gold, strict=True)]}
    for ref in references:
        if any(a is not None and field in a for a in ref.answers):
            scores[ref.name] = [chrf(None if a is None else a.get(field), g) for a, g in zip(ref.answers, gold,
                                                                                           strict=True)]
    return scores


def outcome_text(block: Mapping[str, Any], points: bool = False) -> str:
    """``no better than a TF-IDF classifier, 50% [28–72%] (−12 pts [−38, +12])``."""
    against = block.get("against")
    if against is None:
        return "no reference to compare with"
    ref, diff = block["references"][against], block["versus"][against]
    said = {"beats": "beats every reference; the best is", "worse": "worse than", "no_better": "no better than"}
    return f"{said[block['outcome']]} {title(against)}, {rate(ref, points)} ({difference(diff)})"


def field_line(name: str, result: Mapping[str, Any], points: bool = False) -> str:
    """One verdict line: the field's figure, its outcome, and the languages whose outcome differs."""
    overall = result["overall"]
    metric = f"{name} chrF" if points else name
    line = f"{metric}: {rate(overall['model'], points)} on {overall['n']} items — {outcome_text(overall, points)}"
    differing = [(lang, s) for lang, s in result["languages"].items()
                 if s["outcome"] != overall["outcome"] and s["against"] is not None]
    if differing:
        line += "; but " + "; ".join(f"{lang} {rate(s['model'], points)}: {outcome_text(s, points)}"
                                     for lang, s in differing)
    return line


def size_warnings(name: str, result: Mapping[str, Any]) -> list[str]:
    """What the test split is too small to tell: the whole split against its reference, and which languages."""
    out = []
    overall = result["overall"]
    diff = overall["versus"].get(overall["against"] or "", {})
    if overall["outcome"] == "no_better" and half_width(diff.get("ci")) > MARGIN:
        out.append(f"{name}: {overall['n']} test items cannot separate the model from {title(overall['against'])} "
                   f"({difference(diff)}); an interval of ±10 points needs about "
                   f"{items_for_margin(overall['model']['value'] or 0.0)} items")
    small = [(lang, s) for lang, s in result["languages"].items() if not s["separable"]]
    if small:
        needed = max(s["items_for_margin"] for _, s in small)
        out.append(f"{name}: too few items per language to separate models in "
                   + ", ".join(f"{lang} ({s['n']})" for lang, s in small)
                   + f"; ±10 points needs about {needed} items per language")
    return out


# --------------------------------------------------------------------------- where answers pile up


def collapse(answers: Sequence[str], gold: Sequence[str]) -> dict[str, Any] | None:
    """The label ``answers`` collapsed to, if they did: at least ``COLLAPSE_SHARE`` of the usable answers give one
    label while the gold's commonest label is at least ``COLLAPSE_GAP`` rarer."""
    usable = [a for a in answers if a != INVALID]
    if len(usable) < COLLAPSE_MIN_ANSWERS or not gold:
        return None
    top, count = Counter(usable).most_common(1)[0]
    gold_share = Counter(gold).most_common(1)[0][1] / len(gold)
    if count / len(usable) < COLLAPSE_SHARE or count / len(usable) - gold_share < COLLAPSE_GAP:
        return None
    return {"label": top, "count": count, "n": len(usable), "gold_share": gold_share,
            "gold_of_label": Counter(gold)[top]}


def distributions(task: Task, records: Sequence[Mapping[str, Any]]) -> dict[str, dict[str, Any]]:
    """Per labelled field and slice (``all`` and each language): the model's answers and the gold labels, counted,
    with the collapse if any."""
    out: dict[str, dict[str, Any]] = {}
    slices = {"all": list(records)}
    for r in records:
        slices.setdefault(r["language"], []).append(r)
    for name in task.fields:
        out[name] = {}
        for key, rows in sorted(slices.items(), key=lambda kv: (kv[0] != "all", kv[0])):
            answers = [answered(r, name) for r in rows]
            gold = [label(field_value(r["gold"], name)) for r in rows]
            out[name][key] = {"answers": dict(Counter(answers).most_common()),
                              "gold": dict(Counter(gold).most_common()), "collapsed": collapse(answers, gold)}
    return out


def collapse_lines(answers: Mapping[str, Mapping[str, Any]]) -> list[str]:
    """One line per collapsed field and slice: ``priority (all languages): 114 of 124 answers say 'high'…``."""
    out = []
    for name, slices in answers.items():
        for key, s in slices.items():
            c = s["collapsed"]
            if c is None:
                continue
            where = "all languages" if key == "all" else key
            gold = sum(s["gold"].values())
            # the prior when the piled-up label is the commonest gold label; else one answer, not even the commonest
            why = ("the model learned the prior, not the inputs" if c["gold_of_label"] >= c["gold_share"] * gold - 1e-9
                   else "one answer whatever the input, and not the commonest label either")
            out.append(f"{name} ({where}): answers piled up on {c['label']!r}: {c['count']} of {c['n']} answers, "
                       f"where {c['gold_of_label']} of {gold} gold labels are {c['label']!r} "
                       f"(the commonest gold label has {c['gold_share']:.0%}); {why}")
    return out


# --------------------------------------------------------------------------- the report section


def assess(task: Task, records: Sequence[Mapping[str, Any]], references: Sequence[Reference],
           training: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The report's ``verdict`` section: per field the model against each reference (see the module docstring),
    the one-line verdicts, the size warnings and what the references were."""
    for ref in references:
        if len(ref.answers) != len(records):
            raise ValueError(f"reference {ref.name!r} answered {len(ref.answers)} items, the model {len(records)}")
    languages = [r["language"] for r in records]
    fields = {f: versus_references(label_scores(task, f, records, references), languages) for f in task.fields}
    texts = {f: versus_references(text_scores(f, records, references), languages) for f in task.text_fields
             if any(ref.name == "retrieval" or ref.name == "base" for ref in references)}
    lines = [field_line(f, result) for f, result in fields.items()]
    lines += [field_line(f, result, points=True) for f, result in texts.items()]
    warnings = [w for f, result in fields.items() for w in size_warnings(f, result)]
    return {
        "references": {ref.name: {"title": ref.title, "settings": dict(ref.settings)} for ref in references},
        "training": dict(training) if training else None,
        "fields": fields,
        "text_fields": texts,
        "lines": lines,
        "warnings": warnings,
    }
