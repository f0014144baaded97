"""The contract_extraction plugin: generator properties, gold/text agreement, scoring and consistency.

The generic checks (contract, determinism, schema, languages, samples) run in test_plugin_contract.py.
"""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
from lingoforge import get_task
from lingoforge_plugins.contract_extraction import TASK
from lingoforge_plugins.contract_extraction.facts import ANNEX_BANK, CLAUSE_TYPES, JURISDICTIONS, KINDS, UNIT_BANK
from lingoforge_plugins.contract_extraction.generator import generate, generate_parallel
from lingoforge_plugins.contract_extraction.render import LANGUAGES, lexicon
from lingoforge_plugins.contract_extraction.scoring import METRICS, consistency, score, structure

N = 500


@pytest.fixture(scope="module")
def examples() -> list[Any]:
    return TASK.generate(N, 0)


# --- wiring --------------------------------------------------------------------------------------

def test_task_definition() -> None:
    task = get_task("contract_extraction")
    assert task.name == "contract_extraction" and task.primary_metric == "overall"
    assert task.fields == ("governing_law",) and task.consistency is not None
    assert task.label_values("governing_law") == list(JURISDICTIONS)


def test_schema_vocabularies_match_the_generator() -> None:
    props = TASK.schema["properties"]
    assert props["clauses"]["items"]["properties"]["type"]["enum"] == list(CLAUSE_TYPES)
    roles = {role for spec in KINDS.values() for role in spec.roles} | {"guarantor"}
    assert set(props["parties"]["items"]["properties"]["role"]["enum"]) == roles

    def strict(node: Any) -> None:  # additionalProperties: false on every object
        if isinstance(node, dict):
            if node.get("type") == "object":
                assert node.get("additionalProperties") is False, node
            for value in node.values():
                strict(value)
        elif isinstance(node, list):
            for value in node:
                strict(value)

    strict(TASK.schema)


def _shape(node: Any, path: str = "") -> set[str]:
    """Key paths of a lexicon (role grammatical forms differ per language and are left out)."""
    if not isinstance(node, dict) or path == "roles":
        return set() if path != "roles" else {f"roles.{r}" for r in node}
    out: set[str] = set()
    for key, value in node.items():
        sub = f"{path}.{key}" if path else key
        out |= {sub} | _shape(value, sub)
    return out


def test_lexicons_have_the_same_shape_and_bank_sizes() -> None:
    reference = _shape(lexicon("en"))
    for lang in LANGUAGES:
        lex = lexicon(lang)
        assert _shape(lex) == reference, lang
        annex = lex["annex"]
        assert [len(annex[k]) for k in ("activities", "objects", "items")] == [ANNEX_BANK] * 3, lang
        assert [len(annex[k]) for k in ("levels", "units")] == [UNIT_BANK] * 2, lang
        assert set(lex["laws"]) == set(lex["courts"]) == set(JURISDICTIONS), lang
        assert all({"term", "subject"} <= set(forms) for forms in lex["roles"].values()), lang


# --- generator -----------------------------------------------------------------------------------

def test_language_subsets_keep_their_order_and_unknown_languages_fail() -> None:
    sub = generate(7, 3, ("de", "es"))
    assert [e.language for e in sub] == ["de", "es", "de", "es", "de", "es", "de"]
    with pytest.raises(ValueError, match="no lexicon"):
        generate(4, 0, ("en", "it"))


_MONTHS = {lang: "|".join(lexicon(lang)["months"]) for lang in LANGUAGES}
_LOCAL_DATE = {
    "en": re.compile(rf"\b(?:({_MONTHS['en']}) \d{{1,2}}, \d{{4}}|\d{{1,2}} ({_MONTHS['en']}) \d{{4}})\b"),
    "fr": re.compile(rf"\b(?:1er|\d{{1,2}}) ({_MONTHS['fr']}) \d{{4}}\b|\b\d{{2}}/\d{{2}}/\d{{4}}\b"),
    "de": re.compile(rf"\b\d{{1,2}}\. ({_MONTHS['de']}) \d{{4}}\b|\b\d{{2}}\.\d{{2}}\.\d{{4}}\b"),
    "es": re.compile(rf"\b\d{{1,2}} de ({_MONTHS['es']}) de \d{{4}}\b|\b\d{{2}}/\d{{2}}/\d{{4}}\b"),
}


