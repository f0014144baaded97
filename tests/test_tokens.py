"""Token report on the real Qwen2 tokenizer: exact counts, per-language numbers, the recommendation."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner
from lingoforge.commands.tokens import tokens
from lingoforge.errors import LingoforgeError
from lingoforge.prompts import example_messages
from lingoforge.task import Example, Task
from lingoforge.tokens import count_tokens, gguf_context_length, load_tokenizer, recommend_max_seq_length, token_report

SCHEMA = {
    "type": "object",
    "properties": {"category": {"type": "string", "enum": ["shipping", "billing"]}},
    "required": ["category"],
}
TASK = Task(
    name="tickets",
    version="1",
    description="",
    languages=("en", "zh", "hi"),
    system_prompt="You triage support tickets.",
    instruction="Classify the ticket.",
    output_schema=SCHEMA,
    scorer=lambda p, g: {},
    primary_metric="category_accuracy",
    fields=("category",),
)
TEXTS = {
    "en": [
        "My parcel arrived broken and the box was open.",
        "I was charged twice for the same subscription this month.",
        "Where is my order? It has been two weeks.",
    ],
    "zh": [
        "我的包裹到的时候已经损坏，箱子也被打开了。",
        "这个月同一个订阅被扣了两次钱。",
        "我的订单在哪里？已经两个星期了。",
    ],
    "hi": [
        "मेरा पार्सल टूटा हुआ आया और डिब्बा खुला था।",
        "इस महीने एक ही सदस्यता के लिए दो बार पैसे कटे।",
        "मेरा ऑर्डर कहाँ है? दो हफ्ते हो गए।",
    ],
}
EXAMPLES = [Example("", t, {"category": "shipping"}, lang) for lang, texts in TEXTS.items() for t in texts]


@pytest.fixture(scope="module")
def qwen2(qwen2_vocab: Path) -> str:
    """The Qwen2 GGUF path; the first load converts and caches it (about a minute once per machine)."""
    load_tokenizer(str(qwen2_vocab))
    return str(qwen2_vocab)


def test_batched_counts_equal_apply_chat_template(qwen2: str) -> None:
    tok = load_tokenizer(qwen2)
    sequence = count_tokens(tok, TASK, EXAMPLES * 3)  # repeated pieces are counted from the cache
    for example, n in zip(EXAMPLES * 3, sequence, strict=True):
        ids = tok.apply_chat_template(example_messages(TASK, example), tokenize=True)
        ids = ids["input_ids"] if hasattr(ids, "keys") else ids  # transformers 5 returns a BatchEncoding
        assert n == len(ids)


def test_input_ratios_are_exact_on_small_data(qwen2: str) -> None:
    tok = load_tokenizer(qwen2)
    report = token_report(EXAMPLES, TASK, qwen2)
    for lang, texts in TEXTS.items():
        tokens_ = sum(len(tok(t, add_special_tokens=False)["input_ids"]) for t in texts)
        assert report["languages"][lang]["tokens_per_char"] == round(tokens_ / sum(len(t) for t in texts), 3)
        assert report["languages"][lang]["ratio_sample"] == 3


def test_report_per_language(qwen2: str) -> None:
    report = token_report(EXAMPLES, TASK, qwen2)
    langs = report["languages"]
    assert set(langs) == {"en", "hi", "zh"}
    for stats in langs.values():
        assert stats["examples"] == 3 and stats["p50"] <= stats["p95"] <= stats["max"] and stats["mean"] <= stats["max"]
    # Qwen2 spends far more tokens per character on Hindi than on English (0.93 vs 0.21 on Flores).
    assert langs["hi"]["tokens_per_char"] > 2 * langs["en"]["tokens_per_char"]
    assert langs["zh"]["tokens_per_word"] is None and langs["en"]["tokens_per_word"] > 1
    longest = max(s["max"] for s in langs.values())
    assert report["most_verbose_language"] == max(langs, key=lambda k: langs[k]["max"])
    assert report["max_seq_length"] == recommend_max_seq_length(longest, report["context_length"])
    assert report["max_seq_length"] % 64 == 0 and report["max_seq_length"] >= longest * 1.2
    assert report["num_ctx"] == report["max_seq_length"] and report["context_length"] == 32768
    assert report["truncated"] == {"en": 0, "hi": 0, "zh": 0}


def test_truncation_counts_and_percentile(qwen2: str) -> None:
    assert token_report(EXAMPLES, TASK, qwen2, max_len=1)["truncated"] == {"en": 3, "hi": 3, "zh": 3}
    sequence = count_tokens(load_tokenizer(qwen2), TASK, EXAMPLES)
    hindi = sorted(int(n) for n, e in zip(sequence, EXAMPLES, strict=True) if e.language == "hi")
    cut = token_report(EXAMPLES, TASK, qwen2, max_len=hindi[1])
    assert cut["truncated"]["hi"] == sum(n > hindi[1] for n in hindi) and cut["max_len"] == hindi[1]
    median = token_report(EXAMPLES, TASK, qwen2, percentile=50)
    p50s = {lang: s["p50"] for lang, s in median["languages"].items()}
    assert median["basis"] == "p50" and median["most_verbose_language"] == max(p50s, key=p50s.get)
    assert median["max_seq_length"] == recommend_max_seq_length(max(p50s.values()), 32768)


def test_recommendation_rounding_and_cap() -> None:
    assert recommend_max_seq_length(100, None) == 128  # 120 → 128
    assert recommend_max_seq_length(160, None) == 192  # 192 exactly
    assert recommend_max_seq_length(10, None) == 64
    assert recommend_max_seq_length(30_000, 32_768) == 32_768


def test_gguf_context_length_reads_only_the_header(qwen2_vocab: Path) -> None:
    assert gguf_context_length(qwen2_vocab) == 32768
    llama3 = qwen2_vocab.parent / "llama3-vocab.gguf"
    if llama3.is_file():
        assert gguf_context_length(llama3) == 8192


def test_bad_tokenizer_and_options() -> None:
    with pytest.raises(LingoforgeError, match="does not exist"):
        load_tokenizer("/nonexistent/tok.gguf")
    with pytest.raises(LingoforgeError, match="percentile"):
        token_report(EXAMPLES, TASK, "unused", percentile=0)
    with pytest.raises(LingoforgeError, match="no examples"):
        token_report([], TASK, "unused")


def test_cli_json_and_table(qwen2: str, tmp_path: Path) -> None:
    path = tmp_path / "d.jsonl"
    path.write_text(
        "\n".join(json.dumps(e.to_record(), ensure_ascii=False) for e in EXAMPLES) + "\n{broken\n", encoding="utf-8"
    )
    result = CliRunner().invoke(tokens, [str(path), "--tokenizer", qwen2, "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    assert report["skipped_lines"] == 1 and report["examples"] == 9 and report["task"] == "untyped"
    table = CliRunner().invoke(tokens, [str(path), "--tokenizer", qwen2, "--max-len", "40"])
    assert table.exit_code == 0 and "max_seq_length" in table.output and "no --task" in table.output


@pytest.mark.slow
def test_compare_with_llama3(qwen2: str, qwen2_vocab: Path) -> None:
    llama3 = qwen2_vocab.parent / "llama3-vocab.gguf"
    if not llama3.is_file():
        pytest.skip(f"needs {llama3}")
    report = token_report(EXAMPLES, TASK, qwen2, compare=str(llama3))
    ratios = report["compare"]["languages"]
    # Llama 3 is cheaper on Hindi and dearer on Chinese than Qwen2 (0.52 vs 0.93, 0.80 vs 0.64 tokens/char on Flores).
    assert ratios["hi"]["input_ratio"] < 0.8 and ratios["zh"]["input_ratio"] > 1.05
    assert 0.8 < ratios["en"]["input_ratio"] < 1.2
