"""``export --bundle``: the tar's contents, and its install.sh on a stand-in ``ollama`` and on a fresh real server.

The stand-in ``ollama`` (a shell script on a PATH holding only the tools install.sh may use) records what the
script asks and answers what a test tells it, so every branch of install.sh runs without a server in
milliseconds: each JSON checker (jq, python3, grep), a failed create, a wrong answer, no CLI at all. The real
test installs the bundle of the SmolLM2 export on a server that has never seen it, as an offline machine would.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest
from lingoforge import get_task
from lingoforge.errors import LingoforgeError
from lingoforge.export.bundle import bundle_file_name, default_name, write_bundle
from lingoforge.export.modelfile import ServingConfig
from lingoforge.export.pipeline import load_test_examples
from lingoforge.fsutil import write_json, write_jsonl, write_text
from lingoforge.runfolder import RunFolder
from run_fixtures import TASK

# Everything a shell could misread if it were not quoted: quotes of both kinds, $, backquotes, a backslash,
# a glob, a newline, and non-ASCII text.
TRICKY = "It's \"urgent\": $HOME `id` \\n *; order #88213\nDanke — 注文"
REQUIRED = ["category", "priority", "language", "suggested_response"]
VALID = '{"category": "billing", "priority": "high", "language": "en", "suggested_response": "Sorry!"}'


def make_export(root: Path, first_input: str = TRICKY, adapter: bool = False) -> Path:
    """A run folder with test examples and a complete-looking export (manifest, Modelfile, GGUF stand-ins),
    without training or converting anything: the bundle only reads these files."""
    task = get_task(TASK)
    run = root / "run"
    records = [e.to_record() for e in task.generate(2, seed=0)]
    records[0]["input"] = first_input
    write_jsonl(run / "data" / "test.jsonl", records)
    RunFolder(run).update(task={"name": task.name, "version": task.version}, base={"location": str(root / "base")})
    export = run / "export"
    serving = ServingConfig("model-q8_0.gguf", "{{ .Prompt }}", task.system_prompt, 2048,
                            adapter_file="adapter-lora.gguf" if adapter else None)
    write_text(export / "Modelfile", serving.modelfile())
    (export / "model-q8_0.gguf").write_bytes(b"GGUF" + bytes(range(256)) * 64)
    if adapter:
        (export / "adapter-lora.gguf").write_bytes(b"GGUF-adapter")
    (export / "merged").mkdir()  # not bundled: Ollama needs the GGUF only
    write_json(export / "export.json", {
        "run_dir": str(run.resolve()), "task": {"name": task.name, "version": task.version}, "quant": "q8_0",
        "adapter_only": adapter, "model_file": serving.model_file, "adapter_file": serving.adapter_file,
        "serving": serving.as_dict(), "parity": {"examples": 2, "source": str(run / "data" / "test.jsonl")}})
    return export


def test_names() -> None:
    assert default_name("support_tickets") == "support-tickets"
    assert bundle_file_name("support-tickets") == "support-tickets-bundle.tar"
    assert bundle_file_name("acme/tickets:v1") == "acme-tickets-v1-bundle.tar"
    with pytest.raises(LingoforgeError, match="invalid Ollama model name"):
        bundle_file_name("tickets v1")


@pytest.mark.parametrize("adapter", [False, True], ids=["merged", "adapter-only"])
def test_bundle_members_modes_and_the_exports_own_modelfile(tmp_path: Path, adapter: bool) -> None:
    export = make_export(tmp_path, adapter=adapter)
    path = write_bundle(export, "support-tickets")
    assert path == export / "support-tickets-bundle.tar"
    top = "support-tickets-bundle"
    models = ["model-q8_0.gguf", *(["adapter-lora.gguf"] if adapter else [])]
    with tarfile.open(path) as tar:
        members = tar.getmembers()
        assert [m.name for m in members] == [top, *(f"{top}/{n}" for n in ["install.sh", "Modelfile", "README.md",
                                                                            *models])]
        assert all(not m.name.startswith("/") and ".." not in m.name.split("/") for m in members)
        assert {m.name: m.mode for m in members} == {top: 0o755, f"{top}/install.sh": 0o755,
                                                     **{m.name: 0o644 for m in members[2:]}}
        assert {(m.uid, m.gid, m.uname, m.gname) for m in members} == {(0, 0, "", "")}
        read = {m.name.split("/", 1)[-1]: tar.extractfile(m).read() for m in members[1:]}  # type: ignore[union-attr]
    assert read["Modelfile"] == (export / "Modelfile").read_bytes()
    from_lines = [line for line in read["Modelfile"].decode().splitlines() if line.startswith(("FROM", "ADAPTER"))]
    assert from_lines == [f"FROM ./{models[0]}", *([f"ADAPTER ./{models[1]}"] if adapter else [])]
    assert all(read[name] == (export / name).read_bytes() for name in models)
    readme = read["README.md"].decode()
    assert "sh install.sh" in readme and "ollama run support-tickets" in readme and "`suggested_response`" in readme
    assert json.loads((export / "export.json").read_text())["bundle"] == {"file": path.name, "name": "support-tickets"}
    # Same export, same bytes; the tar was renamed into place, so no temp file stays behind.
    first = path.read_bytes()
    assert write_bundle(export, "support-tickets").read_bytes() == first
    assert sorted(p.name for p in export.iterdir() if p.name.startswith(".")) == []


def test_bundle_refuses_a_modelfile_that_names_other_files(tmp_path: Path) -> None:
    export = make_export(tmp_path)
    modelfile = export / "Modelfile"
    modelfile.write_text(modelfile.read_text().replace("FROM ./model-q8_0.gguf", "FROM ./model-q5_k_m.gguf"))
    with pytest.raises(LingoforgeError, match="names model-q5_k_m.gguf in its FROM/ADAPTER lines"):
        write_bundle(export, "support-tickets")
    assert not (export / "support-tickets-bundle.tar").exists()


# -- install.sh on a stand-in ollama -------------------------------------------------------------------------

FAKE_OLLAMA = """#!/bin/sh
printf '%s|%s|%s\\n' "$*" "${OLLAMA_HOST:-}" "$(pwd)" >> "$FAKE_LOG"
case "$1" in
    create)
        model=$(sed -n 's|^FROM \\./||p' Modelfile)
        [ -f "$model" ] || { echo "no $model" >&2; exit 1; }
        exit "${FAKE_CREATE_RC:-0}" ;;
    run)
        cat > "$FAKE_STDIN"
        printf '%s\\n' "$FAKE_ANSWER" ;;
