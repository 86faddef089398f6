"""Length guard: penalise completions longer than a word budget (a cheap check against length padding).

    >>> LengthReward(max_words=3)(prompts=["p", "p"], completions=["a b", "a b c d e"])
    [0.0, -0.4]

`start_step` phases the term in: during training it scores 0 for every completion until the trainer's
`global_step` reaches it, so the policy first learns what the other rewards ask for and is trimmed afterwards (a
length term from step 0 can cut content before it is ever found; docs/support_agent.md#phase-in). Outside a
trainer (`rlft eval`, no `trainer_state`) it always applies: evaluation scores the final objective.
"""

from __future__ import annotations

from typing import Any

from rlft.scoring.protocol import BaseReward, completion_text


class LengthReward(BaseReward):
    """0 up to `max_words`; then −`penalty_per_word` per extra word, floored at `floor` (from `start_step` on)."""

    name = "length"

    def __init__(self, max_words: int = 64, penalty_per_word: float = 0.2, floor: float = -1.0,
                 start_step: int = 0):
        if max_words < 0:
            raise ValueError("max_words must be >= 0")
        if start_step < 0:
            raise ValueError("start_step must be >= 0")
        self.max_words, self.penalty, self.floor, self.start_step = max_words, penalty_per_word, floor, start_step

    def __call__(self, prompts: list, completions: list, trainer_state: Any = None, **kwargs: Any) -> list[float]:
        if trainer_state is not None and trainer_state.global_step < self.start_step:
            return [0.0] * len(completions)
        out = []
        for c in completions:
            extra = max(0, len(completion_text(c).split()) - self.max_words)
            out.append(max(self.floor, -self.penalty * extra) if extra else 0.0)
        return out
