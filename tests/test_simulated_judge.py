"""The SIMULATED judge (benchmarks/simulated_judge.py), served for real and asked through the real judge reward.

Its verdicts must be exactly the rubric's at flip rate 0, flipped at the set rate otherwise (counted by the server
and seen in the rewards), independently per request (k votes disagree), after the set latency, in parallel up to
the reward's `max_concurrency`; requests it cannot judge must abstain. Every request goes through `JudgeReward`:
template rendering, the openai SDK over HTTP on 127.0.0.1, parsing, accounting.
"""

from __future__ import annotations

import asyncio
import json
import math
import os
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import openai
import pytest

from benchmarks.simulated_judge import (MODEL_NAME, expected_kappa, flip_rate_for_kappa, majority_error,
                                        simulated_stub)
from rlft.report.metrics import cohen_kappa
from rlft.rewards.judge import JudgeReward
from rlft.rewards.rubric import RubricReward
from tests.judge_stub_server import StubServer

ROOT = Path(__file__).resolve().parents[1]
ITEMS = ["kettle", "lamp", "jacket", "router", "camera"]


def samples(n: int) -> tuple[list, list[str], list[str]]:
    """n distinct (prompt, completion, intent) rows; by construction rows 4k and 4k+2 pass the demo rubric, 4k+1
    meets half of cancel_order's requirements (score 0.5) and 4k+3 blames the customer (a must_not: score 0)."""
    prompts, completions, intents = [], [], []
    for i in range(n):
        item = ITEMS[i % len(ITEMS)]
        if i % 4 < 2:
            prompts.append([{"role": "user", "content": f"please cancel the {item} I ordered, I changed my mind"}])
            intents.append("cancel_order")
            fee = " Please note the $4.99 cancellation fee." if i % 4 == 0 else ""
            completions.append(f"<intent>cancel_order</intent> I can cancel the {item} for you.{fee} "
                               f"What is your order number? (ref {i})")
        else:
            prompts.append([{"role": "user", "content": f"my {item} arrived broken and nobody answers my emails"}])
            intents.append("complaint")
            completions.append(
                f"<intent>complaint</intent> I am so sorry about the {item}. I have opened a ticket and a specialist "
                f"will contact you today. (ref {i})" if i % 4 == 2 else
                f"<intent>complaint</intent> I am sorry, but this is your fault: you should have read the manual "
                f"of the {item}. (ref {i})")
    return prompts, completions, intents


def judge_reward(url: str, **params) -> JudgeReward:
    return JudgeReward(**{"model": "whatever-the-recipe-says", "base_url": url, "api_key_env": None,
                          "policies": "demo", "cache": None, "max_retries": 0, "timeout_s": 30, **params})


def rubric_scores(prompts, completions, intents) -> list[float | None]:
    return RubricReward(policies="demo")(prompts, completions, intent=intents)


def test_flip_rate_zero_gives_exactly_the_rubric_verdicts():
    prompts, completions, intents = samples(80)
    truth = rubric_scores(prompts, completions, intents)
    assert [truth.count(v) for v in (1.0, 0.5, 0.0)] == [40, 20, 20]  # both verdicts occur, and a partial score
    stub = simulated_stub(flip_rate=0.0, seed=5)
    with StubServer(stub) as url:
        binary = asyncio.run(judge_reward(url)(prompts, completions, intent=intents))
        score = asyncio.run(judge_reward(url, mode="score")(prompts, completions, intent=intents))
        # a plain SDK request sees the simulated judge's own name, whatever model it asked for
        row0 = next(b for b in stub.bodies[:80] if "(ref 0)" in b["messages"][-1]["content"])  # binary, a pass
        reply = openai.OpenAI(base_url=url, api_key="unused", max_retries=0).chat.completions.create(
            model="gpt-4o-mini", messages=row0["messages"], temperature=0)
    assert binary == [1.0 if t == 1.0 else 0.0 for t in truth]
    # score mode: the rubric's score on the 1..10 scale, rounded (0.5 -> 5.5 -> 6), read back as (n - 1) / 9
    assert score == [(math.floor(1 + 9 * t + 0.5) - 1) / 9 for t in truth]
    assert reply.model == MODEL_NAME == "SIMULATED-rubric-judge"
    assert reply.choices[0].message.content.splitlines()[-1] == "VERDICT: Accurate"
    stats = stub.responder.stats()
    assert stub.requests == 161 and stats["judged"] == 161 and stats["flipped"] == 0 and stats["agree"] == 161


def test_flip_rate_is_what_it_is_set_to():
    """400 distinct judgments at flip rate 0.2: the rewards disagree with the rubric exactly where the server says it
    flipped, and that count is within 4 binomial standard deviations of 80. Cohen's kappa follows."""
    prompts, completions, intents = samples(400)
    truth = [1.0 if t == 1.0 else 0.0 for t in rubric_scores(prompts, completions, intents)]
    stub = simulated_stub(flip_rate=0.2, seed=11)
    with StubServer(stub) as url:
        got = asyncio.run(judge_reward(url, max_concurrency=32)(prompts, completions, intent=intents))
    assert None not in got and stub.requests == 400
    disagree = sum(g != t for g, t in zip(got, truth, strict=True))
    stats = stub.responder.stats()
    assert stats["flipped"] == disagree == 400 - stats["agree"]
    sd = math.sqrt(400 * 0.2 * 0.8)
    assert abs(disagree - 80) <= 4 * sd, disagree
    kappa = cohen_kappa([str(g) for g in got], [str(t) for t in truth])["kappa"]
    assert expected_kappa(0.2, 0.5) == pytest.approx(0.6)
    assert abs(kappa - 0.6) <= 0.16, kappa
    assert flip_rate_for_kappa(0.6, 0.5) == pytest.approx(0.2, abs=1e-9)


