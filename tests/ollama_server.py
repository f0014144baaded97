"""pytest plugin: a real ``ollama serve`` for tests marked ``ollama``, started once per session.

The binary comes from ``$LINGOFORGE_OLLAMA_BIN`` (``.ci/build-ollama`` builds it from the Go module proxy).
The server listens on a free 127.0.0.1 port with ``OLLAMA_MODELS`` in a temp folder, so tests never touch
a user's models, and is stopped at the end of the session.
"""

from __future__ import annotations

import os
import socket
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

BIN_ENV = "LINGOFORGE_OLLAMA_BIN"


@dataclass(frozen=True)
class OllamaServer:
    """A running server: its URL, the binary (for CLI tests) and the environment that points the CLI at it."""

    url: str
    binary: Path
    env: dict[str, str]


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


@pytest.fixture(scope="session")
def ollama_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[OllamaServer]:
    binary = os.environ.get(BIN_ENV)
    if not binary:
        pytest.skip(f"needs a real Ollama server: set {BIN_ENV} to an ollama binary (.ci/build-ollama builds one)")
    if not Path(binary).is_file():
        pytest.fail(f"{BIN_ENV}={binary} does not exist; run .ci/build-ollama")
    root = tmp_path_factory.mktemp("ollama")
    host = f"127.0.0.1:{_free_port()}"
    env = {**os.environ, "OLLAMA_HOST": host, "OLLAMA_MODELS": str(root / "models"), "HOME": str(root),
           "OLLAMA_NOHISTORY": "1"}
    log = root / "serve.log"
    with log.open("wb") as out:
        process = subprocess.Popen([binary, "serve"], env=env, stdout=out, stderr=subprocess.STDOUT)
    url = f"http://{host}"
    try:
        _wait(url, process, log)
        yield OllamaServer(url, Path(binary), env)
    finally:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
