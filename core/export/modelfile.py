"""The Ollama side of the chat format: a Go ``TEMPLATE`` that serves the training prompt, and the Modelfile.

Models that "work in Python and break in Ollama" almost always serve a different prompt than they were
trained on (missing TEMPLATE, dropped system prompt, other whitespace, a missing instruction) or miss a
stop token. Training's user turn is "instruction, blank line, input"; a user of ``ollama run NAME`` or of
Ollama's ``/v1`` types the input alone. So the template wraps a bare user message with the training
instruction (``prompts.served_user_text``), and export checks that it renders exactly what the HF
tokenizer's chat template renders for the training prompts, for bare inputs and full prompts alike.
It also refuses values a Modelfile cannot hold (the rule itself, ``prompts.check_value``, is a rule about prompts).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from ..errors import LingoforgeError
from ..prompts import (
    check_value,
    instruction_prefix,
    served_user_text,
)

STOP_TOKENS = ("<|im_end|>", "<|endoftext|>")
# Ollama's default repeat penalty (1.1) changes greedy answers; training and evaluation decode without one.
REPEAT_PENALTY = 1.0
# Longest answer Ollama may write when the run does not record its longest training answer (runs trained
# before it did): room for the built-in schemas' longest, a 400-character free-text field plus the JSON.
# Without a bound, a model that never emits its stop token (one repeating keys) generates until the client
# gives up (Ollama's default is unlimited, shifting the context): "it never stops" becomes "it stops, cut short".
NUM_PREDICT = 640
# Margin over the longest training answer: a test input may need a longer answer than any training one.
ANSWER_MARGIN = 1.5
ANSWER_SLACK = 16


def num_predict_for(longest_answer_tokens: int | None, num_ctx: int) -> int:
    """``num_predict``: the longest training answer (end token included) with margin, within the context."""
    if not longest_answer_tokens:
        return min(NUM_PREDICT, num_ctx)
    return min(math.ceil(longest_answer_tokens * ANSWER_MARGIN) + ANSWER_SLACK, num_ctx)
_SYSTEM_OPEN = "<|im_start|>system\n"
_PROBE = "lingoforge-template-probe"


def default_system(hf_template_render: str) -> str | None:
    """The system text a ChatML template inserts when no system message is given (Qwen and SmolLM2 do).

    ``hf_template_render`` is the HF template rendered for one user message whose content is the probe.
    """
    if not hf_template_render.startswith(_SYSTEM_OPEN):
        return None
    end = hf_template_render.find("<|im_end|>\n<|im_start|>user\n" + _PROBE)
    return hf_template_render[len(_SYSTEM_OPEN):end] if end != -1 else None


def probe_messages() -> list[dict[str, str]]:
    """The one-user-message conversation :func:`default_system` expects rendered."""
    return [{"role": "user", "content": _PROBE}]


def render_chatml(messages: Sequence[Mapping[str, str]], system_default: str | None, instruction: str = "") -> str:
    """What :func:`go_template` renders for ``messages`` (the Python mirror used for the export-time check)."""
    out = ""
    if system_default is not None and (not messages or messages[0]["role"] != "system"):
        out += f"{_SYSTEM_OPEN}{system_default}<|im_end|>\n"
    for message in messages:
        content = served_user_text(instruction, message["content"]) if message["role"] == "user" else message["content"]
        out += f"<|im_start|>{message['role']}\n{content}<|im_end|>\n"
    return out + "<|im_start|>assistant\n"


def go_string(text: str) -> str:
    """``text`` as a Go template string: raw (backquoted) literals need no escapes, which a Modelfile's
    triple-quoted value would otherwise have to carry; a backquote itself is joined in as a quoted string."""
    parts = [f"`{part}`" for part in text.split("`")]
    return parts[0] if len(parts) == 1 else "(print " + ' "`" '.join(parts) + ")"


def _user_content(instruction: str) -> str:
    """The Go template of a message's content: a user message not starting with the instruction gets it first."""
    prefix = instruction_prefix(instruction)
    if not prefix:
        return "{{ .Content }}"
    head = instruction.strip()
    n = len(head.encode("utf-8"))  # Go's len and slice count bytes
    starts = f"(and (ge (len .Content) {n}) (eq (slice .Content 0 {n}) {go_string(head)}))"
    wrap = f'{{{{ if and (eq .Role "user") (not {starts}) }}}}{{{{ {go_string(prefix)} }}}}{{{{ end }}}}'
    return wrap + "{{ .Content }}"


