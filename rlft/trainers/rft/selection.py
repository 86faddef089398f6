"""Which prompts an rft round draws and which completions it keeps (docs/algorithms.md#rft, steps 1 and 4 of
rlft.trainers.rft): prompts in turn per label, the best passing completions per prompt, the heads kept alone, and
where a kept completion departs from a failing reply (the unlikelihood term's position)."""

from __future__ import annotations

import random
from collections.abc import Sequence
from typing import Any


def pick_prompts(labels: Sequence[Any] | None, rows: int, count: int, seed: int) -> list[int]:
    """`count` row indices (fewer when the data is smaller), drawn with `seed`: in turn from each label (labels in
    sorted order, rows shuffled within each) when `labels` is given, else a shuffled prefix."""
    rng = random.Random(seed)
    if not labels:
        order = list(range(rows))
        rng.shuffle(order)
        return order[:count]
    by_label: dict[Any, list[int]] = {}
    for i, label in enumerate(labels):
        by_label.setdefault(label, []).append(i)
    queues = []
    for label in sorted(by_label, key=str):
        rows_of = by_label[label]
        rng.shuffle(rows_of)
        queues.append(rows_of)
    picked: list[int] = []
    depth = 0
    while len(picked) < count and any(depth < len(q) for q in queues):
        picked.extend(q[depth] for q in queues if depth < len(q) and len(picked) < count)
        depth += 1
    return picked


def best_per_prompt(prompt_of: Sequence[int], totals: Sequence[float | None], min_reward: float, keep: int = 1,
                    completions: Sequence[Sequence[int]] | None = None) -> dict[int, list[int]]:
    """prompt -> indices of its `keep` best completions among those reaching `min_reward`, best first (the first of
    equals first); with `completions`, a completion equal to one already kept for its prompt is skipped."""
    ranked = sorted((i for i, total in enumerate(totals) if total is not None and total >= min_reward),
                    key=lambda i: (-totals[i], i))
    best: dict[int, list[int]] = {}
    seen: set[tuple[int, tuple[int, ...]]] = set()
    for i in ranked:
        chosen = best.setdefault(prompt_of[i], [])
        key = (prompt_of[i], tuple(completions[i]) if completions is not None else (i,))
        if len(chosen) < keep and key not in seen:
            chosen.append(i)
            seen.add(key)
    return {p: chosen for p, chosen in best.items() if chosen}


def head_only_picks(prompt_of: Sequence[int], head_rewards: Sequence[float | None], min_head: float,
                    kept_prompts: set[int]) -> list[int]:
    """For each prompt with no kept completion (not in `kept_prompts`), its first completion whose head reward reaches
    `min_head`: the completions whose head alone is trained (`rft.head_reward`), in prompt order."""
    first: dict[int, int] = {}
    for i, (p, r) in enumerate(zip(prompt_of, head_rewards, strict=True)):
        if p not in kept_prompts and p not in first and r is not None and r >= min_head:
            first[p] = i
    return [first[p] for p in sorted(first)]


def departure(reply: Sequence[int], completion: Sequence[int],
              stop_ids: Sequence[int]) -> tuple[int, list[int]] | None:
    """Where a kept `completion` first leaves `reply` (a failing reply of the same prompt: the one its hint was
    appended to, or the greedy one) and what `reply` wrote there: every stop id where the reply stopped (its EOS, or a
    reply stop token), else the reply's token. None when one is a prefix of the other (nothing to push down)."""
    stops = {int(t) for t in stop_ids}
    for at, (wrote, kept) in enumerate(zip(reply, completion)):
        if wrote != kept:
            return (at, sorted(stops)) if int(wrote) in stops else (at, [int(wrote)])
    return None
