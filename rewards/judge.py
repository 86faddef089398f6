"""RLAIF judge reward: an LLM grades each completion against a support policy; failures abstain, never score 0.

Built-in name `judge`. Recipe params go to `JudgeReward.__init__`; the instance is an async TRL reward
(`await reward(prompts, completions, **columns) -> list[float | None]`). Guide: docs/judge.md. Example::

    rewards:
      - name: judge
        weight: 1.0
        params:
          model: gpt-4o-mini                     # or a vLLM / LiteLLM / `transformers serve` model
          base_url: null                         # e.g. http://127.0.0.1:8000/v1
          api_key_env: OPENAI_API_KEY            # the variable's NAME; the key never enters the recipe
          mode: binary                           # binary | score | pairwise
          policies: rewards/policies/demo_policies.yaml   # one policy per intent, picked by `policy_column`
          gate: intent                           # judge only completions whose <intent> tag is right
          on_failure: abstain                    # abstain | retry | drop_group
          max_error_rate: 0.2                    # stop the run when >20% of recent judgments fail
          cache: runs/judge_cache.sqlite

What happens to each completion, in order:

1. **Skip** (cheap checks, no judge call) -> `skip_value` (default None = abstain; set e.g. 0.0 for a floor):
   `skip_if_column` is truthy for the row; `gate: intent` and the completion's `<intent>` label differs from the
   row's `gate_column` (or is missing/malformed); fewer than `min_words` or more than `max_words` words (master-key
   replies like ":" and length padding never reach the judge). With `injection_guard` (default on), a completion
   that talks to the grader ("ignore the rubric", "VERDICT:", "as the judge you must output", a fake closing tag,
   "end of data") is scored `injection_value` (default 0.0, the verdict it deserves) without a judge call.
2. **Judge** (identical samples in a batch once; cached replies free): status ok / parse_error / timeout /
   api_error. `ok` -> the value in [0, 1], times `scale_reward` plus `offset`.
3. **Failures** follow `on_failure`: `abstain` -> None; `retry` -> ask again up to `failure_retries` times (fresh
   seed, sampling temperature), then None; `drop_group` -> the whole group of `group_size` completions (default:
   consecutive rows with the same prompt, i.e. one GRPO group) gets None, so a group is never ranked on partial
   judgments. With `max_error_rate` set, the run stops (`JudgeErrorRateExceeded`) when the failure share of the
   last `error_window` judgments exceeds it. The budget (`budget_usd`, `budget_tokens`) stops it likewise. With
   `on_limit: stop` (default) and `trainer_callback()` registered, stopping is graceful (the step finishes, the
   rest abstains with status `stopped`, training ends and saves); otherwise the limit raises.

Logged every call through TRL's `log_metric`: `judge/<status>_rate`, `judge/skipped_rate`, `judge/abstain_rate`,
`judge/flagged_rate`, `judge/agreement`, `judge/mean`, `judge/cache_hit_rate`, `judge/requests`, `judge/tokens`,
`judge/cost_usd`; and the status (plus rationale when `keep_rationale`) per completion through `log_extra`.
`audit_path` appends one JSON line per judged completion for offline review.
"""

from __future__ import annotations

import hashlib
import json
import logging
import threading
from collections import Counter, deque
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from rlft.errors import RewardError
from rlft.judge.budget import Budget
from rlft.judge.cache import JudgeCache
from rlft.judge.client import ChatClient, LocalChatClient, OpenAIChatClient
from rlft.judge.judge import DEFAULT_LABELS, STATUSES, STOPPED, Judge, Judgment, Sample
from rlft.judge.policies import Guidelines, normalize_key
from rlft.judge.prompts import conversation_text, looks_like_injection
from rlft.rewards.intent import IntentParser, completion_text, normalize_label

logger = logging.getLogger("rlft.judge")
FAILURE_POLICIES = ("abstain", "retry", "drop_group")
SKIPPED, FLAGGED = "skipped", "flagged"
DEFAULT_CACHE = "~/.cache/rlft/judge_cache.sqlite"


