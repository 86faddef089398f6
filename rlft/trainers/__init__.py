"""One module per algorithm, each exposing `build_trainer(ctx: TrainContext) -> transformers.Trainer`."""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any

TRAINER_MODULES = {
    "grpo": "rlft.trainers.grpo",
    "label_pg": "rlft.trainers.label_pg",
    "dpo": "rlft.trainers.dpo",
    "kto": "rlft.trainers.kto",
    "ppo": "rlft.trainers.ppo",
    "reward_model": "rlft.trainers.reward_model",
}


def trainer_builder(algorithm: str) -> Callable[[Any], Any]:
    return importlib.import_module(TRAINER_MODULES[algorithm]).build_trainer
