"""KTO through TRL's KTOTrainer (binary desirable/undesirable labels; reference = adapter-disabled base)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from rlft.errors import RecipeError
from rlft.trainers.context import TrainContext, offline_trainer


def config_class() -> type:
    from trl import KTOConfig

    return KTOConfig


def check_recipe(recipe: Any, where: Callable[[Any, str], str]) -> None:
    """KTO's own rule for `rlft validate` (its spec's `checks`)."""
    batch = recipe.trainer.get("per_device_train_batch_size", 8)
    if batch <= 1:
        raise RecipeError(f"{where(recipe, 'trainer.per_device_train_batch_size')}: "
                          f"trainer.per_device_train_batch_size: KTO needs > 1 "
                          f"(its KL reference term pairs each prompt with another completion in the batch)")


def build_trainer(ctx: TrainContext) -> Any:
    from trl import KTOTrainer

    return offline_trainer(KTOTrainer, ctx)
