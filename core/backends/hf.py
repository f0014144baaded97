"""Transformers backend: batched greedy generation with left padding and the KV cache.

Loads a merged (or base) model folder, or a base model with a PEFT adapter on top. How the weights are held is
chosen by :func:`load_mode` and reported by ``describe()``: on CPU in fp32 with the adapter merged in; on a GPU
in 16 bits with the adapter merged in when that fits with room for a batch (plain 16-bit matmuls, the fast
path), else the base in 4-bit NF4 as training held it, with the adapter unmerged on top. Conversations are
batched by prompt length (:meth:`HFBackend.stream`), so a batch's rows pad to similar lengths.
:meth:`HFBackend.around` answers with a model already in memory instead, so validation during training
(``lingoforge.validation``) asks the model in training exactly as evaluation asks a loaded one.

Schema-constrained decoding uses xgrammar's logits processor. Measured against lm-format-enforcer on
SmolLM2-135M (bench/bench_inference.py, 16 items, 2-core shared CPU): both gave 100% schema-valid
answers at the same cost per token (194 vs 188 ms, within noise, the forward pass dominates), xgrammar
sets up in 0.8 s vs 3.0 s, and lm-format-enforcer's transformers integration does not import under
transformers 5 (``transformers.tokenization_utils.PreTrainedTokenizerBase`` moved), so it would need a
hand-built tokenizer table.
"""

from __future__ import annotations

import copy
import gc
import json
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..config import DEFAULT_MAX_LEN
from ..errors import LingoforgeError
from ..models import Shape
from ..plan import CUDA_CONTEXT_GB, FRAGMENTATION, GB, plan
from ..progress import quiet_library_bars
from ..runfolder import check_adapter
from .base import DEFAULT_MAX_NEW_TOKENS, Backend, Conversation, Generation

STOP_TOKENS = ("<|im_end|>", "<|endoftext|>")

MERGED = "merged"  # unquantized weights (16-bit on a GPU, fp32 on CPU), the adapter folded into them
QUANTIZED = "4bit+adapter"  # NF4 base as training held it, the adapter unmerged on top
LOAD_MODES = (MERGED, QUANTIZED)
IN_MEMORY = "in memory"  # ``HFBackend.around``: a model the caller loaded, as the caller holds it
# The batch the 16-bit choice leaves room for: twice eval's default batch, each row a prompt as long as training's
# default max length plus the default answer budget, so eval and predict at their defaults do not run out mid-run.
PLANNED_BATCH = 16
PLANNED_TOKENS = DEFAULT_MAX_LEN + DEFAULT_MAX_NEW_TOKENS
SORT_WINDOW = 32  # batches whose conversations are sorted by length together (bounds how far answers come out of order)


@dataclass(frozen=True)
class LoadChoice:
    """How the backend holds the weights (one of ``LOAD_MODES``) and why, as ``describe()`` reports it."""

    mode: str
    reason: str


def merged_16bit_gb(shape: Shape, batch: int = PLANNED_BATCH, tokens: int = PLANNED_TOKENS) -> float:
    """GPU memory (GB) a merged 16-bit model needs to answer ``batch`` rows of up to ``tokens`` tokens.

    The plan's f16 inference weights, the KV cache (K and V in 16 bits for every layer and token), the prefill's
    widest working set (three intermediate-wide MLP activations of one layer for every token of the batch) and
    the CUDA context, plus the plan's allocator fragmentation share."""
    weights = plan(shape, cuda=True)["inference_gb"]["f16"]
    kv_cache = 2 * shape.layers * shape.kv_dim * 2 * batch * tokens / GB
    prefill = 3 * shape.intermediate * 2 * batch * tokens / GB
    return (weights + kv_cache + prefill + CUDA_CONTEXT_GB) * (1 + FRAGMENTATION)


