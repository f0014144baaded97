"""Regenerate ``samples/<lang>.jsonl``: ``python -m lingoforge_plugins.ecommerce_taxonomy [OUT_DIR]``.

The samples are the examples of ``generate(10 * languages, seed=0)`` with the built-in taxonomy (never
``$LINGOFORGE_TAXONOMY``), split by language, so a reviewer reads exactly what the generator gives;
a test fails when they are out of date.
"""

from __future__ import annotations

import sys
from pathlib import Path

from lingoforge.fsutil import write_jsonl
from lingoforge.task import Example

from . import build_task
from .taxonomy import DEFAULT_PATH, load_taxonomy

SAMPLES_DIR = Path(__file__).with_name("samples")
PER_LANGUAGE = 10


def sample_examples() -> dict[str, list[Example]]:
    """The sample examples by language (seed 0, built-in taxonomy)."""
    task = build_task(load_taxonomy(DEFAULT_PATH))
    examples = task.generate(PER_LANGUAGE * len(task.languages), seed=0)
    return {lang: [e for e in examples if e.language == lang] for lang in task.languages}


def write_samples(out_dir: Path = SAMPLES_DIR) -> None:
    """Write one canonical JSONL file per language into ``out_dir``."""
    for lang, examples in sample_examples().items():
        write_jsonl(out_dir / f"{lang}.jsonl", (e.to_record() for e in examples))


if __name__ == "__main__":
    write_samples(Path(sys.argv[1]) if len(sys.argv) > 1 else SAMPLES_DIR)
