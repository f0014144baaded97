"""``export_run``: run folder → merged HF model → F16 GGUF → quantized GGUF → Modelfile → parity report.

The adapter and the prompts are checked first (minutes of merging are not spent on a damaged adapter or a
system prompt a Modelfile cannot hold). Every step writes into ``.export.partial/`` beside ``export/``; the
manifest ``export.json`` is written last and the folder swapped in only then, so ``export/`` is always a
complete, parity-checked export that ``deploy`` can trust, and a failed export keeps the previous one.
"""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ..data.io import load_examples
from ..errors import LingoforgeError
from ..fsutil import write_json, write_text
from ..prompts import check_servable, prompt_messages
from ..runfolder import MANIFEST, RunFolder, check_adapter
from ..task import Example, Task
from .gguf import convert
from .lora import base_config, convert_adapter
from .merge import merge
from .modelfile import (
    ANSWER_MARGIN,
    ANSWER_SLACK,
    ServingConfig,
    check_stop,
    check_template,
    default_system,
    go_template,
    num_predict_for,
    probe_messages,
)
from .parity import (
    DEFAULT_MAX_NEW_TOKENS,
    GGUFModel,
    HFReference,
    ParityError,
    ParityResult,
    check_f16,
    compare_accuracy,
    conversations_for,
    greedy_texts,
)
from .quantize import QUANTS, quantize

DEFAULT_NUM_CTX = 2048
PARITY_N_CTX = 2048


def test_split(folder: RunFolder, data: str | Path | None = None) -> tuple[Path, str | None]:
    """The file parity and deploy take their examples from, and a note when it is not a test split.

    ``data`` (``export --data FILE``) wins; then ``data/test.jsonl`` of the run (``lingoforge run``), then
    ``test.jsonl`` beside the split folder the run was trained on (``data split`` → ``train --data DIR``,
    recorded in run.json); else the validation examples, which training saw only for its loss.
    """
    if data is not None:
        path = Path(data)
        if not path.is_file():
            raise LingoforgeError(f"--data {path} does not exist")
        return path, None
    sources = folder.training().data_sources
    split_folder = Path(sources["train"]["path"]).parent if "train" in sources and "val" in sources else None
    for candidate in filter(None, (folder.data / "test.jsonl", split_folder and split_folder / "test.jsonl")):
        if candidate.is_file():
            return candidate, None
    for candidate in filter(None, (folder.data / "val.jsonl", split_folder and split_folder / "val.jsonl")):
        if candidate.is_file():
            return candidate, (f"no test split was found for {folder.root}; using the validation examples in "
                               f"{candidate} (pass --data FILE to use held-out examples)")
    raise LingoforgeError(f"no test or validation examples found for {folder.root} (looked in {folder.data} and "
                          "beside the training data recorded in run.json); pass --data FILE")


def load_test_examples(folder: RunFolder, n: int, data: str | Path | None = None) -> list[Example]:
    """The first ``n`` examples of the run's test split (see :func:`test_split`), read and checked like all data."""
    path, _ = test_split(folder, data)
    return [item.example for item in load_examples(path, folder.task())[:n]]


def context_length(folder: RunFolder, model_dir: Path) -> tuple[int, str]:
    """``num_ctx`` from the token report (``data/tokens.json``), capped at the model's context length."""
    limit = int(json.loads((model_dir / "config.json").read_text())["max_position_embeddings"])
    measured = folder.num_ctx()
    if measured:
        return min(measured, limit), "data/tokens.json"
    return min(DEFAULT_NUM_CTX, limit), f"default {DEFAULT_NUM_CTX} (no token report in data/tokens.json)"


def trained_prompt(folder: RunFolder, task: Task) -> tuple[str, int | None]:
    """The instruction training wrapped inputs with and its longest answer in tokens, from run.json
    (runs trained before these were recorded: the task's instruction, and no answer length)."""
    train = folder.training()
    return train.instruction or task.instruction.strip(), train.longest_answer_tokens


def serving_config(task: Task, hf: HFReference, examples: Sequence[Example], model_file: str, num_ctx: int,
                   instruction: str, longest_answer_tokens: int | None, end_token: str | None,
                   adapter_file: str | None = None) -> ServingConfig:
    """The Ollama TEMPLATE/SYSTEM/PARAMETERs, after checking that the template renders the training prompt
    exactly, both for a bare input (what `ollama run NAME "<ticket>"` sends) and for the full prompt, and
    that the training end token stops the served model."""
    check_stop(end_token, hf.tokenizer.get_vocab())
    system_default = default_system(hf.render(probe_messages()))
    pairs = []
    for example in examples:
        full = prompt_messages(task, example.input, instruction)
        bare = [*full[:-1], {"role": "user", "content": example.input}]
        pairs += [(full, hf.render(full)), (bare, hf.render(full))]
    check_template(pairs, system_default, instruction)
    return ServingConfig(model_file, go_template(system_default, instruction), task.system_prompt, num_ctx,
                         adapter_file=adapter_file, num_predict=num_predict_for(longest_answer_tokens, num_ctx))


def _check_embedded_template(gguf: GGUFModel, hf: HFReference, path: Path) -> None:
    embedded = gguf.llm.metadata.get("tokenizer.chat_template")
    if embedded != hf.tokenizer.chat_template:
        raise ParityError(f"{path}: the chat template in the GGUF differs from the training tokenizer's")


