"""The states of a completion under the decoding constraint (`rlft.decoding.constraint.Constraint` runs them in
order): what each allows next (`step`), where it ends (`end`) and its regular-expression form (`regex`).

    analysis (optional) -> head: label + suffix [+ looked-up text] -> reply (optional)

- `Analysis` (``decoding.analysis_max_tokens``): free reasoning, any token but EOS, at most `max_tokens` of them,
  until the decoded text contains the close (the model may write it; once the budget is spent its ids are forced).
- `LabelHead` (``decoding.constrain_labels``): a prefix trie over the token ids of ``label + suffix`` as they
  follow the prefill (after an analysis block: ``label_prefix + label + suffix`` tokenized on their own), then EOS;
  with a reply after it no EOS. With ``decoding.lookup`` each label's path goes on with the ids of THAT label's
  looked-up text (head-triggered retrieval): single-child trie nodes, forced like a label's last tokens, and
  located by `lookup_span` so training and scoring leave them out.
- `FreeReply` (``decoding.free_reply``): any token; no EOS (nor stop token) before `min_tokens` reply tokens,
  only EOS once `max_tokens` exist, and a `stop_ids` token (``decoding.reply_stop``) counts as EOS.

`Step` is the rule a state gives for the next token; `label_regex` joins the states' regular expressions without a
tokenizer. A new state is a `State` subclass registered with `rlft.decoding.constraint.register_state`.
"""

from __future__ import annotations

import functools
import re
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

if TYPE_CHECKING:
    from rlft.recipe.sections import DecodingConfig


@dataclass(frozen=True)
class Step:
    """What a row may emit next. Loops read it as follows (`ConstraintProcessor` as a mask, `rlft.decoding.generation` as a
    choice among ids):

    - `allowed` given: only these ids (a trie's children, in insertion order); one id: the model makes no decision
      (the chunked loop appends it without a model call); ``()``: nothing may follow (the constraint is complete or
      the row left it), a batch pads the row.
    - `allowed` None: the whole vocabulary, less EOS when `no_eos` (every EOS id of the loop) and less `banned`;
      `forced` overrides the pick (a budget ran out: the loop masks to it, or samples and replaces); a picked
      `stops` id counts as EOS.
    `state` names the state the row is in ("" once complete): a loop that samples open-vocabulary rows in groups
    samples each state's rows together.
    """

    state: str
    allowed: tuple[int, ...] | None = None
    no_eos: bool = False
    banned: tuple[int, ...] = ()
    forced: int | None = None
    stops: tuple[int, ...] = ()


COMPLETE = Step("", allowed=())


class State(ABC):
    """One stretch of a completion. `ids` are always the completion's ids from where this state began. A state
    defines `end` and `step`; `regex` only when it has a structured-outputs form."""

    name: ClassVar[str] = ""

    @abstractmethod
    def end(self, ids: Sequence[int]) -> int | None:
        """How many of `ids` this state spans once it is complete; None while it goes on (or the row left it)."""

    @abstractmethod
    def step(self, ids: Sequence[int]) -> Step:
        """The rule for the next token while the state goes on (`end(ids)` is None)."""

    def regex(self) -> str:
        """This state as a regular expression over its text (structured outputs)."""
        raise NotImplementedError(f"decoding state {self.name!r} has no regular-expression form")

    def is_forced(self, ids: Sequence[int]) -> bool:
        """True when the constraint fixes the next token (`signal.decision_tokens_only` leaves it out of the loss)."""
        s = self.step(ids)
        return s.forced is not None or (s.allowed is not None and len(s.allowed) == 1)


def _analysis_regex(close: str, max_chars: int) -> str:
    # no look-ahead in structured-output engines: "anything but the close" is "no '<'", so the first '<' opens it
    return ("[^<]{0,%d}" % max_chars if max_chars else "[^<]*") + re.escape(close)


def _head_regex(labels: Sequence[str], label_prefix: str, suffix: str,
                after_label: Callable[[str], str] | None) -> str:
    if not labels:
        raise ValueError("constrained decoding needs at least one label")
    # longest first so an alternation never stops at a label that is a prefix of another
    ordered = sorted({str(x) for x in labels}, key=lambda s: (-len(s), s))
    if after_label is not None:  # a lookup: each label's alternative carries its own text after the suffix
        alternatives = "|".join(re.escape(x + suffix + after_label(x)) for x in ordered)
        suffix = ""
    else:
        alternatives = "|".join(re.escape(x) for x in ordered)
    return f"{re.escape(label_prefix)}(?:{alternatives}){re.escape(suffix)}"


