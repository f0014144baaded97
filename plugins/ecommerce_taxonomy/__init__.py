"""ecommerce_taxonomy: put a marketplace product listing in one leaf of a product taxonomy and name its brand.

Listings are mixed-language marketplace titles (Taobao, Rakuten, Coupang, Shopee, Tokopedia, Amazon
styles). The taxonomy comes from ``taxonomy.yaml`` or the file ``$LINGOFORGE_TAXONOMY`` names.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

from lingoforge import Task, hookimpl

from .generator import generate
from .prompts import INSTRUCTION, system_prompt
from .scoring import score
from .taxonomy import Taxonomy, default_taxonomy
from .vocab import LANGUAGES

VERSION = "1"
_SCHEMA: dict[str, Any] = json.loads(Path(__file__).with_name("schema.json").read_text(encoding="utf-8"))


def output_schema(taxonomy: Taxonomy) -> dict[str, Any]:
    """``schema.json`` with the taxonomy's leaf paths as the ``category`` enum (left empty in the file: the
    taxonomy is replaceable, so the list cannot be static).

    ``category`` is an enum so that Ollama's ``format=`` and grammar-constrained decoding can only emit
    a real leaf; ``brand`` stays free text because brands are open-ended.
    """
    schema = copy.deepcopy(_SCHEMA)
    schema["properties"]["category"]["enum"] = taxonomy.paths
    return schema


def build_task(taxonomy: Taxonomy) -> Task:
    """The task for ``taxonomy``; a replaced taxonomy gets its own version so runs record which one they used."""
    return Task(
        name="ecommerce_taxonomy",
        version=VERSION if taxonomy.is_builtin else f"{VERSION}+taxonomy.{taxonomy.digest[:8]}",
        description="Classify a product listing into a leaf of the product taxonomy and extract the brand",
        languages=LANGUAGES,
        system_prompt=system_prompt(taxonomy),
        instruction=INSTRUCTION,
        output_schema=output_schema(taxonomy),
        scorer=score,
        primary_metric="category_accuracy",
        fields=("category",),
        generator=partial(generate, taxonomy=taxonomy),
        max_input_tokens=128,  # generated listings: p99 83, max 94 Qwen2.5 tokens (Thai is the longest)
    )


TASK = build_task(default_taxonomy())


@hookimpl
def register_tasks(register: Callable[[Task], None]) -> None:
    register(TASK)
