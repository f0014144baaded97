"""Real training on CPU: tiny Qwen2 QLoRA, kill -9 and resume, full disk, two-process DDP (SmolLM2-135M trains in
test_own_data_deployed.py, whose run checks that the loss fell and the adapter moved)."""

from __future__ import annotations

import errno
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import pytest
from lingoforge.checkpoints import CheckpointWriteError, complete_checkpoints
from lingoforge.config import TrainConfig
from lingoforge.train import train
from test_train import tiny_examples, tiny_task

pytestmark = pytest.mark.slow
TESTS = Path(__file__).resolve().parent


def weight_watcher() -> Any:
    """A callback snapshotting base and LoRA weights at train begin and comparing them at train end."""
    import torch
    from transformers import TrainerCallback

    class Watcher(TrainerCallback):
        def on_train_begin(self, args: Any, state: Any, control: Any, model: Any = None, **kwargs: Any) -> None:
            self.before = {n: p.detach().clone() for n, p in model.named_parameters()}

        def on_train_end(self, args: Any, state: Any, control: Any, model: Any = None, **kwargs: Any) -> None:
            after = dict(model.named_parameters())
            self.changed = {n for n, p in self.before.items() if not torch.equal(p, after[n].detach())}
            self.lora = {n for n in self.before if "lora_" in n}
            self.quantized = any(type(p).__name__ == "Params4bit" for p in after.values())

    return Watcher()


def test_tiny_qwen2_qlora_on_cpu(tiny_qwen2_dir: Path, tmp_path: Path) -> None:
    watcher = weight_watcher()
    out = tmp_path / "run"
    result = train(
        tiny_task(),
        tiny_examples(32),
        tiny_examples(8, seed=1),
        str(tiny_qwen2_dir),
        out,
        TrainConfig(load_in_4bit=True, lr=5e-3, max_steps=8, save_steps=4),
        quiet=True,
        callbacks=[watcher],
    )

    losses = [h["loss"] for h in result.history if "loss" in h]
    evals = [h["eval_loss"] for h in result.history if "eval_loss" in h]
    assert len(losses) == 8 and sum(losses[-3:]) / 3 < sum(losses[:3]) / 3
    assert evals[-1] < evals[0]
    assert watcher.quantized, "the base model should be 4-bit NF4"
    assert watcher.lora and watcher.lora <= watcher.changed | {n for n in watcher.lora if "lora_A" in n}
    assert any("lora_B" in n for n in watcher.changed)
    assert watcher.changed <= watcher.lora, f"base weights changed: {sorted(watcher.changed - watcher.lora)[:3]}"

    adapter = out / "adapter"
    assert {"adapter_model.safetensors", "adapter_config.json", "tokenizer_config.json", "chat_template.jinja"} <= {
        p.name for p in adapter.iterdir()
    }
    from safetensors import safe_open

    with safe_open(str(adapter / "adapter_model.safetensors"), "pt") as fh:
        assert fh.keys() and all("lora_" in k for k in fh.keys())
    run = json.loads((out / "run.json").read_text())
    t = run["train"]
    assert t["status"] == "done" and t["config"]["load_in_4bit"] is True and t["steps"] == 8
    assert set(t["eval_loss_by_language"]) == {"en", "de", "fr", "zh"}
    assert t["tokens_by_language"]["train"]["zh"]["trainable_tokens"] > 0
    assert run["chat_template"] and "<|im_end|>" in run["chat_template"]
    assert {"torch", "transformers", "peft", "trl", "bitsandbytes"} <= set(t["versions"])
    assert t["timings"]["tokens_per_second"] > 0 and len(t["data_sha256"]["train"]) == 64
    assert run["base"]["location"] == str(tiny_qwen2_dir)


