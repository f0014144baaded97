"""Batch prediction: inputs and ids, constrained retry of invalid answers, crash-safe resume."""

from __future__ import annotations

import io
import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest
from lingoforge.backends import Backend, Generation
from lingoforge.errors import DataError, WriteError
from lingoforge.predict import completed_ids, parse_inputs, predict, read_inputs
from lingoforge.yaml_task import load_yaml_task

TASK_YAML = """
name: tickets
languages: [en, es]
instruction: Classify the ticket.
fields:
  category: {type: enum, labels: [shipping, billing, tech]}
"""


@pytest.fixture
def task(tmp_path: Path):
    path = tmp_path / "tickets.yaml"
    path.write_text(TASK_YAML, encoding="utf-8")
    return load_yaml_task(path)


class FlakyBackend(Backend):
    """Answers junk unconstrained for inputs containing 'hard', valid JSON otherwise; can die mid-run."""

    name = "flaky"

    def __init__(self, die_on_call: int | None = None) -> None:
        super().__init__("flaky")
        self.calls: list[tuple[list[str], bool]] = []
        self.die_on_call = die_on_call

    def generate(
        self,
        batch: Sequence[Sequence[Mapping[str, str]]],
        schema: Mapping[str, Any] | None = None,
        max_new_tokens: int = 256,
    ) -> list[Generation]:
        texts = [conv[-1]["content"].split("\n\n")[-1] for conv in batch]
        self.calls.append((texts, schema is not None))
        if self.die_on_call is not None and len(self.calls) == self.die_on_call:
            raise KeyboardInterrupt
        return [
            Generation("no idea" if "hard" in t and schema is None else '{"category": "tech"}', 0.01, 3) for t in texts
        ]


def test_inputs_jsonl_csv_stdin_and_ids() -> None:
    jsonl = '{"id": "a", "input": "x"}\n\n{"text": "y", "language": "es"}\n"plain string"\n'
    items = parse_inputs(jsonl, "in.jsonl")
    assert [(i.id, i.text, i.language) for i in items] == [("a", "x", None), (3, "y", "es"), (4, "plain string", None)]
    rows = parse_inputs('id,input\nr1,"multi\nline"\n,second\n', "in.csv")
    assert [(i.id, i.text) for i in rows] == [("r1", "multi\nline"), (2, "second")]
    assert [i.text for i in read_inputs("-", io.StringIO('{"input": "from stdin"}\n'))] == ["from stdin"]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('{"id": 1, "input": "x"}\n{"id": 1, "input": "y"}\n', "appears twice"),
        ('{"input": "x"}\n{oops\n', r"in.jsonl:2: not valid JSON"),
        ('{"body": "x"}\n', "no `input`"),
    ],
)
def test_bad_inputs_name_the_line(text: str, message: str) -> None:
    with pytest.raises(DataError, match=message):
        parse_inputs(text, "in.jsonl")


def test_partial_trailing_line_is_cut_before_resuming(tmp_path: Path) -> None:
    out = tmp_path / "out.jsonl"
    out.write_text('{"id": 1, "output": null, "valid": false}\n{"id": 2, "outp')
    assert completed_ids(out) == {"1"}
    assert out.read_text() == '{"id": 1, "output": null, "valid": false}\n'


def test_answers_with_unicode_line_separators_stay_one_line(tmp_path: Path) -> None:
    """ensure_ascii=False writes U+2028 and NEL raw; only \\n ends a prediction line."""
    out = tmp_path / "out.jsonl"
    lines = [{"id": i, "output": None, "valid": False, "raw": f"a{sep}b"} for i, sep in enumerate(("\u2028", "\x85"))]
    out.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in lines), encoding="utf-8")
    assert completed_ids(out) == {"0", "1"}


