"""Write an evaluation report: report.json, predictions.jsonl (+ its settings sidecar), charts/*.png and a
self-contained report.html.

The HTML embeds its charts as base64 PNGs and its CSS inline, so it can be mailed or attached to a
ticket as one file. Charts are drawn with matplotlib's Agg canvas directly (no pyplot global state, no
display needed). ``render_table`` is the rich summary the CLI prints.
"""

from __future__ import annotations

import base64
import html
import io
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from rich.table import Table

from .fsutil import atomic_open, write_json, write_jsonl
from .predlog import prediction_line, settings_path
from .references import SHORT
from .verdict import difference, rate, title


def pct(value: float | None) -> str:
    return "-" if value is None else f"{value:.1%}"


def signed(value: float | None) -> str:
    return "-" if value is None else f"{value * 100:+.1f} pts"


def pct_ci(value: float | None, ci: Any) -> str:
    """A rate and its 95% interval: ``38.0% [18–61%]``."""
    if value is None:
        return "-"
    return pct(value) + (f" [{ci[0]:.0%}–{ci[1]:.0%}]" if ci else "")


def delta_ci(block: Mapping[str, Any]) -> str:
    """A difference and its paired interval: ``+12.0 pts [−3, +27]``."""
    if block.get("delta") is None:
        return "-"
    ci = block.get("ci")
    return signed(block["delta"]) + (f" [{ci[0] * 100:+.0f}, {ci[1] * 100:+.0f}]" if ci else "")


def slug(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_-]+", "-", name).strip("-") or "field"


# --------------------------------------------------------------------------- charts


def _figure(width: float, height: float) -> Any:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=100)
    FigureCanvasAgg(fig)
    return fig


def _png(fig: Any) -> bytes:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", bbox_inches="tight")
    return buffer.getvalue()


def language_chart(report: Mapping[str, Any]) -> bytes:
    """Bars of the primary metric per language (both models of a comparison side by side), the mean as a line."""
    langs = list(report["languages"])
    series = [(report["model"]["spec"], [report["languages"][lang]["primary"] for lang in langs])]
    comparison = report.get("comparison")
    if comparison:
        series = [
            (comparison[side]["spec"], [(comparison["languages"][lang]["primary"][side] or 0.0) for lang in langs])
            for side in ("a", "b")
        ]
    fig = _figure(max(4.0, 0.9 * len(langs) + 2), 3.6)
    ax = fig.add_subplot()
    width = 0.8 / len(series)
    for i, (name, values) in enumerate(series):
        xs = [x + (i - (len(series) - 1) / 2) * width for x in range(len(langs))]
        bars = ax.bar(xs, [v * 100 for v in values], width, label=name[-40:])
        ax.bar_label(bars, fmt="%.0f", fontsize=8)
    if report.get("primary_mean") is not None:
        ax.axhline(report["primary_mean"] * 100, color="black", linestyle="--", linewidth=1, label="mean")
    ax.set_xticks(range(len(langs)), langs)
    ax.set_ylim(0, 105)
    ax.set_ylabel(f"{report['task']['primary_metric']} (%)")
    ax.set_title("Primary metric per language")
    ax.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.1), ncol=len(series) + 1, frameon=False)
    return _png(fig)


def references_chart(report: Mapping[str, Any], field: str) -> bytes:
    """The model and each reference per language on one labelled field, bars with their 95% intervals."""
    result = report["verdict"]["fields"][field]
    slices = [*result["languages"].items(), ("all", result["overall"])]
    names = ["model", *result["overall"]["references"]]
    fig = _figure(max(4.5, 0.5 * len(slices) * len(names) + 2), 3.8)
    ax = fig.add_subplot()
    width = 0.8 / len(names)
    for i, name in enumerate(names):
        blocks = [s["model"] if name == "model" else s["references"][name] for _, s in slices]
        values = [(b["value"] or 0.0) * 100 for b in blocks]
        errors = [[max(0.0, v - b["ci"][0] * 100) for v, b in zip(values, blocks, strict=True)],
                  [max(0.0, b["ci"][1] * 100 - v) for v, b in zip(values, blocks, strict=True)]]
        xs = [x + (i - (len(names) - 1) / 2) * width for x in range(len(slices))]
        ax.bar(xs, values, width, yerr=errors, capsize=2, label="fine-tuned model" if name == "model" else title(name),
               color=None if name != "model" else "#1f5fa8", alpha=1.0 if name == "model" else 0.75)
    ax.set_xticks(range(len(slices)), [lang for lang, _ in slices])
    ax.set_ylim(0, 105)
    ax.set_ylabel(f"{field} accuracy (%)")
    ax.set_title(f"{field}: model vs references, 95% intervals")
    ax.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.1), ncol=len(names), frameon=False)
    return _png(fig)


