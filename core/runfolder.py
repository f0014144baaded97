"""The run folder: every stage reads and writes here, so each can be rerun, resumed or inspected alone.

    runs/<name>/
      run.json          task, base model, config, versions, data hashes, chat template, timings, stages
      task.yaml         a YAML task's own definition, copied in at training (run.json holds its sha256)
      data/             train.jsonl val.jsonl test.jsonl data_report.json (+ generated.jsonl, tokens.json)
      adapter/          best PEFT adapter (safetensors) + tokenizer; checkpoints/ for resume
      eval/             report.json report.html charts/*.png predictions.jsonl
      export/           merged/ model-f16.gguf model-<quant>.gguf Modelfile parity.json export.json

run.json's sections are read through ``RunFolder``'s accessors only, so its shape is known in one place.
The run records the task it trains (``RunFolder.record_task``) well enough to rebuild it (``RunFolder.task``), so
eval, export, deploy, predict and a resumed ``run`` need neither ``--task`` nor ``$LINGOFORGE_TASK_PATH``.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
import sys
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from .errors import LingoforgeError, TaskDefinitionError, TaskNotFound
from .fsutil import atomic_open, write_json
from .task import TASK_NAME_PATTERN, Task, restrict

RUN_JSON = "run.json"
TASK_FILE = "task.yaml"  # a YAML task's definition, copied into the run
YAML_SUFFIXES = (".yaml", ".yml")
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
class Training:
    """run.json's ``train`` section as its readers use it: what ``lingoforge.train`` records before training
    (settings, data, the prompt and end token it trained, the plan) and once done (the micro-batch that trained,
    the step time planned and measured, how the adapter was chosen, why training stopped, the validation curve).
    Empty for a run that never trained; other recorded figures (history, timings) are for people and stay in the
    file."""

    status: str | None = None  # running | done | failed
    config: dict[str, Any] = field(default_factory=dict)  # TrainConfig as resolved for this run
    data_sha256: dict[str, str] = field(default_factory=dict)  # {train, val}: a resume must see the same data
    data_sources: dict[str, dict[str, Any]] = field(default_factory=dict)  # {train, val}: {path, sha256, map?}
    examples: dict[str, int] = field(default_factory=dict)  # {train, val}
    tokens_by_language: dict[str, dict[str, dict[str, int]]] = field(default_factory=dict)  # split: lang: counts
    instruction: str | None = None  # the instruction inputs were wrapped with (what the Modelfile serves)
    end_token: str | None = None  # the token every answer ended with (the served model's stop)
    longest_answer_tokens: int | None = None
    device: str | None = None  # cuda | cpu
    batch_size: int | None = None  # the micro-batch and accumulation that trained (after an out-of-memory retry)
    grad_accum: int | None = None
    balance: dict[str, Any] | None = None  # label balance: on, why, examples per epoch (``lingoforge.data.balance``)
    planned: dict[str, Any] | None = None  # the plan's step time for this run (``lingoforge.plan``)
    measured: dict[str, Any] | None = None  # the step time and tokens/s training measured
    selection: dict[str, Any] | None = None  # how the adapter's checkpoint was chosen (``lingoforge.selection``)
    stopped: dict[str, Any] | None = None  # why training ended
    curve: dict[str, Any] | None = None  # the validation figures per evaluation, for the eval report's chart


_TRAINING_FIELDS = frozenset(f.name for f in fields(Training))


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

    # -- run.json sections: ``task`` {name, version, kind, ...} (see ``record_task``), ``base`` {spec, kind,
    # -- location, ...}, ``train`` {...}, ``export`` {...}, ``pipeline`` {stage: {key, seconds, result}},
    # -- ``chat_template``.
    def task_name(self) -> str | None:
        """The task this run was trained for (``None`` for a new run)."""
        return self.task_record().get("name")

    def resolve_task(self, name_or_path: str | None) -> Task:
        """``--task`` when given (it wins), else this run's own task (:meth:`task`). A given name that no plugin or
        task path registers, but that this run recorded, loads from the run too: a fresh shell can resume or
        evaluate a YAML task's run by the task's name."""
        from .plugins import get_task

        if not name_or_path:
            return self.task()
        try:
            task = get_task(name_or_path)
        except TaskNotFound:
            if name_or_path != self.task_name():
                raise
            return self.task()
        return _restricted(task, self.task_record()) if task.name == self.task_name() else task

    def task_record(self) -> dict[str, Any]:
        """run.json's ``task`` section (``{}`` for a new run)."""
        return dict(self.read().get("task") or {})

    def record_task(self, task: Task) -> dict[str, Any]:
        """Record the task this run trains well enough for :meth:`task` to rebuild it from the folder alone.

        A YAML task's file is copied in as ``task.yaml`` and recorded as ``{name, version, kind: "yaml", file,
        sha256}``: the user's file may move or change later, the adapter learned this text. A plugin task is
        recorded as ``{name, version, kind: "plugin", distribution, distribution_version}``: the package to
        install to get it back (``None`` for a task registered in code). A run that already trained refuses,
        before anything is written, a YAML definition other than the one its adapter learned.
        """
        if Path(task.source).suffix in YAML_SUFFIXES:
            source = Path(task.source)
            try:
                text = source.read_bytes()
            except OSError as exc:
                raise TaskDefinitionError(f"{source}: cannot read the task file to copy it into {self.root}: "
                                          f"{exc.strerror or exc}") from None
            record: dict[str, Any] = {"name": task.name, "version": task.version, "kind": "yaml", "file": TASK_FILE,
                      "sha256": hashlib.sha256(text).hexdigest()}
            self._check_same_definition(record, str(source))
            target = self.root / TASK_FILE
            if not (target.is_file() and target.read_bytes() == text):
                with atomic_open(target, "wb") as fh:
                    fh.write(text)
        else:
            distribution, distribution_version = plugin_distribution(task)
            record = {"name": task.name, "version": task.version, "kind": "plugin", "distribution": distribution,
                      "distribution_version": distribution_version}
            self._check_same_definition(record, f"the plugin task {task.name!r}")
        if getattr(task, "only", ()):  # task.restrict: the data carries these of the task's output fields
            record["fields"] = list(task.only)  # type: ignore[attr-defined]
        data = self.read()
        data["task"] = record  # replaced whole: ``update`` would keep a previous record's file and sha256
        write_json(self.run_json, data)
        return record

    def _check_same_definition(self, record: dict[str, Any], given: str) -> None:
        """Refuse to re-record a trained run with a YAML definition other than the one its adapter learned (a run
        recorded before definitions were, with no ``kind``, has nothing to compare with)."""
        recorded = self.task_record()
        trained = self.has_adapter or self.checkpoints.is_dir()
        if not trained or recorded.get("kind") is None or "yaml" not in (recorded["kind"], record["kind"]):
            return
        if recorded.get("kind") != record["kind"] or recorded.get("sha256") != record.get("sha256"):
            learned = self.root / TASK_FILE if recorded.get("kind") == "yaml" else "a plugin task"
            raise LingoforgeError(f"{self.root} was trained on another definition of task {record['name']!r} "
                                  f"({learned}); {given} differs from it, so the adapter does not answer it: "
                                  "restore the definition or choose a new -o folder (nothing was written)")

    def task(self) -> Task:
        """The task this run was trained for, rebuilt from the run (see :meth:`record_task`).

        A YAML task comes from the run's own copy, whose hash must match run.json (an edited copy is an error
        naming it: the adapter learned the recorded text). A plugin task comes from the installed plugins: another
        installed version is a warning, a missing one an error naming the package to install. Runs recorded before
        the task was (name and version only) load by name from the installed plugins and task paths.
        """
        from .plugins import get_task

        self.require()
        record = self.task_record()
        name = record.get("name")
        if not name:
            raise LingoforgeError(f"{self.run_json} has no task name; was this run created by `lingoforge train`?")
        if not isinstance(name, str) or not TASK_NAME_PATTERN.match(name):
            raise LingoforgeError(f"{self.run_json}: task.name {name!r} is not a task name")
        kind = record.get("kind")
        if kind == "yaml":
            return _restricted(self._yaml_task(record), record)
        if kind not in (None, "plugin"):
            raise LingoforgeError(f"{self.run_json}: task.kind {kind!r} is unknown (expected yaml or plugin); "
                                  "was this run recorded by a newer lingoforge?")
        try:
            task = get_task(name)
        except TaskNotFound as exc:
            raise TaskNotFound(self._missing_plugin(record, exc)) from None
        recorded_version = record.get("version")
        if recorded_version is not None and str(recorded_version) != task.version:
            package = _package(record)
            _warn(f"{self.root} was trained with task {name!r} version {recorded_version}"
                  + (f" (from {package})" if package else "") + f"; the installed task is version {task.version}, "
                  "whose prompts, labels or scoring may differ from what the adapter learned"
                  + (f": install {package} to match" if package else ""))
        return _restricted(task, record)

    def _yaml_task(self, record: dict[str, Any]) -> Task:
        """The run's own copy of its YAML task, after checking it is the text the adapter was trained on."""
        from .plugins import get_task

        file = record.get("file")
        if not isinstance(file, str) or Path(file).name != file or file.startswith(".") \
                or Path(file).suffix not in YAML_SUFFIXES:
            raise LingoforgeError(f"{self.run_json}: task.file {file!r} must be a .yaml file name in the run folder")
        path = self.root / file
        if not path.is_file():
            raise TaskNotFound(f"{path} is missing: it held this run's definition of task {record['name']!r}; "
                               "restore it from a copy, or pass --task FILE")
        actual, expected = file_sha256(path), record.get("sha256")
        if actual != expected:
            raise TaskDefinitionError(f"{path} was changed after training (sha256 {actual[:12]}, run.json records "
                                      f"{str(expected)[:12]}): the adapter learned the recorded definition; restore "
                                      "it, or pass --task FILE to use another definition deliberately")
        return get_task(str(path))

    def _missing_plugin(self, record: dict[str, Any], exc: TaskNotFound) -> str:
        """Why a plugin task recorded in run.json cannot be loaded, and what to install to get it back."""
        name = record["name"]
        if record.get("kind") is None:
            return (f"{self.root} was trained with task {name!r}, which is not available here ({exc}); this run was "
                    "recorded before run folders kept their task: pass --task NAME or --task FILE.yaml")
        package = _package(record)
        if package is None:
            return (f"{self.root} was trained with task {name!r}, which no installed package provided (it was "
                    f"registered in code); register it again to use this run ({exc})")
        return (f"{self.root} was trained with task {name!r} from the package {package}, which is not installed "
                f"here or no longer registers it: pip install '{package}' ({exc})")

    def base_location(self) -> str:
        """The ``from_pretrained`` location of the base model the adapter was trained on."""
        location = (self.require().get("base") or {}).get("location")
        if not location:
            raise LingoforgeError(f"{self.run_json} names no base model (base.location); rerun `lingoforge train`")
        return str(location)

    def training(self) -> Training:
        """run.json's ``train`` section (see :class:`Training`)."""
        section = self.read().get("train") or {}
        return Training(**{k: v for k, v in section.items() if k in _TRAINING_FIELDS})

    def augmented(self) -> dict[str, Any]:
        """run.json's ``augment`` section: ``{"added": {lang: n}, "before": {lang: score}}`` of ``run --augment``."""
        return dict(self.read().get("augment") or {})

    def pipeline(self) -> dict[str, Any]:
        """run.json's ``pipeline`` section: per stage of ``lingoforge run``, its key, time and result."""
        return dict(self.read().get("pipeline") or {})

    def max_seq_length(self) -> int | None:
        """``max_seq_length`` of the run's token report (``None`` when the run has none)."""
        return read_token_report(self.token_report) if self.token_report.is_file() else None

    def num_ctx(self) -> int | None:
        """The context Ollama should serve with: the token report's ``num_ctx`` (else its ``max_seq_length``)."""
        if not self.token_report.is_file():
            return None
        return read_token_report(self.token_report, ("num_ctx", "max_seq_length"))

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

    def require(self) -> dict[str, Any]:
        """run.json of an existing run, or an error saying what is missing."""
        data = self.read()
        if not data:
            raise LingoforgeError(f"{self.root} is not a lingoforge run folder (no run.json); "
                                  "run `lingoforge train` first")
        return data


