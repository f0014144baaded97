"""Read user data files (JSONL or CSV) into ``Record``s, and write canonical JSONL.

A file that cannot be read at all (binary, not UTF-8, empty, a CSV without a needed column) raises
``DataError`` naming the file, line and field. A line that cannot be used (invalid JSON, a missing field,
a 5 MB record) becomes an error ``Finding`` instead, so ``data check`` lists every bad line in one pass
and ``--fix`` can drop them. UTF-8 BOMs are stripped and CRLF line ends accepted.
"""

from __future__ import annotations

import csv
import difflib
import hashlib
import io
import json
import sys
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from ..errors import DataError, listed
from ..fsutil import write_jsonl
from ..schema import validate
from ..task import Example, Task, restrict
from .convert import Record, from_csv_row, from_json, required_csv_columns
from .findings import Finding
from .mapping import ColumnMap

MAX_RECORD_BYTES = 1 << 20
CSV_SUFFIXES = (".csv", ".tsv")
_MAGIC = {
    b"\x1f\x8b": "a gzip archive",
    b"PK\x03\x04": "a zip archive (or an .xlsx/.docx file)",
    b"PAR1": "a Parquet file",
    b"%PDF": "a PDF",
    b"SQLite format 3": "an SQLite database",
    b"\x89PNG": "a PNG image",
    b"\xff\xd8\xff": "a JPEG image",
}
_UTF16_BOMS = {b"\xff\xfe": "UTF-16 little-endian", b"\xfe\xff": "UTF-16 big-endian"}

Progress = Callable[[int], None]


@dataclass
class ReadResult:
    """Everything read from one file: usable records, unusable lines and how records were converted."""

    path: Path
    format: str
    records: list[Record] = field(default_factory=list)
    findings: list[Finding] = field(default_factory=list)
    sources: Counter[str] = field(default_factory=Counter)

    @property
    def lines(self) -> int:
        """Non-blank records in the file, usable or not."""
        return len(self.records) + len(self.findings)


def read_text(path: str | Path) -> str:
    """The file's text, or ``DataError`` saying what the file is instead (binary, UTF-16, which 8-bit
    encoding it looks like) and how to convert it."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except IsADirectoryError:
        raise DataError(f"{path}: is a directory, expected a .jsonl or .csv file") from None
    except OSError as exc:
        raise DataError(f"{path}: cannot read: {exc.strerror or exc}") from None
    head = data[:8192]
    for magic, what in _MAGIC.items():
        if head.startswith(magic):
            raise DataError(f"{path}: line 1: this is {what}, not text; export the data as JSONL or CSV")
    for bom, what in _UTF16_BOMS.items():
        if head.startswith(bom):
            raise DataError(f"{path}: line 1: the file is {what}; save it as UTF-8 (e.g. iconv -f UTF-16 -t UTF-8)")
    if b"\x00" in head:
        # UTF-16 text without a BOM: mostly-ASCII text puts a NUL in nearly every other byte.
        even, odd = head[0::2].count(0) / len(head[0::2]), head[1::2].count(0) / max(len(head[1::2]), 1)
        if len(head) >= 16 and max(even, odd) > 0.4 and min(even, odd) < 0.05:
            order = "big" if even > odd else "little"
            raise DataError(
                f"{path}: line 1: the file looks like UTF-16 {order}-endian without a BOM; save it as UTF-8"
            )
        line = data[: data.index(b"\x00")].count(b"\n") + 1
        raise DataError(f"{path}: line {line}: binary data (NUL byte); expected a .jsonl or .csv text file")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise DataError(_not_utf8(path, data, exc)) from None
    text = text.removeprefix("\ufeff")
    if not text.strip():
        raise DataError(f"{path}: the file is empty; expected one JSON object per line or a CSV with a header")
    return text


def _not_utf8(path: Path, data: bytes, exc: UnicodeDecodeError) -> str:
    line_start = data.rfind(b"\n", 0, exc.start) + 1
    line = data.count(b"\n", 0, exc.start) + 1
    guess = _guess_encoding(data)
    looks = f"it looks like {guess}" if guess else "its encoding could not be recognised"
    fix = f"; convert it with: iconv -f {guess} -t UTF-8 {path.name} > {path.stem}.utf8{path.suffix}" if guess else ""
    column = exc.start - line_start + 1
    return f"{path}: line {line}: not valid UTF-8 (byte 0x{data[exc.start]:02x} at column {column}); {looks}{fix}"


# The encodings user exports come in; restricting the guess to them keeps short texts from being
# taken for something exotic ("café" alone reads as CP1006 Urdu when every code page is a candidate).
_COMMON_ENCODINGS = [
    "cp1252",
    "iso8859_15",
    "cp1250",
    "cp1251",
    "koi8_r",
    "iso8859_2",
    "cp1253",
    "cp1254",
    "cp1256",
    "iso8859_7",
    "iso8859_9",
    "shift_jis",
    "euc_jp",
    "gb18030",
    "big5",
    "euc_kr",
    "mac_roman",
    "cp437",
]
_ICONV_NAMES = {
    "iso8859_15": "ISO-8859-15",
    "iso8859_2": "ISO-8859-2",
    "iso8859_7": "ISO-8859-7",
    "iso8859_9": "ISO-8859-9",
    "shift_jis": "SHIFT_JIS",
    "euc_jp": "EUC-JP",
    "euc_kr": "EUC-KR",
    "koi8_r": "KOI8-R",
    "mac_roman": "MACINTOSH",
}


def _guess_encoding(data: bytes) -> str | None:
    """charset-normalizer's best guess among common encodings, spelled the way iconv understands."""
    from charset_normalizer import from_bytes

    matches = list(from_bytes(data[: 1 << 20], cp_isolation=_COMMON_ENCODINGS))
    if not matches:
        return None
    # Ties (cp1250 and cp1252 read "déçu" equally well) go to the more common encoding, earlier in the list.
    floor = min(m.chaos for m in matches) + 0.01
    tied = {enc for m in matches if m.chaos <= floor for enc in [m.encoding, *m.could_be_from_charset]}
    best = min(
        tied, key=lambda enc: _COMMON_ENCODINGS.index(enc) if enc in _COMMON_ENCODINGS else len(_COMMON_ENCODINGS)
    )
    return _ICONV_NAMES.get(best, best.upper())


