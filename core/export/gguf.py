"""Hugging Face folder → GGUF file, for the ``qwen2`` and ``llama`` architectures.

The PyPI ``gguf`` package writes the container but has no HF converter, so this module is the converter:
hyper-parameters, the tokenizer exactly as the model was trained with it, the chat template and the
tensors renamed with ``gguf``'s tensor-name map. Tensors are streamed from safetensors one at a time
(``safe_open``) into the writer, so a 7B model never sits in memory twice.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import LingoforgeError
from ..progress import track

ARCHITECTURES = {"qwen2": "QWEN2", "llama": "LLAMA"}

# Pre-tokenizer regexes of the HF tokenizers we support → llama.cpp's `tokenizer.ggml.pre` name.
# The GGUF must split text exactly like the tokenizer the model was trained with, so we read the
# tokenizer.json pre-tokenizer instead of assuming the upstream model's choice.
QWEN2_REGEX = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*"
                r"|\s*[\r\n]+|\s+(?!\S)|\s+")
_LLAMA3_REGEX = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*"
                 r"|\s*[\r\n]+|\s+(?!\S)|\s+")
_SPECIAL_LOOKING = re.compile(r"^(<\|.*\|>|<｜.*｜>|<[a-z_]+>|</[a-z_]+>|\[PAD\d+\])$")


@dataclass(frozen=True)
class GGUFResult:
    """What was written: the file, its architecture, tensor count, vocabulary size and pre-tokenizer."""

    path: Path
    architecture: str
    tensors: int
    vocab_size: int
    pre_tokenizer: str


def _rope_theta(config: dict[str, Any]) -> float:
    """rope base from config (transformers 5 keeps it in ``rope_parameters``); 10000 only when truly absent."""
    params = config.get("rope_parameters") or {}
    rope_type = params.get("rope_type", "default") if isinstance(params, dict) else "default"
    scaling = config.get("rope_scaling") or {}
    if rope_type != "default" or (scaling and scaling.get("rope_type", scaling.get("type")) not in (None, "default")):
        raise LingoforgeError(f"rope scaling {rope_type or scaling} is not supported by the GGUF export; "
                              "export a model without rope_scaling in config.json")
    theta = params.get("rope_theta") if isinstance(params, dict) else None
    return float(theta if theta is not None else config.get("rope_theta", 10000.0))


def pre_tokenizer_name(tokenizer_json: dict[str, Any], model_type: str) -> str:
    """llama.cpp's pre-tokenizer name for an HF fast tokenizer, or an error naming what we saw."""
    pre = tokenizer_json.get("pre_tokenizer") or {}
    parts = pre.get("pretokenizers", [pre]) if pre.get("type") == "Sequence" else [pre]
    kinds = [p.get("type") for p in parts]
    if kinds == ["ByteLevel"] and parts[0].get("use_regex", True):
        return "gpt-2"
    if kinds == ["Digits", "ByteLevel"] and parts[0].get("individual_digits") and parts[1].get("use_regex", True):
        return "smollm"
    if kinds == ["Split", "ByteLevel"]:
        regex = (parts[0].get("pattern") or {}).get("Regex")
        if regex == QWEN2_REGEX:
            return "qwen2"
        if regex == _LLAMA3_REGEX:
            return "llama-bpe"
    raise LingoforgeError(
        f"unsupported tokenizer pre-tokenizer {json.dumps(pre)[:300]} for a {model_type} model; the GGUF export knows "
        "the Qwen2, Llama 3, GPT-2 and SmolLM pre-tokenizers"
    )


