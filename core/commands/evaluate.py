"""``lingoforge eval``: the per-language report."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click
from rich.console import Console

from ..backends import BACKENDS, Servers, resolve_model
from ..data.mapping import ColumnMap
from ..errors import LingoforgeError
from .options import echo_servers, file_reading, language_option, map_option, model_options, task_for


@click.command("eval")
@click.argument("model")
@model_options
@click.option(
    "--data",
    "data_path",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Test data (default: the run folder's data/test.jsonl).",
)
@map_option
@language_option
@click.option("--compare", "compare_model", help="A second MODEL to put side by side (deltas = it − MODEL).")
@click.option("--compare-backend", type=click.Choice(BACKENDS), help="Backend of the --compare model.")
@click.option(
    "-o",
    "--output",
    type=click.Path(file_okay=False, path_type=Path),
    help="Report folder (default: the run folder's eval/, else ./eval).",
)
@click.option("--limit", type=click.IntRange(1), help="Evaluate at most N items, balanced over languages.")
@click.option(
    "--batch-size",
    type=click.IntRange(1),
    default=8,
    show_default=True,
    help="Items per generate call for hf (served models: --parallel).",
)
@click.option("--threshold", type=click.FloatRange(0, 1), help="Also flag languages under this primary-metric value.")
@click.option(
    "--train-data",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Training examples for the references (commonest label, TF-IDF classifier, nearest training answer); "
    "default: the run folder's data/train.jsonl.",
)
@click.option(
    "--base-reference/--no-base-reference",
    default=True,
    show_default=True,
    help="For a run folder, also ask its base model the same items with the schema enforced (eval/base-constrained/) "
    "and set the model beside it.",
)
def eval_cmd(
    model: str,
    task_name: str | None,
    backend: str | None,
    constrained: bool,
    servers: Servers,
    max_new_tokens: int,
    as_json: bool,
    data_path: Path | None,
    mapping: ColumnMap | None,
    language: str | None,
    compare_model: str | None,
    compare_backend: str | None,
    output: Path | None,
    limit: int | None,
    batch_size: int,
    threshold: float | None,
    train_data: Path | None,
    base_reference: bool,
) -> None:
    """Evaluate MODEL per language: accuracy, macro-F1, task metrics, validity, wrong-language answers,
    consistency, latency; names lagging languages with advice and writes report.json/html + charts.

    MODEL: a run folder, a merged model folder, a .gguf file, ollama:NAME, or a base preset/hub id.
    Every figure comes with its 95% interval and, when the training data is known (a run folder, or
    --train-data), beside what a user would use instead: the commonest label, a TF-IDF classifier and the base
    model with the schema enforced; the summary opens with one verdict line per labelled field.

    Answers are saved to predictions.jsonl as they come; rerunning after an interruption generates only
    the missing ones (with other settings it starts over). Gold outputs that do not fit the task's schema
    stop the evaluation before anything is generated.
    """
    from ..data.io import load_examples
    from ..evaluate import base_reference as ask_base
    from ..evaluate import compare, evaluate
    from ..report import advice_by_model, model_title, render_references, render_table, write_report

    spec = resolve_model(model)
    task = task_for(task_name, spec)
    if data_path is None:
        if spec.run is None:
            raise LingoforgeError("say which test data to use: --data TEST.jsonl")
        data_path = spec.run.data / "test.jsonl"
    reading = file_reading(mapping, language)
    examples = [item.example for item in load_examples(data_path, task, gold=True, mapping=reading)]
    out = output or (spec.run.eval if spec.run is not None else Path("eval"))
    console = Console(stderr=True)
    options: dict[str, Any] = dict(
        constrained=constrained,
        batch_size=batch_size,
        max_new_tokens=max_new_tokens,
        servers=servers,
        limit=limit,
        threshold=threshold,
        source=str(data_path),
        console=console,
        predictions=out / "predictions.jsonl",
    )
    if compare_model:
        report = compare(spec, compare_model, task, examples, backend_a=backend, backend_b=compare_backend,
                         train_data=train_data, **options)
    else:
        base = None
        if base_reference and spec.run is not None:
            console.print("reference: the base model with the schema enforced")
            base = ask_base(spec.run, task, examples, out / "base-constrained", limit=limit, batch_size=batch_size,
                            max_new_tokens=max_new_tokens, console=console)
        report = evaluate(spec, task, examples, backend=backend, train_data=train_data, base_reference=base, **options)
    paths = write_report(report, out)
    servers = report["model"].get("servers", [])
    if as_json:
        click.echo(paths["json"].read_text(encoding="utf-8"), nl=False)
        echo_servers(servers, None, shares=False)
        return
    say_headline(report)
    for table in render_references(report):
        Console().print(table)
    Console().print(render_table(report))
    sections = advice_by_model(report)
    for role, advised, lagging in sections:
        if len(sections) > 1:
            click.echo(f"{model_title(role, advised)}:")
            if not lagging:
                click.echo("  no language lags the mean by more than 5 points")
        for lag in lagging:
            click.secho(("  " if len(sections) > 1 else "") + lag["advice"], fg="red")
            if lag.get("most_confused"):
                click.echo(("    " if len(sections) > 1 else "  ") + lag["most_confused"]["hint"])
    echo_servers(servers, report["throughput"]["total_s"])
    click.echo(f"report: {paths['html']}  (json: {paths['json']}, predictions: {paths['predictions']})")


def say_headline(report: dict[str, Any]) -> None:
    """The verdict per field first, then the collapses and what the test split is too small to tell."""
    from ..report import headline

    colours = {"verdict": None, "collapse": "red", "warning": "yellow"}
    for kind, line in headline(report):
        click.secho(line, fg=colours[kind], bold=kind == "verdict")
    if not report.get("verdict", {}).get("references"):
        click.echo("no references: evaluate a run folder or give --train-data to set the model beside the commonest "
                   "label and a TF-IDF classifier")
