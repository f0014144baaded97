"""``export --bundle``: one tar that installs the exported model on a server without internet or Python.

Offline servers (an air-gapped GPU box, a customer's machine) get the model as a file, not through
``lingoforge deploy``: ``NAME-bundle.tar`` holds the GGUF (and the GGUF adapter of an ``--adapter-only``
export), the very Modelfile the export wrote and parity-checked, a README and ``install.sh``. The script needs
only a POSIX shell and the ``ollama`` CLI (which honours ``$OLLAMA_HOST`` itself): it creates the model, asks it
one of the run's test inputs with ``--format json`` and checks that the answer is a JSON object holding every
key the task's schema requires, parsed with jq or python3 where one is installed, else matched with grep.
"""

from __future__ import annotations

import io
import json
import re
import shlex
import tarfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ..deploy import DEFAULT_HOST, curl_example, exported_task, find_export, validate_name
from ..errors import LingoforgeError
from ..fsutil import atomic_open, write_json
from ..runfolder import MANIFEST, RunFolder
from ..task import Task
from .pipeline import load_test_examples

BUNDLE_SUFFIX = "-bundle.tar"
INSTALL_SCRIPT = "install.sh"
README = "README.md"
MODELFILE = "Modelfile"
# install.sh's exit codes, documented in the bundle's README.
EXIT_FAILED, EXIT_CHECK, EXIT_NO_OLLAMA = 1, 2, 127
_MODEL_LINE = re.compile(r"^(FROM|ADAPTER) \./(\S+)$", re.MULTILINE)
_ERE_SPECIAL = re.compile(r"([.\[\]()*+?{}|^$\\])")


def default_name(task_name: str) -> str:
    """The Ollama name a bundle gets without ``--name``: the task's name with dashes (``support_tickets`` →
    ``support-tickets``), the way Ollama's own model names are spelled."""
    return validate_name(task_name.replace("_", "-"))


def bundle_file_name(name: str) -> str:
    """``NAME-bundle.tar``, with the namespace slash and the tag colon of ``[namespace/]model[:tag]`` as dashes
    (a file name can hold neither portably)."""
    return re.sub(r"[/:]", "-", validate_name(name)) + BUNDLE_SUFFIX


def write_bundle(export_dir: str | Path, name: str) -> Path:
    """Write ``NAME-bundle.tar`` into the export folder and return its path.

    The tar is written to a temp file and renamed into place, so a killed run never leaves a truncated bundle
    that still looks complete. Members sit under one folder (``NAME-bundle/``, no absolute paths) in a fixed
    order with fixed owners and the Modelfile's time, so the same export always gives the same bytes. The export
    manifest records the bundle (``bundle``: file and model name).
    Raises ``LingoforgeError`` when the folder holds no complete export or its Modelfile does not point at the
    export's model files.
    """
    validate_name(name)
    folder, manifest = find_export(export_dir)
    models = [manifest["model_file"], *filter(None, [manifest.get("adapter_file")])]
    modelfile = (folder / MODELFILE).read_text(encoding="utf-8")
    _check_modelfile(modelfile, models, folder)
    task, run_folder = exported_task(manifest)
    sample = sample_input(run_folder, manifest)
    keys = [str(k) for k in task.output_schema.get("required", [])]
    target = folder / bundle_file_name(name)
    top = target.name.removesuffix(".tar")
    mtime = int((folder / MODELFILE).stat().st_mtime)
    texts = {INSTALL_SCRIPT: install_script(name, sample, keys), MODELFILE: modelfile,
             README: readme(name, top, task, manifest, sample, keys)}
    with atomic_open(target, "wb") as fh, tarfile.open(fileobj=fh, mode="w", format=tarfile.PAX_FORMAT) as tar:
        tar.addfile(_member(top, tarfile.DIRTYPE, 0o755, 0, mtime))
        for member, text in texts.items():
            data = text.encode("utf-8")
            mode = 0o755 if member == INSTALL_SCRIPT else 0o644
            tar.addfile(_member(f"{top}/{member}", tarfile.REGTYPE, mode, len(data), mtime), io.BytesIO(data))
        for member in models:
            path = folder / member
            with path.open("rb") as model:
                tar.addfile(_member(f"{top}/{member}", tarfile.REGTYPE, 0o644, path.stat().st_size, mtime), model)
    write_json(folder / MANIFEST, {**manifest, "bundle": {"file": target.name, "name": name}})
    return target


