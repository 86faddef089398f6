"""Label-constrained generation under its first names: `LabelTrie`, `TrieLogitsProcessor`, `processor_factory`,
`label_regex` (docs/algorithms.md, docs/support_agent.md and older scripts use them).

The constraint itself lives in `rlft.decoding.constraint` (one `Constraint` with the state machine every generate loop asks:
analysis block -> label head [+ lookup] -> free reply). `LabelTrie` builds one from token id sequences and the
options as separate arguments; a recipe builds it with `Constraint.from_recipe` (`rlft.decoding.prompting.build_trie`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from rlft.decoding.constraint import Constraint, ConstraintProcessor, fold_stops_into_eos
from rlft.decoding.states import Analysis, FreeReply, LabelHead, label_regex, label_token_ids, stop_ids

__all__ = ["Analysis", "LabelTrie", "TrieLogitsProcessor", "fold_stops_into_eos", "label_regex", "label_token_ids",
           "processor_factory", "stop_ids"]

TrieLogitsProcessor = ConstraintProcessor  # `TrieLogitsProcessor(trie, prompt_length, pad_token_id)`


class LabelTrie(Constraint):
    """A `Constraint` over label token sequences: each ends with the EOS id so generation stops right after it.

    `release=True` (the partial constraint): sequences end without EOS and a completed sequence releases the row
    into a free reply of at most `reply_max_tokens` tokens (0: up to the generation limit) and, when
    `reply_min_tokens` is set, no EOS before that many reply tokens. `reply_stop_ids`: reply tokens that end the
    reply (taken as EOS). `analysis`: a reasoning block before the head. `lookups`: per sequence, ids forced after
    that head (needs `release`).
    """

    def __init__(self, sequences: Sequence[Sequence[int]], eos_token_id: int, release: bool = False,
                 reply_max_tokens: int = 0, reply_min_tokens: int = 0, analysis: Analysis | None = None,
                 lookups: Sequence[Sequence[int]] | None = None, reply_stop_ids: Sequence[int] = (),
                 head: LabelHead | None = None, reply_stop: str = ""):
        if reply_stop_ids and not release:
            raise ValueError("reply_stop_ids end a free reply: they need release=True (decoding.free_reply)")
        head = head or LabelHead(sequences, eos_token_id, release, lookups)
        states = [s for s in (analysis, head) if s is not None]
        if release:
            states.append(FreeReply(eos_token_id, reply_max_tokens, reply_min_tokens, reply_stop_ids, stop=reply_stop))
        super().__init__(states, eos_token_id)

    @classmethod
    def from_labels(cls, tokenizer: Any, labels: Sequence[str], prefill: str = "", suffix: str = "",
                    eos_token_id: int | None = None, release: bool = False, reply_max_tokens: int = 0,
                    reply_min_tokens: int = 0, analysis: Analysis | None = None,
                    label_prefix: str = "", lookup: Callable[[str], str] | None = None,
                    reply_stop: str = "") -> LabelTrie:
        """With `analysis`, the head's paths are ``label_prefix + label + suffix`` tokenized on their own (they
        follow the analysis block, not the prefill). `lookup(label) -> text`: context appended after each head
        (tokenized on its own), which needs `release`. `reply_stop`: every token whose text contains it ends the
        reply (`stop_ids`)."""
        head = LabelHead.from_labels(tokenizer, labels, prefill, suffix, eos_token_id, release, analysis is not None,
                                     label_prefix, lookup)
        return cls([], head.eos_token_id, release, reply_max_tokens, reply_min_tokens, analysis,
                   reply_stop_ids=stop_ids(tokenizer, reply_stop) if reply_stop else (), head=head,
                   reply_stop=reply_stop)


def processor_factory(tokenizer: Any, labels: Sequence[str], prefill: str = "", suffix: str = "",
                      eos_token_id: int | None = None, release: bool = False, reply_max_tokens: int = 0):
    """A callable `prompt_length -> TrieLogitsProcessor` (the shape `rlft.evaluation.held_out.generate` expects)."""
    trie = LabelTrie.from_labels(tokenizer, labels, prefill, suffix, eos_token_id, release, reply_max_tokens)
    pad = tokenizer.pad_token_id

    def make(prompt_length: int) -> TrieLogitsProcessor:
        return trie.processor(prompt_length, pad)

    return make
