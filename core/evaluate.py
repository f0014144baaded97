"""Per-language evaluation: generate → parse → validate → score → set beside the references → report.

The product promise is per-language accuracy you can trust on the model you deploy, so every number is
broken down by language, carries its 95% interval, and stands beside what a user would use instead; the same
code scores the HF model, the GGUF file and the Ollama model. This module runs the model over the items and
assembles the report; the figures come from ``metrics``, the references from ``references``, the verdict from
``verdict``, the advice from ``advice`` and the streamed answers from ``predlog``.

``evaluate(...)`` returns the report as a dict; ``report.json`` holds it without ``predictions`` (those go
to ``predictions.jsonl``) and ``settings`` (those go to ``predictions.settings.json``). Its keys are stable
(``format`` changes when they do):

- ``format``: ``"lingoforge.eval/2"``.
- ``model``: ``spec``, ``backend``, ``model`` (what the backend loaded), ``constrained``, ``fine_tuned`` (a run
  folder, or training counts given); for a served model (ollama, openai) ``hosts`` and ``servers`` (each one's
  ``host``, ``parallel``, ``answered``, ``busy_s`` and ``failed``: why it left the run, or ``null``).
- ``task``: ``name``, ``version``, ``primary_metric``, ``fields`` (label fields), ``text_fields``.
- ``data``: ``n`` items evaluated, ``languages`` (sorted), ``source`` (file path or ``null``), ``resumed`` (items
  whose answers came from an interrupted run's ``predictions.jsonl`` instead of the model).
- ``overall`` and ``languages[LANG]``: one *slice* each, with
  ``n``; ``primary`` (mean of the task's primary metric) and ``primary_ci`` (its 95% interval); ``metrics`` (mean of
  every ``task.score`` key) and ``metrics_ci``; ``schema_valid_rate`` (answers that parse and satisfy the schema)
  and ``schema_valid_ci``; ``parse_failure_rate`` (no JSON object recovered); ``lenient_parse_rate`` (JSON
  recovered only after stripping chatter/fences);
  ``fields[FIELD]``: ``accuracy``, ``accuracy_ci``, ``macro_f1``, ``confusion`` = {``labels`` (rows, gold),
  ``predicted`` (columns; ``(invalid)`` last when an answer was unusable), ``matrix``};
  ``wrong_language_rate[TEXT_FIELD]``: {``rate`` (``null`` when nothing checkable), ``checked``};
  ``latency``: {``p50_s``, ``p95_s``}. Intervals are Wilson's for rates, a seeded bootstrap's for graded means.
- ``verdict``: the model against its references (``lingoforge.verdict.assess``): ``references`` (name → title,
  settings), ``training`` (the split the references learned from), ``fields[FIELD]`` and ``text_fields[FIELD]``
  = {``overall``, ``languages[LANG]``}, each slice with ``n``, ``model`` {value, ci, n}, ``references[NAME]``
  {value, ci, n}, ``versus[NAME]`` {delta, ci, n} (paired bootstrap, model − reference), ``outcome`` (``beats``,
  ``no_better``, ``worse``, or ``null`` without references), ``against``, ``separable``, ``items_for_margin``;
  ``lines`` (one verdict per field) and ``warnings`` (what the test split is too small to tell).
- ``answers[FIELD][all|LANG]``: the model's answers and the gold labels counted, and ``collapsed`` (or ``null``);
  ``collapsed``: every collapse as {``field``, ``language``, ``label``, ``count``, ``n``, ``gold_share``,
  ``gold_of_label``}, ``collapse_lines``.
- ``primary_mean``: mean over languages of ``languages[*].primary`` (each language weighs the same).
- ``lagging``: list of {``language``, ``value``, ``mean``, ``gap``, ``threshold``, ``n_test``,
  ``training_examples`` (``null`` = unknown), ``add_examples``, ``advice``, and ``evidence`` when the references
  say more data is not the fix}.
- ``consistency``: ``null`` without parallel groups (``meta.group``), else {``groups``, ``score``,
  ``languages`` {LANG: score}, ``inconsistent_groups`` (up to 20 group ids)}.
- ``throughput``: {``p50_s``, ``p95_s`` (per item), ``items_per_s``, ``total_s``, ``batch_size``}; ``items_per_s``
  and ``total_s`` count only what this invocation generated (``items_per_s`` is ``null`` when it resumed everything).
- ``comparison`` and ``compared``: only with ``--compare``: see :func:`compare_reports`; ``compared`` is
  the second model's full report.
- ``training``: only for a run folder whose run.json records a validation curve: run.json's ``train.curve``,
  ``train.selection`` and ``train.stopped`` (``lingoforge.selection``), which the HTML report draws.

Schema-invalid answers score as misses (``task.score(None, gold)``): an application cannot use them.
"""