def _check_modelfile(modelfile: str, models: Sequence[str], folder: Path) -> None:
    """The bundled Modelfile is the export's own; its FROM/ADAPTER lines must name exactly the files the bundle
    carries beside it, or ``ollama create`` would fail on the offline server, far from this machine."""
    named = [m.group(2) for m in _MODEL_LINE.finditer(modelfile)]
    if sorted(named) != sorted(models):
        raise LingoforgeError(f"{folder / MODELFILE} names {', '.join(named) or 'no model file'} in its FROM/ADAPTER "
                              f"lines, but export.json names {', '.join(models)}; rerun `lingoforge export`")
    missing = [m for m in models if not (folder / m).is_file()]
    if missing:
        raise LingoforgeError(f"{folder} lacks {', '.join(missing)}, which its Modelfile needs; "
                              "rerun `lingoforge export`")


def sample_input(run_folder: RunFolder, manifest: dict[str, Any]) -> str:
    """The first test input of the examples the export's parity check used (its ``--data`` file when it had one):
    the input the install check and the printed examples ask the model."""
    source = manifest.get("parity", {}).get("source")
    data = source if source and Path(source).is_file() else None
    return load_test_examples(run_folder, 1, data)[0].input


def _member(name: str, kind: bytes, mode: int, size: int, mtime: int) -> tarfile.TarInfo:
    """A tar header with owner and time fixed: the bundle's bytes depend on the export only."""
    info = tarfile.TarInfo(name)
    info.type, info.mode, info.size, info.mtime = kind, mode, size, mtime
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    return info


def _ere_escape(text: str) -> str:
    """``text`` as a literal in a POSIX extended regular expression (``re.escape`` escapes characters that ERE
    leaves undefined when escaped)."""
    return _ERE_SPECIAL.sub(r"\\\1", text)


def install_script(name: str, sample: str, keys: Sequence[str]) -> str:
    """``install.sh``: create ``name`` with the ``ollama`` CLI, ask it ``sample`` and check the answer holds ``keys``.

    Every value baked in is shell-quoted. The sample is piped to ``ollama run``: given as an argument, the CLI
    would prepend whatever it reads from a non-terminal stdin, with a space, to the prompt.
    """
    keys_json = json.dumps(list(keys), ensure_ascii=False)
    jq_filter = f'type == "object" and ({keys_json} - keys | length == 0)'
    python = ("import json, sys; a = json.load(sys.stdin); "
              "sys.exit(0 if isinstance(a, dict) and set(json.loads(sys.argv[1])) <= set(a) else 1)")
    patterns = " ".join(shlex.quote(_ere_escape(json.dumps(k, ensure_ascii=False)) + "[[:space:]]*:") for k in keys)
    key_loop = f"""
    for pattern in {patterns}; do
        printf '%s' "$answer" | grep -Eq "$pattern" || return 1
    done""" if keys else ""
    q = shlex.quote
    return f"""#!/bin/sh
# Install the Ollama model {name} from this bundle, then check that it answers.
# Needs a POSIX shell and the ollama CLI only; like the CLI, it talks to $OLLAMA_HOST (default 127.0.0.1:11434).
# Exit codes: 0 installed and answered, {EXIT_FAILED} create/run failed, {EXIT_CHECK} the answer failed the check, \
{EXIT_NO_OLLAMA} no ollama CLI.
set -u

NAME={q(name)}
SAMPLE={q(sample)}
REQUIRED_KEYS={q(keys_json)}
SERVER="${{OLLAMA_HOST:-127.0.0.1:11434}}"

fail() {{
    code=$1
    shift
    printf 'install.sh: FAILED: %s\\n' "$*" >&2
    exit "$code"
}}

looks_like_answer() {{
    printf '%s' "$answer" | tr -d '\\r\\n' | grep -Eq '^[[:space:]]*[{{].*[}}][[:space:]]*$' || return 1{key_loop}
}}

cd "$(dirname "$0")" || fail {EXIT_FAILED} "cannot enter the bundle folder $(dirname "$0")"
command -v ollama >/dev/null 2>&1 || fail {EXIT_NO_OLLAMA} "the ollama CLI is not on PATH; install Ollama first"

printf 'install.sh: creating %s on %s\\n' "$NAME" "$SERVER"
ollama create "$NAME" -f Modelfile || fail {EXIT_FAILED} "\\`ollama create $NAME -f Modelfile\\` failed on $SERVER \
(is \\`ollama serve\\` running there? Set OLLAMA_HOST=host:port for another server)"

printf 'install.sh: asking %s one test input (ollama run --format json)\\n' "$NAME"
answer=$(printf '%s' "$SAMPLE" | ollama run "$NAME" --format json --nowordwrap) \\
    || fail {EXIT_FAILED} "\\`ollama run $NAME\\` failed on $SERVER"

# A real JSON parse where jq or python3 exists; else the answer must look like one object naming every key.
if command -v jq >/dev/null 2>&1; then
    checker=jq
    printf '%s' "$answer" | jq -e {q(jq_filter)} >/dev/null 2>&1
elif command -v python3 >/dev/null 2>&1; then
    checker=python3
    printf '%s' "$answer" | python3 -c {q(python)} "$REQUIRED_KEYS" >/dev/null 2>&1
else
    checker=grep
    looks_like_answer
fi
ok=$?
[ "$ok" -eq 0 ] || fail {EXIT_CHECK} "$NAME was created, but its answer is not a JSON object with the keys \
$REQUIRED_KEYS (checked with $checker): $answer"

printf 'install.sh: %s answers a JSON object with the keys %s (checked with %s):\\n%s\\n' \\
    "$NAME" "$REQUIRED_KEYS" "$checker" "$answer"
printf 'install.sh: done; try: ollama run %s "<input>"\\n' "$NAME"
"""