def _vocab(tokenizer_json: dict[str, Any], n_rows: int) -> tuple[list[str], list[int]]:
    """Token strings and types, exactly ``n_rows`` long: ids without a token become unused ``[PAD{i}]``.

    Ollama and llama.cpp require one token per embedding row (Qwen2.5 pads its matrix to 151,936).
    """
    from gguf import TokenType

    by_id: dict[int, str] = {i: t for t, i in tokenizer_json["model"]["vocab"].items()}
    added = {a["id"]: a for a in tokenizer_json.get("added_tokens", [])}
    for i, a in added.items():
        by_id[i] = a["content"]
    if max(by_id) >= n_rows:
        raise LingoforgeError(f"the tokenizer has token id {max(by_id)} but the embedding matrix has only "
                              f"{n_rows} rows; "
                              "resize the model's embeddings before export")
    tokens: list[str] = []
    types: list[int] = []
    for i in range(n_rows):
        if i not in by_id:
            tokens.append(f"[PAD{i}]")
            types.append(TokenType.UNUSED)
            continue
        token = by_id[i]
        tokens.append(token)
        if i not in added:
            types.append(TokenType.NORMAL)
        elif added[i].get("special") or _SPECIAL_LOOKING.match(token):
            types.append(TokenType.CONTROL)
        else:
            types.append(TokenType.USER_DEFINED)
    return tokens, types


def _merges(tokenizer_json: dict[str, Any]) -> list[str]:
    """BPE merges as ``"a b"`` strings (tokenizers ≥0.20 stores them as pairs)."""
    return [m if isinstance(m, str) else " ".join(m) for m in tokenizer_json["model"].get("merges", [])]


def _tokenizer_config(folder: Path) -> dict[str, Any]:
    path = folder / "tokenizer_config.json"
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}


def _chat_template(folder: Path, tok_config: dict[str, Any]) -> str | None:
    jinja = folder / "chat_template.jinja"
    if jinja.is_file():
        return jinja.read_text(encoding="utf-8")
    template = tok_config.get("chat_template")
    return template if isinstance(template, str) else None


def _token_id(tokenizer_json: dict[str, Any], token: Any) -> int | None:
    """Id of a token given as a string or as an AddedToken dict (tokenizer_config.json allows both)."""
    if isinstance(token, dict):
        token = token.get("content")
    if not token:
        return None
    for a in tokenizer_json.get("added_tokens", []):
        if a["content"] == token:
            return int(a["id"])
    vocab_id = tokenizer_json["model"]["vocab"].get(token)
    return int(vocab_id) if vocab_id is not None else None


def _safetensor_files(folder: Path) -> list[Path]:
    index = folder / "model.safetensors.index.json"
    if index.is_file():
        names = sorted(set(json.loads(index.read_text())["weight_map"].values()))
        return [folder / n for n in names]
    single = folder / "model.safetensors"
    if single.is_file():
        return [single]
    raise LingoforgeError(f"{folder} has no model.safetensors (or index); save the model with save_pretrained first")


