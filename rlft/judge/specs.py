"""The judge reward's settings as small typed specs, and the flat recipe `params:` keys that fill them.

A recipe writes the judge's parameters flat (`params: {model: ..., budget_usd: 5, min_words: 3}`, see
recipes/policy_grpo.yaml); code can build the same thing from typed parts::

    JudgeSpec(client=ClientSpec(model="gpt-4o-mini"), budget=BudgetSpec(budget_usd=5.0))
    JudgeSpec.from_params(model="gpt-4o-mini", budget_usd=5.0)          # the same spec

Each spec is a frozen dataclass that validates its own values (one-line `ValueError`s naming the key, what was
given and what is allowed; the reward loader turns them into recipe errors). Every flat key belongs to exactly
one spec; `FLAT_KEYS` maps key -> spec. Defaults are the safe ones (docs/judge.md#threat-model): master-key and
padded replies never reach the judge (`min_words` 3, `max_words` 400), at most `max_chars` characters of each
untrusted field are sent, and regex screening has a per-completion timeout and a per-batch time budget.

Not here: what the settings do (`rlft.rewards.judge`, `rlft.judge.judgment`).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields
from typing import Any

from rlft.errors import did_you_mean
from rlft.judge.untrusted import DEFAULT_MAX_CHARS

DEFAULT_CACHE = "~/.cache/rlft/judge_cache.sqlite"
MAX_TIMEOUT_S = 600.0  # one judge call; longer is a typo (1e9) or a hung server nobody notices
MAX_REGEX_TIMEOUT_S = 10.0  # one regex on one completion
MAX_BATCH_BUDGET_S = 300.0  # all screening regexes of one reward call
FAILURE_POLICIES = ("abstain", "retry", "drop_group")
LIMIT_POLICIES = ("stop", "finish", "raise")


def _seconds(name: str, value: Any, maximum: float, allow_zero: bool = False) -> None:
    ok = (isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
          and (value >= 0 if allow_zero else value > 0) and value <= maximum)
    if not ok:
        low = "[0" if allow_zero else "(0"
        raise ValueError(f"{name} must be a number of seconds in {low}, {maximum:g}], got {value!r}")


def _count(name: str, value: Any, minimum: int, optional: bool = False) -> None:
    if optional and value is None:
        return
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}{' or null' if optional else ''}, got {value!r}")


def _number(name: str, value: Any, minimum: float | None = None) -> None:
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    if not ok or (minimum is not None and value < minimum):
        raise ValueError(f"{name} must be a finite number{f' >= {minimum:g}' if minimum is not None else ''}, "
                         f"got {value!r}")


def _url(name: str, value: Any) -> None:
    from urllib.parse import urlsplit

    parts = urlsplit(value) if isinstance(value, str) else None
    if parts is None or parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"{name} must be an http(s) URL such as http://127.0.0.1:8000/v1, got {value!r}")


def _cache_path(value: Any) -> None:
    """The verdict cache is one SQLite file: not a folder, not under a file (an sqlite error at the first call)."""
    from pathlib import Path

    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"cache must be the path of an SQLite file or null, got {value!r}")
    path = Path(value).expanduser()
    if path.is_dir():
        raise ValueError(f"cache must be the path of an SQLite file, got the folder {value!r} (e.g. "
                         f"{str(Path(value) / 'judge_cache.sqlite')!r})")
    above = next((p for p in path.parents if p.exists()), None)
    if above is not None and not above.is_dir():
        raise ValueError(f"cache {value!r} cannot be created: '{above}' is a file")


def _choice(name: str, value: Any, allowed: Sequence[Any]) -> None:
    if value not in allowed:
        shown = ", ".join("null" if a is None else str(a) for a in allowed)
        raise ValueError(f"{name} must be one of {shown}, got {value!r}")


@dataclass(frozen=True)
class ClientSpec:
    """Which model answers and how it is called (HTTP deadlines, retries, concurrency, circuit breaker)."""

    model: str
    backend: str = "openai"  # openai | local
    base_url: str | None = None
    api_key_env: str | None = "OPENAI_API_KEY"  # the NAME of the variable holding the key
    extra_body: Mapping[str, Any] | None = None
    device: str = "cpu"  # local backend
    constrained: bool = False  # local backend: score the allowed verdicts instead of generating
    timeout_s: float = 30.0
    max_retries: int = 3
    backoff_base_s: float = 0.5
    backoff_max_s: float = 8.0
    max_retry_after_s: float = 60.0
    max_concurrency: int = 16
    breaker_threshold: int = 10  # 0 disables
    breaker_reset_s: float = 30.0

    def __post_init__(self) -> None:
        _choice("backend", self.backend, ("openai", "local"))
        if self.base_url is not None:
            _url("base_url", self.base_url)
        if self.constrained and self.backend != "local":
            raise ValueError("constrained: true needs backend: local (it scores the allowed verdicts in-process)")
        _seconds("timeout_s", self.timeout_s, MAX_TIMEOUT_S)
        for name in ("backoff_base_s", "backoff_max_s", "max_retry_after_s", "breaker_reset_s"):
            _seconds(name, getattr(self, name), MAX_TIMEOUT_S, allow_zero=True)
        _count("max_retries", self.max_retries, 0)
        _count("max_concurrency", self.max_concurrency, 1)
        _count("breaker_threshold", self.breaker_threshold, 0)


@dataclass(frozen=True)
class JudgingSpec:
    """What the judge is asked and how its verdict becomes a reward."""

    mode: str = "binary"  # binary | score | pairwise
    template: str | None = None
    labels: Mapping[str, float] | None = None
    scale: Sequence[float] = (1, 10)
    guideline: str | None = None
    policies: str | Mapping[str, str] | None = None
    policy_column: str = "intent"
    on_missing_policy: str = "error"  # error | abstain
    reference_column: str | None = None
    temperature: float = 0.0
    max_tokens: int = 256  # of the judge's reply
    order: str = "both"  # pairwise: both | random
    seed: int = 0
    max_chars: int | None = DEFAULT_MAX_CHARS  # per untrusted field sent to the judge; longer text is cut (counted)
    scale_reward: float = 1.0
    offset: float = 0.0
    keep_rationale: bool = True
    audit_path: str | None = None

    def __post_init__(self) -> None:
        _choice("mode", self.mode, ("binary", "score", "pairwise"))
        _choice("on_missing_policy", self.on_missing_policy, ("error", "abstain"))
        if self.mode == "pairwise" and not self.reference_column:
            raise ValueError("mode 'pairwise' needs reference_column (the dataset column with the reference answer)")
        _count("max_tokens", self.max_tokens, 1)
        _count("max_chars", self.max_chars, 100, optional=True)
        _number("temperature", self.temperature, minimum=0.0)
        _number("scale_reward", self.scale_reward)
        _number("offset", self.offset)


@dataclass(frozen=True)
class VoteSpec:
    """Self-consistency: `votes` samples at `vote_temperature`, majority (or mean); `min_votes` must succeed."""

    votes: int = 1
    aggregate: str | None = None  # majority | mean; default: mean for score, else majority
    min_votes: int | None = None  # default: a majority of votes
    vote_temperature: float = 0.7

    def __post_init__(self) -> None:
        _count("votes", self.votes, 1)
        _choice("aggregate", self.aggregate, (None, "majority", "mean"))
        _count("min_votes", self.min_votes, 1, optional=True)


@dataclass(frozen=True)
class BudgetSpec:
    """Cost control: the verdict cache and the token / cost budget (prices in USD per million tokens)."""

    cache: str | None = DEFAULT_CACHE
    budget_usd: float | None = None
    budget_tokens: int | None = None
    price_input_per_mtok: float = 0.0
    price_output_per_mtok: float = 0.0

    def __post_init__(self) -> None:
        if self.cache is not None:
            _cache_path(self.cache)
        for name in ("budget_usd", "budget_tokens", "price_input_per_mtok", "price_output_per_mtok"):
            value = getattr(self, name)
            if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))
                                      or not math.isfinite(value) or value < 0):
                raise ValueError(f"{name} must be a number >= 0{' or null' if name.startswith('budget') else ''}, "
                                 f"got {value!r}")


@dataclass(frozen=True)
class GateSpec:
    """The cheap checks before a judge call: skip column, intent or rubric gate, word counts, injection guard, time
    limits. `gate: rubric` judges only the replies the deterministic rubric of the same policy file (its `rubric:`
    section; `gate_rubric` holds other `RubricReward` params, `policies` among them) scores at least
    `gate_min_score` for the row's `gate_column` intent; a row the rubric has no entry for is judged."""

    gate: str | None = None  # null | intent | rubric
    gate_column: str = "intent"
    gate_pattern: str = r"<intent>(.*?)</intent>"
    gate_min_score: float = 1.0  # gate: rubric - the rubric's least score (share of requirements met) to be judged
    gate_rubric: Mapping[str, Any] | None = None  # gate: rubric - RubricReward params (default: the judge's policies)
    skip_if_column: str | None = None
    skip_value: float | None = None  # None = abstain
    min_words: int = 3  # master keys (":", "Solution", "Thought process:") never reach the judge
    max_words: int | None = 400  # nor padded replies
    injection_guard: bool = True
    injection_value: float | None = 0.0
    regex_timeout_s: float = 0.5  # per completion and pattern
    batch_budget_s: float = 2.0  # all screening of one reward call; past it the rest abstain (`guard_timeout`)

    def __post_init__(self) -> None:
        _choice("gate", self.gate, (None, "intent", "rubric"))
        _number("gate_min_score", self.gate_min_score)
        if not 0.0 < self.gate_min_score <= 1.0:
            raise ValueError(f"gate_min_score must be within (0, 1], got {self.gate_min_score!r}")
        if self.gate_rubric is not None and not isinstance(self.gate_rubric, Mapping):
            raise ValueError(f"gate_rubric must be a mapping of rubric params or null, got {self.gate_rubric!r}")
        if self.gate_rubric is not None and "label_column" in self.gate_rubric:
            raise ValueError("gate_rubric must not set label_column: the rubric reads gate_column")
        _count("min_words", self.min_words, 0)
        _count("max_words", self.max_words, 1, optional=True)
        if self.max_words is not None and self.max_words < self.min_words:
            raise ValueError(f"max_words ({self.max_words}) must be >= min_words ({self.min_words})")
        _seconds("regex_timeout_s", self.regex_timeout_s, MAX_REGEX_TIMEOUT_S)
        _seconds("batch_budget_s", self.batch_budget_s, MAX_BATCH_BUDGET_S)


