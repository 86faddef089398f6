"""The decoding constraint: one object, built once from a recipe's `decoding:` section, the tokenizer and the label
set, that every generate loop asks what a row may emit next.

A completion is a run of states, each a stretch of tokens with a rule of its own (the prefill is part of the
prompt, before all of them):

    analysis (optional) -> head: label + suffix [+ looked-up text] -> reply (optional)

`Analysis`, `LabelHead` (with the head-triggered lookup) and `FreeReply`, and the `Step` each gives, are in
`rlft.decoding.states`; this module runs them in order.

`Constraint.from_recipe(tokenizer, labels, decoding)` builds the states the section turns on (the `STATES`
registry, in order) and is what each consumer uses:

- `step(ids) -> Step`: the rule for the token after a row's completion ids (the one state machine);
- `processor(prompt_length)`: the same as a `transformers` logits processor (HF ``generate`` in GRPO rollouts and
  PPO, `rlft.decoding.shared_prefix` sampling);
- `rlft.decoding.generation.generate_ids(..., trie=constraint)`: the chunked loop (evaluation, labelling, lookup rollouts)
  reads `step` too, and appends the tokens a step forces without model calls;
- `regex()`: the same constraint as a regular expression over the completion text, for structured outputs (TRL's
  ``vllm_structured_outputs_regex``, `rlft export`'s serving config); built without a tokenizer too;
- `is_forced`, `tail`, `lookup_span` / `strip_lookup` / `lookup_mask`: what training and reports ask about a
  completion.

A new decoding state is one `State` subclass (`end`, `step`, `regex`) and a builder registered in `STATES` with
`register_state`: every loop then follows it (docs/extending.md; tests/toy_decoding_state.py is one).
This module only constrains decoding: prompt ids live in `rlft.decoding.prompting`, the loops in `rlft.decoding.generation`,
`rlft.decoding.shared_prefix`, `rlft.grpo.rollout` and `rlft.ppo.sampling`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from rlft.decoding.states import COMPLETE, Analysis, FreeReply, LabelHead, State, Step

if TYPE_CHECKING:
    import torch

    from rlft.recipe.sections import DecodingConfig


Builder = Callable[[Any, Sequence[str], "DecodingConfig"], "State | None"]


STATES: list[tuple[str, Builder]] = [("analysis", Analysis.from_recipe), ("head", LabelHead.from_recipe),
                                     ("reply", FreeReply.from_recipe)]


def register_state(name: str, build: Builder, *, before: str | None = None, after: str | None = None) -> None:
    """Add a decoding state: `build(tokenizer, labels, decoding) -> State | None` (None: off for this recipe;
    `tokenizer` None: its text form only), placed before / after a registered state (default: last)."""
    unregister_state(name)
    names = [n for n, _ in STATES]
    at = len(STATES)
    if before is not None:
        at = names.index(before)
    elif after is not None:
        at = names.index(after) + 1
    STATES.insert(at, (name, build))


def unregister_state(name: str) -> None:
    STATES[:] = [(n, b) for n, b in STATES if n != name]


class Constraint:
    """The decoding constraint: a completion's states in order (`states`), asked through `step`, `processor` and
    `regex`. `eos_token_id` ends a completion (the tokenizer's); `pad_token_id` is what a batch pads a finished row
    with (None: EOS)."""

    def __init__(self, states: Sequence[State], eos_token_id: int | None, pad_token_id: int | None = None):
        self.states = tuple(states)
        self.eos_token_id = eos_token_id
        self.pad_token_id = pad_token_id

    @classmethod
    def from_recipe(cls, tokenizer: Any, labels: Sequence[str], decoding: DecodingConfig) -> Constraint:
        """The constraint of `decoding.constrain_labels` (the caller checks that it is on). `tokenizer` None: its
        text form only (`regex`, for a server that tokenizes itself)."""
        if not labels and tokenizer is not None:  # (the text form says "at least one label", as label_regex)
            raise ValueError("decoding.constrain_labels needs the label set (data.labels or a label column)")
        states = [s for _, build in STATES if (s := build(tokenizer, labels, decoding)) is not None]
        if tokenizer is None:
            return cls(states, None)
        return cls(states, tokenizer.eos_token_id, tokenizer.pad_token_id)

    # ----- the state machine -----

    def locate(self, ids: Sequence[int], since: tuple[int, int] = (0, 0)) -> tuple[int, int]:
        """(index of the state the row is in, where that state began in `ids`); the index is len(states) once the
        constraint is complete. `since`: an earlier answer for a prefix of `ids` (state boundaries never move as a
        row grows), so a loop that keeps it per row asks only about the current state."""
        k, start = since
        while k < len(self.states):
            n = self.states[k].end(ids[start:])
            if n is None:
                break
            k, start = k + 1, start + n
        return k, start

    def step(self, ids: Sequence[int], at: tuple[int, int] | None = None) -> Step:
        """The rule for the token after completion ids `ids` (`at`: their `locate`, when known)."""
        k, start = self.locate(ids) if at is None else at
        return self.states[k].step(ids[start:]) if k < len(self.states) else COMPLETE

    def is_forced(self, ids: Sequence[int]) -> bool:
        """True when exactly one token can follow `ids` (the model makes no decision there)."""
        k, start = self.locate(ids)
        return k < len(self.states) and self.states[k].is_forced(ids[start:])

    def processor(self, prompt_length: int = 0, pad_token_id: int | None = None) -> ConstraintProcessor:
        """The constraint as a `transformers` logits processor over rows whose first `prompt_length` ids are the
        prompt."""
        return ConstraintProcessor(self, prompt_length, self.pad_token_id if pad_token_id is None else pad_token_id)

    def regex(self) -> str:
        """The constraint as a regular expression over the completion text (after the prefill)."""
        return "".join(s.regex() for s in self.states)

    # ----- what training and reports ask about the built-in states -----

    def _find(self, kind: type) -> tuple[Any, int | None]:
        """(the first state of type `kind` or None, the index of that state)."""
        return next(((s, k) for k, s in enumerate(self.states) if isinstance(s, kind)), (None, None))

    def _start_of(self, k: int, ids: Sequence[int]) -> int | None:
        """Where state `k` begins in `ids`; None while an earlier state goes on."""
        start = 0
        for s in self.states[:k]:
            n = s.end(ids[start:])
            if n is None:
                return None
            start += n
        return start

    @property
    def analysis(self) -> Analysis | None:
        return self._find(Analysis)[0]

    @property
    def head(self) -> LabelHead | None:
        return self._find(LabelHead)[0]

    @property
    def reply(self) -> FreeReply | None:
        return self._find(FreeReply)[0]

    @property
    def root(self) -> dict[int, dict]:
        return self.head.root

    @property
    def release(self) -> bool:
        return self.reply is not None

    @property
    def reply_max_tokens(self) -> int:
        return self.reply.max_tokens if self.reply is not None else 0

    @property
    def reply_min_tokens(self) -> int:
        return self.reply.min_tokens if self.reply is not None else 0

    @property
    def reply_stop_ids(self) -> frozenset[int]:
        return self.reply.stop_ids if self.reply is not None else frozenset()

    @property
    def lookup_lengths(self) -> dict[tuple[int, ...], int]:
        return self.head.lookup_lengths if self.head is not None else {}

    def analysis_end(self, prefix: Sequence[int]) -> int | None:
        """Tokens of `prefix` up to and including the one that completed the analysis close (0 without an analysis
        block); None while `prefix` is still inside the block."""
        a, k = self._find(Analysis)
        if a is None:
            return 0
        start = self._start_of(k, prefix)
        if start is None:
            return None
        end = a.end(prefix[start:])
        return None if end is None else start + end

    def analysis_forced(self, prefix: Sequence[int]) -> int | None:
        """Inside the analysis block: the close's next token id once the budget is spent, else None."""
        return self.analysis.forced(prefix)

    def allowed(self, prefix: Sequence[int]) -> list[int] | None:
        """The head's allowed ids after `prefix`; [] at a path's end; None if `prefix` left the trie, went past a
        released head (see `tail`) or is still before the head."""
        head, k = self._find(LabelHead)
        start = self._start_of(k, prefix)
        return None if start is None else head.children(prefix[start:])

    def tail(self, prefix: Sequence[int]) -> int | None:
        """Reply tokens after a completed head in `prefix`; None before the reply (inside the head, without a
        reply, or when `prefix` left the trie)."""
        reply, k = self._find(FreeReply)
        if reply is None:
            return None
        at, start = self.locate(prefix)
        return len(prefix) - start if at == k else None

    def lookup_span(self, ids: Sequence[int]) -> tuple[int, int] | None:
        """(start, end) of the looked-up ids in a completion (end clipped to its length); None without a lookup or
        before the head completed."""
        head, k = self._find(LabelHead)
        if head is None or not head.lookup_lengths:
            return None
        start = self._start_of(k, ids)
        if start is None:
            return None
        span = head.lookup_span(ids[start:])
        return None if span is None else (start + span[0], start + span[1])

    def strip_lookup(self, ids: Sequence[int]) -> list[int]:
        """The ids the model chose: `ids` without its looked-up span (what rewards and reports score)."""
        span = self.lookup_span(ids)
        return list(ids) if span is None else [*ids[:span[0]], *ids[span[1]:]]

    def lookup_mask(self, ids: Sequence[int]) -> list[int]:
        """1 per token the model chose, 0 per looked-up token (GRPO's ``env_mask``)."""
        span = self.lookup_span(ids)
        return [0 if span is not None and span[0] <= k < span[1] else 1 for k in range(len(ids))]


class ConstraintProcessor:
    """`transformers` logits processor applying a `Constraint` to the ids after `prompt_length` (`Step` as a mask).

    Rows that finished (EOS emitted) or left the constraint may only emit `pad_token_id`, which `generate` ignores;
    `stops` are folded into EOS (`fold_stops_into_eos`)."""

    def __init__(self, constraint: Constraint, prompt_length: int, pad_token_id: int | None = None):
        self.constraint = constraint
        self.prompt_length = prompt_length
        self.pad_token_id = constraint.eos_token_id if pad_token_id is None else pad_token_id

    @property
    def trie(self) -> Constraint:  # the name `rlft.evaluate` and older callers read
        return self.constraint

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        import torch

        c = self.constraint
        mask = torch.full_like(scores, float("-inf"))
        cloned = False
        for row, ids in enumerate(input_ids[:, self.prompt_length:].tolist()):
            s = c.step(ids)
            if s.allowed is not None:
                mask[row, list(s.allowed) or [self.pad_token_id]] = 0.0
            elif s.forced is not None:
                mask[row, s.forced] = 0.0
            else:
                mask[row] = 0.0
                banned = [c.eos_token_id, *s.banned] if s.no_eos else list(s.banned)
                if banned:
                    mask[row, banned] = float("-inf")
                elif s.stops:
                    if not cloned:
                        scores, cloned = scores.clone(), True
                    scores[row] = fold_stops_into_eos(scores[row], s.stops, c.eos_token_id)
        return scores + mask


def fold_stops_into_eos(scores: torch.Tensor, stop: Sequence[int], eos: int) -> torch.Tensor:
    """Logits where picking a stop token and picking EOS are one event: EOS gets their summed probability
    (log-sum-exp) and the stop tokens none. Sampling from the result equals sampling then mapping a stop to EOS."""
    import torch

    ids = torch.tensor(sorted({*stop, eos}), device=scores.device)
    scores = scores.clone()
    scores[..., eos] = torch.logsumexp(scores[..., ids], dim=-1)
    scores[..., [i for i in sorted(stop) if i != eos]] = float("-inf")
    return scores