def _train_script(tmp_path: Path, model: Path, out: Path, resume: bool, hold_at: int | None = None) -> Path:
    """A script training the tiny task for 8 steps, checkpointing every 2. ``hold_at``: once the checkpoint of that
    step is complete, the process waits forever (for the test's kill), so a kill can never come too late."""
    script = tmp_path / f"train_{out.name}_{int(resume)}.py"
    hold = "" if hold_at is None else f"""
        import threading
        from lingoforge.sft_trainer import LingoTrainer
        save = LingoTrainer._save_checkpoint
        def save_then_hold(self, model, trial):
            save(self, model, trial)
            if self.state.global_step >= {hold_at}:
                threading.Event().wait()
        LingoTrainer._save_checkpoint = save_then_hold
    """
    script.write_text(
        textwrap.dedent(f"""
        import sys
        sys.path.insert(0, {str(TESTS)!r})
        from lingoforge.config import TrainConfig
        from lingoforge.train import train
        from test_train import tiny_examples, tiny_task
    """) + textwrap.dedent(hold) + textwrap.dedent(f"""
        train(tiny_task(), tiny_examples(32), tiny_examples(8, seed=1), {str(model)!r}, {str(out)!r},
              TrainConfig(lr=5e-3, max_steps=8, save_steps=2, save_total_limit=3), resume={resume}, quiet=False)
    """)
    )
    return script


def _final(out: Path) -> tuple[float, float, dict[str, Any]]:
    """The training loss at the last step, the adapter's validation loss and why training stopped."""
    train_section = json.loads((out / "run.json").read_text())["train"]
    history = train_section["history"]
    last_loss = [h["loss"] for h in history if "loss" in h and h.get("step") == train_section["steps"]]
    return last_loss[-1], train_section["best_eval_loss"], train_section["stopped"]


