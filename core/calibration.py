"""Measured training step times by device class, and the step-time parameters chosen to reproduce them.

Why a table: peak bf16 TFLOP/s x a fixed 30% utilisation told a user 16 s per epoch for a QLoRA run of a 7B model
that took 81 s on an H100 (issue 15). A step costs a fixed part, paid on every pass over the layers whatever the
batch (a 4-bit base dequantizes each weight, and thousands of small LoRA kernels are launched), plus a part
proportional to the tokens the step computes. ``lingoforge.plan`` models exactly that, with two parameters per
device class; each class lists the measurements its parameters were chosen on, ``plan`` prints them ("calibrated
on: ..."), and ``tests/test_plan.py`` recomputes every measurement below and asserts the plan is within 30% of it.

Tokens computed are not the examples' tokens: lingoforge computes the prompt prefix a micro-batch shares once
(``lingoforge.shared_prefix``), so a micro-batch of 16 support tickets computes far fewer tokens than 16 x 310.
That is why micro-batch 16 cost no more per step than micro-batch 4 on the H100, while the benchmark's random
rows, which share nothing, cost 1.1 s for about as many tokens. The figures are data, not fitted at import: change
a parameter or add a measurement and the test says whether the table still holds.

How the parameters were chosen: least squares on log(planned / measured), one term per measurement, rounded. On the
H100 that gives 7.8 ms per layer pass and 600 effective TFLOP/s; the model cannot make micro-batch 16 faster than
micro-batch 4 (as measured: 0.66 against 0.81 s), so it lands 13% under the one and 20% over the other. On the CPU
each precision has one measurement, so one parameter is set: fp32's fixed part is taken as 1 ms per layer pass
(kernel launches; the CPU is busy computing) and its rate fitted; NF4 keeps that rate and the fixed part, which
is where dequantizing each weight on every pass lands, is fitted.
"""

from __future__ import annotations

from dataclasses import dataclass

H100_SOURCE = (
    "issue 15: one H100 80GB, random Qwen2.5-7B-shaped model, real tokenizer, QLoRA r32 NF4 double "
    "quantization, trl SFTTrainer, steady steps (median after step 3)"
)
CPU_SOURCE = (
    "bench/results/train_cpu.json (bench/bench_train.py): 2-core x86-64 (AMD EPYC, AVX2), 2 torch "
    "threads, load average 0.9-1.9 before and after, SmolLM2-135M LoRA r32, steps 2-8"
)


@dataclass(frozen=True)
class Measurement:
    """One measured training run: its settings and what it measured (``None``: not measured)."""

    what: str
    model: str  # a preset: the shape the FLOPs are counted on
    batch_size: int
    mean_tokens: float  # tokens per example
    prefix_tokens: float  # tokens a micro-batch shares and computes once; 0 when the rows share none
    gradient_checkpointing: bool
    seconds_per_step: float | None = None
    tokens_per_second: float | None = None  # the examples' tokens, as training counts them
    steps_per_epoch: int | None = None
    seconds_per_epoch: float | None = None

    def figures(self) -> str:
        """The measured figures as ``plan`` prints them."""
        shown = [
            f"{self.seconds_per_step:.2f} s/step" if self.seconds_per_step is not None else "",
            f"{self.tokens_per_second:,.0f} tokens/s" if self.tokens_per_second is not None else "",
            f"{self.seconds_per_epoch:.0f} s per epoch of {self.steps_per_epoch} steps"
            if self.seconds_per_epoch is not None
            else "",
        ]
        return ", ".join(s for s in shown if s)


@dataclass(frozen=True)
class Calibration:
    """A device class's step-time parameters and the measurements they reproduce.

    ``fixed_s`` is paid once per layer per pass over the layers (three passes with gradient checkpointing: forward,
    recomputation, backward; two without), so it follows the model's depth and the checkpointing setting.
    ``tflops`` is the effective rate at which the FLOPs of the computed tokens are done. ``peak_tflops`` is the
    class's peak bf16 rate: a GPU without its own calibration has the per-token part scaled by the peaks' ratio.
    """

    device: str
    names: tuple[str, ...]  # GPU name fragments of the class; () for the CPU
    load_in_4bit: bool
    fixed_s: float
    tflops: float
    peak_tflops: float | None
    source: str
    measurements: tuple[Measurement, ...]
    note: str = ""


