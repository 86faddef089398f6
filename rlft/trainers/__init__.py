"""The algorithm registry: one module per algorithm, each exposing

- `build_trainer(ctx: TrainContext) -> transformers.Trainer` (what `rlft.train` runs), and
- `config_class() -> type`: the dataclass the recipe's `trainer:` keys are validated against and built into.

Adding an algorithm is one module plus one line here (docs/extending.md); `rlft.config.ALGORITHMS` is read from it.
This file imports nothing heavy: the recipe schema reads the names without loading torch.
"""

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


def config_class(algorithm: str) -> type:
    return importlib.import_module(TRAINER_MODULES[algorithm]).config_class()