def read_records(
    path: str | Path, task: Task, progress: Progress | None = None, mapping: ColumnMap | None = None
) -> ReadResult:
    """Read and convert every record of a JSONL or CSV file (format chosen by the file suffix), with the
    file's own column names first mapped to ours by ``mapping`` (``--map``)."""
    path = Path(path)
    fmt = "csv" if path.suffix.lower() in CSV_SUFFIXES else "jsonl"
    result = ReadResult(path, fmt)
    file = str(path)
    outputs = list((task.output_schema.get("properties") or {}).keys())
    if mapping is not None:
        mapping.check_targets(outputs, task.name)

    def columns(header: list[str]) -> None:
        _require_columns(path, header, required_csv_columns(task, header))

    rows = read_rows(read_text(path), file, fmt, columns, progress, tsv=path.suffix.lower() == ".tsv",
                     mapping=mapping, outputs=outputs)
    for row in rows:
        if isinstance(row, Finding):
            result.findings.append(row)
        elif fmt == "csv":
            _add(result, from_csv_row(row.value, row.line, task, file))
        else:
            _add(result, from_json(row.value, row.line, task, file))
    return result


@dataclass(frozen=True)
class Row:
    """One record of a file before any task is applied: a parsed JSON value, or a CSV row (column → cell)."""

    line: int
    value: Any


def read_rows(
    text: str,
    name: str,
    fmt: str,
    columns: Callable[[list[str]], None] | None = None,
    progress: Progress | None = None,
    tsv: bool = False,
    mapping: ColumnMap | None = None,
    outputs: Iterable[str] = (),
) -> Iterator[Row | Finding]:
    """The records of JSONL or CSV text, each with its 1-based line, or a ``Finding`` for a line that cannot
    be parsed (invalid JSON, a short row, an oversized record). The one parser of data files: labelled
    examples (``read_records``) and prediction inputs (``predict``) differ only in what they make of a row.
    ``mapping`` renames the file's columns to ours first (JSONL: ``outputs`` fields go under ``output``);
    ``columns`` may then refuse the (mapped) CSV header by raising ``DataError``."""
    if fmt == "csv":
        yield from _csv_rows(text, name, columns, progress, tsv, mapping)
        return
    outputs = list(outputs)
    for row in _jsonl_rows(text, name, progress):
        if mapping is None or isinstance(row, Finding):
            yield row
            continue
        mapped = mapping.apply_record(row.value, outputs)
        yield Row(row.line, mapped) if isinstance(mapped, dict) else Finding("error", "unmapped", row.line, "",
                                                                             mapped, name)


