"""Row-wise filtering and merging of TRL's scored GRPO batch (the dict `_generate_and_score_completions` returns).

`advantages` is (B,) as TRL returns it, or (B, T) with `signal.segment_credit` (padded like the completion columns).
`BATCH_KEYS` lists every key rlft knows how to filter; tests/test_trl_seams.py checks TRL still returns only
these, so a new TRL field fails loudly instead of being silently misaligned.
"""

from __future__ import annotations

from typing import Any

import torch
from trl.trainer.utils import pad

PROMPT_KEYS = ("prompt_ids", "prompt_mask")
COMPLETION_KEYS = ("completion_ids", "completion_mask", "tool_mask", "old_per_token_logps", "ref_per_token_logps",
                   "sampling_per_token_logps", "importance_sampling_ratio")
ROW_KEYS = ("advantages",)
BATCH_KEYS = frozenset(PROMPT_KEYS + COMPLETION_KEYS + ROW_KEYS + ("num_items_in_batch",))


def select_rows(batch: dict[str, Any], rows: list[int]) -> dict[str, Any]:
    """The rows `rows` of every per-row tensor (`num_items_in_batch` is dropped: recompute it after merging)."""
    idx = torch.tensor(rows, dtype=torch.long)
    out = {}
    for key, value in batch.items():
        if key == "num_items_in_batch":
            continue
        if key in BATCH_KEYS and isinstance(value, torch.Tensor) and value.dim() >= 1:
            out[key] = value[idx.to(value.device)]
        else:
            raise ValueError(f"signal: cannot filter batch field '{key}' (multimodal batches are not supported)")
    return out


def merge(parts: list[dict[str, Any]], pad_token_id: int) -> dict[str, Any]:
    """Concatenate batches row-wise, re-padding prompts on the left and completions on the right."""
    if len(parts) == 1:
        return dict(parts[0])
    out: dict[str, Any] = {}
    for key in parts[0]:
        values = [p[key] for p in parts]
        if key in PROMPT_KEYS or key in COMPLETION_KEYS or (key == "advantages" and values[0].dim() == 2):
            side = "left" if key in PROMPT_KEYS else "right"
            fill = pad_token_id if key.endswith("_ids") else (1 if key == "tool_mask" else 0)
            out[key] = pad([r for v in values for r in v], padding_value=fill, padding_side=side)
        else:
            out[key] = torch.cat(values)
    return out


def pad_rows(batch: dict[str, Any], rows: int) -> dict[str, Any]:
    """`batch` grown to `rows` rows with copies of its first row that are out of the loss (advantage 0, empty
    completion mask), so every process trains on the same number of rows; `batch` itself when it has them."""
    have = len(batch["advantages"])
    if have >= rows:
        return batch
    dead = select_rows(batch, [0] * (rows - have))
    dead["advantages"] = torch.zeros_like(dead["advantages"])
    dead["completion_mask"] = torch.zeros_like(dead["completion_mask"])
    return {key: torch.cat([batch[key], dead[key]]) for key in batch if key != "num_items_in_batch"}


def loss_tokens(batch: dict[str, Any]) -> torch.Tensor:
    """Number of tokens in the loss, as TRL counts them (`completion_mask` times `tool_mask`)."""
    mask = batch["completion_mask"]
    return (mask * batch["tool_mask"]).sum() if "tool_mask" in batch else mask.sum()


TIE_TOLERANCE = 1e-6  # relative to the rewards' magnitude (at least 1): float32 sums differ by ~1e-7


def tied_groups(rewards: torch.Tensor, g: int) -> list[bool]:
    """Per group of `g` consecutive rows, whether its rewards tie: (B,) totals, or (B, K) per reward, where every
    column must tie. NaN (abstained, unscorable) is left out; a group with fewer than two scored rows ties.

    Ties are read on the rewards, not on TRL's advantages: those divide by the group's std (+1e-4), so the float
    rounding of a group mean (1.2 eight times in float32: std 1e-7) scales to ~1e-3 and would pass for signal."""
    r = rewards.detach().double().cpu()
    r = r.view(-1, g, 1) if r.dim() == 1 else r.view(-1, g, r.size(-1))
    present = ~torch.isnan(r)
    hi = torch.where(present, r, -torch.inf).amax(dim=1)
    lo = torch.where(present, r, torch.inf).amin(dim=1)
    scale = torch.where(present, r.abs(), 0.0).amax(dim=1).clamp(min=1.0)
    spread = torch.where(present.sum(dim=1) >= 2, hi - lo, 0.0)
    return (spread <= TIE_TOLERANCE * scale).all(dim=1).tolist()


def split_groups(advantages: torch.Tensor, g: int, tied: list[bool] | None = None
                 ) -> tuple[list[list[int]], list[list[int]]]:
    """Row indices of groups with a non-zero advantage (signal) and of groups without; a group in `tied`
    (`tied_groups` of its rewards) is without, whatever its advantages read."""
    adv = advantages.detach().float().cpu()
    if adv.dim() == 2:  # per-token advantages (signal.segment_credit): a row has signal where any token has
        adv = adv.abs().amax(dim=1) if adv.size(1) else adv.sum(dim=1)
    adv = adv.view(-1, g)
    kept, zero = [], []
    for i, row in enumerate(adv):
        rows = list(range(i * g, (i + 1) * g))
        signal = bool((row.abs() > 1e-6).any()) and not (tied is not None and tied[i])
        (kept if signal else zero).append(rows)
    return kept, zero


def prompt_rows(batch: dict[str, Any]) -> list[list[int]]:
    """Each row's prompt ids without the left padding."""
    ids, mask = batch["prompt_ids"].cpu(), batch["prompt_mask"].cpu().bool()
    return [row[m].tolist() for row, m in zip(ids, mask, strict=True)]
