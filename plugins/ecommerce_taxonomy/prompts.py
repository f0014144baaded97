"""System prompt and instruction of the task.

The category list goes into the system prompt in a grouped form (parent path once, then its leaves)
so the 45 paths cost roughly half the tokens of a flat list; the instruction stays one short line
because it is repeated in every training example.
"""

from __future__ import annotations

from .taxonomy import SEPARATOR, Taxonomy

INSTRUCTION = (
    'Classify this product listing. Answer with the JSON object only: {"category": <full leaf path>, '
    '"brand": <brand or null>}.'
)

_SYSTEM = """\
You classify e-commerce product listings written in any language into a fixed product taxonomy and extract the brand.
- category: the full path of exactly one leaf, copied exactly, e.g. "{example}".
- brand: the maker of the product being sold, spelled as in the listing. A device the product only fits \
("for iPhone 15") is not its brand. Use null when no maker is named.
Leaves, grouped by parent path ("parent > leaf | leaf" means "parent > leaf" and "parent > leaf"):
{listing}"""


def category_listing(taxonomy: Taxonomy) -> str:
    """One line per parent path, listing its leaves; parents keep the order they first appear in."""
    groups: dict[str, list[str]] = {}
    for leaf in taxonomy.leaves:
        parent, _, name = leaf.path.rpartition(SEPARATOR)
        groups.setdefault(parent, []).append(name)
    return "\n".join(f"{parent}{SEPARATOR}{' | '.join(names)}" for parent, names in groups.items())


def system_prompt(taxonomy: Taxonomy) -> str:
    """The system prompt for ``taxonomy`` (written into the Ollama Modelfile as ``SYSTEM``)."""
    return _SYSTEM.format(example=taxonomy.leaves[0].path, listing=category_listing(taxonomy))
