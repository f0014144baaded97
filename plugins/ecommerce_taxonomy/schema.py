"""The output schema, built from the taxonomy (the taxonomy file is replaceable, so the schema cannot be static)."""

from __future__ import annotations

from typing import Any

from .taxonomy import Taxonomy


def output_schema(taxonomy: Taxonomy) -> dict[str, Any]:
    """``{"category": <one leaf path>, "brand": <string or null>}``, nothing else.

    ``category`` is an enum so that Ollama's ``format=`` and grammar-constrained decoding can only emit
    a real leaf; ``brand`` stays free text because brands are open-ended.
    """
    return {
        "type": "object",
        "properties": {
            "category": {
                "type": "string",
                "enum": taxonomy.paths,
                "description": "full path of the product's leaf category",
            },
            "brand": {
                "anyOf": [{"type": "string", "minLength": 1}, {"type": "null"}],
                "description": "maker of the product as written in the listing; null when none is named",
            },
        },
        "required": ["category", "brand"],
        "additionalProperties": False,
    }
