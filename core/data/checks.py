"""``data check``: everything wrong with a data file, found before any GPU time is spent.

Errors (the file is not usable as is; ``--fix`` drops or repairs the records): unusable lines, outputs
that violate the schema (with the JSON pointer), labels outside the label set (with the closest valid
label), empty inputs, exact duplicates whose outputs disagree, and exact duplicates of another split.
Warnings: declared vs detected language mismatches, inputs far longer than the rest, duplicates and near
duplicates, too few examples per language, unbalanced languages, a total outside 300-500 for a first run.
"""

from __future__ import annotations

import difflib
import json
import math
import re
import statistics
from collections import Counter, defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from ..progress import Advance, Stages, silent
from ..schema import validate
from ..task import Example, Task
from .convert import Record
from .dedup import THRESHOLD, find_duplicates
from .findings import Finding
from .io import ReadResult, read_records
from .langid import MIN_CONFIDENCE, LanguageDetector
from .mapping import ColumnMap

MIN_PER_LANGUAGE = 50
FIRST_RUN = (300, 500)
LONG_FACTOR = 8
LONG_MIN_CHARS = 1000
UNKNOWN_LANGUAGE = "?"
_REQUIRED = re.compile(r"^'([^']+)' is a required property$")


@dataclass
class CheckReport:
    """The result of checking one file. ``findings`` are sorted by line; ``fixes`` maps a line to the
    repaired example ``--fix`` writes, ``drop`` a line to the reason ``--fix`` leaves it out."""

    file: str
    task: str
    format: str
    records: list[Record]
    findings: list[Finding]
    sources: dict[str, int]
    against: list[str] = field(default_factory=list)
    unusable: int = 0
    languages: dict[str, int] = field(default_factory=dict)
    labels: dict[str, dict[str, dict[str, int]]] = field(default_factory=dict)
    detection: dict[str, Any] = field(default_factory=dict)
    duplicates: dict[str, Any] = field(default_factory=dict)
    suggestions: dict[str, int] = field(default_factory=dict)
    fixes: dict[int, Example] = field(default_factory=dict)
    drop: dict[int, str] = field(default_factory=dict)

    @property
    def errors(self) -> int:
        return sum(f.severity == "error" for f in self.findings)

    @property
    def warnings(self) -> int:
        return sum(f.severity == "warning" for f in self.findings)

    @property
    def usable(self) -> bool:
        return self.errors == 0 and bool(self.records)

    def counts_by_code(self) -> dict[str, int]:
        return dict(Counter(f.code for f in self.findings).most_common())

    def to_dict(self) -> dict[str, Any]:
        """The ``--json`` output."""
        return {
            "file": self.file,
            "task": self.task,
            "format": self.format,
            "usable": self.usable,
            "records": len(self.records),
            "unusable_lines": self.unusable,
            "errors": self.errors,
            "warnings": self.warnings,
            "converted_from": self.sources,
            "languages": self.languages,
            "labels": self.labels,
            "language_detection": self.detection,
            "duplicates": self.duplicates,
            "suggested_additions": self.suggestions,
            "against": self.against,
            "issue_counts": self.counts_by_code(),
            "findings": [f.to_dict() for f in self.findings],
        }


def check_file(
    path: str | Path,
    task: Task,
    against: Sequence[str | Path] = (),
    stages: Stages = silent,
    mapping: ColumnMap | None = None,
) -> CheckReport:
    """Read ``path`` (and the other splits in ``against``, all with the same ``--map``) and check it."""
    result = read_records(path, task, stages(f"reading {Path(path).name}", None), mapping)
    others = [read_records(p, task, mapping=mapping) for p in against]
    return check_records(result, task, others, stages)


def check_records(
    result: ReadResult, task: Task, against: Sequence[ReadResult] = (), stages: Stages = silent
) -> CheckReport:
    """Check already-read records; ``against`` are other splits to look for leaked duplicates in."""
    records = result.records
    report = CheckReport(
        file=str(result.path),
        task=task.name,
        format=result.format,
        records=records,
        findings=list(result.findings),
        sources=dict(result.sources),
        against=[str(o.path) for o in against],
        unusable=len(result.findings),
    )
    _check_outputs(report, task, stages("validating outputs", len(records)))
    _check_inputs(report)
    languages = _check_languages(report, task, stages("detecting languages", len(records)))
    stage = stages("finding duplicates", None)
    _check_duplicates(report, against)
    stage(len(records))
    _count(report, task, languages)
    report.findings.sort(key=lambda f: (f.line, f.severity != "error"))
    return report


