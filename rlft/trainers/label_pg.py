"""`algorithm: label_pg`: the exact label-space policy gradient as a `transformers.Trainer` (docs/algorithms.md).

Each step takes a batch of raw dataset rows, scores every allowed label of every prompt with the recipe's rewards,
and minimises `rlft.decoding.label_space.label_pg_loss` (one forward/backward pass with the prompt's KV cache shared across
its label paths). No sampling, no generation during training; evaluation is the pipeline's, as for every algorithm.

Python API without a recipe::

    trainer = LabelPGTrainer(model=peft_model, args=TrainingArguments("out", remove_unused_columns=False),
                             train_dataset=ds, processing_class=tokenizer, rewards=load_rewards([...]),
                             labels=labels, decoding=DecodingConfig(prefill="<intent>"), label_pg=LabelPGConfig())
    trainer.train()
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from typing import Any

from transformers import Trainer

from rlft.recipe.sections import DecodingConfig, LabelPGConfig
from rlft.errors import RecipeError
from rlft.decoding.label_space import LabelSpace, rows_loss
from rlft.scoring.loader import LoadedReward
from rlft.trainers.args import build_args
from rlft.trainers.context import TrainContext


def collate_rows(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Raw rows pass through untouched: the loss tokenizes prompts and scores labels itself."""
    return {"rows": rows}


class LabelPGTrainer(Trainer):
    """A Trainer whose loss is the exact label-space objective; metrics are logged as ``label_pg/*``."""

    def __init__(self, *, rewards: Sequence[LoadedReward], labels: Sequence[str],
                 decoding: DecodingConfig | None = None, label_pg: LabelPGConfig | None = None, **kwargs: Any):
        kwargs.setdefault("data_collator", collate_rows)
        super().__init__(**kwargs)
        if self.args.remove_unused_columns:
            raise ValueError("LabelPGTrainer needs TrainingArguments(remove_unused_columns=False): the loss reads "
                             "the rows' prompt and reward columns")
        self.model_accepts_loss_kwargs = False  # the loss is a per-prompt mean: scale it for gradient accumulation
        self.rewards = list(rewards)
        self.decoding = decoding or DecodingConfig()
        self.config = label_pg or LabelPGConfig()
        self.space = LabelSpace.build(self.processing_class, labels, self.decoding)
        pad = self.processing_class.pad_token_id
        self.pad_token_id = self.processing_class.eos_token_id if pad is None else pad
        self._label_metrics: dict[str, list[float]] = defaultdict(list)
        self._reward_metrics: dict[str, list[float]] = defaultdict(list)  # what rewards log (judge/*), unprefixed

    def compute_loss(self, model: Any, inputs: dict[str, Any], return_outputs: bool = False,
                     num_items_in_batch: Any = None) -> Any:
        logged: dict[str, float] = {}
        loss, metrics = rows_loss(model, self.space, self.config, self.rewards, inputs["rows"], self.processing_class,
                                  self.decoding, self.pad_token_id, trainer_state=self.state, logged=logged)
        if model.training:
            for key, value in metrics.items():
                self._label_metrics[key].append(value)
            for key, value in logged.items():
                self._reward_metrics[key].append(value)
        return (loss, {}) if return_outputs else loss

    def training_step(self, model: Any, inputs: dict[str, Any], num_items_in_batch: Any = None) -> Any:
        loss = super().training_step(model, inputs, num_items_in_batch)
        # The loss calls the decoder inside the DDP wrapper, not the wrapper's forward, so DDP never arms its
        # gradient hooks: average the gradients across processes here (a no-op in one process).
        world = self.accelerator.num_processes
        if world > 1:
            import torch.distributed as dist

            for param in model.parameters():
                if param.grad is not None:
                    dist.all_reduce(param.grad)
                    param.grad /= world
        return loss

    def log(self, logs: dict[str, float], start_time: float | None = None) -> None:
        if self._label_metrics:
            logs = {**logs, **{f"label_pg/{k}": sum(v) / len(v) for k, v in self._label_metrics.items()}}
            self._label_metrics.clear()
        if self._reward_metrics:  # as TRL logs them for GRPO: the mean over the window's calls
            logs = {**logs, **{k: sum(v) / len(v) for k, v in self._reward_metrics.items()}}
            self._reward_metrics.clear()
        super().log(logs, start_time)


def config_class() -> type:
    from transformers import TrainingArguments

    return TrainingArguments


def build_trainer(ctx: TrainContext) -> LabelPGTrainer:
    recipe = ctx.recipe
    args = build_args(recipe, ctx.device, **{"remove_unused_columns": False, **ctx.args_overrides})
    where = recipe.source_file or "recipe"
    if args.remove_unused_columns:
        raise RecipeError(f"{where}: trainer.remove_unused_columns: label_pg needs false (the loss reads the rows)")
    if args.eval_strategy != "no":
        raise RecipeError(f"{where}: trainer.eval_strategy: label_pg has no eval loss; use evaluation.every_steps")
    if not ctx.labels:
        raise RecipeError(f"{where}: data.labels: label_pg needs the label set (data.labels or a label column)")
    if "prompt" not in ctx.train_dataset.column_names:
        raise RecipeError(f"{where}: data: label_pg needs prompt rows (data.prompt_template over your columns)")
    try:
        return LabelPGTrainer(model=ctx.model, args=args, train_dataset=ctx.train_dataset,
                              processing_class=ctx.tokenizer, callbacks=ctx.callbacks or None, rewards=ctx.rewards,
                              labels=ctx.labels, decoding=recipe.decoding, label_pg=recipe.label_pg)
    except ValueError as exc:
        raise RecipeError(f"{where}: label_pg: {exc}") from None