def confusion_chart(field: str, confusion: Mapping[str, Any]) -> bytes:
    """Heatmap of a label field's confusion matrix (rows: gold, columns: predicted), counts annotated."""
    rows, cols, matrix = confusion["labels"], confusion["predicted"], confusion["matrix"]
    fig = _figure(max(3.5, 0.55 * len(cols) + 2), max(3.0, 0.45 * len(rows) + 1.5))
    ax = fig.add_subplot()
    image = ax.imshow(matrix or [[0]], cmap="Blues", aspect="auto")
    fig.colorbar(image, ax=ax, fraction=0.046)
    ax.set_xticks(range(len(cols)), cols, rotation=45, ha="right", fontsize=8)
    ax.set_yticks(range(len(rows)), rows, fontsize=8)
    peak = max((v for row in matrix for v in row), default=0)
    for r, row in enumerate(matrix):
        for c, value in enumerate(row):
            if value:
                ax.text(
                    c,
                    r,
                    str(value),
                    ha="center",
                    va="center",
                    fontsize=7,
                    color="white" if value > peak / 2 else "black",
                )
    ax.set_xlabel("predicted")
    ax.set_ylabel("gold")
    ax.set_title(f"Confusion: {field}")
    return _png(fig)


def training_chart(training: Mapping[str, Any]) -> bytes:
    """How validation moved while the run trained (run.json's ``train.curve``): the primary metric of the generated
    answers per language against the step, beside the validation loss per language; the adapter's step dashed."""
    curve, steps = training["curve"], training["curve"]["steps"]
    panels = [("primary", f"{curve['metric']} (%)", f"Generated answers: {curve['metric']}", 100.0)
              ] if curve.get("primary") else []
    panels.append(("loss", "validation loss", "Validation loss", 1.0))
    fig = _figure(5.0 * len(panels), 3.6)
    fig.set_layout_engine("constrained")
    best = (training.get("selection") or {}).get("best_step")
    for i, (key, label, heading, scale) in enumerate(panels, 1):
        ax = fig.add_subplot(1, len(panels), i)
        for name, values in curve[key].items():
            points = [(s, v * scale) for s, v in zip(steps, values, strict=True) if v is not None]
            style = {"color": "black", "linewidth": 2.2} if name == "all" else {"linewidth": 1.2, "alpha": 0.85}
            ax.plot([s for s, _ in points], [v for _, v in points], marker="o", markersize=3, label=name, **style)
        if best is not None:
            ax.axvline(best, color="grey", linestyle="--", linewidth=1, label=f"adapter (step {best})")
        ax.set_xlabel("step")
        ax.set_ylabel(label)
        if key == "primary":
            ax.set_ylim(0, 105)
        ax.set_title(f"{heading} by step")
        ax.legend(fontsize=7, frameon=False)
    return _png(fig)


def charts(report: Mapping[str, Any]) -> dict[str, bytes]:
    """Every chart of the report, by file name."""
    out = {f"references-{slug(field)}.png": references_chart(report, field)
           for field, result in report.get("verdict", {}).get("fields", {}).items() if result["overall"]["references"]}
    out["languages.png"] = language_chart(report)
    if report.get("training"):
        out["training.png"] = training_chart(report["training"])
    for field, stats in report["overall"]["fields"].items():
        out[f"confusion-{slug(field)}.png"] = confusion_chart(field, stats["confusion"])
    return out


