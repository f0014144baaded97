"""Prove the exported GGUF behaves like the trained HF model, before anyone deploys it.

Two checks, on the same test prompts built by ``lingoforge.prompts``:

1. **F16 parity** (hard): llama.cpp must tokenize the rendered prompt into the same ids as the HF
   tokenizer, and greedy decoding of the F16 GGUF must give the same tokens as greedy decoding of the
   merged HF model. The first difference is reported as (example, token position, both tokens).
   Both sides hold the same float16 weights but compute in different orders, so when HF's own top two
   logits are within ``tie_tol`` at the diverging step the difference is a numerical tie, not an export
   bug: it is counted and reported, and comparison of that example stops there.
2. **Quantization cost** (soft): per-language score of the quantized GGUF beside the HF model's, with a
   warning for any language that drops more than ``max_drop`` points.

Self-contained on purpose (llama-cpp-python and transformers directly), so the check does not depend on
the evaluation stack it is meant to validate.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import LingoforgeError
from ..prompts import prompt_messages
from ..schema import parse_output
from ..task import Example, Task
from .modelfile import STOP_TOKENS

DEFAULT_MAX_NEW_TOKENS = 96


class ParityError(LingoforgeError):
    """The F16 GGUF does not reproduce the HF model; the message says where."""


@dataclass(frozen=True)
class Divergence:
    """Where HF and llama.cpp first disagree: ``kind`` is ``prompt`` (token ids) or ``greedy`` (generation)."""

    example: int
    kind: str
    position: int
    hf_token: int | None
    gguf_token: int | None
    hf_piece: str
    gguf_piece: str
    margin: float | None = None

    def __str__(self) -> str:
        what = "prompt token" if self.kind == "prompt" else "generated token"
        return (f"example {self.example}, {what} {self.position}: HF {self.hf_token} {self.hf_piece!r} vs "
                f"GGUF {self.gguf_token} {self.gguf_piece!r}")


@dataclass
class ParityResult:
    """F16 token parity over the examples plus the per-language accuracy of HF vs the quantized GGUF."""

    examples: int
    prompt_tokens: int
    compared_tokens: int
    ties: list[Divergence] = field(default_factory=list)
    failures: list[Divergence] = field(default_factory=list)
    accuracy: dict[str, dict[str, float]] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {"examples": self.examples, "prompt_tokens": self.prompt_tokens, "compared_tokens": self.compared_tokens,
                "f16_parity": not self.failures, "failures": [asdict(d) for d in self.failures],
                "numerical_ties": [asdict(d) for d in self.ties], "accuracy": self.accuracy, "warnings": self.warnings}


class HFReference:
    """The merged HF model in fp32 on CPU (its float16 weights upcast) with its own tokenizer."""

    def __init__(self, model_dir: str | Path) -> None:
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        self.torch = torch
        self.tokenizer = AutoTokenizer.from_pretrained(str(model_dir))
        self.model = AutoModelForCausalLM.from_pretrained(str(model_dir), dtype=torch.float32).eval()
        vocab = self.tokenizer.get_vocab()
        self.stop_ids = sorted({vocab[t] for t in STOP_TOKENS if t in vocab} | {self.tokenizer.eos_token_id})

    def render(self, messages: Sequence[dict[str, str]]) -> str:
        text = self.tokenizer.apply_chat_template(list(messages), tokenize=False, add_generation_prompt=True)
        return str(text)

    def prompt_ids(self, text: str) -> list[int]:
        return list(self.tokenizer(text, add_special_tokens=False)["input_ids"])

    def greedy(self, ids: Sequence[int], max_new_tokens: int) -> tuple[list[int], list[np.ndarray]]:
        """Greedy tokens (stop token included) and the raw logits of every step."""
        with self.torch.no_grad():
            out = self.model.generate(
                self.torch.tensor([list(ids)]), max_new_tokens=max_new_tokens, do_sample=False,
                eos_token_id=self.stop_ids, pad_token_id=self.stop_ids[0], output_logits=True,
                return_dict_in_generate=True,
            )
        tokens = out.sequences[0, len(ids):].tolist()
        return tokens, [step[0].float().numpy() for step in out.logits]

    def piece(self, token: int | None) -> str:
        return "" if token is None else str(self.tokenizer.decode([token]))

    def text(self, tokens: Sequence[int]) -> str:
        return str(self.tokenizer.decode([t for t in tokens if t not in self.stop_ids], skip_special_tokens=True))


class GGUFModel:
    """A GGUF file in llama.cpp (optionally with a LoRA adapter GGUF), decoded greedily by argmax of logits."""

    def __init__(self, path: str | Path, n_ctx: int = 2048, lora_path: str | Path | None = None) -> None:
        try:
            from llama_cpp import Llama
        except ImportError:
            raise LingoforgeError("export parity needs llama-cpp-python: pip install 'lingoforge[llamacpp]'") from None
        kwargs: dict[str, Any] = {"lora_path": str(lora_path)} if lora_path else {}
        try:
            self.llm = Llama(model_path=str(path), n_ctx=n_ctx, verbose=False, **kwargs)
        except ValueError as exc:
            raise LingoforgeError(f"llama.cpp cannot load {path}: {exc}") from None
        self.stop_ids = {self.llm.token_eos(), *(self._single_id(t) for t in STOP_TOKENS)} - {None}

    def _single_id(self, token: str) -> int | None:
        ids = self.llm.tokenize(token.encode(), add_bos=False, special=True)
        return ids[0] if len(ids) == 1 else None

    def prompt_ids(self, text: str) -> list[int]:
        return list(self.llm.tokenize(text.encode("utf-8"), add_bos=False, special=True))

    def greedy(self, ids: Sequence[int], max_new_tokens: int) -> list[int]:
        """Argmax decoding with no sampler in between (no repeat penalty, no top-k), stop token included."""
        self.llm.reset()
        self.llm.eval(list(ids))
        tokens: list[int] = []
        for _ in range(max_new_tokens):
            token = int(np.argmax(self.llm.scores[self.llm.n_tokens - 1]))
            tokens.append(token)
            if token in self.stop_ids:
                break
            self.llm.eval([token])
        return tokens

    def piece(self, token: int | None) -> str:
        return "" if token is None else self.llm.detokenize([token], special=True).decode("utf-8", errors="replace")

    def text(self, tokens: Sequence[int]) -> str:
        return self.llm.detokenize([t for t in tokens if t not in self.stop_ids]).decode("utf-8", errors="replace")

    def close(self) -> None:
        self.llm.close()


def _first_difference(a: Sequence[int], b: Sequence[int]) -> int | None:
    for i, (x, y) in enumerate(zip(a, b, strict=False)):
        if x != y:
            return i
    return None if len(a) == len(b) else min(len(a), len(b))


def _at(seq: Sequence[int], i: int) -> int | None:
    return seq[i] if i < len(seq) else None


def check_f16(hf: HFReference, gguf: GGUFModel, conversations: Sequence[Sequence[dict[str, str]]],
              max_new_tokens: int = DEFAULT_MAX_NEW_TOKENS, tie_tol: float = 1e-3,
              progress: Callable[[int], None] | None = None) -> tuple[ParityResult, list[list[int]]]:
    """Compare prompt ids and greedy tokens; returns the result and HF's greedy tokens (for scoring)."""
    result = ParityResult(examples=len(conversations), prompt_tokens=0, compared_tokens=0)
    hf_outputs: list[list[int]] = []
    for index, messages in enumerate(conversations):
        text = hf.render(messages)
        hf_ids, gguf_ids = hf.prompt_ids(text), gguf.prompt_ids(text)
        result.prompt_tokens += len(hf_ids)
        at = _first_difference(hf_ids, gguf_ids)
        if at is not None:
            a, b = _at(hf_ids, at), _at(gguf_ids, at)
            result.failures.append(Divergence(index, "prompt", at, a, b, hf.piece(a), gguf.piece(b)))
            hf_outputs.append([])
            continue
        hf_tokens, hf_logits = hf.greedy(hf_ids, max_new_tokens)
        gguf_tokens = gguf.greedy(gguf_ids, max_new_tokens)
        hf_outputs.append(hf_tokens)
        at = _first_difference(hf_tokens, gguf_tokens)
        result.compared_tokens += len(hf_tokens) if at is None else at
        if at is not None:
            a, b = _at(hf_tokens, at), _at(gguf_tokens, at)
            margin = None
            if a is not None and b is not None and at < len(hf_logits):
                margin = float(hf_logits[at][a] - hf_logits[at][b])
            divergence = Divergence(index, "greedy", at, a, b, hf.piece(a), gguf.piece(b), margin)
            (result.ties if margin is not None and margin <= tie_tol else result.failures).append(divergence)
        if progress:
            progress(1)
    return result, hf_outputs


