"""The algorithm registry: one `Algorithm` spec per algorithm (`rlft.trainers.algorithm`), its module exposing

- `build_trainer(ctx: TrainContext) -> transformers.Trainer` (what `rlft.train` runs), and
- `config_class() -> type`: the dataclass the recipe's `trainer:` keys are validated against and built into.

The spec declares what the rest of rlft asks (data shape, rewards, task, online sampling, sections of its own, its
own checks); data, validate, check, distributed, abstain and the pipeline ask `algorithm_spec(name)` instead of
matching names. A built-in is one module plus its spec below; an algorithm of your own is one module that calls
`register(Algorithm(...))` (docs/extending.md). This file imports nothing heavy: the recipe schema reads the names
without loading torch.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from typing import Any

from rlft.trainers.algorithm import Algorithm

__all__ = ["Algorithm", "TRAINER_MODULES", "algorithm_names", "algorithm_spec", "algorithms_where", "config_class",
           "register", "trainer_builder", "unregister"]

_REGISTRY: dict[str, Algorithm] = {}


def register(spec: Algorithm) -> Algorithm:
    """Make `spec.name` a recipe's `algorithm:` (a later spec of the same name replaces the earlier one)."""
    _REGISTRY[spec.name] = spec
    return spec


def unregister(name: str) -> None:
    _REGISTRY.pop(name, None)


def algorithm_names() -> tuple[str, ...]:
    """Every registered algorithm, in registration order."""
    return tuple(_REGISTRY)


def algorithm_spec(algorithm: str) -> Algorithm:
    spec = _REGISTRY.get(algorithm)
    if spec is None:
        from rlft.errors import RecipeError

        raise RecipeError(f"algorithm: unknown '{algorithm}'")
    return spec


def algorithms_where(test: Callable[[Algorithm], bool]) -> list[str]:
    """Names of the registered algorithms whose spec passes `test` (for messages: "applies to algorithm ...")."""
    return [name for name, spec in _REGISTRY.items() if test(spec)]


for _spec in (
    Algorithm("grpo", "rlft.trainers.grpo", data="prompt", needs_rewards=True, online=True, group_relative=True,
              trl_reward_aggregation=True, sections=("signal",)),
    Algorithm("label_pg", "rlft.trainers.label_pg", data="prompt", needs_rewards=True, scores_every_label=True,
              sections=("label_pg",), analysis=False),
    Algorithm("dpo", "rlft.trainers.dpo", data="pairs", trainer_ranges={"beta": "> 0"}),
    Algorithm("kto", "rlft.trainers.kto", data="kto", trainer_ranges={"beta": "> 0"},
              checks="rlft.trainers.kto:check_recipe"),
    Algorithm("ppo", "rlft.trainers.ppo", data="prompt", needs_rewards=True, online=True, lookup=False),
    Algorithm("reward_model", "rlft.trainers.reward_trainer", data="pairs", task="seq_cls"),
    Algorithm("rft", "rlft.trainers.rft.trainer", data="prompt", needs_rewards=True, sections=("rft",),
              checks="rlft.trainers.rft.trainer:check_recipe"),
):
    register(_spec)


class _Modules(Mapping):
    """`TRAINER_MODULES`: algorithm -> module, read live from the registry (kept for scripts that read it)."""

    def __getitem__(self, name: str) -> str:
        return _REGISTRY[name].module

    def __iter__(self) -> Iterator[str]:
        return iter(_REGISTRY)

    def __len__(self) -> int:
        return len(_REGISTRY)


TRAINER_MODULES: Mapping[str, str] = _Modules()


def trainer_builder(algorithm: str) -> Callable[[Any], Any]:
    return algorithm_spec(algorithm).build_trainer


def config_class(algorithm: str) -> type:
    return algorithm_spec(algorithm).config_class()
