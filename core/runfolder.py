"""The run folder: every stage reads and writes here, so each can be rerun, resumed or inspected alone.

    runs/<name>/
      run.json          task, base model, config, versions, data hashes, chat template, timings, stages
      data/             train.jsonl val.jsonl test.jsonl data_report.json (+ generated.jsonl, tokens.json)
      adapter/          best PEFT adapter (safetensors) + tokenizer; checkpoints/ for resume
      eval/             report.json report.html charts/*.png predictions.jsonl
      export/           merged/ model-f16.gguf model-<quant>.gguf Modelfile parity.json
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .errors import LingoforgeError
from .fsutil import write_json


def file_sha256(path: str | Path) -> str:
    """Content hash used to tell whether a stage's input changed."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


@dataclass(frozen=True)
class RunFolder:
    """Paths of one run and atomic read-modify-write of its ``run.json``."""

    root: Path

    @property
    def run_json(self) -> Path:
        return self.root / "run.json"

    @property
    def data(self) -> Path:
        return self.root / "data"

    @property
    def adapter(self) -> Path:
        return self.root / "adapter"

    @property
    def checkpoints(self) -> Path:
        return self.root / "adapter" / "checkpoints"

    @property
    def eval(self) -> Path:
        return self.root / "eval"

    @property
    def export(self) -> Path:
        return self.root / "export"

    def read(self) -> dict[str, Any]:
        """run.json as a dict (``{}`` for a new run)."""
        if not self.run_json.is_file():
            return {}
        try:
            return json.loads(self.run_json.read_text(encoding="utf-8"))
        except json.JSONDecodeError as exc:
            raise LingoforgeError(f"{self.run_json}: not valid JSON (line {exc.lineno}): {exc.msg}") from None

    def update(self, **sections: Any) -> dict[str, Any]:
        """Merge top-level sections into run.json (dict sections are merged one level deep) atomically."""
        data = self.read()
        for key, value in sections.items():
            if isinstance(value, dict) and isinstance(data.get(key), dict):
                data[key] = {**data[key], **value}
            else:
                data[key] = value
        write_json(self.run_json, data)
        return data

    def claim(self, task_name: str) -> None:
        """Refuse, before anything is written, a folder holding another task's run or files that are not a run
        (a new or empty folder, or this task's run, is fine)."""
        if self.run_json.is_file():
            spec = self.read().get("task")
            recorded = spec.get("name") if isinstance(spec, dict) else spec
            if recorded and recorded != task_name:
                raise LingoforgeError(f"{self.root} holds a run of task {recorded!r}, not {task_name!r}; "
                                      "choose another -o folder (nothing was written)")
        elif self.root.is_dir() and any(self.root.iterdir()):
            raise LingoforgeError(f"{self.root} is not empty and holds no run.json, so it is not a lingoforge run "
                                  "folder; choose a new or empty -o folder (nothing was written)")

    def check_adapter(self) -> None:
        """Refuse a missing or damaged adapter before export spends minutes on it (see :func:`check_adapter`)."""
        check_adapter(self.adapter)

    def require(self) -> dict[str, Any]:
        """run.json of an existing run, or an error saying what is missing."""
        data = self.read()
        if not data:
            raise LingoforgeError(f"{self.root} is not a lingoforge run folder (no run.json); run `lingoforge train` first")
        return data


def check_adapter(adapter: Path) -> None:
    """Refuse a missing or damaged PEFT adapter folder (a truncated copy, a killed write) naming the file at
    fault, instead of a traceback from deep inside peft or safetensors."""
    from safetensors import SafetensorError, safe_open

    config, weights = adapter / "adapter_config.json", adapter / "adapter_model.safetensors"
    if not config.is_file():
        raise LingoforgeError(f"{adapter} holds no trained adapter (adapter_config.json); "
                              f"run `lingoforge train` on {adapter.parent} first")
    try:
        parsed = json.loads(config.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise LingoforgeError(f"{config}: damaged, not valid JSON ({exc}); retrain or restore the adapter") from None
    if not isinstance(parsed, dict) or "r" not in parsed or "target_modules" not in parsed:
        raise LingoforgeError(f"{config}: not a LoRA adapter config (no r / target_modules)")
    if not weights.is_file():
        raise LingoforgeError(f"{weights} is missing; retrain or restore the adapter")
    try:
        with safe_open(str(weights), framework="numpy") as fh:  # checks the header against the file size
            names = list(fh.keys())
    except (SafetensorError, OSError) as exc:
        raise LingoforgeError(f"{weights}: damaged ({exc}); retrain or restore the adapter") from None
    if not names:
        raise LingoforgeError(f"{weights} holds no tensors; retrain or restore the adapter")
