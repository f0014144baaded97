"""Deploy to a real Ollama server (built from the Go module proxy) and talk to it like a user would.

Each check compares Ollama with an independent reference: the rendered prompt with the HF chat template,
the prompt token ids with the HF tokenizer, the greedy answers with llama.cpp on the same GGUF, the
Modelfile with what the API created. Schema-constrained answers (format=<schema>) are held to the schema: those
the model ends parse, and those cut short still open with the schema's keys and values where the plain answer
is no JSON at all. A model whose own answers are not the task's JSON is refused in one line, and nothing is
created unless ``--force``. The test runs' random adapters never answer the task's JSON, so they deploy forced.
"""

from __future__ import annotations

import contextlib
import json
import re
import subprocess
from pathlib import Path
from typing import Any

import httpx
import pytest
from click.testing import CliRunner
from lingoforge import get_task
from lingoforge.cli import cli
from lingoforge.deploy import deploy
from lingoforge.export.pipeline import load_test_examples
from lingoforge.prompts import prompt_messages, user_text
from lingoforge.runfolder import RunFolder
from run_fixtures import TASK
from test_deploy import short_export_fixture  # noqa: F401  (the tiny export cut at 24 tokens)

pytestmark = pytest.mark.ollama


def _rendered_by_ollama(url: str, model: str, user: str, path: str = "chat") -> str:
    """The prompt Ollama's TEMPLATE renders for one user message (its SYSTEM added by the server), through
    /api/chat or /api/generate (what `ollama run NAME "<input>"` calls)."""
    request = {"messages": [{"role": "user", "content": user}]} if path == "chat" else {"prompt": user}
    response = httpx.post(f"{url}/api/{path}", json={"model": model, **request, "stream": False,
                                                     "_debug_render_only": True}, timeout=120)
    response.raise_for_status()
    return str(response.json()["_debug_info"]["rendered_template"])


def _check_prompt_equals_training(url: str, model: str, run: Path) -> None:
    """Ollama renders the training prompt for the full user turn and for the bare input a user types."""
    from transformers import AutoTokenizer

    task = get_task(TASK)
    tokenizer = AutoTokenizer.from_pretrained(str(run / "export" / "merged"))
    for example in load_test_examples(RunFolder(run), 3):
        expected = tokenizer.apply_chat_template(prompt_messages(task, example.input, example.instruction),
                                                 tokenize=False, add_generation_prompt=True)
        assert _rendered_by_ollama(url, model, user_text(example.instruction, example.input)) == expected
        assert _rendered_by_ollama(url, model, example.input) == expected
        assert _rendered_by_ollama(url, model, example.input, "generate") == expected


def _engines(url: str, model: str, run: Path, n: int, max_tokens: int) -> list[dict[str, Any]]:
    """Ollama's plain greedy answers to the full training prompt beside llama.cpp's on the same GGUF, for every test
    input, by deploy's own comparison (deploy compares only answers that are the task's JSON, and these random
    adapters' never are): ``same``, or ``tie`` where they part at near-equal candidates of llama.cpp's logits."""
    import ollama
    from lingoforge.deploy import _compare_engines, _Export, _Reference

    export = _Export.load(run)
    reference = _Reference(export, None, n, max_tokens, lambda description, total: lambda k: None)
    client = ollama.Client(host=url)
    with contextlib.closing(reference):
        return [_compare_engines(client, model, user_text(e.instruction or export.task.instruction, e.input), own,
                                 reference) for e, own in zip(reference.examples(), reference.answers(), strict=True)]


