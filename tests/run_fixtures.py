"""Run folders shared by every test module that exports, deploys or serves one: a tiny random Qwen2 run and a
SmolLM2-135M run, each a real run folder (run.json, a PEFT adapter with random non-zero LoRA B so the merge
changes the weights, test examples from the support_tickets generator), and their exports.

They live in a plugin (registered in conftest.py) rather than in a test module: a session fixture imported into
several modules is a separate fixture in each, and the SmolLM2 export (about 90 s) was built once per module.
"""

from __future__ import annotations

from pathlib import Path

import pytest

TASK = "support_tickets"


def make_run(root: Path, base_dir: Path, n_test: int = 4, seed: int = 0, b_std: float = 0.02) -> Path:
    """A run folder whose adapter is a random LoRA (r=8, all linear layers) on ``base_dir``."""
    import torch
    from lingoforge import get_task
    from lingoforge.fsutil import write_jsonl
    from lingoforge.runfolder import RunFolder
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_pretrained(str(base_dir), dtype=torch.float32)
    peft_model = get_peft_model(model, LoraConfig(r=8, lora_alpha=16, target_modules="all-linear"))
    with torch.no_grad():
        for name, param in peft_model.named_parameters():
            if "lora_B" in name:
                param.normal_(0.0, b_std)
    peft_model.save_pretrained(str(root / "adapter"))
    AutoTokenizer.from_pretrained(str(base_dir)).save_pretrained(str(root / "adapter"))
    task = get_task(TASK)
    write_jsonl(root / "data" / "test.jsonl", [e.to_record() for e in task.generate(n_test, seed=seed)])
    RunFolder(root).update(task={"name": task.name, "version": task.version}, base={"location": str(base_dir)})
    return root


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory: pytest.TempPathFactory, tiny_qwen2_dir: Path) -> Path:
    return make_run(tmp_path_factory.mktemp("tiny-run"), tiny_qwen2_dir)


@pytest.fixture(scope="session")
def tiny_export(tiny_run: Path) -> dict:
    """The tiny run exported with the default quantization (Q5_K_M)."""
    pytest.importorskip("llama_cpp", reason="export needs llama-cpp-python: pip install 'lingoforge[llamacpp]'")
    from lingoforge.export.pipeline import export_run

    return export_run(tiny_run, parity_n=4, max_new_tokens=48, progress=False)


@pytest.fixture(scope="session")
def smollm2_run(tmp_path_factory: pytest.TempPathFactory, smollm2_dir: Path) -> Path:
    return make_run(tmp_path_factory.mktemp("smollm2-run"), smollm2_dir, n_test=5, b_std=0.002)


@pytest.fixture(scope="session")
def smollm2_export(smollm2_run: Path) -> dict:
    pytest.importorskip("llama_cpp", reason="export needs llama-cpp-python: pip install 'lingoforge[llamacpp]'")
    from lingoforge.export.pipeline import export_run

    # parity on 5 examples x 48 greedy tokens: the random adapter rambles to the token limit, so the default 256
    # cost a minute and a half of the suite for the same comparison over a longer tail
    return export_run(smollm2_run, parity_n=5, max_new_tokens=48, progress=False)
