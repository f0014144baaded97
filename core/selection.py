"""Which validated checkpoint becomes the adapter, and when training stops: the selection key, early stopping's
count, and what run.json, ``plan`` and the summaries say about both.

Why not the loss. On imbalanced labels the validation loss keeps falling while the model learns to answer the
commonest label: the answer's tokens get likelier on average, the rare labels get no better. So, when the task has
labelled fields and there is validation data, each evaluation also asks the model in training for its answers
(``lingoforge.validation``) and scores them as ``lingoforge eval`` would, and the checkpoint kept is the one whose
answers scored best. The key is ``primary + macro_f1 * TIE_BREAK - loss * LOSS_TIE_BREAK`` (greater is better):
the task's primary metric decides, macro-F1 (mean over labelled fields, invalid answers as misses) breaks its ties,
and the validation loss breaks theirs. Primary and macro-F1 lie in [0, 1], so macro-F1 moves the key by at most
1e-3, while one validation item answered right instead of wrong moves a hit-or-miss primary metric (an accuracy) by
1/n on n items: more than 1e-3 for any validation split under 1,000 items. The tie-breaker therefore never outvotes
one item; among checkpoints with the same primary score it keeps the one whose answers spread over the labels rather
than piling onto the commonest. The loss (a few nats at most, so under 1e-8 of the key) only decides between
checkpoints whose answers score the same on both. It matters on small validation splits: the README demo validates
on 6 tickets, which a model answers all right after a dozen steps; without it the first of those equal checkpoints
was kept and training stopped a few evaluations later, an adapter from a fifth of the schedule.

Stopping. ``epochs`` is the ceiling; training stops earlier when the selection key has not improved for
``patience`` evaluations. The count is read from the trainer's log history, not kept in a callback: the history is
in every checkpoint, so a resumed run stops at the same evaluation an uninterrupted one would.

The defaults, and why. Validation (and a checkpoint, since the adapter must be a validated checkpoint) comes twice
per epoch: often enough that a plateau is seen within an epoch, rarely enough that generating answers stays a small
share of training (the README demo: 4 validations in 50 steps). ``patience`` 2 then stops after a full epoch without
improvement, so one noisy validation on a small split does not end a run. The ceiling stays at the recipe's 4
epochs rather than being raised for early stopping to cut: transformers' cosine schedule decays the learning rate
over the steps of the ceiling (``peak * (1 + cos(pi * progress)) / 2`` after warmup) whether or not training stops
early, so with a ceiling of 8 a run would still be at half its peak rate after epoch 4, where today's recipe has
annealed to zero, and every run, not only those that stop early, would train a different recipe. With 4, a run that
keeps improving trains exactly the recipe it always did, and stopping only cuts what no longer improves.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

TIE_BREAK = 1e-3  # macro-F1's weight in the selection key: it breaks ties, never outvotes one item (see above)
LOSS_TIE_BREAK = 1e-9  # the validation loss's weight: it breaks the ties macro-F1 leaves (see above)
SELECT = "select"
SELECT_KEY = f"eval_{SELECT}"  # the logged figure metric selection compares
EVALUATIONS_PER_EPOCH = 2  # the default cadence: validation (and a checkpoint) twice per epoch
SAVE_STEPS = 50  # checkpoints when nothing else sets them: without validation (for resuming), and in the Trainer's
# arguments until LingoTrainer sets the per-epoch cadence


@dataclass(frozen=True)
class Selection:
    """How a run picks its adapter and stops, decided before training (``lingoforge.validation.selection_for``).

    ``by``: ``metric`` (generated answers scored, see the module docstring), ``loss`` (the lowest validation loss) or
    ``last`` (no validation: the last checkpoint). ``metric`` is the scored metric's name (the task's primary metric,
    or ``label_accuracy`` when that needs fields the answers leave out); ``why`` says why this way, for run.json."""

    by: str
    why: str
    patience: int = 0
    metric: str | None = None

    @property
    def validates(self) -> bool:
        return self.by != "last"

    @property
    def key(self) -> str | None:
        """The logged figure the Trainer's ``metric_for_best_model`` compares (``None`` without validation)."""
        return {"metric": SELECT_KEY, "loss": "eval_loss"}.get(self.by)

    @property
    def greater(self) -> bool:
        return self.by == "metric"

    @property
    def watched(self) -> str:
        """What the summaries call the figure watched: ``validation category_accuracy``, ``validation loss``."""
        return f"validation {self.metric}" if self.by == "metric" else "validation loss"


