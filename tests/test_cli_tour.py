"""The README's CLI tour, command by command, as a user types it: generate → data split → train → export."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner
from lingoforge.cli import cli

pytestmark = pytest.mark.slow


def _ok(*args: str) -> str:
    result = CliRunner().invoke(cli, list(args))
    assert result.exit_code == 0, result.output + repr(result.exception)
    return result.output


def test_split_train_export_finds_the_test_split(tiny_qwen2_dir: Path, tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("llama_cpp", reason="export needs llama-cpp-python (the llamacpp extra)")
    monkeypatch.chdir(tmp_path)
    _ok("generate", "support_tickets", "-n", "40", "--languages", "en,de", "-o", "d.jsonl")
    _ok("data", "split", "d.jsonl", "--task", "support_tickets", "-o", "split")
    _ok("train", "support_tickets", "--data", "split", "--base", str(tiny_qwen2_dir), "-o", "run",
        "--max-steps", "2", "--quiet")
    output = _ok("export", "run", "--quant", "q8_0", "--parity-n", "1", "--json")  # progress bars, then the JSON
    manifest, _ = json.JSONDecoder().raw_decode(output, output.index('{\n  "run_dir"'))
    assert Path(manifest["parity"]["source"]).resolve() == (tmp_path / "split" / "test.jsonl").resolve()
    assert not any("no test split" in w for w in manifest["parity"]["warnings"])

    # One file, no split: training holds out validation, and export says it falls back to those examples.
    _ok("train", "support_tickets", "--data", "d.jsonl", "--base", str(tiny_qwen2_dir), "-o", "run2",
        "--max-steps", "1", "--quiet")
    output = _ok("export", "run2", "--quant", "q8_0", "--parity-n", "1")
    assert "no test split was found" in output and "validation examples" in output
