"""Per-language evaluation: generate → parse → validate → score → report.

The product promise is per-language accuracy you can trust on the model you deploy, so every number is
broken down by language, and the same code scores the HF model, the GGUF file and the Ollama model.

``evaluate(...)`` returns the report as a dict; ``report.json`` holds it without ``predictions`` (those go
to ``predictions.jsonl``) and ``settings`` (those go to ``predictions.settings.json``). Its keys are stable
(``format`` changes when they do):

- ``format``: ``"lingoforge.eval/1"``.
- ``model``: ``spec``, ``backend``, ``model`` (what the backend loaded), ``constrained``, ``fine_tuned`` (a run
  folder, or training counts given); for a served model (ollama, openai) ``hosts`` and ``servers`` (each one's
  ``host``, ``parallel``, ``answered``, ``busy_s`` and ``failed``: why it left the run, or ``null``).
- ``task``: ``name``, ``version``, ``primary_metric``, ``fields`` (label fields), ``text_fields``.
- ``data``: ``n`` items evaluated, ``languages`` (sorted), ``source`` (file path or ``null``), ``resumed`` (items
  whose answers came from an interrupted run's ``predictions.jsonl`` instead of the model).
- ``overall`` and ``languages[LANG]``: one *slice* each, with
  ``n``; ``primary`` (mean of the task's primary metric); ``metrics`` (mean of every ``task.score`` key);
  ``schema_valid_rate`` (answers that parse and satisfy the schema); ``parse_failure_rate`` (no JSON object
  recovered); ``lenient_parse_rate`` (JSON recovered only after stripping chatter/fences);
  ``fields[FIELD]``: ``accuracy``, ``macro_f1``, ``confusion`` = {``labels`` (rows, gold), ``predicted``
  (columns; ``(invalid)`` last when an answer was unusable), ``matrix``};
  ``wrong_language_rate[TEXT_FIELD]``: {``rate`` (``null`` when nothing checkable), ``checked``};
  ``latency``: {``p50_s``, ``p95_s``}.
- ``primary_mean``: mean over languages of ``languages[*].primary`` (each language weighs the same).
- ``lagging``: list of {``language``, ``value``, ``mean``, ``gap``, ``threshold``, ``n_test``,
  ``training_examples`` (``null`` = unknown), ``add_examples``, ``advice``}.
- ``consistency``: ``null`` without parallel groups (``meta.group``), else {``groups``, ``score``,
  ``languages`` {LANG: score}, ``inconsistent_groups`` (up to 20 group ids)}.
- ``throughput``: {``p50_s``, ``p95_s`` (per item), ``items_per_s``, ``total_s``, ``batch_size``}; ``items_per_s``
  and ``total_s`` count only what this invocation generated (``items_per_s`` is ``null`` when it resumed everything).
- ``comparison`` and ``compared``: only with ``--compare``: see :func:`compare_reports`; ``compared`` is
  the second model's full report.

Schema-invalid answers score as misses (``task.score(None, gold)``): an application cannot use them.

Given ``predictions=PATH``, answers are appended to PATH as they come (flushed and fsynced), so a
killed evaluation keeps what it generated; PATH's sidecar ``predictions.settings.json`` records what they
were generated for (model and its weight files, evaluated items and schema, decoding settings). Rerun with
the same settings, only the missing items are generated (a partial last line is cut off); with other settings
PATH starts over. Resumed answers are parsed and scored again, so the report equals an uninterrupted run's.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from rich.console import Console

from .backends import (
    DEFAULT_MAX_NEW_TOKENS,
    SERVED,
    Backend,
    Generation,
    ModelSpec,
    Servers,
    get_backend,
    resolve_model,
)
from .errors import DataError, WriteError
from .fsutil import append_text, write_json, write_text
from .progress import items_bar
from .prompts import prompt_messages
from .runfolder import RunFolder
from .schema import parse_output
from .scoring import field_value
from .task import Example, Task

FORMAT = "lingoforge.eval/1"
SETTINGS_FORMAT = "lingoforge.eval-predictions/1"
INVALID = "(invalid)"
LAG_POINTS = 0.05  # a language lags when its primary metric is more than 5 points under the mean
COLLAPSE_SHARE = 0.7  # a language whose valid answers give one label this often, far above its gold share
COLLAPSE_MIN_ANSWERS = 10  # fewer answers than this prove nothing either way
MAX_TREND_FACTOR = 10  # a trend that needs more than 10x a language's examples is not advice
HISTORY = "history.jsonl"  # in a run's eval/: one line per evaluation of the fine-tuned model
MIN_TEXT_CHARS = 12  # shorter free text (a name, "n/a") says too little about its language


# --------------------------------------------------------------------------- metrics (pure functions)


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
) -> tuple[float | None, list[dict[str, Any]]]:
    """(mean, lagging): languages more than ``lag_points`` under the mean of ``primary``, or under
    ``threshold``, each with advice in numbers. Worst first.

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
        if count == 0:
            add = round(sum(trained) / len(trained)) if trained else examples_to_add(gap)
            advice = (
                f"{lang}: {value:.0%} vs {reference}; not in the training data — add about {add} {lang} examples "
                "and retrain"
            )
        elif (trend := trend_advice(lang, count, value, value + gap, history)) is not None:
            add, advice = trend
            advice = f"{lang}: {value:.0%} vs {reference}; {count} training examples — {advice}"
        else:
            add = examples_to_add(gap)
            known = "training examples unknown" if count is None else f"{count} training examples"
            advice = f"{lang}: {value:.0%} vs {reference}; {known} — add about {add} more {lang} examples and retrain"
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
    cells = [(count, gold, answered) for gold, row in zip(confusion["labels"], confusion["matrix"], strict=True)
             for answered, count in zip(confusion["predicted"], row, strict=True)
             if count and answered != gold and answered != INVALID]
    if not cells:
        return None
    count, gold, answered = max(cells)
    return gold, answered, count