# --------------------------------------------------------------------------- advice


def advice_by_model(report: Mapping[str, Any]) -> list[tuple[str, Mapping[str, Any], list[Mapping[str, Any]]]]:
    """(role, model block, lagging languages) for each model of the report: ``first`` (MODEL) and, with
    ``--compare``, ``second``. The second comes first when only it is fine-tuned: its advice is the one to act on."""
    sections: list[tuple[str, Mapping[str, Any], list[Mapping[str, Any]]]] = [
        ("first", report["model"], list(report["lagging"]))
    ]
    compared = report.get("compared")
    if compared:
        second = ("second", compared["model"], list(compared["lagging"]))
        tuned_second = compared["model"].get("fine_tuned") and not report["model"].get("fine_tuned")
        sections = [second, *sections] if tuned_second else [*sections, second]
    return sections


def model_title(role: str, model: Mapping[str, Any]) -> str:
    """How the advice names a model of a comparison: ``second model tuned (fine-tuned)``."""
    return f"{role} model {model['spec']}{' (fine-tuned)' if model.get('fine_tuned') else ''}"


# --------------------------------------------------------------------------- rich table


def render_table(report: Mapping[str, Any]) -> Table:
    """Per-language summary: primary metric, validity, per-field accuracy/F1 and, with --compare, deltas."""
    comparison = report.get("comparison")
    table = Table(title=f"{report['task']['name']} · {report['model']['spec']} ({report['model']['backend']})")
    table.add_column("language")
    table.add_column("n", justify="right")
    table.add_column(report["task"]["primary_metric"], justify="right")
    if comparison:  # whichever side this report is, show both models and delta = second - first
        table.add_column(f"first: {comparison['a']['spec'][-24:]}", justify="right")
        table.add_column(f"second: {comparison['b']['spec'][-24:]}", justify="right")
        table.add_column("delta", justify="right")
    table.add_column("schema valid", justify="right")
    table.add_column("parse fail", justify="right")
    for field in report["task"]["fields"]:
        table.add_column(f"{field} acc / F1", justify="right")
    lagging = {r["language"] for r in report["lagging"]}
    slices = [*report["languages"].items(), ("all", report["overall"])]
    for lang, s in slices:
        name = f"[red]{lang}[/red]" if lang in lagging else lang
        row = [name, str(s["n"]), pct_ci(s["primary"], s.get("primary_ci"))]
        if comparison:
            d = comparison["overall" if lang == "all" else "languages"]
            d = d if lang == "all" else d[lang]
            p = d["primary"]
            row += [pct_ci(p["a"], p.get("a_ci")), pct_ci(p["b"], p.get("b_ci")), delta_ci(p)]
        row += [pct_ci(s["schema_valid_rate"], s.get("schema_valid_ci")), pct(s["parse_failure_rate"])]
        row += [f"{pct_ci(f['accuracy'], f.get('accuracy_ci'))} / {f['macro_f1']:.2f}" for f in s["fields"].values()]
        table.add_row(*row, end_section=lang == list(report["languages"])[-1])
    return table


def reference_rows(result: Mapping[str, Any]) -> tuple[list[str], list[list[str]]]:
    """(header, rows) of one field's model-vs-references table: each slice, the model and every reference with
    their intervals, the difference from the reference the verdict names, and the outcome."""
    names = list(result["overall"]["references"])
    head = ["language", "n", "fine-tuned", *[SHORT.get(n, n) for n in names], "Δ vs named", "verdict"]
    rows = []
    for lang, s in [*result["languages"].items(), ("all", result["overall"])]:
        against = s.get("against")
        named = SHORT.get(against or "", against or "")
        said = {"beats": "beats all", "worse": f"worse than {named}", "no_better": f"no better than {named}",
                None: "-"}[s.get("outcome")]
        rows.append([lang, str(s["n"]), rate(s["model"]), *[rate(s["references"][n]) for n in names],
                     difference(s["versus"][against]) if against else "-", said])
    return head, rows


