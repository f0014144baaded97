"""OpenAI-compatible backend: the same model served by vLLM, TGI, llama.cpp's server or Ollama's ``/v1``.

It speaks the chat-completions API with plain ``httpx`` (two endpoints need no SDK): ``GET /models`` once, to
tell a server that is not OpenAI-compatible, a missing key or a model it does not serve from a good endpoint
before any work starts; then ``POST /chat/completions`` greedily, as the llamacpp backend decodes: temperature 0,
the ChatML stop tokens and ``repeat_penalty`` 1.0 (llama-cpp-python's server penalises repeats by default, which
changes greedy answers; a server that rejects the field is asked again without it, once).

Structured output differs between servers, so it is detected once, on the first constrained request, and
reported by ``describe()``: the standard ``response_format`` ``json_schema`` (OpenAI, vLLM, Ollama), else
``json_object`` with a ``schema`` (llama-cpp-python's server), else prompt-only answers that the caller
validates like any other. The API key is read from an environment variable when the backend opens and lives
only in the request header: never in a report, run.json or a log line.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Mapping
from typing import Any

import httpx

from ..errors import LingoforgeError
from .base import Conversation, Generation, ServedBackend
from .hf import STOP_TOKENS

DEFAULT_KEY_ENV = "OPENAI_API_KEY"
# Not in OpenAI's API, but llama.cpp servers read it: greedy means no repeat penalty (their default is 1.1).
GREEDY_EXTRAS = {"repeat_penalty": 1.0}
# Tried in this order on the first constrained request; a server that rejects one is asked the next.
STRUCTURED_MODES = ("json_schema", "json_object+schema", "prompt")


def response_format(mode: str, schema: Mapping[str, Any]) -> dict[str, Any] | None:
    """The ``response_format`` field of ``mode`` (``None``: ask without one)."""
    if mode == "json_schema":
        return {"type": "json_schema", "json_schema": {"name": "output", "schema": dict(schema), "strict": True}}
    if mode == "json_object+schema":
        return {"type": "json_object", "schema": dict(schema)}
    return None


def api_key(variable: str | None) -> str | None:
    """The key in ``$variable``. ``None`` (the default variable) may be unset: local servers want no key; a
    variable the user named must hold one."""
    if variable is None:
        return os.environ.get(DEFAULT_KEY_ENV) or None
    key = os.environ.get(variable)
    if not key:
        raise LingoforgeError(f"--api-key-env {variable}: the environment variable ${variable} is not set")
    return key


class OpenAIBackend(ServedBackend):
    """``model`` on the OpenAI-compatible server at ``host`` (its ``/v1`` base URL); ``model=""`` takes the one
    model the server lists."""

    name = "openai"

    def __init__(self, model: str, host: str, api_key_env: str | None = None, timeout_s: float = 300.0) -> None:
        super().__init__(model)
        self.host = host.rstrip("/")
        key = api_key(api_key_env)
        self._key_env = api_key_env or DEFAULT_KEY_ENV
        self.client = httpx.Client(base_url=self.host, timeout=timeout_s,
                                   headers={"Authorization": f"Bearer {key}"} if key else {})
        self.model = self._served_model(model)
        self._mode_lock = threading.Lock()
        self.structured: str | None = None  # detected on the first constrained request
        self._extras = dict(GREEDY_EXTRAS)  # dropped for good when the server rejects them

    @property
    def supports_constrained(self) -> bool:  # type: ignore[override]
        return self.structured != "prompt"

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "structured_output": self.structured or "not asked"}

    def _get(self, path: str) -> httpx.Response:
        try:
            return self.client.get(path)
        except httpx.HTTPError as exc:
            raise LingoforgeError(f"cannot reach {self.host}: {type(exc).__name__} {exc}".strip()) from None

    def _served_model(self, wanted: str) -> str:
        """Check the endpoint once: OpenAI-compatible, key accepted, ``wanted`` served (or one model to take)."""
        response = self._get("/models")
        self._raise_for_auth(response)
        hint = "" if self.host.endswith("/v1") else f"; OpenAI-compatible APIs usually live under /v1: {self.host}/v1"
        try:
            listed = [str(m["id"]) for m in response.json()["data"]]
        except (ValueError, KeyError, TypeError):
            raise LingoforgeError(
                f"{self.host} is not an OpenAI-compatible endpoint: GET /models answered {response.status_code} "
                f"without a model list{hint}"
            ) from None
        if not wanted:
            if len(listed) != 1:
                raise LingoforgeError(f"{self.host} serves {len(listed)} models ({', '.join(listed) or 'none'}): "
                                      "say which with --model NAME")
            return listed[0]
        if listed and wanted not in listed and f"{wanted}:latest" not in listed:  # Ollama lists NAME:latest
            raise LingoforgeError(f"model {wanted!r} is not served at {self.host}; it serves: {', '.join(listed)}")
        return wanted

    def _raise_for_auth(self, response: httpx.Response) -> None:
        if response.status_code in (401, 403):
            raise LingoforgeError(f"{self.host} refused the request ({response.status_code}): it wants an API key; "
                                  f"put it in ${self._key_env} or name another variable with --api-key-env VAR")

    def _post(self, conversation: Conversation, max_new_tokens: int, fmt: dict[str, Any] | None) -> httpx.Response:
        body: dict[str, Any] = {"model": self.model, "messages": [dict(m) for m in conversation], "temperature": 0,
                                "max_tokens": max_new_tokens, "stop": list(STOP_TOKENS), "stream": False}
        if fmt is not None:
            body["response_format"] = fmt
        try:
            response = self.client.post("/chat/completions", json={**body, **self._extras})
            if any(_rejects(response, key) and key in response.text for key in self._extras):
                self._extras = {}
                response = self.client.post("/chat/completions", json=body)
        except httpx.HTTPError as exc:
            raise LingoforgeError(f"{self.host}: {type(exc).__name__} {exc}".strip()) from None
        return response

    def _constrained(self, conversation: Conversation, schema: Mapping[str, Any],
                     max_new_tokens: int) -> httpx.Response:
        """Ask with the detected structured-output mode; the first such request finds the mode."""
        with self._mode_lock:
            if self.structured is None:
                for mode in STRUCTURED_MODES:
                    response = self._post(conversation, max_new_tokens, response_format(mode, schema))
                    if mode == "prompt" or not _rejects(response, "response_format"):
                        self.structured = mode
                        return response
        return self._post(conversation, max_new_tokens, response_format(self.structured, schema))

    def _chat(self, conversation: Conversation, schema: Mapping[str, Any] | None, max_new_tokens: int) -> Generation:
        start = time.perf_counter()
        if schema is None:
            response = self._post(conversation, max_new_tokens, None)
        else:
            response = self._constrained(conversation, schema, max_new_tokens)
        self._raise_for_auth(response)
        if response.status_code != 200:
            raise LingoforgeError(f"{self.host} answered {response.status_code}: {response.text[:300]}")
        try:
            body = response.json()
            text = body["choices"][0]["message"]["content"] or ""
        except (ValueError, KeyError, IndexError, TypeError):
            raise LingoforgeError(f"{self.host} answered without choices[0].message.content: "
                                  f"{response.text[:300]}") from None
        n_tokens = int((body.get("usage") or {}).get("completion_tokens") or 0)
        return Generation(text.strip(), time.perf_counter() - start, n_tokens)

    def close(self) -> None:
        client = self.__dict__.pop("client", None)
        if client is not None:
            client.close()


def _rejects(response: httpx.Response, field: str) -> bool:
    """Whether the server refused this request's form: a 4xx other than auth, a missing model or a busy server,
    or any error that names ``field`` (llama-cpp-python's server answers a request it cannot validate with 500)."""
    status = response.status_code
    if 400 <= status < 500 and status not in (401, 403, 404, 408, 429):
        return True
    return status >= 400 and field in response.text


def server_slots(host: str, timeout_s: float = 3.0) -> int | None:
    """How many requests the server at ``host`` says it runs at once (llama.cpp's ``/props`` ``total_slots``),
    or ``None`` when it does not say (Ollama, vLLM, llama-cpp-python)."""
    root = host.rstrip("/").removesuffix("/v1")
    try:
        response = httpx.get(f"{root}/props", timeout=timeout_s)
        slots = response.json().get("total_slots") if response.status_code == 200 else None
    except (httpx.HTTPError, ValueError, AttributeError):
        return None
    return slots if isinstance(slots, int) and slots > 0 else None
