"""Bad run folders are refused before anything is written: another task's run, foreign files, a damaged
adapter; a failed export keeps the previous one."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner
from lingoforge import get_task
from lingoforge.cli import cli
from lingoforge.errors import LingoforgeError
from lingoforge.runfolder import RunFolder, check_adapter


def _snapshot(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def _other_task_run(root: Path) -> Path:
    (root / "data").mkdir(parents=True)
    (root / "run.json").write_text(json.dumps({"task": {"name": "ecommerce_taxonomy", "version": "0.1.0"}}))
    (root / "data" / "train.jsonl").write_text('{"input": "x"}\n')
    (root / "data" / "tokens.json").write_text("{}")
    return root


def test_claim_accepts_new_empty_and_own_runs_and_writes_nothing(tmp_path: Path) -> None:
    # claim returns None when it accepts and raises when it refuses: each call below must not raise, and a claim
    # creates no folder nor file (writing is for the step that follows it)
    RunFolder(tmp_path / "new").claim("support_tickets")
    assert not (tmp_path / "new").exists()
    (tmp_path / "empty").mkdir()
    RunFolder(tmp_path / "empty").claim("support_tickets")
    assert list((tmp_path / "empty").iterdir()) == []
    own = _other_task_run(tmp_path / "own")
    before = _snapshot(own)
    RunFolder(own).claim("ecommerce_taxonomy")
    assert _snapshot(own) == before
    with pytest.raises(LingoforgeError):  # the same folder is refused to another task: the calls above could fail
        RunFolder(own).claim("support_tickets")


def test_claim_refuses_another_tasks_run_and_foreign_files(tmp_path: Path) -> None:
    with pytest.raises(LingoforgeError, match="holds a run of task 'ecommerce_taxonomy', not 'support_tickets'"):
        RunFolder(_other_task_run(tmp_path / "run")).claim("support_tickets")
    (tmp_path / "photos").mkdir()
    (tmp_path / "photos" / "cat.jpg").write_bytes(b"\xff\xd8")
    with pytest.raises(LingoforgeError, match="not empty and holds no run.json"):
        RunFolder(tmp_path / "photos").claim("support_tickets")


def test_run_on_another_tasks_run_writes_nothing(tmp_path: Path) -> None:
    run = _other_task_run(tmp_path / "run")
    before = _snapshot(run)
    result = CliRunner().invoke(cli, ["run", "support_tickets", "--base", "smollm2-135m", "-o", str(run), "-n", "40"])
    assert result.exit_code == 1 and "holds a run of task 'ecommerce_taxonomy'" in result.output, result.output
    assert _snapshot(run) == before


def test_train_validates_base_and_folder_before_writing(tmp_path: Path) -> None:
    data = tmp_path / "tickets.jsonl"
    data.write_text("".join(json.dumps(e.to_record()) + "\n" for e in get_task("support_tickets").generate(20)))
    out = tmp_path / "run"
    result = CliRunner().invoke(cli, ["train", "support_tickets", "--data", str(data), "--base",
                                      str(tmp_path / "runs" / "demoo"), "-o", str(out)])
    assert result.exit_code == 1 and "does not exist" in result.output and "hub" not in result.output, result.output
    assert not out.exists()
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "todo.txt").write_text("keep me")
    result = CliRunner().invoke(cli, ["train", "support_tickets", "--data", str(data), "--base", "smollm2-135m",
                                      "-o", str(tmp_path / "notes")])
    assert result.exit_code == 1 and "not empty and holds no run.json" in result.output, result.output
    assert [p.name for p in (tmp_path / "notes").iterdir()] == ["todo.txt"]


def test_a_hub_shaped_base_that_does_not_load_is_told_before_writing(tmp_path: Path, monkeypatch) -> None:
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)  # the same answer as an unknown id online
    monkeypatch.chdir(tmp_path)  # no runs/ folder here: runs/demoo has the shape of a hub id
    data = tmp_path / "tickets.jsonl"
    data.write_text("".join(json.dumps(e.to_record()) + "\n" for e in get_task("support_tickets").generate(20)))
    for command in (["train", "support_tickets", "--data", str(data)], ["run", "support_tickets"]):
        result = CliRunner().invoke(cli, [*command, "--base", "runs/demoo", "-o", "out"])
        assert result.exit_code == 1 and isinstance(result.exception, SystemExit), result.output
        assert f"'runs/demoo' is not a local folder ({tmp_path / 'runs' / 'demoo'} does not exist) and the Hugging " \
               "Face hub did not give it" in result.output
        assert not (tmp_path / "out").exists()


def test_eval_refuses_a_task_other_than_the_one_the_run_learned(tiny_run: Path, tmp_path: Path) -> None:
    data = tmp_path / "products.jsonl"
    data.write_text("".join(json.dumps(e.to_record()) + "\n" for e in get_task("ecommerce_taxonomy").generate(4)))
    result = CliRunner().invoke(cli, ["eval", str(tiny_run), "--task", "ecommerce_taxonomy", "--data", str(data),
                                      "-o", str(tmp_path / "eval")])
    assert result.exit_code == 1, result.output
    assert f"{tiny_run} was trained for task 'support_tickets', not 'ecommerce_taxonomy'" in result.output
    assert not (tmp_path / "eval").exists()


def test_adapter_config_and_weights_of_different_ranks_are_refused(tiny_run: Path, tmp_path: Path) -> None:
    copy = Path(shutil.copytree(tiny_run / "adapter", tmp_path / "run" / "adapter"))
    config = json.loads((copy / "adapter_config.json").read_text())
    (copy / "adapter_config.json").write_text(json.dumps({**config, "r": 16}))  # the weights are rank 8
    with pytest.raises(LingoforgeError, match="says rank r=16 but .* holds rank 8 .*different adapters"):
        check_adapter(RunFolder(tmp_path / "run").adapter)


@pytest.mark.parametrize(("name", "damage", "message"), [
    ("adapter_model.safetensors", lambda b: b[: len(b) // 2], "damaged"),
    ("adapter_model.safetensors", lambda b: b[:5], "damaged"),
    ("adapter_config.json", lambda b: b[: len(b) // 2], "damaged, not valid JSON"),
    ("adapter_config.json", lambda b: b"{}", "not a LoRA adapter config"),
])
def test_damaged_adapter_is_refused_naming_the_file(tiny_run: Path, tmp_path: Path, name: str, damage,
                                                    message: str) -> None:
    copy = Path(shutil.copytree(tiny_run / "adapter", tmp_path / "run" / "adapter"))
    (copy / name).write_bytes(damage((copy / name).read_bytes()))
    with pytest.raises(LingoforgeError, match=rf"{copy / name}: {message}"):
        check_adapter(RunFolder(tmp_path / "run").adapter)


def test_failed_export_keeps_the_previous_one(tiny_run: Path, tiny_export: dict, tmp_path: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    from lingoforge.export import pipeline

    run = Path(shutil.copytree(tiny_run, tmp_path / "run"))
    before = _snapshot(run / "export")

    def fail(*args: object, **kwargs: object) -> None:
        raise LingoforgeError("quantize failed: disk full")

    monkeypatch.setattr(pipeline, "quantize", fail)
    with pytest.raises(LingoforgeError, match="disk full"):
        pipeline.export_run(run, parity_n=1, progress=False)
    assert _snapshot(run / "export") == before and "export.json" in before

    (run / "adapter" / "adapter_model.safetensors").write_bytes(b"\x00" * 16)
    with pytest.raises(LingoforgeError, match="adapter_model.safetensors: damaged"):
        pipeline.export_run(run, parity_n=1, progress=False)
    assert _snapshot(run / "export") == before


def test_predict_with_a_damaged_adapter_is_a_clear_error(tiny_run: Path, tmp_path: Path) -> None:
    run = Path(shutil.copytree(tiny_run, tmp_path / "run", ignore=shutil.ignore_patterns("export")))
    (run / "adapter" / "adapter_model.safetensors").write_bytes(b"\x00" * 16)
    (tmp_path / "in.jsonl").write_text('{"input": "My parcel never arrived."}\n')
    result = CliRunner().invoke(cli, ["predict", str(run), str(tmp_path / "in.jsonl"), "-o", str(tmp_path / "o.jsonl")])
    assert result.exit_code == 1 and "adapter_model.safetensors: damaged" in result.output, result.output
    assert not (tmp_path / "o.jsonl").exists()
