"""Create an exported model on an Ollama server and prove it answers like llama.cpp, and as users ask it.

Steps: validate the name (before any upload); once a server answers, ask llama.cpp on the exported GGUF the
test inputs with the training prompt, the model's own answers, which must be the task's JSON (schema-valid and
ended by the model) on at least half of them, else nothing is created (unless ``force``); upload the GGUF
blobs (skipped when the server already has the digest, so an interrupted deploy reruns cheaply), create the
model with the export's TEMPLATE, SYSTEM and PARAMETERs, read it back with ``show``, then ask the test inputs

- with the full training prompt through Ollama: where the model's own answer is the task's JSON, the greedy
  answer must be llama.cpp's (a rambling answer only shows where two engines' near-equal candidates swap, so
  it is not compared); asked with ``format=<schema>``, every answer the model ended must parse;
- the way users do: the bare input through ``/api/generate`` (what ``ollama run NAME "<input>"`` sends)
  and through ``/api/chat`` without ``format``, requiring schema-valid answers that end by themselves at
  least as often as the run's own evaluation measured (``eval/report.json``).

A fleet (:func:`deploy_fleet`) gets the same steps on each server in turn, against llama.cpp answers computed
once; a server that cannot be reached, refuses or fails its checks is reported and the others still get the
model. Servers go one after another: the uploads share this machine's uplink, and llama.cpp's model, which
measures where a server's answers part from the reference, serves one caller at a time.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import shlex
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from .backends import Servers
from .backends.ollama import DEFAULT_HOST, ollama_host
from .errors import LingoforgeError
from .export.modelfile import STOP_TOKENS, ServingConfig
from .export.pipeline import load_test_examples
from .plugins import get_task
from .progress import Advance, Stages, silent
from .prompts import prompt_messages
from .runfolder import MANIFEST, RunFolder
from .schema import parse_output
from .task import Example, Task

# Seconds the client waits for one Ollama request (an upload or a CPU generation of a few hundred tokens).
TIMEOUT_S = 600.0
# Two engines computing one GGUF: a divergence where llama.cpp's top two candidates are closer than this
# share of its logit range is a numerical tie, reported but not a failure. Measured: ~1e-4 on F16 parity;
# 4.4e-3 between Ollama v0.11.10 and llama-cpp-python 0.3.36 on the Q8_0 of the fine-tuned demo SmolLM2 (two
# phrasings of a free-text reply). A wrong template, stop token or sampler puts a candidate far lower.
TIE_MARGIN = 1e-2
# The share of the model's own answers (llama.cpp, training prompt) that must be the task's JSON before anything is
# created: a model whose answers are mostly not the task's JSON has not learned the task, whatever else it shows.
# How often bare inputs must be valid is the run's evaluation's figure, checked once the model is served.
MIN_OWN_VALID = 0.5
_PART = r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,79}"
_NAME = re.compile(rf"^(?:[A-Za-z0-9_][A-Za-z0-9_-]{{0,79}}/)?{_PART}(?::{_PART})?$")


class DeployError(LingoforgeError):
    """The deployment failed or the deployed model does not answer like the exported GGUF."""


class NotTaskJSON(DeployError):
    """The model's own answers are not the task's JSON, so nothing was created (no server can change that)."""


def validate_name(name: str) -> str:
    """Ollama's model-name rules (``[namespace/]model[:tag]``), checked before anything is uploaded."""
    if not _NAME.match(name):
        raise DeployError(f"invalid Ollama model name {name!r}: use [namespace/]model[:tag] with letters, digits, "
                          "'_', '-' and '.' (no leading punctuation, at most 80 characters per part)")
    return name


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
    """An Ollama/HTTP error as one line: the server's message (its first 200 characters: another server may answer
    with a whole HTML page) and status code."""
    status = getattr(exc, "status_code", None)
    message = " ".join(str(getattr(exc, "error", None) or exc).split())
    message = message if len(message) <= 200 else message[:200] + "…"
    return f"{message} (HTTP {status})" if status else message


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


@dataclass(frozen=True)
class OwnAnswer:
    """llama.cpp's greedy answer to one test input on the exported GGUF: the model's own answer, what every
    server must reproduce. ``prompt``: its prompt token ids; ``stopped``: the model ended it (not cut at the
    token limit); ``valid``: it is the task's JSON (schema-valid and stopped); ``why``: why not."""

    text: str
    prompt: list[int]
    stopped: bool
    valid: bool
    why: str | None = None


