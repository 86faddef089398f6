"""The one generate loop for evaluation and labelling (and usable by rollouts): KV cache, shared prompt prefix,
cheap label constraint, per-row stopping.

Prompts are token ids from `rlft.decoding.prompting.prompt_ids` (template ids + prefill ids). What makes it fast:

- the longest token prefix common to all prompts of a call (system prompt + chat-template header) runs through the
  model once; every batch starts from a copy of its KV cache, and identical prompts (n samples each) share one
  prompt pass;
- prompts are batched by length (little padding) and a row leaves the batch as soon as it stops, at EOS, at
  `max_new_tokens`, or (free decoding with `decoding.stop_at_suffix`) right after the label suffix;
- with the decoding constraint (`rlft.decoding.constraint.Constraint`) each row asks its `step`: where it allows a few ids
  the next token is chosen among them only; a token it forces (a single allowed id: a label's last tokens, a
  looked-up article) is appended without a model call and fed together with the next forward, and a row forced
  to its end (EOS) needs no further call at all; where it allows the whole vocabulary (an analysis block, a free
  reply) the row samples it, less what the step bans, with its `forced` / `stops` applied. Greedy results equal
  masked step-by-step decoding (`Constraint.processor`).

Not here: scoring, chat servers, vLLM, multimodal prompts. Models: text-only causal LMs with a `DynamicCache`.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from rlft.recipe.sections import DecodingConfig

Progress = Callable[[int], None]


@dataclass
class Sampling:
    """How the next token is picked: temperature 0 is greedy; otherwise softmax sampling after top-k / top-p."""

    temperature: float = 0.0
    top_k: int = 0  # 0: off
    top_p: float = 1.0
    n: int = 1  # completions per prompt (consecutive in the output)
    seed: int | None = None  # None: the global torch RNG

    @classmethod
    def like(cls, settings: Any, n: int = 1, seed: int | None = None) -> Sampling:
        """The temperature / top_k / top_p of a TRL trainer or its config (top_k None or 0 and top_p None: off)."""
        return cls(temperature=settings.temperature, top_k=settings.top_k or 0,
                   top_p=1.0 if settings.top_p is None else settings.top_p, n=n, seed=seed)


def eos_token_ids(model: Any, tokenizer: Any) -> list[int]:
    """The ids that end a row: the model's generation_config EOS (what `generate` stops at), else the tokenizer's."""
    configured = getattr(getattr(model, "generation_config", None), "eos_token_id", None)
    ids = configured if isinstance(configured, list) else [configured]
    ids = [int(i) for i in ids if i is not None]
    if not ids and tokenizer.eos_token_id is not None:
        ids = [int(tokenizer.eos_token_id)]
    return ids


def common_prefix_length(rows: Sequence[Sequence[int]]) -> int:
    """Length of the longest token prefix shared by every row, keeping at least one token of each row."""
    if not rows:
        return 0
    first, limit = rows[0], min(len(r) for r in rows) - 1
    k = 0
    while k < limit and all(r[k] == first[k] for r in rows):
        k += 1
    return max(k, 0)


def _pick(scores: torch.Tensor, sampling: Sampling, generator: torch.Generator | None) -> torch.Tensor:
    """One token index per row of `scores` (rows x candidates)."""
    if sampling.temperature <= 0:
        return scores.argmax(dim=-1)
    from transformers import TopKLogitsWarper, TopPLogitsWarper

    scores = scores / sampling.temperature
    if sampling.top_k:
        scores = TopKLogitsWarper(sampling.top_k)(None, scores)
    if sampling.top_p < 1.0:
        scores = TopPLogitsWarper(sampling.top_p)(None, scores)
    return torch.multinomial(torch.softmax(scores, dim=-1), 1, generator=generator).squeeze(1)


def _forward(model: Any, cache_name: str, cache: Any, **kwargs: Any) -> tuple[Any, torch.Tensor]:
    """(KV cache, last-position logits in fp32); `cache_name` is the forward's cache keyword (renamed in 5.x)."""
    out = model(**{cache_name: cache}, use_cache=True, logits_to_keep=1, **kwargs)
    new = getattr(out, "cache", None)
    return (out.past_key_values if new is None else new), out.logits[:, -1].float()