def language_scores(task: Task, examples: Sequence[Example], texts: Sequence[str]) -> dict[str, float]:
    """Mean primary metric per language (in points, 0-100) of answers ``texts``, parsed with the task schema."""
    by_language: dict[str, list[float]] = defaultdict(list)
    for example, text in zip(examples, texts, strict=True):
        parsed = parse_output(text, task.output_schema)
        score = task.score(parsed.value if parsed.valid else None, example.output)[task.primary_metric]
        by_language[example.language or "?"].append(float(score))
    return {lang: round(100 * sum(v) / len(v), 2) for lang, v in sorted(by_language.items())}


def compare_accuracy(task: Task, examples: Sequence[Example], hf_texts: Sequence[str], quant_texts: Sequence[str],
                     max_drop: float = 2.0) -> tuple[dict[str, dict[str, float]], list[str]]:
    """Per-language HF vs quantized scores and a warning per language that drops more than ``max_drop`` points."""
    hf_scores = language_scores(task, examples, hf_texts)
    quant_scores = language_scores(task, examples, quant_texts)
    counts: dict[str, int] = defaultdict(int)
    for example in examples:
        counts[example.language or "?"] += 1
    table = {lang: {"n": counts[lang], "hf": hf_scores[lang], "gguf": quant_scores[lang],
                    "drop": round(hf_scores[lang] - quant_scores[lang], 2)} for lang in hf_scores}
    warnings = [f"{lang}: {task.primary_metric} drops {row['drop']:.1f} points after quantization "
                f"({row['hf']:.1f} → {row['gguf']:.1f}, n={row['n']})"
                for lang, row in table.items() if row["drop"] > max_drop]
    return table, warnings


def conversations_for(task: Task, examples: Sequence[Example]) -> list[list[dict[str, str]]]:
    """The prompts parity uses: exactly what training and serving send (``lingoforge.prompts``)."""
    return [prompt_messages(task, ex.input, ex.instruction) for ex in examples]
