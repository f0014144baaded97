"""The `lingoforge run` summary as printed: parity samples as counts, the report path and the next command."""

from __future__ import annotations

from lingoforge.commands.run import print_summary
from rich.console import Console


def _summary(**extra: object) -> dict:
    return {"task": "support_tickets", "base": "smollm2-135m", "primary_metric": "category_accuracy",
            "overall": {"base": 0.0, "fine_tuned": 0.5},
            "languages": {"de": {"base": 0.0, "fine_tuned": 0.5, "gguf_parity_sample": {"n": 2, "score": 0.5}},
                          "es": {"base": 0.0, "fine_tuned": 1.0, "gguf_parity_sample": {"n": 3, "score": 0.6}},
                          "fr": {"base": 0.0, "fine_tuned": 0.0, "gguf_parity_sample": None}},
            "modelfile": "runs/demo/export/Modelfile", "report": "runs/demo/eval/report.html", **extra}


def _printed(summary: dict) -> str:
    console = Console(record=True, width=200)
    print_summary(summary, console)
    return console.export_text()


def test_parity_sample_is_shown_as_counts_and_next_step_is_printed() -> None:
    text = _printed(_summary())
    de = next(line for line in text.splitlines() if line.strip().startswith("│") and " de " in line)
    assert "1/2" in de and "50%" in de  # fine-tuned 50 %, parity sample 1 of 2 items
    assert "60% of 3" in text
    assert "report: runs/demo/eval/report.html" in text
    assert 'next: lingoforge deploy runs/demo --name NAME, then `ollama run NAME "<input>"`' in text


def test_deployed_run_prints_the_bare_input_figures_and_both_lines() -> None:
    deployed = {"name": "tickets", "host": "http://127.0.0.1:11434", "try": "ollama run tickets 'Mi pedido'",
                "curl": "curl -s http://127.0.0.1:11434/api/chat -d '{\"format\":{}}'",
                "bare": {"generate": 1.0, "chat": 0.8, "eval": 1.0}}
    text = _printed(_summary(deployed=deployed))
    assert "schema-valid JSON 100% through `ollama run`, 80% through /api/chat (eval measured 100%)" in text
    assert "ollama run tickets 'Mi pedido'" in text and "/api/chat -d '{\"format\":{}}'" in text
    assert "next: lingoforge deploy" not in text
