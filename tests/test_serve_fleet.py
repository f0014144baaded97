"""``predict`` across two real Ollama servers, as an operator runs it: one server dies mid-run and the other
finishes the work; the predict process itself is killed (-9) and rerun; every input is written exactly once, in
input order, both times."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from lingoforge import get_task
from lingoforge.backends import Servers
from lingoforge.deploy import deploy_fleet
from lingoforge.predict import predict
from ollama_server import OllamaServer, kill, start_ollama
from run_fixtures import TASK

pytestmark = [pytest.mark.slow, pytest.mark.ollama]
NAME = "lf-predict-fleet"
N = 4  # each answer takes seconds on one thread: few inputs, yet two per server
# Tokens per answer: each schema-constrained token took Ollama 0.3-0.5 s on one thread here (its grammar checked over
# SmolLM2's 49k-token vocabulary), and what is tested is who answers which input, not what the answer says.
TOKENS = 8
# Inputs are asked with the schema enforced (--constrained): the random adapter's free answers are never the task's
# JSON, and each would be asked a second time, constrained, doubling the requests without changing what is tested.


def _serve(urls: list[str], run: Path) -> None:
    """Deploy the run to ``urls``, then serve it as NAME with one thread per model runner: two servers on this
    machine's two cores each spinning two llama.cpp threads take minutes per answer (measured: 2 min vs 3 s)."""
    import ollama

    fleet = deploy_fleet(run, f"{NAME}-base", urls, n_check=1, max_tokens=TOKENS, force=True)  # random adapter
    assert not fleet["failed"], fleet
    for url in urls:
        ollama.Client(host=url).create(model=NAME, from_=f"{NAME}-base", parameters={"num_thread": 1})


@pytest.fixture(scope="module")
def second(tmp_path_factory: pytest.TempPathFactory, ollama_server: OllamaServer, smollm2_run: Path,
           smollm2_export: dict) -> Iterator[OllamaServer]:
    """A second server beside the session's; both serve the run's export as NAME."""
    with start_ollama(tmp_path_factory.mktemp("ollama-second")) as server:
        _serve([ollama_server.url, server.url], smollm2_run)
        yield server


@pytest.fixture
def tickets(tmp_path: Path) -> Path:
    path = tmp_path / "tickets.jsonl"
    examples = get_task(TASK).generate(N, seed=11)
    path.write_text("".join(json.dumps({"id": f"t{i}", "input": e.input}) + "\n" for i, e in enumerate(examples)),
                    encoding="utf-8")
    return path


def _ids(out: Path) -> list[str]:
    return [json.loads(line)["id"] for line in out.read_text(encoding="utf-8").splitlines()]


def _wait_for_lines(out: Path, n: int, timeout: float = 300) -> None:
    deadline = time.monotonic() + timeout
    while not (out.is_file() and out.read_text(encoding="utf-8").count("\n") >= n):
        assert time.monotonic() < deadline, f"{out} did not reach {n} lines"
        time.sleep(0.05)


