"""Bad input as a user types it, command by command: one clear error (no traceback, no exit 0) and nothing written."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from click.testing import CliRunner
from lingoforge import get_task
from lingoforge.cli import cli
from lingoforge.config import make_config
from lingoforge.data.io import load_examples, read_rows, read_text
from lingoforge.errors import DataError, LingoforgeError, TaskDefinitionError
from lingoforge.plugins import get_task as load_task


def refused(args: list[str]) -> str:
    """Run the CLI, check it refused cleanly, return what it said."""
    result = CliRunner().invoke(cli, args)
    assert result.exit_code in (1, 2) and isinstance(result.exception, SystemExit), result.output
    assert "Traceback" not in result.output
    return " ".join(result.output.split())


def rows(path: Path, fmt: str = "jsonl") -> list:
    return list(read_rows(read_text(path), str(path), fmt))


def tickets(path: Path, n: int = 20) -> Path:
    path.write_text("".join(json.dumps(e.to_record()) + "\n" for e in get_task("support_tickets").generate(n)))
    return path


def test_a_lone_surrogate_is_a_finding_on_its_line(tmp_path: Path) -> None:
    path = tmp_path / "d.jsonl"
    good = tickets(tmp_path / "good.jsonl", 2).read_text().splitlines()
    path.write_text(good[0] + "\n" + '{"input": "\\ud800 broken", "language": "en"}\n' + good[1] + "\n")
    bad = [r for r in rows(path) if getattr(r, "code", None) == "invalid_unicode"]
    assert [(r.line, r.message) for r in bad] == [
        (2, "invalid Unicode: a lone surrogate \\uD800 (half of an escaped pair); fix the escape or remove it")]
    assert len(load_examples(tmp_path / "good.jsonl", get_task("support_tickets"))) == 2  # a pair decodes fine


def test_json_lines_are_told_from_an_array_and_from_csv(tmp_path: Path) -> None:
    array = tmp_path / "a.jsonl"
    array.write_text('[{"input": "x"}]\n')
    with pytest.raises(DataError, match=r"a JSON array.*> a\.lines\.jsonl"):  # never `> a.jsonl`: it empties the file
        rows(array)
    first_line = tmp_path / "f.jsonl"
    first_line.write_text('[1, 2]\n{"input": "x"}\n')
    result = CliRunner().invoke(cli, ["data", "check", str(first_line), "--task", "support_tickets"])
    assert result.exit_code == 1, result.output  # a finding fails the check
    assert "expected a JSON object, got list" in result.output and "JSON array" not in result.output
    named_csv = tmp_path / "j.csv"
    named_csv.write_text('{"input": "x"}\n')
    with pytest.raises(DataError, match="looks like JSON Lines, not CSV"):
        rows(named_csv, "csv")


def test_settings_that_are_not_finite_or_not_a_step_count_are_refused() -> None:
    for bad, said in [({"epochs": float("nan")}, "epochs: nan is not a finite number"),
                      ({"lr": "inf"}, "lr: 'inf' is not a finite number"),
                      ({"max_steps": 0}, "max_steps: 0 is neither a number of steps (>= 1) nor -1")]:
        with pytest.raises(LingoforgeError, match=re.escape(said)):
            make_config(bad)
    assert make_config({"max_steps": -1}).max_steps == -1


@pytest.mark.parametrize(("args", "said"), [
    (["--tflops", "-5", "--device", "mygpu"], "Invalid value for '--tflops': -5.0 is not in the range x>0"),
    (["--mean-tokens", "nan"], "Invalid value for '--mean-tokens': 'nan' is not a finite number"),
    (["--examples", "-10"], "Invalid value for '--examples': -10 is not in the range x>=1"),
    (["--gpu-mem", "0"], "Invalid value for '--gpu-mem': 0.0 is not in the range x>0"),
])
def test_plan_refuses_numbers_no_plan_can_use(args: list[str], said: str) -> None:
    assert said in refused(["plan", "--base", "smollm2-135m", "--device", "cpu", *args])


def test_run_checks_its_flags_before_writing(tmp_path: Path) -> None:
    base = ["run", "support_tickets", "--base", "smollm2-135m", "-o", str(tmp_path / "r")]
    assert "--languages xx: task 'support_tickets' generates" in refused([*base, "--languages", "xx,en"])
    assert "leaving some data for training" in refused([*base, "--val", "0.6", "--test", "0.6"])
    assert "invalid Ollama model name 'Bad Name!'" in refused([*base, "--deploy", "--name", "Bad Name!"])
    assert "max_steps: 0 is neither" in refused([*base, "--max-steps", "0"])
    assert "Invalid value for '--eval-limit'" in refused([*base, "--eval-limit", "-1"])
    assert not (tmp_path / "r").exists()


def test_train_resume_on_a_fresh_folder_writes_nothing(tmp_path: Path) -> None:
    said = refused(["train", "support_tickets", "--data", str(tickets(tmp_path / "d.jsonl")), "--base",
                    "smollm2-135m", "-o", str(tmp_path / "fresh"), "--resume"])
    assert "nothing to resume: no complete checkpoint" in said
    assert not (tmp_path / "fresh").exists()


def test_a_config_file_yaml_error_is_one_line(tmp_path: Path) -> None:
    config = tmp_path / "cfg.yaml"
    config.write_text("rank: 16\n\tlr: 2e-4\n")
    said = refused(["train", "support_tickets", "--data", str(tickets(tmp_path / "d.jsonl")), "--base",
                    "smollm2-135m", "-o", str(tmp_path / "r"), "--config", str(config)])
    assert f"{config}: line 2, column 1: invalid YAML: found character '\\t' that cannot start any token" in said
    assert not (tmp_path / "r").exists()


def test_a_task_file_key_that_is_not_a_key_is_refused(tmp_path: Path) -> None:
    task = tmp_path / "typo.yaml"
    task.write_text("name: typo\nlanguages: [en]\ninstruction: Classify.\nsystem_promt: You classify.\n"
                    "fields:\n  category: {type: enum, labels: [a, b]}\n")
    with pytest.raises(TaskDefinitionError, match=r"typo\.yaml: system_promt: unknown key; a task file takes name,"):
        load_task(str(task))


def test_labels_never_overwrites_its_template_nor_writes_a_task_that_does_not_load(tmp_path: Path) -> None:
    data = tickets(tmp_path / "d.jsonl")
    template = tmp_path / "mine.yaml"
    template.write_text("name: mine\nextends: support_tickets\n")
    before = template.read_bytes()
    said = refused(["labels", str(data), "--extends", str(template), "-o", str(template)])
    assert "is the task file --extends names" in said and template.read_bytes() == before
    said = refused(["labels", str(data), "--extends", "nope", "-o", str(tmp_path / "new.yaml")])
    assert "new.yaml would not load" in said and "extends: unknown task 'nope'" in said
    assert sorted(p.name for p in tmp_path.iterdir()) == ["d.jsonl", "mine.yaml"]  # no temporary file either


def test_a_folder_without_run_json_is_not_a_run(tmp_path: Path) -> None:
    (tmp_path / "notes").mkdir()
    assert f"{tmp_path / 'notes'} is not a lingoforge run folder (no run.json)" in refused(
        ["export", str(tmp_path / "notes")])
    assert list((tmp_path / "notes").iterdir()) == []


def test_a_file_that_is_not_gguf_is_no_tokenizer(tmp_path: Path) -> None:
    fake = tmp_path / "fake.gguf"
    fake.write_text("not a model")
    data = tickets(tmp_path / "d.jsonl")
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    said = refused(["tokens", str(data), "--tokenizer", str(fake)])
    assert "cannot load tokenizer" in said and "not a GGUF file" in said
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == before  # nothing written, nothing changed


def test_an_empty_language_list_is_not_every_language(tmp_path: Path) -> None:
    for command in (["generate", "support_tickets", "-n", "5", "-o", str(tmp_path / "g.jsonl")],
                    ["run", "support_tickets", "--base", "smollm2-135m", "-o", str(tmp_path / "r")]):
        assert "name at least one language" in refused([*command, "--languages", ","])
    assert list(tmp_path.iterdir()) == []


def test_an_unclosed_csv_quote_is_named(tmp_path: Path) -> None:
    path = tmp_path / "t.csv"
    path.write_text('input,category\n"unclosed,shipping\nMy parcel,shipping\n')
    [bad] = [r for r in rows(path, "csv") if getattr(r, "code", None) == "bad_row"]
    assert (bad.line, bad.message) == (2, "the row has 1 fields, the header has 2 and runs to line 3: an unclosed "
                                          "quote?")
