"""KTO through TRL's KTOTrainer (binary desirable/undesirable labels; reference = adapter-disabled base)."""

from __future__ import annotations

from typing import Any

from rlft.trainers.context import TrainContext, offline_trainer


def config_class() -> type:
    from trl import KTOConfig

    return KTOConfig


def build_trainer(ctx: TrainContext) -> Any:
    from trl import KTOTrainer

    return offline_trainer(KTOTrainer, ctx)
