"""End-to-end timing of the offline demo, per stage (the README's main command, in a fresh run folder).

    python bench/bench_demo.py        # prints a table, writes bench/results/demo.json

Runs ``lingoforge run`` with the README's demo settings in a temporary folder and reads the per-stage
seconds and the base vs fine-tuned accuracy back from the run folder's run.json and summary.json.
"""

from __future__ import annotations

import json
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import save
from rich.console import Console
from rich.table import Table


def main() -> None:
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text(encoding="utf-8")
    line = next(x for x in readme.splitlines() if "lingoforge run support_tickets --base smollm2-135m" in x)
    args = shlex.split(line[line.index("lingoforge run") + len("lingoforge run"):])
    args = [a for i, a in enumerate(args) if a != "-o" and (i == 0 or args[i - 1] != "-o")]
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "demo"
        started = time.perf_counter()
        subprocess.run([sys.executable, "-m", "lingoforge.cli", "run", *args, "-o", str(out)], check=True)
        total = time.perf_counter() - started
        summary = json.loads((out / "summary.json").read_text(encoding="utf-8"))
    stages = summary["stage_seconds"]
    table = Table(title=f"demo: lingoforge run {' '.join(args)}")
    table.add_column("stage")
    table.add_column("seconds", justify="right")
    for stage, seconds in stages.items():
        table.add_row(stage, f"{seconds:.1f}")
    table.add_row("[b]total (with start-up)", f"{total:.1f}")
    Console().print(table)
    Console().print(f"{summary['primary_metric']}: base {summary['overall']['base']:.1%} → "
                    f"fine-tuned {summary['overall']['fine_tuned']:.1%}")
    result = {
        "command": ["lingoforge", "run", *args],
        "total_s": round(total, 1),
        "stages_s": stages,
        "overall": summary["overall"],
        "languages": summary["languages"],
        "metrics": summary.get("metrics"),
    }
    print(f"wrote {save('demo', result)}")


if __name__ == "__main__":
    main()
