"""The machinery the steps of ``lingoforge.train.train`` call, in the order they call it: resume bookkeeping, the
memory plan, datasets, model and trainer under the out-of-memory retry, trl's SFTTrainer with our mixed-language
sampler and per-language validation loss, the progress bar, and the adapter written atomically.

Nothing here imports torch, transformers or trl until it is used; the trainer and the progress bar, which subclass
trl's and transformers' classes, live in ``lingoforge.sft_trainer``.
"""

from __future__ import annotations

import gc
import math
import os
import shutil
import sys
import tempfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import fields, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from . import plan as planner  # called through the module, so a test can replace device_memory_gb
from .checkpoints import complete_checkpoints, remove_partial_checkpoints
from .config import TrainConfig
from .encode import Encoded
from .errors import LingoforgeError
from .progress import quiet_library_bars
from .runfolder import RunFolder
from .selection import EVALUATIONS_PER_EPOCH, SAVE_STEPS, Selection
from .shared_prefix import MASK_IMPLEMENTATIONS, SharedPrefixCollator

if TYPE_CHECKING:
    from .validation import GeneratedValidation

_T = TypeVar("_T")


# ---------------------------------------------------------------------------------------------------------------
# Step 3: resume only from a complete checkpoint of the same data; never overwrite a trained run.
# ---------------------------------------------------------------------------------------------------------------


def check_resume(run: RunFolder, resume: bool, data_sha256: Mapping[str, str] | None) -> None:
    """A fresh start never overwrites a trained run; a resume needs a complete checkpoint and the same data
    (``None``: the data is not read yet, as when the CLI checks its flags before writing anything)."""
    checkpoints = complete_checkpoints(run.checkpoints)
    if resume:
        if not checkpoints:
            raise LingoforgeError(
                f"nothing to resume: no complete checkpoint in {run.checkpoints}; run without --resume"
            )
        recorded = run.training().data_sha256
        if recorded and data_sha256 is not None and recorded != data_sha256:
            raise LingoforgeError(
                f"--resume with different data than {run.run_json} records; use the same --data or start a new "
                "run folder"
            )
    elif checkpoints or (run.adapter / "adapter_config.json").is_file():
        raise LingoforgeError(
            f"{run.root} already holds a trained adapter or checkpoints; pass --resume to continue, "
            "or choose another -o folder"
        )


# ---------------------------------------------------------------------------------------------------------------
# Step 6: the memory plan, before anything big is loaded.
# ---------------------------------------------------------------------------------------------------------------


CHECKPOINTING_HEADROOM = 0.85  # share of the GPU a plan without checkpointing may fill (the plan is an estimate)


def checkpointing_by_memory(
    model_config: Any, cfg: TrainConfig, encoded: Sequence[Encoded], cuda: bool, asked: bool | None,
    say: Callable[[str], None],
) -> TrainConfig:
    """On CUDA, gradient checkpointing left unset (``asked`` is None) goes off when the plan without it fits the GPU.

    Why: checkpointing recomputes every layer's forward in the backward pass (and with a 4-bit base dequantizes every
    weight once more), buying memory a large GPU does not need. Measured on one H100 (issue 15): Qwen2.5-7B-shaped
    QLoRA r32, support tickets at micro-batch 4, 0.81 s per step with it, 0.46 s without, peak 12.8 GB. It stays on
    when the plan without it passes ``CHECKPOINTING_HEADROOM`` of the GPU's memory; on CPU it is off already."""
    if not cuda or asked is not None:
        return cfg
    without = replace(cfg, gradient_checkpointing=False)
    need = _plan(model_config, without, encoded, cuda)["peak_gb"]
    available = planner.device_memory_gb(cuda)
    if available is None or need > CHECKPOINTING_HEADROOM * available:
        return cfg
    say(f"gradient checkpointing off: the plan without it needs {need:.1f} GB of the GPU's {available:.1f} GB "
        "(--gradient-checkpointing or a config file turns it on)")
    return without


