"""The lexicon: product words per leaf and selling style per language, read once from ``lexicon/*.json``.

Words live in data files, not code, so a native speaker can review or extend one language without
touching the generator. ``common.json`` holds what sellers write the same way in every market (brands,
model lines, specs, the devices an accessory fits); ``<lang>.json`` holds the nouns, feature phrases,
promotion tags and title layouts of that language's marketplaces.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lingoforge.errors import TaskDefinitionError

LEXICON_DIR = Path(__file__).with_name("lexicon")
LANGUAGES: tuple[str, ...] = ("en", "de", "fr", "zh", "ja", "ko", "th", "vi", "id")
# Placeholders a title or description layout may use; the generator fills every one of them.
SLOTS = frozenset({"brand", "model", "noun", "feature", "feature2", "spec", "fit", "promo", "promo2", "note"})


@dataclass(frozen=True)
class CommonWords:
    """Language-neutral words of one leaf.

    ``brands`` pairs a brand with the model lines written after it; ``specs`` are groups of alternatives
    (storage sizes, shoe sizes...) so a title never names two values of the same kind.
    """

    brands: tuple[tuple[str, tuple[str, ...]], ...]
    specs: tuple[tuple[str, ...], ...]
    fits: tuple[str, ...]


@dataclass(frozen=True)
class LanguageStyle:
    """How sellers in one language write listings: layouts with ``{slot}`` placeholders and word lists."""

    language: str
    titles: tuple[str, ...]
    descriptions: tuple[str, ...]
    fit: tuple[str, ...]
    promos: tuple[str, ...]
    notes: tuple[str, ...]
    nouns: Mapping[str, tuple[str, ...]]
    features: Mapping[str, tuple[str, ...]]


def _read(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise TaskDefinitionError(f"{path}: cannot read the lexicon: {exc}") from None
    if not isinstance(data, dict) or not isinstance(data.get("leaves"), dict):
        raise TaskDefinitionError(f"{path}: leaves: expected a mapping of leaf id to words")
    return data


@functools.cache
def common_words() -> Mapping[str, CommonWords]:
    """Brands, specs and fits per leaf id (also the set of leaf ids the built-in lexicon knows)."""
    data = _read(LEXICON_DIR / "common.json")
    return {
        leaf_id: CommonWords(
            brands=tuple((brand, tuple(models)) for brand, models in words["brands"].items()),
            specs=tuple(tuple(group) for group in words["specs"]),
            fits=tuple(words["fits"]),
        )
        for leaf_id, words in data["leaves"].items()
    }


@functools.cache
def language_style(language: str) -> LanguageStyle:
    """The selling style and per-leaf words of ``language`` (``lexicon/<language>.json``)."""
    path = LEXICON_DIR / f"{language}.json"
    data = _read(path)
    leaves: dict[str, Any] = data["leaves"]
    return LanguageStyle(
        language=language,
        titles=tuple(data["titles"]),
        descriptions=tuple(data["descriptions"]),
        fit=tuple(data["fit"]),
        promos=tuple(data["promos"]),
        notes=tuple(data["notes"]),
        nouns={leaf_id: tuple(words["nouns"]) for leaf_id, words in leaves.items()},
        features={leaf_id: tuple(words["features"]) for leaf_id, words in leaves.items()},
    )
