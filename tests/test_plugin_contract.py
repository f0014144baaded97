"""The task contract on every registered task: the checks every task must pass, in one place.

The built-in plugins' own test files keep only what is particular to their task (label rules, native text,
scoring details); everything generic lives in ``lingoforge.testing`` and runs here, once per task the
registry lists (the three built-in plugins, plus YAML tasks on ``$LINGOFORGE_TASK_PATH``).
"""

from __future__ import annotations

import importlib.metadata

import pytest
from lingoforge import get_tasks
from lingoforge.plugins import ENTRY_POINT_GROUP, Registry
from lingoforge.samples import plugin_samples_folder
from lingoforge.task import Task
from lingoforge.testing import (
    assert_languages_interleaved,
    assert_reproducible,
    assert_samples_current,
    assert_task_contract,
)

BUILT_IN = ("support_tickets", "ecommerce_taxonomy", "contract_extraction")
N = 500
TASKS = get_tasks()


@pytest.fixture(scope="module", params=sorted(TASKS))
def task(request: pytest.FixtureRequest) -> Task:
    task = TASKS[request.param]
    if not task.has_generator:
        pytest.skip(f"task {task.name!r} has no generator: it is checked on the user's data")
    return task


def test_every_built_in_plugin_registers_from_its_own_package() -> None:
    """The built-in tasks take the entry-point path third-party plugins take, and all of them load."""
    entry_points = importlib.metadata.entry_points(group=ENTRY_POINT_GROUP)
    built_in = {ep.name: ep.value for ep in entry_points if ep.value.startswith("lingoforge_plugins.")}
    assert built_in == {name: f"lingoforge_plugins.{name}" for name in BUILT_IN}
    assert set(BUILT_IN) <= set(TASKS), "a built-in task failed to load: see `lingoforge plugins`"


def test_task_contract(task: Task) -> None:
    """Deterministic per seed, seeds differ, n examples, every language, valid outputs, unique inputs,
    prompts render, score(gold, gold) perfect and score(None, gold) zero."""
    assert_task_contract(task, n=N)


def test_languages_interleave(task: Task) -> None:
    assert_languages_interleaved(task, task.generate(N, 0))


def test_same_seed_gives_identical_bytes_even_in_another_process(task: Task) -> None:
    assert_reproducible(task, N)


def test_registered_through_its_entry_point(task: Task) -> None:
    """A fresh registry given the plugin module registers the same task, without errors."""
    found = list(importlib.metadata.entry_points(group=ENTRY_POINT_GROUP, name=task.source))
    if not found and task.name not in BUILT_IN:
        pytest.skip(f"task {task.name!r} comes from {task.source}, not from a plugin package")
    (entry_point,) = found
    module = entry_point.load()
    registry = Registry()
    registry.register_plugin(module, entry_point.name)
    assert registry.errors == []
    assert registry.tasks[task.name] == task
    assert module.TASK.version == task.version


def test_committed_samples_are_current(task: Task) -> None:
    """``samples/`` is what ``python -m lingoforge.samples TASK`` writes, byte for byte."""
    folder = plugin_samples_folder(task)
    if task.name not in BUILT_IN and (folder is None or not folder.is_dir()):
        pytest.skip(f"task {task.name!r} ships no samples/ folder")
    assert folder is not None
    assert_samples_current(task, folder)
