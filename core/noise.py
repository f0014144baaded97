"""Silence two known third-party messages that every CPU run printed and that leave the user nothing to do.

- bitsandbytes logs, when imported on a CPU with AVX512-BF16 (logger ``bitsandbytes.backends.cpu.ops``), that
  it could not load an optional 4-bit kernel from the ``kernels`` package, then falls back to its own code
  (printed even when nothing is quantized).
- transformers warns (``FutureWarning`` from ``transformers.modeling_utils``) whenever a library (trl, peft)
  reads the deprecated ``is_gradient_checkpointing`` property: not ours to fix.

Only these exact messages from these exact sources are dropped; every other warning and log line, ours
included, still shows.
"""

from __future__ import annotations

import logging
import re
import warnings

BNB_LOGGER = "bitsandbytes.backends.cpu.ops"
BNB_MESSAGE = "Failed to load CPU gemm_4bit_forward from kernels-community"
TRANSFORMERS_MODULE = "transformers.modeling_utils"
TRANSFORMERS_MESSAGE = "`is_gradient_checkpointing` is deprecated"


class _DropKernelsNotice(logging.Filter):
    """Drops bitsandbytes' kernels-community notice, passes every other record of its logger."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith(BNB_MESSAGE)


def quiet_known_noise() -> None:
    """Install both filters; call once at CLI start-up, before anything imports bitsandbytes (it logs at
    import). Calling it again adds nothing."""
    logger = logging.getLogger(BNB_LOGGER)  # the logger bitsandbytes will get: the filter is in place first
    if not any(isinstance(existing, _DropKernelsNotice) for existing in logger.filters):
        logger.addFilter(_DropKernelsNotice())
    # filterwarnings drops an identical earlier filter before inserting, so repeating it does not pile up.
    warnings.filterwarnings(
        "ignore",
        message=re.escape(TRANSFORMERS_MESSAGE),
        category=FutureWarning,
        module=re.escape(TRANSFORMERS_MODULE) + "$",
    )
