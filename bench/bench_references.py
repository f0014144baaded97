"""The fine-tuned model beside what a user would use instead, on the README demo, the built-in tasks and public sets.

    python bench/bench_references.py                       # every data set below, one after another
    python bench/bench_references.py demo xsid             # some of them
    python bench/bench_references.py --public runs/public  # where bench/public_data.py wrote xsid/sib200

Each data set is one ``lingoforge run`` on SmolLM2-135M (the offline default) with the demo's recipe, in
``runs/bench-references/RECIPE/NAME`` (made anew each time); its evaluation report gives, per labelled field and
language, the fine-tuned model, the commonest label, the TF-IDF classifier and the base model with the schema
enforced, each with its 95% interval, and the verdict. Prints one table per data set and writes
``bench/results/references.json``. Runs one training at a time: two on two cores slow each other 3-5x.

Recipes are compared by name: results are kept per recipe, and a data set measured under both prints the two side by
side (``--compare`` prints them without running anything). ``after`` is today's defaults. The ``before`` results in
``bench/results/references.json`` were measured with the code of commit abfd2ef, before checkpoints were chosen by
the validation metric, labels balanced and training stopped by patience (each entry's ``code`` or ``date`` says so);
``--recipe before`` reruns that recipe on today's code with the flags that turn the three off, which differs only in
validating twice per epoch instead of every 50 steps.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from common import environment, save
from rich.console import Console
from rich.table import Table

ROOT = Path(__file__).resolve().parents[1]
RECIPE = ["--base", "smollm2-135m", "--epochs", "2", "--lr", "2e-3", "--parity-n", "2", "--quant", "q8_0"]
DATASETS: dict[str, list[str]] = {
    # name: the arguments of `lingoforge run` besides -o and RECIPE (the demo: the README's command itself)
    "demo": [],
    "ecommerce_taxonomy": ["ecommerce_taxonomy", "-n", "200", "--val", "0.05", "--test", "0.2", "--eval-limit", "36",
                           "--eval-max-new-tokens", "64"],
    "contract_extraction": ["contract_extraction", "-n", "120", "--val", "0.05", "--test", "0.15", "--eval-limit",
                            "16", "--eval-max-new-tokens", "192"],
    "xsid": ["{public}/xsid.yaml", "--data", "{public}/xsid.jsonl", "--val", "0.05", "--test", "0.2", "--eval-limit",
             "48", "--eval-max-new-tokens", "32"],
    "sib200": ["{public}/sib200.yaml", "--data", "{public}/sib200.jsonl", "--val", "0.05", "--test", "0.2",
               "--eval-limit", "48", "--eval-max-new-tokens", "32"],
    # the same sentences with label counts skewed 10:1 in every language (bench/public_data.py --skew 10), the shape
    # of a real help-desk export
    "sib200_skewed": ["{public}/sib200_skewed.yaml", "--data", "{public}/sib200_skewed.jsonl", "--val", "0.05",
                      "--test", "0.2", "--eval-limit", "48", "--eval-max-new-tokens", "32"],
}


def demo_arguments() -> list[str]:
    """The README's demo command, without its -o (a bench writes its own run folder)."""
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    line = next(x for x in readme.splitlines() if "lingoforge run support_tickets --base smollm2-135m" in x)
    args = shlex.split(line[line.index("lingoforge run") + len("lingoforge run"):])
    return [a for i, a in enumerate(args) if a != "-o" and (i == 0 or args[i - 1] != "-o")]


RECIPES: dict[str, list[str]] = {
    # name: flags added to every data set's command
    "before": ["--select", "loss", "--patience", "0", "--balance", "off"],
    "after": [],
}


def run(name: str, public: Path, out: Path, recipe: str) -> dict[str, Any]:
    args = demo_arguments() if name == "demo" else [a.format(public=public) for a in DATASETS[name]] + RECIPE
    args += RECIPES[recipe]
    shutil.rmtree(out, ignore_errors=True)  # a fresh run: a kept folder would skip every stage
    load = os.getloadavg()[0]
    started = time.perf_counter()
    subprocess.run([sys.executable, "-m", "lingoforge.cli", "run", *args, "-o", str(out)], check=True, cwd=ROOT)
    return {"date": environment()["date"], **collect(out, args, time.perf_counter() - started, load)}


def collect(out: Path, args: list[str], seconds: float, load: float) -> dict[str, Any]:
    """What a finished run folder shows: per labelled field and slice the model, its references, macro-F1, the
    verdict, and the collapse rate (the share of answers on the model's commonest answer beside the gold's)."""
    report = json.loads((out / "eval" / "report.json").read_text(encoding="utf-8"))
    train = json.loads((out / "run.json").read_text(encoding="utf-8")).get("train", {})
    verdict = report["verdict"]
    free = json.loads((out / "eval" / "base" / "report.json").read_text(encoding="utf-8"))
    fields = {}
    for field, result in verdict["fields"].items():
        slices = {"all": result["overall"], **result["languages"]}
        fields[field] = {key: {"n": s["n"], "model": s["model"], "references": s["references"],
                               "versus": s["versus"], "outcome": s["outcome"], "against": s["against"],
                               "macro_f1": (report["overall"] if key == "all" else report["languages"][key])
                               ["fields"][field]["macro_f1"],
                               "collapse": _collapse(report["answers"][field][key])}
                         for key, s in slices.items()}
    primary = {key: {"value": s["primary"], "ci": s["primary_ci"]}
               for key, s in {"all": report["overall"], **report["languages"]}.items()}
    return {
        "command": ["lingoforge", "run", *args, "-o", str(out)],
        "seconds": round(seconds, 1),
        "load_before": round(load, 2),
        "test_items": report["data"]["n"],
        "primary_metric": report["task"]["primary_metric"],
        "primary": primary,
        "train": {k: train.get(k) for k in ("steps", "best_step", "selection", "stopped", "balance")},
        "schema_valid": {"fine_tuned": report["overall"]["schema_valid_rate"],
                         "base_without_schema": free["overall"]["schema_valid_rate"]},
        "verdict": verdict["lines"],
        "warnings": verdict["warnings"],
        "collapses": report["collapse_lines"],
        "fields": fields,
    }


