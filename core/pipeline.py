"""``lingoforge run``: task → deployed model in one command, every stage resumable.

Stages run in order and each writes into the run folder. A stage is skipped when run.json records it
with the same *key* — a hash of its settings and of the key of the stage before it — and its outputs
exist, so an interrupted run continues where it stopped and a changed setting reruns what depends on it:

    data → split → tokens → plan → train → eval → export → deploy

``data`` generates examples (or imports ``--data``) into ``data/source.jsonl``; ``split`` checks and splits
them (``lingoforge data split``); ``tokens`` measures sequence lengths with the base model's tokenizer
(``data/tokens.json``, read by training and export); ``plan`` estimates memory; ``train`` resumes from
its last checkpoint if it was killed; ``eval`` scores the base and the fine-tuned model side by side
per language; ``export`` merges, converts, quantizes and proves GGUF parity; ``deploy`` (with
``--deploy``) creates the model on an Ollama server.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from rich.console import Console

from .checkpoints import complete_checkpoints
from .config import TrainConfig, make_config
from .data.balance import balance_decision, example_labels, primary_field
from .data.io import Located
from .data.mapping import ColumnMap
from .data.split import split_fractions
from .deploy import deploy, validate_name
from .errors import LingoforgeError
from .fsutil import write_json, write_jsonl, write_text
from .models import BaseModel, resolve_base
from .progress import rich_stages
from .runfolder import REPORT, RunFolder, file_sha256
from .task import Example, Task
from .validation import selection_for
from .verdict import rate

WEAK_BASE_POINTS = 0.15  # a base model this far under its own mean in a language knows it poorly
SYNTHETIC = "synthetic.jsonl"  # in data/: --augment's generated examples, added to train.jsonl only
BASE_REFERENCE = "base-constrained"  # in eval/: the base model asked with the schema enforced, the reference
STAGES = ("data", "split", "tokens", "plan", "train", "eval", "export", "deploy")


@dataclass
class Options:
    """Everything ``lingoforge run`` was asked to do; all of it lands in run.json under ``pipeline``."""

    task: Task
    base: str
    out: Path
    data: Path | None = None
    mapping: ColumnMap | None = None  # --map: the data file's own column names
    augment: Mapping[str, int] | str | None = None  # --augment: generated examples per language, or "auto"
    n: int = 400
    seed: int = TrainConfig.seed
    languages: Sequence[str] | None = None
    val: float = TrainConfig.val_fraction
    test: float = 0.1
    train: Mapping[str, Any] = field(default_factory=dict)
    eval_limit: int | None = None
    eval_batch_size: int = 8
    eval_max_new_tokens: int = 256
    quant: str = "q5_k_m"
    parity_n: int = 8
    deploy: bool = False
    name: str | None = None
    host: str | None = None
    force: bool = False


def _key(*parts: Any) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:16]


class Pipeline:
    """Runs the stages of one run folder; ``run()`` returns the summary also written to ``summary.json``."""

    def __init__(self, options: Options, console: Console | None = None) -> None:
        self.o = options
        self.run = RunFolder(options.out)
        self.console = console or Console(stderr=True)
        self.keys: dict[str, str] = {}
        self.augment: dict[str, int] = {}
        # Everything checkable is checked here, before anything is written.
        self.base: BaseModel = resolve_base(options.base)  # resolved once
        self.config = make_config(options.train)
        split_fractions(options.val, options.test)
        unknown = sorted(set(options.languages or ()) - set(options.task.languages))
        if unknown and options.data is None:
            raise LingoforgeError(f"--languages {','.join(unknown)}: task {options.task.name!r} generates "
                                  f"{', '.join(options.task.languages)}")
        self.name = options.name or f"{options.task.name.replace('_', '-')}-{self.run.root.name}".lower()
        if options.deploy:
            validate_name(self.name)

    # -- stage bookkeeping -------------------------------------------------------------------------
    def _stage(
        self, name: str, settings: Any, outputs: Sequence[Path], action: Callable[[], Any], after: str | None
    ) -> Any:
        key = _key(name, settings, self.keys.get(after) if after else None)
        self.keys[name] = key
        recorded = self.run.pipeline().get(name) or {}
        if recorded.get("key") == key and all(p.exists() for p in outputs):
            self.console.print(f"[dim]✓ {name}: up to date, skipped[/dim]")
            return recorded.get("result")
        self.console.rule(f"[bold]{name}")
        started = time.perf_counter()
        result = action()
        seconds = round(time.perf_counter() - started, 1)
        pipeline = self.run.pipeline()
        pipeline[name] = {"key": key, "seconds": seconds, "result": result}
        self.run.update(pipeline=pipeline)
        self.console.print(f"[green]✓ {name}[/green] in {seconds:.1f} s")
        return result

    def _synthetic(self) -> list[Example]:
        """The generated examples ``--augment`` adds per language, marked ``synthetic`` in their meta."""
        examples = []
        for k, (lang, n) in enumerate(sorted(self.augment.items())):
            generated = self.o.task.generate(n, self.o.seed + 1000 + k, [lang])
            examples += [replace(e, meta={**e.meta, "synthetic": True}) for e in generated]
        return examples

    def _resolve_augment(self) -> dict[str, int]:
        """``--augment`` as counts per language, checked before anything is written: ``auto`` takes the lagging
        languages' advice from this folder's last evaluation; the task must generate each language."""
        o = self.o
        if not o.augment:
            return {}
        if o.data is None:
            raise LingoforgeError("--augment tops up your own --data with generated examples; without --data, "
                                  "raise -n instead")
        if o.augment == "auto":
            report = self.run.eval_result()
            if report is None:
                raise LingoforgeError(f"--augment auto follows the advice of an evaluation in {self.run.eval}; run "
                                      "once without --augment, or name counts: --augment es=30")
            counts = {r["language"]: int(r["add_examples"]) for r in report["lagging"] if r.get("add_examples")}
        else:
            counts = dict(o.augment)  # type: ignore[arg-type]
        for lang in counts:
            if lang not in o.task.languages:
                raise LingoforgeError(f"--augment {lang}: task {o.task.name!r} has no generator text for {lang} "
                                      f"(it covers {', '.join(o.task.languages)})")
        if counts:
            o.task.generate(1, o.seed, [next(iter(counts))])  # a task that cannot generate says why, here
        return counts

    def _split(self, name: str, gold: bool = False) -> list[Located]:
        """One split file of the run's data, read and checked by the data reader every command uses."""
        from .data.io import load_examples

        return load_examples(self.run.data / f"{name}.jsonl", self.o.task, gold=gold)

    # -- stages ------------------------------------------------------------------------------------
    def data(self) -> Any:
        source = self.run.data / "source.jsonl"
        o = self.o
        if o.data is not None:
            if not o.data.is_file():
                raise LingoforgeError(f"--data {o.data} does not exist")
            settings: Any = {"file": str(o.data), "sha256": file_sha256(o.data), "task": o.task.name,
                             "map": str(o.mapping) if o.mapping else None, "augment": self.augment}

            def action() -> Any:
                from .data.io import load_examples

                examples = [item.example for item in load_examples(o.data, o.task, mapping=o.mapping)]
                write_jsonl(source, (e.to_record() for e in examples))
                synthetic = self._synthetic()
                write_jsonl(self.run.data / SYNTHETIC, (e.to_record() for e in synthetic))
                return {"imported": str(o.data), "examples": len(examples), "map": settings["map"],
                        "synthetic": dict(Counter(e.language for e in synthetic))}
        else:
            settings = {"task": o.task.name, "version": o.task.version, "n": o.n, "seed": o.seed,
                        "languages": list(o.languages or o.task.languages)}

            def action() -> Any:
                from .generate import generate_file

                stats = generate_file(o.task, o.n, o.seed, o.languages, source)
                return {"generated": o.n, "languages": stats}
        return self._stage("data", settings, [source], action, None)

    def split(self) -> Any:
        o = self.o

        def action() -> Any:
            from .data.split import split_dataset

            report = split_dataset(self.run.data / "source.jsonl", o.task, self.run.data, o.val, o.test, o.seed)
            synthetic = self.run.data / SYNTHETIC
            if synthetic.is_file() and synthetic.stat().st_size:  # generated examples train; they never evaluate
                train = self.run.data / "train.jsonl"
                write_text(train, train.read_text(encoding="utf-8") + synthetic.read_text(encoding="utf-8"))
            return {k: report.get(k) for k in ("counts", "splits", "warnings") if k in report} or None

        outputs = [self.run.data / f"{s}.jsonl" for s in ("train", "val", "test")]
        return self._stage("split", {"val": o.val, "test": o.test, "seed": o.seed}, outputs, action, "data")

    def tokens(self) -> Any:
        o = self.o
        out = self.run.token_report

        def action() -> Any:
            from .tokens import token_report

            examples = [i.example for split in ("train", "val") for i in self._split(split)]
            report = token_report(examples, o.task, self.base.weights())
            write_json(out, report)
            return {"max_seq_length": report["max_seq_length"], "num_ctx": report.get("num_ctx")}

        return self._stage("tokens", {"base": o.base}, [out], action, "split")

    def plan(self) -> Any:
        o = self.o

        def action() -> Any:
            import torch

            from .plan import plan

            cfg = self.config
            cuda = torch.cuda.is_available()
            max_len = cfg.max_len or self.run.max_seq_length()
            selection = selection_for(cfg, o.task, [item.example for item in self._split("val")])
            train = [item.example for item in self._split("train")]
            # an epoch is as long as training will make it: label balance draws rare labels more than once
            balance = balance_decision([e.language for e in train], example_labels(o.task, train), cfg.balance,
                                       primary_field(o.task))
            estimate = plan(self.base, rank=cfg.rank, cuda=cuda, max_len=max_len, batch_size=cfg.batch_size,
                            load_in_4bit=cfg.load_in_4bit, epochs=cfg.epochs, weight_bytes=2 if cuda else 4,
                            examples=balance["examples_per_epoch"], grad_accum=cfg.grad_accum, patience=cfg.patience,
                            select=selection.by, max_steps=cfg.max_steps, eval_steps=cfg.eval_steps or cfg.save_steps,
                            metric=selection.metric)
            if not selection.validates:
                estimate["stopping"] = "no validation examples: every epoch is trained, the adapter is the last one"
            self.console.print(f"stopping: {estimate['stopping']}")
            return {k: v for k, v in estimate.items() if isinstance(v, (int, float, str, type(None)))}

        return self._stage("plan", {"base": o.base, "train": dict(o.train)}, [], action, "tokens")

    def train(self) -> Any:
        o = self.o

        def action() -> Any:
            from .train import train

            resume = bool(complete_checkpoints(self.run.checkpoints))
            if not resume and (self.run.adapter / "adapter_config.json").exists():
                # the settings changed since this adapter was trained: start over in this folder
                import shutil

                shutil.rmtree(self.run.adapter)
            if resume:
                self.console.print("resuming training from the last checkpoint")
            result = train(o.task, self._split("train"), self._split("val"), self.base, self.run.root,
                           self.config, resume=resume, force=o.force)
            return {"steps": result.steps, "train_loss": result.train_loss, "best_eval_loss": result.best_eval_loss,
                    "seconds": round(result.seconds, 1), "tokens_per_second": round(result.tokens_per_second, 1),
                    "history_first_loss": result.history[0].get("loss") if result.history else None,
                    "selection": result.selection.get("text"), "stopped": result.stopped.get("text")}

        return self._stage("train", {"base": o.base, "train": dict(o.train)},
                           [self.run.adapter / "adapter_config.json"], action, "tokens")

    def eval(self) -> Any:
        o = self.o
        tuned_dir, base_dir, reference_dir = self.run.eval, self.run.eval / "base", self.run.eval / BASE_REFERENCE

        def action() -> Any:
            from .evaluate import base_reference, compare_reports, evaluate
            from .report import write_report

            test = [item.example for item in self._split("test", gold=True)]
            options = {"limit": o.eval_limit, "batch_size": o.eval_batch_size, "max_new_tokens": o.eval_max_new_tokens}
            self.console.print("reference: the base model with the schema enforced")
            reference = base_reference(self.run, o.task, test, reference_dir, console=self.console, **options)
            self.console.print("the base model as asked (no schema): does it answer the task's JSON at all?")
            base = evaluate(self.base.weights(), o.task, test, backend="hf", **options)
            write_report(base, base_dir)
            self.console.print("fine-tuned model")
            tuned = evaluate(str(self.run.root), o.task, test, backend="hf", base_reference=reference, **options)
            tuned["comparison"] = compare_reports(reference, tuned)
            write_report(tuned, tuned_dir)
            return {"base": reference["overall"]["primary"], "fine_tuned": tuned["overall"]["primary"],
                    "primary_metric": o.task.primary_metric, "verdict": tuned["verdict"]["lines"]}

        return self._stage("eval", {"limit": o.eval_limit, "max_new_tokens": o.eval_max_new_tokens, "references": 2},
                           [tuned_dir / REPORT, base_dir / REPORT, reference_dir / REPORT], action, "train")

    def export(self) -> Any:
        o = self.o

        def action() -> Any:
            from .export.pipeline import export_run

            # parity compares the answers eval scored, as long as eval let them be
            manifest = export_run(self.run.root, quant=o.quant, parity_n=o.parity_n,
                                  max_new_tokens=o.eval_max_new_tokens)
            return {"model_file": manifest["model_file"], "parity": manifest["parity"]}

        settings = {"quant": o.quant, "parity_n": o.parity_n, "max_new_tokens": o.eval_max_new_tokens}
        return self._stage("export", settings, [self.run.export / "Modelfile"], action, "train")

    def deploy(self) -> Any:
        o = self.o
        if not o.deploy:
            return None

        def action() -> Any:
            with rich_stages() as stages:  # create, the checks and the bare inputs: minutes on a CPU
                return deploy(self.run.export, self.name, o.host, stages=stages)

        return self._stage("deploy", {"name": self.name, "host": o.host}, [], action, "export")

    # -- everything --------------------------------------------------------------------------------
    def run_all(self) -> dict[str, Any]:
        """Run every stage (skipping those up to date) and write ``summary.json``."""
        self.run.claim(self.o.task.name)  # before anything is written: never another task's run, nor foreign files
        self.base.check_reachable()  # a hub id that does not load is told now, not after the data stages
        self.augment = self._resolve_augment()
        self.run.root.mkdir(parents=True, exist_ok=True)
        recorded = self.run.augmented()
        if self.augment and recorded.get("added") != self.augment:  # the scores before: to compare with after
            before = self.run.eval_result()
            self.run.update(augment={"added": self.augment, "before": {
                lang: s["primary"] for lang, s in (before or {}).get("languages", {}).items()}})
        self.run.record_task(self.o.task)  # later stages and commands rebuild the task from the run folder
        started = time.perf_counter()
        for stage in STAGES:
            getattr(self, stage)()
        summary = build_summary(self.run, self.o)
        summary["seconds_this_invocation"] = round(time.perf_counter() - started, 1)
        write_json(self.run.summary, summary)
        return summary


