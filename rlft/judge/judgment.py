"""One judgment per sample: render, ask (k votes, one or both A/B orders), parse, aggregate, cache, account.

A `Judge` is backend-agnostic (any `ChatClient`) and reward-agnostic: it returns a `Judgment` per sample with a
status (`ok` | `parse_error` | `timeout` | `api_error`), a value in [0, 1] or None, the votes and their agreement,
and the judge's rationale. Identical samples in one call are judged once. Only `ok` replies are cached. At most
`max_chars` characters of each untrusted field are sent (the rest is replaced by a note; `Judgment.truncated`).

Modes:

* `binary` — labels with values, e.g. {Accurate: 1, Inaccurate: 0}; k votes -> majority (ties: mean).
* `score`  — a whole number on `scale` (default 1..10) mapped to [0, 1]; k votes -> mean.
* `pairwise` — the completion against a reference answer, labels A / B (/ tie); `order="both"` asks with the
  completion as A and as B and averages (cancels position bias), `order="random"` picks one order per sample
  from a seeded hash (stable across runs, so the cache still hits). Value = probability the completion wins.

Not here: which samples to judge or what a failure does to the reward (`rlft.rewards.judge`).
"""

from __future__ import annotations

import asyncio
import hashlib
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from rlft.judge.budget import Budget, JudgeBudgetExceeded
from rlft.judge.cache import JudgeCache, cache_key
from rlft.judge.client import ChatClient, JudgeCallError
from rlft.judge.parsing import OK, PARSE_ERROR, Parsed, VerdictParser
from rlft.judge.prompt_templates import JudgeTemplate
from rlft.judge.untrusted import DEFAULT_MAX_CHARS, clip

MODES = ("binary", "score", "pairwise")
STATUSES = (OK, PARSE_ERROR, "timeout", "api_error")
STOPPED = "stopped"  # not judged because a budget was spent (soft limits: the run is being stopped)
DEFAULT_LABELS = {"binary": {"Accurate": 1.0, "Inaccurate": 0.0}, "pairwise": {"A": 1.0, "B": 0.0, "tie": 0.5}}


@dataclass(frozen=True)
class Sample:
    """What is graded: the customer's message, the completion, the guideline, and a reference (pairwise)."""

    prompt: str
    completion: str
    guideline: str
    reference: str | None = None


@dataclass
class Judgment:
    status: str
    value: float | None = None
    label: str | None = None
    votes: list[str | None] = field(default_factory=list)
    agreement: float | None = None
    rationale: str = ""
    cached: bool = False
    detail: str = ""
    truncated: bool = False  # a field was cut to max_chars before it was sent


@dataclass
class _Vote:
    parsed: Parsed
    cached: bool
    detail: str = ""


