"""Regenerate ``samples/<lang>.jsonl``: the first 10 examples per language of ``generate(40, seed=0)``.

    python -m lingoforge_plugins.contract_extraction.make_samples

The samples are real generator output, so a test can check they are up to date with the lexicons.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from lingoforge.fsutil import write_jsonl

from .generator import generate
from .render import LANGUAGES

PER_LANGUAGE = 10
SAMPLES_DIR = Path(__file__).with_name("samples")


def sample_records() -> dict[str, list[dict[str, Any]]]:
    """Canonical JSONL records per language, in generation order."""
    examples = generate(PER_LANGUAGE * len(LANGUAGES), 0, LANGUAGES)
    return {lang: [e.to_record() for e in examples if e.language == lang] for lang in LANGUAGES}


def write_samples(directory: Path = SAMPLES_DIR) -> dict[str, int]:
    """Write one file per language (atomically); returns the line count per file."""
    return {lang: write_jsonl(directory / f"{lang}.jsonl", records) for lang, records in sample_records().items()}


if __name__ == "__main__":
    for language, count in write_samples().items():
        print(f"{SAMPLES_DIR / language}.jsonl: {count} examples")
