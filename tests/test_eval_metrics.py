"""The policy metrics periodic evaluation and best-checkpoint selection can use, on hand-made rows."""

from __future__ import annotations

import math

from rlft.evaluation.held_out import policy_metrics
from rlft.report.summary import ModelRun


def _run(predicted, policy):
    return ModelRun("m", "model", ["x"] * len(predicted), predicted=predicted, policy=policy)


def test_policy_following_and_system_accuracy_count_abstentions_as_unknown_not_zero():
    # row 0: intent right, policy passes -> right; row 1: intent wrong -> wrong whatever the verdict;
    # row 2: intent right, verdict abstained -> unknown; row 3: no parsed intent -> wrong
    run = _run(["refund", "refund", "cancel_order", None], [1.0, 0.0, None, 1.0])
    got = policy_metrics(run, ["refund", "cancel order", "Cancel-Order", "refund"])
    assert got["policy_following"] == 2 / 3  # 3 judged rows, 2 pass (>= 0.5)
    assert got["system_accuracy"] == 1 / 3  # 3 known rows: right, wrong, wrong


def test_aliases_map_gold_labels_before_comparing():
    run = _run(["refund"], [0.9])
    assert policy_metrics(run, ["money_back"], {"money_back": "refund"})["system_accuracy"] == 1.0
    assert policy_metrics(run, ["money_back"])["system_accuracy"] == 0.0


def test_no_policy_reward_gives_no_policy_metrics_and_all_abstained_gives_nan():
    assert policy_metrics(_run(["refund"], None), ["refund"]) == {}
    got = policy_metrics(_run(["refund", "refund"], [None, None]), ["refund", "refund"])
    assert math.isnan(got["policy_following"]) and math.isnan(got["system_accuracy"])
    assert set(policy_metrics(_run(["refund"], [1.0]), None)) == {"policy_following"}  # no gold: no system accuracy