def _cache_keyword(model: Any) -> str:
    import inspect

    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    return "cache" if "cache" in inspect.signature(base.forward).parameters else "past_key_values"


class _Row:
    __slots__ = ("out", "pending", "done", "at")

    def __init__(self):
        self.out: list[int] = []
        self.pending: list[int] = []  # appended but not yet fed to the model
        self.done = False
        self.at = (0, 0)  # where the row is in the constraint (`Constraint.locate`), kept so a step looks back less


@torch.no_grad()
def generate_ids(model: Any, prompt_ids: Sequence[Sequence[int]], *, max_new_tokens: int,
                 eos_token_ids: Sequence[int], pad_token_id: int, trie: Any = None,
                 sampling: Sampling | None = None, batch_size: int = 32,
                 stop: Callable[[list[int]], int | None] | None = None,
                 logits_processor: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None,
                 progress: Progress | None = None) -> list[list[int]]:
    """Completion ids (EOS included when emitted) for every prompt, `sampling.n` per prompt, in prompt order.

    `trie`: a `rlft.decoding.constraint.Constraint`; only what it allows is decoded. `stop(ids)`: without a trie, returns the
    length to cut a row at once it should stop (else None). `logits_processor(generated, scores)` (free decoding
    only) sees the generated tokens only, as in `rlft.decoding.shared_prefix`. `progress(k)`: k more prompts are done.
    """
    sampling = sampling or Sampling()
    if trie is not None and logits_processor is not None:
        raise ValueError("generate_ids: pass either a trie or a logits_processor, not both")
    if not prompt_ids:
        return []
    device = next(model.parameters()).device
    generator = None
    if sampling.seed is not None and sampling.temperature > 0:
        generator = torch.Generator(device=device).manual_seed(sampling.seed)
    rows = [list(map(int, r)) for r in prompt_ids]
    shared = common_prefix_length(rows)
    cache_name = _cache_keyword(model)
    prefix_cache = None
    if shared:
        prefix_cache, _ = _forward(model, cache_name, None, input_ids=torch.tensor([rows[0][:shared]], device=device))
    order = sorted(range(len(rows)), key=lambda i: (len(rows[i]), i))
    results: dict[int, list[list[int]]] = {}
    was_training = model.training
    model.eval()
    try:
        for start in range(0, len(order), batch_size):
            idx = order[start:start + batch_size]
            done = _generate_batch(model, cache_name, [rows[i][shared:] for i in idx], shared, prefix_cache,
                                   device, max_new_tokens, set(map(int, eos_token_ids)), pad_token_id, trie, sampling,
                                   generator, stop, logits_processor)
            for j, i in enumerate(idx):
                results[i] = done[j * sampling.n:(j + 1) * sampling.n]
            if progress is not None:
                progress(len(idx))
    finally:
        model.train(was_training)
    return [ids for i in range(len(rows)) for ids in results[i]]