def load_mode(
    free_gb: float | None, shape: Shape, batch: int = PLANNED_BATCH, tokens: int = PLANNED_TOKENS
) -> LoadChoice:
    """How to hold a model of ``shape``; ``free_gb`` is the free memory of the GPU it goes on, ``None`` on CPU.

    On CPU: fp32 with the adapter merged (bitsandbytes' CPU kernels gain nothing there). On a GPU: merged into a
    16-bit copy when :func:`merged_16bit_gb` fits in ``free_gb``, since generation is then plain 16-bit matmuls,
    several times faster than dequantizing NF4 on every step and running the adapter's extra matmuls beside
    every layer; otherwise the 4-bit path, for GPUs that cannot hold the 16-bit model (the adapter stays
    unmerged: folding it into NF4 weights would requantize every layer)."""
    if free_gb is None:
        return LoadChoice(MERGED, "CPU: fp32 weights")
    need = merged_16bit_gb(shape, batch, tokens)
    room = f"16-bit weights and a batch of {batch} x {tokens} tokens need {need:.1f} GB, {free_gb:.1f} GB free"
    if need <= free_gb:
        return LoadChoice(MERGED, f"{room}: 16-bit")
    return LoadChoice(QUANTIZED, f"{room}: 4-bit NF4, as training quantizes")


def free_gpu_gb(device: str) -> float:
    """Memory the model could take on ``device``: what the driver reports free, plus what this process's allocator
    holds cached but unused (a model evaluated and closed before this one leaves its blocks there)."""
    import torch

    free, _total = torch.cuda.mem_get_info(torch.device(device))
    cached = torch.cuda.memory_reserved(device) - torch.cuda.memory_allocated(device)
    return (free + cached) / GB


