"""``lingoforge run``: the whole pipeline, resumable, with a final summary table."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click
from rich.console import Console
from rich.table import Table

from ..config import TrainConfig
from ..data.io import data_task
from ..data.mapping import ColumnMap
from ..pipeline import Options, Pipeline
from ..references import SHORT
from ..runfolder import RunFolder
from ..task import restrict
from ..verdict import difference, rate
from .options import (
    config_options,
    fields_option,
    file_reading,
    language_option,
    languages_option,
    map_option,
)


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{value:.0%}"


def _sample(row: dict[str, Any] | None) -> str:
    """A score on a handful of items as the items: "1/2" rather than a percentage that moves in 50-point steps."""
    if row is None:
        return "-"
    hits = row["score"] * row["n"]
    return f"{round(hits)}/{row['n']}" if abs(hits - round(hits)) < 1e-6 else f"{row['score']:.0%} of {row['n']}"


def _parse_augment(ctx: click.Context, param: click.Parameter, value: str | None) -> dict[str, int] | str | None:
    if not value or value.strip() == "auto":
        return value.strip() if value else None
    counts: dict[str, int] = {}
    for part in value.split(","):
        lang, _, n = part.partition("=")
        if not lang.strip() or not n.strip().isdigit() or int(n) < 1:
            raise click.BadParameter(f"{part.strip()!r} is not LANG=N (e.g. es=30), nor auto")
        counts[lang.strip()] = int(n)
    return counts


def _ci(value: float | None, ci: Any) -> str:
    return rate({"value": value, "ci": ci})


def _delta(a: float | None, b: float | None, ci: Any) -> str:
    return difference({"delta": None if a is None or b is None else b - a, "ci": ci})


def print_summary(summary: dict[str, Any], console: Console) -> None:
    for line in summary.get("verdict") or []:
        console.print(line, style="bold", markup=False, highlight=False)
    for line in summary.get("collapses") or []:
        console.print(line, style="red", markup=False, highlight=False)
    for line in summary.get("size_warnings") or []:
        console.print(line, style="yellow", markup=False, highlight=False)
    for line in summary.get("training") or []:
        console.print(f"training: {line}", markup=False, highlight=False)
    table = Table(title=f"{summary['task']} on {summary['base']}: {summary['primary_metric']} per language, "
                        "with 95% intervals")
    for col in ("language", "n", "base + schema", "fine-tuned", "Δ", "GGUF (parity sample)"):
        table.add_column(col, justify="right")
    for lang, row in summary["languages"].items():
        table.add_row(lang, str(row.get("n") or "-"), _ci(row["base"], row.get("base_ci")),
                      _ci(row["fine_tuned"], row.get("fine_tuned_ci")),
                      _delta(row["base"], row["fine_tuned"], row.get("delta_ci")), _sample(row["gguf_parity_sample"]))
    o, oci = summary["overall"], summary.get("overall_ci") or {}
    table.add_row("[b]all", "", _ci(o["base"], oci.get("base")), _ci(o["fine_tuned"], oci.get("fine_tuned")),
                  _delta(o["base"], o["fine_tuned"], oci.get("delta")), "")
    console.print(table)
    free = summary.get("base_unconstrained")
    if free:
        valid = _ci(free["schema_valid_rate"], free["schema_valid_ci"])
        console.print(f"the base model asked without the schema: {valid}"
                      " of its answers are the task's JSON (not a reference: the base + schema column is)")
    references = {f: r for f, r in (summary.get("references") or {}).items() if r["overall"]["references"]}
    if references:
        names = list(dict.fromkeys(n for r in references.values() for n in r["overall"]["references"]))
        refs = Table(title="every labelled field, all languages: the fine-tuned model beside what a user would use "
                           "instead (per language: report.html)")
        for col in ("field", "fine-tuned", *[SHORT.get(n, n) for n in names]):
            refs.add_column(col, justify="right")
        for field, result in references.items():
            o = result["overall"]
            refs.add_row(field, rate(o["model"]), *[rate(o["references"][n]) if n in o["references"] else "-"
                                                    for n in names])
        console.print(refs)
    metrics = summary.get("metrics") or {}
    if metrics:
        every = Table(title="all metrics, all languages (95% intervals)")
        for col in ("metric", "base + schema", "fine-tuned"):
            every.add_column(col, justify="right")
        for name, value in metrics["fine_tuned"].items():
            base = metrics["base"].get(name) or {}
            every.add_row(name, _ci(base.get("value"), base.get("ci")), _ci(value["value"], value["ci"]))
        console.print(every)
    for item in summary.get("lagging") or []:
        console.print(f"[yellow]lagging:[/yellow] {item.get('advice', item)}")
    augment = summary.get("augment") or {}
    for lang, n in (augment.get("added") or {}).items():
        before = (augment.get("before") or {}).get(lang)
        after = (summary["languages"].get(lang) or {}).get("fine_tuned")
        console.print(f"augmented {lang} with {n} generated examples: {_pct(before)} before, {_pct(after)} after")
    parity = summary.get("parity") or {}
    if parity:
        console.print(f"GGUF parity: F16 greedy tokens identical to HF on {parity.get('examples')} examples "
                      f"({parity.get('compared_tokens')} tokens)")
        for warning in parity.get("warnings") or []:
            console.print(f"[yellow]quantization:[/yellow] {warning}")
    for name, size in (summary.get("files") or {}).items():
        console.print(f"{name}: {size / 1e6:.1f} MB" if size else name)
    if summary.get("modelfile"):
        console.print(f"Modelfile: {summary['modelfile']}")
    if summary.get("report"):
        console.print(f"report: {summary['report']}")
    deployed = summary.get("deployed")
    if deployed:
        bare = deployed["bare"]
        console.print(f"deployed {deployed['name']} on {deployed['host']}: bare test inputs answered with schema-valid "
                      f"JSON {_pct(bare['generate'])} through `ollama run`, {_pct(bare['chat'])} through /api/chat "
                      f"(eval measured {_pct(bare['eval'])})")
        console.print(deployed["try"], style="bold", soft_wrap=True, markup=False, highlight=False)
        console.print(f"from an application: {deployed['curl']}", soft_wrap=True, markup=False, highlight=False)
    elif summary.get("modelfile"):
        folder = Path(summary["modelfile"]).parent.parent
        console.print(f"next: [bold]lingoforge deploy {folder} --name NAME[/bold], then `ollama run NAME \"<input>\"`")


@click.command()
@click.argument("task_name", metavar="TASK")
@click.option("--base", required=True, help="Preset (qwen2.5-7b-instruct, smollm2-135m, ...), hub id, folder or .gguf.")
@click.option("-o", "--output", "out", type=click.Path(file_okay=False, path_type=Path), required=True,
              help="Run folder.")
@click.option("--data", type=click.Path(dir_okay=False, path_type=Path),
              help="Your examples instead of generated ones.")
@map_option
@language_option
@fields_option
@click.option("--augment", callback=_parse_augment, metavar="LANG=N,...|auto",
              help="Top up languages of --data with N generated examples (training only; marked synthetic); "
              "auto: as many as the last evaluation advised for each lagging language.")
@click.option("-n", "n", type=click.IntRange(10), default=Options.n, show_default=True, help="Examples to generate.")
@config_options("seed", defaults=TrainConfig())
@languages_option
@click.option("--val", type=click.FloatRange(0, 1, max_open=True), default=Options.val,
              show_default=True, help="Fraction held out for validation (per language).")
@click.option("--test", type=click.FloatRange(0, 1, max_open=True), default=Options.test, show_default=True,
              help="Fraction held out for evaluation and parity (per language).")
@config_options(
    "epochs", "lr", "rank", "batch_size", "grad_accum", "max_len", "load_in_4bit", "balance", "max_steps", "save_steps"
)
@config_options("eval_steps", "select", "patience")
@click.option("--eval-limit", type=click.IntRange(1),
              help="Evaluate on at most this many test examples (stratified by language).")
@click.option("--eval-max-new-tokens", type=click.IntRange(1), default=Options.eval_max_new_tokens,
              show_default=True, help="Longest answer generated in evaluation and in the GGUF parity check.")
@click.option("--quant", type=click.Choice(["q5_k_m", "q4_k_m", "q8_0", "f16"]), default=Options.quant,
              show_default=True)
@click.option("--parity-n", type=click.IntRange(1), default=Options.parity_n, show_default=True,
              help="Test examples for the GGUF parity check.")
@click.option("--deploy", is_flag=True, help="Create the model on an Ollama server at the end.")
@click.option("--name", help="Ollama model name (default: <task>-<run folder>).")
@click.option("--host", help="Ollama server (default $OLLAMA_HOST or 127.0.0.1:11434).")
@click.option("--force", is_flag=True, help="Train even when the memory plan says it will not fit.")
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON.")
def run(task_name: str, base: str, out: Path, data: Path | None, mapping: ColumnMap | None, language: str | None,
        fields: tuple[str, ...] | None, augment: dict[str, int] | str | None, n: int, seed: int,
        languages: tuple[str, ...] | None,
        val: float, test: float, eval_limit: int | None, eval_max_new_tokens: int, quant: str, parity_n: int,
        deploy: bool, name: str | None, host: str | None, force: bool, as_json: bool, **train: Any) -> None:
    """Run TASK from examples to an exported (and with --deploy, deployed) model in the run folder -o.

    Rerunning the same command continues where it stopped; stages whose inputs did not change are skipped.
    """
    mapping = file_reading(mapping, language)
    task = RunFolder(out).resolve_task(task_name)
    if data is not None and data.is_file():
        task = data_task(data, task, mapping=mapping, fields=fields)
    elif fields:
        task = restrict(task, fields)
    options = Options(
        task=task, base=base, out=out, data=data, mapping=mapping, augment=augment, n=n, seed=seed,
        languages=list(languages) if languages else None, val=val, test=test,
        train={k: v for k, v in {**train, "seed": seed}.items() if v is not None}, eval_limit=eval_limit,
        eval_max_new_tokens=eval_max_new_tokens, quant=quant, parity_n=parity_n, deploy=deploy, name=name,
        host=host, force=force,
    )
    summary = Pipeline(options).run_all()
    if as_json:
        click.echo(json.dumps(summary, ensure_ascii=False, indent=2))
    else:
        print_summary(summary, Console())