@dataclass(frozen=True)
class FailurePolicySpec:
    """What a failed judgment does (`on_failure`) and what a passed limit does (`on_limit`).

    `on_limit`: `stop` ends training gracefully and records the stop as an early, failed end (`stop_reason`);
    `finish` does the same but a spent *budget* counts as a successful end (an error-rate stop still fails);
    `raise` raises at once.
    """

    on_failure: str = "abstain"  # abstain | retry | drop_group
    on_limit: str = "stop"  # stop | finish | raise
    failure_retries: int = 1
    group_size: int | None = None
    max_error_rate: float | None = None
    error_window: int = 200
    min_error_samples: int = 20

    def __post_init__(self) -> None:
        _choice("on_failure", self.on_failure, FAILURE_POLICIES)
        _choice("on_limit", self.on_limit, LIMIT_POLICIES)
        _count("failure_retries", self.failure_retries, 0)
        _count("group_size", self.group_size, 1, optional=True)
        _count("error_window", self.error_window, 1)
        _count("min_error_samples", self.min_error_samples, 1)
        if self.max_error_rate is not None and not (isinstance(self.max_error_rate, (int, float))
                                                    and 0.0 <= self.max_error_rate <= 1.0):
            raise ValueError(f"max_error_rate must be within [0, 1] or null, got {self.max_error_rate!r}")


