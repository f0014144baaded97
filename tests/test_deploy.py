"""Deploy without a real server: invalid names fail before any upload; a dead host, a host that is not Ollama and a
server refusing to create the model are named in a clear error; a model whose own answers are not the task's JSON
is refused in one line before anything is uploaded or created (unless forced); the verdict on a created model's
answers (llama.cpp parity where they are the task's JSON, schema-constrained answers that parse, bare inputs as
valid as eval measured), on hand-made records."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from lingoforge import get_task
from lingoforge.backends.ollama import ollama_host
from lingoforge.deploy import (
    MIN_OWN_VALID,
    DeployError,
    NotTaskJSON,
    _verdict,
    deploy,
    find_export,
    own_answer,
    own_figures,
    validate_name,
)
from lingoforge.runfolder import MANIFEST
from run_fixtures import TASK


@pytest.mark.parametrize("name", ["lingoforge-tickets", "team/tickets:v1", "tickets_2.5:q5_k_m"])
def test_valid_names(name: str) -> None:
    assert validate_name(name) == name


@pytest.mark.parametrize("name", ["", "-tickets", "tickets:", "a b", "team.x/tickets", "t" * 81, "x:y:z"])
def test_invalid_names(name: str) -> None:
    with pytest.raises(DeployError, match="invalid Ollama model name"):
        validate_name(name)


def test_invalid_name_fails_before_touching_anything(tmp_path: Path) -> None:
    # The export folder does not exist and the host is dead: the name error must still come first.
    with pytest.raises(DeployError, match="invalid Ollama model name"):
        deploy(tmp_path / "missing", "bad name", host="http://127.0.0.1:9")


@pytest.mark.parametrize(("given", "url"), [
    ("127.0.0.1:11555", "http://127.0.0.1:11555"),
    ("http://example.org", "http://example.org:11434"),
    ("https://ollama.internal:8443/", "https://ollama.internal:8443"),
])
def test_ollama_host(given: str, url: str) -> None:
    assert ollama_host(given) == url


def test_missing_export_says_what_to_run(tmp_path: Path) -> None:
    with pytest.raises(DeployError, match="lingoforge export"):
        find_export(tmp_path)


def test_unreachable_server_names_the_host(tiny_run: Path, tiny_export: dict) -> None:
    with pytest.raises(DeployError, match=r"cannot reach the Ollama server at http://127\.0\.0\.1:9"):
        deploy(tiny_run, "tickets", host="127.0.0.1:9")


Route = tuple[int, str] | Callable[[dict[str, Any]], tuple[int, str]]


class _FakeServer:
    """A local HTTP server answering like a broken or foreign server would (a real Ollama cannot be made to
    say "disk full" on demand): ``routes`` maps (method, path) to (status, body), or to a function of the request's
    JSON body returning them; anything else is a 404 page. ``requests`` lists every (method, path) asked."""

    def __init__(self, routes: dict[tuple[str, str], Route]) -> None:
        import http.server
        import threading

        requests: list[tuple[str, str]] = []
        self.requests = requests

        class Handler(http.server.BaseHTTPRequestHandler):
            def _answer(self) -> None:
                path = "/api/blobs/" if self.path.startswith("/api/blobs/") else self.path
                requests.append((self.command, path))
                route = routes.get((self.command, path), (404, "<html>not found</html>"))
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length)
                status, body = route(json.loads(raw or b"{}")) if callable(route) else route
                self.send_response(status)
                self.send_header("Content-Type", "application/json" if body.startswith("{") else "text/html")
                self.send_header("Content-Length", str(len(body.encode())))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(body.encode())

            do_GET = do_POST = do_HEAD = _answer

            def log_message(self, *args: object) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def __enter__(self) -> _FakeServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()


_TAGS: dict[tuple[str, str], Route] = {("GET", "/api/tags"): (200, '{"models": []}'),
                                       ("HEAD", "/api/blobs/"): (200, "")}
# What a model that learned the task answers: one of the task's own examples.
TASK_JSON = json.dumps(get_task(TASK).generate(1, seed=0)[0].output)
RAMBLE = "- en: 1\n- de: 1\n- fr: 1"  # what the model answered after one short epoch


def ollama_routes(export: dict, answer: str, show_status: int = 200,
                  constrained: str | None = TASK_JSON) -> dict[tuple[str, str], Route]:
    """A server that creates the model, shows it as exported and answers every request with ``answer``, except
    that a chat request with ``format`` gets ``constrained`` (``None``: ``answer`` too, a server ignoring format);
    every answer ends by itself (``done_reason`` stop)."""
    serving = export["serving"]
    shown = {"template": serving["template"], "modelfile": f'SYSTEM """{serving["system"]}"""', "model_info": {},
             "parameters": "\n".join(f'stop "{s}"' for s in serving["parameters"]["stop"])}
    done = {"model": "tickets", "done": True, "done_reason": "stop"}
    show = json.dumps(shown) if show_status == 200 else json.dumps({"error": "model requires more system memory"})

    def chat(body: dict[str, Any]) -> tuple[int, str]:
        content = constrained if body.get("format") and constrained is not None else answer
        return 200, json.dumps({**done, "message": {"role": "assistant", "content": content}})

    return {**_TAGS, ("POST", "/api/create"): (200, '{"status": "success"}'),
            ("POST", "/api/show"): (show_status, show), ("POST", "/api/chat"): chat,
            ("POST", "/api/generate"): (200, json.dumps({**done, "response": answer}))}


@pytest.fixture(scope="module", name="short_export")
def short_export_fixture(tmp_path_factory: pytest.TempPathFactory, tiny_run: Path, tiny_export: dict) -> Path:
    """The tiny export with answers cut at 24 tokens (``num_predict``): the untrained model never stops, and
    llama.cpp's answers at the default 640 tokens take ~20 s per deploy here. None is the task's JSON."""
    folder = tmp_path_factory.mktemp("short-export")
    shutil.copy(tiny_run / "export" / tiny_export["model_file"], folder)
    manifest = json.loads((tiny_run / "export" / MANIFEST).read_text())
    manifest["serving"]["parameters"]["num_predict"] = 24
    (folder / MANIFEST).write_text(json.dumps(manifest))
    return folder


def test_a_host_that_is_not_ollama_is_named(tiny_run: Path, tiny_export: dict) -> None:
    with _FakeServer({("GET", "/"): (200, "<html>intranet</html>")}) as server:
        with pytest.raises(DeployError, match=rf"{server.url} does not answer like an Ollama server"):
            deploy(tiny_run, "tickets", host=server.url)
    with _FakeServer({("GET", "/api/tags"): (200, "<html>login page</html>")}) as server:
        with pytest.raises(DeployError, match="does not answer like an Ollama server"):
            deploy(tiny_run, "tickets", host=server.url)
    page = "<html><body>" + "<p>not here</p>\n" * 400 + "</body></html>"
    with _FakeServer({("GET", "/"): (404, page)}) as server:
        with pytest.raises(DeployError) as refused:
            deploy(tiny_run, "tickets", host=server.url)
    assert len(str(refused.value)) < 400 and "\n" not in str(refused.value)  # a line, not the whole page


@pytest.mark.parametrize(("status", "error"), [(500, "disk full"), (400, "invalid model name")])
def test_server_errors_on_create_are_reported(short_export: Path, status: int, error: str) -> None:
    routes = {**_TAGS, ("POST", "/api/create"): (status, json.dumps({"error": error}))}
    with _FakeServer(routes) as server:  # forced: this random model's answers are not the task's JSON
        with pytest.raises(DeployError, match=rf"refused to create tickets: {error} \(HTTP {status}\)"):
            deploy(short_export, "tickets", host=server.url, n_check=1, force=True)


def test_port_out_of_range_is_a_clear_error(tiny_run: Path, tiny_export: dict) -> None:
    with pytest.raises(DeployError, match="cannot reach the Ollama server at http://127.0.0.1:70000"):
        deploy(tiny_run, "tickets", host="127.0.0.1:70000")


# -- the model's own answers, before anything is created ------------------------------------------------------------

SCHEMA = get_task(TASK).output_schema


def _own(*answers: tuple[str, bool]) -> dict[str, Any]:
    return own_figures([own_answer(text, [], stopped, SCHEMA, 24) for text, stopped in answers])


def test_an_answer_is_the_task_json_only_when_schema_valid_and_ended_by_the_model() -> None:
    assert own_answer(TASK_JSON, [1], True, SCHEMA, 24).valid
    cut = own_answer(TASK_JSON, [1], False, SCHEMA, 24)
    assert not cut.valid and cut.why == "cut at the 24-token limit"
    ramble = own_answer(RAMBLE, [1], True, SCHEMA, 24)
    assert not ramble.valid and ramble.why == "no JSON object in the answer"
    wrong = own_answer('{"category": "billing"}', [1], True, SCHEMA, 24)
    assert not wrong.valid and wrong.why == "/: 'priority' is a required property"


def test_own_answers_pass_from_half_valid_and_otherwise_say_why_in_one_line() -> None:
    assert MIN_OWN_VALID == 0.5
    half = _own((TASK_JSON, True), (RAMBLE, True))
    assert half["problem"] is None and half["valid"] == 1 and half["n"] == 2
    assert half["bad"] == {"example": 1, "answer": RAMBLE, "why": "no JSON object in the answer"}
    assert _own((TASK_JSON, True),)["problem"] is None and "bad" not in _own((TASK_JSON, True),)
    short = _own((TASK_JSON, False), (RAMBLE, True), (TASK_JSON, True))
    assert short["valid"] == 1
    assert short["problem"] == (
        "the model does not answer with the task's JSON: 1 of 3 test inputs got a schema-valid answer that the "
        "model ended (llama.cpp on the exported GGUF, training prompt), e.g. example 0 answered "
        f"{TASK_JSON[:80] + '…'!r} (cut at the 24-token limit)")
    newlines = _own(("\n" * 300, True),)["problem"]  # the example is shown as a Python literal, cut short
    assert "\n" not in newlines and f"answered {chr(10) * 80 + '…'!r} (no JSON" in newlines


def _check(i: int = 0, compared: bool = True, same: bool | None = True, tie: bool | None = False,
           constrained: str = TASK_JSON, constrained_done: str | None = "stop", bare_valid: bool = True
           ) -> dict[str, Any]:
    """One answer-check record as ``_check_answers`` writes it."""
    record = {"example": i, "compared": compared, "same": same if compared else None, "tie": tie if compared else None,
              "ollama": TASK_JSON if compared else None, "llama_cpp": TASK_JSON, "constrained": constrained,
              "constrained_done": constrained_done,
              "constrained_valid": own_answer(constrained, [], True, SCHEMA, 24).valid}
    if compared and not same:
        record["divergence"] = {"char": 3, "below_top": [0.0, 0.2]}
    for path in ("generate", "chat"):
        record[f"bare_{path}"], record[f"bare_{path}_valid"] = (TASK_JSON if bare_valid else RAMBLE), bare_valid
    return record


def _bare(checks: list[dict[str, Any]], eval_rate: float | None = None) -> dict[str, Any]:
    n = len(checks)
    return {"n": n, "generate": sum(c["bare_generate_valid"] for c in checks) / n,
            "chat": sum(c["bare_chat_valid"] for c in checks) / n, "eval": eval_rate}


def test_verdict_compares_engines_only_where_the_answers_are_the_task_json() -> None:
    passing = [_check(0), _check(1, same=False, tie=True), _check(2, compared=False)]
    assert _verdict("t", passing, _bare(passing)) is None
    differing = [*passing, _check(3, same=False)]
    assert _verdict("t", differing, _bare(differing)).startswith(
        "Ollama's answers differ from llama.cpp's on 1 of the 3 test inputs that the model answers with the task's "
        "JSON, e.g. example 3 at character 3")


def test_verdict_requires_constrained_answers_the_model_ended_to_parse() -> None:
    # Cut at num_predict ("length") or by Ollama's repetition cut (None), a constrained answer proves nothing.
    cut = [_check(0, constrained='{"category": "bil', constrained_done="length"),
           _check(1, compared=False, constrained="\n" * 30, constrained_done=None)]
    assert _verdict("t", cut, _bare(cut)) is None
    ignored = [*cut, _check(2, compared=False, constrained=RAMBLE)]  # ended, not JSON: format was not applied
    assert _verdict("t", ignored, _bare(ignored)) == (
        "schema-constrained answers (format=<schema>, as applications send it) did not parse on 1 of 3 test inputs "
        f"although the model ended them, e.g. example 2 answered {RAMBLE!r}: the server does not hold answers to "
        "`format`")


def test_verdict_requires_bare_inputs_as_valid_as_eval_measured() -> None:
    checks = [_check(0), _check(1, bare_valid=False)]
    assert _verdict("t", checks, _bare(checks)) is None  # before eval: reported, not required
    assert _verdict("t", checks, _bare(checks, 0.5)) is None
    assert _verdict("t", checks, _bare(checks, 0.9)).startswith(
        "bare test inputs (as `ollama run t` sends them) got schema-valid answers on 50% through /api/generate")


def test_a_model_that_does_not_answer_json_is_refused_before_anything_is_uploaded(
        short_export: Path, tiny_export: dict) -> None:
    """The tiny random model answers newlines: one line says so, and the server is asked nothing but whether it is
    Ollama; with ``force`` the model is uploaded and created, and compared with llama.cpp nowhere."""
    routes = {**ollama_routes(tiny_export, RAMBLE), ("HEAD", "/api/blobs/"): (404, ""),
              ("POST", "/api/blobs/"): (201, "")}
    with _FakeServer(routes) as server:
        with pytest.raises(NotTaskJSON) as refused:
            deploy(short_export, "tickets", host=server.url, n_check=2)
        asked = list(server.requests)
        forced = deploy(short_export, "tickets", host=server.url, n_check=2, force=True)
    message = str(refused.value)
    assert "\n" not in message
    assert message.startswith("the model does not answer with the task's JSON: 0 of 2 test inputs got a "
                              "schema-valid answer that the model ended (llama.cpp on the exported GGUF, training "
                              "prompt), e.g. example 0 answered '")
    assert message.endswith(f"; nothing was created: train longer (more epochs or data), or create it anyway with "
                            f"`lingoforge deploy {short_export} --name tickets --host {server.url} --force`")
    assert asked == [("GET", "/api/tags")]  # no blob looked up or sent, no model created
    assert ("POST", "/api/blobs/") in server.requests and ("POST", "/api/create") in server.requests
    assert forced["own"]["valid"] == 0 and forced["own"]["problem"] == message.split("; nothing was created")[0]
    assert [c["compared"] for c in forced["checks"]] == [False, False]
    assert all(c["constrained_valid"] and c["constrained_done"] == "stop" for c in forced["checks"])


def test_schema_constrained_answers_are_asked_with_the_schema_and_must_parse(
        short_export: Path, tiny_export: dict) -> None:
    """A server that holds answers to ``format`` passes; one that ignores it (answers the same ramble, ended) fails.
    A deploy that never sends the schema fails here: the first server's constrained answers would ramble."""
    with _FakeServer(ollama_routes(tiny_export, RAMBLE)) as keeps:
        summary = deploy(short_export, "tickets", host=keeps.url, n_check=2, force=True)
    assert [c["constrained_valid"] for c in summary["checks"]] == [True, True]
    assert [c["constrained"] for c in summary["checks"]] == [TASK_JSON, TASK_JSON]
    with _FakeServer(ollama_routes(tiny_export, RAMBLE, constrained=None)) as ignores:
        with pytest.raises(DeployError, match=r"schema-constrained answers \(format=<schema>, as applications send "
                                              r"it\) did not parse on 2 of 2 test inputs although the model ended"):
            deploy(short_export, "tickets", host=ignores.url, n_check=2, force=True)


def test_deploy_command_refuses_a_model_that_does_not_answer_json_in_one_line(
        short_export: Path, tiny_export: dict) -> None:
    from click.testing import CliRunner
    from lingoforge.cli import cli

    with _FakeServer(ollama_routes(tiny_export, RAMBLE)) as server:
        result = CliRunner().invoke(cli, ["deploy", str(short_export), "--name", "tickets", "--host", server.url,
                                          "--checks", "2"])
    assert result.exit_code == 1 and result.stdout == ""
    (line,) = result.stderr.splitlines()
    assert line.startswith("Error: the model does not answer with the task's JSON: 0 of 2 test inputs got a "
                           "schema-valid answer")
    assert "train longer" in line and line.endswith(f"--host {server.url} --force`")
    assert server.requests == [("GET", "/api/tags")]  # nothing uploaded or created
