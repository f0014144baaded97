"""Ollama backend: the deployed model, asked through the ``ollama`` client exactly as an application would."""

from __future__ import annotations

import os
import time
from collections.abc import Mapping
from typing import Any

from ..errors import LingoforgeError
from .base import Conversation, Generation, ServedBackend

DEFAULT_HOST = "http://127.0.0.1:11434"


def ollama_host(host: str | None = None) -> str:
    """``--host``, else ``$OLLAMA_HOST``, else the local default, as a full URL the way the ``ollama`` CLI reads
    it (``gpu-1`` is ``http://gpu-1:11434``), so one server given two ways is one server."""
    value = (host or os.environ.get("OLLAMA_HOST") or DEFAULT_HOST).strip().rstrip("/")
    if "://" not in value:
        value = f"http://{value}"
    scheme, rest = value.split("://", 1)
    if ":" not in rest.split("/", 1)[0]:
        rest = rest.replace("/", ":11434/", 1) if "/" in rest else f"{rest}:11434"
    return f"{scheme}://{rest}"


class OllamaBackend(ServedBackend):
    """A model on an Ollama server; ``format=<schema>`` when constrained, temperature 0 always."""

    name = "ollama"

    def __init__(self, model: str, host: str | None = None, timeout_s: float = 300.0) -> None:
        super().__init__(model)
        import ollama

        self.host = ollama_host(host)
        self._ollama = ollama
        self.client = ollama.Client(host=self.host, timeout=timeout_s)

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

    def close(self) -> None:
        client = self.__dict__.pop("client", None)
        if client is not None:
            client._client.close()
