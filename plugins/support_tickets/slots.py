"""Slot values in local formats: order numbers, amounts with local currency and separators, dates."""

from __future__ import annotations

import random
import re

from .lexicon import Lexicon

_DIGITS = re.compile(r"\{n(\d+)\}")


def order_number(lex: Lexicon, rng: random.Random) -> str:
    """An order number in one of the shop formats of the lexicon, e.g. ``#4021887`` or ``302-1234567-7654321``."""
    fmt = rng.choice(lex.order_formats)
    return _DIGITS.sub(lambda m: str(rng.randrange(10 ** (int(m.group(1)) - 1), 10 ** int(m.group(1)))), fmt)


def _group(integer: int, sep: str, indian: bool) -> str:
    digits = str(integer)
    if len(digits) <= 3:
        return digits
    head, tail = digits[:-3], digits[-3:]
    size = 2 if indian else 3  # Indian grouping: 1,29,999
    groups: list[str] = []
    while head:
        groups.insert(0, head[-size:])
        head = head[:-size]
    return sep.join([*groups, tail])


def amount(lex: Lexicon, rng: random.Random) -> str:
    """A price as customers write it in that locale: ``49,90 €``, ``$1,299.00``, ``¥3,280``, ``₹1,29,999``."""
    spec = lex.amount
    decimals = int(spec.get("decimals", 2))
    cents = rng.randrange(500, int(spec.get("max", 150_000)) * 100)
    integer, fraction = divmod(cents, 100)
    value = _group(integer, spec["group"], bool(spec.get("indian_grouping")))
    if decimals and (fraction or rng.random() < 0.5):
        value += spec["decimal"] + f"{fraction:02d}"
    return rng.choice(spec["formats"]).format(v=value)


def date(lex: Lexicon, rng: random.Random) -> str:
    """A recent date in a local format (``12.03.2025``, ``2025年3月12日``, ``12 de marzo``)."""
    day, month, year = rng.randint(1, 28), rng.randint(1, 12), rng.choice((2024, 2025))
    return rng.choice(lex.date_formats).format(
        d=day, dd=f"{day:02d}", m=month, mm=f"{month:02d}", yyyy=year, month=lex.months[month - 1]
    )


def draw(lex: Lexicon, rng: random.Random) -> dict[str, str]:
    """One value for every slot; a ticket uses some of them and its reply reuses the same ones."""
    return {
        "order": order_number(lex, rng),
        "amount": amount(lex, rng),
        "date": date(lex, rng),
        "product": rng.choice(lex.products),
        "days": str(rng.randint(3, 21)),
        "customer": str(rng.randrange(100_000, 9_999_999)),
        "name": rng.choice(lex.names),
    }