def select_value(primary: float, macro_f1: float, loss: float) -> float:
    """The selection key of one evaluation: the primary metric, macro-F1 breaking its ties, the validation loss
    breaking theirs (module docstring)."""
    return primary + macro_f1 * TIE_BREAK - loss * LOSS_TIE_BREAK


def evaluations_since_best(values: Sequence[float], greater: bool) -> int:
    """Evaluations after the best of ``values`` (in order; the first of equal bests counts, as the Trainer keeps the
    first checkpoint that reached a value): 0 when the last one is the best."""
    if not values:
        return 0
    best = max(values) if greater else min(values)
    return len(values) - 1 - list(values).index(best)


def evaluations(history: Sequence[Mapping[str, Any]], key: str | None) -> list[Mapping[str, Any]]:
    """The log history's evaluation entries that carry ``key``, in order."""
    return [h for h in history if key is not None and key in h]


def keyed(history: Sequence[Mapping[str, Any]], selection: Selection) -> list[float]:
    """The selection key of every evaluation in the log history, in order."""
    return [h[selection.key] for h in evaluations(history, selection.key) if selection.key is not None]


def watched_values(history: Sequence[Mapping[str, Any]], selection: Selection) -> list[float]:
    """What patience watches, per evaluation in order: the primary metric with macro-F1 breaking ties (metric
    selection), else the selection key. Not the loss tie-break: a metric that stays flat while the loss falls has
    stopped improving, and that is when training stops."""
    if selection.by != "metric":
        return keyed(history, selection)
    return [h[f"eval_{selection.metric}"] + h.get("eval_macro_f1", 0.0) * TIE_BREAK
            for h in evaluations(history, selection.key)]


def best_evaluation(history: Sequence[Mapping[str, Any]], selection: Selection) -> Mapping[str, Any] | None:
    """The evaluation entry the selection key ranks first (``None`` without evaluations)."""
    found, values = evaluations(history, selection.key), keyed(history, selection)
    return found[len(values) - 1 - evaluations_since_best(values, selection.greater)] if found else None


def _shown(selection: Selection, value: float) -> str:
    return f"{value:.2f}" if selection.by == "metric" else f"{value:.4f}"


def _watched_value(selection: Selection, entry: Mapping[str, Any]) -> float:
    """The figure people read for an evaluation: the metric itself, not the key with its tie-breaker."""
    return entry[f"eval_{selection.metric}"] if selection.by == "metric" else entry["eval_loss"]


def selection_record(
    history: Sequence[Mapping[str, Any]], selection: Selection, adapter_step: int | None,
    generate_seconds: Sequence[float] = (),
) -> dict[str, Any]:
    """run.json's ``train.selection``: what ranked the checkpoints (``by``, ``key``, ``metric``), the step whose
    checkpoint is the adapter (``best_step``: the Trainer's best checkpoint, ``adapter_step``) with its ``value`` and
    ``macro_f1``, ``why``, the number of ``evaluations``, the mean seconds one generated validation took
    (``generate_s``), and ``text``, the line the summaries print."""
    found = evaluations(history, selection.key)
    at = {h["step"]: h for h in found}
    kept = at.get(adapter_step) if adapter_step is not None else None
    if kept is None and selection.validates:
        kept = best_evaluation(history, selection)
    record: dict[str, Any] = {
        "by": selection.by, "key": selection.key, "why": selection.why, "evaluations": len(found),
        "metric": f"eval_{selection.metric}" if selection.by == "metric" else selection.key,
        "best_step": kept["step"] if kept else adapter_step,
        "value": _watched_value(selection, kept) if kept else None,
        "macro_f1": kept.get("eval_macro_f1") if kept else None,
        "generate_s": round(sum(generate_seconds) / len(generate_seconds), 2) if generate_seconds else None,
    }
    if kept is None:
        record["text"] = f"adapter: the last checkpoint (step {adapter_step}); {selection.why}"
    else:
        tie = f", macro-F1 {kept['eval_macro_f1']:.2f}" if selection.by == "metric" else ""
        record["text"] = (f"adapter: the checkpoint of step {kept['step']}, {selection.watched} "
                          f"{_shown(selection, record['value'])}{tie}, best of {len(found)} evaluations")
    return record


