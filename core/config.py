"""The recipe's settings: ``TrainConfig`` is the one place their defaults live.

Layers: defaults < YAML file (``--config``) < command-line flags, validated once with every problem listed. Each
field carries its command-line help and its click type, range included (``lingoforge.commands.options.config_options``
makes the flags of ``train``, ``run`` and ``plan`` from them), so a default is never restated in a help text and a
YAML value is converted and checked exactly as its flag is. ``None`` means "decided from the device or the run
folder" (``resolve``).
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from types import NoneType
from typing import Any, get_args, get_type_hints

import click

from .errors import LingoforgeError, yaml_problem
from .runfolder import RunFolder, read_token_report

DEFAULT_MAX_LEN = 2048  # without a token report


def _setting(default: Any, help: str, shown: str | None = None, **option: Any) -> Any:
    """A field with its command-line help; ``shown`` says what a ``None`` default becomes, ``option`` gives the flag
    (``flag``) or the click type with its range (``type``) when the field's name and annotation do not."""
    return field(default=default, metadata={"help": help, "shown": shown, **option})


class FiniteRange(click.FloatRange):
    """A float range that also refuses ``nan`` and ``inf``, which click's accepts (nan compares false with any
    bound) and every estimate turns into nonsense."""

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        number = super().convert(value, param, ctx)
        if not math.isfinite(number):
            self.fail(f"{value!r} is not a finite number", param, ctx)
        return number


_POSITIVE, _FRACTION = click.IntRange(min=1), FiniteRange(0, 1, max_open=True)
POSITIVE_FLOAT = FiniteRange(0, min_open=True)
_SCHEDULERS = ("cosine", "linear", "constant", "constant_with_warmup")
BALANCE_SETTINGS = ("auto", "on", "off")
SELECT_SETTINGS = ("metric", "loss")


@dataclass(frozen=True)
class TrainConfig:
    """Every knob of the recipe; the defaults are the multilingual QLoRA recipe lingoforge follows."""

    rank: int = _setting(32, "LoRA rank", type=_POSITIVE)
    alpha: int = _setting(64, "LoRA alpha", type=_POSITIVE)
    dropout: float = _setting(0.05, "LoRA dropout", type=_FRACTION)
    target_modules: str = _setting("all-linear", "Layers LoRA adapts")
    lr: float = _setting(1.5e-4, "Learning rate", type=POSITIVE_FLOAT)
    scheduler: str = _setting("cosine", "Learning-rate schedule", type=click.Choice(_SCHEDULERS))
    # transformers 5 takes the ratio as warmup_steps=<float>
    warmup: float = _setting(0.05, "Warmup, a ratio of the total steps", type=_FRACTION)
    weight_decay: float = _setting(0.0, "AdamW weight decay", type=FiniteRange(0))
    # With validation, epochs is a ceiling: the cosine schedule is sized for it and early stopping may end sooner
    # (lingoforge.selection). Kept at the recipe's 4, not raised: a higher ceiling would stretch the cosine over more
    # steps, so a run that stops where today's would end still has half its learning rate, never annealed.
    epochs: float = _setting(4.0, "Epochs; with validation the most trained (patience may stop sooner)",
                             type=POSITIVE_FLOAT)
    batch_size: int = _setting(4, "Micro-batch per device", type=_POSITIVE)
    # effective batch = batch_size x grad_accum x GPUs
    grad_accum: int = _setting(1, "Gradient accumulation steps", type=_POSITIVE)
    max_len: int | None = _setting(
        None, "Max sequence length", f"--tokens, else the run's data/tokens.json, else {DEFAULT_MAX_LEN}",
        type=click.IntRange(min=16),
    )
    load_in_4bit: bool | None = _setting(
        None, "4-bit NF4 base weights", "on for CUDA, off on CPU", flag="--4bit/--no-4bit"
    )
    gradient_checkpointing: bool | None = _setting(
        None, "Gradient checkpointing", "on for CUDA unless the GPU holds the plan without it, off on CPU",
        flag="--gradient-checkpointing/--no-gradient-checkpointing",
    )
    padding_free: bool = _setting(True, "Pack rows without padding")
    shared_prefix: bool = _setting(True, "Compute a micro-batch's shared prompt prefix once (lingoforge.shared_prefix)")
    balance: str = _setting(
        "auto", "Draw rare labels more often within each language (lingoforge.data.balance); auto: when a "
        "language's commonest label far outnumbers its rarest (training prints the counts)",
        type=click.Choice(BALANCE_SETTINGS),
    )
    seed: int = _setting(0, "Random seed")
    max_steps: int = _setting(-1, "Stop after N optimizer steps", "all epochs")  # smoke runs, benchmarks
    # The adapter is picked among validated checkpoints, so by default every validation writes one; the cadence is
    # decided once the Trainer knows the steps per epoch (lingoforge.sft_trainer.LingoTrainer).
    save_steps: int | None = _setting(
        None, "Checkpoint every N steps", "at every validation; every 50 steps without validation", type=_POSITIVE
    )
    eval_steps: int | None = _setting(
        None, "Validate every N steps", "= save steps when given, else twice per epoch", type=_POSITIVE
    )
    select: str = _setting(
        "metric", "Which validated checkpoint becomes the adapter and what early stopping watches: metric (the "
        "task's primary metric on generated answers, macro-F1 breaking ties; the loss for a task without labelled "
        "fields) or loss (the lowest validation loss)", type=click.Choice(SELECT_SETTINGS),
    )
    patience: int = _setting(
        2, "Stop after N validations without improvement (0: train every epoch)", type=click.IntRange(min=0)
    )
    save_total_limit: int = _setting(2, "Checkpoints kept", type=_POSITIVE)
    val_fraction: float = _setting(
        0.1, "Fraction of each language held out for validation when --data is one file (0: no validation)",
        flag="--val", type=_FRACTION,
    )
    eval_batch_size: int = _setting(8, "Validation micro-batch", type=_POSITIVE)
    logging_steps: int = _setting(1, "Log every N steps", type=_POSITIVE)


