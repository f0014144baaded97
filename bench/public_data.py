"""Public multilingual classification sets, converted to lingoforge's JSONL and a YAML task.

    python bench/public_data.py xsid   -o runs/public [--per-language 60] [--seed 0] [--from PATH]
    python bench/public_data.py sib200 -o runs/public [--languages en,de,fr] [--max-labels 12]
    python bench/public_data.py sib200 -o runs/public --skew 10   # sib200_skewed.*: labels 10:1 in every language

writes DIR/NAME.jsonl (one ``{"input", "output": {"label"}, "language"}`` record per line) and DIR/NAME.yaml
(a declared task with one enum field, ``label``), and prints the counts per language and label. Sources and
licences: ``bench/README.md`` (Public data sets). Nothing here is committed data: the files are read, in this
order, from

* ``--from PATH``: a bare git directory (what the fetch tool or ``git clone --mirror`` makes), a folder
  holding one (``/work/.mirror/owner+name`` holds ``repo/``), or a plain checkout of the repository;
* the default mirror ``$LINGOFORGE_MIRRORS/owner+name/repo`` (``/work/.mirror`` unless set), when present;
* ``raw.githubusercontent.com`` at the pinned commit, with urllib.

A git source is read at the pinned commit when it has it, else at HEAD (said on stderr).

Sampling (the same for every set): the languages asked for, the ``--max-labels`` labels most frequent over
them (all of them when the set has fewer), then ``--per-language`` examples per language, balanced over
the labels (``N // K`` each, the ``N % K`` extra ones rotating over the labels from language to language),
drawn with ``random.Random(f"{name}:{seed}")``. Both sets are parallel (one source sentence translated into
every language), so each source sentence is used in at most one language: a translation of a test
sentence can never sit in the training split that ``lingoforge data split`` makes. A label whose pool runs
out is topped up from the other labels; only when a language has no unused sentence left is one reused
(both are reported). Labels are kept exactly as the set spells them. A text repeated within a language
is kept once, compared as lingoforge's exact-duplicate check compares texts.

Standard library and pyyaml only.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import unicodedata
import urllib.request
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import yaml

Item = tuple[str, str]  # (text, label)
Pool = dict[str, dict[str, Item]]  # language -> source-sentence key -> item


# -- where the files come from ------------------------------------------------------------------------------


class Source:
    """Reads files of one GitHub repository from a local git dir, a checkout, or the pinned raw URL."""

    def __init__(self, repo: str, commit: str, from_path: str | None = None) -> None:
        self.repo, self.commit = repo, commit
        self.git_dir: Path | None = None
        self.tree: Path | None = None
        self.rev = commit
        path = Path(from_path) if from_path else None
        if path is None:
            default = Path(os.environ.get("LINGOFORGE_MIRRORS", "/work/.mirror")) / repo.replace("/", "+")
            path = default if default.exists() else None
        if path is not None:
            path = path.expanduser()
            if not path.exists():
                raise SystemExit(f"--from {path}: no such file or directory")
            for candidate in (path, path / "repo", path / ".git"):
                if (candidate / "HEAD").is_file() and (candidate / "objects").is_dir():
                    self.git_dir = candidate
                    break
            else:
                self.tree = path
        if self.git_dir is not None:
            known = subprocess.run(["git", f"--git-dir={self.git_dir}", "cat-file", "-e", f"{commit}^{{commit}}"],
                                   capture_output=True)
            if known.returncode != 0:
                self.rev = "HEAD"
                head = self._git("rev-parse", "HEAD").strip()
                print(f"note: {self.git_dir} lacks the pinned commit {commit[:12]}; reading HEAD ({head[:12]})",
                      file=sys.stderr)

    def _git(self, *args: str) -> str:
        done = subprocess.run(["git", f"--git-dir={self.git_dir}", *args], capture_output=True)
        if done.returncode != 0:
            raise SystemExit(f"git {' '.join(args)} in {self.git_dir}: {done.stderr.decode(errors='replace').strip()}")
        return done.stdout.decode("utf-8")

    def describe(self) -> str:
        if self.git_dir is not None:
            return f"git {self.git_dir} @ {self._git('rev-parse', self.rev).strip()}"
        if self.tree is not None:
            return f"folder {self.tree}"
        return f"https://github.com/{self.repo} @ {self.commit}"

    def read(self, path: str) -> str:
        if self.git_dir is not None:
            return self._git("show", f"{self.rev}:{path}")
        if self.tree is not None:
            return (self.tree / path).read_text(encoding="utf-8")
        url = f"https://raw.githubusercontent.com/{self.repo}/{self.commit}/{path}"
        try:
            with urllib.request.urlopen(url, timeout=60) as response:  # noqa: S310 (a fixed https URL)
                return response.read().decode("utf-8")
        except OSError as error:  # URLError, timeouts
            raise SystemExit(f"{url}: {error}; offline? clone https://github.com/{self.repo} and pass --from") \
                from None


# -- the data sets -----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Dataset:
    name: str
    repo: str
    commit: str  # pinned: what the counts in bench/README.md were made from
    languages: dict[str, str]  # ISO 639-1 -> the set's own name for it
    default_languages: tuple[str, ...]
    max_labels: int
    load: Callable[[Source, Sequence[str], dict[str, str]], Pool]
    description: str
    system_prompt: str
    instruction: str  # "{labels}" is replaced by the kept labels


def parse_conll_comments(text: str) -> list[dict[str, str]]:
    """The ``# key = value`` comment lines of each sentence block of an xSID .conll file."""
    blocks = []
    for block in text.replace("\r\n", "\n").split("\n\n"):
        meta = {}
        for line in block.splitlines():
            if line.startswith("# ") and " = " in line:
                key, value = line[2:].split(" = ", 1)
                meta[key.strip()] = value.strip()
        if "intent" in meta and "text" in meta:
            blocks.append(meta)
    return blocks


