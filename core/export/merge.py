"""Merge a PEFT LoRA adapter into its full-precision base and save a 16-bit HF folder.

The merge always happens on unquantized weights (fp32 on CPU, the base's 16-bit dtype on GPU), never on
the 4-bit NF4 weights QLoRA trained against: merging into NF4 would bake quantization error into every
layer. The result is saved in float16 so the HF reference used by parity holds exactly the values the
F16 GGUF holds.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

from ..progress import quiet_library_bars
from ..runfolder import check_adapter


def tokenizer_source(adapter_dir: Path, base_location: str) -> str:
    """The adapter folder when training saved the tokenizer there (it may set eos/pad), else the base."""
    return str(adapter_dir) if (adapter_dir / "tokenizer_config.json").is_file() else base_location


def merge(base_location: str, adapter_dir: str | Path, out_dir: str | Path) -> Path:
    """Load the base in full precision, apply the adapter, fold it in and save float16 safetensors + tokenizer."""
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    adapter = Path(adapter_dir)
    check_adapter(adapter)
    dtype = torch.float32 if not torch.cuda.is_available() else torch.bfloat16
    quiet_library_bars()  # "Loading weights" and "Writing model shards"
    base = AutoModelForCausalLM.from_pretrained(base_location, dtype=dtype, low_cpu_mem_usage=True)
    merged = PeftModel.from_pretrained(base, str(adapter)).merge_and_unload()
    merged = merged.to(torch.float16)
    if hasattr(merged.config, "quantization_config"):
        del merged.config.quantization_config
    tokenizer = AutoTokenizer.from_pretrained(tokenizer_source(adapter, base_location))

    target = Path(out_dir)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    try:
        merged.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        if target.exists():
            shutil.rmtree(target)
        os.replace(tmp, target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return target
