"""Resolve a ``MODEL`` argument and open the backend that serves it.

``MODEL`` is one of: a run folder (its adapter on the base model named in run.json), a merged or plain
Hugging Face model folder, a ``.gguf`` file, ``ollama:NAME`` (a model on an Ollama server), or anything
``--base`` accepts (a preset such as ``smollm2-135m``, a hub id), so a base model can be evaluated
against its fine-tune with the same command. The backend defaults to the one the model's form implies.

Served models (``ollama``, ``openai``) are asked on one or more servers (``Servers``); ``get_backend`` opens one
backend per server and puts them in a ``Fleet``, which spreads the requests and routes around a failed server.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import LingoforgeError
from ..runfolder import RUN_JSON, RunFolder
from .base import DEFAULT_MAX_NEW_TOKENS, Backend, Conversation, Generation

BACKENDS = ("hf", "llamacpp", "ollama", "openai")
SERVED = ("ollama", "openai")  # backends that ask a server rather than load weights here

__all__ = [
    "BACKENDS",
    "DEFAULT_MAX_NEW_TOKENS",
    "Backend",
    "Conversation",
    "Generation",
    "ModelSpec",
    "Servers",
    "get_backend",
    "resolve_model",
]


@dataclass(frozen=True)
class ModelSpec:
    """A resolved ``MODEL``. ``kind``: run | hf | gguf | ollama. Paths are absolute."""

    spec: str
    kind: str
    location: str = ""  # HF from_pretrained location (run: the base model; hf: the folder or hub id)
    adapter: Path | None = None  # run: the PEFT adapter folder
    gguf: Path | None = None  # gguf: the file; run/preset: a GGUF of the same model when one exists
    ollama_model: str = ""
    run: RunFolder | None = None

    @property
    def default_backend(self) -> str:
        return {"run": "hf", "hf": "hf", "gguf": "llamacpp", "ollama": "ollama"}[self.kind]

    def task_name(self) -> str | None:
        """The task a run folder was trained for (``None`` for other models)."""
        return None if self.run is None else self.run.task_name()


@dataclass(frozen=True)
class Servers:
    """Where a served model is asked: ``--host`` (repeatable), ``--model`` (its name on an OpenAI-compatible
    server; default: the one it serves), ``--api-key-env`` and ``--parallel`` (requests in flight per server;
    default: what the server says it runs at once, else 1)."""

    hosts: tuple[str, ...] = ()
    model: str = ""
    api_key_env: str | None = None
    parallel: int | None = None

    def identity(self) -> dict[str, Any]:
        """What of this decides answers (which servers, which model), for eval's resume check; never the key."""
        return {"hosts": list(self.hosts), "model": self.model}


def resolve_model(spec: str) -> ModelSpec:
    """Classify ``spec`` without loading anything; errors say which forms are accepted."""
    if spec.startswith("ollama:"):
        name = spec.removeprefix("ollama:")
        if not name:
            raise LingoforgeError("ollama:NAME needs a model name, e.g. ollama:support-tickets")
        return ModelSpec(spec, "ollama", ollama_model=name)
    path = Path(spec).expanduser()
    if path.suffix == ".gguf":
        if not path.is_file():
            raise LingoforgeError(f"GGUF file {path} does not exist")
        return ModelSpec(spec, "gguf", gguf=path.resolve())
    if path.is_dir() and (path / RUN_JSON).is_file():
        return _run_folder(spec, RunFolder(path.resolve()))
    if path.is_dir() and (path / "config.json").is_file():
        return ModelSpec(spec, "hf", location=str(path.resolve()))
    if path.is_dir():
        raise LingoforgeError(
            f"{path} is neither a run folder (no run.json) nor a Hugging Face model folder (no config.json)"
        )
    from ..models import resolve_base

    try:
        base = resolve_base(spec)  # the one place that tells a missing folder from a hub id
    except LingoforgeError as exc:
        raise LingoforgeError(f"{exc} (a MODEL may also be a run folder or ollama:NAME)") from None
    return ModelSpec(spec, "hf", location=base.location, gguf=base.gguf)


