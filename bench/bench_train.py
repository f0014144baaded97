"""CPU training throughput: ``lingoforge.train`` versus a plain SFTTrainer script, same data, same settings.

    python bench/bench_train.py [--steps 20] [--examples 80] [--nf4-steps 6]

Both train SmolLM2-135M-Instruct (the bundled offline model, fp32 LoRA r32 all-linear, micro-batch 4, lr
1.5e-4 cosine) on the same generated support tickets (the task's real prompt: about 330 tokens per example,
210 of them shared), in this one process, one after the other. The plain script keeps trl's defaults
(gradient checkpointing, padded rows) except bf16 autocast (see ``plain_sft``); ours is ``lingoforge train``
as users run it (no checkpointing on CPU, shared-prefix rows, the loss head on trained positions only).
Throughput is the examples' tokens per second (non-pad tokens, as trl counts them for the
plain run; for ours the tokens the examples hold before their shared prefix is packed once), measured from the
end of step 1 to the end of the last step, so model loading, the first step's warm-up, evaluation and
checkpoints are excluded for both. A third
short run measures our recipe with 4-bit NF4 base weights on CPU, the figure behind the CPU default.
Writes ``bench/results/train_cpu.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).resolve().parent / "results" / "train_cpu.json"


def timer_callback() -> Any:
    """Records (step, seconds since train begin, trl's cumulative real-token count) at every logged step."""
    from transformers import TrainerCallback

    class Timer(TrainerCallback):
        def __init__(self) -> None:
            self.t0 = 0.0
            self.points: list[tuple[int, float, int]] = []

        def on_train_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            self.t0 = time.perf_counter()

        def on_log(
            self, args: Any, state: Any, control: Any, logs: dict[str, float] | None = None, **kwargs: Any
        ) -> None:
            if logs and "loss" in logs and "num_tokens" in logs:
                self.points.append((state.global_step, time.perf_counter() - self.t0, int(logs["num_tokens"])))

        def summary(self) -> dict[str, float]:
            (s1, t1, n1), (s2, t2, n2) = self.points[0], self.points[-1]
            return {
                "steps": s2,
                "tokens": n2,
                "seconds": round(t2, 2),
                "steady_steps": s2 - s1,
                "steady_seconds": round(t2 - t1, 2),
                "seconds_per_step": round((t2 - t1) / (s2 - s1), 3),
                "tokens_per_second": round((n2 - n1) / (t2 - t1), 1),
            }

    return Timer()


def plain_sft(location: str, task: Any, examples: list[Any], steps: int, batch: int) -> dict[str, float]:
    """What a user writes from the trl docs: conversational prompt-completion data, defaults otherwise, except
    ``bf16=False``: trl defaults to bf16 autocast, which this CPU (no AVX512-BF16) emulates, one core busy and a
    step taking minutes; fp32 is the precision ours trains in, so the two compare the same arithmetic."""
    import torch
    from datasets import Dataset
    from lingoforge.prompts import prompt_completion
    from peft import LoraConfig
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import SFTConfig, SFTTrainer

    timer = timer_callback()
    with tempfile.TemporaryDirectory() as out:
        trainer = SFTTrainer(
            model=AutoModelForCausalLM.from_pretrained(location, dtype=torch.float32),
            args=SFTConfig(
                output_dir=out,
                per_device_train_batch_size=batch,
                learning_rate=1.5e-4,
                lr_scheduler_type="cosine",
                warmup_steps=0.05,
                max_steps=steps,
                max_length=2048,
                logging_steps=1,
                save_strategy="no",
                eval_strategy="no",
                report_to="none",
                use_cpu=True,
                bf16=False,
                seed=0,
                disable_tqdm=True,
            ),
            train_dataset=Dataset.from_list([prompt_completion(task, e) for e in examples]),
            processing_class=AutoTokenizer.from_pretrained(location),
            peft_config=LoraConfig(
                r=32, lora_alpha=64, lora_dropout=0.05, target_modules="all-linear", task_type="CAUSAL_LM"
            ),
            callbacks=[timer],
        )
        trainer.train()
    return timer.summary()


def ours(
    location: str, task: Any, train_ex: list[Any], val_ex: list[Any], steps: int, batch: int, four_bit: bool
) -> dict[str, float]:
    from lingoforge.config import TrainConfig
    from lingoforge.train import train

    timer = timer_callback()
    with tempfile.TemporaryDirectory() as out:
        train(
            task,
            train_ex,
            val_ex,
            location,
            out,
            TrainConfig(batch_size=batch, max_steps=steps, save_steps=steps, load_in_4bit=four_bit, max_len=2048),
            quiet=True,
            callbacks=[timer],
        )
    return timer.summary()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--examples", type=int, default=80)
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--nf4-steps", type=int, default=6, help="steps of the 4-bit run (0 skips it)")
    args = parser.parse_args()

    import torch
    from lingoforge import get_task
    from lingoforge.models import resolve_base

    task = get_task("support_tickets")
    location = resolve_base("smollm2-135m").weights()
    examples = task.generate(args.examples, seed=0)
    val = task.generate(len(task.languages), seed=1)
    load_before = os.getloadavg()

    plain = plain_sft(location, task, examples, args.steps, args.batch_size)
    mine = ours(location, task, examples, val, args.steps, args.batch_size, four_bit=False)
    nf4 = (
        ours(location, task, examples, val, args.nf4_steps, args.batch_size, four_bit=True)
        if args.nf4_steps > 1
        else None
    )

    result = {
        "model": "SmolLM2-135M-Instruct (fp32 LoRA r32 all-linear)",
        "task": "support_tickets",
        "examples": args.examples,
        "batch_size": args.batch_size,
        "torch_threads": torch.get_num_threads(),
        "cpus": os.cpu_count(),
        "machine": platform.machine(),
        "load_average_before": [round(x, 1) for x in load_before],
        "load_average_after": [round(x, 1) for x in os.getloadavg()],
        "plain_sfttrainer": plain,
        "lingoforge": mine,
        "ratio_tokens_per_second": round(mine["tokens_per_second"] / plain["tokens_per_second"], 2),
    }
    if nf4:
        result["cpu_precision"] = {
            "fp32_seconds_per_step": mine["seconds_per_step"],
            "nf4_seconds_per_step": nf4["seconds_per_step"],
            "fp32_tokens_per_second": mine["tokens_per_second"],
            "nf4_tokens_per_second": nf4["tokens_per_second"],
            "nf4_steps": nf4["steps"],
        }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")

    rows = [("plain SFTTrainer", plain), ("lingoforge train", mine)] + ([("lingoforge --4bit", nf4)] if nf4 else [])
    print(f"{'run':<18} {'steps':>5} {'tokens':>7} {'s/step':>7} {'tokens/s':>9}")
    for name, r in rows:
        print(
            f"{name:<18} {r['steps']:>5} {r['tokens']:>7} {r['seconds_per_step']:>7.2f} {r['tokens_per_second']:>9.1f}"
        )
    print(
        f"ratio lingoforge / plain: {result['ratio_tokens_per_second']:.2f}  "
        f"(load average {load_before[0]:.1f} -> {os.getloadavg()[0]:.1f} "
        f"on {os.cpu_count()} CPUs; a shared machine makes absolute figures noisy)"
    )
    print(f"wrote {RESULTS}", file=sys.stderr)


if __name__ == "__main__":
    main()
