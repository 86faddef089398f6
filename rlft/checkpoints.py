"""Verified checkpoints and resume.

transformers resumes from the highest `checkpoint-N` without checking that it was fully written, so a run killed
mid-save crashes on resume (transformers #35782, #35525). rlft writes a marker into each checkpoint after
transformers has finished saving it (`on_save` fires after the save), and `resume_from_checkpoint: last` picks the
newest checkpoint that has the marker.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from transformers import TrainerCallback

from rlft.errors import RecipeError

MARKER = ".rlft-complete"
_CHECKPOINT = re.compile(r"^checkpoint-(\d+)$")


class MarkCompleteCheckpoints(TrainerCallback):
    """Writes the completion marker into the checkpoint transformers just saved."""

    def on_save(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        if state.is_world_process_zero:
            path = Path(args.output_dir) / f"checkpoint-{state.global_step}"
            if path.is_dir():
                (path / MARKER).write_text(str(state.global_step))


def last_complete_checkpoint(output_dir: str | Path) -> Path | None:
    """Newest `checkpoint-N` in `output_dir` that carries the completion marker, or None."""
    root = Path(output_dir)
    if not root.is_dir():
        return None
    found = [(int(m.group(1)), p) for p in root.iterdir() if (m := _CHECKPOINT.match(p.name)) and p.is_dir()]
    complete = [(n, p) for n, p in found if (p / MARKER).is_file()]
    return max(complete)[1] if complete else None


def resolve_resume(value: Any, output_dir: str | Path, where: str = "recipe") -> str | None:
    """`trainer.resume_from_checkpoint`: null | last (newest complete checkpoint, or a fresh start) | a path."""
    if value in (None, False, ""):
        return None
    if value in ("last", True):
        found = last_complete_checkpoint(output_dir)
        return str(found) if found else None
    path = Path(str(value))
    if not path.is_dir():
        raise RecipeError(f"{where}: trainer.resume_from_checkpoint: '{value}' is not a checkpoint directory (or "
                          f"'last')")
    if not (path / MARKER).is_file():
        raise RecipeError(f"{where}: trainer.resume_from_checkpoint: '{value}' has no completion marker ({MARKER}); "
                          f"it may "
                          f"be half-written. Use 'last' to pick the newest complete checkpoint")
    return str(path)
