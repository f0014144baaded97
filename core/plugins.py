"""Plugin discovery and the task registry.

Plugins come from the ``lingoforge`` entry-point group (the built-in tasks use it too, so the path
third parties take is the one we test every day) and YAML task files from ``LINGOFORGE_TASK_PATH``.
A plugin that fails to import, misspells a hook or registers an invalid task is recorded with its
name and the cause; every other plugin keeps working.
"""

from __future__ import annotations

import dataclasses
import importlib.metadata
import os
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pluggy

from . import hookspecs
from .errors import LingoforgeError, TaskDefinitionError, TaskNotFound
from .prompts import check_servable, example_messages, prompt_messages
from .schema import check_schema, validate
from .task import LANGUAGE_PATTERN, TASK_NAME_PATTERN, Task
from .yaml_task import ENV_TASK_PATH, load_yaml_task, task_path_files

ENTRY_POINT_GROUP = "lingoforge"
ENV_ONLY = "LINGOFORGE_PLUGINS"
ENV_NO_AUTOLOAD = "LINGOFORGE_DISABLE_PLUGIN_AUTOLOAD"
TASK_PATH_PLUGIN = "task-path"


@dataclass(frozen=True)
class LoadError:
    """Why a plugin (or one of its tasks) could not be used."""

    plugin: str
    stage: str  # import | hooks | register_tasks | task | register_commands
    message: str

    def __str__(self) -> str:
        return f"plugin {self.plugin!r} ({self.stage}): {self.message}"


@dataclass
class PluginInfo:
    """What ``lingoforge plugins`` shows for one plugin."""

    name: str
    version: str
    source: str
    hooks: list[str] = field(default_factory=list)
    tasks: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)


def validate_task(task: Task, where: str) -> None:
    """Check a task at registration; raise ``TaskDefinitionError`` listing every problem at once."""
    problems: list[str] = []
    if not TASK_NAME_PATTERN.match(task.name or ""):
        problems.append(f"name {task.name!r} must match {TASK_NAME_PATTERN.pattern} (lowercase, digits, _)")
    if not task.languages:
        problems.append("languages is empty")
    problems += [f"language {lang!r} is not an ISO 639-1 code"
                 for lang in task.languages if not LANGUAGE_PATTERN.match(lang)]
    try:
        check_schema(task.output_schema, where)
    except TaskDefinitionError as exc:
        problems.append(str(exc).removeprefix(f"{where}: "))
    unknown_fields = [f for f in task.fields if f not in (task.output_schema.get("properties") or {})]
    if unknown_fields:
        problems.append(f"fields {unknown_fields} are not properties of the output schema")
    if not problems:
        problems += _render_problems(task) + _serving_problems(task)
    if problems:
        raise TaskDefinitionError(f"{where}: task {task.name!r} is invalid:\n  - " + "\n  - ".join(problems))


def _serving_problems(task: Task) -> list[str]:
    """The system prompt and instruction must fit in an Ollama Modelfile, or the trained model cannot ship: told
    when the task is defined, not after training."""
    try:
        check_servable(task.system_prompt, task.instruction.strip())
    except LingoforgeError as exc:
        return [str(exc)]
    return []


def _render_problems(task: Task) -> list[str]:
    """Templates must render; a generator's examples must validate and score perfectly on themselves."""
    try:
        prompt_messages(task, "example input")
    except Exception as exc:  # a plugin's template code may raise anything
        return [f"prompt templates do not render: {exc!r}"]
    if not task.has_generator:
        return []
    try:
        examples = task.generate(len(task.languages), 0)
    except Exception as exc:
        return [f"generator failed: {exc!r}"]
    problems: list[str] = []
    for ex in examples[:3]:
        example_messages(task, ex)
        issues = validate(task.schema, dict(ex.output))
        if issues:
            problems.append(f"generated output does not match the schema: {issues[0]}")
            break
        scores = task.score(dict(ex.output), dict(ex.output))
        if task.primary_metric not in scores:
            problems.append(f"primary_metric {task.primary_metric!r} is not among the scores {sorted(scores)}")
            break
    return problems


def _selected(name: str) -> bool:
    only = os.environ.get(ENV_ONLY, "").strip()
    if only:
        return name in {p.strip() for p in only.split(",") if p.strip()}
    return os.environ.get(ENV_NO_AUTOLOAD, "") not in ("1", "true", "yes")


