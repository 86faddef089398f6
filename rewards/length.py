"""Length guard: penalise completions longer than a word budget (a cheap check against length padding).

    >>> LengthReward(max_words=3)(prompts=["p", "p"], completions=["a b", "a b c d e"])
    [0.0, -0.4]
"""

from __future__ import annotations

from typing import Any

from rlft.reward_protocol import BaseReward, completion_text


class LengthReward(BaseReward):
    """0 up to `max_words`; then −`penalty_per_word` per extra word, floored at `floor`."""

    name = "length"

    def __init__(self, max_words: int = 64, penalty_per_word: float = 0.2, floor: float = -1.0):
        if max_words < 0:
            raise ValueError("max_words must be >= 0")
        self.max_words, self.penalty, self.floor = max_words, penalty_per_word, floor

    def __call__(self, prompts: list, completions: list, **kwargs: Any) -> list[float]:
        out = []
        for c in completions:
            extra = max(0, len(completion_text(c).split()) - self.max_words)
            out.append(max(self.floor, -self.penalty * extra) if extra else 0.0)
        return out
