"""How long the training sequences really are, per language, and what ``max_seq_length`` that needs.

The same text costs very different numbers of tokens per language and per tokenizer (Qwen2 spends
about 1.8× Llama 3's tokens on Hindi, Llama 3 1.25× Qwen's on Chinese), so budgets are measured on the
user's own data: the full training sequence (system + instruction + input + answer, rendered by the
tokenizer's own chat template from ``prompts.example_messages``), plus the input alone for tokens per
character and per word.

Speed: templates are rendered to text, then tokenized in one batched call of the fast (Rust)
tokenizer, which matches ``apply_chat_template(..., tokenize=True)`` token for token (a test checks it).
A tokenizer read from a ``.gguf`` file is converted once (a minute for a 150k vocabulary) and cached
as ``tokenizer.json`` under ``$LINGOFORGE_CACHE/tokenizers``.
"""

from __future__ import annotations

import functools
import hashlib
import math
import os
import shutil
import tempfile
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .errors import LingoforgeError
from .prompts import example_messages
from .task import Example, Task

HEADROOM = 1.2
MULTIPLE = 64
UNSPACED_LANGUAGES = frozenset({"zh", "ja", "th", "lo", "km", "my", "bo"})
_BATCH = 4096


def cache_dir() -> Path:
    """Where converted tokenizers are kept (``$LINGOFORGE_CACHE``, default ``~/.cache/lingoforge``)."""
    return Path(os.environ.get("LINGOFORGE_CACHE") or Path.home() / ".cache" / "lingoforge") / "tokenizers"


@functools.lru_cache(maxsize=4)
def load_tokenizer(spec: str) -> Any:
    """A tokenizer from a hub id, a local folder or a ``.gguf`` file (cached per process and, for GGUF,
    on disk); ``LingoforgeError`` says what was tried when it cannot be loaded."""
    from transformers import AutoTokenizer

    path = Path(spec).expanduser()
    try:
        if spec.endswith(".gguf"):
            if not path.is_file():
                raise LingoforgeError(f"tokenizer file {path} does not exist")
            return AutoTokenizer.from_pretrained(str(_converted_gguf(path)))
        if path.is_dir():
            return AutoTokenizer.from_pretrained(str(path))
        return AutoTokenizer.from_pretrained(spec)
    except LingoforgeError:
        raise
    except Exception as exc:  # transformers raises OSError, ValueError, HTTP errors...
        raise LingoforgeError(f"cannot load tokenizer {spec!r} (a hub id, a local folder or a .gguf file): {exc}") from None


def _converted_gguf(path: Path) -> Path:
    """A folder with the GGUF's tokenizer saved in transformers' format, converted on first use."""
    stat = path.stat()
    key = hashlib.sha256(f"{path.resolve()}|{stat.st_size}|{stat.st_mtime_ns}".encode()).hexdigest()[:16]
    target = cache_dir() / f"{path.stem}-{key}"
    if (target / "tokenizer_config.json").is_file():
        return target
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(path.parent), gguf_file=path.name)
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    try:
        tokenizer.save_pretrained(staging)
        os.replace(staging, target)
    except OSError:
        if not (target / "tokenizer_config.json").is_file():
            raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target


def context_length(spec: str, tokenizer: Any) -> int | None:
    """The model's context: the tokenizer's ``model_max_length`` when real, else the GGUF's
    ``<arch>.context_length``, else a local folder's ``config.json``; ``None`` when unknown."""
    limit = getattr(tokenizer, "model_max_length", None)
    if isinstance(limit, int) and 0 < limit < 10_000_000:
        return limit
    path = Path(spec).expanduser()
    if spec.endswith(".gguf") and path.is_file():
        import gguf

        reader = gguf.GGUFReader(str(path))
        arch_field = reader.fields.get("general.architecture")
        if arch_field is not None:
            arch = bytes(arch_field.parts[arch_field.data[0]]).decode()
            ctx = reader.fields.get(f"{arch}.context_length")
            if ctx is not None:
                return int(ctx.parts[ctx.data[0]][0])
    config = path / "config.json"
    if path.is_dir() and config.is_file():
        import json

        value = json.loads(config.read_text()).get("max_position_embeddings")
        return int(value) if value else None
    return None


def _lengths(tokenizer: Any, texts: Sequence[str], advance: Any = None) -> np.ndarray:
    out = np.empty(len(texts), dtype=np.int64)
    for start in range(0, len(texts), _BATCH):
        chunk = list(texts[start : start + _BATCH])
        ids = tokenizer(chunk, add_special_tokens=False)["input_ids"]
        out[start : start + len(chunk)] = [len(x) for x in ids]
        if advance:
            advance(len(chunk))
    return out