# Issue 15's four H100 runs: the support-ticket rows share a 200-token prefix (their chat template, system prompt
# and instruction: measured on 400 generated tickets with the Qwen2 tokenizer, 200 of 312 tokens, the same 200 in
# every micro-batch of 4 or 16); bench/gpu_train.py's random rows share nothing.
_TICKETS_7B = {"model": "qwen2.5-7b-instruct", "mean_tokens": 310.0, "prefix_tokens": 200.0}
H100_MEASUREMENTS = (
    Measurement(
        "lingoforge train support_tickets, 400 tickets of ~310 tokens (200 shared), micro-batch 4",
        batch_size=4,
        gradient_checkpointing=True,
        seconds_per_step=0.81,
        tokens_per_second=1_500,
        steps_per_epoch=100,
        seconds_per_epoch=81.0,
        **_TICKETS_7B,
    ),
    Measurement(
        "the same at micro-batch 16 (--batch-size 16)",
        batch_size=16,
        gradient_checkpointing=True,
        seconds_per_step=0.66,
        tokens_per_second=7_500,
        **_TICKETS_7B,
    ),
    Measurement(
        "bench/gpu_train.py: random rows of 512-2048 tokens (mean 1,281, nothing shared), micro-batch 4 "
        "(about 1.11 s/step)",
        model="qwen2.5-7b-instruct",
        batch_size=4,
        mean_tokens=1_281.0,
        prefix_tokens=0.0,
        gradient_checkpointing=True,
        tokens_per_second=4_630,
    ),
    Measurement(
        "support tickets at micro-batch 4 without gradient checkpointing",
        batch_size=4,
        gradient_checkpointing=False,
        seconds_per_step=0.46,
        **_TICKETS_7B,
    ),
)
# bench/results/train_cpu.json: 11,927 tokens in 8 steps of 4 tickets (372.7 tokens each; the bench's docstring:
# 210 of them shared on SmolLM2's tokenizer); the NF4 run's 67.9 tokens/s at 19.622 s/step is 1,332 tokens per
# step, 333 per ticket. CPU training runs without gradient checkpointing (the device rule).
CPU_MEASUREMENTS_FP32 = (
    Measurement(
        "lingoforge train support_tickets on SmolLM2-135M, fp32 base, micro-batch 4",
        model="smollm2-135m",
        batch_size=4,
        mean_tokens=372.7,
        prefix_tokens=210.0,
        gradient_checkpointing=False,
        seconds_per_step=12.073,
        tokens_per_second=123.0,
    ),
)
CPU_MEASUREMENTS_NF4 = (
    Measurement(
        "the same with 4-bit NF4 base weights (bitsandbytes on CPU), 3 steps",
        model="smollm2-135m",
        batch_size=4,
        mean_tokens=333.0,
        prefix_tokens=210.0,
        gradient_checkpointing=False,
        seconds_per_step=19.622,
        tokens_per_second=67.9,
    ),
)

CALIBRATIONS: tuple[Calibration, ...] = (
    Calibration(
        device="H100/H200",
        names=("H100", "H200"),
        load_in_4bit=True,
        fixed_s=0.0078,
        tflops=600.0,
        peak_tflops=989.0,
        source=H100_SOURCE,
        measurements=H100_MEASUREMENTS,
        note="H200 assumed as the H100 (same peak; unmeasured)",
    ),
    Calibration(
        device="cpu",
        names=(),
        load_in_4bit=False,
        fixed_s=0.001,
        tflops=0.042,
        peak_tflops=None,
        source=CPU_SOURCE,
        measurements=CPU_MEASUREMENTS_FP32,
        note="one measurement: the fixed part is assumed (1 ms per layer pass), the rate fitted",
    ),
    Calibration(
        device="cpu",
        names=(),
        load_in_4bit=True,
        fixed_s=0.165,
        tflops=0.042,
        peak_tflops=None,
        source=CPU_SOURCE,
        measurements=CPU_MEASUREMENTS_NF4,
        note="one measurement: the fp32 rate kept, the fixed part (dequantizing per layer pass) fitted",
    ),
)