def _enum_at(schema: Mapping[str, Any], pointer: str) -> list[Any] | None:
    """The ``enum`` of the schema node a JSON pointer into the instance lands on, if any."""
    node: Any = schema
    for part in [p for p in pointer.split("/") if p]:
        if not isinstance(node, Mapping):
            return None
        for alt in node.get("anyOf") or node.get("oneOf") or ():
            if "properties" in alt or "items" in alt:
                node = alt
        node = (node.get("properties") or {}).get(part) if not part.isdigit() else node.get("items")
    if not isinstance(node, Mapping):
        return None
    if "enum" in node:
        return list(node["enum"])
    return next((list(alt["enum"]) for alt in node.get("anyOf") or () if "enum" in alt), None)


def _free_text_fields(schema: Mapping[str, Any]) -> frozenset[str]:
    """Top-level properties whose schema accepts every string (no enum, pattern, length or format)."""

    def plain(node: Mapping[str, Any]) -> bool:
        return node.get("type") == "string" and set(node) <= {"type", "description", "title"}

    out = set()
    for key, node in (schema.get("properties") or {}).items():
        alternatives = node.get("anyOf") or ()
        if plain(node) or (
            alternatives
            and set(node) <= {"anyOf", "description", "title"}
            and any(plain(a) for a in alternatives)
            and all(plain(a) or a == {"type": "null"} for a in alternatives)
        ):
            out.add(key)
    return frozenset(out)


def _value_at(value: Any, pointer: str) -> Any:
    for part in [p for p in pointer.split("/") if p]:
        value = value[int(part)] if isinstance(value, list) else value.get(part) if isinstance(value, Mapping) else None
    return value


def _check_outputs(report: CheckReport, task: Task, advance: Advance) -> None:
    """Schema violations with JSON pointers; an enum violation becomes a label finding naming the
    closest valid label, and a label that differs only in case or spacing is repaired by ``--fix``."""
    schema = task.schema
    free_text = _free_text_fields(schema)
    cache: dict[str, list[Any]] = {}
    for n, record in enumerate(report.records, start=1):
        if n % 10_000 == 0:
            advance(10_000)
        output = dict(record.example.output)
        # Any string validates the same against a plain {"type": "string"}, so those values are left out
        # of the cache key: label-like outputs then validate once per distinct combination.
        shape = {k: "" if k in free_text and isinstance(v, str) else v for k, v in output.items()}
        key = json.dumps(shape, sort_keys=True, ensure_ascii=False, default=str)
        if key not in cache:
            cache[key] = validate(schema, output)
        repaired = dict(output)
        unfixable = False
        for issue in cache[key]:
            labels = _enum_at(schema, issue.pointer) if issue.pointer else None
            value = _value_at(output, issue.pointer)
            if labels and isinstance(value, str):
                exact = [lab for lab in labels if isinstance(lab, str) and lab.casefold() == value.strip().casefold()]
                closest = exact or difflib.get_close_matches(value, [str(lab) for lab in labels], n=1, cutoff=0.0)
                field_name = issue.pointer.strip("/").replace("/", ".")
                if exact and "/" not in issue.pointer.strip("/"):
                    repaired[issue.pointer.strip("/")] = exact[0]
                    hint = f"; --fix changes it to {exact[0]!r}"
                else:
                    unfixable = True
                    hint = f"; closest valid label: {closest[0]!r}" if closest else ""
                report.findings.append(
                    Finding(
                        "error",
                        "unknown_label",
                        record.line,
                        f"/output{issue.pointer}",
                        f"{value!r} is not a valid {field_name}{hint}",
                        report.file,
                    )
                )
            else:
                unfixable = True
                missing = _REQUIRED.match(issue.message)
                if missing:
                    report.findings.append(
                        Finding(
                            "error",
                            "missing_field",
                            record.line,
                            f"/output{issue.pointer}/{missing.group(1)}",
                            f"missing field {missing.group(1)!r}",
                            report.file,
                        )
                    )
                else:
                    report.findings.append(
                        Finding("error", "schema", record.line, f"/output{issue.pointer}", issue.message, report.file)
                    )
        if unfixable:
            report.drop[record.line] = "output does not match the schema"
        elif repaired != output:
            report.fixes[record.line] = replace(record.example, output=repaired)


