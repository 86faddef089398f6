"""Exact expected reward over a closed label set, and the label-space policy-gradient loss built on it.

For a prompt x and allowed labels k = 1..K, each label is a token path (``label + label_suffix`` as it follows the
prefill, then EOS). Two policies over labels come from the same teacher-forced pass:

- **free**: log π_free(k|x) = Σₜ log softmax(full vocabulary)[tokenₜ] — the probability plain, unconstrained
  decoding produces exactly that reply. Σₖ π_free(k|x) ≤ 1; the rest is mass on replies that are no label.
- **constrained**: log π_con(k|x) = Σₜ log softmax over the tokens the label trie allows at that node — the
  trie-renormalised policy that constrained decoding samples from. Σₖ π_con(k|x) = 1.

One pass: the batch's common token prefix (the system turn) runs once, each prompt's own tail once (left-padded
inside its segment, positions from the attention mask), and the KV cache is broadcast to the label paths of each
prompt; only label positions reach the LM head, and the full-vocabulary
log-sum-exp is computed in chunks under activation checkpointing, so no (tokens × vocabulary) tensor is kept for
the backward pass. Gradients flow through the shared cache into the prompt pass.

Rewards r(k) for every label come from the recipe's own rewards (any TRL-convention reward). Per prompt they are
normalised to r̃ = (r − lo)/(hi − lo) over the labels that got a reward (`None` = abstain: the label adds nothing
to the expectation, like a reply that is no label). p = Σₖ π(k|x) r̃(k) ∈ [0, 1] is computed in log space, and the
loss is −stopgrad(w(p)) · log p with w = p (expected), 1 − (1 − p)^T (maxrl) or 1 (log). Labels with r̃ = 0 add
nothing to p or to ∇p (∇p = Σₖ r̃(k) ∇π(k|x)), so with `prune_zero_reward` their paths are never run: exact, and
for a 0/1 reward one path per prompt. docs/algorithms.md#label-pg says what each weighting optimises.

Text-only causal LMs whose logits are ``lm_head(hidden)`` (Llama, Qwen, Mistral, SmolLM; Gemma-style final-logit
soft-capping is applied) with a `DynamicCache`. Not for multimodal models.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch.utils.checkpoint import checkpoint

from rlft.recipe.sections import DecodingConfig, LabelPGConfig
from rlft.decoding.generation import common_prefix_length
from rlft.scoring.loader import LoadedReward
from rlft.decoding.shared_prefix import _left_pad, _positions

LSE_CHUNK = 256  # label positions per full-vocabulary log-sum-exp chunk


@dataclass
class LabelSpace:
    """The label set as token paths, and the trie's branching at every step of every path."""

    labels: list[str]
    completions: list[str]  # prefill + label + suffix: what rewards see
    paths: list[list[int]]  # ids of label + suffix as they follow the prefill, then EOS (not with free_reply)
    choices: list[list[list[int] | None]]  # per path and step: the trie's allowed ids, None where only one is

    @classmethod
    def build(cls, tokenizer: Any, labels: Sequence[str], decoding: DecodingConfig) -> LabelSpace:
        from rlft.decoding.constrained import LabelTrie, label_token_ids

        if not labels:
            raise ValueError("the label-space objective needs the label set (data.labels or a label column)")
        eos = tokenizer.eos_token_id
        if eos is None:
            raise ValueError("the tokenizer has no eos_token_id")
        seqs = label_token_ids(tokenizer, labels, decoding.prefill, decoding.label_suffix)
        trie = LabelTrie(seqs, int(eos))
        # a label-only reply ends with EOS; with decoding.free_reply the reply follows the head instead
        paths = [list(s) if decoding.free_reply else [*s, int(eos)] for s in seqs]
        choices = []
        for path in paths:
            steps = []
            for t in range(len(path)):
                allowed = trie.allowed(path[:t]) or []
                steps.append(sorted(allowed) if len(allowed) > 1 else None)
            choices.append(steps)
        completions = [decoding.prefill + label + decoding.label_suffix for label in labels]
        return cls(list(labels), completions, paths, choices)


def _head_parts(model: Any) -> tuple[Any, Any, float | None]:
    while not hasattr(model, "get_decoder") and not hasattr(model, "get_base_model") and hasattr(model, "module"):
        model = model.module  # DistributedDataParallel & co: the trainer syncs gradients itself
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    softcap = getattr(base.config, "final_logit_softcapping", None)
    return base.get_decoder(), base.get_output_embeddings(), softcap


