"""How long the training sequences really are, per language, and what ``max_seq_length`` that needs.

The same text costs very different numbers of tokens per language and per tokenizer (Qwen2 spends
about 1.8× Llama 3's tokens on Hindi, Llama 3 1.25× Qwen's on Chinese), so budgets are measured on the
user's own data: the full training sequence (system + instruction + input + answer, rendered by the
tokenizer's own chat template from ``prompts.example_messages``), plus the input alone for tokens per
character and per word.

Speed: templates are rendered to text, then the distinct pieces between special tokens are tokenized
in batched calls of the fast (Rust) tokenizer; the counts match ``apply_chat_template(...,
tokenize=True)`` token for token (checked on every call's first sequences, and by a test).
A tokenizer read from a ``.gguf`` file is converted once (a minute for a 150k vocabulary) and cached
as ``tokenizer.json`` under ``$LINGOFORGE_CACHE/tokenizers``.
"""

from __future__ import annotations

import functools
import json
import math
import random
import re
import struct
from collections import defaultdict
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .errors import LingoforgeError
from .models import load_tokenizer
from .progress import Advance, Stages, silent
from .prompts import example_messages
from .task import Example, Task

HEADROOM = 1.2
MULTIPLE = 64
UNSPACED_LANGUAGES = frozenset({"zh", "ja", "th", "lo", "km", "my", "bo"})
_BATCH = 4096
RATIO_SAMPLE = 2000


def context_length(spec: str, tokenizer: Any) -> int | None:
    """The model's context: the tokenizer's ``model_max_length`` when real, else the GGUF's
    ``<arch>.context_length``, else a local folder's ``config.json``; ``None`` when unknown."""
    limit = getattr(tokenizer, "model_max_length", None)
    if isinstance(limit, int) and 0 < limit < 10_000_000:
        return limit
    path = Path(spec).expanduser()
    if spec.endswith(".gguf") and path.is_file():
        return gguf_context_length(path)
    config = path / "config.json"
    if path.is_dir() and config.is_file():
        value = json.loads(config.read_text(encoding="utf-8")).get("max_position_embeddings")
        return int(value) if value else None
    return None


_GGUF_SIZES = {0: 1, 1: 1, 2: 2, 3: 2, 4: 4, 5: 4, 6: 4, 7: 1, 10: 8, 11: 8, 12: 8}  # value type → bytes
_GGUF_INTS = {4: "<I", 5: "<i", 10: "<Q", 11: "<q"}
_GGUF_STRING, _GGUF_ARRAY = 8, 9


@functools.lru_cache(maxsize=8)
def gguf_context_length(path: Path) -> int | None:
    """``<arch>.context_length`` from a GGUF header. Reads key/values only up to that key: the
    ``gguf`` package's reader parses the whole vocabulary first (about 30 s for Qwen2's)."""
    with path.open("rb") as fh:

        def unpack(fmt: str) -> Any:
            return struct.unpack(fmt, fh.read(struct.calcsize(fmt)))[0]

        def string() -> str:
            return fh.read(unpack("<Q")).decode("utf-8", errors="replace")

        def skip(kind: int) -> None:
            if kind == _GGUF_STRING:
                fh.seek(unpack("<Q"), 1)
            elif kind == _GGUF_ARRAY:
                item, count = unpack("<I"), unpack("<Q")
                if item in _GGUF_SIZES:
                    fh.seek(_GGUF_SIZES[item] * count, 1)
                else:
                    for _ in range(count):
                        skip(item)
            else:
                fh.seek(_GGUF_SIZES[kind], 1)

        if fh.read(4) != b"GGUF":
            return None
        fh.seek(4 + 8 + 8, 1)  # version, tensor count, key/value count
        arch = None
        while True:
            head = fh.read(8)
            if len(head) < 8:
                return None
            key = fh.read(struct.unpack("<Q", head)[0]).decode("utf-8", errors="replace")
            kind = unpack("<I")
            if key == "general.architecture" and kind == _GGUF_STRING:
                arch = string()
            elif arch and key == f"{arch}.context_length" and kind in _GGUF_INTS:
                return int(unpack(_GGUF_INTS[kind]))
            else:
                skip(kind)


def _lengths(tokenizer: Any, texts: Sequence[str], advance: Advance | None = None) -> np.ndarray:
    """Token count of each text, one batched fast-tokenizer call per chunk (no special tokens added)."""
    out = np.empty(len(texts), dtype=np.int64)
    for start in range(0, len(texts), _BATCH):
        chunk = list(texts[start : start + _BATCH])
        ids = tokenizer(chunk, add_special_tokens=False)["input_ids"]
        out[start : start + len(chunk)] = [len(x) for x in ids]
        if advance:
            advance(len(chunk))
    return out


