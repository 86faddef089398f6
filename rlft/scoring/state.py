"""Reward state in checkpoints: what a reward's trainer callback counts (a judge's spend) survives a resume.

A reward's trainer callback (`rlft.scoring.protocol`) that has `state_dict() -> dict` (JSON-able) and
`load_state_dict(dict)` gets its state written into every checkpoint by `SaveRewardState.on_save`, as
``rlft_reward_state.json`` (one entry per reward, by the reward's name), and `load_state(checkpoint)` hands each
entry back before a resumed run trains. The built-in judge uses it for its spend, error-rate window and audit batch
counter, so `budget_usd` / `budget_tokens` bound the whole run, not each resume (rewards/judge.py).

One file per process (``_rank{N}`` suffix beyond rank 0), like `rlft_signal_state*.pt`: each process has its own
reward objects (a judge's budget is per process, docs/scaling.md). Written through a temporary file and renamed, and
registered before rlft's completion marker, so a complete checkpoint always holds the whole file.

Not here: what a reward keeps (the reward's own `state_dict`), stopping a run (the reward's callback).
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from transformers import TrainerCallback

from rlft.run.checkpoints import rank_file

STATE_FILE = "rlft_reward_state.json"
VERSION = 1
logger = logging.getLogger("rlft")


def state_file(checkpoint: str | Path, process_index: int) -> Path:
    return rank_file(checkpoint, STATE_FILE, process_index)


def _has_state(obj: Any) -> bool:
    return callable(getattr(obj, "state_dict", None)) and callable(getattr(obj, "load_state_dict", None))


class SaveRewardState(TrainerCallback):
    """Saves and restores the state of the reward callbacks that have `state_dict` / `load_state_dict`."""

    def __init__(self, named_callbacks: Iterable[tuple[str, Any]]):
        """`named_callbacks`: (reward name, its trainer callback); callbacks without state are left out, and a name
        used twice gets `#2`, `#3`... in recipe order, so two judges keep two entries."""
        self.stateful: dict[str, Any] = {}
        for name, cb in named_callbacks:
            if _has_state(cb):
                key, n = name, 1
                while key in self.stateful:
                    n += 1
                    key = f"{name}#{n}"
                self.stateful[key] = cb

    def __bool__(self) -> bool:
        return bool(self.stateful)

    def on_save(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        folder = Path(args.output_dir) / f"checkpoint-{state.global_step}"
        if not folder.is_dir():
            return
        record = {"version": VERSION, "rewards": {k: cb.state_dict() for k, cb in self.stateful.items()}}
        path = state_file(folder, int(getattr(args, "process_index", 0)))
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(json.dumps(record), encoding="utf-8")
        os.replace(tmp, path)

    def load_state(self, checkpoint: str | Path, process_index: int = 0) -> bool:
        """Give each reward callback its saved entry; False (with a warning) when the checkpoint has no file."""
        path = state_file(checkpoint, process_index)
        if not path.is_file():
            logger.warning("rlft: %s has no %s; reward state (%s) starts fresh, so a judge budget counts from zero",
                           checkpoint, path.name, ", ".join(self.stateful))
            return False
        saved = json.loads(path.read_text(encoding="utf-8"))["rewards"]
        for key, cb in self.stateful.items():
            if key in saved:
                cb.load_state_dict(saved[key])
            else:
                logger.warning("rlft: %s holds no state for reward '%s'; it starts fresh", path.name, key)
        return True
