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

Analysis block (``decoding.analysis_max_tokens``): each completion first reasons freely, e.g. after the prefill
``<analysis>``: any token but EOS, at most `Analysis.max_tokens` of them, until the decoded text contains
``</analysis>`` (the model may write it; once the budget is spent its token ids are forced). The head's trie starts
right after the token that completes the close, over ``label_prefix + label + suffix`` (e.g. ``<intent>refund
</intent>``) tokenized on their own. `LabelTrie.analysis_end(prefix)` says where the block ended (None: still
inside it); `tail`, `allowed` and `is_forced` look up the part after it.

Lookup (``decoding.lookup``, head-triggered retrieval): with a release trie, each label's path may continue with
context ids the model does not choose, e.g. the help-centre article of THAT label, before the row is released into
its reply. They are ordinary single-child trie nodes, so every loop forces them as it forces a label's last
tokens (one chunk without model calls in `rlft.generation`; one token per step in a logits processor), and a wrong
head fetches the wrong article. `LabelTrie.lookup_span(ids)` says where they are, so training leaves them out of
the loss (GRPO's ``env_mask``) and `strip_lookup` leaves them out of the text rewards and reports score.

This module only constrains decoding; rewards and training live elsewhere (`rlft.grpo`).
"""

from __future__ import annotations

import functools

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
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


@dataclass(frozen=True)
class Analysis:
    """The free reasoning block before the head: at most `max_tokens` tokens, ended by `close` (its ids forced once
    the budget is spent); `decode(ids) -> text` finds the close in what the model wrote."""

    max_tokens: int
    close: str
    close_ids: tuple[int, ...]
    decode: Callable[[list[int]], str]

    @classmethod
    def from_tokenizer(cls, tokenizer: Any, max_tokens: int, close: str = "</analysis>") -> Analysis:
        if max_tokens < 1 or not close:
            raise ValueError("an analysis block needs max_tokens >= 1 and a non-empty close")
        ids = tuple(tokenizer.encode(close, add_special_tokens=False))
        return cls(max_tokens, close, ids, lambda t: tokenizer.decode(t, skip_special_tokens=True))


class LabelTrie:
    """Prefix trie over token sequences; each sequence ends with the EOS id so generation stops right after it.

    `release=True` (the partial constraint): sequences end without EOS and a completed sequence releases the row
    into a free reply of at most `reply_max_tokens` tokens (0: up to the generation limit) and, when
    `reply_min_tokens` is set, no EOS before that many reply tokens (an instruct model tends to stop right after
    the head). `reply_stop_ids`: reply tokens that end the reply (each loop turns them into EOS: a stop string
    such as ``"\n"`` for a one-paragraph reply, `stop_ids`).
    """

    def __init__(self, sequences: Sequence[Sequence[int]], eos_token_id: int, release: bool = False,
                 reply_max_tokens: int = 0, reply_min_tokens: int = 0, analysis: Analysis | None = None,
                 lookups: Sequence[Sequence[int]] | None = None, reply_stop_ids: Sequence[int] = ()):
        self.reply_stop_ids = frozenset(int(t) for t in reply_stop_ids)
        self._reply_stop_sorted = sorted(self.reply_stop_ids)  # the processor's index list, built once
        if self.reply_stop_ids and not release:
            raise ValueError("reply_stop_ids end a free reply: they need release=True (decoding.free_reply)")
        if lookups is not None:
            if not release:
                raise ValueError("a lookup follows the head only with release=True (decoding.free_reply)")
            if len(lookups) != len(sequences):
                raise ValueError("lookups: expected one id sequence per label sequence")
        # head ids -> number of looked-up ids that follow it (heads never prefix each other: checked in from_labels)
        self.lookup_lengths: dict[tuple[int, ...], int] = {}
        if lookups is not None:
            self.lookup_lengths = {tuple(int(t) for t in seq): len(extra)
                                   for seq, extra in zip(sequences, lookups, strict=True)}
            sequences = [[*seq, *extra] for seq, extra in zip(sequences, lookups, strict=True)]
        self.eos_token_id = eos_token_id
        self.release = release
        self.reply_max_tokens = reply_max_tokens
        self.reply_min_tokens = reply_min_tokens
        self.analysis = analysis
        self._analysis_ends: dict[tuple[int, ...], int | None] = {}
        self.root: dict[int, dict] = {}
        for seq in sequences:
            node = self.root
            for tok in [*seq] if release else [*seq, eos_token_id]:
                node = node.setdefault(int(tok), {})
        self._cache: dict[tuple[int, ...], list[int] | None] = {}

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
        eos = tokenizer.eos_token_id if eos_token_id is None else eos_token_id
        if eos is None:
            raise ValueError("the tokenizer has no eos_token_id; pass eos_token_id")
        if analysis is not None:
            seqs = [tokenizer.encode(label_prefix + str(label) + suffix, add_special_tokens=False)
                    for label in labels]
            if not labels or any(not str(label).strip() for label in labels):
                raise ValueError("constrained decoding needs non-empty labels")
        else:
            seqs = label_token_ids(tokenizer, labels, prefill, suffix)
        if release:
            heads = {tuple(s) for s in seqs}
            clash = [a for a in heads for b in heads if a != b and b[:len(a)] == a]
            if clash:  # a released row could never reach the longer label
                raise ValueError("decoding.free_reply: a label + suffix is a token prefix of another; use a "
                                 "non-empty label_suffix")
        lookups = None
        if lookup is not None:
            lookups = [tokenizer.encode(lookup(str(label)), add_special_tokens=False) for label in labels]
        return cls(seqs, int(eos), release, reply_max_tokens, reply_min_tokens, analysis, lookups,
                   stop_ids(tokenizer, reply_stop) if reply_stop else ())

    def analysis_end(self, prefix: Sequence[int]) -> int | None:
        """Tokens of `prefix` up to and including the one that completed the analysis close (0 without an analysis
        block); None while `prefix` is still inside the block."""
        a = self.analysis
        if a is None:
            return 0
        window = tuple(int(t) for t in prefix[:a.max_tokens + len(a.close_ids)])
        if window not in self._analysis_ends:
            end = None
            if a.close in a.decode(list(window)):
                end = next(k for k in range(1, len(window) + 1) if a.close in a.decode(list(window[:k])))
            self._analysis_ends[window] = end
        return self._analysis_ends[window]

    def analysis_forced(self, prefix: Sequence[int]) -> int | None:
        """Inside the analysis block: the close's next token id once the budget is spent, else None (any token
        but EOS)."""
        spent = len(prefix) - self.analysis.max_tokens
        return self.analysis.close_ids[min(spent, len(self.analysis.close_ids) - 1)] if spent >= 0 else None

    def lookup_span(self, ids: Sequence[int]) -> tuple[int, int] | None:
        """(start, end) of the looked-up ids in a completion (end clipped to its length); None without a lookup or
        before the head completed."""
        if not self.lookup_lengths:
            return None
        start = self.analysis_end(ids)
        if start is None:
            return None
        longest = max(len(h) for h in self.lookup_lengths)
        for k in range(1, min(len(ids) - start, longest) + 1):
            extra = self.lookup_lengths.get(tuple(int(t) for t in ids[start:start + k]))
            if extra is not None:
                return start + k, min(start + k + extra, len(ids))
        return None

    def strip_lookup(self, ids: Sequence[int]) -> list[int]:
        """The ids the model chose: `ids` without its looked-up span (what rewards and reports score)."""
        span = self.lookup_span(ids)
        return list(ids) if span is None else [*ids[:span[0]], *ids[span[1]:]]

    def lookup_mask(self, ids: Sequence[int]) -> list[int]:
        """1 per token the model chose, 0 per looked-up token (GRPO's ``env_mask``)."""
        span = self.lookup_span(ids)
        return [0 if span is not None and span[0] <= k < span[1] else 1 for k in range(len(ids))]

    def tail(self, prefix: Sequence[int]) -> int | None:
        """Partial constraint: reply tokens after a completed head in `prefix`; None while inside the head (or
        without `release`, or when `prefix` left the trie)."""
        if not self.release:
            return None
        start = self.analysis_end(prefix)
        if start is None:
            return None
        prefix = prefix[start:]
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

        With `release`, a prefix past a completed head is not looked up here (see `tail`); with an analysis block
        only the part after it is (inside the block see `analysis_forced`; None is returned there)."""
        start = self.analysis_end(prefix)
        if start is None:
            return None
        key = tuple(int(t) for t in prefix[start:])
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
        if self.analysis_end(prefix) is None:
            return self.analysis_forced(prefix) is not None
        if self.release and self.tail(prefix) is not None:
            return False
        nxt = self.allowed(prefix)
        return nxt is not None and len(nxt) == 1


def stop_ids(tokenizer: Any, text: str) -> list[int]:
    """Every non-special token id whose decoded text contains `text` (a stop string as a set of tokens: a sampled one ends the
    reply). A stop split over several tokens (``"\n\n"`` written as two ``"\n"``) is not caught: prefer a stop of
    one character."""
    if not text:
        raise ValueError("a stop string must be non-empty")
    return list(_stop_ids(tokenizer, text))


@functools.lru_cache(maxsize=8)
def _stop_ids(tokenizer: Any, text: str) -> tuple[int, ...]:
    """The vocabulary scan of `stop_ids`, once per tokenizer and string (every `build_trie` call asks again)."""
    special = set(tokenizer.all_special_ids)  # EOS and friends end or frame a turn already
    return tuple(i for i in range(len(tokenizer)) if i not in special and text in tokenizer.decode([i]))


def fold_stops_into_eos(scores: torch.Tensor, stop: Sequence[int], eos: int) -> torch.Tensor:
    """Logits where picking a stop token and picking EOS are one event: EOS gets their summed probability
    (log-sum-exp) and the stop tokens none. Sampling from the result equals sampling then mapping a stop to EOS."""
    ids = torch.tensor(sorted({*stop, eos}), device=scores.device)
    scores = scores.clone()
    scores[..., eos] = torch.logsumexp(scores[..., ids], dim=-1)
    scores[..., [i for i in sorted(stop) if i != eos]] = float("-inf")
    return scores


class TrieLogitsProcessor:
    """`transformers` logits processor restricting generation (after `prompt_length` tokens) to the trie's paths.

    Rows that finished (EOS emitted) or left the trie may only emit `pad_token_id`, which `generate` ignores.
    Inside an analysis block any token but EOS is allowed (only the close's ids once the budget is spent).
    With a `release` trie a row past its head is unmasked (only EOS once it has `reply_max_tokens` reply tokens,
    no EOS before `reply_min_tokens`); its `reply_stop_ids` are folded into EOS (`fold_stops_into_eos`).
    """

    def __init__(self, trie: LabelTrie, prompt_length: int, pad_token_id: int | None = None):
        self.trie = trie
        self.prompt_length = prompt_length
        self.pad_token_id = trie.eos_token_id if pad_token_id is None else pad_token_id

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        mask = torch.full_like(scores, float("-inf"))
        if self.trie.reply_stop_ids:  # rows past their head get their stop tokens folded into EOS below
            scores = scores.clone()
        for row, ids in enumerate(input_ids[:, self.prompt_length:].tolist()):
            if self.trie.analysis is not None and self.trie.analysis_end(ids) is None:
                forced = self.trie.analysis_forced(ids)
                if forced is None:
                    mask[row] = 0.0
                    mask[row, self.trie.eos_token_id] = float("-inf")
                else:
                    mask[row, forced] = 0.0
                continue
            if self.trie.release:
                tail = self.trie.tail(ids)
                if tail is not None:
                    if self.trie.reply_max_tokens and tail >= self.trie.reply_max_tokens:
                        mask[row, self.trie.eos_token_id] = 0.0
                    else:
                        mask[row] = 0.0
                        stops = self.trie._reply_stop_sorted
                        if tail < self.trie.reply_min_tokens:
                            mask[row, [self.trie.eos_token_id, *stops]] = float("-inf")
                        elif stops:
                            scores[row] = fold_stops_into_eos(scores[row], stops, self.trie.eos_token_id)
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
                tail_max_chars: int = 0, analysis_close: str = "", analysis_max_chars: int = 0,
                label_prefix: str = "", after_label: Callable[[str], str] | None = None, tail_without: str = "") -> str:
    """The same constraint as a regular expression over the completion text (after the prefill, if given).

    `free_tail` (the partial constraint): any text may follow the head, at most `tail_max_chars` characters
    (0: unbounded; the server's token limit ends it). `analysis_close` (an analysis block first): at most
    `analysis_max_chars` characters without ``<`` (so the first ``<`` starts the close; structured-output engines
    have no look-ahead to say "anything but the close"), the close, then `label_prefix` + the label.
    `after_label(label) -> text`: text that must follow that label's suffix (`decoding.lookup`). `tail_without`: a
    character the free tail never contains (a one-character `decoding.reply_stop`).

    >>> label_regex(["track_order", "cancel_order"], suffix="</intent>")
    '(?:cancel_order|track_order)</intent>'
    >>> label_regex(["track_order"], suffix="</intent>", free_tail=True)
    '(?:track_order)</intent>[\\s\\S]*'
    >>> label_regex(["track_order"], suffix="</intent>", analysis_close="</analysis>", analysis_max_chars=80,
    ...             label_prefix="<intent>")
    '[^<]{0,80}</analysis><intent>(?:track_order)</intent>'
    """
    if not labels:
        raise ValueError("constrained decoding needs at least one label")
    # longest first so an alternation never stops at a label that is a prefix of another
    ordered = sorted({str(x) for x in labels}, key=lambda s: (-len(s), s))
    if after_label is not None:  # a lookup: each label's alternative carries its own text after the suffix
        alternatives = "|".join(re.escape(x + suffix + after_label(x)) for x in ordered)
        suffix = ""
    else:
        alternatives = "|".join(re.escape(x) for x in ordered)
    readable = {"\n": "\\n", "\t": "\\t", "\r": "\\r"}
    chars = f"[^{readable.get(tail_without, re.escape(tail_without))}]" if tail_without else "[\\s\\S]"
    tail = (chars + ("{0,%d}" % tail_max_chars if tail_max_chars else "*")) if free_tail else ""
    head = ""
    if analysis_close:
        head = ("[^<]{0,%d}" % analysis_max_chars if analysis_max_chars else "[^<]*") + re.escape(analysis_close)
    return f"{re.escape(prefill)}{head}{re.escape(label_prefix)}(?:{alternatives}){re.escape(suffix)}{tail}"
