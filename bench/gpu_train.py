"""GPU training benchmark: Qwen2.5-7B-shaped QLoRA r32 at length 2048, plain HF defaults vs our settings.

    python bench/gpu_train.py [--steps 10] [--warmup 2] [--out bench/results/train_gpu.json]

Runs on one H100/H200 in about 5-8 minutes (not on CPU). It builds a model with the real Qwen2.5-7B
figures (28 layers, hidden 3584, MLP 18944, 28 heads / 4 KV heads, vocab 152064, untied head) and random
weights directly on the GPU, saves it once to a temporary folder, and loads it in 4-bit NF4 (double
quantization, bf16 compute) for each run:

(a) plain HF defaults: ``transformers.Trainer``, micro-batch 4, sequences padded to the longest in the batch,
    the model's own loss over full (tokens x vocab) logits, no gradient checkpointing. When that does not
    fit, the micro-batch is halved and accumulation doubled (effective batch 4), as a user would.
(b) our settings (``lingoforge.train``): trl SFTTrainer, micro-batch 4, gradient checkpointing, padding-free
    rows (no pad tokens), trl's chunked LM head that only scores answer positions (no full logits).

Both see the same examples: lengths uniform in [512, 2048], loss on the last 64 tokens (the answer), LoRA
r32 / alpha 64 / dropout 0.05 on all linear layers, lr 1.5e-4. Throughput is real (non-pad) tokens per
second over ``--steps`` optimizer steps after ``--warmup``; peak memory is ``torch.cuda.max_memory_allocated``
(and reserved) over the measured steps. Targets: (b) peak <= 12 GB, (b) >= 1.5x (a) tokens/s.
"""

from __future__ import annotations

import argparse
import gc
import json
import random
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

QWEN25_7B = {
    "architectures": ["Qwen2ForCausalLM"],
    "hidden_size": 3584,
    "intermediate_size": 18944,
    "num_hidden_layers": 28,
    "num_attention_heads": 28,
    "num_key_value_heads": 4,
    "vocab_size": 152064,
    "max_position_embeddings": 32768,
    "rope_theta": 1_000_000.0,
    "rms_norm_eps": 1e-6,
    "tie_word_embeddings": False,
    "bos_token_id": 151643,
    "eos_token_id": 151645,
    "pad_token_id": 151643,
}
ANSWER_TOKENS = 64
PAD_ID = 151643


def build_model(folder: Path) -> None:
    """A random bf16 Qwen2.5-7B-shaped model, initialised on the GPU (seconds) and saved as safetensors."""
    import torch
    from transformers import AutoModelForCausalLM, Qwen2Config

    torch.manual_seed(0)
    with torch.device("cuda"):
        model = AutoModelForCausalLM.from_config(Qwen2Config(**QWEN25_7B), dtype=torch.bfloat16)
    model.save_pretrained(folder, max_shard_size="5GB")
    del model
    gc.collect()
    torch.cuda.empty_cache()


def make_rows(n: int, seed: int) -> list[dict[str, list[int]]]:
    rng = random.Random(seed)
    rows = []
    for _ in range(n):
        length = rng.randint(512, 2048)
        ids = [rng.randrange(1000, 150000) for _ in range(length)]
        rows.append({"input_ids": ids, "labels": [-100] * (length - ANSWER_TOKENS) + ids[-ANSWER_TOKENS:]})
    return rows


def load_4bit(folder: Path) -> Any:
    """The same loading as ``lingoforge.trainer.load_model`` on CUDA."""
    from lingoforge.config import TrainConfig
    from lingoforge.trainer import load_model

    return load_model(str(folder), TrainConfig(load_in_4bit=True), cuda=True)


class Meter:
    """A TrainerCallback measuring real tokens/s and peak memory over the steps after warm-up."""

    def __init__(self, warmup: int) -> None:
        self.warmup = warmup
        self.t0 = 0.0
        self.steps = 0
        self.seconds = 0.0

    def callback(self) -> Any:
        import torch
        from transformers import TrainerCallback

        meter = self

        class _Callback(TrainerCallback):
            def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
                torch.cuda.synchronize()
                if state.global_step == meter.warmup:
                    torch.cuda.reset_peak_memory_stats()
                    meter.t0 = time.perf_counter()
                elif state.global_step > meter.warmup:
                    meter.steps = state.global_step - meter.warmup
                    meter.seconds = time.perf_counter() - meter.t0

        return _Callback()