def memory_plan(
    model_config: Any, cfg: TrainConfig, encoded: Sequence[Encoded], cuda: bool, force: bool, say: Callable[[str], None]
) -> dict[str, Any]:
    """The memory plan (``lingoforge.plan``) of these examples before anything big is loaded: a plan over the device's
    memory is refused with its numbers, or with ``force`` only warned about."""
    estimate = _plan(model_config, cfg, encoded, cuda)
    available = planner.device_memory_gb(cuda)
    if available is not None and estimate["peak_gb"] > available:
        message = (
            f"the plan needs about {estimate['peak_gb']:.1f} GB but the {'GPU' if cuda else 'machine'} has "
            f"{available:.1f} GB: {estimate['summary']}. Lower --batch-size (accumulation keeps the effective batch), "
            "--max-len or --rank, or pass --force to try anyway"
        )
        if not force:
            raise LingoforgeError(message)
        say("warning: " + message)
    return estimate


def _plan(model_config: Any, cfg: TrainConfig, encoded: Sequence[Encoded], cuda: bool) -> dict[str, Any]:
    """``lingoforge.plan`` of training ``encoded`` with ``cfg`` (its longest micro-batch as the activation peak)."""
    lengths = sorted((len(e.input_ids) for e in encoded), reverse=True)
    return planner.plan(
        model_config, rank=cfg.rank, max_len=cfg.max_len, batch_size=cfg.batch_size,  # type: ignore[arg-type]
        load_in_4bit=cfg.load_in_4bit, gradient_checkpointing=cfg.gradient_checkpointing, examples=len(encoded),
        mean_tokens=sum(lengths) / len(lengths), epochs=cfg.epochs, longest_batch_tokens=sum(lengths[: cfg.batch_size]),
        weight_bytes=2 if cuda else 4, cuda=cuda,
    )


# ---------------------------------------------------------------------------------------------------------------
# Steps 8 and 9: datasets, model, LoRA, trainer arguments, training.
# ---------------------------------------------------------------------------------------------------------------


def fit(
    location: str, cfg: TrainConfig, run: RunFolder, tokenizer: Any, train_enc: Sequence[Encoded],
    val_enc: Sequence[Encoded], *, cuda: bool, resume: bool, main: bool, callbacks: Sequence[Any],
    say: Callable[[str], None], train_labels: Sequence[str | None] | None = None,
    selection: Selection | None = None, validator: GeneratedValidation | None = None,
) -> tuple[Any, int, int]:
    """Steps 8 and 9 of the recipe: the datasets, then model, trainer and training under the out-of-memory retry.

    Returns the trainer, which holds the best adapter at the end, and the micro-batch and accumulation that worked.
    ``resume`` starts from the last complete checkpoint; under DDP only the ``main`` process deletes partial ones
    and records a failure in run.json. ``train_labels`` (one per ``train_enc`` row) turn on label balance
    (``lingoforge.data.balance``). ``selection`` picks the best checkpoint and, with its patience, stops training
    early; ``validator`` scores the model's generated answers at each evaluation (``lingoforge.validation``).
    """
    import torch
    from datasets import Dataset

    from .sft_trainer import EarlyStop, LingoTrainer

    # 8. Datasets: input_ids + labels only; languages travel beside them for the sampler and the validation split.
    def as_dataset(rows: Sequence[Encoded]) -> Any:
        return Dataset.from_dict({"input_ids": [r.input_ids for r in rows], "labels": [r.labels for r in rows]})

    train_ds = as_dataset(train_enc)
    val_by_language = {
        lang: as_dataset([r for r in val_enc if r.language == lang]) for lang in sorted({r.language for r in val_enc})
    }

    # 9. Model, trainer, training, with the out-of-memory retry around them (each retry reloads the model).
    retried = False  # after an out-of-memory retry, continue from the last checkpoint that attempt wrote
    validates = selection is not None and selection.validates and bool(val_enc)
    stopping = [EarlyStop(selection)] if selection is not None and validates and selection.patience > 0 else []
    per_epoch = EVALUATIONS_PER_EPOCH if validates and cfg.eval_steps is None and cfg.save_steps is None else None

    def attempt(batch_size: int, grad_accum: int) -> Any:
        model = load_model(location, cfg, cuda)
        shared = cfg.shared_prefix and model.config._attn_implementation in MASK_IMPLEMENTATIONS
        trainer = LingoTrainer(
            model=model,
            args=sft_config(cfg, run, batch_size, grad_accum, cuda, shared, selection if validates else None),
            data_collator=SharedPrefixCollator() if shared else None,
            train_dataset=train_ds,
            eval_dataset=next(iter(val_by_language.values()), None),  # evaluate() reads val_by_language
            processing_class=tokenizer,
            peft_config=lora_config(cfg),
            callbacks=[*callbacks, *stopping],
            train_languages=[r.language for r in train_enc],
            train_labels=train_labels,
            val_by_language=val_by_language,
            validator=validator if validates else None,
            evaluations_per_epoch=per_epoch,
        )
        done = complete_checkpoints(run.checkpoints)
        if main:
            remove_partial_checkpoints(run.checkpoints, done)
        start = done[-1] if (resume or retried) and done else None
        if start is not None:
            say(f"resuming from {start.name} (its trainer state, optimizer and data position)")
        trainer.train(resume_from_checkpoint=str(start) if start is not None else None)
        return trainer

    def on_retry() -> None:
        nonlocal retried
        retried = True
        gc.collect()
        if cuda:
            torch.cuda.empty_cache()

    try:
        return with_oom_retry(attempt, cfg.batch_size, cfg.grad_accum, say, on_retry)
    except BaseException as exc:
        if main:
            run.update(train={"status": "failed", "error": f"{type(exc).__name__}: {exc}"})
        raise


