"""An abstention contributes nothing when rewards are combined: hand-computed batches, for TRL's GRPO sum and for
rlft's own scoring (evaluation, labelling, PPO)."""

import asyncio
import math

import pytest
import torch

from rlft.scoring.abstain import impute_abstentions, neutral_rewards
from rlft.scoring.loader import LoadedReward
from rlft.scoring.completions import combine, score

PROMPT = [{"role": "user", "content": "refund please"}]


def _trl_sum_then_normalize(per_func: list[list[float | None]], weights: list[float], group: int) -> list[float]:
    """TRL 1.16 GRPOTrainer, multi_objective_aggregation sum_then_normalize, scale_rewards none (its lines verbatim:
    None -> NaN, nansum of weighted rewards, unscorable rows NaN, group nanmean baseline, NaN advantage -> 0)."""
    r = torch.tensor([[math.nan if v is None else v for v in row] for row in zip(*per_func)])
    unscorable = torch.isnan(r).all(dim=1)
    rewards = (r * torch.tensor(weights).unsqueeze(0)).nansum(dim=1)
    rewards[unscorable] = torch.nan
    mean = torch.nanmean(rewards.view(-1, group), dim=1).repeat_interleave(group)
    return torch.nan_to_num(rewards - mean, nan=0.0).tolist()


def _loaded(name, values, is_async=False):
    if is_async:
        async def func(prompts, completions, **kw):
            await asyncio.sleep(0)
            return list(values)
    else:
        def func(prompts, completions, **kw):
            return list(values)
    func.__name__ = name
    return LoadedReward(name, func, 1.0, (), is_async)


def test_plain_trl_sum_counts_an_abstention_as_a_bad_verdict():
    # intent 1 everywhere; judge: Accurate, abstained, Inaccurate. Totals 2, 1, 1: the abstained row gets the
    # advantage of the Inaccurate one (-1/3) -- the bug.
    adv = _trl_sum_then_normalize([[1.0, 1.0, 1.0], [1.0, None, 0.0]], [1.0, 1.0], 3)
    assert adv == pytest.approx([2 - 4 / 3, 1 - 4 / 3, 1 - 4 / 3])


def test_grpo_wrapped_rewards_give_the_abstained_row_zero_advantage():
    rewards = [_loaded("intent", [1.0, 1.0, 1.0, 0.0, 1.0, 1.0]),
               _loaded("judge", [1.0, None, 0.0, None, None, 1.0], is_async=True)]
    wrapped = neutral_rewards(rewards, "grpo", {})
    prompts = [PROMPT] * 3 + ["other"] * 3
    outs = [r.func(prompts=prompts, completions=["x"] * 6) for r in wrapped]
    outs[1] = asyncio.run(outs[1])
    assert wrapped[1].func.__name__ == "judge" and asyncio.iscoroutinefunction(wrapped[1].func)
    # group 1: judge mean of the scored rows (1, 0) = 0.5 fills the gap; group 2: only row 6 scored (1.0)
    assert outs[1] == [1.0, 0.5, 0.0, 1.0, 1.0, 1.0]
    adv = _trl_sum_then_normalize(outs, [1.0, 1.0], 3)
    # group 1 totals 2, 1.5, 1 (mean 1.5): the abstained row moves neither way; group 2 totals 1, 2, 2 (mean 5/3)
    assert adv == pytest.approx([0.5, 0.0, -0.5, 1 - 5 / 3, 2 - 5 / 3, 2 - 5 / 3])


def test_wrapping_only_where_trl_would_count_zero():
    rewards = [_loaded("a", [None]), _loaded("b", [1.0])]
    assert neutral_rewards(rewards, "grpo", {"multi_objective_aggregation": "normalize_then_sum"}) == rewards
    assert neutral_rewards(rewards[:1], "grpo", {}) == rewards[:1]
    assert neutral_rewards(rewards, "dpo", {}) == rewards
    assert neutral_rewards(rewards, "grpo", {})[0].func is not rewards[0].func


def test_scoring_combine_imputes_within_prompt_groups_and_keeps_all_abstained_rows_none():
    per = {"intent": [1.0, 1.0, 1.0, None], "judge": [1.0, None, 0.0, None]}
    assert combine(per, {"intent": 1.0, "judge": 1.0}, groups=["p"] * 4) == [2.0, 1.5, 1.0, None]
    assert combine(per, {"intent": 1.0, "judge": 2.0}, group_size=2) == [3.0, 3.0, 1.0, None]
    scores = score([_loaded("intent", per["intent"]), _loaded("judge", per["judge"])], [PROMPT] * 4, ["x"] * 4)
    assert scores.total == [2.0, 1.5, 1.0, None]
    assert scores.per_reward["judge"] == [1.0, None, 0.0, None]  # per-reward values stay as the reward returned


def test_impute_falls_back_to_the_batch_mean_and_leaves_an_all_abstained_reward_alone():
    assert impute_abstentions([None, 2.0, 0.0], ["a", "b", "b"]) == [1.0, 2.0, 0.0]
    assert impute_abstentions([float("nan"), 1.0]) == [1.0, 1.0]
    assert impute_abstentions([None, None], ["a", "a"]) == [None, None]
