"""Memory and time estimates for QLoRA training of a base model, before anything is downloaded or loaded.

The estimate adds up what the recipe in ``train.py`` actually keeps on the device at its peak (the backward of
one transformer layer, late in the step):

- base linear weights in 4-bit NF4 plus their quantization constants (blocks of 64 with an 8-bit absmax; with
  double quantization a second-level fp32 constant per 256 blocks): 4.127 bits per weight;
- embeddings and the LM head in 16 bits (one matrix when tied), norms and biases in 16 bits;
- LoRA A/B weights, their gradients and two AdamW moments (bf16 for a 4-bit base, as trl casts them; fp32
  otherwise);
- activations with gradient checkpointing: every layer's input is kept, and one layer's full working set is
  rebuilt during its backward (including the per-module LoRA dropout copies);
- the LM head's output: trl's chunked head scores at most 32,768 vocabulary columns at a time instead of the
  (tokens x vocab) logits that plain transformers builds and upcasts to fp32;
- a fixed CUDA context and 5% allocator fragmentation.

Time is counted per optimizer step: a fixed part paid on every pass over the layers, plus the FLOPs of the tokens
the step computes (2 per weight per token forward, 2 backward, since frozen weights get no weight gradient, 2 more
for the recomputation under checkpointing, plus attention) at an effective rate. Both parameters come from
measured runs by device class (``lingoforge.calibration``, printed as "calibrated on"); a fixed utilisation of
peak TFLOP/s was 4.5x optimistic for a 7B QLoRA run on an H100. ``plan_run`` re-plans a finished run from what it
recorded, beside what it measured. Every plan also says how a run with validation will stop (``stopping``: the
figure watched, the patience and the ceiling in epochs and steps; ``lingoforge.selection``).
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .calibration import CALIBRATIONS, Calibration, Measurement
from .config import DEFAULT_MAX_LEN, TrainConfig, on_device
from .errors import LingoforgeError
from .models import PRESETS, BaseModel, Shape, shape_of
from .runfolder import RunFolder
from .selection import stop_plan
from .shared_prefix import shared_prefix_length

if TYPE_CHECKING:
    from .encode import Encoded

GB = 1e9
NF4_BITS_DOUBLE_QUANT = 4 + 8 / 64 + 32 / (64 * 256)
NF4_BITS = 4 + 32 / 64
FUSED_HEAD_CHUNK = 32_768  # trl's _CHUNKED_LOGPROB_CHUNK_SIZE
CUDA_CONTEXT_GB = 0.5
FRAGMENTATION = 0.05

# What users are told (guides and model cards), printed beside our estimate so they can compare.
PUBLISHED_GB = {
    "qwen2.5-7b": {
        "train_qlora_r32": 12.0,
        "train_qlora_r16": 10.0,
        "infer_q5_k_m": 5.0,
        "infer_q4_k_m": 4.5,
        "infer_f16": 16.0,
    },
}
# Average bits per weight of llama.cpp quantization types (weights only; KV cache excluded).
INFERENCE_BITS = {"f16": 16.0, "q8_0": 8.5, "q5_k_m": 5.69, "q4_k_m": 4.89}
# Peak dense bf16 TFLOP/s by GPU name fragment: picks the nearest calibrated class for a GPU without its own.
GPU_TFLOPS = {
    "H200": 989.0,
    "H100": 989.0,
    "A100": 312.0,
    "L40S": 362.0,
    "A10G": 125.0,
    "L4": 121.0,
    "4090": 165.0,
    "3090": 71.0,
    "V100": 125.0,
    "T4": 65.0,
}


def device_memory_gb(cuda: bool) -> float | None:
    """Total memory of GPU 0, or of the machine on CPU; ``None`` when it cannot be read."""
    if cuda:
        import torch

        return torch.cuda.get_device_properties(0).total_memory / GB
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / GB
    except (ValueError, OSError, AttributeError):
        return None


def gpu_name() -> str | None:
    """The visible GPU's name (``None`` without one): the device whose calibration times a plan by default."""
    try:
        import torch

        return torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    except Exception:
        return None


