"""Two 2-step GRPO runs (rlft.train, tiny random Llama + LoRA) judged by the SIMULATED judge over HTTP.

Run A injects one off-menu reply and one HTTP 500; run B repeats A's recipe on A's judge cache. Checked exactly,
from the server's counters, the audit log and the trainer's logged metrics: requests, abstentions (length skips,
parse errors, API errors), cache hits, tokens and cost; every verdict is the rubric's or its flip; and the reward
runs on TRL's async path (an `async def` reward awaited on the trainer's daemon event loop, its judge calls in
flight together).
"""

from __future__ import annotations

import asyncio
import json
import threading
from collections import Counter

import pytest

import rlft
from benchmarks.simulated_judge import simulated_stub
from rlft.rewards.judge import JudgeReward
from rlft.rewards.rubric import RubricReward
from tests.judge_stub_server import StubServer

JUDGED = ("ok", "parse_error", "api_error", "timeout")
PRICE_IN, PRICE_OUT = 1.0, 4.0  # USD per million tokens


def recipe_text(out, model_dir, url, cache, audit) -> str:
    return f"""algorithm: grpo
output_dir: {out}
model: {{name: {model_dir}}}
adapter: {{type: lora, r: 4, alpha: 8}}
data: {{source: "demo:intents", demo_size: 40, system_prompt: "Answer the customer."}}
rewards:
  - name: judge
    params:
      model: simulated
      base_url: {url}
      api_key_env: null
      policies: demo            # the policy of each row's gold intent; the server grades with its rubric
      cache: {cache}
      audit_path: {audit}
      keep_rationale: true      # the simulated judge says in its rationale when it flipped
      injection_guard: false    # random-model text must reach the judge
      min_words: 5              # shorter completions are skipped: they abstain (skip_value null)
      max_retries: 0            # one request per judgment, so faults map to statuses one to one
      breaker_threshold: 0
      max_concurrency: 16
      price_input_per_mtok: {PRICE_IN}
      price_output_per_mtok: {PRICE_OUT}
      budget_usd: 5.0
trainer: {{max_steps: 2, per_device_train_batch_size: 8, num_generations: 4, max_completion_length: 8,
          learning_rate: 0.05, beta: 0.0}}
evaluation: {{before: false, after: false}}
"""


def judge_logs(result) -> list[dict]:
    return [h for h in result.metrics["log_history"] if "judge/requests" in h]


def distinct(rows, statuses=JUDGED) -> dict:
    """One judgment per (batch, prompt, completion): identical completions in a batch are judged once."""
    return {(r["batch"], r["prompt"], r["completion"]): r for r in rows if r["status"] in statuses}


@pytest.fixture
def spy(monkeypatch):
    """Records where each reward call runs; the real JudgeReward.__call__ does the work."""
    calls = []
    original = JudgeReward.__call__

    async def recording(self, *args, **kwargs):
        calls.append({"reward": self, "thread": threading.current_thread(), "loop": asyncio.get_running_loop()})
        return await original(self, *args, **kwargs)

    monkeypatch.setattr(JudgeReward, "__call__", recording)
    return calls