def collapsed_label(task: Task, records: Sequence[Mapping[str, Any]]) -> dict[str, Any] | None:
    """The label a language's answers collapsed to, if they did: at least ``COLLAPSE_SHARE`` of the valid answers
    give one label of the primary field while the gold data's commonest label is at least 30 points rarer. A model
    that answers one class regardless of the input needs a look at its data's balance, not only more examples."""
    if not task.fields:
        return None
    field = task.fields[0]
    answers = [label(field_value(r["output"], field)) for r in records if r["valid"]]
    if len(answers) < COLLAPSE_MIN_ANSWERS:
        return None
    top, count = Counter(answers).most_common(1)[0]
    gold_share = Counter(label(field_value(r["gold"], field)) for r in records).most_common(1)[0][1] / len(records)
    if count / len(answers) < COLLAPSE_SHARE or count / len(answers) - gold_share < 0.3:
        return None
    return {"field": field, "label": top, "count": count, "n": len(answers), "gold_share": gold_share}


# --------------------------------------------------------------------------- language identification


def detect_languages(texts: Sequence[str], candidates: Sequence[str]) -> list[str | None]:
    """ISO 639-1 code of each text, ``None`` where the detector is unsure (short or ambiguous text), so an
    unsure guess never counts as a wrong-language answer."""
    from .data.langid import LanguageDetector

    return [d.language if d.sure else None for d in LanguageDetector(candidates).detect(texts)]


# --------------------------------------------------------------------------- evaluation


def label(value: Any) -> str:
    """A label as a confusion-matrix key (JSON text for non-strings, so ``null`` and ``true`` stay distinct)."""
    return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)


def stratified(examples: Sequence[Example], limit: int | None) -> list[Example]:
    """The first ``limit`` examples taken round-robin over languages, so ``--limit`` keeps every language."""
    if limit is None or limit >= len(examples):
        return list(examples)
    by_lang: dict[str, list[Example]] = defaultdict(list)
    for ex in examples:
        by_lang[ex.language].append(ex)
    out: list[Example] = []
    queues = [iter(v) for v in by_lang.values()]
    while len(out) < limit and queues:
        for q in list(queues):
            item = next(q, None)
            if item is None:
                queues.remove(q)
            elif len(out) < limit:
                out.append(item)
    return out