esac
"""


# jq is a system tool (.ci/run installs it); without it the jq cases skip and say so, the others still run
NEEDS_JQ = pytest.mark.skipif(shutil.which("jq") is None, reason="jq is not installed (apt-get install jq)")
CHECKERS = [pytest.param("jq", marks=NEEDS_JQ), "python3", "grep"]


def unpack(tmp_path: Path) -> Path:
    """The bundle of a stand-in export, unpacked with the system's tar, as a user would."""
    bundle = write_bundle(make_export(tmp_path / "export"), "acme/support-tickets:v1")
    subprocess.run(["tar", "xf", str(bundle), "-C", str(tmp_path)], check=True)
    return tmp_path / "acme-support-tickets-v1-bundle"


def install(tmp_path: Path, folder: Path, checker: str | None, answer: str = VALID, create_rc: int = 0,
            with_ollama: bool = True) -> subprocess.CompletedProcess[str]:
    """Run install.sh with dash (POSIX sh) from another folder, on a PATH of only the tools it may use."""
    bin_dir = tmp_path / f"bin-{checker}-{create_rc}-{with_ollama}"
    bin_dir.mkdir()
    for tool in ("dirname", "tr", "grep", "cat", "sed"):
        (bin_dir / tool).symlink_to(shutil.which(tool))  # type: ignore[arg-type]
    if checker == "jq":
        (bin_dir / "jq").symlink_to(shutil.which("jq"))  # type: ignore[arg-type]
    elif checker == "python3":
        (bin_dir / "python3").symlink_to(sys.executable)
    if with_ollama:
        (bin_dir / "ollama").write_text(FAKE_OLLAMA)
        (bin_dir / "ollama").chmod(0o755)
    env = {"PATH": str(bin_dir), "OLLAMA_HOST": "10.1.2.3:11434", "FAKE_LOG": str(tmp_path / "calls.log"),
           "FAKE_STDIN": str(tmp_path / "stdin.txt"), "FAKE_ANSWER": answer, "FAKE_CREATE_RC": str(create_rc)}
    return subprocess.run(["/bin/sh", str(folder / "install.sh")], cwd=tmp_path, env=env, capture_output=True,
                          text=True, timeout=60)


@pytest.mark.parametrize("checker", CHECKERS)
def test_install_sh_creates_asks_and_checks(tmp_path: Path, checker: str) -> None:
    folder = unpack(tmp_path)
    done = install(tmp_path, folder, checker)
    assert done.returncode == 0, done.stderr
    assert f"checked with {checker}" in done.stdout and VALID in done.stdout
    calls = (tmp_path / "calls.log").read_text().splitlines()
    assert calls == [f"create acme/support-tickets:v1 -f Modelfile|10.1.2.3:11434|{folder}",
                     f"run acme/support-tickets:v1 --format json --nowordwrap|10.1.2.3:11434|{folder}"]
    # The sample reached `ollama run` byte for byte: quoting kept every quote, $, backquote and newline.
    assert (tmp_path / "stdin.txt").read_text() == TRICKY


