"""Prove the exported GGUF behaves like the trained HF model, before anyone deploys it.

Two checks, on the same test prompts built by ``lingoforge.prompts``:

1. **F16 parity** (hard): llama.cpp must tokenize the rendered prompt into the same ids as the HF
   tokenizer, greedy decoding of the F16 GGUF must give the same tokens as greedy decoding of the
   merged HF model, and at every compared step the two next-token logit vectors must agree within
   ``logit_tol`` of HF's logit range. The first difference is reported as (example, token position,
   both tokens). Both sides hold the same float16 weights but compute in different orders, so when
   HF's own top two logits are within ``tie_tol`` at the diverging step the difference is a numerical
   tie, not an export bug: it is counted and reported, and comparison of that example stops there.
2. **Quantization cost** (soft): per-language score of the quantized GGUF beside the HF model's, with a
   warning for any language that drops more than ``max_drop`` points.

Self-contained on purpose (llama-cpp-python and transformers directly), so the check does not depend on
the evaluation stack it is meant to validate.
"""

from __future__ import annotations

import os
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import LingoforgeError
from ..progress import track
from ..prompts import prompt_messages
from ..schema import parse_output
from ..task import Example, Task
from .modelfile import STOP_TOKENS

DEFAULT_MAX_NEW_TOKENS = 256  # room for a JSON answer with a short free-text field


class ParityError(LingoforgeError):
    """The F16 GGUF does not reproduce the HF model; the message says where."""


@dataclass(frozen=True)
class Divergence:
    """Where HF and llama.cpp first disagree: ``kind`` is ``prompt`` (token ids), ``greedy`` (generated token)
    or ``logits`` (same token so far, but the next-token logits are too far apart)."""

    example: int
    kind: str
    position: int
    hf_token: int | None
    gguf_token: int | None
    hf_piece: str
    gguf_piece: str
    margin: float | None = None  # greedy: HF's logit gap between the two tokens; logits: the relative drift

    def __str__(self) -> str:
        if self.kind == "logits":
            return (f"example {self.example}, generated token {self.position}: next-token logits differ by "
                    f"{self.margin:.3g} of HF's logit range (both pick {self.hf_token} {self.hf_piece!r} so far)")
        what = "prompt token" if self.kind == "prompt" else "generated token"
        return (f"example {self.example}, {what} {self.position}: HF {self.hf_token} {self.hf_piece!r} vs "
                f"GGUF {self.gguf_token} {self.gguf_piece!r}")


