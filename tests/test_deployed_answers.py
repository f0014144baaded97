"""The product's last step as a user takes it: `lingoforge run ... --deploy`, then `ollama run NAME "<ticket>"`.

SmolLM2-135M is fine-tuned with the README demo's settings (two epochs of 120 tickets, with Japanese in
place of French so that one language has a non-Latin script), evaluated, exported and deployed to the real
Ollama server by the CLI. Then tickets written here, not by our generator, are typed bare — no instruction,
no system prompt — into the `ollama` CLI, `/api/chat` without `format` and the OpenAI-compatible `/v1`, and
every answer must be JSON valid against the task's schema.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from lingoforge import get_task
from lingoforge.schema import parse_output

pytestmark = [pytest.mark.slow, pytest.mark.ollama]

NAME = "lf-demo-tickets"
TICKETS = {
    "en": "Hi, I was charged twice for order 88213 this morning. Please refund the second payment.",
    "de": "Hallo, mein Paket sollte letzte Woche ankommen, die Sendungsverfolgung zeigt seit Tagen nichts Neues.",
    "es": "No puedo iniciar sesión en mi cuenta, la contraseña nueva no funciona. ¿Me ayudan?",
    "ja": "昨日注文したスニーカーのサイズを変更したいです。まだ発送前でしょうか？",
}


@pytest.fixture(scope="module")
def deployed(tmp_path_factory: pytest.TempPathFactory, ollama_server, smollm2_dir: Path) -> dict:
    """The `lingoforge run --deploy --json` summary of the demo-settings run (trained once for this module)."""
    pytest.importorskip("llama_cpp", reason="export needs llama-cpp-python (the llamacpp extra)")
    out = tmp_path_factory.mktemp("demo") / "run"
    log = out.parent / "run.log"
    args = ["support_tickets", "--base", "smollm2-135m", "-o", str(out), "-n", "120", "--languages", "en,de,es,ja",
            "--val", "0.05", "--test", "0.12", "--epochs", "2", "--lr", "2e-3", "--eval-limit", "8",
            "--eval-max-new-tokens", "160", "--parity-n", "2", "--quant", "q8_0",
            "--deploy", "--name", NAME, "--host", ollama_server.url, "--json"]
    with log.open("w") as fh:
        done = subprocess.run([sys.executable, "-m", "lingoforge.cli", "run", *args], stdout=fh,
                              stderr=subprocess.STDOUT, env={**os.environ, "PYTHONUNBUFFERED": "1"}, timeout=2400)
    output = log.read_text(encoding="utf-8")
    assert done.returncode == 0, output[-5000:]
    return json.loads(output[output.rindex("\n{\n") + 1:])


def _valid(answer: str) -> bool:
    return parse_output(answer, get_task("support_tickets").output_schema).valid


def test_deploy_checked_bare_inputs_against_the_eval(deployed: dict) -> None:
    bare = deployed["deployed"]["bare"]
    assert bare["eval"] is not None and bare["n"] == 5
    assert bare["generate"] >= bare["eval"] and bare["chat"] >= bare["eval"], bare
    assert deployed["deployed"]["try"].startswith(f"OLLAMA_HOST={deployed['deployed']['host']} ollama run {NAME} ")
    assert '"format":{' in deployed["deployed"]["curl"]


@pytest.mark.parametrize("lang", sorted(TICKETS))
def test_ollama_run_cli_answers_a_bare_ticket_with_schema_valid_json(deployed: dict, ollama_server, lang: str) -> None:
    done = subprocess.run([str(ollama_server.binary), "run", NAME, TICKETS[lang]], env=ollama_server.env,
                          capture_output=True, text=True, timeout=300, check=True)
    assert _valid(done.stdout), done.stdout


@pytest.mark.parametrize("lang", sorted(TICKETS))
def test_api_chat_without_format_and_v1_answer_a_bare_ticket(deployed: dict, ollama_server, lang: str) -> None:
    messages = [{"role": "user", "content": TICKETS[lang]}]
    chat = httpx.post(f"{ollama_server.url}/api/chat", json={"model": NAME, "messages": messages, "stream": False},
                      timeout=300)
    chat.raise_for_status()
    assert _valid(chat.json()["message"]["content"]), chat.json()
    v1 = httpx.post(f"{ollama_server.url}/v1/chat/completions",
                    json={"model": NAME, "messages": messages, "temperature": 0}, timeout=300)
    v1.raise_for_status()
    answer = v1.json()["choices"][0]
    assert answer["finish_reason"] == "stop" and _valid(answer["message"]["content"]), answer


@pytest.mark.parametrize("api", ["ollama", "openai"])
def test_deploy_check_asks_the_served_model_without_creating_it(deployed: dict, ollama_server, api: str) -> None:
    """`deploy --check` on the model `run --deploy` created: through Ollama's API and its OpenAI-compatible /v1."""
    from click.testing import CliRunner
    from lingoforge.cli import cli

    run_dir = Path(deployed["modelfile"]).parents[1]
    host = ollama_server.url if api == "ollama" else f"{ollama_server.url}/v1"
    result = CliRunner().invoke(cli, ["deploy", str(run_dir), "--check", "--name", NAME, "--backend", api, "--host",
                                      host, "--checks", "3", "--json"])
    assert result.exit_code == 0, result.output
    checked = json.loads(result.stdout)
    assert checked["passed"] == [host] and checked["failed"] == []
    record = checked["hosts"][0]
    assert record["n"] == 3 and record["eval"] is not None and record["valid"] >= record["eval"]
    assert record["valid"] == sum(_valid(answer) for answer in record["answers"]) / 3