def readme(name: str, top: str, task: Task, manifest: dict[str, Any], sample: str, keys: Sequence[str]) -> str:
    """The bundle's README: what is inside, how to install it, what the check proves, how to call the model."""
    parity = manifest["parity"]
    files = [f"- `{MODELFILE}`: the Modelfile `lingoforge export` wrote and checked (TEMPLATE, SYSTEM, PARAMETERs); "
             "its FROM/ADAPTER lines point at the files beside it",
             f"- `{manifest['model_file']}`: the model ({manifest['quant']} GGUF)"]
    if manifest.get("adapter_file"):
        files.append(f"- `{manifest['adapter_file']}`: the LoRA adapter (GGUF) applied on that base")
    files.append(f"- `{INSTALL_SCRIPT}`: creates the model and checks it answers")
    return f"""# {name}

The fine-tuned model for the task `{task.name}` (version {task.version}), exported by `lingoforge export --bundle`
for Ollama. The F16 GGUF reproduced the trained model's greedy tokens on {parity['examples']} test examples
before this bundle was written.

{chr(10).join(files)}

## Install

Needs the `ollama` CLI and a running Ollama server; no internet, no Python.

```sh
tar xf {top}.tar
cd {top}
sh {INSTALL_SCRIPT}                               # the server on this machine
OLLAMA_HOST=10.0.0.5:11434 sh {INSTALL_SCRIPT}    # another server
```

`{INSTALL_SCRIPT}` runs `ollama create {name} -f {MODELFILE}`, then pipes one of the run's test inputs into
`ollama run {name} --format json` and checks that the answer is a JSON object with the keys
{', '.join(f'`{k}`' for k in keys) or '(none required)'} (parsed with jq or python3 when one is installed,
else matched with grep). Exit codes: {EXIT_FAILED} when create or run failed, {EXIT_CHECK} when the answer failed
the check (the model stays created), {EXIT_NO_OLLAMA} without the `ollama` CLI.

## Use

```sh
ollama run {name} {shlex.quote(sample)}
```

From an application (the JSON schema in `format` guarantees a parseable answer):

```sh
{curl_example(DEFAULT_HOST, name, task.schema, sample)}
```
"""

