"""``lingoforge deploy``: create an exported model on an Ollama server, and check it answers as exported."""

from __future__ import annotations

from pathlib import Path

import click


@click.command()
@click.argument("run_or_export", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--name", required=True, help="Ollama model name, [namespace/]model[:tag].")
@click.option("--host", default=None, help="Ollama server URL (default: $OLLAMA_HOST or http://127.0.0.1:11434).")
@click.option("--checks", type=click.IntRange(min=1), default=5, show_default=True,
              help="Test inputs asked through Ollama and llama.cpp.")
def deploy(run_or_export: Path, name: str, host: str | None, checks: int) -> None:
    """Create the exported model on an Ollama server, check it with `show` and test inputs."""
    from ..deploy import deploy as deploy_export

    summary = deploy_export(run_or_export, name, host, n_check=checks)
    skipped = [label for label, sent in summary["uploaded"].items() if not sent]
    if skipped:
        click.echo(f"already on the server (not re-uploaded): {', '.join(skipped)}")
    asked = summary["checks"]
    same = sum(c["same"] for c in asked)
    ties = [c for c in asked if not c["same"]]
    click.echo(f"created {name} on {summary['host']}; greedy answers identical to llama.cpp's on {same} of "
               f"{len(asked)} test inputs" + (f", {len(ties)} parted at a numerical tie" if ties else "")
               + f"; schema-constrained answers valid JSON: {sum(c['constrained_valid'] for c in asked)}"
               f" of {len(asked)}")
    bare = summary["bare"]
    eval_rate = "not evaluated" if bare["eval"] is None else f"{bare['eval']:.0%}"
    click.echo(f"bare inputs, as users send them: schema-valid {bare['generate']:.0%} through `ollama run` "
               f"(/api/generate), {bare['chat']:.0%} through /api/chat; the run's eval measured {eval_rate}")
    click.echo(f"try it:  {summary['try']}")
    click.echo(f"from an application (JSON guaranteed by `format`):\n  {summary['curl']}")
