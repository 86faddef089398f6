"""Judge backends: any OpenAI-compatible endpoint, or a transformers model in this process. Same interface.

`await client.complete(messages, temperature=, max_tokens=, seed=) -> Reply` returns the reply text and its token
usage, or raises `JudgeCallError` with a status (`timeout` | `api_error`). Configuration mistakes that no retry can
fix (HTTP 401/403/404, a missing API-key variable) raise `JudgeEndpointError`, a one-line `UserError`.

The OpenAI client (the `openai` SDK, so OpenAI, vLLM, a LiteLLM proxy or `transformers serve` all work):

* an explicit **total deadline** per attempt (`timeout_s`; the SDK's own default is 600 s and a trickling server
  can exceed per-read timeouts, so the whole call is wrapped in `asyncio.wait_for`);
* its **own retries** (the SDK's are switched off so every attempt is counted) with exponential backoff and
  jitter, honouring `Retry-After`/`retry-after-ms` on 429 and 503 up to `max_retry_after_s`;
* **bounded concurrency**: a semaphore of `max_concurrency` requests per session (`async with client.session()`,
  one per reward call; the HTTP connection pool lives as long as the session and is closed with it, so no
  connection outlives the event loop that made it — TRL keeps one loop, `rlft.scoring.completions` makes one per call);
* a **circuit breaker**: after `breaker_threshold` consecutive failed attempts, calls fail fast for
  `breaker_reset_s`, then one trial call decides whether to close it again.

The API key is read from the environment variable *named* by `api_key_env` when a connection is opened; it is
not kept on the client object, not in its repr or pickled state, nor in any cache key. Credentials inside
`base_url` (`http://user:pass@host`, `?api_key=`) are redacted (`rlft.run.redact`) wherever the client shows the URL:
its repr, its error messages and its identity (so they are not part of cache keys or fingerprints either).

Not here: prompts, parsing, caching, votes (see `rlft.judge.judgment`).
"""

from __future__ import annotations

import abc
import asyncio
import contextlib
import itertools
import os
import random
import threading
import time
from collections.abc import AsyncIterator
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any

from rlft.errors import RewardError
from rlft.run.redact import redact_url

TIMEOUT, API_ERROR = "timeout", "api_error"
POOL_SIZE = 8  # concurrent requests per HTTP connection pool (see OpenAIChatClient.session)


@dataclass(frozen=True)
class Reply:
    text: str
    prompt_tokens: int
    completion_tokens: int


class JudgeCallError(Exception):
    """A judge call failed after its retries; `status` is `timeout` or `api_error`."""

    def __init__(self, status: str, detail: str, attempts: int = 1):
        super().__init__(f"{status}: {detail}")
        self.status, self.detail, self.attempts = status, detail, attempts


class JudgeEndpointError(RewardError):
    """The judge endpoint is misconfigured (bad key, unknown model or URL): retrying cannot help."""


class CircuitBreaker:
    """Closed -> (threshold consecutive failures) -> open for `reset_s` -> half-open (one trial) -> closed/open."""

    def __init__(self, threshold: int = 10, reset_s: float = 30.0):
        self.threshold, self.reset_s = threshold, reset_s
        self._lock = threading.Lock()
        self.failures = 0
        self.opened_at: float | None = None
        self.trial_in_flight = False
        self.times_opened = 0

    @property
    def state(self) -> str:
        if self.opened_at is None:
            return "closed"
        return "half_open" if time.monotonic() - self.opened_at >= self.reset_s else "open"

    def allow(self) -> bool:
        with self._lock:
            state = self.state
            if state == "closed":
                return True
            if state == "half_open" and not self.trial_in_flight:
                self.trial_in_flight = True
                return True
            return False

    def success(self) -> None:
        with self._lock:
            self.failures, self.opened_at, self.trial_in_flight = 0, None, False

    def failure(self) -> None:
        with self._lock:
            self.failures += 1
            was_trial = self.trial_in_flight
            self.trial_in_flight = False
            if self.threshold > 0 and (was_trial or (self.opened_at is None and self.failures >= self.threshold)):
                self.opened_at = time.monotonic()
                self.times_opened += 1

    def __getstate__(self) -> dict:
        return {"threshold": self.threshold, "reset_s": self.reset_s}

    def __setstate__(self, state: dict) -> None:
        self.__init__(**state)


class ChatClient(abc.ABC):
    """Interface of a judge backend. `identity()` names what answers (goes into the cache key, never secrets)."""

    @abc.abstractmethod
    def identity(self) -> dict[str, Any]:
        """What answers: backend, model, endpoint host (never a key)."""

    @contextlib.asynccontextmanager
    async def session(self) -> AsyncIterator[None]:
        """Scope for a batch of calls (connections, concurrency limit). Calls outside a session open their own."""
        yield

    @abc.abstractmethod
    async def complete(self, messages: list[dict[str, str]], *, temperature: float, max_tokens: int,
                       seed: int | None = None) -> Reply:
        """One chat completion; raises on transport/API failure (the judge classifies and retries)."""


