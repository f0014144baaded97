"""``tokens`` on 100,000 examples with the real Qwen2 tokenizer (target: at most 60 s on 2 cores).

    python bench/bench_tokens.py [--n 100000] [--tokenizer ../shared/fixtures/qwen2-vocab.gguf]

Same synthetic examples as ``bench_data.py`` (10 languages). The time covers the whole report:
rendering the chat template, the batched tokenization of sequences and of inputs, the statistics.
Loading the tokenizer is timed apart (a GGUF is converted once, then read from the cache).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from importlib.metadata import version
from pathlib import Path

from bench_data import LANGUAGES, TARGET_S, _StageClock, bench_task, synthetic_records
from rich.console import Console
from rich.table import Table

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from lingoforge.fsutil import write_json  # noqa: E402
from lingoforge.task import Example  # noqa: E402
from lingoforge.tokens import load_tokenizer, token_report  # noqa: E402

DEFAULT_TOKENIZER = Path(__file__).resolve().parents[2] / "shared" / "fixtures" / "qwen2-vocab.gguf"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=100_000)
    parser.add_argument("--tokenizer", default=str(DEFAULT_TOKENIZER))
    args = parser.parse_args()
    task = bench_task()
    examples = []
    for line in synthetic_records(args.n):
        try:
            examples.append(Example.from_record(json.loads(line)))
        except json.JSONDecodeError:
            continue
    start = time.perf_counter()
    load_tokenizer(args.tokenizer)
    load_s = time.perf_counter() - start
    load_before = os.getloadavg()[0]
    clock = _StageClock()
    wall, cpu = time.perf_counter(), time.process_time()
    report = token_report(examples, task, args.tokenizer, stages=clock)
    end = time.perf_counter()
    wall, cpu = end - wall, time.process_time() - cpu
    stages = clock.durations(end)
    console = Console()
    table = Table(
        title=f"tokens, {len(examples):,} examples in {len(LANGUAGES)} languages ({Path(args.tokenizer).name})"
    )
    table.add_column("stage")
    table.add_column("seconds", justify="right")
    table.add_row("load tokenizer (not counted)", f"{load_s:.2f}")
    for name, seconds in stages.items():
        table.add_row(name, f"{seconds:.2f}")
    table.add_row("[bold]total wall[/]", f"[bold]{wall:.2f}[/]")
    table.add_row("total CPU", f"{cpu:.2f}")
    console.print(table)
    per_lang = Table(title="per language")
    for col in ("language", "mean", "p95", "max", "tokens/char"):
        per_lang.add_column(col, justify="right")
    for lang, s in report["languages"].items():
        per_lang.add_row(lang, f"{s['mean']:.0f}", str(s["p95"]), str(s["max"]), f"{s['tokens_per_char']:.2f}")
    console.print(per_lang)
    console.print(
        f"max_seq_length {report['max_seq_length']}; "
        f"target ≤ {TARGET_S:.0f} s: {'met' if wall <= TARGET_S else 'MISSED'}; "
        f"load average {load_before:.1f} on {os.cpu_count()} CPUs"
    )
    out = Path(__file__).resolve().parent / "results" / "bench_tokens.json"
    write_json(
        out,
        {
            "benchmark": "tokens",
            "examples": len(examples),
            "tokenizer": Path(args.tokenizer).name,
            "wall_s": round(wall, 2),
            "cpu_s": round(cpu, 2),
            "load_tokenizer_s": round(load_s, 2),
            "target_s": TARGET_S,
            "met": wall <= TARGET_S,
            "stages_s": stages,
            "max_seq_length": report["max_seq_length"],
            "languages": report["languages"],
            "machine": {
                "python": platform.python_version(),
                "platform": platform.platform(),
                "cpus": os.cpu_count(),
                "load_average_1m": round(load_before, 1),
            },
            "versions": {p: version(p) for p in ("lingoforge", "transformers", "tokenizers", "numpy")},
        },
    )
    console.print(f"wrote {out}")


if __name__ == "__main__":
    main()
