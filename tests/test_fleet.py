"""The fleet's scheduling, and the served backends' errors that need no model: an unreachable host, a server
that is not OpenAI-compatible, a missing key variable. Real servers answer in test_serve_openai.py and
test_serve_fleet.py; here each member is a small in-process backend whose timing and failure the test sets."""

from __future__ import annotations

import http.server
import socket
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from lingoforge.backends import Backend, Conversation, Generation, Servers, get_backend
from lingoforge.backends.fleet import Fleet
from lingoforge.cli import cli
from lingoforge.errors import LingoforgeError

BATCH = [[{"role": "user", "content": f"ticket {i}"}] for i in range(12)]


class Server(Backend):
    """A member that answers ``echo: <content>`` after ``delay_s``, and fails from its ``fail_after``-th call on."""

    name = "ollama"

    def __init__(self, host: str, delay_s: float = 0.0, fail_after: int | None = None) -> None:
        super().__init__("tickets")
        self.host, self.delay_s, self.fail_after, self.calls = host, delay_s, fail_after, 0
        self.lock = threading.Lock()

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "host": self.host}

    def generate(self, batch: Sequence[Conversation], schema: Mapping[str, Any] | None = None,
                 max_new_tokens: int = 8) -> list[Generation]:
        with self.lock:
            self.calls += 1
            calls = self.calls
        time.sleep(self.delay_s)
        if self.fail_after is not None and calls > self.fail_after:
            raise ConnectionResetError(f"{self.host} went away")
        return [Generation(f"echo: {c[0]['content']}", self.delay_s, 3) for c in batch]


def test_answers_come_back_in_input_order_and_each_server_takes_a_share() -> None:
    fleet = Fleet([Server("a", 0.01), Server("b", 0.01)], [2, 2])
    answers = fleet.generate(BATCH)
    assert [g.text for g in answers] == [f"echo: ticket {i}" for i in range(12)]
    shares = {s["host"]: s["answered"] for s in fleet.describe()["servers"]}
    assert sum(shares.values()) == 12 and min(shares.values()) >= 3, shares
    assert {g.server for g in answers} == {"a", "b"}


def test_the_faster_server_answers_more() -> None:
    """Free slots take the next request, so the least busy server gets the work."""
    fleet = Fleet([Server("slow", 0.06), Server("fast", 0.01)], [1, 1])
    fleet.generate(BATCH)
    shares = {s["host"]: s["answered"] for s in fleet.describe()["servers"]}
    assert shares["fast"] > 2 * shares["slow"], shares


def test_a_failing_server_leaves_and_the_others_take_its_requests() -> None:
    fleet = Fleet([Server("a", 0.01), Server("b", 0.01, fail_after=2)], [1, 1])
    positions = [at for at, _ in fleet.stream(BATCH)]
    assert sorted(positions) == list(range(12))  # every request answered exactly once
    assert fleet.failures() == {"b": "ConnectionResetError: b went away"}
    shares = {s["host"]: s["answered"] for s in fleet.describe()["servers"]}
    assert shares == {"a": 10, "b": 2}


def test_a_request_that_fails_last_is_taken_by_a_server_that_found_the_queue_empty() -> None:
    """The one request goes to a (its slot starts first) and fails after b saw an empty queue: b must wait for it
    rather than leave, since an empty queue is not the end while a request is out."""
    for _ in range(5):
        fleet = Fleet([Server("a", 0.05, fail_after=0), Server("b")], [1, 1])
        assert [g.server for g in fleet.generate(BATCH[:1])] == ["b"]


def test_when_every_server_fails_the_error_names_each() -> None:
    fleet = Fleet([Server("a", fail_after=1), Server("b", fail_after=0)], [1, 1], failed={"c": "cannot reach c"})
    with pytest.raises(LingoforgeError, match=r"remaining 11 of 12 requests: .*a: Connection.*b: .*c: cannot"):
        fleet.generate(BATCH)


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def not_openai(tmp_path: Path) -> Iterator[str]:
    """A real HTTP server that is not OpenAI-compatible: a static file server (GET /v1/models is a 404 page)."""
    handler = lambda *a: http.server.SimpleHTTPRequestHandler(*a, directory=str(tmp_path))  # noqa: E731
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def test_openai_bad_endpoints_are_named_and_only_all_failing_is_an_error(not_openai: str, tmp_path: Path) -> None:
    dead = f"http://127.0.0.1:{_closed_port()}/v1"
    with pytest.raises(LingoforgeError, match=rf"{not_openai} is not an OpenAI-compatible endpoint: GET /models "
                                              rf"answered 404 .*usually live under /v1: {not_openai}/v1"):
        get_backend("smollm2-135m", "openai", servers=Servers((not_openai,)))
    with pytest.raises(LingoforgeError, match=rf"no server could be opened: {dead}: cannot reach .*; {not_openai}"):
        get_backend("smollm2-135m", "openai", servers=Servers((dead, not_openai)))
    with pytest.raises(LingoforgeError, match="the openai backend needs --host URL"):
        get_backend("smollm2-135m", "openai")


def test_a_named_key_variable_must_be_set(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("LF_TEST_KEY", raising=False)
    with pytest.raises(LingoforgeError, match=r"--api-key-env LF_TEST_KEY: the environment variable \$LF_TEST_KEY"):
        get_backend("smollm2-135m", "openai", servers=Servers(("http://127.0.0.1:9/v1",), api_key_env="LF_TEST_KEY"))


def test_cli_unreachable_servers_exit_1_without_traceback(tmp_path: Path) -> None:
    source = tmp_path / "in.jsonl"
    source.write_text('{"input": "Mi pedido no llegó"}\n', encoding="utf-8")
    dead = [f"http://127.0.0.1:{_closed_port()}" for _ in range(2)]
    result = CliRunner().invoke(cli, ["predict", "ollama:tickets", str(source), "-o", str(tmp_path / "out.jsonl"),
                                       "--task", "support_tickets", "--host", dead[0], "--host", dead[1]])
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output
    assert f"{dead[0]}: cannot reach the Ollama server" in result.output and dead[1] in result.output
    result = CliRunner().invoke(cli, ["predict", "smollm2-135m", str(source), "-o", str(tmp_path / "o.jsonl"),
                                       "--task", "support_tickets", "--backend", "openai", "--host", dead[0] + "/v1"])
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert f"cannot reach {dead[0]}/v1" in result.output
