"""Deploy to a real Ollama server (built from the Go module proxy) and talk to it like a user would.

Each check compares Ollama with an independent reference: the rendered prompt with the HF chat template,
the prompt token ids with the HF tokenizer, the greedy answers with llama.cpp on the same GGUF, the
Modelfile with what the API created; schema-constrained answers (format=<schema>) must parse.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import httpx
import pytest
from lingoforge import get_task
from lingoforge.deploy import deploy
from lingoforge.export.pipeline import load_test_examples
from lingoforge.prompts import prompt_messages, user_text
from lingoforge.runfolder import RunFolder
from run_fixtures import TASK

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


def test_tiny_qwen2_deploy_chat_and_rerun(ollama_server, tiny_run: Path, tiny_export: dict) -> None:
    summary = deploy(tiny_run, "lf-tiny-qwen2", host=ollama_server.url)
    assert summary["uploaded"] == {"model-q5_k_m.gguf": True}
    # Same greedy answers as llama.cpp on the same file. (This untrained model repeats "\n", which Ollama
    # cuts after 30 repeats, so its answers are prefixes and its constrained JSON is cut short too.)
    assert len(summary["checks"]) == 4 and all(c["same"] for c in summary["checks"])
    assert summary["run"] == f"OLLAMA_HOST={ollama_server.url} ollama run lf-tiny-qwen2"
    _check_prompt_equals_training(ollama_server.url, "lf-tiny-qwen2", tiny_run)
    again = deploy(tiny_run, "lf-tiny-qwen2:again", host=ollama_server.url, n_check=1)
    assert again["uploaded"] == {"model-q5_k_m.gguf": False}  # content-addressed: nothing re-sent


def test_tiny_qwen2_prompt_token_ids_match_hf(ollama_server, tiny_run: Path, tiny_export: dict) -> None:
    """Ollama's `context` holds the token ids it fed the model: they start with exactly HF's prompt ids."""
    import ollama
    from transformers import AutoTokenizer

    deploy(tiny_run, "lf-tiny-qwen2", host=ollama_server.url, n_check=1)
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
    # This run's adapter is a small random perturbation: the model rambles, so answers are compared on
    # their first 160 tokens, where Ollama's kernels may swap two near-equal candidates (a numerical tie,
    # which deploy measures with llama.cpp's logits) but must otherwise give llama.cpp's tokens.
    summary = deploy(smollm2_run, "lf-smollm2-tickets", host=ollama_server.url, n_check=3, max_tokens=160)
    checks = summary["checks"]
    assert all(c["same"] or c["tie"] for c in checks), checks
    assert any(c["same"] for c in checks), checks
    _check_prompt_equals_training(ollama_server.url, "lf-smollm2-tickets", smollm2_run)
    # What a user does next, `ollama run NAME "<ticket>"`, is asked of a trained model in
    # test_deployed_answers.py: this adapter is a random perturbation whose rambling answers only show
    # whether two engines agree (with --format json it ran to num_predict without closing the JSON).
    assert summary["bare"]["eval"] is None and summary["bare"]["n"] == 3
