"""pytest plugin: a real ``ollama serve`` for tests marked ``ollama``, started once per session.

The binary comes from ``$LINGOFORGE_OLLAMA_BIN`` (``.ci/build-ollama`` builds it from the Go module proxy).
The server listens on a free 127.0.0.1 port with ``OLLAMA_MODELS`` in a temp folder, so tests never touch
a user's models, and is stopped at the end of the session.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

BIN_ENV = "LINGOFORGE_OLLAMA_BIN"


@dataclass(frozen=True)
class OllamaServer:
    """A running server: its URL, the binary (for CLI tests), the environment that points the CLI at it, and its
    process (a test may kill it)."""

    url: str
    binary: Path
    env: dict[str, str]
    process: subprocess.Popen[bytes]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _wait(url: str, process: subprocess.Popen[bytes], log: Path, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"ollama serve exited with {process.returncode}:\n{log.read_text()[-2000:]}")
        try:
            with urllib.request.urlopen(f"{url}/api/version", timeout=2):
                return
        except OSError:
            time.sleep(0.3)
    raise RuntimeError(f"ollama serve did not answer on {url} within {timeout:.0f}s:\n{log.read_text()[-2000:]}")


def _binary() -> Path:
    binary = os.environ.get(BIN_ENV)
    if not binary:
        pytest.skip(f"needs a real Ollama server: set {BIN_ENV} to an ollama binary (.ci/build-ollama builds one)")
    if not Path(binary).is_file():
        pytest.fail(f"{BIN_ENV}={binary} does not exist; run .ci/build-ollama")
    return Path(binary)


@contextlib.contextmanager
def start_ollama(root: Path, cpus: str | None = None, **env_extra: str) -> Iterator[OllamaServer]:
    """One ``ollama serve`` with its models under ``root``, on a free port; stopped on exit.

    ``cpus`` (``taskset -c`` syntax) pins the server to those cores (``bench/bench_scale.py``)."""
    binary = _binary()
    root.mkdir(parents=True, exist_ok=True)
    host = f"127.0.0.1:{_free_port()}"
    env = {**os.environ, "OLLAMA_HOST": host, "OLLAMA_MODELS": str(root / "models"), "HOME": str(root),
           "OLLAMA_NOHISTORY": "1", **env_extra}
    log = root / "serve.log"
    command = [str(binary), "serve"] if cpus is None else ["taskset", "-c", cpus, str(binary), "serve"]
    with log.open("wb") as out:  # its own process group: stopping it stops the model runners it started
        process = subprocess.Popen(command, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://{host}"
    try:
        _wait(url, process, log)
        yield OllamaServer(url, binary, env, process)
    finally:
        kill(process, signal.SIGTERM)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            kill(process, signal.SIGKILL)
            process.wait()


def kill(process: subprocess.Popen[bytes], sig: int = signal.SIGKILL) -> None:
    """Signal a server started here and the runners it started (a test that kills a server mid-run uses it)."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, sig)


@pytest.fixture(scope="session")
def ollama_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[OllamaServer]:
    """The session's server, shared by every ``ollama`` test."""
    with start_ollama(tmp_path_factory.mktemp("ollama")) as server:
        yield server


@pytest.fixture
def more_ollama_servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Callable[[], OllamaServer]]:
    """Start further servers for one test (a fleet, a fresh machine); all are stopped when the test ends."""
    with contextlib.ExitStack() as stack:
        yield lambda: stack.enter_context(start_ollama(tmp_path_factory.mktemp("ollama-extra")))
