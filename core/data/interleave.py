"""Mixed-language batch ordering: every batch holds as many languages as the data allows.

One LoRA adapter learns all languages; a batch of one language pulls the gradient towards it, so we
order examples so that each batch mixes languages, while every example is still visited once per epoch.

How: with n examples and batch size B there are m = ceil(n / B) batches (the last one holds
r = n - (m-1)·B). Examples are grouped by language (shuffled, seeded) and the groups are
concatenated, languages with at least m examples first; this sequence is dealt into the batches slot
by slot, round-robin: slot 0 of every batch, then slot 1 of every batch, ... (the last batch drops out
of the deal once it has r). A language's examples are a
contiguous run of that deal, so a language with c examples lands in min(c, m) different batches, and
runs of consecutive languages tile the batches evenly. Then the full batches are shuffled, and the
examples inside each batch.

Guarantee (property-tested in ``tests/test_data_interleave.py``): let L = sum over languages of
min(c, m). Every full batch holds at least floor(L / m) distinct languages (the last, partial batch
holds what is left). When B divides n no ordering can do better: a language with c examples can be in
at most min(c, m) batches, so the m batches hold at most L language-appearances in all. A language
with at least m examples is in every full batch.

For the common case: batch 4, four or more languages of at least m examples each: every batch holds 4
languages. Four languages where the smallest has only half of m examples: still at least 3 per batch.

With label balance (``lingoforge.data.balance``) an epoch draws some examples more than once; the sampler orders
the draws, so the guarantee holds with c counting a language's draws.
"""

from __future__ import annotations

import math
import random
from collections import defaultdict
from collections.abc import Iterator, Sequence

from torch.utils.data import Sampler

from .balance import EpochDraws


def mixed_language_order(languages: Sequence[str], batch_size: int, seed: int = 0) -> list[int]:
    """A permutation of ``range(len(languages))`` whose consecutive chunks of ``batch_size`` mix languages."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}")
    n = len(languages)
    if n == 0:
        return []
    rng = random.Random(seed)
    by_language: dict[str, list[int]] = defaultdict(list)
    for i, lang in enumerate(languages):
        by_language[lang].append(i)
    m = math.ceil(n / batch_size)
    last = n - (m - 1) * batch_size
    order = sorted(by_language)
    rng.shuffle(order)
    # Languages that fill every batch go first, so the smaller ones follow each other without gaps and
    # their runs tile the batches evenly.
    order.sort(key=lambda lang: len(by_language[lang]) < m)
    sequence: list[int] = []
    for lang in order:
        members = by_language[lang]
        rng.shuffle(members)
        sequence += members
    batches: list[list[int]] = [[] for _ in range(m)]
    deal = (b for slot in range(batch_size) for b in range(m) if slot < (batch_size if b < m - 1 else last))
    for index, b in zip(sequence, deal, strict=True):
        batches[b].append(index)
    full = batches[:-1] if last < batch_size else batches
    rng.shuffle(full)
    if last < batch_size:
        full.append(batches[-1])
    out: list[int] = []
    for batch in full:
        rng.shuffle(batch)
        out += batch
    return out


class MixedLanguageSampler(Sampler[int]):
    """A ``torch`` sampler yielding ``mixed_language_order`` for the current epoch.

    Give the DataLoader the same ``batch_size`` (per device, i.e. the micro-batch). The HF Trainer calls
    ``set_epoch`` at the start of every epoch, so each epoch has a different, reproducible order. With ``draws``
    (label balance) an epoch yields the dataset indices those draws give, repeats included, in mixed batches.
    """

    def __init__(
        self, languages: Sequence[str], batch_size: int, seed: int = 0, draws: EpochDraws | None = None
    ) -> None:
        self.languages = list(languages)
        self.batch_size = batch_size
        self.seed = seed
        self.draws = draws
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __iter__(self) -> Iterator[int]:
        seed = self.seed * 1_000_003 + self.epoch
        if self.draws is None:
            return iter(mixed_language_order(self.languages, self.batch_size, seed))
        drawn = self.draws.indices(seed)
        order = mixed_language_order([self.languages[i] for i in drawn], self.batch_size, seed)
        return iter([drawn[position] for position in order])

    def __len__(self) -> int:
        """Indices per epoch, the same every epoch (the Trainer sizes its schedule from it)."""
        return len(self.languages) if self.draws is None else self.draws.total