def _cap(logits: torch.Tensor, softcap: float | None) -> torch.Tensor:
    logits = logits.to(torch.promote_types(logits.dtype, torch.float32))
    return torch.tanh(logits / softcap) * softcap if softcap else logits


def _token_logits(head: Any, hidden: torch.Tensor, ids: torch.Tensor, softcap: float | None) -> torch.Tensor:
    """Logits of `ids` (N, A) at `hidden` (N, H) without the full vocabulary when the head is a plain Linear."""
    if type(head) is torch.nn.Linear:
        w = head.weight[ids]  # (N, A, H)
        logits = torch.einsum("nh,nah->na", hidden.to(w.dtype), w)
        if head.bias is not None:
            logits = logits + head.bias[ids]
    else:  # a wrapped head (e.g. LoRA on lm_head): full logits, then gather
        logits = head(hidden).gather(-1, ids)
    return _cap(logits, softcap)


def _vocab_lse(head: Any, hidden: torch.Tensor, softcap: float | None) -> torch.Tensor:
    def lse(h: torch.Tensor) -> torch.Tensor:
        return _cap(head(h), softcap).logsumexp(-1)

    parts = []
    for start in range(0, hidden.size(0), LSE_CHUNK):
        chunk = hidden[start:start + LSE_CHUNK]
        parts.append(checkpoint(lse, chunk, use_reentrant=False) if torch.is_grad_enabled() else lse(chunk))
    return torch.cat(parts) if parts else hidden.new_zeros(0)


@dataclass
class LabelLogProbs:
    """(B, K) log-probabilities of every label path under each policy; -inf where a path was not run."""

    free: torch.Tensor | None
    constrained: torch.Tensor
    ran: torch.Tensor  # (B, K) bool: which paths were computed


def _prompt_pass(decoder: Any, prompt_ids: Sequence[Sequence[int]], pad_token_id: int, device: Any,
                 share_prefix: bool) -> tuple[Any, torch.Tensor]:
    """The decoder over the prompts with their cache, and the (B, length) attention mask the cache was built with.

    The batch's common token prefix (the chat template's system turn: the whole label list when the prompt lists
    the labels) runs once and its cache is broadcast; the rows' own tails follow it, each left-padded inside its
    segment (masked, positions from the mask, as `generate` does). Gradients reach the prefix through the
    broadcast, so the values and gradients are those of the full per-row pass.
    """
    n_shared = common_prefix_length(prompt_ids) if share_prefix and len(prompt_ids) > 1 else 0
    if n_shared == 0:
        ids, mask = (t.to(device) for t in _left_pad(prompt_ids, pad_token_id))
        return decoder(input_ids=ids, attention_mask=mask, position_ids=_positions(mask), use_cache=True), mask
    prefix = torch.tensor([list(prompt_ids[0][:n_shared])], device=device)
    head = decoder(input_ids=prefix, attention_mask=torch.ones_like(prefix), use_cache=True,
                   position_ids=torch.arange(n_shared, device=device)[None])
    cache = head.cache
    cache.reorder_cache(torch.zeros(len(prompt_ids), dtype=torch.long, device=device))
    tail_ids, tail_mask = (t.to(device) for t in _left_pad([r[n_shared:] for r in prompt_ids], pad_token_id))
    mask = torch.cat([torch.ones((len(prompt_ids), n_shared), dtype=tail_mask.dtype, device=device), tail_mask], 1)
    out = decoder(input_ids=tail_ids, attention_mask=mask, position_ids=_positions(mask)[:, n_shared:], cache=cache,
                  use_cache=True)
    return out, mask


