"""Score the model in training on the validation split by generation, as ``lingoforge eval`` scores a model.

At each evaluation the Trainer computes the exact validation loss per language (``lingoforge.sft_trainer``); this
module adds what a user measures: the model in training answers every validation example greedily, constrained to
the task's schema cut after its last labelled field (``evaluate.labels_first``: the labels are what is scored, and
the free text after them would cost most of the tokens), batched with left padding, through the HF backend wrapped
around the model (``HFBackend.around``: the prompts, stop tokens and grammar of ``lingoforge eval``). Each answer is
parsed and scored by ``evaluate.score_answer`` and each slice summarized by ``metrics.summarize``, so the primary
metric is the task's as ``lingoforge eval`` reports it, overall and per language, beside macro-F1 (mean over the
labelled fields, invalid answers as misses). ``lingoforge.selection`` ranks checkpoints and stops training by them.

A primary metric that scores fields the labels-first answer leaves out (contract_extraction's ``overall`` also
scores clauses and obligations) would read those fields as wrong in every answer; then the metric is
``label_accuracy``, the mean accuracy of the labelled fields, and the run records why.

Cost, measured on the 2-core development machine: see ``GeneratedValidation``.
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import Any

from .backends import DEFAULT_MAX_NEW_TOKENS
from .backends.hf import HFBackend
from .config import TrainConfig
from .evaluate import labels_first, score_answer
from .metrics import summarize
from .prompts import example_prompt
from .selection import Selection
from .task import Example, Task

LABEL_ACCURACY = "label_accuracy"  # the fallback metric: mean accuracy of the labelled fields


def scored_metric(task: Task, examples: Sequence[Example]) -> tuple[str, str | None]:
    """The metric generated validation reports, and why it is not the task's primary metric (``None`` when it is).

    The primary metric stays when a labels-first answer can reach it: the gold output cut to the labels-first
    schema scores on it as the whole gold output does, for every validation example."""
    primary = task.primary_metric
    kept = set(labels_first(task).output_schema.get("properties") or {})
    left_out = [f for f in task.output_schema.get("properties") or {} if f not in kept]
    cut_short = any(task.score({k: v for k, v in ex.output.items() if k in kept}, ex.output).get(primary)
                    != task.score(ex.output, ex.output).get(primary) for ex in examples)
    if not left_out or not cut_short:
        return primary, None
    return LABEL_ACCURACY, (f"the mean accuracy of the labelled fields ({', '.join(task.fields)}) on greedy answers "
                            f"constrained to the schema up to its last labelled field: the primary metric {primary} "
                            f"also scores what those answers leave out ({', '.join(left_out)})")


def selection_for(cfg: TrainConfig, task: Task, examples: Sequence[Example]) -> Selection:
    """How a run of ``task`` with these validation ``examples`` picks its adapter and stops (``cfg.select``,
    ``cfg.patience``): by generated answers when there are examples and labelled fields, else by the loss, and
    without examples the last checkpoint."""
    if not examples:
        return Selection("last", "no validation examples: the adapter is the last checkpoint")
    if cfg.select == "loss":
        return Selection("loss", "--select loss: the checkpoint with the lowest validation loss", cfg.patience)
    if not task.fields:
        return Selection("loss", "the task has no labelled fields to score answers by: the lowest validation loss",
                         cfg.patience)
    metric, fallback = scored_metric(task, examples)
    why = fallback or (f"the task's primary metric {metric} on greedy answers constrained to the schema up to its "
                       "last labelled field, as `lingoforge eval` scores it; macro-F1 breaks ties; the loss can fall "
                       "while the model answers the commonest label")
    return Selection("metric", why, cfg.patience, metric)


class GeneratedValidation:
    """The validation examples, asked of a model and scored: ``validation(model)`` returns the figures to log,
    ``{metric, metric_LANG..., macro_f1}`` (``metric`` as ``selection_for`` chose it).

    Cheap by construction: only the labelled fields are generated (about 25 tokens for a support ticket, the grammar
    ends the answer), rows are batched by prompt length, and the grammar is compiled once for the run. Measured on
    the 2-core development machine with another job running (load 1.5-2), SmolLM2-135M with a LoRA adapter in
    training: 12 support tickets in 12 s, 40 in 35 s, about 60% of it the prompts' prefill (4.5 s per batch of 8
    prompts of ~300 tokens, then ~0.1 s per generated token); a run records its own in ``train.selection.generate_s``.
    """

    def __init__(
        self, task: Task, examples: Sequence[Example], tokenizer: Any, metric: str, batch_size: int = 8,
        max_new_tokens: int = DEFAULT_MAX_NEW_TOKENS,
    ) -> None:
        # wrong-language checks of free text are the report's business, not the ranking's: no text fields here
        self.task = replace(labels_first(task), text_fields=())
        self.examples = list(examples)
        self.conversations = [example_prompt(task, ex) for ex in self.examples]
        self.tokenizer = tokenizer
        self.metric = metric
        self.batch_size = batch_size
        self.max_new_tokens = max_new_tokens
        self.seconds: list[float] = []  # each call's generation time, for run.json
        self._backend: HFBackend | None = None

    def answers(self, model: Any) -> list[dict[str, Any]]:
        """The prediction records (``evaluate.score_answer``) of ``model``'s answers, in the examples' order. The
        model answers in eval mode (no dropout) and is put back in the mode it was in."""
        if self._backend is None or self._backend.model_obj is not model:  # a new model after an out-of-memory retry
            self._backend = HFBackend.around(model, self.tokenizer)
        records: list[dict[str, Any]] = [{} for _ in self.examples]
        training = model.training
        model.eval()
        started = time.perf_counter()
        try:
            for at, gen in self._backend.stream(self.conversations, self.task.schema, self.max_new_tokens,
                                                self.batch_size):
                records[at] = score_answer(self.task, at, self.examples[at], gen)
        finally:
            model.train(training)
        self.seconds.append(time.perf_counter() - started)
        return records

    def __call__(self, model: Any) -> dict[str, float]:
        records = self.answers(model)
        by_language: dict[str, list[dict[str, Any]]] = defaultdict(list)
        for record in records:
            by_language[record["language"]].append(record)
        overall = summarize(self.task, records)
        scores = {self.metric: self._metric(overall)}
        scores |= {f"{self.metric}_{lang}": self._metric(summarize(self.task, rows))
                   for lang, rows in sorted(by_language.items())}
        scores["macro_f1"] = sum(f["macro_f1"] for f in overall["fields"].values()) / len(overall["fields"])
        return scores

    def _metric(self, summary: Mapping[str, Any]) -> float:
        """The slice's primary metric as ``lingoforge eval`` reports it, or the fallback's mean field accuracy."""
        if self.metric == self.task.primary_metric:
            return float(summary["primary"])
        return sum(f["accuracy"] for f in summary["fields"].values()) / len(summary["fields"])