def _lone_surrogate(value: Any) -> str | None:
    """``\\uD800``-style: the first surrogate in ``value`` that is not half of a pair (JSON decodes a pair into one
    character), ``None`` when its text is all valid."""
    try:
        json.dumps(value, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError as exc:
        return f"\\u{ord(exc.object[exc.start]):04X}"
    return None


def _is_json_array(text: str) -> bool:
    try:
        return isinstance(json.loads(text), list)
    except (ValueError, RecursionError):
        return False


def _jsonl_rows(text: str, file: str, progress: Progress | None) -> Iterator[Row | Finding]:
    if text.lstrip().startswith("[") and _is_json_array(text):  # else a JSONL file whose line 1 is not an object
        raise DataError(  # a new name: `jq ... x.jsonl > x.jsonl` would empty the file before jq reads it
            f"{file}: this is a JSON array; lingoforge reads JSON Lines (one object per line), "
            f"e.g. jq -c '.[]' {Path(file).name} > {Path(file).stem}.lines.jsonl"
        )
    for number, raw in enumerate(text.split("\n"), start=1):
        if progress and number % 10_000 == 0:
            progress(10_000)
        line = raw.removesuffix("\r")
        if not line.strip():
            continue
        if len(line) * 4 > MAX_RECORD_BYTES and len(line.encode("utf-8")) > MAX_RECORD_BYTES:
            yield Finding(
                "error",
                "too_large",
                number,
                "",
                f"the record is {_size(line)}, over the {_size_limit()} limit per record; "
                "split the text or check that the file has one record per line",
                file,
            )
            continue
        try:
            value = json.loads(line)
        except json.JSONDecodeError as exc:
            yield Finding("error", "invalid_json", number, "", f"not valid JSON: {exc.msg} at column {exc.colno}", file)
            continue
        surrogate = _lone_surrogate(value) if "\\ud" in line.lower() else None
        if surrogate:  # an escape like \ud800 with no pair: no text, and no UTF-8 file can hold it
            yield Finding("error", "invalid_unicode", number, "", f"invalid Unicode: a lone surrogate {surrogate} "
                          "(half of an escaped pair); fix the escape or remove it", file)
            continue
        yield Row(number, value)


def _csv_rows(
    text: str,
    file: str,
    columns: Callable[[list[str]], None] | None,
    progress: Progress | None,
    tsv: bool,
    mapping: ColumnMap | None,
) -> Iterator[Row | Finding]:
    if text.lstrip().startswith("{"):
        raise DataError(f"{file}: line 1 starts with {{: this looks like JSON Lines, not CSV; name the file .jsonl")
    csv.field_size_limit(max(csv.field_size_limit(), 64 * MAX_RECORD_BYTES))
    delimiter = "\t" if tsv else _sniff_delimiter(text)
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter)
    try:
        header = [h.strip() for h in next(reader)]
    except StopIteration:
        raise DataError(f"{file}: empty, no CSV header") from None
    except csv.Error as exc:
        raise DataError(f"{file}: line 1 (header): not valid CSV: {exc}") from None
    duplicates = sorted(h for h, n in Counter(header).items() if n > 1)
    if duplicates:
        raise DataError(f"{file}: line 1 (header): duplicate column(s) {', '.join(duplicates)}")
    if mapping is not None:
        mapping.check_header(file, header)
    if columns:
        columns(list(mapping.apply_row(dict.fromkeys(header, ""))) if mapping else header)
    start = reader.line_num + 1
    count = 0
    while True:
        try:
            row = next(reader)
        except StopIteration:
            break
        except csv.Error as exc:
            raise DataError(f"{file}: line {reader.line_num}: not valid CSV: {exc}") from None
        line, start = start, reader.line_num + 1
        count += 1
        if progress and count % 10_000 == 0:
            progress(10_000)
        if not any(cell.strip() for cell in row):
            continue
        if len(row) != len(header):
            spans = f" and runs to line {reader.line_num}: an unclosed quote?" if reader.line_num > line else ""
            yield Finding(
                "error", "bad_row", line, "", f"the row has {len(row)} fields, the header has {len(header)}{spans}",
                file,
            )
        elif sum(len(c) for c in row) * 4 > MAX_RECORD_BYTES and sum(len(c.encode()) for c in row) > MAX_RECORD_BYTES:
            yield Finding("error", "too_large", line, "", f"the record is over the {_size_limit()} limit per record",
                          file)
        else:
            cells = dict(zip(header, row, strict=True))
            yield Row(line, mapping.apply_row(cells) if mapping else cells)


