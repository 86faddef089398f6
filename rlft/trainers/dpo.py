"""DPO through TRL's DPOTrainer. With a PEFT model the reference is the adapter-disabled base (no second copy)."""

from __future__ import annotations

from typing import Any

from rlft.trainers.context import TrainContext, offline_trainer


def config_class() -> type:
    from trl import DPOConfig

    return DPOConfig


def build_trainer(ctx: TrainContext) -> Any:
    from trl import DPOTrainer

    return offline_trainer(DPOTrainer, ctx)