def load_model(location: str, cfg: TrainConfig, cuda: bool) -> Any:
    """The base model: 4-bit NF4 + double quantization (bf16 compute on CUDA, fp32 on CPU) or plain weights.

    ``prepare_model_for_kbit_training`` is deliberately not called: it upcasts embeddings and LM head to fp32,
    which costs 2 GB more on a 7B model than the 16-bit copies the plan counts; trl enables input gradients
    for checkpointing itself.
    """
    import torch
    from transformers import AutoModelForCausalLM, BitsAndBytesConfig

    quiet_library_bars()
    dtype = torch.bfloat16 if cuda else torch.float32
    kwargs: dict[str, Any] = {"dtype": dtype}
    if cfg.load_in_4bit:
        kwargs["quantization_config"] = BitsAndBytesConfig(
            load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True, bnb_4bit_compute_dtype=dtype
        )
        if cuda:
            from accelerate import PartialState

            kwargs["device_map"] = {"": PartialState().local_process_index}  # one full copy per DDP process
        else:
            kwargs["device_map"] = "cpu"
    return AutoModelForCausalLM.from_pretrained(location, **kwargs)


def lora_config(cfg: TrainConfig) -> Any:
    """LoRA on every linear layer except the LM head (the "all-linear" QLoRA recipe)."""
    from peft import LoraConfig

    return LoraConfig(
        r=cfg.rank,
        lora_alpha=cfg.alpha,
        lora_dropout=cfg.dropout,
        target_modules=cfg.target_modules,
        bias="none",
        task_type="CAUSAL_LM",
    )


def sft_config(
    cfg: TrainConfig,
    run: RunFolder,
    batch_size: int,
    grad_accum: int,
    cuda: bool,
    shared_prefix: bool = False,
    selection: Selection | None = None,
) -> Any:
    """trl/transformers arguments for one attempt; everything else is library defaults, on purpose.

    With ``shared_prefix`` our collator packs the rows, so trl's own padding-free collator is switched off.
    ``selection`` says which logged figure picks the best checkpoint (``lingoforge.selection``); without one that
    validates (no validation examples) nothing is evaluated and the last checkpoint is the adapter. Validation and
    checkpoints left unset are every ``SAVE_STEPS`` here, and twice per epoch once ``LingoTrainer``
    knows the epoch's steps."""
    from trl import SFTConfig

    validate = selection is not None and selection.validates
    # transformers renamed gradient_checkpointing to activation_checkpointing (the old name warns)
    names = {f.name for f in fields(SFTConfig)}
    checkpointing = "activation_checkpointing" if "activation_checkpointing" in names else "gradient_checkpointing"
    return SFTConfig(
        **{checkpointing: bool(cfg.gradient_checkpointing)},
        output_dir=str(run.checkpoints),
        per_device_train_batch_size=batch_size,
        gradient_accumulation_steps=grad_accum,
        per_device_eval_batch_size=cfg.eval_batch_size,
        learning_rate=cfg.lr,
        lr_scheduler_type=cfg.scheduler,
        warmup_steps=cfg.warmup,  # a float below 1 is a ratio in transformers 5
        weight_decay=cfg.weight_decay,
        num_train_epochs=cfg.epochs,
        max_steps=cfg.max_steps,
        seed=cfg.seed,
        data_seed=cfg.seed,
        bf16=cuda,
        use_cpu=not cuda,
        padding_free=cfg.padding_free and not shared_prefix,
        max_length=None,  # lengths were checked in encode(); nothing is truncated
        dataset_kwargs={"skip_prepare_dataset": True},  # input_ids + labels are built above
        logging_steps=cfg.logging_steps,
        eval_strategy="steps" if validate else "no",
        eval_steps=(cfg.eval_steps or SAVE_STEPS) if validate else None,
        save_strategy="steps",
        save_steps=cfg.save_steps or SAVE_STEPS,
        save_total_limit=cfg.save_total_limit,
        load_best_model_at_end=validate,
        metric_for_best_model=selection.key if validate else None,
        greater_is_better=selection.greater if validate else None,
        report_to="none",
        disable_tqdm=True,
        dataloader_num_workers=0,
    )


