"""How a deployed model answers bare inputs, asked the way users ask: `ollama run NAME "<ticket>"`.

    LINGOFORGE_OLLAMA_BIN=/path/to/ollama python bench/bench_deployed.py runs/demo

Starts a private ``ollama serve`` (temporary model folder, free port), deploys the run's export with
``lingoforge.deploy`` (which checks bare inputs itself), then types every test ticket of the run, bare,
into the ``ollama`` CLI and sends it to ``/api/chat`` without ``format``; prints the share of answers that
are JSON valid against the task's schema per language, and writes ``bench/results/deployed.json``. For
comparison the same GGUF is also created with the template exports wrote before bare inputs were wrapped
with the training instruction ("unwrapped") and asked the same tickets through the CLI.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

import httpx
from common import save, serve_ollama
from lingoforge.deploy import deploy
from lingoforge.export.pipeline import load_test_examples
from lingoforge.runfolder import RunFolder
from lingoforge.schema import parse_output
from rich.console import Console
from rich.table import Table

NAME = "bench-deployed"


def _ask_cli(binary: str, env: dict[str, str], name: str, text: str) -> str:
    return subprocess.run([binary, "run", name, text], env=env, capture_output=True, text=True, timeout=600,
                          check=True).stdout


def _create_unwrapped(run_dir: Path, url: str) -> None:
    """The same GGUF, SYSTEM and parameters under the template that passed the user's message alone."""
    import ollama
    from lingoforge.deploy import find_export, upload
    from lingoforge.export.modelfile import ServingConfig, default_system, go_template, probe_messages
    from transformers import AutoTokenizer

    folder, manifest = find_export(run_dir)
    serving = ServingConfig.from_dict(manifest["serving"])
    tokenizer = AutoTokenizer.from_pretrained(str(folder / "merged"))
    system_default = default_system(tokenizer.apply_chat_template(probe_messages(), tokenize=False,
                                                                  add_generation_prompt=True))
    client = ollama.Client(host=url)
    digest, _ = upload(client, url, folder / serving.model_file)
    client.create(model=f"{NAME}-unwrapped", files={serving.model_file: digest}, template=go_template(system_default),
                  system=serving.system, parameters=serving.parameters(), stream=False)


def main() -> None:
    run_dir = Path(sys.argv[1])
    binary = os.environ.get("LINGOFORGE_OLLAMA_BIN") or "ollama"
    run = RunFolder(run_dir)
    task = run.task()
    examples = load_test_examples(run, 10_000)
    load = os.getloadavg()
    with tempfile.TemporaryDirectory() as tmp, serve_ollama(binary, Path(tmp)) as (_, env, url):
        summary = deploy(run_dir, NAME, host=url)
        _create_unwrapped(run_dir, url)
        rows: dict[str, dict[str, list[bool]]] = defaultdict(lambda: {"cli": [], "chat": [], "unwrapped": []})
        started = time.perf_counter()
        for example in examples:
            cli = _ask_cli(binary, env, NAME, example.input)
            chat = httpx.post(f"{url}/api/chat", timeout=600, json={
                "model": NAME, "messages": [{"role": "user", "content": example.input}], "stream": False,
            }).json()["message"]["content"]
            unwrapped = _ask_cli(binary, env, f"{NAME}-unwrapped", example.input)
            rows[example.language]["cli"].append(parse_output(cli, task.output_schema).valid)
            rows[example.language]["chat"].append(parse_output(chat, task.output_schema).valid)
            rows[example.language]["unwrapped"].append(parse_output(unwrapped, task.output_schema).valid)
        seconds = time.perf_counter() - started
    table = Table(title=f"{run_dir}: bare test tickets, schema-valid answers from the deployed model")
    for col in ("language", "n", "`ollama run`", "/api/chat (no format)", "`ollama run`, unwrapped template"):
        table.add_column(col, justify="right")
    per_language = {}
    for lang, row in sorted(rows.items()):
        per_language[lang] = {"n": len(row["cli"]), "cli_valid": sum(row["cli"]), "chat_valid": sum(row["chat"]),
                              "unwrapped_cli_valid": sum(row["unwrapped"])}
        shares = (f"{sum(row[k])}/{len(row[k])}" for k in ("cli", "chat", "unwrapped"))
        table.add_row(lang, str(len(row["cli"])), *shares)
    n = sum(r["n"] for r in per_language.values())
    cli_valid = sum(r["cli_valid"] for r in per_language.values())
    chat_valid = sum(r["chat_valid"] for r in per_language.values())
    unwrapped_valid = sum(r["unwrapped_cli_valid"] for r in per_language.values())
    table.add_row("[b]all", str(n), *(f"{v}/{n} ({v / n:.0%})" for v in (cli_valid, chat_valid, unwrapped_valid)))
    Console().print(table)
    Console().print(f"deploy's own check: {json.dumps(summary['bare'])}")
    result = {"run": str(run_dir), "base": run.read().get("base", {}).get("spec"), "n": n,
              "cli_valid_rate": cli_valid / n, "chat_valid_rate": chat_valid / n,
              "unwrapped_cli_valid_rate": unwrapped_valid / n, "languages": per_language,
              "deploy_check": summary["bare"], "seconds": round(seconds, 1), "load_average_before": load}
    print(f"wrote {save('deployed', result)}")


if __name__ == "__main__":
    main()
