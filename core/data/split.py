"""``data split``: train/val/test that measure what they claim to measure.

- Near duplicates (and exact ones) are grouped first and a group never straddles two splits, so the
  test score is not inflated by examples the model saw in training.
- Groups are assigned per language, greedily, to the split whose quota for the group's (language,
  primary label) stratum is most behind, then the language's quota; largest groups first, order
  otherwise a seeded shuffle. Quotas are whole numbers: each language's by largest remainder, and its
  strata's rounded so that they add up to it (language first, then label where the counts allow). A
  stratum too small for a share of every split (one example of one of 45 labels) still goes where the
  language's quota needs it, so ``--test 0.25`` delivers 25% of a many-label file, not the few
  labels large enough to round up to a test example.
- A language with at least as many groups as there are non-empty splits gets at least one group in
  each of them (a final repair moves its smallest group if the greedy pass left a split without it):
  per-language evaluation needs every language in val and test, and small languages are exactly the
  ones rounding would drop.

The data is checked first; a file with errors is refused (``data check --fix`` makes a clean one).
Exact duplicates are written once, and missing languages are filled from detection, as ``--fix`` does.

``train --data ONE_FILE`` holds out validation differently, with ``split_validation``: each example's side is a
hash of its normalised input, so adding rows to a file the user keeps growing moves no existing row between
training and validation (a stratified split would reshuffle them, and the validation losses of two trainings
on the same file would not compare). ``load_data`` reads either a split folder or such a file.
"""

from __future__ import annotations

import hashlib
import math
import random
from collections import Counter, defaultdict
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from .. import __version__
from ..errors import DataError
from ..fsutil import staged, write_json
from ..progress import Stages, silent
from ..scoring import normalize_text
from ..task import Example, Task
from .checks import UNKNOWN_LANGUAGE, check_file, cleaned_examples
from .dedup import find_duplicates
from .io import Located, load_examples, write_examples
from .mapping import ColumnMap

SPLITS = ("train", "val", "test")


def _label(task: Task, example: Example) -> str:
    if not task.fields:
        return ""
    value = example.output.get(task.fields[0])
    return value if isinstance(value, str) else repr(value)


def assign_splits(
    examples: Sequence[Example], task: Task, val: float = 0.1, test: float = 0.1, seed: int = 0
) -> list[str]:
    """The split name of every example (same order as ``examples``)."""
    fractions = split_fractions(val, test)
    active = [k for k in SPLITS if fractions[k] > 0]
    groups: list[list[int]] = find_duplicates([e.input for e in examples]).near
    grouped = {i for g in groups for i in g}
    groups += [[i] for i in range(len(examples)) if i not in grouped]
    by_language: dict[str, list[list[int]]] = defaultdict(list)
    for group in groups:
        by_language[examples[group[0]].language or UNKNOWN_LANGUAGE].append(group)
    rng = random.Random(seed)
    out = [""] * len(examples)
    for lang in sorted(by_language):
        units = sorted(by_language[lang])
        rng.shuffle(units)
        units.sort(key=len, reverse=True)
        _assign_language(units, [_label(task, examples[u[0]]) for u in units], fractions, active, out)
    return out


def split_fractions(val: float, test: float) -> dict[str, float]:
    if not (0 <= val < 1 and 0 <= test < 1 and val + test < 1):
        raise DataError(f"--val {val} and --test {test} must be fractions in [0, 1) leaving some data for training")
    return {"train": 1 - val - test, "val": val, "test": test}


def _assign_language(
    units: list[list[int]], labels: list[str], fractions: dict[str, float], active: list[str], out: list[str]
) -> None:
    """Greedy quota filling for one language's groups, then the every-split repair."""
    n = sum(len(u) for u in units)
    lang_target = _quota(n, fractions, active, at_least_one=len(units) >= len(active))
    stratum_size = Counter[str]()
    for unit, label in zip(units, labels, strict=True):
        stratum_size[label] += len(unit)
    stratum_target = _stratum_quotas(stratum_size, lang_target, fractions, active)
    lang_count = Counter[str]()
    stratum_count: dict[str, Counter[str]] = defaultdict(Counter)
    placed: dict[str, list[list[int]]] = defaultdict(list)
    for unit, label in zip(units, labels, strict=True):

        def behind(k: str, label: str = label) -> tuple[int, int]:
            return stratum_target[label][k] - stratum_count[label][k], lang_target[k] - lang_count[k]

        best = max(active, key=behind)
        lang_count[best] += len(unit)
        stratum_count[label][best] += len(unit)
        placed[best].append(unit)
    if len(units) >= len(active):
        for k in active:
            if not placed[k]:
                donor = max(active, key=lambda d: len(placed[d]))
                smallest = min(placed[donor], key=len)
                placed[donor].remove(smallest)
                placed[k].append(smallest)
    for k, units_in in placed.items():
        for unit in units_in:
            for i in unit:
                out[i] = k


