"""The LM head for the loss on CPU: project only the trained positions, in plain torch.

trl's SFTTrainer computes the loss through its fused LM head (``trl.trainer.utils.add_fused_lm_head``), which
never materialises the (tokens x vocab) logits. On CUDA it scores only the positions whose next-token label is
trained; elsewhere it scores *every* position, through a Python loop over vocabulary tiles, to keep tile
shapes fixed for compilers such as Neuron. On a CPU that means the prompt's positions (two thirds of a
support ticket's tokens) go through the head in small, slow pieces for nothing.

``add_compact_lm_head`` re-patches the model's forward so that a ``fused_lm_head=True`` call projects only the
trained positions with one matmul and a log-softmax, and returns trl's ``FusedCausalLMOutput`` fields
(``log_probs``, ``entropy``, ``is_top1``, ``label_mask``, ``loss``) with the same meaning, so trl's loss, its
metrics and its token count are untouched. Logits for the trained positions only fit in memory on a CPU:
a micro-batch of four support tickets trains ~240 positions, 240 x 49,152 floats = 47 MB for SmolLM2.

Used on CPU only (on CUDA trl's head is already compact and saves memory), and only for heads trl would not scale or
soft-cap (Qwen2, Llama and SmolLM2 do neither); other calls go to trl's forward unchanged.
"""

from __future__ import annotations

import types
from typing import Any

# Config fields that make trl's head scale or soft-cap the logits; a model with any of them keeps trl's head.
_SCALING_FIELDS = (
    "final_logit_softcapping",
    "logit_scale",
    "output_multiplier",
    "lm_head_multiplier",
    "logits_scaling",
)


def compact_head_applies(model: Any) -> bool:
    """True for a model whose logits are the plain head projection: the case this module reproduces."""
    config = model.config.get_text_config()
    return not any(getattr(config, field, None) is not None for field in _SCALING_FIELDS) and not getattr(
        config, "output_router_logits", False
    )


def add_compact_lm_head(model: Any) -> None:
    """Replace the ``fused_lm_head=True`` branch of ``model.forward`` (already patched by trl) on ``model``,
    the causal-LM module itself (under PEFT: ``peft_model.get_base_model()``)."""
    import torch
    from trl.trainer.utils import FusedCausalLMOutput

    trl_forward = model.forward

    def forward(
        self: Any,
        *args: Any,
        fused_lm_head: bool = False,
        labels: Any = None,
        shift_labels: Any = None,
        num_items_in_batch: Any = None,
        **kwargs: Any,
    ) -> Any:
        if not fused_lm_head or shift_labels is not None or kwargs.get("output_router_logits"):
            return trl_forward(
                *args,
                fused_lm_head=fused_lm_head,
                labels=labels,
                shift_labels=shift_labels,
                num_items_in_batch=num_items_in_batch,
                **kwargs,
            )
        kwargs["use_cache"] = False
        hidden = self.base_model(*args, **kwargs).last_hidden_state[:, :-1]
        targets = labels[:, 1:].to(hidden.device)
        mask = targets != -100
        head = self.get_output_embeddings()
        log_softmax = head(hidden[mask]).float().log_softmax(-1)
        picked = targets[mask]
        token_log_probs = log_softmax.gather(-1, picked[:, None]).squeeze(-1)
        with torch.no_grad():
            entropy = -(log_softmax.exp() * log_softmax).sum(-1)
            is_top1 = log_softmax.argmax(-1) == picked
        # masked_scatter keeps the result connected to the graph even when no position is trained
        log_probs = token_log_probs.new_zeros(mask.shape).masked_scatter(mask, token_log_probs)
        denominator = mask.sum().clamp(min=1) if num_items_in_batch is None else num_items_in_batch
        return FusedCausalLMOutput(
            loss=-log_probs.sum() / denominator,
            log_probs=log_probs,
            entropy=entropy.new_zeros(mask.shape).masked_scatter(mask, entropy),
            is_top1=torch.zeros_like(mask).masked_scatter(mask, is_top1),
            label_mask=mask,
        )

    model.forward = types.MethodType(forward, model)