def test_votes_draw_independent_flips(tmp_path):
    """k = 3 votes ask three requests per sample (different seeds): each flips on its own, so the votes of a sample
    disagree, and the majority is wrong at 3f^2 - 2f^3 (f = 0.3: 0.216), not at f."""
    prompts, completions, intents = samples(200)
    truth = ["Accurate" if t == 1.0 else "Inaccurate" for t in rubric_scores(prompts, completions, intents)]
    stub = simulated_stub(flip_rate=0.3, seed=2)
    audit = tmp_path / "audit.jsonl"
    with StubServer(stub) as url:
        reward = judge_reward(url, votes=3, max_concurrency=32, audit_path=str(audit))
        got = asyncio.run(reward(prompts, completions, intent=intents))
    assert stub.requests == 600 and reward.usage.requests == 600
    assert sorted({b["seed"] for b in stub.bodies}) == [0, 1, 2] and all(b["temperature"] > 0 for b in stub.bodies)
    flipped = stub.responder.stats()["flipped"]
    assert abs(flipped - 180) <= 4 * math.sqrt(600 * 0.3 * 0.7), flipped
    rows = [json.loads(line) for line in audit.read_text().splitlines()]
    wrong_votes = [sum(v != t for v in row["votes"]) for row, t in zip(rows, truth, strict=True)]
    assert sum(wrong_votes) == flipped  # every flipped request is one wrong vote of one sample
    # the majority is wrong exactly where 2 or 3 of the 3 votes were flipped
    assert [(g == 1.0) != (t == "Accurate") for g, t in zip(got, truth, strict=True)] == [w >= 2 for w in wrong_votes]
    wrong = sum(w >= 2 for w in wrong_votes)
    assert majority_error(0.3, 3) == pytest.approx(0.216)
    assert abs(wrong - 43.2) <= 4 * math.sqrt(200 * 0.216 * 0.784), wrong
    # independent draws: split votes (1 or 2 flipped of 3) are the common case, 3f(1-f) = 63 % of samples
    split = sum(w in (1, 2) for w in wrong_votes)
    assert abs(split - 126) <= 4 * math.sqrt(200 * 0.63 * 0.37), split


def test_latency_and_concurrency_are_real():
    """Every reply waits latency_ms; the reward's max_concurrency bounds the requests in flight at the server."""
    prompts, completions, intents = samples(8)
    stub = simulated_stub(latency_ms=1000)
    with StubServer(stub) as url:
        start = time.perf_counter()
        asyncio.run(judge_reward(url, max_concurrency=8)(prompts, completions, intent=intents))
        concurrent = time.perf_counter() - start
        assert stub.max_in_flight == 8 and stub.requests == 8
        stub.latency_s, stub.max_in_flight = 0.25, 0
        start = time.perf_counter()
        asyncio.run(judge_reward(url, max_concurrency=1)(prompts[:4], completions[:4], intent=intents[:4]))
        sequential = time.perf_counter() - start
    assert stub.max_in_flight == 1 and stub.requests == 12
    assert concurrent >= 1.0 and sequential >= 4 * 0.25


def test_what_it_cannot_judge_abstains():
    """A policy the server does not know (not in its policy file) gets an unparsable reply: parse_error, abstain."""
    prompts, completions, intents = samples(4)
    stub = simulated_stub(flip_rate=0.0)
    with StubServer(stub) as url:
        reward = judge_reward(url, policies=None, guideline="Be polite and concrete.")
        got = asyncio.run(reward(prompts, completions, intent=intents))
    assert got == [None] * 4
    assert reward.judge.counts["parse_error"] == 4 and stub.requests == 4
    assert stub.responder.stats()["unjudgeable"] == {"unknown_policy": 4}


def test_runs_as_a_script(tmp_path):
    """`python -m benchmarks.simulated_judge --port --flip-rate --latency-ms --seed` serves on 127.0.0.1."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "benchmarks.simulated_judge", "--port", str(port),
                             "--flip-rate", "1.0", "--latency-ms", "50", "--seed", "3"], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        banner = json.loads(proc.stdout.readline())
        assert banner["model"] == MODEL_NAME and banner["flip_rate"] == 1.0 and banner["latency_ms"] == 50
        deadline = time.time() + 60
        while True:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2).read()
                break
            except OSError:
                assert time.time() < deadline and proc.poll() is None, "server did not start"
                time.sleep(0.2)
        prompts, completions, intents = samples(8)
        truth = [1.0 if t == 1.0 else 0.0 for t in rubric_scores(prompts, completions, intents)]
        got = asyncio.run(judge_reward(banner["url"])(prompts, completions, intent=intents))
        assert got == [1.0 - t for t in truth]  # flip rate 1.0: every verdict is the other one
        stats = json.loads(urllib.request.urlopen(f"http://127.0.0.1:{port}/stats", timeout=5).read())
        assert stats["requests"] == 8
        assert stats["responder"]["flipped"] == 8 and stats["responder"]["seed"] == 3
    finally:
        proc.terminate()
        proc.wait(timeout=10)
