"""Label-constrained generation: every completion is one allowed label followed by a fixed suffix and EOS, or (the
partial constraint, `release=True`) that head followed by a free reply.

A prefix trie over the token ids of ``label + suffix`` (as the tokenizer encodes them right after the prefill,
e.g. ``<intent>``) drives a `transformers` logits processor that masks every token the trie does not allow.
With it a classifier-style task has no format failures, needs no label list in the prompt (the trie is the list),
and completions are only a few tokens long. `label_regex` gives the same constraint as a regular expression for
backends with structured outputs (TRL's ``vllm_structured_outputs_regex``).

Partial constraint (``decoding.free_reply``): the trie's sequences end without EOS; once a row has completed a
head (label + suffix) the processor releases it: every token is allowed (the reply ends at EOS or the generation
limit), or only EOS once `reply_max_tokens` reply tokens were generated. `LabelTrie.tail(prefix)` says where a row
is: None inside the head, else the number of reply tokens so far.

This module only constrains decoding; rewards and training live elsewhere (`rlft.grpo`).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

import torch


def label_token_ids(tokenizer: Any, labels: Sequence[str], prefill: str = "", suffix: str = "") -> list[list[int]]:
    """Token ids of ``label + suffix`` as they appear after ``prefill`` (the boundary is tokenized jointly)."""
    if not labels:
        raise ValueError("constrained decoding needs at least one label")
    head = tokenizer.encode(prefill, add_special_tokens=False) if prefill else []
    out = []
    for label in labels:
        if not str(label).strip():
            raise ValueError("labels must be non-empty strings")
        ids = tokenizer.encode(prefill + label + suffix, add_special_tokens=False)
        if ids[:len(head)] == head:
            ids = ids[len(head):]
        else:  # the prefill's last token merged with the label's first: encode the label on its own
            ids = tokenizer.encode(label + suffix, add_special_tokens=False)
        out.append(ids)
    return out


class LabelTrie:
    """Prefix trie over token sequences; each sequence ends with the EOS id so generation stops right after it.

    `release=True` (the partial constraint): sequences end without EOS and a completed sequence releases the row
    into a free reply of at most `reply_max_tokens` tokens (0: up to the generation limit) and, when
    `reply_min_tokens` is set, no EOS before that many reply tokens (an instruct model tends to stop right after
    the head).
    """

    def __init__(self, sequences: Sequence[Sequence[int]], eos_token_id: int, release: bool = False,
                 reply_max_tokens: int = 0, reply_min_tokens: int = 0):
        self.eos_token_id = eos_token_id
        self.release = release
        self.reply_max_tokens = reply_max_tokens
        self.reply_min_tokens = reply_min_tokens
        self.root: dict[int, dict] = {}
        for seq in sequences:
            node = self.root
            for tok in [*seq] if release else [*seq, eos_token_id]:
                node = node.setdefault(int(tok), {})
        self._cache: dict[tuple[int, ...], list[int] | None] = {}

    @classmethod
    def from_labels(cls, tokenizer: Any, labels: Sequence[str], prefill: str = "", suffix: str = "",
                    eos_token_id: int | None = None, release: bool = False, reply_max_tokens: int = 0,
                    reply_min_tokens: int = 0) -> LabelTrie:
        eos = tokenizer.eos_token_id if eos_token_id is None else eos_token_id
        if eos is None:
            raise ValueError("the tokenizer has no eos_token_id; pass eos_token_id")
        seqs = label_token_ids(tokenizer, labels, prefill, suffix)
        if release:
            heads = {tuple(s) for s in seqs}
            clash = [a for a in heads for b in heads if a != b and b[:len(a)] == a]
            if clash:  # a released row could never reach the longer label
                raise ValueError("decoding.free_reply: a label + suffix is a token prefix of another; use a "
                                 "non-empty label_suffix")
        return cls(seqs, int(eos), release, reply_max_tokens, reply_min_tokens)

    def tail(self, prefix: Sequence[int]) -> int | None:
        """Partial constraint: reply tokens after a completed head in `prefix`; None while inside the head (or
        without `release`, or when `prefix` left the trie)."""
        if not self.release:
            return None
        node: dict | None = self.root
        for k, tok in enumerate(prefix):
            if node is None:
                return None
            if not node:
                return len(prefix) - k
            node = node.get(int(tok))
        return 0 if node is not None and not node else None

    def allowed(self, prefix: Sequence[int]) -> list[int] | None:
        """Token ids allowed after `prefix`; [] once a sequence is complete; None if `prefix` left the trie.

        With `release`, a prefix past a completed head is not looked up here (see `tail`)."""
        key = tuple(int(t) for t in prefix)
        if key not in self._cache:
            node: dict | None = self.root
            for tok in key:
                node = node.get(tok) if node is not None else None
                if node is None:
                    break
            self._cache[key] = None if node is None else list(node)
        return self._cache[key]

    def is_forced(self, prefix: Sequence[int]) -> bool:
        """True when exactly one token can follow `prefix` (the model makes no decision there)."""
        if self.release and self.tail(prefix) is not None:
            return False
        nxt = self.allowed(prefix)
        return nxt is not None and len(nxt) == 1


class TrieLogitsProcessor:
    """`transformers` logits processor restricting generation (after `prompt_length` tokens) to the trie's paths.

    Rows that finished (EOS emitted) or left the trie may only emit `pad_token_id`, which `generate` ignores.
    With a `release` trie a row past its head is unmasked (only EOS once it has `reply_max_tokens` reply tokens,
    no EOS before `reply_min_tokens`).
    """

    def __init__(self, trie: LabelTrie, prompt_length: int, pad_token_id: int | None = None):
        self.trie = trie
        self.prompt_length = prompt_length
        self.pad_token_id = trie.eos_token_id if pad_token_id is None else pad_token_id

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        mask = torch.full_like(scores, float("-inf"))
        for row, ids in enumerate(input_ids[:, self.prompt_length:].tolist()):
            if self.trie.release:
                tail = self.trie.tail(ids)
                if tail is not None:
                    if self.trie.reply_max_tokens and tail >= self.trie.reply_max_tokens:
                        mask[row, self.trie.eos_token_id] = 0.0
                    else:
                        mask[row] = 0.0
                        if tail < self.trie.reply_min_tokens:
                            mask[row, self.trie.eos_token_id] = float("-inf")
                    continue
            allowed = self.trie.allowed(ids)
            mask[row, allowed if allowed else [self.pad_token_id]] = 0.0
        return scores + mask


def processor_factory(tokenizer: Any, labels: Sequence[str], prefill: str = "", suffix: str = "",
                      eos_token_id: int | None = None, release: bool = False, reply_max_tokens: int = 0):
    """A callable `prompt_length -> TrieLogitsProcessor` (the shape `rlft.evaluate.generate` expects)."""
    trie = LabelTrie.from_labels(tokenizer, labels, prefill, suffix, eos_token_id, release, reply_max_tokens)
    pad = tokenizer.pad_token_id

    def make(prompt_length: int) -> TrieLogitsProcessor:
        return TrieLogitsProcessor(trie, prompt_length, pad)

    return make


def label_regex(labels: Sequence[str], prefill: str = "", suffix: str = "", free_tail: bool = False,
                tail_max_chars: int = 0) -> str:
    """The same constraint as a regular expression over the completion text (after the prefill, if given).

    `free_tail` (the partial constraint): any text may follow the head, at most `tail_max_chars` characters
    (0: unbounded; the server's token limit ends it).

    >>> label_regex(["track_order", "cancel_order"], suffix="</intent>")
    '(?:cancel_order|track_order)</intent>'
    >>> label_regex(["track_order"], suffix="</intent>", free_tail=True)
    '(?:track_order)</intent>[\\s\\S]*'
    """
    if not labels:
        raise ValueError("constrained decoding needs at least one label")
    # longest first so an alternation never stops at a label that is a prefix of another
    alternatives = "|".join(re.escape(x) for x in sorted(set(labels), key=lambda s: (-len(s), s)))
    tail = ("[\\s\\S]{0,%d}" % tail_max_chars if tail_max_chars else "[\\s\\S]*") if free_tail else ""
    return f"{re.escape(prefill)}(?:{alternatives}){re.escape(suffix)}{tail}"
