"""Hinted exploration (`signal.reply_hints`): some rollouts of each group get one more move after their reply ends.

GRPO learns a move only when a sampled reply makes it: a policy that never asks a question, thanks or apologises
gets groups whose rewards tie, and the prompt teaches nothing (docs/support_agent.md#reply-exploration measured it:
0 of 16 sampled replies asked for the order number). Here, for `signal.hint_share` of each group's rollouts, once the
sampled reply has ended (EOS, or `decoding.reply_stop`), one of `signal.reply_hints` (e.g. " Could you", a move, not an
answer) is appended and the policy writes on from it to EOS, inside the reply's token budget. The reward decides: a
hinted reply that scores above its group teaches the policy to make that move itself at that point, one that scores
below teaches it not to, and where the move does not matter the rewards tie.

The hint's tokens were not sampled from the policy. They stay in the loss as the policy's own (the point is to
raise their probability where they pay), and TRL's importance ratio is 1 for them as for every rollout token on the
transformers path (the rollout returns no sampling log-probs: `rlft.grpo.rollout`). So a hinted rollout is an
off-policy sample weighted as on-policy, the same bias as learning from demonstrations with a policy-gradient
weight (cf. hint- or prefix-guided RL for hard prompts); keep `hint_share` small and read `signal/hinted` and the
per-group rewards. Training only: evaluation, `rlft eval`, labelling and serving never append a hint.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any


def hinted_positions(rows: int, group: int, share: float) -> list[int]:
    """Indices of the rollouts that get a hint: the last round(group * share) of every group of `group` consecutive
    rows (TRL orders a step's rollouts group by group), at least one per group when share > 0."""
    if group < 1 or share <= 0:
        return []
    per_group = min(group, max(1, round(group * share)))
    return [g + k for g in range(0, rows - rows % group, group) for k in range(group - per_group, group)]


def hint_for(position: int, group: int, hints: Sequence[Any], step: int = 0) -> Any:
    """The hint of rollout `position`: the group's hinted rollouts take the hints in turn, and the turn moves on
    with the group and the step, so every hint is tried on every kind of prompt over a run."""
    return hints[(position % group + position // group + step) % len(hints)]


def extend_with_hints(completions: list[list[int]], prompt_ids: Sequence[Sequence[int]], positions: Sequence[int],
                      hint_ids: Sequence[Sequence[int]], pick: Callable[[int], int], trie: Any,
                      eos_token_ids: Sequence[int], max_completion_length: int,
                      sample: Callable[[list[list[int]], int, Callable[[list[int]], int | None]], list[list[int]]],
                      ) -> tuple[list[list[int]], list[int]]:
    """`completions` with a hint and the policy's continuation appended to the rollouts at `positions` whose reply
    ended by itself; returns them and the positions actually hinted.

    `pick(position)` -> index into `hint_ids`. `trie`: the recipe's `Constraint` (its reply budget and stop ids).
    `sample(prefixes, max_new_tokens, stop)` continues each prefix (prompt + completion + hint) once with the
    trainer's sampling and returns the new ids (EOS included when emitted); `stop(ids)` cuts a continuation at a
    stop token. A rollout is left as it is when its reply is not open (the head did not complete), it hit the
    generation limit instead of ending, or its budget has no room for the hint and one more token.
    """
    eos = set(int(t) for t in eos_token_ids)
    end_id = trie.eos_token_id if trie.eos_token_id is not None else next(iter(eos))
    reply_index = next((k for k, s in enumerate(trie.states) if s is trie.reply), None)
    if reply_index is None:
        return completions, []
    stops = trie.reply_stop_ids
    todo: list[tuple[int, list[int], int]] = []  # (position, completion without its EOS + hint, token budget)
    for p in positions:
        ids = completions[p]
        if not ids or ids[-1] not in eos:
            continue
        body = list(ids[:-1])
        k, start = trie.locate(body)
        if k != reply_index:
            continue
        hint = list(hint_ids[pick(p)])
        room = max_completion_length - len(body) - len(hint) - 1  # the EOS that ends the continuation
        if trie.reply_max_tokens:
            room = min(room, trie.reply_max_tokens - (len(body) - start) - len(hint))
        if room < 1:
            continue
        todo.append((p, body + hint, room))
    if not todo:
        return completions, []

    def stop(ids: list[int]) -> int | None:
        return len(ids) - 1 if ids and ids[-1] in stops else None

    budget = max(room for _, _, room in todo)
    new = sample([list(prompt_ids[p]) + extended for p, extended, _ in todo], budget, stop)
    out = list(completions)
    for (p, extended, room), more in zip(todo, new, strict=True):
        more = list(more)
        cut = next((i + 1 for i, t in enumerate(more) if t in eos), None)
        # ended by EOS inside the budget: kept; by a stop token or the budget: EOS, as the reply's own decoding does
        more = more[:cut] if cut is not None and cut - 1 <= room else more[:room] + [end_id]
        out[p] = extended + more
    return out, [p for p, _, _ in todo]
