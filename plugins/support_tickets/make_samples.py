"""Regenerate the committed reviewer samples: ``python -m lingoforge_plugins.support_tickets.make_samples``.

Run it after editing a lexicon; a test fails while ``samples/`` is stale, so reviewers always read
what the generator really produces.
"""

from __future__ import annotations

from pathlib import Path

from lingoforge.fsutil import write_jsonl

from .generator import generate
from .labels import LANGUAGES

SAMPLES_DIR = Path(__file__).with_name("samples")
PER_LANGUAGE = 10
SEED = 0


def sample_records() -> dict[str, list[dict[str, object]]]:
    """``PER_LANGUAGE`` canonical records per language, from one seed-0 run over all languages."""
    examples = generate(PER_LANGUAGE * len(LANGUAGES), SEED, LANGUAGES)
    return {lang: [e.to_record() for e in examples if e.language == lang] for lang in LANGUAGES}


def write_samples(directory: Path = SAMPLES_DIR) -> None:
    """Write ``samples/<lang>.jsonl`` atomically."""
    for lang, records in sample_records().items():
        write_jsonl(directory / f"{lang}.jsonl", records)


if __name__ == "__main__":
    write_samples()
    print(f"wrote {len(LANGUAGES)} files to {SAMPLES_DIR}")