def stopped_record(
    history: Sequence[Mapping[str, Any]], selection: Selection, *, step: int, total_steps: int, max_steps: int,
    epochs: float,
) -> dict[str, Any]:
    """run.json's ``train.stopped``: why training ended (``reason``: ``early`` when the watched figure
    (``watched_values``) had not improved for ``patience`` evaluations before the last step, ``max_steps`` when
    ``--max-steps`` ended it, else ``ceiling``: every epoch trained), ``at_step``, ``best_step`` (the first evaluation
    that reached the watched figure's best; the adapter may be a later one with the same answers and a lower loss,
    ``selection_record``), ``patience`` and one human line, ``text``. ``total_steps`` is the step training would have
    ended at (the epochs' or ``max_steps``)."""
    watched = watched_values(history, selection)
    since = evaluations_since_best(watched, selection.greater)
    best = evaluations(history, selection.key)[len(watched) - 1 - since] if watched else None
    best_value = _shown(selection, _watched_value(selection, best)) if best is not None else ""
    if best is not None and selection.patience > 0 and since >= selection.patience and step < total_steps:
        reason = "early"
        text = (f"stopped at step {step} of {total_steps}: {selection.watched} has not improved for {since} "
                f"evaluations since step {best['step']} (best {best_value})")
    else:
        reason = "max_steps" if max_steps > 0 else "ceiling"
        watched = (f"{selection.watched} best at step {best['step']} ({best_value})" if best is not None
                   else "no validation, the adapter is the last checkpoint")
        text = (f"stopped at step {step}, the --max-steps ceiling: {watched}" if reason == "max_steps"
                else f"trained to the ceiling, step {step} of {total_steps} ({epochs:g} epochs): {watched}")
    return {"reason": reason, "at_step": step, "best_step": best["step"] if best else None,
            "patience": selection.patience, "text": text}


def curve(history: Sequence[Mapping[str, Any]], selection: Selection) -> dict[str, Any] | None:
    """run.json's ``train.curve``: per evaluation (``steps``), the validation ``loss`` and, with metric selection,
    the ``primary`` metric, each ``{"all": [...], LANG: [...]}``, and ``macro_f1``; what the eval report plots.
    ``None`` without evaluations."""
    found = [h for h in history if "eval_loss" in h]
    if not found:
        return None
    langs = sorted({k.removeprefix("eval_loss_") for h in found for k in h if k.startswith("eval_loss_")})

    def columns(prefix: str) -> dict[str, list[float | None]]:
        return {"all": [h.get(prefix) for h in found], **{lang: [h.get(f"{prefix}_{lang}") for h in found]
                                                           for lang in langs}}

    out: dict[str, Any] = {"metric": selection.metric if selection.by == "metric" else None,
                           "steps": [h["step"] for h in found], "loss": columns("eval_loss")}
    if selection.by == "metric":
        out["primary"] = columns(f"eval_{selection.metric}")
        out["macro_f1"] = [h.get("eval_macro_f1") for h in found]
    return out


def stop_plan(
    *, epochs: float, max_steps: int, patience: int, select: str, metric: str | None, steps_per_epoch: int | None,
    eval_steps: int | None = None,
) -> str:
    """How a run with validation will stop, said before training (``lingoforge plan``, ``lingoforge run``'s plan
    stage): the figure watched, the cadence, the patience and the ceiling in epochs and, when the examples are known
    (``steps_per_epoch``), in steps."""
    watched = "validation loss" if select == "loss" else (
        f"validation {metric}" if metric else "the task's primary metric on validation answers (the loss for a task "
        "without labelled fields)")
    if eval_steps:
        cadence = f"every {eval_steps} steps"
    elif steps_per_epoch:
        cadence = f"twice per epoch, every {math.ceil(steps_per_epoch / EVALUATIONS_PER_EPOCH)} steps"
    else:
        cadence = "twice per epoch"
    if max_steps > 0:
        ceiling = f"at most {max_steps} steps (--max-steps)"
    else:
        total = f" = {math.ceil(epochs * steps_per_epoch)} steps" if steps_per_epoch else ""
        ceiling = f"at most {epochs:g} epochs{total}"
    if patience <= 0:
        return f"validates {cadence}; no early stopping (patience 0): trains {ceiling.removeprefix('at most ')}"
    return f"validates {cadence}; stops when {watched} has not improved for {patience} evaluations; {ceiling}"