def _reply_regex(max_chars: int, without: str) -> str:
    readable = {"\n": "\\n", "\t": "\\t", "\r": "\\r"}
    chars = f"[^{readable.get(without, re.escape(without))}]" if without else "[\\s\\S]"
    return chars + ("{0,%d}" % max_chars if max_chars else "*")


@dataclass(frozen=True)
class Analysis(State):
    """The free reasoning block before the head: at most `max_tokens` tokens, ended by `close` (its ids forced once
    the budget is spent); `decode(ids) -> text` finds the close in what the model wrote. `regex_chars`: its length
    in the regex (None: 8 characters per token; 0: unbounded). Without `close_ids` / `decode` it has its text form
    only."""

    name: ClassVar[str] = "analysis"
    max_tokens: int
    close: str
    close_ids: tuple[int, ...] = ()
    decode: Callable[[list[int]], str] | None = None
    regex_chars: int | None = None
    _ends: dict = field(default_factory=dict, init=False, repr=False, compare=False, hash=False)

    @classmethod
    def from_tokenizer(cls, tokenizer: Any, max_tokens: int, close: str = "</analysis>") -> Analysis:
        if max_tokens < 1 or not close:
            raise ValueError("an analysis block needs max_tokens >= 1 and a non-empty close")
        ids = tuple(tokenizer.encode(close, add_special_tokens=False))
        return cls(max_tokens, close, ids, lambda t: tokenizer.decode(t, skip_special_tokens=True))

    @classmethod
    def from_recipe(cls, tokenizer: Any, labels: Sequence[str], decoding: DecodingConfig) -> Analysis | None:
        if not decoding.analysis_max_tokens:
            return None
        if tokenizer is None:
            return cls(decoding.analysis_max_tokens, decoding.analysis_close)
        return cls.from_tokenizer(tokenizer, decoding.analysis_max_tokens, decoding.analysis_close)

    def end(self, ids: Sequence[int]) -> int | None:
        """Tokens up to and including the one that completed the close; None while inside the block."""
        window = tuple(int(t) for t in ids[:self.max_tokens + len(self.close_ids)])
        if window not in self._ends:
            end = None
            if self.close in self.decode(list(window)):
                end = next(k for k in range(1, len(window) + 1) if self.close in self.decode(list(window[:k])))
            self._ends[window] = end
        return self._ends[window]

    def forced(self, ids: Sequence[int]) -> int | None:
        """The close's next token id once the budget is spent, else None (any token but EOS)."""
        spent = len(ids) - self.max_tokens
        return self.close_ids[min(spent, len(self.close_ids) - 1)] if spent >= 0 else None

    def step(self, ids: Sequence[int]) -> Step:
        return Step(self.name, no_eos=True, forced=self.forced(ids))

    def regex(self) -> str:
        return _analysis_regex(self.close, 8 * self.max_tokens if self.regex_chars is None else self.regex_chars)


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