@pytest.mark.parametrize(
    ("content", "where"),
    [
        (
            '{"id": 1, "input": "x", "output": {"category": "tech"}}\n{"id": 2, "input": "y"}',
            ":1: not a prediction line (no `valid` field",
        ),
        ("first note\nsecond note\nthird, unfinished", ":1: not a prediction line (not JSON"),
        ('{"id": 1, "output": null, "valid": false}\n{"id": 2, "input": "y"}', ":2: unfinished last line"),
        ("a one-line note without newline", ":1: unfinished last line"),
        ('{"id": 5, "input": "one training record, no newline"}', ":1: unfinished last line"),
        ('{"id": 5, "output": null, "valid": "no"}\n', ":1: not a prediction line (field `valid` is 'no'"),
    ],
)
def test_foreign_output_file_is_refused_byte_for_byte_unchanged(task, tmp_path: Path, content: str, where: str) -> None:
    """-o pointing at a file predict did not write: the error names it and the line, nothing is cut."""
    source = tmp_path / "in.jsonl"
    source.write_text('{"input": "ticket"}\n')
    out = tmp_path / "notes.jsonl"
    out.write_bytes(content.encode())
    backend = FlakyBackend()
    with pytest.raises(DataError, match=re.escape(f"{out}{where}")) as refused:
        predict(backend, task, source, out)
    assert "left unchanged; choose a new -o file" in str(refused.value)
    assert out.read_bytes() == content.encode()
    assert backend.calls == []


def test_an_output_that_cannot_be_written_is_told_before_the_model_opens(task, tmp_path: Path, monkeypatch) -> None:
    """predict is given a model name, as the CLI gives it: the model opens through ``get_backend`` (recorded
    here), which an unwritable output never reaches; a writable one does, so the record is the real path."""
    import lingoforge.predict as predict_module

    opened: list[str] = []

    def get_backend(model: Any, *args: Any, **kwargs: Any) -> Backend:
        opened.append(str(model))
        return FlakyBackend()

    monkeypatch.setattr(predict_module, "get_backend", get_backend)
    source = tmp_path / "in.jsonl"
    source.write_text('{"input": "ticket"}\n')
    (tmp_path / "blocker").write_text("a file, not a folder")
    with pytest.raises(WriteError, match=re.escape(f"cannot write {tmp_path / 'blocker' / 'p.jsonl'}: ")):
        predict("some-model", task, source, tmp_path / "blocker" / "p.jsonl")
    assert opened == []
    assert predict("some-model", task, source, tmp_path / "p.jsonl")["written"] == 1
    assert opened == ["some-model"]


@pytest.mark.parametrize(
    "partial",
    ['{"id":"t', '{"id":"t1","output":{"categ', '{"id":"t1","output":null,"valid":false,"retried":false}', "{"],
)
def test_run_killed_mid_write_resumes_from_its_partial_line(task, tmp_path: Path, partial: str) -> None:
    """A prediction file whose last line was cut anywhere (even the first line) is repaired and finished."""
    source = tmp_path / "in.jsonl"
    source.write_text("".join(json.dumps({"id": f"t{i}", "input": f"ticket {i}"}) + "\n" for i in range(3)))
    out = tmp_path / "out.jsonl"
    first = '{"id":"t0","output":{"category":"tech"},"valid":true,"retried":false}\n'
    for written, done in (("", 0), (first, 1)):
        out.write_text(written + partial, encoding="utf-8")
        summary = predict(FlakyBackend(), task, source, out)
        assert (summary["skipped"], summary["written"]) == (done, 3 - done)
        assert [json.loads(line)["id"] for line in out.read_text().splitlines()] == ["t0", "t1", "t2"]


