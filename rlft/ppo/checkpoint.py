"""Checkpoints and exact resume for `rlft.ppo.PPOTrainer`.

A checkpoint (`output_dir/checkpoint-N`) holds what the next PPO step depends on:

- the adapter (or full model) and the value head: `save_model` (adapter files + `value_head.safetensors`);
- optimizer and LR scheduler (`optimizer.pt`, `scheduler.pt`) and the RNG states sampling reads (`rng_state.pth`,
  one per process beyond one): transformers' own writers and readers, so the files are the ones its Trainer uses
  (private `Trainer` methods; tests/test_trl_seams.py pins their signatures);
- `trainer_state.json` (global step, log history);
- `rlft_ppo_state.pt`: the KL controller's β (the adaptive controller moves it every step), the mini-batch shuffling
  generator, and the loss/log window of the current logging interval, so logged values match too.

Not saved: the prompt loader's position. It is a pure function of the seed and the number of rollouts drawn, so
resume replays it (draws and discards `global_step` batches, no model call) *before* restoring the RNG states. No
rollout buffer either: a PPO step generates, scores and consumes its rollout within the step, so nothing is in
flight at a step boundary. Loaded with ``torch.load(weights_only=True)`` (numbers, lists, tensors only).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch
from transformers import TrainerState

from rlft.run.checkpoints import rank_file

STATE_FILE = "rlft_ppo_state.pt"
TRAINER_STATE = "trainer_state.json"
VERSION = 1


def state_file(checkpoint: str | Path, process_index: int) -> Path:
    return rank_file(checkpoint, STATE_FILE, process_index)


def save_checkpoint(trainer: Any, window: dict[str, list[float]], losses: list[float]) -> Path:
    """Write `checkpoint-{global_step}` (see the module docstring); callbacks' `on_save` runs after it."""
    folder = os.path.join(trainer.args.output_dir, f"checkpoint-{trainer.state.global_step}")
    trainer.save_model(folder)
    os.makedirs(folder, exist_ok=True)
    trainer._save_optimizer_and_scheduler(folder)
    trainer._save_rng_state(folder)
    if trainer.args.should_save:
        trainer.state.save_to_json(os.path.join(folder, TRAINER_STATE))
    state = {"version": VERSION, "kl_coef": float(trainer.kl_ctl.value), "generator": trainer._generator.get_state(),
             "window": {k: [float(x) for x in v] for k, v in window.items()}, "losses": [float(x) for x in losses]}
    torch.save(state, state_file(folder, trainer.accelerator.process_index))
    trainer.accelerator.wait_for_everyone()  # every process's files are written before rank 0 marks it complete
    return Path(folder)


def rotate(trainer: Any) -> None:
    """`save_total_limit`: delete the oldest checkpoints; called after the newest is marked complete, so a kill in
    between never leaves the run without a complete checkpoint."""
    from transformers.trainer_utils import rotate_checkpoints

    if trainer.args.should_save and trainer.args.save_total_limit:
        rotate_checkpoints(output_dir=trainer.args.output_dir, save_total_limit=trainer.args.save_total_limit,
                           use_mtime=True)


def load_weights(trainer: Any, checkpoint: str) -> None:
    """Adapter (or full weights) and value head from `checkpoint`, in place (before the optimizer is built)."""
    from safetensors.torch import load_file

    from rlft.ppo.value_head import WEIGHTS_NAME

    trainer._load_from_checkpoint(checkpoint)
    head = Path(checkpoint) / WEIGHTS_NAME
    if not head.is_file():
        raise ValueError(f"{checkpoint}: no {WEIGHTS_NAME}; not a PPO checkpoint")
    trainer.value_head.load_state_dict(load_file(str(head)))  # copied onto the head's device


def load_state(trainer: Any, checkpoint: str, skip_batches: Any) -> tuple[dict[str, list[float]], list[float]]:
    """Optimizer, scheduler, trainer state, KL coefficient, generators; returns (log window, losses).

    `skip_batches(n)` advances the prompt loader by n rollouts; it runs before the RNG states are restored, so
    whatever the loader draws from global RNGs is overwritten by the checkpoint's states, as in the original run.
    """
    path = state_file(checkpoint, trainer.accelerator.process_index)
    if not path.is_file():
        raise ValueError(f"{checkpoint}: no {path.name}; not a PPO checkpoint (or written by an rlft without PPO "
                         f"resume)")
    saved = TrainerState.load_from_json(os.path.join(checkpoint, TRAINER_STATE))
    for key in ("global_step", "epoch", "log_history", "total_flos", "best_metric", "best_model_checkpoint",
                "best_global_step"):
        setattr(trainer.state, key, getattr(saved, key))
    trainer._load_optimizer_and_scheduler(checkpoint)
    state = torch.load(path, map_location="cpu", weights_only=True)
    trainer.kl_ctl.value = float(state["kl_coef"])
    trainer._generator.set_state(state["generator"])
    skip_batches(saved.global_step)
    trainer._load_rng_state(checkpoint)
    return {k: list(v) for k, v in state["window"].items()}, list(state["losses"])
