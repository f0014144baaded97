"""GPU training benchmark: the product's own ``lingoforge.train`` against a plain ``transformers.Trainer`` script.

    python bench/gpu_train.py [--steps 12] [--warmup 3] [--vocab qwen2-vocab.gguf] [--out bench/results/train_gpu.json]
    python bench/gpu_train.py --shape tiny --steps 2 --warmup 1 --out /tmp/smoke.json   # CPU smoke run of the script

Why this shape: an earlier version replayed our settings in its own SFTTrainer script, and its figures (4,630
tokens/s on long rows) said nothing about the 0.81 s steps ``lingoforge train`` took on the same H100 (issue 15).
Here "ours" is ``lingoforge.train.train`` itself: its data checks, encoding and loss mask, language-mixing sampler,
shared-prefix collator, trainer subclass, LM head, callbacks and device defaults (NF4 base, bf16, gradient
checkpointing on CUDA). "plain" is what a user writes with transformers alone on the same encoded rows: the 4-bit
base as lingoforge loads it, LoRA r32 on all linear layers, ``Trainer`` with rows padded to the longest in the
micro-batch and the model's own loss over full logits; on out-of-memory it halves the micro-batch and doubles the
accumulation (same effective batch), as a user would.

Model: random weights with the real Qwen2.5-7B figures (28 layers, hidden 3584, MLP 18944, 28 / 4 heads, vocab
152064) built on the GPU and saved once, with the real Qwen2 tokenizer from ``--vocab`` (a vocab-only GGUF:
``../shared/fixtures/qwen2-vocab.gguf``, or llama.cpp's ``models/ggml-vocab-qwen2.gguf``). ``--shape tiny`` builds a
2-layer model instead, on CPU too, to check the script without a GPU (its figures mean nothing).
Run it as ``bench/gpu_train.py`` (it imports ``bench/common.py`` for the environment record).

Workloads (rows are encoded by lingoforge, so both sides see the same tokens):
- ``tickets``: generated support tickets (~310 tokens), micro-batch 4 (the recipe) and 16;
- ``long``: tickets whose input is repeated to 512-2048 tokens (uniform), micro-batch 4.

Figures per run: steady step time (median of the steps after ``--warmup``, each timed between CUDA syncs), tokens/s
(the examples' tokens per step / steady step time), MFU (6 x parameters x tokens/s over the GPU's peak bf16
TFLOP/s) and peak memory allocated over the steady steps. Targets (issue 15): tickets at micro-batch 4 <= 0.3 s per
step; long rows >= 1.5x plain at equal effective batch, >= 45% MFU, peak <= 10 GB.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import random
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

QWEN25_7B = {
    "hidden_size": 3584,
    "intermediate_size": 18944,
    "num_hidden_layers": 28,
    "num_attention_heads": 28,
    "num_key_value_heads": 4,
    "max_position_embeddings": 32768,
    "rope_theta": 1_000_000.0,
    "rms_norm_eps": 1e-6,
    "tie_word_embeddings": False,
}
TINY = {
    **QWEN25_7B,
    "hidden_size": 64,
    "intermediate_size": 128,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
    "tie_word_embeddings": True,
}
SHAPES = {"7b": QWEN25_7B, "tiny": TINY}
# $LF_VOCAB first: the GPU kit (../shared/tools/gpu-7b) carries the GGUF beside its scripts.
DEFAULT_VOCAB = Path(
    os.environ.get("LF_VOCAB") or Path(__file__).resolve().parents[2] / "shared" / "fixtures" / "qwen2-vocab.gguf"
)
TASK = "support_tickets"
LONG_RANGE = (512, 2048)
MAX_LEN = LONG_RANGE[1] + 512  # a long row may pass its drawn length by one ticket


def build_model(folder: Path, vocab: Path = DEFAULT_VOCAB, shape: str = "7b") -> None:
    """Random bf16 weights of ``shape`` (initialised on the GPU when there is one: seconds for 7B) and the real Qwen2
    tokenizer set up as an instruct model's, saved as one model folder."""
    import torch
    from lingoforge.models import converted_tokenizer
    from transformers import AutoModelForCausalLM, AutoTokenizer, Qwen2Config

    tokenizer = AutoTokenizer.from_pretrained(str(converted_tokenizer(vocab)))
    tokenizer.eos_token, tokenizer.pad_token = "<|im_end|>", "<|endoftext|>"
    ids = {k: tokenizer.convert_tokens_to_ids(t) for k, t in (("bos", "<|endoftext|>"), ("eos", "<|im_end|>"))}
    config = Qwen2Config(
        **SHAPES[shape],
        vocab_size=len(tokenizer),
        bos_token_id=ids["bos"],
        eos_token_id=ids["eos"],
        pad_token_id=ids["bos"],
    )
    torch.manual_seed(0)
    with torch.device("cuda" if torch.cuda.is_available() else "cpu"):
        model = AutoModelForCausalLM.from_config(config, dtype=torch.bfloat16)
    model.save_pretrained(folder, max_shard_size="5GB")
    tokenizer.save_pretrained(folder)
    del model
    _free()