def label_logprobs(model: Any, space: LabelSpace, prompt_ids: Sequence[Sequence[int]],
                   selected: Sequence[Sequence[int]] | None = None, *, pad_token_id: int, free: bool = True,
                   free_grad: bool = True, share_prefix: bool = True) -> LabelLogProbs:
    """Log π_free and log π_con of the label paths `selected[b]` (default: all) of each prompt, from one pass.

    `prompt_ids` are what `rlft.decoding.prompting.prompt_ids` returns (chat template + prefill). `free=False` skips the
    full-vocabulary normaliser; `free_grad=False` computes it without a graph (for metrics only).
    `share_prefix=False` runs every prompt in full instead of its batch's common token prefix once (same values).
    """
    decoder, head, softcap = _head_parts(model)
    device = next(model.parameters()).device
    n_prompts, n_labels = len(prompt_ids), len(space.paths)
    if selected is None:
        selected = [range(n_labels)] * n_prompts
    rows = [(b, k) for b, ks in enumerate(selected) for k in ks]
    neg_inf = torch.full((n_prompts, n_labels), float("-inf"), device=device)
    ran = torch.zeros((n_prompts, n_labels), dtype=torch.bool, device=device)
    if not rows:
        return LabelLogProbs(neg_inf.clone() if free else None, neg_inf.clone(), ran)
    out, mask = _prompt_pass(decoder, prompt_ids, pad_token_id, device, share_prefix)
    last = out.last_hidden_state[:, -1]  # predicts the first label token
    cache = out.cache
    inverse = torch.tensor([b for b, _ in rows], device=device)
    cache.reorder_cache(inverse)
    paths = [space.paths[k] for _, k in rows]
    n_rows, width = len(rows), max(len(p) for p in paths)
    tok = torch.full((n_rows, width), pad_token_id, dtype=torch.long, device=device)
    valid = torch.zeros((n_rows, width), dtype=torch.long, device=device)
    for i, p in enumerate(paths):
        tok[i, :len(p)] = torch.tensor(p, device=device)
        valid[i, :len(p)] = 1
    hidden = last[inverse][:, None]
    if width > 1:  # feed path tokens 0..L-2; their outputs predict tokens 1..L-1
        step_mask = torch.cat([mask[inverse], valid[:, :-1]], dim=1)
        start = _positions(mask)[:, -1][inverse] + 1
        pos = start[:, None] + torch.arange(width - 1, device=device)[None]
        res = decoder(input_ids=tok[:, :-1], attention_mask=step_mask, position_ids=pos, cache=cache,
                      use_cache=True)
        hidden = torch.cat([hidden, res.last_hidden_state], dim=1)
    sel = valid.bool()
    h = hidden[sel]  # (N, H): one row per label position
    targets = tok[sel]
    row_of = torch.arange(n_rows, device=device)[:, None].expand(n_rows, width)[sel]

    # constrained: log softmax over the trie's allowed ids at branching steps (forced steps contribute 0)
    choice_pos, choice_ids = [], []
    flat = 0
    for _, k in rows:
        for t, allowed in enumerate(space.choices[k]):
            if allowed is not None:
                choice_pos.append(flat + t)
                choice_ids.append(allowed)
        flat += len(space.paths[k])
    con_rows = torch.zeros(n_rows, dtype=torch.promote_types(h.dtype, torch.float32), device=device)
    if choice_pos:
        width_a = max(len(a) for a in choice_ids)
        cpos = torch.tensor(choice_pos, device=device)
        a_ids = torch.tensor([a + [a[0]] * (width_a - len(a)) for a in choice_ids], device=device)
        a_ok = torch.tensor([[j < len(a) for j in range(width_a)] for a in choice_ids], device=device)
        logits = _token_logits(head, h[cpos], a_ids, softcap).masked_fill(~a_ok, float("-inf"))
        tgt = targets[cpos]
        tgt_logit = logits.gather(1, (a_ids == tgt[:, None]).float().argmax(1, keepdim=True)).squeeze(1)
        con_rows = con_rows.index_add(0, row_of[cpos], tgt_logit - logits.logsumexp(-1))
    b_idx = torch.tensor([b for b, _ in rows], device=device)
    k_idx = torch.tensor([k for _, k in rows], device=device)
    ran[b_idx, k_idx] = True
    constrained = neg_inf.to(con_rows.dtype).index_put((b_idx, k_idx), con_rows)

    free_mat = None
    if free:
        with torch.set_grad_enabled(free_grad and torch.is_grad_enabled()):
            hf = h if free_grad else h.detach()
            tgt_logit = _token_logits(head, hf, targets[:, None], softcap).squeeze(1)
            per_pos = tgt_logit - _vocab_lse(head, hf, softcap)
            free_rows = per_pos.new_zeros(n_rows).index_add(0, row_of, per_pos)
            free_mat = neg_inf.to(free_rows.dtype).index_put((b_idx, k_idx), free_rows)
    return LabelLogProbs(free_mat, constrained, ran)


OPERATIONAL_METRICS = ("judge/",)  # reward metrics about the calls, not the scored texts: forwarded by label_pg


def _completion(prompt: Any, text: str) -> Any:
    """A completion as TRL hands it to rewards: chat messages for conversational prompts, else text."""
    return [{"role": "assistant", "content": text}] if isinstance(prompt, list) else text


