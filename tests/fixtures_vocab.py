"""The real Qwen2 and Llama 3 vocab-only GGUFs the tests use, wherever the checkout is.

Why: they sit in ``../shared/fixtures`` on development machines and CI, but not beside a plain clone.
llama.cpp keeps the same files in its ``models/`` folder, and the pinned llama-cpp-python source
package on PyPI vendors that tree, so a clone fetches them once from there (by pip) instead of skipping.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

from lingoforge.models import cache_dir

LLAMA_CPP_PYTHON = "0.3.36"  # the sdist .ci/build-ollama takes headers from
SHARED_FIXTURES = Path(__file__).resolve().parents[2] / "shared" / "fixtures"
MODELS_IN_SDIST = f"llama_cpp_python-{LLAMA_CPP_PYTHON}/vendor/llama.cpp/models"

# name in ../shared/fixtures -> (name in llama.cpp's models/, sha256 of the file in ../shared/fixtures)
VOCABS = {
    "qwen2-vocab.gguf": ("ggml-vocab-qwen2.gguf", "44c2f46b715f585c6ab513970e8a006bfa5badd6108560054921cf598d154d8c"),
    "llama3-vocab.gguf": (
        "ggml-vocab-llama-bpe.gguf",
        "97272e430d53bc7688f52d5e0ad8ea8f163ede9f1bbd1694feaa504797d5d96e",
    ),
}


class VocabUnavailable(RuntimeError):
    """Neither ``../shared/fixtures`` nor the cache has the vocab files and they could not be fetched."""


def vocab_dir() -> Path:
    """The folder holding every file of ``VOCABS`` under its shared name, so tests find one beside the other.

    ``../shared/fixtures`` when it has them all, else the cache, filled from the sdist on first use.
    """
    if all((SHARED_FIXTURES / name).is_file() for name in VOCABS):
        return SHARED_FIXTURES
    cached = cached_vocab_dir()
    if not all((cached / name).is_file() for name in VOCABS):
        with tempfile.TemporaryDirectory(prefix="lingoforge-sdist-") as tmp:
            extract_vocabs(download_sdist(Path(tmp)), cached)
    return cached


def cached_vocab_dir() -> Path:
    """Where vocab files taken from the sdist are kept, so the 77 MB download happens once per cache."""
    return cache_dir() / "fixtures" / f"llama-cpp-python-{LLAMA_CPP_PYTHON}"


def download_sdist(dest: Path) -> Path:
    """The pinned llama-cpp-python source package, downloaded by pip (which reuses its HTTP cache)."""
    cmd = [sys.executable, "-m", "pip", "download", f"llama-cpp-python=={LLAMA_CPP_PYTHON}",
           "--no-deps", "--no-binary", ":all:", "--disable-pip-version-check", "-d", str(dest)]
    done = subprocess.run(cmd, capture_output=True, text=True, check=False)
    sdist = dest / f"llama_cpp_python-{LLAMA_CPP_PYTHON}.tar.gz"
    if done.returncode != 0 or not sdist.is_file():
        lines = (done.stdout + done.stderr).strip().splitlines()
        said = "\n".join([line for line in lines if line.startswith("ERROR")] or lines[-3:])
        raise VocabUnavailable(
            f"the tokenizer fixtures are neither in {SHARED_FIXTURES} nor in {cached_vocab_dir()}, and "
            f"`{' '.join(cmd[2:])}` failed (exit {done.returncode}); give this machine access to PyPI once "
            f"or copy {' and '.join(VOCABS)} into one of those folders:\n{said}")
    return sdist


def extract_vocabs(sdist: Path, target: Path) -> None:
    """Copy the vocab files out of ``sdist`` into ``target`` under their shared names, checked by sha256.

    Each file is written to a temporary name and renamed, so a cache never holds a partial or wrong file.
    """
    wanted = {f"{MODELS_IN_SDIST}/{member}": name for name, (member, _) in VOCABS.items()}
    target.mkdir(parents=True, exist_ok=True)
    with tarfile.open(sdist, "r:gz") as archive:
        for info in archive:
            name = wanted.get(info.name)
            source = archive.extractfile(info) if name else None
            if name is None or source is None:
                continue
            del wanted[info.name]
            digest = hashlib.sha256()
            fd, tmp = tempfile.mkstemp(prefix=f".{name}.", dir=target)
            try:
                with os.fdopen(fd, "wb") as out:
                    while chunk := source.read(1 << 20):
                        digest.update(chunk)
                        out.write(chunk)
                if digest.hexdigest() != VOCABS[name][1]:
                    raise VocabUnavailable(f"{info.name} in {sdist.name} has sha256 {digest.hexdigest()}, "
                                           f"expected {VOCABS[name][1]} (the file in ../shared/fixtures)")
                os.replace(tmp, target / name)
            finally:
                Path(tmp).unlink(missing_ok=True)
            if not wanted:
                return
    raise VocabUnavailable(f"{sdist.name} lacks {', '.join(sorted(wanted))}")
