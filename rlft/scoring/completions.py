"""Scoring completions with loaded rewards outside a TRL trainer (evaluation, labelling, PPO).

Mirrors what TRL's GRPOTrainer does inside `_calculate_rewards`: every reward is called with the same keywords,
async rewards run concurrently, `None` abstains, and an abstention contributes nothing to the weighted sum: it is
filled in with the mean of that reward over the other completions of the same prompt (else of the batch), see
`rlft.scoring.abstain`. A row where every reward abstained stays `None`. Metrics a reward logs through `log_metric` are
collected and averaged.
"""

from __future__ import annotations

import asyncio
import math
import threading
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from rlft.scoring.abstain import group_keys, impute_abstentions
from rlft.scoring.loader import LoadedReward


@dataclass
class Scores:
    """Per-reward values, their weighted combination, and metrics rewards logged while scoring."""

    per_reward: dict[str, list[float | None]]
    total: list[float | None]
    metrics: dict[str, float] = field(default_factory=dict)
    extras: dict[str, list[Any]] = field(default_factory=dict)  # per-completion values rewards gave `log_extra`


def combine(
    per_reward: dict[str, list[float | None]],
    weights: dict[str, float],
    aggregation: str = "sum",
    group_size: int | None = None,
    groups: Sequence[Any] | None = None,
) -> list[float | None]:
    """Weighted sum of rewards per completion; an abstention contributes nothing (`rlft.scoring.abstain`).

    Groups are `group_size` consecutive completions, else the `groups` keys (e.g. one per prompt), else the batch.

    `aggregation="normalize_then_sum"` first standardises each reward within groups of `group_size` consecutive
    completions (as TRL's `multi_objective_aggregation` does), so rewards on different scales count equally.
    """
    names = list(per_reward)
    n = len(per_reward[names[0]]) if names else 0
    columns = {k: list(v) for k, v in per_reward.items()}
    if aggregation == "normalize_then_sum":
        size = group_size or n
        for k, vals in columns.items():
            for start in range(0, n, size):
                group = [v for v in vals[start:start + size] if v is not None]
                if not group:
                    continue
                mean = sum(group) / len(group)
                std = math.sqrt(sum((v - mean) ** 2 for v in group) / len(group))
                for i in range(start, min(start + size, n)):
                    if vals[i] is not None:
                        vals[i] = (vals[i] - mean) / (std + 1e-4)
    elif aggregation != "sum":
        raise ValueError(f"aggregation must be 'sum' or 'normalize_then_sum', got {aggregation!r}")
    if group_size:
        groups = [i // group_size for i in range(n)]
    unscorable = [all(columns[k][i] is None for k in names) for i in range(n)]
    filled = {k: impute_abstentions(vals, groups) for k, vals in columns.items()}
    total: list[float | None] = []
    for i in range(n):
        present = [(weights[k], filled[k][i]) for k in names if filled[k][i] is not None]
        total.append(sum(w * v for w, v in present) if present and not unscorable[i] else None)
    return total


def _run_coroutine(coro):
    """Run a coroutine from sync code, also when called inside a running event loop (e.g. a notebook)."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coro)
    result: dict[str, Any] = {}

    def runner():
        try:
            result["value"] = asyncio.run(coro)
        except BaseException as exc:  # re-raised in the caller's thread
            result["error"] = exc

    t = threading.Thread(target=runner)
    t.start()
    t.join()
    if "error" in result:
        raise result["error"]
    return result["value"]


def score(
    rewards: Sequence[LoadedReward],
    prompts: Sequence[Any],
    completions: Sequence[Any],
    columns: dict[str, Sequence[Any]] | None = None,
    aggregation: str = "sum",
    group_size: int | None = None,
    trainer_state: Any = None,
) -> Scores:
    """Score completions with every reward; `columns` holds one value per completion for each dataset column."""
    logged: dict[str, list[float]] = defaultdict(list)
    extras: dict[str, list[Any]] = {}
    kwargs = dict(columns or {})
    kwargs.update(trainer_state=trainer_state, log_metric=lambda k, v: logged[k].append(float(v)),
                  log_extra=lambda k, v: extras.__setitem__(k, list(v)))
    prompts, completions = list(prompts), list(completions)
    per_reward: dict[str, list[float | None]] = {}
    async_rewards = [r for r in rewards if r.is_async]
    for r in rewards:
        if not r.is_async:
            per_reward[r.name] = r.func(prompts=prompts, completions=completions, **kwargs)
    if async_rewards:

        async def gather():
            return await asyncio.gather(
                *(r.func(prompts=prompts, completions=completions, **kwargs) for r in async_rewards)
            )

        for r, vals in zip(async_rewards, _run_coroutine(gather()), strict=True):
            per_reward[r.name] = vals
    per_reward = {r.name: per_reward[r.name] for r in rewards}  # recipe order
    total = combine(per_reward, {r.name: r.weight for r in rewards}, aggregation, group_size,
                    None if group_size else group_keys(prompts))
    metrics = {k: sum(v) / len(v) for k, v in logged.items() if v}
    return Scores(per_reward, total, metrics, extras)
