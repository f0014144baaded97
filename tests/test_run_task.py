"""A run folder is self-contained: it records the task it trains (a YAML task's own text and hash, a plugin task's
package and version), and every later command rebuilds the task from the run without --task or a task path."""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner
from lingoforge import plugins
from lingoforge.backends import resolve_model
from lingoforge.cli import cli
from lingoforge.commands.options import task_for
from lingoforge.errors import LingoforgeError, TaskDefinitionError, TaskNotFound
from lingoforge.runfolder import TASK_FILE, RunFolder

CLAIMS_YAML = """\
# claims.yaml: routed insurance claims
name: insurance_claims
version: "2"
languages: [en, de]
system_prompt: You route insurance claims.
instruction: Classify the claim. Answer with JSON only.
fields:
  category: {type: enum, labels: [water_damage, theft, fire]}
slots: {item: {en: [bike, laptop, phone, camera], de: [Fahrrad, Laptop, Handy, Kamera]}}
examples:
  - {language: en, input: "My {item} was stolen from the garage last night.", output: {category: theft}}
  - {language: de, input: "Mein {item} wurde letzte Nacht aus der Garage gestohlen.", output: {category: theft}}
"""


@pytest.fixture(autouse=True)
def fresh_registry(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """A shell with no task path: only installed plugins are known, as in a fresh terminal."""
    monkeypatch.delenv(plugins.ENV_TASK_PATH, raising=False)
    monkeypatch.delenv(plugins.ENV_ONLY, raising=False)
    plugins.reset_registry()
    yield
    plugins.reset_registry()


@pytest.fixture
def task_file(tmp_path: Path) -> Path:
    path = tmp_path / "tasks" / "claims.yaml"
    path.parent.mkdir()
    path.write_text(CLAIMS_YAML, encoding="utf-8")
    return path


def trained_run(root: Path, task_name_or_path: str) -> RunFolder:
    """A run folder as training leaves it (task recorded, base named, an adapter config), without training."""
    run = RunFolder(root)
    run.record_task(plugins.get_task(task_name_or_path))
    run.update(base={"spec": "smollm2-135m", "location": "unused"})
    run.adapter.mkdir(parents=True)
    (run.adapter / "adapter_config.json").write_text(json.dumps({"r": 8, "target_modules": ["q_proj"]}))
    return run


def test_a_yaml_task_is_copied_into_the_run_with_its_hash(tmp_path: Path, task_file: Path) -> None:
    run = trained_run(tmp_path / "run", str(task_file))
    copied = run.root / TASK_FILE
    assert copied.read_bytes() == task_file.read_bytes()
    assert run.read()["task"] == {"name": "insurance_claims", "version": "2", "kind": "yaml", "file": TASK_FILE,
                                  "sha256": hashlib.sha256(task_file.read_bytes()).hexdigest()}


def test_the_run_alone_rebuilds_its_yaml_task(tmp_path: Path, task_file: Path) -> None:
    run = trained_run(tmp_path / "run", str(task_file))
    original = plugins.get_task(str(task_file))
    task_file.unlink()  # the user's file is gone; no task path names it either
    with pytest.raises(TaskNotFound, match="unknown task 'insurance_claims'"):
        plugins.get_task("insurance_claims")
    task = RunFolder(tmp_path / "run").task()
    assert (task.name, task.version, task.languages) == ("insurance_claims", "2", ("en", "de"))
    assert task.output_schema == original.output_schema and task.instruction == original.instruction
    assert task.source == str(run.root / TASK_FILE)


def test_eval_and_predict_take_the_task_from_the_run(tmp_path: Path, task_file: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    import lingoforge.evaluate
    import lingoforge.predict

    run = trained_run(tmp_path / "run", str(task_file))
    task_file.unlink()
    assert task_for(None, resolve_model(str(run.root))).name == "insurance_claims"

    def stop(_model: object, task: object, *args: object, **kwargs: object) -> None:
        raise LingoforgeError(f"a model would load here, for task {task.name}")  # type: ignore[attr-defined]

    monkeypatch.setattr(lingoforge.evaluate, "evaluate", stop)
    monkeypatch.setattr(lingoforge.predict, "predict", stop)
    data = tmp_path / "test.jsonl"
    data.write_text("".join(json.dumps({"input": text, "output": {"category": "theft"}, "language": lang}) + "\n"
                            for lang, text in [("en", "Somebody stole my bike from the garage."),
                                               ("de", "Jemand hat mein Fahrrad aus der Garage gestohlen.")]),
                    encoding="utf-8")
    for args in (["eval", str(run.root), "--data", str(data)], ["predict", str(run.root), str(data),
                                                                 "-o", str(tmp_path / "out.jsonl")]):
        result = CliRunner().invoke(cli, args)
        assert result.exit_code == 1, result.output
        assert "a model would load here, for task insurance_claims" in result.output


def test_an_explicit_task_wins_and_the_recorded_name_falls_back_to_the_run(tmp_path: Path, task_file: Path) -> None:
    run = trained_run(tmp_path / "run", str(task_file))
    other = tmp_path / "tasks" / "other.yaml"
    other.write_text(CLAIMS_YAML.replace("insurance_claims", "other_claims"), encoding="utf-8")
    assert run.resolve_task(str(other)).name == "other_claims"
    assert run.resolve_task("support_tickets").name == "support_tickets"
    assert run.resolve_task("insurance_claims").source == str(run.root / TASK_FILE)  # `run` resumed by name
    with pytest.raises(TaskNotFound, match="unknown task 'no_such_task'"):
        run.resolve_task("no_such_task")


def test_an_edited_task_copy_is_an_error_naming_it(tmp_path: Path, task_file: Path) -> None:
    run = trained_run(tmp_path / "run", str(task_file))
    copied = run.root / TASK_FILE
    copied.write_text(CLAIMS_YAML.replace("fire]", "fire, flood]"), encoding="utf-8")
    with pytest.raises(TaskDefinitionError, match=f"{copied} was changed after training"):
        run.task()
    copied.unlink()
    with pytest.raises(TaskNotFound, match=f"{copied} is missing"):
        run.task()


def test_a_recorded_file_name_must_stay_in_the_run_folder(tmp_path: Path, task_file: Path) -> None:
    run = trained_run(tmp_path / "run", str(task_file))
    for bad in ("../claims.yaml", "/etc/passwd", ".task.yaml", "task.py"):
        run.update(task={"file": bad})
        with pytest.raises(LingoforgeError, match="must be a .yaml file name in the run folder"):
            run.task()


def test_a_trained_run_refuses_another_definition_of_its_yaml_task(tmp_path: Path, task_file: Path) -> None:
    run = trained_run(tmp_path / "run", str(task_file))
    before = run.run_json.read_bytes()
    run.record_task(plugins.get_task(str(task_file)))  # resuming with the same file is fine
    task_file.write_text(CLAIMS_YAML.replace("fire]", "fire, flood]"), encoding="utf-8")
    with pytest.raises(LingoforgeError, match="trained on another definition of task 'insurance_claims'"):
        run.record_task(plugins.get_task(str(task_file)))
    assert run.run_json.read_bytes() == before
    assert (run.root / TASK_FILE).read_text(encoding="utf-8") == CLAIMS_YAML


def test_train_from_files_records_the_task_before_training(tmp_path: Path, task_file: Path,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    import lingoforge.train

    monkeypatch.setattr(lingoforge.train, "train", lambda task, *args, **kwargs: task)
    data = tmp_path / "all.jsonl"
    data.write_text("".join(json.dumps(e.to_record()) + "\n"
                            for e in plugins.get_task(str(task_file)).generate(8, 0)), encoding="utf-8")
    out = tmp_path / "run"
    lingoforge.train.train_from_files(plugins.get_task(str(task_file)), data, "smollm2-135m", out,
                                      lingoforge.train.TrainConfig(val_fraction=0.25), quiet=True)
    assert RunFolder(out).task_record()["kind"] == "yaml"
    assert (out / TASK_FILE).read_text(encoding="utf-8") == CLAIMS_YAML


def test_the_pipeline_records_the_task_first(tmp_path: Path, task_file: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import lingoforge.pipeline
    from lingoforge.pipeline import Options, Pipeline

    monkeypatch.setattr(lingoforge.pipeline, "STAGES", ())
    with pytest.raises(LingoforgeError, match="lacks an evaluation report"):  # no stage ran: nothing to summarize
        Pipeline(Options(task=plugins.get_task(str(task_file)), base="smollm2-135m", out=tmp_path / "run")).run_all()
    assert RunFolder(tmp_path / "run").task_record()["sha256"] == hashlib.sha256(task_file.read_bytes()).hexdigest()


def test_deploy_loads_the_task_from_the_run_the_manifest_names(tmp_path: Path, task_file: Path) -> None:
    from lingoforge.deploy import DeployError, deploy
    from lingoforge.export.modelfile import ServingConfig
    from lingoforge.runfolder import MANIFEST

    run = trained_run(tmp_path / "run", str(task_file))
    task_file.unlink()
    serving = ServingConfig("model-q8_0.gguf", "{{ .Prompt }}", "You route insurance claims.", 512)
    run.export.mkdir()
    (run.export / MANIFEST).write_text(json.dumps({"run_dir": str(run.root), "serving": serving.as_dict(),
                                                   "task": {"name": "insurance_claims", "version": "2"},
                                                   "model_file": serving.model_file}))
    with pytest.raises(DeployError, match="cannot reach the Ollama server"):  # the task loaded before connecting
        deploy(run.root, "claims", host="127.0.0.1:9")
    (run.root / TASK_FILE).write_text(CLAIMS_YAML + "# edited\n", encoding="utf-8")
    with pytest.raises(TaskDefinitionError, match="was changed after training"):
        deploy(run.root, "claims", host="127.0.0.1:9")


def test_a_plugin_task_records_its_package(tmp_path: Path) -> None:
    run = trained_run(tmp_path / "run", "support_tickets")
    assert run.read()["task"] == {"name": "support_tickets", "version": plugins.get_task("support_tickets").version,
                                  "kind": "plugin", "distribution": "lingoforge",
                                  "distribution_version": importlib.metadata.version("lingoforge")}
    assert not (run.root / TASK_FILE).exists()
    assert run.task().name == "support_tickets"


def test_another_installed_plugin_version_warns(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run = trained_run(tmp_path / "run", "support_tickets")
    run.update(task={"version": "0.0.1"})
    assert run.task().name == "support_tickets"
    err = capsys.readouterr().err
    installed = plugins.get_task("support_tickets").version
    assert err.startswith("warning: ") and "'support_tickets' version 0.0.1" in err
    assert f"the installed task is version {installed}" in err
    assert f"install lingoforge=={importlib.metadata.version('lingoforge')}" in err


def test_a_missing_plugin_task_names_the_package(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    run = trained_run(tmp_path / "run", "support_tickets")
    monkeypatch.setenv(plugins.ENV_ONLY, "contract_extraction")  # support_tickets' plugin is not loaded
    plugins.reset_registry()
    wanted = f"lingoforge=={importlib.metadata.version('lingoforge')}"
    with pytest.raises(TaskNotFound, match=f"package {wanted}, which is not installed.*pip install '{wanted}'"):
        run.task()


def test_runs_recorded_before_the_task_was_load_by_name(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run = RunFolder(tmp_path / "run")
    run.update(task={"name": "support_tickets", "version": plugins.get_task("support_tickets").version})
    assert run.task().name == "support_tickets" and capsys.readouterr().err == ""
    run.update(task={"name": "insurance_claims"})
    with pytest.raises(TaskNotFound, match="recorded before run folders kept their task: pass --task"):
        run.task()
