"""Deploy to a fleet: every server is tried, each failure is named with its reason (and whether the model got
there), llama.cpp's reference answers are computed once for all servers, and the command exits 1 when any
server failed. Dead ports and fake servers stand in for broken ones; the ``ollama`` test deploys to two real
servers and a dead port."""

from __future__ import annotations

import contextlib
import json
import shutil
import socket
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from lingoforge.cli import cli
from lingoforge.deploy import deploy_fleet
from lingoforge.runfolder import MANIFEST
from test_deploy import _TAGS, _FakeServer


@pytest.fixture(scope="module")
def short_export(tmp_path_factory: pytest.TempPathFactory, tiny_run: Path, tiny_export: dict) -> Path:
    """The tiny export with answers cut at 24 tokens (``num_predict``): the untrained model never stops, and
    llama.cpp's reference at the default 640 tokens takes ~20 s per deploy here."""
    folder = tmp_path_factory.mktemp("short-export")
    shutil.copy(tiny_run / "export" / tiny_export["model_file"], folder)
    manifest = json.loads((tiny_run / "export" / MANIFEST).read_text())
    manifest["serving"]["parameters"]["num_predict"] = 24
    (folder / MANIFEST).write_text(json.dumps(manifest))
    return folder


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


def _ollama_routes(export: dict, answer: str, show_status: int = 200) -> dict[tuple[str, str], tuple[int, str]]:
    """A server that creates the model, shows it as exported and answers every request with ``answer``."""
    serving = export["serving"]
    shown = {"template": serving["template"], "modelfile": f'SYSTEM """{serving["system"]}"""', "model_info": {},
             "parameters": "\n".join(f'stop "{s}"' for s in serving["parameters"]["stop"])}
    done = {"model": "tickets", "done": True, "done_reason": "stop"}
    show = json.dumps(shown) if show_status == 200 else json.dumps({"error": "model requires more system memory"})
    return {**_TAGS, ("POST", "/api/create"): (200, '{"status": "success"}'),
            ("POST", "/api/show"): (show_status, show),
            ("POST", "/api/chat"): (200, json.dumps({**done, "message": {"role": "assistant", "content": answer}})),
            ("POST", "/api/generate"): (200, json.dumps({**done, "response": answer}))}


def test_one_unreachable_server_is_a_clear_error(short_export: Path) -> None:
    dead = _dead_url()
    result = CliRunner().invoke(cli, ["deploy", str(short_export), "--name", "tickets", "--host", dead])
    assert result.exit_code == 1, result.output
    assert result.stderr.startswith(f"Error: cannot reach the Ollama server at {dead} ")
    assert "Traceback" not in result.output and "deployed to" not in result.output  # one server: its error alone