def backoff_delay(attempt: int, base_s: float, max_s: float) -> float:
    """Full-jitter exponential backoff: uniform in [0, min(max_s, base_s * 2**attempt)]."""
    return random.uniform(0.0, min(max_s, base_s * (2 ** attempt)))


def _retry_after(exc: Exception) -> float | None:
    headers = getattr(getattr(exc, "response", None), "headers", None)
    if headers is None:
        return None
    for name, divisor in (("retry-after-ms", 1000.0), ("retry-after", 1.0)):
        value = headers.get(name)
        if value is None:
            continue
        try:
            return max(0.0, float(value) / divisor)
        except ValueError:
            import email.utils

            parsed = email.utils.parsedate_to_datetime(value) if name == "retry-after" else None
            if parsed is not None:
                return max(0.0, parsed.timestamp() - time.time())
    return None


class OpenAIChatClient(ChatClient):
    """Async client for an OpenAI-compatible `/v1/chat/completions` endpoint (see module docstring)."""

    def __init__(self, model: str, base_url: str | None = None, api_key_env: str | None = "OPENAI_API_KEY",
                 timeout_s: float = 30.0, max_retries: int = 3, backoff_base_s: float = 0.5,
                 backoff_max_s: float = 8.0, max_retry_after_s: float = 60.0, max_concurrency: int = 16,
                 breaker_threshold: int = 10, breaker_reset_s: float = 30.0, extra_body: dict | None = None,
                 send_seed: bool = True):
        if timeout_s <= 0 or max_concurrency < 1 or max_retries < 0:
            raise ValueError("timeout_s must be > 0, max_concurrency >= 1 and max_retries >= 0")
        if api_key_env is not None and not os.environ.get(api_key_env):
            raise JudgeEndpointError(f"judge: environment variable '{api_key_env}' (params.api_key_env) is not set; "
                                     f"export the API key there, or set api_key_env: null for endpoints without keys")
        self.model, self.base_url, self.api_key_env = model, base_url, api_key_env
        self.timeout_s, self.max_retries = float(timeout_s), int(max_retries)
        self.backoff_base_s, self.backoff_max_s = backoff_base_s, backoff_max_s
        self.max_retry_after_s = max_retry_after_s
        self.max_concurrency = int(max_concurrency)
        self.breaker = CircuitBreaker(breaker_threshold, breaker_reset_s)
        self.extra_body = dict(extra_body or {})
        self.send_seed = send_seed
        self.attempts = 0  # every HTTP attempt, retries included
        self._session: ContextVar = ContextVar(f"rlft_judge_session_{id(self)}", default=None)

    def identity(self) -> dict[str, Any]:
        # redacted: a password in base_url is not part of what decides a verdict, and must not enter cache keys
        return {"backend": "openai", "model": self.model, "base_url": redact_url(self.base_url),
                "extra_body": self.extra_body}

    def __repr__(self) -> str:
        return (f"OpenAIChatClient(model={self.model!r}, base_url={redact_url(self.base_url)!r}, "
                f"api_key_env={self.api_key_env!r}, "
                f"timeout_s={self.timeout_s}, max_retries={self.max_retries}, max_concurrency={self.max_concurrency})")

    def __getstate__(self) -> dict:
        state = dict(self.__dict__)
        state.pop("_session", None)
        return state

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self._session = ContextVar(f"rlft_judge_session_{id(self)}", default=None)

    @contextlib.asynccontextmanager
    async def session(self) -> AsyncIterator[None]:
        if self._session.get() is not None:  # nested: reuse the outer session
            yield
            return
        from openai import AsyncOpenAI

        key = os.environ.get(self.api_key_env, "") if self.api_key_env else "not-needed"
        # httpcore scans every pooled connection on each request (O(pool) socket checks); at high concurrency
        # that scan dominates the client's CPU, so connections are spread over small pools of POOL_SIZE.
        shards = [AsyncOpenAI(api_key=key, base_url=self.base_url, max_retries=0, timeout=self.timeout_s)
                  for _ in range(-(-self.max_concurrency // POOL_SIZE))]
        token = self._session.set((itertools.cycle(shards), asyncio.Semaphore(self.max_concurrency)))
        try:
            yield
        finally:
            self._session.reset(token)
            for client in shards:
                await client.close()

    async def complete(self, messages: list[dict[str, str]], *, temperature: float, max_tokens: int,
                       seed: int | None = None) -> Reply:
        if self._session.get() is None:
            async with self.session():
                return await self.complete(messages, temperature=temperature, max_tokens=max_tokens, seed=seed)
        shards, semaphore = self._session.get()
        client = next(shards)
        body: dict[str, Any] = {**self.extra_body, "model": self.model, "messages": messages,
                                "temperature": temperature, "max_tokens": max_tokens}
        if seed is not None and self.send_seed:
            body["seed"] = seed
        async with semaphore:
            last: JudgeCallError | None = None
            for attempt in range(self.max_retries + 1):
                if not self.breaker.allow():
                    raise JudgeCallError(API_ERROR, "circuit breaker open (the endpoint kept failing)", attempt)
                delay: float | None = None
                try:
                    self.attempts += 1
                    response = await asyncio.wait_for(self._post(client, body), self.timeout_s)
                    reply = _reply_of(response)
                    self.breaker.success()
                    return reply
                except JudgeEndpointError:
                    raise
                except Exception as exc:  # classified below; anything unknown is an api_error, never a crash
                    last, retryable, delay = self._classify(exc, attempt + 1)
                    self.breaker.failure()
                    if not retryable:
                        raise last from None
                if attempt < self.max_retries:
                    if delay is None:
                        delay = backoff_delay(attempt, self.backoff_base_s, self.backoff_max_s)
                    await asyncio.sleep(min(delay, self.max_retry_after_s))
            raise last

    @staticmethod
    async def _post(client: Any, body: dict[str, Any]) -> Any:
        """POST /chat/completions through the SDK (auth, errors, JSON) with a plain dict body.

        `client.chat.completions.create` walks the request through the SDK's TypedDict transformer and builds a
        pydantic `ChatCompletion` from the reply: ~3 ms of CPU per request here, which capped a 2-core machine near
        100 judgments/s. The body is already plain JSON and we read two fields of the reply, so the SDK's
        lower-level `post` is used with a dict result (same request on the wire, same errors and auth).
        """
        return await client.post("/chat/completions", body=body, cast_to=dict,
                                 options={"security": {"bearer_auth": True}})

    def _classify(self, exc: Exception, attempts: int) -> tuple[JudgeCallError, bool, float | None]:
        """(error, retryable, server-requested delay)."""
        import openai

        if isinstance(exc, (asyncio.TimeoutError, openai.APITimeoutError)):
            return JudgeCallError(TIMEOUT, f"no reply within {self.timeout_s:g} s", attempts), True, None
        if isinstance(exc, openai.APIStatusError):
            code = exc.status_code
            if code in (401, 403, 404):
                where = redact_url(self.base_url) or "the OpenAI API"
                hint = f"check the key in ${self.api_key_env}" if code != 404 else "check params.model and base_url"
                raise JudgeEndpointError(f"judge: {where} answered HTTP {code} for model '{self.model}'; {hint}")
            if code == 429 or code >= 500:
                return JudgeCallError(API_ERROR, f"HTTP {code}", attempts), True, _retry_after(exc)
            return JudgeCallError(API_ERROR, f"HTTP {code}", attempts), False, None
        if isinstance(exc, openai.APIConnectionError):
            return JudgeCallError(API_ERROR, f"connection failed: {type(exc).__name__}", attempts), True, None
        # malformed JSON, a body that is not a chat completion, an empty choice list
        return JudgeCallError(API_ERROR, f"malformed reply: {type(exc).__name__}", attempts), True, None


def _reply_of(response: Any) -> Reply:
    """Text and token usage of a chat-completion JSON object; anything else is a malformed reply."""
    if not isinstance(response, dict):
        raise ValueError(f"reply is {type(response).__name__}, not a JSON object")
    choices = response.get("choices")
    if not isinstance(choices, list) or not choices or not isinstance(choices[0], dict):
        raise ValueError("reply has no choices")
    text = (choices[0].get("message") or {}).get("content")
    if not isinstance(text, str):
        raise ValueError("reply has no text content")
    usage = response.get("usage") or {}
    return Reply(text, int(usage.get("prompt_tokens") or 0), int(usage.get("completion_tokens") or 0))


class LocalChatClient(ChatClient):
    """A transformers causal LM in this process (small judges, offline runs). Same `complete()` as the HTTP client.

    `model` is anything `rlft.run.models` resolves: an embedded name (`smollm2-135m-instruct`), a local directory, a
    .gguf file or a hub id.

    Generation runs in a worker thread, one request at a time (a CPU model gains nothing from overlapping calls);
    `logit_bias` ({token_id: bias}, as in the OpenAI API) maps to transformers' `sequence_bias`.

    With `choices` (e.g. ["VERDICT: Accurate", "VERDICT: Inaccurate"]) the model does not generate: the reply is
    the choice with the highest log-likelihood as the assistant's answer. Small models rarely follow a verdict
    format when generating freely (SmolLM2-135M: 6 of 6 replies unparsable in our check); scoring the allowed
    answers always yields a valid verdict — how *good* that verdict is still depends on the model.
    """

    def __init__(self, model: str, device: str = "cpu", dtype: str = "float32", logit_bias: dict | None = None,
                 trust_remote_code: bool = False, choices: list[str] | None = None):
        self.model_path, self.device, self.dtype = model, device, dtype
        self.choices = list(choices) if choices else None
        self.logit_bias = {int(k): float(v) for k, v in (logit_bias or {}).items()}
        self.trust_remote_code = trust_remote_code
        self._lock = threading.Lock()
        self._loaded: tuple[Any, Any] | None = None

    def identity(self) -> dict[str, Any]:
        return {"backend": "local", "model": self.model_path, "logit_bias": self.logit_bias, "choices": self.choices}

    def __repr__(self) -> str:
        return f"LocalChatClient(model={self.model_path!r}, device={self.device!r}, dtype={self.dtype!r})"

    def __getstate__(self) -> dict:
        state = dict(self.__dict__)
        state["_lock"], state["_loaded"] = None, None
        return state

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self._lock = threading.Lock()

    def _load(self) -> tuple[Any, Any]:
        if self._loaded is None:
            import torch
            from transformers import AutoModelForCausalLM, AutoTokenizer

            from rlft.recipe.sections import ModelConfig
            from rlft.run.models import resolve_model_path

            path = resolve_model_path(ModelConfig(name=self.model_path))  # embedded names and .gguf files too
            tokenizer = AutoTokenizer.from_pretrained(path, trust_remote_code=self.trust_remote_code)
            model = AutoModelForCausalLM.from_pretrained(path, dtype=getattr(torch, self.dtype),
                                                         trust_remote_code=self.trust_remote_code)
            self._loaded = (model.to(self.device).eval(), tokenizer)
        return self._loaded

    def _generate(self, messages: list[dict[str, str]], temperature: float, max_tokens: int,
                  seed: int | None) -> Reply:
        import torch

        with self._lock:
            model, tokenizer = self._load()
            ids = tokenizer.apply_chat_template(messages, add_generation_prompt=True, return_tensors="pt",
                                                return_dict=True)["input_ids"].to(self.device)
            kwargs: dict[str, Any] = {"max_new_tokens": max_tokens, "do_sample": temperature > 0,
                                      "pad_token_id": tokenizer.pad_token_id or tokenizer.eos_token_id}
            if temperature > 0:
                kwargs["temperature"] = temperature
                torch.manual_seed(seed if seed is not None else 0)
            if self.logit_bias:
                kwargs["sequence_bias"] = {(k,): v for k, v in self.logit_bias.items()}
            with torch.inference_mode():
                out = model.generate(ids, **kwargs)
            new = out[0, ids.shape[1]:]
            text = tokenizer.decode(new, skip_special_tokens=True)
            return Reply(text, int(ids.shape[1]), int(new.shape[0]))

    def _choose(self, messages: list[dict[str, str]]) -> Reply:
        import torch

        with self._lock:
            model, tokenizer = self._load()
            prompt = tokenizer.apply_chat_template(messages, add_generation_prompt=True, return_tensors="pt",
                                                   return_dict=True)["input_ids"][0].tolist()
            options = [tokenizer.encode(c, add_special_tokens=False) for c in self.choices]
            width = len(prompt) + max(len(o) for o in options)
            pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
            ids = torch.full((len(options), width), pad, dtype=torch.long)
            mask = torch.zeros_like(ids)
            for row, option in enumerate(options):  # right-padded: positions of the prompt are shared
                seq = prompt + option
                ids[row, : len(seq)] = torch.tensor(seq)
                mask[row, : len(seq)] = 1
            with torch.inference_mode():
                logprobs = torch.log_softmax(model(input_ids=ids.to(self.device),
                                                   attention_mask=mask.to(self.device)).logits.float(), dim=-1)
            scores = []
            for row, option in enumerate(options):
                positions = range(len(prompt) - 1, len(prompt) - 1 + len(option))
                scores.append(sum(float(logprobs[row, p, t]) for p, t in zip(positions, option, strict=True)))
            best = max(range(len(options)), key=scores.__getitem__)
            return Reply(self.choices[best], len(prompt), len(options[best]))

    async def complete(self, messages: list[dict[str, str]], *, temperature: float, max_tokens: int,
                       seed: int | None = None) -> Reply:
        try:
            if self.choices:
                return await asyncio.to_thread(self._choose, messages)
            return await asyncio.to_thread(self._generate, messages, temperature, max_tokens, seed)
        except (RuntimeError, ValueError) as exc:  # e.g. a prompt longer than the model's context
            raise JudgeCallError(API_ERROR, f"local generation failed: {type(exc).__name__}: {exc}") from None
