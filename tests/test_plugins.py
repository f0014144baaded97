"""The plugin engine through the real entry-point mechanism: throwaway plugin distributions on sys.path."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest
from click.testing import CliRunner
from lingoforge.cli import cli
from lingoforge.plugins import Registry, get_registry, get_task, reset_registry

GOOD_PLUGIN = '''
from lingoforge import Example, Task, hookimpl

def _gen(n, seed, langs):
    return [Example("Say it.", f"{NAME} text {seed} {i}", {"label": "a"}, langs[i % len(langs)]) for i in range(n)]

def _score(pred, gold):
    return {"label_accuracy": float(bool(pred) and pred.get("label") == gold["label"])}

SCHEMA = {"type": "object", "properties": {"label": {"type": "string", "enum": ["a", "b"]}},
          "required": ["label"], "additionalProperties": False}

@hookimpl
def register_tasks(register):
    register(Task(name=NAME, version="1", description="d", languages=("en", "de"), system_prompt="s",
                  instruction="i", output_schema=SCHEMA, scorer=_score, primary_metric="label_accuracy",
                  fields=("label",), generator=_gen))
'''


def make_plugin(root: Path, dist: str, module: str, body: str, entry: str | None = None) -> None:
    """A real installed distribution: a module plus a .dist-info with an entry point in group `lingoforge`."""
    (root / f"{module}.py").write_text(textwrap.dedent(body), encoding="utf-8")
    info = root / f"{dist}-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: 0.1\n", encoding="utf-8")
    (info / "entry_points.txt").write_text(f"[lingoforge]\n{entry or dist} = {module}\n", encoding="utf-8")


@pytest.fixture
def plugin_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delenv("LINGOFORGE_PLUGINS", raising=False)
    monkeypatch.delenv("LINGOFORGE_DISABLE_PLUGIN_AUTOLOAD", raising=False)
    monkeypatch.delenv("LINGOFORGE_TASK_PATH", raising=False)
    reset_registry()
    yield tmp_path
    reset_registry()


def run_cli(*args: str):
    get_registry().add_commands(cli)
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


def test_third_party_plugin_is_discovered_through_entry_points(plugin_dir: Path) -> None:
    make_plugin(plugin_dir, "lf_good", "lf_good", "NAME = 'good_task'\n" + GOOD_PLUGIN)
    result = run_cli("tasks", "--json")
    names = {t["name"]: t for t in json.loads(result.stdout)}
    assert names["good_task"]["source"] == "lf_good"
    assert names["good_task"]["languages"] == ["en", "de"]
    assert get_task("good_task").generate(4, 0)[1].language == "de"


def test_broken_plugins_are_named_and_others_still_listed(plugin_dir: Path) -> None:
    make_plugin(plugin_dir, "lf_good", "lf_good", "NAME = 'good_task'\n" + GOOD_PLUGIN)
    make_plugin(plugin_dir, "lf_importerr", "lf_importerr", "import no_such_module_anywhere\n")
    make_plugin(plugin_dir, "lf_badschema", "lf_badschema",
                "NAME = 'bad_schema'\n" + GOOD_PLUGIN.replace('"type": "object"', '"type": "objekt"'))
    make_plugin(plugin_dir, "lf_dup", "lf_dup", "NAME = 'good_task'\n" + GOOD_PLUGIN)
    make_plugin(plugin_dir, "lf_typo", "lf_typo",
                "from lingoforge import hookimpl\n@hookimpl\ndef register_taks(register):\n    pass\n")
    result = run_cli("tasks", "--json")
    listed = {t["name"] for t in json.loads(result.stdout)}
    assert "good_task" in listed and "bad_schema" not in listed
    errors = result.stderr
    assert "lf_importerr" in errors and "no_such_module_anywhere" in errors
    assert "lf_badschema" in errors and "not valid JSON Schema" in errors
    assert "register_taks" in errors and "lf_typo" in errors
    # the duplicate names both plugins, whichever registered first
    dup_line = next(line for line in errors.splitlines() if "already registered" in line)
    assert "lf_good" in dup_line and "lf_dup" in dup_line
    plugins = {p["name"]: p for p in json.loads(run_cli("plugins", "--json").stdout)}
    assert plugins["lf_importerr"]["errors"][0].startswith("import:")
    # entry points load in no fixed order: exactly one of the two holds the task, the other carries the error
    holders = [name for name in ("lf_good", "lf_dup") if plugins[name]["tasks"] == ["good_task"]]
    assert len(holders) == 1, {name: plugins[name] for name in ("lf_good", "lf_dup")}
    other = "lf_dup" if holders == ["lf_good"] else "lf_good"
    assert plugins[other]["tasks"] == [] and any("already registered" in e for e in plugins[other]["errors"])
    assert plugins["lf_good"]["hooks"] == ["register_tasks"]


def test_a_failing_register_hook_does_not_break_other_plugins(plugin_dir: Path) -> None:
    make_plugin(plugin_dir, "lf_good", "lf_good", "NAME = 'good_task'\n" + GOOD_PLUGIN)
    raising = (
        "from lingoforge import hookimpl\n@hookimpl\ndef register_tasks(register):\n    raise RuntimeError('boom')\n"
    )
    make_plugin(plugin_dir, "lf_raises", "lf_raises", raising)
    registry = get_registry()
    assert "good_task" in registry.tasks
    assert any(e.plugin == "lf_raises" and "boom" in e.message for e in registry.errors)


def test_env_switches_select_plugins(plugin_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    make_plugin(plugin_dir, "lf_one", "lf_one", "NAME = 'task_one'\n" + GOOD_PLUGIN)
    make_plugin(plugin_dir, "lf_two", "lf_two", "NAME = 'task_two'\n" + GOOD_PLUGIN)
    monkeypatch.setenv("LINGOFORGE_PLUGINS", "lf_two")
    reset_registry()
    assert set(get_registry().tasks) == {"task_two"}
    monkeypatch.delenv("LINGOFORGE_PLUGINS")
    monkeypatch.setenv("LINGOFORGE_DISABLE_PLUGIN_AUTOLOAD", "1")
    reset_registry()
    assert get_registry().tasks == {}


def test_plugin_registered_in_code_can_be_unregistered() -> None:
    registry = Registry()
    namespace: dict = {"NAME": "inline_task"}
    exec(compile(GOOD_PLUGIN, "inline", "exec"), namespace)
    plugin = type("P", (), {"register_tasks": staticmethod(namespace["register_tasks"])})
    registry.register_plugin(plugin, "inline")
    assert "inline_task" in registry.tasks
    registry.unregister_plugin("inline")
    assert registry.tasks == {}


def test_register_commands_hook_adds_a_cli_command(plugin_dir: Path) -> None:
    make_plugin(plugin_dir, "lf_cmd", "lf_cmd", '''
        import click
        from lingoforge import hookimpl

        @hookimpl
        def register_commands(cli):
            @cli.command(name="hello-plugin")
            def hello():
                click.echo("hello from a plugin")
    ''')
    assert run_cli("hello-plugin").stdout.strip() == "hello from a plugin"


def test_unknown_task_lists_known_ones(plugin_dir: Path) -> None:
    make_plugin(plugin_dir, "lf_good", "lf_good", "NAME = 'good_task'\n" + GOOD_PLUGIN)
    result = CliRunner().invoke(cli, ["generate", "nope_task", "-o", str(plugin_dir / "x.jsonl")])
    assert result.exit_code != 0
    assert "unknown task 'nope_task'" in result.output and "good_task" in result.output
    assert not (plugin_dir / "x.jsonl").exists()


def test_version_flag() -> None:
    result = CliRunner().invoke(cli, ["--version"])
    assert result.exit_code == 0 and result.output.startswith("lingoforge, version ")
