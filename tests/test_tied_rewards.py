"""Issue 33: a constant reward switched off zero-signal handling. With the README's `brevity` (always 1.0 at weight
0.2) next to `intent`, a group whose intent rewards tie totals 1.2 on every row, and the float32 mean of eight 1.2s
is off by one rounding: std ~1e-7, which TRL's scaling (/ (std + 1e-4)) turns into advantages of ~1e-3, past the
1e-6 cutoff. Ties are now read on the rewards themselves (`rlft.grpo.batch.tied_groups`)."""

from __future__ import annotations

import json
import math

import pytest
import torch

import rlft
from rlft.grpo.batch import split_groups, tied_groups

NAN = math.nan


def _trl_advantages(totals: torch.Tensor, g: int) -> torch.Tensor:
    """TRL's group-scaled advantages (sum_then_normalize, scale_rewards: group)."""
    from trl.trainer.utils import nanstd

    grouped = totals.view(-1, g)
    mean = torch.nanmean(grouped, dim=1).repeat_interleave(g)
    std = nanstd(grouped, dim=1).repeat_interleave(g)
    return (totals - mean) / (std + 1e-4)


def test_a_tie_scaled_past_the_cutoff_is_still_a_tie():
    per_func = torch.tensor([[1.0, 1.0]] * 8 + [[1.0, 1.0]] * 4 + [[0.0, 1.0]] * 4)
    totals = (per_func * torch.tensor([1.0, 0.2])).nansum(dim=1)
    advantages = _trl_advantages(totals, 8)
    assert advantages[:8].abs().max() > 1e-6  # the rounding, scaled: what the old cutoff read as signal
    assert tied_groups(totals, 8) == [True, False]
    kept, zero = split_groups(advantages, 8, tied_groups(totals, 8))
    assert kept == [list(range(8, 16))] and zero == [list(range(8))]


@pytest.mark.parametrize(("rewards", "tied"), [
    ([1.2] * 4, True),
    ([1.2, 1.2, 1.2, 1.2000001], True),       # float32 rounding of a sum (relative 1e-7)
    ([1000.0, 1000.0, 1000.0, 1000.0001], True),  # relative to the rewards' size
    ([1.0, 1.0, 1.0, 1.00001], False),         # a real, if small, difference
    ([NAN, 0.5, 0.5, NAN], True),              # abstentions left out
    ([NAN, NAN, NAN, 0.5], True),              # one scored row: nothing to compare
    ([NAN, 0.0, 1.0, NAN], False),
])
def test_tied_groups_reads_the_rewards(rewards, tied):
    assert tied_groups(torch.tensor(rewards, dtype=torch.float32), 4) == [tied]


def test_per_reward_ties_need_every_reward_to_tie():
    """With segment credit each reward has its own advantage: offsetting rewards (totals tie) still carry signal."""
    per_func = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 0.0], [0.0, 1.0], [1.0, 1.0]] + [[1.0, 1.0]] * 3)
    assert tied_groups(per_func.sum(dim=1), 4) == [True, True]
    assert tied_groups(per_func, 4) == [False, True]


REWARDS = """def correct(prompts, completions, **kwargs):
    return [1.0] * len(completions)


def brevity(prompts, completions, **kwargs):
    return [1.0] * len(completions)
"""
RECIPE = """algorithm: grpo
output_dir: {out}
model: {{name: {model}}}
adapter: {{type: lora, r: 4, alpha: 8}}
data: {{source: "demo:intents", demo_size: 40}}
rewards:
  - {{name: "{file}:correct", weight: 1.0}}
  - {{name: "{file}:brevity", weight: 0.2}}
trainer: {{max_steps: 1, per_device_train_batch_size: 16, num_generations: 8, max_completion_length: 4,
          logging_steps: 1, beta: 0.0}}
evaluation: {{before: false, after: false}}
{signal}
"""


@pytest.mark.parametrize(("signal", "keys"), [
    ("signal: {drop_zero_std: true, refill_rounds: 1}",
     {"signal/frac_zero_std_first_draw": 1.0, "signal/refill_rounds": 1.0, "signal/groups_trained": 0.0}),
    ("", {"frac_reward_zero_std": 1.0}),
], ids=["signal_grpo", "trl_grpo"])
def test_a_constant_reward_leaves_tied_groups_tied(tiny_model_dir, tmp_path, signal, keys):
    (tmp_path / "my_rewards.py").write_text(REWARDS)
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(RECIPE.format(out=tmp_path / "run", model=tiny_model_dir, file=tmp_path / "my_rewards.py",
                                    signal=signal))
    rlft.train(recipe)
    history = json.loads((tmp_path / "run" / "metrics.json").read_text())["log_history"]
    step = next(h for h in history if "reward" in h)
    assert step["reward"] == pytest.approx(1.2)
    assert {k: step[k] for k in keys} == keys