def test_local_date_forms_in_inputs_iso_in_outputs(examples: list[Any]) -> None:
    iso = re.compile(r"^\d{4}-\d{2}-\d{2}$")
    for e in examples:
        assert _LOCAL_DATE[e.language].search(e.input), e.input[:300]
        assert not re.search(r"\b\d{4}-\d{2}-\d{2}\b", e.input), "inputs never state ISO dates"
        assert iso.match(e.output["effective_date"])
        assert e.output["end_date"] is None or iso.match(e.output["end_date"])
    text = "\n".join(e.input for e in examples)
    for form in ("1er mars 20", "1. März 20", "1 de marzo de 20", "March 1, 20"):
        assert form in text, form
    assert any(e.output["end_date"] is None for e in examples) and any(e.output["end_date"] for e in examples)


def test_length_from_half_a_page_to_about_eight_pages(examples: list[Any]) -> None:
    lengths = sorted(len(e.input) for e in examples)
    assert lengths[0] >= 1_500 and lengths[-1] <= 27_000
    assert sum(n <= 6_000 for n in lengths) / N >= 0.85, "most contracts are 0.5-2 pages"
    assert sum(n >= 12_000 for n in lengths) >= 3, "a few long contracts exercise long context"
    assert lengths[-1] >= 18_000


_UNDERTAKING = {"en": " shall ", "fr": " s'engage à ", "de": " verpflichtet sich, ", "es": " se obliga a "}


def test_gold_output_is_grounded_in_the_text(examples: list[Any]) -> None:
    for e in examples:
        out = e.output
        # Every undertaking formula in the text is an extracted obligation, and none is invented.
        assert e.input.count(_UNDERTAKING[e.language]) == len(out["obligations"])
        assert all(p["name"] in e.input for p in out["parties"])
        names = {p["name"] for p in out["parties"]}
        assert all(o["party"] in names and o["obligation"] in e.input for o in out["obligations"])
        types = [c["type"] for c in out["clauses"]]
        assert len(types) == len(set(types)) and ("governing_law" in types) == (out["governing_law"] is not None)
        assert all("\n" not in c["summary"] for c in out["clauses"])


def test_parallel_groups_share_their_structure(examples: list[Any]) -> None:
    parallel = generate_parallel(25, 0)
    assert len(parallel) == 100
    assert parallel == generate_parallel(25, 0)
    groups = [parallel[i : i + 4] for i in range(0, 100, 4)]
    in_generate: dict[str, list[Any]] = {}
    for e in examples:
        if "group" in e.meta:
            in_generate.setdefault(e.meta["group"], []).append(e)
    assert len(in_generate) >= 10, "generate mixes in parallel groups"
    for group in groups + list(in_generate.values()):
        assert [e.language for e in group] == list(LANGUAGES)
        assert len({e.meta["group"] for e in group}) == 1
        assert len({structure(e.output) for e in group}) == 1
        assert len({e.input for e in group}) == 4
        summaries = {json.dumps([c["summary"] for c in e.output["clauses"]], ensure_ascii=False) for e in group}
        assert len(summaries) == 4, "summaries are written in each document's language"
        assert consistency([e.output for e in group]) == 1.0


# --- scoring -------------------------------------------------------------------------------------

@pytest.fixture()
def gold(examples: list[Any]) -> dict[str, Any]:
    """A contract with an open end date and a governing law, as plain JSON values."""
    output = next(e.output for e in examples if e.output["end_date"] is None and e.output["governing_law"])
    return json.loads(json.dumps(output))


