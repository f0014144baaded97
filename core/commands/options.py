"""Options several commands share, defined once: the training settings, the output folder's spelling, and the
options (and the servers' share in the output) of the commands that run a MODEL (``eval``, ``predict``)."""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping, Sequence
from dataclasses import fields
from pathlib import Path
from typing import Any, TypeVar, cast

import click

from ..backends import BACKENDS, DEFAULT_MAX_NEW_TOKENS, ModelSpec, Servers
from ..config import SETTING_TYPES, TrainConfig, setting_type
from ..data.mapping import ColumnMap
from ..errors import DataError, LingoforgeError
from ..task import Task

F = TypeVar("F", bound=Callable[..., Any])


def old_out_spelling(token: str) -> str:
    """Read ``--out`` as ``--output``, as a command's ``token_normalize_func``: ``-o/--output`` is the one spelling
    help shows, and ``--out``, which train, export and ``data split`` once took, keeps working. Click's token
    normaliser sees option names without their dashes (and choice values, none of which is ``out``)."""
    return "output" if token == "out" else token


def config_options(*names: str, defaults: TrainConfig | None = None) -> Callable[[F], F]:
    """Click options for TrainConfig fields, each spelled (``--batch-size``), typed and explained by its field.

    Without ``defaults`` an unset flag is ``None``, so it never overrides a config file or a resumed run's
    settings, and help shows the recipe's default in brackets; ``plan``, which has no other layer, passes the
    settings it estimates by default, shown as click's ``[default: ...]``.
    """
    by_name = {f.name: f for f in fields(TrainConfig)}

    def decorate(fn: F) -> F:
        for name in reversed(names):
            meta, kind = by_name[name].metadata, SETTING_TYPES[name]
            flag = meta.get("flag") or "--" + name.replace("_", "-")
            shown = meta["shown"] or (f"{by_name[name].default:g}" if kind is float else str(by_name[name].default))
            fn = click.option(
                flag,
                name,
                type=None if kind is bool else setting_type(name),
                default=None if defaults is None else getattr(defaults, name),
                show_default=defaults is not None,
                help=f"{meta['help']}." if defaults is not None else f"{meta['help']} [{shown}].",
            )(fn)
        return fn

    return decorate


def task_for(task_name: str | None, spec: ModelSpec) -> Task:
    """``--task``, else the task a run folder recorded: the run alone is enough, with no task path set (see
    ``RunFolder.resolve_task``), and another task than the run learned is refused; other models answer the task
    ``--task`` names."""
    from ..plugins import get_task

    if spec.run is not None:
        task = spec.run.resolve_task(task_name)
        trained = spec.run.task_name()
        if trained and task.name != trained:  # another definition of the same task (an edited YAML) is fine
            raise LingoforgeError(f"{spec.run.root} was trained for task {trained!r}, not {task.name!r}: its "
                                  f"answers follow {trained!r}'s schema; leave --task out to use the run's own task")
        return task
    if not task_name:
        if spec.kind == "hf" and spec.location == spec.spec and not Path(spec.location).exists():
            raise LingoforgeError(f"{spec.spec!r} is no local folder ({Path(spec.spec).absolute()} does not exist); "
                                  "as a hub id, say which task it answers: --task NAME")
        raise LingoforgeError(f"say which task {spec.spec!r} answers: --task NAME (or a task YAML file)")
    return get_task(task_name)


_model_options = [
    click.option("--task", "task_name", help="Task name or YAML file (default: the run folder's task)."),
    click.option(
        "--backend",
        type=click.Choice(BACKENDS),
        help="Default: hf for folders, llamacpp for .gguf, ollama for ollama:NAME; openai for any "
        "OpenAI-compatible server (vLLM, TGI, llama.cpp, Ollama's /v1).",
    ),
    click.option("--constrained", is_flag=True, help="Force answers to the task's JSON schema while decoding."),
    click.option(
        "--host",
        "hosts",
        multiple=True,
        metavar="URL",
        help="Server of a served model, repeat for several: Ollama (default: $OLLAMA_HOST, else "
        "http://127.0.0.1:11434) or, with --backend openai, the API base (e.g. http://127.0.0.1:8000/v1).",
    ),
    click.option(
        "--model",
        "served_model",
        default="",
        metavar="NAME",
        help="The model's name on an OpenAI-compatible server (default: the one it serves).",
    ),
    click.option(
        "--api-key-env",
        metavar="VAR",
        help="Environment variable holding the OpenAI-compatible server's API key [OPENAI_API_KEY, if set].",
    ),
    click.option(
        "--parallel",
        type=click.IntRange(1),
        help="Requests in flight per server (default: what the server says it runs at once, else 1).",
    ),
    click.option("--max-new-tokens", type=click.IntRange(1), default=DEFAULT_MAX_NEW_TOKENS, show_default=True),
    click.option("--json", "as_json", is_flag=True, help="Print the result as JSON instead of a table."),
]


