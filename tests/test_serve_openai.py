"""The ``openai`` backend against two real OpenAI-compatible servers, each serving the exported GGUF of a run:
llama-cpp-python's server (``llama_cpp.server``) and Ollama's ``/v1``. Greedy answers through the OpenAI API
must equal those of the backend that reads the same GGUF directly (llamacpp) or asks the same server natively
(ollama), so the scores are equal too: the OpenAI path adds nothing and loses nothing.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from lingoforge import get_task
from lingoforge.backends import Servers, get_backend
from lingoforge.errors import LingoforgeError
from lingoforge.evaluate import evaluate, labels_first
from lingoforge.export.pipeline import load_test_examples
from lingoforge.runfolder import RunFolder
from ollama_server import _free_port
from run_fixtures import TASK

pytestmark = pytest.mark.slow
ALIAS = "lf-smollm2"
MAX_NEW = 48
KEY = "sk-lingoforge-test-4f1c"  # the llama.cpp server below refuses requests without it


@pytest.fixture(scope="module")
def llama_server(smollm2_run: Path, smollm2_export: dict) -> Iterator[str]:
    """``python -m llama_cpp.server`` serving the run's Q5_K_M GGUF; yields its ``/v1`` base URL."""
    pytest.importorskip("llama_cpp.server.app", reason="needs llama-cpp-python's server extra (the llamacpp extra)")
    port = _free_port()
    log = smollm2_run / "llama-server.log"
    with log.open("wb") as out:
        process = subprocess.Popen([sys.executable, "-m", "llama_cpp.server", "--model",
                                    str(smollm2_run / "export" / smollm2_export["model_file"]), "--model_alias", ALIAS,
                                    "--host", "127.0.0.1", "--port", str(port), "--n_ctx", "4096",
                                    "--api_key", KEY],
                                   stdout=out, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}/v1"
    try:
        deadline = time.monotonic() + 120
        while True:
            assert process.poll() is None, log.read_text()[-2000:]
            try:
                if httpx.get(f"{url}/models", headers={"Authorization": f"Bearer {KEY}"}, timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, log.read_text()[-2000:]
            time.sleep(0.3)
        yield url
    finally:
        process.terminate()
        process.wait(timeout=30)


def _raw(report: dict) -> list[str]:
    return [p["raw"] for p in report["predictions"]]


def _scores(report: dict) -> list[dict]:
    """Every slice of the report without its latencies (the one figure that may differ)."""
    return [{k: v for k, v in s.items() if k != "latency"} for s in (report["overall"], *report["languages"].values())]


def _same_scores(a: dict, b: dict) -> None:
    assert _raw(a) == _raw(b)
    assert _scores(a) == _scores(b) and list(a["languages"]) == list(b["languages"])


def test_llama_cpp_server_answers_as_the_gguf_does(llama_server: str, smollm2_run: Path, smollm2_export: dict,
                                                   tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    task = get_task(TASK)
    examples = load_test_examples(RunFolder(smollm2_run), 4)
    gguf = str(smollm2_run / "export" / smollm2_export["model_file"])
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    with pytest.raises(LingoforgeError, match=rf"{llama_server} refused the request \(401\): it wants an API key"):
        get_backend(str(smollm2_run), "openai", servers=Servers((llama_server,)))
    monkeypatch.setenv("LF_LLAMA_KEY", KEY)
    served = Servers((llama_server,), api_key_env="LF_LLAMA_KEY")  # no --model: the one model it serves
    for constrained in (False, True):
        direct = evaluate(gguf, task, examples, backend="llamacpp", constrained=constrained, max_new_tokens=MAX_NEW)
        remote = evaluate(str(smollm2_run), task, examples, backend="openai", servers=served, constrained=constrained,
                          max_new_tokens=MAX_NEW, predictions=tmp_path / f"predictions-{constrained}.jsonl")
        _same_scores(direct, remote)
        assert remote["model"]["model"] == ALIAS and remote["model"]["hosts"] == [llama_server]
        assert KEY not in json.dumps(remote)
    assert not [p for p in tmp_path.iterdir() if KEY in p.read_text(encoding="utf-8")]  # nor in what eval saved
    # llama-cpp-python's server rejects the standard json_schema form, so the schema goes as json_object's schema
    # (its answers, cut at MAX_NEW tokens, equal the grammar-constrained ones of the llamacpp backend above).
    assert remote["model"]["structured_output"] == "json_object+schema"
    # the schema's own key order, whatever whitespace the grammar let the model put before it
    assert all(re.match(r'\{\s*"category": ', raw) for raw in _raw(remote)), _raw(remote)
    with pytest.raises(LingoforgeError, match=rf"model 'nope' is not served at {llama_server}; it serves: {ALIAS}"):
        get_backend(str(smollm2_run), "openai", servers=Servers((llama_server,), "nope", "LF_LLAMA_KEY"))


@pytest.mark.ollama
def test_ollama_v1_answers_as_ollama_does(ollama_server, smollm2_run: Path, smollm2_export: dict) -> None:
    from lingoforge.deploy import deploy

    deploy(smollm2_run, ALIAS, host=ollama_server.url, n_check=1, max_tokens=16, force=True)  # random adapter
    task = get_task(TASK)
    examples = load_test_examples(RunFolder(smollm2_run), 4)
    v1 = Servers((f"{ollama_server.url}/v1",), ALIAS)
    native = evaluate(f"ollama:{ALIAS}", task, examples, servers=Servers((ollama_server.url,)), max_new_tokens=MAX_NEW)
    remote = evaluate(str(smollm2_run), task, examples, backend="openai", servers=v1, max_new_tokens=MAX_NEW)
    _same_scores(native, remote)
    # the labelled fields only: the random adapter fills a free-text field up to any token limit, and an answer the
    # limit cuts is no JSON however well the schema held
    constrained = evaluate(str(smollm2_run), labels_first(task), examples, backend="openai", servers=v1,
                           constrained=True, max_new_tokens=MAX_NEW)
    assert constrained["model"]["structured_output"] == "json_schema"
    assert constrained["overall"]["schema_valid_rate"] == 1.0, _raw(constrained)
    with pytest.raises(LingoforgeError, match=rf"{ollama_server.url} is not an OpenAI-compatible endpoint: .*"
                                              rf"usually live under /v1: {ollama_server.url}/v1"):
        get_backend(str(smollm2_run), "openai", servers=Servers((ollama_server.url,), ALIAS))