class HFBackend(Backend):
    """A transformers causal LM. ``adapter`` is a PEFT adapter folder to apply on ``location``.

    ``mode`` (one of ``LOAD_MODES``) and ``dtype`` (a torch dtype name: the weights' dtype when merged, the compute
    dtype in 4 bits) override :func:`load_mode`'s choice; left out, the backend decides from the model's shape and
    the GPU's free memory."""

    name = "hf"

    def __init__(
        self,
        location: str,
        adapter: str | Path | None = None,
        device: str | None = None,
        dtype: str | None = None,
        mode: str | None = None,
    ) -> None:
        super().__init__(f"{location} + {adapter}" if adapter else location)
        if mode is not None and mode not in LOAD_MODES:
            raise LingoforgeError(f"unknown hf load mode {mode!r}; choose one of {', '.join(LOAD_MODES)}")
        if adapter is not None:
            check_adapter(Path(adapter))  # a damaged adapter is named before minutes of loading
        import torch
        from transformers import AutoConfig, AutoTokenizer

        self._torch = torch
        where = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        cuda = where.type == "cuda"
        if cuda and where.index is None:
            where = torch.device("cuda", torch.cuda.current_device())  # one GPU: placement, free memory, report
        self.device = str(where)
        self.dtype = getattr(torch, dtype) if dtype else (torch.bfloat16 if cuda else torch.float32)
        tokenizer_source = str(adapter) if adapter and _has_tokenizer(Path(adapter)) else location
        try:
            self.tokenizer = AutoTokenizer.from_pretrained(tokenizer_source)
            if mode is None and dtype is None:
                free = free_gpu_gb(self.device) if cuda else None
                self.load = load_mode(free, Shape.from_config(AutoConfig.from_pretrained(location)))
            else:
                asked = ", ".join(f"{k}={v}" for k, v in (("mode", mode), ("dtype", dtype)) if v is not None)
                self.load = LoadChoice(mode or MERGED, f"asked for: {asked}")
            model = _load_base(location, self.load.mode, self.dtype, self.device)
        except OSError as exc:
            local = "" if Path(location).exists() else f" (and no local folder {Path(location).absolute()} exists)"
            raise LingoforgeError(f"cannot load the model at {location}{local}: {str(exc).strip()[:300]}") from None
        self._attach(model if adapter is None else _apply_adapter(model, Path(adapter), self.load.mode),
                     self.tokenizer, tokenizer_source)

    @classmethod
    def around(cls, model: Any, tokenizer: Any) -> HFBackend:
        """A backend answering with ``model``, a causal LM already in memory (``lingoforge.validation`` asks the model
        in training), through the same prompts, batching, stop tokens and grammar as a loaded one. ``tokenizer`` is
        copied: the backend pads on the left, and its owner (a trainer) may pad otherwise."""
        import torch

        backend = cls.__new__(cls)
        Backend.__init__(backend, f"{type(model).__name__} in memory")
        backend._torch = torch
        backend.device = str(model.device)
        backend.dtype = model.dtype
        backend.load = LoadChoice(IN_MEMORY, "a model already in memory, held as its owner holds it")
        backend._attach(model, copy.deepcopy(tokenizer), "the model in memory")
        return backend

    def _attach(self, model: Any, tokenizer: Any, tokenizer_source: str) -> None:
        """Hold ``model`` and ``tokenizer`` ready to generate: left padding, a pad token, the stop tokens; a tokenizer
        without a chat template is refused, naming ``tokenizer_source``."""
        self.model_obj, self.tokenizer = model, tokenizer
        self.tokenizer.padding_side = "left"
        if self.tokenizer.pad_token_id is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        if not getattr(self.tokenizer, "chat_template", None):
            raise LingoforgeError(
                f"the tokenizer of {tokenizer_source} has no chat template; evaluate an instruct "
                "model or a run folder whose adapter/ holds the training tokenizer"
            )
        self.stop_ids = self._stop_ids()
        self._compiler: Any = None
        self._grammars: dict[str, Any] = {}

    def _stop_ids(self) -> list[int]:
        """The tokenizer's eos, the generation config's eos and the ChatML end tokens that exist in the vocab."""
        ids = {self.tokenizer.eos_token_id}
        configured = getattr(self.model_obj.generation_config, "eos_token_id", None)
        ids.update(configured if isinstance(configured, list) else [configured])
        vocab = self.tokenizer.get_vocab()
        ids.update(vocab[t] for t in STOP_TOKENS if t in vocab)
        return sorted(i for i in ids if i is not None)

    def prompts(self, batch: Sequence[Conversation]) -> list[str]:
        """The chat-template rendering of each conversation, ending with the assistant turn opener."""
        return [
            str(self.tokenizer.apply_chat_template([dict(m) for m in conv], tokenize=False, add_generation_prompt=True))
            for conv in batch
        ]

    def stream(
        self,
        batch: Sequence[Conversation],
        schema: Mapping[str, Any] | None = None,
        max_new_tokens: int = DEFAULT_MAX_NEW_TOKENS,
        chunk: int = 8,
    ) -> Iterator[tuple[int, Generation]]:
        """``Backend.stream`` with batches of similar prompt lengths: each window of ``SORT_WINDOW`` batches is
        sorted by prompt tokens, longest first, before it is cut into batches of ``chunk``.

        Every row of a batch pays a forward pass for each padding token, so mixing a long prompt with short
        ones wastes most of the prefill; longest first makes an out-of-memory show on the first batch. Positions
        are the caller's, so answers come out of order only within a window (``predict`` writes in input order
        and holds at most a window's answers back)."""
        size = max(1, chunk)
        for start in range(0, len(batch), size * SORT_WINDOW):
            window = batch[start : start + size * SORT_WINDOW]
            lengths = self.prompt_lengths(window)
            order = sorted(range(len(window)), key=lambda i: -lengths[i])
            for first in range(0, len(order), size):
                rows = order[first : first + size]
                answers = self.generate([window[i] for i in rows], schema, max_new_tokens)
                yield from ((start + i, answer) for i, answer in zip(rows, answers, strict=True))

    def prompt_lengths(self, batch: Sequence[Conversation]) -> list[int]:
        """Prompt tokens of each conversation, as ``generate`` encodes it (before padding)."""
        return [len(ids) for ids in self.tokenizer(self.prompts(batch), add_special_tokens=False)["input_ids"]]

    def generate(
        self,
        batch: Sequence[Conversation],
        schema: Mapping[str, Any] | None = None,
        max_new_tokens: int = DEFAULT_MAX_NEW_TOKENS,
    ) -> list[Generation]:
        if not batch:
            return []
        torch = self._torch
        start = time.perf_counter()
        # Left padding to the batch's longest prompt only; the KV cache grows with the batch as it generates.
        encoded = self.tokenizer(self.prompts(batch), return_tensors="pt", padding="longest", add_special_tokens=False)
        encoded = {k: v.to(self.device) for k, v in encoded.items()}
        processors = [self._constraint(schema)] if schema is not None else None
        # no_grad, not inference_mode: the model may be one in training (``around``), and a buffer a forward pass
        # creates or updates under inference_mode could not take part in its next backward pass.
        with torch.no_grad():
            output = self.model_obj.generate(
                **encoded,
                max_new_tokens=max_new_tokens,
                do_sample=False,
                use_cache=True,
                eos_token_id=self.stop_ids,
                pad_token_id=self.tokenizer.pad_token_id,
                logits_processor=processors,
                # Greedy decoding: silence the sampling defaults some generation configs carry.
                temperature=None,
                top_p=None,
                top_k=None,
            )
        elapsed = time.perf_counter() - start
        new_tokens = output[:, encoded["input_ids"].shape[1] :].tolist()
        results = []
        for row in new_tokens:
            n = _length_until_stop(row, self.stop_ids)
            text = str(self.tokenizer.decode(row[:n], skip_special_tokens=True))
            results.append(Generation(text.strip(), elapsed, n))
        return results

    def _constraint(self, schema: Mapping[str, Any]) -> Any:
        """A fresh xgrammar logits processor (they keep per-row state, so one per generate call). The schema goes
        in unsorted: the grammar orders an object's keys as the schema lists them, the order trained."""
        import xgrammar

        return xgrammar.contrib.hf.LogitsProcessor(self._compiled(json.dumps(dict(schema), default=dict)))

    def _compiled(self, schema_json: str) -> Any:
        """The schema's grammar compiled against this tokenizer; the compiler (slow: it walks the vocab) and
        each compiled schema are kept for the backend's lifetime."""
        if schema_json in self._grammars:
            return self._grammars[schema_json]
        if self._compiler is None:
            try:
                import xgrammar
            except ImportError:
                raise LingoforgeError(
                    "constrained decoding with the hf backend needs xgrammar: pip install xgrammar"
                ) from None
            info = xgrammar.TokenizerInfo.from_huggingface(
                self.tokenizer, vocab_size=self.model_obj.config.vocab_size, stop_token_ids=self.stop_ids
            )
            self._compiler = xgrammar.GrammarCompiler(info)
        # Separators as in the training answers (prompts.answer_text) and no free whitespace, so the
        # model cannot pad the answer with blanks until max_new_tokens.
        grammar = self._compiler.compile_json_schema(schema_json, any_whitespace=False, separators=(", ", ": "))
        self._grammars[schema_json] = grammar
        return grammar

    def describe(self) -> dict[str, Any]:
        """The backend and model, plus how the weights are held and why (the load mode decides the answers)."""
        load = {"mode": self.load.mode, "dtype": str(self.dtype).removeprefix("torch."), "device": self.device}
        return {**super().describe(), "load": {**load, "reason": self.load.reason}}

    def close(self) -> None:
        """Drop the model; on a GPU also return its memory to the driver, so a model loaded next (eval's base then
        its fine-tune) finds it free."""
        self.__dict__.pop("model_obj", None)
        self._grammars.clear()
        self._compiler = None
        if self._torch.device(self.device).type == "cuda":
            gc.collect()
            self._torch.cuda.empty_cache()