def test_a_model_that_does_not_answer_json_is_refused_and_nothing_is_created_unless_forced(
        ollama_server, short_export: Path) -> None:
    import ollama

    client = ollama.Client(host=ollama_server.url)
    before = sorted(m.model for m in client.list().models)
    args = ["deploy", str(short_export), "--name", "lf-not-json", "--host", ollama_server.url, "--checks", "2"]
    refused = CliRunner().invoke(cli, args)
    assert refused.exit_code == 1 and refused.stdout == ""
    (line,) = refused.stderr.splitlines()  # one line: how many answers are JSON, one that is not, what to do
    assert line.startswith("Error: the model does not answer with the task's JSON: 0 of 2 test inputs got a "
                           "schema-valid answer that the model ended (llama.cpp on the exported GGUF, training "
                           "prompt), e.g. example 0 answered '\\n\\n")
    assert line.endswith(f"(no JSON object in the answer); nothing was created: train longer (more epochs or data), or "
                         f"create it anyway with `lingoforge deploy {short_export} --name lf-not-json --host "
                         f"{ollama_server.url} --force`")
    assert sorted(m.model for m in client.list().models) == before
    try:
        forced = CliRunner().invoke(cli, [*args, "--force"])
        assert forced.exit_code == 0, forced.output
        assert forced.stderr.startswith("warning: the model does not answer with the task's JSON: 0 of 2")
        assert "created lf-not-json on" in forced.stdout
        assert client.show("lf-not-json").template  # created
    finally:
        with contextlib.suppress(ollama.ResponseError):
            client.delete("lf-not-json")


_OPENS_AS_SCHEMA = re.compile(r'\{\s*"category"\s*:\s*"(' + "|".join(get_task(TASK).label_values("category"))
                              + r')"\s*,\s*"priority"\s*:\s*"(low|medium|high|urgent)"')


def test_tiny_qwen2_deploy_chat_and_rerun(ollama_server, tiny_run: Path, tiny_export: dict) -> None:
    summary = deploy(tiny_run, "lf-tiny-qwen2", host=ollama_server.url, max_tokens=48, force=True)
    assert summary["uploaded"] == {"model-q5_k_m.gguf": True}
    checks = summary["checks"]
    # This untrained model answers "\n" over and over (Ollama cuts that after 30 repeats): no answer is the
    # task's JSON, so deploy compares none with llama.cpp.
    assert summary["own"]["valid"] == 0 and summary["own"]["n"] == 4
    assert [c["compared"] for c in checks] == [False] * 4 and all(not c["llama_cpp"].strip() for c in checks)
    # Asked with format=<schema>, the same model opens the schema's JSON with its labels (the JSON is cut short
    # where its free-text field repeats), so the schema reached the sampler.
    for check in checks:
        assert _OPENS_AS_SCHEMA.match(check["constrained"]), check["constrained"]
        assert check["constrained_done"] != "stop" and not check["constrained_valid"]
    # Same greedy answers as llama.cpp on the same file (deploy's comparison, asked of every input here).
    assert all(c["same"] for c in _engines(ollama_server.url, "lf-tiny-qwen2", tiny_run, 4, 48))
    assert summary["run"] == f"OLLAMA_HOST={ollama_server.url} ollama run lf-tiny-qwen2"
    _check_prompt_equals_training(ollama_server.url, "lf-tiny-qwen2", tiny_run)
    again = deploy(tiny_run, "lf-tiny-qwen2:again", host=ollama_server.url, n_check=1, max_tokens=16, force=True)
    assert again["uploaded"] == {"model-q5_k_m.gguf": False}  # content-addressed: nothing re-sent


