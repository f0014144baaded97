"""The QLoRA recipe, top to bottom: one LoRA adapter per task, trained on mixed-language data.

    lingoforge train support_tickets --data runs/demo/data --base qwen2.5-1.5b-instruct -o runs/demo

Read this module from the top: every step of ``train`` below is one numbered comment, in the order it runs
(torchtune style: the recipe is the code, duplication is preferred over hidden indirection).

Defaults (the multilingual recipe we follow; every value can be overridden by a YAML file or a flag and is
written to run.json): LoRA rank 32 on all linear layers, alpha 64, dropout 0.05; lr 1.5e-4, cosine, warmup
ratio 0.05; 4 epochs; effective batch 4 (micro-batch 4 x accumulation 1); max length from a token report
(``--tokens FILE``, else the run's ``data/tokens.json``; key ``max_seq_length``), else 2048.

Precision. On CUDA the base model is loaded in 4-bit NF4 with double quantization and bf16 compute, with
gradient checkpointing: this is what makes a 7B model fit in about 12 GB. On CPU the default is a plain
fp32 LoRA (no 4-bit, no gradient checkpointing): bitsandbytes does run NF4 on CPU, and ``--4bit`` keeps that
path available (the tests train with it), but it dequantizes every weight for every matmul, forward and
backward, while memory is rarely what limits the small models one trains on a CPU. ``bench/bench_train.py``
times both (``cpu_precision`` in ``bench/results/train_cpu.json``): on the 2-core development machine NF4 took
19.6 s per SmolLM2-135M step against 12.1 s in fp32.

Throughput. Sequences are never padded, and the prompt prefix a micro-batch shares (chat template, system
prompt, the task's instruction: about 210 of a support ticket's ~330 tokens) is computed once: the collator
writes it once, then each example's own tokens, with a 4-D mask that lets each example see the prefix and
itself only (``lingoforge.shared_prefix``; same logits, loss and gradients as each example alone, checked by a
test; about 1.8x the tokens/s of plain padding-free rows on CPU). Where the attention kernel cannot take a
4-D mask (flash-attention), rows are packed padding-free with position ids restarting at each example. The
loss uses trl's fused LM head on CUDA, which projects only the trained positions and never materialises the
(tokens x vocab) logits; on CPU, where trl's head scores every position in Python-looped tiles,
``lingoforge.compact_head`` projects the trained positions only, in one matmul. The answer is tokenized
apart from the prompt, so training sees exactly the prompt
tokens inference sends, and the sequence ends at the assistant's end token (``<|im_end|>``) instead of
carrying the template's trailing newline.

Multi-GPU (DDP). ``accelerate launch --num_processes N "$(which lingoforge)" train ...`` (or ``torchrun
--nproc_per_node N "$(which lingoforge)" train ...``) runs one process per GPU; each loads its own 4-bit
copy on its own device, the Trainer shards the mixed-language micro-batches across processes (each one still
mixes languages), validation losses are summed over processes, and only process 0 writes the adapter and
run.json. The effective batch becomes micro-batch x accumulation x N, so divide ``--grad-accum`` by N to
keep the recipe's 4. ``tests/test_train_slow.py::test_two_cpu_processes_ddp_gloo`` runs two CPU
processes over gloo with torchrun.
"""

from __future__ import annotations

import errno
import gc
import hashlib
import json
import math
import os
import shutil
import sys
import tempfile
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any, TypeVar

from .compact_head import add_compact_lm_head, compact_head_applies
from .errors import DataError, LingoforgeError
from .export.modelfile import check_servable
from .fsutil import write_jsonl
from .models import BaseModel, materialize, resolve_base
from .prompts import example_messages, served_instruction
from .runfolder import RunFolder, file_sha256
from .schema import validate
from .scoring import normalize_text
from .shared_prefix import MASK_IMPLEMENTATIONS, SharedPrefixCollator
from .task import Example, Task

DEFAULT_MAX_LEN = 2048
CHECKPOINT_PREFIX = "checkpoint-"


class CheckpointWriteError(LingoforgeError):
    """A checkpoint could not be written (disk full, read-only folder); the partial checkpoint was removed."""


# ---------------------------------------------------------------------------------------------------------------
# Configuration: defaults < YAML file < command-line flags, validated once with every problem listed.
# ---------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class TrainConfig:
    """Every knob of the recipe. ``None`` means "decide from the device or the run folder" (see ``resolve``)."""

    rank: int = 32
    alpha: int = 64
    dropout: float = 0.05
    target_modules: str = "all-linear"
    lr: float = 1.5e-4
    scheduler: str = "cosine"
    warmup: float = 0.05  # a ratio of the total steps (transformers 5 takes it as warmup_steps=<float>)
    weight_decay: float = 0.0
    epochs: float = 4.0
    batch_size: int = 4  # micro-batch per device
    grad_accum: int = 1  # effective batch = batch_size x grad_accum x processes
    max_len: int | None = None  # None: max_seq_length of --tokens or data/tokens.json, else 2048
    load_in_4bit: bool | None = None  # None: True on CUDA, False on CPU (module docstring)
    gradient_checkpointing: bool | None = None  # None: same as load_in_4bit's device default (on for CUDA)
    padding_free: bool = True
    shared_prefix: bool = True  # compute the prompt prefix the micro-batch shares once (lingoforge.shared_prefix)
    seed: int = 0
    max_steps: int = -1  # > 0 stops early (smoke runs, benchmarks)
    save_steps: int = 50
    eval_steps: int | None = None  # None: save_steps (the best adapter is chosen among saved checkpoints)
    save_total_limit: int = 2
    val_fraction: float = 0.1  # held out per language when --data is a single file; 0: no validation
    eval_batch_size: int = 8
    logging_steps: int = 1

    @property
    def effective_batch(self) -> int:
        return self.batch_size * self.grad_accum


_T = TypeVar("_T")
_CONFIG_TYPES: dict[str, type] = {f.name: f.type for f in fields(TrainConfig)}  # type: ignore[misc]


