"""Segment credit (`signal.segment_credit`): per-token advantages for the support agent's two segments.

A free-reply completion is a constrained **head** (label + ``decoding.label_suffix``, e.g. ``refund</intent>``;
the prefill is in the prompt) followed by a free **reply**. TRL gives one advantage per completion; with
``segment_credit: {head: [intent], reply: [rubric]}`` each reward is turned into its own advantage and sent only
to the tokens of its segment:

- per reward k: ``A_k = (r_k - mean_group(r_k)) / (std(r_k) + 1e-4)``, std per ``trainer.scale_rewards``
  (group: within the prompt's group; batch: over the batch; none: no scaling). An abstention (None/NaN) is left
  out of the mean and std and contributes 0 (`rlft.scoring.abstain`): never a bad verdict.
- head tokens get ``sum_k w_k A_k`` over the head rewards and the unlisted rewards; reply tokens over the reply
  rewards and the unlisted ones (``w_k``: the recipe's reward weights).
- the head ends at the token that completes the label suffix (the trie's path, else the first token at which the
  decoded text contains the suffix); a completion whose head never closed is head only.

`trainer.multi_objective_aggregation` does not apply (rewards are always normalised one by one) and there is no
batch-wide renormalisation of the sum, which would mix the segments again. Padding positions get 0.

TRL's `_compute_loss` accepts advantages of shape (B, T) (it only unsqueezes 1-D ones), so the batch's
``advantages`` simply becomes a (B, T) tensor; `rlft.grpo.batch` selects, merges and pads it like the completion
columns.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from trl.trainer.utils import nanstd

SEGMENTS = ("head", "reply")


def reward_segments(segment_credit: dict[str, list[str]], reward_names: Sequence[str]) -> list[str | None]:
    """The segment of each reward ('head', 'reply' or None: every token), in the trainer's reward order."""
    by_name: dict[str, str] = {}
    for segment, names in segment_credit.items():
        if segment not in SEGMENTS:
            raise ValueError(f"signal.segment_credit: expected keys head and/or reply, got {segment!r}")
        for name in names:
            if name not in reward_names:
                raise ValueError(f"signal.segment_credit.{segment}: unknown reward {name!r} (rewards: "
                                 f"{', '.join(reward_names)})")
            if by_name.get(name, segment) != segment:
                raise ValueError(f"signal.segment_credit: reward {name!r} is listed in both head and reply")
            by_name[name] = segment
    return [by_name.get(name) for name in reward_names]


def per_reward_advantages(rewards_per_func: torch.Tensor, group_size: int, scale_rewards: str) -> torch.Tensor:
    """(N, K) rewards -> (N, K) advantages, each reward normalised on its own; NaN (abstained) -> 0."""
    r = rewards_per_func.float()
    k = r.size(1)
    grouped = r.view(-1, group_size, k)
    centred = (grouped - torch.nanmean(grouped, dim=1, keepdim=True)).view(-1, k)
    if scale_rewards == "group":
        std = nanstd(grouped, dim=1, keepdim=True) if group_size > 1 else torch.zeros_like(grouped[:, :1])
        std = std.expand_as(grouped).reshape(-1, k)
    elif scale_rewards == "batch":
        std = torch.stack([nanstd(r[:, j]) for j in range(k)]) if r.size(0) > 1 else torch.zeros(k)
        std = std.to(r.device).expand_as(r)
    elif scale_rewards == "none":
        std = None
    else:
        raise ValueError(f"scale_rewards: expected group, batch or none, got {scale_rewards!r}")
    adv = centred if std is None else centred / (std + 1e-4)
    return torch.nan_to_num(adv, nan=0.0)


def head_lengths(completions: Sequence[Sequence[int]], trie: Any, tokenizer: Any, suffix: str
                 ) -> tuple[list[int], list[bool]]:
    """Head tokens of each completion (its length when the head never closed) and whether the head closed."""
    lengths, closed = [], []
    for ids in completions:
        ids = list(ids)
        tail = trie.tail(ids) if trie is not None else None
        if tail is None:  # no trie, or the row left it (e.g. vLLM's regex): find the suffix in the text
            tail = next((len(ids) - k for k in range(1, len(ids) + 1)
                         if suffix and suffix in tokenizer.decode(ids[:k], skip_special_tokens=True)), None)
        span = trie.lookup_span(ids) if trie is not None else None
        if span is not None:  # the looked-up text ends the head; it is out of the loss (env_mask) either way
            lengths.append(span[0])
            closed.append(True)
            continue
        lengths.append(len(ids) - tail if tail is not None else len(ids))
        closed.append(tail is not None)
    return lengths, closed


