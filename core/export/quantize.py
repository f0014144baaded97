"""Quantize an F16 GGUF with llama.cpp and report which tensors fell back to another type.

K-quants (Q5_K_M, Q4_K_M) need rows divisible by 256; llama.cpp silently picks another type for tensors
that are not (Qwen2.5-0.5B's 896-wide rows, every tensor of a tiny test model). Users should know, so
the report lists them by reading the written file back.
"""

from __future__ import annotations

import ctypes
import os
import shutil
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import LingoforgeError

# lingoforge name -> (llama.cpp ftype, tensor types that are the plan for 2-D weights)
QUANTS: dict[str, tuple[int, frozenset[str]]] = {
    "q5_k_m": (17, frozenset({"Q5_K", "Q6_K"})),
    "q4_k_m": (15, frozenset({"Q4_K", "Q6_K"})),
    "q8_0": (7, frozenset({"Q8_0"})),
    "f16": (1, frozenset({"F16"})),
}


@dataclass(frozen=True)
class QuantReport:
    """The quantized file, the count of each tensor type in it, and the matrices that did not get the plan."""

    path: Path
    quant: str
    types: dict[str, int]
    fallbacks: list[tuple[str, str]] = field(default_factory=list)

    def as_dict(self) -> dict[str, object]:
        return {"path": self.path.name, "quant": self.quant, "types": self.types,
                "fallbacks": [{"tensor": n, "type": t} for n, t in self.fallbacks]}


def inspect(path: Path, quant: str) -> QuantReport:
    """Count the types in ``path`` and list 2-D weight tensors whose type is not the quant's plan."""
    from gguf import GGUFReader

    planned = QUANTS[quant][1]
    reader = GGUFReader(str(path))
    types = Counter(t.tensor_type.name for t in reader.tensors)
    fallbacks = [(t.name, t.tensor_type.name) for t in reader.tensors
                 if len(t.shape) == 2 and t.tensor_type.name not in planned]
    return QuantReport(path, quant, dict(sorted(types.items())), fallbacks)


def quantize(f16_path: str | Path, out_path: str | Path, quant: str = "q5_k_m",
             threads: int | None = None) -> QuantReport:
    """Quantize ``f16_path`` to ``quant`` with ``llama_cpp.llama_model_quantize`` (atomic; F16 is a copy)."""
    if quant not in QUANTS:
        raise LingoforgeError(f"unknown quantization {quant!r}; choose one of {', '.join(QUANTS)}")
    src, out = Path(f16_path), Path(out_path)
    tmp = out.with_name(f".{out.name}.tmp")
    if quant == "f16":
        if src.resolve() != out.resolve():
            shutil.copyfile(src, tmp)
            os.replace(tmp, out)
        return inspect(out, quant)
    try:
        import llama_cpp
    except ImportError:
        raise LingoforgeError("quantizing needs llama-cpp-python: pip install 'lingoforge[llamacpp]'") from None
    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = QUANTS[quant][0]
    params.nthread = threads or os.cpu_count() or 1
    log = out.with_name(f"{out.name}.log")
    try:
        with _log_to(log, llama_cpp):
            rc = llama_cpp.llama_model_quantize(str(src).encode(), str(tmp).encode(), ctypes.byref(params))
        if rc != 0:
            raise LingoforgeError(f"llama.cpp failed to quantize {src} to {quant} (code {rc}); its log is in {log}")
        os.replace(tmp, out)
    finally:
        tmp.unlink(missing_ok=True)
    return inspect(out, quant)


@contextmanager
def _log_to(path: Path, llama_cpp: Any) -> Iterator[None]:
    """Send llama.cpp's log (one line per tensor, hundreds for a 7B model) to ``path`` instead of the terminal;
    the fallbacks that matter are reported by ``inspect`` from the written file."""
    from llama_cpp import _logger

    with path.open("w", encoding="utf-8") as fh:

        @llama_cpp.llama_log_callback
        def write(level: int, text: bytes, user_data: ctypes.c_void_p) -> None:
            fh.write(text.decode("utf-8", errors="replace"))

        llama_cpp.llama_log_set(write, ctypes.c_void_p(0))
        try:
            yield
        finally:
            llama_cpp.llama_log_set(_logger.llama_log_callback, ctypes.c_void_p(0))
