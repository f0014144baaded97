"""``predict`` throughput on one vs two Ollama servers, each pinned to its own core: does a fleet scale?

    LINGOFORGE_OLLAMA_BIN=/path/to/ollama python bench/bench_scale.py runs/demo [--n 200]

Deploys the run's export to a private ``ollama serve`` (as ``NAME`` with ``num_thread 1``, so that neither
server's runner spreads over the other's core), copies its models folder for a second one, starts both again
with ``taskset -c 0`` and ``taskset -c 1`` (one request at a time each, ``OLLAMA_NUM_PARALLEL=1``), then
predicts the same ``--n`` generated tickets through ``lingoforge.predict`` on the first server alone and on
both. Prints items/s and the speed-up, and writes ``bench/results/scale.json`` with the load average before
and after each pass (the client shares the cores).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import tempfile
import time
from pathlib import Path

from common import save, serve_ollama
from lingoforge.backends import Servers
from lingoforge.deploy import deploy
from lingoforge.predict import predict
from lingoforge.runfolder import RunFolder
from rich.console import Console
from rich.table import Table

NAME = "bench-scale"


def _pass(task, tickets: Path, out: Path, hosts: tuple[str, ...]) -> dict:
    load_before = os.getloadavg()[0]
    started = time.perf_counter()
    summary = predict(f"ollama:{NAME}", task, tickets, out, servers=Servers(hosts))
    wall = time.perf_counter() - started
    return {"servers": len(hosts), "items": summary["written"], "valid": summary["valid"], "wall_s": round(wall, 1),
            "items_per_s": round(summary["written"] / wall, 3), "per_server": summary["servers"],
            "load_before": round(load_before, 2), "load_after": round(os.getloadavg()[0], 2)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", type=Path)
    parser.add_argument("--n", type=int, default=200)
    args = parser.parse_args()
    binary = os.environ.get("LINGOFORGE_OLLAMA_BIN") or "ollama"
    task = RunFolder(args.run).task()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        tickets = root / "tickets.jsonl"
        tickets.write_text("".join(json.dumps({"id": i, "input": e.input}) + "\n"
                                   for i, e in enumerate(task.generate(args.n, seed=2026))), encoding="utf-8")
        # Deployed (and checked) once on an unpinned server, then the models folder is copied for the second:
        # a runner pinned to one core with its default two threads takes minutes per answer.
        with serve_ollama(binary, root / "a") as (_, _, url):
            import ollama

            deploy(args.run, f"{NAME}-base", host=url, n_check=1)
            ollama.Client(host=url).create(model=NAME, from_=f"{NAME}-base", parameters={"num_thread": 1})
        shutil.copytree(root / "a" / "models", root / "b" / "models")
        with serve_ollama(binary, root / "a", cpus="0", OLLAMA_NUM_PARALLEL="1") as (_, _, a), \
                serve_ollama(binary, root / "b", cpus="1", OLLAMA_NUM_PARALLEL="1") as (_, _, b):
            first = root / "first.jsonl"
            first.write_text(tickets.read_text(encoding="utf-8").splitlines(keepends=True)[0], encoding="utf-8")
            for url in (a, b):  # loads the model: the passes time answers, not loading
                predict(f"ollama:{NAME}", task, first, root / f"warm-{url[-5:]}.jsonl", servers=Servers((url,)),
                        max_new_tokens=1)
            rows = [_pass(task, tickets, root / "one.jsonl", (a,)), _pass(task, tickets, root / "two.jsonl", (a, b))]
            same = (root / "one.jsonl").read_text(encoding="utf-8") == (root / "two.jsonl").read_text(encoding="utf-8")
    speedup = rows[1]["items_per_s"] / rows[0]["items_per_s"]
    table = Table(title=f"predict, {args.n} tickets, {args.run}: one Ollama server per core")
    for col in ("servers", "items", "valid", "wall s", "items/s", "load before → after"):
        table.add_column(col, justify="right")
    for row in rows:
        table.add_row(str(row["servers"]), str(row["items"]), str(row["valid"]), f"{row['wall_s']:.1f}",
                      f"{row['items_per_s']:.2f}", f"{row['load_before']:.2f} → {row['load_after']:.2f}")
    Console().print(table)
    print(f"speed-up with two servers: {speedup:.2f}x (target >= 1.6x); identical answers: {same}")
    path = save("scale", {"run": str(args.run), "n": args.n, "passes": rows, "speedup": round(speedup, 3),
                          "identical_outputs": same})
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
