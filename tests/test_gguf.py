"""The HF → GGUF converter writes the metadata llama.cpp and Ollama rely on (no llama.cpp needed here)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from lingoforge.errors import LingoforgeError
from lingoforge.export.gguf import QWEN2_REGEX, convert, pre_tokenizer_name


@pytest.fixture(scope="module")
def tiny_gguf(tiny_qwen2_dir: Path, tmp_path_factory: pytest.TempPathFactory):
    from gguf import GGUFReader

    path = convert(tiny_qwen2_dir, tmp_path_factory.mktemp("gguf") / "tiny.gguf", progress=False).path
    return GGUFReader(str(path))


def _field(reader, key):
    return reader.fields[key].contents()


def test_qwen2_hyperparameters(tiny_gguf) -> None:
    assert _field(tiny_gguf, "general.architecture") == "qwen2"
    assert _field(tiny_gguf, "general.file_type") == 1  # MOSTLY_F16; 0 would make Ollama treat it as unknown
    assert _field(tiny_gguf, "qwen2.rope.freq_base") == pytest.approx(1_000_000.0)
    assert _field(tiny_gguf, "qwen2.attention.layer_norm_rms_epsilon") == pytest.approx(1e-6)
    assert _field(tiny_gguf, "qwen2.block_count") == 2
    assert _field(tiny_gguf, "qwen2.attention.head_count_kv") == 2
    assert _field(tiny_gguf, "qwen2.context_length") == 4096


def test_qwen2_tokenizer_metadata(tiny_gguf, qwen2_tokenizer) -> None:
    tokens = tiny_gguf.fields["tokenizer.ggml.tokens"]
    assert len(tokens.data) == 151936  # one token per embedding row
    assert _field(tiny_gguf, "tokenizer.ggml.model") == "gpt2"
    assert _field(tiny_gguf, "tokenizer.ggml.pre") == "qwen2"
    assert _field(tiny_gguf, "tokenizer.ggml.eos_token_id") == qwen2_tokenizer.convert_tokens_to_ids("<|im_end|>")
    pad = qwen2_tokenizer.convert_tokens_to_ids("<|endoftext|>")
    assert _field(tiny_gguf, "tokenizer.ggml.padding_token_id") == pad
    assert _field(tiny_gguf, "tokenizer.ggml.add_bos_token") is False
    assert len(tiny_gguf.fields["tokenizer.ggml.merges"].data) > 150_000
    assert _field(tiny_gguf, "tokenizer.chat_template") == qwen2_tokenizer.chat_template
    types = _field(tiny_gguf, "tokenizer.ggml.token_type")
    assert types[qwen2_tokenizer.convert_tokens_to_ids("<|im_end|>")] == 3  # CONTROL
    assert types[0] == 1  # NORMAL


def test_qwen2_tensors(tiny_gguf) -> None:
    types = {t.name: t.tensor_type.name for t in tiny_gguf.tensors}
    assert "output.weight" not in types  # tied embeddings: llama.cpp reuses token_embd
    assert {"blk.0.attn_q.bias", "blk.0.attn_k.bias", "blk.0.attn_v.bias"} <= set(types)
    assert types["blk.0.attn_q.weight"] == "F16"
    assert types["blk.0.attn_norm.weight"] == "F32" and types["blk.0.attn_q.bias"] == "F32"
    assert len(types) == 1 + 1 + 2 * 12  # token_embd, output_norm, 12 tensors per layer


def test_pre_tokenizer_detection() -> None:
    qwen = {"pre_tokenizer": {"type": "Sequence", "pretokenizers": [
        {"type": "Split", "pattern": {"Regex": QWEN2_REGEX}},
        {"type": "ByteLevel", "use_regex": False}]}}
    assert pre_tokenizer_name(qwen, "qwen2") == "qwen2"
    smollm = {"pre_tokenizer": {"type": "Sequence", "pretokenizers": [
        {"type": "Digits", "individual_digits": True}, {"type": "ByteLevel", "use_regex": True}]}}
    assert pre_tokenizer_name(smollm, "llama") == "smollm"
    assert pre_tokenizer_name({"pre_tokenizer": {"type": "ByteLevel", "use_regex": True}}, "llama") == "gpt-2"
    with pytest.raises(LingoforgeError, match="unsupported tokenizer pre-tokenizer"):
        pre_tokenizer_name({"pre_tokenizer": {"type": "Metaspace"}}, "llama")


def test_unsupported_architecture_is_named(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "gemma3"}))
    with pytest.raises(LingoforgeError, match="gemma3"):
        convert(tmp_path, tmp_path / "x.gguf")
    assert not (tmp_path / "x.gguf").exists()


@pytest.mark.slow
def test_smollm2_llama_metadata(smollm2_dir: Path, tmp_path: Path) -> None:
    from gguf import GGUFReader

    result = convert(smollm2_dir, tmp_path / "smol.gguf", progress=False)
    reader = GGUFReader(str(result.path))
    assert _field(reader, "general.architecture") == "llama"
    assert _field(reader, "llama.rope.freq_base") == pytest.approx(100000.0)
    assert _field(reader, "llama.rope.dimension_count") == 64
    assert len(reader.fields["tokenizer.ggml.tokens"].data) == 49152
    # The cached SmolLM2 tokenizer (rebuilt by transformers from the GGUF) uses the plain GPT-2 split;
    # the GGUF must tokenize like the tokenizer the model is trained with, so it says gpt-2.
    assert result.pre_tokenizer == pre_tokenizer_name(json.loads((smollm2_dir / "tokenizer.json").read_text()), "llama")
    assert "output.weight" not in {t.name for t in reader.tensors}
