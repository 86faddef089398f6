"""Refuse to keep a run whose weights stopped being numbers.

A learning rate far too high for the model, an fp16 overflow or a reward scale in the millions can turn a trainable
weight into NaN or inf. Nothing in TRL or transformers notices: training goes on, every later step stays NaN, and
the run used to save an adapter of NaNs, evaluate it and exit 0. `FiniteWeights` checks the trainable weights
(the LoRA matrices, or every weight of a full fine-tune; frozen weights cannot change) at the end of every optimizer
step, before that step's checkpoint, periodic evaluation or EMA update, and raises `TrainingDiverged` at the first
non-finite one. `rlft train` then prints one line and exits 2: the final adapter, report and model card are not
written, so the folder keeps only the recipe and the checkpoints of the steps before (each of them finite), and
`trainer.resume_from_checkpoint` can restart from the last one.

Under several processes the decision is an all-reduce of each rank's flag (a sharded optimizer may break a weight
on one rank only), so every rank stops at the same step. Under DeepSpeed ZeRO-3 a rank's parameters are empty
placeholders of the partitioned weights: they are skipped, not checked.
"""

from __future__ import annotations

from typing import Any

from transformers import TrainerCallback

from rlft.errors import UserError
from rlft.run.distributed import any_rank


class TrainingDiverged(UserError):
    """A training step left a trainable weight NaN or inf."""


def first_non_finite(model: Any) -> tuple[str, str] | None:
    """(name, "NaN" | "inf") of the first trainable parameter holding a non-finite value, else None."""
    import torch

    trainable = [(name, p.detach()) for name, p in model.named_parameters() if p.requires_grad and p.numel()]
    if not trainable:
        return None
    device = trainable[0][1].device  # a model split over devices (device_map) gathers its flags on one
    finite = torch.stack([torch.isfinite(data).all().to(device) for _, data in trainable])
    if bool(finite.all()):  # one device-to-host sync per step, not one per tensor
        return None
    name, data = trainable[int((~finite).nonzero()[0])]
    return name, "NaN" if bool(torch.isnan(data).any()) else "inf"


class FiniteWeights(TrainerCallback):
    """Raises `TrainingDiverged` at the end of the first optimizer step that leaves a trainable weight non-finite.

    `where` (the recipe file, or the command line, that set the learning rate) opens the message.
    """

    def __init__(self, where: str) -> None:
        self.where = where

    def on_step_end(self, args, state, control, model=None, **kwargs):
        bad = first_non_finite(model) if model is not None else None
        if any_rank(bad is not None):
            name, kind = bad or ("a weight on another process", "non-finite")
            raise TrainingDiverged(
                f"{self.where}: training diverged at step {state.global_step}: {name} is {kind} after the optimizer "
                f"step; no adapter was saved (checkpoints of earlier steps are kept). Lower trainer.learning_rate "
                f"(it is {args.learning_rate:g}) or keep trainer.max_grad_norm on")
        return control