def _run_folder(spec: str, run: RunFolder) -> ModelSpec:
    location = run.base_location()
    if not run.has_adapter:
        raise LingoforgeError(
            f"{run.adapter} holds no trained adapter (adapter_config.json); run `lingoforge train` on {run.root} first"
        )
    ggufs = sorted(run.export.glob("model-*.gguf"), key=lambda p: (p.name == "model-f16.gguf", p.name))
    return ModelSpec(
        spec, "run", location=str(location), adapter=run.adapter, gguf=ggufs[0] if ggufs else None, run=run
    )


def get_backend(
    model: str | ModelSpec, backend: str | None = None, *, servers: Servers | None = None, **options: Any
) -> Backend:
    """Open ``model`` on ``backend`` (default: the model's own). ``options`` go to the backend class; a served
    backend opens every server of ``servers`` and returns them as one ``Fleet``."""
    spec = resolve_model(model) if isinstance(model, str) else model
    backend = backend or spec.default_backend
    if backend not in BACKENDS:
        raise LingoforgeError(f"unknown backend {backend!r}; choose one of {', '.join(BACKENDS)}")
    if backend == "ollama" and spec.kind != "ollama":
        raise LingoforgeError(
            f"the ollama backend serves ollama:NAME models, not {spec.spec!r}; deploy it with "
            "`lingoforge deploy` and pass ollama:NAME"
        )
    if spec.kind == "ollama" and backend != "ollama":
        raise LingoforgeError(f"{spec.spec} lives on an Ollama server; use --backend ollama (or leave --backend out)")
    if backend in SERVED:
        return _fleet(spec, backend, servers or Servers(), **options)
    if backend == "llamacpp":
        if spec.gguf is None:
            raise LingoforgeError(f"no GGUF file for {spec.spec!r}: run `lingoforge export` first or pass a .gguf file")
        from .llamacpp import LlamaCppBackend

        return LlamaCppBackend(spec.gguf, **options)
    from .hf import HFBackend

    if spec.kind == "gguf" or (spec.kind == "hf" and not spec.location and spec.gguf is not None):
        from ..models import BaseModel

        # transformers dequantizes the GGUF once into the cache; evaluates the same weights in full precision.
        location = BaseModel(spec.spec, "gguf", "", None, spec.gguf).weights()
        return HFBackend(location, **options)
    return HFBackend(spec.location, adapter=spec.adapter, **options)


def _fleet(spec: ModelSpec, backend: str, servers: Servers, **options: Any) -> Backend:
    """One backend per server, as a ``Fleet``. A server that cannot be opened (unreachable, not OpenAI-compatible,
    not serving the model) is reported and left out; only when none opens is it an error."""
    from .fleet import Fleet

    members: list[Backend] = []
    parallel: list[int] = []
    failed: dict[str, str] = {}
    if backend == "ollama":
        from .ollama import OllamaBackend, ollama_host

        for host in servers.hosts or (ollama_host(None),):
            members.append(OllamaBackend(spec.ollama_model, host=host, **options))
            parallel.append(servers.parallel or 1)
    else:
        if not servers.hosts:
            raise LingoforgeError("the openai backend needs --host URL (the server's /v1 base, e.g. "
                                  "http://127.0.0.1:8000/v1)")
        from .openai import OpenAIBackend, api_key, server_slots

        api_key(servers.api_key_env)  # a missing key variable is the user's error, not one server's
        for host in servers.hosts:
            try:
                members.append(OpenAIBackend(servers.model, host, servers.api_key_env, **options))
            except LingoforgeError as exc:
                failed[host] = str(exc)
                continue
            parallel.append(servers.parallel or server_slots(host) or 1)
    if not members:
        if len(failed) == 1:
            raise LingoforgeError(next(iter(failed.values())))
        raise LingoforgeError("no server could be opened: " + "; ".join(f"{h}: {why}" for h, why in failed.items()))
    return Fleet(members, parallel, failed)

