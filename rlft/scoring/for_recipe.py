"""A recipe's rewards, loaded for its data: the data's label set given to rewards that ask for it, and every column a
reward reads checked against every dataset it will score (one line naming the reward and the missing column).

Shared by `rlft train`, `rlft check` and `rlft eval`; it knows nothing about trainers or evaluation.
"""

from __future__ import annotations

from typing import Any

from rlft.recipe.sections import Recipe
from rlft.data.reading import require_columns
from rlft.scoring.loader import LoadedReward, load_rewards, with_data_labels


def load_recipe_rewards(recipe: Recipe, labels: list[str], datasets: list[Any]) -> list[LoadedReward]:
    """`recipe.rewards` loaded (`labels` filled in where wanted), after checking their columns in `datasets`."""
    rewards = load_rewards(with_data_labels(recipe.rewards, labels))
    for ds in datasets:
        for r in rewards:
            require_columns(ds, list(r.columns), recipe.data.source, f"reward '{r.name}'")
    return rewards