def peak_tflops(name: str) -> float | None:
    """Peak dense bf16 TFLOP/s of a GPU from its name, if known."""
    return next((tf for frag, tf in GPU_TFLOPS.items() if frag.lower() in name.lower()), None)


@dataclass(frozen=True)
class Throughput:
    """The step-time parameters a plan uses for one device: a calibration, its per-token rate scaled when the device
    is not the class that was measured, and a note saying so."""

    device: str
    calibration: Calibration
    tflops: float
    note: str = ""


def throughput(
    device: str | None = None, *, cuda: bool = True, load_in_4bit: bool = True, tflops: float | None = None
) -> Throughput | None:
    """The calibration that times a run on ``device`` (a GPU name; the visible GPU when ``None``; ignored on CPU).

    A GPU of a calibrated class uses its parameters as measured. Another GPU whose peak is known (from its name, or
    ``tflops``) borrows the nearest class by peak TFLOP/s, with the per-token part scaled by the ratio of peaks and
    the fixed part kept, and the note says so. ``None`` when no peak is known: no time is made up.
    """
    if not cuda:
        cal = _class_for("cpu", load_in_4bit)
        return _with_precision(Throughput("cpu", cal, cal.tflops), load_in_4bit)
    name = device or gpu_name()
    if name and tflops is None:
        exact = next((c.device for c in CALIBRATIONS if any(n.lower() in name.lower() for n in c.names)), None)
        if exact is not None:
            cal = _class_for(exact, load_in_4bit)
            return _with_precision(Throughput(name, cal, cal.tflops), load_in_4bit)
    peak = tflops or (peak_tflops(name) if name else None)
    if peak is None:
        return None
    nearest = min((c for c in CALIBRATIONS if c.peak_tflops), key=lambda c: abs(math.log(peak / c.peak_tflops)))
    cal = _class_for(nearest.device, load_in_4bit)
    scale = peak / cal.peak_tflops  # type: ignore[operator]
    note = (
        f"{name or 'this GPU'} ({peak:g} TFLOP/s peak) is not calibrated: {cal.device}'s per-token rate scaled by "
        f"{peak:g}/{cal.peak_tflops:g}, its fixed part kept"
    )
    return _with_precision(Throughput(name or f"{peak:g} TFLOP/s", cal, cal.tflops * scale, note), load_in_4bit)


def _class_for(device: str, load_in_4bit: bool) -> Calibration:
    """A class's calibration for these base weights (4-bit or not) when it has one, else its other one."""
    matching = [c for c in CALIBRATIONS if c.device == device]
    return next((c for c in matching if c.load_in_4bit == load_in_4bit), matching[0])


def _with_precision(tp: Throughput, load_in_4bit: bool) -> Throughput:
    """Say so when the calibration was measured with other base weights than the ones planned."""
    if tp.calibration.load_in_4bit == load_in_4bit:
        return tp
    measured = "4-bit NF4" if tp.calibration.load_in_4bit else "unquantized"
    note = "; ".join(n for n in (tp.note, f"calibrated on {measured} base weights only") if n)
    return Throughput(tp.device, tp.calibration, tp.tflops, note)


def flops_per_token(shape: Shape, seq: float, gradient_checkpointing: bool) -> float:
    """Training FLOPs per computed token: 2 per weight forward, 2 backward (input gradients only: the base is frozen),
    2 more for the recomputation under checkpointing, plus attention over a sequence of ``seq`` tokens."""
    passes = 6 if gradient_checkpointing else 4
    return passes * (shape.linear_params + shape.vocab * shape.hidden) + passes * 2 * shape.layers * seq * shape.hidden


