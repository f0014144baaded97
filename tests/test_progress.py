"""Our output has no third-party progress bars, and training logs one plain line per logging step when stderr is
not a terminal (a CI log, nohup) instead of a bar that cannot redraw or transformers' Python dict per step."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest


def _tiny_model() -> object:
    import torch
    from transformers import AutoModelForCausalLM, Qwen2Config

    torch.manual_seed(0)
    config = Qwen2Config(vocab_size=256, hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                         num_attention_heads=2, num_key_value_heads=1)
    return AutoModelForCausalLM.from_config(config)


def test_merge_loads_and_saves_without_a_transformers_bar(tmp_path: Path, qwen2_tokenizer,
                                                         capfd: pytest.CaptureFixture) -> None:
    """export's merge (load the base, save the merged model) and eval's load, as a fresh process runs them: the
    bars transformers draws by default ("Loading weights", "Writing model shards") are not in the output."""
    import torch
    from lingoforge.backends import hf
    from lingoforge.export.merge import merge
    from peft import LoraConfig, get_peft_model
    from transformers.utils import logging

    hook = logging.set_tqdm_hook(None)  # as a fresh process finds it: transformers draws its bars
    try:
        base = tmp_path / "base"
        _tiny_model().save_pretrained(base)
        qwen2_tokenizer.save_pretrained(base)
        assert "Writing model shards" in capfd.readouterr().err  # the bar this test looks for is drawn by default
        lora = get_peft_model(_tiny_model(), LoraConfig(r=2, target_modules=["q_proj", "v_proj"]))
        lora.save_pretrained(tmp_path / "adapter")
        capfd.readouterr()
        merge(str(base), tmp_path / "adapter", tmp_path / "merged")
        hf._load_base(str(tmp_path / "merged"), hf.MERGED, torch.float32, "cpu")
        err = capfd.readouterr().err
        assert (tmp_path / "merged" / "config.json").is_file()
        assert "Writing model shards" not in err and "Loading weights" not in err and "it/s]" not in err, err
    finally:
        logging.set_tqdm_hook(hook)


def test_the_trainer_drops_transformers_dict_printer(tiny_qwen2_dir: Path, qwen2_tokenizer, tmp_path: Path) -> None:
    """Our bar replaces tqdm (``disable_tqdm``), so transformers adds a PrinterCallback that prints each step's logs
    as a Python dict; the trainer lingoforge builds has none."""
    from datasets import Dataset
    from lingoforge.config import TrainConfig
    from lingoforge.runfolder import RunFolder
    from lingoforge.sft_trainer import LingoTrainer
    from lingoforge.trainer import lora_config, sft_config
    from transformers import AutoModelForCausalLM, PrinterCallback

    cfg = TrainConfig(max_steps=1)
    rows = Dataset.from_dict({"input_ids": [[1, 2, 3]], "labels": [[-100, 2, 3]]})
    trainer = LingoTrainer(model=AutoModelForCausalLM.from_pretrained(tiny_qwen2_dir),
                           args=sft_config(cfg, RunFolder(tmp_path / "run"), 1, 1, False),
                           train_dataset=rows, processing_class=qwen2_tokenizer, peft_config=lora_config(cfg),
                           train_languages=["en"], val_by_language={})
    assert trainer.args.disable_tqdm
    assert not [c for c in trainer.callback_handler.callbacks if isinstance(c, PrinterCallback)]


def _state(step: int, max_steps: int = 8) -> SimpleNamespace:
    return SimpleNamespace(global_step=step, max_steps=max_steps, is_world_process_zero=True)


def test_training_off_a_terminal_logs_one_line_per_logging_step(capsys: pytest.CaptureFixture) -> None:
    from lingoforge.sft_trainer import TrainProgress

    progress = TrainProgress()
    progress.on_train_begin(None, _state(0), None)  # pytest's captured stderr is not a terminal
    assert progress.bar is None and progress.lines
    for step, loss in ((2, 2.5), (4, 1.25)):
        progress.on_log(None, _state(step), None, logs={"loss": loss, "num_tokens": 100.0 * step,
                                                        "learning_rate": 1e-4, "grad_norm": 0.5})
    progress.on_log(None, _state(4), None, logs={"eval_loss": 1.5, "eval_loss_en": 1.0, "eval_loss_de": 2.0})
    progress.on_train_end(None, _state(4), None)
    out, err = capsys.readouterr()
    lines = err.splitlines()
    assert out == "" and len(lines) == 3, err
    assert lines[0].startswith("step 2/8  loss 2.5000  ") and lines[0].endswith(" tok/s")
    assert lines[1].startswith("step 4/8  loss 1.2500  ")
    assert lines[2] == "step 4: validation loss 1.5000  (en 1.0000  de 2.0000)"
    assert "{" not in err and "learning_rate" not in err


def test_a_validation_line_carries_the_generated_answers_metric_per_language(capsys: pytest.CaptureFixture) -> None:
    from lingoforge.sft_trainer import TrainProgress

    progress = TrainProgress(metric="category_accuracy")
    progress.on_train_begin(None, _state(0), None)
    progress.on_log(None, _state(4), None, logs={
        "eval_loss": 1.5, "eval_loss_en": 1.0, "eval_loss_de": 2.0, "eval_category_accuracy": 0.625,
        "eval_category_accuracy_en": 0.75, "eval_category_accuracy_de": 0.5, "eval_macro_f1": 0.4, "eval_select": 0.6})
    assert capsys.readouterr().err.splitlines() == [
        "step 4: validation loss 1.5000  (en 1.0000  de 2.0000); category_accuracy 0.62  (en 0.75  de 0.50), "
        "macro-F1 0.40"]


def test_quiet_training_says_nothing(capsys: pytest.CaptureFixture) -> None:
    from lingoforge.sft_trainer import TrainProgress

    progress = TrainProgress(quiet=True)
    progress.on_train_begin(None, _state(0), None)
    progress.on_log(None, _state(2), None, logs={"loss": 2.5, "num_tokens": 200.0})
    progress.on_train_end(None, _state(2), None)
    assert capsys.readouterr() == ("", "") and progress.tokens == 200
