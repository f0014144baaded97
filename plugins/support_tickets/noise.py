"""Realistic noise: what real tickets look like once customers type them on a phone at night.

Each language gets only noise its writers produce: missing accents or umlauts written ``ae`` in Latin
scripts, an English term inside the sentence, typos; ASCII punctuation in Chinese, no final 。 in Japanese;
unmarked hamza and taa marbuta in Arabic; a full stop for the danda in Hindi.
"""

from __future__ import annotations

import random
import re
import unicodedata

from .lexicon import Lexicon

_LATIN = {"en", "de", "fr", "es", "it", "pt"}
_UMLAUTS = str.maketrans({"ä": "ae", "ö": "oe", "ü": "ue", "Ä": "Ae", "Ö": "Oe", "Ü": "Ue", "ß": "ss"})
_ZH_ASCII_PUNCT = str.maketrans({"，": ",", "。": ".", "？": "?", "！": "!", "：": ":"})
_JA_FINAL_MARU = re.compile(r"。(?=\n|$)")
_ARABIC_INFORMAL = str.maketrans({"أ": "ا", "إ": "ا", "آ": "ا", "ة": "ه", "ى": "ي"})


def strip_accents(text: str) -> str:
    """``Han pasado 10 días`` -> ``Han pasado 10 dias``: keyboards without dead keys."""
    decomposed = unicodedata.normalize("NFD", text)
    return unicodedata.normalize("NFC", "".join(ch for ch in decomposed if not unicodedata.combining(ch)))


def typo(text: str, rng: random.Random) -> str:
    """Swap two inner letters of one longer word (``Bestellung`` -> ``Bestelulng``)."""
    words = text.split(" ")
    candidates = [i for i, w in enumerate(words) if len(w) >= 6 and w.isalpha()]
    if not candidates:
        return text
    i = rng.choice(candidates)
    w = words[i]
    j = rng.randrange(1, len(w) - 2)
    words[i] = w[:j] + w[j + 1] + w[j] + w[j + 2 :]
    return " ".join(words)


def _word_char(ch: str) -> bool:
    return ch.isalnum() or unicodedata.category(ch).startswith("M")  # Devanagari vowel signs are marks


def _whole_word(text: str, term: str, spaced: bool) -> int:
    """Where ``term`` occurs as a whole word (``Bestellung`` but not inside ``Bestellungen``); -1 if not.
    Scripts written without spaces have no word boundaries to check."""
    at = text.find(term)
    while at >= 0 and spaced:
        end = at + len(term)
        if (at == 0 or not _word_char(text[at - 1])) and (end == len(text) or not _word_char(text[end])):
            return at
        at = text.find(term, at + 1)
    return at


def apply(text: str, lex: Lexicon, rng: random.Random) -> tuple[str, list[str]]:
    """The noisy text and the names of the noise applied (kept in ``meta`` for error analysis)."""
    applied: list[str] = []
    lang = lex.language
    for native, english in lex.english_terms:
        at = _whole_word(text, native, spaced=bool(lex.sentence_sep))
        if at >= 0 and rng.random() < 0.35:
            text = text[:at] + english + text[at + len(native) :]
            applied.append("english_term")
            break
    if lang in _LATIN:
        if lang != "en" and rng.random() < 0.15:
            text = text.translate(_UMLAUTS) if lang == "de" else strip_accents(text)
            applied.append("no_accents")
        if rng.random() < 0.2:
            text = typo(text, rng)
            applied.append("typo")
        if rng.random() < 0.08:
            text = text.lower()
            applied.append("lowercase")
    elif lang == "zh" and rng.random() < 0.2:
        text = text.translate(_ZH_ASCII_PUNCT)
        applied.append("ascii_punct")
    elif lang == "ja" and rng.random() < 0.2:
        text = _JA_FINAL_MARU.sub("", text)
        applied.append("no_final_maru")
    elif lang == "ar" and rng.random() < 0.3:
        text = text.translate(_ARABIC_INFORMAL)
        applied.append("informal_spelling")
    elif lang == "hi" and rng.random() < 0.25:
        text = text.replace("।", ".")
        applied.append("no_danda")
    return text, applied