def plugin_distribution(task: Task) -> tuple[str | None, str | None]:
    """The installed package (name, version) whose ``lingoforge`` entry point registered ``task`` (the registry
    sets a plugin task's ``source`` to its entry point's name); ``(None, None)`` for a task registered in code."""
    from .plugins import ENTRY_POINT_GROUP

    for entry_point in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP, name=task.source):
        if entry_point.dist is not None:
            return entry_point.dist.name, entry_point.dist.version
    return None, None


def _package(record: dict[str, Any]) -> str | None:
    """A recorded plugin task's package as pip spells it (``name==version``), ``None`` when none was recorded."""
    name, version = record.get("distribution"), record.get("distribution_version")
    if not name:
        return None
    return f"{name}=={version}" if version else str(name)


_warned: set[str] = set()


def _warn(message: str) -> None:
    """Say ``warning: message`` on stderr, as the commands do, once per process (export loads the task twice)."""
    if message not in _warned:
        _warned.add(message)
        print(f"warning: {message}", file=sys.stderr, flush=True)


def _restricted(task: Task, record: dict[str, Any]) -> Task:
    """The task as the run learned it: restricted to the output fields its data carried, when run.json says so."""
    fields = record.get("fields")
    if not fields:
        return task
    return restrict(task, [str(f) for f in fields])


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