def step_seconds(
    shape: Shape,
    tp: Throughput,
    *,
    batch_size: int,
    mean_tokens: float,
    prefix_tokens: float = 0.0,
    gradient_checkpointing: bool,
    grad_accum: int = 1,
) -> tuple[float, float]:
    """(fixed, per-token) seconds of one optimizer step of ``grad_accum`` micro-batches.

    The fixed part is paid per layer on each pass over the layers (three with checkpointing, two without). A
    micro-batch computes the ``prefix_tokens`` its examples share once, then each example's own tokens.
    """
    layer_passes = shape.layers * (3 if gradient_checkpointing else 2)
    computed = computed_tokens(batch_size, mean_tokens, prefix_tokens)
    per_token = computed * flops_per_token(shape, mean_tokens, gradient_checkpointing) / (tp.tflops * 1e12)
    return grad_accum * tp.calibration.fixed_s * layer_passes, grad_accum * per_token


def computed_tokens(batch_size: int, mean_tokens: float, prefix_tokens: float) -> float:
    """Tokens one micro-batch runs through the model: the shared prefix once, then each example's own tokens."""
    prefix = min(prefix_tokens, mean_tokens)
    return prefix + batch_size * (mean_tokens - prefix)


def replay(measurement: Measurement, tp: Throughput) -> dict[str, float]:
    """What the step-time model says for a measured run, figure for figure (those it measured)."""
    fixed, per_token = step_seconds(
        PRESETS[measurement.model],
        tp,
        batch_size=measurement.batch_size,
        mean_tokens=measurement.mean_tokens,
        prefix_tokens=measurement.prefix_tokens,
        gradient_checkpointing=measurement.gradient_checkpointing,
    )
    step = fixed + per_token
    planned = {
        "seconds_per_step": step,
        "tokens_per_second": measurement.batch_size * measurement.mean_tokens / step,
        "seconds_per_epoch": step * (measurement.steps_per_epoch or 0),
    }
    return {k: v for k, v in planned.items() if getattr(measurement, k) is not None}


