"""``lingoforge new-task``: the scaffold installs as a real distribution and passes its own contract test."""

from __future__ import annotations

import importlib
import os
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner
from lingoforge.cli import cli
from lingoforge.testing import assert_task_contract


def test_new_task_rejects_bad_names_and_labels(tmp_path: Path) -> None:
    result = CliRunner().invoke(cli, ["new-task", "Bad-Name", "--labels", "ok,ok", "--dir", str(tmp_path)])
    assert result.exit_code == 1
    assert "task name 'Bad-Name'" in result.output and "two distinct labels" in result.output
    assert list(tmp_path.iterdir()) == []


def test_new_task_has_the_built_in_plugin_layout_and_passes_the_contract(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    result = CliRunner().invoke(cli, ["new-task", "refund_reason", "--labels", "late,broken",
                                      "--languages", "en,ja", "--dir", str(tmp_path)])
    assert result.exit_code == 0, result.output
    package = tmp_path / "refund_reason" / "lingoforge_refund_reason"
    layout = {"__init__.py", "schema.json", "prompts.py", "generator.py", "scoring.py"}
    assert {p.name for p in package.iterdir()} == layout
    monkeypatch.syspath_prepend(str(package.parent))
    monkeypatch.delitem(sys.modules, package.name, raising=False)
    plugin = importlib.import_module(package.name)
    assert_task_contract(plugin.TASK)
    assert plugin.TASK.system_prompt == importlib.import_module(f"{package.name}.prompts").SYSTEM_PROMPT


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
