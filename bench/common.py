"""What every benchmark records beside its numbers: machine, date and library versions."""

from __future__ import annotations

import datetime as dt
import os
import platform
import sys
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