def _require_columns(path: Path, header: list[str], missing: list[str]) -> None:
    """Refuse a CSV header without a needed column, suggesting the closest one the file has."""
    if not missing:
        return
    hints = [
        f"{m!r} (did you mean {close[0]!r}?)" if (close := difflib.get_close_matches(m, header, n=1)) else repr(m)
        for m in missing
    ]
    raise DataError(f"{path}: line 1 (header): missing column {', '.join(hints)}; found columns: {', '.join(header)}")


def _sniff_delimiter(text: str) -> str:
    try:
        return csv.Sniffer().sniff(text[:16384], delimiters=",;\t|").delimiter
    except csv.Error:
        return ","


def _add(result: ReadResult, converted: Record | Finding) -> None:
    if isinstance(converted, Finding):
        result.findings.append(converted)
    else:
        result.records.append(converted)
        result.sources[converted.source] += 1


def _size(text: str) -> str:
    return f"{len(text.encode('utf-8')) / 1e6:.1f} MB"


def _size_limit() -> str:
    return f"{MAX_RECORD_BYTES >> 20} MiB"


@dataclass(frozen=True)
class Located:
    """An example and where it came from (``file:line``), so every later error names the line to fix."""

    example: Example
    where: str


def load_examples(
    path: str | Path, task: Task, *, gold: bool = False, mapping: ColumnMap | None = None
) -> list[Located]:
    """The one reader of labelled data (train, eval, export parity, deploy's checks, ``run``'s import).

    Every line must be usable and every output must fit the task's schema (data written for another task would
    otherwise train badly or score 0% quietly). One ``DataError`` lists the lines to fix, so a broken line stops
    the command instead of shrinking the data. An example without a language gets the one py3langid detects
    (recorded in its ``meta``; the unsure ones are listed). ``gold`` only words the error for evaluation data.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"data file {path} does not exist")
    result = read_records(path, task, mapping=mapping)
    if result.findings:
        raise DataError(
            listed(f"{path}: {len(result.findings)} unusable line(s)", [str(f) for f in result.findings])
            + f"\nrun `lingoforge data check {path} --task {task.name}{_map_flag(mapping)} --fix CLEAN.jsonl` "
            "to drop them"
        )
    if not result.records:
        raise DataError(f"{path} holds no examples")
    items = _detect_languages(task, [Located(r.example, f"{path}:{r.line}") for r in result.records], path)
    check_labelled(task, items, "gold outputs do not fit the output schema of" if gold else "examples do not fit")
    return items


def _detect_languages(task: Task, items: list[Located], path: Path) -> list[Located]:
    """Fill in the language of examples that name none, from their input: exports often have no language
    column. Detection is per example, among the task's languages and the common ones."""
    missing = [k for k, item in enumerate(items) if not item.example.language]
    if not missing:
        return items
    from .langid import LanguageDetector

    detections = LanguageDetector(task.languages).detect([items[k].example.input for k in missing])
    unsure, blank = [], []
    for k, found in zip(missing, detections, strict=True):
        item = items[k]
        if found.language is None:
            blank.append(item.where)
            continue
        meta = {**item.example.meta, "language_detected": round(found.confidence, 2)}
        items[k] = Located(replace(item.example, language=found.language, meta=meta), item.where)
        if not found.sure:
            unsure.append(f"{item.where} ({found.language}, {found.confidence:.0%})")
    if blank:
        raise DataError(listed(f"{path}: {len(blank)} example(s) name no language and have no letters to detect one "
                               'from; add "language": "<ISO 639-1>"', blank))
    note = f"; unsure for {len(unsure)}: " + ", ".join(unsure[:10]) + (" ..." if len(unsure) > 10 else "")
    print(f"warning: {path}: {len(missing)} example(s) name no language; detected it from the input"
          + (note if unsure else ""), file=sys.stderr, flush=True)
    return items