def _stratum_quotas(
    sizes: Mapping[str, int], lang_target: Mapping[str, int], fractions: Mapping[str, float], active: list[str]
) -> dict[str, dict[str, int]]:
    """Whole-example targets per (label, split) whose rows add up to each label's size and whose columns add up to
    the language's quota: floors of the exact shares first, then each label's remaining examples to the split whose
    language quota is still open, the largest fractional share first (labels in the order of ``sizes``, which is the
    seeded shuffle's). Rounding each label alone would give a one-example label to training every time."""
    raw = {label: {k: size * fractions[k] for k in active} for label, size in sizes.items()}
    quota = {label: {k: math.floor(raw[label][k] + 1e-9) for k in active} for label in sizes}
    open_ = {k: lang_target[k] - sum(quota[label][k] for label in sizes) for k in active}
    for label, size in sizes.items():
        for _ in range(size - sum(quota[label].values())):
            k = max(active, key=lambda k: (open_[k] > 0, raw[label][k] - quota[label][k], open_[k]))
            quota[label][k] += 1
            open_[k] -= 1
    return quota


def _quota(n: int, fractions: dict[str, float], active: list[str], at_least_one: bool = False) -> dict[str, int]:
    """Whole-example targets summing to ``n`` (largest remainder), so no split gains or loses one to
    floating point; with ``at_least_one`` every split but the first gets at least one."""
    raw = {k: n * fractions[k] for k in active}
    quota = {k: math.floor(raw[k] + 1e-9) for k in active}
    for k in sorted(active, key=lambda k: quota[k] - raw[k])[: n - sum(quota.values())]:
        quota[k] += 1
    if at_least_one:
        for k in active[1:]:
            if quota[k] == 0:
                quota[k] = 1
                quota[active[0]] -= 1
    return quota


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def split_dataset(
    source: str | Path,
    task: Task,
    out_dir: str | Path,
    val: float = 0.1,
    test: float = 0.1,
    seed: int = 0,
    stages: Stages = silent,
    mapping: ColumnMap | None = None,
) -> dict[str, Any]:
    """Check ``source`` (its columns mapped by ``mapping``), split it and write ``train/val/test.jsonl`` and
    ``data_report.json`` into ``out_dir``, all four or none (``fsutil.staged``: a full disk midway leaves the previous
    split as it was). Returns the report."""
    fractions = split_fractions(val, test)
    source, out_dir = Path(source), Path(out_dir)
    report = check_file(source, task, stages=stages, mapping=mapping)
    if report.errors:
        listed = "\n  ".join(str(f) for f in report.findings if f.severity == "error")
        first = "\n  ".join(listed.split("\n  ")[:10])
        raise DataError(
            f"{source}: {report.errors} error(s), not splitting:\n  {first}\n"
            f"fix them, or run `lingoforge data check {source} --task {task.name} --fix CLEAN.jsonl` "
            "and split CLEAN.jsonl"
        )
    if not report.records:
        raise DataError(f"{source}: no usable records to split")
    examples = cleaned_examples(report)
    names = assign_splits(examples, task, val, test, seed)
    parts = {k: [e for e, name in zip(examples, names, strict=True) if name == k] for k in SPLITS}
    with staged(out_dir) as stage:
        return _write_split(stage, source, mapping, task, seed, fractions, examples, parts, report)


def _write_split(
    stage: Path, source: Path, mapping: Any, task: Task, seed: int, fractions: Mapping[str, float],
    examples: Sequence[Example], parts: Mapping[str, Sequence[Example]], report: Any,
) -> dict[str, Any]:
    """The split files and ``data_report.json`` (what went where, by language and label, and why)."""
    files: dict[str, Any] = {}
    for k in SPLITS:
        path = stage / f"{k}.jsonl"
        files[k] = {"path": path.name, "records": write_examples(path, parts[k]), "sha256": _sha256(path)}
    languages = sorted({e.language or UNKNOWN_LANGUAGE for e in examples})
    result: dict[str, Any] = {
        "source": str(source),
        "map": str(mapping) if mapping else None,
        "source_sha256": _sha256(source),
        "task": {"name": task.name, "version": task.version},
        "seed": seed,
        "fractions": fractions,
        "files": files,
        "languages": {k: dict(Counter(e.language or UNKNOWN_LANGUAGE for e in parts[k]).most_common()) for k in SPLITS},
        "delivered": delivered(examples, parts),
        "primary_label": task.fields[0] if task.fields else None,
        "labels": {k: _labels(task, parts[k]) for k in SPLITS},
        "missing_languages": {
            k: [lang for lang in languages if not any((e.language or UNKNOWN_LANGUAGE) == lang for e in parts[k])]
            for k in SPLITS
            if fractions[k] > 0
        },
        "near_duplicate_groups": report.duplicates.get("near_groups", 0),
        "dropped_duplicates": len(report.records) - len(examples),
        "repaired": len(report.fixes),
        "check": {
            "warnings": report.warnings,
            "issue_counts": report.counts_by_code(),
            "suggested_additions": report.suggestions,
        },
        "lingoforge_version": __version__,
    }
    write_json(stage / "data_report.json", result)
    return result