def export_run(run_dir: str | Path, out_dir: str | Path | None = None, quant: str = "q5_k_m", parity_n: int = 8,
               adapter_only: bool = False, examples: Sequence[Example] | None = None,
               max_new_tokens: int = DEFAULT_MAX_NEW_TOKENS, progress: bool = True,
               data: str | Path | None = None) -> dict[str, Any]:
    """Export a trained run for Ollama and prove parity; returns (and writes) the export manifest.

    Raises ``ParityError`` (after writing ``parity.json``) when the F16 GGUF does not reproduce HF.
    """
    if quant not in QUANTS:
        raise LingoforgeError(f"unknown --quant {quant!r}; choose one of {', '.join(QUANTS)}")
    folder = RunFolder(Path(run_dir))
    task = folder.task()
    instruction, longest_answer = trained_prompt(folder, task)
    check_servable(task.system_prompt, instruction)  # before minutes of merging and converting
    base_location = folder.base_location()
    check_adapter(folder.adapter)
    source, source_note = (None, None) if examples is not None else test_split(folder, data)
    chosen = list(examples) if examples is not None else load_test_examples(folder, parity_n, source)
    final = Path(out_dir) if out_dir else folder.export
    # Everything is written beside the export folder and swapped in once parity passed: a failed or killed
    # export leaves the previous, checked export (and its manifest) as it was.
    out = final.with_name(f".{final.name}.partial")
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    timings: dict[str, float] = {}

    def step(name: str, started: float) -> None:
        timings[name] = round(time.perf_counter() - started, 2)

    t = time.perf_counter()
    if adapter_only:
        reference_dir = out / "merged"  # HF reference for parity: base + adapter, merged in memory
        merge(base_location, folder.adapter, reference_dir)
        step("merge", t)
        t = time.perf_counter()
        base_gguf = convert(base_location, out / "base-f16.gguf", progress=progress).path
        adapter_gguf = convert_adapter(folder.adapter, base_config(base_location), out / "adapter-lora.gguf")
        f16_path, lora = base_gguf, adapter_gguf
        step("convert", t)
    else:
        reference_dir = merge(base_location, folder.adapter, out / "merged")
        step("merge", t)
        t = time.perf_counter()
        f16_path, lora = convert(reference_dir, out / "model-f16.gguf", progress=progress).path, None
        step("convert", t)

    t = time.perf_counter()
    quant_name = "base" if adapter_only else "model"
    quantized = quantize(f16_path, out / f"{quant_name}-{quant}.gguf", quant)
    step("quantize", t)

    t = time.perf_counter()
    hf = HFReference(reference_dir)
    conversations = conversations_for(task, chosen)
    num_ctx, num_ctx_source = context_length(folder, reference_dir)
    serving = serving_config(task, hf, chosen, quantized.path.name, num_ctx, instruction, longest_answer,
                             folder.training().end_token, adapter_file=lora.name if lora else None)
    n_ctx = max(num_ctx, PARITY_N_CTX)  # parity needs room for the prompt and a full answer
    f16_model = GGUFModel(f16_path, n_ctx=n_ctx, lora_path=lora)
    _check_embedded_template(f16_model, hf, f16_path)
    result, hf_tokens = check_f16(hf, f16_model, conversations, max_new_tokens, progress=progress)
    f16_model.close()
    if not result.failures:
        quant_model = GGUFModel(quantized.path, n_ctx=n_ctx, lora_path=lora)
        quant_texts = greedy_texts(quant_model, [hf.render(m) for m in conversations], max_new_tokens, progress)
        quant_model.close()
        result.accuracy, result.warnings = compare_accuracy(task, chosen, [hf.text(x) for x in hf_tokens], quant_texts)
    step("parity", t)
    write_json(out / "parity.json", {"quant": quant, **result.as_dict()})
    if result.failures:
        raise ParityError("the F16 GGUF does not reproduce the merged HF model: "
                          + "; ".join(str(d) for d in result.failures[:3])
                          + f" (details in {out / 'parity.json'})")

    write_text(out / "Modelfile", serving.modelfile())
    manifest = _manifest(folder.root, task, quant, quantized.as_dict(), serving, lora, num_ctx_source,
                         longest_answer, result, timings, adapter_only)
    manifest["parity"]["source"] = str(source) if source else "given examples"
    if source_note:
        manifest["parity"]["warnings"].append(source_note)
    write_json(out / MANIFEST, manifest)
    swap_in(out, final)
    folder.update(export={"dir": str(final), "quant": quant, "f16_parity": True, "warnings": result.warnings})
    return manifest


def swap_in(new: Path, final: Path) -> None:
    """Replace the folder ``final`` with the complete folder ``new`` (two renames; the old one is removed after)."""
    old = final.with_name(f".{final.name}.old")
    shutil.rmtree(old, ignore_errors=True)
    if final.exists():
        final.rename(old)
    new.rename(final)
    shutil.rmtree(old, ignore_errors=True)


def _manifest(run_dir: Path, task: Task, quant: str, quant_report: dict[str, Any], serving: ServingConfig,
              lora: Path | None, num_ctx_source: str, longest_answer: int | None, result: ParityResult,
              timings: dict[str, float], adapter_only: bool) -> dict[str, Any]:
    return {
        "run_dir": str(run_dir.resolve()),
        "task": {"name": task.name, "version": task.version},
        "quant": quant,
        "adapter_only": adapter_only,
        "model_file": serving.model_file,
        "adapter_file": lora.name if lora else None,
        "quantization": quant_report,
        "serving": serving.as_dict(),
        "num_ctx_source": num_ctx_source,
        "num_predict_source": (f"{ANSWER_MARGIN:g} x the longest training answer ({longest_answer} tokens) + "
                               f"{ANSWER_SLACK}" if longest_answer else "default (run.json records no answer length)"),
        "parity": {"examples": result.examples, "compared_tokens": result.compared_tokens,
                   "max_logit_drift": result.max_logit_drift,
                   "numerical_ties": len(result.ties), "accuracy": result.accuracy, "warnings": result.warnings},
        "timings_s": timings,
    }

