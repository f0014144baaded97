"""Ship a trained run to Ollama: merge → GGUF → quantize → Modelfile, with parity proven before deploy."""

from .pipeline import export_run

__all__ = ["export_run"]
