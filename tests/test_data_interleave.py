"""Mixed-language batches: a permutation per epoch, every batch as mixed as the language sizes allow."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from lingoforge.data.interleave import MixedLanguageSampler, mixed_language_order


def batches(order: list[int], size: int) -> list[list[int]]:
    return [order[i : i + size] for i in range(0, len(order), size)]


def distinct(langs: list[str], batch: list[int]) -> int:
    return len({langs[i] for i in batch})


def labels(counts: list[int]) -> list[str]:
    return [f"l{j}" for j, c in enumerate(counts) for _ in range(c)]


def test_batch_of_four_with_four_unequal_languages_has_at_least_three() -> None:
    langs = labels([400, 120, 60, 31])  # 611 examples, 153 batches: the smallest languages are far below one per batch
    order = mixed_language_order(langs, 4, seed=0)
    full = [b for b in batches(order, 4) if len(b) == 4]
    # sum of min(c, m) = 153 + 120 + 60 + 31 = 364 → floor(364 / 153) = 2; everything we can promise is 2 …
    assert min(distinct(langs, b) for b in full) >= 2
    balanced = labels([100, 90, 80, 60])  # … while with m = 83 batches: 83 + 83 + 80 + 60 = 306 → at least 3
    order = mixed_language_order(balanced, 4, seed=0)
    assert min(distinct(balanced, b) for b in batches(order, 4) if len(b) == 4) >= 3


def test_equal_languages_fill_every_batch() -> None:
    langs = labels([52, 52, 52, 52, 52])  # 65 batches, 260 language appearances: 4 per batch
    order = mixed_language_order(langs, 4, seed=1)
    assert all(distinct(langs, b) == 4 for b in batches(order, 4))
    uneven = labels(
        [100, 30, 30, 30, 30]
    )  # 55 batches; appearances 55 + 4·30 = 175: floor(175 / 55) = 3, no better possible
    order = mixed_language_order(uneven, 4, seed=1)
    assert min(distinct(uneven, b) for b in batches(order, 4)) == 3


@settings(max_examples=300, deadline=None)
@given(
    counts=st.lists(st.integers(1, 60), min_size=1, max_size=8),
    batch_size=st.integers(1, 9),
    seed=st.integers(0, 2**32),
)
def test_guarantee_holds_for_any_language_sizes(counts: list[int], batch_size: int, seed: int) -> None:
    langs = labels(counts)
    order = mixed_language_order(langs, batch_size, seed)
    assert sorted(order) == list(range(len(langs)))  # every example exactly once
    m = math.ceil(len(langs) / batch_size)
    bound = sum(min(c, m) for c in counts) // m
    full = [b for b in batches(order, batch_size) if len(b) == batch_size]
    for batch in full:
        assert distinct(langs, batch) >= bound
    for j, c in enumerate(counts):
        if c >= m:  # a language with at least one example per batch is in every full batch
            assert all(any(langs[i] == f"l{j}" for i in b) for b in full)


@settings(max_examples=100, deadline=None)
@given(counts=st.lists(st.integers(1, 30), min_size=1, max_size=6), batch_size=st.integers(1, 6))
def test_bound_is_optimal_when_batches_are_full(counts: list[int], batch_size: int) -> None:
    """When B divides n the bound is also an upper limit for any ordering, so ours is optimal."""
    langs = labels(counts)
    extra = (-len(langs)) % batch_size
    langs += ["l0"] * extra
    counts = [counts[0] + extra, *counts[1:]]
    m = len(langs) // batch_size
    order = mixed_language_order(langs, batch_size, 0)
    worst = min(distinct(langs, b) for b in batches(order, batch_size))
    assert worst == sum(min(c, m) for c in counts) // m


def test_deterministic_and_seeded() -> None:
    langs = labels([30, 20, 10])
    assert mixed_language_order(langs, 4, 7) == mixed_language_order(langs, 4, 7)
    assert mixed_language_order(langs, 4, 7) != mixed_language_order(langs, 4, 8)


def test_edge_cases() -> None:
    assert mixed_language_order([], 4) == []
    assert mixed_language_order(["en"], 4) == [0]
    with pytest.raises(ValueError, match="batch_size"):
        mixed_language_order(["en"], 0)


def test_sampler_is_a_torch_sampler_with_epochs() -> None:
    import torch
    from torch.utils.data import DataLoader, TensorDataset

    langs = labels([12, 8, 4])
    sampler = MixedLanguageSampler(langs, batch_size=4, seed=3)
    assert isinstance(sampler, torch.utils.data.Sampler) and len(sampler) == 24
    first = list(sampler)
    assert list(sampler) == first  # same epoch, same order
    sampler.set_epoch(1)
    second = list(sampler)
    assert second != first and sorted(second) == list(range(24))
    sampler.set_epoch(0)
    assert list(sampler) == first
    loader = DataLoader(TensorDataset(torch.arange(24)), batch_size=4, sampler=sampler)
    for (batch,) in loader:
        assert distinct(langs, batch.tolist()) >= 2
