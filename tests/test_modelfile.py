"""Modelfile rendering and escaping, and the ChatML Go template against the real HF chat templates."""

from __future__ import annotations

import pytest
from lingoforge.errors import LingoforgeError
from lingoforge.export.modelfile import (
    ServingConfig,
    check_template,
    default_system,
    go_template,
    probe_messages,
    render_chatml,
)
from lingoforge.prompts import check_servable, check_value

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


# --- Serving the training prompt to a bare input (what `ollama run NAME "<ticket>"` sends) ----------------

TICKETS = {
    "de": "Ich möchte mein Geld zurück, die Jacke passt nicht.",
    "ja": "注文した靴が届きません。返金してください。",
    "ar": "تم خصم المبلغ مرتين من بطاقتي، أرجو المساعدة.",
    "en": "  My parcel never arrived.\n",
}


def _served_vs_training(tokenizer, instruction: str) -> None:
    """For each ticket: the served template's render of the bare ticket (and of the full prompt) tokenizes to
    exactly the prompt ids training put before the answer (``train.encode``)."""
    from lingoforge import get_task
    from lingoforge.data.io import Located
    from lingoforge.encode import encode
    from lingoforge.prompts import prompt_messages
    from lingoforge.task import Example

    task = get_task("support_tickets")
    probe = tokenizer.apply_chat_template(probe_messages(), tokenize=False, add_generation_prompt=True)
    system_default = default_system(probe)
    gold = {"category": "refund", "priority": "medium", "language": "en", "suggested_response": "OK"}
    for lang, ticket in TICKETS.items():
        example = Example(instruction, ticket, {**gold, "language": lang}, lang)
        trained = encode(task, [Located(example, lang)], tokenizer, 4096)[0]
        prompt_ids = [t for t, label in zip(trained.input_ids, trained.labels, strict=True) if label == -100]
        full = prompt_messages(task, ticket, instruction)
        bare = [*full[:-1], {"role": "user", "content": ticket}]
        for messages in (bare, full):
            served = render_chatml(messages, system_default, instruction)
            assert tokenizer(served, add_special_tokens=False)["input_ids"] == prompt_ids, (lang, messages)


def test_bare_ticket_is_served_the_training_prompt_qwen2(qwen2_tokenizer) -> None:
    from lingoforge import get_task

    _served_vs_training(qwen2_tokenizer, get_task("support_tickets").instruction)
    _served_vs_training(qwen2_tokenizer, "Classify this support ticket.")  # an own-data instruction


def test_bare_ticket_is_served_the_training_prompt_smollm2(smollm2_dir) -> None:
    from lingoforge import get_task
    from transformers import AutoTokenizer

    _served_vs_training(AutoTokenizer.from_pretrained(str(smollm2_dir)), get_task("support_tickets").instruction)


def test_go_template_wraps_only_bare_user_messages() -> None:
    template = go_template(None, "Classify the `ticket`:\n- category")
    # The instruction travels as Go raw strings (no escapes for the Modelfile to mangle); a backquote is joined in.
    assert '(print `Classify the ` "`" `ticket` "`" `:\n- category`)' in template
    assert '(eq .Role "user")' in template and "(slice .Content 0 33)" in template
    assert go_template(None, "") == go_template(None) == (
        "{{- range .Messages }}<|im_start|>{{ .Role }}\n{{ .Content }}<|im_end|>\n{{ end }}<|im_start|>assistant\n")


def test_served_user_text_never_wraps_twice() -> None:
    from lingoforge.prompts import served_user_text, user_text

    full = user_text("Classify it.", "Mi pedido")
    assert served_user_text("Classify it.", "Mi pedido") == full
    assert served_user_text("Classify it.", full) == full
    assert served_user_text("", "Mi pedido") == "Mi pedido"


def test_num_predict_from_the_longest_training_answer() -> None:
    from lingoforge.export.modelfile import NUM_PREDICT, num_predict_for

    assert num_predict_for(100, 2048) == 166  # 1.5 x 100 + 16
    assert num_predict_for(2000, 2048) == 2048  # never past the context
    assert num_predict_for(None, 2048) == NUM_PREDICT
    assert "PARAMETER num_predict 166" in _config(num_predict=166).modelfile().splitlines()


def test_instruction_a_modelfile_cannot_hold_is_refused() -> None:
    with pytest.raises(LingoforgeError, match="instruction"):
        check_servable("You triage tickets.", 'Answer with """JSON"""')
    with pytest.raises(LingoforgeError, match="system prompt"):
        check_servable('say """hi"""', "Classify.")


def test_characters_the_modelfile_parser_drops_are_refused() -> None:
    with pytest.raises(LingoforgeError, match=r"U\+200C"):
        _config(system="Reply in Persian: می\u200cخواهم")
    with pytest.raises(LingoforgeError, match=r"U\+00A0"):
        check_value("instruction", "Classify:\u00a0the ticket")
    assert check_value("instruction", "Classify:\n\t- the ticket") == "Classify:\n\t- the ticket"


def test_the_training_end_token_must_stop_the_served_model(qwen2_tokenizer) -> None:
    from lingoforge.export.modelfile import check_stop

    vocab = qwen2_tokenizer.get_vocab()
    check_stop("<|im_end|>", vocab)
    check_stop(None, vocab)  # a run trained before the end token was recorded
    with pytest.raises(LingoforgeError, match="not among the Modelfile's stop sequences"):
        check_stop("<|im_end|>", vocab, stop=("<|endoftext|>",))
    with pytest.raises(LingoforgeError, match="not in the exported model's vocabulary"):
        check_stop("<|no-such-token|>", vocab)
