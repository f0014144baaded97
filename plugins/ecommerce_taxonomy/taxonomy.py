"""The product taxonomy: leaves with full paths, read from a YAML file the user can replace.

The built-in ``taxonomy.yaml`` is used unless ``LINGOFORGE_TAXONOMY`` names another file. Every
problem in a file is reported as ``<file>: <key path>: <what is wrong>`` so it can be fixed without
reading this code.
"""

from __future__ import annotations

import functools
import hashlib
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Any

import yaml
from lingoforge.errors import TaskDefinitionError

from .vocab import LANGUAGES, common_words

ENV_VAR = "LINGOFORGE_TAXONOMY"
DEFAULT_PATH = Path(__file__).with_name("taxonomy.yaml")
SEPARATOR = " > "
LEAF_ID = re.compile(r"^[a-z][a-z0-9_]*$")
_LEAF_KEYS = ("id", "path", "terms", "brands")
# The taxonomy is read on every CLI start (the plugin builds its schema at import): the C loader takes
# ~2 ms where the pure-Python one takes ~90 ms, and both are safe loaders (no arbitrary objects).
_SAFE_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


@dataclass(frozen=True)
class Leaf:
    """One category the model can answer. ``terms``/``brands``, when given, replace the lexicon's words."""

    id: str
    path: str
    terms: Mapping[str, tuple[str, ...]]
    brands: tuple[str, ...]

    @property
    def top_level(self) -> str:
        return self.path.split(SEPARATOR, 1)[0]


@dataclass(frozen=True, eq=False)  # identity hash: generators cache their word lists per taxonomy
class Taxonomy:
    """The leaves of one taxonomy file, in file order, plus where they came from."""

    leaves: tuple[Leaf, ...]
    source: Path
    digest: str

    @property
    def paths(self) -> list[str]:
        return [leaf.path for leaf in self.leaves]

    @property
    def is_builtin(self) -> bool:
        return self.source.resolve() == DEFAULT_PATH.resolve()


def taxonomy_path() -> Path:
    """The file to load: ``$LINGOFORGE_TAXONOMY`` if set, else the built-in ``taxonomy.yaml``."""
    override = os.environ.get(ENV_VAR, "").strip()
    return Path(override).expanduser() if override else DEFAULT_PATH


@functools.cache
def default_taxonomy() -> Taxonomy:
    """The taxonomy of the registered task, loaded once per process (the env var is read then)."""
    return load_taxonomy(taxonomy_path())


def load_taxonomy(path: str | os.PathLike[str]) -> Taxonomy:
    """Read and validate a taxonomy file; raise ``TaskDefinitionError`` naming the file and key path."""
    path = Path(path)
    try:
        raw_bytes = path.read_bytes()
        data = yaml.load(raw_bytes.decode("utf-8"), Loader=_SAFE_LOADER)
    except (OSError, UnicodeDecodeError) as exc:
        raise TaskDefinitionError(f"{path}: cannot read the taxonomy ({ENV_VAR} points here?): {exc}") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        raise TaskDefinitionError(f"{path}: {where}invalid YAML: {getattr(exc, 'problem', exc)}") from None
    reader = _Reader(path)
    if not isinstance(data, Mapping):
        raise reader.fail("(top level)", f"expected a mapping with a `leaves:` list, got {type(data).__name__}")
    raw_leaves = data.get("leaves")
    if not isinstance(raw_leaves, list) or len(raw_leaves) < 2:
        raise reader.fail("leaves", "expected a list of at least two leaves ({id: ..., path: ...})")
    leaves = tuple(reader.leaf(raw, f"leaves[{i}]") for i, raw in enumerate(raw_leaves))
    reader.check_unique(leaves)
    return Taxonomy(leaves, path, hashlib.sha256(raw_bytes).hexdigest())