def test_invalid_answers_are_retried_once_constrained(task, tmp_path: Path) -> None:
    source = tmp_path / "in.jsonl"
    source.write_text(
        "".join(json.dumps({"id": f"t{i}", "input": "hard" if i == 2 else "easy"}) + "\n" for i in range(5))
    )
    backend = FlakyBackend()
    summary = predict(backend, task, source, tmp_path / "out.jsonl", concurrency=2)
    assert (summary["written"], summary["valid"], summary["retried"], summary["invalid"]) == (5, 5, 1, 0)
    assert backend.calls[1] == (["hard", "easy"], False) and backend.calls[2] == (["hard"], True)
    lines = [json.loads(line) for line in (tmp_path / "out.jsonl").read_text().splitlines()]
    assert [line["id"] for line in lines] == ["t0", "t1", "t2", "t3", "t4"]
    assert lines[2] == {"id": "t2", "output": {"category": "tech"}, "valid": True, "retried": True}


def test_interrupted_run_resumes_without_duplicates(task, tmp_path: Path) -> None:
    source = tmp_path / "in.jsonl"
    source.write_text("".join(json.dumps({"input": f"ticket {i}"}) + "\n" for i in range(7)))
    out = tmp_path / "out.jsonl"
    with pytest.raises(KeyboardInterrupt):
        predict(FlakyBackend(die_on_call=3), task, source, out, concurrency=2)
    assert [json.loads(line)["id"] for line in out.read_text().splitlines()] == [1, 2, 3, 4]
    resumed = FlakyBackend()
    summary = predict(resumed, task, source, out, concurrency=2)
    assert (summary["skipped"], summary["written"]) == (4, 3)
    assert [t for texts, _ in resumed.calls for t in texts] == ["ticket 4", "ticket 5", "ticket 6"]
    assert [json.loads(line)["id"] for line in out.read_text().splitlines()] == [1, 2, 3, 4, 5, 6, 7]
    assert predict(FlakyBackend(), task, source, out)["written"] == 0


@pytest.mark.slow
def test_predict_cli_resumes_after_sigkill(task, tiny_qwen2_dir: Path, tmp_path: Path) -> None:
    """Kill the real command mid-file; the rerun completes every id exactly once and every line parses.

    The first process is held (forever) once it has written 5 lines, so the kill always lands mid-file however
    fast the machine: the test waits for the lines, not for a time."""
    source = tmp_path / "in.jsonl"
    source.write_text("".join(json.dumps({"id": i, "input": f"ticket number {i}"}) + "\n" for i in range(60)))
    out = tmp_path / "out.jsonl"
    held = (
        "import threading\n"
        "import lingoforge.predict as p\n"
        "write, lines = p.append_text, [0]\n"
        "def append_then_hold(path, text):\n"
        "    write(path, text)\n"
        "    lines[0] += text.count('\\n')\n"
        "    if lines[0] >= 5:\n"
        "        threading.Event().wait()  # until the test kills this process\n"
        "p.append_text = append_then_hold\n"
    )
    command = [
        sys.executable,
        "-c",
        "from lingoforge.cli import main; main()",
        "predict",
        str(tiny_qwen2_dir),
        str(source),
        "--task",
        task.source,
        "-o",
        str(out),
        "--concurrency",
        "1",
        "--max-new-tokens",
        "4",
        "--constrained",
    ]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    first_command = [*command[:2], held + command[2], *command[3:]]
    process = subprocess.Popen(first_command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 300
    while process.poll() is None and time.monotonic() < deadline and (
            not out.exists() or out.read_text().count("\n") < 5):
        time.sleep(0.05)
    assert process.poll() is None, f"the first predict exited ({process.returncode}) before it was killed"
    process.send_signal(signal.SIGKILL)
    process.wait()
    first = out.read_text().count("\n")
    assert 5 <= first < 60
    rerun = subprocess.run([*command, "--json"], env=env, check=True, stdout=subprocess.PIPE,
                           stderr=subprocess.DEVNULL, text=True, timeout=600)
    summary, _ = json.JSONDecoder().raw_decode(rerun.stdout)
    assert (summary["skipped"], summary["written"]) == (first, 60 - first)  # resumed, not started over
    ids = [json.loads(line)["id"] for line in out.read_text().splitlines()]
    assert sorted(ids) == list(range(60))
