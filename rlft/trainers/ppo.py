"""PPO through rlft's own `rlft.ppo.PPOTrainer` (TRL >= 1.13 has none): value head on the LoRA/QLoRA policy, KL
penalty to the adapter-disabled base, every recipe reward with its weight; the recipe's `decoding:` section
(prefill, label constraint) shapes the rollouts as it does for GRPO."""

from __future__ import annotations

from typing import Any

from rlft.decoding.prompting import generation_kwargs
from rlft.trainers.args import build_args
from rlft.trainers.context import TrainContext


def config_class() -> type:
    from rlft.ppo.ppo_config import PPOConfig

    return PPOConfig


def build_trainer(ctx: TrainContext) -> Any:
    from rlft.ppo.ppo_trainer import PPOTrainer

    args = build_args(ctx.recipe, ctx.device, **ctx.args_overrides)
    decoding = generation_kwargs(ctx.tokenizer, ctx.labels, ctx.recipe.decoding)
    return PPOTrainer(model=ctx.model, processing_class=ctx.tokenizer, reward_funcs=ctx.rewards, args=args,
                      train_dataset=ctx.train_dataset, callbacks=ctx.callbacks or None, **decoding)
