"""A toy decoding state in one file (docs/extending.md, "A decoding mode or state: the one module where it goes"):
after the label head and before the free reply, every completion states its confidence, `" Confidence:"` (forced:
the model makes no decision there) then one digit from 1 to 5 (the model's choice). Importing this module
registers it; no generate loop and no other module knows its name. It needs the reply (`decoding.free_reply`),
so the head releases into it."""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from rlft.decoding.constraint import register_state
from rlft.decoding.states import State, Step

PREFIX, DIGITS = " Confidence:", "12345"


class Confidence(State):
    """`prefix_ids` forced one by one, then one of `digit_ids`; `tokenizer` None at build: its text form only."""

    name = "confidence"

    def __init__(self, prefix_ids: Sequence[int] = (), digit_ids: Sequence[int] = ()):
        self.prefix_ids, self.digit_ids = tuple(prefix_ids), tuple(digit_ids)

    def end(self, ids: Sequence[int]) -> int | None:
        n = len(self.prefix_ids)
        done = len(ids) > n and tuple(ids[:n]) == self.prefix_ids and ids[n] in self.digit_ids
        return n + 1 if done else None

    def step(self, ids: Sequence[int]) -> Step:
        n = len(ids)
        if tuple(ids) != self.prefix_ids[:n]:
            return Step(self.name, allowed=())  # left the constraint (e.g. a server's text): nothing more
        return Step(self.name, allowed=(self.prefix_ids[n],) if n < len(self.prefix_ids) else self.digit_ids)

    def regex(self) -> str:
        return re.escape(PREFIX) + f"[{DIGITS[0]}-{DIGITS[-1]}]"


def build(tokenizer: Any, labels: Sequence[str], decoding: Any) -> Confidence | None:
    if not decoding.free_reply:
        return None
    if tokenizer is None:
        return Confidence()
    digits = [tokenizer.encode(d, add_special_tokens=False) for d in DIGITS]
    if any(len(d) != 1 for d in digits):
        raise ValueError("the confidence state needs one token per digit")
    return Confidence(tokenizer.encode(PREFIX, add_special_tokens=False), [d[0] for d in digits])


register_state(Confidence.name, build, after="head")