class _Reader:
    """Validates the parts of one taxonomy file, raising on the first problem with its key path."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def fail(self, key: str, message: str) -> TaskDefinitionError:
        return TaskDefinitionError(f"{self.path}: {key}: {message}")

    def leaf(self, raw: Any, key: str) -> Leaf:
        if not isinstance(raw, Mapping):
            raise self.fail(key, f"expected a mapping like {{id: phone_case, path: 'A > B'}}, got {raw!r}")
        unknown = [k for k in raw if k not in _LEAF_KEYS]
        if unknown:
            raise self.fail(f"{key}.{unknown[0]}", f"unknown key; a leaf has {', '.join(_LEAF_KEYS)}")
        leaf_id = raw.get("id")
        if not isinstance(leaf_id, str) or not LEAF_ID.match(leaf_id):
            raise self.fail(f"{key}.id", f"expected an id matching {LEAF_ID.pattern}, got {leaf_id!r}")
        terms = self.terms(raw.get("terms"), f"{key}.terms")
        if leaf_id not in common_words():
            missing = [lang for lang in LANGUAGES if lang not in terms]
            if missing:
                raise self.fail(
                    f"{key}.terms",
                    f"leaf {leaf_id!r} is not in the built-in lexicon; give product "
                    f"nouns for every language, missing: {', '.join(missing)}",
                )
        return Leaf(
            leaf_id,
            self.leaf_path(raw.get("path"), f"{key}.path"),
            terms,
            tuple(self.strings(raw.get("brands") or [], f"{key}.brands")),
        )

    def leaf_path(self, raw: Any, key: str) -> str:
        if not isinstance(raw, str):
            raise self.fail(key, f"expected a path like 'Electronics > Audio > Headphones', got {raw!r}")
        segments = [s.strip() for s in raw.split(">")]
        if len(segments) < 2 or not all(segments):
            raise self.fail(key, f"{raw!r} needs at least two non-empty segments joined by '>'")
        if "|" in raw:
            raise self.fail(key, f"{raw!r} contains '|', which separates leaves in the system prompt's category list")
        return SEPARATOR.join(segments)

    def terms(self, raw: Any, key: str) -> Mapping[str, tuple[str, ...]]:
        if raw is None:
            return MappingProxyType({})
        if not isinstance(raw, Mapping):
            raise self.fail(key, f"expected a mapping of language to nouns, got {type(raw).__name__}")
        for lang in raw:
            if lang not in LANGUAGES:
                raise self.fail(f"{key}.{lang}", f"unknown language; the task covers {', '.join(LANGUAGES)}")
        # LANGUAGES order, not file order, so equal files give equal taxonomies.
        terms = {
            lang: tuple(self.strings(raw[lang], f"{key}.{lang}", required=True)) for lang in LANGUAGES if lang in raw
        }
        return MappingProxyType(terms)

    def strings(self, raw: Any, key: str, required: bool = False) -> list[str]:
        if not isinstance(raw, list) or (required and not raw):
            raise self.fail(key, "expected a non-empty list of strings" if required else "expected a list of strings")
        for i, item in enumerate(raw):
            if not isinstance(item, str) or not item.strip():
                raise self.fail(f"{key}[{i}]", f"expected a non-empty string, got {item!r}")
        return [item.strip() for item in raw]

    def check_unique(self, leaves: tuple[Leaf, ...]) -> None:
        """Ids and paths are unique, and no leaf is the parent of another (a leaf must be answerable)."""
        ids: dict[str, int] = {}
        paths: dict[str, int] = {}
        for i, leaf in enumerate(leaves):
            if leaf.id in ids:
                raise self.fail(f"leaves[{i}].id", f"duplicate id {leaf.id!r} (also leaves[{ids[leaf.id]}])")
            if leaf.path in paths:
                raise self.fail(f"leaves[{i}].path", f"duplicate path {leaf.path!r} (also leaves[{paths[leaf.path]}])")
            ids[leaf.id], paths[leaf.path] = i, i
        for i, leaf in enumerate(leaves):
            for other in leaves:
                if other.path.startswith(leaf.path + SEPARATOR):
                    raise self.fail(
                        f"leaves[{i}].path",
                        f"{leaf.path!r} is a parent of leaf {other.path!r}; "
                        "only the most specific categories can be leaves",
                    )
