"""Choose the language detector: lingua-language-detector vs py3langid on short business texts.

    python bench/bench_langid.py        # prints a table, writes bench/results/langid.json

Accuracy is measured on the hand-written set in ``langid_samples.py`` (13 languages, 169 texts, a third
of them at most four words long); speed on 20,000 texts (that set repeated), after the models are loaded.
Each detector runs in two set-ups: every language it knows, and restricted to 20 common languages (what
``lingoforge.data.langid`` uses: the task's languages plus the common ones, so a stray language still shows).
"""

from __future__ import annotations

import platform
import sys
import time
from collections.abc import Callable
from importlib.metadata import version
from pathlib import Path

from langid_samples import SAMPLES
from rich.console import Console
from rich.table import Table

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from lingoforge.data.langid import COMMON_LANGUAGES  # noqa: E402
from lingoforge.fsutil import write_json  # noqa: E402

SPEED_N = 20_000


def _lingua(restrict: bool) -> tuple[Callable[[list[str]], list[str | None]], float]:
    from lingua import IsoCode639_1, LanguageDetectorBuilder

    start = time.perf_counter()
    if restrict:
        codes = [getattr(IsoCode639_1, c.upper()) for c in COMMON_LANGUAGES]
        builder = LanguageDetectorBuilder.from_iso_codes_639_1(*codes)
    else:
        builder = LanguageDetectorBuilder.from_all_languages()
    detector = builder.with_preloaded_language_models().build()
    loaded = time.perf_counter() - start

    def detect(texts: list[str]) -> list[str | None]:
        return [
            lang.iso_code_639_1.name.lower() if lang else None
            for lang in detector.detect_languages_in_parallel_of(texts)
        ]

    return detect, loaded


def _py3langid(restrict: bool) -> tuple[Callable[[list[str]], list[str | None]], float]:
    from py3langid.langid import MODEL_FILE, LanguageIdentifier

    start = time.perf_counter()
    ident = LanguageIdentifier.from_model_file(MODEL_FILE, norm_probs=True)
    if restrict:
        ident.set_languages(list(COMMON_LANGUAGES))
    loaded = time.perf_counter() - start

    def detect(texts: list[str]) -> list[str | None]:
        return [ident.classify(t)[0] for t in texts]

    return detect, loaded


def _batched(restrict: bool) -> tuple[Callable[[list[str]], list[str | None]], float]:
    """lingoforge's batched scorer over py3langid's model (always restricted)."""
    from lingoforge.data.langid import LanguageDetector

    start = time.perf_counter()
    detector = LanguageDetector()
    loaded = time.perf_counter() - start
    return (lambda texts: [d.language for d in detector.detect(texts)]), loaded


def main() -> None:
    texts = [t for lang in SAMPLES for t in SAMPLES[lang]]
    gold = [lang for lang in SAMPLES for _ in SAMPLES[lang]]
    short = [i for i, t in enumerate(texts) if len(t.split()) <= 4 and gold[i] not in ("zh", "ja")]
    speed_texts = (texts * (SPEED_N // len(texts) + 1))[:SPEED_N]
    rows = []
    # lingua keeps loaded models for the process: the restricted set-up runs first so its load time is its own.
    setups = [
        ("lingua", _lingua, True),
        ("lingua", _lingua, False),
        ("py3langid", _py3langid, False),
        ("py3langid", _py3langid, True),
        ("lingoforge (py3langid batched)", _batched, True),
    ]
    for name, factory, restrict in setups:
        detect, loaded = factory(restrict)
        pred = detect(texts)
        start = time.perf_counter()
        detect(speed_texts)
        elapsed = time.perf_counter() - start
        wrong = [(gold[i], pred[i], texts[i]) for i in range(len(texts)) if pred[i] != gold[i]]
        per_lang = {
            lang: sum(pred[i] == lang for i in range(len(texts)) if gold[i] == lang) / len(SAMPLES[lang])
            for lang in SAMPLES
        }
        rows.append(
            {
                "detector": name,
                "languages": "20 common" if restrict else "all",
                "accuracy": round(1 - len(wrong) / len(texts), 4),
                "accuracy_short_texts": round(sum(pred[i] == gold[i] for i in short) / len(short), 4),
                "per_language_accuracy": {k: round(v, 3) for k, v in per_lang.items()},
                "load_s": round(loaded, 2),
                "texts_per_s": round(SPEED_N / elapsed),
                "errors": [f"{g} -> {p}: {t}" for g, p, t in wrong],
            }
        )
    table = Table(title=f"language identification, {len(texts)} short texts in {len(SAMPLES)} languages")
    for col in ("detector", "languages", "accuracy", "≤4 words", "load s", "texts/s"):
        table.add_column(col, justify="right" if col not in ("detector", "languages") else "left")
    for r in rows:
        table.add_row(
            r["detector"],
            r["languages"],
            f"{r['accuracy']:.1%}",
            f"{r['accuracy_short_texts']:.1%}",
            f"{r['load_s']:.1f}",
            f"{r['texts_per_s']:,}",
        )
    Console().print(table)
    out = Path(__file__).resolve().parent / "results" / "langid.json"
    write_json(
        out,
        {
            "benchmark": "langid",
            "texts": len(texts),
            "short_texts": len(short),
            "languages": sorted(SAMPLES),
            "speed_texts": SPEED_N,
            "results": rows,
            "machine": {
                "python": platform.python_version(),
                "platform": platform.platform(),
                "processor": platform.processor() or platform.machine(),
            },
            "versions": {
                "lingua-language-detector": version("lingua-language-detector"),
                "py3langid": version("py3langid"),
            },
        },
    )
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
