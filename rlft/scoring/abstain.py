"""Abstention means "no contribution" when rewards are combined.

A reward returns `None` to abstain (a judge call failed, a rubric has no entry for the row). Summed naively, an
abstention counts as 0, which is exactly the advantage of a bad verdict next to rows the judge did score. The
neutral value for an abstained row is the mean of that reward over the rows it did score *in the same group* (the
completions of one prompt): filled in with that mean, the reward moves the row's advantage neither up nor down, and
the group's mean of that reward is unchanged. When no row of the group was scored, the batch mean of the reward is
used; when no row of the batch was, the reward stays `None` for every row (it then contributes nothing anywhere).

Used by `rlft.scoring.completions.combine` (evaluation, labelling, PPO) and, for GRPO with TRL's default
`multi_objective_aggregation: sum_then_normalize` and more than one reward, by `neutral_rewards`, which wraps each
reward function TRL calls. (TRL's `normalize_then_sum` already treats a NaN as "at the group mean", and a single
reward's abstention is already left out of TRL's baseline, so those are passed through unchanged.)

Grouping in GRPO is by prompt within the batch a process scores; with several processes this is exact when each
process scores whole groups (TRL's batch of `per_device_train_batch_size * steps_per_generation` completions a
multiple of `num_generations`).
"""

from __future__ import annotations

import functools
import inspect
import math
from collections.abc import Callable, Hashable, Sequence
from typing import Any

NEUTRAL_AGGREGATIONS = ("sum_then_normalize",)


def _missing(v: Any) -> bool:
    return v is None or (isinstance(v, float) and math.isnan(v))


def group_keys(prompts: Sequence[Any]) -> list[Hashable]:
    """One hashable key per prompt (chat prompts are lists of dicts)."""
    return [p if isinstance(p, str) else repr(p) for p in prompts]


def impute_abstentions(values: Sequence[float | None], groups: Sequence[Hashable] | None = None
                       ) -> list[float | None]:
    """Replace each abstention by the mean of the scored values in its group (else the batch mean).

    >>> impute_abstentions([1.0, None, 0.0, None], ["a", "a", "b", "b"])
    [1.0, 1.0, 0.0, 0.0]
    >>> impute_abstentions([1.0, None, None, None], ["a", "a", "b", "b"])
    [1.0, 1.0, 1.0, 1.0]
    >>> impute_abstentions([None, None])
    [None, None]
    """
    values = [None if _missing(v) else float(v) for v in values]
    scored = [v for v in values if v is not None]
    if not scored or len(scored) == len(values):
        return values
    batch_mean = sum(scored) / len(scored)
    groups = list(groups) if groups is not None else [0] * len(values)
    sums: dict[Hashable, list[float]] = {}
    for g, v in zip(groups, values, strict=True):
        if v is not None:
            sums.setdefault(g, []).append(v)
    return [v if v is not None else (sum(sums[g]) / len(sums[g]) if g in sums else batch_mean)
            for g, v in zip(groups, values, strict=True)]


def _neutral(func: Callable) -> Callable:
    """Wrap one TRL reward function so its abstentions are imputed within prompt groups; `rlft_abstained` on the
    wrapper: which rows its last call abstained on (the logged reward leaves them out, `rlft.grpo.trl_hooks`)."""
    if inspect.iscoroutinefunction(func):

        async def neutral_async(prompts, completions, **kwargs):
            values = await func(prompts=prompts, completions=completions, **kwargs)
            neutral_async.rlft_abstained = [_missing(v) for v in values]
            return impute_abstentions(values, group_keys(prompts))

        wrapped = neutral_async
    else:

        def neutral_sync(prompts, completions, **kwargs):
            values = func(prompts=prompts, completions=completions, **kwargs)
            neutral_sync.rlft_abstained = [_missing(v) for v in values]
            return impute_abstentions(values, group_keys(prompts))

        wrapped = neutral_sync
    functools.update_wrapper(wrapped, func, assigned=("__name__", "__qualname__", "__doc__"), updated=())
    return wrapped


def needs_neutral(algorithm: str, n_rewards: int, trainer: dict[str, Any]) -> bool:
    """Whether TRL would count an abstention as 0 for this recipe (GRPO, 2+ rewards, sum_then_normalize)."""
    from rlft.trainers import algorithm_spec

    aggregation = trainer.get("multi_objective_aggregation", "sum_then_normalize")
    return algorithm_spec(algorithm).trl_reward_aggregation and n_rewards > 1 and aggregation in NEUTRAL_AGGREGATIONS


def neutral_rewards(rewards: Sequence[Any], algorithm: str, trainer: dict[str, Any]) -> list[Any]:
    """`LoadedReward`s whose functions TRL can sum without counting abstentions as 0 (others unchanged; each keeps
    its `inner`, so its accessors still answer)."""
    import dataclasses

    if not needs_neutral(algorithm, len(rewards), trainer):
        return list(rewards)
    return [dataclasses.replace(r, func=_neutral(r.func)) for r in rewards]
