"""Exact and near duplicates: normalized equality, character n-gram similarity, clusters, and scale."""

from __future__ import annotations

import random

from lingoforge.data.dedup import find_duplicates

BASE = "Mi pedido número 48213 no ha llegado todavía y necesito el regalo para el sábado, por favor ayúdenme"


def test_exact_duplicates_ignore_case_punctuation_and_spacing() -> None:
    dups = find_duplicates(["Where is my order?", "where   is my ORDER", "Where is my refund?"])
    assert dups.exact == [[0, 1]]
    assert [0, 1] in dups.near


def test_near_duplicates_cluster_and_distinct_texts_do_not() -> None:
    texts = [
        BASE,
        "Completely unrelated text about invoices and VAT numbers",
        BASE.replace("sábado", "domingo"),
        BASE.replace("48213", "48214"),
        "我的订单在哪里？我已经等了两个星期了",
        "我的订单在哪里？我已经等了两个星期了！",
    ]
    dups = find_duplicates(texts)
    assert dups.near == [[0, 2, 3], [4, 5]]
    assert all(0.8 <= s <= 1.0 for s in dups.similarity.values())


def test_short_and_empty_texts_do_not_crash() -> None:
    dups = find_duplicates(["", "a", "ab", "", "x"])
    assert dups.exact == [[0, 3]]
    assert find_duplicates([]).near == [] and find_duplicates(["only"]).near == []


def test_scales_to_twenty_thousand_texts() -> None:
    rng = random.Random(0)
    words = [f"w{i}" for i in range(3000)]
    texts = [" ".join(rng.choices(words, k=20)) for _ in range(20_000)]
    texts[123] = texts[45] + " w1"
    dups = find_duplicates(texts)  # its speed is measured by bench/bench_data.py, not asserted here
    assert dups.near == [[45, 123]]