def plan(
    model: str | BaseModel | Shape | Any,
    *,
    rank: int = TrainConfig.rank,
    max_len: int = DEFAULT_MAX_LEN,
    batch_size: int = TrainConfig.batch_size,
    load_in_4bit: bool | None = None,
    double_quant: bool = True,
    gradient_checkpointing: bool | None = None,
    fused_head: bool = True,
    padding_free: bool = TrainConfig.padding_free,
    grad_accum: int = TrainConfig.grad_accum,
    examples: int | None = None,
    mean_tokens: float | None = None,
    prefix_tokens: float = 0.0,
    longest_batch_tokens: int | None = None,
    epochs: float = TrainConfig.epochs,
    gpu_mem: float | None = None,
    device: str | None = None,
    tflops: float | None = None,
    weight_bytes: int = 2,
    cuda: bool = True,
    patience: int = TrainConfig.patience,
    select: str = TrainConfig.select,
    max_steps: int = TrainConfig.max_steps,
    eval_steps: int | None = None,
    metric: str | None = None,
) -> dict[str, Any]:
    """Peak training memory (GB, 1e9 bytes) by component, and time per step and epoch when the device is timed.

    ``longest_batch_tokens`` is the token count of the longest possible micro-batch; without data it is
    ``batch_size x max_len``. ``weight_bytes`` is the size of unquantized weights (2 for bf16, 4 for fp32 on CPU);
    ``stopping`` says how a run with validation ends: by ``select``'s figure (``metric``: the task's, when known),
    ``patience``, ``eval_steps`` (twice per epoch when ``None``) and the ceiling, ``epochs`` or ``max_steps``.
    ``cuda=False`` (training on CPU) drops the CUDA context and times the run on the CPU calibration. ``device``
    names the GPU to time (default: the visible one), ``tflops`` its peak when the name is not known (see
    ``throughput``). ``prefix_tokens`` are the tokens every example starts with (chat template, system prompt,
    instruction), computed once per micro-batch; 0 when unknown, which makes the time an upper bound. Settings
    left out are the recipe's (``TrainConfig``; 4-bit and gradient checkpointing by its device rule).
    """
    load_in_4bit, gradient_checkpointing = on_device(load_in_4bit, cuda), on_device(gradient_checkpointing, cuda)
    s = shape_of(model)
    tokens = longest_batch_tokens or batch_size * max_len
    h, i = s.hidden, s.intermediate
    act = weight_bytes

    bits = (NF4_BITS_DOUBLE_QUANT if double_quant else NF4_BITS) if load_in_4bit else weight_bytes * 8
    lora_bytes = (2 if load_in_4bit else 4) * 4  # weight + gradient + two AdamW moments
    per_layer_working = tokens * (act * (18 * h + 6 * i) + (6 * h + i))  # saved tensors + dropout masks of one layer
    if gradient_checkpointing:
        activations = s.layers * tokens * h * act + per_layer_working
    else:
        activations = s.layers * per_layer_working
    backward_transient = 2 * tokens * max(h, i) * act
    if fused_head:
        head = tokens * min(s.vocab, FUSED_HEAD_CHUNK) * 4 * 2  # one fp32 chunk and its gradient
    else:
        head = tokens * s.vocab * (act + 4 + 4)  # logits, fp32 upcast for the loss, and its gradient

    parts = {
        "base_weights_4bit" if load_in_4bit else "base_weights": s.linear_params * bits / 8,
        "embeddings_and_head": s.embedding_params * weight_bytes,
        "norms_and_biases": s.small_params * weight_bytes,
        "lora_weights_grads_adamw": s.lora_params(rank) * lora_bytes,
        "activations": activations + backward_transient,
        "lm_head_output": head,
    }
    if cuda:
        parts["cuda_context"] = CUDA_CONTEXT_GB * GB
    subtotal = sum(parts.values())
    parts["fragmentation"] = subtotal * FRAGMENTATION
    peak = sum(parts.values())

    result: dict[str, Any] = {
        "parameters": s.parameters,
        "lora_parameters": s.lora_params(rank),
        "settings": {
            "rank": rank,
            "max_len": max_len,
            "batch_size": batch_size,
            "tokens_per_micro_batch": tokens,
            "load_in_4bit": load_in_4bit,
            "double_quant": double_quant,
            "gradient_checkpointing": gradient_checkpointing,
            "fused_head": fused_head,
            "padding_free": padding_free,
        },
        "memory_gb": {k: round(v / GB, 3) for k, v in parts.items()},
        "peak_gb": round(peak / GB, 2),
        "inference_gb": {
            q: round((s.linear_params + s.embedding_params) * b / 8 / GB, 2) for q, b in INFERENCE_BITS.items()
        },
    }

    seq = mean_tokens or max_len
    result["flops_per_token"] = flops_per_token(s, seq, gradient_checkpointing)
    tp = throughput(device, cuda=cuda, load_in_4bit=load_in_4bit, tflops=tflops) if examples is not None else None
    if examples is not None and tp is not None:
        result["time"] = _time(
            s,
            tp,
            examples=examples,
            mean_tokens=seq,
            prefix_tokens=prefix_tokens,
            batch_size=batch_size,
            grad_accum=grad_accum,
            gradient_checkpointing=gradient_checkpointing,
            epochs=epochs,
        )

    result["stopping"] = stop_plan(
        epochs=epochs, max_steps=max_steps, patience=patience, select=select, metric=metric, eval_steps=eval_steps,
        steps_per_epoch=None if examples is None else steps_per_epoch(examples, batch_size, grad_accum),
    )
    if gpu_mem is not None:
        result["gpu_mem_gb"] = gpu_mem
        result["fits"] = peak / GB <= gpu_mem
    published = _published(model)
    if published:
        result["published_gb"] = published
    result["summary"] = (
        ", ".join(f"{k.replace('_', ' ')} {v:.1f}" for k, v in result["memory_gb"].items() if v >= 0.05) + " GB"
    )
    return result


def steps_per_epoch(examples: int, batch_size: int, grad_accum: int) -> int:
    """Optimizer steps in one epoch of ``examples`` on one device (the last micro-batch may be short)."""
    return math.ceil(examples / (batch_size * grad_accum))