def _check_inputs(report: CheckReport) -> None:
    """Empty inputs (errors) and inputs far longer than the rest (warnings: they are truncated in training)."""
    lengths = [len(r.example.input) for r in report.records]
    median = statistics.median(lengths) if lengths else 0
    limit = max(LONG_FACTOR * median, LONG_MIN_CHARS)
    for record, length in zip(report.records, lengths, strict=True):
        if not record.example.input.strip():
            report.findings.append(
                Finding("error", "empty_input", record.line, "/input", "the input is empty", report.file)
            )
            report.drop[record.line] = "empty input"
        elif length > limit:
            report.findings.append(
                Finding(
                    "warning",
                    "long_input",
                    record.line,
                    "/input",
                    f"{length:,} characters, {length / max(median, 1):.0f}× the median ({median:,.0f}); "
                    "it may be truncated in training, see `lingoforge tokens`",
                    report.file,
                )
            )


def _check_languages(report: CheckReport, task: Task, advance: Advance) -> list[str]:
    """Detect every input's language, list mismatches with the declared one, fill missing ones for
    ``--fix`` when the detection is sure; returns the language each record counts under."""
    declared = [r.example.language for r in report.records]
    detector = LanguageDetector({*task.languages, *(d for d in declared if d)})
    detections = detector.detect([r.example.input for r in report.records], advance)
    counted: list[str] = []
    mismatches = unsure = undeclared = 0
    detected: Counter[str] = Counter()
    for record, lang, det in zip(report.records, declared, detections, strict=True):
        detected[det.language if det.sure and det.language else UNKNOWN_LANGUAGE] += 1
        if not det.sure:
            unsure += 1
        if not lang:
            undeclared += 1
            guess = det.language if det.sure and det.language else UNKNOWN_LANGUAGE
            fill = f"; --fix sets {guess!r}" if guess != UNKNOWN_LANGUAGE else ""
            report.findings.append(
                Finding(
                    "warning",
                    "no_language",
                    record.line,
                    "/language",
                    f"no language declared; detected {guess!r}{fill}",
                    report.file,
                )
            )
            if guess != UNKNOWN_LANGUAGE:
                base = report.fixes.get(record.line, record.example)
                report.fixes[record.line] = replace(base, language=guess)
            counted.append(guess)
            continue
        counted.append(lang)
        if det.sure and det.language != lang and lang not in detector.unsupported:
            mismatches += 1
            report.findings.append(
                Finding(
                    "warning",
                    "language_mismatch",
                    record.line,
                    "/language",
                    f"declared {lang!r}, but the input reads as {det.language!r} (p={det.confidence:.2f})",
                    report.file,
                )
            )
    report.detection = {
        "library": "py3langid (batched)",
        "min_confidence": MIN_CONFIDENCE,
        "detected": dict(detected.most_common()),
        "mismatches": mismatches,
        "unsure": unsure,
        "undeclared": undeclared,
        "unverifiable_languages": list(detector.unsupported),
    }
    return counted


def _check_duplicates(report: CheckReport, against: Sequence[ReadResult]) -> None:
    """Exact and near duplicates inside the file, and across the other splits (leaks)."""
    texts = [r.example.input for r in report.records]
    owners: list[tuple[str, Record]] = [(report.file, r) for r in report.records]
    for other in against:
        texts += [r.example.input for r in other.records]
        owners += [(str(other.path), r) for r in other.records]
    own = len(report.records)
    dups = find_duplicates(texts)
    exact_of = {i: group[0] for group in dups.exact for i in group}
    best_similarity: dict[int, float] = {}
    for (a, b), sim in dups.similarity.items():
        for i in (a, b):
            best_similarity[i] = max(sim, best_similarity.get(i, 0.0))
    counts = Counter[str]()
    for group in dups.near:
        first_own = next((i for i in group if i < own), None)
        if first_own is None:
            continue
        foreign = [i for i in group if i >= own]
        for i in group:
            if i >= own:
                continue
            record = owners[i][1]
            if foreign:
                j = foreign[0]
                where = f"{Path(owners[j][0]).name}:{owners[j][1].line}"
                if exact_of.get(i) is not None and exact_of.get(i) == exact_of.get(j):
                    counts["cross_split_exact"] += 1
                    report.findings.append(
                        Finding(
                            "error",
                            "leak_exact",
                            record.line,
                            "/input",
                            f"the same text is in {where}; --fix drops it here",
                            report.file,
                        )
                    )
                    report.drop[record.line] = f"duplicate of {where}"
                else:
                    counts["cross_split_near"] += 1
                    report.findings.append(
                        Finding(
                            "warning", "leak_near", record.line, "/input", f"near duplicate of {where}", report.file
                        )
                    )
                continue
            if i == first_own:
                continue
            first = owners[first_own][1]
            if exact_of.get(i) is not None and exact_of.get(i) == exact_of.get(first_own):
                counts["exact"] += 1
                if dict(record.example.output) != dict(first.example.output):
                    report.findings.append(
                        Finding(
                            "error",
                            "conflicting_duplicate",
                            record.line,
                            "/output",
                            f"same input as line {first.line} but a different output; keep the right one",
                            report.file,
                        )
                    )
                else:
                    report.findings.append(
                        Finding(
                            "warning",
                            "exact_duplicate",
                            record.line,
                            "/input",
                            f"same text as line {first.line}; --fix drops it",
                            report.file,
                        )
                    )
                report.drop.setdefault(record.line, f"duplicate of line {first.line}")
            else:
                counts["near"] += 1
                sim = best_similarity.get(i, THRESHOLD)
                report.findings.append(
                    Finding(
                        "warning",
                        "near_duplicate",
                        record.line,
                        "/input",
                        f"near duplicate of line {first.line} (similarity ≥ {min(sim, 0.999):.2f}); "
                        "kept in one split by `data split`",
                        report.file,
                    )
                )
    report.duplicates = {
        "exact": counts["exact"],
        "near": counts["near"],
        "near_groups": sum(1 for g in dups.near if any(i < own for i in g)),
        "cross_split_exact": counts["cross_split_exact"],
        "cross_split_near": counts["cross_split_near"],
        "threshold": THRESHOLD,
    }