def workloads(task: Any, tokenizer: Any, n: int, seed: int = 0) -> dict[str, list[Any]]:
    """``n`` ticket examples, and ``n`` long ones: the same tickets with the input repeated until the encoded row
    reaches a length drawn uniformly from ``LONG_RANGE`` (the answer, and so the loss, stays the ticket's)."""
    from dataclasses import replace

    tickets = task.generate(n, seed)
    rng = random.Random(seed)
    long = []
    for ex in tickets:
        target, grown = rng.randint(*LONG_RANGE), ex
        while len(encoded(task, [grown], tokenizer)[0].input_ids) < target:
            grown = replace(grown, input=f"{grown.input}\n{ex.input}")
        long.append(grown)
    return {"tickets": tickets, "long": long}


def encoded(task: Any, examples: list[Any], tokenizer: Any) -> list[Any]:
    """``examples`` as ``lingoforge train`` encodes them (chat template, loss on the answer and end token)."""
    from lingoforge.data.io import Located
    from lingoforge.encode import encode

    return encode(task, [Located(e, f"bench example {i}") for i, e in enumerate(examples)], tokenizer, MAX_LEN)


class StepTimer:
    """A TrainerCallback timing every optimizer step between device syncs, and the peak memory after warm-up."""

    def __init__(self, warmup: int) -> None:
        self.warmup = warmup
        self.seconds: list[float] = []
        self.peak_gb: float | None = None

    def callback(self) -> Any:
        import torch
        from transformers import TrainerCallback

        timer, cuda = self, torch.cuda.is_available()

        class _Callback(TrainerCallback):
            started = 0.0

            def on_step_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
                if cuda:
                    torch.cuda.synchronize()
                    if state.global_step == timer.warmup:
                        torch.cuda.reset_peak_memory_stats()
                self.started = time.perf_counter()

            def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
                if cuda:
                    torch.cuda.synchronize()
                timer.seconds.append(time.perf_counter() - self.started)
                if cuda and state.global_step > timer.warmup:
                    timer.peak_gb = torch.cuda.max_memory_allocated() / 1e9

        return _Callback()

    def steady(self) -> float | None:
        """Median seconds of the steps after warm-up (``None`` when none ran)."""
        after = self.seconds[self.warmup :]
        return statistics.median(after) if after else None


def run_ours(folder: Path, task: Any, examples: list[Any], batch: int, steps: int, warmup: int) -> dict[str, Any]:
    """``lingoforge.train`` as the CLI calls it, on ``examples``, with no validation and no checkpoint."""
    from lingoforge.config import TrainConfig
    from lingoforge.train import train

    timer = StepTimer(warmup)
    with tempfile.TemporaryDirectory() as out:
        config = TrainConfig(batch_size=batch, max_steps=warmup + steps, save_steps=10**6, max_len=MAX_LEN)
        result = train(
            task, examples, [], str(folder), Path(out) / "run", config, quiet=True, callbacks=[timer.callback()]
        )
        trained = (result.batch_size, result.grad_accum)
    _free()
    return _figures("lingoforge train", *trained, timer)