def delivered(examples: Sequence[Example], parts: Mapping[str, Sequence[Example]]) -> dict[str, dict[str, float]]:
    """The fraction each split got, of all examples (``all``) and of each language's: what was asked, checked."""
    total = Counter(e.language or UNKNOWN_LANGUAGE for e in examples)
    out = {}
    for k in SPLITS:
        got = Counter(e.language or UNKNOWN_LANGUAGE for e in parts[k])
        out[k] = {"all": len(parts[k]) / len(examples), **{lang: got[lang] / n for lang, n in sorted(total.items())}}
    return out


def _labels(task: Task, examples: Sequence[Example]) -> dict[str, dict[str, int]]:
    by: dict[str, Counter[str]] = defaultdict(Counter)
    for e in examples:
        by[e.language or UNKNOWN_LANGUAGE][_label(task, e)] += 1
    return {lang: dict(c.most_common()) for lang, c in sorted(by.items())}


def holdout_score(example: Example, seed: int) -> float:
    """An example's place in [0, 1) for the validation split: a hash of the seed and its input as ``data check``
    normalises it for duplicates, so its side depends on nothing else in the file and duplicates share a side."""
    digest = hashlib.sha256(f"{seed}\x00{normalize_text(example.input)}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def split_validation(items: Sequence[Located], fraction: float, seed: int) -> tuple[list[Located], list[Located]]:
    """Train and validation examples of one file: validation is every example whose ``holdout_score`` is below
    ``fraction``, decided per example, so adding rows to any language moves no existing row between the two.

    The price of that stability is that each language holds out about ``fraction`` of its examples, not exactly.
    A language with two or more examples keeps at least one on each side (its lowest-scored example validates,
    its highest trains), so per-language validation loss exists for every language; a single example trains.
    That borrowed row is the one exception to stability: it returns to training once a row of its language falls
    under ``fraction`` by its own hash.
    """
    if fraction == 0:
        return list(items), []
    scores = [holdout_score(item.example, seed) for item in items]
    held = [score < fraction for score in scores]
    by_lang: dict[str, list[int]] = defaultdict(list)
    for k, item in enumerate(items):
        by_lang[item.example.language].append(k)
    for indices in by_lang.values():
        if len(indices) == 1:
            held[indices[0]] = False
            continue
        if not any(held[k] for k in indices):
            held[min(indices, key=scores.__getitem__)] = True
        if all(held[k] for k in indices):
            held[max(indices, key=scores.__getitem__)] = False
    return [i for i, h in zip(items, held, strict=True) if not h], [i for i, h in zip(items, held, strict=True) if h]


def describe_holdout(train_items: Sequence[Located], val_items: Sequence[Located], fraction: float) -> str:
    """What a single data file lost to validation, per language: those examples are not trained on."""
    languages = sorted({i.example.language for i in [*train_items, *val_items]})
    held = Counter(i.example.language for i in val_items)
    return (
        f"held out {len(val_items)} of {len(train_items) + len(val_items)} examples for validation "
        f"(about {fraction * 100:g}% per language and at least one, chosen by a hash of each input, so adding "
        "examples moves none): "
        + ", ".join(f"{lang} {held[lang]}" for lang in languages)
        + "; pass --val to change (0: no validation)"
    )


def load_data(
    data: Path, task: Task, val_fraction: float, seed: int, mapping: ColumnMap | None = None
) -> tuple[list[Located], list[Located], dict[str, str]]:
    """Train and validation examples from a split folder (train.jsonl + val.jsonl) or one file.

    A single file gets a validation split held out per language by ``split_validation`` (none when
    ``val_fraction`` is 0); a folder's own val.jsonl is used as it is.
    """
    if data.is_dir():
        train_file, val_file = data / "train.jsonl", data / "val.jsonl"
        if not train_file.is_file():
            raise DataError(f"{data} has no train.jsonl; run `lingoforge data split` or pass a JSONL file")
        if not val_file.is_file():
            raise DataError(
                f"{data} has train.jsonl but no val.jsonl; run `lingoforge data split` or pass a JSONL file"
            )
        return (
            load_examples(train_file, task),
            load_examples(val_file, task),
            {"train": str(train_file), "val": str(val_file)},
        )
    train_items, val_items = split_validation(load_examples(data, task, mapping=mapping), val_fraction, seed)
    if val_fraction > 0 and not val_items:
        raise DataError(
            f"{data}: no language has two examples, so none can be held out for validation; add examples, "
            "pass --val 0 to train without validation, or pass a folder with val.jsonl"
        )
    return train_items, val_items, {"train+val": str(data)}
