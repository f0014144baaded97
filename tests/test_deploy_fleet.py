"""Deploy to a fleet: every server is tried, each failure is named with its reason (and whether the model got
there), llama.cpp's answers are computed once for all servers, and the command exits 1 when no server passed or a
server holds the model but failed its checks, while an unreachable server is a warning when another serves the
model. Dead ports and fake servers stand in for broken ones; the ``ollama`` test deploys to two real servers and a
dead port. The tiny random model never answers the task's JSON, so these deploys are forced (``--force``)."""

from __future__ import annotations

import contextlib
import json
import socket
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from lingoforge.cli import cli
from lingoforge.deploy import deploy_fleet
from test_deploy import (
    _TAGS,
    RAMBLE,
    _FakeServer,
    ollama_routes,
    short_export_fixture,  # noqa: F401  (the tiny export cut short, module scope)
)


def _dead_url() -> str:
    """A local port nothing listens on (bound, then closed)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{sock.getsockname()[1]}"


def _count_llama_loads(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The model paths llama.cpp loads from now on (deploy imports ``Llama`` when it first needs it)."""
    import llama_cpp

    loads: list[str] = []
    real = llama_cpp.Llama

    def counting(*args: Any, **kwargs: Any) -> Any:
        loads.append(kwargs["model_path"])
        return real(*args, **kwargs)

    monkeypatch.setattr(llama_cpp, "Llama", counting)
    return loads


