"""trl's SFTTrainer as lingoforge trains with it, and the progress bar of a training run.

``LingoTrainer`` adds what the recipe needs to trl: every micro-batch mixes languages, the validation loss is exact
per language, a failed checkpoint write leaves no partial folder, and the CPU loss head projects trained positions
only. Importing this module imports torch and trl, so ``lingoforge.trainer`` and ``lingoforge.train`` import it only
once the inputs are checked.
"""

from __future__ import annotations

import errno
import math
import shutil
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from rich.console import Console
from rich.progress import TextColumn, TimeRemainingColumn
from transformers import PrinterCallback, TrainerCallback
from trl import SFTTrainer

from .checkpoints import CHECKPOINT_PREFIX, CheckpointWriteError
from .compact_head import add_compact_lm_head, compact_head_applies
from .data.balance import balanced_draws
from .data.interleave import MixedLanguageSampler
from .progress import bar
from .selection import SELECT, Selection, evaluations_since_best, select_value, watched_values
from .validation import GeneratedValidation


class LingoTrainer(SFTTrainer):
    """SFTTrainer + mixed-language sampler + exact per-language validation loss + checkpoint cleanup.

    ``train_labels``, one per training example (``None`` for one without), turn on label balance: rare labels are
    drawn more often within each language (``lingoforge.data.balance``); without them every example is drawn once.
    ``validator`` scores the model's generated answers at each evaluation (``lingoforge.validation``);
    ``evaluations_per_epoch`` sets how often it validates and checkpoints when the settings left that open."""

    def __init__(
        self, *args: Any, train_languages: Sequence[str], val_by_language: Mapping[str, Any],
        train_labels: Sequence[str | None] | None = None,
        validator: GeneratedValidation | None = None, evaluations_per_epoch: int | None = None,
        **kwargs: Any
    ) -> None:
        self.train_languages = list(train_languages)
        self.train_labels = None if train_labels is None else list(train_labels)
        self.val_by_language = dict(val_by_language)
        self.validator = validator
        self.evaluations_per_epoch = evaluations_per_epoch
        super().__init__(*args, **kwargs)
        # with tqdm off (our bar replaces it) transformers prints each step's logs as a Python dict; TrainProgress
        # reports them instead
        self.remove_callback(PrinterCallback)
        base = self.model.get_base_model() if hasattr(self.model, "get_base_model") else self.model
        if self.args.device.type == "cpu" and compact_head_applies(base):
            add_compact_lm_head(base)

    def compute_loss(self, model: Any, inputs: dict[str, Any], *args: Any, **kwargs: Any) -> Any:
        """trl's loss; with shared-prefix rows, ``num_tokens`` counts the examples' tokens (trl would sum
        the 4-D attention mask), so tokens/s means the same data throughput with and without sharing."""
        example_tokens = inputs.pop("example_tokens", None)
        counted = self._total_train_tokens
        loss = super().compute_loss(model, inputs, *args, **kwargs)
        if example_tokens is not None and model.training:
            total = self.accelerator.gather_for_metrics(example_tokens.reshape(1)).sum().item()
            self._total_train_tokens = counted + int(total)
            self._metrics["train"]["num_tokens"] = [self._total_train_tokens]
        return loss

    def _get_train_sampler(self, train_dataset: Any = None) -> Any:
        """Every micro-batch mixes languages (``lingoforge.data.interleave``), with rare labels drawn more often when
        ``train_labels`` are given; the order depends only on (seed, epoch), so a resumed run replays the same
        batches and skips those already trained."""
        draws = None if self.train_labels is None else balanced_draws(self.train_languages, self.train_labels)
        return MixedLanguageSampler(
            self.train_languages, self.args.per_device_train_batch_size, self.args.seed, draws
        )

    def evaluate(
        self, eval_dataset: Any = None, ignore_keys: Any = None, metric_key_prefix: str = "eval"
    ) -> dict[str, float]:
        """Token-weighted loss per language and overall, in one pass over each language's examples; with a
        ``validator``, the scores of the model's generated answers too, and the selection key they make
        (``lingoforge.selection``).

        The Trainer's own eval loss averages batch means, which weights a short-answer language the same
        as a long one; summing token losses gives the exact mean and a per-language figure to compare.
        """
        model = self.model
        model.eval()
        totals = {}
        for lang, dataset in self.val_by_language.items():
            sums = torch.zeros(2, dtype=torch.float64, device=self.args.device)
            for batch in self.get_eval_dataloader(dataset):
                batch = self._prepare_inputs(batch)
                tokens = (batch["labels"][:, 1:] != -100).sum()
                with torch.no_grad(), self.compute_loss_context_manager():
                    loss = self.compute_loss(model, batch)
                sums += torch.stack([loss.detach().double() * tokens, tokens.double()])
            totals[lang] = self.accelerator.reduce(sums, reduction="sum").tolist()
        loss_sum = sum(s for s, _ in totals.values())
        tokens_all = sum(n for _, n in totals.values())
        metrics = {f"{metric_key_prefix}_loss": loss_sum / max(tokens_all, 1)}
        metrics |= {f"{metric_key_prefix}_loss_{lang}": s / max(n, 1) for lang, (s, n) in totals.items()}
        if self.validator is not None:
            scores = self.validator(model)
            metrics |= {f"{metric_key_prefix}_{k}": v for k, v in scores.items()}
            metrics[f"{metric_key_prefix}_{SELECT}"] = select_value(
                scores[self.validator.metric], scores["macro_f1"], metrics[f"{metric_key_prefix}_loss"])
        self.log(metrics)
        self.control = self.callback_handler.on_evaluate(self.args, self.state, self.control, metrics)
        return metrics

    def set_initial_training_values(self, args: Any, dataloader: Any) -> tuple[Any, ...]:
        """transformers' epoch and step counts; with ``evaluations_per_epoch``, validation and checkpoints then come
        that many times per epoch of the dataloader it measured (rounded up to whole steps), both at once: the
        adapter is picked among validated checkpoints, and transformers wants ``save_steps`` a multiple of
        ``eval_steps``. A resumed run measures the same epoch, and its checkpoint's state holds the same cadence."""
        values = super().set_initial_training_values(args, dataloader)
        if self.evaluations_per_epoch:
            steps_per_epoch = values[1]
            args.eval_steps = args.save_steps = math.ceil(steps_per_epoch / self.evaluations_per_epoch)
        return values

    def _save_checkpoint(self, model: Any, trial: Any) -> None:
        """A failed checkpoint write (disk full) removes the partial folder and says what to do."""
        folder = Path(self.args.output_dir) / f"{CHECKPOINT_PREFIX}{self.state.global_step}"
        try:
            super()._save_checkpoint(model, trial)
        except OSError as exc:
            shutil.rmtree(folder, ignore_errors=True)
            free = shutil.disk_usage(folder.parent).free / 2**30 if folder.parent.exists() else float("nan")
            hint = "free some disk space" if exc.errno == errno.ENOSPC else "check the folder's permissions"
            raise CheckpointWriteError(
                f"could not write checkpoint {folder}: {exc.strerror or exc} ({free:.1f} GiB free there); {hint}, "
                "then rerun with --resume to continue from the last complete checkpoint"
            ) from exc


