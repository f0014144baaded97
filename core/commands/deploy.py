"""``lingoforge deploy``: create an exported model on Ollama servers (one, or a fleet), and check each answers as
exported."""

from __future__ import annotations

import contextlib
import json
import shlex
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from ..backends import SERVED, Servers
from ..errors import listed


@click.command()
@click.argument("run_or_export", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--name", required=True,
              help="Ollama model name, [namespace/]model[:tag]; with --check, the name the server serves it as.")
@click.option("--host", "hosts", multiple=True,
              help="Ollama server URL; repeat for a fleet (default: $OLLAMA_HOST or http://127.0.0.1:11434).")
@click.option("--checks", type=click.IntRange(min=1), default=5, show_default=True,
              help="Test inputs asked through Ollama and llama.cpp.")
@click.option("--check", "check_only", is_flag=True,
              help="Create nothing: ask the model already served as --name the test inputs, on each --host.")
@click.option("--backend", type=click.Choice(SERVED), default="ollama", show_default=True,
              help="With --check: the server's API (openai: vLLM, TGI, llama.cpp's server, Ollama's /v1).")
@click.option("--api-key-env", metavar="VAR",
              help="With --check --backend openai: the variable holding the API key [OPENAI_API_KEY, if set].")
@click.option("--force", is_flag=True,
              help="Create the model even when its own answers are not the task's JSON (then it is compared with "
                   "llama.cpp only where they are).")
@click.option("--json", "as_json", is_flag=True, help="Print every server's summary as JSON (and no progress).")
def deploy(run_or_export: Path, name: str, hosts: tuple[str, ...], checks: int, check_only: bool, backend: str,
           api_key_env: str | None, force: bool, as_json: bool) -> None:
    """Create the exported model on Ollama servers, check each with `show` and test inputs.

    First, once a server answers, llama.cpp answers the test inputs on the exported GGUF: when fewer than half
    of these answers are the task's JSON, nothing is created and the exit status is 1, with one line saying
    how many were and one that was not (train longer, or pass --force to create the model anyway). Ollama's
    answers must then equal llama.cpp's where those are the task's JSON, and schema-constrained answers parse.

    With --check, nothing is created: the model some engine already serves as --name is asked the run's test
    inputs with the training prompt on each --host, and must answer schema-valid JSON as often as the run's
    eval measured; any server that fails or cannot be asked makes the exit status 1.

    Every --host gets the model even when another fails; the failed ones are listed with a line to retry them
    (blobs a server already has are not uploaded again). The exit status is 1 when no server passed, or when a
    server now holds the model but failed its checks (it may answer wrong); a server that could not be reached
    or refused is a warning while others serve the model.
    """
    from ..deploy import deploy_fleet
    from ..progress import rich_stages, silent

    if check_only:
        if force:
            raise click.UsageError("--force goes without --check: --check creates nothing")
        _check(run_or_export, name, backend, Servers(hosts, api_key_env=api_key_env), checks, as_json)
        return
    if backend != "ollama" or api_key_env:
        raise click.UsageError("--backend and --api-key-env go with --check: deploy creates models on Ollama")
    if not as_json:
        _echo_verdict(run_or_export)
    with contextlib.nullcontext(silent) if as_json else rich_stages() as stages:
        fleet = deploy_fleet(run_or_export, name, hosts, n_check=checks, stages=stages,
                             on_host=None if as_json else _printer(), force=force)
    if as_json:
        click.echo(json.dumps(fleet, ensure_ascii=False, indent=2))
    records = fleet["hosts"]
    failed = [record for record in records if "error" in record]
    if len(records) == 1 and failed:
        raise click.ClickException(failed[0]["error"])
    head = f"deployed to {len(fleet['deployed'])} of {len(records)} servers"
    if not failed:
        if len(records) > 1:
            click.echo(head)
        return
    retry = (f"\nretry them: lingoforge deploy {shlex.quote(str(run_or_export))} --name {shlex.quote(name)} "
             + " ".join(f"--host {shlex.quote(record['host'])}" for record in failed) + f" --checks {checks}"
             + (" --force" if force else "") if fleet["deployed"] else "")
    report = listed(f"{head}; failed", [_why(record, name) for record in failed]) + retry
    if not fleet["deployed"] or any(record["created"] for record in failed):
        raise click.ClickException(report)
    click.secho(f"warning: {report}", fg="yellow", err=True)