def test_one_unreachable_server_is_a_clear_error(short_export: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    loads = _count_llama_loads(monkeypatch)
    dead = _dead_url()
    result = CliRunner().invoke(cli, ["deploy", str(short_export), "--name", "tickets", "--host", dead])
    assert result.exit_code == 1, result.output
    assert result.stderr.startswith(f"Error: cannot reach the Ollama server at {dead} ")
    assert "Traceback" not in result.output and "deployed to" not in result.output  # one server: its error alone
    assert loads == []  # no server answered: the model's own answers were never asked


def test_every_server_is_tried_and_each_failure_named(short_export: Path, tiny_export: dict,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    loads = _count_llama_loads(monkeypatch)
    dead = _dead_url()
    with _FakeServer({**_TAGS, ("POST", "/api/create"): (500, '{"error": "disk full"}')}) as full, \
            _FakeServer(ollama_routes(tiny_export, "", show_status=500)) as weak, \
            _FakeServer({**ollama_routes(tiny_export, ""), ("POST", "/api/show"): (200, "{}")}) as odd:
        # The dead port given twice (spelled two ways) is one server: deployed to, and counted, once.
        hosts = [dead, full.url, dead.removeprefix("http://"), weak.url, odd.url]
        fleet = deploy_fleet(short_export, "tickets", hosts, force=True)
        assert len(loads) == 1  # the model's own answers: asked once the first server answered, shared by all
        result = CliRunner().invoke(cli, ["deploy", str(short_export), "--name", "tickets", "--force",
                                          *(arg for host in hosts for arg in ("--host", host))])
    assert [r["host"] for r in fleet["hosts"]] == fleet["failed"] == [dead, full.url, weak.url, odd.url]
    assert fleet["deployed"] == []
    unreachable, refused, failing, unreadable = fleet["hosts"]
    assert unreachable["error"].startswith(f"cannot reach the Ollama server at {dead} ")
    assert refused["error"] == f"the Ollama server at {full.url} refused to create tickets: disk full (HTTP 500)"
    assert failing["error"] == (f"the Ollama server at {weak.url} refused to serve tickets: "
                                "model requires more system memory (HTTP 500)")
    assert unreadable["error"] == (f"the server at {odd.url} answered unlike this Ollama client expects when asked "
                                   "to serve tickets (Field required: model_info)")
    assert [r["created"] for r in fleet["hosts"]] == [False, False, True, True]
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert f"Error: deployed to 0 of 4 servers; failed:\n  {dead} (cannot reach" in result.stderr
    assert f"\n  {full.url} (the Ollama server at {full.url} refused to create tickets: disk full" in result.stderr
    assert f"\n  {weak.url} (tickets is there but failed its checks: the Ollama server" in result.stderr
    assert "retry them" not in result.stderr  # nothing succeeded: the retry line would be the same command


def test_check_names_every_server_it_could_not_ask(short_export: Path) -> None:
    """`deploy --check` creates nothing; a server it cannot ask fails the check (exit 1), named with the reason."""
    dead = [_dead_url(), _dead_url()]
    result = CliRunner().invoke(cli, ["deploy", str(short_export), "--check", "--name", "tickets", "--host", dead[0],
                                      "--host", dead[1], "--checks", "1"])
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert f"Error: tickets passed on 0 of 2 servers; failed:\n  {dead[0]} (no server could answer" in result.stderr
    assert f"cannot reach the Ollama server at {dead[1]}" in result.stderr
    v1 = CliRunner().invoke(cli, ["deploy", str(short_export), "--check", "--name", "tickets", "--backend", "openai",
                                  "--host", f"{dead[0]}/v1", "--checks", "1"])
    assert v1.exit_code == 1 and f"{dead[0]}/v1 (cannot reach {dead[0]}/v1" in v1.stderr
    misuse = CliRunner().invoke(cli, ["deploy", str(short_export), "--name", "tickets", "--backend", "openai"])
    assert misuse.exit_code == 2 and "--backend and --api-key-env go with --check" in misuse.stderr


@pytest.fixture(scope="module")
def wrong_fleet(short_export: Path, tiny_export: dict) -> tuple[dict, list[str]]:
    """Two servers that ignore ``format`` (a constrained answer ends without being JSON), and the GGUF loads
    meanwhile."""
    with pytest.MonkeyPatch.context() as monkeypatch:
        loads = _count_llama_loads(monkeypatch)
        with _FakeServer(ollama_routes(tiny_export, RAMBLE, constrained=None)) as a, \
                _FakeServer(ollama_routes(tiny_export, RAMBLE, constrained=None)) as b:
            return deploy_fleet(short_export, "tickets", [a.url, b.url], n_check=1, force=True), loads


def test_reference_answers_are_computed_once_and_failed_checks_do_not_stop_others(
        wrong_fleet: tuple[dict, list[str]]) -> None:
    fleet, loads = wrong_fleet
    assert len(loads) == 1 and loads[0].endswith("model-q5_k_m.gguf")
    assert fleet["deployed"] == [] and len(fleet["failed"]) == 2
    assert fleet["own"]["n"] == 1 and fleet["own"]["valid"] == 0
    first, second = fleet["hosts"]
    for record in (first, second):
        assert record["created"] is True
        assert record["error"].startswith("schema-constrained answers (format=<schema>, as applications send it) "
                                          "did not parse on 1 of 1 test inputs")
        check = record["checks"][0]
        assert check["constrained"] == RAMBLE and check["constrained_valid"] is False
        assert check["compared"] is False and check["ollama"] is None  # not the task's JSON: not compared
    assert first["checks"][0]["llama_cpp"] == second["checks"][0]["llama_cpp"]


def test_an_unreachable_server_is_a_warning_while_another_serves_the_model(
        short_export: Path, tiny_export: dict) -> None:
    # A server whose constrained answers parse passes (bare inputs: no eval to reach); the dead one is named, exit 0.
    dead = _dead_url()
    with _FakeServer(ollama_routes(tiny_export, RAMBLE)) as good:
        hosts = ["--host", good.url, "--host", dead, "--checks", "1", "--force"]
        shown = CliRunner().invoke(cli, ["deploy", str(short_export), "--name", "tickets", *hosts])
        as_json = CliRunner().invoke(cli, ["deploy", str(short_export), "--name", "tickets", *hosts, "--json"])
    assert shown.exit_code == as_json.exit_code == 0
    assert shown.stderr.startswith("warning: the model does not answer with the task's JSON: 0 of 1 test inputs")
    assert "; created anyway (--force)\n" in shown.stderr
    assert (f"created tickets on {good.url}; greedy answers identical to llama.cpp's on 0 of the 0 test inputs "
            "answered with the task's JSON; schema-constrained answers valid JSON: 1 of 1") in shown.stdout
    assert f"already on {good.url} (not re-uploaded): model-q5_k_m.gguf" in shown.stdout
    assert f"warning: deployed to 1 of 2 servers; failed:\n  {dead} (cannot reach" in shown.stderr
    assert shown.stderr.rstrip().endswith(f"retry them: lingoforge deploy {short_export} --name tickets --host {dead} "
                                          "--checks 1 --force")
    assert as_json.stderr.startswith("warning: deployed to 1 of 2") and "own answers" not in as_json.stderr
    fleet = json.loads(as_json.stdout)
    assert fleet["deployed"] == [good.url] and fleet["failed"] == [dead]
    assert fleet["own"]["valid"] == 0 and fleet["own"]["problem"]
    assert fleet["hosts"][0]["run"] == f"OLLAMA_HOST={good.url} ollama run tickets"
    assert fleet["hosts"][0]["checks"][0]["constrained_valid"] is True
    assert fleet["hosts"][1] == {"host": dead, "error": fleet["hosts"][1]["error"], "created": False}


@pytest.mark.ollama
def test_fleet_of_two_live_servers_and_a_dead_one(ollama_server, more_ollama_servers, short_export: Path,
                                                  tiny_export: dict, monkeypatch: pytest.MonkeyPatch) -> None:
    import ollama

    extra = more_ollama_servers()
    dead = _dead_url()
    loads = _count_llama_loads(monkeypatch)
    hosts = [ollama_server.url, dead, extra.url]
    try:
        result = CliRunner().invoke(cli, ["deploy", str(short_export), "--name", "lf-fleet", "--checks", "1", "--json",
                                          "--force", *(arg for host in hosts for arg in ("--host", host))])
        assert result.exit_code == 0, result.output  # an unreachable server is named, the others serve
        fleet = json.loads(result.stdout)
        assert fleet["deployed"] == [ollama_server.url, extra.url] and fleet["failed"] == [dead]
        first, unreachable, second = fleet["hosts"]
        assert unreachable["created"] is False
        assert unreachable["error"].startswith(f"cannot reach the Ollama server at {dead}")
        assert f"deployed to 2 of 3 servers; failed:\n  {dead} (cannot reach" in result.stderr
        assert second["uploaded"] == {"model-q5_k_m.gguf": True}  # a fresh server got the blob
        assert first["checks"][0]["llama_cpp"] == second["checks"][0]["llama_cpp"] and len(loads) == 1
        for url in (ollama_server.url, extra.url):
            assert ollama.Client(host=url).show("lf-fleet").template == tiny_export["serving"]["template"]
    finally:  # Ollama drops blobs no model uses: the session server is left as this test found it
        with contextlib.suppress(ollama.ResponseError):  # not created there: the failure above tells why
            ollama.Client(host=ollama_server.url).delete("lf-fleet")