def data_task(
    path: str | Path, task: Task, *, mapping: ColumnMap | None = None, fields: Sequence[str] | None = None
) -> Task:
    """The task a data file trains: ``task`` restricted to ``fields``, else to the output fields every record of
    the file carries (real exports have labels, not the template's model-written reply). A field that some
    records carry and others lack is an error naming the lines, with ``--fields`` as the way out."""
    if fields:
        return restrict(task, fields)
    path = Path(path)
    props = list(task.output_schema.get("properties") or {})
    if path.suffix.lower() in CSV_SUFFIXES:
        carried = _csv_fields(path, task, props, mapping)
    else:
        records = read_records(path, task, mapping=mapping).records
        counts = Counter(f for r in records for f in r.example.output if f in props)
        partial = [f for f in props if 0 < counts[f] < len(records)]
        if partial:
            lacking = [str(r.line) for r in records if partial[0] not in r.example.output]
            full = [f for f in props if counts[f] == len(records)]
            raise DataError(
                f"{path}: field {partial[0]!r} is in {counts[partial[0]]} of {len(records)} records but not on line(s) "
                f"{', '.join(lacking[:10])}{' ...' if len(lacking) > 10 else ''}: give it in every record, or train "
                f"without it: --fields {','.join(full)}"
            )
        carried = [f for f in props if counts[f]]
    return restrict(task, carried) if carried and carried != props else task


def _csv_fields(path: Path, task: Task, props: list[str], mapping: ColumnMap | None) -> list[str]:
    """The output fields a CSV carries, from its (mapped) header; an ``output`` column carries them all. A column
    one letter away from a field the file lacks is a typo, not a smaller task."""
    header: list[str] = []

    def columns(found: list[str]) -> None:
        header.extend(found)
        raise _HeaderRead

    try:
        for _ in read_rows(read_text(path), str(path), "csv", columns, tsv=path.suffix.lower() == ".tsv",
                           mapping=mapping):
            break
    except _HeaderRead:
        pass
    if "output" in header:
        return props
    carried = [f for f in props if f in header]
    others = [h for h in header if h not in props]
    for name in props:
        close = difflib.get_close_matches(name, others, n=1) if name not in carried else []
        if close:
            raise DataError(f"{path}: line 1 (header): missing column {name!r} (did you mean {close[0]!r}? map it "
                            f"with --map {name}={close[0]}, or learn only the other fields: --fields "
                            f"{','.join(carried)}); found columns: {', '.join(header)}")
    return carried


class _HeaderRead(Exception):
    """Stops reading a CSV once its header is known."""


def _map_flag(mapping: ColumnMap | None) -> str:
    return f" --map {mapping}" if mapping else ""


def check_labelled(task: Task, items: Sequence[Located], what: str = "examples do not fit") -> None:
    """Refuse examples whose output does not fit ``task``'s schema or that name no language, listing each by its
    ``where``."""
    problems = []
    for item in items:
        issues = validate(task.schema, dict(item.example.output))
        if issues:
            problems.append(f"{item.where}: /output{issues[0].pointer}: {_short(issues[0].message)}")
        elif not item.example.language:
            problems.append(
                f'{item.where}: no language (add "language": "<ISO 639-1>"; `lingoforge data check` can detect it)'
            )
    if problems:
        raise DataError(
            listed(
                f"{len(problems)} of {len(items)} {what} task {task.name!r}; "
                "is this data for another task? (`lingoforge data check` lists every problem)",
                problems,
            )
        )


def _short(text: str, limit: int = 160) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def write_examples(path: str | Path, examples: Iterable[Example]) -> int:
    """Write canonical JSONL atomically; returns the number of records."""
    return write_jsonl(path, (e.to_record() for e in examples))


def examples_sha256(items: Sequence[Located]) -> str:
    """Hash of the canonical JSONL lines: identical to ``file_sha256`` of the file ``write_jsonl`` makes of them."""
    h = hashlib.sha256()
    for item in items:
        h.update((json.dumps(item.example.to_record(), ensure_ascii=False, separators=(",", ":")) + "\n").encode())
    return h.hexdigest()


def same_file(a: str | Path, b: str | Path) -> bool:
    """Whether two paths name the same file (so ``--fix`` can refuse to overwrite its input)."""
    pa, pb = Path(a), Path(b)
    try:
        return pa.resolve() == pb.resolve() or (pb.exists() and pa.samefile(pb))
    except OSError:
        return False
