"""Create an exported model on an Ollama server and prove it answers like llama.cpp, and as users ask it.

Steps: validate the name (before any upload), upload the GGUF blobs (skipped when the server already
has the digest, so an interrupted deploy reruns cheaply), create the model with the export's TEMPLATE,
SYSTEM and PARAMETERs, read it back with ``show``, then ask a few test inputs

- with the full training prompt, through Ollama and through llama.cpp on the same GGUF, requiring the
  same greedy answers (and, asked with ``format=<schema>``, valid constrained answers);
- the way users do: the bare input through ``/api/generate`` (what ``ollama run NAME "<input>"`` sends)
  and through ``/api/chat`` without ``format``, requiring schema-valid answers that end by themselves at
  least as often as the run's own evaluation measured (``eval/report.json``).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shlex
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .errors import LingoforgeError
from .export.modelfile import STOP_TOKENS, ServingConfig
from .export.pipeline import load_test_examples
from .plugins import get_task
from .progress import track
from .runfolder import MANIFEST, RunFolder
from .schema import parse_output
from .task import Example, Task

DEFAULT_HOST = "http://127.0.0.1:11434"
# Seconds the client waits for one Ollama request (an upload or a CPU generation of a few hundred tokens).
TIMEOUT_S = 600.0
# Two engines computing one GGUF: a divergence where llama.cpp's top two candidates are closer than this
# share of its logit range is a numerical tie, reported but not a failure. Measured: ~1e-4 on F16 parity;
# 4.4e-3 between Ollama v0.11.10 and llama-cpp-python 0.3.36 on the Q8_0 of the fine-tuned demo SmolLM2 (two
# phrasings of a free-text reply). A wrong template, stop token or sampler puts a candidate far lower.
TIE_MARGIN = 1e-2
_PART = r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,79}"
_NAME = re.compile(rf"^(?:[A-Za-z0-9_][A-Za-z0-9_-]{{0,79}}/)?{_PART}(?::{_PART})?$")


class DeployError(LingoforgeError):
    """The deployment failed or the deployed model does not answer like the exported GGUF."""


def validate_name(name: str) -> str:
    """Ollama's model-name rules (``[namespace/]model[:tag]``), checked before anything is uploaded."""
    if not _NAME.match(name):
        raise DeployError(f"invalid Ollama model name {name!r}: use [namespace/]model[:tag] with letters, digits, "
                          "'_', '-' and '.' (no leading punctuation, at most 80 characters per part)")
    return name


def normalize_host(host: str | None) -> str:
    """``--host``, else ``$OLLAMA_HOST``, else the local default, as a full URL."""
    value = (host or os.environ.get("OLLAMA_HOST") or DEFAULT_HOST).strip().rstrip("/")
    if "://" not in value:
        value = f"http://{value}"
    scheme, rest = value.split("://", 1)
    if ":" not in rest.split("/", 1)[0]:
        rest = rest.replace("/", ":11434/", 1) if "/" in rest else f"{rest}:11434"
    return f"{scheme}://{rest}"


def find_export(path: str | Path) -> tuple[Path, dict[str, Any]]:
    """An export folder (or a run folder holding ``export/``) and its manifest."""
    root = Path(path)
    for candidate in (root, root / "export"):
        if (candidate / MANIFEST).is_file():
            return candidate, json.loads((candidate / MANIFEST).read_text(encoding="utf-8"))
    raise DeployError(f"no {MANIFEST} in {root} or {root / 'export'}; run `lingoforge export` first "
                      "(a manifest is written only after parity passed)")