def label_rewards(rewards: Sequence[LoadedReward], space: LabelSpace, prompts: Sequence[Any],
                  columns: dict[str, Sequence[Any]] | None = None, trainer_state: Any = None,
                  logged: dict[str, float] | None = None) -> torch.Tensor:
    """(B, K) weighted reward of every label for every prompt (NaN where every reward abstained).

    One `rlft.scoring.completions.score` call on B·K completions ``prefill + label + suffix``, each row's columns repeated K
    times, so aliases, partial credit, custom functions and async judges all apply. `logged` (when given) receives
    what the rewards logged through `log_metric` about their own operation (a judge's `judge/*` counts). Every other
    logged statistic describes the K enumerated labels, not the policy (the intent reward's `intent/accuracy` over
    them is 1/K whatever the model does), so it is not forwarded.
    """
    from rlft.scoring.completions import score

    n_labels = len(space.labels)
    rep_prompts = [p for p in prompts for _ in range(n_labels)]
    completions = [_completion(p, c) for p in prompts for c in space.completions]
    rep_cols = {name: [v for v in values for _ in range(n_labels)] for name, values in (columns or {}).items()}
    scored = score(rewards, rep_prompts, completions, rep_cols, trainer_state=trainer_state)
    if logged is not None:
        logged.update({k: v for k, v in scored.metrics.items() if k.startswith(OPERATIONAL_METRICS)})
    total = scored.total
    values = [float("nan") if v is None else float(v) for v in total]
    return torch.tensor(values, dtype=torch.float64).view(len(prompts), n_labels)


def rows_loss(model: Any, space: LabelSpace, cfg: LabelPGConfig, rewards: Sequence[LoadedReward],
              rows: Sequence[dict[str, Any]], tokenizer: Any, decoding: DecodingConfig, pad_token_id: int,
              trainer_state: Any = None, logged: dict[str, float] | None = None
              ) -> tuple[torch.Tensor, dict[str, float]]:
    """`label_pg_loss` of dataset rows (each a ``prompt`` and its columns), every label scored by `rewards`;
    `logged` receives the metrics the rewards logged (`label_rewards`)."""
    from rlft.decoding.prompting import prompt_ids

    prompts = [row["prompt"] for row in rows]
    columns = {key: [row[key] for row in rows] for key in rows[0] if key != "prompt"}
    scores = label_rewards(rewards, space, prompts, columns, trainer_state=trainer_state, logged=logged)
    ids = [prompt_ids(tokenizer, p, decoding) for p in prompts]
    return label_pg_loss(model, space, cfg, ids, scores, pad_token_id)


def normalise_rewards(r: torch.Tensor, eps: float = 1e-9) -> tuple[torch.Tensor, torch.Tensor]:
    """r̃ = (r − lo)/(hi − lo) per prompt over the labels with a reward (abstentions → 0), and which prompts carry
    signal (hi − lo > eps; prompts where every label ties are skipped)."""
    present = ~torch.isnan(r)
    lo = torch.where(present, r, torch.inf).amin(1, keepdim=True)
    hi = torch.where(present, r, -torch.inf).amax(1, keepdim=True)
    span = hi - lo
    signal = (span > eps).squeeze(1)
    rt = torch.where(present & signal[:, None], (r - lo) / span.clamp(min=eps), torch.zeros_like(r))
    return rt, signal


def log_expected(logpi: torch.Tensor, rt: torch.Tensor) -> torch.Tensor:
    """log p = log Σₖ π(k) r̃(k) per prompt; labels with r̃ = 0 (and paths not run) drop out exactly."""
    log_r = torch.where(rt > 0, rt.clamp(min=1e-300).log(), torch.full_like(rt, float("-inf"))).to(logpi)
    return torch.where(rt.to(logpi.device) > 0, logpi + log_r, torch.full_like(logpi, float("-inf"))).logsumexp(1)


def prompt_weight(p: torch.Tensor, weighting: str, maxrl_t: int = 8) -> torch.Tensor:
    """w(p) of the loss −stopgrad(w(p))·log p: expected (p), maxrl (1 − (1 − p)^T) or log (1)."""
    if weighting == "expected":
        return p
    if weighting == "maxrl":
        return 1 - (1 - p).pow(maxrl_t)
    if weighting == "log":
        return torch.ones_like(p)
    raise ValueError(f"label_pg.weighting must be expected, maxrl or log, got {weighting!r}")


