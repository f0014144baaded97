"""``export --hf``: the exported model as a standard Hugging Face folder, and the adapter on its own, for vLLM.

The export already merged the adapter into float16 safetensors with the training tokenizer and its chat template
(``export/merged``, the model F16 parity was proven against), so ``--hf`` reuses that folder instead of merging
again: ``export/hf`` holds hard links to its files (no second copy of the weights; a copy where the file system
has no hard links) and a ``generation_config.json`` of its own. The base's may sample or carry a repetition
penalty (Qwen2.5-Instruct ships temperature 0.7 and 1.05), and without a length ``generate`` stops at 20 tokens,
prompt included; the one written here decodes greedily, stops at the Modelfile's stop tokens and allows the
Modelfile's ``num_predict``, like Ollama. ``export/adapter`` is the run's PEFT adapter without its training
checkpoints, for serving several task adapters on one base (``vllm serve BASE --enable-lora``).
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from ..deploy import exported_task, find_export
from ..errors import LingoforgeError
from ..fsutil import write_json
from ..prompts import prompt_messages
from ..runfolder import MANIFEST, check_adapter
from .bundle import sample_input
from .modelfile import STOP_TOKENS
from .pipeline import swap_in, trained_prompt

HF_DIR = "hf"
ADAPTER_DIR = "adapter"
MERGED_DIR = "merged"
GENERATION_CONFIG = "generation_config.json"
# Formats that unpickle (run code) when loaded; the folders written here hold safetensors only.
PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".pkl", ".pickle", ".ckpt")
# vLLM refuses adapters of a higher rank than --max-lora-rank, whose default is 16.
VLLM_DEFAULT_LORA_RANK = 16
VLLM_URL = "http://localhost:8000"


def greedy_generation_config(current: Mapping[str, Any], stop_ids: Sequence[int], pad_id: int | None,
                             max_new_tokens: int) -> dict[str, Any]:
    """``generation_config.json`` for greedy answers: the token ids of ``current`` (the base's), without its
    sampling settings and penalties, ending at every stop id and allowing ``max_new_tokens``."""
    config: dict[str, Any] = {"do_sample": False, "eos_token_id": list(stop_ids), "max_new_tokens": max_new_tokens}
    if current.get("bos_token_id") is not None:
        config["bos_token_id"] = current["bos_token_id"]
    pad = pad_id if pad_id is not None else current.get("pad_token_id")
    config["pad_token_id"] = pad if pad is not None else stop_ids[0]
    return config


def write_hf(export_dir: str | Path, name: str) -> dict[str, Any]:
    """Write ``hf/`` and ``adapter/`` into a complete export, record them in its manifest and return the record
    (folders, base, adapter rank, and the vLLM command lines serving them as ``name``).

    Both folders are built beside the export and swapped in whole. Raises ``LingoforgeError`` when the export
    has no merged model, the merged model lacks a chat template or holds pickled weights, or the run's adapter
    is missing or damaged.
    """
    from transformers import AutoTokenizer, GenerationConfig

    folder, manifest = find_export(export_dir)
    merged = folder / MERGED_DIR
    if not (merged / "config.json").is_file() or not any(merged.glob("*.safetensors")):
        raise LingoforgeError(f"{merged} holds no merged safetensors model; rerun `lingoforge export`")
    _refuse_pickles(merged)
    tokenizer = AutoTokenizer.from_pretrained(str(merged))
    if not tokenizer.chat_template:
        raise LingoforgeError(f"{merged}: the tokenizer has no chat template, so a server could not render the "
                              "training prompt; rerun `lingoforge export`")
    task, run_folder = exported_task(manifest)
    check_adapter(run_folder.adapter)
    vocab = tokenizer.get_vocab()
    # The stop set of parity's HF reference: the Modelfile's stop tokens and the tokenizer's end token.
    stop_ids = sorted({vocab[t] for t in STOP_TOKENS if t in vocab} | {tokenizer.eos_token_id} - {None})
    num_predict = int(manifest["serving"]["parameters"]["num_predict"])
    current = json.loads((merged / GENERATION_CONFIG).read_text(encoding="utf-8")) \
        if (merged / GENERATION_CONFIG).is_file() else {}
    config = GenerationConfig(**greedy_generation_config(current, stop_ids, tokenizer.pad_token_id, num_predict))

    work = Path(tempfile.mkdtemp(prefix=".hf-", dir=folder))
    try:
        hf, adapter = work / HF_DIR, work / ADAPTER_DIR
        hf.mkdir()
        for path in sorted(merged.iterdir()):
            if path.is_file() and path.name != GENERATION_CONFIG:
                _link_or_copy(path, hf / path.name)
        config.save_pretrained(str(hf))  # validates: refuses settings that contradict greedy decoding
        adapter.mkdir()
        for path in sorted(run_folder.adapter.iterdir()):  # top-level files only: checkpoints/ stays behind
            if path.is_file() and not path.name.startswith(".") and path.suffix not in PICKLE_SUFFIXES:
                shutil.copy2(path, adapter / path.name)
        for made in (hf, adapter):
            made.chmod(0o755)
            for path in made.iterdir():
                path.chmod(0o644)  # merge writes 0600 weights; a server's other user must read them
        swap_in(hf, folder / HF_DIR)
        swap_in(adapter, folder / ADAPTER_DIR)
    finally:
        shutil.rmtree(work, ignore_errors=True)

    rank = int(json.loads((folder / ADAPTER_DIR / "adapter_config.json").read_text(encoding="utf-8"))["r"])
    base = run_folder.base_location()
    instruction, _ = trained_prompt(run_folder, task)
    messages = prompt_messages(task, sample_input(run_folder, manifest), instruction)
    record = {"model_dir": HF_DIR, "adapter_dir": ADAPTER_DIR, "base": base, "lora_rank": rank,
              "generation_config": config.to_diff_dict(),
              "vllm": vllm_commands(folder.resolve(), name, base, rank, messages, num_predict)}
    write_json(folder / MANIFEST, {**manifest, "hf": record})
    return record


def vllm_commands(folder: Path, name: str, base: str, rank: int, messages: Sequence[Mapping[str, str]],
                  max_tokens: int) -> dict[str, str]:
    """Shell lines serving the export with vLLM as ``name`` (merged, or the adapter on its base) and one request.

    The request carries the system prompt and the training instruction: vLLM renders the tokenizer's chat
    template as it is, without the Modelfile TEMPLATE that adds both to a bare input in Ollama; temperature 0
    asks for the greedy answers evaluation measured (vLLM samples by default).
    """
    lora_flags = f"--lora-modules {shlex.quote(f'{name}={folder / ADAPTER_DIR}')}"
    if rank > VLLM_DEFAULT_LORA_RANK:
        lora_flags += f" --max-lora-rank {1 << (rank - 1).bit_length()}"  # a power of two, as vLLM accepts
    body = {"model": name, "messages": list(messages), "temperature": 0, "max_tokens": max_tokens}
    return {
        "merged": f"vllm serve {shlex.quote(str(folder / HF_DIR))} --served-model-name {shlex.quote(name)}",
        "lora": f"vllm serve {shlex.quote(base)} --enable-lora {lora_flags}",
        "request": (f"curl -s {VLLM_URL}/v1/chat/completions -H 'Content-Type: application/json' "
                    f"-d {shlex.quote(json.dumps(body, ensure_ascii=False))}"),
    }


def _refuse_pickles(folder: Path) -> None:
    """Stop before publishing a folder whose weights would be unpickled by whoever loads them."""
    found = sorted(p.name for p in folder.iterdir() if p.suffix in PICKLE_SUFFIXES)
    if found:
        raise LingoforgeError(f"{folder} holds pickle files ({', '.join(found)}); only safetensors are published, "
                              "rerun `lingoforge export`")


def _link_or_copy(source: Path, target: Path) -> None:
    """A hard link (the merged weights are gigabytes for a 7B model), or a copy where links are not possible."""
    try:
        os.link(source, target)
    except OSError:
        shutil.copy2(source, target)
