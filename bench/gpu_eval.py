"""GPU evaluation benchmark: ``lingoforge eval``'s hf backend in each load mode, items/s on 20 test tickets.

    python bench/gpu_eval.py [--items 20] [--max-new-tokens 128] [--out bench/results/eval_gpu.json]
    python bench/gpu_eval.py --shape tiny --out /tmp/smoke.json   # CPU smoke run of the script

Issue 15 measured 1.0 items/s (1.6 constrained) on an H100 for 20 tickets at batch 10 with 128 new tokens, through
a 4-bit base and an unmerged adapter. This script builds the same Qwen2.5-7B-shaped model as ``gpu_train.py`` (random
weights, real Qwen2 tokenizer), trains an adapter for two steps with ``lingoforge.train`` (the weights' values do not
matter for speed; a real run folder does), then evaluates it through ``lingoforge.evaluate`` on generated tickets:
- load mode as the backend chooses it (``describe()["load"]``: 16-bit merged when the GPU holds it) and forced
  ``4bit+adapter`` (the previous path), each at ``eval``'s default batch size and with every item in one batch;
- unconstrained and ``--constrained`` (xgrammar).
A random model rarely stops early, so most answers run to ``--max-new-tokens``: the figures are a worst case for
that budget, the same for every row. Target (issue 15): >= 10 items/s on 20 tickets with up to 128 new tokens.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path
from typing import Any

from gpu_train import DEFAULT_VOCAB, SHAPES, TASK, build_model


def train_adapter(folder: Path, task: Any, run: Path) -> None:
    """A two-step adapter on the model in ``folder``: what ``eval`` loads from a run folder."""
    from lingoforge.config import TrainConfig
    from lingoforge.train import train

    train(task, task.generate(8, seed=0), [], str(folder), run, TrainConfig(max_steps=2, save_steps=10**6), quiet=True)


def measure(
    run: Path, task: Any, tests: list[Any], mode: str | None, batch: int, constrained: bool, max_new_tokens: int
) -> dict[str, Any]:
    """One evaluation of ``run``; ``mode`` None lets the backend choose, as ``lingoforge eval`` does."""
    from lingoforge.backends import get_backend
    from lingoforge.evaluate import evaluate

    started = time.perf_counter()
    with get_backend(str(run), **({"mode": mode} if mode else {})) as backend:
        loaded = time.perf_counter() - started
        report = evaluate(
            backend, task, tests, batch_size=batch, constrained=constrained, max_new_tokens=max_new_tokens
        )
        load = backend.describe()["load"]
    tokens = [p["n_tokens"] for p in report["predictions"]]
    return {
        "mode": load["mode"],
        "dtype": load["dtype"],
        "reason": load["reason"],
        "batch_size": batch,
        "constrained": constrained,
        "load_seconds": round(loaded, 1),
        "items_per_s": report["throughput"]["items_per_s"],
        "total_s": report["throughput"]["total_s"],
        "schema_valid_rate": report["overall"]["schema_valid_rate"],
        "mean_new_tokens": round(sum(tokens) / len(tokens), 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=20)
    parser.add_argument("--max-new-tokens", type=int, default=128)
    parser.add_argument("--vocab", type=Path, default=DEFAULT_VOCAB, help="the Qwen2 vocab-only GGUF")
    parser.add_argument("--shape", choices=sorted(SHAPES), default="7b")
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "results" / "eval_gpu.json")
    args = parser.parse_args()

    import inspect

    import torch
    from common import environment
    from lingoforge import get_task
    from lingoforge.backends.hf import QUANTIZED
    from lingoforge.evaluate import evaluate

    if args.shape == "7b" and not torch.cuda.is_available():
        raise SystemExit("bench/gpu_eval.py needs a CUDA GPU for the 7B shape (--shape tiny checks the script on CPU)")
    started = time.perf_counter()
    task = get_task(TASK)
    tests = task.generate(args.items, seed=5)
    default_batch = inspect.signature(evaluate).parameters["batch_size"].default
    rows = []
    with tempfile.TemporaryDirectory(prefix="gpu-eval-") as tmp:
        folder, run = Path(tmp) / "base", Path(tmp) / "run"
        build_model(folder, args.vocab, args.shape)
        train_adapter(folder, task, run)
        for mode in (None, QUANTIZED):
            for batch in dict.fromkeys((default_batch, args.items)):
                for constrained in (False, True):
                    rows.append(measure(run, task, tests, mode, batch, constrained, args.max_new_tokens))
    result = {
        "benchmark": "eval_gpu",
        "environment": environment(),
        "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        "shape": args.shape,
        "items": args.items,
        "max_new_tokens": args.max_new_tokens,
        "runs": rows,
        "target_items_per_s": 10.0,
        "total_seconds": round(time.perf_counter() - started, 1),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"{result['gpu'] or 'CPU'}, {args.shape} shape, {args.items} tickets, up to {args.max_new_tokens} new tokens")
    print(f"{'mode':<13} {'dtype':<9} {'batch':>5} {'constrained':>11} {'items/s':>8} {'new tokens':>10} {'valid':>6}")
    for r in rows:
        print(
            f"{r['mode']:<13} {r['dtype']:<9} {r['batch_size']:>5} {str(r['constrained']):>11} "
            f"{r['items_per_s']:>8.2f} {r['mean_new_tokens']:>10} {r['schema_valid_rate']:>6.0%}"
        )
    print(f"total {result['total_seconds']:.0f} s; wrote {args.out}")


if __name__ == "__main__":
    main()