@pytest.mark.parametrize("checker", CHECKERS)
@pytest.mark.parametrize("answer", [
    '{"category": "billing", "priority": "high", "language": "en"}',  # a required key missing
    '{"category": "billing", "priority": "high", "language": "en", "suggested_response": "Sorr',  # cut short
    '["category", "priority", "language", "suggested_response"]',  # not an object
], ids=["missing-key", "cut-short", "array"])
def test_install_sh_fails_on_an_answer_without_the_schemas_keys(tmp_path: Path, checker: str, answer: str) -> None:
    done = install(tmp_path, unpack(tmp_path), checker, answer=answer)
    assert done.returncode == 2
    assert "FAILED: acme/support-tickets:v1 was created, but its answer is not a JSON object with the keys" \
        in done.stderr and f"(checked with {checker})" in done.stderr


def test_install_sh_fails_clearly_without_a_server_or_a_cli(tmp_path: Path) -> None:
    folder = unpack(tmp_path)
    refused = install(tmp_path, folder, "grep", create_rc=1)
    assert refused.returncode == 1
    assert "FAILED: `ollama create acme/support-tickets:v1 -f Modelfile` failed on 10.1.2.3:11434" in refused.stderr
    assert "run" not in (tmp_path / "calls.log").read_text()  # nothing asked of a model that was not created
    missing = install(tmp_path, folder, "grep", with_ollama=False)
    assert missing.returncode == 127 and "the ollama CLI is not on PATH" in missing.stderr


# -- the CLI ---------------------------------------------------------------------------------------------------

def test_export_cli_checks_the_name_before_exporting(tmp_path: Path) -> None:
    from click.testing import CliRunner
    from lingoforge.cli import cli

    bad = CliRunner().invoke(cli, ["export", str(tmp_path), "--bundle", "--name", "tickets v1"])
    assert bad.exit_code != 0 and "invalid Ollama model name 'tickets v1'" in bad.output
    alone = CliRunner().invoke(cli, ["export", str(tmp_path), "--name", "tickets"])
    assert alone.exit_code != 0 and "--name names the model of --bundle and --hf" in alone.output
    assert list(tmp_path.iterdir()) == []  # nothing was exported


def test_export_cli_bundle_and_hf(tiny_run: Path, tmp_path: Path) -> None:
    pytest.importorskip("llama_cpp")
    from click.testing import CliRunner
    from lingoforge.cli import cli

    run = tmp_path / "run"
    shutil.copytree(tiny_run, run, ignore=shutil.ignore_patterns("export"))
    result = CliRunner().invoke(cli, ["export", str(run), "--quant", "q8_0", "--parity-n", "1", "--bundle", "--hf"])
    assert result.exit_code == 0, result.output
    export = run / "export"
    assert f"wrote {export / 'support-tickets-bundle.tar'}; on the server: tar xf support-tickets-bundle.tar && " \
           "sh support-tickets-bundle/install.sh" in result.output
    assert f"vllm serve {export.resolve() / 'hf'} --served-model-name support-tickets" in result.output
    assert f"--enable-lora --lora-modules support-tickets={export.resolve() / 'adapter'}" in result.output
    manifest = json.loads((export / "export.json").read_text())
    assert manifest["bundle"] == {"file": "support-tickets-bundle.tar", "name": "support-tickets"}
    assert manifest["hf"]["model_dir"] == "hf" and (export / "hf" / "model.safetensors").is_file()
    with tarfile.open(export / "support-tickets-bundle.tar") as tar:
        assert tar.getnames()[-1] == "support-tickets-bundle/model-q8_0.gguf"


# -- a real, fresh Ollama server -------------------------------------------------------------------------------

@pytest.mark.slow
@pytest.mark.ollama
@NEEDS_JQ
def test_bundle_installs_on_a_fresh_server(smollm2_run: Path, smollm2_export: dict,
                                           more_ollama_servers, tmp_path: Path) -> None:
    """SmolLM2 (an instruct model under a small LoRA) answers the schema's keys under --format json; the tiny
    random model cannot, so its install would stop at the check (exit 2), as the stand-in tests show."""
    import ollama

    name = default_name(TASK)
    bundle = write_bundle(smollm2_run / "export", name)
    subprocess.run(["tar", "xf", str(bundle), "-C", str(tmp_path)], check=True)
    server = more_ollama_servers()
    env = {**os.environ, "OLLAMA_HOST": server.env["OLLAMA_HOST"],
           "PATH": f"{server.binary.parent}{os.pathsep}{os.environ['PATH']}"}
    done = subprocess.run(["bash", "install.sh"], cwd=tmp_path / f"{name}-bundle", env=env, capture_output=True,
                          text=True, timeout=600)
    assert done.returncode == 0, done.stdout + done.stderr[-3000:]
    client = ollama.Client(host=server.url)
    shown = client.show(name)
    assert shown.template == smollm2_export["serving"]["template"]
    printed = done.stdout.split("(checked with jq):\n", 1)[1].rsplit("\ninstall.sh: done", 1)[0]
    assert set(REQUIRED) <= set(json.loads(printed))
    # The answer install.sh checked is the model's own: the same greedy request through the API starts like it.
    sample = load_test_examples(RunFolder(smollm2_run), 1)[0].input
    again = client.generate(model=name, prompt=sample, format="json", options={"num_predict": 12}).response
    assert len(again) > 10 and printed.startswith(again)
