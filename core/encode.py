"""Tokenization with the answer-only loss mask, and the proof that every example trains on its answer and stops."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .errors import DataError, LingoforgeError, listed
from .prompts import example_messages
from .task import Task

if TYPE_CHECKING:
    from .data.io import Located


@dataclass(frozen=True)
class Encoded:
    """One tokenized training sequence: the prompt (label -100) then the answer and its end token (trained)."""

    input_ids: list[int]
    labels: list[int]
    language: str
    where: str

    @property
    def trainable(self) -> int:
        return sum(1 for t in self.labels if t != -100)


def end_token(tokenizer: Any) -> str:
    """The token that closes an assistant turn: ``<|im_end|>`` for ChatML models, else the tokenizer's eos."""
    vocab = tokenizer.get_vocab()
    if "<|im_end|>" in vocab and "<|im_end|>" in (tokenizer.chat_template or ""):
        return "<|im_end|>"
    if tokenizer.eos_token is None:
        raise LingoforgeError(
            "the tokenizer has neither <|im_end|> nor an eos token; the model could not learn to stop"
        )
    return str(tokenizer.eos_token)


def encode(task: Task, items: Sequence[Located], tokenizer: Any, max_len: int) -> list[Encoded]:
    """Tokenize with the base model's chat template; only the answer JSON and its end token get labels.

    The prompt is tokenized exactly as inference will send it (``add_generation_prompt=True``) and the answer
    apart, so training never sees a prompt/answer boundary merged into one token. Any example whose prompt or
    full sequence exceeds ``max_len`` is an error naming the line and lengths: truncating an answer silently
    would teach the model to stop mid-JSON.
    """
    if not getattr(tokenizer, "chat_template", None):
        raise LingoforgeError(
            "the base model's tokenizer has no chat template; use an instruct/chat model or a folder with "
            "chat_template.jinja"
        )
    stop = end_token(tokenizer)
    stop_id = tokenizer.convert_tokens_to_ids(stop)
    encoded: list[Encoded] = []
    too_long: list[str] = []
    for item in items:
        messages = example_messages(task, item.example)
        prompt_text = tokenizer.apply_chat_template(messages[:-1], tokenize=False, add_generation_prompt=True)
        full_text = tokenizer.apply_chat_template(messages, tokenize=False)
        if not full_text.startswith(prompt_text):
            raise LingoforgeError(
                "the chat template renders the prompt differently once the answer is added; "
                "training and inference prompts would differ. Use a template without that behaviour."
            )
        prompt_ids = tokenizer(prompt_text, add_special_tokens=False)["input_ids"]
        answer_ids = tokenizer(full_text[len(prompt_text) :], add_special_tokens=False)["input_ids"]
        if stop_id not in answer_ids:
            raise LingoforgeError(
                f"{item.where}: the chat template does not close the answer with {stop}; "
                "the model would never learn to stop"
            )
        answer_ids = answer_ids[: answer_ids.index(stop_id) + 1]  # the template's trailing newline is not trained
        total = len(prompt_ids) + len(answer_ids)
        where = f"{item.where} ({item.example.language})"
        if len(prompt_ids) >= max_len:
            too_long.append(f"{where}: prompt alone is {len(prompt_ids)} tokens >= max length {max_len}")
        elif total > max_len:
            too_long.append(
                f"{where}: prompt {len(prompt_ids)} + answer {len(answer_ids)} = {total} tokens > max length {max_len}"
            )
        encoded.append(
            Encoded(prompt_ids + answer_ids, [-100] * len(prompt_ids) + answer_ids, item.example.language, item.where)
        )
    if too_long:
        longest = max(len(e.input_ids) for e in encoded)
        raise DataError(
            listed(
                f"{len(too_long)} example(s) do not fit max length {max_len} (longest sequence: {longest} tokens); "
                f"raise --max-len to at least {longest}, or shorten those inputs — answers are never truncated",
                too_long,
            )
        )
    return encoded


def check_masks(encoded: Sequence[Encoded], end_token_id: int) -> dict[str, dict[str, int]]:
    """Verify every example trains on its answer and end token; return per-language token counts.

    This guards the classic silent failure (pitfall 4): a mask that hides every label still yields a
    loss curve, and a pad token equal to the end token can hide ``<|im_end|>`` so the model never stops.
    """
    problems = []
    report: dict[str, dict[str, int]] = {}
    for enc in encoded:
        if enc.trainable == 0:
            problems.append(f"{enc.where}: no trainable tokens")
        elif end_token_id not in [t for t in enc.labels if t != -100]:
            problems.append(f"{enc.where}: the end token is not among the trained labels")
        row = report.setdefault(enc.language, {"examples": 0, "tokens": 0, "trainable_tokens": 0})
        row["examples"] += 1
        row["tokens"] += len(enc.input_ids)
        row["trainable_tokens"] += enc.trainable
    if problems:
        raise LingoforgeError(listed("the loss mask is broken", problems))
    return dict(sorted(report.items()))
