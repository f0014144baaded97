"""The CPU compact LM head must give trl's fused-head outputs: same loss, per-token fields and gradients."""

from __future__ import annotations


def _lora_model():  # noqa: ANN202
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, Qwen2Config
    from trl.trainer.utils import add_fused_lm_head

    torch.manual_seed(0)
    config = Qwen2Config(vocab_size=96, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, tie_word_embeddings=True)
    model = AutoModelForCausalLM.from_config(config, attn_implementation="sdpa")
    add_fused_lm_head(model, outputs=("log_probs", "entropy", "is_top1"))
    peft_model = get_peft_model(model, LoraConfig(r=4, lora_alpha=8, target_modules="all-linear"))
    for name, param in peft_model.named_parameters():
        if "lora_B" in name:  # non-zero B, so LoRA gradients flow through the whole network
            torch.nn.init.normal_(param, std=0.02)
    return peft_model


def _run(model, inputs):  # noqa: ANN001, ANN202
    out = model(**inputs, fused_lm_head=True)
    out.loss.backward()
    grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    model.zero_grad()
    return out, grads


def test_same_outputs_and_gradients_as_trls_fused_head() -> None:
    import torch
    from lingoforge.compact_head import add_compact_lm_head, compact_head_applies

    model = _lora_model()
    ids = torch.randint(0, 96, (2, 12), generator=torch.Generator().manual_seed(1))
    labels = ids.clone()
    labels[0, :7] = -100  # prompt positions, untrained
    labels[1, :4] = -100
    labels[1, 10:] = -100
    inputs = {"input_ids": ids, "labels": labels}

    reference, reference_grads = _run(model, inputs)
    assert compact_head_applies(model.get_base_model())
    add_compact_lm_head(model.get_base_model())
    assert model.get_base_model().forward.__qualname__ == "add_compact_lm_head.<locals>.forward"
    compact, compact_grads = _run(model, inputs)

    torch.testing.assert_close(compact.loss, reference.loss, rtol=1e-5, atol=1e-6)
    for field in ("log_probs", "entropy"):
        torch.testing.assert_close(getattr(compact, field), getattr(reference, field), rtol=1e-5, atol=1e-5)
    assert torch.equal(compact.label_mask, reference.label_mask)
    assert torch.equal(compact.is_top1, reference.is_top1)
    assert compact_grads.keys() == reference_grads.keys() and any("lora_A" in n for n in compact_grads)
    for name, grad in compact_grads.items():
        torch.testing.assert_close(grad, reference_grads[name], rtol=1e-4, atol=1e-6, msg=name)

    # num_items_in_batch divides the summed loss, as in trl (gradient accumulation across micro-batches)
    scaled = model(**inputs, fused_lm_head=True, num_items_in_batch=100).loss
    torch.testing.assert_close(scaled, -compact.log_probs.sum() / 100)
    # Without fused_lm_head the model is the original one: logits for generation
    assert model(input_ids=ids).logits.shape == (2, 12, 96)


def test_scaled_heads_keep_trls_head() -> None:
    from lingoforge.compact_head import compact_head_applies
    from transformers import AutoModelForCausalLM, Qwen2Config

    config = Qwen2Config(vocab_size=96, hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                         num_attention_heads=4, num_key_value_heads=2)
    config.final_logit_softcapping = 30.0
    assert not compact_head_applies(AutoModelForCausalLM.from_config(config))
