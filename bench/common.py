"""What every benchmark records beside its numbers: machine, date and library versions."""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import platform
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from lingoforge.fsutil import write_json  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"
LIBRARIES = ("lingoforge", "torch", "transformers", "peft", "trl", "bitsandbytes", "gguf", "llama-cpp-python", "ollama")


def environment() -> dict[str, Any]:
    """Machine, date and the versions of the libraries that shape the numbers."""
    versions = {}
    for lib in LIBRARIES:
        try:
            versions[lib] = version(lib)
        except PackageNotFoundError:
            versions[lib] = None
    return {
        "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "machine": f"{platform.machine()} {os.cpu_count()} cores, {platform.processor() or platform.platform()}",
        "python": platform.python_version(),
        "versions": versions,
    }


def save(name: str, results: Any) -> Path:
    """Write ``bench/results/<name>.json`` atomically with the environment."""
    path = RESULTS / f"{name}.json"
    write_json(path, {"benchmark": name, "environment": environment(), "results": results})
    return path


@contextlib.contextmanager
def serve_ollama(binary: str, root: Path, cpus: str | None = None,
                 **env_extra: str) -> Iterator[tuple[subprocess.Popen, dict[str, str], str]]:
    """A private ``ollama serve`` (models under ``root``, a free port), pinned to ``cpus`` (``taskset -c``) when
    given; yields (process, the environment that points the CLI at it, its URL) and stops it on exit."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        host = f"127.0.0.1:{sock.getsockname()[1]}"
    env = {**os.environ, "OLLAMA_HOST": host, "OLLAMA_MODELS": str(root / "models"), "HOME": str(root),
           "OLLAMA_NOHISTORY": "1", **env_extra}
    command = [binary, "serve"] if cpus is None else ["taskset", "-c", cpus, binary, "serve"]
    process = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://{host}"
    try:
        for _ in range(200):
            try:
                with urllib.request.urlopen(f"{url}/api/version", timeout=2):
                    break
            except OSError:
                time.sleep(0.3)
        else:
            raise SystemExit(f"ollama serve did not start on {url}")
        yield process, env, url
    finally:
        process.terminate()
        process.wait(timeout=30)