class Judge:
    """See module docstring. `await judge.judge_many(samples)` -> list[Judgment] (same order)."""

    def __init__(self, client: ChatClient, mode: str = "binary", template: str | None = None,
                 labels: dict[str, float] | None = None, scale: tuple[float, float] = (1, 10), votes: int = 1,
                 aggregate: str | None = None, temperature: float = 0.0, vote_temperature: float = 0.7,
                 max_tokens: int = 256, cache: JudgeCache | None = None, budget: Budget | None = None,
                 order: str = "both", seed: int = 0, min_votes: int | None = None, marker: str = "VERDICT",
                 max_chars: int | None = DEFAULT_MAX_CHARS):
        if mode not in MODES:
            raise ValueError(f"mode must be one of {', '.join(MODES)}, got {mode!r}")
        if votes < 1:
            raise ValueError("votes must be >= 1")
        if order not in ("both", "random"):
            raise ValueError(f"order must be 'both' or 'random', got {order!r}")
        self.client, self.mode, self.votes = client, mode, int(votes)
        self.aggregate = aggregate or ("mean" if mode == "score" else "majority")
        if self.aggregate not in ("majority", "mean"):
            raise ValueError(f"aggregate must be 'majority' or 'mean', got {self.aggregate!r}")
        self.template = JudgeTemplate.load(template or mode, mode)
        if mode == "score":
            lo, hi = float(scale[0]), float(scale[1])
            if not hi > lo:
                raise ValueError(f"scale must be (low, high) with high > low, got {scale}")
            self.scale: tuple[float, float] | None = (lo, hi)
            self.parser = VerdictParser(scale=self.scale, marker=marker)
            self.plain = {"scale_min": f"{lo:g}", "scale_max": f"{hi:g}", "labels": ""}
        else:
            self.scale = None
            chosen = {str(k): float(v) for k, v in (labels or DEFAULT_LABELS[mode]).items()}
            if mode == "pairwise" and not {"a", "b"} <= {k.lower() for k in chosen}:
                raise ValueError("pairwise labels must include A and B")
            if any(not 0.0 <= v <= 1.0 for v in chosen.values()):
                raise ValueError("label values must be within [0, 1]")
            self.labels = chosen
            self.parser = VerdictParser(labels=chosen, marker=marker)
            self.plain = {"labels": " | ".join(chosen), "scale_min": "", "scale_max": ""}
        self.temperature, self.vote_temperature = float(temperature), float(vote_temperature)
        self.max_tokens, self.cache, self.budget = int(max_tokens), cache, budget or Budget()
        self.order, self.seed, self.marker = order, int(seed), marker
        self.max_chars = max_chars  # per untrusted field (customer message, completion, reference) sent to the judge
        self.min_votes = int(min_votes) if min_votes is not None else self.votes // 2 + 1
        if not 1 <= self.min_votes <= self.votes:
            raise ValueError("min_votes must be between 1 and votes")
        self.counts: Counter = Counter()  # judgments by status, over the judge's lifetime
        # soft_limits: a spent budget makes the remaining requests `stopped` (abstain) instead of raising, and is
        # kept in `limit_error` for the caller to end the run gracefully (see rlft.rewards.judge, on_limit: stop)
        self.soft_limits = False
        self.limit_error: Exception | None = None

    # ---- public -------------------------------------------------------------------------------------------
    async def judge_many(self, samples: list[Sample], attempt: int = 0) -> list[Judgment]:
        unique: dict[Sample, int] = {}
        for s in samples:
            unique.setdefault(s, len(unique))
        async with self.client.session():
            results = await asyncio.gather(*(self.judge_one(s, attempt) for s in unique))
        for j in results:
            self.counts[j.status] += 1
        return [results[unique[s]] for s in samples]

    async def judge_one(self, sample: Sample, attempt: int = 0) -> Judgment:
        calls = []
        for swap in self._orders(sample):
            messages = self._messages(sample, swap)
            for v in range(self.votes):
                calls.append((messages, v, swap))
        votes = await asyncio.gather(*(self._vote(m, v, attempt) for m, v, _ in calls))
        values, labels, failures = [], [], []
        rationale = ""
        for (_, _, swap), vote in zip(calls, votes, strict=True):
            p = vote.parsed
            labels.append(p.label)
            if p.status != OK:
                failures.append((p.status, vote.detail))
                continue
            values.append(1.0 - p.value if swap else p.value)
            rationale = rationale or p.rationale
        cached = all(v.cached for v in votes)
        truncated = any(clip(t or "", self.max_chars)[1] for t in (sample.prompt, sample.completion, sample.reference))
        if len(values) < self.min_votes * len(self._orders(sample)):
            status, detail = Counter(failures).most_common(1)[0][0]
            return Judgment(status, None, None, labels, None, rationale, cached, detail, truncated)
        value, agreement = self._combine(values)
        if self.mode == "pairwise":  # raw labels are order-relative; say who won instead
            label = "completion" if value > 0.5 else "reference" if value < 0.5 else "tie"
        else:
            label = Counter(lab for lab in labels if lab is not None).most_common(1)[0][0]
        return Judgment(OK, value, label, labels, agreement, rationale, cached, truncated=truncated)

    # ---- internals ----------------------------------------------------------------------------------------
    def _orders(self, sample: Sample) -> list[bool]:
        """False: completion is A (or the only response); True: completion is B."""
        if self.mode != "pairwise":
            return [False]
        if self.order == "both":
            return [False, True]
        digest = hashlib.sha256(f"{self.seed}\0{sample.prompt}\0{sample.completion}".encode()).digest()
        return [bool(digest[0] & 1)]

    def _messages(self, sample: Sample, swap: bool) -> list[dict[str, str]]:
        # the cap on what is sent: a 200,000-character completion costs the judge at most max_chars of it
        prompt, completion, reference = (clip(t, self.max_chars)[0] for t in
                                         (sample.prompt, sample.completion, sample.reference or ""))
        data = {"policy": sample.guideline, "prompt": prompt, "response": completion, "reference": reference}
        if self.mode == "pairwise":
            a, b = (reference, completion) if swap else (completion, reference)
            data.update(response_a=a, response_b=b)
        return self.template.render(data, self.plain, self.marker)

    async def _vote(self, messages: list[dict[str, str]], vote: int, attempt: int) -> _Vote:
        sampling = self.votes > 1 or attempt > 0
        temperature = self.vote_temperature if sampling and self.temperature == 0 else self.temperature
        seed = self.seed + vote + 1000 * attempt if sampling else None
        key = None
        if self.cache is not None:
            key = cache_key({"judge": self.client.identity(), "messages": messages, "temperature": temperature,
                             "max_tokens": self.max_tokens, "seed": seed, "vote": vote})
            hit = self.cache.get(key)
            if hit is not None:
                self.budget.charge(hit[1], hit[2], cached=True)
                return _Vote(self.parser.parse(hit[0]), True)
        if self.limit_error is not None:  # soft limit already hit: no more requests
            return _Vote(Parsed(STOPPED), False, str(self.limit_error))
        try:
            self.budget.check()
        except JudgeBudgetExceeded as exc:
            if not self.soft_limits:
                raise
            self.limit_error = exc
            return _Vote(Parsed(STOPPED), False, str(exc))
        try:
            reply = await self.client.complete(messages, temperature=temperature, max_tokens=self.max_tokens,
                                               seed=seed)
        except JudgeCallError as exc:
            return _Vote(Parsed(exc.status), False, exc.detail)
        self.budget.charge(reply.prompt_tokens, reply.completion_tokens)
        parsed = self.parser.parse(reply.text)
        if parsed.status == OK and key is not None:
            self.cache.put(key, reply.text, reply.prompt_tokens, reply.completion_tokens)
        detail = "" if parsed.status == OK else f"unparsable reply: {reply.text[-120:]!r}"
        return _Vote(parsed, False, detail)

    def _combine(self, values: list[float]) -> tuple[float, float]:
        """(aggregate value, agreement = share of votes equal to the most common one)."""
        top = Counter(round(v, 6) for v in values).most_common()
        agreement = top[0][1] / len(values)
        if self.aggregate == "mean" or (len(top) > 1 and top[0][1] == top[1][1]):
            return sum(values) / len(values), agreement
        return top[0][0], agreement

    def identity(self) -> dict[str, Any]:
        return {"client": self.client.identity(), "mode": self.mode, "template": self.template.name}
