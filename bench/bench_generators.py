"""Examples per second of each built-in task's generator, against a target per task.

Targets: ≥ 2,000/s for tickets and products (the issue); ≥ 50/s for contracts, the floor a unit test
used to assert (timings vary with machine load, so tests leave them to this benchmark).

    python bench/bench_generators.py        # prints a table, writes bench/results/generators.json
"""

from __future__ import annotations

import time

from common import save
from lingoforge import get_task
from rich.console import Console
from rich.table import Table

RUNS = {"support_tickets": 5000, "ecommerce_taxonomy": 5000, "contract_extraction": 500}
TARGET_PER_S = {"support_tickets": 2000, "ecommerce_taxonomy": 2000, "contract_extraction": 50}


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
        rate = n / best
        rows.append({"task": name, "n": n, "seconds": round(best, 3), "examples_per_s": round(rate),
                     "target_per_s": TARGET_PER_S[name], "met": rate >= TARGET_PER_S[name],
                     "mean_input_chars": round(chars)})
    table = Table(title="generator throughput (best of 3)")
    for col in ("task", "n", "seconds", "examples/s", "target/s", "met", "mean input chars"):
        table.add_column(col, justify="right")
    for r in rows:
        table.add_row(r["task"], str(r["n"]), f"{r['seconds']:.3f}", f"{r['examples_per_s']:,}",
                      f"≥ {r['target_per_s']:,}", "yes" if r["met"] else "no", str(r["mean_input_chars"]))
    Console().print(table)
    print(f"wrote {save('generators', rows)}")


if __name__ == "__main__":
    main()
