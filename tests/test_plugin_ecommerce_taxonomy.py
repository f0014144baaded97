"""The ecommerce_taxonomy plugin: balanced leaves, native listings, replaceable taxonomy, scoring.

The generic checks (contract, determinism, schema, languages, samples) run in test_plugin_contract.py.
"""

from __future__ import annotations

import re
import subprocess
import sys
from collections import Counter
from pathlib import Path

import lingoforge_plugins.ecommerce_taxonomy as plugin
import pytest
from lingoforge.errors import TaskDefinitionError
from lingoforge.task import Example, Task
from lingoforge.testing import assert_task_contract
from lingoforge_plugins.ecommerce_taxonomy import build_task
from lingoforge_plugins.ecommerce_taxonomy.prompts import category_listing
from lingoforge_plugins.ecommerce_taxonomy.scoring import cjk_misclassification_rate, macro_f1, score
from lingoforge_plugins.ecommerce_taxonomy.taxonomy import DEFAULT_PATH, ENV_VAR, load_taxonomy, taxonomy_path
from lingoforge_plugins.ecommerce_taxonomy.vocab import LANGUAGES, SLOTS, common_words, language_style

N = 500
RUNNING = "Sports & Outdoors > Footwear > Running Shoes"
HIKING = "Sports & Outdoors > Footwear > Hiking Boots"
SNEAKERS = "Fashion > Shoes > Sneakers"
PHONE_CASE = "Electronics > Phone Accessories > Phone Cases"

# Script every input of a language must contain (brands and specs are Latin in all of them).
SCRIPTS = {
    "zh": re.compile(r"[\u4e00-\u9fff]"),
    "ja": re.compile(r"[\u3040-\u30ff\u4e00-\u9fff]"),
    "ko": re.compile(r"[\uac00-\ud7a3]"),
    "th": re.compile(r"[\u0e00-\u0e7f]"),
}
NON_LATIN = re.compile(r"[\u0e00-\u0e7f\u3040-\u30ff\u4e00-\u9fff\uac00-\ud7a3]")
VIETNAMESE = re.compile(r"[ăâđêôơưạảấầẩẫậắằẳẵặẹẻẽếềểễệỉịọỏốồổỗộớờởỡợụủứừửữựỳỵỷỹ]", re.IGNORECASE)


@pytest.fixture(scope="module")
def task() -> Task:
    """The task with the built-in taxonomy, whatever $LINGOFORGE_TAXONOMY says in the developer's shell."""
    return build_task(load_taxonomy(DEFAULT_PATH))


@pytest.fixture(scope="module")
def examples(task: Task) -> list[Example]:
    return task.generate(N, 0)


# -- wiring ----------------------------------------------------------------------------------------
def test_task_definition(task: Task) -> None:
    assert task.fields == ("category",)
    assert task.primary_metric == "category_accuracy"
    assert set(LANGUAGES) >= {"zh", "ko", "ja", "en", "de", "fr", "th", "vi", "id"} and task.languages == LANGUAGES
    assert task.version == "1"
    schema = task.schema
    assert schema["additionalProperties"] is False and schema["required"] == ["category", "brand"]
    assert task.label_values("category") == load_taxonomy(DEFAULT_PATH).paths
    assert "JSON" in task.instruction


def test_taxonomy_has_45_leaves_of_two_or_three_levels() -> None:
    taxonomy = load_taxonomy(DEFAULT_PATH)
    assert len(taxonomy.leaves) == 45
    assert all(2 <= len(leaf.path.split(" > ")) <= 3 for leaf in taxonomy.leaves)
    assert {leaf.id for leaf in taxonomy.leaves} == set(common_words())


def test_system_prompt_lists_every_leaf_once(task: Task) -> None:
    listed = []
    for line in category_listing(load_taxonomy(DEFAULT_PATH)).splitlines():
        parent, _, leaves = line.rpartition(" > ")
        listed += [f"{parent} > {name}" for name in leaves.split(" | ")]
    assert listed == load_taxonomy(DEFAULT_PATH).paths
    assert category_listing(load_taxonomy(DEFAULT_PATH)) in task.system_prompt


