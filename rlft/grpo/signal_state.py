"""Exact resume of `SignalGRPOTrainer`: what a step depends on beyond weights, optimizer and RNG (which
transformers already checkpoints) goes into ``rlft_signal_state.pt`` in every checkpoint folder.

Saved: the refill sampler's RNG state, the surplus buffer of signal groups (tensors), per-prompt statistics, the
signal totals and zero-signal warning window, and TRL's generation counter (`_step`) and buffered generations:
TRL restarts that counter at 0 on resume, so with `steps_per_generation > 1` a resume off a generation boundary
would regenerate early and train on different samples. Loaded with ``torch.load(weights_only=True)`` (plain
containers, numbers, strings and tensors only). One file per process (``_rank{N}`` suffix beyond rank 0).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import torch
from transformers import TrainerCallback

from rlft.run.checkpoints import rank_file

STATE_FILE = "rlft_signal_state.pt"
VERSION = 1
logger = logging.getLogger("rlft.signal")


def state_file(checkpoint: str | Path, process_index: int) -> Path:
    return rank_file(checkpoint, STATE_FILE, process_index)


def _rng_state(rng: Any) -> list[Any]:
    version, internal, gauss = rng.getstate()
    return [version, list(internal), gauss]


def _set_rng_state(rng: Any, state: list[Any]) -> None:
    rng.setstate((state[0], tuple(state[1]), state[2]))


def save_state(trainer: Any, checkpoint: str | Path) -> Path:
    state = {"version": VERSION, "rng": _rng_state(trainer.refill_rng), "surplus": trainer.surplus,
             "prompt_stats": trainer.prompt_stats.state_dict(), "totals": dict(trainer.signal_totals),
             "zero_std_window": list(trainer.zero_std_window), "warned_at": trainer.warned_at,
             "generation": trainer.generation_state()}
    path = state_file(checkpoint, trainer.accelerator.process_index)
    torch.save(state, path)
    return path


def load_state(trainer: Any, checkpoint: str | Path) -> bool:
    """Restore the trainer from `checkpoint`; False (with a warning) when the checkpoint has no rlft state."""
    path = state_file(checkpoint, trainer.accelerator.process_index)
    if not path.is_file():
        logger.warning("rlft signal: %s has no %s; the refill sampler, surplus buffer and prompt statistics start "
                       "fresh, so the resumed run will not equal an uninterrupted one", checkpoint, path.name)
        return False
    state = torch.load(path, map_location=trainer.accelerator.device, weights_only=True)
    _set_rng_state(trainer.refill_rng, state["rng"])
    trainer.surplus = state["surplus"]
    trainer.prompt_stats.load_state_dict(state["prompt_stats"])
    trainer.signal_totals.update(state["totals"])
    trainer.zero_std_window.clear()
    trainer.zero_std_window.extend(state["zero_std_window"])
    trainer.warned_at = int(state["warned_at"])
    trainer.load_generation_state(state["generation"])
    return True


class SaveSignalState(TrainerCallback):
    """Writes the signal state into the checkpoint transformers just saved (before rlft's completion marker)."""

    def __init__(self, trainer: Any):
        self.trainer = trainer

    def on_save(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        folder = Path(args.output_dir) / f"checkpoint-{state.global_step}"
        if folder.is_dir():
            save_state(self.trainer, folder)
