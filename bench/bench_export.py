"""Export benchmark: wall time per stage and peak RSS of ``export_run`` for a tiny Qwen2 and SmolLM2-135M.

    python bench/bench_export.py            # both models, table + bench/results/export.json
    python bench/bench_export.py --model tiny-qwen2

Each export runs in a fresh child process so its peak RSS (ru_maxrss) is its own. The 7B figure is an
estimate from the measured throughput and the converter's streaming design, printed beside the table.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
QWEN2_VOCAB = ROOT.parent / "shared" / "fixtures" / "qwen2-vocab.gguf"
RESULTS = ROOT / "bench" / "results" / "export.json"
# Qwen2.5-7B: parameters, the largest tensor (152064 x 3584 embedding), fp32 bytes per parameter.
QWEN7B_PARAMS, QWEN7B_LARGEST, FP32 = 7.62e9, 152064 * 3584, 4


def _tiny_qwen2(folder: Path) -> Path:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer, Qwen2Config

    tok = AutoTokenizer.from_pretrained(str(QWEN2_VOCAB.parent), gguf_file=QWEN2_VOCAB.name)
    tok.eos_token, tok.pad_token = "<|im_end|>", "<|endoftext|>"
    torch.manual_seed(0)
    config = Qwen2Config(vocab_size=len(tok), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=4096,
                         rope_theta=1_000_000.0, tie_word_embeddings=True)
    AutoModelForCausalLM.from_config(config).save_pretrained(folder)
    tok.save_pretrained(folder)
    return folder


def _smollm2(_: Path) -> Path:
    from lingoforge.models import resolve_base

    return Path(resolve_base("smollm2-135m").weights())


def _make_run(root: Path, base: Path) -> Path:
    """A run folder with a random LoRA (r=8, all linear layers; non-zero B so the merge does work)."""
    import torch
    from lingoforge import get_task
    from lingoforge.fsutil import write_jsonl
    from lingoforge.runfolder import RunFolder
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = get_peft_model(AutoModelForCausalLM.from_pretrained(str(base)), LoraConfig(r=8, lora_alpha=16,
                                                                                       target_modules="all-linear"))
    with torch.no_grad():
        for name, param in model.named_parameters():
            if "lora_B" in name:
                param.normal_(0.0, 0.002)
    model.save_pretrained(str(root / "adapter"))
    AutoTokenizer.from_pretrained(str(base)).save_pretrained(str(root / "adapter"))
    task = get_task("support_tickets")
    write_jsonl(root / "data" / "test.jsonl", [e.to_record() for e in task.generate(4, seed=0)])
    RunFolder(root).update(task={"name": task.name, "version": task.version}, base={"location": str(base)})
    return root


def child(model: str) -> None:
    """Prepare a run (not timed), export it (timed), print one JSON line with times and peak RSS."""
    from lingoforge.export.pipeline import export_run

    with tempfile.TemporaryDirectory() as tmp:
        base = (_tiny_qwen2 if model == "tiny-qwen2" else _smollm2)(Path(tmp) / "base")
        run = _make_run(Path(tmp) / "run", base)
        rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        start = time.perf_counter()
        manifest = export_run(run, parity_n=4, progress=False)
        total = time.perf_counter() - start
        sizes = {p.name: p.stat().st_size for p in (run / "export").glob("*.gguf")}
    print(json.dumps({"model": model, "export_s": round(total, 2), "stages_s": manifest["timings_s"],
                      "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
                      "rss_before_export_mb": round(rss_before / 1024), "gguf_bytes": sizes,
                      "fallback_tensors": len(manifest["quantization"]["fallbacks"])}))


def estimate_7b(smol: dict) -> str:
    """Scale SmolLM2's measured convert/quantize throughput to Qwen2.5-7B; memory from the streaming design."""
    smol_params = 134.5e6
    scale = QWEN7B_PARAMS / smol_params
    convert = smol["stages_s"]["convert"] * scale
    quantize = smol["stages_s"]["quantize"] * scale
    merge_gb = QWEN7B_PARAMS * FP32 / 1e9
    largest_gb = QWEN7B_LARGEST * (FP32 + 2) / 1e9
    return (f"Qwen2.5-7B estimate (CPU, scaled by parameters from SmolLM2): convert ~{convert / 60:.0f} min, "
            f"quantize ~{quantize / 60:.0f} min. Memory: the merge holds the fp32 model once "
            f"(~{merge_gb:.0f} GB on CPU, "
            f"~{merge_gb / 2:.0f} GB bf16 on GPU); the GGUF converter streams one tensor at a time, so beyond the "
            f"Python baseline it holds at most the largest tensor in fp32 plus its f16 copy (~{largest_gb:.1f} GB, "
            "the 152064 x 3584 embedding), not a second copy of the model. Parity loads the merged model again "
            f"(~{merge_gb:.0f} GB fp32) after the merge has been freed.")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", choices=["tiny-qwen2", "smollm2-135m"], action="append")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child)
        return
    rows = []
    for model in args.model or ["tiny-qwen2", "smollm2-135m"]:
        done = subprocess.run([sys.executable, __file__, "--child", model], capture_output=True, text=True, check=False)
        if done.returncode != 0:
            sys.exit(f"{model} export failed:\n{done.stderr[-3000:]}")
        rows.append(json.loads(done.stdout.strip().splitlines()[-1]))
    print(f"{'model':<14} {'export s':>9} {'merge':>7} {'convert':>8} {'quantize':>9} {'parity':>7} "
          f"{'peak RSS MB':>12}")
    for r in rows:
        s = r["stages_s"]
        print(f"{r['model']:<14} {r['export_s']:>9.1f} {s['merge']:>7.1f} {s['convert']:>8.1f} {s['quantize']:>9.1f} "
              f"{s['parity']:>7.1f} {r['peak_rss_mb']:>12}")
    smol = next((r for r in rows if r["model"] == "smollm2-135m"), None)
    estimate = estimate_7b(smol) if smol else None
    if estimate:
        print("\n" + estimate)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps({"machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
                                   "results": rows, "estimate_7b": estimate}, indent=2) + "\n")
    print(f"\nwrote {RESULTS.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
