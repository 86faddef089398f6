"""What a trainer builder receives: everything `rlft.train` prepared, nothing loaded twice."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from rlft.config import Recipe
from rlft.reward_loader import LoadedReward


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
