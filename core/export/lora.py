"""PEFT LoRA adapter → GGUF LoRA adapter, for an Ollama ``ADAPTER`` line on an unmodified base GGUF.

Ollama cannot import a safetensors LoRA for qwen2, but it (and llama.cpp) load a GGUF adapter:
``general.type=adapter``, ``adapter.type=lora``, ``adapter.lora.alpha`` and, per adapted matrix,
``<gguf name>.lora_a`` (r × in) and ``.lora_b`` (out × r). llama.cpp scales by alpha / r, so rsLoRA's
alpha / sqrt(r) is folded into the alpha written here.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import LingoforgeError
from ..runfolder import check_adapter
from .gguf import ARCHITECTURES, permute_rope

_PREFIX = "base_model.model."


def _alpha(adapter_config: dict[str, Any]) -> float:
    for key in ("alpha_pattern", "rank_pattern", "modules_to_save"):
        if adapter_config.get(key):
            raise LingoforgeError(f"adapter_config.json sets {key}; a GGUF adapter has one alpha and only LoRA "
                                  "matrices, so export the merged model instead (without --adapter-only)")
    if adapter_config.get("use_dora"):
        raise LingoforgeError("DoRA adapters cannot be written as GGUF LoRA; export the merged model instead")
    r, alpha = int(adapter_config["r"]), float(adapter_config["lora_alpha"])
    return alpha * math.sqrt(r) if adapter_config.get("use_rslora") else alpha


def convert_adapter(adapter_dir: str | Path, base_config: dict[str, Any], out_path: str | Path) -> Path:
    """Write the adapter in ``adapter_dir`` (for a base with ``base_config``) as a GGUF LoRA, atomically."""
    import gguf
    from safetensors import safe_open

    folder = Path(adapter_dir)
    alpha = _alpha(check_adapter(folder))
    model_type = base_config.get("model_type")
    if model_type not in ARCHITECTURES:
        raise LingoforgeError(f"model_type {model_type!r} is not supported by the GGUF adapter export (qwen2, llama)")
    arch = getattr(gguf.MODEL_ARCH, ARCHITECTURES[model_type])
    name_map = gguf.get_tensor_name_map(arch, int(base_config["num_hidden_layers"]))
    heads = int(base_config["num_attention_heads"])
    kv_heads = int(base_config.get("num_key_value_heads") or heads)
    weights = folder / "adapter_model.safetensors"

    out = Path(out_path)
    tmp = out.with_name(f".{out.name}.tmp")
    writer = gguf.GGUFWriter(str(tmp), gguf.MODEL_ARCH_NAMES[arch])
    writer.add_type(gguf.GGUFType.ADAPTER)
    writer.add_string(gguf.Keys.Adapter.TYPE, "lora")
    writer.add_float32(gguf.Keys.Adapter.LORA_ALPHA, alpha)
    try:
        with safe_open(str(weights), framework="pt") as st:
            for key in sorted(st.keys()):
                if ".lora_A." not in key and ".lora_B." not in key:
                    raise LingoforgeError(f"{weights}: tensor {key!r} is not a LoRA matrix; "
                                          "only LoRA A/B can be exported")
                part = "lora_a" if ".lora_A." in key else "lora_b"
                hf_name = key.removeprefix(_PREFIX).replace(".lora_A", "").replace(".lora_B", "")
                gguf_name = name_map.get_name(hf_name, try_suffixes=(".weight",))
                if gguf_name is None:
                    raise LingoforgeError(f"adapter tensor {key!r} targets {hf_name!r}, which has no GGUF name")
                array = st.get_tensor(key).float().numpy()
                if model_type == "llama" and part == "lora_b" and hf_name.endswith(("q_proj.weight", "k_proj.weight")):
                    array = permute_rope(array, heads if "q_proj" in hf_name else kv_heads)
                writer.add_tensor(f"{gguf_name}.{part}", np.ascontiguousarray(array, dtype=np.float32))
        writer.write_header_to_file()
        writer.write_kv_data_to_file()
        writer.write_tensors_to_file()
        writer.close()
        tmp.replace(out)
    except BaseException:
        writer.close()
        tmp.unlink(missing_ok=True)
        raise
    return out


def base_config(location: str) -> dict[str, Any]:
    """config.json of a local base folder (the adapter export needs its architecture figures)."""
    path = Path(location) / "config.json"
    if not path.is_file():
        raise LingoforgeError(f"{path} not found; the base model must be a local folder for the adapter export")
    return dict(json.loads(path.read_text(encoding="utf-8")))
