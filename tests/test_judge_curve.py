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
    from rlft.trainers.rft.trainer import build_trainer

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
    assert parse_arm("rubric") == (None, 1, "", None)
    assert parse_arm("f0.2") == (0.2, 1, "binary", None) and parse_arm("f0.2k3") == (0.2, 3, "binary", None)
    assert parse_arm("f0") == (0.0, 1, "binary", None)
    assert parse_arm("f0.2s") == (0.2, 1, "score", None) and parse_arm("f0.2k3s") == (0.2, 3, "score", None)
    assert parse_arm("grpo_f0.1") == (0.1, 1, "binary", None) and parse_arm("grpo_rubric") == (None, 1, "", None)
    assert parse_arm("grpo_f0.2s") == (0.2, 1, "score", None)
    assert parse_arm("grpo_f0.2g0.25") == (0.2, 1, "binary", 0.25)  # gate: rubric, gate_min_score 0.25
    assert parse_arm("f0.2k3g1") == (0.2, 3, "binary", 1.0) and parse_arm("f0.1g0.5s") == (0.1, 1, "score", 0.5)
    for bad in ("f2", "f0.2k0", "k3", "judge", "rubrics", "f0.2ss", "f0.2sk3", "f0.2g0", "f0.2g1.5", "f0.2g",
                "f0.2g0.0", "f0.2sg0.5", "rubricg0.5"):
        with pytest.raises(SystemExit, match="expected 'rubric', 'f<rate>', 'f<rate>k<votes>'"):
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


def test_the_grpo_judge_arm_is_stage_2_with_only_the_referee_changed():
    """`--stage grpo` trains recipes/support_agent_bitext_judge.yaml: the shipped stage 2 with the judge in place of
    the rubric as the reply's reward (and in its segment credit), nothing else about the training changed."""
    import dataclasses

    from benchmarks.judge_curve import JUDGE_INDEX, STAGES
    from rlft.recipe.load import load_recipe

    rubric_path, judge_path = STAGES["grpo"]
    rubric, judge = load_recipe(str(rubric_path), []), load_recipe(str(judge_path), [])
    assert [r.name for r in judge.rewards] == ["intent", "rubric", "length", "judge"]
    assert judge.rewards[JUDGE_INDEX].weight == 1.0 and judge.rewards[JUDGE_INDEX].params["model"] == "simulated"
    assert [r.weight for r in judge.rewards[:3]] == [r.weight for r in rubric.rewards[:3]] == [1.0, 0.0, 0.5]
    assert rubric.rewards[3].alias == "rubric_chosen" and rubric.rewards[3].weight == 1.0
    assert rubric.signal.segment_credit == {"reply": ["rubric_chosen", "length"]}
    assert judge.signal.segment_credit == {"reply": ["judge", "length"]}
    same = ("algorithm", "seed", "model", "adapter", "data", "decoding", "trainer", "max_train_minutes")
    for field in same:
        assert getattr(judge, field) == getattr(rubric, field), field
    assert dataclasses.replace(judge.signal, segment_credit=None) == dataclasses.replace(rubric.signal,
                                                                                          segment_credit=None)
