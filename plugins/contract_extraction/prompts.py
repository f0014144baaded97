"""System prompt and instruction of the contract extraction task (English for every input language).

The instruction names the closed vocabularies (clause types, jurisdictions) so that an un-tuned base
model evaluated as a baseline has a fair chance; the schema enforces them anyway.
"""

from __future__ import annotations

from .facts import CLAUSE_TYPES, JURISDICTIONS

SYSTEM_PROMPT = (
    "You are a contract analyst. You read commercial contracts written in English, French, German or Spanish "
    "and extract their key terms as JSON, exactly as the contract states them."
)

INSTRUCTION = (
    "Extract the key terms of the contract below as a JSON object with these keys: "
    "parties (each with the name exactly as written and its role); "
    "effective_date and end_date (YYYY-MM-DD; end_date is null when the contract states no end date); "
    f"governing_law (one of: {', '.join(JURISDICTIONS)}; null when the contract chooses none); "
    f"clauses (each with a type from: {', '.join(CLAUSE_TYPES)}, and a one-line summary in the contract's language); "
    "obligations (each with the party name and the undertaking as the contract words it). "
    "Answer with the JSON only."
)
