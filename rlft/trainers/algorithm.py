"""`Algorithm`: what the rest of rlft may ask about an algorithm, declared once (registered in `rlft.trainers`).

data, validate, check, distributed, abstain and the pipeline ask a spec (`rlft.trainers.algorithm_spec(name)`)
instead of matching algorithm names. This module imports nothing: the recipe schema reads specs without torch.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

DATA_SHAPES = ("prompt", "pairs", "kto")
TASKS = ("causal_lm", "seq_cls")


@dataclass(frozen=True)
class Algorithm:
    """One algorithm's declarations. `module` holds `build_trainer(ctx)` and `config_class()` (imported only when
    a trainer is built or its `trainer:` keys are checked)."""

    name: str
    module: str
    # The rows it trains on: "prompt" (a prompt per row, templated from data.prompt_template; rewards score
    # completions), "pairs" (prompt, chosen, rejected; or response_a, response_b, winner) or "kto" (prompt,
    # completion, label; or UBIAI's input, output, rating).
    data: str = "prompt"
    task: str = "causal_lm"  # the model it loads: "causal_lm" or "seq_cls" (a scalar score head)
    needs_rewards: bool = False  # the recipe must list at least one reward
    online: bool = False  # samples completions while training (a step's cost includes generation)
    scores_every_label: bool = False  # calls the rewards once per allowed label of each prompt (label_pg)
    group_relative: bool = False  # groups of completions per prompt: `rlft check` forecasts zero-variance groups
    trl_reward_aggregation: bool = False  # TRL sums its rewards and counts an abstention (None) as 0 (GRPO)
    sections: tuple[str, ...] = ()  # recipe sections of its own ("signal", "label_pg"); refused for the others
    lookup: bool = True  # accepts decoding.lookup (its rollouts keep the looked-up text out of the loss)
    analysis: bool = True  # accepts decoding.analysis_max_tokens
    trainer_ranges: Mapping[str, str] = field(default_factory=dict)  # stricter trainer-key ranges (rlft.recipe.validate)
    # "module:function" of its own recipe checks, `function(recipe, where)`, imported by `rlft validate` (keep that
    # module light: validate runs them before transformers loads)
    checks: str | None = None

    def __post_init__(self) -> None:
        if self.data not in DATA_SHAPES:
            raise ValueError(f"Algorithm {self.name!r}: data must be one of {', '.join(DATA_SHAPES)}, got "
                             f"{self.data!r}")
        if self.task not in TASKS:
            raise ValueError(f"Algorithm {self.name!r}: task must be one of {', '.join(TASKS)}, got {self.task!r}")

    def build_trainer(self, ctx: Any) -> Any:
        return importlib.import_module(self.module).build_trainer(ctx)

    def config_class(self) -> type:
        return importlib.import_module(self.module).config_class()

    def validate(self, recipe: Any, where: Callable[[Any, str], str]) -> None:
        """The algorithm's own recipe checks (a one-line `RecipeError`); `where(recipe, key)` names the file or
        the command line that set `key`."""
        if self.checks:
            module, function = self.checks.split(":")
            getattr(importlib.import_module(module), function)(recipe, where)

    def completions_per_step(self, batch: int, labels: list[str]) -> int:
        """Reward calls per optimizer step for `batch` prompts (rlft check's judge projection)."""
        return batch * max(len(labels), 1) if self.scores_every_label else batch
