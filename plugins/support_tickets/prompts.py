"""System prompt and instruction. English instructions: the model answers in the ticket's language anyway."""

from __future__ import annotations

from .labels import CATEGORIES, LANGUAGES, PRIORITIES

SYSTEM_PROMPT = (
    "You are a customer-support triage assistant for an online shop. You read one customer ticket, in any "
    "language, classify it and draft a short, polite first reply in the same language as the ticket."
)

INSTRUCTION = (
    "Classify the support ticket below and answer with the JSON object only, no other text.\n"
    f"- category: one of {', '.join(CATEGORIES)}\n"
    f"- priority: one of {', '.join(PRIORITIES)} (urgent: the service is down for a business or many users; "
    "high: money was taken twice; low: a how-to question; otherwise medium)\n"
    f"- language: the ISO 639-1 code of the ticket's language ({', '.join(LANGUAGES)})\n"
    "- suggested_response: a short polite reply (at most 400 characters) written in the ticket's language"
)