class LabelHead(State):
    """The constrained head: a prefix trie over each label's token ids, then EOS (`release=False`: the completion
    ends here) or nothing (`release=True`: the next state, e.g. the reply, follows). `lookups`: per sequence, ids
    that follow that head (needs `release`), forced like its last tokens. `labels`, `label_prefix`, `suffix`,
    `lookup` are its text form (`regex`)."""

    name: ClassVar[str] = "head"

    def __init__(self, sequences: Sequence[Sequence[int]], eos_token_id: int | None, release: bool = False,
                 lookups: Sequence[Sequence[int]] | None = None, *, labels: Sequence[str] = (),
                 label_prefix: str = "", suffix: str = "", lookup: Callable[[str], str] | None = None):
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
        self.labels, self.label_prefix, self.suffix, self.lookup = tuple(labels), label_prefix, suffix, lookup
        self.root: dict[int, dict] = {}
        for seq in sequences:
            node = self.root
            for tok in [*seq] if release else [*seq, eos_token_id]:
                node = node.setdefault(int(tok), {})
        self._children: dict[tuple[int, ...], list[int] | None] = {}

    @classmethod
    def from_labels(cls, tokenizer: Any, labels: Sequence[str], prefill: str = "", suffix: str = "",
                    eos_token_id: int | None = None, release: bool = False, after_analysis: bool = False,
                    label_prefix: str = "", lookup: Callable[[str], str] | None = None) -> LabelHead:
        """After an analysis block (`after_analysis`) the paths are ``label_prefix + label + suffix`` tokenized on
        their own (they follow the block, not the prefill). `lookup(label) -> text`: context appended after each
        head (tokenized on its own), which needs `release`. `tokenizer` None: the text form only."""
        text = dict(labels=labels, label_prefix=label_prefix, suffix=suffix, lookup=lookup)
        if tokenizer is None:
            if not labels:
                raise ValueError("constrained decoding needs at least one label")
            return cls([], eos_token_id, release, **text)
        eos = tokenizer.eos_token_id if eos_token_id is None else eos_token_id
        if eos is None:
            raise ValueError("the tokenizer has no eos_token_id; pass eos_token_id")
        if after_analysis:
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
        return cls(seqs, int(eos), release, lookups, **text)

    @classmethod
    def from_recipe(cls, tokenizer: Any, labels: Sequence[str], decoding: DecodingConfig) -> LabelHead:
        return cls.from_labels(tokenizer, labels, decoding.prefill, decoding.label_suffix, release=decoding.free_reply,
                               after_analysis=bool(decoding.analysis_max_tokens),
                               label_prefix=decoding.label_prefix, lookup=lookup_text(labels, decoding))

    def end(self, ids: Sequence[int]) -> int | None:
        node = self.root
        for k, tok in enumerate(ids):
            if not node:
                return k
            node = node.get(int(tok))
            if node is None:  # left the trie
                return None
        return None if node else len(ids)

    def children(self, ids: Sequence[int]) -> list[int] | None:
        """Token ids allowed after `ids`; [] at a path's end; None when `ids` left the trie or went past its end."""
        key = tuple(int(t) for t in ids)
        if key not in self._children:
            node: dict | None = self.root
            for tok in key:
                node = node.get(tok) if node is not None else None
                if node is None:
                    break
            self._children[key] = None if node is None else list(node)
        return self._children[key]

    def step(self, ids: Sequence[int]) -> Step:
        nxt = self.children(ids)
        return Step(self.name, allowed=tuple(nxt) if nxt else ())

    def regex(self) -> str:
        return _head_regex(self.labels, self.label_prefix, self.suffix, self.lookup)

    def lookup_span(self, ids: Sequence[int]) -> tuple[int, int] | None:
        """(start, end) of the looked-up ids in `ids` (end clipped to its length); None without a lookup or before
        the head completed."""
        if not self.lookup_lengths:
            return None
        longest = max(len(h) for h in self.lookup_lengths)
        for k in range(1, min(len(ids), longest) + 1):
            extra = self.lookup_lengths.get(tuple(int(t) for t in ids[:k]))
            if extra is not None:
                return k, min(k + extra, len(ids))
        return None


class FreeReply(State):
    """The free reply after a released head: any token; no EOS (nor stop) before `min_tokens` reply tokens, only
    EOS once `max_tokens` exist (0: up to the generation limit); a `stop_ids` token counts as EOS. `stop`: the stop
    text (a one-character stop stays out of the regex's reply)."""

    name: ClassVar[str] = "reply"

    def __init__(self, eos_token_id: int | None, max_tokens: int = 0, min_tokens: int = 0,
                 stop_ids: Sequence[int] = (), *, stop: str = ""):
        self.eos_token_id = eos_token_id
        self.max_tokens, self.min_tokens = max_tokens, min_tokens
        self.stop_ids = frozenset(int(t) for t in stop_ids)
        self.stop = stop
        self._stops = tuple(sorted(self.stop_ids))  # built once, not per row per token
        self._short = Step(self.name, no_eos=True, banned=self._stops)
        self._free = Step(self.name, stops=self._stops)
        self._capped = Step(self.name, forced=eos_token_id)

    @classmethod
    def from_recipe(cls, tokenizer: Any, labels: Sequence[str], decoding: DecodingConfig) -> FreeReply | None:
        if not decoding.free_reply:
            return None
        if tokenizer is None:
            return cls(None, decoding.reply_max_tokens, decoding.reply_min_tokens, stop=decoding.reply_stop)
        stops = stop_ids(tokenizer, decoding.reply_stop) if decoding.reply_stop else ()
        return cls(tokenizer.eos_token_id, decoding.reply_max_tokens, decoding.reply_min_tokens, stops,
                   stop=decoding.reply_stop)

    def end(self, ids: Sequence[int]) -> int | None:
        return None  # EOS (or the generation limit) ends the row

    def step(self, ids: Sequence[int]) -> Step:
        if self.max_tokens and len(ids) >= self.max_tokens:
            return self._capped
        return self._short if len(ids) < self.min_tokens else self._free

    def is_forced(self, ids: Sequence[int]) -> bool:
        return False  # reply tokens are the policy's, the EOS the cap forces included (it stays in the loss)

    def regex(self) -> str:
        # the token budget is not expressible in a regex: the server's token limit ends the reply
        return _reply_regex(0, self.stop if len(self.stop) == 1 else "")