from __future__ import annotations

import time
from collections import Counter, defaultdict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from rich.console import Console

from .advice import annotate, history_of, lagging_languages, record_history
from .backends import DEFAULT_MAX_NEW_TOKENS, Backend, Generation, ModelSpec, Servers, get_backend
from .data.io import load_examples
from .errors import DataError
from .metrics import consistency, field_hits, summarize
from .predlog import PredictionLog, eval_settings, model_identity, resolved
from .progress import items_bar
from .prompts import example_prompt
from .references import Reference, build_references, from_predictions
from .report import write_report
from .runfolder import RunFolder
from .schema import parse_output
from .stats import mean_interval, paired_difference
from .task import Example, Task
from .verdict import assess, collapse_lines, distributions

FORMAT = "lingoforge.eval/2"


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
    conversations = [example_prompt(task, ex) for ex in examples]
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
    references: Sequence[Reference] = (),
    training: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The full report dict (without predictions) from scored prediction records; ``seconds`` is the time spent
    generating the ``len(records) - resumed`` answers that did not come from an earlier run; ``history`` sizes
    the advice (see :func:`lingoforge.advice.lagging_languages`); ``references`` answer the same items, in order."""
    by_lang: dict[str, list[Mapping[str, Any]]] = defaultdict(list)
    for r in records:
        by_lang[r["language"]].append(r)
    languages = {lang: summarize(task, rs) for lang, rs in sorted(by_lang.items())}
    primary = {lang: s["primary"] for lang, s in languages.items()}
    mean, lagging = lagging_languages(
        primary, training_counts, {lang: s["n"] for lang, s in languages.items()}, threshold, history=history,
        intervals={lang: s["primary_ci"] for lang, s in languages.items()},
    )
    verdict = assess(task, records, references, training)
    answers = distributions(task, records)
    annotate(task, lagging, languages, records, verdict, answers)
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
        "verdict": verdict,
        "overall": overall,
        "languages": languages,
        "answers": answers,
        "collapsed": [{"field": name, "language": key, **s["collapsed"]}
                      for name, slices in answers.items() for key, s in slices.items() if s["collapsed"]],
        "collapse_lines": collapse_lines(answers),
        "primary_mean": mean,
        "lagging": lagging,
        "consistency": consistency(task, records),
        "throughput": {
            **overall["latency"],
            "items_per_s": (len(records) - resumed) / seconds if seconds else None,
            "total_s": seconds,
            "batch_size": batch_size,
        },
    }


# --------------------------------------------------------------------------- the training split the references learn


def training_split(
    spec: ModelSpec | None, train_data: str | Path | None, task: Task
) -> tuple[list[Example], str] | None:
    """The training examples the references learn from, and where they came from: ``train_data`` when given, else
    a run folder's ``data/train.jsonl``; ``None`` when neither is known."""
    path = Path(train_data) if train_data is not None else (
        spec.run.data / "train.jsonl" if spec is not None and spec.run is not None else None)
    if path is None or not path.is_file():
        if train_data is not None:
            raise DataError(f"--train-data {train_data} does not exist")
        return None
    return [item.example for item in load_examples(path, task, gold=True)], str(path)


