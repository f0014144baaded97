"""``generate``: synthetic examples to canonical JSONL, with diversity statistics per language."""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .fsutil import write_jsonl
from .task import Example, Task


def _tokens(text: str) -> list[str]:
    """Words for Latin-like scripts, characters for scripts written without spaces (zh, ja, th)."""
    words = text.split()
    if len(words) >= max(3, len(text) // 40):
        return words
    return [ch for ch in text if not ch.isspace()]


def diversity(task: Task, examples: Sequence[Example]) -> dict[str, dict[str, Any]]:
    """Per language: count, distinct-bigram ratio, mean input length (chars) and label distribution."""
    by_lang: dict[str, list[Example]] = defaultdict(list)
    for ex in examples:
        by_lang[ex.language].append(ex)
    label_field = task.fields[0] if task.fields else None
    stats: dict[str, dict[str, Any]] = {}
    for lang in sorted(by_lang):
        items = by_lang[lang]
        bigrams: list[tuple[str, str]] = []
        for ex in items:
            toks = _tokens(ex.input)
            bigrams += list(zip(toks, toks[1:], strict=False))
        labels = Counter(str(ex.output.get(label_field)) for ex in items) if label_field else Counter()
        stats[lang] = {
            "count": len(items),
            "distinct_bigram_ratio": round(len(set(bigrams)) / len(bigrams), 4) if bigrams else 0.0,
            "mean_chars": round(sum(len(ex.input) for ex in items) / len(items), 1),
            "labels": dict(sorted(labels.items())),
        }
    return stats


def generate_file(
    task: Task, n: int, seed: int, languages: Sequence[str] | None, out: Path
) -> dict[str, dict[str, Any]]:
    """Write ``n`` examples to ``out`` atomically; returns the diversity statistics."""
    examples = task.generate(n, seed, languages)
    write_jsonl(out, (ex.to_record() for ex in examples))
    return diversity(task, examples)
