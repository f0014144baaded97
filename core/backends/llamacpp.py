"""llama.cpp backend: a GGUF file through llama-cpp-python, the same weights Ollama will serve.

The chat template comes from the GGUF's own metadata (llama-cpp-python renders ``tokenizer.chat_template``),
so evaluating the GGUF also checks the template the export wrote. Constrained decoding uses a
llama.cpp grammar built from the JSON schema (``LlamaGrammar.from_json_schema``).
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from ..errors import LingoforgeError
from .base import DEFAULT_MAX_NEW_TOKENS, Backend, Conversation, Generation, timed_one_by_one
from .hf import STOP_TOKENS


class LlamaCppBackend(Backend):
    """One ``llama_cpp.Llama`` answering conversations one at a time (llama-cpp-python has no batched chat)."""

    name = "llamacpp"

    def __init__(self, path: str | Path, n_ctx: int = 4096, n_threads: int | None = None) -> None:
        super().__init__(str(path))
        try:
            import llama_cpp
        except ImportError:
            raise LingoforgeError(
                "the llamacpp backend needs llama-cpp-python: pip install 'lingoforge[llamacpp]'"
            ) from None
        if not Path(path).is_file():
            raise LingoforgeError(f"GGUF file {path} does not exist")
        self._llama_cpp = llama_cpp
        try:
            self.llm = llama_cpp.Llama(
                model_path=str(path), n_ctx=n_ctx, n_threads=n_threads or os.cpu_count(), verbose=False
            )
        except ValueError as exc:
            raise LingoforgeError(f"llama.cpp cannot load {path}: {exc}") from None
        self._grammars: dict[str, Any] = {}

    def _grammar(self, schema: Mapping[str, Any]) -> Any:
        """The llama.cpp grammar for ``schema``, built once per schema. The grammar orders an object's keys as
        the schema lists them (the order the answers were trained in), so the schema goes in unsorted."""
        key = json.dumps(dict(schema), default=dict)
        if key not in self._grammars:
            self._grammars[key] = self._llama_cpp.LlamaGrammar.from_json_schema(key, verbose=False)
        return self._grammars[key]

    def generate(
        self,
        batch: Sequence[Conversation],
        schema: Mapping[str, Any] | None = None,
        max_new_tokens: int = DEFAULT_MAX_NEW_TOKENS,
    ) -> list[Generation]:
        grammar = self._grammar(schema) if schema is not None else None

        def one(conversation: Conversation) -> tuple[str, int]:
            # A stale KV cache from the previous prompt is reused by prefix; reset keeps runs independent.
            self.llm.reset()
            messages: Any = [dict(m) for m in conversation]  # llama-cpp-python's TypedDicts, same shape
            response: Any = self.llm.create_chat_completion(
                messages=messages,
                temperature=0.0,
                max_tokens=max_new_tokens,
                stop=list(STOP_TOKENS),
                grammar=grammar,
            )
            text = response["choices"][0]["message"]["content"] or ""
            return text.strip(), int(response.get("usage", {}).get("completion_tokens", 0))

        return timed_one_by_one(one, batch)

    def close(self) -> None:
        llm = self.__dict__.pop("llm", None)
        if llm is not None:
            llm.close()