def label_pg_loss(model: Any, space: LabelSpace, cfg: LabelPGConfig, prompt_ids: Sequence[Sequence[int]],
                  rewards: torch.Tensor, pad_token_id: int, share_prefix: bool = True
                  ) -> tuple[torch.Tensor, dict[str, float]]:
    """Mean over prompts with signal of −stopgrad(w(p))·log p, and the step's metrics (see docs/algorithms.md)."""
    device = next(model.parameters()).device
    rt, signal = normalise_rewards(rewards)
    n_labels = rt.size(1)
    if cfg.prune_zero_reward:
        selected = [torch.nonzero(rt[b] > 0).flatten().tolist() if signal[b] else [] for b in range(len(rt))]
    else:
        selected = [list(range(n_labels)) if signal[b] else [] for b in range(len(rt))]
    extra = validity_draw(rt, selected, cfg.validity_paths)
    use_free = cfg.normaliser in ("free", "both") or bool(cfg.validity_paths)
    lp = label_logprobs(model, space, prompt_ids, [sorted({*s, *e}) for s, e in zip(selected, extra, strict=True)],
                        pad_token_id=pad_token_id, free=True, free_grad=use_free, share_prefix=share_prefix)
    rt = rt.to(device)
    idx = torch.nonzero(signal).flatten().to(device)
    metrics: dict[str, float] = {"frac_no_signal": 1.0 - float(signal.float().mean()),
                                 "label_paths": float(lp.ran.sum(1).float().mean())}
    loss_valid = validity_loss(lp, extra, metrics)
    if idx.numel() == 0:
        zero = torch.zeros((), device=device, requires_grad=loss_valid is None)
        return (zero if loss_valid is None else cfg.validity_weight * loss_valid), metrics

    def term(logpi: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        log_p = log_expected(logpi[idx], rt[idx])
        p = log_p.exp()
        w = prompt_weight(p.detach(), cfg.weighting, cfg.maxrl_t)
        return -(w * log_p).mean(), p.detach()

    loss_con, p_con = term(lp.constrained)
    loss_free, p_free = term(lp.free)
    if cfg.normaliser == "free":
        loss, p_main = loss_free, p_free
    elif cfg.normaliser == "constrained":
        loss, p_main = loss_con, p_con
    else:
        loss, p_main = (1 - cfg.free_weight) * loss_con + cfg.free_weight * loss_free, p_free
    metrics.update(p_free=float(p_free.mean()), p_constrained=float(p_con.mean()),
                   frac_solved=float((p_main > 0.5).float().mean()))
    if not cfg.prune_zero_reward:
        metrics["free_mass_on_labels"] = float(lp.free[idx].detach().exp().sum(1).mean())
    return (loss if loss_valid is None else loss + cfg.validity_weight * loss_valid), metrics


def validity_draw(rt: torch.Tensor, selected: Sequence[Sequence[int]], n_paths: int) -> list[list[int]]:
    """Per prompt, `n_paths` labels drawn uniformly (torch's global RNG, so a resumed run draws the same) among
    those not already run for the reward; every label when `n_paths` >= the label count."""
    n_labels = rt.size(1)
    if n_paths <= 0:
        return [[] for _ in selected]
    if n_paths >= n_labels:
        return [list(range(n_labels)) for _ in selected]
    out = []
    for ks in selected:
        taken = set(ks)
        pool = torch.tensor([k for k in range(n_labels) if k not in taken], dtype=torch.long)
        out.append(pool[torch.randperm(len(pool))[:n_paths]].tolist() if len(pool) else [])
    return out


def validity_loss(lp: LabelLogProbs, extra: Sequence[Sequence[int]], metrics: dict[str, float]) -> torch.Tensor | None:
    """Mean over the drawn paths of −log P(plain decoding stays on the trie along path k | x), which is
    log π_con(k|x) − log π_free(k|x) = −Σₜ log Σ_{allowed a} softmax(a): every step's mass on the trie's allowed
    tokens, teacher-forced on k. Label-neutral: it leaves π_con (which label) to the reward term."""
    rows = [(b, k) for b, ks in enumerate(extra) for k in ks]
    if not rows:
        return None
    b_idx = torch.tensor([b for b, _ in rows], device=lp.constrained.device)
    k_idx = torch.tensor([k for _, k in rows], device=lp.constrained.device)
    log_stay = lp.free[b_idx, k_idx] - lp.constrained[b_idx, k_idx]
    metrics["validity_stay_prob"] = float(log_stay.detach().exp().mean())
    return -log_stay.mean()