def _size(path: Path) -> int | None:
    return path.stat().st_size if path.is_file() else None


def _all_metrics(report: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Every overall metric of an eval report with its 95% interval, and the share of answers that are valid JSON
    for the schema: ``{name: {"value", "ci"}}``."""
    overall = report["overall"]
    intervals = overall.get("metrics_ci") or {}
    return {"schema_valid_rate": {"value": overall["schema_valid_rate"], "ci": overall.get("schema_valid_ci")},
            **{name: {"value": value, "ci": intervals.get(name)} for name, value in overall["metrics"].items()}}


def weak_base_advice(lagging: Sequence[Mapping[str, Any]], base: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The fine-tuned model's lagging languages, each told when the base model was as far behind in it before any
    training: then the base knows the language poorly, and a larger or more multilingual base may help more than
    more examples."""
    scores = {lang: s["primary"] for lang, s in base["languages"].items()}
    mean = sum(scores.values()) / len(scores) if scores else 0.0
    out = []
    for item in lagging:
        item = dict(item)
        own = scores.get(item["language"])
        if own is not None and len(scores) > 1 and mean - own > WEAK_BASE_POINTS:
            shown = rate({"value": own, "ci": base["languages"][item["language"]].get("primary_ci")})
            item["advice"] += (f"; the base model was {shown} there before training, against {mean:.0%} on "
                               "average: a larger or more multilingual base may help more than more examples")
        out.append(item)
    return out


def _training_lines(run: RunFolder) -> list[str]:
    """What the summary says about training: why it stopped and which checkpoint the adapter is."""
    training = run.training()
    return [said for said in ((training.stopped or {}).get("text"), (training.selection or {}).get("text")) if said]


def build_summary(run: RunFolder, o: Options) -> dict[str, Any]:
    """The final summary, read back from the files in the run folder (so it can only say what is there).

    ``overall`` and ``languages`` set the fine-tuned model beside the base model asked with the schema enforced
    (what a user of the base model gets through Ollama's ``format``), each with its 95% interval; the base model
    asked without the schema only tells whether it writes the task's JSON at all (``base_unconstrained``);
    ``training`` says why training stopped and which checkpoint the adapter is."""
    tuned, base, free = run.eval_result(), run.eval_result(BASE_REFERENCE), run.eval_result("base")
    if tuned is None or base is None or free is None:
        raise LingoforgeError(f"{run.eval} lacks an evaluation report; rerun `lingoforge run` to evaluate")
    manifest = run.export_manifest()
    parity_acc = (manifest.get("parity") or {}).get("accuracy") or {}
    comparison = tuned.get("comparison") or {}
    languages = {}
    for lang in sorted(set(base["languages"]) | set(tuned["languages"])):
        b, t = base["languages"].get(lang) or {}, tuned["languages"].get(lang) or {}
        sample = parity_acc.get(lang) or {}  # parity scores its own few items, in points (0-100)
        gguf = None if sample.get("gguf") is None else {"n": sample["n"], "score": sample["gguf"] / 100}
        delta = ((comparison.get("languages") or {}).get(lang) or {}).get("primary") or {}
        languages[lang] = {"n": t.get("n"), "base": b.get("primary"), "base_ci": b.get("primary_ci"),
                           "fine_tuned": t.get("primary"), "fine_tuned_ci": t.get("primary_ci"),
                           "delta_ci": delta.get("ci"), "gguf_parity_sample": gguf}
    pipeline = run.pipeline()
    files = {p.name: _size(p) for p in sorted(run.export.glob("*.gguf"))}
    deploy = (pipeline.get("deploy") or {}).get("result")
    verdict = tuned.get("verdict") or {}
    return {
        "task": o.task.name,
        "base": o.base,
        "primary_metric": tuned["task"]["primary_metric"],
        "verdict": verdict.get("lines", []),
        "collapses": tuned.get("collapse_lines", []),
        "size_warnings": verdict.get("warnings", []),
        "references": verdict.get("fields", {}),
        "overall": {"base": base["overall"]["primary"], "fine_tuned": tuned["overall"]["primary"]},
        "overall_ci": {"base": base["overall"].get("primary_ci"), "fine_tuned": tuned["overall"].get("primary_ci"),
                       "delta": (comparison.get("overall") or {}).get("primary", {}).get("ci")},
        "base_unconstrained": {"schema_valid_rate": free["overall"]["schema_valid_rate"],
                               "schema_valid_ci": free["overall"].get("schema_valid_ci"),
                               "primary": free["overall"]["primary"]},
        "metrics": {"base": _all_metrics(base), "fine_tuned": _all_metrics(tuned)},
        "languages": languages,
        "lagging": weak_base_advice(tuned.get("lagging", []), base),
        "parity": manifest.get("parity"),
        "files": files,
        "modelfile": str(run.export / "Modelfile") if (run.export / "Modelfile").is_file() else None,
        "report": str(run.eval / "report.html") if (run.eval / "report.html").is_file() else None,
        "ollama_run": deploy.get("run") if deploy else None,
        "deployed": {k: deploy[k] for k in ("name", "host", "bare", "try", "curl")} if deploy else None,
        "stage_seconds": {k: v.get("seconds") for k, v in pipeline.items()},
        "augment": run.augmented() if o.augment else None,
        "training": _training_lines(run),
    }