_HINTS = get_type_hints(TrainConfig)
# Each setting's type without ``None``, and which may be ``None``.
SETTING_TYPES: dict[str, type] = {
    name: next(t for t in (*get_args(hint), hint) if t is not NoneType) for name, hint in _HINTS.items()
}
OPTIONAL = frozenset(name for name, hint in _HINTS.items() if NoneType in get_args(hint))
_FIELDS = {f.name: f for f in fields(TrainConfig)}


def setting_type(name: str) -> click.ParamType:
    """The click type that converts and range-checks a setting, for its flag and its YAML value alike."""
    return _FIELDS[name].metadata.get("type") or click.types.convert_type(SETTING_TYPES[name])


def load_config_file(path: str | os.PathLike[str]) -> dict[str, Any]:
    """A YAML config file as a mapping (``yaml.safe_load``); keys are TrainConfig fields."""
    import yaml

    p = Path(path)
    try:
        data = yaml.safe_load(p.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise LingoforgeError(f"config file {p} does not exist") from None
    except yaml.YAMLError as exc:
        raise LingoforgeError(f"{p}: {yaml_problem(exc)}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise LingoforgeError(
            f"{p}: expected a mapping of settings (rank: 16, lr: 2e-4, ...), got {type(data).__name__}"
        )
    return data


def _convert(name: str, value: Any, problems: list[str]) -> Any:
    """``value`` through the setting's click type, as its flag would be. YAML can also give what no flag can and
    click would take silently, a bool for a number or 2.5 for an int: refused here."""
    kind = SETTING_TYPES[name]
    if (isinstance(value, bool) and kind is not bool) or (kind is int and isinstance(value, float)
                                                          and not value.is_integer()):
        problems.append(f"{name}: expected {kind.__name__}, got {value!r}")
        return value
    try:
        return setting_type(name).convert(value, None, None)
    except click.BadParameter as exc:
        problems.append(f"{name}: {exc.message}")
        return value


def make_config(*layers: Mapping[str, Any] | None) -> TrainConfig:
    """Merge setting layers over the defaults (later layers win; ``None`` values in a layer are skipped).

    Raises one ``LingoforgeError`` listing every unknown key and bad value, so a user fixes a config in one go.
    """
    problems: list[str] = []
    values: dict[str, Any] = {}
    for layer in layers:
        for key, value in (layer or {}).items():
            name = key.replace("-", "_")
            if name not in SETTING_TYPES:
                problems.append(f"{key}: unknown setting (known: {', '.join(sorted(SETTING_TYPES))})")
                continue
            if value is not None or name not in values:
                values[name] = _convert(name, value, problems) if value is not None else None
    values = {k: v for k, v in values.items() if v is not None or k in OPTIONAL}
    if not problems:
        cfg = TrainConfig(**values)
        if cfg.max_steps < 1 and cfg.max_steps != -1:
            problems.append(f"max_steps: {cfg.max_steps} is neither a number of steps (>= 1) nor -1 (all epochs)")
        if cfg.eval_steps is not None and cfg.save_steps is not None and cfg.save_steps % cfg.eval_steps:
            problems.append("save_steps: must be a multiple of eval_steps (the best adapter is picked among evaluated "
                            "checkpoints)")
    if problems:
        raise LingoforgeError("invalid training settings:\n  " + "\n  ".join(problems))
    return cfg


def max_len_source(config: TrainConfig, run: RunFolder, tokens: Path | None = None) -> tuple[int, str]:
    """The max sequence length and what set it, so a silent 2048 never hides a token report that was missed.

    Order: the settings (--max-len, --config, a resumed run), a ``tokens`` report made anywhere (--tokens), the
    run folder's ``data/tokens.json``, else 2048.
    """
    if config.max_len is not None:
        return config.max_len, "the settings (--max-len, --config or the resumed run)"
    if tokens is not None:
        return read_token_report(tokens), f"--tokens {tokens}"
    measured = run.max_seq_length()
    if measured is not None:
        return measured, str(run.token_report)
    return DEFAULT_MAX_LEN, f"the default (no --tokens and no {run.token_report}; `lingoforge tokens` measures it)"


def on_device(setting: bool | None, cuda: bool) -> bool:
    """What ``load_in_4bit`` and ``gradient_checkpointing`` left unset become: on for CUDA, off on CPU (train.py's
    docstring says why). The one place this rule is decided: training and ``plan`` both ask here; training then
    turns checkpointing off where the GPU holds its plan without it (``trainer.checkpointing_by_memory``)."""
    return cuda if setting is None else setting


def resolve(config: TrainConfig, run: RunFolder, cuda: bool) -> TrainConfig:
    """Fill the ``None`` settings from the device and the run folder's token report; validation and checkpoints
    come together (one given sets the other), and with neither given stay ``None``: the trainer decides them from
    the steps per epoch (``lingoforge.sft_trainer.LingoTrainer``)."""
    max_len, _ = max_len_source(config, run)
    return replace(
        config,
        max_len=max_len,
        load_in_4bit=on_device(config.load_in_4bit, cuda),
        gradient_checkpointing=on_device(config.gradient_checkpointing, cuda),
        eval_steps=config.eval_steps or config.save_steps,
        save_steps=config.save_steps or config.eval_steps,
    )