def _verdict_choices(mode: str, labels: dict | None, scale: Sequence[float]) -> list[str]:
    """The replies a constrained local judge chooses between: one `VERDICT: x` line per allowed answer."""
    if mode == "score":
        lo, hi = int(scale[0]), int(scale[1])
        return [f"VERDICT: {n}" for n in range(lo, hi + 1)]
    return [f"VERDICT: {label}" for label in (labels or DEFAULT_LABELS[mode])]


class JudgeErrorRateExceeded(RewardError):
    """Too many recent judgments failed: the run stops instead of training on a thinning signal."""


class JudgeReward:
    """LLM-judge reward (see module docstring for every parameter's role)."""

    name = "judge"

    def __init__(
        self,
        model: str,
        backend: str = "openai",
        base_url: str | None = None,
        api_key_env: str | None = "OPENAI_API_KEY",
        mode: str = "binary",
        template: str | None = None,
        labels: dict[str, float] | None = None,
        scale: Sequence[float] = (1, 10),
        guideline: str | None = None,
        policies: str | dict | None = None,
        policy_column: str = "intent",
        on_missing_policy: str = "error",
        reference_column: str | None = None,
        votes: int = 1,
        aggregate: str | None = None,
        min_votes: int | None = None,
        temperature: float = 0.0,
        vote_temperature: float = 0.7,
        max_tokens: int = 256,
        order: str = "both",
        seed: int = 0,
        timeout_s: float = 30.0,
        max_retries: int = 3,
        backoff_base_s: float = 0.5,
        backoff_max_s: float = 8.0,
        max_retry_after_s: float = 60.0,
        max_concurrency: int = 16,
        breaker_threshold: int = 10,
        breaker_reset_s: float = 30.0,
        extra_body: dict | None = None,
        device: str = "cpu",
        constrained: bool = False,
        cache: str | None = DEFAULT_CACHE,
        budget_usd: float | None = None,
        budget_tokens: int | None = None,
        price_input_per_mtok: float = 0.0,
        price_output_per_mtok: float = 0.0,
        on_failure: str = "abstain",
        on_limit: str = "stop",
        failure_retries: int = 1,
        group_size: int | None = None,
        max_error_rate: float | None = None,
        error_window: int = 200,
        min_error_samples: int = 20,
        gate: str | None = None,
        gate_column: str = "intent",
        gate_pattern: str = r"<intent>(.*?)</intent>",
        skip_if_column: str | None = None,
        skip_value: float | None = None,
        min_words: int = 0,
        max_words: int | None = None,
        injection_guard: bool = True,
        injection_value: float | None = 0.0,
        scale_reward: float = 1.0,
        offset: float = 0.0,
        keep_rationale: bool = True,
        audit_path: str | None = None,
        client: ChatClient | None = None,
    ):
        if on_failure not in FAILURE_POLICIES:
            raise ValueError(f"on_failure must be one of {', '.join(FAILURE_POLICIES)}, got {on_failure!r}")
        if on_missing_policy not in ("error", "abstain"):
            raise ValueError(f"on_missing_policy must be 'error' or 'abstain', got {on_missing_policy!r}")
        if on_limit not in ("stop", "raise"):
            raise ValueError(f"on_limit must be 'stop' or 'raise', got {on_limit!r}")
        if gate not in (None, "intent"):
            raise ValueError(f"gate must be null or 'intent', got {gate!r}")
        if max_error_rate is not None and not 0.0 <= max_error_rate <= 1.0:
            raise ValueError("max_error_rate must be within [0, 1]")
        if constrained and backend != "local":
            raise ValueError("constrained: true needs backend: local (it scores the allowed verdicts in-process)")
        if mode == "pairwise" and not reference_column:
            raise ValueError("mode 'pairwise' needs reference_column (the dataset column with the reference answer)")
        if client is None:
            if backend == "openai":
                client = OpenAIChatClient(model, base_url, api_key_env, timeout_s, max_retries, backoff_base_s,
                                          backoff_max_s, max_retry_after_s, max_concurrency, breaker_threshold,
                                          breaker_reset_s, extra_body)
            elif backend == "local":
                choices = _verdict_choices(mode, labels, scale) if constrained else None
                client = LocalChatClient(model, device=device, logit_bias=(extra_body or {}).get("logit_bias"),
                                         choices=choices)
            else:
                raise ValueError(f"backend must be 'openai' or 'local', got {backend!r}")
        self.client = client
        self.guidelines = Guidelines.from_params(guideline, policies)
        self.judge = Judge(client, mode, template, labels, tuple(scale), votes, aggregate, temperature,
                           vote_temperature, max_tokens, JudgeCache(cache) if cache else None,
                           Budget(budget_usd, budget_tokens, price_input_per_mtok, price_output_per_mtok), order,
                           seed, min_votes)
        self.policy_column, self.on_missing_policy = policy_column, on_missing_policy
        self.reference_column = reference_column
        self.on_failure, self.failure_retries, self.group_size = on_failure, int(failure_retries), group_size
        self.max_error_rate, self.min_error_samples = max_error_rate, int(min_error_samples)
        self.on_limit = on_limit
        self.stop_reason: str | None = None  # set when a limit is hit and the run is being stopped gracefully
        self.stop_callback_attached = False  # set by JudgeStopCallback.on_train_begin
        self.recent: deque[bool] = deque(maxlen=int(error_window))  # True = failed judgment
        self.gate, self.gate_column, self.skip_if_column = gate, gate_column, skip_if_column
        self.gate_parser = IntentParser(gate_pattern) if gate == "intent" else None
        self.skip_value, self.min_words, self.max_words = skip_value, int(min_words), max_words
        self.injection_guard, self.injection_value = injection_guard, injection_value
        self.scale_reward, self.offset = float(scale_reward), float(offset)
        self.keep_rationale = keep_rationale
        self.audit_path = Path(audit_path).expanduser() if audit_path else None
        self._audit_lock = threading.Lock()
        self.calls = 0  # reward calls so far (one per GRPO generation batch); audit rows carry it as `batch`
        self.stats: Counter = Counter()  # per completion: ok / parse_error / timeout / api_error / skipped / dropped
        cols = []
        if self.guidelines.policies:
            cols.append(policy_column)
        if gate == "intent":
            cols.append(gate_column)
        if reference_column:
            cols.append(reference_column)
        if skip_if_column:
            cols.append(skip_if_column)
        self.columns = tuple(dict.fromkeys(cols))

    def __repr__(self) -> str:
        return f"JudgeReward(client={self.client!r}, mode={self.judge.mode!r}, guidelines={self.guidelines.source!r})"

    def __getstate__(self) -> dict:  # picklable (copies, spawned workers); the API key is never part of the state
        state = dict(self.__dict__)
        state.pop("_audit_lock", None)
        return state

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self._audit_lock = threading.Lock()

    @property
    def fingerprint(self) -> str:
        """Short hash of everything that decides a verdict (judge model and settings, template, guidelines); it
        changes when any of them does, so labelled data and metrics can say which judge produced them."""
        j = self.judge
        described = {"client": j.client.identity(), "mode": j.mode, "template": j.template.source,
                     "labels": getattr(j, "labels", None), "scale": j.scale, "votes": j.votes,
                     "aggregate": j.aggregate, "temperature": j.temperature, "vote_temperature": j.vote_temperature,
                     "max_tokens": j.max_tokens, "order": j.order, "seed": j.seed,
                     "policies": self.guidelines.policies, "default": self.guidelines.default}
        blob = json.dumps(described, sort_keys=True, default=str).encode()
        return hashlib.sha256(blob).hexdigest()[:16]

    @property
    def usage(self):  # noqa: ANN201 - rlft.judge.budget.Usage
        return self.judge.budget.usage

    # ---- the reward ---------------------------------------------------------------------------------------
    async def __call__(self, prompts: list, completions: list, log_metric: Callable | None = None,
                       log_extra: Callable | None = None, **kwargs: Any) -> list[float | None]:
        n = len(completions)
        self.calls += 1
        for col in self.columns:
            if kwargs.get(col) is None:
                raise RewardError(f"judge reward needs the dataset column '{col}'")
        # graceful stop needs someone to stop the trainer: without the callback, limits raise
        self.judge.soft_limits = self.on_limit == "stop" and self.stop_callback_attached
        skip = [self._skip_reason(i, completions[i], kwargs) for i in range(n)]
        todo = [i for i in range(n) if skip[i] is None]
        samples = {i: self._sample(i, prompts[i], completions[i], kwargs) for i in todo}
        missing = [i for i in todo if samples[i] is None]
        todo = [i for i in todo if samples[i] is not None]
        for i in missing:
            skip[i] = "no_policy"

        judgments: dict[int, Judgment] = {}
        pending = todo
        for attempt in range(1 + (self.failure_retries if self.on_failure == "retry" else 0)):
            if not pending:
                break
            results = await self.judge.judge_many([samples[i] for i in pending], attempt)
            judgments.update(zip(pending, results, strict=True))
            pending = [i for i in pending if judgments[i].status != "ok"]

        out: list[float | None] = []
        statuses: list[str] = []
        for i in range(n):
            if skip[i] is not None:
                value = {"no_policy": None, "injection": self.injection_value}.get(skip[i], self.skip_value)
                out.append(value)
                statuses.append({"no_policy": "no_policy", "injection": FLAGGED}.get(skip[i], SKIPPED))
                continue
            j = judgments[i]
            statuses.append(j.status)
            out.append(j.value * self.scale_reward + self.offset if j.status == "ok" else None)
        if self.on_failure == "drop_group":
            for start, end in self._groups(prompts):
                if any(statuses[k] in STATUSES and statuses[k] != "ok" for k in range(start, end)):
                    for k in range(start, end):
                        out[k] = None
                        if statuses[k] not in STATUSES or statuses[k] == "ok":
                            self.stats["dropped"] += 1
        self.stats.update(statuses)
        self._report(judgments, statuses, out, log_metric, log_extra)
        self._audit(prompts, completions, statuses, out, judgments, kwargs)
        if self.judge.limit_error is not None and self.stop_reason is None:
            self.stop_reason = str(self.judge.limit_error)
            logger.warning("%s -- stopping the run after this step (on_limit: stop)", self.stop_reason)
        self._check_error_rate(judgments)
        return out

    def trainer_callback(self) -> Any:
        """A transformers `TrainerCallback` that ends training after the step in which a limit was hit.

        With it registered (and `on_limit: stop`, the default) a spent budget or a passed `max_error_rate` stops
        the run like `max_steps` would: the step finishes (unjudged samples abstain, status `stopped`), then the
        trainer returns normally and the adapter, metrics and cache are saved. Without it, limits raise.
        """
        return _stop_callback(self)

    # ---- steps --------------------------------------------------------------------------------------------
    def _skip_reason(self, i: int, completion: Any, kwargs: dict) -> str | None:
        if self.skip_if_column and kwargs[self.skip_if_column][i]:
            return "column"
        text = completion_text(completion)
        words = len(text.split())
        if words < self.min_words or (self.max_words is not None and words > self.max_words):
            return "length"
        if self.gate_parser is not None:
            status, label = self.gate_parser.parse(text)
            if status != "ok" or label != normalize_label(str(kwargs[self.gate_column][i])):
                return "gate"
        if self.injection_guard and looks_like_injection(text):
            return "injection"
        return None

    def _sample(self, i: int, prompt: Any, completion: Any, kwargs: dict) -> Sample | None:
        key = kwargs[self.policy_column][i] if self.guidelines.policies else None
        guideline = self.guidelines.for_key(key)
        if guideline is None:
            if self.on_missing_policy == "error":
                known = ", ".join(sorted(self.guidelines.policies)[:8])
                raise RewardError(f"judge: no policy for {self.policy_column}='{normalize_key(key)}' in "
                                  f"{self.guidelines.source} and no default (known: {known}, ...); add one, add a "
                                  f"'default' policy, or set on_missing_policy: abstain")
            return None
        reference = str(kwargs[self.reference_column][i]) if self.reference_column else None
        return Sample(conversation_text(prompt), completion_text(completion), guideline, reference)

    def _groups(self, prompts: list) -> list[tuple[int, int]]:
        n = len(prompts)
        if self.group_size:
            return [(s, min(s + self.group_size, n)) for s in range(0, n, self.group_size)]
        groups, start = [], 0
        for k in range(1, n + 1):
            if k == n or prompts[k] != prompts[start]:
                groups.append((start, k))
                start = k
        return groups

    def _report(self, judgments: dict[int, Judgment], statuses: list[str], out: list, log_metric: Callable | None,
                log_extra: Callable | None) -> None:
        n = max(len(statuses), 1)
        counts = Counter(statuses)
        failed = [s for s in statuses if s in STATUSES and s != "ok"]
        if failed:
            details = Counter(j.detail for j in judgments.values() if j.status != "ok")
            logger.warning("judge: %d of %d completions unscored (%s); they abstain. Causes: %s", len(failed),
                           len(statuses), dict(Counter(failed)), dict(details.most_common(3)))
        if log_metric is not None:
            for status in (*STATUSES, SKIPPED, FLAGGED, STOPPED):
                log_metric(f"judge/{status}_rate", counts[status] / n)
            log_metric("judge/abstain_rate", sum(v is None for v in out) / n)
            ok = [j for j in judgments.values() if j.status == "ok"]
            if ok:
                log_metric("judge/mean", sum(j.value for j in ok) / len(ok))
                log_metric("judge/agreement", sum(j.agreement for j in ok) / len(ok))
            u = self.usage
            calls = u.requests + u.cache_hits
            log_metric("judge/cache_hit_rate", u.cache_hits / calls if calls else 0.0)
            log_metric("judge/requests", float(u.requests))
            log_metric("judge/tokens", float(u.total_tokens))
            log_metric("judge/cost_usd", u.cost_usd)
        if log_extra is not None:
            log_extra("judge_status", statuses)
            if self.keep_rationale:
                log_extra("judge_rationale", [judgments[i].rationale if i in judgments else ""
                                              for i in range(len(statuses))])

    def _audit(self, prompts: list, completions: list, statuses: list[str], out: list,
               judgments: dict[int, Judgment], kwargs: dict) -> None:
        if self.audit_path is None:
            return
        lines = []
        for i, status in enumerate(statuses):
            j = judgments.get(i)
            row = {"batch": self.calls, "prompt": conversation_text(prompts[i]),
                   "completion": completion_text(completions[i]),
                   "policy_key": kwargs[self.policy_column][i] if self.policy_column in kwargs else None,
                   "status": status, "reward": out[i], "label": j.label if j else None,
                   "votes": j.votes if j else [], "agreement": j.agreement if j else None,
                   "cached": j.cached if j else False, "detail": j.detail if j else ""}
            if self.keep_rationale:
                row["rationale"] = j.rationale if j else ""
            lines.append(json.dumps(row, ensure_ascii=False))
        with self._audit_lock:
            self.audit_path.parent.mkdir(parents=True, exist_ok=True)
            with self.audit_path.open("a", encoding="utf-8") as f:
                f.write("\n".join(lines) + "\n")

    def _check_error_rate(self, judgments: dict[int, Judgment]) -> None:
        self.recent.extend(j.status != "ok" for j in judgments.values() if j.status != STOPPED)
        if self.max_error_rate is None or len(self.recent) < self.min_error_samples:
            return
        rate = sum(self.recent) / len(self.recent)
        if rate > self.max_error_rate:
            error = JudgeErrorRateExceeded(
                f"judge: {rate:.0%} of the last {len(self.recent)} judgments failed (max_error_rate="
                f"{self.max_error_rate}); statuses so far {dict(self.judge.counts)}; check the endpoint, then resume "
                f"(judged samples are cached)"
            )
            if not self.judge.soft_limits:
                raise error
            if self.stop_reason is None:
                self.stop_reason = str(error)
                logger.warning("%s -- stopping the run after this step (on_limit: stop)", error)
            self.judge.limit_error = self.judge.limit_error or error


def _stop_callback(reward: JudgeReward) -> Any:
    from transformers import TrainerCallback  # imported here: the reward itself never needs transformers

    class JudgeStopCallback(TrainerCallback):
        """Ends training after the step in which the judge hit a limit (see JudgeReward.trainer_callback)."""

        def on_train_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> Any:
            reward.stop_callback_attached = True
            return control

        def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> Any:
            if reward.stop_reason is not None:
                control.should_training_stop = True
            return control

    return JudgeStopCallback()
