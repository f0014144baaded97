"""Report files: JSON without predictions, self-contained HTML with embedded charts, and a real browser
rendering of it (headless Chromium, ``slow``)."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from html import escape as html_escape
from pathlib import Path
from typing import Any

import pytest
from lingoforge.evaluate import build_report, compare_reports
from lingoforge.references import Reference
from lingoforge.report import advice_by_model, render_table, write_report
from lingoforge.yaml_task import load_yaml_task
from rich.console import Console

TASK_YAML = """
name: tickets
languages: [en, es, hi]
instruction: Classify the ticket.
fields:
  category: {type: enum, labels: [shipping, billing, tech]}
"""


def records(task: Any, right: dict[str, int]) -> list[dict[str, Any]]:
    """10 scored prediction records per language, ``right[lang]`` of them correct, one unparsable."""
    out = []
    for lang, n_right in right.items():
        for i in range(10):
            gold = {"category": ["shipping", "billing", "tech"][i % 3]}
            if i == 9:
                pred, valid = None, False
            else:
                pred, valid = (
                    (gold if i < n_right else {"category": "tech" if gold["category"] != "tech" else "billing"}),
                    True,
                )
            out.append(
                {
                    "index": len(out),
                    "language": lang,
                    "input": f"t{i}",
                    "gold": gold,
                    "raw": json.dumps(pred),
                    "output": pred,
                    "valid": valid,
                    "lenient": False,
                    "error": None if valid else "no JSON",
                    "scores": task.score(pred if valid else None, gold),
                    "latency_s": 0.1 + i / 100,
                    "n_tokens": 6,
                    "group": f"g{i}",
                }
            )
    return out


@pytest.fixture
def report(tmp_path: Path) -> dict[str, Any]:
    path = tmp_path / "t.yaml"
    path.write_text(TASK_YAML)
    task = load_yaml_task(path)
    a = build_report(
        task,
        records(task, {"en": 9, "es": 8, "hi": 5}),
        model={"spec": "base", "backend": "hf"},
        seconds=3.0,
        batch_size=8,
        training_counts={"en": 40, "es": 40, "hi": 12},
        references=[Reference("majority", tuple({"category": "tech"} for _ in range(30)))],
    )
    b = build_report(
        task,
        records(task, {"en": 9, "es": 9, "hi": 8}),
        model={"spec": "tuned", "backend": "hf"},
        seconds=2.0,
        batch_size=8,
    )
    a["predictions"] = records(task, {"en": 9, "es": 8, "hi": 5})
    a["comparison"], a["compared"] = compare_reports(a, b), b
    return a


def test_write_report_files_and_self_contained_html(report: dict[str, Any], tmp_path: Path) -> None:
    paths = write_report(report, tmp_path / "eval")
    data = json.loads(paths["json"].read_text())
    assert "predictions" not in data and "predictions" not in data["compared"]
    assert (
        data["lagging"][0]["advice"]
        == "hi: 50% [24%–76%] vs 73% mean; 12 training examples — add about 30 more hi examples and retrain"
    )
    assert data["comparison"]["languages"]["hi"]["primary"]["delta"] == pytest.approx(0.3)
    assert sorted(p.name for p in paths["charts"].iterdir()) == [
        "confusion-category.png", "languages.png", "references-category.png"]
    assert all(p.read_bytes().startswith(b"\x89PNG") for p in paths["charts"].iterdir())
    html = paths["html"].read_text()
    assert html.count('src="data:image/png;base64,') == 3
    verdict = data["verdict"]["lines"][0]
    assert verdict.startswith("category: ") and "the commonest label" in verdict
    assert html.index("Verdict: is it worth deploying?") < html.index(html_escape(verdict)) < html.index("Per language")
    assert html.index('alt="references-category.png"') < html.index("Per language")
    assert not re.search(r'(src|href)="(?!data:)', html), "the report must not load anything from outside"
    assert "hi: 50% [24%–76%] vs 73% mean" in html and "Comparison" in html and "Unusable answers" in html
    assert len(paths["predictions"].read_text().splitlines()) == 30


def test_each_compared_model_gets_its_own_advice_the_fine_tuned_one_first(
    report: dict[str, Any], tmp_path: Path
) -> None:
    assert [(role, model["spec"]) for role, model, _ in advice_by_model(report)] == [
        ("first", "base"),
        ("second", "tuned"),
    ]
    report["compared"]["model"]["fine_tuned"] = True
    sections = advice_by_model(report)
    assert [(role, model["spec"]) for role, model, _ in sections] == [("second", "tuned"), ("first", "base")]
    tuned_advice = ("hi: 80% [49%–94%] vs 87% mean; training examples unknown — add about 20 more hi examples and "
                    "retrain")
    assert [lag["advice"] for lag in sections[0][2]] == [tuned_advice]
    html = write_report(report, tmp_path / "eval")["html"].read_text()
    assert html.index("<h3>second model tuned (fine-tuned)</h3>") < html.index(tuned_advice)
    first = html.index("<h3>first model base</h3>")
    assert html.index(tuned_advice) < first < html.index("hi: 50% [24%–76%] vs 73% mean")


def test_a_run_folder_report_draws_validation_by_step_beside_the_loss(report: dict[str, Any], tmp_path: Path) -> None:
    """A report of a run folder carries run.json's validation curve (``evaluate`` adds ``training``): the page says
    why training stopped and which checkpoint the adapter is, and draws the generated answers' metric per language
    against the step beside the validation loss."""
    steps = [10, 20, 30]
    report["training"] = {
        "curve": {"metric": "category_accuracy", "steps": steps,
                  "loss": {"all": [1.2, 1.0, 0.9], "en": [1.1, 0.9, 0.8], "es": [1.3, 1.1, 1.0]},
                  "primary": {"all": [0.4, 0.7, 0.6], "en": [0.5, 0.8, 0.7], "es": [0.3, None, 0.5]},
                  "macro_f1": [0.3, 0.6, 0.5]},
        "selection": {"best_step": 20, "text": "adapter: the checkpoint of step 20, validation category_accuracy 0.70"},
        "stopped": {"reason": "ceiling", "text": "trained to the ceiling, step 30 of 30 (3 epochs)"},
    }
    paths = write_report(report, tmp_path / "eval")
    assert (paths["charts"] / "training.png").read_bytes().startswith(b"\x89PNG")
    html = paths["html"].read_text()
    assert html.count('src="data:image/png;base64,') == 4 and 'alt="training.png"' in html
    order = ["Training: validation by step", "trained to the ceiling, step 30 of 30",
             "adapter: the checkpoint of step 20", 'alt="training.png"']
    assert [html.index(text) for text in order] == sorted(html.index(text) for text in order)


def test_rich_table_lists_every_language_and_the_deltas(report: dict[str, Any]) -> None:
    console = Console(record=True, width=200)
    console.print(render_table(report))
    text = console.export_text()
    for needle in ("en", "es", "hi", "all", "+30.0 pts", "50.0%"):
        assert needle in text


@pytest.mark.slow
def test_html_report_renders_its_charts_in_headless_chromium(report: dict[str, Any], tmp_path: Path) -> None:
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    if browser is None:
        pytest.skip("needs Debian's chromium: apt-get install -y chromium")
    from matplotlib.image import imread

    paths = write_report(report, tmp_path / "eval")
    shot = tmp_path / "shot.png"
    subprocess.run(
        [
            browser,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--hide-scrollbars",
            f"--screenshot={shot}",
            "--window-size=1200,2600",
            paths["html"].resolve().as_uri(),
        ],
        check=True,
        capture_output=True,
        timeout=120,
    )
    pixels = imread(shot)[..., :3]
    # Chart colours (matplotlib's blue/orange bars, the Blues heatmap) are saturated; text and tables are not.
    saturation = pixels.max(axis=2) - pixels.min(axis=2)
    colourful = (saturation > 0.25).mean()
    assert pixels.std() > 0.05, "the screenshot is blank"
    assert colourful > 0.01, f"only {colourful:.2%} of the page is chart-coloured: the charts did not render"
