"""PPO maths against values computed by hand on tiny tensors."""

import math

import pytest
import torch

from rlft.ppo import core
from rlft.ppo.kl_control import AdaptiveKLController, FixedKLController, make_kl_controller


def t(*rows):
    return torch.tensor(rows, dtype=torch.float64)


def close(actual: torch.Tensor, expected) -> None:
    torch.testing.assert_close(actual.double(), torch.tensor(expected, dtype=torch.float64))


def test_gae_matches_hand_computation():
    # δ2 = 1 − .7 = .3; δ1 = .7 − .6 = .1; δ0 = .6 − .5 = .1; A = δ + γλ·A_next with γ=1, λ=.5
    adv, ret = core.gae(t([0, 0, 1]), t([0.5, 0.6, 0.7]), t([1, 1, 1]), gamma=1.0, lam=0.5)
    assert adv.tolist()[0] == pytest.approx([0.225, 0.25, 0.3])
    assert ret.tolist()[0] == pytest.approx([0.725, 0.85, 1.0])


def test_gae_with_discount():
    # δ1 = .9·.7 − .6 = .03, A1 = .03 + .855·.3; δ0 = .9·.6 − .5 = .04, A0 = .04 + .855·A1
    adv, _ = core.gae(t([0, 0, 1]), t([0.5, 0.6, 0.7]), t([1, 1, 1]), gamma=0.9, lam=0.95)
    a1 = 0.03 + 0.855 * 0.3
    assert adv.tolist()[0] == pytest.approx([0.04 + 0.855 * a1, a1, 0.3])


def test_gae_ignores_padding_and_gamma_lambda_one_is_monte_carlo():
    rewards, values, mask = t([2, 5], [0.5, 1]), t([1, 9], [0.25, 0.5]), t([1, 0], [1, 1])
    adv, ret = core.gae(rewards, values, mask, gamma=1.0, lam=1.0)
    close(adv, [[1.0, 0.0], [1.25, 0.5]])  # A_t = Σ future rewards − V_t
    close(ret, [[2.0, 0.0], [1.5, 1.0]])


def test_policy_loss_clips_hand_computed():
    ratios = [1.5, 0.5, 1.1, 3.0]
    logprobs = torch.log(t(ratios))
    old = torch.zeros_like(logprobs)
    parts = core.policy_loss(logprobs, old, t([1, 1, -2, 100]), t([1, 1, 1, 0]), cliprange=0.2)
    # token0: max(−1.5, −1.2) = −1.2 (clipped); token1: max(−.5, −.8) = −.5; token2: max(2.2, 2.2);
    # token3 is padding
    assert parts.loss.item() == pytest.approx((-1.2 - 0.5 + 2.2) / 3)
    assert parts.clipfrac.item() == pytest.approx(1 / 3)


def test_policy_loss_at_ratio_one_is_minus_mean_advantage_and_gradient_flows():
    logprobs = torch.zeros(1, 3, requires_grad=True)
    parts = core.policy_loss(logprobs, torch.zeros(1, 3), t([1.0, 2.0, 3.0]).float(), torch.ones(1, 3), 0.2)
    parts.loss.backward()
    assert parts.loss.item() == pytest.approx(-2.0)
    assert logprobs.grad.tolist()[0] == pytest.approx([-1 / 3, -2 / 3, -1.0])


def test_value_loss_clips_hand_computed():
    parts = core.value_loss(t([0.5, -0.05, 7]), t([0.0, 0.0, 0]), t([1.0, 1.0, 0]), t([1, 1, 0]), 0.2)
    # token0: V_clip = .2 -> max(.25, .64) = .64 (clipped); token1: both 1.05² ; token2 padding
    assert parts.loss.item() == pytest.approx(0.5 * (0.64 + 1.1025) / 2)
    assert parts.clipfrac.item() == pytest.approx(0.5)


def test_masked_whiten():
    x, mask = t([1, 2, 3, 4, 100]), t([1, 1, 1, 1, 0])
    std = math.sqrt(5 / 3)  # unbiased variance of 1..4
    assert core.masked_whiten(x, mask).tolist()[0] == pytest.approx([(v - 2.5) / std for v in (1, 2, 3, 4)] + [0])
    kept = core.masked_whiten(x, mask, shift_mean=False).tolist()[0]
    assert kept == pytest.approx([(v - 2.5) / std + 2.5 for v in (1, 2, 3, 4)] + [0])


def test_shaped_rewards_score_on_last_real_token():
    rewards = core.shaped_rewards(t([2.0, 1.0])[0], t([0.1, 0.2, 0.3], [0.0, 0.4, 0.0]), t([1, 1, 0], [1, 1, 1]), 0.5)
    close(rewards, [[-0.05, 1.9, 0.0], [0.0, -0.2, 1.0]])


def test_kl_estimators():
    lp, ref = t([-1.0, -2.0]), t([-1.5, -1.0])
    assert core.kl_per_token(lp, ref, "k1").tolist()[0] == pytest.approx([0.5, -1.0])
    k3 = core.kl_per_token(lp, ref, "k3").tolist()[0]
    assert k3 == pytest.approx([math.exp(-0.5) - 1 + 0.5, math.exp(1.0) - 1 - 1.0])
    assert min(k3) >= 0
    with pytest.raises(ValueError):
        core.kl_per_token(lp, ref, "k2")


def test_explained_variance_and_entropy():
    mask = t([1, 1, 1, 0])
    returns = t([1.0, 2.0, 3.0, 50.0])
    assert core.explained_variance(returns, returns, mask).item() == pytest.approx(1.0)
    assert core.explained_variance(t([2.0, 2.0, 2.0, 0.0]), returns, mask).item() == pytest.approx(0.0)
    assert core.entropy_from_logits(torch.zeros(2, 4)).tolist() == pytest.approx([math.log(4)] * 2)
    peaked = torch.tensor([[100.0, 0.0, 0.0]])
    assert core.entropy_from_logits(peaked).item() == pytest.approx(0.0, abs=1e-6)


def test_approx_kl_zero_when_unchanged():
    lp = t([-1.0, -2.0])
    assert core.approx_kl(lp, lp, torch.ones_like(lp)).item() == 0.0
    assert core.approx_kl(lp, lp - 0.2, torch.ones_like(lp)).item() == pytest.approx(0.02)


def test_adaptive_kl_controller_update_rule():
    ctl = AdaptiveKLController(0.1, target=6.0, horizon=10000)
    assert ctl.update(12.0, 100) == pytest.approx(0.1 * (1 + 0.2 * 100 / 10000))  # error clipped at +0.2
    ctl = AdaptiveKLController(0.1, target=6.0, horizon=10000)
    assert ctl.update(6.6, 100) == pytest.approx(0.1 * (1 + 0.1 * 100 / 10000))
    ctl = AdaptiveKLController(0.1, target=6.0, horizon=10000)
    assert ctl.update(0.0, 100) == pytest.approx(0.1 * (1 - 0.2 * 100 / 10000))  # clipped at −0.2
    for _ in range(50):  # repeated overshoot keeps raising β
        ctl.update(60.0, 1000)
    assert ctl.value > 0.1


def test_fixed_kl_controller_and_factory():
    assert FixedKLController(0.02).update(100.0, 64) == 0.02
    assert isinstance(make_kl_controller(0.02, None, 10000), FixedKLController)
    assert isinstance(make_kl_controller(0.02, 6.0, 10000), AdaptiveKLController)
    with pytest.raises(ValueError):
        AdaptiveKLController(0.1, target=0.0, horizon=100)