def _generate_batch(model: Any, cache_name: str, suffixes: list[list[int]], shared: int, prefix_cache: Any,
                    device: torch.device, max_new_tokens: int, eos: set[int], pad_id: int, trie: Any,
                    sampling: Sampling, generator: torch.Generator | None, stop: Callable | None,
                    processor: Callable | None
                    ) -> list[list[int]]:
    b, n = len(suffixes), sampling.n
    width = max(len(s) for s in suffixes)
    ids = torch.full((b, width), pad_id, dtype=torch.long)
    mask = torch.zeros((b, shared + width), dtype=torch.long)
    mask[:, :shared] = 1
    for r, s in enumerate(suffixes):  # left-padded after the shared prefix: every row ends in the last column
        ids[r, width - len(s):] = torch.tensor(s)
        mask[r, shared + width - len(s):] = 1
    ids, mask = ids.to(device), mask.to(device)
    cache = None
    if prefix_cache is not None:
        cache = copy.deepcopy(prefix_cache)
        cache.batch_repeat_interleave(b)
    positions = (mask.cumsum(-1) - 1).clamp(min=0)
    cache, logits = _forward(model, cache_name, cache, input_ids=ids, attention_mask=mask,
                             position_ids=positions[:, shared:])
    next_pos = positions[:, -1] + 1
    if n > 1:  # n samples per prompt share the prompt pass
        cache.batch_repeat_interleave(n)
        logits, mask, next_pos = (t.repeat_interleave(n, dim=0) for t in (logits, mask, next_pos))
    state = [_Row() for _ in range(b * n)]
    active = list(range(b * n))  # rows still decoding, in cache order
    while True:
        _choose(state, active, logits, trie, sampling, generator, processor, eos, max_new_tokens, stop)
        keep = [k for k, r in enumerate(active) if not state[r].done]
        if not keep:
            break
        if len(keep) < len(active):
            cache.batch_select_indices(torch.tensor(keep, device=device))
            mask, next_pos = mask[keep], next_pos[keep]
            active = [active[k] for k in keep]
        chunk = max(len(state[r].pending) for r in active)
        feed = torch.full((len(active), chunk), pad_id, dtype=torch.long)
        new_mask = torch.zeros((len(active), chunk), dtype=torch.long)
        for k, r in enumerate(active):
            p = state[r].pending
            feed[k, chunk - len(p):] = torch.tensor(p)
            new_mask[k, chunk - len(p):] = 1
            state[r].pending = []
        new_mask = new_mask.to(device)
        pos = next_pos[:, None] + (new_mask.cumsum(-1) - 1).clamp(min=0)
        mask = torch.cat([mask, new_mask], dim=1)
        cache, logits = _forward(model, cache_name, cache, input_ids=feed.to(device), attention_mask=mask,
                                 position_ids=pos)
        next_pos = pos[:, -1] + 1
    return [r.out for r in state]


def _choose(state: list[_Row], active: list[int], logits: torch.Tensor, trie: Any, sampling: Sampling,
            generator: torch.Generator | None, processor: Callable | None, eos: set[int], max_new_tokens: int,
            stop: Callable | None) -> None:
    """Pick the next token of every active row, then append what the constraint forces; mark rows that stop."""
    if trie is None:
        scores = logits
        if processor is not None:
            generated = torch.tensor([state[r].out for r in active], dtype=torch.long, device=logits.device)
            scores = processor(generated, scores)
        picked = _pick(scores, sampling, generator).tolist()
        for r, tok in zip(active, picked, strict=True):
            row = state[r]
            row.out.append(tok)
            row.pending.append(tok)
            cut = stop(row.out) if stop is not None else None
            if cut is not None:
                del row.out[cut:]
            row.done = tok in eos or cut is not None or len(row.out) >= max_new_tokens
        return
    steps = []
    for r in active:
        row = state[r]
        row.at = trie.locate(row.out, row.at)
        steps.append(trie.step(row.out, row.at))
    # open-vocabulary rows (an analysis block, a reply), each state's rows sampled together, in completion order;
    # then the rows choosing among allowed ids (a label head), sampled together
    opened: dict[int, list[int]] = {}
    for k, (r, s) in enumerate(zip(active, steps, strict=True)):
        if s.allowed is None:
            opened.setdefault(state[r].at[0], []).append(k)
    for _, rows in sorted(opened.items()):
        _choose_open(state, active, rows, steps, logits, trie, sampling, generator, eos, max_new_tokens)
    keep = [k for k, s in enumerate(steps) if s.allowed]
    for k, s in enumerate(steps):
        if s.allowed == ():  # complete (or off the constraint): nothing more to generate
            state[active[k]].done = True
    if not keep:
        return
    active, logits = [active[k] for k in keep], logits[keep]
    # Allowed ids in ascending order, so ties break like argmax over the masked full vocabulary.
    allowed = [sorted(steps[k].allowed) for k in keep]
    width = max(len(a) for a in allowed)
    index = torch.zeros((len(active), width), dtype=torch.long)
    valid = torch.zeros((len(active), width), dtype=torch.bool)
    for k, a in enumerate(allowed):
        index[k, :len(a)] = torch.tensor(a)
        valid[k, :len(a)] = True
    index, valid = index.to(logits.device), valid.to(logits.device)
    scores = logits.gather(1, index).masked_fill(~valid, float("-inf"))
    picked = _pick(scores, sampling, generator).tolist()
    for k, r in enumerate(active):
        row = state[r]
        tok = allowed[k][picked[k]]
        while True:
            row.out.append(tok)
            row.pending.append(tok)
            if len(row.out) >= max_new_tokens:
                row.done = True
                break
            row.at = trie.locate(row.out, row.at)
            nxt = trie.step(row.out, row.at).allowed
            if nxt == ():  # complete: the path ended (EOS)
                row.done = True
                break
            if nxt is None or len(nxt) > 1:  # a choice, or an open state (e.g. the released reply): a model call
                break
            (tok,) = nxt  # forced: the model makes no decision here


