"""Render one fact set (``facts.Contract``) as a contract in one language, with its gold extraction.

All wording comes from ``lexicon/<lang>.json``; this module only assembles it. The gold output is
built from the facts, never parsed back from the text, so it cannot drift from what was rendered:
every obligation in the output is inserted into the text through the lexicon's ``obligation``
sentence, and every clause type in the output is a section of the text.
"""

from __future__ import annotations

import functools
import json
import random
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

from .facts import KINDS, Contract, Party

LANGUAGES = ("en", "fr", "de", "es")
_LEXICON_DIR = Path(__file__).with_name("lexicon")


@functools.cache
def lexicon(language: str) -> Mapping[str, Any]:
    """The phrase bank of one language (read once per process)."""
    with open(_LEXICON_DIR / f"{language}.json", encoding="utf-8") as fh:
        data: dict[str, Any] = json.load(fh)
    return data


@dataclass(frozen=True)
class Rendering:
    """A contract text and the extraction a perfect model returns for it."""

    text: str
    output: dict[str, Any]


def format_date(day: date, lex: Mapping[str, Any], template: str, numeric: bool) -> str:
    """A date as a lawyer of that language writes it ("1er mars 2025", "1. März 2025", "March 1, 2025")."""
    if numeric and lex["date_numeric"]:
        return str(lex["date_numeric"]).format(dd=f"{day.day:02d}", mm=f"{day.month:02d}", yyyy=day.year)
    day_text = lex["first_day"] if day.day == 1 and lex["first_day"] else str(day.day)
    return template.format(day=day_text, month=lex["months"][day.month - 1], year=day.year)


def format_money(amount: int, currency: str, lex: Mapping[str, Any]) -> str:
    """An amount with the language's thousands separator and currency wording."""
    digits = f"{amount:,}".replace(",", lex["thousands"])
    return str(lex["money"]).format(amount=digits, currency=lex["currencies"][currency])