def _digest(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return f"sha256:{h.hexdigest()}"


def upload(client: Any, host: str, path: Path) -> tuple[str, bool]:
    """Upload one blob unless the server already has it; returns (digest, uploaded)."""
    import httpx

    digest = _digest(path)
    if httpx.head(f"{host}/api/blobs/{digest}", timeout=30).status_code == 200:
        return digest, False
    return client.create_blob(path), True


def _connect(host: str) -> Any:
    """A client for ``host`` after one cheap request proving an Ollama server answers there."""
    import httpx
    import ollama

    try:
        client = ollama.Client(host=host, timeout=TIMEOUT_S)
        client.list()
    except (ollama.ResponseError, json.JSONDecodeError, TypeError) as exc:  # an HTTP error, a page, other JSON
        raise DeployError(f"{host} does not answer like an Ollama server ({_reason(exc)}); check --host") from None
    except (ConnectionError, httpx.HTTPError, ValueError) as exc:  # refused, timed out, port out of range
        raise DeployError(f"cannot reach the Ollama server at {host} ({exc}): start it (`ollama serve`) "
                          "or pass --host") from None
    return client


def _reason(exc: BaseException) -> str:
    """An Ollama/HTTP error as one line: the server's message and status code."""
    status = getattr(exc, "status_code", None)
    message = getattr(exc, "error", None) or str(exc)
    return f"{message} (HTTP {status})" if status else str(message)


def _check_show(client: Any, name: str, serving: ServingConfig) -> None:
    shown = client.show(name)
    problems = []
    if (shown.template or "") != serving.template:
        problems.append("TEMPLATE differs")
    modelfile = shown.modelfile or ""
    if serving.system and serving.system not in modelfile:
        problems.append("SYSTEM missing")
    problems += [f"stop {s!r} missing" for s in serving.stop if s not in (shown.parameters or "")]
    if problems:
        raise DeployError(f"the model {name} on the server does not match the export: {', '.join(problems)}")


def _llama_answers(llm: Any, task: Task, examples: Sequence[Example], max_tokens: int) -> list[tuple[str, list[int]]]:
    """Plain greedy answers of llama.cpp on the very GGUF file Ollama serves (the reference for equality),
    each with its prompt token ids (rendered by the chat template embedded in the GGUF)."""
    from .prompts import prompt_messages

    answers = []
    for example in examples:
        llm.reset()
        response: Any = llm.create_chat_completion(
            messages=prompt_messages(task, example.input, example.instruction), temperature=0.0, top_k=1,
            repeat_penalty=1.0, max_tokens=max_tokens, stop=list(STOP_TOKENS),
        )
        prompt = [int(t) for t in llm.input_ids[: response["usage"]["prompt_tokens"]]]
        answers.append((response["choices"][0]["message"]["content"] or "", prompt))
    return answers


def divergence(llm: Any, prompt: Sequence[int], reference: str, other: str) -> dict[str, Any]:
    """Where ``other`` leaves llama.cpp's greedy ``reference``: the token, both candidates and llama.cpp's
    logit margin between them there, relative to its logit range.

    Ollama computes the same GGUF with its own ggml kernels, so near-equal candidates can swap (a margin
    of ~1e-4 of the range on an undertrained model; this re-evaluation of the prefix in one batch may even
    order them the other way). ``below_top`` says how far each candidate is from llama.cpp's best logit
    here: both near zero is a numerical tie; a wrong template, stop token or sampler setting shows as a
    candidate far below the top.
    """
    import llama_cpp
    import numpy as np

    at = 0
    while at < min(len(reference), len(other)) and reference[at] == other[at]:
        at += 1
    ids = list(llm.tokenize(reference.encode("utf-8"), add_bos=False, special=False))
    done, k = b"", 0
    target = reference[:at].encode("utf-8")
    while k < len(ids) and target.startswith(piece := done + llm.detokenize([ids[k]])):
        done, k = piece, k + 1
    stop = llm.token_eos()
    rest_ref, rest_other = reference.encode("utf-8")[len(done):], other.encode("utf-8")[len(done):]
    ref_next = ids[k] if rest_ref else stop
    other_ids = llm.tokenize(rest_other, add_bos=False, special=False) if rest_other else [stop]
    llm.reset()
    llm.eval(list(prompt) + ids[:k])
    logits = np.ctypeslib.as_array(llama_cpp.llama_get_logits_ith(llm.ctx, -1), shape=(llm.n_vocab(),)).copy()
    span = float(logits.max() - logits.min()) or 1.0
    return {"char": at, "token": k,
            "llama_cpp_next": llm.detokenize([ref_next]).decode("utf-8", "replace"),
            "ollama_next": llm.detokenize([other_ids[0]]).decode("utf-8", "replace"),
            "relative_margin": float(logits[ref_next] - logits[other_ids[0]]) / span,
            "below_top": [float(logits.max() - logits[t]) / span for t in (ref_next, other_ids[0])]}


def _ollama_answer(client: Any, name: str, content: str, schema: dict[str, Any] | None,
                   max_tokens: int) -> tuple[str, str | None]:
    """Ollama's greedy chat answer to one user message, and its ``done_reason``: "stop" when the model
    ended it, "length" when ``num_predict`` cut it, ``None`` when Ollama cut a generation that repeated
    one token 30 times (untrained models do that)."""
    response = client.chat(model=name, messages=[{"role": "user", "content": content}], format=schema,
                           options={"temperature": 0, "num_predict": max_tokens})
    return response.message.content or "", response.done_reason


def _generated(client: Any, name: str, prompt: str, max_tokens: int) -> tuple[str, str | None]:
    """What ``ollama run NAME "<prompt>"`` gets: ``/api/generate`` with the model's TEMPLATE and SYSTEM."""
    response = client.generate(model=name, prompt=prompt, options={"temperature": 0, "num_predict": max_tokens})
    return response.response or "", response.done_reason


def eval_valid_rate(run_folder: RunFolder) -> float | None:
    """The share of schema-valid answers the run's own evaluation measured (``None`` before ``eval``)."""
    report = run_folder.eval_result()
    return None if report is None else float(report["overall"]["schema_valid_rate"])


def curl_example(url: str, name: str, schema: dict[str, Any], text: str) -> str:
    """A shell line for applications: ``/api/chat`` with the bare input and ``format`` set to the schema."""
    body = json.dumps({"model": name, "messages": [{"role": "user", "content": text}], "format": schema,
                       "stream": False, "options": {"temperature": 0}}, ensure_ascii=False, separators=(",", ":"))
    return f"curl -s {url}/api/chat -d '" + body.replace("'", "'\\''") + "'"


def deploy(export_dir: str | Path, name: str, host: str | None = None, examples: Sequence[Example] | None = None,
           n_check: int = 5, max_tokens: int | None = None) -> dict[str, Any]:
    """Create ``name`` on the Ollama server at ``host`` from an export and check it; returns a summary.

    ``max_tokens`` bounds each compared answer (default: the Modelfile's ``num_predict``): both engines stop
    there, so a model that never stops is compared on its first ``max_tokens`` tokens. Raises ``DeployError``
    when the server is unreachable or refuses, the name is invalid, ``show`` disagrees with the export,
    Ollama's greedy answers differ from llama.cpp's on the same GGUF, or bare inputs get schema-valid answers
    less often than the run's evaluation measured.
    """
    import ollama

    validate_name(name)
    url = normalize_host(host)
    folder, manifest = find_export(export_dir)
    serving = ServingConfig.from_dict(manifest["serving"])
    max_tokens = max_tokens or serving.num_predict
    run_folder = RunFolder(Path(manifest["run_dir"]))
    name_in_manifest = manifest["task"]["name"]  # an export moved away from its run deploys with the installed task
    task = run_folder.task() if run_folder.task_name() == name_in_manifest else get_task(name_in_manifest)
    client = _connect(url)

    adapter = manifest.get("adapter_file")
    uploaded: dict[str, bool] = {}
    digests: dict[str, str] = {}
    try:
        for label in track([manifest["model_file"], *([adapter] if adapter else [])], "upload blobs"):
            digests[label], uploaded[label] = upload(client, url, folder / label)
        client.create(model=name, files={manifest["model_file"]: digests[manifest["model_file"]]},
                      adapters={adapter: digests[adapter]} if adapter else None, template=serving.template,
                      system=serving.system or None, parameters=serving.parameters(), stream=False)
    except ollama.ResponseError as exc:
        raise DeployError(f"the Ollama server at {url} refused to create {name}: {_reason(exc)}") from None
    _check_show(client, name, serving)

    chosen = list(examples) if examples is not None else load_test_examples(run_folder, n_check)
    checks = _check_answers(client, name, folder, manifest, serving, task, chosen, max_tokens)
    bad = [c for c in checks if not c["same"] and not c["tie"]]
    if bad:
        where = bad[0]["divergence"]
        raise DeployError(f"Ollama's answers differ from llama.cpp's on {len(bad)} of {len(checks)} test inputs, e.g. "
                          f"example {bad[0]['example']} at character {where['char']}: Ollama {bad[0]['ollama']!r} "
                          f"vs llama.cpp {bad[0]['llama_cpp']!r}; there, llama.cpp's logits put its token and Ollama's "
                          f"{where['below_top'][0]:.1e} and {where['below_top'][1]:.1e} of the logit range below the "
                          f"best, more than a numerical tie ({TIE_MARGIN})")
    bare = _bare_figures(checks, eval_valid_rate(run_folder))
    short = [path for path in ("generate", "chat") if bare["eval"] is not None and bare[path] < bare["eval"]]
    if short:
        failing = next(c for c in checks if not c[f"bare_{short[0]}_valid"])
        raise DeployError(
            f"bare test inputs (as `ollama run {name}` sends them) got schema-valid answers on "
            f"{bare['generate']:.0%} through /api/generate and {bare['chat']:.0%} through /api/chat, less than the "
            f"{bare['eval']:.0%} that the run's evaluation measured (eval/report.json); e.g. example "
            f"{failing['example']} answered "
            f"{failing['bare_' + short[0]][:300]!r}")
    run_line = f"ollama run {name}" if url == DEFAULT_HOST else f"OLLAMA_HOST={url} ollama run {name}"
    return {"name": name, "host": url, "uploaded": uploaded, "checks": checks, "bare": bare, "run": run_line,
            "try": f"{run_line} {shlex.quote(chosen[0].input)}",
            "curl": curl_example(url, name, task.schema, chosen[0].input)}


def _check_answers(client: Any, name: str, folder: Path, manifest: dict[str, Any], serving: ServingConfig,
                   task: Task, chosen: Sequence[Example], max_tokens: int) -> list[dict[str, Any]]:
    """Ask every example through Ollama (full prompt, plain and constrained; bare input through
    /api/generate and /api/chat) and llama.cpp (full prompt) on the same GGUF; one record per example."""
    # Equality is checked on plain greedy answers: Ollama's C++ JSON-schema grammar and llama-cpp-python's
    # Python port differ in whitespace rules, so schema-constrained answers of the same weights can differ
    # where the model is unsure. The constrained answer is checked for what it promises: valid JSON.
    from llama_cpp import Llama

    from .prompts import user_text

    llm = Llama(model_path=str(folder / manifest["model_file"]), n_ctx=serving.num_ctx, n_threads=os.cpu_count(),
                verbose=False, **({"lora_path": str(folder / manifest["adapter_file"])}
                                  if manifest.get("adapter_file") else {}))
    references = _llama_answers(llm, task, chosen, max_tokens)
    checks = []
    for i, (example, (reference, prompt)) in enumerate(zip(chosen, references, strict=True)):
        full = user_text(example.instruction or task.instruction, example.input)
        free, done = _ollama_answer(client, name, full, None, max_tokens)
        constrained, _ = _ollama_answer(client, name, full, task.output_schema, max_tokens)
        finished = done is not None
        same = free.strip() == reference.strip() if finished else reference.startswith(free)
        check: dict[str, Any] = {"example": i, "language": example.language, "ollama": free, "llama_cpp": reference,
                                 "same": same, "finished": finished, "constrained": constrained,
                                 "constrained_valid": parse_output(constrained, task.output_schema).valid,
                                 "full_valid": done == "stop" and parse_output(free, task.output_schema).valid}
        for path, (answer, reason) in (("generate", _generated(client, name, example.input, max_tokens)),
                                       ("chat", _ollama_answer(client, name, example.input, None, max_tokens))):
            check[f"bare_{path}"], check[f"bare_{path}_done"] = answer, reason
            # Valid means parsed against the schema and ended by the model itself, not cut by num_predict.
            check[f"bare_{path}_valid"] = reason == "stop" and parse_output(answer, task.output_schema).valid
        if not same:
            check["divergence"] = divergence(llm, prompt, reference, free)
            check["tie"] = max(check["divergence"]["below_top"]) <= TIE_MARGIN
        checks.append(check)
    llm.close()
    return checks


def _bare_figures(checks: Sequence[dict[str, Any]], eval_rate: float | None) -> dict[str, Any]:
    """Schema-valid shares of the bare-input answers, of the full-prompt answers through the same server, and
    the run's eval figure they must reach (``None`` before ``eval``: then they are reported, not required)."""
    n = len(checks)
    return {"n": n, "generate": sum(c["bare_generate_valid"] for c in checks) / n,
            "chat": sum(c["bare_chat_valid"] for c in checks) / n,
            "full_prompt": sum(c["full_valid"] for c in checks) / n, "eval": eval_rate}