def render(tokenizer: Any, task: Task, examples: Sequence[Example], advance: Any = None) -> list[str]:
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


def count_tokens(tokenizer: Any, task: Task, examples: Sequence[Example], stages: Any = None) -> tuple[np.ndarray, np.ndarray]:
    """(tokens of the full training sequence, tokens of the input alone) per example."""
    from .data.progress import silent

    stages = stages or silent
    texts = render(tokenizer, task, examples, stages("rendering chat template", len(examples)))
    sequence = _lengths(tokenizer, texts, stages("tokenizing sequences", len(examples)))
    inputs = _lengths(tokenizer, [e.input for e in examples], stages("tokenizing inputs", len(examples)))
    return sequence, inputs


def recommend_max_seq_length(longest: float, context: int | None) -> int:
    """``longest`` + 20 %, rounded up to a multiple of 64, capped at the model's context."""
    value = max(MULTIPLE, math.ceil(longest * HEADROOM / MULTIPLE) * MULTIPLE)
    return min(value, context) if context else value


def _stats(lang: str, seq: np.ndarray, inp: np.ndarray, examples: Sequence[Example]) -> dict[str, Any]:
    chars = sum(len(e.input) for e in examples)
    words = sum(len(e.input.split()) for e in examples)
    return {
        "examples": len(seq),
        "mean": round(float(seq.mean()), 1),
        "p50": int(np.percentile(seq, 50, method="higher")),
        "p95": int(np.percentile(seq, 95, method="higher")),
        "p99": int(np.percentile(seq, 99, method="higher")),
        "max": int(seq.max()),
        "input_mean": round(float(inp.mean()), 1),
        "tokens_per_char": round(float(inp.sum()) / max(chars, 1), 3),
        "tokens_per_word": None if lang in UNSPACED_LANGUAGES else round(float(inp.sum()) / max(words, 1), 3),
    }


def token_report(data: Sequence[Example], task: Task, tokenizer: str, compare: str | None = None, percentile: float | None = None,
                 max_len: int | None = None, stages: Any = None) -> dict[str, Any]:
    """Per-language token statistics of ``data`` and the recommended ``max_seq_length``.

    The length is taken from the most verbose language: its longest sequence, or its ``percentile``
    (e.g. 99) when given, so a few outliers can be truncated instead of paying for them in every batch.
    ``num_ctx`` (for Ollama) is the same number: serving sees the same prompts. ``truncated`` counts,
    per language, the sequences longer than ``max_len`` (default: the recommendation), which would lose
    the end of their answer in training.
    """
    if not data:
        raise LingoforgeError("no examples to count tokens of")
    if percentile is not None and not 0 < percentile <= 100:
        raise LingoforgeError(f"--percentile must be in (0, 100], got {percentile}")
    tok = load_tokenizer(tokenizer)
    seq, inp = count_tokens(tok, task, data, stages)
    by_lang: dict[str, list[int]] = defaultdict(list)
    for i, e in enumerate(data):
        by_lang[e.language or "?"].append(i)
    languages = {lang: _stats(lang, seq[idx], inp[idx], [data[i] for i in idx]) for lang, idx in sorted(by_lang.items())}
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
        report["compare"] = _compare(compare, task, data, by_lang, seq, inp, stages)
    return report


def _compare(spec: str, task: Task, data: Sequence[Example], by_lang: dict[str, list[int]], seq: np.ndarray, inp: np.ndarray,
             stages: Any) -> dict[str, Any]:
    """Token count ratios other/this per language: on inputs (the text itself) and on full sequences
    (``None`` when the other tokenizer has no chat template)."""
    from .data.progress import silent

    other = load_tokenizer(spec)
    stages = stages or silent
    other_inp = _lengths(other, [e.input for e in data], stages(f"tokenizing inputs ({Path(spec).name})", len(data)))
    other_seq = None
    if getattr(other, "chat_template", None):
        texts = render(other, task, data, stages(f"rendering ({Path(spec).name})", len(data)))
        other_seq = _lengths(other, texts, stages(f"tokenizing sequences ({Path(spec).name})", len(data)))
    languages = {}
    for lang, idx in sorted(by_lang.items()):
        languages[lang] = {
            "input_ratio": round(float(other_inp[idx].sum()) / max(float(inp[idx].sum()), 1.0), 3),
            "sequence_ratio": round(float(other_seq[idx].sum()) / float(seq[idx].sum()), 3) if other_seq is not None else None,
            "input_mean": round(float(other_inp[idx].mean()), 1),
        }
    return {"tokenizer": spec, "languages": languages,
            "input_ratio": round(float(other_inp.sum()) / max(float(inp.sum()), 1.0), 3)}