def tokens_in_steps(rows: list[dict[str, list[int]]], first: int, last: int, effective_batch: int) -> int:
    """Real tokens of the examples trained in optimizer steps (first, last], with sequential sampling."""
    return sum(len(r["input_ids"]) for r in rows[first * effective_batch : last * effective_batch])


def run_plain(folder: Path, rows: list[dict[str, list[int]]], steps: int, warmup: int) -> dict[str, Any]:
    """(a) transformers.Trainer defaults, halving the micro-batch on out-of-memory."""
    import torch
    from datasets import Dataset
    from peft import LoraConfig, get_peft_model
    from transformers import Trainer, TrainingArguments

    batch, accum, notes = 4, 1, []
    while True:
        model = get_peft_model(
            load_4bit(folder),
            LoraConfig(r=32, lora_alpha=64, lora_dropout=0.05, target_modules="all-linear", task_type="CAUSAL_LM"),
        )
        meter = Meter(warmup)
        with tempfile.TemporaryDirectory() as out:
            trainer = Trainer(
                model=model,
                args=TrainingArguments(
                    output_dir=out,
                    per_device_train_batch_size=batch,
                    gradient_accumulation_steps=accum,
                    learning_rate=1.5e-4,
                    max_steps=warmup + steps,
                    bf16=True,
                    logging_steps=1,
                    save_strategy="no",
                    report_to="none",
                    train_sampling_strategy="sequential",
                    disable_tqdm=True,
                ),
                train_dataset=Dataset.from_list(rows),
                data_collator=_pad_collator,
                callbacks=[meter.callback()],
            )
            try:
                torch.cuda.reset_peak_memory_stats()
                trainer.train()
                break
            except torch.OutOfMemoryError:
                notes.append(f"out of memory at micro-batch {batch} x accumulation {accum}")
                del trainer, model
                gc.collect()
                torch.cuda.empty_cache()
                if batch == 1:
                    return {"error": "; ".join(notes)}
                batch, accum = batch // 2, accum * 2
    tokens = tokens_in_steps(rows, warmup, warmup + meter.steps, batch * accum)
    result = _figures("plain HF defaults", batch, accum, meter, tokens, notes)
    del trainer, model
    gc.collect()
    torch.cuda.empty_cache()
    return result


def _pad_collator(features: list[dict[str, list[int]]]) -> dict[str, Any]:
    """Pad to the longest row of the batch (what DataCollatorForSeq2Seq / DataCollatorWithPadding do)."""
    import torch

    longest = max(len(f["input_ids"]) for f in features)
    ids = torch.full((len(features), longest), PAD_ID)
    labels = torch.full((len(features), longest), -100)
    mask = torch.zeros((len(features), longest), dtype=torch.long)
    for i, f in enumerate(features):
        n = len(f["input_ids"])
        ids[i, :n] = torch.tensor(f["input_ids"])
        labels[i, :n] = torch.tensor(f["labels"])
        mask[i, :n] = 1
    return {"input_ids": ids, "labels": labels, "attention_mask": mask}


def run_ours(folder: Path, rows: list[dict[str, list[int]]], steps: int, warmup: int) -> dict[str, Any]:
    """(b) the settings of ``lingoforge.trainer.sft_config`` (checkpointing, padding-free, chunked LM head)."""
    import torch
    from datasets import Dataset
    from lingoforge.config import TrainConfig
    from lingoforge.trainer import lora_config
    from trl import SFTConfig, SFTTrainer

    meter = Meter(warmup)
    with tempfile.TemporaryDirectory() as out:
        trainer = SFTTrainer(
            model=load_4bit(folder),
            args=SFTConfig(
                output_dir=out,
                per_device_train_batch_size=4,
                gradient_accumulation_steps=1,
                learning_rate=1.5e-4,
                max_steps=warmup + steps,
                bf16=True,
                gradient_checkpointing=True,
                padding_free=True,
                max_length=None,
                dataset_kwargs={"skip_prepare_dataset": True},
                logging_steps=1,
                save_strategy="no",
                report_to="none",
                train_sampling_strategy="sequential",
                disable_tqdm=True,
            ),
            train_dataset=Dataset.from_list(rows),
            peft_config=lora_config(TrainConfig()),
            processing_class=_tokenizer_stub(),
            callbacks=[meter.callback()],
        )
        torch.cuda.reset_peak_memory_stats()
        trainer.train()
    tokens = tokens_in_steps(rows, warmup, warmup + meter.steps, 4)
    result = _figures("lingoforge settings", 4, 1, meter, tokens, [])
    del trainer
    gc.collect()
    torch.cuda.empty_cache()
    return result


