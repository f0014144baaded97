"""Scoring helpers shared by tasks: normalized string match and set-F1."""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable, Mapping
from typing import Any

_PUNCT_SPACE = re.compile(r"[\s\W_]+", re.UNICODE)


def normalize_text(value: Any) -> str:
    """Case-, accent-width- and punctuation-insensitive form of a value (NFKC, casefold, single spaces)."""
    if value is None:
        return ""
    text = unicodedata.normalize("NFKC", str(value)).casefold()
    return _PUNCT_SPACE.sub(" ", text).strip()


def set_f1(pred: Iterable[Any], gold: Iterable[Any]) -> float:
    """F1 between two sets of normalized strings; two empty sets agree perfectly."""
    p = {normalize_text(x) for x in pred if normalize_text(x)}
    g = {normalize_text(x) for x in gold if normalize_text(x)}
    if not p and not g:
        return 1.0
    if not p or not g:
        return 0.0
    tp = len(p & g)
    if tp == 0:
        return 0.0
    precision, recall = tp / len(p), tp / len(g)
    return 2 * precision * recall / (precision + recall)


def field_value(value: Mapping[str, Any] | None, dotted: str) -> Any:
    """The value at a dotted path (``address.city``) of a possibly nested answer; ``None`` where missing."""
    node: Any = value
    for part in dotted.split("."):
        if not isinstance(node, Mapping):
            return None
        node = node.get(part)
    return node
