"""Modelfile rendering and escaping, and the ChatML Go template against the real HF chat templates."""

from __future__ import annotations

import pytest
from lingoforge.errors import LingoforgeError
from lingoforge.export.modelfile import (
    ServingConfig,
    check_template,
    check_value,
    default_system,
    go_template,
    probe_messages,
    render_chatml,
)

CONVERSATIONS = [
    [{"role": "system", "content": "You triage tickets."},
     {"role": "user", "content": "Classify:\n\nMi pedido no llegó 📦"}],
    [{"role": "user", "content": "no system message here"}],
    [{"role": "system", "content": "S"}, {"role": "user", "content": "  leading and trailing spaces  \n"}],
]


def _config(**overrides) -> ServingConfig:
    values = {"model_file": "model-q5_k_m.gguf", "template": go_template(None), "system": "You triage tickets.",
              "num_ctx": 1024}
    return ServingConfig(**{**values, **overrides})


def test_modelfile_lines() -> None:
    lines = _config().modelfile().splitlines()
    assert lines[0] == "FROM ./model-q5_k_m.gguf"
    assert lines[1].startswith('TEMPLATE """') and lines[-1] == "PARAMETER num_ctx 1024"
    assert 'SYSTEM """You triage tickets."""' in lines
    assert lines.count('PARAMETER stop "<|im_end|>"') == 1 and 'PARAMETER stop "<|endoftext|>"' in lines
    assert "PARAMETER temperature 0" in lines and "PARAMETER repeat_penalty 1" in lines
    assert "PARAMETER num_predict 640" in lines  # a model that never stops is cut, not left running


def test_api_parameters_match_modelfile() -> None:
    config = _config()
    params = config.parameters()
    assert params == {"stop": ["<|im_end|>", "<|endoftext|>"], "temperature": 0.0, "repeat_penalty": 1.0,
                      "num_predict": 640, "num_ctx": 1024}
    assert ServingConfig.from_dict(config.as_dict()) == config


@pytest.mark.parametrize("bad", ['say """hi"""', 'ends with a quote"'])
def test_values_a_modelfile_cannot_hold_are_rejected(bad: str) -> None:
    with pytest.raises(LingoforgeError, match="system prompt"):
        _config(system=bad)
    with pytest.raises(LingoforgeError):
        check_value("TEMPLATE", bad)


def test_model_file_must_be_a_plain_name() -> None:
    with pytest.raises(LingoforgeError, match="plain file name"):
        _config(model_file="../x.gguf")


def _hf_renders(tokenizer):
    return [(m, tokenizer.apply_chat_template(m, tokenize=False, add_generation_prompt=True)) for m in CONVERSATIONS]


def test_chatml_matches_qwen2_template(qwen2_tokenizer) -> None:
    probe = qwen2_tokenizer.apply_chat_template(probe_messages(), tokenize=False, add_generation_prompt=True)
    system_default = default_system(probe)
    assert system_default == "You are a helpful assistant"
    check_template(_hf_renders(qwen2_tokenizer), system_default)
    template = go_template(system_default)
    assert "{{- range .Messages }}" in template and system_default in template


def test_chatml_matches_smollm2_template(smollm2_dir) -> None:
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(smollm2_dir))
    probe = tokenizer.apply_chat_template(probe_messages(), tokenize=False, add_generation_prompt=True)
    system_default = default_system(probe)
    assert system_default and "SmolLM" in system_default
    check_template(_hf_renders(tokenizer), system_default)


def test_non_chatml_template_is_refused() -> None:
    llama3_like = [(CONVERSATIONS[0], "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\nYou triage")]
    with pytest.raises(LingoforgeError, match="not ChatML"):
        check_template(llama3_like, None)


def test_render_chatml_without_default_system() -> None:
    assert render_chatml(CONVERSATIONS[1], None) == (
        "<|im_start|>user\nno system message here<|im_end|>\n<|im_start|>assistant\n")
