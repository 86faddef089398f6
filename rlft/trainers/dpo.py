"""DPO through TRL's DPOTrainer. With a PEFT model the reference is the adapter-disabled base (no second copy)."""

from __future__ import annotations

from typing import Any

from rlft.trainer_args import build_args
from rlft.trainers.context import TrainContext


def config_class() -> type:
    from trl import DPOConfig

    return DPOConfig


def build_trainer(ctx: TrainContext) -> Any:
    from trl import DPOTrainer

    args = build_args(ctx.recipe, ctx.device, **ctx.args_overrides)
    return DPOTrainer(model=ctx.model, args=args, train_dataset=ctx.train_dataset,
                      eval_dataset=ctx.eval_dataset if args.eval_strategy != "no" else None,
                      processing_class=ctx.tokenizer, callbacks=ctx.callbacks or None)