@dataclass
class ParityResult:
    """F16 token parity over the examples plus the per-language accuracy of HF vs the quantized GGUF."""

    examples: int
    prompt_tokens: int
    compared_tokens: int
    max_logit_drift: float = 0.0
    ties: list[Divergence] = field(default_factory=list)
    failures: list[Divergence] = field(default_factory=list)
    accuracy: dict[str, dict[str, float]] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {"examples": self.examples, "prompt_tokens": self.prompt_tokens, "compared_tokens": self.compared_tokens,
                "max_logit_drift": self.max_logit_drift,
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
        from transformers import GenerationConfig

        # A fresh config: a model's own generation_config may carry sampling settings or a repetition
        # penalty (Qwen2.5-Instruct ships 1.05) that would make "greedy" differ from llama.cpp's argmax.
        config = GenerationConfig(max_new_tokens=max_new_tokens, do_sample=False, eos_token_id=self.stop_ids,
                                  pad_token_id=self.stop_ids[0], output_logits=True, return_dict_in_generate=True)
        with self.torch.no_grad():
            out = self.model.generate(self.torch.tensor([list(ids)]), generation_config=config)
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
            import llama_cpp
        except ImportError:
            raise LingoforgeError("export parity needs llama-cpp-python: pip install 'lingoforge[llamacpp]'") from None
        self._llama_cpp = llama_cpp
        kwargs: dict[str, Any] = {"lora_path": str(lora_path)} if lora_path else {}
        try:
            # llama-cpp-python decodes on half the cores by default; parity is all this process does.
            self.llm = llama_cpp.Llama(model_path=str(path), n_ctx=n_ctx, n_threads=os.cpu_count(), verbose=False,
                                       **kwargs)
        except ValueError as exc:
            raise LingoforgeError(f"llama.cpp cannot load {path}: {exc}") from None
        self.stop_ids = {self.llm.token_eos(), *(self._single_id(t) for t in STOP_TOKENS)} - {None}

    def _single_id(self, token: str) -> int | None:
        ids = self.llm.tokenize(token.encode(), add_bos=False, special=True)
        return ids[0] if len(ids) == 1 else None

    def prompt_ids(self, text: str) -> list[int]:
        return list(self.llm.tokenize(text.encode("utf-8"), add_bos=False, special=True))

    def greedy(self, ids: Sequence[int], max_new_tokens: int,
               reference: Sequence[np.ndarray] = ()) -> tuple[list[int], list[float]]:
        """Argmax decoding with no sampler in between (no repeat penalty, no top-k), stop token included.

        With ``reference`` logits (HF's, step by step) also returns, per step, the largest absolute logit
        difference divided by the reference's logit range: a scale-free measure of how far the GGUF's
        whole next-token distribution is from HF's, not only its argmax.
        """
        self.llm.reset()
        self.llm.eval(list(ids))
        tokens: list[int] = []
        drift: list[float] = []
        for step in range(max_new_tokens):
            logits = self._last_logits()
            if step < len(reference):
                ref = reference[step]
                drift.append(float(np.abs(logits - ref).max() / max(float(ref.max() - ref.min()), 1e-6)))
            token = int(np.argmax(logits))
            tokens.append(token)
            if token in self.stop_ids:
                break
            self.llm.eval([token])
        return tokens, drift

    def _last_logits(self) -> np.ndarray:
        """Logits of the last evaluated position, straight from llama.cpp (llama-cpp-python keeps none by default)."""
        pointer = self._llama_cpp.llama_get_logits_ith(self.llm.ctx, -1)
        return np.ctypeslib.as_array(pointer, shape=(self.llm.n_vocab(),))

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
              max_new_tokens: int = DEFAULT_MAX_NEW_TOKENS, tie_tol: float = 1e-3, logit_tol: float = 1e-2,
              progress: bool = False) -> tuple[ParityResult, list[list[int]]]:
    """Compare prompt ids, greedy tokens and next-token logits; returns the result and HF's greedy tokens.

    Greedy tokens alone can agree for a wrong model (an untrained model that always says the same token
    does so with or without the adapter), so every compared step's logits must also be within
    ``logit_tol`` of HF's, relative to HF's logit range (F16 export measures ~1e-4; a dropped adapter ~0.1).
    """
    result = ParityResult(examples=len(conversations), prompt_tokens=0, compared_tokens=0)
    hf_outputs: list[list[int]] = []
    for index, messages in enumerate(track(conversations, "F16 parity", enabled=progress)):
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
        gguf_tokens, drift = gguf.greedy(gguf_ids, max_new_tokens, hf_logits)
        hf_outputs.append(hf_tokens)
        at = _first_difference(hf_tokens, gguf_tokens)
        compared = len(hf_tokens) if at is None else at
        result.compared_tokens += compared
        result.max_logit_drift = max([result.max_logit_drift, *drift[:compared + 1]])
        far = next((i for i, d in enumerate(drift[:compared + 1]) if d > logit_tol), None)
        if far is not None and (at is None or far < at):
            token = _at(hf_tokens, far)
            result.failures.append(Divergence(index, "logits", far, token, _at(gguf_tokens, far), hf.piece(token),
                                              hf.piece(_at(gguf_tokens, far)), drift[far]))
        elif at is not None:
            a, b = _at(hf_tokens, at), _at(gguf_tokens, at)
            margin = None
            if a is not None and b is not None and at < len(hf_logits):
                margin = float(hf_logits[at][a] - hf_logits[at][b])
            divergence = Divergence(index, "greedy", at, a, b, hf.piece(a), gguf.piece(b), margin)
            (result.ties if margin is not None and margin <= tie_tol else result.failures).append(divergence)
    return result, hf_outputs


def greedy_texts(model: GGUFModel, prompts: Sequence[str], max_new_tokens: int, progress: bool = False) -> list[str]:
    """Greedy answers of a GGUF for already-rendered prompts (the quantized model's side of the accuracy table)."""
    return [model.text(model.greedy(model.prompt_ids(p), max_new_tokens)[0])
            for p in track(prompts, "quantized answers", enabled=progress)]


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
