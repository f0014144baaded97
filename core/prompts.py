"""The single source of chat messages for training, evaluation, export parity and serving.

Training, HF inference, llama.cpp and Ollama all start from these messages, so the model always sees
the same system prompt, the same user layout and the same answer serialization.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from .task import Example, Task

Message = dict[str, str]


def user_text(instruction: str, text: str) -> str:
    """The user turn: the instruction, a blank line, then the input verbatim."""
    instruction = instruction.strip()
    return f"{instruction}\n\n{text}" if instruction else text


def answer_text(task: Task, output: Mapping[str, Any]) -> str:
    """The assistant turn: the output as one-line JSON, keys in schema order, non-ASCII kept readable."""
    order = list((task.output_schema.get("properties") or {}).keys())
    ordered = {k: output[k] for k in order if k in output}
    ordered.update({k: v for k, v in output.items() if k not in ordered})
    return json.dumps(ordered, ensure_ascii=False)


def prompt_messages(task: Task, text: str, instruction: str | None = None) -> list[Message]:
    """System + user messages for one input (what inference sends)."""
    messages: list[Message] = []
    if task.system_prompt:
        messages.append({"role": "system", "content": task.system_prompt})
    messages.append({"role": "user", "content": user_text(instruction or task.instruction, text)})
    return messages


def example_messages(task: Task, example: Example) -> list[Message]:
    """The full conversation of a training example: prompt messages plus the assistant's JSON."""
    return [*prompt_messages(task, example.input, example.instruction), {"role": "assistant", "content": answer_text(task, example.output)}]


def prompt_completion(task: Task, example: Example) -> dict[str, list[Message]]:
    """trl's conversational prompt-completion record: loss falls on the completion only."""
    messages = example_messages(task, example)
    return {"prompt": messages[:-1], "completion": messages[-1:]}
