"""``lingoforge new-task``: the scaffold installs as a real distribution and passes its own contract test."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner
from lingoforge.cli import cli


def test_new_task_rejects_bad_names_and_labels(tmp_path: Path) -> None:
    result = CliRunner().invoke(cli, ["new-task", "Bad-Name", "--labels", "ok,ok", "--dir", str(tmp_path)])
    assert result.exit_code == 1
    assert "task name 'Bad-Name'" in result.output and "two distinct labels" in result.output
    assert list(tmp_path.iterdir()) == []


@pytest.mark.slow
def test_new_task_installs_and_passes_its_own_test(tmp_path: Path) -> None:
    result = CliRunner().invoke(cli, ["new-task", "claims_triage", "--labels", "fraud,water damage,theft",
                                      "--languages", "en,de,pl", "--dir", str(tmp_path)])
    assert result.exit_code == 0, result.output
    package = tmp_path / "claims_triage"
    site = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation",
                    "--target", str(site), str(package)], check=True)
    env = {**os.environ, "PYTHONPATH": str(site)}
    listed = subprocess.run([sys.executable, "-m", "lingoforge.cli", "tasks", "--json"], env=env,
                            capture_output=True, text=True, check=True)
    assert '"name": "claims_triage"' in listed.stdout
    tests = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(package / "tests")],
                           env=env, capture_output=True, text=True, cwd=package)
    assert tests.returncode == 0, tests.stdout + tests.stderr
    assert "2 passed" in tests.stdout
