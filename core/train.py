"""The QLoRA recipe, top to bottom: one LoRA adapter per task, trained on mixed-language data.

    lingoforge train support_tickets --data runs/demo/data --base qwen2.5-1.5b-instruct -o runs/demo

Read ``train`` below from the top: every step is one numbered comment, in the order it runs (torchtune style: the
recipe is the code). The settings live in ``lingoforge.config``, tokenization in ``lingoforge.encode``, and the
machinery the steps call (checkpoints, memory plan, out-of-memory retry) in ``lingoforge.trainer``, and trl's
trainer as we subclass it with the progress bar in ``lingoforge.sft_trainer``.

Defaults: ``TrainConfig`` holds the multilingual recipe we follow (LoRA on all linear layers, cosine schedule, a
small effective batch, the max length from a token report); a YAML file or a flag overrides any value, and run.json
records them all.

Precision. On CUDA the base model is loaded in 4-bit NF4 with double quantization and bf16 compute: this is what
makes a 7B model fit in about 12 GB. Gradient checkpointing stays on only where the GPU cannot hold the plan without
it (it recomputes every layer: 0.81 against 0.46 s per 7B ticket step on an H100). On CPU the default is a plain
fp32 LoRA (no 4-bit, no gradient checkpointing): bitsandbytes does run NF4 on CPU, and ``--4bit`` keeps that
path available (the tests train with it), but it dequantizes every weight for every matmul, forward and
backward, while memory is rarely what limits the small models one trains on a CPU. ``bench/bench_train.py``
times both (``cpu_precision`` in ``bench/results/train_cpu.json``): on the 2-core development machine NF4 took
19.6 s per SmolLM2-135M step against 12.1 s in fp32.

Throughput. Sequences are never padded, and the prompt prefix a micro-batch shares (chat template, system
prompt, the task's instruction: about 210 of a support ticket's ~330 tokens) is computed once: the collator
writes it once, then each example's own tokens, with a 4-D mask that lets each example see the prefix and
itself only (``lingoforge.shared_prefix``; same logits, loss and gradients as each example alone, checked by a
test; about 1.8x the tokens/s of plain padding-free rows on CPU). Where the attention kernel cannot take a
4-D mask (flash-attention), rows are packed padding-free with position ids restarting at each example. The
loss uses trl's fused LM head on CUDA, which projects only the trained positions and never materialises the
(tokens x vocab) logits; on CPU, where trl's head scores every position in Python-looped tiles,
``lingoforge.compact_head`` projects the trained positions only, in one matmul. The answer is tokenized
apart from the prompt, so training sees exactly the prompt
tokens inference sends, and the sequence ends at the assistant's end token (``<|im_end|>``) instead of
carrying the template's trailing newline.

Which checkpoint, and how long. The validation loss can keep falling while a model learns to answer the commonest
label, so with labelled fields and validation examples each evaluation also asks the model in training for its
answers to the validation split (greedy, constrained to the labelled fields; ``lingoforge.validation``) and the
adapter is the checkpoint whose answers score best on the task's primary metric, macro-F1 breaking ties
(``--select loss`` keeps the lowest loss). ``epochs`` is then a ceiling: training stops once that figure has not
improved for ``--patience`` evaluations, which come twice per epoch unless ``--eval-steps``/``--save-steps`` say
otherwise; run.json's ``train.selection``, ``train.stopped`` and ``train.curve`` say what was chosen, why training
ended and how validation moved (``lingoforge.selection``).

Multi-GPU (DDP). ``accelerate launch --num_processes N "$(which lingoforge)" train ...`` (or ``torchrun
--nproc_per_node N "$(which lingoforge)" train ...``) runs one process per GPU; each loads its own 4-bit
copy on its own device, the Trainer shards the mixed-language micro-batches across processes (each one still
mixes languages), validation losses are summed over processes, and only process 0 writes the adapter and
run.json. The effective batch becomes micro-batch x accumulation x N, so divide ``--grad-accum`` by N to
keep the recipe's 4. ``tests/test_train_slow.py::test_two_cpu_processes_ddp_gloo`` runs two CPU
processes over gloo with torchrun.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from .checkpoints import CHECKPOINT_PREFIX
from .config import TrainConfig, max_len_source, resolve
from .data.balance import balance_decision, example_labels, primary_field
from .data.io import Located, check_labelled, data_task, examples_sha256
from .data.mapping import ColumnMap
from .data.split import describe_holdout, load_data
from .encode import check_masks, encode, end_token
from .errors import DataError
from .fsutil import write_jsonl
from .models import BaseModel, resolve_base
from .plan import measured_record, planned_record
from .prompts import check_servable, served_instruction
from .runfolder import RunFolder, file_sha256
from .selection import Selection, curve, selection_record, stopped_record
from .task import Example, Task
from .trainer import (
    check_resume,
    checkpointing_by_memory,
    fit,
    memory_plan,
    save_adapter,
    versions,
)
from .validation import GeneratedValidation, selection_for

# ---------------------------------------------------------------------------------------------------------------
# The recipe.
# ---------------------------------------------------------------------------------------------------------------


@dataclass
class TrainResult:
    """What a training run produced; the same figures are in run.json under ``train``. ``best_eval_loss`` and
    ``eval_loss_by_language`` are the validation loss of the checkpoint the adapter is (``selection`` says how it
    was chosen, ``stopped`` why training ended; ``lingoforge.selection``)."""

    adapter_dir: Path
    run_json: Path
    steps: int
    train_loss: float | None
    best_eval_loss: float | None
    eval_loss_by_language: dict[str, float]
    trainable_tokens_by_language: dict[str, int]
    batch_size: int
    grad_accum: int
    seconds: float
    tokens_per_second: float
    seconds_per_step: float
    history: list[dict[str, float]] = field(default_factory=list)
    started_at_step: int = 0  # the step training started from: a resumed checkpoint's, else 0
    selection: dict[str, Any] = field(default_factory=dict)
    stopped: dict[str, Any] = field(default_factory=dict)
    curve: dict[str, Any] | None = None


def train(
    task: Task,
    train_examples: Sequence[Example | Located],
    val_examples: Sequence[Example | Located],
    base: str | BaseModel,
    out_dir: str | os.PathLike[str],
    config: TrainConfig | None = None,
    *,
    resume: bool = False,
    force: bool = False,
    quiet: bool = False,
    sources: Mapping[str, Any] | None = None,
    callbacks: Sequence[Any] = (),
) -> TrainResult:
    """Train one LoRA adapter for ``task`` and write ``adapter/`` and ``run.json`` in the run folder ``out_dir``.

    ``resume`` continues from the last complete checkpoint in ``adapter/checkpoints``; ``force`` trains even
    when the memory plan says the model does not fit; ``callbacks`` are extra ``TrainerCallback``s (the
    pipeline's own progress, benchmarks' timers). Errors are ``LingoforgeError`` naming what to fix.
    """
    import torch

    started = time.perf_counter()
    say = _say(quiet)
    run = RunFolder(Path(out_dir))
    cuda = torch.cuda.is_available()
    main = int(os.environ.get("RANK", "0")) == 0  # under DDP only process 0 writes run.json and the adapter

    # 1. Settings: defaults < config file < flags (merged by the caller), then device and token-report defaults.
    cfg = resolve(config or TrainConfig(), run, cuda)

    # 2. Data: tag plain Examples with their position, check every output against the task schema, then decide label
    # balance (rare labels drawn more often within each language) from the primary field's counts.
    train_items, val_items = _located(train_examples, "train example"), _located(val_examples, "validation example")
    if not train_items:
        raise DataError(f"training needs training examples (got none, and {len(val_items)} validation examples)")
    if not val_items:
        say("no validation examples: training without validation loss; the adapter is the last checkpoint")
    check_labelled(task, train_items + val_items)
    instruction = served_instruction(task, [i.example for i in train_items])
    check_servable(task.system_prompt, instruction)  # the Modelfile must carry them: refuse before training
    data_hashes = {"train": examples_sha256(train_items), "val": examples_sha256(val_items)}
    train_labels = example_labels(task, [i.example for i in train_items])
    balance = balance_decision([i.example.language for i in train_items], train_labels, cfg.balance,
                               primary_field(task))
    say(balance["why"])
    # Which checkpoint becomes the adapter and when training stops (lingoforge.selection).
    selection = selection_for(cfg, task, [i.example for i in val_items])
    if selection.validates:
        say(f"the adapter is the checkpoint with the best {selection.watched}: {selection.why}")

    # 3. Resume or fresh start: a fresh start never overwrites a trained run; a resume must see the same data.
    check_resume(run, resume, data_hashes)

    # 4. Base model and tokenizer: presets and GGUF files resolve to a local folder (GGUF is dequantized once).
    base_model = base if isinstance(base, BaseModel) else resolve_base(base)
    t0 = time.perf_counter()
    location, model_config = base_model.weights(), base_model.load_config()
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(location)

    # 5. Tokenize with the loss mask, then prove the mask: every example trains on its answer and end token.
    stop = end_token(tokenizer)
    train_enc = encode(task, train_items, tokenizer, cfg.max_len)  # type: ignore[arg-type]
    val_enc = encode(task, val_items, tokenizer, cfg.max_len)  # type: ignore[arg-type]
    train_report, val_report = (check_masks(enc, tokenizer.convert_tokens_to_ids(stop)) for enc in (train_enc, val_enc))
    counts = (f"{lang} {row['trainable_tokens']:,} in {row['examples']} examples" for lang, row in train_report.items())
    say("trainable tokens per language (train): " + ", ".join(counts))
    prepare_seconds = time.perf_counter() - t0

    # 6. Memory plan before loading anything big: gradient checkpointing only where memory needs it, then refuse a
    # plan over the device's memory with the numbers unless --force.
    asked = (config or TrainConfig()).gradient_checkpointing
    cfg = checkpointing_by_memory(model_config, cfg, train_enc, cuda, asked, say)
    estimate = memory_plan(model_config, cfg, train_enc, cuda, force, say)

    # 7. Record the run before training, so a killed run still says what it was doing.
    run.root.mkdir(parents=True, exist_ok=True)
    if main:
        run.record_task(task)
        run.update(base=base_model.record(), chat_template=tokenizer.chat_template,
                   train={"status": "running", "config": asdict(cfg), "data_sha256": data_hashes,
                          "data_sources": dict(sources or {}), "end_token": stop, "instruction": instruction,
                          "examples": {"train": len(train_enc), "val": len(val_enc)},
                          "longest_answer_tokens": max(e.trainable for e in train_enc),
                          "tokens_by_language": {"train": train_report, "val": val_report}, "balance": balance,
                          "plan": estimate,
                          "versions": versions(), "device": "cuda" if cuda else "cpu"})

    # 8. Datasets (input_ids + labels), then 9. model, trainer and training under the out-of-memory retry.
    from .sft_trainer import TrainProgress

    # Each evaluation scores the model's generated answers to the validation examples when it selects by them.
    validator = None if selection.by != "metric" else GeneratedValidation(
        task, [i.example for i in val_items], tokenizer, selection.metric or "", cfg.eval_batch_size)
    progress, t1 = TrainProgress(quiet, selection.metric), time.perf_counter()
    trainer, batch_size, grad_accum = fit(location, cfg, run, tokenizer, train_enc, val_enc, cuda=cuda, resume=resume,
                                          main=main, callbacks=[progress, *callbacks], say=say,
                                          train_labels=train_labels if balance["on"] else None,
                                          selection=selection, validator=validator)
    train_seconds = time.perf_counter() - t1

    # 10. Save the selected adapter (the Trainer loaded the best checkpoint at the end) atomically, with the tokenizer
    # and template.
    if main:
        save_adapter(trainer, run.adapter)
    result = _result(trainer, run, train_report, batch_size, grad_accum, progress, time.perf_counter() - started,
                     _judged(trainer, cfg, selection, validator))

    # 11. run.json: outcome, history and timings, the step time planned beside the one measured (the adapter is
    # complete before this says "done").
    if main:
        planned = planned_record(model_config, cfg, train_enc, batch_size, grad_accum, cuda)
        run.update(train=_outcome(result, run, prepare_seconds, train_seconds, planned))
    return result


def _located(examples: Sequence[Example | Located], what: str) -> list[Located]:
    """Plain Examples tagged with their position (``train example 3``), so data errors still name one."""
    return [e if isinstance(e, Located) else Located(e, f"{what} {i + 1}") for i, e in enumerate(examples)]


def _judged(trainer: Any, cfg: TrainConfig, selection: Selection, validator: GeneratedValidation | None
            ) -> dict[str, Any]:
    """run.json's ``selection``, ``stopped`` and ``curve`` (``lingoforge.selection``) of a finished trainer. The
    adapter's step is that of the checkpoint the Trainer loaded as its best; without validation, the last step."""
    state = trainer.state
    best = state.best_model_checkpoint
    adapter_step = int(Path(best).name.removeprefix(CHECKPOINT_PREFIX)) if best else state.global_step
    return {
        "selection": selection_record(state.log_history, selection, adapter_step,
                                      validator.seconds if validator is not None else ()),
        "stopped": stopped_record(state.log_history, selection, step=state.global_step, total_steps=state.max_steps,
                                  max_steps=cfg.max_steps, epochs=cfg.epochs),
        "curve": curve(state.log_history, selection),
    }