def _check(run_or_export: Path, name: str, backend: str, servers: Servers, checks: int, as_json: bool) -> None:
    from ..deploy import check_served

    result = check_served(run_or_export, name, backend, servers, checks)
    if as_json:
        click.echo(json.dumps(result, ensure_ascii=False, indent=2))
    for record in result["hosts"]:
        if "n" in record and not as_json:
            measured = "not evaluated" if record["eval"] is None else f"{record['eval']:.0%}"
            click.echo(f"{record['host']}: {name} answered schema-valid JSON to {record['valid']:.0%} of "
                       f"{record['n']} test inputs (the run's eval measured {measured})")
    if result["failed"]:
        failed = [f"{r['host']} ({r['error']})" for r in result["hosts"] if "error" in r]
        raise click.ClickException(listed(f"{name} passed on {len(result['passed'])} of {len(result['hosts'])} "
                                          "servers; failed", failed))


def _why(record: dict[str, Any], name: str) -> str:
    """A failed server and the reason, saying when the model is there anyway (it may answer wrong)."""
    where = f"{name} is there but failed its checks: " if record["created"] else ""
    return f"{record['host']} ({where}{record['error']})"


def _printer() -> Callable[[dict[str, Any]], None]:
    """What the CLI prints as each server is done: once, the model's own answers (the first server that got them),
    then each server that passed; failures are listed at the end."""
    told = False

    def on_host(summary: dict[str, Any]) -> None:
        nonlocal told
        if summary.get("own") and not told:
            told = True
            _echo_own(summary["own"])
        _echo_passed(summary)

    return on_host


def _echo_verdict(run_or_export: Path) -> None:
    """Is it worth deploying? The run's evaluation verdict per field and where its answers piled up (from
    eval/report.json), before anything is created; nothing for an export without its run's evaluation."""
    from ..report import headline
    from ..runfolder import RunFolder

    root = run_or_export if (run_or_export / "run.json").is_file() else run_or_export.parent
    report = RunFolder(root).eval_result() if (root / "run.json").is_file() else None
    if report is None:
        return
    colours = {"verdict": None, "collapse": "red", "warning": "yellow"}
    for kind, line in headline(report):
        if kind != "warning":
            click.secho(line, fg=colours[kind], bold=kind == "verdict", err=True)


def _echo_own(own: dict[str, Any]) -> None:
    """The model's own answers (llama.cpp on the GGUF), in one line; a warning when --force created it anyway."""
    if own["problem"]:
        click.secho(f"warning: {own['problem']}; created anyway (--force)", fg="yellow", err=True)
    else:
        click.echo(f"the model's own answers (llama.cpp on the GGUF, training prompt) are the task's JSON on "
                   f"{own['valid']} of {own['n']} test inputs")


def _echo_passed(summary: dict[str, Any]) -> None:
    """One block for a server that passed, printed as soon as it is done; failures are listed at the end."""
    if "error" in summary:
        return
    skipped = [label for label, sent in summary["uploaded"].items() if not sent]
    if skipped:
        click.echo(f"already on {summary['host']} (not re-uploaded): {', '.join(skipped)}")
    asked = summary["checks"]
    compared = [c for c in asked if c["compared"]]
    same = sum(c["same"] for c in compared)
    ties = len(compared) - same
    click.echo(f"created {summary['name']} on {summary['host']}; greedy answers identical to llama.cpp's on {same} "
               f"of the {len(compared)} test inputs answered with the task's JSON"
               + (f", {ties} parted at a numerical tie" if ties else "")
               + f"; schema-constrained answers valid JSON: {sum(c['constrained_valid'] for c in asked)}"
               f" of {len(asked)}")
    bare = summary["bare"]
    eval_rate = "not evaluated" if bare["eval"] is None else f"{bare['eval']:.0%}"
    click.echo(f"bare inputs, as users send them: schema-valid {bare['generate']:.0%} through `ollama run` "
               f"(/api/generate), {bare['chat']:.0%} through /api/chat; the run's eval measured {eval_rate}")
    click.echo(f"try it:  {summary['try']}")
    click.echo(f"from an application (JSON guaranteed by `format`):\n  {summary['curl']}")
