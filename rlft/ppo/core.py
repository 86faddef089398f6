"""PPO maths on padded token tensors: whitening, KL-shaped rewards, GAE, clipped losses and diagnostics.

Every function is pure (no model, no state) and works on `(batch, completion_tokens)` tensors with a 0/1 `mask` that
marks real completion tokens (padding after EOS is 0). Conventions follow Ziegler et al. 2019 / Stiennon et al. 2020
and TRL's former PPOv2 trainer: the sequence score lands on the last real token, every token pays −β·KL to the
reference, advantages come from GAE(γ, λ) and losses are token means over the whole batch.
Not here: anything that touches a model or an optimizer (see `rlft.ppo.sampling` and `rlft.ppo.ppo_trainer`).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


def masked_mean(values: torch.Tensor, mask: torch.Tensor, dim: int | None = None) -> torch.Tensor:
    """Mean of `values` where `mask` is 1 (over everything, or along `dim`)."""
    mask = mask.to(values.dtype)
    if dim is None:
        return (values * mask).sum() / mask.sum().clamp(min=1.0)
    return (values * mask).sum(dim) / mask.sum(dim).clamp(min=1.0)


def masked_var(values: torch.Tensor, mask: torch.Tensor, unbiased: bool = True) -> torch.Tensor:
    """Variance of the masked entries; Bessel-corrected by default (as TRL's PPO did)."""
    mask = mask.to(values.dtype)
    mean = masked_mean(values, mask)
    var = masked_mean((values - mean) ** 2, mask)
    if unbiased:
        n = mask.sum()
        if n > 1:
            var = var * n / (n - 1)
    return var


def masked_whiten(values: torch.Tensor, mask: torch.Tensor, shift_mean: bool = True, eps: float = 1e-8
                  ) -> torch.Tensor:
    """Standardise the masked entries to unit variance (and zero mean unless `shift_mean=False`); padding -> 0.

    `shift_mean=False` keeps the mean, which is how rewards are whitened: centring them would change which
    completions the value function sees as good or bad in absolute terms.
    """
    mean, var = masked_mean(values, mask), masked_var(values, mask)
    whitened = (values - mean) * torch.rsqrt(var + eps)
    if not shift_mean:
        whitened = whitened + mean
    return whitened * mask.to(values.dtype)


def kl_per_token(logprobs: torch.Tensor, ref_logprobs: torch.Tensor, estimator: str = "k1") -> torch.Tensor:
    """Per-token KL(π‖π_ref) estimate from sampled-token log-probs.

    k1 = log π − log π_ref: unbiased, can be negative per token; the classic RLHF penalty.
    k3 = r − 1 − log r with r = π_ref/π: also unbiased, never negative, lower variance (Schulman, "Approximating
    KL divergence", 2020).
    """
    diff = logprobs - ref_logprobs
    if estimator == "k1":
        return diff
    if estimator == "k3":
        return torch.expm1(-diff) + diff
    raise ValueError(f"kl_estimator must be 'k1' or 'k3', got {estimator!r}")


def last_token_index(mask: torch.Tensor) -> torch.Tensor:
    """Index of the last real token of each row (0 for an all-padding row)."""
    positions = torch.arange(mask.shape[1], device=mask.device).expand_as(mask)
    return (positions * mask.long()).max(dim=1).values


def shaped_rewards(scores: torch.Tensor, kl: torch.Tensor, mask: torch.Tensor, kl_coef: float) -> torch.Tensor:
    """Per-token rewards: −β·KL on every real token, plus the sequence score on the last real token."""
    rewards = -kl_coef * kl * mask.to(kl.dtype)
    rows = torch.arange(rewards.shape[0], device=rewards.device)
    rewards[rows, last_token_index(mask)] += scores.to(rewards.dtype)
    return rewards


def gae(rewards: torch.Tensor, values: torch.Tensor, mask: torch.Tensor, gamma: float, lam: float
        ) -> tuple[torch.Tensor, torch.Tensor]:
    """Generalised advantage estimation over completion tokens -> (advantages, returns), both zero on padding.

    δ_t = r_t + γ·V_{t+1} − V_t with V = 0 after the last real token; A_t = δ_t + γλ·A_{t+1}; returns = A + V.
    """
    m = mask.to(values.dtype)
    values = values * m
    rewards = rewards * m
    advantages = torch.zeros_like(values)
    last = torch.zeros_like(values[:, 0])
    steps = values.shape[1]
    for t in reversed(range(steps)):
        next_values = values[:, t + 1] if t + 1 < steps else torch.zeros_like(last)
        delta = rewards[:, t] + gamma * next_values - values[:, t]
        last = (delta + gamma * lam * last) * m[:, t]
        advantages[:, t] = last
    returns = advantages + values
    return advantages, returns * m


@dataclass
class LossParts:
    loss: torch.Tensor
    clipfrac: torch.Tensor


def policy_loss(logprobs: torch.Tensor, old_logprobs: torch.Tensor, advantages: torch.Tensor, mask: torch.Tensor,
                cliprange: float) -> LossParts:
    """Clipped surrogate: mean over tokens of max(−A·ρ, −A·clip(ρ, 1−ε, 1+ε)), ρ = π/π_old."""
    ratio = torch.exp(logprobs - old_logprobs)
    unclipped = -advantages * ratio
    clipped = -advantages * torch.clamp(ratio, 1.0 - cliprange, 1.0 + cliprange)
    loss = masked_mean(torch.maximum(unclipped, clipped), mask)
    clipfrac = masked_mean((clipped > unclipped).to(logprobs.dtype), mask)
    return LossParts(loss, clipfrac)


def value_loss(values: torch.Tensor, old_values: torch.Tensor, returns: torch.Tensor, mask: torch.Tensor,
               cliprange_value: float) -> LossParts:
    """Clipped value loss: ½·mean(max((V − R)², (V_old + clip(V − V_old, ±ε_v) − R)²))."""
    clipped_values = old_values + torch.clamp(values - old_values, -cliprange_value, cliprange_value)
    unclipped = (values - returns) ** 2
    clipped = (clipped_values - returns) ** 2
    loss = 0.5 * masked_mean(torch.maximum(unclipped, clipped), mask)
    clipfrac = masked_mean((clipped > unclipped).to(values.dtype), mask)
    return LossParts(loss, clipfrac)


def explained_variance(values: torch.Tensor, returns: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """1 − Var(R − V)/Var(R) over real tokens: 1 = perfect critic, 0 = no better than a constant, < 0 = worse."""
    var_returns = masked_var(returns, mask, unbiased=False)
    if var_returns <= 0:
        return torch.zeros((), dtype=values.dtype, device=values.device)
    return 1.0 - masked_var(returns - values, mask, unbiased=False) / var_returns


def entropy_from_logits(logits: torch.Tensor) -> torch.Tensor:
    """Entropy (nats) of the categorical distribution at each position: logsumexp(z) − Σ softmax(z)·z."""
    probs = torch.softmax(logits, dim=-1)
    return torch.logsumexp(logits, dim=-1) - (probs * logits).sum(dim=-1)


def approx_kl(logprobs: torch.Tensor, old_logprobs: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """½·mean((log π − log π_old)²): how far one PPO epoch moved the policy (diagnostic, not the KL penalty)."""
    return 0.5 * masked_mean((logprobs - old_logprobs) ** 2, mask)