# ---------------------------------------------------------------------------------------------------------------
# CUDA out-of-memory: halve the micro-batch, double accumulation, keep the effective batch.
# ---------------------------------------------------------------------------------------------------------------


def is_out_of_memory(exc: BaseException) -> bool:
    """True for CUDA out-of-memory errors (torch raises ``torch.OutOfMemoryError``, a RuntimeError)."""
    import torch

    return isinstance(exc, torch.OutOfMemoryError) or (
        isinstance(exc, RuntimeError) and "out of memory" in str(exc).lower()
    )


def with_oom_retry(
    attempt: Callable[[int, int], _T],
    batch_size: int,
    grad_accum: int,
    say: Callable[[str], None] = print,
    on_retry: Callable[[], None] | None = None,
) -> tuple[_T, int, int]:
    """Run ``attempt(batch_size, grad_accum)``; on out-of-memory halve the micro-batch and double accumulation.

    Returns the result and the micro-batch and accumulation that worked. At micro-batch 1 the error is final,
    with the advice that is left (shorter max length, a smaller model, ``lingoforge plan``).
    """
    while True:
        try:
            return attempt(batch_size, grad_accum), batch_size, grad_accum
        except Exception as exc:
            if not is_out_of_memory(exc):
                raise
            if batch_size == 1:
                raise LingoforgeError(
                    "out of GPU memory even at micro-batch 1; lower --max-len, lower --rank, use a smaller base "
                    "model, or check `lingoforge plan`"
                ) from exc
            # Exactly 2x accumulation for an even micro-batch; an odd one rounds the effective batch up.
            new_batch = batch_size // 2
            new_accum = math.ceil(batch_size * grad_accum / new_batch)
            say(
                f"out of GPU memory at micro-batch {batch_size} x accumulation {grad_accum}; retrying with "
                f"{new_batch} x {new_accum} (effective batch {new_batch * new_accum})"
            )
            if on_retry is not None:
                on_retry()
            batch_size, grad_accum = new_batch, new_accum


# ---------------------------------------------------------------------------------------------------------------
# Steps 10 and 11: the adapter, written atomically, and what run.json records.
# ---------------------------------------------------------------------------------------------------------------


def save_adapter(trainer: Any, target: Path) -> None:
    """Write adapter weights, adapter_config.json and the tokenizer into ``target`` without a half-written state.

    Everything is saved into a temporary folder beside it first; files move in afterwards with the weights
    last, and the files of an older adapter not written this time are removed. ``checkpoints/`` stays.
    """
    target.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".adapter-", dir=target))
    try:
        trainer.model.save_pretrained(tmp)
        trainer.processing_class.save_pretrained(tmp)
        names = sorted(p.name for p in tmp.iterdir())
        names.sort(key=lambda n: n == "adapter_model.safetensors")
        for name in names:
            os.replace(tmp / name, target / name)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def versions() -> dict[str, str]:
    """The versions of Python and the training libraries, recorded in run.json so a run can be reproduced."""
    from importlib.metadata import PackageNotFoundError, version

    out = {"python": sys.version.split()[0]}
    for name in ("lingoforge", "torch", "transformers", "peft", "trl", "bitsandbytes", "accelerate", "datasets"):
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            out[name] = "not installed"
    return out
