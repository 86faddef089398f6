"""Compute each distinct prompt once per GRPO group: shared-prefix sampling and log-probabilities.

GRPO samples G completions per prompt. TRL runs the full prompt through the model for every one of them, in
generation and again in the loss forward/backward. When completions are short (a label, a few tokens) the prompt
is almost all of the compute, so running it once per distinct prompt and broadcasting its KV cache to the G rows
cuts the tokens processed per step by close to G×. Gradients flow through the shared cache, so the loss is the
same as TRL's (positions are taken from the attention mask, as `generate` does, in both phases).

Text-only causal LMs with a `DynamicCache` (Llama, Qwen, Mistral, SmolLM, ...). Not for multimodal batches.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch


def _positions(mask: torch.Tensor) -> torch.Tensor:
    return (mask.long().cumsum(-1) - 1).clamp(min=0)


def _left_pad(rows: Sequence[Sequence[int]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    width = max(len(r) for r in rows)
    ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, r in enumerate(rows):
        if r:
            ids[i, width - len(r):] = torch.tensor(list(r), dtype=torch.long)
            mask[i, width - len(r):] = 1
    return ids, mask


@torch.no_grad()
def sample_shared_prefix(model: Any, prompt_ids: Sequence[Sequence[int]], *, max_new_tokens: int,
                         eos_token_ids: Sequence[int], pad_token_id: int, temperature: float = 1.0,
                         top_k: int | None = None, top_p: float | None = None,
                         logits_processor: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None
                         ) -> list[list[int]]:
    """Sample one completion per row; identical prompts share one prefill. Rows end after their first EOS.

    `logits_processor(generated_ids, scores)` sees only the tokens generated so far (prompt excluded), e.g. the
    decoding constraint's `rlft.decoding.constraint.Constraint.processor(0)`.
    """
    from transformers import TopKLogitsWarper, TopPLogitsWarper

    device = next(model.parameters()).device
    index: dict[tuple[int, ...], int] = {}
    inverse = torch.tensor([index.setdefault(tuple(r), len(index)) for r in prompt_ids], device=device)
    uniq = sorted(index, key=index.get)
    ids, mask = (t.to(device) for t in _left_pad(uniq, pad_token_id))
    out = model(input_ids=ids, attention_mask=mask, position_ids=_positions(mask), use_cache=True, logits_to_keep=1)
    cache = out.past_key_values
    cache.reorder_cache(inverse)
    logits = out.logits[:, -1].float()[inverse]
    mask = mask[inverse]
    pos = _positions(mask)[:, -1] + 1
    n = len(prompt_ids)
    generated = torch.empty((n, 0), dtype=torch.long, device=device)
    done = torch.zeros(n, dtype=torch.bool, device=device)
    eos = torch.tensor(list(eos_token_ids), device=device)
    warpers = []
    if top_k:
        warpers.append(TopKLogitsWarper(top_k))
    if top_p is not None and top_p < 1.0:
        warpers.append(TopPLogitsWarper(top_p))
    for _ in range(max_new_tokens):
        scores = logits
        if logits_processor is not None:
            scores = logits_processor(generated, scores)
        scores = scores / max(temperature, 1e-6)
        for w in warpers:
            scores = w(generated, scores)
        nxt = torch.multinomial(torch.softmax(scores, dim=-1), 1).squeeze(1)
        nxt = torch.where(done, torch.full_like(nxt, pad_token_id), nxt)
        generated = torch.cat([generated, nxt[:, None]], dim=1)
        done = done | torch.isin(nxt, eos)
        if bool(done.all()):
            break
        mask = torch.cat([mask, torch.ones((n, 1), dtype=mask.dtype, device=device)], dim=1)
        out = model(input_ids=nxt[:, None], attention_mask=mask, position_ids=pos[:, None], past_key_values=cache,
                    use_cache=True)
        cache = out.past_key_values
        logits = out.logits[:, -1].float()
        pos = pos + 1
    result = []
    eos_set = {int(e) for e in eos_token_ids}
    for row in generated.tolist():
        cut = next((i + 1 for i, t in enumerate(row) if t in eos_set), len(row))
        result.append(row[:cut])
    return result


def shared_prefix_logps(model: Any, input_ids: torch.Tensor, attention_mask: torch.Tensor, logits_to_keep: int,
                        compute_entropy: bool = False) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Per-token log-probs (and entropies) of the last `logits_to_keep` tokens, prompts computed once each.

    `model` must carry TRL's fused LM head (`add_fused_lm_head`, done by `GRPOTrainer`). The prompt minus its last
    token is run once per distinct row and its cache broadcast; the last prompt token is re-fed with the
    completion so the first completion token is scored too.
    """
    split = input_ids.size(1) - logits_to_keep - 1
    if split < 1:
        raise ValueError("shared-prefix scoring needs prompts of at least two tokens")
    head = torch.cat([input_ids[:, :split], attention_mask[:, :split]], dim=1)
    uniq, inverse = torch.unique(head, dim=0, return_inverse=True)
    u_ids, u_mask = uniq[:, :split], uniq[:, split:]
    out = model(input_ids=u_ids, attention_mask=u_mask, position_ids=_positions(u_mask), use_cache=True,
                logits_to_keep=1)
    cache = out.past_key_values
    cache.reorder_cache(inverse)
    tail = input_ids[:, split:]
    labels = tail.masked_fill(attention_mask[:, split:] == 0, -100)
    labels[:, 0] = -100
    res = model(input_ids=tail, attention_mask=attention_mask, position_ids=_positions(attention_mask)[:, split:],
                past_key_values=cache, labels=labels, fused_lm_head=True)
    logps = res.log_probs[:, -logits_to_keep:]
    entropy = res.entropy[:, -logits_to_keep:] if compute_entropy and res.entropy is not None else None
    return logps, entropy