def stop_ids(tokenizer: Any, text: str) -> list[int]:
    """Every non-special token id whose decoded text contains `text` (a stop string as a set of tokens: a sampled one
    ends the reply). A stop split over several tokens (``"\n\n"`` written as two ``"\n"``) is not caught: prefer a
    stop of one character."""
    if not text:
        raise ValueError("a stop string must be non-empty")
    return list(_stop_ids(tokenizer, text))


@functools.lru_cache(maxsize=8)
def _stop_ids(tokenizer: Any, text: str) -> tuple[int, ...]:
    """The vocabulary scan of `stop_ids`, once per tokenizer and string (every constraint built asks again)."""
    special = set(tokenizer.all_special_ids)  # EOS and friends end or frame a turn already
    return tuple(i for i in range(len(tokenizer)) if i not in special and text in tokenizer.decode([i]))


def lookup_text(labels: Sequence[str], decoding: DecodingConfig) -> Callable[[str], str] | None:
    """`label -> text` shown after the head (`decoding.lookup`), or None when off. Every label needs a text (or the
    file's `default:`), checked here so a missing article is a recipe error, not a silent empty lookup."""
    if not decoding.lookup:
        return None
    from rlft.errors import RecipeError
    from rlft.judge.policies import Guidelines

    try:
        table = Guidelines.from_params(None, decoding.lookup)
    except Exception as exc:  # a missing or malformed file: one line naming it
        raise RecipeError(f"decoding.lookup: {exc}") from None
    texts = {str(label): table.for_key(label) for label in labels}
    missing = [label for label, text in texts.items() if text is None]
    if missing:
        raise RecipeError(f"decoding.lookup: {decoding.lookup} has no text for label '{missing[0]}' (and no "
                          f"default:)")
    return lambda label: decoding.lookup_template.replace("{article}", texts[label])


def label_regex(labels: Sequence[str], prefill: str = "", suffix: str = "", free_tail: bool = False,
                tail_max_chars: int = 0, analysis_close: str = "", analysis_max_chars: int = 0,
                label_prefix: str = "", after_label: Callable[[str], str] | None = None,
                tail_without: str = "") -> str:
    """The label constraint as a regular expression over the completion text (after the prefill, if given): the
    states' own regex pieces, from arguments instead of a recipe.

    `free_tail` (a reply after the head): any text, at most `tail_max_chars` characters (0: unbounded; the server's
    token limit ends it). `analysis_close` (an analysis block first): at most `analysis_max_chars` characters without
    ``<`` (so the first ``<`` starts the close; structured-output engines have no look-ahead to say "anything but
    the close"), the close, then `label_prefix` + the label. `after_label(label) -> text`: text that must follow
    that label's suffix (`decoding.lookup`). `tail_without`: a character the free tail never contains (a
    one-character `decoding.reply_stop`).

    >>> label_regex(["track_order", "cancel_order"], suffix="</intent>")
    '(?:cancel_order|track_order)</intent>'
    >>> label_regex(["track_order"], suffix="</intent>", free_tail=True)
    '(?:track_order)</intent>[\\s\\S]*'
    >>> label_regex(["track_order"], suffix="</intent>", analysis_close="</analysis>", analysis_max_chars=80,
    ...             label_prefix="<intent>")
    '[^<]{0,80}</analysis><intent>(?:track_order)</intent>'
    """
    head = _head_regex(labels, label_prefix, suffix, after_label)
    block = _analysis_regex(analysis_close, analysis_max_chars) if analysis_close else ""
    return re.escape(prefill) + block + head + (_reply_regex(tail_max_chars, tail_without) if free_tail else "")
