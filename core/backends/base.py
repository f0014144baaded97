"""The one inference interface every backend implements: a batch of chat messages in, texts and timings out.

Evaluation, prediction, export parity and the benchmarks only talk to this interface, so the same
scoring code measures the HF model, the GGUF file and the Ollama deployment (the model you ship).
"""

from __future__ import annotations

import abc
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

Message = Mapping[str, str]
Conversation = Sequence[Message]

# Enough for the JSON answers of the built-in tasks; callers raise it for long free-text fields.
DEFAULT_MAX_NEW_TOKENS = 256


@dataclass(frozen=True)
class Generation:
    """One answer. ``latency_s`` is the wall time until this answer was available (for a batched backend
    that is the whole batch's time, which is what a caller waiting for it experiences); ``n_tokens``
    counts generated tokens up to and including the stop token; ``server`` is the host that answered (empty for
    a model loaded in this process)."""

    text: str
    latency_s: float
    n_tokens: int
    server: str = ""


class Backend(abc.ABC):
    """A loaded model that answers chat conversations greedily.

    ``name`` is the backend kind (``hf``, ``llamacpp``, ``ollama``); ``model`` says which model it serves,
    for reports. ``supports_constrained`` tells callers whether ``schema=`` is honoured.
    """

    name: str = ""
    supports_constrained: bool = True

    def __init__(self, model: str) -> None:
        self.model = model

    @abc.abstractmethod
    def generate(
        self,
        batch: Sequence[Conversation],
        schema: Mapping[str, Any] | None = None,
        max_new_tokens: int = DEFAULT_MAX_NEW_TOKENS,
    ) -> list[Generation]:
        """Answer every conversation of ``batch`` (same order); with ``schema`` the answer is forced to it."""

    def stream(
        self,
        batch: Sequence[Conversation],
        schema: Mapping[str, Any] | None = None,
        max_new_tokens: int = DEFAULT_MAX_NEW_TOKENS,
        chunk: int = 8,
    ) -> Iterator[tuple[int, Generation]]:
        """Answer every conversation of ``batch``, yielding ``(position, answer)`` as answers become available.

        Callers that save as they go (``predict``, ``eval``) use this rather than ``generate``: a backend that
        answers in parallel (``Fleet``) yields in completion order and never waits for a slow request to start
        the next. This default answers ``chunk`` conversations per ``generate`` call, in order."""
        for start in range(0, len(batch), max(1, chunk)):
            answers = self.generate(batch[start : start + max(1, chunk)], schema, max_new_tokens)
            yield from enumerate(answers, start)

    def close(self) -> None:  # noqa: B027  (optional hook: backends without resources need not override it)
        """Release the model (memory, file handles, HTTP sessions). Idempotent."""

    def __enter__(self) -> Backend:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def describe(self) -> dict[str, Any]:
        """What a report needs to say which model and backend produced its numbers."""
        return {"backend": self.name, "model": self.model}


class ServedBackend(Backend):
    """A model on one server, asked one request per conversation; ``get_backend`` puts servers in a ``Fleet``,
    which sends requests to them in parallel (subclasses' HTTP clients are thread-safe)."""

    host: str = ""

    @abc.abstractmethod
    def _chat(self, conversation: Conversation, schema: Mapping[str, Any] | None, max_new_tokens: int) -> Generation:
        """One request: the server's answer to ``conversation``."""

    def generate(
        self,
        batch: Sequence[Conversation],
        schema: Mapping[str, Any] | None = None,
        max_new_tokens: int = DEFAULT_MAX_NEW_TOKENS,
    ) -> list[Generation]:
        return [self._chat(c, schema, max_new_tokens) for c in batch]

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "host": self.host}


def timed_one_by_one(backend_call: Any, batch: Sequence[Conversation]) -> list[Generation]:
    """Run ``backend_call(conversation) -> (text, n_tokens)`` per conversation, timing each one."""
    out: list[Generation] = []
    for conversation in batch:
        start = time.perf_counter()
        text, n_tokens = backend_call(conversation)
        out.append(Generation(text, time.perf_counter() - start, n_tokens))
    return out
