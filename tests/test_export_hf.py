"""``export --hf``: the merged model as a Hugging Face folder that transformers loads alone, and the vLLM commands
export prints for it (their text only: vLLM is not installed here, so no test starts it on the folder).

The model test reads ``hf/`` with nothing but transformers and requires the greedy tokens of the run itself (the
base with its PEFT adapter applied), decoding with the folder's own generation config (but for its length);
next-token logits show the adapter is in the weights (the untrained tiny model greedily says "\\n" with or without it).
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
from pathlib import Path

import pytest
from lingoforge import get_task
from lingoforge.errors import LingoforgeError
from lingoforge.export.hf_folder import PICKLE_SUFFIXES, greedy_generation_config, vllm_commands, write_hf
from lingoforge.export.modelfile import STOP_TOKENS
from lingoforge.export.pipeline import load_test_examples
from lingoforge.prompts import prompt_messages
from lingoforge.runfolder import RunFolder
from run_fixtures import TASK

# Greedy tokens compared per prompt: the folder's own length (num_predict, 640 here) would take minutes on CPU.
COMPARED_TOKENS = 96

# Qwen2.5-0.5B-Instruct's generation_config.json: it samples, with a repetition penalty.
QWEN_GENERATION = {"bos_token_id": 151643, "do_sample": True, "eos_token_id": [151645, 151643],
                   "pad_token_id": 151643, "repetition_penalty": 1.05, "temperature": 0.7, "top_p": 0.8, "top_k": 20,
                   "transformers_version": "4.37.0"}


def test_greedy_generation_config_drops_sampling_and_saves(tmp_path: Path) -> None:
    from transformers import GenerationConfig

    config = greedy_generation_config(QWEN_GENERATION, [151643, 151645], None, 300)
    assert config == {"do_sample": False, "eos_token_id": [151643, 151645], "max_new_tokens": 300,
                      "bos_token_id": 151643, "pad_token_id": 151643}
    GenerationConfig(**config).save_pretrained(str(tmp_path))  # transformers validates strictly when saving
    loaded = GenerationConfig.from_pretrained(str(tmp_path))
    assert loaded.do_sample is False and loaded.num_beams in (None, 1)
    assert all(getattr(loaded, key) in (None, 1.0) for key in ("temperature", "top_p", "repetition_penalty"))
    assert greedy_generation_config({}, [2], None, 10)["pad_token_id"] == 2  # no pad anywhere: the stop token
    assert greedy_generation_config({"pad_token_id": 0}, [2], 7, 10)["pad_token_id"] == 7  # the tokenizer's wins


def test_vllm_commands_quote_and_size_the_lora_rank() -> None:
    messages = [{"role": "system", "content": "Triage."}, {"role": "user", "content": "It's broken"}]
    lines = vllm_commands(Path("/data/my runs/export"), "acme/tickets:v1", "Qwen/Qwen2.5-0.5B-Instruct", 8,
                          messages, 120)
    assert lines["merged"] == "vllm serve '/data/my runs/export/hf' --served-model-name acme/tickets:v1"
    assert lines["lora"] == ("vllm serve Qwen/Qwen2.5-0.5B-Instruct --enable-lora "
                             "--lora-modules 'acme/tickets:v1=/data/my runs/export/adapter'")
    request = shlex.split(lines["request"])
    assert request[:3] == ["curl", "-s", "http://localhost:8000/v1/chat/completions"]
    assert json.loads(request[-1]) == {"model": "acme/tickets:v1", "messages": messages, "temperature": 0,
                                       "max_tokens": 120}
    ranks = {r: vllm_commands(Path("/e"), "t", "b", r, messages, 1)["lora"] for r in (16, 24, 64)}
    assert "--max-lora-rank" not in ranks[16]  # vLLM's default takes up to 16
    assert ranks[24].endswith("--max-lora-rank 32") and ranks[64].endswith("--max-lora-rank 64")


@pytest.mark.slow
def test_hf_folder_loads_alone_and_generates_the_runs_greedy_tokens(
        tiny_run: Path, tiny_qwen2_dir: Path, tiny_export: dict, tmp_path: Path) -> None:
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer, GenerationConfig

    run = tmp_path / "run"
    shutil.copytree(tiny_run, run)
    manifest_path = run / "export" / "export.json"
    manifest_path.write_text(json.dumps({**json.loads(manifest_path.read_text()), "run_dir": str(run)}))
    # What training leaves beside the adapter must not be published: checkpoints, pickled arguments.
    (run / "adapter" / "checkpoints" / "checkpoint-2").mkdir(parents=True)
    (run / "adapter" / "checkpoints" / "checkpoint-2" / "optimizer.pt").write_bytes(b"pickle")
    (run / "adapter" / "training_args.bin").write_bytes(b"pickle")

    record = write_hf(run / "export", "lf-tiny")
    export = run / "export"
    hf, adapter = export / "hf", export / "adapter"
    assert json.loads(manifest_path.read_text())["hf"] == record
    assert record["lora_rank"] == 8 and record["base"] == str(tiny_qwen2_dir)
    assert {"config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json",
            "generation_config.json"} <= {p.name for p in hf.iterdir()}
    assert os.path.samefile(hf / "model.safetensors", export / "merged" / "model.safetensors")  # merged once
    assert sorted(p.name for p in adapter.iterdir() if p.name.startswith("adapter_")) == \
        ["adapter_config.json", "adapter_model.safetensors"]
    assert (adapter / "adapter_model.safetensors").read_bytes() == \
        (run / "adapter" / "adapter_model.safetensors").read_bytes()
    published = [p for folder in (hf, adapter) for p in folder.rglob("*")]
    assert not [p for p in published if p.is_dir() or p.suffix in PICKLE_SUFFIXES]

    tokenizer = AutoTokenizer.from_pretrained(str(hf))
    model = AutoModelForCausalLM.from_pretrained(str(hf), dtype=torch.float32).eval()
    generation = GenerationConfig.from_pretrained(str(hf))
    vocab = tokenizer.get_vocab()
    assert generation.do_sample is False and vocab["<|im_end|>"] in generation.eos_token_id
    assert generation.max_new_tokens == tiny_export["serving"]["parameters"]["num_predict"]
    assert model.dtype == torch.float32 and json.loads((hf / "config.json").read_text())["dtype"] == "float16"

    base = AutoModelForCausalLM.from_pretrained(str(tiny_qwen2_dir), dtype=torch.float32)
    trained = PeftModel.from_pretrained(base, str(tiny_run / "adapter")).eval()
    trained_tokenizer = AutoTokenizer.from_pretrained(str(tiny_run / "adapter"))
    greedy = GenerationConfig(do_sample=False, max_new_tokens=COMPARED_TOKENS,
                              eos_token_id=[vocab[t] for t in STOP_TOKENS], pad_token_id=vocab["<|endoftext|>"])
    task = get_task(TASK)
    for example in load_test_examples(RunFolder(tiny_run), 2):
        messages = prompt_messages(task, example.input, example.instruction)
        text = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        assert text == trained_tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        ids = torch.tensor([tokenizer(text, add_special_tokens=False)["input_ids"]])
        with torch.no_grad():
            # All but the length from the folder's generation config: greedy, its stop and pad tokens.
            ours = model.generate(ids, max_new_tokens=COMPARED_TOKENS)[0, ids.shape[1]:].tolist()
            runs = trained.generate(input_ids=ids, generation_config=greedy)[0, ids.shape[1]:].tolist()
            assert ours == runs and ours
            logits = model(ids).logits[0, -1]
            expected = trained(input_ids=ids).logits[0, -1]
            with trained.disable_adapter():
                without = trained(input_ids=ids).logits[0, -1]
        drift = float((logits - expected).abs().max())
        assert drift < 1e-2 * float(expected.max() - expected.min())  # float16 weights, same model
        assert float((without - expected).abs().max()) > 10 * drift  # the adapter is merged in

    # A merged folder holding pickles is refused, and the published folders stay as they were.
    (export / "merged" / "pytorch_model.bin").write_bytes(b"pickle")
    with pytest.raises(LingoforgeError, match=r"holds pickle files \(pytorch_model.bin\)"):
        write_hf(export, "lf-tiny")
    assert os.path.samefile(hf / "model.safetensors", export / "merged" / "model.safetensors")