def check_adapter(adapter: Path) -> dict[str, Any]:
    """The adapter's LoRA config; a missing, damaged (a truncated copy, a killed write) or non-LoRA PEFT adapter
    folder is refused naming the file at fault, instead of a traceback from deep inside peft or safetensors."""
    from safetensors import SafetensorError, safe_open

    config, weights = adapter / ADAPTER_CONFIG, adapter / "adapter_model.safetensors"
    if not config.is_file():
        raise LingoforgeError(f"{adapter} holds no trained adapter (adapter_config.json); "
                              f"run `lingoforge train` on {adapter.parent} first")
    try:
        parsed = json.loads(config.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise LingoforgeError(f"{config}: damaged, not valid JSON ({exc}); retrain or restore the adapter") from None
    if not isinstance(parsed, dict) or parsed.get("peft_type", "LORA") != "LORA" or "r" not in parsed \
            or "target_modules" not in parsed:
        raise LingoforgeError(f"{config}: not a LoRA adapter config (peft_type LORA, r, target_modules); "
                              "only LoRA adapters serve and export")
    if not weights.is_file():
        raise LingoforgeError(f"{weights} is missing; retrain or restore the adapter")
    try:
        with safe_open(str(weights), framework="numpy") as fh:  # checks the header against the file size
            ranks = {name: fh.get_slice(name).get_shape()[0] for name in fh.keys() if ".lora_A." in name}
    except (SafetensorError, OSError) as exc:
        raise LingoforgeError(f"{weights}: damaged ({exc}); retrain or restore the adapter") from None
    if not ranks:
        raise LingoforgeError(f"{weights} holds no LoRA tensors; retrain or restore the adapter")
    wrong = next((name for name, r in ranks.items() if r != parsed["r"]), None)
    if wrong is not None and not parsed.get("rank_pattern"):  # a per-layer rank_pattern may differ on purpose
        raise LingoforgeError(f"{config} says rank r={parsed['r']} but {weights} holds rank {ranks[wrong]} ({wrong}): "
                              "the config and the weights come from different adapters; retrain or restore both")
    return parsed