def _references(task: Task, examples: Sequence[Example], train: tuple[list[Example], str] | None,
                base_records: Sequence[Mapping[str, Any]] | None) -> tuple[list[Reference], dict[str, Any] | None]:
    """The references that answer ``examples``: those the training split gives, and the base model's answers."""
    refs = build_references(task, train[0], examples) if train else []
    if base_records is not None:
        if [r["input"] for r in base_records] != [ex.input for ex in examples]:
            raise DataError("the base model's reference answers are for other test items than the model's; "
                            "evaluate both on the same data and --limit")
        refs.append(from_predictions("base", task, base_records, {
            "decoding": "greedy, schema enforced", "cut_answers": "labels completed before max_new_tokens count"}))
    training = None if train is None else {"n": len(train[0]), "source": train[1],
                                          "languages": dict(Counter(ex.language for ex in train[0]))}
    return refs, training


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
    train: tuple[list[Example], str] | None = None,
    base_records: Sequence[Mapping[str, Any]] | None = None,
    source: str | None = None,
    console: Console | None = None,
) -> dict[str, Any]:
    """One model's report on already selected ``examples``, generating only what ``log`` lacks."""
    if isinstance(model, Backend):
        opened, spec_text, run = model, model.model, None
    else:
        opened = get_backend(model, backend, servers=servers)
        spec_text, run = model.spec, model.run
    counts = training_counts
    if counts is None and run is not None and train is not None:
        counts = dict(Counter(ex.language for ex in train[0]))
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
    references, training = _references(task, examples, train, base_records)
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
        references=references,
        training=training,
    )
    # each run's curve is of its own test split: points scored on other data would not belong on it
    if run is not None and counts and (source is None or Path(source).resolve() == (run.data / "test.jsonl").resolve()):
        record_history(run, counts, report)
    trained = run.training() if run is not None else None
    if trained is not None and trained.curve:  # how validation moved while it trained, for the report's chart
        report["training"] = {"curve": trained.curve, "selection": trained.selection, "stopped": trained.stopped}
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
    train_data: str | Path | None = None,
    base_reference: Mapping[str, Any] | None = None,
    source: str | None = None,
    console: Console | None = None,
    predictions: str | Path | None = None,
) -> dict[str, Any]:
    """Evaluate ``model`` (a MODEL spec, resolved or not, or an open Backend) on ``examples``; returns the report
    with the per-item ``predictions`` and the ``settings`` they depend on under those keys. With ``predictions`` (a
    JSONL path), answers are streamed there and a rerun with the same settings generates only the items it lacks.

    The references (commonest label, classifier, nearest training answer) learn from ``train_data``, else from a
    run folder's training split; ``base_reference`` is the base model's report on the same items with the schema
    enforced (:func:`base_reference`). Training counts per language come from the training split unless given."""
    examples = _selected(examples, limit)
    model = model if isinstance(model, Backend) else resolved(model)
    identity = model_identity(model, backend, servers)
    settings = eval_settings(task, examples, [identity], constrained=constrained, max_new_tokens=max_new_tokens)
    train = training_split(None if isinstance(model, Backend) else model, train_data, task)
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
        train=train,
        base_records=None if base_reference is None else base_reference["predictions"],
        source=source,
        console=console,
    )
    report["settings"] = settings
    return report


def labels_first(task: Task) -> Task:
    """``task`` with its output schema cut after the last labelled field (in the schema's order): what the base
    model must write for the labels to be read. Decoding is greedy and the grammar fixes the key order, so the labels
    are those the whole schema would give, without the free text after them that a base model fills up to
    ``max_new_tokens`` (most of the reference's time on a CPU). Prompts are the task's own."""
    schema = task.schema
    keys = list(schema.get("properties") or {})
    labelled = [k for k in keys if any(f == k or f.startswith(k + ".") for f in task.fields)]
    if not labelled:
        return task
    kept = keys[: keys.index(labelled[-1]) + 1]
    schema["properties"] = {k: schema["properties"][k] for k in kept}
    schema["required"] = [k for k in schema.get("required", []) if k in kept]
    return replace(task, output_schema=schema, text_fields=tuple(f for f in task.text_fields if f in kept))


def base_reference(
    run: RunFolder,
    task: Task,
    examples: Sequence[Example],
    out: str | Path,
    *,
    limit: int | None = None,
    batch_size: int = 8,
    max_new_tokens: int = DEFAULT_MAX_NEW_TOKENS,
    console: Console | None = None,
) -> dict[str, Any]:
    """The base model a run was trained from, asked ``examples`` zero-shot with the schema enforced while decoding
    (what Ollama's ``format`` gives a user of the base model; its labelled fields, see :func:`labels_first`), its
    report written to ``out`` and its answers kept there, so a second evaluation of the run reuses them."""
    report = evaluate(run.base_location(), labels_first(task), examples, backend="hf", constrained=True, limit=limit,
                      batch_size=batch_size, max_new_tokens=max_new_tokens, console=console,
                      predictions=Path(out) / "predictions.jsonl")
    report["model"]["schema"] = "the task's schema up to its last labelled field"
    write_report(report, out)
    return report


