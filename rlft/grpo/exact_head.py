"""`signal.exact_head`: the support agent's head learned by the exact label-space objective inside GRPO.

A free-reply completion is a constrained head (``<intent>label</intent>``) then a free reply. Sampled GRPO credits
the head through the 8 labels its rollouts happened to pick; on a closed label set the exact expected reward
Σₖ π(k|x)·r(k) is one teacher-forced pass per prompt (`rlft.decoding.label_space`, docs/algorithms.md). With
``signal.exact_head: [intent]``:

- the listed rewards get GRPO weight 0: their sampled advantage no longer reaches any token (the reply's rewards
  still train the whole completion, or only the reply with ``segment_credit: {reply: [...]}``);
- on each generation round's prompts (this process's, once per prompt), plus ``signal.exact_head_extra_prompts``
  training rows drawn at random (no rollouts: a teacher-forced pass each), every allowed label is scored by the
  listed rewards with the row's columns, and `rlft.decoding.label_space.label_pg_loss` (the ``label_pg:`` section's weighting and
  normaliser) is added to the GRPO loss times ``signal.exact_head_weight``. The label paths stop after
  ``decoding.label_suffix`` (the reply follows; no EOS).

It runs in the first loss call after each generation round (TRL's ``steps_per_generation`` splits a round into
several). Metrics ``exact_head/*``: p_free, p_constrained, frac_solved, frac_no_signal, label_paths.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from rlft.recipe.sections import DecodingConfig, LabelPGConfig
from rlft.decoding.label_space import LabelSpace, rows_loss
from rlft.scoring.loader import LoadedReward


def head_reward_indices(names: Sequence[str], reward_names: Sequence[str]) -> list[int]:
    """Positions of `names` among the trainer's rewards; ValueError naming an unknown or repeated one."""
    out = []
    for name in names:
        if name not in reward_names:
            raise ValueError(f"unknown reward {name!r} (rewards: {', '.join(reward_names)})")
        if reward_names.index(name) in out:
            raise ValueError(f"reward {name!r} is listed twice")
        out.append(reward_names.index(name))
    return out


class ExactHead:
    """The label-space loss of the head rewards over a round's prompts."""

    def __init__(self, rewards: Sequence[LoadedReward], labels: Sequence[str], tokenizer: Any,
                 decoding: DecodingConfig, config: LabelPGConfig):
        if not decoding.constrain_labels or not decoding.free_reply:
            raise ValueError("needs decoding.constrain_labels: true and decoding.free_reply: true")
        self.rewards = list(rewards)
        self.tokenizer = tokenizer
        self.decoding = decoding
        self.config = config
        self.space = LabelSpace.build(tokenizer, labels, decoding)
        pad = tokenizer.pad_token_id
        self.pad_token_id = tokenizer.eos_token_id if pad is None else pad

    def loss(self, model: Any, rows: Sequence[dict[str, Any]], trainer_state: Any = None
             ) -> tuple[torch.Tensor, dict[str, float]]:
        return rows_loss(model, self.space, self.config, self.rewards, rows, self.tokenizer, self.decoding,
                         self.pad_token_id, trainer_state=trainer_state)
