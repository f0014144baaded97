"""Language identification of inputs, batched so 100,000 examples take seconds.

Choice of library (numbers in ``bench/results/langid.json``, made by ``bench/bench_langid.py`` on 169
hand-written short business texts in 13 languages, a third of them at most four words; shared 2-core
machine under load, so speeds are rough; lingua's loads are cumulative within one process):

=================================  ========  =========  ======  =======
detector                           accuracy  ≤4 words   load s  texts/s
=================================  ========  =========  ======  =======
lingua, 20 common languages         100.0 %   100.0 %     5.6    1,784
lingua, all 75 languages             98.2 %    91.9 %    +13.0      525
py3langid, all 97 languages          97.0 %    86.5 %     1.3    2,472
py3langid, 20 common languages      100.0 %   100.0 %     2.9    2,010
this module (py3langid, batched)    100.0 %   100.0 %     3.0   11,553
=================================  ========  =========  ======  =======

Both libraries are equally accurate once restricted to plausible languages (unrestricted, both confuse
nl/af, hi/mr, es/gl on two-word texts), but at 1,000-2,000 texts/s either would spend one to two
minutes on 100,000 inputs, against a 60 s budget for the whole ``data check``. lingua's speed is its
own; py3langid's is Python overhead around a small naive-Bayes model. So we use py3langid's model and
score it batched: its byte automaton runs in lock-step over all texts with numpy, and the per-language
sums are one ``bincount`` per language instead of ~15 numpy calls per text (100,000 inputs: about 5 s).
Labels and probabilities are identical to ``LanguageIdentifier.classify`` (a test checks it); only
the first ``MAX_BYTES`` bytes of a text are read, which is plenty to identify a language and bounds
the cost of contracts.

Candidates are the task's languages, the languages the file declares and ``COMMON_LANGUAGES``, so a
stray language still shows up, while the short-text confusions above do not.
"""

from __future__ import annotations

import functools
import unicodedata
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

COMMON_LANGUAGES = (
    "en",
    "de",
    "fr",
    "es",
    "it",
    "pt",
    "nl",
    "pl",
    "ru",
    "uk",
    "cs",
    "sv",
    "tr",
    "ar",
    "hi",
    "zh",
    "ja",
    "ko",
    "vi",
    "id",
)
MAX_BYTES = 512
# Below this probability a detection is "unsure", never a mismatch: on the labelled set every wrong
# answer among confusable neighbours (es/gl, nl/af, ru/bg) scored under 0.59, most right ones above 0.7.
MIN_CONFIDENCE = 0.6
_CHUNK = 8192

Progress = Callable[[int], None]


@dataclass(frozen=True)
class Detection:
    """The detected ISO 639-1 code (``None`` when the text has no letters to judge) and its probability."""

    language: str | None
    confidence: float

    @property
    def sure(self) -> bool:
        return self.language is not None and self.confidence >= MIN_CONFIDENCE


@functools.lru_cache(maxsize=1)
def _model() -> Any:
    """py3langid's identifier, loaded once per process (about 2 s)."""
    from py3langid.langid import MODEL_FILE, LanguageIdentifier

    return LanguageIdentifier.from_model_file(MODEL_FILE)


class LanguageDetector:
    """Identify languages among ``candidates`` (plus ``COMMON_LANGUAGES``); unknown codes are ignored
    and listed in ``unsupported`` so the report can say which declared languages cannot be verified."""

    def __init__(self, candidates: Iterable[str] = ()) -> None:
        model = _model()
        wanted = set(COMMON_LANGUAGES) | set(candidates)
        known = set(model.nb_classes)
        self.unsupported = tuple(sorted(wanted - known))
        columns = [i for i, c in enumerate(model.nb_classes) if c in wanted]
        self.labels = sorted({model.nb_classes[i] for i in columns})
        label_index = {c: i for i, c in enumerate(self.labels)}
        # Duplicate columns (script variants such as sr Latin/Cyrillic) fold into one label.
        self._column_label = np.array([label_index[model.nb_classes[i]] for i in columns])
        self._ptc_t = np.ascontiguousarray(np.asarray(model.nb_ptc)[:, columns].T, dtype=np.float32)
        self._pc = np.asarray(model.nb_pc, dtype=np.float32)[columns]
        self._next = np.frombuffer(model.tk_nextmove, dtype=np.uint32).astype(np.int64)
        self._rowbase = np.asarray(model.tk_row, dtype=np.int64) << 8
        self._output = np.asarray(model.tk_output, dtype=np.int64)
        self._n_features = self._ptc_t.shape[1]

    def detect(self, texts: Sequence[str], progress: Progress | None = None) -> list[Detection]:
        """One detection per text; ``progress(n)`` is called after each chunk of ``n`` texts."""
        out: list[Detection] = []
        for start in range(0, len(texts), _CHUNK):
            chunk = texts[start : start + _CHUNK]
            out += self._detect_chunk(chunk)
            if progress:
                progress(len(chunk))
        return out

    def _detect_chunk(self, texts: Sequence[str]) -> list[Detection]:
        encoded = [_encode(t) for t in texts]
        lengths = np.array([len(b) for b in encoded], dtype=np.int64)
        order = np.argsort(-lengths, kind="stable")
        width = int(lengths.max(initial=0))
        grid = np.zeros((len(texts), max(width, 1)), dtype=np.uint8)
        for row, i in enumerate(order):
            grid[row, : lengths[i]] = np.frombuffer(encoded[i], dtype=np.uint8)
        sorted_lengths = lengths[order]
        # Lock-step walk of the feature automaton: column k advances every text longer than k.
        state = np.zeros(len(texts), dtype=np.int64)
        docs: list[np.ndarray] = []
        feats: list[np.ndarray] = []
        active = len(texts)
        for k in range(width):
            while active and sorted_lengths[active - 1] <= k:
                active -= 1
            state[:active] = self._next[self._rowbase[state[:active]] + grid[:active, k]]
            found = self._output[state[:active]]
            hit = np.flatnonzero(found >= 0)
            docs.append(order[hit])
            feats.append(found[hit])
        n = len(texts)
        scores = np.tile(self._pc, (n, 1))
        has_features = np.zeros(n, dtype=bool)
        if docs:
            doc = np.concatenate(docs)
            feat = np.concatenate(feats)
            keys, counts = np.unique(doc * self._n_features + feat, return_counts=True)
            doc, feat = keys // self._n_features, keys % self._n_features
            weight = np.log1p(counts).astype(np.float32)
            for c in range(self._ptc_t.shape[0]):
                scores[:, c] += np.bincount(doc, weights=self._ptc_t[c, feat] * weight, minlength=n)
            has_features[doc] = True
        # py3langid's calibration: temperature sqrt(bytes), softmax, script variants summed.
        scores /= np.sqrt(np.maximum(lengths, 1))[:, None]
        scores = np.exp(scores - scores.max(axis=1, keepdims=True))
        scores /= scores.sum(axis=1, keepdims=True)
        probs = np.zeros((n, len(self.labels)))
        for c, label in enumerate(self._column_label):
            probs[:, label] += scores[:, c]
        best = probs.argmax(axis=1)
        return [
            Detection(self.labels[b], float(probs[i, b])) if has_features[i] else Detection(None, 0.0)
            for i, b in enumerate(best)
        ]


def _encode(text: str) -> bytes:
    """The bytes py3langid scores: lower-cased if all caps, NFC, UTF-8, cut at ``MAX_BYTES``."""
    if text.isupper():
        text = text.lower()
    data = unicodedata.normalize("NFC", text).encode("utf-8", errors="surrogatepass")
    return data[:MAX_BYTES]