class EarlyStop(TrainerCallback):
    """Stop training once the selection key has not improved for ``selection.patience`` evaluations.

    transformers' ``EarlyStoppingCallback`` keeps its count in the callback, which a resumed run starts again from
    zero (callback states are not restored unless ``restore_callback_states_from_checkpoint``), so a resumed run
    would stop later than an uninterrupted one. This count is read from the log history, which every checkpoint
    carries; ``LingoTrainer.evaluate`` logs an evaluation before it calls ``on_evaluate``. A run killed after it
    decided to stop but before its adapter was written reads the decision back when it resumes (the Trainer checks
    it after a step, so one more step runs; the adapter is the best checkpoint all the same)."""

    def __init__(self, selection: Selection) -> None:
        self.selection = selection

    def on_train_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        self._stop_when_stale(state, control)

    def on_evaluate(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        self._stop_when_stale(state, control)

    def _stop_when_stale(self, state: Any, control: Any) -> None:
        values = watched_values(state.log_history, self.selection)
        if values and evaluations_since_best(values, self.selection.greater) >= self.selection.patience:
            control.should_training_stop = True


class TrainProgress(TrainerCallback):
    """A rich progress bar (loss, tokens/s, ETA) on the main process; records throughput for run.json.

    When stderr is not a terminal (a CI log, nohup) a bar cannot redraw, so each logging step is one plain line
    instead: ``step 4/8  loss 1.2345  1,234 tok/s``, and each validation one line as on a terminal, with the
    generated answers' ``metric`` per language when the run selects by it."""

    def __init__(self, quiet: bool = False, metric: str | None = None) -> None:
        self.quiet = quiet
        self.metric = metric
        self.bar: Any = None
        self.lines = False  # one line per logging step instead of the bar
        self.task: Any = None
        self.start = 0.0
        self.start_step = 0
        self.tokens = 0
        self.tokens_per_second = 0.0
        self.seconds_per_step = 0.0

    def on_train_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        # ``state.global_step`` is the step the Trainer starts from: 0, or a resumed checkpoint's step
        self.start, self.start_step = time.perf_counter(), state.global_step
        if self.quiet or not state.is_world_process_zero:
            return
        console = Console(stderr=True)
        if not console.is_terminal:
            self.lines = True
            return
        self.bar = bar(TextColumn("ETA"), TimeRemainingColumn(), console=console)
        self.bar.start()
        self.task = self.bar.add_task("train", total=state.max_steps, completed=state.global_step)

    def on_log(
        self, args: Any, state: Any, control: Any, logs: dict[str, float] | None = None, **kwargs: Any
    ) -> None:
        logs = logs or {}
        elapsed = time.perf_counter() - self.start
        if "num_tokens" in logs and "loss" in logs:
            self.tokens = int(logs["num_tokens"])
            self.tokens_per_second = self.tokens / elapsed if elapsed > 0 else 0.0
            steps = state.global_step - self.start_step
            self.seconds_per_step = elapsed / steps if steps else 0.0
            if self.bar is not None:
                self.bar.update(
                    self.task,
                    completed=state.global_step,
                    description=f"train  loss {logs['loss']:.4f}  {self.tokens_per_second:,.0f} tok/s",
                )
            elif self.lines:
                self._line(f"step {state.global_step}/{state.max_steps}  loss {logs['loss']:.4f}  "
                           f"{self.tokens_per_second:,.0f} tok/s")
        elif "eval_loss" in logs and (self.bar is not None or self.lines):
            per_lang = "  ".join(
                f"{k.removeprefix('eval_loss_')} {v:.4f}" for k, v in logs.items() if k.startswith("eval_loss_")
            )
            message = f"step {state.global_step}: validation loss {logs['eval_loss']:.4f}  ({per_lang})"
            scored = f"eval_{self.metric}"
            if scored in logs:
                langs = (k.removeprefix("eval_loss_") for k in logs if k.startswith("eval_loss_"))
                per_lang = "  ".join(f"{lang} {logs[f'{scored}_{lang}']:.2f}" for lang in langs
                                     if f"{scored}_{lang}" in logs)
                message += f"; {self.metric} {logs[scored]:.2f}  ({per_lang}), macro-F1 {logs['eval_macro_f1']:.2f}"
            if self.bar is not None:
                self.bar.console.print(message)
            else:
                self._line(message)

    @staticmethod
    def _line(message: str) -> None:
        print(message, file=sys.stderr, flush=True)

    def on_train_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        if self.bar is not None:
            self.bar.update(self.task, completed=state.global_step)
            self.bar.stop()
