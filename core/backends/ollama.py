"""Ollama backend: the deployed model, asked through the ``ollama`` client exactly as an application would.

Requests are sent in parallel threads (``concurrency``), since the server queues and batches them; the
client is synchronous and thread-safe for independent calls.
"""

from __future__ import annotations

import os
import time
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from ..errors import LingoforgeError
from .base import DEFAULT_MAX_NEW_TOKENS, Backend, Conversation, Generation

DEFAULT_HOST = "http://127.0.0.1:11434"


def ollama_host(host: str | None = None) -> str:
    """``--host``, else ``$OLLAMA_HOST``, else Ollama's default address."""
    return host or os.environ.get("OLLAMA_HOST") or DEFAULT_HOST


class OllamaBackend(Backend):
    """A model on an Ollama server; ``format=<schema>`` when constrained, temperature 0 always."""

    name = "ollama"

    def __init__(self, model: str, host: str | None = None, concurrency: int = 1, timeout_s: float = 300.0) -> None:
        super().__init__(model)
        import ollama

        self.host = ollama_host(host)
        self.concurrency = max(1, concurrency)
        self._ollama = ollama
        self.client = ollama.Client(host=self.host, timeout=timeout_s)

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "host": self.host}

    def _chat(self, conversation: Conversation, schema: Mapping[str, Any] | None, max_new_tokens: int) -> Generation:
        start = time.perf_counter()
        try:
            response = self.client.chat(
                model=self.model,
                messages=[dict(m) for m in conversation],
                format=dict(schema) if schema is not None else None,
                options={"temperature": 0, "num_predict": max_new_tokens},
            )
        except ConnectionError:
            raise LingoforgeError(
                f"cannot reach the Ollama server at {self.host}: start it (`ollama serve`) or point "
                "--host / OLLAMA_HOST at a running one"
            ) from None
        except self._ollama.ResponseError as exc:
            if exc.status_code == 404:
                raise LingoforgeError(
                    f"model {self.model!r} is not on the Ollama server at {self.host}: "
                    "create it with `lingoforge deploy` or `ollama pull`"
                ) from None
            raise LingoforgeError(f"Ollama server at {self.host} answered {exc.status_code}: {exc.error}") from None
        text = response.message.content or ""
        return Generation(text.strip(), time.perf_counter() - start, int(response.eval_count or 0))

    def generate(
        self,
        batch: Sequence[Conversation],
        schema: Mapping[str, Any] | None = None,
        max_new_tokens: int = DEFAULT_MAX_NEW_TOKENS,
    ) -> list[Generation]:
        if self.concurrency == 1 or len(batch) <= 1:
            return [self._chat(c, schema, max_new_tokens) for c in batch]
        with ThreadPoolExecutor(max_workers=min(self.concurrency, len(batch))) as pool:
            return list(pool.map(lambda c: self._chat(c, schema, max_new_tokens), batch))

    def close(self) -> None:
        client = self.__dict__.pop("client", None)
        if client is not None:
            client._client.close()