def own_answer(text: str, prompt: list[int], stopped: bool, schema: Mapping[str, Any], max_tokens: int) -> OwnAnswer:
    """One answer judged as the task's JSON: parsed against ``schema`` and ended by the model itself."""
    parsed = parse_output(text, schema)
    why = parsed.error if not parsed.valid else None if stopped else f"cut at the {max_tokens}-token limit"
    return OwnAnswer(text, prompt, stopped, why is None, why)


def _llama_answers(llm: Any, task: Task, examples: Sequence[Example], max_tokens: int,
                   advance: Advance) -> list[OwnAnswer]:
    """Plain greedy answers of llama.cpp on the very GGUF file Ollama serves (the reference for equality),
    each with its prompt token ids (rendered by the chat template embedded in the GGUF)."""
    answers = []
    for example in examples:
        llm.reset()
        response: Any = llm.create_chat_completion(
            messages=prompt_messages(task, example.input, example.instruction), temperature=0.0, top_k=1,
            repeat_penalty=1.0, max_tokens=max_tokens, stop=list(STOP_TOKENS),
        )
        prompt = [int(t) for t in llm.input_ids[: response["usage"]["prompt_tokens"]]]
        choice = response["choices"][0]
        answers.append(own_answer(choice["message"]["content"] or "", prompt, choice["finish_reason"] == "stop",
                                  task.output_schema, max_tokens))
        advance(1)
    return answers


def own_figures(answers: Sequence[OwnAnswer]) -> dict[str, Any]:
    """How many of the model's own answers are the task's JSON: ``{"n", "valid", "required", "problem"}``, plus
    ``"bad"`` (the first answer that is not: ``{"example", "answer", "why"}``). ``problem`` is the one-line reason
    a deploy stops before creating anything (fewer than ``MIN_OWN_VALID`` of them valid), else ``None``."""
    n, valid = len(answers), sum(a.valid for a in answers)
    figures: dict[str, Any] = {"n": n, "valid": valid, "required": MIN_OWN_VALID, "problem": None}
    bad = next((i for i, a in enumerate(answers) if not a.valid), None)
    if bad is not None:
        figures["bad"] = {"example": bad, "answer": answers[bad].text, "why": answers[bad].why}
    if valid < MIN_OWN_VALID * n:
        answer = answers[bad].text if bad is not None else ""
        shown = answer if len(answer) <= 80 else answer[:80] + "…"
        figures["problem"] = (f"the model does not answer with the task's JSON: {valid} of {n} test inputs got a "
                              "schema-valid answer that the model ended (llama.cpp on the exported GGUF, training "
                              f"prompt), e.g. example {bad} answered {shown!r} ({figures['bad']['why']})")
    return figures


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