def score_answer(task: Task, index: int, ex: Example, gen: Generation) -> dict[str, Any]:
    """The prediction record of one answer: parsed, checked against the schema and scored against the gold."""
    parsed = parse_output(gen.text, task.schema)
    return {
        "index": index,
        "language": ex.language,
        "input": ex.input,
        "gold": dict(ex.output),
        "raw": gen.text,
        "output": parsed.value,
        "valid": parsed.valid,
        "lenient": parsed.lenient,
        "error": parsed.error,
        "scores": task.score(parsed.value if parsed.valid else None, ex.output),
        "latency_s": gen.latency_s,
        "n_tokens": gen.n_tokens,
        "group": ex.meta.get("group"),
    }


def predict_examples(
    backend: Backend,
    task: Task,
    examples: Sequence[Example],
    *,
    indices: Sequence[int] | None = None,
    on_answer: Callable[[dict[str, Any]], None] | None = None,
    constrained: bool = False,
    batch_size: int = 8,
    max_new_tokens: int = DEFAULT_MAX_NEW_TOKENS,
    console: Console | None = None,
) -> tuple[list[dict[str, Any]], float]:
    """Run the model over ``examples`` and parse each answer; returns (prediction records, generation seconds).

    ``indices`` are the records' ``index`` values (default 0, 1, ...: a resumed run passes the missing ones);
    ``on_answer`` receives each record as soon as it exists, so it can be saved before the next."""
    positions = list(range(len(examples))) if indices is None else list(indices)
    conversations = [prompt_messages(task, ex.input, ex.instruction or None) for ex in examples]
    records: list[dict[str, Any]] = []
    began = time.perf_counter()
    with items_bar(f"eval {backend.name}", len(examples), getattr(backend, "hosts", ()), console) as advance:
        for at, gen in backend.stream(conversations, task.schema if constrained else None, max_new_tokens, batch_size):
            record = score_answer(task, positions[at], examples[at], gen)
            if on_answer is not None:
                on_answer(record)
            records.append(record)
            advance(gen.server)
    return records, time.perf_counter() - began


