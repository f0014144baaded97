"""What to do about a language that lags: advice that names its evidence.

A language lags when its primary metric is more than 5 points under the mean over languages (or under
``--threshold``). What to do depends on the evidence, taken in this order:

- always answering the commonest label, or the TF-IDF classifier fitted on the same training rows, does better:
  the model did not learn what the data holds (more epochs, balanced labels, a larger base model);
- the base model with the schema enforced already does as well: fine-tuning added nothing there;
- the classifier does no better than the commonest label there either (and the model no better than both): the
  labels or inputs may be inconsistent (the most confused pairs are shown, two examples each); more of the same
  data will not help;
- otherwise more examples: the language's own trend across retrainings in the run folder
  (``eval/history.jsonl``) sizes the count when there is one, else the recipe's rule of thumb (20-30).
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from typing import Any

from .metrics import INVALID, answered, label
from .runfolder import RunFolder
from .scoring import field_value
from .task import Task
from .verdict import rate

LAG_POINTS = 0.05  # a language lags when its primary metric is more than 5 points under the mean
MAX_TREND_FACTOR = 10  # a trend that needs more than 10x a language's examples is not advice
HISTORY = "history.jsonl"  # in a run's eval/: one line per evaluation of the fine-tuned model
SHOWN_PAIRS = 2  # confused pairs shown for a language whose labels look inconsistent, each with two examples


def examples_to_add(gap: float) -> int:
    """The recipe's advice for a lagging language: 20-30 more examples, more the larger the gap.

    5 points under → 20, 15+ points under → 30, linear between, rounded to 5 (11 points → 25)."""
    points = gap * 100
    return int(5 * round(min(30.0, max(20.0, 20 + (points - 5))) / 5))


def lagging_languages(
    primary: Mapping[str, float],
    training_counts: Mapping[str, int] | None = None,
    n_test: Mapping[str, int] | None = None,
    threshold: float | None = None,
    lag_points: float = LAG_POINTS,
    history: Sequence[Mapping[str, Any]] = (),
    intervals: Mapping[str, Sequence[float] | None] | None = None,
) -> tuple[float | None, list[dict[str, Any]]]:
    """(mean, lagging): languages more than ``lag_points`` under the mean of ``primary``, or under
    ``threshold``, each with advice in numbers. Worst first. A language's figure is printed with its 95% interval
    when ``intervals`` gives one (four test items of a language are read as the noise they are).

    A language missing from the training data is not short of 20-30 examples but of all of them: its advice
    says so and asks for as many as a trained language has on average. When ``history`` (earlier evaluations of
    runs in the same folder, ``{"training": {lang: n}, "primary": {lang: value}}``) shows the language at another
    training size, the count comes from that language's own trend (see :func:`trend_advice`), not the rule of
    thumb; a trend that did not rise says that more data is unlikely to help."""
    if not primary:
        return None, []
    mean = sum(primary.values()) / len(primary)
    trained = [n for n in (training_counts or {}).values() if n > 0]
    out = []
    for lang, value in primary.items():
        gap = max(mean - value, (threshold - value) if threshold is not None else 0.0)
        if not (mean - value > lag_points + 1e-12 or (threshold is not None and value < threshold)):
            continue
        count = None if training_counts is None else int(training_counts.get(lang, 0))
        reference = f"{mean:.0%} mean" if mean - value > lag_points else f"{threshold:.0%} threshold"
        shown = rate({"value": value, "ci": (intervals or {}).get(lang)})
        if count == 0:
            add = round(sum(trained) / len(trained)) if trained else examples_to_add(gap)
            advice = (
                f"{lang}: {shown} vs {reference}; not in the training data — add about {add} {lang} examples "
                "and retrain"
            )
        elif (trend := trend_advice(lang, count, value, value + gap, history)) is not None:
            add, advice = trend
            advice = f"{lang}: {shown} vs {reference}; {count} training examples — {advice}"
        else:
            add = examples_to_add(gap)
            known = "training examples unknown" if count is None else f"{count} training examples"
            advice = f"{lang}: {shown} vs {reference}; {known} — add about {add} more {lang} examples and retrain"
        out.append(
            {
                "language": lang,
                "value": value,
                "mean": mean,
                "gap": gap,
                "threshold": threshold,
                "n_test": (n_test or {}).get(lang),
                "training_examples": count,
                "add_examples": add,
                "advice": advice,
            }
        )
    return mean, sorted(out, key=lambda r: r["value"])


def trend_advice(
    lang: str, count: int | None, value: float, target: float, history: Sequence[Mapping[str, Any]]
) -> tuple[int, str] | None:
    """(examples to add, advice) from the language's own learning curve, or ``None`` without one.

    The curve is the language's score at the largest earlier training size in ``history`` and now, taken as
    linear in log(examples) (how fine-tuning accuracy grows with data, far from saturation); the count is what
    that line needs to reach ``target``, rounded up to 5. A score that did not rise with more data says so
    instead: more of the same examples is unlikely to help."""
    if not count:
        return None
    earlier = [(int(h["training"][lang]), float(h["primary"][lang])) for h in history
               if lang in (h.get("training") or {}) and lang in (h.get("primary") or {})
               and 0 < int(h["training"][lang]) < count]
    if not earlier:
        return None
    n0, v0 = max(earlier)
    seen = f"{n0} → {count} examples took it from {v0:.0%} to {value:.0%}"
    slope = (value - v0) / math.log(count / n0)
    if slope <= 0.01:
        return 0, (f"{seen}: more of the same examples is unlikely to help; check its labels and inputs, "
                   "or try a larger or more multilingual base model")
    needed = count * math.exp((target - value) / slope)
    if needed > MAX_TREND_FACTOR * count:
        return 0, (f"{seen}: on that trend it needs over {MAX_TREND_FACTOR}x its examples to reach "
                   f"{target:.0%}; more data alone is unlikely to close the gap")
    add = max(5, int(5 * math.ceil((needed - count) / 5)))
    return add, f"{seen}; on that trend, add about {add} more {lang} examples and retrain"


def most_confused(confusion: Mapping[str, Any]) -> tuple[str, str, int] | None:
    """(gold label, the label answered instead, how often): the commonest confusion of a confusion matrix."""
    pairs = confused_pairs(confusion)
    return pairs[0] if pairs else None


def confused_pairs(confusion: Mapping[str, Any]) -> list[tuple[str, str, int]]:
    """Every (gold label, label answered instead, count) of a confusion matrix, commonest first."""
    cells = [(count, gold, answer) for gold, row in zip(confusion["labels"], confusion["matrix"], strict=True)
             for answer, count in zip(confusion["predicted"], row, strict=True)
             if count and answer != gold and answer != INVALID]
    return [(gold, answer, count) for count, gold, answer in sorted(cells, key=lambda c: (-c[0], c[1], c[2]))]


def _shown(text: str, width: int = 60) -> str:
    text = " ".join(str(text).split())
    return repr(text if len(text) <= width else text[: width - 1] + "…")


def confusion_examples(field: str, records: Sequence[Mapping[str, Any]], confusion: Mapping[str, Any]) -> str:
    """The most confused pairs of ``field`` with two of their inputs each: ``'billing' answered 'refund' 3×
    ('Mi factura…', 'Cobro doble…')``."""
    out = []
    for gold, answer, count in confused_pairs(confusion)[:SHOWN_PAIRS]:
        inputs = [r["input"] for r in records
                  if label(field_value(r["gold"], field)) == gold and answered(r, field) == answer][:2]
        out.append(f"{gold!r} answered {answer!r} {count}× ({', '.join(_shown(i) for i in inputs)})")
    return "; ".join(out)


def evidence(task: Task, language: str, verdict: Mapping[str, Any], records: Sequence[Mapping[str, Any]],
             confusion: Mapping[str, Any]) -> str | None:
    """What the references say about a lagging ``language`` on the task's first labelled field (see the module
    docstring), or ``None`` when they say nothing beyond "more examples"."""
    if not task.fields:
        return None
    field = task.fields[0]
    s = (verdict.get("fields", {}).get(field) or {}).get("languages", {}).get(language)
    if not s:
        return None
    refs, model = s["references"], s["model"]
    majority, clf, base = refs.get("majority"), refs.get("classifier"), refs.get("base")
    simple = max((r for r in (("majority", majority), ("classifier", clf)) if r[1]), key=lambda r: r[1]["value"],
                 default=None)
    if simple is not None and simple[1]["value"] > model["value"]:
        name = "always answering the commonest training label" if simple[0] == "majority" else \
            "a TF-IDF classifier fitted on the same training rows"
        return (f"{name} scores {rate(simple[1])} on {field}, the model {rate(model)}: the model did not learn what "
                "the data holds; train more epochs, balance the labels, or use a larger base model")
    if base and base["value"] >= model["value"]:
        return (f"the base model with the schema already scores {rate(base)} on {field} there, the fine-tuned model "
                f"{rate(model)}: fine-tuning added nothing in {language}")
    if clf and majority and clf["value"] <= majority["value"] and majority["value"] < 1:
        pairs = confusion_examples(field, [r for r in records if r["language"] == language], confusion)
        return (f"the TF-IDF classifier does no better there than the commonest label ({field} {rate(clf)} vs "
                f"{rate(majority)}): its labels or inputs may be inconsistent; more of the same data is unlikely to "
                "help" + (f"; most confused: {pairs}" if pairs else ""))
    return None


def annotate(task: Task, lagging: list[dict[str, Any]], languages: Mapping[str, Mapping[str, Any]],
             records: Sequence[Mapping[str, Any]], verdict: Mapping[str, Any],
             answers: Mapping[str, Mapping[str, Any]]) -> None:
    """Add each lagging language's evidence to its advice (in place): the references' (replacing the count of
    examples to add where they say more data is not the fix), unusable answers, a collapsed label, and, for a task
    without a generator, which examples to write first."""
    for lag in lagging:
        lang = lag["language"]
        confusion = languages[lang]["fields"][task.fields[0]]["confusion"] if task.fields else None
        found = evidence(task, lang, verdict, records, confusion) if confusion is not None else None
        if found is not None and lag.get("training_examples") != 0:
            lag["evidence"] = found
            lag["add_examples"] = 0
            count = lag.get("training_examples")
            known = "training examples unknown" if count is None else f"{count} training examples"
            shown = rate({"value": lag["value"], "ci": languages[lang].get("primary_ci")})
            lag["advice"] = f"{lang}: {shown} vs {lag['mean']:.0%} mean; {known} — {found}"
        # More data does not fix answers the parser cannot read: say so when that is the cause.
        valid = languages[lang]["schema_valid_rate"]
        if valid < 0.5:
            lag["advice"] += (f"; only {valid:.0%} of its answers are schema-valid — check the chat template "
                              "or evaluate with --constrained")
        confused = most_confused(confusion) if confusion is not None and not task.has_generator else None
        if confused:  # without a generator to top it up, say which examples to write first
            lag["most_confused"] = {"gold": confused[0], "answered": confused[1], "count": confused[2],
                                    "hint": f"write {lang} examples of {confused[0]!r} first: "
                                            f"{confused[2]} of them were answered {confused[1]!r}"}
        piled = [(name, s[lang]["collapsed"]) for name, s in answers.items() if s.get(lang, {}).get("collapsed")]
        if piled:
            name, c = piled[0]
            lag["collapsed"] = {"field": name, **c}
            lag["advice"] += (f"; its answers collapsed to one label: {c['count']} of {c['n']} say {c['label']!r} "
                              f"({name}), where the gold data's commonest label has {c['gold_share']:.0%}")


def history_of(run: RunFolder) -> list[dict[str, Any]]:
    """Earlier evaluations of the fine-tuned model of ``run`` (its folder may have been retrained on more data)."""
    path = run.eval / HISTORY
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def record_history(run: RunFolder, training: Mapping[str, int], report: Mapping[str, Any]) -> None:
    """Append this evaluation's training sizes and scores per language, the points of each language's curve."""
    primary = {lang: s["primary"] for lang, s in report["languages"].items()}
    if history_of(run)[-1:] == [{"training": dict(training), "primary": primary}]:
        return  # the same run evaluated again adds no point
    run.eval.mkdir(parents=True, exist_ok=True)
    with open(run.eval / HISTORY, "a", encoding="utf-8") as fh:
        fh.write(json.dumps({"training": dict(training), "primary": primary}, sort_keys=True) + "\n")