def _ollama_answer(client: Any, name: str, content: str, schema: Mapping[str, Any] | None,
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


def exported_task(manifest: dict[str, Any]) -> tuple[Task, RunFolder]:
    """The exported task and its run: the run's own task while the run still records it (a YAML task's copy), else
    the installed task of that name (an export moved away from its run): the one rule ``deploy``, ``--bundle``
    and ``--hf`` share."""
    run_folder = RunFolder(Path(manifest["run_dir"]))
    name = manifest["task"]["name"]
    return (run_folder.task() if run_folder.task_name() == name else get_task(name)), run_folder


@dataclass(frozen=True)
class _Export:
    """An export folder, its manifest and serving config, and the task its answers are checked against."""

    folder: Path
    manifest: dict[str, Any]
    serving: ServingConfig
    run_folder: RunFolder
    task: Task

    @classmethod
    def load(cls, path: str | Path) -> _Export:
        folder, manifest = find_export(path)
        task, run_folder = exported_task(manifest)
        return cls(folder, manifest, ServingConfig.from_dict(manifest["serving"]), run_folder, task)

    def blobs(self) -> list[str]:
        """The files Ollama needs: the GGUF model, then the GGUF LoRA adapter of an ``--adapter-only`` export."""
        adapter = self.manifest.get("adapter_file")
        return [self.manifest["model_file"], *([adapter] if adapter else [])]


class _Reference:
    """llama.cpp's greedy answers to the test inputs on the exported GGUF: the model's own answers, which must be
    the task's JSON before anything is created, and what every server must answer where they are.

    Computed once for the whole fleet, when the first server answers (servers that are all unreachable never
    load the GGUF), and kept loaded until ``close``: where a server's answer parts from the reference,
    :func:`divergence` re-evaluates the prefix with this model.
    """

    def __init__(self, export: _Export, examples: Sequence[Example] | None, n_check: int, max_tokens: int,
                 stages: Stages) -> None:
        self.export, self.max_tokens, self._n_check, self._stages = export, max_tokens, n_check, stages
        self._examples = list(examples) if examples is not None else None
        self._llm: Any = None
        self._answers: list[OwnAnswer] | None = None

    def examples(self) -> list[Example]:
        if self._examples is None:
            self._examples = load_test_examples(self.export.run_folder, self._n_check)
        return self._examples

    def answers(self) -> list[OwnAnswer]:
        """Each example's reference answer (loads the GGUF on first use)."""
        if self._answers is None:
            from llama_cpp import Llama

            export = self.export
            adapter = export.manifest.get("adapter_file")
            self._llm = Llama(model_path=str(export.folder / export.manifest["model_file"]),
                              lora_path=str(export.folder / adapter) if adapter else None,
                              n_ctx=export.serving.num_ctx, n_threads=os.cpu_count(), verbose=False)
            examples = self.examples()
            advance = self._stages("the model's own answers (llama.cpp on the GGUF)", len(examples))
            self._answers = _llama_answers(self._llm, export.task, examples, self.max_tokens, advance)
        return self._answers

    def computed(self) -> bool:
        return self._answers is not None

    def own(self) -> dict[str, Any]:
        """:func:`own_figures` of the answers (computing them on first use)."""
        return own_figures(self.answers())

    def divergence(self, prompt: Sequence[int], reference: str, other: str) -> dict[str, Any]:
        return divergence(self._llm, prompt, reference, other)

    def close(self) -> None:
        if self._llm is not None:
            self._llm.close()


@contextlib.contextmanager
def _talking_to(url: str, action: str) -> Iterator[None]:
    """Errors of the server at ``url`` while it is asked to ``action``, as a ``DeployError`` naming it: in a fleet
    one server's failure must end its deploy only."""
    import httpx
    import ollama
    import pydantic

    try:
        yield
    except ollama.ResponseError as exc:
        raise DeployError(f"the Ollama server at {url} refused to {action}: {_reason(exc)}") from None
    except (ConnectionError, httpx.HTTPError) as exc:  # it went away or stopped answering in time
        raise DeployError(f"lost the Ollama server at {url} while asking it to {action} ({exc})") from None
    except pydantic.ValidationError as exc:  # a reply the client cannot read (another Ollama version, a proxy)
        error = exc.errors()[0]
        raise DeployError(f"the server at {url} answered unlike this Ollama client expects when asked to {action} "
                          f"({error['msg']}: {'.'.join(map(str, error['loc']))})") from None


def deploy(export_dir: str | Path, name: str, host: str | None = None, examples: Sequence[Example] | None = None,
           n_check: int = 5, max_tokens: int | None = None, stages: Stages = silent, force: bool = False
           ) -> dict[str, Any]:
    """Create ``name`` on the Ollama server at ``host`` from an export and check it; returns a summary.

    ``max_tokens`` bounds each answer (default: the Modelfile's ``num_predict``): both engines stop there, so
    an answer cut there is not the task's JSON. Raises ``NotTaskJSON``, having created nothing, when fewer than
    ``MIN_OWN_VALID`` of the model's own answers (llama.cpp on the GGUF) are the task's JSON, unless ``force``.
    Raises ``DeployError`` when the server is unreachable or refuses, the name is invalid, ``show`` disagrees
    with the export, Ollama's greedy answers differ from llama.cpp's where those are the task's JSON, a
    schema-constrained answer the model ended does not parse, or bare inputs get schema-valid answers less often
    than the run's evaluation measured. ``stages`` draws progress (the CLI passes ``rich_stages()``).
    """
    record = deploy_fleet(export_dir, name, [host], examples, n_check, max_tokens, stages, force=force)["hosts"][0]
    if "error" in record:
        raise DeployError(record["error"])
    return record


def deploy_fleet(export_dir: str | Path, name: str, hosts: Sequence[str | None] = (),
                 examples: Sequence[Example] | None = None, n_check: int = 5, max_tokens: int | None = None,
                 stages: Stages = silent, on_host: Callable[[dict[str, Any]], None] | None = None,
                 force: bool = False) -> dict[str, Any]:
    """Create ``name`` on every server in ``hosts`` (none: ``$OLLAMA_HOST`` or the local default) and check
    each one as :func:`deploy` does; returns ``{"name", "own", "hosts", "deployed", "failed"}``.

    Once the first server answers, the model's own answers are asked of llama.cpp (computed once, shared by
    every server): ``own`` holds :func:`own_figures` (``None`` when no server answered). Where they are not
    the task's JSON, ``NotTaskJSON`` is raised before anything is uploaded or created anywhere, unless
    ``force`` (then the model is created, and compared with llama.cpp only where its answers are the task's JSON).

    ``hosts`` holds one record per distinct server, in the order given: :func:`deploy`'s summary where it
    passed, else ``{"host", "error", "created"}`` (``created``: the model is on that server but failed its
    checks, so it may answer wrong there; such records carry ``checks`` and ``bare`` when the answers were
    asked). One server being unreachable, refusing or failing its checks never stops the others. ``on_host``
    is called with each record as soon as its server is done. Raises ``DeployError`` only for what no server
    can change: an invalid name, a missing export, the model's own answers. ``deployed`` and ``failed`` list
    the URLs: a caller treats any failure as a failed rollout (the CLI exits 1), since a server left out keeps
    serving another model, or none.
    """
    validate_name(name)
    export = _Export.load(export_dir)
    urls = list(dict.fromkeys(ollama_host(host) for host in hosts or [None]))  # one deploy per server
    given = [arg for url in urls for arg in ("--host", url)] if any(hosts) else []
    forced = shlex.join(["lingoforge", "deploy", str(export.folder), "--name", name, *given, "--force"])
    advance = stages(f"deploy {name} to {len(urls)} servers", len(urls)) if len(urls) > 1 else silent("", 1)
    records = []
    reference = _Reference(export, examples, n_check, max_tokens or export.serving.num_predict, stages)
    with contextlib.closing(reference):
        for url in urls:
            records.append(_deploy_to(export, reference, name, url, stages, force, forced))
            if on_host is not None:
                on_host(records[-1])
            advance(1)
    return {"name": name, "own": reference.own() if reference.computed() else None, "hosts": records,
            "deployed": [r["host"] for r in records if "error" not in r],
            "failed": [r["host"] for r in records if "error" in r]}


def _deploy_to(export: _Export, reference: _Reference, name: str, url: str, stages: Stages, force: bool,
               forced: str) -> dict[str, Any]:
    """Deploy to one server: its summary, or a record of why it failed and whether the model got there. Raises
    ``NotTaskJSON`` (before creating anything) where the model's own answers are not the task's JSON."""
    created = False
    try:
        advance = stages(f"{url}: connect", 1)
        client = _connect(url)
        advance(1)
        own = reference.own()  # before anything is created or compared: is the model answering the task at all?
        if own["problem"] and not force:
            raise NotTaskJSON(f"{own['problem']}; nothing was created: train longer (more epochs or data), or "
                              f"create it anyway with `{forced}`")
        uploaded: dict[str, bool] = {}
        digests: dict[str, str] = {}
        serving = export.serving
        with _talking_to(url, f"create {name}"):
            advance = stages(f"{url}: upload", len(export.blobs()))
            for label in export.blobs():
                digests[label], uploaded[label] = upload(client, url, export.folder / label)
                advance(1)
            advance = stages(f"{url}: create {name}", 1)
            model, adapter = export.manifest["model_file"], export.manifest.get("adapter_file")
            client.create(model=name, files={model: digests[model]}, adapters={adapter: digests[adapter]} if adapter
                          else None, template=serving.template, system=serving.system or None,
                          parameters=serving.parameters(), stream=False)
            advance(1)
        created = True
        with _talking_to(url, f"serve {name}"):
            _check_show(client, name, serving)
            checks = _check_answers(client, name, export.task, reference, stages, url)
    except NotTaskJSON:
        raise
    except DeployError as exc:
        return {"host": url, "error": str(exc), "created": created}
    bare = _bare_figures(checks, eval_valid_rate(export.run_folder))
    problem = _verdict(name, checks, bare)
    if problem:
        return {"host": url, "error": problem, "created": True, "uploaded": uploaded, "own": own, "checks": checks,
                "bare": bare}
    run_line = f"ollama run {name}" if url == DEFAULT_HOST else f"OLLAMA_HOST={url} ollama run {name}"
    first = reference.examples()[0].input
    return {"name": name, "host": url, "uploaded": uploaded, "own": own, "checks": checks, "bare": bare,
            "run": run_line, "try": f"{run_line} {shlex.quote(first)}",
            "curl": curl_example(url, name, export.task.schema, first)}


def _verdict(name: str, checks: Sequence[dict[str, Any]], bare: dict[str, Any]) -> str | None:
    """Why a created model's answers fail the deploy, or ``None`` when they pass: where its own answers are the
    task's JSON, Ollama's differ from llama.cpp's beyond a numerical tie; a schema-constrained answer that the
    model ended does not parse (the server did not hold it to ``format``); bare inputs are valid less often than
    the run's evaluation measured."""
    compared = [c for c in checks if c["compared"]]
    bad = [c for c in compared if not c["same"] and not c["tie"]]
    if bad:
        where = bad[0]["divergence"]
        return (f"Ollama's answers differ from llama.cpp's on {len(bad)} of the {len(compared)} test inputs that the "
                f"model answers with the task's JSON, e.g. "
                f"example {bad[0]['example']} at character {where['char']}: Ollama {bad[0]['ollama']!r} "
                f"vs llama.cpp {bad[0]['llama_cpp']!r}; there, llama.cpp's logits put its token and Ollama's "
                f"{where['below_top'][0]:.1e} and {where['below_top'][1]:.1e} of the logit range below the "
                f"best, more than a numerical tie ({TIE_MARGIN})")
    # Asked with format=<schema>, a model can end its answer only where the JSON is complete and valid; one cut
    # at the token limit (or by Ollama's repetition cut) proves nothing either way.
    unparsed = [c for c in checks if c["constrained_done"] == "stop" and not c["constrained_valid"]]
    if unparsed:
        return (f"schema-constrained answers (format=<schema>, as applications send it) did not parse on "
                f"{len(unparsed)} of {len(checks)} test inputs although the model ended them, e.g. example "
                f"{unparsed[0]['example']} answered {unparsed[0]['constrained'][:300]!r}: the server does not "
                "hold answers to `format`")
    short = [path for path in ("generate", "chat") if bare["eval"] is not None and bare[path] < bare["eval"]]
    if short:
        failing = next(c for c in checks if not c[f"bare_{short[0]}_valid"])
        return (f"bare test inputs (as `ollama run {name}` sends them) got schema-valid answers on "
                f"{bare['generate']:.0%} through /api/generate and {bare['chat']:.0%} through /api/chat, less than "
                f"the {bare['eval']:.0%} that the run's evaluation measured (eval/report.json); e.g. example "
                f"{failing['example']} answered {failing['bare_' + short[0]][:300]!r}")
    return None


def _check_answers(client: Any, name: str, task: Task, reference: _Reference, stages: Stages,
                   url: str) -> list[dict[str, Any]]:
    """Ask every example through Ollama at ``url`` (full prompt, plain where the model's own answer is the task's
    JSON, and constrained; bare input through /api/generate and /api/chat) and compare the plain answers with
    llama.cpp's reference; one record per example (``compared``: whether ``ollama``, ``same`` and ``tie`` were
    measured, else they are ``None``)."""
    # Equality is checked on plain greedy answers: Ollama's C++ JSON-schema grammar and llama-cpp-python's
    # Python port differ in whitespace rules, so schema-constrained answers of the same weights can differ
    # where the model is unsure. The constrained answer is checked for what it promises: valid JSON. Answers
    # that are not the task's JSON are not compared: a rambling model's flat distributions swap near-equal
    # candidates between engines, and such a failure would hide the real problem (the model did not learn).
    from .prompts import user_text

    max_tokens = reference.max_tokens
    answers = reference.answers()
    advance = stages(f"{url}: check answers", len(answers))
    checks = []
    for i, (example, own) in enumerate(zip(reference.examples(), answers, strict=True)):
        full = user_text(example.instruction or task.instruction, example.input)
        check: dict[str, Any] = {"example": i, "language": example.language, "llama_cpp": own.text,
                                 "own_valid": own.valid, "compared": own.valid, "ollama": None, "same": None,
                                 "tie": None, "finished": None, "full_valid": None}
        if own.valid:
            check.update(_compare_engines(client, name, full, own, reference))
        constrained, constrained_done = _ollama_answer(client, name, full, task.output_schema, max_tokens)
        check.update(constrained=constrained, constrained_done=constrained_done,
                     constrained_valid=parse_output(constrained, task.output_schema).valid)
        for path, (answer, reason) in (("generate", _generated(client, name, example.input, max_tokens)),
                                       ("chat", _ollama_answer(client, name, example.input, None, max_tokens))):
            check[f"bare_{path}"], check[f"bare_{path}_done"] = answer, reason
            # Valid means parsed against the schema and ended by the model itself, not cut by num_predict.
            check[f"bare_{path}_valid"] = reason == "stop" and parse_output(answer, task.output_schema).valid
        checks.append(check)
        advance(1)
    return checks


def _compare_engines(client: Any, name: str, content: str, own: OwnAnswer, reference: _Reference) -> dict[str, Any]:
    """Ollama's plain greedy answer to the full user turn ``content`` beside llama.cpp's (``own``):
    ``{"ollama", "same", "tie", "finished", "full_valid"}``, plus ``divergence`` where they part."""
    free, done = _ollama_answer(client, name, content, None, reference.max_tokens)
    finished = done is not None  # None: Ollama cut a generation that repeated one token, so compare its prefix
    same = free.strip() == own.text.strip() if finished else own.text.startswith(free)
    valid = done == "stop" and parse_output(free, reference.export.task.output_schema).valid
    result: dict[str, Any] = {"ollama": free, "same": same, "tie": False, "finished": finished, "full_valid": valid}
    if not same:
        result["divergence"] = reference.divergence(own.prompt, own.text, free)
        result["tie"] = max(result["divergence"]["below_top"]) <= TIE_MARGIN
    return result


def _bare_figures(checks: Sequence[dict[str, Any]], eval_rate: float | None) -> dict[str, Any]:
    """Schema-valid shares of the bare-input answers, of the full-prompt answers through the same server (asked
    where the model's own answer is the task's JSON; the others count as not valid), and the run's eval figure
    they must reach (``None`` before ``eval``: then they are reported, not required)."""
    n = len(checks)
    return {"n": n, "generate": sum(c["bare_generate_valid"] for c in checks) / n,
            "chat": sum(c["bare_chat_valid"] for c in checks) / n,
            "full_prompt": sum(bool(c["full_valid"]) for c in checks) / n, "eval": eval_rate}


def check_served(export_dir: str | Path, name: str, backend: str = "ollama", servers: Servers | None = None,
                 n_check: int = 5) -> dict[str, Any]:
    """Ask ``name``, already served by some engine, the export's test inputs with the training prompt, on each
    server of ``servers`` in turn; returns ``{"name", "backend", "hosts", "passed", "failed"}``.

    This is ``deploy --check``: nothing is created, so it checks what ``deploy`` cannot reach — the adapter
    served by vLLM, TGI or llama.cpp's server (``backend="openai"``), or a model someone else created on
    Ollama. A server passes when its answers are schema-valid at least as often as the run's evaluation
    measured (before ``eval``: when every answer is). Each host record is ``{"host", "n", "valid", "eval"}``
    plus ``answers``, or ``{"host", "error"}`` when the server could not be asked.
    """
    from .backends import get_backend, resolve_model

    export = _Export.load(export_dir)
    servers = servers or Servers()
    spec = resolve_model(f"ollama:{name}" if backend == "ollama" else str(export.run_folder.root))
    examples = load_test_examples(export.run_folder, n_check)
    conversations = [prompt_messages(export.task, e.input, e.instruction) for e in examples]
    required = eval_valid_rate(export.run_folder)
    records: list[dict[str, Any]] = []
    for host in servers.hosts or (None,):
        one = replace(servers, hosts=(host,) if host else (), model=name if backend == "openai" else servers.model)
        try:
            with get_backend(spec, backend, servers=one) as served:
                answers = [g.text for g in served.generate(conversations, max_new_tokens=export.serving.num_predict)]
                url = served.describe()["hosts"][0]
        except LingoforgeError as exc:
            records.append({"host": host or "(default)", "error": str(exc)})
            continue
        valid = sum(parse_output(a, export.task.output_schema).valid for a in answers) / len(answers)
        record: dict[str, Any] = {"host": url, "n": len(answers), "valid": valid, "eval": required, "answers": answers}
        if valid < (1.0 if required is None else required):
            expected = "100% expected before any eval" if required is None else f"{required:.0%} that eval measured"
            record["error"] = (f"schema-valid answers on {valid:.0%} of {len(answers)} test inputs, less than the "
                               f"{expected}; e.g. {answers[0][:200]!r}")
        records.append(record)
    return {"name": name, "backend": backend, "hosts": records,
            "passed": [r["host"] for r in records if "error" not in r],
            "failed": [r["host"] for r in records if "error" in r]}