SECTIONS: dict[str, type] = {"client": ClientSpec, "judging": JudgingSpec, "votes": VoteSpec, "budget": BudgetSpec,
                             "gate": GateSpec, "failure": FailurePolicySpec}
FLAT_KEYS: dict[str, str] = {f.name: section for section, cls in SECTIONS.items() for f in fields(cls)}
if len(FLAT_KEYS) != sum(len(fields(cls)) for cls in SECTIONS.values()):  # a key in two specs would be ambiguous
    raise RuntimeError("judge specs share a field name")


@dataclass(frozen=True)
class JudgeSpec:
    """Every setting of a judge reward, grouped. `from_params` reads the flat recipe keys."""

    client: ClientSpec
    judging: JudgingSpec = field(default_factory=JudgingSpec)
    votes: VoteSpec = field(default_factory=VoteSpec)
    budget: BudgetSpec = field(default_factory=BudgetSpec)
    gate: GateSpec = field(default_factory=GateSpec)
    failure: FailurePolicySpec = field(default_factory=FailurePolicySpec)

    @classmethod
    def from_params(cls, **params: Any) -> JudgeSpec:
        """Route flat `params:` keys to their spec; an unknown key is an error naming the closest known one."""
        grouped: dict[str, dict[str, Any]] = {section: {} for section in SECTIONS}
        for key, value in params.items():
            section = FLAT_KEYS.get(key)
            if section is None:
                raise TypeError(f"unknown judge parameter '{key}'{did_you_mean(key, FLAT_KEYS)}")
            grouped[section][key] = value
        if "model" not in grouped["client"]:
            raise TypeError("the judge needs params.model (what the endpoint calls the judge model)")
        return cls(**{section: SECTIONS[section](**values) for section, values in grouped.items()})

    def to_params(self) -> dict[str, Any]:
        """The flat keys again (every one, defaults included)."""
        return {f.name: getattr(getattr(self, section), f.name)
                for section, spec_cls in SECTIONS.items() for f in fields(spec_cls)}
