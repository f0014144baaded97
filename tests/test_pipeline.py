"""``lingoforge run``: the whole pipeline on the real SmolLM2-135M, killed during training and resumed."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from lingoforge.checkpoints import complete_checkpoints
from lingoforge.pipeline import STAGES

ARGS = ["support_tickets", "--base", "smollm2-135m", "-n", "40", "--languages", "en,de", "--max-steps", "4",
        "--lr", "5e-4", "--save-steps", "2", "--eval-limit", "4", "--eval-max-new-tokens", "32", "--parity-n", "2",
        "--quant", "q8_0"]


# Run before the CLI in the first process: once its first checkpoint is complete it waits (for the test's kill), so
# the kill always lands during training however fast the machine is.
HOLD_AFTER_FIRST_CHECKPOINT = (
    "import threading\n"
    "from lingoforge.sft_trainer import LingoTrainer\n"
    "save = LingoTrainer._save_checkpoint\n"
    "def save_then_hold(self, model, trial):\n"
    "    save(self, model, trial)\n"
    "    threading.Event().wait()\n"
    "LingoTrainer._save_checkpoint = save_then_hold\n"
)


def _run(out: Path, log: Path, *extra: str, hold: bool = False) -> subprocess.Popen:
    """Start ``lingoforge run`` with its output in a file (a pipe could fill up and stall the run)."""
    start = ["-c", HOLD_AFTER_FIRST_CHECKPOINT + "from lingoforge.cli import main; main()"] if hold else [
        "-m", "lingoforge.cli"]
    return subprocess.Popen([sys.executable, *start, "run", *ARGS, "-o", str(out), *extra],
                            stdout=log.open("w"), stderr=subprocess.STDOUT, text=True,
                            env={**os.environ, "PYTHONUNBUFFERED": "1"})


def _finish(proc: subprocess.Popen, log: Path, timeout: float) -> str:
    proc.wait(timeout=timeout)
    output = log.read_text(encoding="utf-8")
    assert proc.returncode == 0, output[-5000:]
    return output


def _summary(output: str) -> dict:
    """The --json summary: the last top-level JSON object."""
    return json.loads(output[output.rindex("\n{\n") + 1:])


@pytest.mark.slow
def test_run_resumes_after_kill_and_summary_matches_files(tmp_path: Path, smollm2_dir: Path) -> None:
    pytest.importorskip("llama_cpp", reason="export needs llama-cpp-python (the llamacpp extra)")
    out = tmp_path / "demo"
    first = _run(out, tmp_path / "first.log", hold=True)
    checkpoints = out / "adapter" / "checkpoints"
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline and first.poll() is None and not complete_checkpoints(checkpoints):
        time.sleep(0.5)
    assert first.poll() is None, "the run ended before it wrote a checkpoint:\n" + (tmp_path / "first.log").read_text()
    assert [p.name for p in complete_checkpoints(checkpoints)] == ["checkpoint-2"]
    first.send_signal(signal.SIGKILL)
    first.wait()
    recorded = json.loads((out / "run.json").read_text(encoding="utf-8"))["pipeline"]
    assert {"data", "split", "tokens", "plan"} <= set(recorded) and "train" not in recorded

    output = _finish(_run(out, tmp_path / "second.log", "--json"), tmp_path / "second.log", 1800)
    assert "data: up to date, skipped" in output and "resuming training from the last checkpoint" in output
    assert "resuming from checkpoint-2" in output  # the trainer's own word on where it started
    assert json.loads((out / "run.json").read_text(encoding="utf-8"))["train"]["started_at_step"] == 2
    summary = _summary(output)

    run = json.loads((out / "run.json").read_text(encoding="utf-8"))
    assert set(run["pipeline"]) == set(STAGES) - {"deploy"}
    tuned = json.loads((out / "eval" / "report.json").read_text(encoding="utf-8"))
    base = json.loads((out / "eval" / "base-constrained" / "report.json").read_text(encoding="utf-8"))
    free = json.loads((out / "eval" / "base" / "report.json").read_text(encoding="utf-8"))
    assert summary == json.loads((out / "summary.json").read_text(encoding="utf-8")) | {
        "seconds_this_invocation": summary["seconds_this_invocation"]}
    # the comparison is the base model asked with the schema enforced; asked without it, it only gives validity
    assert base["model"]["constrained"] and not free["model"]["constrained"]
    assert summary["overall"] == {"base": base["overall"]["primary"], "fine_tuned": tuned["overall"]["primary"]}
    assert summary["base_unconstrained"]["schema_valid_rate"] == free["overall"]["schema_valid_rate"]
    assert summary["verdict"] == tuned["verdict"]["lines"] and len(summary["verdict"]) >= 3  # one per label field
    assert set(tuned["verdict"]["references"]) == {"majority", "classifier", "retrieval", "base"}
    assert set(summary["languages"]) == {"en", "de"}
    for lang, row in summary["languages"].items():
        assert row["fine_tuned"] == tuned["languages"][lang]["primary"]
    assert summary["files"] == {p.name: p.stat().st_size for p in (out / "export").glob("*.gguf")}
    assert "model-q8_0.gguf" in summary["files"] and Path(summary["modelfile"]).is_file()
    assert summary["parity"]["examples"] == 2

    output = _finish(_run(out, tmp_path / "third.log", "--json"), tmp_path / "third.log", 600)
    assert _summary(output)["overall"] == summary["overall"]
    assert all(f"{stage}: up to date, skipped" in output for stage in set(STAGES) - {"deploy"})
