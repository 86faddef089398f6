"""The judge-quality curve (benchmarks/judge_curve.py, issue 31): a rejection-sampling round keeps what the JUDGE
passes, served for real by the simulated judge over HTTP, and the curve's arm names and kappa are read exactly."""

from __future__ import annotations

import json

import pytest

from benchmarks.judge_curve import kappa, parse_arm
from benchmarks.simulated_judge import simulated_stub
from rlft.recipe.sections import RFTConfig
from tests.judge_stub_server import StubServer
from tests.test_lookup import articles_file, decoding  # noqa: F401
from tests.test_rft import _rft_context


def test_a_round_keeps_what_the_judge_passes_not_what_the_rubric_passes(tiny_model_dir, tmp_path, decoding):
    from rewards.judge import JudgeReward
    from rewards.rubric import RubricReward
    from rlft.trainers.rft import build_trainer

    stub = simulated_stub(flip_rate=1.0)  # every verdict the opposite of the rubric's
    with StubServer(stub) as url:
        judge_reward = JudgeReward(model="simulated", base_url=url, api_key_env=None, policies="demo", min_words=0,
                                   max_words=None, injection_guard=False, max_retries=0, breaker_threshold=0,
                                   cache=str(tmp_path / "judge_cache.sqlite"))
        rubric_reward = RubricReward(policies="demo")

        async def judge(prompts, completions, **kwargs):
            return await judge_reward(prompts, completions, **kwargs)

        def rubric(prompts, completions, **kwargs):
            return rubric_reward(prompts, completions, **kwargs)

        ctx, _ = _rft_context(tiny_model_dir, tmp_path, decoding, [judge, rubric],
                              RFTConfig(prompts=6, samples=2, min_reward=1.0), weights=[1.0, 0.0])
        build_trainer(ctx)
        counts = stub.responder.stats()
    lines = [json.loads(line) for line in (tmp_path / "out" / "rft_samples.jsonl").read_text().splitlines()]
    summary = json.loads((tmp_path / "out" / "rft_summary.json").read_text())
    assert summary["kept"] == len(lines) == 6  # the random model fails every rubric: the flipped judge passes them
    assert all(k["rewards"]["judge"] == 1.0 and k["rewards"]["rubric"] < 1.0 for k in lines)
    assert counts["judged"] == counts["flipped"] == counts["verdicts"]["Accurate"] > 0
    assert counts["judged"] <= summary["completions"]  # one request per distinct completion (the cache)


def test_arm_names():
    assert parse_arm("rubric") == (None, 1)
    assert parse_arm("f0.2") == (0.2, 1) and parse_arm("f0.2k3") == (0.2, 3) and parse_arm("f0") == (0.0, 1)
    for bad in ("f2", "f0.2k0", "k3", "judge"):
        with pytest.raises(SystemExit, match="expected 'rubric', 'f<rate>' or 'f<rate>k<votes>'"):
            parse_arm(bad)


def test_kappa_from_the_servers_counts():
    # 100 judgments, the rubric passes 50; the judge agrees on 80 and says Accurate 50 times: kappa = (0.8-0.5)/0.5
    stats = {"responder": {"judged": 100, "agree": 80, "truths": {"Accurate": 50, "Inaccurate": 50},
                           "verdicts": {"Accurate": 50, "Inaccurate": 50}}}
    assert kappa(stats) == pytest.approx((0.8, 0.6))
    # a judge that always says Accurate agrees by chance only: kappa 0
    always = {"responder": {"judged": 10, "agree": 7, "truths": {"Accurate": 7, "Inaccurate": 3},
                            "verdicts": {"Accurate": 10}}}
    assert kappa(always) == pytest.approx((0.7, 0.0))
    assert kappa({"responder": {"judged": 0}}) == (None, None)
