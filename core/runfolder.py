"""The run folder: every stage reads and writes here, so each can be rerun, resumed or inspected alone.

    runs/<name>/
      run.json          task, base model, config, versions, data hashes, chat template, timings, stages
      data/             train.jsonl val.jsonl test.jsonl data_report.json (+ generated.jsonl, tokens.json)
      adapter/          best PEFT adapter (safetensors) + tokenizer; checkpoints/ for resume
      eval/             report.json report.html charts/*.png predictions.jsonl
      export/           merged/ model-f16.gguf model-<quant>.gguf Modelfile parity.json export.json

run.json's sections are read through ``RunFolder``'s accessors only, so its shape is known in one place.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .errors import LingoforgeError
from .fsutil import write_json

if TYPE_CHECKING:
    from .task import Task

RUN_JSON = "run.json"
TOKEN_REPORT = "tokens.json"  # in data/
REPORT = "report.json"  # in eval/
MANIFEST = "export.json"  # in export/
SUMMARY = "summary.json"
ADAPTER_CONFIG = "adapter_config.json"


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
        return self.root / RUN_JSON

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

    @property
    def token_report(self) -> Path:
        return self.data / TOKEN_REPORT

    @property
    def manifest(self) -> Path:
        return self.export / MANIFEST

    @property
    def summary(self) -> Path:
        return self.root / SUMMARY

    @property
    def has_adapter(self) -> bool:
        return (self.adapter / ADAPTER_CONFIG).is_file()

    # -- run.json sections: ``task`` {name, version}, ``base`` {spec, kind, location, ...}, ``train`` {...},
    # -- ``export`` {...}, ``pipeline`` {stage: {key, seconds, result}}, ``chat_template``.
    def task_name(self) -> str | None:
        """The task this run was trained for (``None`` for a new run)."""
        return (self.read().get("task") or {}).get("name")

    def task(self) -> Task:
        """The task this run was trained for, from the installed plugins and task paths."""
        from .plugins import get_task

        name = self.task_name()
        if not name:
            raise LingoforgeError(f"{self.run_json} has no task name; was this run created by `lingoforge train`?")
        return get_task(name)

    def base_location(self) -> str:
        """The ``from_pretrained`` location of the base model the adapter was trained on."""
        location = (self.require().get("base") or {}).get("location")
        if not location:
            raise LingoforgeError(f"{self.run_json} names no base model (base.location); rerun `lingoforge train`")
        return str(location)

    def training(self) -> dict[str, Any]:
        """run.json's ``train`` section (settings, data sources and hashes, instruction, end token, ...)."""
        return dict(self.read().get("train") or {})

    def pipeline(self) -> dict[str, Any]:
        """run.json's ``pipeline`` section: per stage of ``lingoforge run``, its key, time and result."""
        return dict(self.read().get("pipeline") or {})

    def max_seq_length(self) -> int | None:
        """``max_seq_length`` of the run's token report (``None`` when the run has none)."""
        return read_token_report(self.token_report) if self.token_report.is_file() else None

    def num_ctx(self) -> int | None:
        """The context Ollama should serve with: the token report's ``num_ctx`` (else its ``max_seq_length``)."""
        return read_token_report(self.token_report, ("num_ctx", "max_seq_length")) if self.token_report.is_file() else None

    def export_manifest(self) -> dict[str, Any]:
        """The export manifest (``{}`` before the first complete export)."""
        return _read_json(self.manifest) if self.manifest.is_file() else {}

    def eval_result(self, model: str = "") -> dict[str, Any] | None:
        """An evaluation report: the fine-tuned model's, or ``model``'s (``run`` writes the base model's to
        ``eval/base/``); ``None`` before ``eval``."""
        path = self.eval / model / REPORT
        return _read_json(path) if path.is_file() else None

    def read(self) -> dict[str, Any]:
        """run.json as a dict (``{}`` for a new run)."""
        return _read_json(self.run_json) if self.run_json.is_file() else {}

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
            recorded = self.task_name()
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


def read_token_report(path: Path, keys: tuple[str, ...] = ("max_seq_length",)) -> int:
    """``max_seq_length`` of a token report (``lingoforge tokens FILE --json`` output, or a run's data/tokens.json),
    or the first of ``keys`` the report has."""
    try:
        report = json.loads(path.read_text(encoding="utf-8-sig"))
    except FileNotFoundError:
        raise LingoforgeError(f"token report {path} does not exist") from None
    except (OSError, ValueError) as exc:
        raise LingoforgeError(
            f"{path}: not a JSON token report ({exc}); write one with `lingoforge tokens FILE --tokenizer T --json`"
        ) from None
    key = next((k for k in keys if isinstance(report, dict) and k in report), keys[-1])
    value = report.get(key) if isinstance(report, dict) else None
    if isinstance(value, bool) or not isinstance(value, int) or value < 16:
        raise LingoforgeError(
            f"{path}: {key}: expected an integer >= 16, got {value!r}; rerun `lingoforge tokens ... --json` "
            "or pass --max-len"
        )
    return value


def _read_json(path: Path) -> dict[str, Any]:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise LingoforgeError(f"{path}: not valid JSON (line {exc.lineno}): {exc.msg}") from None


def check_adapter(adapter: Path) -> None:
    """Refuse a missing or damaged PEFT adapter folder (a truncated copy, a killed write) naming the file at
    fault, instead of a traceback from deep inside peft or safetensors."""
    from safetensors import SafetensorError, safe_open

    config, weights = adapter / ADAPTER_CONFIG, adapter / "adapter_model.safetensors"
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