def test_a_server_killed_mid_run_leaves_its_work_to_the_other(
    tmp_path: Path, tickets: Path, ollama_server: OllamaServer, second: OllamaServer, monkeypatch
) -> None:
    """The second server dies while a request of ours is out to it, after it answered one: the test counts the
    requests each server gets (one slot each) and kills the server at its second request, holding that request and
    the first server's first one until the server is dead, so the order of events, not timing, decides the shares."""
    from lingoforge.backends.ollama import OllamaBackend, ollama_host

    real_generate = OllamaBackend.generate
    calls: dict[str, int] = {}
    lock = threading.Lock()
    busy, killed = threading.Event(), threading.Event()

    def counted(self: OllamaBackend, *args: object, **kwargs: object) -> object:
        with lock:
            calls[self.host] = n = calls.get(self.host, 0) + 1
        if self.host == ollama_host(second.url) and n == 2:
            busy.set()  # the second server answered one request and now has another
            assert killed.wait(300), "the second server was not killed"
        elif self.host == ollama_host(ollama_server.url) and n == 1:
            assert killed.wait(300), "the second server was not killed"
        return real_generate(self, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(OllamaBackend, "generate", counted)
    out = tmp_path / "out.jsonl"
    result: dict = {}
    servers = Servers((second.url, ollama_server.url), parallel=1)
    worker = threading.Thread(target=lambda: result.update(
        predict(f"ollama:{NAME}", get_task(TASK), tickets, out, servers=servers, constrained=True,
                max_new_tokens=TOKENS)))
    worker.start()
    assert busy.wait(300), f"the second server never got a second request: {calls}"
    kill(second.process)
    second.process.wait(timeout=60)
    killed.set()
    worker.join(timeout=600)
    assert not worker.is_alive() and _ids(out) == [f"t{i}" for i in range(N)]  # every line once, in input order
    shares = {s["host"]: s for s in result["servers"]}
    assert shares[second.url]["failed"] and shares[ollama_server.url]["failed"] is None, shares
    # every request once, none retried (constrained); the dead server's share is the one it answered before its death
    assert result["retried"] == 0
    assert shares[second.url]["answered"] == 1 and sum(s["answered"] for s in shares.values()) == N


def test_predict_killed_and_rerun_writes_every_input_once(
    tmp_path: Path, tickets: Path, ollama_server: OllamaServer, smollm2_run: Path, smollm2_export: dict,
    more_ollama_servers
) -> None:
    other = more_ollama_servers()
    _serve([other.url], smollm2_run)
    out = tmp_path / "out.jsonl"
    command = [sys.executable, "-m", "lingoforge.cli", "predict", f"ollama:{NAME}", str(tickets), "-o", str(out),
               "--task", TASK, "--host", ollama_server.url, "--host", other.url, "--constrained",
               "--max-new-tokens", str(TOKENS), "--json"]
    # the first process holds once it has written 2 lines, so the kill always lands mid-file: answers that come back
    # out of order are written together once the earliest arrives, and a write past the second line is cut there,
    # as a kill during that write would leave it
    held = ("import threading\n"
            "import lingoforge.predict as p\n"
            "write, lines = p.append_text, [0]\n"
            "def append_then_hold(path, text):\n"
            "    kept = text.split('\\n')\n"
            "    room = 2 - lines[0]\n"
            "    if len(kept) - 1 > room:\n"
            "        text = '\\n'.join(kept[:room]) + '\\n'\n"
            "    write(path, text)\n"
            "    lines[0] += text.count('\\n')\n"
            "    if lines[0] >= 2:\n"
            "        threading.Event().wait()\n"
            "p.append_text = append_then_hold\n"
            "from lingoforge.cli import main; main()\n")
    first = subprocess.Popen([sys.executable, "-c", held, *command[3:]], stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL)
    _wait_for_lines(out, 2)
    assert first.poll() is None, "the first predict ended before it was killed"
    first.send_signal(signal.SIGKILL)
    first.wait()
    kept = out.read_text(encoding="utf-8").count("\n")  # whole lines; a line cut by the kill is not one
    rerun = subprocess.run(command, capture_output=True, text=True, timeout=600, check=True)
    summary = json.loads(rerun.stdout)
    assert _ids(out) == [f"t{i}" for i in range(N)]
    assert summary["skipped"] == kept == 2 and summary["written"] == N - kept
    assert {s["host"] for s in summary["servers"]} == {ollama_server.url, other.url}


def test_an_unreachable_server_among_several_is_named_and_the_others_carry_on(
    tmp_path: Path, tickets: Path, ollama_server: OllamaServer, second: OllamaServer
) -> None:
    with socket.socket() as sock:  # a port nothing listens on
        sock.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{sock.getsockname()[1]}"
    out = tmp_path / "out.jsonl"
    done = subprocess.run([sys.executable, "-m", "lingoforge.cli", "predict", f"ollama:{NAME}", str(tickets), "-o",
                           str(out), "--task", TASK, "--host", dead, "--host", ollama_server.url, "--constrained",
                           "--max-new-tokens", str(TOKENS), "--json"], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    assert _ids(out) == [f"t{i}" for i in range(N)]
    # warned on stderr even under --json, whose stdout a script reads
    assert f"server {dead} left the run: cannot reach the Ollama server at {dead}" in done.stderr
    assert "Traceback" not in done.stderr
    summary = json.loads(done.stdout)
    shares = {s["host"]: s for s in summary["servers"]}
    assert shares[dead]["answered"] == 0 and shares[dead]["failed"].startswith("cannot reach the Ollama server")
    # the live one answered every input, once (constrained: nothing retried)
    live = shares[ollama_server.url]
    assert summary["retried"] == 0 and live["answered"] == N and live["failed"] is None
