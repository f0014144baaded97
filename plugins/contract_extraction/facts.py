"""The language-independent facts of one contract, drawn from a seeded ``random.Random``.

A fact set is what a parallel group shares: rendering it in French, German, Spanish or English must
give the same parties, dates, governing law and clause types. Names, addresses and registration
numbers are facts (a German GmbH keeps its name and Munich address in a French contract); every
sentence around them is language text and lives in ``lexicon/<lang>.json``.
"""

from __future__ import annotations

import calendar
import random
from dataclasses import dataclass, field
from datetime import date, timedelta
from typing import Any

CLAUSE_TYPES = (
    "confidentiality", "termination", "payment", "liability", "indemnification",
    "non_compete", "governing_law", "force_majeure", "renewal", "assignment",
)
EXTRA_SECTIONS = (
    "notices", "entire_agreement", "severability", "amendments", "waiver",
    "data_protection", "insurance", "subcontracting", "intellectual_property", "audit",
)
JURISDICTIONS = (
    "France", "Germany", "Spain", "Belgium", "Switzerland", "Austria", "Luxembourg",
    "Netherlands", "England and Wales", "Ireland", "New York", "Delaware",
)
# Sizes of the per-language annex banks (activities/objects/items, levels/units): every lexicon has exactly these.
ANNEX_BANK = 12
UNIT_BANK = 6
HOME_LAW = {
    "FR": ("France",), "DE": ("Germany",), "ES": ("Spain",), "GB": ("England and Wales",),
    "US": ("New York", "Delaware"),
}
CURRENCY = {"FR": "EUR", "DE": "EUR", "ES": "EUR", "GB": "GBP", "US": "USD"}
# The home country a document's own parties usually come from; other countries make cross-border deals.
LANGUAGE_HOME = {"fr": "FR", "de": "DE", "es": "ES", "en": "GB"}


@dataclass(frozen=True)
class KindSpec:
    """What a contract kind looks like: its two roles, the clauses it always / may contain, payment terms."""

    roles: tuple[str, str]
    mandatory: tuple[str, ...]
    optional: tuple[str, ...]
    payer: str | None
    frequencies: tuple[str, ...] = ()
    amount: tuple[int, int, int] = (0, 0, 1)  # low, high, rounding step
    person_role: str | None = None  # the role always held by a natural person
    guarantor: bool = False
    annexes: bool = False
    open_ended: float = 0.3  # share of contracts without an end date
    restricted: str | None = None  # the role a non-compete binds
    indemnitor: str | None = None


KINDS: dict[str, KindSpec] = {
    "services": KindSpec(
        ("service_provider", "client"), ("payment",),
        ("confidentiality", "termination", "liability", "indemnification", "non_compete", "force_majeure", "renewal",
         "assignment"),
        payer="client", frequencies=("monthly", "quarterly", "once"), amount=(2_000, 60_000, 500),
        annexes=True, restricted="service_provider", indemnitor="service_provider",
    ),
    "supply": KindSpec(
        ("supplier", "buyer"), ("payment",),
        ("confidentiality", "termination", "liability", "indemnification", "force_majeure", "renewal", "assignment"),
        payer="buyer", frequencies=("monthly", "yearly", "once"), amount=(10_000, 900_000, 1_000),
        guarantor=True, annexes=True, indemnitor="supplier",
    ),
    "nda": KindSpec(
        ("discloser", "recipient"), ("confidentiality",),
        ("termination", "liability", "indemnification", "non_compete", "assignment"),
        payer=None, restricted="recipient", indemnitor="recipient", open_ended=0.2,
    ),
    "license": KindSpec(
        ("licensor", "licensee"), ("payment",),
        ("confidentiality", "termination", "liability", "indemnification", "force_majeure", "renewal", "assignment"),
        payer="licensee", frequencies=("yearly", "quarterly", "once"), amount=(5_000, 400_000, 1_000),
        annexes=True, indemnitor="licensor",
    ),
    "employment": KindSpec(
        ("employer", "employee"), ("payment",),
        ("confidentiality", "termination", "non_compete"),
        payer="employer", frequencies=("monthly",), amount=(2_400, 9_500, 50),
        person_role="employee", open_ended=0.65, restricted="employee",
    ),
    "lease": KindSpec(
        ("landlord", "tenant"), ("payment",),
        ("termination", "liability", "indemnification", "force_majeure", "renewal", "assignment"),
        payer="tenant", frequencies=("monthly", "quarterly"), amount=(900, 30_000, 50),
        guarantor=True, indemnitor="tenant", open_ended=0.1,
    ),
}