def _paired(a: Sequence[float] | None, b: Sequence[float] | None, value_a: float | None,
            value_b: float | None) -> dict[str, Any]:
    """{a, b, delta, ci, a_ci, b_ci}: ``delta = b - a`` with its paired-bootstrap interval, and each side's own
    interval, when both answered the same items."""
    out: dict[str, Any] = {"a": value_a, "b": value_b,
                           "delta": None if value_a is None or value_b is None else value_b - value_a, "ci": None}
    if a is not None and b is not None and len(a) == len(b) and a:
        out.update(ci=paired_difference(b, a)["ci"], a_ci=mean_interval(a)["ci"], b_ci=mean_interval(b)["ci"])
    return out


def compare_reports(a: Mapping[str, Any], b: Mapping[str, Any]) -> dict[str, Any]:
    """Side by side, ``delta = b - a`` (positive: the second model is better/faster):
    ``a``/``b`` (model blocks), ``primary_metric``, ``overall`` and ``languages[LANG]`` with ``primary``,
    ``schema_valid_rate`` and ``fields[FIELD]`` accuracy, each {a, b, delta, ci}: ``ci`` is the paired-bootstrap
    interval of the delta when both reports hold their per-item ``predictions`` for the same items;
    ``throughput`` p50 and items/s."""
    metric = a["task"]["primary_metric"]
    same = [r["input"] for r in a.get("predictions", [])] == [r["input"] for r in b.get("predictions", [])]

    def items(report: Mapping[str, Any], lang: str | None) -> list[Mapping[str, Any]] | None:
        if not same or "predictions" not in report:
            return None
        return [r for r in report["predictions"] if lang is None or r["language"] == lang]

    def block(lang: str | None) -> dict[str, Any]:
        sa = (a["overall"] if lang is None else a["languages"].get(lang)) or {}
        sb = (b["overall"] if lang is None else b["languages"].get(lang)) or {}
        ra, rb = items(a, lang), items(b, lang)
        names = list(dict.fromkeys([*sa.get("fields", {}), *sb.get("fields", {})]))

        def per_item(rows: list[Mapping[str, Any]] | None, score: Callable[[Mapping[str, Any]], float]) -> Any:
            return None if rows is None else [score(r) for r in rows]

        return {
            "primary": _paired(per_item(ra, lambda r: r["scores"].get(metric, 0.0)),
                               per_item(rb, lambda r: r["scores"].get(metric, 0.0)),
                               sa.get("primary"), sb.get("primary")),
            "schema_valid_rate": _paired(per_item(ra, lambda r: float(r["valid"])),
                                         per_item(rb, lambda r: float(r["valid"])),
                                         sa.get("schema_valid_rate"), sb.get("schema_valid_rate")),
            "fields": {
                f: _paired(None if ra is None else field_hits(ra, f), None if rb is None else field_hits(rb, f),
                           (sa.get("fields", {}).get(f) or {}).get("accuracy"),
                           (sb.get("fields", {}).get(f) or {}).get("accuracy"))
                for f in names
            },
        }

    langs = sorted(set(a["languages"]) | set(b["languages"]))
    return {
        "a": a["model"],
        "b": b["model"],
        "primary_metric": metric,
        "overall": block(None),
        "languages": {lang: block(lang) for lang in langs},
        "throughput": {
            "p50_s": _paired(None, None, a["throughput"]["p50_s"], b["throughput"]["p50_s"]),
            "items_per_s": _paired(None, None, a["throughput"]["items_per_s"], b["throughput"]["items_per_s"]),
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
    model_a, model_b = (m if isinstance(m, Backend) else resolved(m) for m in (model_a, model_b))
    ids = [model_identity(model_a, backend_a, servers), model_identity(model_b, backend_b, servers)]
    settings = eval_settings(task, examples, ids, constrained=constrained, max_new_tokens=max_new_tokens)
    log = None if predictions is None else PredictionLog(predictions, settings)
    trained = next((m for m in (model_a, model_b) if isinstance(m, ModelSpec) and m.run is not None), None)
    train = training_split(trained, options.pop("train_data", None), task)
    shared = dict(constrained=constrained, max_new_tokens=max_new_tokens, servers=servers, train=train, **options)
    a = _evaluate(model_a, task, examples, ids[0], log, backend=backend_a, **shared)
    b = _evaluate(model_b, task, examples, ids[1], log, backend=backend_b, **shared)
    a["comparison"] = compare_reports(a, b)
    a["compared"] = b
    a["settings"] = settings
    return a
