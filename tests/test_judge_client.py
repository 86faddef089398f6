"""The judge reward against a real fault-injecting HTTP server on loopback (tests/judge_stub_server.py).

Failures map to statuses and abstain; retries, Retry-After, timeouts, the circuit breaker and the concurrency bound
behave; the cache makes a second identical run call the server 0 times; the API key reaches the server but never a
log, cache, audit file, repr or pickle; budgets and the error-rate bound stop a run with a clear error.
"""

import asyncio
import logging
import pickle
import subprocess
import sys
import time

import pytest

from rlft.judge import JudgeCache, JudgeEndpointError, LocalChatClient
from rlft.judge.budget import JudgeBudgetExceeded
from rlft.rewards.judge import JudgeErrorRateExceeded, JudgeReward
from tests.judge_stub_server import StubJudge, StubServer

GUIDE = "Mention the $4.99 cancellation fee."
GOOD, BAD = "Cancelled; a $4.99 fee applies.", "Your order is cancelled."


@pytest.fixture
def stub():
    s = StubJudge()
    with StubServer(s) as url:
        s.url = url
        yield s


def make(stub, **kw):
    params = dict(model="stub-judge", base_url=stub.url, api_key_env=None, guideline=GUIDE, cache=None, timeout_s=2,
                  max_retries=0, backoff_base_s=0.01)
    params.update(kw)
    return JudgeReward(**params)


def run(reward, completions, prompts=None, **columns):
    logged = {}
    prompts = prompts or [f"p{i}" for i in range(len(completions))]
    out = asyncio.run(reward(prompts, completions, log_metric=lambda k, v: logged.__setitem__(k, v), **columns))
    return out, logged


def test_each_fault_has_its_status_and_abstains(stub):
    stub.hang_s = 3
    stub.queue = ["500", "429", "hang", "malformed", "offmenu", None]
    reward = make(stub, timeout_s=0.5, max_concurrency=1)
    out, logged = run(reward, [f"{GOOD} {i}" for i in range(6)])
    assert out == [None, None, None, None, None, 1.0]
    assert reward.stats == {"api_error": 3, "timeout": 1, "parse_error": 1, "ok": 1}
    assert stub.requests == 6
    assert logged["judge/api_error_rate"] == pytest.approx(3 / 6)
    assert logged["judge/timeout_rate"] == pytest.approx(1 / 6)
    assert logged["judge/parse_error_rate"] == pytest.approx(1 / 6)
    assert logged["judge/abstain_rate"] == pytest.approx(5 / 6)


def test_retries_with_backoff_then_succeed(stub):
    stub.queue = ["500", "malformed"]
    reward = make(stub, max_retries=2)
    out, _ = run(reward, [GOOD])
    assert out == [1.0]
    assert stub.requests == 3 and reward.client.attempts == 3


def test_429_retry_after_is_honoured(stub):
    stub.retry_after_s = 0.6
    stub.queue = ["429"]
    reward = make(stub, max_retries=1)
    start = time.monotonic()
    out, _ = run(reward, [GOOD])
    assert out == [1.0]
    assert time.monotonic() - start >= 0.6
    assert stub.requests == 2


def test_hung_server_times_out_quickly(stub):
    stub.hang_s = 10
    stub.queue = ["hang"]
    reward = make(stub, timeout_s=0.3)
    start = time.monotonic()
    out, _ = run(reward, [GOOD])
    assert out == [None] and reward.stats["timeout"] == 1
    assert time.monotonic() - start < 3


def test_circuit_breaker_fails_fast_then_recovers(stub):
    stub.fault_rate, stub.fault_types = 1.0, ("500",)
    reward = make(stub, breaker_threshold=3, breaker_reset_s=0.5, max_concurrency=1)
    out, _ = run(reward, [f"{GOOD} {i}" for i in range(10)])
    assert out == [None] * 10
    assert stub.requests == 3  # the other 7 never reached the server
    assert reward.client.breaker.state == "open"
    stub.fault_rate = 0.0
    time.sleep(0.6)
    out, _ = run(reward, [GOOD])
    assert out == [1.0] and reward.client.breaker.state == "closed"