class _Renderer:
    """Holds the per-rendering choices (date style, heading style) while the sections are written."""

    def __init__(self, contract: Contract, language: str, rng: random.Random) -> None:
        self.contract = contract
        self.spec = KINDS[contract.kind]
        self.lex = lexicon(language)
        self.rng = rng
        self.heading = rng.choice(self.lex["heading"])
        self.date_template = rng.choice(self.lex["date_long"])
        self.numeric_dates = rng.random() < 0.25
        self.section_number = 0
        self.ctx = self._context()
        self.obligations: list[dict[str, str]] = []

    def date(self, day: date) -> str:
        return format_date(day, self.lex, self.date_template, self.numeric_dates)

    def _context(self) -> dict[str, Any]:
        """Template values: party names, and every lexicon form of each role a template may name
        (``{payer_subject}``, ``{payee_a}`` for French "au Client", ``{indemnitee_acc}`` for German ...)."""
        c, spec = self.contract, self.spec
        a, b = c.party(spec.roles[0]), c.party(spec.roles[1])
        ctx: dict[str, Any] = {"a_name": a.name, "b_name": b.name, "a_address": a.address}
        slots = {
            "a": a.role, "b": b.role, "payer": spec.payer, "restricted": spec.restricted, "indemnitor": spec.indemnitor,
            "payee": _other(spec.roles, spec.payer), "indemnitee": _other(spec.roles, spec.indemnitor),
        }
        for slot, role in slots.items():
            for form, text in (self.lex["roles"][role].items() if role else ()):
                ctx[f"{slot}_{form}"] = text
        if c.law:
            ctx["law"], ctx["court"] = self.lex["laws"][c.law], self.lex["courts"][c.law]
        return ctx

    def fill(self, template: str, extra: Mapping[str, Any] | None = None) -> str:
        return template.format_map({**self.ctx, **(extra or {})})

    def obligation(self, role: str, phrase: str) -> str:
        """Record an undertaking in the gold output and return the sentence that states it."""
        party = self.contract.party(role)
        self.obligations.append({"party": party.name, "obligation": phrase})
        return self.fill(self.lex["obligation"], {"subject": self.lex["roles"][role]["subject"], "obligation": phrase})

    def section(self, headings: list[str], paragraphs: list[str]) -> str:
        self.section_number += 1
        title = self.heading.format(n=self.section_number, title=self.rng.choice(headings))
        return "\n\n".join([title, *paragraphs])

    def party_block(self, party: Party) -> str:
        term = self.lex["roles"][party.role]["term"]
        if party.person:
            template: str = self.rng.choice(self.lex["party_person"])
            return template.format(name=party.name, address=party.address, term=term)
        template = self.rng.choice(self.lex["party_company"])
        return template.format(
            name=party.name, incorporated=self.lex["incorporated"][party.home], address=party.address,
            registration=party.registration, representative=party.representative, term=term,
        )

    def preamble(self) -> list[str]:
        kind = self.lex["kinds"][self.contract.kind]
        blocks = [self.rng.choice(kind["titles"]), self.lex["between"]]
        for i, party in enumerate(self.contract.parties):
            if i:
                blocks.append(self.lex["and"])
            blocks.append(self.party_block(party))
        blocks.append(self.lex["parties_end"])
        if self.rng.random() < 0.6:
            blocks += [self.lex["recitals_heading"], self.fill(kind["recital"])]
        blocks.append(self.lex["agreed"])
        return blocks

    def opening_sections(self) -> list[str]:
        kind = self.lex["kinds"][self.contract.kind]
        duties = [self.obligation(p.role, self.fill(kind["duties"][p.role])) for p in self.contract.parties]
        term = self.lex["term"]
        when = {"effective": self.date(self.contract.effective)}
        if self.contract.end is None:
            term_text = term["open"].format(**when)
        else:
            term_text = term["fixed"].format(end=self.date(self.contract.end), **when)
        return [
            self.section(self.lex["object_headings"], [self.fill(kind["object"])]),
            self.section(self.lex["duties_headings"], [" ".join(duties)]),
            self.section(term["headings"], [term_text]),
        ]

    def obligated(self, ctype: str) -> str:
        """The role giving the undertaking of a clause whose lexicon entry has an ``obligation``."""
        if ctype == "payment" and self.spec.payer:
            return self.spec.payer
        if ctype == "non_compete" and self.spec.restricted:
            return self.spec.restricted
        return "recipient"  # the confidentiality undertaking of a non-disclosure agreement

    def clause(self, ctype: str) -> tuple[str, str]:
        """The section text and the one-line summary of a clause."""
        clauses = self.lex["clauses"]
        entry = clauses.get(f"{ctype}.{self.contract.kind}") or clauses[ctype]
        params = self.contract.clauses[ctype]
        values: dict[str, Any] = dict(params)
        if "amount" in params:
            values["amount"] = format_money(params["amount"], self.contract.currency, self.lex)
            values["frequency"] = self.lex["frequencies"][params["frequency"]]
        if "cap" in params:
            values["cap"] = format_money(params["cap"], self.contract.currency, self.lex)
        if "territory" in params:
            values["territory"] = self.lex["territories"][params["territory"]]
        if "consent" in params:
            values["consent"] = self.lex["consents"][params["consent"]]
        summary = self.fill(entry["summary"], values)
        if "obligation" in entry:
            phrase = self.fill(entry["obligation"], values)
            values["obligation_sentence"] = self.obligation(self.obligated(ctype), phrase)
        return self.section(entry["headings"], [self.fill(p, values) for p in entry["body"]]), summary

    def annexes(self) -> list[str]:
        annex, c = self.lex["annex"], self.contract
        blocks: list[str] = []
        if c.annex_items:
            items = [annex["spec_item"].format(n=i + 1, activity=annex["activities"][a], object=annex["objects"][o],
                                               level=annex["levels"][level])
                     for i, (a, o, level) in enumerate(c.annex_items)]
            heading = annex["heading"].format(n=1, title=annex["spec_title"])
            blocks.append("\n".join([heading, annex["spec_intro"], *items]))
        if c.price_rows:
            rows = [annex["price_row"].format(ref=f"{i + 1:03d}", item=annex["items"][o],
                                              price=format_money(price, c.currency, self.lex), unit=annex["units"][u])
                    for i, (o, price, u) in enumerate(c.price_rows)]
            intro = annex["price_intro"].format(currency=self.lex["currencies"][c.currency])
            heading = annex["heading"].format(n=len(blocks) + 1, title=annex["price_title"])
            blocks.append("\n".join([heading, intro, *rows]))
        return blocks

    def signature(self) -> str:
        lines = [self.lex["signature"].format(city=self.contract.signing_city, date=self.date(self.contract.signed))]
        for party in self.contract.parties:
            lines.append(self.lex["sign_for"].format(name=party.name))
            signatory = party.name if party.person else party.representative
            lines.append(self.lex["sign_by"].format(representative=signatory))
        return "\n".join(lines)

    def render(self) -> Rendering:
        c = self.contract
        blocks = self.preamble() + self.opening_sections()
        clauses: list[dict[str, str]] = []
        for section in c.sections:
            what, name = section.split(":", 1)
            if what == "clause":
                text, summary = self.clause(name)
                clauses.append({"type": name, "summary": summary})
            else:
                extra = self.lex["extras"][name]
                text = self.section(extra["headings"], [self.fill(p) for p in extra["body"]])
            blocks.append(text)
        blocks += [self.signature(), *self.annexes()]
        output = {
            "parties": [{"name": p.name, "role": p.role} for p in c.parties],
            "effective_date": c.effective.isoformat(),
            "end_date": c.end.isoformat() if c.end else None,
            "governing_law": c.law,
            "clauses": clauses,
            "obligations": self.obligations,
        }
        return Rendering("\n\n".join(blocks), output)


def _other(roles: tuple[str, str], role: str | None) -> str | None:
    return None if role is None else roles[1] if role == roles[0] else roles[0]


def render(contract: Contract, language: str, rng: random.Random) -> Rendering:
    """The contract in ``language``; ``rng`` only picks wording variants, never facts."""
    return _Renderer(contract, language, rng).render()
