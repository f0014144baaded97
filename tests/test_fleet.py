"""The fleet's scheduling, and the served backends' errors that need no model: an unreachable host, a server
that is not OpenAI-compatible, a missing key variable. Real servers answer in test_serve_openai.py and
test_serve_fleet.py; here each member is a small in-process backend whose timing and failure the test sets."""

from __future__ import annotations

import http.server
import socket
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from lingoforge.backends import Backend, Conversation, Generation, Servers, get_backend
from lingoforge.backends.fleet import Fleet
from lingoforge.cli import cli
from lingoforge.errors import LingoforgeError

BATCH = [[{"role": "user", "content": f"ticket {i}"}] for i in range(12)]


WAIT_S = 10.0  # how long a gate waits for the event it expects before giving up (a failure, never a pass)


class Server(Backend):
    """A member that answers ``echo: <content>``, and fails from its ``fail_after``-th call on.

    ``gate(server, content)``, when given, runs before each answer: the test holds a request there until an event
    it names has happened (another server answered, failed, or a slot found the queue empty), so what the test
    asserts follows from the order of events, not from how long anything takes."""

    name = "ollama"

    def __init__(self, host: str, fail_after: int | None = None,
                 gate: Callable[[Server, str], None] | None = None) -> None:
        super().__init__("tickets")
        self.host, self.fail_after, self.gate, self.calls, self.answered = host, fail_after, gate, 0, 0
        self.lock = threading.Lock()
        self.started = threading.Event()  # set at its first call
        self.left = threading.Event()  # set when it fails

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "host": self.host}

    def generate(self, batch: Sequence[Conversation], schema: Mapping[str, Any] | None = None,
                 max_new_tokens: int = 8) -> list[Generation]:
        with self.lock:
            self.calls += 1
            calls = self.calls
        self.started.set()
        if self.gate is not None:
            self.gate(self, batch[0][0]["content"])
        if self.fail_after is not None and calls > self.fail_after:
            self.left.set()
            raise ConnectionResetError(f"{self.host} went away")
        with self.lock:
            self.answered += 1
        return [Generation(f"echo: {c[0]['content']}", 0.0, 3) for c in batch]


def wait_for(event: threading.Event, what: str) -> None:
    assert event.wait(WAIT_S), f"{what} did not happen within {WAIT_S:.0f} s"


def until(condition: Callable[[], bool], what: str) -> None:
    """Poll for a state another thread reaches (nothing is asserted about time; the limit only ends a failure)."""
    for _ in range(int(WAIT_S / 0.005)):
        if condition():
            return
        time.sleep(0.005)
    raise AssertionError(f"{what} did not happen within {WAIT_S:.0f} s")


def test_answers_come_back_in_input_order_and_both_servers_take_a_share() -> None:
    """Each server holds its requests until the other has one too, so both answer. The first ticket is held until
    the fleet has counted the eleven others, so it completes after most of them (a slot counts its answer before
    handing it over, so at most the three other slots can still hold theirs): ``generate`` must put it back first."""
    servers: dict[str, Server] = {}
    fleet: Fleet | None = None

    def gate(server: Server, content: str) -> None:
        wait_for(servers["b" if server.host == "a" else "a"].started, "the other server's first request")
        if content == "ticket 0":
            until(lambda: fleet is not None and sum(s.answered for s in fleet.stats) == len(BATCH) - 1,
                  "the other eleven answers while ticket 0 was held")

    servers["a"], servers["b"] = Server("a", gate=gate), Server("b", gate=gate)
    fleet = Fleet([servers["a"], servers["b"]], [2, 2])
    completed = [position for position, _ in fleet.stream(BATCH)]
    assert completed[0] != 0 and completed.index(0) >= len(BATCH) - 4 and sorted(completed) == list(range(12))

    servers["a"], servers["b"] = Server("a", gate=gate), Server("b", gate=gate)
    fleet = Fleet([servers["a"], servers["b"]], [2, 2])
    answers = fleet.generate(BATCH)
    assert [g.text for g in answers] == [f"echo: ticket {i}" for i in range(12)]
    shares = {s["host"]: s["answered"] for s in fleet.describe()["servers"]}
    assert sum(shares.values()) == 12 and min(shares.values()) >= 1, shares
    assert {g.server for g in answers} == {"a", "b"}


def test_a_busy_server_gets_no_request_while_a_free_one_takes_them_all() -> None:
    """Free slots take the next request, so the least busy server gets the work: once both have a request, the slow
    server holds its one until the fast one has answered all the others (a fleet that dealt requests out in turn
    would keep the next request for the slow one, the fast one would never reach eleven, and the gate gives up)."""
    slow: Server
    fast = Server("fast", gate=lambda server, content: wait_for(slow.started, "the slow server's first request"))
    slow = Server("slow", gate=lambda server, content: until(lambda: fast.answered == len(BATCH) - 1,
                                                             "the fast server answering the eleven others"))
    fleet = Fleet([slow, fast], [1, 1])
    answers = fleet.generate(BATCH)
    shares = {s["host"]: s["answered"] for s in fleet.describe()["servers"]}
    assert shares == {"slow": 1, "fast": len(BATCH) - 1}, shares
    assert [g.text for g in answers] == [f"echo: ticket {i}" for i in range(12)]


def test_a_failing_server_leaves_and_the_others_take_its_requests() -> None:
    """b answers two requests and fails on its third while a holds its first request until b has left: b's share
    is exactly two, and a answers the ten others, the one b failed on among them."""
    b = Server("b", fail_after=2)
    fleet = Fleet([Server("a", gate=lambda server, content: wait_for(b.left, "b's failure")), b], [1, 1])
    positions = [at for at, _ in fleet.stream(BATCH)]
    assert sorted(positions) == list(range(12))  # every request answered exactly once
    assert fleet.failures() == {"b": "ConnectionResetError: b went away"}
    shares = {s["host"]: s["answered"] for s in fleet.describe()["servers"]}
    assert shares == {"a": 10, "b": 2}


def test_a_request_that_fails_last_is_taken_by_a_server_that_found_the_queue_empty(monkeypatch) -> None:
    """The one request goes to one server, which holds it until the other server's slot has found the queue empty
    (it waits on the fleet's condition: an empty queue is not the end while a request is out), then fails: the
    waiting server must take it rather than have left."""
    import types

    import lingoforge.backends.fleet as fleet_module

    slot_waiting = threading.Event()

    class Recording(threading.Condition):
        def wait(self, timeout: float | None = None) -> bool:
            slot_waiting.set()  # a slot found nothing to take while a request was out
            return super().wait(timeout)

    shim = types.SimpleNamespace(Condition=Recording, Event=threading.Event, Thread=threading.Thread)
    monkeypatch.setattr(fleet_module, "threading", shim)
    first = threading.Lock()
    taken: list[str] = []

    def gate(server: Server, content: str) -> None:
        with first:
            taken.append(server.host)
            is_first = len(taken) == 1
        if is_first:  # the request's first holder fails once the other slot waits on the empty queue
            server.fail_after = 0
            wait_for(slot_waiting, "the other slot finding the queue empty")

    a, b = Server("a", gate=gate), Server("b", gate=gate)
    fleet = Fleet([a, b], [1, 1])
    [answer] = fleet.generate(BATCH[:1])
    assert slot_waiting.is_set() and len(taken) == 2 and answer.server == taken[1] != taken[0]
    assert list(fleet.failures()) == [taken[0]]


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