def _result(
    trainer: Any, run: RunFolder, train_report: Mapping[str, Mapping[str, int]], batch_size: int, grad_accum: int,
    progress: Any, seconds: float, judged: Mapping[str, Any],
) -> TrainResult:
    """What the finished trainer holds: its log history, the adapter's validation step, the throughput measured."""
    history = [dict(entry) for entry in trainer.state.log_history]
    kept = next((h for h in history if "eval_loss" in h and h["step"] == judged["selection"]["best_step"]), {})
    train_losses = [h["loss"] for h in history if "loss" in h]
    return TrainResult(
        adapter_dir=run.adapter, run_json=run.run_json, steps=trainer.state.global_step,
        train_loss=train_losses[-1] if train_losses else None, best_eval_loss=kept.get("eval_loss"),
        eval_loss_by_language={k.removeprefix("eval_loss_"): v for k, v in kept.items() if k.startswith("eval_loss_")},
        trainable_tokens_by_language={k: v["trainable_tokens"] for k, v in train_report.items()},
        batch_size=batch_size, grad_accum=grad_accum, seconds=seconds, tokens_per_second=progress.tokens_per_second,
        seconds_per_step=progress.seconds_per_step, history=history, started_at_step=progress.start_step,
        selection=dict(judged["selection"]), stopped=dict(judged["stopped"]), curve=judged["curve"],
    )