def test_concurrency_is_bounded(stub):
    stub.latency_s = 0.15
    reward = make(stub, max_concurrency=3)
    out, _ = run(reward, [f"{GOOD} {i}" for i in range(9)])
    assert out == [1.0] * 9
    assert stub.max_in_flight == 3


def test_duplicates_in_a_batch_are_judged_once(stub):
    reward = make(stub)
    out, _ = run(reward, [GOOD, BAD, GOOD, GOOD, BAD], prompts=["p"] * 5)
    assert out == [1.0, 0.0, 1.0, 1.0, 0.0]
    assert stub.requests == 2


def test_cache_second_identical_run_calls_server_zero_times(stub, tmp_path):
    cache = tmp_path / "judge.sqlite"
    first = make(stub, cache=str(cache))
    completions = [GOOD, BAD, f"{GOOD} thanks"]
    out1, _ = run(first, completions)
    assert stub.requests == 3
    second = make(stub, cache=str(cache))  # a new process would build exactly this object
    out2, logged = run(second, completions)
    assert out2 == out1 and stub.requests == 3
    assert logged["judge/cache_hit_rate"] == 1.0 and second.usage.requests == 0
    third = make(stub, cache=str(cache), guideline="Another policy.")  # the guideline is part of the key
    run(third, completions)
    assert stub.requests == 6


def test_failures_are_not_cached(stub, tmp_path):
    cache = tmp_path / "judge.sqlite"
    stub.queue = ["500"]
    out, _ = run(make(stub, cache=str(cache)), [GOOD])
    assert out == [None]
    out, _ = run(make(stub, cache=str(cache)), [GOOD])
    assert out == [1.0] and stub.requests == 2


def test_cache_is_safe_across_processes(tmp_path):
    path = tmp_path / "shared.sqlite"
    code = ("import sys; from rlft.judge.cache import JudgeCache; c = JudgeCache(sys.argv[1]); "
            "[c.put(f'{sys.argv[2]}-{i}', 'VERDICT: Accurate', 10, 2) for i in range(150)]")
    procs = [subprocess.Popen([sys.executable, "-c", code, str(path), tag]) for tag in ("a", "b", "c")]
    assert [p.wait(timeout=60) for p in procs] == [0, 0, 0]
    cache = JudgeCache(path)
    assert len(cache) == 450 and cache.get("b-149") == ("VERDICT: Accurate", 10, 2)


def test_api_key_reaches_server_but_never_logs_files_or_reprs(stub, tmp_path, monkeypatch, caplog):
    secret = "sk-test-DO-NOT-LEAK-8f3a"
    monkeypatch.setenv("RLFT_TEST_JUDGE_KEY", secret)
    caplog.set_level(logging.DEBUG)  # the SDK and httpx log requests at DEBUG
    cache, audit = tmp_path / "c.sqlite", tmp_path / "audit.jsonl"
    stub.queue = ["500"]
    reward = make(stub, api_key_env="RLFT_TEST_JUDGE_KEY", cache=str(cache), audit_path=str(audit))
    out, _ = run(reward, [GOOD, BAD])
    assert None in out  # a failure was logged too
    assert stub.auth_headers and all(h == f"Bearer {secret}" for h in stub.auth_headers)
    assert secret not in caplog.text
    assert secret not in repr(reward) and secret not in repr(reward.client)
    assert secret.encode() not in pickle.dumps(reward)
    for f in tmp_path.iterdir():
        assert secret.encode() not in f.read_bytes(), f.name


def test_missing_key_variable_and_rejected_key_are_user_errors(stub, monkeypatch):
    monkeypatch.delenv("RLFT_TEST_MISSING_KEY", raising=False)
    with pytest.raises(JudgeEndpointError, match="RLFT_TEST_MISSING_KEY"):
        make(stub, api_key_env="RLFT_TEST_MISSING_KEY")
    stub.queue = ["401"]
    with pytest.raises(JudgeEndpointError, match="HTTP 401"):
        run(make(stub), [GOOD])


