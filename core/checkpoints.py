"""Training checkpoints in a run folder: which are complete, and what a failed checkpoint write raises.

Both the recipe (``lingoforge.trainer``, which resumes from the last complete one) and the trainer that writes them
(``lingoforge.sft_trainer``) use these, so they live below both.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Sequence
from pathlib import Path

from .errors import LingoforgeError

CHECKPOINT_PREFIX = "checkpoint-"


class CheckpointWriteError(LingoforgeError):
    """A checkpoint could not be written (disk full, read-only folder); the partial checkpoint was removed."""


def complete_checkpoints(folder: Path) -> list[Path]:
    """Checkpoints whose trainer_state.json (written last by the Trainer) parses, oldest first.

    A ``kill -9`` during a save leaves a folder without a readable trainer_state.json; it is skipped.
    """
    found = []
    for path in folder.glob(f"{CHECKPOINT_PREFIX}*"):
        try:
            json.loads((path / "trainer_state.json").read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        if path.name[len(CHECKPOINT_PREFIX) :].isdigit():
            found.append(path)
    return sorted(found, key=lambda p: int(p.name[len(CHECKPOINT_PREFIX) :]))


def remove_partial_checkpoints(folder: Path, complete: Sequence[Path]) -> None:
    """Delete checkpoint folders a kill left half-written, so the Trainer's rotation never picks them."""
    keep = {p.name for p in complete}
    for path in folder.glob(f"{CHECKPOINT_PREFIX}*"):
        if path.name not in keep:
            shutil.rmtree(path, ignore_errors=True)