def load_config_file(path: str | os.PathLike[str]) -> dict[str, Any]:
    """A YAML config file as a mapping (``yaml.safe_load``); keys are TrainConfig fields."""
    import yaml

    p = Path(path)
    try:
        data = yaml.safe_load(p.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise LingoforgeError(f"config file {p} does not exist") from None
    except yaml.YAMLError as exc:
        raise LingoforgeError(f"{p}: not valid YAML: {exc}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise LingoforgeError(
            f"{p}: expected a mapping of settings (rank: 16, lr: 2e-4, ...), got {type(data).__name__}"
        )
    return data


def _coerce(name: str, value: Any, problems: list[str]) -> Any:
    kind = _CONFIG_TYPES[name]
    optional = "None" in str(kind)
    if value is None:
        if optional:
            return None
        problems.append(f"{name}: must be set")
        return value
    base = str(kind).replace(" | None", "")
    try:
        if base == "bool":
            if isinstance(value, bool):
                return value
            if str(value).lower() in ("true", "yes", "1", "on"):
                return True
            if str(value).lower() in ("false", "no", "0", "off"):
                return False
            raise ValueError(value)
        if base == "int":
            if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
                raise ValueError(value)
            return int(value)
        if base == "float":
            if isinstance(value, bool):
                raise ValueError(value)
            return float(value)
        return str(value)
    except (TypeError, ValueError):
        problems.append(f"{name}: expected {base}, got {value!r}")
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
            if name not in _CONFIG_TYPES:
                problems.append(f"{key}: unknown setting (known: {', '.join(sorted(_CONFIG_TYPES))})")
                continue
            if value is not None or name not in values:
                values[name] = _coerce(name, value, problems) if value is not None else None
    values = {k: v for k, v in values.items() if v is not None or "None" in str(_CONFIG_TYPES[k])}
    if not problems:
        cfg = TrainConfig(**values)
        checks = [
            (cfg.rank > 0, "rank: must be > 0"),
            (cfg.alpha > 0, "alpha: must be > 0"),
            (0 <= cfg.dropout < 1, "dropout: must be in [0, 1)"),
            (cfg.lr > 0, "lr: must be > 0"),
            (0 <= cfg.warmup < 1, "warmup: a ratio in [0, 1)"),
            (cfg.epochs > 0, "epochs: must be > 0"),
            (cfg.batch_size > 0, "batch_size: must be > 0"),
            (cfg.grad_accum > 0, "grad_accum: must be > 0"),
            (cfg.max_len is None or cfg.max_len >= 16, "max_len: must be >= 16"),
            (cfg.save_steps > 0, "save_steps: must be > 0"),
            (cfg.eval_steps is None or cfg.eval_steps > 0, "eval_steps: must be > 0"),
            (
                cfg.eval_steps is None or cfg.save_steps % cfg.eval_steps == 0,
                "save_steps: must be a multiple of eval_steps (the best adapter is picked among evaluated checkpoints)",
            ),
            (0 <= cfg.val_fraction < 1, "val_fraction: must be in [0, 1) (0: no validation split)"),
            (cfg.save_total_limit >= 1, "save_total_limit: must be >= 1"),
            (
                cfg.scheduler in ("cosine", "linear", "constant", "constant_with_warmup"),
                "scheduler: cosine, linear, constant or constant_with_warmup",
            ),
        ]
        problems += [msg for ok, msg in checks if not ok]
    if problems:
        raise LingoforgeError("invalid training settings:\n  " + "\n  ".join(problems))
    return cfg


def read_token_report(path: Path) -> int:
    """``max_seq_length`` of a token report (``lingoforge tokens FILE --json`` output, or a run's data/tokens.json)."""
    try:
        report = json.loads(path.read_text(encoding="utf-8-sig"))
    except FileNotFoundError:
        raise LingoforgeError(f"token report {path} does not exist") from None
    except (OSError, ValueError) as exc:
        raise LingoforgeError(
            f"{path}: not a JSON token report ({exc}); write one with `lingoforge tokens FILE --tokenizer T --json`"
        ) from None
    value = report.get("max_seq_length") if isinstance(report, dict) else None
    if isinstance(value, bool) or not isinstance(value, int) or value < 16:
        raise LingoforgeError(
            f"{path}: max_seq_length: expected an integer >= 16, got {value!r}; rerun `lingoforge tokens ... --json` "
            "or pass --max-len"
        )
    return value


def max_len_source(config: TrainConfig, run: RunFolder, tokens: Path | None = None) -> tuple[int, str]:
    """The max sequence length and what set it, so a silent 2048 never hides a token report that was missed.

    Order: the settings (--max-len, --config, a resumed run), a ``tokens`` report made anywhere (--tokens), the
    run folder's ``data/tokens.json``, else 2048.
    """
    if config.max_len is not None:
        return config.max_len, "the settings (--max-len, --config or the resumed run)"
    if tokens is not None:
        return read_token_report(tokens), f"--tokens {tokens}"
    report = run.data / "tokens.json"
    if report.is_file():
        return read_token_report(report), str(report)
    return DEFAULT_MAX_LEN, f"the default (no --tokens and no {report}; `lingoforge tokens` measures it)"


def resolve(config: TrainConfig, run: RunFolder, cuda: bool) -> TrainConfig:
    """Fill the ``None`` settings from the device and the run folder's token report."""
    max_len, _ = max_len_source(config, run)
    four_bit = cuda if config.load_in_4bit is None else config.load_in_4bit
    checkpointing = cuda if config.gradient_checkpointing is None else config.gradient_checkpointing
    eval_steps = config.eval_steps or config.save_steps
    return replace(
        config, max_len=max_len, load_in_4bit=four_bit, gradient_checkpointing=checkpointing, eval_steps=eval_steps
    )


# ---------------------------------------------------------------------------------------------------------------
# Data: canonical JSONL in, checked against the task schema, tokenized with the answer-only loss mask.
# ---------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Located:
    """An example and where it came from (``file:line``), so every data error can name the line to fix."""

    example: Example
    where: str


def read_examples(path: Path, task: Task) -> list[Located]:
    """Every example of a JSONL/CSV file via ``lingoforge.data.io`` (which also converts the seed ``key: value``
    and chat formats), each tagged with its file and line; any unusable line stops training, listed."""
    from .data.io import read_records

    if not path.is_file():
        raise DataError(f"data file {path} does not exist")
    result = read_records(path, task)
    if result.findings:
        raise DataError(
            _listed(
                f"{path}: {len(result.findings)} unusable line(s) (`lingoforge data check {path} --task {task.name} "
                "--fix CLEAN.jsonl` drops them)",
                [str(f) for f in result.findings],
            )
        )
    if not result.records:
        raise DataError(f"{path} holds no examples")
    return [Located(r.example, f"{path}:{r.line}") for r in result.records]


def _listed(head: str, problems: Sequence[str], limit: int = 10) -> str:
    more = f"\n  ... and {len(problems) - limit} more" if len(problems) > limit else ""
    return head + ":\n  " + "\n  ".join(problems[:limit]) + more


def holdout_score(example: Example, seed: int) -> float:
    """An example's place in [0, 1) for the validation split: a hash of the seed and its input as ``data check``
    normalises it for duplicates, so its side depends on nothing else in the file and duplicates share a side."""
    digest = hashlib.sha256(f"{seed}\x00{normalize_text(example.input)}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def split_validation(items: Sequence[Located], fraction: float, seed: int) -> tuple[list[Located], list[Located]]:
    """Train and validation examples of one file: validation is every example whose ``holdout_score`` is below
    ``fraction``, decided per example, so adding rows to any language moves no existing row between the two.

    The price of that stability is that each language holds out about ``fraction`` of its examples, not exactly.
    A language with two or more examples keeps at least one on each side (its lowest-scored example validates,
    its highest trains), so per-language validation loss exists for every language; a single example trains.
    That borrowed row is the one exception to stability: it returns to training once a row of its language falls
    under ``fraction`` by its own hash.
    """
    if fraction == 0:
        return list(items), []
    scores = [holdout_score(item.example, seed) for item in items]
    held = [score < fraction for score in scores]
    by_lang: dict[str, list[int]] = defaultdict(list)
    for k, item in enumerate(items):
        by_lang[item.example.language].append(k)
    for indices in by_lang.values():
        if len(indices) == 1:
            held[indices[0]] = False
            continue
        if not any(held[k] for k in indices):
            held[min(indices, key=scores.__getitem__)] = True
        if all(held[k] for k in indices):
            held[max(indices, key=scores.__getitem__)] = False
    return [i for i, h in zip(items, held, strict=True) if not h], [i for i, h in zip(items, held, strict=True) if h]


def describe_holdout(train_items: Sequence[Located], val_items: Sequence[Located], fraction: float) -> str:
    """What a single data file lost to validation, per language: those examples are not trained on."""
    languages = sorted({i.example.language for i in [*train_items, *val_items]})
    held = Counter(i.example.language for i in val_items)
    return (
        f"held out {len(val_items)} of {len(train_items) + len(val_items)} examples for validation "
        f"(about {fraction * 100:g}% per language, chosen by a hash of each input, so adding examples moves none): "
        + ", ".join(f"{lang} {held[lang]}" for lang in languages)
        + "; pass --val to change (0: no validation)"
    )


def load_data(
    data: Path, task: Task, val_fraction: float, seed: int
) -> tuple[list[Located], list[Located], dict[str, str]]:
    """Train and validation examples from a split folder (train.jsonl + val.jsonl) or one file.

    A single file gets a validation split held out per language by ``split_validation`` (none when
    ``val_fraction`` is 0); a folder's own val.jsonl is used as it is.
    """
    if data.is_dir():
        train_file, val_file = data / "train.jsonl", data / "val.jsonl"
        if not train_file.is_file():
            raise DataError(f"{data} has no train.jsonl; run `lingoforge data split` or pass a JSONL file")
        if not val_file.is_file():
            raise DataError(
                f"{data} has train.jsonl but no val.jsonl; run `lingoforge data split` or pass a JSONL file"
            )
        return (
            read_examples(train_file, task),
            read_examples(val_file, task),
            {"train": str(train_file), "val": str(val_file)},
        )
    train_items, val_items = split_validation(read_examples(data, task), val_fraction, seed)
    if val_fraction > 0 and not val_items:
        raise DataError(
            f"{data}: no language has two examples, so none can be held out for validation; add examples, "
            "pass --val 0 to train without validation, or pass a folder with val.jsonl"
        )
    return train_items, val_items, {"train+val": str(data)}


def check_outputs(task: Task, items: Sequence[Located]) -> None:
    """Every output must validate against the task schema: catches data written for another task."""
    problems = []
    for item in items:
        issues = validate(task.schema, dict(item.example.output))
        if issues:
            problems.append(f"{item.where}: {'; '.join(str(i) for i in issues[:3])}")
        elif not item.example.language:
            problems.append(
                f'{item.where}: no language (add "language": "<ISO 639-1>"; `lingoforge data check` can detect it)'
            )
    if problems:
        raise DataError(
            _listed(
                f"{len(problems)} of {len(items)} examples do not fit task {task.name!r} (is this data for another task?)",
                problems,
            )
        )


@dataclass(frozen=True)
class Encoded:
    """One tokenized training sequence: the prompt (label -100) then the answer and its end token (trained)."""

    input_ids: list[int]
    labels: list[int]
    language: str
    where: str

    @property
    def trainable(self) -> int:
        return sum(1 for t in self.labels if t != -100)


def end_token(tokenizer: Any) -> str:
    """The token that closes an assistant turn: ``<|im_end|>`` for ChatML models, else the tokenizer's eos."""
    vocab = tokenizer.get_vocab()
    if "<|im_end|>" in vocab and "<|im_end|>" in (tokenizer.chat_template or ""):
        return "<|im_end|>"
    if tokenizer.eos_token is None:
        raise LingoforgeError(
            "the tokenizer has neither <|im_end|> nor an eos token; the model could not learn to stop"
        )
    return str(tokenizer.eos_token)


def encode(task: Task, items: Sequence[Located], tokenizer: Any, max_len: int) -> list[Encoded]:
    """Tokenize with the base model's chat template; only the answer JSON and its end token get labels.

    The prompt is tokenized exactly as inference will send it (``add_generation_prompt=True``) and the answer
    apart, so training never sees a prompt/answer boundary merged into one token. Any example whose prompt or
    full sequence exceeds ``max_len`` is an error naming the line and lengths: truncating an answer silently
    would teach the model to stop mid-JSON.
    """
    if not getattr(tokenizer, "chat_template", None):
        raise LingoforgeError(
            "the base model's tokenizer has no chat template; use an instruct/chat model or a folder with chat_template.jinja"
        )
    stop = end_token(tokenizer)
    stop_id = tokenizer.convert_tokens_to_ids(stop)
    encoded: list[Encoded] = []
    too_long: list[str] = []
    for item in items:
        messages = example_messages(task, item.example)
        prompt_text = tokenizer.apply_chat_template(messages[:-1], tokenize=False, add_generation_prompt=True)
        full_text = tokenizer.apply_chat_template(messages, tokenize=False)
        if not full_text.startswith(prompt_text):
            raise LingoforgeError(
                "the chat template renders the prompt differently once the answer is added; "
                "training and inference prompts would differ. Use a template without that behaviour."
            )
        prompt_ids = tokenizer(prompt_text, add_special_tokens=False)["input_ids"]
        answer_ids = tokenizer(full_text[len(prompt_text) :], add_special_tokens=False)["input_ids"]
        if stop_id not in answer_ids:
            raise LingoforgeError(
                f"{item.where}: the chat template does not close the answer with {stop}; "
                "the model would never learn to stop"
            )
        answer_ids = answer_ids[: answer_ids.index(stop_id) + 1]  # the template's trailing newline is not trained
        total = len(prompt_ids) + len(answer_ids)
        if len(prompt_ids) >= max_len:
            too_long.append(
                f"{item.where} ({item.example.language}): prompt alone is {len(prompt_ids)} tokens >= max length {max_len}"
            )
        elif total > max_len:
            too_long.append(
                f"{item.where} ({item.example.language}): prompt {len(prompt_ids)} + answer {len(answer_ids)} = {total} tokens > max length {max_len}"
            )
        encoded.append(
            Encoded(prompt_ids + answer_ids, [-100] * len(prompt_ids) + answer_ids, item.example.language, item.where)
        )
    if too_long:
        longest = max(len(e.input_ids) for e in encoded)
        raise DataError(
            _listed(
                f"{len(too_long)} example(s) do not fit max length {max_len} (longest sequence: {longest} tokens); "
                f"raise --max-len to at least {longest}, or shorten those inputs — answers are never truncated",
                too_long,
            )
        )
    return encoded


def check_masks(encoded: Sequence[Encoded], end_token_id: int) -> dict[str, dict[str, int]]:
    """Verify every example trains on its answer and end token; return per-language token counts.

    This guards the classic silent failure (pitfall 4): a mask that hides every label still yields a
    loss curve, and a pad token equal to the end token can hide ``<|im_end|>`` so the model never stops.
    """
    problems = []
    report: dict[str, dict[str, int]] = {}
    for enc in encoded:
        if enc.trainable == 0:
            problems.append(f"{enc.where}: no trainable tokens")
        elif end_token_id not in [t for t in enc.labels if t != -100]:
            problems.append(f"{enc.where}: the end token is not among the trained labels")
        row = report.setdefault(enc.language, {"examples": 0, "tokens": 0, "trainable_tokens": 0})
        row["examples"] += 1
        row["tokens"] += len(enc.input_ids)
        row["trainable_tokens"] += enc.trainable
    if problems:
        raise LingoforgeError(_listed("the loss mask is broken", problems))
    return dict(sorted(report.items()))


def examples_sha256(items: Sequence[Located]) -> str:
    """Hash of the canonical JSONL lines: identical to ``file_sha256`` of the file ``write_jsonl`` makes of them."""
    h = hashlib.sha256()
    for item in items:
        h.update((json.dumps(item.example.to_record(), ensure_ascii=False, separators=(",", ":")) + "\n").encode())
    return h.hexdigest()


# ---------------------------------------------------------------------------------------------------------------
# The trainer: trl's SFTTrainer with our sampler, per-language validation loss and safe checkpoints.
# ---------------------------------------------------------------------------------------------------------------


def _trainer_class() -> type:
    """Built lazily so that importing this module (e.g. for ``plan``) does not import torch and trl."""
    import torch
    from trl import SFTTrainer

    class LingoTrainer(SFTTrainer):
        """SFTTrainer + mixed-language sampler + exact per-language validation loss + checkpoint cleanup."""

        def __init__(
            self, *args: Any, train_languages: Sequence[str], val_by_language: Mapping[str, Any], **kwargs: Any
        ) -> None:
            self.train_languages = list(train_languages)
            self.val_by_language = dict(val_by_language)
            super().__init__(*args, **kwargs)
            base = self.model.get_base_model() if hasattr(self.model, "get_base_model") else self.model
            if self.args.device.type == "cpu" and compact_head_applies(base):
                add_compact_lm_head(base)

        def compute_loss(self, model: Any, inputs: dict[str, Any], *args: Any, **kwargs: Any) -> Any:
            """trl's loss; with shared-prefix rows, ``num_tokens`` counts the examples' tokens (trl would sum
            the 4-D attention mask), so tokens/s means the same data throughput with and without sharing."""
            example_tokens = inputs.pop("example_tokens", None)
            counted = self._total_train_tokens
            loss = super().compute_loss(model, inputs, *args, **kwargs)
            if example_tokens is not None and model.training:
                total = self.accelerator.gather_for_metrics(example_tokens.reshape(1)).sum().item()
                self._total_train_tokens = counted + int(total)
                self._metrics["train"]["num_tokens"] = [self._total_train_tokens]
            return loss

        def _get_train_sampler(self, train_dataset: Any = None) -> Any:
            """Every micro-batch mixes languages (``lingoforge.data.interleave``); the order depends only on
            (seed, epoch), so a resumed run replays the same batches and skips those already trained."""
            try:
                from .data.interleave import MixedLanguageSampler
            except ImportError as exc:
                raise LingoforgeError(
                    f"mixed-language batches need lingoforge.data.interleave, which does not import ({exc}); "
                    "reinstall lingoforge"
                ) from None
            return MixedLanguageSampler(self.train_languages, self.args.per_device_train_batch_size, self.args.seed)

        def evaluate(
            self, eval_dataset: Any = None, ignore_keys: Any = None, metric_key_prefix: str = "eval"
        ) -> dict[str, float]:
            """Token-weighted loss per language and overall, in one pass over each language's examples.

            The Trainer's own eval loss averages batch means, which weights a short-answer language the same
            as a long one; summing token losses gives the exact mean and a per-language figure to compare.
            """
            model = self.model
            model.eval()
            totals = {}
            for lang, dataset in self.val_by_language.items():
                sums = torch.zeros(2, dtype=torch.float64, device=self.args.device)
                for batch in self.get_eval_dataloader(dataset):
                    batch = self._prepare_inputs(batch)
                    tokens = (batch["labels"][:, 1:] != -100).sum()
                    with torch.no_grad(), self.compute_loss_context_manager():
                        loss = self.compute_loss(model, batch)
                    sums += torch.stack([loss.detach().double() * tokens, tokens.double()])
                totals[lang] = self.accelerator.reduce(sums, reduction="sum").tolist()
            loss_sum = sum(s for s, _ in totals.values())
            tokens_all = sum(n for _, n in totals.values())
            metrics = {f"{metric_key_prefix}_loss": loss_sum / max(tokens_all, 1)}
            metrics |= {f"{metric_key_prefix}_loss_{lang}": s / max(n, 1) for lang, (s, n) in totals.items()}
            self.log(metrics)
            self.control = self.callback_handler.on_evaluate(self.args, self.state, self.control, metrics)
            return metrics

        def _save_checkpoint(self, model: Any, trial: Any) -> None:
            """A failed checkpoint write (disk full) removes the partial folder and says what to do."""
            folder = Path(self.args.output_dir) / f"{CHECKPOINT_PREFIX}{self.state.global_step}"
            try:
                super()._save_checkpoint(model, trial)
            except OSError as exc:
                shutil.rmtree(folder, ignore_errors=True)
                free = shutil.disk_usage(folder.parent).free / 2**30 if folder.parent.exists() else float("nan")
                hint = "free some disk space" if exc.errno == errno.ENOSPC else "check the folder's permissions"
                raise CheckpointWriteError(
                    f"could not write checkpoint {folder}: {exc.strerror or exc} ({free:.1f} GiB free there); {hint}, "
                    "then rerun with --resume to continue from the last complete checkpoint"
                ) from exc

    return LingoTrainer


def complete_checkpoints(folder: Path) -> list[Path]:
    """Checkpoints whose trainer_state.json (written last by the Trainer) parses, oldest first.

    A ``kill -9`` during a save leaves a folder without a readable trainer_state.json; it is skipped.
    """
    found = []
    for path in folder.glob(f"{CHECKPOINT_PREFIX}*"):
        try:
            json.loads((path / "trainer_state.json").read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        if path.name[len(CHECKPOINT_PREFIX) :].isdigit():
            found.append(path)
    return sorted(found, key=lambda p: int(p.name[len(CHECKPOINT_PREFIX) :]))


# ---------------------------------------------------------------------------------------------------------------
# Progress: one bar with loss, tokens/s and ETA; per-language validation lines.
# ---------------------------------------------------------------------------------------------------------------


def _progress_callback(quiet: bool) -> Any:
    from transformers import TrainerCallback

    class Progress(TrainerCallback):
        """A rich progress bar (loss, tokens/s, ETA) on the main process; records throughput for run.json."""

        def __init__(self) -> None:
            self.bar: Any = None
            self.task: Any = None
            self.start = 0.0
            self.start_step = 0
            self.tokens = 0
            self.tokens_per_second = 0.0
            self.seconds_per_step = 0.0

        def on_train_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            self.start, self.start_step = time.perf_counter(), state.global_step
            if quiet or not state.is_world_process_zero:
                return
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

            self.bar = Progress(
                TextColumn("train"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("{task.description}"),
                TextColumn("ETA"),
                TimeRemainingColumn(),
                transient=False,
            )
            self.bar.start()
            self.task = self.bar.add_task("", total=state.max_steps, completed=state.global_step)

        def on_log(
            self, args: Any, state: Any, control: Any, logs: dict[str, float] | None = None, **kwargs: Any
        ) -> None:
            logs = logs or {}
            elapsed = time.perf_counter() - self.start
            if "num_tokens" in logs and "loss" in logs:
                self.tokens = int(logs["num_tokens"])
                self.tokens_per_second = self.tokens / elapsed if elapsed > 0 else 0.0
                steps = state.global_step - self.start_step
                self.seconds_per_step = elapsed / steps if steps else 0.0
                if self.bar is not None:
                    self.bar.update(
                        self.task,
                        completed=state.global_step,
                        description=f"loss {logs['loss']:.4f}  {self.tokens_per_second:,.0f} tok/s",
                    )
            elif "eval_loss" in logs and self.bar is not None:
                per_lang = "  ".join(
                    f"{k.removeprefix('eval_loss_')} {v:.4f}" for k, v in logs.items() if k.startswith("eval_loss_")
                )
                self.bar.console.print(
                    f"step {state.global_step}: validation loss {logs['eval_loss']:.4f}  ({per_lang})"
                )

        def on_train_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            if self.bar is not None:
                self.bar.update(self.task, completed=state.global_step)
                self.bar.stop()

    return Progress()


# ---------------------------------------------------------------------------------------------------------------
# CUDA out-of-memory: halve the micro-batch, double accumulation, keep the effective batch.
# ---------------------------------------------------------------------------------------------------------------


def is_out_of_memory(exc: BaseException) -> bool:
    """True for CUDA out-of-memory errors (torch raises ``torch.OutOfMemoryError``, a RuntimeError)."""
    import torch

    return isinstance(exc, torch.OutOfMemoryError) or (
        isinstance(exc, RuntimeError) and "out of memory" in str(exc).lower()
    )


def with_oom_retry(
    attempt: Callable[[int, int], _T],
    batch_size: int,
    grad_accum: int,
    say: Callable[[str], None] = print,
    on_retry: Callable[[], None] | None = None,
) -> tuple[_T, int, int]:
    """Run ``attempt(batch_size, grad_accum)``; on out-of-memory halve the micro-batch and double accumulation.

    Returns the result and the micro-batch and accumulation that worked. At micro-batch 1 the error is final,
    with the advice that is left (shorter max length, a smaller model, ``lingoforge plan``).
    """
    while True:
        try:
            return attempt(batch_size, grad_accum), batch_size, grad_accum
        except Exception as exc:
            if not is_out_of_memory(exc):
                raise
            if batch_size == 1:
                raise LingoforgeError(
                    "out of GPU memory even at micro-batch 1; lower --max-len, lower --rank, use a smaller base "
                    "model, or check `lingoforge plan`"
                ) from exc
            # Exactly 2x accumulation for an even micro-batch; an odd one rounds the effective batch up.
            new_batch = batch_size // 2
            new_accum = math.ceil(batch_size * grad_accum / new_batch)
            say(
                f"out of GPU memory at micro-batch {batch_size} x accumulation {grad_accum}; retrying with "
                f"{new_batch} x {new_accum} (effective batch {new_batch * new_accum})"
            )
            if on_retry is not None:
                on_retry()
            batch_size, grad_accum = new_batch, new_accum


# ---------------------------------------------------------------------------------------------------------------
# The recipe.
# ---------------------------------------------------------------------------------------------------------------


@dataclass
class TrainResult:
    """What a training run produced; the same figures are in run.json under ``train``."""

    adapter_dir: Path
    run_json: Path
    steps: int
    train_loss: float | None
    best_eval_loss: float | None
    eval_loss_by_language: dict[str, float]
    trainable_tokens_by_language: dict[str, int]
    batch_size: int
    grad_accum: int
    seconds: float
    tokens_per_second: float
    seconds_per_step: float
    history: list[dict[str, float]] = field(default_factory=list)


def _versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    out = {"python": sys.version.split()[0]}
    for name in ("lingoforge", "torch", "transformers", "peft", "trl", "bitsandbytes", "accelerate", "datasets"):
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            out[name] = "not installed"
    return out


def _say(quiet: bool) -> Callable[[str], None]:
    def say(message: str) -> None:
        if not quiet:
            print(message, file=sys.stderr, flush=True)

    return say


def train(
    task: Task,
    train_examples: Sequence[Example | Located],
    val_examples: Sequence[Example | Located],
    base: str | BaseModel,
    out_dir: str | os.PathLike[str],
    config: TrainConfig | None = None,
    *,
    resume: bool = False,
    force: bool = False,
    quiet: bool = False,
    sources: Mapping[str, Any] | None = None,
    callbacks: Sequence[Any] = (),
) -> TrainResult:
    """Train one LoRA adapter for ``task`` and write ``adapter/`` and ``run.json`` in the run folder ``out_dir``.

    ``resume`` continues from the last complete checkpoint in ``adapter/checkpoints``; ``force`` trains even
    when the memory plan says the model does not fit; ``callbacks`` are extra ``TrainerCallback``s (the
    pipeline's own progress, benchmarks' timers). Errors are ``LingoforgeError`` naming what to fix.
    """
    import torch

    started = time.perf_counter()
    say = _say(quiet)
    run = RunFolder(Path(out_dir))
    cuda = torch.cuda.is_available()
    main = int(os.environ.get("RANK", "0")) == 0  # under DDP only process 0 writes run.json and the adapter

    # 1. Settings: defaults < config file < flags (merged by the caller), then device and token-report defaults.
    cfg = resolve(config or TrainConfig(), run, cuda)

    # 2. Data: tag plain Examples with their position, check every output against the task schema.
    train_items = [
        e if isinstance(e, Located) else Located(e, f"train example {i + 1}") for i, e in enumerate(train_examples)
    ]
    val_items = [
        e if isinstance(e, Located) else Located(e, f"validation example {i + 1}") for i, e in enumerate(val_examples)
    ]
    if not train_items:
        raise DataError(f"training needs training examples (got none, and {len(val_items)} validation examples)")
    if not val_items:
        say("no validation examples: training without validation loss; the adapter is the last checkpoint")
    check_outputs(task, train_items + val_items)
    instruction = served_instruction(task, [i.example for i in train_items])
    check_servable(task.system_prompt, instruction)  # the Modelfile must carry them: refuse before training
    data_hashes = {"train": examples_sha256(train_items), "val": examples_sha256(val_items)}

    # 3. Resume or fresh start: a fresh start never overwrites a trained run; a resume must see the same data.
    previous = run.read()
    checkpoints = complete_checkpoints(run.checkpoints)
    if resume:
        if not checkpoints:
            raise LingoforgeError(
                f"nothing to resume: no complete checkpoint in {run.checkpoints}; run without --resume"
            )
        recorded = (previous.get("train") or {}).get("data_sha256")
        if recorded and recorded != data_hashes:
            raise LingoforgeError(
                f"--resume with different data than {run.run_json} records; use the same --data or start a new run folder"
            )
    elif checkpoints or (run.adapter / "adapter_config.json").is_file():
        raise LingoforgeError(
            f"{run.root} already holds a trained adapter or checkpoints; pass --resume to continue, "
            "or choose another -o folder"
        )

    # 4. Base model and tokenizer: presets and GGUF files resolve to a local folder (GGUF is dequantized once).
    base_model = base if isinstance(base, BaseModel) else resolve_base(base)
    t0 = time.perf_counter()
    location = materialize(base_model)
    from transformers import AutoConfig, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(location)
    model_config = AutoConfig.from_pretrained(location)

    # 5. Tokenize with the loss mask, then prove the mask: every example trains on its answer and end token.
    stop = end_token(tokenizer)
    train_enc = encode(task, train_items, tokenizer, cfg.max_len)  # type: ignore[arg-type]
    val_enc = encode(task, val_items, tokenizer, cfg.max_len)  # type: ignore[arg-type]
    train_report = check_masks(train_enc, tokenizer.convert_tokens_to_ids(stop))
    val_report = check_masks(val_enc, tokenizer.convert_tokens_to_ids(stop))
    say(
        "trainable tokens per language (train): "
        + ", ".join(
            f"{lang} {row['trainable_tokens']:,} in {row['examples']} examples" for lang, row in train_report.items()
        )
    )
    prepare_seconds = time.perf_counter() - t0

    # 6. Memory plan before loading anything big: refuse with the numbers unless --force.
    from .plan import device_memory_gb, plan

    lengths = sorted((len(e.input_ids) for e in train_enc), reverse=True)
    estimate = plan(
        model_config,
        rank=cfg.rank,
        max_len=cfg.max_len,
        batch_size=cfg.batch_size,  # type: ignore[arg-type]
        load_in_4bit=bool(cfg.load_in_4bit),
        gradient_checkpointing=bool(cfg.gradient_checkpointing),
        examples=len(train_enc),
        mean_tokens=sum(lengths) / len(lengths),
        epochs=cfg.epochs,
        longest_batch_tokens=sum(lengths[: cfg.batch_size]),
        weight_bytes=2 if cuda else 4,
        cuda=cuda,
    )
    available = device_memory_gb(cuda)
    if available is not None and estimate["peak_gb"] > available:
        message = (
            f"the plan needs about {estimate['peak_gb']:.1f} GB but the {'GPU' if cuda else 'machine'} has {available:.1f} GB: "
            f"{estimate['summary']}. Lower --batch-size (accumulation keeps the effective batch), --max-len or --rank, "
            "or pass --force to try anyway"
        )
        if not force:
            raise LingoforgeError(message)
        say("warning: " + message)

    # 7. Record the run before training, so a killed run still says what it was doing.
    run.root.mkdir(parents=True, exist_ok=True)
    if main:
        run.update(
            task={"name": task.name, "version": task.version},
            base={
                "spec": base_model.spec,
                "kind": base_model.kind,
                "location": location,
                "preset": base_model.preset.name if base_model.preset else None,
                "gguf": str(base_model.gguf) if base_model.gguf else None,
            },
            chat_template=tokenizer.chat_template,
            train={
                "status": "running",
                "config": asdict(cfg),
                "data_sha256": data_hashes,
                "data_sources": dict(sources or {}),
                "examples": {"train": len(train_enc), "val": len(val_enc)},
                "end_token": stop,
                "instruction": instruction,
                "longest_answer_tokens": max(e.trainable for e in train_enc),
                "tokens_by_language": {"train": train_report, "val": val_report},
                "plan": estimate,
                "versions": _versions(),
                "device": "cuda" if cuda else "cpu",
            },
        )

    # 8. Datasets: input_ids + labels only; languages travel beside them for the sampler and the validation split.
    from datasets import Dataset

    def as_dataset(rows: Sequence[Encoded]) -> Any:
        return Dataset.from_dict({"input_ids": [r.input_ids for r in rows], "labels": [r.labels for r in rows]})

    train_ds = as_dataset(train_enc)
    val_by_language = {
        lang: as_dataset([r for r in val_enc if r.language == lang]) for lang in sorted({r.language for r in val_enc})
    }

    # 9. Model, trainer, training, with the out-of-memory retry around them (each retry reloads the model).
    trainer_cls = _trainer_class()
    progress = _progress_callback(quiet)

    retried = False  # after an out-of-memory retry, continue from the last checkpoint that attempt wrote

    def attempt(batch_size: int, grad_accum: int) -> Any:
        model = load_model(location, cfg, cuda)
        shared = cfg.shared_prefix and model.config._attn_implementation in MASK_IMPLEMENTATIONS
        trainer = trainer_cls(
            model=model,
            args=sft_config(cfg, run, batch_size, grad_accum, cuda, shared, validate=bool(val_enc)),
            data_collator=SharedPrefixCollator() if shared else None,
            train_dataset=train_ds,
            eval_dataset=next(iter(val_by_language.values()), None),  # evaluate() reads val_by_language
            processing_class=tokenizer,
            peft_config=lora_config(cfg),
            callbacks=[progress, *callbacks],
            train_languages=[r.language for r in train_enc],
            val_by_language=val_by_language,
        )
        done = complete_checkpoints(run.checkpoints)
        if main:
            _remove_partial_checkpoints(run.checkpoints, done)
        trainer.train(resume_from_checkpoint=str(done[-1]) if (resume or retried) and done else None)
        return trainer

    def on_retry() -> None:
        nonlocal retried
        retried = True
        gc.collect()
        if cuda:
            torch.cuda.empty_cache()

    t1 = time.perf_counter()
    try:
        trainer, batch_size, grad_accum = with_oom_retry(attempt, cfg.batch_size, cfg.grad_accum, say, on_retry)
    except BaseException as exc:
        if main:
            run.update(train={"status": "failed", "error": f"{type(exc).__name__}: {exc}"})
        raise
    train_seconds = time.perf_counter() - t1

    # 10. Save the best adapter (the Trainer loaded it at the end) atomically, with the tokenizer and template.
    if main:
        save_adapter(trainer, run.adapter)
    history = [dict(entry) for entry in trainer.state.log_history]
    evals = [h for h in history if "eval_loss" in h]
    best = min(evals, key=lambda h: h["eval_loss"]) if evals else {}
    train_losses = [h["loss"] for h in history if "loss" in h]
    result = TrainResult(
        adapter_dir=run.adapter,
        run_json=run.run_json,
        steps=trainer.state.global_step,
        train_loss=train_losses[-1] if train_losses else None,
        best_eval_loss=best.get("eval_loss"),
        eval_loss_by_language={k.removeprefix("eval_loss_"): v for k, v in best.items() if k.startswith("eval_loss_")},
        trainable_tokens_by_language={k: v["trainable_tokens"] for k, v in train_report.items()},
        batch_size=batch_size,
        grad_accum=grad_accum,
        seconds=time.perf_counter() - started,
        tokens_per_second=progress.tokens_per_second,
        seconds_per_step=progress.seconds_per_step,
        history=history,
    )

    # 11. run.json: outcome, history and timings (the adapter is complete before this says "done").
    if main:
        run.update(
            train={
                "status": "done",
                "steps": result.steps,
                "best_step": best.get("step"),
                "best_eval_loss": result.best_eval_loss,
                "eval_loss_by_language": result.eval_loss_by_language,
                "final_train_loss": result.train_loss,
                "batch_size": batch_size,
                "grad_accum": grad_accum,
                "history": history,
                "adapter": {"dir": str(run.adapter), "sha256": file_sha256(run.adapter / "adapter_model.safetensors")},
                "timings": {
                    "prepare_s": round(prepare_seconds, 2),
                    "train_s": round(train_seconds, 2),
                    "total_s": round(result.seconds, 2),
                    "seconds_per_step": round(result.seconds_per_step, 3),
                    "tokens_per_second": round(result.tokens_per_second, 1),
                },
            }
        )
    return result


def sft_config(
    cfg: TrainConfig,
    run: RunFolder,
    batch_size: int,
    grad_accum: int,
    cuda: bool,
    shared_prefix: bool = False,
    validate: bool = True,
) -> Any:
    """trl/transformers arguments for one attempt; everything else is library defaults, on purpose.

    With ``shared_prefix`` our collator packs the rows, so trl's own padding-free collator is switched off.
    Without ``validate`` (no validation examples) nothing is evaluated and the last checkpoint is the adapter."""
    from trl import SFTConfig

    # transformers renamed gradient_checkpointing to activation_checkpointing (the old name warns)
    names = {f.name for f in fields(SFTConfig)}
    checkpointing = "activation_checkpointing" if "activation_checkpointing" in names else "gradient_checkpointing"
    return SFTConfig(
        **{checkpointing: bool(cfg.gradient_checkpointing)},
        output_dir=str(run.checkpoints),
        per_device_train_batch_size=batch_size,
        gradient_accumulation_steps=grad_accum,
        per_device_eval_batch_size=cfg.eval_batch_size,
        learning_rate=cfg.lr,
        lr_scheduler_type=cfg.scheduler,
        warmup_steps=cfg.warmup,  # a float below 1 is a ratio in transformers 5
        weight_decay=cfg.weight_decay,
        num_train_epochs=cfg.epochs,
        max_steps=cfg.max_steps,
        seed=cfg.seed,
        data_seed=cfg.seed,
        bf16=cuda,
        use_cpu=not cuda,
        padding_free=cfg.padding_free and not shared_prefix,
        max_length=None,  # lengths were checked in encode(); nothing is truncated
        dataset_kwargs={"skip_prepare_dataset": True},  # input_ids + labels are built above
        logging_steps=cfg.logging_steps,
        eval_strategy="steps" if validate else "no",
        eval_steps=cfg.eval_steps if validate else None,
        save_strategy="steps",
        save_steps=cfg.save_steps,
        save_total_limit=cfg.save_total_limit,
        load_best_model_at_end=validate,
        metric_for_best_model="eval_loss" if validate else None,
        greater_is_better=False if validate else None,
        report_to="none",
        disable_tqdm=True,
        dataloader_num_workers=0,
    )


def lora_config(cfg: TrainConfig) -> Any:
    """LoRA on every linear layer except the LM head (the "all-linear" QLoRA recipe)."""
    from peft import LoraConfig

    return LoraConfig(
        r=cfg.rank,
        lora_alpha=cfg.alpha,
        lora_dropout=cfg.dropout,
        target_modules=cfg.target_modules,
        bias="none",
        task_type="CAUSAL_LM",
    )


def load_model(location: str, cfg: TrainConfig, cuda: bool) -> Any:
    """The base model: 4-bit NF4 + double quantization (bf16 compute on CUDA, fp32 on CPU) or plain weights.

    ``prepare_model_for_kbit_training`` is deliberately not called: it upcasts embeddings and LM head to fp32,
    which costs 2 GB more on a 7B model than the 16-bit copies the plan counts; trl enables input gradients
    for checkpointing itself.
    """
    import torch
    from transformers import AutoModelForCausalLM, BitsAndBytesConfig

    dtype = torch.bfloat16 if cuda else torch.float32
    kwargs: dict[str, Any] = {"dtype": dtype}
    if cfg.load_in_4bit:
        kwargs["quantization_config"] = BitsAndBytesConfig(
            load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True, bnb_4bit_compute_dtype=dtype
        )
        if cuda:
            from accelerate import PartialState

            kwargs["device_map"] = {"": PartialState().local_process_index}  # one full copy per DDP process
        else:
            kwargs["device_map"] = "cpu"
    return AutoModelForCausalLM.from_pretrained(location, **kwargs)


def _remove_partial_checkpoints(folder: Path, complete: Sequence[Path]) -> None:
    """Delete checkpoint folders a kill left half-written, so the Trainer's rotation never picks them."""
    keep = {p.name for p in complete}
    for path in folder.glob(f"{CHECKPOINT_PREFIX}*"):
        if path.name not in keep:
            shutil.rmtree(path, ignore_errors=True)


def save_adapter(trainer: Any, target: Path) -> None:
    """Write adapter weights, adapter_config.json and the tokenizer into ``target`` without a half-written state.

    Everything is saved into a temporary folder beside it first; files move in afterwards with the weights
    last, and the files of an older adapter not written this time are removed. ``checkpoints/`` stays.
    """
    target.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".adapter-", dir=target))
    try:
        trainer.model.save_pretrained(tmp)
        trainer.processing_class.save_pretrained(tmp)
        names = sorted(p.name for p in tmp.iterdir())
        names.sort(key=lambda n: n == "adapter_model.safetensors")
        for name in names:
            os.replace(tmp / name, target / name)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def train_from_files(
    task: Task,
    data: str | os.PathLike[str],
    base: str,
    out_dir: str | os.PathLike[str],
    config: TrainConfig,
    *,
    resume: bool = False,
    force: bool = False,
    quiet: bool = False,
    tokens: str | os.PathLike[str] | None = None,
) -> TrainResult:
    """The CLI's entry: read DATA (a split folder or one JSONL file), hold out validation if needed, train.

    A single file's split is written to the run folder's ``data/`` (train.jsonl, and val.jsonl unless validation
    is off) so evaluation and a resumed run see the same split; an existing split there is left alone. ``tokens``
    is a token report (``lingoforge tokens --json``) whose ``max_seq_length`` is used when the settings give none.
    """
    data_path = Path(data)
    run = RunFolder(Path(out_dir))
    main = int(os.environ.get("RANK", "0")) == 0  # under DDP only process 0 writes
    say = _say(quiet or not main)
    if main:
        run.claim(task.name)  # inputs are validated before anything is written to the run folder
    base_model = resolve_base(base)
    train_items, val_items, sources = load_data(data_path, task, config.val_fraction, config.seed)
    max_len, max_len_from = max_len_source(config, run, Path(tokens) if tokens is not None else None)
    if main:
        run.update(task={"name": task.name, "version": task.version})  # the folder is this task's run from now on
    if not data_path.is_dir() and val_items:
        say(describe_holdout(train_items, val_items, config.val_fraction))
    say(f"max length {max_len} from {max_len_from}")
    files = {name: {"path": path, "sha256": file_sha256(path)} for name, path in sources.items()}
    if main and not data_path.is_dir() and not (run.data / "train.jsonl").exists():
        write_jsonl(run.data / "train.jsonl", (i.example.to_record() for i in train_items))
        if val_items:
            write_jsonl(run.data / "val.jsonl", (i.example.to_record() for i in val_items))
    return train(
        task,
        train_items,
        val_items,
        base_model,
        out_dir,
        replace(config, max_len=max_len),
        resume=resume,
        force=force,
        quiet=quiet,
        sources=files,
    )
