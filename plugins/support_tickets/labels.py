"""The label sets, read from ``schema.json`` so the schema stays the single source of truth."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

SCHEMA: dict[str, Any] = json.loads(Path(__file__).with_name("schema.json").read_text(encoding="utf-8"))
_PROPS = SCHEMA["properties"]

CATEGORIES: tuple[str, ...] = tuple(_PROPS["category"]["enum"])
PRIORITIES: tuple[str, ...] = tuple(_PROPS["priority"]["enum"])
LANGUAGES: tuple[str, ...] = tuple(_PROPS["language"]["enum"])

# The priority rules of the README, as data: every ticket phrasing in a lexicon is filed under one cue,
# and the cue alone decides the priority, so the label follows from the text in every language.
PRIORITY_BY_CUE: dict[str, str] = {
    "outage": "urgent",  # the service is down for a business or many users at once
    "double_charge": "high",  # money was taken twice
    "how_to": "low",  # a question on how to do something; nothing is broken
    "default": "medium",  # everything else: one customer has one problem
}
