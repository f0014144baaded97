"""``lingoforge export``: a trained run as GGUF and a Modelfile for Ollama, with proof it still works."""

from __future__ import annotations

import json
from pathlib import Path

import click

from ..export.quantize import QUANTS
from .options import old_out_spelling


@click.command(context_settings={"token_normalize_func": old_out_spelling})
@click.argument("run", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("-o", "--output", "out_dir", type=click.Path(file_okay=False, path_type=Path),
              help="Export folder (default: RUN/export).")
@click.option("--quant", type=click.Choice(sorted(QUANTS)), default="q5_k_m", show_default=True,
              help="Quantization of the GGUF Ollama serves.")
@click.option("--adapter-only", is_flag=True,
              help="Write a GGUF LoRA adapter (ADAPTER line) on the unmodified base instead of merged weights.")
@click.option("--parity-n", type=click.IntRange(min=1), default=8, show_default=True,
              help="Test examples for the HF vs GGUF parity check.")
@click.option("--data", type=click.Path(dir_okay=False, path_type=Path),
              help="Held-out examples for parity (default: the run's test split, else its validation examples).")
@click.option("--bundle", is_flag=True,
              help="Also write NAME-bundle.tar (GGUF, Modelfile, README, install.sh) to install the model on a "
                   "server without internet or Python.")
@click.option("--hf", is_flag=True,
              help="Also write hf/ (the merged 16-bit model as a Hugging Face folder) and adapter/ (the LoRA "
                   "adapter), and print how to serve them with vLLM.")
@click.option("--name", default=None,
              help="Model name in the bundle and the vLLM lines, [namespace/]model[:tag] "
                   "(default: the task's name with dashes, e.g. support-tickets).")
@click.option("--json", "as_json", is_flag=True, help="Print the export manifest as JSON.")
def export(run: Path, out_dir: Path | None, quant: str, adapter_only: bool, parity_n: int, data: Path | None,
           bundle: bool, hf: bool, name: str | None, as_json: bool) -> None:
    """Merge the adapter, convert to GGUF, quantize, write a Modelfile and check parity with the HF model."""
    from ..deploy import find_export, validate_name
    from ..export.bundle import default_name, write_bundle
    from ..export.hf_folder import write_hf
    from ..export.pipeline import export_run
    from ..runfolder import RunFolder

    if name is not None and not (bundle or hf):
        raise click.UsageError("--name names the model of --bundle and --hf; pass one of them")
    model_name = ""
    if bundle or hf:  # a bad name fails here, not after minutes of exporting
        model_name = validate_name(name) if name is not None else default_name(RunFolder(run).task().name)

    manifest = export_run(run, out_dir, quant=quant, parity_n=parity_n, adapter_only=adapter_only, data=data)
    folder = out_dir or run / "export"
    hf_record = write_hf(folder, model_name) if hf else None
    bundle_path = write_bundle(folder, model_name) if bundle else None
    if as_json:
        updated = find_export(folder)[1] if bundle or hf else manifest  # both record what they wrote in it
        click.echo(json.dumps(updated, ensure_ascii=False, indent=2))
        return
    parity = manifest["parity"]
    click.echo(f"exported {manifest['model_file']} ({quant}) to {folder}")
    click.echo(f"F16 parity: {parity['examples']} examples, {parity['compared_tokens']} greedy tokens identical"
               + (f", {parity['numerical_ties']} numerical ties" if parity["numerical_ties"] else ""))
    for lang, row in parity["accuracy"].items():
        click.echo(f"  {lang}: HF {row['hf']:.1f}  GGUF {row['gguf']:.1f}  (n={row['n']})")
    fallbacks = manifest["quantization"]["fallbacks"]
    if fallbacks:
        click.echo(f"{len(fallbacks)} tensors fell back from {quant}: "
                   + ", ".join(f"{f['tensor']}={f['type']}" for f in fallbacks[:6])
                   + (" ..." if len(fallbacks) > 6 else ""))
    for warning in parity["warnings"]:
        click.secho(f"warning: {warning}", fg="yellow", err=True)
    if hf_record:
        vllm = hf_record["vllm"]
        click.echo(f"wrote {folder / hf_record['model_dir']} (merged float16 safetensors, tokenizer, chat template, "
                   f"greedy generation_config.json) and {folder / hf_record['adapter_dir']} (the LoRA adapter)")
        click.echo(f"serve with vLLM:\n  {vllm['merged']}")
        click.echo(f"or the adapter on its base (more task adapters: further NAME=PATH after --lora-modules):\n"
                   f"  {vllm['lora']}")
        click.echo("ask it with the system prompt and the training instruction (vLLM adds neither; temperature 0 "
                   f"gives the greedy answers evaluation measured):\n  {vllm['request']}")
    if bundle_path:
        top = bundle_path.name.removesuffix(".tar")
        click.echo(f"wrote {bundle_path}; on the server: tar xf {bundle_path.name} && sh {top}/install.sh")
    click.echo(f"next: lingoforge deploy {folder} --name {model_name or 'NAME'}")