def test_tiny_qwen2_prompt_token_ids_match_hf(ollama_server, tiny_run: Path, tiny_export: dict) -> None:
    """Ollama's `context` holds the token ids it fed the model: they start with exactly HF's prompt ids."""
    import ollama
    from transformers import AutoTokenizer

    deploy(tiny_run, "lf-tiny-qwen2", host=ollama_server.url, n_check=1, max_tokens=16, force=True)
    task = get_task(TASK)
    tokenizer = AutoTokenizer.from_pretrained(str(tiny_run / "export" / "merged"))
    example = load_test_examples(RunFolder(tiny_run), 1)[0]
    text = tokenizer.apply_chat_template(prompt_messages(task, example.input, example.instruction), tokenize=False,
                                         add_generation_prompt=True)
    hf_ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    response = ollama.Client(host=ollama_server.url).generate(
        model="lf-tiny-qwen2", prompt=user_text(example.instruction, example.input),
        options={"num_predict": 1, "temperature": 0})
    # Ollama re-tokenizes prompt + answer together for `context`, so the prompt's final "\n" may merge with
    # an answer that starts with "\n" (this untrained model's favourite token): compare up to it, then text.
    context = list(response.context)
    assert context[: len(hf_ids) - 1] == hf_ids[:-1]
    assert tokenizer.decode(context[len(hf_ids) - 1:]).startswith(tokenizer.decode(hf_ids[-1:]))


def test_modelfile_creates_the_same_model(ollama_server, tiny_run: Path, tiny_export: dict) -> None:
    """The written Modelfile, fed to the real `ollama create`, gives the template/system/params the API set."""
    import ollama

    subprocess.run([str(ollama_server.binary), "create", "lf-from-modelfile", "-f", "Modelfile"],
                   cwd=tiny_run / "export", env=ollama_server.env, check=True, capture_output=True, timeout=300)
    client = ollama.Client(host=ollama_server.url)
    shown = client.show("lf-from-modelfile")
    assert shown.template == tiny_export["serving"]["template"]
    assert get_task(TASK).system_prompt in (shown.modelfile or "")
    parameters = " ".join((shown.parameters or "").split())  # `show` pads names into columns
    assert 'stop "<|im_end|>"' in parameters and 'stop "<|endoftext|>"' in parameters
    assert "num_ctx 2048" in parameters and "temperature 0" in parameters and "repeat_penalty 1" in parameters


@pytest.mark.slow
def test_smollm2_deploy_matches_llama_cpp_and_serves_the_training_prompt(
        ollama_server, smollm2_run: Path, smollm2_export: dict) -> None:
    # This run's adapter is a small random perturbation: the model rambles (its own answers are not the task's
    # JSON, so deploy refuses it unless forced and compares none with llama.cpp).
    # 96 tokens: two of the three constrained answers end within them (measured); 160 cost 15 s more in longer tails
    summary = deploy(smollm2_run, "lf-smollm2-tickets", host=ollama_server.url, n_check=3, max_tokens=96,
                     force=True)
    checks = summary["checks"]
    assert summary["own"]["valid"] == 0 and not any(c["compared"] for c in checks), summary["own"]
    # Asked with format=<schema>, every answer the model ended parses (deploy's verdict requires it), and at least
    # one did end: there the plain answer to the same prompt is no JSON at all, so the schema made the difference.
    plain = _engines(ollama_server.url, "lf-smollm2-tickets", smollm2_run, 3, 96)
    ended = [c for c in checks if c["constrained_done"] == "stop"]
    assert ended and all(c["constrained_valid"] for c in ended), checks
    assert all(json.loads(c["constrained"]) for c in ended)
    assert any(not p["full_valid"] for p, c in zip(plain, checks, strict=True) if c["constrained_done"] == "stop")
    # Compared on their first 96 tokens, Ollama's kernels may swap two near-equal candidates (a numerical tie,
    # measured with llama.cpp's logits) but must otherwise give llama.cpp's tokens.
    assert all(p["same"] or p["tie"] for p in plain), plain
    assert any(p["same"] for p in plain), plain
    _check_prompt_equals_training(ollama_server.url, "lf-smollm2-tickets", smollm2_run)
    # What a user does next, `ollama run NAME "<ticket>"`, is asked of a trained model in
    # test_own_data_deployed.py: this adapter is a random perturbation whose rambling answers only show
    # whether two engines agree.
    assert summary["bare"]["eval"] is None and summary["bare"]["n"] == 3
