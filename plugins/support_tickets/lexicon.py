"""Per-language phrase banks (``lexicon/<lang>.json``), loaded once per process and checked on load.

A lexicon holds native ticket phrasings per category, filed under a priority cue (see ``labels``),
reply templates, greetings, signatures and the local formats of slot values. Checking the structure
on load turns a typo in a contributor's JSON into one clear error instead of a skewed data set.
"""

from __future__ import annotations

import functools
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lingoforge.errors import TaskDefinitionError

from .labels import CATEGORIES, PRIORITY_BY_CUE

LEXICON_DIR = Path(__file__).with_name("lexicon")
SLOTS = ("order", "amount", "date", "product", "days", "customer", "name")
MIN_PHRASINGS = 4
_SLOT = re.compile(r"\{(\w+)\}")


@dataclass(frozen=True)
class Template:
    """A text with ``{slot}`` placeholders and the slots it uses (parsed once, not per example)."""

    text: str
    slots: frozenset[str]


@dataclass(frozen=True)
class Phrasing:
    """One ticket body: its category, priority cue and a stable id for ``meta``."""

    id: str
    category: str
    cue: str
    template: Template


@dataclass(frozen=True)
class Lexicon:
    language: str
    phrasings: dict[str, tuple[Phrasing, ...]]  # category -> bodies
    responses: dict[str, tuple[Template, ...]]  # category or cue -> replies
    greetings: tuple[str, ...]
    closings: tuple[Template, ...]
    extras: tuple[Template, ...]
    english_terms: tuple[tuple[str, str], ...]
    names: tuple[str, ...]
    products: tuple[str, ...]
    months: tuple[str, ...]
    date_formats: tuple[str, ...]
    amount: dict[str, Any]
    order_formats: tuple[str, ...]
    sentence_sep: str
    inline_greeting: str  # keep | lowercase | never: how a greeting may share the first line

    def replies_for(self, phrasing: Phrasing) -> list[Template]:
        """Replies for the cue if the lexicon has them (a double charge needs its own answer), else for
        the category; only those whose slots the ticket mentions, so a reply never invents an order number."""
        pool = self.responses.get(phrasing.cue) or self.responses[phrasing.category]
        return [t for t in pool if t.slots <= phrasing.template.slots]


def _template(text: str, where: str) -> Template:
    slots = frozenset(_SLOT.findall(text))
    unknown = sorted(slots - set(SLOTS))
    if unknown:
        raise TaskDefinitionError(f"{where}: unknown slot(s) {unknown} in {text!r}; known: {', '.join(SLOTS)}")
    return Template(text, slots)


def _strings(data: dict[str, Any], key: str, where: str) -> tuple[str, ...]:
    values = data.get(key)
    if not isinstance(values, list) or not values or not all(isinstance(v, str) for v in values):
        raise TaskDefinitionError(f"{where}: {key}: expected a non-empty list of strings")
    return tuple(values)


def _choice(data: dict[str, Any], key: str, allowed: tuple[str, ...], where: str) -> str:
    value = data.get(key, allowed[0])
    if value not in allowed:
        raise TaskDefinitionError(f"{where}: {key}: expected one of {list(allowed)}, got {value!r}")
    return str(value)


@functools.cache
def load(language: str) -> Lexicon:
    """The lexicon of ``language``, parsed and checked once per process."""
    path = LEXICON_DIR / f"{language}.json"
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise TaskDefinitionError(f"support_tickets has no lexicon for {language!r} ({path} is missing)") from None
    where = str(path)
    if data.get("language") != language:
        raise TaskDefinitionError(f"{where}: language: expected {language!r}, got {data.get('language')!r}")
    tickets = data.get("tickets") or {}
    phrasings: dict[str, tuple[Phrasing, ...]] = {}
    for category in CATEGORIES:
        by_cue = tickets.get(category)
        if not isinstance(by_cue, dict):
            raise TaskDefinitionError(f"{where}: tickets.{category} is missing")
        unknown = sorted(set(by_cue) - set(PRIORITY_BY_CUE))
        if unknown:
            raise TaskDefinitionError(
                f"{where}: tickets.{category}: unknown cue(s) {unknown}; known: {list(PRIORITY_BY_CUE)}"
            )
        items = tuple(
            Phrasing(f"{category}.{cue}.{i}", category, cue, _template(text, f"{where}: tickets.{category}.{cue}[{i}]"))
            for cue, texts in by_cue.items()
            for i, text in enumerate(_strings(by_cue, cue, f"{where}: tickets.{category}"))
        )
        if len(items) < MIN_PHRASINGS:
            raise TaskDefinitionError(
                f"{where}: tickets.{category}: {len(items)} phrasings, need at least {MIN_PHRASINGS}"
            )
        phrasings[category] = items
    raw_responses = data.get("responses") or {}
    missing = [c for c in CATEGORIES if c not in raw_responses]
    if missing:
        raise TaskDefinitionError(f"{where}: responses: missing {missing}")
    responses = {
        key: tuple(
            _template(t, f"{where}: responses.{key}") for t in _strings(raw_responses, key, f"{where}: responses")
        )
        for key in raw_responses
    }
    if len(data.get("months") or []) != 12:
        raise TaskDefinitionError(f"{where}: months: expected the 12 month names")
    lexicon = Lexicon(
        language=language,
        phrasings=phrasings,
        responses=responses,
        greetings=_strings(data, "greetings", where),
        closings=tuple(_template(t, f"{where}: closings") for t in _strings(data, "closings", where)),
        extras=tuple(_template(t, f"{where}: extras") for t in _strings(data, "extras", where)),
        english_terms=tuple((native, english) for native, english in data.get("english_terms", [])),
        names=_strings(data, "names", where),
        products=_strings(data, "products", where),
        months=tuple(data["months"]),
        date_formats=_strings(data, "date_formats", where),
        amount=dict(data["amount"]),
        order_formats=_strings(data, "order_formats", where),
        sentence_sep=str(data.get("sentence_sep", " ")),
        inline_greeting=_choice(data, "inline_greeting", ("keep", "lowercase", "never"), where),
    )
    orphans = [p.id for items in phrasings.values() for p in items if not lexicon.replies_for(p)]
    if orphans:
        raise TaskDefinitionError(f"{where}: no reply fits {orphans}: add a reply that uses only the ticket's slots")
    return lexicon