def permute_rope(weights: np.ndarray, n_head: int) -> np.ndarray:
    """HF llama q/k rows use the 'rotate half' rope layout; llama.cpp's llama arch wants interleaved pairs."""
    return (weights.reshape(n_head, 2, weights.shape[0] // n_head // 2, *weights.shape[1:])
            .swapaxes(1, 2).reshape(weights.shape))


@dataclass(frozen=True)
class _Plan:
    """One tensor to write: HF name (where to read), GGUF name, shape and output dtype."""

    hf_name: str
    file: Path
    gguf_name: str
    shape: tuple[int, ...]
    dtype: type


class _TensorPlanner:
    """Maps HF tensor names to GGUF names and decides each tensor's dtype and layout fix-ups."""

    def __init__(self, config: dict[str, Any], arch: Any, f16: bool) -> None:
        import gguf

        self.config = config
        self.arch_name = config["model_type"]
        self.name_map = gguf.get_tensor_name_map(arch, int(config["num_hidden_layers"]))
        self.f16 = f16
        self.tied = bool(config.get("tie_word_embeddings", False))

    def gguf_name(self, hf_name: str) -> str | None:
        """GGUF name, or None for tensors llama.cpp does not load (rotary caches, a tied lm_head)."""
        if hf_name.endswith("rotary_emb.inv_freq"):
            return None
        if hf_name == "lm_head.weight" and self.tied:
            return None
        name = self.name_map.get_name(hf_name, try_suffixes=(".weight", ".bias"))
        if name is None:
            raise LingoforgeError(f"tensor {hf_name!r} has no GGUF name for {self.arch_name}; "
                                  "the export supports plain qwen2 and llama decoder models")
        return name

    def out_dtype(self, shape: tuple[int, ...]) -> type:
        """F16 for matrices in an F16 file; norms and biases always F32 (what llama.cpp expects)."""
        return np.float16 if self.f16 and len(shape) == 2 else np.float32

    def transform(self, hf_name: str, array: np.ndarray) -> np.ndarray:
        if self.arch_name == "llama":
            if hf_name.endswith("q_proj.weight"):
                return permute_rope(array, int(self.config["num_attention_heads"]))
            if hf_name.endswith("k_proj.weight"):
                kv_heads = self.config.get("num_key_value_heads") or self.config["num_attention_heads"]
                return permute_rope(array, int(kv_heads))
        return array


def _plan(folder: Path, planner: _TensorPlanner) -> list[_Plan]:
    from safetensors import safe_open

    plans: list[_Plan] = []
    for file in _safetensor_files(folder):
        with safe_open(str(file), framework="pt") as st:
            for name in st.keys():
                gguf_name = planner.gguf_name(name)
                if gguf_name is None:
                    continue
                shape = tuple(st.get_slice(name).get_shape())
                plans.append(_Plan(name, file, gguf_name, shape, planner.out_dtype(shape)))
    return plans


def _stream(plans: list[_Plan], planner: _TensorPlanner) -> Iterator[np.ndarray]:
    """Yield each tensor converted, one at a time, reading only that tensor from disk."""
    import torch
    from safetensors import safe_open

    handles: dict[Path, Any] = {}
    try:
        for plan in plans:
            if plan.file not in handles:
                handles[plan.file] = safe_open(str(plan.file), framework="pt").__enter__()
            tensor = handles[plan.file].get_tensor(plan.hf_name).to(torch.float32).numpy()
            yield planner.transform(plan.hf_name, tensor).astype(plan.dtype, copy=False)
    finally:
        for handle in handles.values():
            handle.__exit__(None, None, None)


def write_metadata(writer: Any, config: dict[str, Any], file_type: int) -> None:
    """Architecture hyper-parameters llama.cpp and Ollama read (all from config.json, no defaults guessed)."""
    hidden = int(config["hidden_size"])
    heads = int(config["num_attention_heads"])
    head_dim = int(config.get("head_dim") or hidden // heads)
    writer.add_name(str(config.get("_name_or_path") or config["model_type"]).split("/")[-1] or config["model_type"])
    writer.add_context_length(int(config["max_position_embeddings"]))
    writer.add_embedding_length(hidden)
    writer.add_block_count(int(config["num_hidden_layers"]))
    writer.add_feed_forward_length(int(config["intermediate_size"]))
    writer.add_head_count(heads)
    writer.add_head_count_kv(int(config.get("num_key_value_heads") or heads))
    writer.add_rope_freq_base(_rope_theta(config))
    writer.add_layer_norm_rms_eps(float(config["rms_norm_eps"]))
    if head_dim != hidden // heads:
        writer.add_key_length(head_dim)
        writer.add_value_length(head_dim)
    if config["model_type"] == "llama":
        writer.add_rope_dimension_count(head_dim)
        writer.add_vocab_size(int(config["vocab_size"]))
    writer.add_file_type(file_type)
    writer.add_quantization_version(2)


def write_tokenizer(writer: Any, folder: Path, model_type: str, n_rows: int) -> str:
    """Vocabulary, merges, special ids and chat template from the HF tokenizer files in ``folder``.

    Returns the pre-tokenizer name. eos is the tokenizer's eos (``<|im_end|>`` for instruct models, what
    generation must stop on); ``add_bos_token`` follows tokenizer_config (false for Qwen and SmolLM2).
    """
    tok_path = folder / "tokenizer.json"
    if not tok_path.is_file():
        raise LingoforgeError(f"{folder} has no tokenizer.json; the GGUF export needs a fast (tokenizers) tokenizer")
    tokenizer_json = json.loads(tok_path.read_text(encoding="utf-8"))
    if (tokenizer_json.get("model") or {}).get("type") != "BPE":
        raise LingoforgeError(f"{tok_path}: only byte-level BPE tokenizers are supported")
    tok_config = _tokenizer_config(folder)
    pre = pre_tokenizer_name(tokenizer_json, model_type)
    tokens, types = _vocab(tokenizer_json, n_rows)
    writer.add_tokenizer_model("gpt2")
    writer.add_tokenizer_pre(pre)
    writer.add_token_list(tokens)
    writer.add_token_types(types)
    writer.add_token_merges(_merges(tokenizer_json))
    for key, adder in (("bos_token", writer.add_bos_token_id), ("eos_token", writer.add_eos_token_id),
                       ("pad_token", writer.add_pad_token_id), ("unk_token", writer.add_unk_token_id)):
        token_id = _token_id(tokenizer_json, tok_config.get(key))
        if token_id is not None:
            adder(token_id)
    writer.add_add_bos_token(bool(tok_config.get("add_bos_token", False)))
    writer.add_add_eos_token(False)
    template = _chat_template(folder, tok_config)
    if template:
        writer.add_chat_template(template)
    return pre


def convert(model_dir: str | Path, out_path: str | Path, outtype: str = "f16", progress: bool = True) -> GGUFResult:
    """Write ``model_dir`` (safetensors + config + tokenizer) as a GGUF file at ``out_path``, atomically.

    ``outtype`` is ``f16`` (matrices F16, norms and biases F32) or ``f32``.
    """
    import gguf

    folder = Path(model_dir)
    config = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    model_type = config.get("model_type")
    if model_type not in ARCHITECTURES:
        raise LingoforgeError(f"{folder}: model_type {model_type!r} is not supported by the GGUF export (qwen2, llama)")
    if outtype not in ("f16", "f32"):
        raise LingoforgeError(f"outtype {outtype!r}: the converter writes f16 or f32; quantize afterwards")
    arch = getattr(gguf.MODEL_ARCH, ARCHITECTURES[model_type])
    planner = _TensorPlanner(config, arch, f16=outtype == "f16")
    plans = _plan(folder, planner)
    embed = next((p for p in plans if p.gguf_name == "token_embd.weight"), None)
    if embed is None:
        raise LingoforgeError(f"{folder}: no embedding tensor (model.embed_tokens.weight) found")
    if model_type == "qwen2" and not any(p.gguf_name.endswith("attn_q.bias") for p in plans):
        raise LingoforgeError(f"{folder}: a qwen2 model must have q/k/v biases; the checkpoint has none")
    if not planner.tied and not any(p.gguf_name == "output.weight" for p in plans):
        raise LingoforgeError(f"{folder}: config says embeddings are not tied but lm_head.weight is missing")

    out = Path(out_path)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp")
    file_type = gguf.LlamaFileType.MOSTLY_F16 if outtype == "f16" else gguf.LlamaFileType.ALL_F32
    writer = gguf.GGUFWriter(str(tmp), gguf.MODEL_ARCH_NAMES[arch])
    try:
        write_metadata(writer, config, int(file_type))
        pre = write_tokenizer(writer, folder, model_type, n_rows=embed.shape[0])
        for p in plans:
            nbytes = int(np.prod(p.shape)) * np.dtype(p.dtype).itemsize
            writer.add_tensor_info(p.gguf_name, p.shape, np.dtype(p.dtype), nbytes)
        writer.write_header_to_file()
        writer.write_kv_data_to_file()
        writer.write_ti_data_to_file()
        for array in track(_stream(plans, planner), "GGUF tensors", total=len(plans), enabled=progress):
            writer.write_tensor_data(array)
        writer.close()
        tmp.replace(out)
    except BaseException:
        writer.close()
        tmp.unlink(missing_ok=True)
        raise
    return GGUFResult(out, model_type, len(plans), embed.shape[0], pre)
