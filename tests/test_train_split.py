"""The validation split `train --data ONE.jsonl` holds out: stable per example, per language, said aloud, optional."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
from click.testing import CliRunner
from lingoforge.config import make_config
from lingoforge.data.split import holdout_score, load_data
from lingoforge.errors import DataError, LingoforgeError
from lingoforge.task import Example
from lingoforge.train import train_from_files
from test_train import CATEGORIES, TEXTS, finished, tiny_task

NEW_TEXTS = {"it": "Dov'è il mio pacco?", "pt": "Onde está a minha encomenda?", "ja": "荷物はどこですか？"}


def rows(lang: str, start: int, count: int) -> list[Example]:
    """``count`` distinct examples of ``lang`` (the order number makes each input unique)."""
    out = []
    for n in range(start, start + count):
        k = n % len(CATEGORIES)
        text = TEXTS[lang][k] if lang in TEXTS else NEW_TEXTS[lang]
        out.append(Example("", f"{text} #{n}", {"category": CATEGORIES[k], "priority": "low"}, lang))
    return out


def write(path: Path, examples: list[Example]) -> Path:
    path.write_text("".join(json.dumps(e.to_record(), ensure_ascii=False) + "\n" for e in examples), encoding="utf-8")
    return path


def assignment(path: Path, fraction: float = 0.1, seed: int = 0) -> dict[str, str]:
    """Input text -> "train" or "val" for every example of the file."""
    train, val, _ = load_data(path, tiny_task(), fraction, seed)
    return {i.example.input: "train" for i in train} | {i.example.input: "val" for i in val}


def test_adding_rows_moves_no_existing_row_between_train_and_validation(tmp_path: Path) -> None:
    base = [e for lang in TEXTS for e in rows(lang, 0, 100)]
    # the guarantee's case: every language holds out rows by their own hash (no language borrows one, see below)
    assert all(any(holdout_score(e, 0) < 0.1 for e in base if e.language == lang) for lang in TEXTS)
    before = assignment(write(tmp_path / "a.jsonl", base))
    new_languages = [e for lang in NEW_TEXTS for e in rows(lang, 1000, 10)]
    after = assignment(write(tmp_path / "b.jsonl", base + new_languages))
    assert len(after) == len(before) + 30
    assert {text: after[text] for text in before} == before
    more_english = assignment(write(tmp_path / "c.jsonl", base + rows("en", 2000, 30)))
    assert {text: more_english[text] for text in before} == before


def test_a_language_with_no_row_under_the_fraction_lends_its_lowest_until_one_comes(tmp_path: Path) -> None:
    """The one exception to stability: the borrowed validation row returns to training once a row of its language
    falls under the fraction by its own hash."""
    few = rows("en", 0, 12) + rows("de", 0, 40)
    english = sorted(few[:12], key=lambda e: holdout_score(e, 0))
    assert holdout_score(english[0], 0) >= 0.1
    split = assignment(write(tmp_path / "few.jsonl", few))
    assert [text for text, side in split.items() if side == "val" and text in {e.input for e in english}] == [
        english[0].input
    ]
    low = next(e for e in rows("en", 12, 100) if holdout_score(e, 0) < 0.1)
    split = assignment(write(tmp_path / "more.jsonl", [*few, low]))
    assert (split[english[0].input], split[low.input]) == ("train", "val")


def test_each_language_holds_out_about_the_fraction(tmp_path: Path) -> None:
    """Each example's side is its own hash, so a language's count is binomial around n x fraction (the price of
    stability); 3 standard deviations bound it."""
    path = write(tmp_path / "all.jsonl", [e for lang in TEXTS for e in rows(lang, 0, 200)])
    for fraction in (0.1, 0.25):
        train, val, _ = load_data(path, tiny_task(), fraction, seed=0)
        assert len(train) + len(val) == 800
        for lang in TEXTS:
            held = sum(i.example.language == lang for i in val)
            assert abs(held - 200 * fraction) <= 3 * math.sqrt(200 * fraction * (1 - fraction)), (lang, held)


def test_every_language_with_two_examples_keeps_one_on_each_side(tmp_path: Path) -> None:
    path = write(tmp_path / "small.jsonl", rows("en", 0, 2) + rows("de", 0, 2) + rows("fr", 0, 2) + rows("zh", 0, 1))
    for fraction in (0.01, 0.99):
        train, val, _ = load_data(path, tiny_task(), fraction, seed=0)
        assert sorted(i.example.language for i in val) == ["de", "en", "fr"]
        assert sorted(i.example.language for i in train) == ["de", "en", "fr", "zh"]


def test_duplicates_share_a_side_and_the_seed_changes_the_split(tmp_path: Path) -> None:
    twins = [
        Example("", f"Where is my parcel #{n}?", {"category": "shipping", "priority": "low"}, "en") for n in range(40)
    ]
    twins += [
        Example("", f"where is my PARCEL #{n}", {"category": "shipping", "priority": "low"}, "en") for n in range(40)
    ]
    split = assignment(write(tmp_path / "twins.jsonl", twins), fraction=0.3)
    assert all(split[f"Where is my parcel #{n}?"] == split[f"where is my PARCEL #{n}"] for n in range(40))
    path = write(tmp_path / "all.jsonl", [e for lang in TEXTS for e in rows(lang, 0, 50)])
    assert assignment(path, seed=0) != assignment(path, seed=1)


def test_val_zero_trains_on_everything(tmp_path: Path) -> None:
    assert make_config({"val_fraction": 0}).val_fraction == 0
    with pytest.raises(LingoforgeError, match=r"val_fraction: 1.0 is not in the range 0<=x<1"):
        make_config({"val_fraction": 1})
    path = write(tmp_path / "all.jsonl", [e for lang in TEXTS for e in rows(lang, 0, 5)])
    train, val, _ = load_data(path, tiny_task(), 0.0, seed=0)
    assert (len(train), val) == (20, [])


def test_a_file_with_nothing_to_hold_out_suggests_val_zero(tmp_path: Path) -> None:
    path = write(tmp_path / "one_each.jsonl", [rows(lang, 0, 1)[0] for lang in TEXTS])
    with pytest.raises(DataError, match=r"one_each.jsonl: no language has two examples.*--val 0"):
        load_data(path, tiny_task(), 0.1, seed=0)


def test_train_from_files_says_what_is_held_out_and_writes_the_split(tmp_path: Path, monkeypatch, capsys) -> None:
    import lingoforge.train

    seen: dict[str, object] = {}
    monkeypatch.setattr(lingoforge.train, "train",
                        lambda task, tr, va, *a, **k: seen.update(train=tr, val=va, sources=k["sources"]))
    path = write(tmp_path / "all.jsonl", [e for lang in TEXTS for e in rows(lang, 0, 50)])
    train_from_files(tiny_task(), path, "qwen2.5-0.5b", tmp_path / "run", make_config())
    val = seen["val"]
    per_lang = ", ".join(f"{lang} {sum(i.example.language == lang for i in val)}" for lang in sorted(TEXTS))
    assert (
        f"held out {len(val)} of 200 examples for validation (about 10% per language and at least one, chosen by a "
        f"hash of each input, so adding examples moves none): {per_lang}; pass --val to change"
        in capsys.readouterr().err
    )
    assert len((tmp_path / "run" / "data" / "val.jsonl").read_text().splitlines()) == len(val)

    monkeypatch.chdir(tmp_path)  # a relative --data is recorded absolute: export finds it from anywhere
    no_val = make_config({"val_fraction": 0})
    train_from_files(tiny_task(), Path("all.jsonl"), "qwen2.5-0.5b", tmp_path / "none", no_val)
    assert (len(seen["train"]), seen["val"]) == (200, [])
    assert seen["sources"]["train+val"]["path"] == str(path)  # type: ignore[index]
    assert "held out" not in capsys.readouterr().err
    assert (tmp_path / "none" / "data" / "train.jsonl").is_file()
    assert not (tmp_path / "none" / "data" / "val.jsonl").exists()


def test_cli_val_flag(tmp_path: Path, monkeypatch) -> None:
    import lingoforge.plugins
    import lingoforge.train
    from lingoforge.cli import cli

    fractions: list[float] = []
    monkeypatch.setattr(lingoforge.plugins, "get_task", lambda name: tiny_task())

    def fake(task, data, base, out, config, **kw):
        fractions.append(config.val_fraction)
        return finished(out)

    monkeypatch.setattr(lingoforge.train, "train_from_files", fake)
    path = write(tmp_path / "all.jsonl", rows("en", 0, 4))
    args = ["train", "mini_tickets", "--base", "qwen2.5-0.5b", "-o", str(tmp_path / "run")]
    for flag, expected in (([], 0.1), (["--val", "0"], 0.0), (["--val", "0.25"], 0.25)):
        result = CliRunner().invoke(cli, [*args, "--data", str(path), *flag])
        assert result.exit_code == 0 and fractions.pop() == expected, result.output
    assert CliRunner().invoke(cli, [*args, "--data", str(path), "--val", "1"]).exit_code == 2
    (tmp_path / "split").mkdir()
    result = CliRunner().invoke(cli, [*args, "--data", str(tmp_path / "split"), "--val", "0"])
    assert result.exit_code == 2 and "its own val.jsonl" in result.output and not fractions
