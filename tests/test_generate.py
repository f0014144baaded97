"""``lingoforge generate`` on the built-in tasks: balanced, deterministic, no duplicates, valid."""

from __future__ import annotations

import errno
import json
import os
from collections import Counter
from pathlib import Path

import pytest
from click.testing import CliRunner
from lingoforge import get_task
from lingoforge.cli import cli
from lingoforge.schema import validate

BUILT_IN = ["support_tickets", "ecommerce_taxonomy", "contract_extraction"]


@pytest.mark.parametrize("name", BUILT_IN)
def test_generate_is_balanced_valid_and_byte_identical(tmp_path: Path, name: str) -> None:
    task = get_task(name)
    n = 500 if name != "contract_extraction" else 120
    first, second = tmp_path / "a.jsonl", tmp_path / "b.jsonl"
    for out in (first, second):
        result = CliRunner().invoke(cli, ["generate", name, "-n", str(n), "--seed", "0", "-o", str(out), "--json"])
        assert result.exit_code == 0, result.output
    assert first.read_bytes() == second.read_bytes()
    rows = [json.loads(line) for line in first.read_text(encoding="utf-8").splitlines()]
    counts = Counter(r["language"] for r in rows)
    assert set(counts) == set(task.languages)
    assert max(counts.values()) - min(counts.values()) <= 1
    assert len({r["input"] for r in rows}) == n
    assert all(not validate(task.schema, r["output"]) for r in rows)
    stats = json.loads(result.stdout)["languages"]
    assert {lang: s["count"] for lang, s in stats.items()} == dict(counts)
    assert all(0 < s["distinct_bigram_ratio"] <= 1 for s in stats.values())


def test_languages_subset_and_unknown_language(tmp_path: Path) -> None:
    out = tmp_path / "o.jsonl"
    ok = CliRunner().invoke(cli, ["generate", "support_tickets", "-n", "9", "--languages", "de,hi,ja", "-o", str(out)])
    assert ok.exit_code == 0, ok.output
    assert [json.loads(x)["language"] for x in out.read_text(encoding="utf-8").splitlines()][:3] == ["de", "hi", "ja"]
    bad = CliRunner().invoke(
        cli, ["generate", "support_tickets", "-n", "4", "--languages", "de,xx", "-o", str(tmp_path / "x.jsonl")]
    )
    assert bad.exit_code == 1 and "no generator text for xx" in bad.output
    assert not (tmp_path / "x.jsonl").exists()


def test_unwritable_output_is_one_clear_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    blocker = tmp_path / "blocker"
    blocker.write_text("a file, not a folder", encoding="utf-8")
    out = blocker / "o.jsonl"
    result = CliRunner().invoke(cli, ["generate", "support_tickets", "-n", "4", "-o", str(out)])
    assert result.exit_code == 1 and isinstance(result.exception, SystemExit)  # a clean exit, not a crash
    assert f"Error: cannot write {out}: " in result.output and "Traceback" not in result.output

    def no_space(*args: object) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "replace", no_space)
    out = tmp_path / "o.jsonl"
    result = CliRunner().invoke(cli, ["generate", "support_tickets", "-n", "4", "-o", str(out)])
    assert result.exit_code == 1 and isinstance(result.exception, SystemExit)
    assert f"Error: cannot write {out}: No space left on device" in result.output
    assert sorted(p.name for p in tmp_path.iterdir()) == ["blocker"]  # no partial or temp file