def test_cost_budget_stops_the_run_and_cache_hits_are_free(stub, tmp_path):
    cache = str(tmp_path / "c.sqlite")
    reward = make(stub, cache=cache, price_input_per_mtok=1000.0, budget_usd=0.2, max_concurrency=1)
    with pytest.raises(JudgeBudgetExceeded, match=r"budget_usd=0.2\b.*params.budget_usd"):
        for i in range(20):
            run(reward, [f"{GOOD} {i}"])
    spent = stub.requests
    assert 1 <= spent < 20
    again = make(stub, cache=cache, price_input_per_mtok=1000.0, budget_usd=0.2)
    run(again, [f"{GOOD} 0"])  # judged before: answered by the cache, costs nothing
    assert stub.requests == spent and again.usage.cost_usd == 0.0


def test_token_budget(stub):
    reward = make(stub, budget_tokens=1)
    run(reward, [GOOD])
    with pytest.raises(JudgeBudgetExceeded, match=r"budget_tokens=1\b.*params.budget_tokens"):
        run(reward, [BAD])


def test_error_rate_bound_stops_the_run(stub):
    stub.fault_rate, stub.fault_types = 1.0, ("500",)
    reward = make(stub, max_error_rate=0.3, min_error_samples=10, breaker_threshold=0)
    run(reward, [f"reply number {i}" for i in range(5)])  # 5 failures: below min_error_samples, keep going
    with pytest.raises(JudgeErrorRateExceeded, match="max_error_rate=0.3"):
        run(reward, [f"another reply {i}" for i in range(5)])


def test_drop_group_discards_the_whole_group(stub):
    stub.queue = [None, "500"]
    reward = make(stub, on_failure="drop_group", max_concurrency=1)
    prompts = ["g1"] * 3 + ["g2"] * 3
    out, _ = run(reward, [f"{GOOD} {i}" for i in range(6)], prompts=prompts)
    assert out == [None, None, None, 1.0, 1.0, 1.0]
    assert reward.stats["dropped"] == 2


def test_retry_policy_asks_again_with_a_fresh_seed(stub):
    stub.queue = ["offmenu"]
    reward = make(stub, on_failure="retry", failure_retries=1)
    out, _ = run(reward, [GOOD])
    assert out == [1.0] and stub.requests == 2
    assert stub.bodies[-1]["seed"] == 1000 and "seed" not in stub.bodies[0]


def test_votes_majority_and_agreement(stub):
    def by_seed(body):  # seeds 0, 1, 2 -> Accurate, Accurate, Inaccurate
        return "VERDICT: Inaccurate" if body.get("seed") == 2 else "VERDICT: Accurate"

    stub.responder = by_seed
    reward = make(stub, votes=3)
    out, logged = run(reward, [GOOD])
    assert out == [1.0] and stub.requests == 3
    assert logged["judge/agreement"] == pytest.approx(2 / 3)
    assert sorted(b["seed"] for b in stub.bodies) == [0, 1, 2]
    assert {b["temperature"] for b in stub.bodies} == {0.7}


def test_score_mode_maps_to_unit_interval(stub):
    reward = make(stub, mode="score")
    out, _ = run(reward, [GOOD, BAD])
    assert out == [pytest.approx(8 / 9), pytest.approx(1 / 9)]


def test_pairwise_both_orders_cancel_position_bias(stub):
    reward = make(stub, mode="pairwise", reference_column="reference")
    stub.responder = lambda body: "VERDICT: A"  # a judge that always prefers the first response
    out, _ = run(reward, [GOOD], reference=[BAD])
    assert out == [0.5] and stub.requests == 2

    def fee_wins(body):
        text = body["messages"][-1]["content"]
        a = text.split("<response_a>")[1].split("</response_a>")[0]
        return "VERDICT: A" if "$4.99" in a else "VERDICT: B"

    stub.responder = fee_wins
    out, _ = run(reward, [GOOD, BAD], reference=[BAD, GOOD])
    assert out == [1.0, 0.0]


