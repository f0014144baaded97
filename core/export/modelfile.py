"""The Ollama side of the chat format: a Go ``TEMPLATE`` equal to the training template, and the Modelfile.

Models that "work in Python and break in Ollama" almost always serve a different prompt than they were
trained on (missing TEMPLATE, dropped system prompt, other whitespace) or miss a stop token. This module
writes the ChatML template as a Go template, checks at export time that it renders exactly what the HF
tokenizer's chat template renders for the task's prompts, and refuses values a Modelfile cannot hold.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from ..errors import LingoforgeError

STOP_TOKENS = ("<|im_end|>", "<|endoftext|>")
# Ollama's default repeat penalty (1.1) changes greedy answers; training and evaluation decode without one.
REPEAT_PENALTY = 1.0
# Longest answer Ollama may write (room for the built-in schemas' longest: a 400-character free-text field
# plus the JSON). Without a bound, a model that never emits its stop token generates until the client gives
# up (Ollama's default is unlimited, shifting the context): "it never stops" becomes "it stops, cut short".
NUM_PREDICT = 640
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


def render_chatml(messages: Sequence[Mapping[str, str]], system_default: str | None) -> str:
    """What :func:`go_template` renders for ``messages`` (the Python mirror used for the export-time check)."""
    out = ""
    if system_default is not None and (not messages or messages[0]["role"] != "system"):
        out += f"{_SYSTEM_OPEN}{system_default}<|im_end|>\n"
    for message in messages:
        out += f"<|im_start|>{message['role']}\n{message['content']}<|im_end|>\n"
    return out + "<|im_start|>assistant\n"


def go_template(system_default: str | None) -> str:
    """ChatML as an Ollama Go template over ``.Messages`` (Ollama puts SYSTEM first in ``.Messages``)."""
    head = ""
    if system_default is not None:
        head = ('{{- if not (and .Messages (eq (index .Messages 0).Role "system")) }}'
                f"{_SYSTEM_OPEN}{system_default}<|im_end|>\n{{{{ end }}}}")
    return (head + "{{- range .Messages }}<|im_start|>{{ .Role }}\n{{ .Content }}<|im_end|>\n{{ end }}"
            "<|im_start|>assistant\n")


def check_template(hf_renders: Sequence[tuple[Sequence[Mapping[str, str]], str]], system_default: str | None) -> None:
    """Raise unless the ChatML template reproduces the HF chat template for every (messages, HF text) pair."""
    for messages, expected in hf_renders:
        got = render_chatml(messages, system_default)
        if got != expected:
            at = next((i for i, (a, b) in enumerate(zip(got, expected, strict=False)) if a != b),
                      min(len(got), len(expected)))
            raise LingoforgeError(
                "the base model's chat template is not ChatML, so Ollama's TEMPLATE cannot reproduce the training "
                f"prompt (first difference at character {at}: HF {expected[at:at + 40]!r} "
                f"vs ChatML {got[at:at + 40]!r}); "
                "use a ChatML model (Qwen 2.5, SmolLM2)"
            )


def check_value(name: str, value: str) -> str:
    """A Modelfile value goes between triple quotes: it cannot contain ``\"\"\"`` nor end with a quote."""
    if '"""' in value:
        raise LingoforgeError(f'the {name} contains """ which a Modelfile cannot hold; remove the triple quote from it')
    if value.endswith('"'):
        raise LingoforgeError(f'the {name} ends with a double quote, which would merge with the closing """; '
                              "end it with another character")
    return value


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

    def __post_init__(self) -> None:
        check_value("TEMPLATE", self.template)
        check_value("system prompt", self.system)
        for name in filter(None, (self.model_file, self.adapter_file)):
            if "/" in name or "\n" in name:
                raise LingoforgeError(f"model file name {name!r} must be a plain file name beside the Modelfile")

    def parameters(self) -> dict[str, Any]:
        """The ``parameters`` of Ollama's create API (same values as the Modelfile's PARAMETER lines)."""
        return {"stop": list(self.stop), "temperature": self.temperature, "repeat_penalty": REPEAT_PENALTY,
                "num_predict": NUM_PREDICT, "num_ctx": self.num_ctx}

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
                  f"PARAMETER num_predict {NUM_PREDICT}", f"PARAMETER num_ctx {self.num_ctx}"]
        return "\n".join(lines) + "\n"

    def as_dict(self) -> dict[str, Any]:
        return {"model_file": self.model_file, "adapter_file": self.adapter_file, "template": self.template,
                "system": self.system, "parameters": self.parameters()}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ServingConfig:
        params = data["parameters"]
        return cls(data["model_file"], data["template"], data["system"], int(params["num_ctx"]),
                   float(params["temperature"]), tuple(params["stop"]), data.get("adapter_file"))
