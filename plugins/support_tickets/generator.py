"""Synthetic tickets: balanced over languages and categories, deterministic for a seed.

Only ``random.Random(seed)`` draws anything and every choice walks a tuple in file order, so the same
seed gives byte-identical data in any process (no ``hash()``-ordered sets, no global random state).
"""

from __future__ import annotations

import random
from collections.abc import Sequence

from lingoforge import Example
from lingoforge.errors import LingoforgeError
from lingoforge.scoring import normalize_text

from . import noise, slots
from .labels import CATEGORIES, PRIORITY_BY_CUE
from .lexicon import Lexicon, Phrasing, Template, load
from .prompts import INSTRUCTION

MAX_ATTEMPTS = 100  # redraws before we admit the lexicon cannot give that many distinct tickets


def _fill(template: Template, values: dict[str, str]) -> str:
    return template.text.format_map(values) if template.slots else template.text


def _ticket(lex: Lexicon, phrasing: Phrasing, values: dict[str, str], rng: random.Random) -> tuple[str, list[str]]:
    """Greeting, body, maybe one extra sentence and a signature: from one line to a short paragraph."""
    body = _fill(phrasing.template, values)
    if rng.random() < 0.4:
        body += lex.sentence_sep + _fill(rng.choice(lex.extras), values)
    if rng.random() < 0.6:
        body = _greet(lex, rng.choice(lex.greetings), body, inline=rng.random() < 0.4)
    if rng.random() < 0.5:
        body += "\n" + _fill(rng.choice(lex.closings), values)
    return noise.apply(body, lex, rng)


def _greet(lex: Lexicon, greeting: str, body: str, inline: bool) -> str:
    """The greeting on its own line, or inline (``Hi, my order...``) where lowering the first letter is
    safe: German nouns and the polite ``Ihre`` must keep their capital, English ``I`` too."""
    if not inline or lex.inline_greeting == "never":
        return f"{greeting}\n{body}"
    if lex.inline_greeting == "lowercase":
        lead = len(body) - len(body.lstrip("¿¡"))
        word = body[lead:].split(" ", 1)[0]
        if word != "I" and not word.startswith("I'"):
            body = body[:lead] + body[lead].lower() + body[lead + 1 :]
    return greeting + lex.sentence_sep + body


def _response(lex: Lexicon, phrasing: Phrasing, values: dict[str, str], rng: random.Random) -> str:
    """One of the replies that fit the ticket, filled with the ticket's own order number and amount."""
    return _fill(rng.choice(lex.replies_for(phrasing)), values)


def _categories(count: int, rng: random.Random) -> list[str]:
    """``count`` categories, round robin in shuffled blocks of all categories: counts differ by at most 1."""
    order: list[str] = []
    while len(order) < count:
        block = list(CATEGORIES)
        rng.shuffle(block)
        order += block
    return order[:count]


def generate(n: int, seed: int, languages: Sequence[str]) -> list[Example]:
    """``n`` tickets; example ``i`` is in ``languages[i % len(languages)]``; no input appears twice."""
    if not languages:
        raise LingoforgeError("support_tickets: generate() needs at least one language")
    rng = random.Random(seed)
    lexicons = [load(lang) for lang in languages]
    per_language = [len(range(k, n, len(languages))) for k in range(len(languages))]
    plans = [iter(_categories(count, rng)) for count in per_language]
    seen: set[str] = set()
    examples: list[Example] = []
    for i in range(n):
        lex = lexicons[i % len(languages)]
        category = next(plans[i % len(languages)])
        for _ in range(MAX_ATTEMPTS):
            phrasing = rng.choice(lex.phrasings[category])
            values = slots.draw(lex, rng)
            text, applied = _ticket(lex, phrasing, values, rng)
            if normalize_text(text) not in seen:  # the key `data check` uses for duplicates
                break
        else:
            raise LingoforgeError(
                f"support_tickets: lexicon/{lex.language}.json gives too few distinct {category} tickets for n={n}; "
                "add phrasings or slot values"
            )
        seen.add(normalize_text(text))
        output = {
            "category": category,
            "priority": PRIORITY_BY_CUE[phrasing.cue],
            "language": lex.language,
            "suggested_response": _response(lex, phrasing, values, rng),
        }
        meta: dict[str, object] = {"id": f"st-{seed}-{i}", "template": phrasing.id}
        if applied:
            meta["noise"] = applied
        examples.append(Example(INSTRUCTION, text, output, lex.language, meta))
    return examples