def _collapse(block: dict[str, Any]) -> dict[str, Any]:
    """The share of answers on the commonest answer, and the gold's commonest share on the same items."""
    answers, gold = block["answers"], block["gold"]
    n = sum(gold.values())
    return {"label": max(answers, key=answers.get) if answers else None,
            "rate": max(answers.values()) / n if answers and n else 0.0,
            "gold_rate": max(gold.values()) / n if n else 0.0}


def compare_rows(before: dict[str, Any], after: dict[str, Any]) -> tuple[str, list[list[str]]]:
    """The primary field's name and one row per slice: the primary metric before and after, with the primary field's
    macro-F1, its references (on the same items in both runs unless the split changed) and the collapse rate."""
    field = next(iter(after["fields"]))
    rows = []
    for key, a in after["fields"][field].items():
        b = before["fields"][field].get(key)
        if b is None:
            continue
        rows.append([key, str(a["n"]), _rate(before["primary"][key]), _rate(after["primary"][key]),
                     f"{b['macro_f1']:.2f} → {a['macro_f1']:.2f}", _rate(a["references"]["majority"]),
                     _rate(a["references"]["classifier"]),
                     f"{b['collapse']['rate']:.0%} → {a['collapse']['rate']:.0%} "
                     f"(gold {a['collapse']['gold_rate']:.0%})"])
    return field, rows


COMPARED = ("slice", "n", "before", "after", "macro-F1", "commonest label", "classifier", "collapse")


def compare(name: str, before: dict[str, Any], after: dict[str, Any], console: Console, markdown: bool) -> None:
    """One table per data set, before -> after (``compare_rows``), as a rich table or as markdown for bench/README."""
    field, rows = compare_rows(before, after)
    title = (f"{name}: {after['primary_metric']} before → after (95% intervals; {field}: macro-F1, references, "
             "collapse = share of answers on one label)")
    if markdown:
        print(f"\n**{title}**\n\n| " + " | ".join(COMPARED) + " |\n|" + " --- |" * len(COMPARED))
        print("\n".join("| " + " | ".join(row) + " |" for row in rows))
        return
    table = Table(title=title)
    for col in COMPARED:
        table.add_column(col, justify="right")
    for row in rows:
        table.add_row(*row)
    console.print(table)


def show(name: str, result: dict[str, Any], console: Console) -> None:
    for field, slices in result["fields"].items():
        names = list(slices["all"]["references"])
        table = Table(title=f"{name}: {field} (95% intervals; {result['test_items']} test items, "
                            f"{result['seconds']:.0f} s)")
        for col in ("slice", "n", "fine-tuned", "macro-F1", *names, "verdict"):
            table.add_column(col, justify="right")
        for key, s in slices.items():
            table.add_row(key, str(s["n"]), _rate(s["model"]), f"{s['macro_f1']:.2f}",
                          *[_rate(s["references"][n]) for n in names], s["outcome"] or "-")
        console.print(table)
    for line in [*result["verdict"], *result["collapses"]]:
        console.print(line, markup=False, highlight=False)


def _rate(block: dict[str, Any]) -> str:
    return f"{block['value']:.0%} [{block['ci'][0]:.0%}–{block['ci'][1]:.0%}]"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("names", nargs="*", default=list(DATASETS), choices=list(DATASETS))
    parser.add_argument("--public", type=Path, default=ROOT / "runs" / "public",
                        help="Folder where bench/public_data.py wrote xsid.* and sib200.*")
    parser.add_argument("--runs", type=Path, default=ROOT / "runs" / "bench-references")
    parser.add_argument("--recipe", choices=list(RECIPES), default="after")
    parser.add_argument("--compare", action="store_true", help="Print before vs after from the results; run nothing")
    parser.add_argument("--markdown", action="store_true", help="With --compare: markdown tables (bench/README.md)")
    options = parser.parse_args()
    console = Console()
    path = Path(__file__).resolve().parent / "results" / "references.json"
    results = json.loads(path.read_text(encoding="utf-8"))["results"] if path.is_file() else {}
    for name in [] if options.compare else options.names:
        results.setdefault(options.recipe, {})[name] = run(name, options.public.resolve(),
                                                           options.runs / options.recipe / name, options.recipe)
        show(name, results[options.recipe][name], console)
        print(f"wrote {save('references', results)}")
    for name in options.names:
        if all(name in results.get(recipe, {}) for recipe in ("before", "after")):
            compare(name, results["before"][name], results["after"][name], console, options.markdown)


if __name__ == "__main__":
    main()
