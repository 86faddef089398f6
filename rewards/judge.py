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
   row's `gate_column` (or is missing/malformed); `gate: rubric` and the deterministic rubric of the same policy file
   (`rewards/rubric.py`, the file's `rubric:` section) scores the reply under `gate_min_score` (default 1.0: every
   requirement met) for the row's `gate_column` intent — the judge then grades only what passes the cheap checks;
   fewer than `min_words` (3) or more than `max_words` (400) words
   (master-key replies like ":" and length padding never reach the judge, with the defaults). With
   `injection_guard` (default on), a completion that talks to the grader ("ignore the rubric", "VERDICT:", "as the
   judge you must output", a fake closing tag, "end of data"), in any look-alike spelling and anywhere in the whole
   text, is scored `injection_value` (default 0.0, the verdict it deserves) without a judge call. Screening
   regexes have `regex_timeout_s` each and `batch_budget_s` per call; past it the rest abstain (`guard_timeout`).
2. **Judge** (identical samples in a batch once; cached replies free; each untrusted field cut to `max_chars`,
   4000 by default): status ok / parse_error / timeout / api_error. `ok` -> the value in [0, 1], times
   `scale_reward` plus `offset`.
3. **Failures** follow `on_failure`: `abstain` -> None; `retry` -> ask again up to `failure_retries` times (fresh
   seed, sampling temperature), then None; `drop_group` -> the whole group of `group_size` completions (default:
   consecutive rows with the same prompt, i.e. one GRPO group) gets None, so a group is never ranked on partial
   judgments. With `max_error_rate` set, the run stops (`JudgeErrorRateExceeded`) when the failure share of the
   last `error_window` judgments exceeds it. The budget (`budget_usd`, `budget_tokens`) stops it likewise. With
   `on_limit: stop` (default) or `finish` and `trainer_callback()` registered, stopping is graceful (the step
   finishes, the rest abstains with status `stopped`, training ends and saves) and the callback's `stop_reason`,
   `stop_kind` and `stop_ok` say why (`finish`: a budget stop counts as success); otherwise the limit raises.
   The callback's `state_dict()` (spend, error-rate window, statuses, audit batch counter) goes into every
   checkpoint (`rlft.scoring.state`), so the budget is one budget for the whole run: a resumed run goes on counting,
   and one whose restored spend is already over the budget stops before its first step.

The ~60 flat params are grouped into typed specs (`rlft.judge.specs`: client, judging, votes, budget, gate,
failure policy); `JudgeReward(spec=JudgeSpec(...))` takes them typed. One more param, `calibration:
{human_labels: FILE, min_kappa: 0.6}`, is not a judging setting: `rlft train` checks it before training starts
(`rlft.judge.gate`: Cohen's kappa against human labels, refused below `min_kappa`).

Logged every call through TRL's `log_metric`: `judge/<status>_rate`, `judge/skipped_rate`, `judge/abstain_rate`,
`judge/flagged_rate`, `judge/guard_timeout_rate`, `judge/truncated_rate`, `judge/agreement`, `judge/mean`,
`judge/cache_hit_rate`, `judge/requests`, `judge/tokens`, `judge/cost_usd`; and the status (plus rationale when
`keep_rationale`) per completion through `log_extra`. `audit_path` appends one JSON line per judged completion for
offline review.
"""

from __future__ import annotations

import hashlib
import inspect
import json
import logging
import threading
import time
from collections import Counter, deque
from collections.abc import Callable, Sequence
from dataclasses import MISSING, asdict, fields
from pathlib import Path
from typing import Any

from rlft.errors import RewardError, did_you_mean
from rlft.judge.budget import Budget, JudgeBudgetExceeded, Usage
from rlft.judge.cache import JudgeCache
from rlft.judge.client import ChatClient, LocalChatClient, OpenAIChatClient
from rlft.judge.judgment import DEFAULT_LABELS, STATUSES, STOPPED, Judge, Judgment, Sample
from rlft.judge.policies import Guidelines, normalize_key
from rlft.judge.prompt_templates import conversation_text
from rlft.judge.specs import DEFAULT_CACHE, FAILURE_POLICIES, SECTIONS, JudgeSpec  # noqa: F401 - re-exported
from rlft.judge.untrusted import count_words, scan_injection
from rlft.judge.gate import parse_calibration
from rlft.rewards.rubric import RubricReward
from rlft.scoring.protocol import BaseReward, TrainingStopped, completion_text
from rlft.rewards.intent import IntentParser, normalize_label

logger = logging.getLogger("rlft.judge")
SKIPPED, FLAGGED, GUARD_TIMEOUT = "skipped", "flagged", "guard_timeout"


def _verdict_choices(mode: str, labels: dict | None, scale: Sequence[float]) -> list[str]:
    """The replies a constrained local judge chooses between: one `VERDICT: x` line per allowed answer."""
    if mode == "score":
        lo, hi = int(scale[0]), int(scale[1])
        return [f"VERDICT: {n}" for n in range(lo, hi + 1)]
    return [f"VERDICT: {label}" for label in (labels or DEFAULT_LABELS[mode])]


def _make_client(spec: JudgeSpec) -> ChatClient:
    c, j = spec.client, spec.judging
    if c.backend == "openai":
        return OpenAIChatClient(c.model, c.base_url, c.api_key_env, c.timeout_s, c.max_retries, c.backoff_base_s,
                                c.backoff_max_s, c.max_retry_after_s, c.max_concurrency, c.breaker_threshold,
                                c.breaker_reset_s, dict(c.extra_body or {}))
    choices = _verdict_choices(j.mode, j.labels, j.scale) if c.constrained else None
    return LocalChatClient(c.model, device=c.device, logit_bias=(c.extra_body or {}).get("logit_bias"),
                           choices=choices)


def gate_rubric(spec: JudgeSpec) -> RubricReward:
    """The rubric of `gate: rubric`: `gate_rubric` params over the judge's own `policies` file, grading the intent in
    `gate_column`; a missing file, a file without a `rubric:` section or an unknown param is a one-line ValueError."""
    params = dict(spec.gate.gate_rubric or {})
    params.setdefault("policies", spec.judging.policies)
    if params["policies"] is None:
        raise ValueError("gate: rubric needs a policy file with a 'rubric:' section: set policies (or "
                         "gate_rubric.policies)")
    params.setdefault("log_per_requirement", False)
    known = [k for k in inspect.signature(RubricReward.__init__).parameters if k not in ("self", "label_column")]
    for key in params:
        if key not in known:
            raise ValueError(f"gate_rubric: unknown key {key!r}{did_you_mean(key, known)}")
    try:
        return RubricReward(label_column=spec.gate.gate_column, **params)
    except RewardError as err:  # the file: missing, no rubric: section, a bad pattern
        raise ValueError(str(err)) from None


class JudgeErrorRateExceeded(RewardError):
    """Too many recent judgments failed: the run stops instead of training on a thinning signal."""


class JudgeReward(BaseReward):
    """LLM-judge reward (see module docstring for every parameter's role).

    Give the flat recipe keys (`JudgeReward(model="gpt-4o-mini", budget_usd=5)`, every key of
    `rlft.judge.specs.FLAT_KEYS`) or a typed `spec=JudgeSpec(...)`; `client=` replaces the backend (tests, custom
    transports). The settings in use are `self.spec`.
    """

    name = "judge"
    metrics = (*(f"judge/{s}_rate" for s in (*STATUSES, SKIPPED, FLAGGED, STOPPED, GUARD_TIMEOUT)),
               "judge/truncated_rate", "judge/abstain_rate", "judge/mean", "judge/agreement", "judge/cache_hit_rate",
               "judge/requests", "judge/tokens", "judge/cost_usd")

    def __init__(self, model: str | None = None, *, spec: JudgeSpec | None = None, client: ChatClient | None = None,
                 calibration: dict | None = None, **params: Any):
        # the calibration gate (rlft.judge.gate) is checked by `rlft train` before training, not by the judge itself
        self.calibration = parse_calibration(calibration)
        if spec is None:
            spec = JudgeSpec.from_params(**({"model": model} if model is not None else {}), **params)
        elif model is not None or params:
            raise TypeError("give the judge either spec= or flat parameters, not both")
        self.spec = spec
        j, v, b, g, f = spec.judging, spec.votes, spec.budget, spec.gate, spec.failure
        self.client = client if client is not None else _make_client(spec)
        self.guidelines = Guidelines.from_params(j.guideline, j.policies)
        self.judge = Judge(self.client, j.mode, j.template, dict(j.labels) if j.labels else None, tuple(j.scale),
                           v.votes, v.aggregate, j.temperature, v.vote_temperature, j.max_tokens,
                           JudgeCache(b.cache) if b.cache else None,
                           Budget(b.budget_usd, b.budget_tokens, b.price_input_per_mtok, b.price_output_per_mtok),
                           j.order, j.seed, v.min_votes, max_chars=j.max_chars)
        self.policy_column, self.on_missing_policy = j.policy_column, j.on_missing_policy
        self.reference_column, self.max_chars = j.reference_column, j.max_chars
        self.on_failure, self.failure_retries, self.group_size = f.on_failure, f.failure_retries, f.group_size
        self.max_error_rate, self.min_error_samples = f.max_error_rate, f.min_error_samples
        self.on_limit = f.on_limit
        self.stop_reason: str | None = None  # set when a limit is hit and the run is being stopped gracefully
        self.stop_kind: str | None = None  # "budget" | "error_rate", with stop_reason
        self.stop_callback_attached = False  # set by JudgeStopCallback.on_train_begin
        self.recent: deque[bool] = deque(maxlen=f.error_window)  # True = failed judgment
        self.gate, self.gate_column, self.skip_if_column = g.gate, g.gate_column, g.skip_if_column
        self.gate_parser = IntentParser(g.gate_pattern, g.regex_timeout_s) if g.gate == "intent" else None
        self.gate_rubric = gate_rubric(spec) if g.gate == "rubric" else None
        self.gate_min_score = g.gate_min_score
        self.skip_value, self.min_words, self.max_words = g.skip_value, g.min_words, g.max_words
        self.injection_guard, self.injection_value = g.injection_guard, g.injection_value
        self.regex_timeout_s, self.batch_budget_s = g.regex_timeout_s, g.batch_budget_s
        self.scale_reward, self.offset = float(j.scale_reward), float(j.offset)
        self.keep_rationale = j.keep_rationale
        self.audit_path = Path(j.audit_path).expanduser() if j.audit_path else None
        self._audit_lock = threading.Lock()
        self.calls = 0  # reward calls so far (one per GRPO generation batch); audit rows carry it as `batch`
        # per completion: ok / parse_error / timeout / api_error / skipped / flagged / guard_timeout / dropped, and
        # `truncated` (judged with a field cut to max_chars)
        self.stats: Counter = Counter()
        cols = []
        if self.guidelines.policies:
            cols.append(j.policy_column)
        if g.gate in ("intent", "rubric"):
            cols.append(g.gate_column)
        if j.reference_column:
            cols.append(j.reference_column)
        if g.skip_if_column:
            cols.append(g.skip_if_column)
        self.columns = tuple(dict.fromkeys(cols))

    @classmethod
    def validate_params(cls, params: dict[str, Any]) -> JudgeSpec:
        """Check recipe params without building a client, loading a model or opening the cache (for `rlft
        validate`): the typed spec, or a one-line `TypeError` / `ValueError` naming the key."""
        parse_calibration(params.get("calibration"))
        spec = JudgeSpec.from_params(**{k: v for k, v in params.items() if k != "calibration"})
        if spec.gate.gate == "rubric":
            gate_rubric(spec)  # the rubric's file and params, checked now (cheap: YAML and regexes)
        return spec

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
                     "policies": self.guidelines.policies, "default": self.guidelines.default,
                     "max_chars": self.max_chars}
        blob = json.dumps(described, sort_keys=True, default=str).encode()
        return hashlib.sha256(blob).hexdigest()[:16]

    @property
    def eval_metrics(self) -> tuple[str, ...]:
        """A binary / score judge grades policy: its raw verdicts are the pass/fail verdicts (pairwise: none)."""
        return ("policy_following", "system_accuracy") if self.judge.mode in ("binary", "score") else ()

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
        self.judge.soft_limits = self.on_limit in ("stop", "finish") and self.stop_callback_attached
        deadline = time.monotonic() + self.batch_budget_s  # one time budget for all screening regexes of the batch
        skip = [self._skip_reason(i, prompts[i], completions[i], kwargs, deadline) for i in range(n)]
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
                value = {"no_policy": None, "injection": self.injection_value, GUARD_TIMEOUT: None}.get(
                    skip[i], self.skip_value)
                out.append(value)
                statuses.append({"no_policy": "no_policy", "injection": FLAGGED, GUARD_TIMEOUT: GUARD_TIMEOUT}.get(
                    skip[i], SKIPPED))
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
        truncated = sum(j.truncated for j in judgments.values())
        if truncated:
            self.stats["truncated"] += truncated
        self._report(judgments, statuses, out, log_metric, log_extra, truncated)
        self._audit(prompts, completions, statuses, out, judgments, kwargs)
        if self.judge.limit_error is not None and self.stop_reason is None:
            self._record_stop(self.judge.limit_error)
        self._check_error_rate(judgments)
        return out

    @property
    def stop_ok(self) -> bool:
        """True when the run was stopped by a spent budget and the recipe says that is a success (`on_limit:
        finish`); an error-rate stop, or any stop under `on_limit: stop`, is an early, failed end."""
        return self.stop_kind == "budget" and self.on_limit == "finish"

    def _record_stop(self, error: Exception) -> None:
        self.stop_reason = str(error)
        self.stop_kind = "budget" if isinstance(error, JudgeBudgetExceeded) else "error_rate"
        logger.warning("%s -- stopping the run after this step (on_limit: %s)", self.stop_reason, self.on_limit)

    def state_dict(self) -> dict[str, Any]:
        """What a resumed run needs to count on from here (JSON-able): spend, error-rate window, statuses and the
        audit batch counter. Saved into every checkpoint through the trainer callback (`rlft.scoring.state`)."""
        return {"usage": asdict(self.usage), "recent": [bool(x) for x in self.recent], "calls": self.calls,
                "stats": dict(self.stats), "counts": dict(self.judge.counts)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore `state_dict()`. A restored spend already over the budget records the budget stop (with `on_limit:
        stop` / `finish`; the callback then ends the run before its first step); with `on_limit: raise` the first
        request raises, as it would have. A restored error-rate window already over `max_error_rate` is the one the
        run stopped on: it is dropped (the user resumed after fixing the endpoint), with a warning."""
        self.judge.budget.usage = Usage(**state["usage"])
        self.calls = int(state["calls"])
        self.stats, self.judge.counts = Counter(state["stats"]), Counter(state["counts"])
        recent = deque((bool(x) for x in state["recent"]), maxlen=self.recent.maxlen)
        self.recent.clear()
        if (self.max_error_rate is not None and len(recent) >= self.min_error_samples
                and sum(recent) / len(recent) > self.max_error_rate):
            logger.warning("judge: the checkpoint's error-rate window (%d of %d failed) is over max_error_rate=%s; "
                           "it starts fresh", sum(recent), len(recent), self.max_error_rate)
        else:
            self.recent.extend(recent)
        try:
            self.judge.budget.check()
        except JudgeBudgetExceeded as exc:
            if self.on_limit in ("stop", "finish"):
                self.judge.limit_error = exc
                self._record_stop(exc)

    def trainer_callback(self) -> Any:
        """A transformers `TrainerCallback` that ends training after the step in which a limit was hit.

        With it registered (and `on_limit: stop`, the default, or `finish`) a spent budget or a passed
        `max_error_rate` stops the run like `max_steps` would: the step finishes (unjudged samples abstain, status
        `stopped`), then the trainer returns normally and the adapter, metrics and cache are saved. Without it,
        limits raise. The callback's `stop_reason` / `stop_kind` / `stop_ok` tell the caller whether and why the run
        ended early, so it can record that and choose the exit status. Its `state_dict()` / `load_state_dict()` are
        the reward's (checkpointed by `rlft.scoring.state`); after a restored spent budget, `on_train_begin` raises
        `rlft.scoring.protocol.TrainingStopped` so no step trains on abstentions.
        """
        return _stop_callback(self)

    # ---- steps --------------------------------------------------------------------------------------------
    def _skip_reason(self, i: int, prompt: Any, completion: Any, kwargs: dict, deadline: float) -> str | None:
        if self.skip_if_column and kwargs[self.skip_if_column][i]:
            return "column"
        text = completion_text(completion)
        words = count_words(text, limit=self.max_words)
        if words < self.min_words or (self.max_words is not None and words > self.max_words):
            return "length"
        if self.gate_parser is not None:
            left = deadline - time.monotonic()
            if left <= 0:
                return GUARD_TIMEOUT
            # rlft.rewards.intent.IntentParser reads its timeout per call; give it what is left of the batch budget
            self.gate_parser.timeout_s = min(self.regex_timeout_s, left)
            status, label = self.gate_parser.parse(text)
            if status == "timeout" and time.monotonic() >= deadline:
                return GUARD_TIMEOUT
            if status != "ok" or label != normalize_label(str(kwargs[self.gate_column][i])):
                return "gate"
        if self.injection_guard:
            left = deadline - time.monotonic()
            if left <= 0:
                return GUARD_TIMEOUT
            found = scan_injection(text, min(self.regex_timeout_s, left))
            if found is None:  # timed out: on its own time pathological input is suspicious; on the batch's, abstain
                return GUARD_TIMEOUT if time.monotonic() >= deadline else "injection"
            if found:
                return "injection"
        if self.gate_rubric is not None:
            if deadline - time.monotonic() <= 0:
                return GUARD_TIMEOUT
            score = self.gate_rubric.check(prompt, completion, kwargs[self.gate_column][i]).score
            if score is not None and score < self.gate_min_score:  # no rubric for the intent (None): judged
                return "gate"
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
                log_extra: Callable | None, truncated: int = 0) -> None:
        n = max(len(statuses), 1)
        counts = Counter(statuses)
        failed = [s for s in statuses if s in STATUSES and s != "ok"]
        if failed:
            details = Counter(j.detail for j in judgments.values() if j.status != "ok")
            logger.warning("judge: %d of %d completions unscored (%s); they abstain. Causes: %s", len(failed),
                           len(statuses), dict(Counter(failed)), dict(details.most_common(3)))
        if log_metric is not None:
            for status in (*STATUSES, SKIPPED, FLAGGED, STOPPED, GUARD_TIMEOUT):
                log_metric(f"judge/{status}_rate", counts[status] / n)
            log_metric("judge/truncated_rate", truncated / n)  # judged with a field cut to max_chars
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
                self._record_stop(error)
            self.judge.limit_error = self.judge.limit_error or error


def _stop_callback(reward: JudgeReward) -> Any:
    from transformers import TrainerCallback  # imported here: the reward itself never needs transformers

    class JudgeStopCallback(TrainerCallback):
        """Ends training after the step in which the judge hit a limit (see JudgeReward.trainer_callback).

        After training, `stop_reason` says why it stopped early (None: it did not), `stop_kind` is `budget` or
        `error_rate`, and `stop_ok` is True only for a budget stop under `on_limit: finish`.
        """

        @property
        def stop_reason(self) -> str | None:
            return reward.stop_reason

        @property
        def stop_kind(self) -> str | None:
            return reward.stop_kind

        @property
        def stop_ok(self) -> bool:
            return reward.stop_ok

        def state_dict(self) -> dict[str, Any]:
            return reward.state_dict()

        def load_state_dict(self, state: dict[str, Any]) -> None:
            reward.load_state_dict(state)

        def on_train_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> Any:
            reward.stop_callback_attached = True
            if reward.stop_reason is not None:  # restored from a checkpoint whose budget was spent
                raise TrainingStopped(reward.stop_reason)
            return control

        def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> Any:
            if reward.stop_reason is not None:
                control.should_training_stop = True
            return control

    return JudgeStopCallback()


def _flat_signature() -> inspect.Signature:
    """`JudgeReward.__init__` as the recipe loader sees it: every flat key of the specs, with its default, so an
    unknown or misspelt recipe key is refused by name (`rlft.scoring.loader.check_params`) before anything is built."""
    p = inspect.Parameter
    params = [p("self", p.POSITIONAL_OR_KEYWORD), p("model", p.POSITIONAL_OR_KEYWORD, default=None, annotation=str)]
    for spec_cls in SECTIONS.values():
        for f in fields(spec_cls):
            if f.name != "model":
                default = f.default if f.default is not MISSING else f.default_factory()
                params.append(p(f.name, p.KEYWORD_ONLY, default=default, annotation=f.type))
    params += [p("calibration", p.KEYWORD_ONLY, default=None, annotation="dict | None"),
               p("spec", p.KEYWORD_ONLY, default=None, annotation="JudgeSpec | None"),
               p("client", p.KEYWORD_ONLY, default=None, annotation="ChatClient | None")]
    return inspect.Signature(params)


JudgeReward.__init__.__signature__ = _flat_signature()
