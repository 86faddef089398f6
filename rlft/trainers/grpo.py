"""GRPO through TRL's GRPOTrainer; rlft's `SignalGRPOTrainer` when the recipe sets `decoding:` or `signal:`."""

from __future__ import annotations

from typing import Any

from rlft.recipe.sections import DecodingConfig, SignalConfig
from rlft.trainers.args import build_args
from rlft.trainers.context import TrainContext


def config_class() -> type:
    from trl import GRPOConfig

    return GRPOConfig


def build_trainer(ctx: TrainContext) -> Any:
    recipe = ctx.recipe
    args = build_args(recipe, ctx.device, reward_weights=[r.weight for r in ctx.rewards], **ctx.args_overrides)
    kwargs: dict[str, Any] = dict(model=ctx.model, reward_funcs=[r.func for r in ctx.rewards], args=args,
                                  train_dataset=ctx.train_dataset, processing_class=ctx.tokenizer,
                                  callbacks=ctx.callbacks or None)
    if args.eval_strategy != "no":
        kwargs["eval_dataset"] = ctx.eval_dataset
    if recipe.signal != SignalConfig() or recipe.decoding != DecodingConfig():
        from rlft.grpo import SignalGRPOTrainer

        return SignalGRPOTrainer(**kwargs, signal=recipe.signal, decoding=recipe.decoding, labels=ctx.labels,
                                 label_pg=recipe.label_pg, label_column=recipe.data.label_column)
    from rlft.grpo import PlainGRPOTrainer  # TRL's, with the logged reward over judged rows

    return PlainGRPOTrainer(**kwargs)