def render(tokenizer: Any, task: Task, examples: Sequence[Example], advance: Advance | None = None) -> list[str]:
    """The full training sequence of each example as text, through the tokenizer's chat template."""
    if not getattr(tokenizer, "chat_template", None):
        raise LingoforgeError("the tokenizer has no chat template, so the training sequence cannot be rendered")
    texts: list[str] = []
    for start in range(0, len(examples), _BATCH):
        chunk = examples[start : start + _BATCH]
        texts += tokenizer.apply_chat_template([example_messages(task, e) for e in chunk], tokenize=False)
        if advance:
            advance(len(chunk))
    return texts


def _special_tokens(tokenizer: Any) -> re.Pattern[str] | None:
    decoder = getattr(tokenizer, "added_tokens_decoder", None) or {}
    specials = sorted({t.content for t in decoder.values() if getattr(t, "special", False)}, key=len, reverse=True)
    return re.compile("(" + "|".join(re.escape(t) for t in specials) + ")") if specials else None


def sequence_lengths(tokenizer: Any, texts: Sequence[str], stages: Stages = silent) -> np.ndarray:
    """Token count of each rendered sequence.

    A tokenizer cuts its text at special tokens before anything else, so a sequence's count is the sum
    of its pieces between special tokens plus one per special token. Pieces repeat a lot (the system
    prompt in every example, the ``<|im_start|>assistant`` lines, label-only answers), so each distinct
    piece is tokenized once. The first sequences are also tokenized whole, and a tokenizer for which
    the two disagree (special tokens that eat neighbouring spaces) is simply counted whole.
    """
    pattern = _special_tokens(tokenizer)
    if pattern is None:
        return _lengths(tokenizer, texts, stages("tokenizing sequences", len(texts)))
    probe = list(texts[:16])
    pieces = [pattern.split(t) for t in texts]
    index: dict[str, int] = {}
    for parts in pieces:
        for piece in parts[0::2]:
            if piece:
                index.setdefault(piece, len(index))
    counts = _lengths(tokenizer, list(index), stages("tokenizing sequences (distinct pieces)", len(index)))
    out = np.fromiter(
        (sum(int(counts[index[p]]) for p in parts[0::2] if p) + len(parts) // 2 for parts in pieces),
        dtype=np.int64,
        count=len(pieces),
    )
    if not np.array_equal(out[: len(probe)], _lengths(tokenizer, probe)):
        return _lengths(tokenizer, texts, stages("tokenizing sequences", len(texts)))
    return out


def count_tokens(tokenizer: Any, task: Task, examples: Sequence[Example], stages: Stages = silent) -> np.ndarray:
    """Tokens of each example's full training sequence (system + instruction + input + answer)."""
    texts = render(tokenizer, task, examples, stages("rendering chat template", len(examples)))
    return sequence_lengths(tokenizer, texts, stages)


def ratio_sample(by_lang: Mapping[str, Sequence[int]], limit: int = RATIO_SAMPLE, seed: int = 0) -> list[int]:
    """Up to ``limit`` example indices per language (seeded): per-character, per-word and
    tokenizer-to-tokenizer ratios settle long before that, and measuring every input would double the cost."""
    rng = random.Random(seed)
    chosen: list[int] = []
    for _, idx in sorted(by_lang.items()):
        chosen += idx if len(idx) <= limit else rng.sample(list(idx), limit)
    return sorted(chosen)


def recommend_max_seq_length(longest: float, context: int | None) -> int:
    """``longest`` + 20 %, rounded up to a multiple of 64, capped at the model's context."""
    value = max(MULTIPLE, math.ceil(longest * HEADROOM / MULTIPLE) * MULTIPLE)
    return min(value, context) if context else value


def _stats(lang: str, seq: np.ndarray, inputs: Sequence[str], input_tokens: np.ndarray) -> dict[str, Any]:
    chars = sum(len(t) for t in inputs)
    words = sum(len(t.split()) for t in inputs)
    total = float(input_tokens.sum())
    return {
        "examples": len(seq),
        "mean": round(float(seq.mean()), 1),
        "p50": int(np.percentile(seq, 50, method="higher")),
        "p95": int(np.percentile(seq, 95, method="higher")),
        "p99": int(np.percentile(seq, 99, method="higher")),
        "max": int(seq.max()),
        "input_mean": round(total / max(len(inputs), 1), 1),
        "tokens_per_char": round(total / max(chars, 1), 3),
        "tokens_per_word": None if lang in UNSPACED_LANGUAGES else round(total / max(words, 1), 3),
        "ratio_sample": len(inputs),
    }


def token_report(
    data: Sequence[Example],
    task: Task,
    tokenizer: str,
    compare: str | None = None,
    percentile: float | None = None,
    max_len: int | None = None,
    stages: Stages = silent,
) -> dict[str, Any]:
    """Per-language token statistics of ``data`` and the recommended ``max_seq_length``.

    The length is taken from the most verbose language: its longest sequence, or its ``percentile``
    (e.g. 99) when given, so a few outliers can be truncated instead of paying for them in every batch.
    ``num_ctx`` (for Ollama) is the same number: serving sees the same prompts. ``truncated`` counts,
    per language, the sequences longer than ``max_len`` (default: the recommendation), which would lose
    the end of their answer in training. Sequence statistics use every example; the per-character and
    per-word ratios and the comparison use ``ratio_sample``.
    """
    if not data:
        raise LingoforgeError("no examples to count tokens of")
    if percentile is not None and not 0 < percentile <= 100:
        raise LingoforgeError(f"--percentile must be in (0, 100], got {percentile}")
    tok = load_tokenizer(tokenizer)
    seq = count_tokens(tok, task, data, stages)
    by_lang: dict[str, list[int]] = defaultdict(list)
    for i, e in enumerate(data):
        by_lang[e.language or "?"].append(i)
    sample = ratio_sample(by_lang)
    sampled_inputs = [data[i].input for i in sample]
    inp = dict(
        zip(sample, _lengths(tok, sampled_inputs, stages("tokenizing inputs", len(sample))).tolist(), strict=True)
    )
    languages = {}
    for lang, idx in sorted(by_lang.items()):
        chosen = [i for i in idx if i in inp]
        languages[lang] = _stats(lang, seq[idx], [data[i].input for i in chosen], np.array([inp[i] for i in chosen]))
    basis = "max" if percentile is None else f"p{percentile:g}"

    def longest(idx: list[int]) -> float:
        values = seq[idx]
        return float(values.max() if percentile is None else np.percentile(values, percentile, method="higher"))

    verbose = max(by_lang, key=lambda lang: longest(by_lang[lang]))
    context = context_length(tokenizer, tok)
    recommended = recommend_max_seq_length(longest(by_lang[verbose]), context)
    limit = max_len or recommended
    report: dict[str, Any] = {
        "tokenizer": tokenizer,
        "task": task.name,
        "examples": len(data),
        "languages": languages,
        "basis": basis,
        "most_verbose_language": verbose,
        "context_length": context,
        "max_seq_length": recommended,
        "num_ctx": recommended,
        "max_len": limit,
        "truncated": {lang: int((seq[idx] > limit).sum()) for lang, idx in sorted(by_lang.items())},
    }
    if context and longest(by_lang[verbose]) * HEADROOM > context:
        report["warning"] = f"the longest {verbose!r} sequences need more than the model's context of {context} tokens"
    if compare:
        report["compare"] = _compare(compare, task, [data[i] for i in sample], seq[sample], inp, stages)
    return report


def _compare(
    spec: str, task: Task, sample: Sequence[Example], seq: np.ndarray, inp: Mapping[int, int], stages: Stages
) -> dict[str, Any]:
    """Token count ratios other/this per language on the sample: on inputs (the text itself) and on
    full sequences (``None`` when the other tokenizer has no chat template)."""
    other = load_tokenizer(spec)
    name = Path(spec).name
    this_inp = np.array([inp[i] for i in sorted(inp)])
    other_inp = _lengths(other, [e.input for e in sample], stages(f"tokenizing inputs ({name})", len(sample)))
    other_seq = None
    if getattr(other, "chat_template", None):
        texts = render(other, task, sample, stages(f"rendering ({name})", len(sample)))
        other_seq = sequence_lengths(other, texts, stages)
    by_lang: dict[str, list[int]] = defaultdict(list)
    for j, e in enumerate(sample):
        by_lang[e.language or "?"].append(j)
    languages = {}
    for lang, idx in sorted(by_lang.items()):
        languages[lang] = {
            "input_ratio": round(float(other_inp[idx].sum()) / max(float(this_inp[idx].sum()), 1.0), 3),
            "sequence_ratio": None
            if other_seq is None
            else round(float(other_seq[idx].sum()) / float(seq[idx].sum()), 3),
            "input_mean": round(float(other_inp[idx].mean()), 1),
        }
    return {
        "tokenizer": spec,
        "languages": languages,
        "input_ratio": round(float(other_inp.sum()) / max(float(this_inp.sum()), 1.0), 3),
    }
