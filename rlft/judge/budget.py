"""Token and cost accounting for judge calls, and the budget that stops a run when it is spent.

Costs are computed from the token usage the endpoint reports and the prices the recipe gives (USD per million
input / output tokens); a local or self-hosted judge is free unless you set prices. Cache hits cost nothing and
are counted separately. The budget is checked before every request: once spent, the next request raises
`JudgeBudgetExceeded` (a `UserError`: the CLI prints one line and exits 2; the judge cache is already on disk,
so a resumed run does not pay again for what was judged). Requests already in flight finish, so the overshoot is
at most `max_concurrency` requests.

Not here: retries and failures (`client`), per-sample statuses (`judge`).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field

from rlft.errors import RewardError


class JudgeBudgetExceeded(RewardError):
    """The judge spent its token or cost budget."""


@dataclass
class Usage:
    """Running totals; `requests` are calls that reached the endpoint, `cache_hits` are answered from the cache."""

    requests: int = 0
    cache_hits: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost_usd: float = 0.0

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens


@dataclass
class Budget:
    """Limits (None = unlimited) and prices; `charge` adds a reply's usage, `check` raises once spent."""

    budget_usd: float | None = None  # named like the judge's recipe params, which the messages tell users to raise
    budget_tokens: int | None = None
    price_input_per_mtok: float = 0.0
    price_output_per_mtok: float = 0.0
    usage: Usage = field(default_factory=Usage)

    def __post_init__(self) -> None:
        self._lock = threading.Lock()
        for name in ("budget_usd", "budget_tokens", "price_input_per_mtok", "price_output_per_mtok"):
            value = getattr(self, name)
            if value is not None and value < 0:
                raise ValueError(f"{name} must be >= 0, got {value}")

    def charge(self, prompt_tokens: int, completion_tokens: int, cached: bool = False) -> float:
        """Record one reply; returns its cost (0 for cache hits)."""
        with self._lock:
            if cached:
                self.usage.cache_hits += 1
                return 0.0
            cost = (prompt_tokens * self.price_input_per_mtok + completion_tokens * self.price_output_per_mtok) / 1e6
            self.usage.requests += 1
            self.usage.prompt_tokens += prompt_tokens
            self.usage.completion_tokens += completion_tokens
            self.usage.cost_usd += cost
            return cost

    def check(self) -> None:
        u = self.usage
        if self.budget_usd is not None and u.cost_usd >= self.budget_usd:
            raise JudgeBudgetExceeded(
                f"judge: cost budget spent (${u.cost_usd:.4f} of budget_usd={self.budget_usd}) after "
                f"{u.requests} requests; raise judge params.budget_usd or resume later (cached judgments are kept)"
            )
        if self.budget_tokens is not None and u.total_tokens >= self.budget_tokens:
            raise JudgeBudgetExceeded(
                f"judge: token budget spent ({u.total_tokens} of budget_tokens={self.budget_tokens}) after "
                f"{u.requests} requests; raise judge params.budget_tokens or resume later (cached judgments are kept)"
            )

    def __getstate__(self) -> dict:
        state = dict(self.__dict__)
        state.pop("_lock", None)
        return state

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self._lock = threading.Lock()
