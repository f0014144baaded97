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

Time per epoch counts 2 FLOPs per weight per token forward, 2 backward (frozen weights get no weight
gradient), 2 more for the recomputation under checkpointing, plus attention, divided by an effective
throughput (peak bf16 TFLOP/s x utilisation). These are estimates: ``bench/gpu_train.py`` measures a real
Qwen2.5-7B-shaped model.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from .config import DEFAULT_MAX_LEN, TrainConfig, on_device
from .models import BaseModel, Shape, shape_of

GB = 1e9
NF4_BITS_DOUBLE_QUANT = 4 + 8 / 64 + 32 / (64 * 256)
NF4_BITS = 4 + 32 / 64
FUSED_HEAD_CHUNK = 32_768  # trl's _CHUNKED_LOGPROB_CHUNK_SIZE
CUDA_CONTEXT_GB = 0.5
FRAGMENTATION = 0.05
DEFAULT_UTILISATION = 0.3  # measured QLoRA runs land around 25-40% of peak bf16 (dequantization costs)

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
# Peak dense bf16 TFLOP/s by GPU name fragment, for the time estimate.
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


def gpu_tflops() -> float | None:
    """Peak bf16 TFLOP/s of the visible GPU from its name, if known."""
    try:
        import torch

        if not torch.cuda.is_available():
            return None
        name = torch.cuda.get_device_name(0)
    except Exception:
        return None
    return next((tf for frag, tf in GPU_TFLOPS.items() if frag in name), None)


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
    examples: int | None = None,
    mean_tokens: float | None = None,
    longest_batch_tokens: int | None = None,
    epochs: float = TrainConfig.epochs,
    gpu_mem: float | None = None,
    tflops: float | None = None,
    utilisation: float = DEFAULT_UTILISATION,
    weight_bytes: int = 2,
    cuda: bool = True,
) -> dict[str, Any]:
    """Peak training memory (GB, 1e9 bytes) by component, and time per epoch when a throughput is known.

    ``longest_batch_tokens`` is the token count of the longest possible micro-batch; without data it is
    ``batch_size x max_len``. ``weight_bytes`` is the size of unquantized weights (2 for bf16, 4 for fp32 on CPU);
    ``cuda=False`` (training on CPU) drops the CUDA context. Settings left out are the recipe's (``TrainConfig``;
    4-bit and gradient checkpointing by its device rule).
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

    # Time per epoch: FLOPs per token (weights + attention) over an effective throughput.
    seq = mean_tokens or max_len
    passes = 6 if gradient_checkpointing else 4
    flops_per_token = passes * (s.linear_params + s.vocab * h) + passes * 2 * s.layers * seq * h
    throughput = tflops or gpu_tflops()
    result["flops_per_token"] = flops_per_token
    if examples is not None and throughput:
        epoch_tokens = examples * seq
        seconds = epoch_tokens * flops_per_token / (throughput * 1e12 * utilisation)
        result["time"] = {
            "tokens_per_epoch": int(epoch_tokens),
            "tflops": throughput,
            "utilisation": utilisation,
            "tokens_per_second": round(throughput * 1e12 * utilisation / flops_per_token, 1),
            "seconds_per_epoch": round(seconds, 1),
            "seconds_total": round(seconds * epochs, 1),
        }

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


def _published(model: Any) -> dict[str, float] | None:
    name = model if isinstance(model, str) else getattr(model, "name", "")
    return PUBLISHED_GB.get(str(name).lower().removesuffix("-instruct"))


def format_plan(result: Mapping[str, Any]) -> str:
    """A readable table: components, peak, fit, time, and the published figures beside ours."""
    st = result["settings"]
    lines = [
        f"{result['parameters'] / 1e9:.2f}B parameters, LoRA rank {st['rank']} = {result['lora_parameters'] / 1e6:.1f}M trainable; "
        f"micro-batch {st['batch_size']} x max length {st['max_len']} ({st['tokens_per_micro_batch']:,} tokens at most)"
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
        t = result["time"]
        lines.append(
            f"time: ~{t['tokens_per_second']:,.0f} tokens/s at {t['utilisation']:.0%} of {t['tflops']:.0f} TFLOP/s -> "
            f"{t['seconds_per_epoch'] / 60:.1f} min per epoch ({t['tokens_per_epoch']:,} tokens), {t['seconds_total'] / 60:.1f} min in all"
        )
    else:
        lines.append("time: pass --tflops (peak bf16 TFLOP/s of the GPU) and --examples for a time estimate")
    if "published_gb" in result:
        p = result["published_gb"]
        lines.append(
            f"users are told (Qwen2.5-7B): QLoRA r32 ~{p['train_qlora_r32']:.0f} GB, r16 ~{p['train_qlora_r16']:.0f} GB; "
            f"inference Q5_K_M ~{p['infer_q5_k_m']:.0f} GB, Q4_K_M ~{p['infer_q4_k_m']} GB, FP16 ~{p['infer_f16']:.0f} GB"
        )
    return "\n".join(lines)
