"""Export of a tiny Qwen2 run (real Qwen2 tokenizer) and of SmolLM2-135M: GGUF loads in llama.cpp, F16 parity holds.

The run fixtures (``run_fixtures.py``) build a real run folder once per session for every module that uses them.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from run_fixtures import TASK


def test_tiny_qwen2_export_parity_and_files(tiny_run: Path, tiny_export: dict) -> None:
    from llama_cpp import Llama

    out = tiny_run / "export"
    parity = json.loads((out / "parity.json").read_text())
    assert parity["f16_parity"] is True and parity["failures"] == []
    assert parity["compared_tokens"] > 0 and parity["max_logit_drift"] < 1e-2
    assert set(parity["accuracy"]) == {json.loads(line)["language"] for line in (tiny_run / "data/test.jsonl").open()}
    for name in ("model-f16.gguf", "model-q5_k_m.gguf"):
        llm = Llama(model_path=str(out / name), n_ctx=256, verbose=False)
        assert llm.n_vocab() == 151936
        llm.close()
    # 64-wide rows are not divisible by 256: every K-quant matrix falls back, and the report says so.
    assert tiny_export["quantization"]["fallbacks"]
    assert all(f["type"] not in ("Q5_K", "Q6_K") for f in tiny_export["quantization"]["fallbacks"])
    assert tiny_export["model_file"] == "model-q5_k_m.gguf"
    run = json.loads((tiny_run / "run.json").read_text())
    assert run["export"]["f16_parity"] is True


def test_tiny_qwen2_modelfile(tiny_run: Path, tiny_export: dict) -> None:
    from lingoforge import get_task

    text = (tiny_run / "export" / "Modelfile").read_text()
    lines = text.splitlines()
    assert lines[0] == "FROM ./model-q5_k_m.gguf"
    assert f'SYSTEM """{get_task(TASK).system_prompt}"""' in text
    assert 'PARAMETER stop "<|im_end|>"' in lines and 'PARAMETER stop "<|endoftext|>"' in lines
    assert "PARAMETER temperature 0" in lines
    assert "PARAMETER num_ctx 2048" in lines  # no token report in this run: the documented default
    assert tiny_export["num_ctx_source"].startswith("default")


def test_merge_changed_the_weights(tiny_run: Path, tiny_qwen2_dir: Path, tiny_export: dict) -> None:
    """The random LoRA B is non-zero, so a merge that silently did nothing would be caught here."""
    from safetensors import safe_open

    name = "model.layers.0.self_attn.q_proj.weight"
    with safe_open(str(tiny_qwen2_dir / "model.safetensors"), "pt") as a, \
            safe_open(str(tiny_run / "export/merged/model.safetensors"), "pt") as b:
        assert (a.get_tensor(name).float() - b.get_tensor(name).float()).abs().max() > 1e-3


def test_parity_reports_where_a_wrong_gguf_diverges(tiny_run: Path, tiny_qwen2_dir: Path, tiny_export: dict,
                                                    tmp_path: Path) -> None:
    """The base model's GGUF (adapter not merged) must fail parity against the merged HF model, with a location."""
    from lingoforge import get_task
    from lingoforge.export.gguf import convert
    from lingoforge.export.parity import GGUFModel, HFReference, check_f16, conversations_for
    from lingoforge.export.pipeline import load_test_examples
    from lingoforge.runfolder import RunFolder

    wrong = convert(tiny_qwen2_dir, tmp_path / "base.gguf", progress=False).path
    examples = load_test_examples(RunFolder(tiny_run), 4)
    hf = HFReference(tiny_run / "export" / "merged")
    gguf = GGUFModel(wrong, n_ctx=512)
    result, _ = check_f16(hf, gguf, conversations_for(get_task(TASK), examples), max_new_tokens=16)
    gguf.close()
    assert result.failures, "a GGUF without the adapter must not pass parity"
    # The untrained tiny model greedily says "\n" with or without the adapter: only the logits tell.
    first = result.failures[0]
    assert first.kind == "logits" and first.margin > 0.01
    assert f"example {first.example}, generated token {first.position}: next-token logits differ" in str(first)


def test_adapter_only_gguf_lora_loads_and_matches(tiny_run: Path, tmp_path: Path) -> None:
    pytest.importorskip("llama_cpp")
    from gguf import GGUFReader
    from lingoforge.export.pipeline import export_run

    out = tmp_path / "adapter-export"
    manifest = export_run(tiny_run, out, quant="q8_0", parity_n=2, adapter_only=True, max_new_tokens=32,
                          progress=False)
    reader = GGUFReader(str(out / "adapter-lora.gguf"))
    assert reader.fields["general.type"].contents() == "adapter"
    assert reader.fields["adapter.type"].contents() == "lora"
    assert reader.fields["adapter.lora.alpha"].contents() == pytest.approx(16.0)
    names = {t.name for t in reader.tensors}
    assert {"blk.0.attn_q.weight.lora_a", "blk.0.attn_q.weight.lora_b", "blk.1.ffn_down.weight.lora_b"} <= names
    assert manifest["adapter_file"] == "adapter-lora.gguf"
    modelfile = (out / "Modelfile").read_text().splitlines()
    assert modelfile[:2] == ["FROM ./base-q8_0.gguf", "ADAPTER ./adapter-lora.gguf"]
    assert json.loads((out / "parity.json").read_text())["f16_parity"] is True


def test_export_cli(tiny_run: Path, tmp_path: Path) -> None:
    pytest.importorskip("llama_cpp")
    from click.testing import CliRunner
    from lingoforge.cli import cli

    run = tmp_path / "run"
    shutil.copytree(tiny_run, run, ignore=shutil.ignore_patterns("export"))
    (run / "data" / "tokens.json").write_text(json.dumps({"num_ctx": 1024}))
    result = CliRunner().invoke(cli, ["export", str(run), "--quant", "q8_0", "--parity-n", "1"])
    assert result.exit_code == 0, result.output
    assert "F16 parity: 1 examples" in result.output
    assert "PARAMETER num_ctx 1024" in (run / "export" / "Modelfile").read_text()
    bad = CliRunner().invoke(cli, ["export", str(run), "--quant", "q3"])
    assert bad.exit_code != 0 and "q5_k_m" in bad.output


@pytest.mark.slow
def test_smollm2_export_parity(smollm2_run: Path, smollm2_export: dict) -> None:
    from llama_cpp import Llama

    parity = json.loads((smollm2_run / "export" / "parity.json").read_text())
    assert parity["f16_parity"] is True, parity["failures"]
    assert parity["compared_tokens"] >= 5
    llm = Llama(model_path=str(smollm2_run / "export" / "model-q5_k_m.gguf"), n_ctx=256, verbose=False)
    assert llm.n_vocab() == 49152
    llm.close()
    # 576-wide rows are not divisible by 256 either: SmolLM2's matrices fall back too.
    assert smollm2_export["quantization"]["fallbacks"]
