"""contract_extraction: parties, dates, governing law, clauses and obligations from en/fr/de/es contracts."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

from lingoforge import Task, hookimpl

from .generator import generate
from .prompts import INSTRUCTION, SYSTEM_PROMPT
from .render import LANGUAGES
from .scoring import consistency, score

TASK = Task(
    name="contract_extraction",
    version="1",
    description="Extract parties, effective/end dates, governing law, typed clauses and obligations from contracts.",
    languages=LANGUAGES,
    system_prompt=SYSTEM_PROMPT,
    instruction=INSTRUCTION,
    output_schema=json.loads(Path(__file__).with_name("schema.json").read_text(encoding="utf-8")),
    scorer=score,
    # The mean of all six field scores: one number that moves when dates, parties, law, clauses or
    # obligations move. clause_types_f1 alone would hide date and party errors.
    primary_metric="overall",
    fields=("governing_law",),
    generator=generate,
    consistency=consistency,
    # The longest generated contracts (~8 pages, ~25,000 characters) measure up to ~7,600 Qwen2 tokens.
    max_input_tokens=8192,
)


@hookimpl
def register_tasks(register: Callable[[Task], None]) -> None:
    register(TASK)