def _outcome(
    result: TrainResult, run: RunFolder, prepare_seconds: float, train_seconds: float, planned: dict[str, Any] | None
) -> dict[str, Any]:
    """run.json's ``train`` once done: the outcome, the history, the timings, and the step time and tokens/s
    ``planned`` for this run (``lingoforge.plan``) beside those measured, so a plan that drifts from the truth shows.
    ``best_step`` is the adapter's checkpoint, ``selection`` how it was chosen, ``stopped`` why training ended and
    ``curve`` the validation figures per evaluation (``lingoforge.selection``)."""
    return {
        "status": "done", "steps": result.steps, "started_at_step": result.started_at_step,
        "best_step": result.selection.get("best_step"), "best_eval_loss": result.best_eval_loss,
        "eval_loss_by_language": result.eval_loss_by_language, "final_train_loss": result.train_loss,
        "selection": result.selection, "stopped": result.stopped, "curve": result.curve,
        "batch_size": result.batch_size, "grad_accum": result.grad_accum, "history": result.history,
        "adapter": {"dir": str(run.adapter), "sha256": file_sha256(run.adapter / "adapter_model.safetensors")},
        "timings": {"prepare_s": round(prepare_seconds, 2), "train_s": round(train_seconds, 2),
                    "total_s": round(result.seconds, 2), "seconds_per_step": round(result.seconds_per_step, 3),
                    "tokens_per_second": round(result.tokens_per_second, 1)},
        "planned": planned, "measured": measured_record(result.seconds_per_step, result.tokens_per_second),
    }


