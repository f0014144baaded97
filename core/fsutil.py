"""Atomic file writes: a crash or a full disk never leaves a half-written output behind."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import IO, Any

from .errors import WriteError


@contextlib.contextmanager
def atomic_open(path: str | os.PathLike[str], mode: str = "w", encoding: str | None = "utf-8") -> Iterator[IO[Any]]:
    """Open a temp file beside ``path`` and rename it over ``path`` only if the block succeeds.

    Failing to create the folder, write, sync or rename (read-only folder, full disk) raises ``WriteError``
    naming ``path``, so every command reports it as one clear line instead of an ``OSError`` traceback.
    """
    target = Path(path)
    if target.exists() and not target.is_file():  # a rename would replace a device (/dev/full) or fail on a folder
        raise WriteError(f"cannot write {target}: it is not a regular file; choose a file path")
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise WriteError(f"cannot write {target}: cannot create its folder {target.parent}: {_reason(exc)}") from exc
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    except OSError as exc:
        raise WriteError(f"cannot write {target}: {_reason(exc)}") from exc
    try:
        os.fchmod(fd, 0o666 & ~_umask())  # mkstemp makes 0600; outputs get the usual permissions
        with os.fdopen(fd, mode, encoding=None if "b" in mode else encoding) as fh:
            yield fh
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, target)
    except OSError as exc:
        _remove(tmp)
        if exc.filename not in (None, tmp, os.fspath(target)):
            raise  # the block failed on another file (reading an input): not this write's failure
        raise WriteError(f"cannot write {target}: {_reason(exc)}") from exc
    except BaseException:
        _remove(tmp)
        raise


@contextlib.contextmanager
def staged(folder: str | os.PathLike[str]) -> Iterator[Path]:
    """A staging folder inside ``folder`` whose files move into ``folder`` together once the block succeeds: outputs
    written as a set (a split's train/val/test and its report) are all new or all as before, never a mix, when the
    disk fills midway. Errors name the files' final paths."""
    target = Path(folder)
    try:
        target.mkdir(parents=True, exist_ok=True)
        stage = Path(tempfile.mkdtemp(prefix=".staging-", dir=target))
    except OSError as exc:
        raise WriteError(f"cannot write in {target}: {_reason(exc)}") from exc
    try:
        yield stage
        for path in sorted(stage.iterdir(), key=lambda p: p.suffix == ".json"):  # a report last, beside its files
            os.replace(path, target / path.name)
    except WriteError as exc:
        raise WriteError(str(exc).replace(str(stage), str(target))) from exc
    finally:
        shutil.rmtree(stage, ignore_errors=True)


def append_text(path: str | os.PathLike[str], text: str) -> None:
    """Append ``text`` to ``path`` and get it on disk before returning: the streamed outputs that resume (eval's and
    predict's answers). A read-only folder or full disk is a ``WriteError`` naming the path; appending nothing checks
    that the file can be written before any work is spent on its contents."""
    target = Path(path)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        with open(target, "a", encoding="utf-8", newline="") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
    except OSError as exc:
        raise WriteError(f"cannot write {target}: {_reason(exc)}") from exc


def _remove(tmp: str) -> None:
    """Drop the temp file so a failed write leaves nothing behind (it is already gone once renamed)."""
    with contextlib.suppress(FileNotFoundError):
        os.unlink(tmp)


def _reason(exc: OSError) -> str:
    """The OS's words for the failure; a file where a folder should be gets a plainer one than "File exists"."""
    if isinstance(exc, FileExistsError):
        return f"{exc.filename} is a file, not a folder"
    return exc.strerror or str(exc)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_text(path: str | os.PathLike[str], text: str) -> None:
    """Atomically write a text file."""
    with atomic_open(path) as fh:
        fh.write(text)


def write_json(path: str | os.PathLike[str], data: Any) -> None:
    """Atomically write pretty, key-sorted-as-given JSON with a trailing newline."""
    write_text(path, json.dumps(data, ensure_ascii=False, indent=2) + "\n")


def write_jsonl(path: str | os.PathLike[str], records: Iterable[dict[str, Any]]) -> int:
    """Atomically write one compact JSON object per line; returns the number of lines."""
    count = 0
    with atomic_open(path) as fh:
        for record in records:
            fh.write(json.dumps(record, ensure_ascii=False, separators=(",", ":")) + "\n")
            count += 1
    return count
