"""The CLI start-up filter drops exactly the two known third-party messages and keeps every other one."""

from __future__ import annotations

import logging
import warnings
from types import SimpleNamespace

import pytest
from lingoforge.noise import BNB_LOGGER, quiet_known_noise


@pytest.fixture
def bnb_logger(monkeypatch) -> logging.Logger:
    """bitsandbytes' logger, its filters restored after the test."""
    logger = logging.getLogger(BNB_LOGGER)
    monkeypatch.setattr(logger, "filters", list(logger.filters))
    return logger


def test_bitsandbytes_kernels_notice_is_dropped_other_records_kept(bnb_logger, caplog) -> None:
    quiet_known_noise()
    quiet_known_noise()  # a second call adds no second filter
    assert len(bnb_logger.filters) == 1
    with caplog.at_level(logging.WARNING):
        bnb_logger.warning(  # the call in bitsandbytes/backends/cpu/ops.py
            "Failed to load CPU gemm_4bit_forward from kernels-community: %s. Please make sure you already "
            "`pip install kernels` and the kernels >= 0.11.1",
            ModuleNotFoundError("No module named 'kernels'"),
        )
        bnb_logger.warning("gemv_4bit got an unexpected dtype")
        logging.getLogger("lingoforge.train").warning("Failed to load CPU gemm_4bit_forward: ours, kept")
    assert [r.getMessage() for r in caplog.records] == [
        "gemv_4bit got an unexpected dtype",
        "Failed to load CPU gemm_4bit_forward: ours, kept",
    ]


def test_transformers_checkpointing_futurewarning_is_dropped_other_warnings_kept() -> None:
    from transformers.modeling_utils import PreTrainedModel

    model = SimpleNamespace(is_activation_checkpointing=False)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        quiet_known_noise()
        assert PreTrainedModel.is_gradient_checkpointing.fget(model) is False  # the real deprecated property
        warnings.warn("`is_gradient_checkpointing` is deprecated in our own code", FutureWarning, stacklevel=1)
        warnings.warn("an unrelated warning", UserWarning, stacklevel=1)
    assert [(w.category, str(w.message)) for w in caught] == [
        (FutureWarning, "`is_gradient_checkpointing` is deprecated in our own code"),
        (UserWarning, "an unrelated warning"),
    ]


def test_cli_main_installs_the_filters_before_plugins_load(bnb_logger, monkeypatch) -> None:
    from lingoforge import cli

    seen: list[bool] = []

    class Registry:
        def add_commands(self, group: object) -> None:
            seen.append(any(isinstance(f, logging.Filter) for f in bnb_logger.filters))

    monkeypatch.setattr(cli, "get_registry", Registry)
    monkeypatch.setattr(cli, "cli", lambda: None)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        cli.main()
        warnings.warn_explicit(
            "`is_gradient_checkpointing` is deprecated",
            FutureWarning,
            "modeling_utils.py",
            1,
            module="transformers.modeling_utils",
        )
    assert seen == [True] and caught == []