def _time(
    shape: Shape,
    tp: Throughput,
    *,
    examples: int,
    mean_tokens: float,
    prefix_tokens: float,
    batch_size: int,
    grad_accum: int,
    gradient_checkpointing: bool,
    epochs: float,
) -> dict[str, Any]:
    """The time section of a plan: per step, per epoch and in all, with the measurements the model rests on."""
    fixed, per_token = step_seconds(
        shape,
        tp,
        batch_size=batch_size,
        mean_tokens=mean_tokens,
        prefix_tokens=prefix_tokens,
        gradient_checkpointing=gradient_checkpointing,
        grad_accum=grad_accum,
    )
    step = fixed + per_token
    examples_per_step = batch_size * grad_accum
    steps = steps_per_epoch(examples, batch_size, grad_accum)
    cal = tp.calibration
    return {
        "device": tp.device,
        "calibration": cal.device,
        "note": tp.note,
        "seconds_per_step": round(step, 3),
        "fixed_seconds_per_step": round(fixed, 3),
        "tokens_per_step": round(examples_per_step * mean_tokens),
        "computed_tokens_per_step": round(grad_accum * computed_tokens(batch_size, mean_tokens, prefix_tokens)),
        "prefix_tokens": prefix_tokens,
        "effective_tflops": round(tp.tflops, 2),
        "tokens_per_second": round(examples_per_step * mean_tokens / step, 1),
        "steps_per_epoch": steps,
        "tokens_per_epoch": round(examples * mean_tokens),
        "seconds_per_epoch": round(steps * step, 1),
        "seconds_total": round(steps * step * epochs, 1),
        "calibrated_on": {
            "source": cal.source,
            "note": cal.note,
            "measurements": [
                {
                    "what": m.what,
                    "measured": {k: getattr(m, k) for k in planned},
                    "planned": {k: round(v, 3) for k, v in planned.items()},
                }
                for m in cal.measurements
                for planned in [replay(m, Throughput(cal.device, cal, cal.tflops))]
            ],
        },
    }


def _published(model: Any) -> dict[str, float] | None:
    name = model if isinstance(model, str) else getattr(model, "name", "")
    return PUBLISHED_GB.get(str(name).lower().removesuffix("-instruct"))


def format_plan(result: Mapping[str, Any]) -> str:
    """A readable table: components, peak, fit, time, and the published figures beside ours."""
    st = result["settings"]
    lines = [
        f"{result['parameters'] / 1e9:.2f}B parameters, LoRA rank {st['rank']} = "
        f"{result['lora_parameters'] / 1e6:.1f}M trainable; micro-batch {st['batch_size']} x max length "
        f"{st['max_len']} ({st['tokens_per_micro_batch']:,} tokens at most)"
    ]
    width = max(len(k) for k in result["memory_gb"])
    lines += [f"  {k.replace('_', ' '):<{width}}  {v:8.2f} GB" for k, v in result["memory_gb"].items()]
    lines.append(f"  {'peak (estimate)':<{width}}  {result['peak_gb']:8.2f} GB")
    if "fits" in result:
        verdict = "fits" if result["fits"] else "does NOT fit"
        lines.append(f"  {verdict} in {result['gpu_mem_gb']:.1f} GB")
    inf = result["inference_gb"]
    lines.append("inference weights: " + ", ".join(f"{q.upper()} {v:.1f} GB" for q, v in inf.items()))
    if "time" in result:
        lines += _format_time(result["time"])
    else:
        lines.append(
            "time: pass --examples (and --device H100, A100, cpu, ... when no GPU is visible) for a time estimate"
        )
    if result.get("stopping"):
        lines.append(f"stopping, with validation: {result['stopping']}")
    if "published_gb" in result:
        p = result["published_gb"]
        lines.append(
            f"users are told (Qwen2.5-7B): QLoRA r32 ~{p['train_qlora_r32']:.0f} GB, "
            f"r16 ~{p['train_qlora_r16']:.0f} GB; inference Q5_K_M ~{p['infer_q5_k_m']:.0f} GB, "
            f"Q4_K_M ~{p['infer_q4_k_m']} GB, FP16 ~{p['infer_f16']:.0f} GB"
        )
    return "\n".join(lines)


