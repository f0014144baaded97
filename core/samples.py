"""Reviewer samples: the first examples per language of a task's seed-0 generator run, one JSONL file per language.

Plugins commit them (``samples/<lang>.jsonl``) so that a reviewer reads what the generator really produces,
before any training. One writer serves every task, so all sample folders have the same format and the task
contract suite (``tests/test_plugin_contract.py``) can compare a committed folder with a fresh one byte for byte.
Rewrite a plugin's folder after editing its lexicons or templates:

    python -m lingoforge.samples TASK [FOLDER]     # FOLDER defaults to the plugin package's samples/
"""

from __future__ import annotations

import argparse
import importlib
import importlib.metadata
from collections.abc import Sequence
from pathlib import Path

from .errors import LingoforgeError
from .fsutil import write_jsonl
from .plugins import ENTRY_POINT_GROUP, get_task
from .task import Example, Task

PER_LANGUAGE = 10
SEED = 0


def sample_examples(task: Task) -> dict[str, list[Example]]:
    """``PER_LANGUAGE`` examples per language from one seed-0 run over all languages (generators interleave
    them): what ``lingoforge generate TASK -n <PER_LANGUAGE x languages> --seed 0`` writes, split by language."""
    examples = task.generate(PER_LANGUAGE * len(task.languages), SEED)
    return {lang: [e for e in examples if e.language == lang] for lang in task.languages}


def write_samples(task: Task, folder: Path) -> dict[Path, int]:
    """Write ``folder/<lang>.jsonl`` (canonical compact records, atomically) for every language of ``task``;
    returns the line count per file written."""
    written: dict[Path, int] = {}
    for lang, examples in sample_examples(task).items():
        path = folder / f"{lang}.jsonl"
        written[path] = write_jsonl(path, (e.to_record() for e in examples))
    return written


def plugin_samples_folder(task: Task) -> Path | None:
    """The ``samples/`` folder beside the package of the plugin that registered ``task`` (``None`` for tasks
    that no installed entry point registered, e.g. YAML files): where ``python -m lingoforge.samples`` writes."""
    for entry_point in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP, name=task.source):
        module_file = importlib.import_module(entry_point.module).__file__
        if module_file:
            return Path(module_file).parent / "samples"
    return None


def main(argv: Sequence[str] | None = None) -> None:
    """``python -m lingoforge.samples TASK [FOLDER]``: rewrite a task's sample folder and list what it wrote."""
    parser = argparse.ArgumentParser(
        prog="python -m lingoforge.samples",
        description=f"Rewrite a task's samples/<lang>.jsonl: {PER_LANGUAGE} seed-{SEED} examples per language",
    )
    parser.add_argument("task", help="a registered task name or a YAML task file")
    parser.add_argument("folder", nargs="?", type=Path, help="default: the samples/ folder of the task's plugin")
    args = parser.parse_args(argv)
    try:
        task = get_task(args.task)
        folder = args.folder or plugin_samples_folder(task)
        if folder is None:
            raise LingoforgeError(f"task {task.name!r} comes from no installed plugin package: give FOLDER")
        written = write_samples(task, folder)
    except LingoforgeError as exc:
        parser.exit(1, f"error: {exc}\n")
    for path, count in written.items():
        print(f"{path}: {count} examples")


if __name__ == "__main__":
    main()
