"""An evaluation's ``predictions.jsonl``: every answer on disk as it comes, and a rerun that generates only what
is missing.

Given ``predictions=PATH``, ``evaluate`` appends each answer to PATH (flushed and fsynced), so a killed
evaluation keeps what it generated; PATH's sidecar ``predictions.settings.json`` records what they were generated
for (model and its weight files, evaluated items and schema, decoding settings). Rerun with the same settings,
only the missing items are generated (a partial last line is cut off); with other settings PATH starts over.
Resumed answers are parsed and scored again, so the report equals an uninterrupted run's.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections import defaultdict
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from .backends import SERVED, Backend, Generation, ModelSpec, Servers, resolve_model
from .errors import DataError, WriteError
from .fsutil import append_text, write_json, write_text
from .prompts import prompt_messages
from .task import Example, Task

SETTINGS_FORMAT = "lingoforge.eval-predictions/1"


def settings_path(predictions: str | Path) -> Path:
    """The sidecar that says what a ``predictions.jsonl`` was generated for."""
    return Path(predictions).with_name(Path(predictions).stem + ".settings.json")


def prediction_line(model: Mapping[str, Any], record: Mapping[str, Any]) -> dict[str, Any]:
    """A ``predictions.jsonl`` line: the record tagged with the model spec and backend that answered it
    (a comparison puts both models in one file, possibly the same spec on two backends)."""
    return {"model": model["spec"], "backend": model["backend"], **record}


def weight_files(spec: ModelSpec, backend: str) -> dict[str, list[int]]:
    """Size and mtime of the files ``backend`` loads for ``spec``, so a model retrained or re-exported at the
    same path does not pass for the one that wrote earlier predictions (a hub id or Ollama name has none)."""
    if backend in SERVED:
        return {}
    roots = [spec.gguf] if backend == "llamacpp" or not spec.location else [Path(spec.location), spec.adapter]
    files: dict[str, list[int]] = {}
    for root in roots:
        if root is None or not root.exists():
            continue
        for path in sorted(root.iterdir()) if root.is_dir() else [root]:
            if path.is_file():
                stat = path.stat()
                files[str(path)] = [stat.st_size, stat.st_mtime_ns]
    return files


def model_identity(
    model: str | ModelSpec | Backend, backend: str | None = None, servers: Servers | None = None
) -> dict[str, Any]:
    """What decides a model's answers besides the prompts: spec, backend, weight files; the servers and served
    model name of a served backend."""
    if isinstance(model, Backend):
        return {"spec": model.model, **model.describe()}
    spec = resolved(model)
    name = backend or spec.default_backend
    served = (servers or Servers()).identity() if name in SERVED else {}
    return {"spec": spec.spec, "backend": name, **served, "files": weight_files(spec, name)}


def resolved(model: str | ModelSpec) -> ModelSpec:
    return resolve_model(model) if isinstance(model, str) else model


def eval_settings(
    task: Task,
    examples: Sequence[Example],
    models: Sequence[Mapping[str, Any]],
    *,
    constrained: bool,
    max_new_tokens: int,
) -> dict[str, Any]:
    """Everything the answers in ``predictions.jsonl`` depend on; a rerun resumes only when they are equal.

    ``data_sha256`` covers the evaluated items (prompts as sent, gold answers, languages, groups, so a changed
    file or ``--limit`` counts) and the output schema."""
    digest = hashlib.sha256(json.dumps(task.schema, sort_keys=True).encode())
    for ex in examples:
        prompt = prompt_messages(task, ex.input, ex.instruction or None)
        item = [prompt, dict(ex.output), ex.language, ex.meta.get("group")]
        digest.update(json.dumps(item, sort_keys=True, ensure_ascii=False, default=str).encode() + b"\n")
    return json.loads(
        json.dumps(
            {
                "format": SETTINGS_FORMAT,
                "task": {"name": task.name, "version": task.version},
                "data_sha256": digest.hexdigest(),
                "n": len(examples),
                "constrained": constrained,
                "max_new_tokens": max_new_tokens,
                "models": list(models),
            },
            default=str,
        )
    )


class PredictionLog:
    """An eval folder's ``predictions.jsonl``, appended a batch at a time and resumed when reopened with the
    same settings; with other settings (or none recorded) it starts over rather than mix answers, at the first
    new answer, so a model or server that fails to open loses no earlier predictions and leaves no files."""

    def __init__(self, path: str | Path, settings: Mapping[str, Any]) -> None:
        self.path = Path(path)
        self.settings = settings
        self.done: dict[tuple[str, str], dict[int, Generation]] = defaultdict(dict)
        try:
            same = json.loads(settings_path(self.path).read_text(encoding="utf-8")) == settings
        except (OSError, json.JSONDecodeError):
            same = False
        self.started = same and self.path.is_file()
        if self.started:
            self._load()

    def _start(self) -> None:
        # Empty the predictions before recording the new settings: a crash in between leaves nothing to mix.
        write_text(self.path, "")
        write_json(settings_path(self.path), self.settings)
        self.started = True

    def _load(self) -> None:
        data = self.path.read_bytes()
        keep = data.rfind(b"\n") + 1
        # Split on \n only: answers may hold U+2028 and the like, which str.splitlines() would split on.
        for number, line in enumerate(data[:keep].split(b"\n")[:-1], 1):
            if not line.strip():
                continue
            try:
                r = json.loads(line)
                gen = Generation(str(r["raw"]), float(r["latency_s"]), int(r["n_tokens"]))
                self.done[(str(r["model"]), str(r["backend"]))][int(r["index"])] = gen
            except (UnicodeDecodeError, json.JSONDecodeError, KeyError, TypeError, ValueError):
                raise DataError(
                    f"{self.path}:{number}: not an eval prediction line (needs model, backend, index, raw, latency_s, "
                    f"n_tokens); delete {self.path} or write the report to another folder (-o)"
                ) from None
        if keep != len(data):  # a kill in the middle of a write: its settings say the file is ours to cut
            try:
                os.truncate(self.path, keep)
            except OSError as exc:
                raise WriteError(f"cannot write {self.path}: {exc.strerror or exc}") from exc

    def completed(self, model: Mapping[str, Any]) -> dict[int, Generation]:
        """The answers ``model`` (a ``model_identity``) already gave, by item index."""
        return self.done.get((model["spec"], model["backend"]), {})

    def append(self, model: Mapping[str, Any], records: Sequence[Mapping[str, Any]]) -> None:
        """Add ``records`` as whole lines, on disk before returning."""
        if not self.started:
            self._start()
        append_text(self.path, "".join(
            json.dumps(prediction_line(model, r), ensure_ascii=False, separators=(",", ":")) + "\n" for r in records
        ))


# --------------------------------------------------------------------------- evaluate and compare