def test_per_intent_policies_select_the_guideline(stub):
    reward = make(stub, guideline=None, policies={"cancel_order": "fee policy", "track_order": "number policy"})
    run(reward, [GOOD, GOOD], intent=["cancel_order", "Track Order"])
    policies = [b["messages"][-1]["content"].split("<policy>\n")[1].split("\n</policy>")[0] for b in stub.bodies]
    assert sorted(policies) == ["fee policy", "number policy"]
    assert reward.columns == ("intent",)


def test_local_backend_same_interface(tiny_model_dir):
    """The in-process transformers judge: a tiny random model steered by logit_bias to answer ' Accurate'."""
    from transformers import AutoTokenizer

    token = AutoTokenizer.from_pretrained(tiny_model_dir).encode(" Accurate", add_special_tokens=False)
    assert len(token) == 1
    reward = JudgeReward(model=str(tiny_model_dir), backend="local", guideline=GUIDE, cache=None, max_tokens=1,
                         extra_body={"logit_bias": {token[0]: 100.0}})
    assert isinstance(reward.client, LocalChatClient)
    out, logged = run(reward, [GOOD, BAD])
    assert out == [1.0, 1.0]
    assert logged["judge/tokens"] > 0


def test_local_constrained_judge_always_returns_a_valid_verdict(tiny_model_dir):
    """constrained: the local model scores the allowed verdict lines instead of generating: never a parse error."""
    binary = JudgeReward(model=str(tiny_model_dir), backend="local", constrained=True, guideline=GUIDE, cache=None)
    out, logged = run(binary, [GOOD, BAD, "something else entirely"])
    assert all(v in (0.0, 1.0) for v in out) and logged["judge/ok_rate"] == 1.0
    score = JudgeReward(model=str(tiny_model_dir), backend="local", constrained=True, mode="score", scale=[1, 5],
                        guideline=GUIDE, cache=None)
    out, _ = run(score, [GOOD, BAD])
    assert all(v in (0.0, 0.25, 0.5, 0.75, 1.0) for v in out)
    with pytest.raises(ValueError, match="backend: local"):
        JudgeReward(model="x", base_url="http://127.0.0.1:9/v1", api_key_env=None, constrained=True, guideline=GUIDE)


def test_budget_soft_stop_with_the_trainer_callback(stub):
    """on_limit: stop + callback registered: no exception; unjudged samples abstain, training is told to stop."""
    from transformers import TrainerControl

    reward = make(stub, budget_tokens=1, max_concurrency=1)
    callback, control = reward.trainer_callback(), TrainerControl()
    callback.on_train_begin(None, None, control)
    out, logged = run(reward, [GOOD])  # the first request spends the budget
    assert out == [1.0] and reward.stop_reason is None
    callback.on_step_end(None, None, control)
    assert not control.should_training_stop
    out, logged = run(reward, [GOOD + " again", BAD])
    assert out == [None, None] and logged["judge/stopped_rate"] == 1.0 and stub.requests == 1
    assert "budget_tokens=1" in reward.stop_reason
    callback.on_step_end(None, None, control)
    assert control.should_training_stop


def test_error_rate_soft_stop(stub):
    from transformers import TrainerControl

    stub.fault_rate, stub.fault_types = 1.0, ("500",)
    reward = make(stub, max_error_rate=0.3, min_error_samples=4, breaker_threshold=0)
    reward.trainer_callback().on_train_begin(None, None, TrainerControl())
    run(reward, [f"reply number {i}" for i in range(5)])
    assert "max_error_rate=0.3" in reward.stop_reason
    requests = stub.requests
    out, _ = run(reward, ["one more reply"])
    assert out == [None] and stub.requests == requests  # nothing more is sent once stopping