class Registry:
    """A pluggy PluginManager plus the tasks and load errors it produced."""

    def __init__(self) -> None:
        self.pm = pluggy.PluginManager(hookspecs.PROJECT)
        self.pm.add_hookspecs(hookspecs)
        self.errors: list[LoadError] = []
        self.infos: dict[str, PluginInfo] = {}
        self._tasks: dict[str, Task] | None = None

    # -- loading ---------------------------------------------------------------------------------
    def load_entry_points(self) -> None:
        for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
            if not _selected(ep.name) or self.pm.has_plugin(ep.name):
                continue
            dist = ep.dist
            source = f"entry point {ep.value}" + (f" ({dist.name})" if dist else "")
            info = PluginInfo(ep.name, dist.version if dist else "?", source)
            self.infos[ep.name] = info
            try:
                module = ep.load()
            except Exception as exc:
                self._fail(info, "import", f"{type(exc).__name__}: {exc}")
                continue
            self.register_plugin(module, ep.name, info)

    def register_plugin(self, plugin: Any, name: str, info: PluginInfo | None = None) -> None:
        """Register one plugin object; unknown or mis-typed hooks unregister it and record why."""
        info = info or self.infos.setdefault(
            name, PluginInfo(name, getattr(plugin, "__version__", "?"), "registered in code"))
        self.infos[name] = info
        try:
            self.pm.register(plugin, name=name)
            self.pm.check_pending()
        except pluggy.PluginValidationError as exc:
            if self.pm.has_plugin(name):
                self.pm.unregister(name=name)
            self._fail(info, "hooks", str(exc))
            return
        info.hooks = sorted(impl.name for impl in self.pm.get_hookcallers(self.pm.get_plugin(name)) or [])
        self._tasks = None

    def unregister_plugin(self, name: str) -> None:
        if self.pm.has_plugin(name):
            self.pm.unregister(name=name)
        self.infos.pop(name, None)
        self.errors = [e for e in self.errors if e.plugin != name]
        self._tasks = None

    def _fail(self, info: PluginInfo, stage: str, message: str) -> None:
        err = LoadError(info.name, stage, message)
        self.errors.append(err)
        info.errors.append(f"{stage}: {message}")

    # -- tasks -----------------------------------------------------------------------------------
    @property
    def tasks(self) -> dict[str, Task]:
        if self._tasks is None:
            self._tasks = self._collect_tasks()
        return self._tasks

    def _collect_tasks(self) -> dict[str, Task]:
        self.errors = [e for e in self.errors if e.stage not in ("register_tasks", "task")]
        for info in self.infos.values():
            info.tasks.clear()
            info.errors = [e for e in info.errors if not e.startswith(("register_tasks", "task"))]
        tasks: dict[str, Task] = {}
        for name, plugin in self.pm.list_name_plugin():
            others = [p for p in self.pm.get_plugins() if p is not plugin]
            caller = self.pm.subset_hook_caller("register_tasks", remove_plugins=others)
            try:
                caller(register=self._registrar(tasks, name))
            except Exception as exc:
                self._fail(self.infos[name], "register_tasks", f"{type(exc).__name__}: {exc} ({_where(exc)})")
        for path in task_path_files():
            self._register_yaml(tasks, path)
        return tasks

    def _registrar(self, tasks: dict[str, Task], plugin: str) -> Callable[[Task], None]:
        def register(task: Task) -> None:
            if not isinstance(task, Task):
                self._fail(self.infos[plugin], "task",
                           f"register() got {type(task).__name__}, expected lingoforge.Task")
                return
            self._add(tasks, dataclasses.replace(task, source=plugin), plugin)

        return register

    def _add(self, tasks: dict[str, Task], task: Task, plugin: str) -> None:
        info = self.infos.setdefault(plugin, PluginInfo(plugin, task.version, task.source))
        try:
            validate_task(task, f"plugin {plugin!r}")
        except TaskDefinitionError as exc:
            self._fail(info, "task", str(exc))
            return
        if task.name in tasks:
            first = tasks[task.name].source
            self._fail(info, "task", f"task {task.name!r} is already registered by plugin {first!r}; "
                       f"plugin {plugin!r} registers it again (rename one of them)")
            return
        tasks[task.name] = task
        info.tasks.append(task.name)

    def _register_yaml(self, tasks: dict[str, Task], path: Path) -> None:
        info = self.infos.setdefault(TASK_PATH_PLUGIN, PluginInfo(TASK_PATH_PLUGIN, "-", f"${ENV_TASK_PATH}"))
        try:
            task = load_yaml_task(path, known=tasks)  # `extends:` resolves against the tasks collected so far
        except LingoforgeError as exc:
            self._fail(info, "task", str(exc))
            return
        self._add(tasks, task, TASK_PATH_PLUGIN)

    # -- commands --------------------------------------------------------------------------------
    def add_commands(self, cli: Any) -> None:
        for name, plugin in self.pm.list_name_plugin():
            others = [p for p in self.pm.get_plugins() if p is not plugin]
            caller = self.pm.subset_hook_caller("register_commands", remove_plugins=others)
            try:
                caller(cli=cli)
            except Exception as exc:
                self._fail(self.infos[name], "register_commands", f"{type(exc).__name__}: {exc}")


def _where(exc: BaseException) -> str:
    frames = traceback.extract_tb(exc.__traceback__)
    return f"{frames[-1].filename}:{frames[-1].lineno}" if frames else "?"


_registry: Registry | None = None


def get_registry() -> Registry:
    """The process-wide registry, loading entry points on first use."""
    global _registry
    if _registry is None:
        _registry = Registry()
        _registry.load_entry_points()
    return _registry


def reset_registry() -> None:
    """Forget loaded plugins (tests, or after installing a plugin in-process)."""
    global _registry
    _registry = None


def get_tasks() -> dict[str, Task]:
    """Every valid task, by name."""
    return dict(get_registry().tasks)


def get_task(name_or_path: str) -> Task:
    """A task by registered name, or from a YAML file path (``--task path/to/task.yaml``)."""
    if name_or_path.endswith((".yaml", ".yml")) or os.sep in name_or_path:
        path = Path(name_or_path)
        if not path.is_file():
            raise TaskNotFound(f"task file {path} does not exist")
        task = load_yaml_task(path, known=lambda: get_registry().tasks)
        validate_task(task, str(path))
        return task
    registry = get_registry()
    tasks = registry.tasks
    if name_or_path in tasks:
        return tasks[name_or_path]
    hint = f"known tasks: {', '.join(sorted(tasks)) or 'none'}"
    related = [str(e) for e in registry.errors if name_or_path in e.message or e.plugin == name_or_path]
    if related:
        hint += "\n" + "\n".join(related)
    raise TaskNotFound(f"unknown task {name_or_path!r}; {hint}")