def test_grpo_with_the_simulated_judge_counts_exactly(tiny_model_dir, write_recipe, tmp_path, spy, one_torch_thread):
    stub = simulated_stub(flip_rate=0.3, latency_ms=100, seed=1)
    stub.queue = ["offmenu", "500"]  # run A's first two requests (step 1): one parse error, one API error
    cache = tmp_path / "judge.sqlite"
    audit_a, audit_b = tmp_path / "audit_a.jsonl", tmp_path / "audit_b.jsonl"
    with StubServer(stub) as url:
        result_a = rlft.train(write_recipe(recipe_text(tmp_path / "a", tiny_model_dir, url, cache, audit_a), "a.yaml"))
        requests_a, in_flight_a = stub.requests, stub.max_in_flight
        flipped_a = stub.responder.stats()["flipped"]
        result_b = rlft.train(write_recipe(recipe_text(tmp_path / "b", tiny_model_dir, url, cache, audit_b), "b.yaml"))
        requests_b = stub.requests - requests_a

    # ---- the async path: TRL awaited the async reward on its daemon event-loop thread, one loop for the run
    assert result_a.metrics["global_step"] == result_b.metrics["global_step"] == 2
    assert len(spy) == 4
    for run in (spy[:2], spy[2:]):
        assert run[0]["reward"] is run[1]["reward"] and run[0]["loop"] is run[1]["loop"]
        assert run[0]["thread"] is run[1]["thread"] and run[0]["thread"].daemon
        assert run[0]["thread"] is not threading.main_thread()
    assert in_flight_a >= 2  # the judgments of one step were in flight together (100 ms each)
    reward_a, reward_b = spy[0]["reward"], spy[2]["reward"]

    # ---- run A: requests, abstentions, statuses, tokens and cost, exactly
    rows_a = [json.loads(line) for line in audit_a.read_text().splitlines()]
    assert len(rows_a) == 2 * 8
    statuses = Counter(r["status"] for r in rows_a)
    assert statuses["skipped"] > 0 and statuses["ok"] > 0  # both the cascade and the judge decided some rows
    judged_a = distinct(rows_a)
    assert stub.faults == {"offmenu": 1, "500": 1}
    assert Counter(r["status"] for r in judged_a.values()) == {"ok": len(judged_a) - 2, "parse_error": 1,
                                                                 "api_error": 1}
    assert requests_a == len(judged_a)  # one HTTP request per distinct judged completion, none from the cache
    assert all(not r["cached"] for r in rows_a)
    assert all((r["reward"] is None) == (r["status"] != "ok") for r in rows_a)  # skipped and failed rows abstain
    logs_a = judge_logs(result_a)
    assert len(logs_a) == 2
    for batch, log in enumerate(logs_a, start=1):
        abstained = sum(r["reward"] is None for r in rows_a if r["batch"] == batch)
        assert round(log["judge/abstain_rate"] * 8) == abstained
        skipped = sum(r["status"] == "skipped" for r in rows_a if r["batch"] == batch)
        assert round(log["judge/skipped_rate"] * 8) == skipped
    u = reward_a.usage
    # the 500 got no reply to charge; every other request did (the off-menu reply has a usage too)
    assert logs_a[-1]["judge/requests"] == u.requests == requests_a - 1 and u.cache_hits == 0
    assert logs_a[-1]["judge/tokens"] == u.total_tokens > 0
    assert logs_a[-1]["judge/cost_usd"] == pytest.approx((u.prompt_tokens * PRICE_IN + u.completion_tokens * PRICE_OUT)
                                                         / 1e6, rel=1e-6)
    assert logs_a[-1]["judge/cache_hit_rate"] == 0.0

    # ---- every verdict is the rubric's for the gold intent, or its flip, as the server counted
    rubric = RubricReward(policies="demo")
    flips = 0
    for r in judged_a.values():
        if r["status"] != "ok":
            continue
        passed = rubric.check([{"role": "user", "content": r["prompt"]}], r["completion"], r["policy_key"]).passed
        flipped = "flipped by the simulation" in r["rationale"]
        flips += flipped
        assert r["reward"] == float(passed != flipped)
    assert flips == flipped_a

    # ---- run B on A's cache: the same first batch; only A's failed judgments are asked again
    rows_b = [json.loads(line) for line in audit_b.read_text().splitlines()]
    first_a = [(r["prompt"], r["completion"]) for r in rows_a if r["batch"] == 1]
    assert [(r["prompt"], r["completion"]) for r in rows_b if r["batch"] == 1] == first_a
    failed_first = {k for k, r in judged_a.items() if k[0] == 1 and r["status"] != "ok"}
    judged_b = distinct(rows_b)
    first_b = {k: r for k, r in judged_b.items() if k[0] == 1}
    assert {k for k, r in first_b.items() if not r["cached"]} == failed_first
    logs_b = judge_logs(result_b)
    assert logs_b[0]["judge/requests"] == len(failed_first) == 2
    hits = sum(r["cached"] for r in judged_b.values())
    misses = len(judged_b) - hits
    assert hits >= len(first_b) - 2 > 0
    assert reward_b.usage.cache_hits == hits and reward_b.usage.requests == misses == requests_b
    assert logs_b[-1]["judge/requests"] == requests_b
    assert logs_b[-1]["judge/cache_hit_rate"] == pytest.approx(hits / (hits + misses), rel=1e-6)
    assert all(r["status"] == "ok" for r in judged_b.values())  # no faults queued for B
    assert all((r["reward"] is None) == (r["status"] == "skipped") for r in rows_b)
    # cached verdicts are A's verdicts; new ones were flipped by the server at its rate, and counted
    verdict_a = {(r["prompt"], r["completion"]): r["reward"] for r in judged_a.values() if r["status"] == "ok"}
    assert all(verdict_a[(r["prompt"], r["completion"])] == r["reward"] for r in judged_b.values() if r["cached"])
    new_flips = sum("flipped by the simulation" in r["rationale"] for r in judged_b.values() if not r["cached"])
    assert flipped_a + new_flips == stub.responder.stats()["flipped"]