def _choose_open(state: list[_Row], active: list[int], rows: list[int], steps: list[Any], logits: torch.Tensor,
                 trie: Any, sampling: Sampling, generator: torch.Generator | None, eos: set[int],
                 max_new_tokens: int) -> None:
    """Rows whose step allows the whole vocabulary: less EOS (`no_eos`: every EOS id) and `banned`; a `forced` id
    replaces the pick, a picked `stops` id becomes EOS."""
    scores = logits[rows]
    ends = eos | {trie.eos_token_id}
    for i, k in enumerate(rows):
        s = steps[k]
        banned = sorted((ends if s.no_eos else set()) | set(s.banned))
        if banned:
            scores[i, banned] = float("-inf")
    picked = _pick(scores, sampling, generator).tolist()
    for k, tok in zip(rows, picked, strict=True):
        s, row = steps[k], state[active[k]]
        if s.forced is not None:
            tok = s.forced
        elif tok in s.stops:
            tok = trie.eos_token_id
        row.out.append(tok)
        row.pending.append(tok)
        row.done = tok in ends or len(row.out) >= max_new_tokens


def generate(model: Any, tokenizer: Any, prompts: Sequence[Any], decoding: DecodingConfig | None = None,
             labels: Sequence[str] = (), *, max_new_tokens: int = 32, batch_size: int = 32,
             sampling: Sampling | None = None, trie: Any = None,
             logits_processor: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None,
             progress: Progress | None = None) -> list[str]:
    """Completion texts (prefill included, special tokens dropped) for conversational or plain-text prompts.

    Decodes the way training does: prompt ids from `rlft.decoding.prompting.prompt_ids`, the recipe's constraint when
    `decoding.constrain_labels` (needs `labels`; or pass a prebuilt `trie`: a `rlft.decoding.constraint.Constraint`), else a
    stop right after `decoding.label_suffix` when `decoding.stop_at_suffix`. `sampling.n` completions per prompt, consecutive.
    """
    from rlft.decoding.prompting import build_trie, prompt_ids

    decoding = decoding or DecodingConfig()
    if trie is None and decoding.constrain_labels:
        trie = build_trie(tokenizer, labels, decoding)
    stop = None
    if trie is None and decoding.stop_at_suffix:
        stop = suffix_stop(tokenizer, decoding.label_suffix)
    ids = [prompt_ids(tokenizer, p, decoding) for p in prompts]
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    out = generate_ids(model, ids, max_new_tokens=max_new_tokens, eos_token_ids=eos_token_ids(model, tokenizer),
                       pad_token_id=pad, trie=trie, sampling=sampling, batch_size=batch_size, stop=stop,
                       logits_processor=logits_processor, progress=progress)
    return completion_texts(tokenizer, out, decoding, trie)


def completion_texts(tokenizer: Any, completions: Sequence[Sequence[int]], decoding: DecodingConfig,
                     trie: Any = None) -> list[str]:
    """What rewards and reports see of completion ids: the prefill, then the ids the model chose (a looked-up text
    left out), special tokens dropped."""
    if trie is not None and trie.lookup_lengths:  # looked-up text is context, not what the model wrote
        completions = [trie.strip_lookup(ids) for ids in completions]
    return [decoding.prefill + t for t in tokenizer.batch_decode(completions, skip_special_tokens=True)]


def suffix_stop(tokenizer: Any, suffix: str) -> Callable[[list[int]], int | None]:
    """`stop(ids)` for `generate_ids`: the cut length once the decoded ids contain `suffix` (checked on the tail)."""
    def stop(ids: list[int]) -> int | None:
        return len(ids) if suffix in tokenizer.decode(ids, skip_special_tokens=True) else None

    return stop
