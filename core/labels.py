"""``lingoforge labels``: what a team's own labels look like before they become a task.

Real exports carry labels typed by people: ``Shipping``, ``shipping `` and ``shippings`` are one label to the
team and three to a classifier. This reads one field of a data file (with ``--map`` for the file's own column
names), counts its labels per language, flags the rare ones (a label needs examples in every language to be
learnt there), groups near-duplicates (case, spacing, separators, plural, one-letter typos) and writes a task
file that ``extends:`` a template with the labels found for every label field the data carries, the language
enum following the data's languages, and the template's prompts rewritten for those labels (its rules about
labels the data lacks dropped), so its scoring carries over and the team edits the prompts it will train with.
"""

from __future__ import annotations

import difflib
import re
from collections import Counter, defaultdict
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml

from .data.convert import normalize_language
from .data.findings import Finding
from .data.io import CSV_SUFFIXES, read_rows, read_text
from .data.mapping import ColumnMap
from .errors import DataError
from .task import Task
from .yaml_task import Relabeled, adapt_prompt, drop_stale_rules, enum_node

MIN_EXAMPLES = 10
TYPO_SIMILARITY = 0.85
_SEPARATORS = re.compile(r"[\s_\-/]+")


def label_report(
    path: str | Path, field: str, mapping: ColumnMap | None = None, min_examples: int = MIN_EXAMPLES
) -> dict[str, Any]:
    """Counts of ``field``'s labels per language, the rare labels and the near-duplicate groups of one file.

    A record without the field is listed by line (the first ten) and left out; a file where no record has it is
    an error naming the keys the first record has.
    """
    path = Path(path)
    fmt = "csv" if path.suffix.lower() in CSV_SUFFIXES else "jsonl"
    counts: dict[str, Counter[str]] = defaultdict(Counter)
    missing: list[int] = []
    keys: list[str] = []
    for row in read_rows(read_text(path), str(path), fmt, tsv=path.suffix.lower() == ".tsv", mapping=mapping):
        if isinstance(row, Finding):
            raise DataError(str(row))
        record = row.value if isinstance(row.value, Mapping) else {}
        keys = keys or list(record)
        value = _field(record, field)
        if value is None or not str(value).strip():
            missing.append(row.line)
            continue
        language = normalize_language(record.get("language")) or "?"
        counts[str(value)][language] += 1
    if not counts:
        raise DataError(f"{path}: line {missing[0] if missing else 1}: no record has a {field!r} field (keys: "
                        f"{', '.join(keys) or 'none'}); pass --field, or --map {field}=COLUMN")
    totals = {label: sum(c.values()) for label, c in counts.items()}
    languages = sorted({lang for c in counts.values() for lang in c})
    return {
        "file": str(path),
        "field": field,
        "map": str(mapping) if mapping else None,
        "examples": sum(totals.values()),
        "languages": languages,
        "labels": {label: dict(sorted(counts[label].items())) for label in sorted(totals, key=lambda k: -totals[k])},
        "rare": sorted(
            (label for label, c in counts.items() if min(c.get(lang, 0) for lang in languages) < min_examples),
            key=lambda k: totals[k],
        ),
        "min_examples": min_examples,
        "near_duplicates": near_duplicates(totals),
        "missing_lines": missing[:10],
        "missing": len(missing),
    }


def _field(record: Mapping[str, Any], field: str) -> Any:
    """The label at the top level (CSV columns, mapped records) or under ``output`` (canonical JSONL)."""
    if field in record:
        return record[field]
    output = record.get("output")
    return output.get(field) if isinstance(output, Mapping) else None


def normalized(label: str) -> str:
    """What people mean by a label: case, surrounding and inner spacing, separators and a plural ``s`` aside."""
    key = _SEPARATORS.sub(" ", label.casefold()).strip()
    if len(key) > 4 and key.endswith("ies"):
        return key[:-3] + "y"
    return key[:-1] if len(key) > 3 and key.endswith("s") and not key.endswith("ss") else key


def near_duplicates(totals: Mapping[str, int]) -> list[dict[str, Any]]:
    """Groups of labels that are one label spelled differently; ``keep`` is the most frequent spelling."""
    labels = sorted(totals)
    parent = {label: label for label in labels}

    def root(label: str) -> str:
        while parent[label] != label:
            parent[label] = parent[parent[label]]
            label = parent[label]
        return label

    keys = {label: normalized(label) for label in labels}
    for i, a in enumerate(labels):
        for b in labels[i + 1:]:
            if keys[a] == keys[b] or _typo(keys[a], keys[b]):
                parent[root(b)] = root(a)
    groups: dict[str, list[str]] = defaultdict(list)
    for label in labels:
        groups[root(label)].append(label)
    return [
        {"keep": max(group, key=lambda k: (totals[k], k == k.strip().lower())), "labels": group}
        for group in groups.values()
        if len(group) > 1
    ]


def _typo(a: str, b: str) -> bool:
    """One slip of the keyboard apart (a letter dropped, added, changed or two swapped) in words long enough for
    that to be a slip rather than another word, or mostly the same letters in long labels."""
    if min(len(a), len(b)) >= 5 and _one_edit(a, b):
        return True
    return min(len(a), len(b)) >= 8 and difflib.SequenceMatcher(None, a, b).ratio() >= TYPO_SIMILARITY


def _one_edit(a: str, b: str) -> bool:
    if abs(len(a) - len(b)) > 1:
        return False
    start = next((i for i, (x, y) in enumerate(zip(a, b, strict=False)) if x != y), min(len(a), len(b)))
    if len(a) == len(b):
        swapped = a[start:start + 2] == b[start:start + 2][::-1] and a[start + 2:] == b[start + 2:]
        return a[start + 1:] == b[start + 1:] or swapped
    longer, shorter = (a, b) if len(a) > len(b) else (b, a)
    return longer[start + 1:] == shorter[start:]