def summarize(task: Task, records: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """One report slice (see the module docstring) over ``records``."""
    n = len(records)
    metric_names = list(dict.fromkeys(k for r in records for k in r["scores"]))
    metrics = {m: sum(r["scores"].get(m, 0.0) for r in records) / n for m in metric_names} if n else {}
    fields = {}
    for f in task.fields:
        gold = [label(field_value(r["gold"], f)) for r in records]
        pred = [label(field_value(r["output"], f)) if r["valid"] else INVALID for r in records]
        fields[f] = {
            "accuracy": sum(g == p for g, p in zip(gold, pred, strict=True)) / n if n else 0.0,
            "macro_f1": macro_f1(gold, pred),
            "confusion": confusion_matrix(gold, pred, [label(v) for v in task.label_values(f)]),
        }
    latencies = [r["latency_s"] for r in records]
    return {
        "n": n,
        "primary": metrics.get(task.primary_metric, 0.0),
        "metrics": metrics,
        "schema_valid_rate": sum(r["valid"] for r in records) / n if n else 0.0,
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


def build_report(
    task: Task,
    records: Sequence[Mapping[str, Any]],
    *,
    model: Mapping[str, Any],
    seconds: float,
    batch_size: int,
    training_counts: Mapping[str, int] | None = None,
    threshold: float | None = None,
    source: str | None = None,
    resumed: int = 0,
    history: Sequence[Mapping[str, Any]] = (),
) -> dict[str, Any]:
    """The full report dict (without predictions) from scored prediction records; ``seconds`` is the time spent
    generating the ``len(records) - resumed`` answers that did not come from an earlier run; ``history`` sizes
    the advice (see :func:`lagging_languages`)."""
    by_lang: dict[str, list[Mapping[str, Any]]] = defaultdict(list)
    for r in records:
        by_lang[r["language"]].append(r)
    languages = {lang: summarize(task, rs) for lang, rs in sorted(by_lang.items())}
    primary = {lang: s["primary"] for lang, s in languages.items()}
    mean, lagging = lagging_languages(
        primary, training_counts, {lang: s["n"] for lang, s in languages.items()}, threshold, history=history
    )
    collapsed = {lang: c for lang, rs in by_lang.items() if (c := collapsed_label(task, rs)) is not None}
    for lag in lagging:
        # More data does not fix answers the parser cannot read: say so when that is the cause.
        valid = languages[lag["language"]]["schema_valid_rate"]
        if valid < 0.5:
            lag["advice"] += (
                f"; only {valid:.0%} of its answers are schema-valid — check the chat template "
                "or evaluate with --constrained"
            )
        confused = most_confused(languages[lag["language"]]["fields"][task.fields[0]]["confusion"]) \
            if task.fields and not task.has_generator else None
        if confused:  # without a generator to top it up, say which examples to write first
            lag["most_confused"] = {"gold": confused[0], "answered": confused[1], "count": confused[2],
                                    "hint": f"write {lag['language']} examples of {confused[0]!r} first: "
                                            f"{confused[2]} of them were answered {confused[1]!r}"}
        if lag["language"] in collapsed:
            c = collapsed[lag["language"]]
            lag["collapsed"] = c
            lag["advice"] += (f"; its answers collapsed to one label: {c['count']} of {c['n']} say {c['label']!r} "
                              f"({c['field']}), where the gold data's commonest label has {c['gold_share']:.0%}")
    overall = summarize(task, records)
    return {
        "format": FORMAT,
        "model": dict(model),
        "task": {
            "name": task.name,
            "version": task.version,
            "primary_metric": task.primary_metric,
            "fields": list(task.fields),
            "text_fields": list(task.text_fields),
        },
        "data": {"n": len(records), "languages": sorted(by_lang), "source": source, "resumed": resumed},
        "overall": overall,
        "languages": languages,
        "primary_mean": mean,
        "lagging": lagging,
        "collapsed": collapsed,
        "consistency": consistency(task, records),
        "throughput": {
            **overall["latency"],
            "items_per_s": (len(records) - resumed) / seconds if seconds else None,
            "total_s": seconds,
            "batch_size": batch_size,
        },
    }


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


def training_counts_of(spec: ModelSpec) -> dict[str, int] | None:
    """Training examples per language from a run folder's data/train.jsonl (``None`` when unknown)."""
    if spec.run is None or not (spec.run.data / "train.jsonl").is_file():
        return None
    from .data.io import Row, read_rows, read_text

    path = spec.run.data / "train.jsonl"
    rows = [row.value for row in read_rows(read_text(path), str(path), "jsonl") if isinstance(row, Row)]
    return dict(Counter(str(r.get("language") or "unknown") for r in rows if isinstance(r, dict)))


# --------------------------------------------------------------------------- streamed, resumable predictions


def settings_path(predictions: str | Path) -> Path:
    """The sidecar that says what a ``predictions.jsonl`` was generated for."""
    return Path(predictions).with_name(Path(predictions).stem + ".settings.json")


def prediction_line(model: Mapping[str, Any], record: Mapping[str, Any]) -> dict[str, Any]:
    """A ``predictions.jsonl`` line: the record tagged with the model spec and backend that answered it
    (a comparison puts both models in one file, possibly the same spec on two backends)."""
    return {"model": model["spec"], "backend": model["backend"], **record}


def weight_files(spec: ModelSpec, backend: str) -> dict[str, list[int]]:
    """Size and mtime of the files ``backend`` loads for ``spec``, so a model retrained or re-exported at the
    same path does not pass for the one that wrote earlier predictions (a hub id or Ollama name has none)."""
    if backend in SERVED:
        return {}
    roots = [spec.gguf] if backend == "llamacpp" or not spec.location else [Path(spec.location), spec.adapter]
    files: dict[str, list[int]] = {}
    for root in roots:
        if root is None or not root.exists():
            continue
        for path in sorted(root.iterdir()) if root.is_dir() else [root]:
            if path.is_file():
                stat = path.stat()
                files[str(path)] = [stat.st_size, stat.st_mtime_ns]
    return files


def model_identity(
    model: str | ModelSpec | Backend, backend: str | None = None, servers: Servers | None = None
) -> dict[str, Any]:
    """What decides a model's answers besides the prompts: spec, backend, weight files; the servers and served
    model name of a served backend."""
    if isinstance(model, Backend):
        return {"spec": model.model, **model.describe()}
    spec = _resolved(model)
    name = backend or spec.default_backend
    served = (servers or Servers()).identity() if name in SERVED else {}
    return {"spec": spec.spec, "backend": name, **served, "files": weight_files(spec, name)}


def _resolved(model: str | ModelSpec) -> ModelSpec:
    return resolve_model(model) if isinstance(model, str) else model


def eval_settings(
    task: Task,
    examples: Sequence[Example],
    models: Sequence[Mapping[str, Any]],
    *,
    constrained: bool,
    max_new_tokens: int,
) -> dict[str, Any]:
    """Everything the answers in ``predictions.jsonl`` depend on; a rerun resumes only when they are equal.

    ``data_sha256`` covers the evaluated items (prompts as sent, gold answers, languages, groups, so a changed
    file or ``--limit`` counts) and the output schema."""
    digest = hashlib.sha256(json.dumps(task.schema, sort_keys=True).encode())
    for ex in examples:
        prompt = prompt_messages(task, ex.input, ex.instruction or None)
        item = [prompt, dict(ex.output), ex.language, ex.meta.get("group")]
        digest.update(json.dumps(item, sort_keys=True, ensure_ascii=False, default=str).encode() + b"\n")
    return json.loads(
        json.dumps(
            {
                "format": SETTINGS_FORMAT,
                "task": {"name": task.name, "version": task.version},
                "data_sha256": digest.hexdigest(),
                "n": len(examples),
                "constrained": constrained,
                "max_new_tokens": max_new_tokens,
                "models": list(models),
            },
            default=str,
        )
    )


class PredictionLog:
    """An eval folder's ``predictions.jsonl``, appended a batch at a time and resumed when reopened with the
    same settings; with other settings (or none recorded) it starts over rather than mix answers, at the first
    new answer, so a model or server that fails to open loses no earlier predictions and leaves no files."""

    def __init__(self, path: str | Path, settings: Mapping[str, Any]) -> None:
        self.path = Path(path)
        self.settings = settings
        self.done: dict[tuple[str, str], dict[int, Generation]] = defaultdict(dict)
        try:
            same = json.loads(settings_path(self.path).read_text(encoding="utf-8")) == settings
        except (OSError, json.JSONDecodeError):
            same = False
        self.started = same and self.path.is_file()
        if self.started:
            self._load()

    def _start(self) -> None:
        # Empty the predictions before recording the new settings: a crash in between leaves nothing to mix.
        write_text(self.path, "")
        write_json(settings_path(self.path), self.settings)
        self.started = True

    def _load(self) -> None:
        data = self.path.read_bytes()
        keep = data.rfind(b"\n") + 1
        # Split on \n only: answers may hold U+2028 and the like, which str.splitlines() would split on.
        for number, line in enumerate(data[:keep].split(b"\n")[:-1], 1):
            if not line.strip():
                continue
            try:
                r = json.loads(line)
                gen = Generation(str(r["raw"]), float(r["latency_s"]), int(r["n_tokens"]))
                self.done[(str(r["model"]), str(r["backend"]))][int(r["index"])] = gen
            except (UnicodeDecodeError, json.JSONDecodeError, KeyError, TypeError, ValueError):
                raise DataError(
                    f"{self.path}:{number}: not an eval prediction line (needs model, backend, index, raw, latency_s, "
                    f"n_tokens); delete {self.path} or write the report to another folder (-o)"
                ) from None
        if keep != len(data):  # a kill in the middle of a write: its settings say the file is ours to cut
            try:
                os.truncate(self.path, keep)
            except OSError as exc:
                raise WriteError(f"cannot write {self.path}: {exc.strerror or exc}") from exc

    def completed(self, model: Mapping[str, Any]) -> dict[int, Generation]:
        """The answers ``model`` (a ``model_identity``) already gave, by item index."""
        return self.done.get((model["spec"], model["backend"]), {})

    def append(self, model: Mapping[str, Any], records: Sequence[Mapping[str, Any]]) -> None:
        """Add ``records`` as whole lines, on disk before returning."""
        if not self.started:
            self._start()
        append_text(self.path, "".join(
            json.dumps(prediction_line(model, r), ensure_ascii=False, separators=(",", ":")) + "\n" for r in records
        ))


# --------------------------------------------------------------------------- evaluate and compare


def _evaluate(
    model: ModelSpec | Backend,
    task: Task,
    examples: Sequence[Example],
    identity: Mapping[str, Any],
    log: PredictionLog | None,
    *,
    backend: str | None = None,
    constrained: bool = False,
    batch_size: int = 8,
    max_new_tokens: int = DEFAULT_MAX_NEW_TOKENS,
    servers: Servers | None = None,
    threshold: float | None = None,
    training_counts: Mapping[str, int] | None = None,
    source: str | None = None,
    console: Console | None = None,
) -> dict[str, Any]:
    """One model's report on already selected ``examples``, generating only what ``log`` lacks."""
    if isinstance(model, Backend):
        opened, spec_text, counts, run = model, model.model, training_counts, None
    else:
        opened = get_backend(model, backend, servers=servers)
        spec_text, run = model.spec, model.run
        counts = training_counts if training_counts is not None else training_counts_of(model)
    done = log.completed(identity) if log is not None else {}
    records = {i: score_answer(task, i, examples[i], gen) for i, gen in done.items()}
    todo = [i for i in range(len(examples)) if i not in records]
    seconds = 0.0
    try:
        if done and console is not None and log is not None:
            console.print(f"{spec_text}: {len(done)} of {len(examples)} answers already in {log.path}")
        if todo:
            new, seconds = predict_examples(
                opened,
                task,
                [examples[i] for i in todo],
                indices=todo,
                on_answer=None if log is None else lambda record: log.append(identity, [record]),
                constrained=constrained,
                batch_size=batch_size,
                max_new_tokens=max_new_tokens,
                console=console,
            )
            records.update((r["index"], r) for r in new)
        described = {
            "spec": spec_text,
            **opened.describe(),
            "constrained": constrained,
            "fine_tuned": run is not None or counts is not None,
        }
    finally:
        if not isinstance(model, Backend):
            opened.close()
    ordered = [records[i] for i in range(len(examples))]
    report = build_report(
        task,
        ordered,
        model=described,
        seconds=seconds,
        batch_size=batch_size,
        training_counts=counts,
        threshold=threshold,
        source=source,
        resumed=len(done),
        history=history_of(run) if run is not None else (),
    )
    # each run's curve is of its own test split: points scored on other data would not belong on it
    if run is not None and counts and (source is None or Path(source).resolve() == (run.data / "test.jsonl").resolve()):
        record_history(run, counts, report)
    report["predictions"] = ordered
    return report


def _selected(examples: Sequence[Example], limit: int | None) -> list[Example]:
    selected = stratified(examples, limit)
    if not selected:
        raise DataError("no examples to evaluate: the test data is empty")
    return selected


def evaluate(
    model: str | ModelSpec | Backend,
    task: Task,
    examples: Sequence[Example],
    *,
    backend: str | None = None,
    constrained: bool = False,
    batch_size: int = 8,
    max_new_tokens: int = DEFAULT_MAX_NEW_TOKENS,
    servers: Servers | None = None,
    limit: int | None = None,
    threshold: float | None = None,
    training_counts: Mapping[str, int] | None = None,
    source: str | None = None,
    console: Console | None = None,
    predictions: str | Path | None = None,
) -> dict[str, Any]:
    """Evaluate ``model`` (a MODEL spec, resolved or not, or an open Backend) on ``examples``; returns the report
    with the per-item ``predictions`` and the ``settings`` they depend on under those keys. Training counts come
    from a run folder unless given. With ``predictions`` (a JSONL path), answers are streamed there and a rerun with
    the same settings generates only the items it lacks."""
    examples = _selected(examples, limit)
    model = model if isinstance(model, Backend) else _resolved(model)
    identity = model_identity(model, backend, servers)
    settings = eval_settings(task, examples, [identity], constrained=constrained, max_new_tokens=max_new_tokens)
    report = _evaluate(
        model,
        task,
        examples,
        identity,
        None if predictions is None else PredictionLog(predictions, settings),
        backend=backend,
        constrained=constrained,
        batch_size=batch_size,
        max_new_tokens=max_new_tokens,
        servers=servers,
        threshold=threshold,
        training_counts=training_counts,
        source=source,
        console=console,
    )
    report["settings"] = settings
    return report


def _delta(a: float | None, b: float | None) -> dict[str, float | None]:
    return {"a": a, "b": b, "delta": None if a is None or b is None else b - a}


def compare_reports(a: Mapping[str, Any], b: Mapping[str, Any]) -> dict[str, Any]:
    """Side by side, ``delta = b - a`` (positive: the second model is better/faster):
    ``a``/``b`` (model blocks), ``primary_metric``, ``overall`` and ``languages[LANG]`` with ``primary``,
    ``schema_valid_rate`` and ``fields[FIELD]`` accuracy, each {a, b, delta}; ``throughput`` p50 and items/s."""

    def block(sa: Mapping[str, Any] | None, sb: Mapping[str, Any] | None) -> dict[str, Any]:
        sa, sb = sa or {}, sb or {}
        names = list(dict.fromkeys([*sa.get("fields", {}), *sb.get("fields", {})]))
        return {
            "primary": _delta(sa.get("primary"), sb.get("primary")),
            "schema_valid_rate": _delta(sa.get("schema_valid_rate"), sb.get("schema_valid_rate")),
            "fields": {
                f: _delta(
                    (sa.get("fields", {}).get(f) or {}).get("accuracy"),
                    (sb.get("fields", {}).get(f) or {}).get("accuracy"),
                )
                for f in names
            },
        }

    langs = sorted(set(a["languages"]) | set(b["languages"]))
    return {
        "a": a["model"],
        "b": b["model"],
        "primary_metric": a["task"]["primary_metric"],
        "overall": block(a["overall"], b["overall"]),
        "languages": {lang: block(a["languages"].get(lang), b["languages"].get(lang)) for lang in langs},
        "throughput": {
            "p50_s": _delta(a["throughput"]["p50_s"], b["throughput"]["p50_s"]),
            "items_per_s": _delta(a["throughput"]["items_per_s"], b["throughput"]["items_per_s"]),
        },
    }


def compare(
    model_a: str | ModelSpec | Backend,
    model_b: str | ModelSpec | Backend,
    task: Task,
    examples: Sequence[Example],
    *,
    backend_a: str | None = None,
    backend_b: str | None = None,
    constrained: bool = False,
    max_new_tokens: int = DEFAULT_MAX_NEW_TOKENS,
    servers: Servers | None = None,
    limit: int | None = None,
    predictions: str | Path | None = None,
    **options: Any,
) -> dict[str, Any]:
    """Evaluate two models on the same examples: model A's report with ``comparison`` (per-language
    deltas, b - a) and ``compared`` (B's report) added. Used for base vs fine-tuned and export parity.
    With ``predictions``, both models' answers are streamed to that one file and resumed as in :func:`evaluate`."""
    examples = _selected(examples, limit)
    model_a, model_b = (m if isinstance(m, Backend) else _resolved(m) for m in (model_a, model_b))
    ids = [model_identity(model_a, backend_a, servers), model_identity(model_b, backend_b, servers)]
    settings = eval_settings(task, examples, ids, constrained=constrained, max_new_tokens=max_new_tokens)
    log = None if predictions is None else PredictionLog(predictions, settings)
    shared = dict(constrained=constrained, max_new_tokens=max_new_tokens, servers=servers, **options)
    a = _evaluate(model_a, task, examples, ids[0], log, backend=backend_a, **shared)
    b = _evaluate(model_b, task, examples, ids[1], log, backend=backend_b, **shared)
    a["comparison"] = compare_reports(a, b)
    a["compared"] = b
    a["settings"] = settings
    return a
