"""What a trainer builder receives: everything `rlft.train` prepared, nothing loaded twice."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from rlft.recipe.sections import Recipe
from rlft.scoring.loader import LoadedReward


@dataclass
class TrainContext:
    recipe: Recipe
    model: Any
    tokenizer: Any
    train_dataset: Any
    eval_dataset: Any
    rewards: list[LoadedReward]
    labels: list[str]
    device: str
    args_overrides: dict[str, Any] = field(default_factory=dict)
    callbacks: list[Any] = field(default_factory=list)


def offline_trainer(trainer_class: type, ctx: TrainContext) -> Any:
    """A TRL trainer on a fixed dataset (DPO, KTO): rlft's training arguments, the held-out split only when the
    recipe asks TRL to evaluate, and rlft's callbacks."""
    from rlft.trainers.args import build_args

    args = build_args(ctx.recipe, ctx.device, **ctx.args_overrides)
    return trainer_class(model=ctx.model, args=args, train_dataset=ctx.train_dataset,
                         eval_dataset=ctx.eval_dataset if args.eval_strategy != "no" else None,
                         processing_class=ctx.tokenizer, callbacks=ctx.callbacks or None)
