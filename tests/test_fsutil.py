"""Atomic writers: a write failure is a ``WriteError`` naming the path, and never leaves a partial or temp file."""

from __future__ import annotations

import errno
import os
from pathlib import Path

import pytest
from lingoforge.errors import WriteError
from lingoforge.fsutil import atomic_open, write_json, write_jsonl, write_text


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
