"""The single source of chat messages for training, evaluation, export parity and serving.

Training, HF inference, llama.cpp and Ollama all start from these messages, so the model always sees
the same system prompt, the same user layout and the same answer serialization. The prompts must also fit in an
Ollama Modelfile (``check_servable``), which is checked when a task is registered, before training and before export.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Any

from .errors import LingoforgeError
from .task import Example, Task

Message = dict[str, str]


def instruction_prefix(instruction: str) -> str:
    """What precedes every input in the user turn: the instruction and a blank line (nothing without one)."""
    instruction = instruction.strip()
    return f"{instruction}\n\n" if instruction else ""


def user_text(instruction: str, text: str) -> str:
    """The user turn: the instruction, a blank line, then the input verbatim."""
    return instruction_prefix(instruction) + text


def served_user_text(instruction: str, content: str) -> str:
    """The user turn a deployed model gets for a message a user typed: a bare input is wrapped exactly as in
    training; a message that already starts with the instruction (an application sending the full prompt)
    is passed unchanged, so it is never wrapped twice. The Ollama ``TEMPLATE`` implements this rule
    (``export.modelfile.go_template``) and is checked against it."""
    instruction = instruction.strip()
    if instruction and content.startswith(instruction):
        return content
    return user_text(instruction, content)


def served_instruction(task: Task, examples: Sequence[Example]) -> str:
    """The instruction the deployed model wraps bare inputs with: the one the training examples used (the
    most common when they differ; the task's when there are none). Recorded at training time in run.json."""
    counts = Counter((example.instruction or task.instruction).strip() for example in examples)
    return counts.most_common(1)[0][0] if counts else task.instruction.strip()


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


def example_prompt(task: Task, example: Example) -> list[Message]:
    """The prompt messages of an example, with its own instruction (else the task's): what evaluation sends, and what
    training trains the answer after."""
    return prompt_messages(task, example.input, example.instruction or None)


def example_messages(task: Task, example: Example) -> list[Message]:
    """The full conversation of a training example: prompt messages plus the assistant's JSON."""
    answer = {"role": "assistant", "content": answer_text(task, example.output)}
    return [*example_prompt(task, example), answer]


def prompt_completion(task: Task, example: Example) -> dict[str, list[Message]]:
    """trl's conversational prompt-completion record: loss falls on the completion only."""
    messages = example_messages(task, example)
    return {"prompt": messages[:-1], "completion": messages[-1:]}


# -- what an Ollama Modelfile can hold --------------------------------------------------------------------------


def check_value(name: str, value: str) -> str:
    """A Modelfile value goes between triple quotes: it cannot contain ``\"\"\"`` nor end with a quote, and
    Ollama's Modelfile parser drops characters that are not printable (zero-width joiners, no-break spaces)."""
    dropped = next((c for c in value if c not in "\n\t" and not c.isprintable()), None)
    if dropped is not None:
        raise LingoforgeError(f"the {name} contains U+{ord(dropped):04X}, which Ollama's Modelfile parser drops; "
                              "replace it (a plain space for a no-break space)")
    if '"""' in value:
        raise LingoforgeError(f'the {name} contains """ which a Modelfile cannot hold; remove the triple quote from it')
    if value.endswith('"'):
        raise LingoforgeError(f'the {name} ends with a double quote, which would merge with the closing """; '
                              "end it with another character")
    return value


def check_servable(system_prompt: str, instruction: str) -> None:
    """Refuse prompts a Modelfile cannot carry, before any work (training or a long export) is spent on them."""
    check_value("system prompt", system_prompt)
    check_value("instruction", instruction + ".")  # inside the TEMPLATE it may end with a quote