def run_plain(folder: Path, rows: list[dict[str, list[int]]], batch: int, steps: int, warmup: int) -> dict[str, Any]:
    """The plain transformers script, on the rows lingoforge encoded; halves the micro-batch on out-of-memory."""
    import torch
    from datasets import Dataset
    from lingoforge.config import TrainConfig
    from lingoforge.trainer import load_model, lora_config
    from peft import get_peft_model
    from transformers import Trainer, TrainingArguments

    cuda = torch.cuda.is_available()
    accum, notes = 1, []
    while True:
        timer = StepTimer(warmup)
        model = get_peft_model(
            load_model(str(folder), TrainConfig(load_in_4bit=cuda), cuda), lora_config(TrainConfig())
        )
        with tempfile.TemporaryDirectory() as out:
            args = TrainingArguments(
                output_dir=out,
                per_device_train_batch_size=batch,
                gradient_accumulation_steps=accum,
                learning_rate=TrainConfig.lr,
                max_steps=warmup + steps,
                bf16=cuda,
                logging_steps=1,
                save_strategy="no",
                report_to="none",
                disable_tqdm=True,
                use_cpu=not cuda,
            )
            trainer = Trainer(
                model=model,
                args=args,
                train_dataset=Dataset.from_list(rows),
                data_collator=_pad_collator,
                callbacks=[timer.callback()],
            )
            try:
                trainer.train()
                break
            except torch.OutOfMemoryError:
                notes.append(f"out of memory at micro-batch {batch} x accumulation {accum}")
                del trainer, model
                _free()
                if batch == 1:
                    return {"run": "plain transformers.Trainer", "error": "; ".join(notes)}
                batch, accum = batch // 2, accum * 2
    del trainer, model
    _free()
    return {**_figures("plain transformers.Trainer", batch, accum, timer), "notes": notes}


def _pad_collator(features: list[dict[str, list[int]]]) -> dict[str, Any]:
    """Pad to the longest row of the micro-batch (what DataCollatorForSeq2Seq does), right side, id 0 masked."""
    import torch

    longest = max(len(f["input_ids"]) for f in features)
    ids = torch.zeros((len(features), longest), dtype=torch.long)
    labels = torch.full((len(features), longest), -100)
    mask = torch.zeros((len(features), longest), dtype=torch.long)
    for i, f in enumerate(features):
        n = len(f["input_ids"])
        ids[i, :n], labels[i, :n], mask[i, :n] = torch.tensor(f["input_ids"]), torch.tensor(f["labels"]), 1
    return {"input_ids": ids, "labels": labels, "attention_mask": mask}


def _figures(name: str, batch: int, accum: int, timer: StepTimer) -> dict[str, Any]:
    steady = timer.steady()
    return {
        "run": name,
        "micro_batch": batch,
        "grad_accum": accum,
        "steps": len(timer.seconds),
        "step_seconds": [round(s, 3) for s in timer.seconds],
        "steady_seconds_per_step": round(steady, 3) if steady else None,
        "peak_allocated_gb": round(timer.peak_gb, 2) if timer.peak_gb is not None else None,
    }


def _with_rates(
    run: dict[str, Any], mean_tokens: float, parameters: float, peak_tflops: float | None
) -> dict[str, Any]:
    """tokens/s of the examples at the steady step time, and MFU against the GPU's peak when it is known."""
    step = run.get("steady_seconds_per_step")
    if not step:
        return run
    rate = run["micro_batch"] * run["grad_accum"] * mean_tokens / step
    mfu = 6 * parameters * rate / (peak_tflops * 1e12) if peak_tflops else None
    return {**run, "tokens_per_second": round(rate, 1), "mfu": round(mfu, 4) if mfu is not None else None}


