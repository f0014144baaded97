"""Synthetic marketplace listings: a title (sometimes with a short description), its leaf and its brand.

Determinism: one ``random.Random(seed)`` drives every choice and all word lists are tuples in file
order, so the same seed gives byte-identical examples in any process (no set or hash ordering).
Balance: example ``i`` is in language ``i % len(languages)``; within a language the leaves come round
robin from one seeded shuffle, each language starting at a different offset so that the leftover
partial round is spread over different leaves and the overall leaf counts stay even too.
"""

from __future__ import annotations

import functools
import random
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from lingoforge.errors import LingoforgeError
from lingoforge.scoring import normalize_text
from lingoforge.task import Example

from .prompts import INSTRUCTION
from .taxonomy import Leaf, Taxonomy, default_taxonomy
from .vocab import CommonWords, LanguageStyle, common_words, language_style

BRANDED = 0.8  # share of titles naming a brand (the rest teach brand = null)
WITH_MODEL = 0.6  # share of branded titles that also name a model line
WITH_FIT = 0.85  # share of accessory titles naming the device they fit
DESCRIBED = 0.35  # share of listings with a description line under the title
SPEC_COUNTS = (0, 1, 1, 2)
MAX_TRIES = 100
_SPACE_BEFORE_COMMA = re.compile(r"\s+(?=[,，、])")
_NO_WORDS = CommonWords((), (), ())


@dataclass(frozen=True)
class _Words:
    """Everything needed to write listings of one leaf in one language."""

    nouns: tuple[str, ...]
    features: tuple[str, ...]
    brands: tuple[tuple[str, tuple[str, ...]], ...]
    specs: tuple[tuple[str, ...], ...]
    fits: tuple[str, ...]


@functools.lru_cache(maxsize=64)
def _words(taxonomy: Taxonomy, language: str) -> Mapping[str, _Words]:
    """Per-leaf words for ``language``: the leaf's own ``terms``/``brands`` override the lexicon's."""
    style = language_style(language)
    common = common_words()
    out: dict[str, _Words] = {}
    for leaf in taxonomy.leaves:
        shared = common.get(leaf.id, _NO_WORDS)
        out[leaf.id] = _Words(
            nouns=leaf.terms.get(language) or style.nouns[leaf.id],
            features=style.features.get(leaf.id, ()),
            brands=tuple((b, ()) for b in leaf.brands) or shared.brands,
            specs=shared.specs,
            fits=shared.fits,
        )
    return out


def _clean(text: str) -> str:
    """Collapse the gaps left by empty optional slots (brand, model, spec, fit)."""
    return _SPACE_BEFORE_COMMA.sub("", " ".join(text.split()))


def _listing(rng: random.Random, style: LanguageStyle, words: _Words) -> tuple[str, str | None]:
    """One listing text and the brand it names (``None`` when it names none)."""
    brand, models = rng.choice(words.brands) if words.brands and rng.random() < BRANDED else ("", ())
    features = rng.sample(words.features, 2) if len(words.features) >= 2 else [*words.features, "", ""][:2]
    spec_groups = rng.sample(words.specs, min(len(words.specs), rng.choice(SPEC_COUNTS)))
    fit = rng.choice(style.fit).format(fit=rng.choice(words.fits)) if words.fits and rng.random() < WITH_FIT else ""
    promo, promo2 = rng.sample(style.promos, 2)
    slots = {
        "brand": brand,
        "model": rng.choice(models) if models and rng.random() < WITH_MODEL else "",
        "noun": rng.choice(words.nouns),
        "feature": features[0],
        "feature2": features[1],
        "spec": " ".join(rng.choice(group) for group in spec_groups),
        "fit": fit,
        "promo": promo,
        "promo2": promo2,
        "note": rng.choice(style.notes),
    }
    text = _clean(rng.choice(style.titles).format_map(slots))
    if words.features and rng.random() < DESCRIBED:
        text += "\n" + _clean(rng.choice(style.descriptions).format_map(slots))
    return text, brand or None


def generate(n: int, seed: int, languages: Sequence[str], taxonomy: Taxonomy | None = None) -> list[Example]:
    """``n`` listings balanced over ``languages`` and leaves, identical for the same seed, no duplicate inputs.

    ``taxonomy`` defaults to the registered one; the task binds it with ``functools.partial``.
    """
    if taxonomy is None:
        taxonomy = default_taxonomy()
    langs = tuple(languages)
    if n <= 0 or not langs:
        return []
    rng = random.Random(seed)
    order: list[Leaf] = rng.sample(taxonomy.leaves, len(taxonomy.leaves))
    offsets = [j * len(order) // len(langs) for j in range(len(langs))]
    styles = [language_style(lang) for lang in langs]
    words = [_words(taxonomy, lang) for lang in langs]
    seen: set[str] = set()
    examples: list[Example] = []
    for i in range(n):
        j, k = i % len(langs), i // len(langs)
        leaf = order[(offsets[j] + k) % len(order)]
        for _ in range(MAX_TRIES):
            text, brand = _listing(rng, styles[j], words[j][leaf.id])
            if normalize_text(text) not in seen:  # the key `data check` uses for duplicates
                break
        else:
            raise LingoforgeError(
                f"ecommerce_taxonomy: cannot write {n} distinct listings; the words for {leaf.id!r} in "
                f"{langs[j]!r} run out; add nouns or brands to that leaf, or ask for fewer examples"
            )
        seen.add(normalize_text(text))
        examples.append(
            Example(INSTRUCTION, text, {"category": leaf.path, "brand": brand}, langs[j], {"id": i, "leaf": leaf.id})
        )
    return examples