def _count(report: CheckReport, task: Task, languages: list[str]) -> None:
    """Counts per language and per label (usable records only), warnings and suggested additions."""
    per_language: Counter[str] = Counter()
    labels: dict[str, dict[str, Counter[str]]] = {f: defaultdict(Counter) for f in task.fields}
    for record, lang in zip(report.records, languages, strict=True):
        if record.line in report.drop:
            continue
        per_language[lang] += 1
        for name in task.fields:
            value = record.example.output.get(name)
            labels[name][lang][json.dumps(value, ensure_ascii=False) if not isinstance(value, str) else value] += 1
    report.languages = dict(sorted(per_language.items(), key=lambda kv: (-kv[1], kv[0])))
    report.labels = {f: {lang: dict(c.most_common()) for lang, c in sorted(by.items())} for f, by in labels.items()}
    known = {k: v for k, v in per_language.items() if k != UNKNOWN_LANGUAGE}
    if not known:
        return
    total = sum(per_language.values())
    largest = max(known.values())
    target = max(MIN_PER_LANGUAGE, math.ceil(largest / 2))
    if total < FIRST_RUN[0]:
        target = max(target, math.ceil(FIRST_RUN[0] / len(known)))
    report.suggestions = {lang: target - n for lang, n in sorted(known.items()) if n < target}
    for lang, n in sorted(known.items()):
        if n < MIN_PER_LANGUAGE:
            report.findings.append(
                Finding(
                    "warning",
                    "few_examples",
                    0,
                    "/language",
                    f"{lang!r} has {n} examples, fewer than {MIN_PER_LANGUAGE}; add {report.suggestions[lang]}",
                    report.file,
                )
            )
        elif n < largest / 2:
            report.findings.append(
                Finding(
                    "warning",
                    "unbalanced",
                    0,
                    "/language",
                    f"{lang!r} has {n} examples, less than half of the largest language ({largest}); "
                    f"add {report.suggestions[lang]}",
                    report.file,
                )
            )
    if not FIRST_RUN[0] <= total <= FIRST_RUN[1]:
        side = "fewer" if total < FIRST_RUN[0] else "more"
        advice = (
            f"add {sum(report.suggestions.values())} (see suggested additions)"
            if total < FIRST_RUN[0]
            else "fine for a final run; a first run on 300-500 is quicker to iterate on"
        )
        report.findings.append(
            Finding(
                "warning",
                "total_size",
                0,
                "",
                f"{total} usable examples, {side} than the {FIRST_RUN[0]}-{FIRST_RUN[1]} "
                f"recommended for a first run; {advice}",
                report.file,
            )
        )


def cleaned_examples(report: CheckReport) -> list[Example]:
    """What ``--fix`` writes: every record not dropped, with its repairs applied, in file order."""
    return [report.fixes.get(r.line, r.example) for r in report.records if r.line not in report.drop]