def _format_time(t: Mapping[str, Any]) -> list[str]:
    """The time lines: per step, per epoch, in all, and the measurements the step-time model was calibrated on."""
    shared = (
        f", {t['computed_tokens_per_step']:,} computed: the {t['prefix_tokens']:.0f}-token shared prefix once"
        if t["prefix_tokens"]
        else ", no shared prefix counted (--prefix-tokens)"
    )
    lines = [
        f"time on {t['device']} (calibration {t['calibration']}): {t['seconds_per_step']:.2f} s per step "
        f"({t['fixed_seconds_per_step']:.2f} fixed; {t['tokens_per_step']:,} tokens{shared}), "
        f"~{t['tokens_per_second']:,.0f} tokens/s",
        f"  {t['steps_per_epoch']:,} steps per epoch: {_minutes(t['seconds_per_epoch'])} per epoch, "
        f"{_minutes(t['seconds_total'])} in all",
    ]
    if t["note"]:
        lines.append(f"  note: {t['note']}")
    cal = t["calibrated_on"]
    lines.append(f"calibrated on: {cal['source']}" + (f"; {cal['note']}" if cal["note"] else ""))
    for m in cal["measurements"]:
        measured = ", ".join(_figure(k, v) for k, v in m["measured"].items())
        planned = ", ".join(_figure(k, v) for k, v in m["planned"].items())
        lines.append(f"  {m['what']}: measured {measured}; this model {planned}")
    return lines


def _figure(key: str, value: float) -> str:
    units = {
        "seconds_per_step": "{:.2f} s/step",
        "tokens_per_second": "{:,.0f} tokens/s",
        "seconds_per_epoch": "{:.0f} s per epoch",
    }
    return units[key].format(value)


def _minutes(seconds: float) -> str:
    return f"{seconds:.0f} s" if seconds < 120 else f"{seconds / 60:.1f} min"


MEASURED_BASIS = (
    "training-loop seconds to the last logged step / optimizer steps (no per-step times are recorded, "
    "so the first steps and any validation and checkpoints before it are included)"
)


def measured_record(seconds_per_step: float, tokens_per_second: float) -> dict[str, Any]:
    """run.json's ``train.measured``: the speed a run measured, and how, beside ``train.planned``."""
    return {
        "seconds_per_step": round(seconds_per_step, 3),
        "tokens_per_second": round(tokens_per_second, 1),
        "basis": MEASURED_BASIS,
    }


def planned_record(
    model: Any, cfg: TrainConfig, encoded: Sequence[Encoded], batch_size: int, grad_accum: int, cuda: bool
) -> dict[str, Any] | None:
    """run.json's ``train.planned``: the plan's step time for the micro-batch and accumulation that trained, on this
    device, with the prompt prefix the examples share (what ``plan --from`` re-plans with); ``None`` when the GPU
    is not timed (no known peak)."""
    lengths = [len(e.input_ids) for e in encoded]
    prefix = shared_prefix_length([(e.input_ids, e.labels) for e in encoded]) if cfg.shared_prefix else 0
    time = plan(
        model,
        rank=cfg.rank,
        max_len=cfg.max_len or max(lengths),
        batch_size=batch_size,
        grad_accum=grad_accum,
        load_in_4bit=cfg.load_in_4bit,
        gradient_checkpointing=cfg.gradient_checkpointing,
        examples=len(lengths),
        mean_tokens=sum(lengths) / len(lengths),
        prefix_tokens=prefix,
        epochs=cfg.epochs,
        weight_bytes=2 if cuda else 4,
        cuda=cuda,
    ).get("time")
    if time is None:
        return None
    keys = (
        "device",
        "calibration",
        "note",
        "seconds_per_step",
        "tokens_per_second",
        "tokens_per_step",
        "computed_tokens_per_step",
        "prefix_tokens",
    )
    return {k: time[k] for k in keys}