# -- generated data --------------------------------------------------------------------------------
def test_leaves_are_balanced_per_language_and_overall(examples: list[Example]) -> None:
    for lang in LANGUAGES:
        counts = Counter(e.output["category"] for e in examples if e.language == lang)
        assert max(counts.values()) - min(counts.values()) <= 1, lang
    overall = Counter(e.output["category"] for e in examples)
    assert len(overall) == 45
    assert max(overall.values()) - min(overall.values()) <= 2


def test_no_duplicate_inputs_among_5000_and_small_meta(examples: list[Example], task: Task) -> None:
    assert len({e.input for e in task.generate(5000, 3)}) == 5000
    assert all(set(e.meta) == {"id", "leaf"} for e in examples)


def test_another_seed_shares_few_inputs(examples: list[Example], task: Task) -> None:
    other = task.generate(N, 1)
    assert len({e.input for e in other} & {e.input for e in examples}) < N // 10


def test_inputs_are_written_in_the_native_script(examples: list[Example]) -> None:
    for e in examples:
        assert "{" not in e.input and "  " not in e.input, e.input
        if e.language in SCRIPTS:
            assert SCRIPTS[e.language].search(e.input), (e.language, e.input)
        else:
            assert not NON_LATIN.search(e.input), (e.language, e.input)
    ja = [e.input for e in examples if e.language == "ja"]
    assert sum(bool(re.search(r"[\u3040-\u30ff]", t)) for t in ja) > 0.8 * len(ja)  # kana, not only kanji
    vi = [e.input for e in examples if e.language == "vi"]
    assert sum(bool(VIETNAMESE.search(t)) for t in vi) > 0.8 * len(vi)


def test_brand_is_in_the_title_or_null(examples: list[Example]) -> None:
    brands = {leaf_id: [b for b, _ in words.brands] for leaf_id, words in common_words().items()}
    for e in examples:
        title = e.input.split("\n")[0]
        if e.output["brand"] is None:
            assert not [b for b in brands[e.meta["leaf"]] if b in e.input], e.input
        else:
            assert e.output["brand"] in title, e.input
    share_null = sum(e.output["brand"] is None for e in examples) / N
    assert 0.1 < share_null < 0.35


def test_phone_case_titles_name_the_phone_but_not_as_brand(task: Task) -> None:
    cases = [e for e in task.generate(900, 5) if e.output["category"] == PHONE_CASE]
    fits = common_words()["phone_case"].fits
    assert sum(any(f in e.input for f in fits) for e in cases) > 0.6 * len(cases)
    assert all(e.output["brand"] not in ("Apple", "Samsung", "Google") for e in cases)


# -- lexicon ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("lang", LANGUAGES)
def test_lexicon_is_complete_and_unambiguous(lang: str) -> None:
    style = language_style(lang)
    assert set(style.nouns) == set(common_words()), f"lexicon/{lang}.json leaves differ from common.json"
    for leaf_id in style.nouns:
        assert len(style.nouns[leaf_id]) >= 3 and len(style.features[leaf_id]) >= 4, (lang, leaf_id)
    owners = Counter(noun for nouns in style.nouns.values() for noun in set(nouns))
    assert [noun for noun, count in owners.items() if count > 1] == [], "a noun names two leaves"
    for layout in style.titles + style.descriptions:
        assert set(re.findall(r"\{(\w+)\}", layout)) <= SLOTS, layout
    assert all("{noun}" in title for title in style.titles)
    assert all("{fit}" in fit for fit in style.fit) and len(style.promos) >= 2