def merged_labels(report: Mapping[str, Any], template_labels: Sequence[str] = ()) -> list[str]:
    """The labels of ``report`` with near-duplicates merged into the spelling kept; those the template also has
    come first, in its order (so its label list in the prompt reads the same), the others by frequency."""
    merged = {label: group["keep"] for group in report["near_duplicates"] for label in group["labels"]}
    labels = list(dict.fromkeys(merged.get(label, label) for label in report["labels"]))
    order = {label: i for i, label in enumerate(template_labels)}
    return sorted(labels, key=lambda label: order.get(label, len(order)))


def enum_fields(base: Task) -> list[str]:
    """The template's output fields that take one label (not a list of them), ``language`` among them."""
    props = base.output_schema.get("properties") or {}
    return [f for f, node in props.items() if isinstance(node, Mapping) and node.get("type") != "array"
            and enum_node(dict(node)) is not None]


def propose(reports: Sequence[Mapping[str, Any]], base: Task) -> dict[str, Any]:
    """What the task written from ``reports`` (one per label field) changes in the template ``base``: each
    field's labels (kept, the template's the data lacks, new), the languages and the language enum (the data's,
    not the template's), and the template's prompts with the data's label lists and without the rules about
    labels the data lacks (:func:`~lingoforge.yaml_task.drop_stale_rules`), for the team to edit."""
    languages = sorted({lang for r in reports for lang in r["languages"] if lang != "?"}) or list(base.languages)
    fields: dict[str, dict[str, Any]] = {}
    for report in reports:
        old = base.label_values(report["field"])
        labels = merged_labels(report, old)
        fields[report["field"]] = {"labels": labels, "template_lacks": [x for x in labels if x not in old],
                                   "data_lacks": [x for x in old if x not in labels]}
    if "language" in enum_fields(base) and "language" not in fields:
        old = base.label_values("language")
        fields["language"] = {"labels": languages, "template_lacks": [x for x in languages if x not in old],
                              "data_lacks": [x for x in old if x not in languages]}
    relabeled: Relabeled = {f: (base.label_values(f), p["labels"]) for f, p in fields.items()
                            if set(p["labels"]) != set(base.label_values(f))}
    prompts: dict[str, str] = {}
    dropped: list[str] = []
    for key in ("system_prompt", "instruction"):
        text, notes = drop_stale_rules(adapt_prompt(getattr(base, key), relabeled), relabeled)
        prompts[key] = text
        dropped += [f"{key}: {note}" for note in notes]
    return {"fields": fields, "languages": languages, **prompts, "dropped": dropped}


def extends_yaml(reports: Mapping[str, Any] | Sequence[Mapping[str, Any]], name: str, template: str,
                 base: Task | None = None) -> str:
    """A task file that ``extends:`` ``template`` with the labels found (near-duplicates merged into the spelling
    kept) for each report's field, ready for ``--task``; comments say what was merged, so the data can be fixed
    to match. With ``base`` (the template task), the language enum follows the data's languages and the file
    carries the template's prompts adapted to the labels (:func:`propose`), for the team to edit; comments name
    the template's labels the data lacks and the rules dropped from the prompts."""
    reports = [reports] if isinstance(reports, Mapping) else list(reports)
    first = reports[0]
    fields = ", ".join(r["field"] for r in reports)
    lines = [f"# written by `lingoforge labels {first['file']}` for {fields}: {first['examples']} examples "
             f"({', '.join(first['languages'])})"]
    for report in reports:
        lines += [f"# {report['field']}: merged {', '.join(repr(x) for x in g['labels'] if x != g['keep'])} into "
                  f"{g['keep']!r}: fix those records to match" for g in report["near_duplicates"]]
    languages = [x for x in first["languages"] if x != "?"]
    body: dict[str, Any] = {"name": name, "extends": template, **({"languages": languages} if languages else {})}
    if base is None:
        body["fields"] = {r["field"]: {"labels": merged_labels(r)} for r in reports}
        return "\n".join(lines) + "\n" + yaml.safe_dump(body, allow_unicode=True, sort_keys=False)
    proposal = propose(reports, base)
    body["languages"] = proposal["languages"]
    body["fields"] = {f: {"labels": p["labels"]} for f, p in proposal["fields"].items()}
    lines += [f"# {f}: left out, as the data has none: {', '.join(map(repr, p['data_lacks']))}"
              for f, p in proposal["fields"].items() if p["data_lacks"]]
    lines += [f"# dropped from the {note}, as the data has no such label" for note in proposal["dropped"]]
    lines.append(f"# system_prompt and instruction: {template}'s, with your labels; edit them to describe your task")
    body["system_prompt"] = proposal["system_prompt"]
    body["instruction"] = proposal["instruction"]
    return "\n".join(lines) + "\n" + yaml.dump(body, Dumper=_Dumper, allow_unicode=True, sort_keys=False,
                                                width=120)


class _Dumper(yaml.SafeDumper):
    """Writes a multi-line string as a ``|`` block, so a prompt reads (and edits) as it will be sent; no anchors."""

    def ignore_aliases(self, data: Any) -> bool:
        return True


def _block(dumper: yaml.SafeDumper, value: str) -> yaml.Node:
    style = "|" if "\n" in value and all(line == line.rstrip() for line in value.split("\n")) else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_Dumper.add_representer(str, _block)