def test_score_perfect_and_zero(gold: dict[str, Any]) -> None:
    assert score(gold, gold) == dict.fromkeys((*METRICS, "overall"), 1.0)
    assert score(None, gold) == dict.fromkeys((*METRICS, "overall"), 0.0)


@pytest.mark.parametrize("pred", [
    {}, [], "text", 3, {"parties": "x", "clauses": None, "obligations": 5},
    {"parties": [1, None, "a", {"name": 2}], "clauses": [{"type": 5}, "payment"], "obligations": [{"party": None}, []]},
    {"effective_date": 20250101, "end_date": ["2025-01-01"], "governing_law": {"name": "France"}},
])
def test_malformed_predictions_never_raise(pred: Any, gold: dict[str, Any]) -> None:
    result = score(pred, gold)
    assert set(result) == {*METRICS, "overall"} and all(0.0 <= v < 1.0 for v in result.values())
    assert structure(pred) is None or consistency([pred, gold]) == 0.0


def test_partial_scores(gold: dict[str, Any]) -> None:
    wrong_date = {**gold, "effective_date": "1999-01-01"}
    result = score(wrong_date, gold)
    assert result["effective_date_match"] == 0.0 and result["overall"] == pytest.approx(5 / 6)

    missing_end = {k: v for k, v in gold.items() if k != "end_date"}
    assert score(missing_end, gold)["end_date_match"] == 0.0, "a missing key is not null"

    law = {**gold, "governing_law": gold["governing_law"].upper() + "."}
    assert score(law, gold)["governing_law_match"] == 1.0, "case and punctuation are normalized"

    names = {**gold, "parties": [{**p, "name": p["name"].upper()} for p in gold["parties"]]}
    assert score(names, gold)["parties_f1"] == 1.0
    swapped = {**gold, "parties": [{**p, "role": "guarantor"} for p in gold["parties"]]}
    assert score(swapped, gold)["parties_f1"] == 0.0

    gold_types = {c["type"] for c in gold["clauses"]}
    absent = next(t for t in CLAUSE_TYPES if t not in gold_types)
    half = {**gold, "clauses": [*gold["clauses"][:1], {"type": absent, "summary": "x"}]}
    precision, recall = 1 / 2, 1 / len(gold_types)
    assert score(half, gold)["clause_types_f1"] == pytest.approx(2 * precision * recall / (precision + recall))


def test_obligations_soft_match(gold: dict[str, Any]) -> None:
    obligations = gold["obligations"]
    reworded = {**gold, "obligations": [{**o, "obligation": o["obligation"] + " promptly"} for o in obligations]}
    assert 0.8 < score(reworded, gold)["obligations_f1"] < 1.0
    other_party = {**gold, "obligations": [{**o, "party": "Somebody Else GmbH"} for o in obligations]}
    assert score(other_party, gold)["obligations_f1"] == 0.0
    one = {**gold, "obligations": obligations[:1]}
    recall = 1 / len(obligations)
    assert score(one, gold)["obligations_f1"] == pytest.approx(2 * recall / (1 + recall))
    doubled = {**gold, "obligations": obligations + obligations}
    assert score(doubled, gold)["obligations_f1"] == pytest.approx(2 * 0.5 / 1.5), "duplicates are not matched twice"


def test_consistency_counts_agreeing_pairs(gold: dict[str, Any]) -> None:
    other_law = {**gold, "governing_law": next(j for j in JURISDICTIONS if j != gold["governing_law"])}
    reworded = {**gold, "clauses": [{**c, "summary": "autre"} for c in reversed(gold["clauses"])]}
    assert consistency([gold, reworded, gold, gold]) == 1.0, "wording and order do not matter"
    assert consistency([gold, gold, gold, other_law]) == pytest.approx(3 / 6)
    assert consistency([gold, None, gold, gold]) == pytest.approx(3 / 6)
    assert consistency([None, None]) == 0.0
    assert consistency([gold]) == 1.0 and consistency([]) == 1.0
