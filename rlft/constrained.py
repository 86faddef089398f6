"""Label-constrained generation: every completion is one allowed label followed by a fixed suffix and EOS.

A prefix trie over the token ids of ``label + suffix`` (as the tokenizer encodes them right after the prefill,
e.g. ``<intent>``) drives a `transformers` logits processor that masks every token the trie does not allow.
With it a classifier-style task has no format failures, needs no label list in the prompt (the trie is the list),
and completions are only a few tokens long. `label_regex` gives the same constraint as a regular expression for
backends with structured outputs (TRL's ``vllm_structured_outputs_regex``).

This module only constrains decoding; rewards and training live elsewhere (`rlft.signal`).
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
    """Prefix trie over token sequences; each sequence ends with the EOS id so generation stops right after it."""

    def __init__(self, sequences: Sequence[Sequence[int]], eos_token_id: int):
        self.eos_token_id = eos_token_id
        self.root: dict[int, dict] = {}
        for seq in sequences:
            node = self.root
            for tok in [*seq, eos_token_id]:
                node = node.setdefault(int(tok), {})
        self._cache: dict[tuple[int, ...], list[int] | None] = {}

    @classmethod
    def from_labels(cls, tokenizer: Any, labels: Sequence[str], prefill: str = "", suffix: str = "",
                    eos_token_id: int | None = None) -> LabelTrie:
        eos = tokenizer.eos_token_id if eos_token_id is None else eos_token_id
        if eos is None:
            raise ValueError("the tokenizer has no eos_token_id; pass eos_token_id")
        return cls(label_token_ids(tokenizer, labels, prefill, suffix), int(eos))

    def allowed(self, prefix: Sequence[int]) -> list[int] | None:
        """Token ids allowed after `prefix`; [] once a sequence is complete; None if `prefix` left the trie."""
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
        nxt = self.allowed(prefix)
        return nxt is not None and len(nxt) == 1


class TrieLogitsProcessor:
    """`transformers` logits processor restricting generation (after `prompt_length` tokens) to the trie's paths.

    Rows that finished (EOS emitted) or left the trie may only emit `pad_token_id`, which `generate` ignores.
    """

    def __init__(self, trie: LabelTrie, prompt_length: int, pad_token_id: int | None = None):
        self.trie = trie
        self.prompt_length = prompt_length
        self.pad_token_id = trie.eos_token_id if pad_token_id is None else pad_token_id

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        mask = torch.full_like(scores, float("-inf"))
        for row, ids in enumerate(input_ids[:, self.prompt_length:].tolist()):
            allowed = self.trie.allowed(ids)
            mask[row, allowed if allowed else [self.pad_token_id]] = 0.0
        return scores + mask


def processor_factory(tokenizer: Any, labels: Sequence[str], prefill: str = "", suffix: str = "",
                      eos_token_id: int | None = None):
    """A callable `prompt_length -> TrieLogitsProcessor` (the shape `rlft.evaluate.generate` expects)."""
    trie = LabelTrie.from_labels(tokenizer, labels, prefill, suffix, eos_token_id)
    pad = tokenizer.pad_token_id

    def make(prompt_length: int) -> TrieLogitsProcessor:
        return TrieLogitsProcessor(trie, prompt_length, pad)

    return make


def label_regex(labels: Sequence[str], prefill: str = "", suffix: str = "") -> str:
    """The same constraint as a regular expression over the completion text (after the prefill, if given).

    >>> label_regex(["track_order", "cancel_order"], suffix="</intent>")
    '(?:cancel_order|track_order)</intent>'
    """
    if not labels:
        raise ValueError("constrained decoding needs at least one label")
    # longest first so an alternation never stops at a label that is a prefix of another
    alternatives = "|".join(re.escape(x) for x in sorted(set(labels), key=lambda s: (-len(s), s)))
    return f"{re.escape(prefill)}(?:{alternatives}){re.escape(suffix)}"