# -- taxonomy replacement --------------------------------------------------------------------------
REPLACEMENT = """\
leaves:
  - {id: smartphone, path: "Phones > Smartphones"}
  - {id: phone_case, path: "Phones > Cases"}
  - {id: running_shoes, path: "Shoes > Running"}
  - id: drone
    path: "Electronics > Drones"
    brands: [DJI, Autel]
    terms: {en: [Drone, Camera Drone], de: [Drohne], fr: [Drone], zh: [无人机], ja: [ドローン], ko: [드론],
            th: [โดรน], vi: [Flycam], id: [Drone]}
"""


def test_a_replacement_taxonomy_drives_schema_prompt_and_data(tmp_path: Path) -> None:
    path = tmp_path / "shop.yaml"
    path.write_text(REPLACEMENT, encoding="utf-8")
    task = build_task(load_taxonomy(path))
    paths = ["Phones > Smartphones", "Phones > Cases", "Shoes > Running", "Electronics > Drones"]
    assert task.label_values("category") == paths
    assert task.version.startswith("1+taxonomy.")
    assert "Phones > Smartphones | Cases" in task.system_prompt
    assert_task_contract(task, n=72)
    drones = [e for e in task.generate(72, 0) if e.output["category"] == "Electronics > Drones"]
    assert len(drones) == 18 and {e.output["brand"] for e in drones} <= {"DJI", "Autel", None}
    assert next(e for e in drones if e.language == "th").input.count("โดรน") == 1


