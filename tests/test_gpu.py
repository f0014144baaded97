"""Checks only a CUDA GPU can make (marker ``gpu``: plain ``pytest`` and .ci/run leave them out; run them with
``pytest -m gpu tests/test_gpu.py``): QLoRA steps through ``train`` on the GPU, the hf backend's load choice and
its answers in both load modes, the plan's GPU time estimate. Tiny random Qwen2 models, so the file takes well
under three minutes on any CUDA GPU with bitsandbytes.

What a random model lets us assert honestly: its next-token logits are nearly flat, so bf16 or NF4 rounding may
flip a greedy token without anything being wrong. Exact token equality is asserted where the arithmetic is fp32
on both sides (the merged model on the GPU against the unmerged adapter on CPU); the 16-bit and 4-bit paths are
held to the fp32 logits by cosine similarity (about 0.9999 for bf16, 0.99 for NF4 on this model) and to
schema-valid constrained answers.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from lingoforge.backends import get_backend
from test_backends import BATCH, SCHEMA, last_logits

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU: torch.cuda.is_available() is False"),
]


def unmerged_reference(run: Path, base: Path):
    """The run on CPU in fp32 with the adapter as separate LoRA layers: the arithmetic every load mode approximates."""
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    backend = get_backend(str(run), device="cpu")
    model = AutoModelForCausalLM.from_pretrained(str(base), dtype=torch.float32)
    backend.model_obj = PeftModel.from_pretrained(model, str(run / "adapter")).eval()
    return backend


def test_five_qlora_steps_on_cuda(tiny_qwen2_dir: Path, tmp_path: Path) -> None:
    """``train`` on the GPU takes its CUDA defaults (NF4 base, bf16): five steps change the LoRA weights only."""
    from lingoforge.config import TrainConfig
    from lingoforge.train import train
    from test_train import tiny_examples, tiny_task
    from test_train_slow import weight_watcher

    watcher = weight_watcher()
    out = tmp_path / "run"
    result = train(tiny_task(), tiny_examples(32), tiny_examples(8, seed=1), str(tiny_qwen2_dir), out,
                   TrainConfig(lr=5e-3, max_steps=5, save_steps=5), quiet=True, callbacks=[watcher])
    losses = [h["loss"] for h in result.history if "loss" in h]
    assert result.steps == 5 and len(losses) == 5
    assert sum(losses[-2:]) < sum(losses[:2]), losses
    assert watcher.quantized, "the base model should be 4-bit NF4 on CUDA"
    assert any("lora_B" in n for n in watcher.changed) and watcher.changed <= watcher.lora
    recorded = json.loads((out / "run.json").read_text())["train"]
    assert recorded["device"] == "cuda" and recorded["config"]["load_in_4bit"] is True
    # the validation at step 5 asked the 4-bit model in training for its answers (lingoforge.validation)
    assert recorded["selection"]["by"] == "metric" and recorded["selection"]["best_step"] == 5
    assert recorded["curve"]["primary"]["all"][0] is not None


def test_hf_backend_merges_in_16_bits_and_answers_as_the_fp32_adapter(tiny_run: Path, tiny_qwen2_dir: Path) -> None:
    from lingoforge.backends.hf import MERGED, QUANTIZED
    from peft.tuners.lora import LoraLayer

    cosine = torch.nn.functional.cosine_similarity
    with unmerged_reference(tiny_run, tiny_qwen2_dir) as reference:
        expected = [g.text for g in reference.generate(BATCH, max_new_tokens=8)]
        expected_logits = last_logits(reference)

    with get_backend(str(tiny_run)) as fast:
        load = fast.describe()["load"]
        assert (load["mode"], load["dtype"], load["device"][:5]) == (MERGED, "bfloat16", "cuda:"), load
        assert "GB free" in load["reason"]
        assert not any(isinstance(m, LoraLayer) for m in fast.model_obj.modules())
        assert cosine(last_logits(fast), expected_logits).min() > 0.99
        answers = fast.generate(BATCH, SCHEMA, 16)
    assert all(json.loads(a.text)["category"] in SCHEMA["properties"]["category"]["enum"] for a in answers)

    with get_backend(str(tiny_run), mode=MERGED, dtype="float32") as exact:
        assert [g.text for g in exact.generate(BATCH, max_new_tokens=8)] == expected

    with get_backend(str(tiny_run), mode=QUANTIZED) as small_gpu:
        assert small_gpu.describe()["load"]["dtype"] == "bfloat16"
        assert any(isinstance(m, LoraLayer) for m in small_gpu.model_obj.modules())
        assert cosine(last_logits(small_gpu), expected_logits).min() > 0.9
        answers = small_gpu.generate(BATCH, SCHEMA, 16)
    assert all(json.loads(a.text)["category"] in SCHEMA["properties"]["category"]["enum"] for a in answers)


def test_plan_on_cuda_has_a_time_estimate_and_a_7b_load_choice() -> None:
    from lingoforge.backends.hf import MERGED, QUANTIZED, free_gpu_gb, load_mode, merged_16bit_gb
    from lingoforge.models import PRESETS
    from lingoforge.plan import GB, plan

    result = plan("qwen2.5-7b-instruct", cuda=True, examples=1000)
    assert result.get("time"), f"no time estimate for {torch.cuda.get_device_name(0)}"
    free = free_gpu_gb("cuda:0")
    total = torch.cuda.get_device_properties(0).total_memory / GB
    assert 0 < free <= total * 1.01, (free, total)  # the free memory read from this GPU, in GB
    shape = PRESETS["qwen2.5-7b-instruct"]
    need = merged_16bit_gb(shape)
    assert 14 < need < 40, need  # 7.6 B parameters in 16 bits, plus a batch's activations
    choice = load_mode(free, shape)
    # whichever GPU runs this, the choice follows from its free memory: merged 16-bit when it fits, else NF4
    assert choice.mode == (MERGED if need <= free else QUANTIZED), (choice, free, need)
    assert f"{need:.1f} GB, {free:.1f} GB free" in choice.reason, choice