XSID_DIR = "data/xSID-0.7"


def load_xsid(source: Source, languages: Sequence[str], names: dict[str, str]) -> Pool:
    """xSID 0.7's valid + test files (human translations; its train files are English, or machine-projected
    in older versions). The source-sentence key is the English sentence (``# text-en``; ``# text`` in the
    English files), normalized: xSID repeats short commands ("delete all alarms") many times, and each
    repeat counts as one source sentence, kept once per language (its first translation)."""
    pool: Pool = {}
    for lang in languages:
        items: dict[str, Item] = {}
        for split in ("valid", "test"):
            path = f"{XSID_DIR}/{names[lang]}.{split}.conll"
            for meta in parse_conll_comments(source.read(path)):
                english = meta["text"] if lang == "en" else meta.get("text-en")
                if english is None:
                    raise SystemExit(f"xsid: {path}: a sentence without '# text-en': {meta['text']!r}")
                items.setdefault(_normalized(english), (meta["text"], meta["intent"]))
        pool[lang] = items
    return pool


SIB_DIR = "data/annotated"


def load_sib200(source: Source, languages: Sequence[str], names: dict[str, str]) -> Pool:
    """SIB-200's train + dev + test TSVs (``index_id<TAB>category<TAB>text``); ``index_id`` is the FLORES
    sentence, the same in every language."""
    pool: Pool = {}
    for lang in languages:
        items: dict[str, Item] = {}
        for split in ("train", "dev", "test"):
            lines = source.read(f"{SIB_DIR}/{names[lang]}/{split}.tsv").replace("\r\n", "\n").split("\n")
            if lines[0].split("\t") != ["index_id", "category", "text"]:
                raise SystemExit(f"sib200: {names[lang]}/{split}.tsv: unexpected header {lines[0]!r}")
            for n, line in enumerate(lines[1:], start=2):
                if not line.strip():
                    continue
                parts = line.split("\t")
                if len(parts) != 3:
                    raise SystemExit(f"sib200: {names[lang]}/{split}.tsv:{n}: {len(parts)} columns, expected 3")
                index_id, category, text = parts
                items[index_id] = (text.strip(), category.strip())
        pool[lang] = items
    return pool


