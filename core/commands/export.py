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
@click.option("--json", "as_json", is_flag=True, help="Print the export manifest as JSON.")
def export(run: Path, out_dir: Path | None, quant: str, adapter_only: bool, parity_n: int, data: Path | None,
           as_json: bool) -> None:
    """Merge the adapter, convert to GGUF, quantize, write a Modelfile and check parity with the HF model."""
    from ..export.pipeline import export_run

    manifest = export_run(run, out_dir, quant=quant, parity_n=parity_n, adapter_only=adapter_only, data=data)
    if as_json:
        click.echo(json.dumps(manifest, ensure_ascii=False, indent=2))
        return
    folder = out_dir or run / "export"
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
    click.echo(f"next: lingoforge deploy {folder} --name NAME")