def plan_run(
    run: RunFolder,
    *,
    device: str | None = None,
    tflops: float | None = None,
    gpu_mem: float | None = None,
    **settings: Any,
) -> dict[str, Any]:
    """Re-plan a trained run from what run.json recorded, beside what it measured.

    The base model, its settings (the micro-batch and accumulation that actually trained), the training examples
    and their mean length, and the shared prefix and GPU its time was planned for come from the run; ``settings``
    that are not ``None`` (rank, max_len, batch_size, load_in_4bit, epochs, select, patience) and ``device`` override
    them for a what-if. The result adds ``run``, ``overrides`` and, when the run measured its speed, ``measured`` and
    ``planned_vs_measured`` (ratios above 1: the plan is slower than the run was).
    """
    run.require()
    training = run.training()
    config = training.config
    if not config:
        raise LingoforgeError(
            f"{run.run_json} records no training settings (train.config): `lingoforge train` writes them"
        )
    by_language = training.tokens_by_language.get("train", {})
    distinct = sum(row["examples"] for row in by_language.values()) or training.examples.get("train")
    tokens = sum(row["tokens"] for row in by_language.values())
    examples = (training.balance or {}).get("examples_per_epoch") or distinct  # label balance's draws per epoch
    recorded = training.planned or {}
    cuda = (device or training.device or "cuda").lower() != "cpu"
    overrides = {k: v for k, v in settings.items() if v is not None}
    values = {
        "rank": config["rank"],
        "max_len": config["max_len"],
        "epochs": config["epochs"],
        "batch_size": training.batch_size or config["batch_size"],
        "grad_accum": training.grad_accum or config["grad_accum"],
        "load_in_4bit": config["load_in_4bit"],
        "gradient_checkpointing": config["gradient_checkpointing"],
        "select": config.get("select", TrainConfig.select),
        "patience": config.get("patience", TrainConfig.patience),
        "max_steps": config.get("max_steps", TrainConfig.max_steps),
        "eval_steps": config.get("eval_steps"),
    } | overrides
    chosen = training.selection or {}
    result = plan(
        _run_shape(run.base_location()),
        metric=chosen["metric"].removeprefix("eval_") if chosen.get("by") == "metric" else None,
        examples=examples,
        mean_tokens=tokens / distinct if tokens else None,
        prefix_tokens=recorded.get("prefix_tokens", 0.0),
        device=device or recorded.get("device"),
        tflops=tflops,
        gpu_mem=gpu_mem,
        weight_bytes=2 if cuda else 4,
        cuda=cuda,
        **values,
    )
    result["run"] = str(run.root)
    result["overrides"] = overrides
    measured = training.measured
    if measured:
        result["measured"] = measured
        if "time" in result:
            result["planned_vs_measured"] = {
                k: {
                    "planned": result["time"][k],
                    "measured": measured[k],
                    "ratio": round(result["time"][k] / measured[k], 2) if measured[k] else None,
                }
                for k in ("seconds_per_step", "tokens_per_second")
            }
    return result


def _run_shape(location: str) -> Shape:
    """The architecture of a run's base: a preset's when the run loaded a preset's hub weights (planning needs no
    download), else the local folder's config."""
    return next((p for p in PRESETS.values() if p.source == location), None) or shape_of(location)


def format_run_plan(result: Mapping[str, Any]) -> str:
    """``format_plan`` of a re-planned run, headed by the run and followed by planned vs measured."""
    overrides = ", ".join(f"{k}={v}" for k, v in result["overrides"].items())
    lines = [f"re-planned from {result['run']}" + (f" with {overrides}" if overrides else ""), format_plan(result)]
    if "planned_vs_measured" in result:
        pvm = result["planned_vs_measured"]
        step, rate = pvm["seconds_per_step"], pvm["tokens_per_second"]
        lines.append(
            f"planned vs measured: {step['planned']:.2f} vs {step['measured']:.2f} s per step "
            f"({step['ratio']:.2f}x), {rate['planned']:,.0f} vs {rate['measured']:,.0f} tokens/s "
            f"({rate['ratio']:.2f}x)"
        )
        lines.append(f"  measured: {result['measured']['basis']}")
    elif "measured" in result:
        lines.append(
            f"measured: {result['measured']['seconds_per_step']:.2f} s per step, "
            f"{result['measured']['tokens_per_second']:,.0f} tokens/s (no time planned to compare)"
        )
    else:
        lines.append("measured: nothing yet (the run has not finished training)")
    return "\n".join(lines)