def go_template(system_default: str | None, instruction: str = "") -> str:
    """ChatML as an Ollama Go template over ``.Messages`` (Ollama puts SYSTEM first in ``.Messages``; both
    ``/api/generate``, which ``ollama run`` uses, and ``/api/chat`` and ``/v1`` render it), wrapping bare user
    messages with ``instruction`` like :func:`render_chatml`."""
    head = ""
    if system_default is not None:
        head = ('{{- if not (and .Messages (eq (index .Messages 0).Role "system")) }}'
                f"{_SYSTEM_OPEN}{system_default}<|im_end|>\n{{{{ end }}}}")
    return (head + "{{- range .Messages }}<|im_start|>{{ .Role }}\n" + _user_content(instruction)
            + "<|im_end|>\n{{ end }}<|im_start|>assistant\n")


def check_template(hf_renders: Sequence[tuple[Sequence[Mapping[str, str]], str]], system_default: str | None,
                   instruction: str = "") -> None:
    """Raise unless the served template gives the HF chat template's text for every (messages, HF text) pair;
    pairs may send a bare input where HF rendered the full training prompt."""
    for messages, expected in hf_renders:
        got = render_chatml(messages, system_default, instruction)
        if got != expected:
            at = next((i for i, (a, b) in enumerate(zip(got, expected, strict=False)) if a != b),
                      min(len(got), len(expected)))
            raise LingoforgeError(
                "the base model's chat template is not ChatML, so Ollama's TEMPLATE cannot reproduce the training "
                f"prompt (first difference at character {at}: HF {expected[at:at + 40]!r} "
                f"vs ChatML {got[at:at + 40]!r}); "
                "use a ChatML model (Qwen 2.5, SmolLM2)"
            )


def check_stop(end_token: str | None, vocab: Mapping[str, int], stop: Sequence[str] = STOP_TOKENS) -> None:
    """The token training closed every answer with must be a stop sequence, or the served model runs on
    past its answer (``None``: a run trained before the end token was recorded)."""
    if end_token is None:
        return
    if end_token not in vocab:
        raise LingoforgeError(f"the training end token {end_token!r} is not in the exported model's vocabulary")
    if end_token not in stop:
        raise LingoforgeError(f"the training end token {end_token!r} is not among the Modelfile's stop sequences "
                              f"({', '.join(stop)}): the deployed model would not stop after its answer")


@dataclass(frozen=True)
class ServingConfig:
    """Everything Ollama needs to serve the model like it was trained; renders the Modelfile and the API call."""

    model_file: str
    template: str
    system: str
    num_ctx: int
    temperature: float = 0.0
    stop: tuple[str, ...] = STOP_TOKENS
    adapter_file: str | None = None
    num_predict: int = NUM_PREDICT

    def __post_init__(self) -> None:
        check_value("TEMPLATE", self.template)
        check_value("system prompt", self.system)
        for name in filter(None, (self.model_file, self.adapter_file)):
            if "/" in name or "\n" in name:
                raise LingoforgeError(f"model file name {name!r} must be a plain file name beside the Modelfile")

    def parameters(self) -> dict[str, Any]:
        """The ``parameters`` of Ollama's create API (same values as the Modelfile's PARAMETER lines)."""
        return {"stop": list(self.stop), "temperature": self.temperature, "repeat_penalty": REPEAT_PENALTY,
                "num_predict": self.num_predict, "num_ctx": self.num_ctx}

    def modelfile(self) -> str:
        """The Modelfile text (``FROM`` is relative to the Modelfile's folder)."""
        lines = [f"FROM ./{self.model_file}"]
        if self.adapter_file:
            lines.append(f"ADAPTER ./{self.adapter_file}")
        lines.append(f'TEMPLATE """{self.template}"""')
        if self.system:
            lines.append(f'SYSTEM """{self.system}"""')
        lines += [f'PARAMETER stop "{s}"' for s in self.stop]
        lines += [f"PARAMETER temperature {self.temperature:g}", f"PARAMETER repeat_penalty {REPEAT_PENALTY:g}",
                  f"PARAMETER num_predict {self.num_predict}", f"PARAMETER num_ctx {self.num_ctx}"]
        return "\n".join(lines) + "\n"

    def as_dict(self) -> dict[str, Any]:
        return {"model_file": self.model_file, "adapter_file": self.adapter_file, "template": self.template,
                "system": self.system, "parameters": self.parameters()}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ServingConfig:
        params = data["parameters"]
        return cls(data["model_file"], data["template"], data["system"], int(params["num_ctx"]),
                   float(params["temperature"]), tuple(params["stop"]), data.get("adapter_file"),
                   int(params["num_predict"]))