_COMPANIES: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "FR": (("Dubois Conseil", "Atelier Moreau", "Lefèvre Industries", "Bernard & Fils", "Transports Girard",
            "Éditions Lambert", "Groupe Rousseau", "Vignobles Fontaine", "Informatique Garnier",
            "Laboratoires Chevalier", "Bâtiments Faure", "Mercier Distribution"), ("SARL", "SAS", "SA")),
    "DE": (("Müller Logistik", "Schneider Maschinenbau", "Weber Software", "Becker Bau", "Hoffmann Pharma",
            "Schäfer Druck", "Koch Elektrotechnik", "Bauer Medien", "Richter Consulting", "Klein & Wolf",
            "Schulz Automotive", "Neumann Textil"), ("GmbH", "AG", "GmbH & Co. KG")),
    "ES": (("Construcciones García", "Distribuciones López", "Tecnologías Martínez", "Transportes Sánchez",
            "Bodegas Romero", "Consultoría Navarro", "Inmobiliaria Torres", "Alimentación Ruiz",
            "Editorial Domínguez", "Energías Gil", "Talleres Vázquez", "Servicios Moreno"), ("S.L.", "S.A.", "S.L.U.")),
    "GB": (("Harper & Cole", "Northbridge Systems", "Ashford Logistics", "Kingsley Foods", "Whitmore Engineering",
            "Redfern Publishing", "Castleton Energy", "Blackwood Analytics", "Fairbourne Estates",
            "Pemberton Textiles", "Oakridge Medical", "Hollis Digital"), ("Ltd", "PLC", "LLP")),
    "US": (("Atlas Freight", "Summit Data", "Brightline Health", "Granite Peak Capital", "Redwood Robotics",
            "Lakeside Foods", "Silverline Media", "Keystone Materials"), ("Inc.", "LLC", "Corp.")),
}
_PEOPLE: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "FR": (("Claire", "Julien", "Sophie", "Thomas", "Camille", "Nicolas", "Élodie", "Mathieu"),
           ("Martin", "Durand", "Petit", "Leroy", "Moreau", "Fournier", "Girard", "Bonnet")),
    "DE": (("Anna", "Lukas", "Katharina", "Jonas", "Julia", "Felix", "Sabine", "Tobias"),
           ("Wagner", "Fischer", "Meyer", "Schmitt", "Zimmermann", "Krüger", "Hartmann", "Lange")),
    "ES": (("Lucía", "Javier", "Carmen", "Pablo", "Elena", "Sergio", "Marta", "Diego"),
           ("Fernández", "González", "Rodríguez", "Pérez", "Jiménez", "Álvarez", "Castro", "Ortega")),
    "GB": (("Emily", "James", "Charlotte", "Oliver", "Hannah", "George", "Sarah", "William"),
           ("Taylor", "Davies", "Evans", "Thomas", "Roberts", "Walker", "Wright", "Hughes")),
    "US": (("Ashley", "Michael", "Jessica", "Daniel", "Megan", "Ryan", "Lauren", "Kevin"),
           ("Johnson", "Miller", "Anderson", "Clark", "Lewis", "Young", "Allen", "King")),
}
_CITIES: dict[str, tuple[tuple[str, str], ...]] = {
    "FR": (("Paris", "75008"), ("Lyon", "69002"), ("Marseille", "13001"), ("Toulouse", "31000"),
           ("Bordeaux", "33000"), ("Lille", "59000"), ("Nantes", "44000"), ("Strasbourg", "67000")),
    "DE": (("Berlin", "10117"), ("München", "80331"), ("Hamburg", "20095"), ("Frankfurt am Main", "60311"),
           ("Köln", "50667"), ("Stuttgart", "70173"), ("Düsseldorf", "40213"), ("Leipzig", "04109")),
    "ES": (("Madrid", "28013"), ("Barcelona", "08007"), ("Valencia", "46002"), ("Sevilla", "41001"),
           ("Bilbao", "48001"), ("Zaragoza", "50001"), ("Málaga", "29005")),
    "GB": (("London", "EC2V 7HH"), ("Manchester", "M2 4WU"), ("Leeds", "LS1 5AB"), ("Bristol", "BS1 4DJ"),
           ("Birmingham", "B3 2BJ"), ("Edinburgh", "EH2 2AF")),
    "US": (("New York, NY", "10017"), ("Boston, MA", "02110"), ("Chicago, IL", "60601"), ("Austin, TX", "78701"),
           ("Wilmington, DE", "19801")),
}
_STREETS: dict[str, tuple[str, tuple[str, ...]]] = {
    "FR": ("{n} {street}, {zip} {city}", ("rue de la République", "avenue Victor Hugo", "boulevard Haussmann",
                                          "rue des Lilas", "place Bellecour", "quai Saint-Antoine")),
    "DE": ("{street} {n}, {zip} {city}", ("Hauptstraße", "Bahnhofstraße", "Goethestraße", "Friedrichstraße",
                                          "Lindenallee", "Schillerplatz")),
    "ES": ("{street} {n}, {zip} {city}", ("Calle Mayor", "Avenida de la Constitución", "Paseo de Gracia",
                                          "Calle de Alcalá", "Gran Vía", "Calle Colón")),
    "GB": ("{n} {street}, {city} {zip}", ("High Street", "King Street", "Queen's Road", "Victoria Street",
                                          "Church Lane", "Market Square")),
    "US": ("{n} {street}, {city} {zip}", ("Main Street", "Market Street", "Madison Avenue", "Oak Street",
                                          "Lincoln Boulevard")),
}
COUNTRIES = tuple(_COMPANIES)


