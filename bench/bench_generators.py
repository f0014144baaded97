"""Examples per second of each built-in task's generator (target: ≥ 2,000/s for tickets and products).

    python bench/bench_generators.py        # prints a table, writes bench/results/generators.json
"""

from __future__ import annotations

import time

from common import save
from rich.console import Console
from rich.table import Table

from lingoforge import get_task

RUNS = {"support_tickets": 5000, "ecommerce_taxonomy": 5000, "contract_extraction": 500}


def main() -> None:
    rows = []
    for name, n in RUNS.items():
        task = get_task(name)
        task.generate(50, 99)  # load lexicons outside the timing
        best = float("inf")
        for seed in range(3):
            start = time.perf_counter()
            examples = task.generate(n, seed)
            best = min(best, time.perf_counter() - start)
        chars = sum(len(e.input) for e in examples) / len(examples)
        rows.append({"task": name, "n": n, "seconds": round(best, 3), "examples_per_s": round(n / best),
                     "mean_input_chars": round(chars)})
    table = Table(title="generator throughput (best of 3)")
    for col in ("task", "n", "seconds", "examples/s", "mean input chars"):
        table.add_column(col, justify="right")
    for r in rows:
        table.add_row(r["task"], str(r["n"]), f"{r['seconds']:.3f}", f"{r['examples_per_s']:,}", str(r["mean_input_chars"]))
    Console().print(table)
    print(f"wrote {save('generators', rows)}")


if __name__ == "__main__":
    main()
