"""Reward-model training through TRL's RewardTrainer (Bradley–Terry, optional per-pair `margin` column).

The model arrives as `AutoModelForSequenceClassification(num_labels=1)` with a LoRA/QLoRA adapter (the pipeline
loads it with `task="seq_cls"`; PEFT keeps the score head trainable). Data is `prompt, chosen, rejected` (the
pairwise `response_a, response_b, winner` format is converted by `rlft.data.shapes`). After training, held-out pairs are
scored and the trainer reports validation accuracy, ECE and a calibration table (`calibration.json` in output_dir;
`eval_accuracy`/`eval_ece`/`eval_pairs` in the train metrics). Use the result as a reward with
`rewards: [{name: reward_model, params: {path: <output_dir>}}]`.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from trl import RewardTrainer

from rlft.evaluation.calibration import format_table, pairwise_report
from rlft.trainers.args import build_args
from rlft.trainers.context import TrainContext

CALIBRATION_FILE = "calibration.json"


class CalibratedRewardTrainer(RewardTrainer):
    """RewardTrainer that scores the held-out pairs after training and reports accuracy + calibration."""

    def __init__(self, *args: Any, report_dataset: Any = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.report_dataset = (self._prepare_dataset(report_dataset, self.processing_class, self.args, "report")
                               if report_dataset is not None else None)
        self.calibration: dict[str, Any] | None = None

    @torch.no_grad()
    def pair_scores(self, dataset: Any) -> tuple[list[float], list[float]]:
        """(chosen, rejected) scores for a tokenized pair dataset, in batches of per_device_eval_batch_size."""
        from torch.utils.data import DataLoader

        keep = [c for c in ("chosen_ids", "rejected_ids") if c in dataset.column_names]
        data = dataset.select_columns(keep)
        loader = DataLoader(data, batch_size=self.args.per_device_eval_batch_size, collate_fn=self.data_collator)
        model = self.accelerator.unwrap_model(self.model)
        was_training = model.training
        model.eval()
        chosen, rejected = [], []
        try:
            for batch in loader:
                batch = {k: v.to(self.args.device) for k, v in batch.items() if k in ("input_ids", "attention_mask")}
                logits = model(**batch, use_cache=False).logits.squeeze(-1).float()
                c, r = torch.chunk(logits, 2)
                chosen += c.tolist()
                rejected += r.tolist()
        finally:
            model.train(was_training)
        return chosen, rejected

    def train(self, *args: Any, **kwargs: Any) -> Any:
        output = super().train(*args, **kwargs)
        if self.report_dataset is not None and len(self.report_dataset):
            self.calibration = pairwise_report(*self.pair_scores(self.report_dataset))
            output.metrics.update(eval_accuracy=self.calibration["accuracy"], eval_ece=self.calibration["ece"],
                                  eval_pairs=self.calibration["pairs"],
                                  eval_mean_margin=self.calibration["mean_margin"])
            if self.args.should_save:
                out = Path(self.args.output_dir)
                out.mkdir(parents=True, exist_ok=True)
                (out / CALIBRATION_FILE).write_text(json.dumps(self.calibration, indent=2))
                print(f"[rlft] reward model on held-out pairs:\n{format_table(self.calibration)}", flush=True)
        return output


def config_class() -> type:
    from trl import RewardConfig

    return RewardConfig


def build_trainer(ctx: TrainContext) -> Any:
    args = build_args(ctx.recipe, ctx.device, **ctx.args_overrides)
    evaluate_during = args.eval_strategy != "no"
    return CalibratedRewardTrainer(model=ctx.model, args=args, train_dataset=ctx.train_dataset,
                                   eval_dataset=ctx.eval_dataset if evaluate_during else None,
                                   processing_class=ctx.tokenizer, callbacks=ctx.callbacks or None,
                                   report_dataset=ctx.eval_dataset)