@dataclass(frozen=True)
class Party:
    """A contracting party. ``registration`` and ``representative`` are empty for natural persons."""

    name: str
    role: str
    person: bool
    home: str
    address: str
    registration: str = ""
    representative: str = ""


@dataclass(frozen=True)
class Contract:
    """Everything a rendering needs besides language text.

    ``sections`` is the body order between the term section and the signature: ``clause:<type>`` or
    ``extra:<name>``. ``clauses`` holds the numeric/coded parameters of each clause type present.
    ``annex_items`` (activity, object, service level) and ``price_rows`` (item, price, unit) index the
    lexicon's annex banks, so an annex reads the same in every language of a parallel group.
    """

    kind: str
    parties: tuple[Party, ...]
    effective: date
    end: date | None
    signed: date
    signing_city: str
    law: str | None
    currency: str
    sections: tuple[str, ...]
    clauses: dict[str, dict[str, Any]] = field(default_factory=dict)
    annex_items: tuple[tuple[int, int, int], ...] = ()
    price_rows: tuple[tuple[int, int, int], ...] = ()

    def party(self, role: str) -> Party:
        return next(p for p in self.parties if p.role == role)


def _round(rng: random.Random, low: int, high: int, step: int) -> int:
    return rng.randrange(low // step, high // step + 1) * step


def _party(rng: random.Random, role: str, home: str, person: bool, taken: set[str]) -> Party:
    template, streets = _STREETS[home]
    city, zip_code = rng.choice(_CITIES[home])
    address = template.format(n=rng.randint(1, 180), street=rng.choice(streets), zip=zip_code, city=city)
    firsts, lasts = _PEOPLE[home]
    bases, forms = _COMPANIES[home]
    while True:  # ``taken`` holds surnames and company stems: two parties never share either
        stem = rng.choice(lasts) if person else rng.choice(bases)
        if stem not in taken:
            break
    taken.add(stem)
    name = f"{rng.choice(firsts)} {stem}" if person else f"{stem} {rng.choice(forms)}"
    if person:
        return Party(name, role, True, home, address)
    registration = {
        "FR": f"RCS {city} {rng.randint(300, 999)} {rng.randint(100, 999)} {rng.randint(100, 999)}",
        "DE": f"HRB {rng.randint(10_000, 299_999)}",
        "ES": f"NIF B{rng.randint(10_000_000, 99_999_999)}",
        "GB": f"{rng.randint(1_000_000, 13_999_999):08d}",
        "US": f"EIN {rng.randint(10, 99)}-{rng.randint(1_000_000, 9_999_999)}",
    }[home]
    return Party(name, role, False, home, address, registration, f"{rng.choice(firsts)} {rng.choice(lasts)}")


def _add_months(day: date, months: int) -> date:
    """The same day ``months`` later, clamped to the month's last day (31 January + 1 month = 28/29 February)."""
    month_index = day.month - 1 + months
    year, month = day.year + month_index // 12, month_index % 12 + 1
    return date(year, month, min(day.day, calendar.monthrange(year, month)[1]))


def _clause_params(rng: random.Random, ctype: str, spec: KindSpec, parties: tuple[Party, ...]) -> dict[str, Any]:
    """Codes and numbers only (no words), so every language renders the same clause."""
    if ctype == "confidentiality":
        return {"years": rng.choice((2, 3, 5, 10))}
    if ctype == "termination":
        return {"notice": rng.choice((15, 30, 60, 90)), "cure": rng.choice((8, 15, 30))}
    if ctype == "payment":
        return {"amount": _round(rng, *spec.amount), "frequency": rng.choice(spec.frequencies),
                "days": rng.choice((30, 45, 60))}
    if ctype == "liability":
        return {"cap": _round(rng, 50_000, 2_000_000, 10_000)}
    if ctype == "indemnification":
        return {"role": spec.indemnitor}
    if ctype == "non_compete":
        restricted = next(p for p in parties if p.role == spec.restricted)
        return {"role": spec.restricted, "months": rng.choice((6, 12, 18, 24)),
                "territory": rng.choice((restricted.home, restricted.home, "EU"))}
    if ctype == "force_majeure":
        return {"days": rng.choice((30, 60, 90))}
    if ctype == "renewal":
        return {"months": rng.choice((12, 12, 24)), "notice": rng.choice((30, 60, 90))}
    if ctype == "assignment":
        return {"consent": rng.choice(("written", "prior_written"))}
    return {}  # governing_law: the law itself is a contract-level fact


def _size(rng: random.Random, spec: KindSpec) -> str:
    """Most contracts are 0.5-2 pages; a few long ones (with annexes) exercise long-context handling."""
    draw = rng.random()
    if spec.annexes and draw < 0.06:
        return "long"
    return "medium" if draw < 0.25 else "short"


def sample_contract(rng: random.Random, home: str | None = None) -> Contract:
    """Draw one fact set. ``home`` biases the parties' countries (a French document mostly binds French
    companies); ``None`` draws freely, as for a parallel group rendered in several languages."""
    kind = rng.choice(tuple(KINDS))
    spec = KINDS[kind]
    taken: set[str] = set()
    homes = [home if home and rng.random() < 0.75 else rng.choice(COUNTRIES) for _ in range(3)]
    parties = [
        _party(rng, role, homes[i], role == spec.person_role or (role == "recipient" and rng.random() < 0.15), taken)
        for i, role in enumerate(spec.roles)
    ]
    if spec.guarantor and rng.random() < 0.2:
        parties.append(_party(rng, "guarantor", homes[2], rng.random() < 0.5, taken))
    party_tuple = tuple(parties)

    effective = date(2023, 1, 1) + timedelta(days=rng.randrange(5 * 365))
    effective = effective.replace(day=1) if rng.random() < 0.4 else effective
    end = None
    if rng.random() >= spec.open_ended:
        end = _add_months(effective, rng.choice((6, 12, 24, 36, 60))) - timedelta(days=1)
    signed = effective - timedelta(days=rng.randrange(0, 46))
    if rng.random() < 0.08:
        law = None
    elif rng.random() < 0.85:
        law = rng.choice(HOME_LAW[rng.choice(party_tuple[:2]).home])
    else:
        law = rng.choice(JURISDICTIONS)

    size = _size(rng, spec)
    if size == "short":
        n_optional, n_extras = rng.randint(1, 3), rng.randint(0, 1)
    elif size == "medium":
        n_optional, n_extras = rng.randint(3, 6), rng.randint(2, 5)
    else:
        n_optional, n_extras = len(spec.optional), len(EXTRA_SECTIONS)
    optional = list(spec.optional)
    if end is None and "renewal" in optional:
        optional.remove("renewal")  # an open-ended contract has nothing to renew
    chosen = list(spec.mandatory) + rng.sample(optional, min(n_optional, len(optional)))
    body = [f"clause:{c}" for c in chosen] + [f"extra:{e}" for e in rng.sample(EXTRA_SECTIONS, n_extras)]
    rng.shuffle(body)
    if law is not None:
        body.append("clause:governing_law")
    clauses = {c.split(":", 1)[1]: _clause_params(rng, c.split(":", 1)[1], spec, party_tuple)
               for c in body if c.startswith("clause:")}

    annex_items: tuple[tuple[int, int, int], ...] = ()
    price_rows: tuple[tuple[int, int, int], ...] = ()
    if spec.annexes and size != "short":
        # Distinct (activity, object) and (item, unit) pairs: an annex never lists the same line twice.
        n_items = rng.randint(50, 120) if size == "long" else rng.randint(0, 8)
        annex_items = tuple((*divmod(k, ANNEX_BANK), rng.randrange(UNIT_BANK))
                            for k in rng.sample(range(ANNEX_BANK**2), n_items))
        if size == "long":
            rows = rng.sample(range(ANNEX_BANK * UNIT_BANK), rng.randint(25, ANNEX_BANK * UNIT_BANK))
            price_rows = tuple((k // UNIT_BANK, _round(rng, 50, 25_000, 10), k % UNIT_BANK) for k in rows)
    return Contract(
        kind=kind, parties=party_tuple, effective=effective, end=end, signed=signed,
        signing_city=rng.choice(_CITIES[party_tuple[0].home])[0], law=law,
        currency=CURRENCY[party_tuple[0].home], sections=tuple(body), clauses=clauses,
        annex_items=annex_items, price_rows=price_rows,
    )

