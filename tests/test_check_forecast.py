"""`rlft check`'s step-time forecast (issue 33: it read 7x... then 1.8x the measured step on intent_grpo).

The fixed model, pinned without timing anything: an untimed one-row warm-up before the timed forward+backward, the
loss shaped like the trainer's (completion positions only, GRPO's prompt once per group), and sampling counted once
per generation round. benchmarks/check_forecast.py compares the forecast with a real run (0.92x on intent_grpo)."""

from __future__ import annotations

import pytest
import torch

from rlft.recipe import check as check_mod
from rlft.recipe.check import CheckReport, generation_rounds, step_seconds, time_step
from rlft.recipe.load import load_recipe
from tests.conftest import ROOT

RECIPE = ROOT / "recipes" / "intent_grpo.yaml"  # batch 32 = 4 prompts x 8 generations, refill_rounds 1


def test_step_is_forward_backward_times_accumulation_plus_sampling_per_round():
    assert step_seconds(2.0, 3, 0.1, 32, 2) == pytest.approx(2.0 * 3 + 0.1 * 32 * 2)
    assert step_seconds(2.0, 1, 0.1, 0, 1) == 2.0  # offline: no sampling


@pytest.mark.parametrize("overrides, tied, rounds", [
    ([], 0.25, 2),  # drop_zero_std + refill_rounds 1 and some groups tie: every measured step drew twice
    ([], 0.0, 1),  # nothing ties: no refill
    (["signal.refill_rounds=0"], 0.5, 1),
    (["signal.refill_rounds=2"], 0.5, 3),
])
def test_generation_rounds(overrides, tied, rounds):
    assert generation_rounds(load_recipe(RECIPE, overrides), tied) == rounds


def test_warm_up_is_not_timed_and_the_loss_has_the_trainers_shape(monkeypatch, capsys):
    recipe = load_recipe(RECIPE, [])
    clock = [0.0]
    calls = []

    def fake_forward_backward(recipe, model, x, keep, groups):  # noqa: ANN001, ANN202
        calls.append((x.shape[0], keep, groups))
        clock[0] += 100.0 if x.shape[0] == 1 else 2.0  # a cold first call costs far more than a warm one

    monkeypatch.setattr(check_mod, "_forward_backward", fake_forward_backward)
    monkeypatch.setattr(check_mod.time, "perf_counter", lambda: clock[0])
    report = CheckReport()
    step = time_step(report, recipe, torch.nn.Linear(2, 2), list(range(100)), [], gen_s=0.1,
                     labels=[f"l{i}" for i in range(10)], rounds=2, completion_tokens=8.4)
    assert calls == [(1, 8, 1), (32, 8, 4)]  # warm-up on one row; timed: 32 rows, 8 completion positions, 4 groups
    assert step == pytest.approx(2.0 + 0.1 * 32 * 2)  # the 100 s warm-up is not in it
    assert report.step_s == step
    assert "one forward+backward on 32x72 tokens: 2.00 s + sampling 2 round(s) x 32 completions; step estimate " \
           "~8.40 s, ~2.8 min for 20 steps" in capsys.readouterr().out  # 64 prompt tokens (no rows) + 8