def _say(quiet: bool) -> Callable[[str], None]:
    def say(message: str) -> None:
        if not quiet:
            print(message, file=sys.stderr, flush=True)

    return say


def train_from_files(
    task: Task,
    data: str | os.PathLike[str],
    base: str,
    out_dir: str | os.PathLike[str],
    config: TrainConfig,
    *,
    resume: bool = False,
    force: bool = False,
    quiet: bool = False,
    tokens: str | os.PathLike[str] | None = None,
    mapping: ColumnMap | None = None,
    fields: Sequence[str] | None = None,
) -> TrainResult:
    """The CLI's entry: read DATA (a split folder or one data file, its columns mapped by ``mapping``), hold out
    validation if needed, train. The task learns ``fields`` of its output, else those every record carries.

    A single file's split is written to the run folder's ``data/`` (train.jsonl, and val.jsonl unless validation
    is off) so evaluation and a resumed run see the same split; an existing split there is left alone. ``tokens``
    is a token report (``lingoforge tokens --json``) whose ``max_seq_length`` is used when the settings give none.
    """
    data_path = Path(data)
    run = RunFolder(Path(out_dir))
    main = int(os.environ.get("RANK", "0")) == 0  # under DDP only process 0 writes
    say = _say(quiet or not main)
    if main:
        run.claim(task.name)  # inputs are validated before anything is written to the run folder
    check_resume(run, resume, None)
    base_model = resolve_base(base)
    base_model.check_reachable()
    task = data_task(data_path / "train.jsonl" if data_path.is_dir() else data_path, task, mapping=mapping,
                     fields=fields)
    train_items, val_items, sources = load_data(data_path, task, config.val_fraction, config.seed, mapping)
    max_len, max_len_from = max_len_source(config, run, Path(tokens) if tokens is not None else None)
    if main:
        run.record_task(task)  # the folder is this task's run from now on, and keeps its definition
    if not data_path.is_dir() and val_items:
        say(describe_holdout(train_items, val_items, config.val_fraction))
    say(f"max length {max_len} from {max_len_from}")
    # absolute: export finds the test split beside these files from any working directory
    files = {name: {"path": str(Path(path).resolve()), "sha256": file_sha256(path),
                    **({"map": str(mapping)} if mapping else {})} for name, path in sources.items()}
    if main and not data_path.is_dir() and not (run.data / "train.jsonl").exists():
        write_jsonl(run.data / "train.jsonl", (i.example.to_record() for i in train_items))
        if val_items:
            write_jsonl(run.data / "val.jsonl", (i.example.to_record() for i in val_items))
    config = replace(config, max_len=max_len)
    return train(task, train_items, val_items, base_model, out_dir, config, resume=resume, force=force, quiet=quiet,
                 sources=files)