def _tokenizer_stub() -> Any:
    """SFTTrainer wants a tokenizer for its pad token; a tiny Qwen2-compatible one is built offline."""
    from tokenizers import Tokenizer, models
    from transformers import PreTrainedTokenizerFast

    vocab = {f"t{i}": i for i in range(8)} | {"<|endoftext|>": PAD_ID, "<|im_end|>": 151645}
    tok = PreTrainedTokenizerFast(tokenizer_object=Tokenizer(models.WordLevel(vocab, unk_token="t0")))
    tok.pad_token, tok.eos_token = "<|endoftext|>", "<|im_end|>"
    return tok


def _figures(name: str, batch: int, accum: int, meter: Meter, tokens: int, notes: list[str]) -> dict[str, Any]:
    import torch

    return {
        "run": name,
        "micro_batch": batch,
        "grad_accum": accum,
        "steps": meter.steps,
        "seconds": round(meter.seconds, 2),
        "tokens": tokens,
        "tokens_per_second": round(tokens / meter.seconds, 1) if meter.seconds else None,
        "peak_allocated_gb": round(torch.cuda.max_memory_allocated() / 1e9, 2),
        "peak_reserved_gb": round(torch.cuda.max_memory_reserved() / 1e9, 2),
        "notes": notes,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "results" / "train_gpu.json")
    args = parser.parse_args()

    import torch

    if not torch.cuda.is_available():
        raise SystemExit("bench/gpu_train.py needs a CUDA GPU")
    started = time.perf_counter()
    rows = make_rows(4 * (args.steps + args.warmup + 1), seed=0)
    folder = Path(tempfile.mkdtemp(prefix="qwen7b-shaped-"))
    try:
        build_model(folder)
        built = time.perf_counter() - started
        ours = run_ours(folder, rows, args.steps, args.warmup)
        plain = run_plain(folder, rows, args.steps, args.warmup)
    finally:
        shutil.rmtree(folder, ignore_errors=True)

    from lingoforge.plan import plan

    mean_len = sum(len(r["input_ids"]) for r in rows) / len(rows)
    result = {
        "gpu": torch.cuda.get_device_name(0),
        "model": "Qwen2.5-7B-shaped, random weights, 4-bit NF4 double-quant, bf16 compute",
        "lora": "r32 alpha 64 dropout 0.05 all-linear",
        "lengths": "uniform 512-2048",
        "mean_length": round(mean_len),
        "answer_tokens": ANSWER_TOKENS,
        "build_seconds": round(built, 1),
        "plain": plain,
        "ours": ours,
        "speedup": round(ours["tokens_per_second"] / plain["tokens_per_second"], 2)
        if plain.get("tokens_per_second")
        else None,
        "plan_estimate_gb": plan("qwen2.5-7b", rank=32, max_len=2048, batch_size=4, longest_batch_tokens=4 * 2048)[
            "peak_gb"
        ],
        "targets": {"ours_peak_gb_max": 12.0, "speedup_min": 1.5},
        "total_seconds": round(time.perf_counter() - started, 1),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"{'run':<22} {'micro x accum':>13} {'tokens/s':>9} {'peak alloc GB':>13} {'peak reserved GB':>16}")
    for r in (plain, ours):
        if "error" in r:
            print(f"{'plain HF defaults':<22} {r['error']}")
            continue
        print(
            f"{r['run']:<22} {r['micro_batch']:>6} x {r['grad_accum']:<4} {r['tokens_per_second']:>9,.0f} "
            f"{r['peak_allocated_gb']:>13.2f} {r['peak_reserved_gb']:>16.2f}"
        )
    print(
        f"speedup {result['speedup']}x; "
        f"plan estimate for the worst case (4 x 2048 tokens): {result['plan_estimate_gb']} GB; "
        f"total {result['total_seconds']:.0f} s; wrote {args.out}"
    )


if __name__ == "__main__":
    main()