def _free() -> None:
    import torch

    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=12, help="steady steps measured after the warm-up")
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--vocab", type=Path, default=DEFAULT_VOCAB, help="the Qwen2 vocab-only GGUF")
    parser.add_argument("--shape", choices=sorted(SHAPES), default="7b")
    parser.add_argument("--skip-plain", action="store_true", help="measure lingoforge train only")
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "results" / "train_gpu.json")
    args = parser.parse_args()

    import torch
    from lingoforge import get_task
    from lingoforge.plan import peak_tflops
    from transformers import AutoTokenizer

    cuda = torch.cuda.is_available()
    if args.shape == "7b" and not cuda:
        raise SystemExit("bench/gpu_train.py needs a CUDA GPU for the 7B shape (--shape tiny checks the script on CPU)")
    from common import environment  # bench/common.py: machine, date, versions

    started = time.perf_counter()
    task = get_task(TASK)
    runs: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="qwen7b-shaped-") as tmp:
        folder = Path(tmp)
        build_model(folder, args.vocab, args.shape)
        built = time.perf_counter() - started
        tokenizer = AutoTokenizer.from_pretrained(str(folder))
        gpu = torch.cuda.get_device_name(0) if cuda else None
        peak = peak_tflops(gpu) if gpu else None
        parameters = sum(p.numel() for p in _meta_model(folder).parameters())
        plan = [("tickets", 4), ("tickets", 16), ("long", 4)]
        data = workloads(task, tokenizer, n=max(b for _, b in plan) * (args.warmup + args.steps + 1))
        for workload, batch in plan:
            examples = data[workload][: batch * (args.warmup + args.steps + 1)]
            rows = [
                {"input_ids": list(e.input_ids), "labels": list(e.labels)} for e in encoded(task, examples, tokenizer)
            ]
            mean_tokens = sum(len(r["input_ids"]) for r in rows) / len(rows)
            pair = [run_ours(folder, task, examples, batch, args.steps, args.warmup)]
            if not args.skip_plain:
                pair.append(run_plain(folder, rows, batch, args.steps, args.warmup))
            ours, *plain = (_with_rates(r, mean_tokens, parameters, peak) for r in pair)
            row = {"workload": workload, "micro_batch": batch, "mean_tokens": round(mean_tokens, 1), "ours": ours}
            if plain:
                row["plain"] = plain[0]
                if ours.get("tokens_per_second") and plain[0].get("tokens_per_second"):
                    row["speedup"] = round(ours["tokens_per_second"] / plain[0]["tokens_per_second"], 2)
            runs.append(row)
    result = {
        "benchmark": "train_gpu",
        "environment": environment(),
        "gpu": gpu,
        "peak_bf16_tflops": peak,
        "shape": args.shape,
        "parameters": parameters,
        "warmup_steps": args.warmup,
        "build_seconds": round(built, 1),
        "runs": runs,
        "targets": {
            "tickets_mb4_seconds_per_step_max": 0.3,
            "long_speedup_min": 1.5,
            "long_mfu_min": 0.45,
            "long_peak_gb_max": 10.0,
        },
        "total_seconds": round(time.perf_counter() - started, 1),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    _print(result, args.out)


def _meta_model(folder: Path) -> Any:
    """The model's modules without weights (parameter count for MFU)."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    with torch.device("meta"):
        return AutoModelForCausalLM.from_config(AutoConfig.from_pretrained(folder))


def _print(result: dict[str, Any], out: Path) -> None:
    header = (
        f"{'workload':<9} {'run':<28} {'micro x accum':>13} {'s/step':>7} {'tokens/s':>9} {'MFU':>6} {'peak GB':>8}"
    )
    print(f"{result['gpu'] or 'CPU'}, {result['shape']} shape, {result['parameters'] / 1e9:.2f} B parameters")
    print(header)
    for row in result["runs"]:
        for run in (row["ours"], row.get("plain")):
            if run is None:
                continue
            if "error" in run:
                print(f"{row['workload']:<9} {run['run']:<28} {run['error']}")
                continue
            cells = [
                _cell(run.get("steady_seconds_per_step"), "{:.3f}"),
                _cell(run.get("tokens_per_second"), "{:,.0f}"),
                _cell(run.get("mfu"), "{:.1%}"),
                _cell(run.get("peak_allocated_gb"), "{:.1f}"),
            ]
            print(
                f"{row['workload']:<9} {run['run']:<28} {run['micro_batch']:>6} x {run['grad_accum']:<4} "
                f"{cells[0]:>7} {cells[1]:>9} {cells[2]:>6} {cells[3]:>8}"
            )
        if "speedup" in row:
            print(f"{'':<9} speed-up {row['speedup']}x")
    print(f"total {result['total_seconds']:.0f} s; wrote {out}")


def _cell(value: float | None, fmt: str) -> str:
    return "-" if value is None else fmt.format(value)


if __name__ == "__main__":
    main()
