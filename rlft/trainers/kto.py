"""KTO through TRL's KTOTrainer (binary desirable/undesirable labels; reference = adapter-disabled base)."""

from __future__ import annotations

from typing import Any

from rlft.trainer_args import build_args
from rlft.trainers.context import TrainContext


def config_class() -> type:
    from trl import KTOConfig

    return KTOConfig


def build_trainer(ctx: TrainContext) -> Any:
    from trl import KTOTrainer

    args = build_args(ctx.recipe, ctx.device, **ctx.args_overrides)
    return KTOTrainer(model=ctx.model, args=args, train_dataset=ctx.train_dataset,
                      eval_dataset=ctx.eval_dataset if args.eval_strategy != "no" else None,
                      processing_class=ctx.tokenizer, callbacks=ctx.callbacks or None)
