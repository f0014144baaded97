"""lingoforge: one fine-tuned Qwen 2.5 model per business task, all languages in one LoRA adapter."""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

from .hookspecs import hookimpl
from .plugins import get_task, get_tasks
from .task import Example, Task

try:
    __version__ = version("lingoforge")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0.0.0"

__all__ = ["Example", "Task", "__version__", "get_task", "get_tasks", "hookimpl"]