def test_every_server_is_tried_and_each_failure_named(short_export: Path, tiny_export: dict,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    loads = _count_llama_loads(monkeypatch)
    dead = _dead_url()
    with _FakeServer({**_TAGS, ("POST", "/api/create"): (500, '{"error": "disk full"}')}) as full, \
            _FakeServer(_ollama_routes(tiny_export, "", show_status=500)) as weak, \
            _FakeServer({**_ollama_routes(tiny_export, ""), ("POST", "/api/show"): (200, "{}")}) as odd:
        # The dead port given twice (spelled two ways) is one server: deployed to, and counted, once.
        hosts = [dead, full.url, dead.removeprefix("http://"), weak.url, odd.url]
        fleet = deploy_fleet(short_export, "tickets", hosts)
        result = CliRunner().invoke(cli, ["deploy", str(short_export), "--name", "tickets",
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
    assert loads == []  # no server reached the answer checks: the GGUF was never loaded
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
    """Two servers whose model answers JSON where llama.cpp says otherwise, and the GGUF loads meanwhile."""
    with pytest.MonkeyPatch.context() as monkeypatch:
        loads = _count_llama_loads(monkeypatch)
        with _FakeServer(_ollama_routes(tiny_export, '{"category": "billing"}')) as a, \
                _FakeServer(_ollama_routes(tiny_export, '{"category": "billing"}')) as b:
            return deploy_fleet(short_export, "tickets", [a.url, b.url], n_check=1), loads


def test_reference_answers_are_computed_once_and_failed_checks_do_not_stop_others(
        wrong_fleet: tuple[dict, list[str]]) -> None:
    fleet, loads = wrong_fleet
    assert len(loads) == 1 and loads[0].endswith("model-q5_k_m.gguf")
    assert fleet["deployed"] == [] and len(fleet["failed"]) == 2
    first, second = fleet["hosts"]
    for record in (first, second):
        assert record["created"] is True
        assert record["error"].startswith("Ollama's answers differ from llama.cpp's on 1 of 1 test inputs")
        assert record["checks"][0]["ollama"] == '{"category": "billing"}' and not record["checks"][0]["tie"]
    assert first["checks"][0]["llama_cpp"] == second["checks"][0]["llama_cpp"]


def test_an_unreachable_server_is_a_warning_while_another_serves_the_model(
        short_export: Path, tiny_export: dict, wrong_fleet: tuple[dict, list[str]]) -> None:
    # A server answering exactly llama.cpp's reference passes its checks; the dead one is named, exit 0.
    reference = wrong_fleet[0]["hosts"][0]["checks"][0]["llama_cpp"]
    dead = _dead_url()
    with _FakeServer(_ollama_routes(tiny_export, reference)) as good:
        hosts = ["--host", good.url, "--host", dead, "--checks", "1"]
        shown = CliRunner().invoke(cli, ["deploy", str(short_export), "--name", "tickets", *hosts])
        as_json = CliRunner().invoke(cli, ["deploy", str(short_export), "--name", "tickets", *hosts, "--json"])
    assert shown.exit_code == as_json.exit_code == 0
    assert f"created tickets on {good.url}; greedy answers identical to llama.cpp's on 1 of 1" in shown.stdout
    assert f"already on {good.url} (not re-uploaded): model-q5_k_m.gguf" in shown.stdout
    assert f"warning: deployed to 1 of 2 servers; failed:\n  {dead} (cannot reach" in shown.stderr
    assert shown.stderr.rstrip().endswith(f"retry them: lingoforge deploy {short_export} --name tickets --host {dead} "
                                          "--checks 1")
    fleet = json.loads(as_json.stdout)
    assert fleet["deployed"] == [good.url] and fleet["failed"] == [dead]
    assert fleet["hosts"][0]["run"] == f"OLLAMA_HOST={good.url} ollama run tickets"
    assert fleet["hosts"][0]["checks"][0]["same"] is True
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
                                          *(arg for host in hosts for arg in ("--host", host))])
        assert result.exit_code == 0, result.output  # an unreachable server is named, the others serve
        fleet = json.loads(result.stdout)
        assert fleet["deployed"] == [ollama_server.url, extra.url] and fleet["failed"] == [dead]
        first, unreachable, second = fleet["hosts"]
        assert unreachable["created"] is False
        assert unreachable["error"].startswith(f"cannot reach the Ollama server at {dead}")
        assert f"deployed to 2 of 3 servers; failed:\n  {dead} (cannot reach" in result.stderr
        assert second["uploaded"] == {"model-q5_k_m.gguf": True}  # a fresh server got the blob
        for record in (first, second):
            assert record["checks"][0]["same"], record["checks"]
        assert first["checks"][0]["llama_cpp"] == second["checks"][0]["llama_cpp"] and len(loads) == 1
        for url in (ollama_server.url, extra.url):
            assert ollama.Client(host=url).show("lf-fleet").template == tiny_export["serving"]["template"]
    finally:  # Ollama drops blobs no model uses: the session server is left as this test found it
        with contextlib.suppress(ollama.ResponseError):  # not created there: the failure above tells why
            ollama.Client(host=ollama_server.url).delete("lf-fleet")
