"""Seeded synthetic contracts in English, French, German and Spanish.

Only ``random.Random(seed)`` drives the draws (no global random state, no ``hash()``), so the same
seed gives byte-identical examples in every process. Each fact set gets its own child generator for
wording choices, which keeps a parallel group's renderings independent of one another's wording.
"""

from __future__ import annotations

import random
from collections.abc import Sequence

from lingoforge import Example
from lingoforge.scoring import normalize_text

from .facts import LANGUAGE_HOME, Contract, sample_contract
from .prompts import INSTRUCTION
from .render import LANGUAGES, render

# Share of language blocks in ``generate`` rendered as one parallel group instead of unrelated contracts.
PARALLEL_SHARE = 0.25
_MAX_REDRAWS = 50


def _check_languages(languages: Sequence[str]) -> tuple[str, ...]:
    langs = tuple(languages) or LANGUAGES
    unknown = [lang for lang in langs if lang not in LANGUAGES]
    if unknown:
        raise ValueError(f"contract_extraction has no lexicon for {unknown}; it covers {list(LANGUAGES)}")
    if len(set(langs)) != len(langs):
        raise ValueError(f"languages repeat: {list(langs)}")
    return langs


def _example(contract: Contract, language: str, seed: int, group: str | None) -> Example:
    rendering = render(contract, language, random.Random(seed))
    meta = {"kind": contract.kind, **({"group": group} if group else {})}
    return Example(INSTRUCTION, rendering.text, rendering.output, language, meta)


def _parallel_group(rng: random.Random, languages: Sequence[str], group: str, seen: set[str]) -> list[Example]:
    """One fact set rendered in every language; redrawn if any rendering was already produced."""
    for _ in range(_MAX_REDRAWS):
        contract = sample_contract(rng)
        examples = [_example(contract, lang, rng.getrandbits(64), group) for lang in languages]
        if not any(normalize_text(e.input) in seen for e in examples):  # the key `data check` uses
            seen.update(normalize_text(e.input) for e in examples)
            return examples
    raise RuntimeError("could not draw a new parallel group; the phrase banks are too small")


def _single(rng: random.Random, language: str, seen: set[str]) -> Example:
    for _ in range(_MAX_REDRAWS):
        example = _example(sample_contract(rng, LANGUAGE_HOME[language]), language, rng.getrandbits(64), None)
        if normalize_text(example.input) not in seen:
            seen.add(normalize_text(example.input))
            return example
    raise RuntimeError(f"could not draw a new {language} contract; the phrase banks are too small")


def generate(n: int, seed: int = 0, languages: Sequence[str] = LANGUAGES) -> list[Example]:
    """``n`` examples; example ``i`` is in ``languages[i % len(languages)]`` and no input repeats.

    Slots are filled one block of ``len(languages)`` at a time. About a quarter of the full blocks are
    parallel groups (``meta["group"]`` shared by the renderings), so a held-out split can measure
    whether the model extracts the same structure from the same contract in every language; the
    other blocks hold unrelated contracts whose parties mostly come from the language's country.
    """
    langs = _check_languages(languages)
    rng = random.Random(seed)
    seen: set[str] = set()
    examples: list[Example] = []
    block = 0
    while len(examples) < n:
        remaining = n - len(examples)
        if len(langs) > 1 and remaining >= len(langs) and rng.random() < PARALLEL_SHARE:
            examples += _parallel_group(rng, langs, f"g{seed}-{block}", seen)
        else:
            examples += [_single(rng, lang, seen) for lang in langs[: min(remaining, len(langs))]]
        block += 1
    return examples


def generate_parallel(n_groups: int, seed: int = 0, languages: Sequence[str] = LANGUAGES) -> list[Example]:
    """``n_groups`` fact sets, each rendered once in every language (group-major order).

    Parties, dates, governing law and clause types are identical within a group; summaries and
    obligations are written in each document's language.
    """
    langs = _check_languages(languages)
    rng = random.Random(seed)
    seen: set[str] = set()
    examples: list[Example] = []
    for g in range(n_groups):
        examples += _parallel_group(rng, langs, f"p{seed}-{g}", seen)
    return examples
