"""Atomic writers: a write failure is a ``WriteError`` naming the path, and never leaves a partial or temp file."""

from __future__ import annotations

import errno
import os
from pathlib import Path

import pytest
from lingoforge.errors import WriteError
from lingoforge.fsutil import append_text, atomic_open, staged, write_json, write_jsonl, write_text


def _no_space(*args: object) -> None:
    raise OSError(errno.ENOSPC, "No space left on device")


def test_parent_is_a_file_names_the_path(tmp_path: Path) -> None:
    blocker = tmp_path / "blocker"
    blocker.write_text("not a folder", encoding="utf-8")
    with pytest.raises(WriteError) as err:
        write_jsonl(blocker / "out.jsonl", [{"a": 1}])
    assert str(err.value) == (
        f"cannot write {blocker / 'out.jsonl'}: cannot create its folder {blocker}: {blocker} is a file, not a folder"
    )
    with pytest.raises(WriteError) as err:
        write_json(blocker / "sub" / "out.json", {"a": 1})
    assert str(err.value) == (
        f"cannot write {blocker / 'sub' / 'out.json'}: cannot create its folder {blocker / 'sub'}: Not a directory"
    )
    assert sorted(p.name for p in tmp_path.iterdir()) == ["blocker"]


@pytest.mark.parametrize("call", ["fsync", "replace"])
def test_full_disk_keeps_the_old_file_and_leaves_no_temp(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, call: str
) -> None:
    target = tmp_path / "out.txt"
    target.write_text("old", encoding="utf-8")
    monkeypatch.setattr(os, call, _no_space)
    with pytest.raises(WriteError) as err:
        write_text(target, "new")
    assert str(err.value) == f"cannot write {target}: No space left on device"
    assert isinstance(err.value.__cause__, OSError) and err.value.__cause__.errno == errno.ENOSPC
    assert target.read_text(encoding="utf-8") == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.txt"]


def test_an_error_reading_another_file_in_the_block_is_not_called_a_write_error(tmp_path: Path) -> None:
    missing = tmp_path / "missing.png"
    with pytest.raises(FileNotFoundError) as err, atomic_open(tmp_path / "copy.png", "wb") as fh:
        fh.write(missing.read_bytes())
    assert err.value.filename == str(missing)
    assert list(tmp_path.iterdir()) == []


def test_a_device_or_pipe_is_never_replaced_by_a_file(tmp_path: Path) -> None:
    pipe = tmp_path / "pipe"
    os.mkfifo(pipe)
    with pytest.raises(WriteError, match="it is not a regular file"):
        write_text(pipe, "x")
    assert pipe.is_fifo()


def test_staged_files_move_in_together_or_not_at_all(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "a.jsonl").write_text("old a")
    (tmp_path / "b.jsonl").write_text("old b")
    with staged(tmp_path) as stage:
        write_text(stage / "a.jsonl", "new a")
    assert [(tmp_path / n).read_text() for n in ("a.jsonl", "b.jsonl")] == ["new a", "old b"]
    with pytest.raises(WriteError) as err, staged(tmp_path) as stage:
        write_text(stage / "a.jsonl", "newer a")
        monkeypatch.setattr(os, "fsync", _no_space)
        write_text(stage / "b.jsonl", "new b")
    assert str(err.value) == f"cannot write {tmp_path / 'b.jsonl'}: No space left on device"  # the final path
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.jsonl", "b.jsonl"]  # no staging folder left
    assert [(tmp_path / n).read_text() for n in ("a.jsonl", "b.jsonl")] == ["new a", "old b"]


def test_append_text_names_the_path(tmp_path: Path) -> None:
    append_text(tmp_path / "log.jsonl", "1\n")
    append_text(tmp_path / "log.jsonl", "2\n")
    assert (tmp_path / "log.jsonl").read_text() == "1\n2\n"
    (tmp_path / "blocker").write_text("a file")
    with pytest.raises(WriteError, match=f"cannot write {tmp_path / 'blocker' / 'p.jsonl'}: "):
        append_text(tmp_path / "blocker" / "p.jsonl", "")
