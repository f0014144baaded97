"""``data check`` on 100,000 synthetic examples in 10 languages (target: at most 60 s on 2 cores), as JSONL and
as a team's CSV export read with ``--map``; ``labels`` on that CSV (target: at most 30 s).

    python bench/bench_data.py [--n 100000]     # prints tables, writes bench/results/bench_data.json

The examples are word salad drawn from each language's real sentences in ``langid_samples.py`` (so
language detection has real text to work on and few examples are near duplicates by chance), with a
ticket-like output, plus planted problems at known rates: exact and near duplicates, unknown labels,
wrong declared languages and invalid JSON lines. The time is for the whole check, reading included;
CPU seconds are printed too because the machine is shared (the load average is recorded).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import sys
import tempfile
import time
from collections.abc import Iterator
from importlib.metadata import version
from pathlib import Path

from langid_samples import SAMPLES
from rich.console import Console
from rich.table import Table

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from lingoforge.data.checks import check_file  # noqa: E402
from lingoforge.data.mapping import ColumnMap  # noqa: E402
from lingoforge.fsutil import write_json  # noqa: E402
from lingoforge.labels import label_report  # noqa: E402
from lingoforge.task import Task  # noqa: E402

LANGUAGES = ("en", "de", "fr", "es", "it", "pt", "nl", "pl", "ru", "zh")
CATEGORIES = ("shipping", "billing", "returns", "technical", "account", "product", "complaint", "other")
PRIORITIES = ("low", "medium", "high", "urgent")
TARGET_S = 60.0
LABELS_TARGET_S = 30.0
CSV_COLUMNS = ("Ticket ID", "Description", "Type", "Priority", "Locale", "Reply")
CSV_MAP = "input=Description,category=Type,priority=Priority,language=Locale,suggested_response=Reply"


def bench_task() -> Task:
    """A support-ticket-like task (the shape of the built-in one) defined here, so the benchmark does
    not depend on a plugin."""
    schema = {
        "type": "object",
        "properties": {
            "category": {"type": "string", "enum": list(CATEGORIES)},
            "priority": {"type": "string", "enum": list(PRIORITIES)},
            "language": {"type": "string", "enum": list(LANGUAGES)},
            "suggested_response": {"type": "string"},
        },
        "required": ["category", "priority", "language", "suggested_response"],
        "additionalProperties": False,
    }
    return Task(
        name="bench_tickets",
        version="1",
        description="benchmark",
        languages=LANGUAGES,
        system_prompt="You triage customer support tickets. Answer with JSON only.",
        instruction="Classify the ticket and suggest a short response in the ticket's language.",
        output_schema=schema,
        scorer=lambda pred, gold: {},
        primary_metric="category_accuracy",
        fields=("category", "priority"),
    )


def _vocabulary(lang: str) -> list[str]:
    if lang in ("zh", "ja"):
        text = "".join(SAMPLES[lang])
        return [text[i : i + 2] for i in range(0, len(text) - 1)]
    return [w.strip("¿?¡!.,:") for s in SAMPLES[lang] for w in s.split() if w.strip("¿?¡!.,:")]


def synthetic_records(n: int, seed: int = 0) -> Iterator[str]:
    """``n`` JSONL lines; about 1 % each of exact duplicates, near duplicates, unknown labels and
    mislabelled languages, and 0.1 % invalid JSON."""
    rng = random.Random(seed)
    vocab = {lang: _vocabulary(lang) for lang in LANGUAGES}
    previous: list[dict] = []
    for i in range(n):
        lang = LANGUAGES[i % len(LANGUAGES)]
        roll = rng.random()
        if roll < 0.001:
            yield '{"input": "broken line'
            continue
        if roll < 0.011 and previous:
            record = dict(rng.choice(previous))
        elif roll < 0.021 and previous:
            record = dict(rng.choice(previous))
            record["input"] = record["input"] + " " + rng.choice(vocab[record["language"]])
        else:
            joiner = "" if lang in ("zh", "ja") else " "
            words = rng.choices(vocab[lang], k=rng.randint(8, 30))
            text = joiner.join(words) + f" #{rng.randint(10_000, 99_999)}"
            category = rng.choice(CATEGORIES) if roll > 0.031 else "shiping"
            declared = lang if roll > 0.041 or roll < 0.031 else rng.choice([x for x in LANGUAGES if x != lang])
            record = {
                "input": text,
                "output": {
                    "category": category,
                    "priority": rng.choice(PRIORITIES),
                    "language": declared,
                    "suggested_response": joiner.join(rng.choices(vocab[lang], k=8)),
                },
                "language": declared,
            }
            if len(previous) < 5000:
                previous.append(record)
        yield json.dumps(record, ensure_ascii=False)


class _StageClock:
    """A ``Stages`` that records when each stage starts, to print where the time goes."""

    def __init__(self) -> None:
        self.marks: list[tuple[str, float]] = []

    def __call__(self, description: str, total: int | None):  # type: ignore[no-untyped-def]
        self.marks.append((description, time.perf_counter()))
        return lambda n: None

    def durations(self, end: float) -> dict[str, float]:
        times = [t for _, t in self.marks] + [end]
        return {name: round(times[i + 1] - t, 2) for i, (name, t) in enumerate(self.marks)}


def as_csv(lines: list[str], path: Path) -> None:
    """The same records as a team's CSV export: its own column names, the output spread over columns."""
    import csv

    with path.open("w", encoding="utf-8", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(CSV_COLUMNS)
        for k, line in enumerate(lines):
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                continue
            out = record["output"]
            writer.writerow([k, record["input"], out["category"], out["priority"], record["language"],
                             out["suggested_response"]])


def timed_check(path: Path, task: Task, mapping: ColumnMap | None = None) -> tuple[float, float, dict, object]:
    """Wall and CPU seconds of ``data check``, its stages and its report."""
    clock = _StageClock()
    wall, cpu = time.perf_counter(), time.process_time()
    report = check_file(path, task, stages=clock, mapping=mapping)
    end = time.perf_counter()
    return end - wall, time.process_time() - cpu, clock.durations(end), report


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=100_000)
    args = parser.parse_args()
    task = bench_task()
    mapping = ColumnMap.parse(CSV_MAP)
    with tempfile.TemporaryDirectory() as tmp:
        path, csv_path = Path(tmp) / "bench.jsonl", Path(tmp) / "export.csv"
        lines = list(synthetic_records(args.n))
        path.write_text("\n".join(lines) + "\n", encoding="utf-8")
        as_csv(lines, csv_path)
        load_before = os.getloadavg()[0]
        wall, cpu, stages, report = timed_check(path, task)
        csv_wall, csv_cpu, _, csv_report = timed_check(csv_path, task, mapping)
        started = time.perf_counter()
        labels = label_report(csv_path, "category", mapping)
        labels_wall = time.perf_counter() - started
        size_mb, csv_mb = path.stat().st_size / 1e6, csv_path.stat().st_size / 1e6
    table = Table(title=f"data check, {args.n:,} examples in {len(LANGUAGES)} languages ({size_mb:.1f} MB)")
    table.add_column("stage")
    table.add_column("seconds", justify="right")
    for name, seconds in stages.items():
        table.add_row(name, f"{seconds:.2f}")
    table.add_row("[bold]total wall[/]", f"[bold]{wall:.2f}[/]")
    table.add_row("total CPU", f"{cpu:.2f}")
    console = Console()
    console.print(table)
    console.print(
        f"target ≤ {TARGET_S:.0f} s: {'met' if wall <= TARGET_S else 'MISSED'}; "
        f"load average {load_before:.1f} on {os.cpu_count()} CPUs; "
        f"found {report.errors} errors, {report.warnings} warnings: {report.counts_by_code()}"
    )
    console.print(
        f"the same records as a CSV export read with --map ({csv_mb:.1f} MB): data check {csv_wall:.2f} s wall, "
        f"{csv_cpu:.2f} s CPU (target ≤ {TARGET_S:.0f} s: {'met' if csv_wall <= TARGET_S else 'MISSED'}; "
        f"{csv_report.errors} errors); labels {labels_wall:.2f} s (target ≤ {LABELS_TARGET_S:.0f} s: "
        f"{'met' if labels_wall <= LABELS_TARGET_S else 'MISSED'}; {len(labels['labels'])} labels, "
        f"{len(labels['near_duplicates'])} near-duplicate groups)"
    )
    out = Path(__file__).resolve().parent / "results" / "bench_data.json"
    write_json(
        out,
        {
            "benchmark": "data check",
            "examples": args.n,
            "languages": list(LANGUAGES),
            "file_mb": round(size_mb, 1),
            "wall_s": round(wall, 2),
            "cpu_s": round(cpu, 2),
            "target_s": TARGET_S,
            "met": wall <= TARGET_S,
            "stages_s": stages,
            "mapped_csv": {"map": CSV_MAP, "file_mb": round(csv_mb, 1), "wall_s": round(csv_wall, 2),
                           "cpu_s": round(csv_cpu, 2), "met": csv_wall <= TARGET_S, "errors": csv_report.errors},
            "labels": {"wall_s": round(labels_wall, 2), "target_s": LABELS_TARGET_S,
                       "met": labels_wall <= LABELS_TARGET_S, "labels": len(labels["labels"]),
                       "near_duplicate_groups": labels["near_duplicates"]},
            "issues": report.counts_by_code(),
            "duplicates": report.duplicates,
            "language_detection": {k: v for k, v in report.detection.items() if k != "detected"},
            "machine": {
                "python": platform.python_version(),
                "platform": platform.platform(),
                "cpus": os.cpu_count(),
                "load_average_1m": round(load_before, 1),
            },
            "versions": {p: version(p) for p in ("lingoforge", "numpy", "jsonschema", "py3langid")},
        },
    )
    console.print(f"wrote {out}")


if __name__ == "__main__":
    main()
