"""benchmarks/judge_signal.py (issue 31): one set of rollouts scored by many referees, the judge arms through the
real JudgeReward and the simulated judge on loopback; the signal measures are exact on crafted rollouts."""

from __future__ import annotations

import json

import pytest

from benchmarks.judge_signal import arm_row, group_advantages, judge_params, main, read_records, signal
from rlft.rewards.rubric import RubricReward

CANCEL = [
    "<intent>cancel_order</intent> There is a $4.99 cancellation fee. What is your order number?",  # passes
    "<intent>cancel_order</intent> There is a $4.99 cancellation fee for this order.",  # half: no question
    "<intent>cancel_order</intent> Sure, I have cancelled your order for you now.",  # nothing met
    "<intent>cancel_order</intent> Okay, your order will be cancelled very soon.",  # nothing met
]
TRACK = [
    "<intent>track_order</intent> Could you tell me your order number, please? You can see it under Account > "
    "Orders.",
    "<intent>track_order</intent> It is on its way and should arrive soon.",
    "<intent>track_order</intent> It is on its way and should arrive soon.",
    "<intent>track_order</intent> It is on its way and should arrive soon.",
]


def _record(intent: str, completions: list[str], prompt: str) -> dict:
    chat = [{"role": "system", "content": "You are the agent."}, {"role": "user", "content": prompt}]
    truth = RubricReward(policies="demo")([chat] * 4, completions, intent=[intent] * 4)
    return {"key": prompt, "prompt": chat, "columns": {"intent": intent}, "completions": completions,
            "scores": {"rubric": truth, "rubric_chosen": truth, "length": [0.0] * 4}, "total": truth}


@pytest.fixture
def records(tmp_path):
    recs = [_record("cancel_order", CANCEL, "please cancel my order"), _record("track_order", TRACK, "where is it")]
    (tmp_path / "records.jsonl").write_text("".join(json.dumps(r) + "\n" for r in recs))
    return tmp_path, recs


def test_the_crafted_rollouts_are_what_the_comments_say(records):
    _, recs = records
    assert recs[0]["scores"]["rubric"] == [1.0, 0.5, 0.0, 0.0]
    assert recs[1]["scores"]["rubric"][1:] == [0.0, 0.0, 0.0] and recs[1]["scores"]["rubric"][0] > 0


def test_a_judge_that_never_flips_gives_no_false_credit(records):
    _, recs = records
    row = arm_row("f0", recs, draws=2)
    assert row["false_credit"] == 0.0 and row["judge_requests"] == [6, 6]  # three identical track replies: one request
    passing = [1.0 if v >= 1.0 else 0.0 for r in recs for v in r["scores"]["rubric"]]
    assert row["alignment"] == pytest.approx(signal(passing, recs)["alignment"])


def test_a_judge_that_always_flips_credits_only_failing_replies(records):
    _, recs = records
    row = arm_row("f1", recs, draws=1)
    assert row["false_credit"] == 1.0 and row["alignment"] < 0


def test_the_rubric_gate_keeps_replies_under_the_bar_from_the_judge(records):
    """gate 0.5: only replies meeting at least half their policy are judged (cancel's first two, track's first);
    the always-flipping judge can then credit only the half-right cancel reply, and fail the two right ones."""
    _, recs = records
    truth = [v for r in recs for v in r["scores"]["rubric"]]
    judged = sorted({c for r in recs for c, t in zip(r["completions"], r["scores"]["rubric"]) if t >= 0.5})
    row = arm_row("f1g0.5", recs, draws=1)
    assert row["judge_requests"] == [len(judged)]
    assert row["statuses"][0]["skipped"] == sum(t < 0.5 for t in truth)
    assert row["false_credit"] == 1.0  # what it credits (the half reply) still fails
    assert row["groups_ranked"] == 0.5  # track: its one judged reply flipped to fail, the rest gated to 0: ties


def test_the_judge_arm_uses_the_recipes_params_with_the_arms_overrides():
    params = judge_params(3, "score", 0.25)
    assert params["votes"] == 3 and params["mode"] == "score" and params["cache"] is None
    assert (params["gate"], params["gate_min_score"], params["skip_value"]) == ("rubric", 0.25, 0.0)
    assert params["policies"] == "demo" and params["injection_guard"] is True  # the recipe's own
    assert "gate" not in judge_params(1, "binary", None)


def test_group_advantages_are_grpos():
    assert group_advantages([1.0, 0.0, 0.0, 0.0], 4) == pytest.approx([1.7317, -0.5772, -0.5772, -0.5772], abs=1e-3)
    assert group_advantages([0.5, 0.5], 2) == [0.0, 0.0]


def test_the_script_writes_its_table(records, tmp_path, monkeypatch, capsys):
    import benchmarks.judge_signal as js

    folder, _ = records
    monkeypatch.setattr(js, "RESULTS", tmp_path / "results")
    main(["--records", str(folder), "--records", str(folder), "rubric", "f0", "--draws", "1", "--tag", "_t"])
    out = json.loads((tmp_path / "results" / "judge_signal_t.json").read_text())
    assert [r["arm"] for r in out["table"]] == ["rubric", "f0"] and out["prompts"] == 4  # two folders pooled
    assert "| rubric | 0 |" in capsys.readouterr().out


def test_records_without_the_recipes_scores_are_a_one_line_error(tmp_path):
    (tmp_path / "records.jsonl").write_text(json.dumps({"scores": {"rubric": [1.0]}, "completions": ["x"]}) + "\n")
    with pytest.raises(SystemExit, match=r"record 1 has no rubric_chosen, length score"):
        read_records(tmp_path)
    with pytest.raises(SystemExit, match="no records; run `rlft label` first"):
        read_records(tmp_path / "nowhere")