DATASETS = {
    "xsid": Dataset(
        name="xsid",
        repo="mainlp/xsid",
        commit="761d926c3f2e9f6bea13192d2f39cec1d04d9777",
        # ja is left out: only the Facebook half of xSID is in Japanese, and its text is word-segmented.
        languages={c: c for c in ("ar", "da", "de", "en", "id", "it", "kk", "lt", "nl", "sr", "tr", "zh")},
        default_languages=("en", "de", "da", "nl", "it", "id", "tr", "zh"),
        max_labels=10,
        load=load_xsid,
        description="xSID 0.7 intent detection (github.com/mainlp/xsid, CC BY-SA 4.0), most frequent intents",
        system_prompt="You detect the intent of requests to a voice assistant, in any language.",
        instruction="Classify the request below and answer with the JSON object only, no other text.\n"
                    "- label: the intent, one of {labels}",
    ),
    "sib200": Dataset(
        name="sib200",
        repo="dadelani/sib-200",
        commit="593cea88519930f776c1a4a1980b6a35b39dca57",
        languages={"en": "eng_Latn", "de": "deu_Latn", "fr": "fra_Latn", "es": "spa_Latn", "pt": "por_Latn",
                   "it": "ita_Latn", "nl": "nld_Latn", "pl": "pol_Latn", "ru": "rus_Cyrl", "uk": "ukr_Cyrl",
                   "tr": "tur_Latn", "ar": "arb_Arab", "hi": "hin_Deva", "zh": "zho_Hans", "ja": "jpn_Jpan",
                   "ko": "kor_Hang", "vi": "vie_Latn", "id": "ind_Latn", "sw": "swh_Latn", "yo": "yor_Latn"},
        default_languages=("en", "de", "es", "fr", "ru", "ja", "hi", "sw"),
        max_labels=12,
        load=load_sib200,
        description="SIB-200 topic classification of FLORES-200 sentences (github.com/dadelani/sib-200, "
                    "CC BY-SA 4.0)",
        system_prompt="You classify the topic of sentences, in any language.",
        instruction="Classify the topic of the sentence below and answer with the JSON object only, no other "
                    "text.\n- label: the topic, one of {labels}",
    ),
}


# -- sampling ----------------------------------------------------------------------------------------------


def _normalized(text: str) -> str:
    """As lingoforge's exact-duplicate check compares texts: NFKC, case-folded, punctuation and spacing ignored."""
    return "".join(ch for ch in unicodedata.normalize("NFKC", text).casefold() if ch.isalnum())


def drop_duplicates(pool: Pool) -> dict[str, int]:
    """Keeps the first of each language's repeated texts (two source sentences translated alike); a text
    given two different labels is dropped altogether. Returns how many went per language."""
    dropped = {}
    for lang, items in pool.items():
        labels_of: dict[str, set[str]] = {}
        for text, label in items.values():
            labels_of.setdefault(_normalized(text), set()).add(label)
        seen: set[str] = set()
        kept = {}
        for key, (text, label) in items.items():
            norm = _normalized(text)
            if norm and norm not in seen and len(labels_of[norm]) == 1:
                kept[key] = (text, label)
            seen.add(norm)
        dropped[lang] = len(items) - len(kept)
        pool[lang] = kept
    return dropped


def most_frequent_labels(pool: Pool, k: int) -> list[str]:
    counts = Counter(label for items in pool.values() for _, label in items.values())
    return [label for label, _ in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))[:k]]


def skewed_quota(labels: Sequence[str], per_language: int, skew: float) -> dict[str, int]:
    """Examples per label in one language when the commonest label outnumbers the rarest ``skew`` to 1: weights fall
    geometrically along ``labels`` (most frequent first), rounded so that they sum to ``per_language``."""
    k = len(labels)
    weights = [skew ** (-i / (k - 1)) if k > 1 else 1.0 for i in range(k)]
    exact = [per_language * w / sum(weights) for w in weights]
    counts = [int(x) for x in exact]
    for i in sorted(range(k), key=lambda i: counts[i] - exact[i])[: per_language - sum(counts)]:
        counts[i] += 1
    return dict(zip(labels, counts, strict=True))