def test_kill_9_then_resume_starts_at_the_checkpoint_and_reaches_the_same_loss(
        tiny_qwen2_dir: Path, tmp_path: Path) -> None:
    """The first process is killed while held after its step-4 checkpoint (the test waits for that checkpoint to be
    complete, not for a time); the second must start at step 4, as run.json and its log say, and end where an
    uninterrupted run ends, early stopping included (its count is read from the history the checkpoint carries).
    Training is deterministic, so the loss alone cannot tell a resume from a restart: the start step does."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    straight = tmp_path / "straight"
    subprocess.run(
        [sys.executable, _train_script(tmp_path, tiny_qwen2_dir, straight, False)],
        check=True,
        env=env,
        capture_output=True,
        timeout=900,
    )
    assert json.loads((straight / "run.json").read_text())["train"]["started_at_step"] == 0

    killed = tmp_path / "killed"
    proc = subprocess.Popen(
        [sys.executable, _train_script(tmp_path, tiny_qwen2_dir, killed, False, hold_at=4)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.time() + 600
    while time.time() < deadline and proc.poll() is None:
        done = complete_checkpoints(killed / "adapter" / "checkpoints")
        if done and done[-1].name == "checkpoint-4":
            break
        time.sleep(0.2)
    assert proc.poll() is None, f"the first training exited ({proc.returncode}) before its step-4 checkpoint"
    assert [p.name for p in complete_checkpoints(killed / "adapter" / "checkpoints")][-1] == "checkpoint-4"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not (killed / "adapter" / "adapter_model.safetensors").exists()
    assert json.loads((killed / "run.json").read_text())["train"]["status"] == "running"

    resumed = subprocess.run(
        [sys.executable, _train_script(tmp_path, tiny_qwen2_dir, killed, True)],
        check=True,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert "resuming from checkpoint-4" in resumed.stderr, resumed.stderr[-2000:]
    record = json.loads((killed / "run.json").read_text())["train"]
    straight_steps = json.loads((straight / "run.json").read_text())["train"]["steps"]
    assert (record["status"], record["started_at_step"], record["steps"]) == ("done", 4, straight_steps)
    (loss_a, eval_a, stopped_a), (loss_b, eval_b, stopped_b) = _final(straight), _final(killed)
    assert loss_b == pytest.approx(loss_a, rel=1e-3)
    assert eval_b == pytest.approx(eval_a, rel=1e-3)
    assert stopped_b == stopped_a


def test_full_disk_on_checkpoint_write_leaves_nothing_half_written(
    tiny_qwen2_dir: Path, tmp_path: Path, monkeypatch
) -> None:
    from transformers import Trainer

    def disk_full(self: Any, output_dir: str) -> None:
        Path(output_dir, "optimizer.pt").write_bytes(b"partial")
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(Trainer, "_save_optimizer_and_scheduler", disk_full)
    out = tmp_path / "run"
    with pytest.raises(CheckpointWriteError) as err:
        train(
            tiny_task(),
            tiny_examples(16),
            tiny_examples(4, seed=1),
            str(tiny_qwen2_dir),
            out,
            TrainConfig(max_steps=2, save_steps=1),
            quiet=True,
        )
    assert (
        "No space left on device" in str(err.value)
        and "free some disk space" in str(err.value)
        and "--resume" in str(err.value)
    )
    assert not list((out / "adapter" / "checkpoints").glob("checkpoint-*"))
    assert not (out / "adapter" / "adapter_model.safetensors").exists()
    assert json.loads((out / "run.json").read_text())["train"]["status"] == "failed"


def _free_port() -> int:
    """A TCP port nothing listens on now (the OS picks it), so two test runs on one machine never share one."""
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_two_cpu_processes_ddp_gloo(tiny_qwen2_dir: Path, tmp_path: Path) -> None:
    """``torchrun --nproc_per_node 2`` (what ``accelerate launch`` does) on CPU: gloo, one adapter, one run.json."""
    out = tmp_path / "ddp"
    script = tmp_path / "ddp.py"
    script.write_text(
        textwrap.dedent(f"""
        import sys
        sys.path.insert(0, {str(TESTS)!r})
        from lingoforge.config import TrainConfig
        from lingoforge.train import train
        from test_train import tiny_examples, tiny_task
        r = train(tiny_task(), tiny_examples(32), tiny_examples(8, seed=1), {str(tiny_qwen2_dir)!r}, {str(out)!r},
                  TrainConfig(lr=5e-3, max_steps=3, save_steps=3, batch_size=2), quiet=True)
        import torch.distributed as dist
        print("RANK", dist.get_rank(), "WORLD", dist.get_world_size(), "BACKEND", dist.get_backend(), "STEPS", r.steps)
    """)
    )
    proc = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", str(_free_port()),
         str(script)],
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "RANK 0 WORLD 2 BACKEND gloo STEPS 3" in proc.stdout and "RANK 1 WORLD 2 BACKEND gloo STEPS 3" in proc.stdout
    run = json.loads((out / "run.json").read_text())["train"]
    assert run["status"] == "done" and (out / "adapter" / "adapter_model.safetensors").is_file()


def test_cli_trains_from_one_file_and_holds_out_validation(tiny_qwen2_dir: Path, tmp_path: Path, monkeypatch) -> None:
    import lingoforge.plugins
    from click.testing import CliRunner
    from lingoforge.cli import cli

    monkeypatch.setattr(lingoforge.plugins, "get_task", lambda name: tiny_task())
    data = tmp_path / "all.jsonl"
    data.write_text("".join(json.dumps(e.to_record()) + "\n" for e in tiny_examples(40)))
    config = tmp_path / "cfg.yaml"
    config.write_text("lr: 0.005\nsave_steps: 2\nrank: 16\n")
    out = tmp_path / "run"
    args = [
        "train",
        "mini_tickets",
        "--data",
        str(data),
        "--base",
        str(tiny_qwen2_dir),
        "-o",
        str(out),
        "--config",
        str(config),
    ]
    result = CliRunner().invoke(cli, [*args, "--max-steps", "2", "--rank", "8", "--quiet"])
    assert result.exit_code == 0, result.output
    assert "adapter:" in result.output and "validation loss" in result.output
    assert "adapter: the checkpoint of step 2, validation exact" in result.output
    run = json.loads((out / "run.json").read_text())["train"]
    assert (run["config"]["rank"], run["config"]["lr"], run["config"]["save_steps"]) == (8, 0.005, 2)
    assert run["data_sources"]["train+val"]["sha256"] and (out / "data" / "val.jsonl").is_file()
    assert run["examples"]["train"] + run["examples"]["val"] == 40