def token_advantages(advantages: torch.Tensor, weights: torch.Tensor, segments: Sequence[str | None],
                     head_len: torch.Tensor, completion_mask: torch.Tensor) -> torch.Tensor:
    """(B, T) advantages: head tokens get the weighted head + unlisted advantages, reply tokens the reply +
    unlisted ones; 0 on padding."""
    weighted = advantages * weights.to(advantages.device, advantages.dtype).unsqueeze(0)
    on_head = torch.tensor([s in (None, "head") for s in segments], device=weighted.device)
    on_reply = torch.tensor([s in (None, "reply") for s in segments], device=weighted.device)
    head_adv = (weighted * on_head).sum(dim=1, keepdim=True)
    reply_adv = (weighted * on_reply).sum(dim=1, keepdim=True)
    positions = torch.arange(completion_mask.size(1), device=completion_mask.device).unsqueeze(0)
    is_head = positions < head_len.to(completion_mask.device).unsqueeze(1)
    per_token = torch.where(is_head, head_adv.to(completion_mask.device), reply_adv.to(completion_mask.device))
    return per_token * completion_mask.to(per_token.dtype)


def apply(trainer: Any, batch: dict[str, Any]) -> None:
    """Replace `batch['advantages']` by segment-credit (B, T) advantages from the rewards TRL just computed."""
    per_func = trainer._last_rewards_per_func  # every process's rows: group/batch statistics as TRL takes them
    g = trainer.num_generations if trainer.model.training else trainer.num_generations_eval
    adv_all = per_reward_advantages(per_func, g, trainer.scale_rewards)
    n = batch["completion_ids"].size(0)
    start = trainer.accelerator.process_index * n
    adv = adv_all[start:start + n]
    mask = batch["completion_mask"]
    rows = [ids[m.bool()].tolist() for ids, m in zip(batch["completion_ids"].cpu(), mask.cpu(), strict=True)]
    lengths, closed = head_lengths(rows, trainer.trie, trainer.processing_class, trainer.decoding.label_suffix)
    head_len = torch.tensor(lengths, dtype=torch.long)
    dtype = batch["advantages"].dtype
    per_token = token_advantages(adv, trainer.reward_weights, trainer.segments, head_len, mask.float())
    batch["advantages"] = per_token.to(batch["advantages"].device, dtype)
    spans = [trainer.trie.lookup_span(r) if trainer.trie is not None else None for r in rows]
    looked_up = sum(b - a for a, b in filter(None, spans))
    _log(trainer, rows, lengths, closed, per_token, head_len, looked_up)


def _log(trainer: Any, rows: list[list[int]], lengths: list[int], closed: list[bool], per_token: torch.Tensor,
         head_len: torch.Tensor, looked_up: int = 0) -> None:
    """segment/* metrics, summed over processes (every process scores every draw: the gather matches). Reply tokens
    leave out the `looked_up` tokens of a `decoding.lookup` (context, not generated)."""
    n_head = float(sum(lengths))
    n_reply = float(sum(len(r) - h for r, h in zip(rows, lengths, strict=True)) - looked_up)
    unclosed = float(len(closed) - sum(closed))
    idx = torch.arange(len(rows))
    first = per_token[idx, torch.zeros_like(head_len).clamp(max=per_token.size(1) - 1)]
    has_reply = head_len < torch.tensor([len(r) for r in rows])
    reply_pos = head_len.clamp(max=per_token.size(1) - 1)
    head_abs = float(first.abs().sum())
    reply_abs = float((per_token[idx, reply_pos].abs() * has_reply).sum())
    local = torch.tensor([n_head, n_reply, unclosed, len(rows), head_abs, reply_abs, float(has_reply.sum())],
                         device=trainer.accelerator.device)
    tot = trainer.accelerator.gather(local).view(-1, local.numel()).sum(dim=0).tolist()
    rows_all, with_reply = max(tot[3], 1.0), max(tot[6], 1.0)
    trainer.log_signal_metric("segment/head_tokens", tot[0] / rows_all)
    trainer.log_signal_metric("segment/reply_tokens", tot[1] / rows_all)
    trainer.log_signal_metric("segment/frac_unclosed_head", tot[2] / rows_all)
    trainer.log_signal_metric("segment/head_advantage_abs", tot[4] / rows_all)
    trainer.log_signal_metric("segment/reply_advantage_abs", tot[5] / with_reply)