def render_references(report: Mapping[str, Any]) -> list[Table]:
    """One rich table per labelled field with references: the model beside them, per language, with intervals."""
    tables = []
    for field, result in report.get("verdict", {}).get("fields", {}).items():
        if not result["overall"]["references"]:
            continue
        head, rows = reference_rows(result)
        table = Table(title=f"{field}: the fine-tuned model beside what a user would use instead (95% intervals)")
        for i, name in enumerate(head):
            table.add_column(name, justify="left" if i in (0, len(head) - 1) else "right")
        for row in rows:
            table.add_row(*row, end_section=row[0] == list(result["languages"])[-1])
        tables.append(table)
    return tables


def headline(report: Mapping[str, Any]) -> list[tuple[str, str]]:
    """(style, line) of what a summary says first: the verdict per field, the collapses, what is too small to
    tell. ``style`` is ``verdict``, ``collapse`` or ``warning``."""
    verdict = report.get("verdict") or {}
    out = [("verdict", line) for line in verdict.get("lines", [])]
    out += [("collapse", line) for line in report.get("collapse_lines", [])]
    out += [("warning", line) for line in verdict.get("warnings", [])]
    return out


# --------------------------------------------------------------------------- HTML

_CSS = """body{font-family:system-ui,sans-serif;margin:2rem;color:#222;max-width:1100px}
table{border-collapse:collapse;margin:1rem 0}td,th{border:1px solid #ccc;padding:.3rem .6rem;text-align:right}
th{background:#f3f3f3}td:first-child,th:first-child{text-align:left}
.lag{color:#b00020;font-weight:bold}.warn{color:#8a5a00}.verdict{font-weight:bold}.pos{color:#11772d}.neg{color:#b00020}
img{max-width:100%;border:1px solid #eee;margin:.5rem 0}code{background:#f5f5f5}"""


