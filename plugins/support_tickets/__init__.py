"""support_tickets: triage multilingual customer-support tickets (category, priority, language, reply).

This module only wires the parts together; see README.md for the label definitions and priority rules.
"""

from __future__ import annotations

from collections.abc import Callable

from lingoforge import Task, hookimpl

from .generator import generate
from .labels import LANGUAGES, SCHEMA
from .prompts import INSTRUCTION, SYSTEM_PROMPT
from .scoring import score

__version__ = "1.0.0"

TASK = Task(
    name="support_tickets",
    version=__version__,
    description="Route support tickets in 10 languages: category, priority, language and a first reply",
    languages=LANGUAGES,
    system_prompt=SYSTEM_PROMPT,
    instruction=INSTRUCTION,
    output_schema=SCHEMA,
    scorer=score,
    primary_metric="category_accuracy",
    fields=("category", "priority", "language"),
    text_fields=("suggested_response",),
    generator=generate,
    max_input_tokens=256,  # generated tickets reach 184 Qwen2 tokens (Hindi); leave room for real ones
    source=__name__,
)


@hookimpl
def register_tasks(register: Callable[[Task], None]) -> None:
    """Hand the one task of this plugin to the core."""
    register(TASK)