def model_options(fn: F) -> F:
    """The options of a command that runs MODEL: its task, backend, servers, decoding and output format. The
    server options reach the command as one ``servers: Servers``."""

    @functools.wraps(fn)
    def command(
        *args: Any, hosts: tuple[str, ...], served_model: str, api_key_env: str | None, parallel: int | None,
        **kwargs: Any
    ) -> Any:
        return fn(*args, servers=Servers(hosts, served_model, api_key_env, parallel), **kwargs)

    for option in reversed(_model_options):
        command = option(command)
    return cast(F, command)


def echo_servers(servers: Sequence[Mapping[str, Any]], seconds: float | None, shares: bool = True) -> None:
    """Each server's share of the work when several shared it (``shares``), and every server that failed, on
    stderr: a failed server is warned of even under ``--json``, whose stdout a script reads."""
    for server in servers if shares and len(servers) > 1 else ():
        rate = f", {server['answered'] / seconds:.2f} items/s" if seconds else ""
        click.echo(f"  {server['host']}: {server['answered']} answered{rate}", err=True)
    for server in servers:
        if server["failed"]:
            click.secho(f"server {server['host']} left the run: {server['failed']}; the others took its requests",
                        fg="yellow", err=True)


def _parse_map(ctx: click.Context, param: click.Parameter, value: str | None) -> ColumnMap | None:
    try:
        return ColumnMap.parse(value)
    except DataError as exc:
        raise click.BadParameter(str(exc).removeprefix("--map: ")) from None


map_option = click.option(
    "--map",
    "mapping",
    callback=_parse_map,
    metavar="FIELD=COLUMN,...",
    help="Your file's own column (CSV) or key (JSONL, dotted for nested) names, e.g. "
    "input=Subject+Description,category=Type,language=Locale (a+b joins columns with a newline).",
)


def _parse_fields(ctx: click.Context, param: click.Parameter, value: str | None) -> tuple[str, ...] | None:
    fields = tuple(f.strip() for f in (value or "").split(",") if f.strip())
    return fields or None


fields_option = click.option(
    "--fields",
    callback=_parse_fields,
    metavar="FIELD,...",
    help="The output fields to learn (default: those every record of the data carries), e.g. category,priority.",
)


def _parse_languages(ctx: click.Context, param: click.Parameter, value: str | None) -> tuple[str, ...] | None:
    if value is None:
        return None
    codes = tuple(dict.fromkeys(x.strip() for x in value.split(",") if x.strip()))
    if not codes:  # "" or "," would otherwise mean every language
        raise click.BadParameter("name at least one language, e.g. en,de")
    return codes


languages_option = click.option(
    "--languages", callback=_parse_languages, metavar="CODE,...",
    help="Comma-separated subset of the task's languages (default: all of them).",
)


def _parse_language(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    from ..data.convert import normalize_language

    if value is None:
        return None
    code = normalize_language(value)
    if code is None:
        raise click.BadParameter(f"{value!r} is not an ISO 639-1 language code (like en, de, zh)")
    return code


language_option = click.option(
    "--language",
    callback=_parse_language,
    metavar="CODE",
    help="The language of records that name none (a file in one language); others are detected from the input.",
)


def file_reading(mapping: ColumnMap | None, language: str | None) -> ColumnMap | None:
    """``--map`` and ``--language`` as the one mapping the data reader applies."""
    if language is None:
        return mapping
    return (mapping or ColumnMap(())).with_default("language", language)