def sample(pool: Pool, labels: Sequence[str], per_language: int, rng: random.Random,
           notes: list[str], skew: float = 1.0) -> dict[str, list[tuple[str, Item]]]:
    """``per_language`` (key, item) pairs per language, balanced over ``labels`` (or skewed, ``skewed_quota``), keys
    disjoint across languages while the pools allow (see the module docstring)."""
    langs = list(pool)
    k = len(labels)
    quota = {}
    for i, lang in enumerate(langs):
        extra = {labels[(i * (per_language % k) + j) % k] for j in range(per_language % k)}
        quota[lang] = ({label: per_language // k + (label in extra) for label in labels} if skew == 1.0
                       else skewed_quota(labels, per_language, skew))
    pools = {}
    for lang in langs:
        for label in labels:
            keys = sorted(key for key, (_, lab) in pool[lang].items() if lab == label)
            rng.shuffle(keys)
            pools[lang, label] = keys
    used: set[str] = set()
    chosen: dict[str, list[str]] = {lang: [] for lang in langs}
    short: dict[str, Counter[str]] = {label: Counter() for label in labels}

    def take(lang: str, label: str, reuse: bool = False) -> bool:
        for key in pools[lang, label]:
            if key not in chosen[lang] and (reuse or key not in used):
                chosen[lang].append(key)
                used.add(key)
                return True
        return False

    # Balanced and disjoint: one pick per language in turn, the order of languages rotating every round.
    for label in labels:
        rounds = max(quota[lang][label] for lang in langs)
        for r in range(rounds):
            for lang in langs[r % len(langs):] + langs[:r % len(langs)]:
                if sum(1 for key in chosen[lang] if pool[lang][key][1] == label) < quota[lang][label]:
                    if not take(lang, label):
                        short[label][lang] += 1
    for label, langs_short in short.items():
        if langs_short:
            notes.append(f"'{label}' ran out of unused sentences (topped up from other labels): "
                         + ", ".join(f"{lang} -{n}" for lang, n in langs_short.items()))
    # Short languages: the labels they have fewest of first (then most unused), reuse as a last resort.
    for lang in langs:
        for reuse in (False, True):
            while len(chosen[lang]) < per_language:
                have = Counter(pool[lang][key][1] for key in chosen[lang])
                spare = sorted(labels, key=lambda lab: (have[lab], -sum(1 for key in pools[lang, lab]
                                                                         if key not in used)))
                if not any(take(lang, label, reuse) for label in spare):
                    break
                if reuse:
                    notes.append(f"{lang}: reused a sentence that another language has too")
        if len(chosen[lang]) < per_language:
            notes.append(f"{lang}: only {len(chosen[lang])} examples with the kept labels")
    out = {}
    for lang in langs:
        keys = sorted(chosen[lang])
        rng.shuffle(keys)
        out[lang] = [(key, pool[lang][key]) for key in keys]
    return out


# -- output ------------------------------------------------------------------------------------------------


def task_yaml(ds: Dataset, languages: Sequence[str], labels: Sequence[str], total_labels: int) -> dict:
    description = f"{ds.description}: {len(labels)} of {total_labels} labels, {len(languages)} languages"
    return {
        "name": ds.name,
        "version": "1",
        "description": description,
        "languages": list(languages),
        "system_prompt": ds.system_prompt,
        "instruction": ds.instruction.replace("{labels}", ", ".join(labels)),
        "fields": {"label": {"type": "enum", "labels": list(labels)}},
    }


class _TaskDumper(yaml.SafeDumper):
    """Short lists in flow style, multi-line strings as literal blocks: a task file people read."""


_TaskDumper.add_representer(list, lambda d, v: d.represent_sequence("tag:yaml.org,2002:seq", v, flow_style=True))
_TaskDumper.add_representer(str, lambda d, v: d.represent_scalar("tag:yaml.org,2002:str", v,
                                                                 style="|" if "\n" in v else None))


def dump_yaml(data: dict) -> str:
    text = yaml.dump(data, Dumper=_TaskDumper, allow_unicode=True, sort_keys=False, width=1000)
    if yaml.safe_load(text) != data:  # never write a file that reads back different
        raise AssertionError("the task YAML does not round-trip")
    return text


def build(name: str, out_dir: Path, per_language: int = 60, seed: int = 0, from_path: str | None = None,
          languages: Sequence[str] | None = None, max_labels: int | None = None, skew: float = 1.0) -> dict:
    ds = DATASETS[name]
    languages = list(languages or ds.default_languages)
    unknown = [lang for lang in languages if lang not in ds.languages]
    if unknown:
        raise SystemExit(f"{name}: no language {unknown[0]!r}; it has {', '.join(sorted(ds.languages))}")
    if len(set(languages)) != len(languages):
        raise SystemExit(f"{name}: a language is named twice in {languages}")
    source = Source(ds.repo, ds.commit, from_path)
    print(f"{name}: reading {source.describe()}")
    pool = ds.load(source, languages, ds.languages)
    dropped = drop_duplicates(pool)
    total_labels = len({label for items in pool.values() for _, label in items.values()})
    labels = most_frequent_labels(pool, max_labels or ds.max_labels)
    kept = {lang: {key: item for key, item in items.items() if item[1] in labels} for lang, items in pool.items()}
    notes: list[str] = []
    sampled = sample(kept, labels, per_language, random.Random(f"{name}:{seed}"), notes, skew)
    if skew != 1.0:  # another task over the same sentences: its own files and name
        ds = replace(ds, name=f"{name}_skewed",
                                 description=f"{ds.description}, label counts skewed {skew:g}:1 in every language")
        name = ds.name

    out_dir.mkdir(parents=True, exist_ok=True)
    jsonl, task_file = out_dir / f"{name}.jsonl", out_dir / f"{name}.yaml"
    with jsonl.open("w", encoding="utf-8") as f:
        for lang in languages:
            for _, (text, label) in sampled[lang]:
                f.write(json.dumps({"input": text, "output": {"label": label}, "language": lang},
                                   ensure_ascii=False) + "\n")
    with task_file.open("w", encoding="utf-8") as f:
        f.write(f"# {name}: made by bench/public_data.py from {source.describe()}\n"
                f"# --per-language {per_language} --seed {seed}" + (f" --skew {skew:g}" if skew != 1.0 else "")
                + "; sources and licences: bench/README.md\n")
        f.write(dump_yaml(task_yaml(ds, languages, labels, total_labels)))

    counts = {lang: Counter(label for _, (_, label) in sampled[lang]) for lang in languages}
    keys = [key for lang in languages for key, _ in sampled[lang]]
    print(f"wrote {jsonl} ({len(keys)} examples) and {task_file}")
    print(f"labels kept: {len(labels)} of {total_labels} (most frequent over {', '.join(languages)})")
    width = max(len(label) for label in labels)
    print(f"{'label':<{width}}  " + " ".join(f"{lang:>3}" for lang in languages) + "  total")
    for label in labels:
        row = [counts[lang][label] for lang in languages]
        print(f"{label:<{width}}  " + " ".join(f"{n:>3}" for n in row) + f"  {sum(row):>5}")
    row = [sum(counts[lang].values()) for lang in languages]
    print(f"{'total':<{width}}  " + " ".join(f"{n:>3}" for n in row) + f"  {sum(row):>5}")
    print("repeated texts dropped before sampling: " + (", ".join(f"{lang} {n}" for lang, n in dropped.items() if n)
                                                        or "none"))
    shared = len(keys) - len(set(keys))
    print(f"source sentences used in more than one language: {shared}")
    for note in dict.fromkeys(notes):
        print(f"note: {note}" + (f" (x{notes.count(note)})" if notes.count(note) > 1 else ""))
    return {"jsonl": str(jsonl), "task": str(task_file), "labels": labels,
            "counts": {lang: dict(c) for lang, c in counts.items()}, "shared": shared}


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("name", choices=sorted(DATASETS))
    parser.add_argument("-o", "--out", required=True, type=Path, help="folder for NAME.jsonl and NAME.yaml")
    parser.add_argument("--per-language", type=int, default=60, help="examples per language (default 60)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--from", dest="from_path", metavar="PATH",
                        help="bare git dir, a folder holding repo/, or a checkout (default: the mirror, else the URL)")
    parser.add_argument("--languages", help="comma-separated ISO 639-1 codes (default: the set's 8)")
    parser.add_argument("--max-labels", type=int, help="keep the K most frequent labels (xsid 10, sib200 all 7)")
    parser.add_argument("--skew", type=float, default=1.0,
                        help="the commonest label outnumbers the rarest R:1 in every language, counts falling "
                             "geometrically (default 1: balanced); writes NAME_skewed.*")
    args = parser.parse_args(argv)
    if args.per_language < 1:
        parser.error("--per-language must be at least 1")
    if args.skew < 1:
        parser.error("--skew must be at least 1")
    languages = [c.strip() for c in args.languages.split(",") if c.strip()] if args.languages else None
    build(args.name, args.out, args.per_language, args.seed, args.from_path, languages, args.max_labels, args.skew)
    return 0


if __name__ == "__main__":
    sys.exit(main())
