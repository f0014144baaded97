"""Shared-prefix packing must give each example exactly the logits, loss and gradients it gets alone."""

from __future__ import annotations

import pytest
from lingoforge.shared_prefix import IGNORE, pack, shared_prefix_length

ROWS = [  # a shared prompt start (1..5), own prompt tokens, then trained answer tokens
    ([1, 2, 3, 4, 5, 20, 21, 30, 31, 32], [IGNORE] * 7 + [30, 31, 32]),
    ([1, 2, 3, 4, 5, 22, 33, 34], [IGNORE] * 6 + [33, 34]),
    ([1, 2, 3, 4, 6, 23, 24, 25, 35], [IGNORE] * 8 + [35]),
]


def test_prefix_is_the_common_start_and_stops_before_any_trained_label() -> None:
    assert shared_prefix_length(ROWS) == 4  # rows differ at index 4
    assert shared_prefix_length(ROWS[:2]) == 5
    # identical prompts: the prefix stops one token before the earliest trained label
    same = [([1, 2, 3, 9, 9], [IGNORE] * 3 + [9, 9]), ([1, 2, 3, 8], [IGNORE] * 3 + [8])]
    assert shared_prefix_length(same) == 2
    assert shared_prefix_length([([1, 2], [1, 2])]) == 0  # everything trained: nothing to share


def test_pack_layout() -> None:
    batch = pack(ROWS)
    assert batch["input_ids"][0].tolist() == [1, 2, 3, 4, 5, 20, 21, 30, 31, 32, 5, 22, 33, 34, 6, 23, 24, 25, 35]
    assert batch["position_ids"][0].tolist() == [0, 1, 2, 3, *range(4, 10), *range(4, 8), *range(4, 9)]
    assert batch["labels"][0].tolist().count(IGNORE) == 19 - 6
    assert int(batch["example_tokens"]) == 10 + 8 + 9
    mask = batch["attention_mask"][0, 0]
    assert mask[12, :4].all() and not mask[12, 4:10].any() and mask[12, 10:13].all() and not mask[12, 13:].any()


def _tiny_model():  # noqa: ANN202
    import torch
    from transformers import AutoModelForCausalLM, Qwen2Config

    torch.manual_seed(0)
    config = Qwen2Config(vocab_size=64, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2)
    return AutoModelForCausalLM.from_config(config, attn_implementation="sdpa")


def test_logits_loss_and_gradients_equal_each_example_alone() -> None:
    import torch

    model = _tiny_model()
    batch = pack(ROWS)
    out = model(input_ids=batch["input_ids"], position_ids=batch["position_ids"],
                attention_mask=batch["attention_mask"], labels=batch["labels"])
    out.loss.backward()
    packed_grads = {n: p.grad.clone() for n, p in model.named_parameters()}
    model.zero_grad()

    # Reference: each example alone, losses summed over trained tokens and divided by their total count
    # (the token-mean the packed row computes).
    total = sum(sum(y != IGNORE for y in labels) for _, labels in ROWS)
    prefix = shared_prefix_length(ROWS)
    at, loss_sum = prefix, torch.tensor(0.0)
    for ids, labels in ROWS:
        logits = model(input_ids=torch.tensor([ids])).logits[0]
        own = len(ids) - prefix
        torch.testing.assert_close(out.logits[0, at:at + own], logits[prefix:], atol=1e-5, rtol=1e-5)
        at += own
        loss_sum = loss_sum + torch.nn.functional.cross_entropy(
            logits[:-1], torch.tensor(labels[1:]), ignore_index=IGNORE, reduction="sum")
    (loss_sum / total).backward()
    assert out.loss.item() == pytest.approx((loss_sum / total).item(), rel=1e-5)
    for name, param in model.named_parameters():
        torch.testing.assert_close(packed_grads[name], param.grad, atol=1e-5, rtol=1e-4, msg=name)
