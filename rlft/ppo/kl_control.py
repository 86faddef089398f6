"""KL coefficient controllers for PPO's per-token penalty −β·KL(π‖π_ref).

`AdaptiveKLController` is Ziegler et al. 2019 (https://huggingface.co/papers/1909.08593), as in TRL's former PPO:
    e = clip(KL / target − 1, −0.2, 0.2);   β ← β · (1 + e · n_steps / horizon)
where KL is the mean per-sequence KL of the last rollout and n_steps the number of sequences in it. β rises when the
policy drifts beyond the target and decays when it stays close. `FixedKLController` keeps β constant.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class FixedKLController:
    value: float

    def update(self, current_kl: float, n_steps: int) -> float:
        return self.value


@dataclass
class AdaptiveKLController:
    value: float
    target: float
    horizon: int

    def __post_init__(self) -> None:
        if self.target <= 0:
            raise ValueError(f"target_kl must be > 0 for the adaptive KL controller, got {self.target}")
        if self.horizon <= 0:
            raise ValueError(f"kl_horizon must be > 0, got {self.horizon}")

    def update(self, current_kl: float, n_steps: int) -> float:
        error = min(max(current_kl / self.target - 1.0, -0.2), 0.2)
        self.value *= 1.0 + error * n_steps / self.horizon
        return self.value


def make_kl_controller(init_kl_coef: float, target_kl: float | None, horizon: int
                       ) -> FixedKLController | AdaptiveKLController:
    """Adaptive when a target KL is given, fixed otherwise."""
    if target_kl is None:
        return FixedKLController(init_kl_coef)
    return AdaptiveKLController(init_kl_coef, target_kl, horizon)