def _load_base(location: str, mode: str, dtype: Any, device: str) -> Any:
    """The base weights on ``device``: unquantized in ``dtype``, or 4-bit NF4 with ``dtype`` compute, quantized as
    training quantizes (``trainer.load_model``), so the 4-bit path answers with the model the adapter was trained
    on. Loaded straight onto the device, not staged through host memory."""
    from transformers import AutoModelForCausalLM, BitsAndBytesConfig

    quiet_library_bars()
    options: dict[str, Any] = {"dtype": dtype, "device_map": {"": device}}
    if mode == QUANTIZED:
        options["quantization_config"] = BitsAndBytesConfig(
            load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True, bnb_4bit_compute_dtype=dtype
        )
    return AutoModelForCausalLM.from_pretrained(location, **options).eval()


def _apply_adapter(model: Any, adapter: Path, mode: str) -> Any:
    """The adapter on ``model``: folded into the weights when they are unquantized (generation then costs what the
    base costs), kept as separate LoRA layers on a 4-bit base."""
    from peft import PeftModel

    adapted = PeftModel.from_pretrained(model, str(adapter))
    return (adapted.merge_and_unload() if mode == MERGED else adapted).eval()


def _length_until_stop(row: list[int], stop_ids: list[int]) -> int:
    """Generated tokens up to and including the first stop token (the rest is padding)."""
    for i, token in enumerate(row):
        if token in stop_ids:
            return i + 1
    return len(row)


def _has_tokenizer(folder: Path) -> bool:
    return (folder / "tokenizer_config.json").is_file()