def test_the_env_var_selects_the_taxonomy(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "shop.yaml"
    path.write_text(REPLACEMENT, encoding="utf-8")
    monkeypatch.setenv(ENV_VAR, str(path))
    assert taxonomy_path() == path
    code = f"from {plugin.__name__} import TASK; print(TASK.label_values('category'))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert "Electronics > Drones" in out and "Electronics > Audio > Headphones" not in out
    monkeypatch.delenv(ENV_VAR)
    assert taxonomy_path() == DEFAULT_PATH


OK = '  - {id: smartphone, path: "Phones > Smartphones"}\n'


@pytest.mark.parametrize(
    ("content", "where"),
    [
        ("leaves: 3\n", "leaves: expected a list"),
        ("- just a list\n", "(top level): expected a mapping"),
        ('leaves:\n  - {id: phone_case, path: "Electronics"}\n' + OK, "leaves[0].path: 'Electronics' needs at"),
        ("leaves:\n" + OK + OK.replace("Smartphones", "Phones"), "leaves[1].id: duplicate id 'smartphone'"),
        ('leaves:\n  - {id: phone_case, path: "Phones > Smartphones"}\n' + OK, "leaves[1].path: duplicate path"),
        ("leaves:\n" + OK + '  - {id: drone, path: "A > Drones"}\n', "leaves[1].terms: leaf 'drone' is not in"),
        ("leaves:\n" + OK + '  - {id: laptop, path: "A > B", terms: {xx: [a]}}\n', "leaves[1].terms.xx: unknown"),
        ("leaves:\n" + OK + '  - {id: laptop, path: "A > B", brands: [""]}\n', "leaves[1].brands[0]: expected"),
        ('leaves:\n  - {id: laptop, path: "Phones"}\n' + OK, "leaves[0].path"),
        ('leaves:\n  - {id: laptop, pth: "A > B"}\n' + OK, "leaves[0].pth: unknown key"),
        ('leaves:\n  - {id: Laptop!, path: "A > B"}\n' + OK, "leaves[0].id: expected an id"),
        ('leaves:\n  - {id: laptop, path: "Phones > Smartphones > Big"}\n' + OK, "is a parent of leaf"),
        ('leaves:\n  - {id: laptop, path: "A > B | C"}\n' + OK, "leaves[0].path: 'A > B | C' contains '|'"),
        ("leaves: [\n", "line 2"),
    ],
)
def test_a_bad_taxonomy_names_file_and_key_path(tmp_path: Path, content: str, where: str) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(content, encoding="utf-8")
    with pytest.raises(TaskDefinitionError) as info:
        load_taxonomy(path)
    assert str(info.value).startswith(f"{path}: ")
    assert where in str(info.value)


def test_a_missing_taxonomy_file_says_so(tmp_path: Path) -> None:
    with pytest.raises(TaskDefinitionError, match=f"{re.escape(str(tmp_path / 'nope.yaml'))}: cannot read"):
        load_taxonomy(tmp_path / "nope.yaml")


# -- scoring ---------------------------------------------------------------------------------------
GOLD = {"category": RUNNING, "brand": "Nike"}


def test_score_perfect_wrong_leaf_and_wrong_top_level() -> None:
    assert score(GOLD, GOLD) == {"category_accuracy": 1.0, "top_level_accuracy": 1.0, "brand_accuracy": 1.0}
    assert score({"category": HIKING, "brand": "Nike"}, GOLD) == {
        "category_accuracy": 0.0,
        "top_level_accuracy": 1.0,
        "brand_accuracy": 1.0,
    }
    assert score({"category": SNEAKERS, "brand": "Adidas"}, GOLD) == dict.fromkeys(score(GOLD, GOLD), 0.0)


@pytest.mark.parametrize(
    ("pred_brand", "gold_brand", "expected"),
    [
        ("  NIKE ", "Nike", 1.0),
        ("Ｎｉｋｅ", "Nike", 1.0),
        ("levi's", "Levi's", 1.0),
        (None, None, 1.0),
        (None, "Nike", 0.0),
        ("Nike", None, 0.0),
        ("", None, 0.0),
        ("Adidas", "Nike", 0.0),
        (3, "Nike", 0.0),
    ],
)
def test_brand_match_is_normalized_and_null_aware(pred_brand: object, gold_brand: str | None, expected: float) -> None:
    pred = {"category": RUNNING, "brand": pred_brand}
    assert score(pred, {"category": RUNNING, "brand": gold_brand})["brand_accuracy"] == expected


def test_a_missing_brand_key_is_not_null() -> None:
    assert score({"category": RUNNING}, {"category": RUNNING, "brand": None})["brand_accuracy"] == 0.0


@pytest.mark.parametrize("pred", [None, [], "Running Shoes", 42, {}, {"category": 5, "brand": []}, {"category": None}])
def test_missing_or_malformed_predictions_score_zero_without_raising(pred: object) -> None:
    assert score(pred, GOLD) == {"category_accuracy": 0.0, "top_level_accuracy": 0.0, "brand_accuracy": 0.0}  # type: ignore[arg-type]


def test_macro_f1() -> None:
    a, b, c = RUNNING, HIKING, SNEAKERS
    golds = [{"category": a}, {"category": a}, {"category": b}, {"category": c}]
    preds = [{"category": a}, {"category": b}, {"category": b}, None]
    # a: tp 1, fn 1 -> 2/3; b: tp 1, fp 1 -> 2/3; c: missed -> 0
    assert macro_f1(preds, golds) == pytest.approx(4 / 9)
    assert macro_f1(golds, golds) == 1.0
    assert macro_f1([a, a, b, None], [a, a, b, c]) == pytest.approx((1 + 1 + 0) / 3)
    assert macro_f1(golds, golds, labels=[a, b, c, PHONE_CASE]) == pytest.approx(3 / 4)
    assert macro_f1([], []) == 0.0
    with pytest.raises(ValueError):
        macro_f1(preds, golds[:2])


def test_cjk_misclassification_rate() -> None:
    def ex(lang: str, category: str) -> Example:
        return Example("", f"{lang} {category}", {"category": category, "brand": None}, lang)

    examples = [ex("zh", a := RUNNING), ex("ja", a), ex("ko", HIKING), ex("en", a), ex("th", a)]
    preds = [{"category": a}, {"category": HIKING}, None, {"category": HIKING}, None]
    assert cjk_misclassification_rate(examples, preds) == pytest.approx(2 / 3)
    assert cjk_misclassification_rate(examples[3:], preds[3:]) == 0.0
    with pytest.raises(ValueError):
        cjk_misclassification_rate(examples, preds[:1])
