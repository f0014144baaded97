"""Dataset tooling: read user data, check it, split it, order it into mixed-language batches.

- ``io`` / ``convert``: JSONL, CSV, chat ``messages`` and ``key: value`` outputs → task ``Example``s
- ``checks``: what ``data check`` reports (schema, labels, languages, duplicates, balance) and ``--fix``
- ``langid``: batched language identification; ``dedup``: exact and near duplicates (MinHash + LSH)
- ``split``: ``split_dataset``, stratified and leak-free; ``interleave``: the mixed-language sampler
"""
