"""Per-prompt success statistics: the prompt_ema baseline and adaptive selection of refill prompts.

A prompt is keyed by a hash of its prompt token ids (stable across runs, processes and resumes). For each one we
keep the rollouts seen, the successes among them (total reward >= `signal.success_threshold`) and a running mean
of its reward (exponential, newest group weighted `signal.baseline_ema`).

- **Baseline** (`signal.baseline: prompt_ema`): the advantage of a rollout is r - b, with b the prompt's running
  mean *before* this group (so b does not depend on the sample it scores); a prompt seen for the first time uses
  the running mean over all prompts (on the very first draw: that draw's mean). An all-wrong group then gets
  negative advantages and pushes the wrong mode down, where the group mean (TRL) gives it zero (negative-sample
  reinforcement, arXiv 2506.01347). A prompt that stays unsolved sees its baseline decay geometrically towards its
  own reward, so the push fades after a few visits; a reward that scores wrong answers below 0 keeps it.
- **Adaptive draws** (`signal.adaptive`): refill candidates are weighted max(1 - success rate, retest_solved),
  unseen prompts 1: prompts with low or intermediate success are preferred and solved ones retested rarely.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import Any


def prompt_key(ids: Sequence[int]) -> str:
    return hashlib.sha1(",".join(map(str, ids)).encode()).hexdigest()[:16]


class PromptStats:
    def __init__(self, success_threshold: float = 1.0, ema: float = 0.5):
        self.success_threshold = success_threshold
        self.ema = ema
        self.stats: dict[str, list[float]] = {}  # key -> [rollouts, successes, running mean reward]
        self.global_mean: float | None = None

    def baseline(self, key: str) -> float:
        if key in self.stats:
            return self.stats[key][2]
        return 0.0 if self.global_mean is None else self.global_mean

    def success_rate(self, key: str) -> float | None:
        s = self.stats.get(key)
        return None if s is None or not s[0] else s[1] / s[0]

    def weight(self, key: str, retest_solved: float) -> float:
        p = self.success_rate(key)
        return 1.0 if p is None else max(1.0 - p, retest_solved)

    def start_draw(self, rewards: Sequence[float]) -> None:
        """Before the first draw: the prior of unseen prompts is that draw's mean reward (nothing else is known)."""
        scored = [r for r in rewards if r == r]
        if self.global_mean is None and scored:
            self.global_mean = sum(scored) / len(scored)

    def update(self, keys: Sequence[str], groups: Sequence[Sequence[float]]) -> None:
        """Record one draw: a group of rewards per prompt key (NaN = unscorable, ignored). A new prompt's running
        mean starts from the all-prompt mean before this draw; that mean then moves by the draw's mean."""
        draw = []
        prior = self.baseline("")  # the all-prompt mean before this draw ("" is never a key)
        for key, rewards in zip(keys, groups, strict=True):
            scored = [r for r in rewards if r == r]
            if not scored:
                continue
            draw += scored
            s = self.stats.setdefault(key, [0.0, 0.0, prior])
            s[0] += len(scored)
            s[1] += sum(r >= self.success_threshold for r in scored)
            s[2] = (1 - self.ema) * s[2] + self.ema * sum(scored) / len(scored)
        if draw:
            mean = sum(draw) / len(draw)
            g = self.global_mean
            self.global_mean = mean if g is None else (1 - self.ema) * g + self.ema * mean

    def state_dict(self) -> dict[str, Any]:
        return {"stats": {k: list(v) for k, v in self.stats.items()}, "global_mean": self.global_mean}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.stats = {k: [float(x) for x in v] for k, v in state["stats"].items()}
        self.global_mean = state["global_mean"]