def _table(head: list[str], rows: list[list[str]]) -> str:
    h = "".join(f"<th>{html.escape(c)}</th>" for c in head)
    body = "".join("<tr>" + "".join(f"<td>{c}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table><tr>{h}</tr>{body}</table>"


def _delta_cell(block: Mapping[str, Any]) -> str:
    value = block.get("delta")
    css = "pos" if (value or 0) > 0 else "neg" if (value or 0) < 0 else ""
    return f'<span class="{css}">{html.escape(delta_ci(block))}</span>'


def _img(name: str, data: bytes) -> str:
    return f'<img alt="{html.escape(name)}" src="data:image/png;base64,{base64.b64encode(data).decode()}">'


def answers_html(report: Mapping[str, Any]) -> str:
    """"Where answers pile up": per labelled field and slice, the model's answers beside the gold labels."""
    e = html.escape
    parts = ["<h2>Where answers pile up</h2>"]
    lines = report.get("collapse_lines", [])
    parts.append("<ul>" + "".join(f"<li class='lag'>{e(line)}</li>" for line in lines) + "</ul>" if lines
                 else "<p>No field's answers collapsed onto one label.</p>")

    def counts(c: Mapping[str, int]) -> str:
        total = sum(c.values()) or 1
        return ", ".join(f"{e(k)} {v} ({v / total:.0%})" for k, v in list(c.items())[:6])

    for field, slices in report.get("answers", {}).items():
        rows = [[("<span class='lag'>" + e(key) + "</span>") if s["collapsed"] else e(key), counts(s["answers"]),
                 counts(s["gold"])] for key, s in slices.items()]
        parts.append(f"<h3>{e(field)}</h3>" + _table(["slice", "model's answers", "gold labels"], rows))
    return "\n".join(parts)


def render_html(report: Mapping[str, Any], images: Mapping[str, bytes], predictions: list[Mapping[str, Any]]) -> str:
    """The self-contained HTML page (CSS inline, charts as data URIs)."""
    e = html.escape
    task, model, lagging = report["task"], report["model"], {r["language"] for r in report["lagging"]}
    parts = [
        f"<!doctype html><html><head><meta charset='utf-8'><title>lingoforge eval: {e(task['name'])}</title>"
        f"<style>{_CSS}</style></head><body>",
        f"<h1>{e(task['name'])} v{e(str(task['version']))} — per-language evaluation</h1>",
        f"<p>Model <code>{e(model['spec'])}</code> on <b>{e(model['backend'])}</b>"
        f"{' (constrained decoding)' if model.get('constrained') else ''}; {report['data']['n']} items in "
        f"{len(report['languages'])} languages; primary metric <b>{e(task['primary_metric'])}</b>, "
        f"mean over languages {pct(report['primary_mean'])}.</p>",
    ]
    said = headline(report)
    parts.append("<h2>Verdict: is it worth deploying?</h2>")
    if not (report.get("verdict") or {}).get("references"):
        parts.append("<p>No reference was computed: evaluate a run folder, or give <code>--train-data</code>, to set "
                     "the model beside the commonest label, a classifier and the base model.</p>")
    css = {"verdict": "verdict", "collapse": "lag", "warning": "warn"}
    parts.append("<ul>" + "".join(f"<li class='{css[kind]}'>{e(line)}</li>" for kind, line in said) + "</ul>")
    for field, result in (report.get("verdict") or {}).get("fields", {}).items():
        name = f"references-{slug(field)}.png"
        if name in images:
            parts.append(_img(name, images[name]))
            head, rows = reference_rows(result)
            parts.append(_table(head, [[e(c) for c in row] for row in rows]))
    parts.append(answers_html(report))
    parts.append("<h2>Lagging languages</h2>")
    sections = advice_by_model(report)
    for role, advised, lagging_of in sections:
        if len(sections) > 1:
            parts.append(f"<h3>{e(model_title(role, advised))}</h3>")
        parts.append(
            "<ul>" + "".join(f"<li class='lag'>{e(r['advice'])}"
                             + (f"<br>{e(r['most_confused']['hint'])}" if r.get("most_confused") else "") + "</li>"
                             for r in lagging_of) + "</ul>"
            if lagging_of
            else "<p>No language lags the mean by more than 5 points.</p>"
        )
    head = [
        "language",
        "n",
        task["primary_metric"],
        "schema valid",
        "parse failures",
        "lenient parses",
        *[f"{f} accuracy / macro-F1" for f in task["fields"]],
        *[f"{f} wrong language" for f in task["text_fields"]],
        "p50 latency",
    ]
    rows = []
    for lang, s in [*report["languages"].items(), ("all", report["overall"])]:
        name = f"<span class='lag'>{e(lang)}</span>" if lang in lagging else e(lang)
        rows.append(
            [
                name,
                str(s["n"]),
                pct_ci(s["primary"], s.get("primary_ci")),
                pct_ci(s["schema_valid_rate"], s.get("schema_valid_ci")),
                pct(s["parse_failure_rate"]),
                pct(s["lenient_parse_rate"]),
                *[f"{pct_ci(f['accuracy'], f.get('accuracy_ci'))} / {f['macro_f1']:.3f}" for f in s["fields"].values()],
                *[f"{pct(w['rate'])} ({w['checked']} checked)" for w in s["wrong_language_rate"].values()],
                f"{s['latency']['p50_s'] or 0:.3f} s",
            ]
        )
    parts += ["<h2>Per language</h2>", _table(head, rows)]
    metric_names = list(report["overall"]["metrics"])
    parts += [
        "<h2>Task metrics</h2>",
        _table(
            ["language", *metric_names],
            [
                [e(lang), *[pct_ci(s["metrics"].get(m), s.get("metrics_ci", {}).get(m)) for m in metric_names]]
                for lang, s in [*report["languages"].items(), ("all", report["overall"])]
            ],
        ),
    ]
    parts += ["<h2>Charts</h2>", _img("languages.png", images["languages.png"])]
    for field in report["overall"]["fields"]:
        name = f"confusion-{slug(field)}.png"
        parts.append(_img(name, images[name]))
    if "training.png" in images:
        training = report["training"]
        told = [(training.get(key) or {}).get("text") for key in ("stopped", "selection")]
        parts += ["<h2>Training: validation by step</h2>",
                  "<ul>" + "".join(f"<li>{e(line)}</li>" for line in told if line) + "</ul>",
                  _img("training.png", images["training.png"])]
    if report.get("comparison"):
        c = report["comparison"]
        parts.append(
            f"<h2>Comparison: <code>{e(c['a']['spec'])}</code> vs <code>{e(c['b']['spec'])}</code> "
            "(delta = second − first)</h2>"
        )
        crow = [
            [
                e(lang),
                pct_ci(d["primary"]["a"], d["primary"].get("a_ci")),
                pct_ci(d["primary"]["b"], d["primary"].get("b_ci")),
                _delta_cell(d["primary"]),
                _delta_cell(d["schema_valid_rate"]),
            ]
            for lang, d in [*c["languages"].items(), ("all", c["overall"])]
        ]
        parts.append(_table(["language", "first", "second", "delta", "schema-valid delta"], crow))
    cons = report.get("consistency")
    parts.append("<h2>Cross-language consistency</h2>")
    parts.append(
        f"<p>{cons['groups']} parallel groups; {pct(cons['score'])} agree. "
        + " ".join(f"{e(k)}: {pct(v)}" for k, v in cons["languages"].items())
        + "</p>"
        if cons
        else "<p>The data has no parallel groups (<code>meta.group</code>).</p>"
    )
    t = report["throughput"]
    parts += [
        "<h2>Throughput</h2>",
        f"<p>p50 {t['p50_s'] or 0:.3f} s, p95 {t['p95_s'] or 0:.3f} s per item; "
        f"{t['items_per_s'] or 0:.2f} items/s at batch size {t['batch_size']}.</p>",
    ]
    failures = [p for p in predictions if not p["valid"]][:20]
    if failures:
        parts.append("<h2>Unusable answers (first 20)</h2>")
        parts.append(
            _table(
                ["#", "language", "answer", "problem"],
                [
                    [str(p["index"]), e(p["language"]), f"<code>{e(str(p['raw'])[:200])}</code>", e(str(p["error"]))]
                    for p in failures
                ],
            )
        )
    parts.append("</body></html>")
    return "\n".join(parts)


def write_report(report: Mapping[str, Any], out_dir: str | Path) -> dict[str, Path]:
    """Write report.json (without predictions and settings), predictions.jsonl, charts/*.png and report.html
    into ``out_dir``.

    With a compared model, its predictions go to the same predictions.jsonl tagged by ``model`` and ``backend``.
    The report's ``settings`` go to predictions.settings.json, so a later ``eval`` with the same settings reuses
    these answers; a report without them removes that file, so nothing is reused for the wrong settings."""
    out = Path(out_dir)
    hidden = ("predictions", "settings")
    data = {k: v for k, v in report.items() if k not in hidden}
    if "compared" in data:
        data["compared"] = {k: v for k, v in data["compared"].items() if k not in hidden}
    predictions = list(report.get("predictions", []))
    tagged = [prediction_line(report["model"], p) for p in predictions]
    if "compared" in report:
        tagged += [prediction_line(report["compared"]["model"], p) for p in report["compared"].get("predictions", [])]
    images = charts(data)
    for name, png in images.items():
        with atomic_open(out / "charts" / name, "wb") as fh:
            fh.write(png)
    write_json(out / "report.json", data)
    sidecar = settings_path(out / "predictions.jsonl")
    sidecar.unlink(missing_ok=True)  # first: predictions with the settings of other answers must never exist
    write_jsonl(out / "predictions.jsonl", tagged)
    if report.get("settings"):
        write_json(sidecar, report["settings"])
    with atomic_open(out / "report.html") as fh:
        fh.write(render_html(data, images, predictions))
    return {
        "json": out / "report.json",
        "html": out / "report.html",
        "predictions": out / "predictions.jsonl",
        "charts": out / "charts",
    }
