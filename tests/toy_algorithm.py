"""A toy algorithm in one file (docs/extending.md, "An algorithm: the one module where it goes"): its spec, its
config class, its own recipe rule and its trainer builder. Importing this module registers `algorithm: toy_grpo`;
no other module knows its name. It is GRPO (TRL's GRPOTrainer) under another name, with a rule of its own."""

from __future__ import annotations

from typing import Any

from rlft.errors import RecipeError
from rlft.trainers import Algorithm, register

SPEC = register(Algorithm(
    "toy_grpo", __name__,
    data="prompt",  # prompt rows from data.prompt_template
    needs_rewards=True,
    online=True,  # samples completions while training
    group_relative=True,  # rlft check forecasts zero-variance groups
    trainer_ranges={"num_generations": ">= 2"},  # stricter than rlft.recipe.validate's table (>= 1)
    checks=f"{__name__}:check_recipe",
))


def config_class() -> type:
    from trl import GRPOConfig

    return GRPOConfig


def check_recipe(recipe: Any, where: Any) -> None:
    if int(recipe.trainer.get("max_steps", -1)) < 1:
        raise RecipeError(f"{where(recipe, 'trainer.max_steps')}: trainer.max_steps: toy_grpo trains a fixed number "
                          f"of steps; set it")


def build_trainer(ctx: Any) -> Any:
    from trl import GRPOTrainer

    from rlft.trainers.args import build_args

    args = build_args(ctx.recipe, ctx.device, reward_weights=[r.weight for r in ctx.rewards], **ctx.args_overrides)
    return GRPOTrainer(model=ctx.model, reward_funcs=[r.func for r in ctx.rewards], args=args,
                       train_dataset=ctx.train_dataset, processing_class=ctx.tokenizer,
                       callbacks=ctx.callbacks or None)
