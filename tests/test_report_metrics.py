"""Report metrics on hand-made predictions equal values computed by hand (each case says how)."""

import random

import pytest

from rlft.report import canaries, metrics
from rlft.report.metrics import PairJudgment

GOLD = ["a", "a", "a", "b", "b", "c"]
PRED = ["a", "a", "b", "b", None, "a"]


def test_accuracy_and_format_rate():
    assert metrics.accuracy(PRED, GOLD) == pytest.approx(3 / 6)  # rows 0, 1, 3 right; None is wrong
    assert metrics.format_rate(PRED) == pytest.approx(5 / 6)  # one None
    assert metrics.accuracy([], []) is None


def test_macro_f1_by_hand():
    # a: tp 2, fp 1 (row 5), fn 1 (row 2) -> 4/6; b: tp 1, fp 1, fn 1 -> 2/4; c: tp 0, fn 1 -> 0
    assert metrics.macro_f1(PRED, GOLD, ["a", "b", "c"]) == pytest.approx((4 / 6 + 2 / 4 + 0) / 3)
    # a label in the label set that is neither predicted nor present has no F1 and is left out
    assert metrics.macro_f1(PRED, GOLD, ["a", "b", "c", "d"]) == pytest.approx((4 / 6 + 2 / 4 + 0) / 3)


def test_confusion_and_per_intent():
    assert metrics.confusion(PRED, GOLD) == {"a": {"a": 2, "b": 1}, "b": {"(none)": 1, "b": 1}, "c": {"a": 1}}
    assert metrics.per_intent_accuracy(PRED, GOLD) == {"a": {"accuracy": 2 / 3, "n": 3},
                                                       "b": {"accuracy": 0.5, "n": 2}, "c": {"accuracy": 0.0, "n": 1}}


def test_abstentions_are_counted_never_zeros():
    assert metrics.mean_ignoring_abstentions([1.0, None, 0.5, None]) == {"mean": 0.75, "n": 2, "abstained": 2}
    assert metrics.mean_ignoring_abstentions([None, None]) == {"mean": None, "n": 0, "abstained": 2}
    # policy following: 2 passes of 3 judged; the abstained one is not a fail
    assert metrics.policy_following_rate([1.0, 0.0, None, 0.8]) == {"rate": 2 / 3, "n": 3, "abstained": 1}


def test_system_accuracy_needs_both_and_abstained_policy_is_unknown():
    intent = [True, True, False, True, False]
    policy = [True, False, True, None, None]
    # right+pass -> right; right+fail -> wrong; wrong intent -> wrong whatever the judge; right+abstain -> unknown
    assert metrics.system_correct(intent, policy) == [True, False, False, None, False]
    assert metrics.system_accuracy(intent, policy) == {"accuracy": 1 / 4, "n": 4, "unknown": 1}


def test_bootstrap_is_seeded_percentile():
    values = [1.0, 0.0, 1.0, 1.0, 0.0, 1.0, 0.0, 1.0]
    ci = metrics.bootstrap_ci(values, n_resamples=200, seed=3)
    rng = random.Random(3)  # the same procedure written out: resample, mean, sort, interpolated 2.5/97.5 %
    stats = sorted(sum(s) / len(s) for s in (rng.choices(values, k=8) for _ in range(200)))
    lo_pos, hi_pos = 0.025 * 199, 0.975 * 199
    lo = stats[int(lo_pos)] + (stats[int(lo_pos) + 1] - stats[int(lo_pos)]) * (lo_pos - int(lo_pos))
    hi = stats[int(hi_pos)] + (stats[int(hi_pos) + 1] - stats[int(hi_pos)]) * (hi_pos - int(hi_pos))
    assert ci == pytest.approx((lo, hi))
    assert ci == metrics.bootstrap_ci(values, n_resamples=200, seed=3)  # fixed seed: same bounds every time
    assert ci[0] < 5 / 8 < ci[1]
    assert metrics.bootstrap_ci([0.5, 0.5, None]) == (0.5, 0.5)  # constant data (abstention dropped)
    assert metrics.bootstrap_ci([None]) is None


def test_percentile_interpolates_like_numpy():
    assert metrics.percentile([0.0, 1.0, 2.0, 3.0], 0.5) == 1.5
    assert metrics.percentile([0.0, 10.0], 0.25) == 2.5


def test_cohen_kappa_by_hand():
    judge = ["pass", "pass", "fail", "pass", "fail", "fail", "pass", "pass", "fail", "pass"]
    human = ["pass", "fail", "fail", "pass", "fail", "pass", "pass", "pass", "fail", "fail"]
    # agree on 7 of 10; judge 6 pass / 4 fail, human 5 / 5 -> p_e = 0.6*0.5 + 0.4*0.5 = 0.5; kappa = 0.2/0.5
    out = metrics.cohen_kappa(judge, human)
    assert out["agreement"] == pytest.approx(0.7)
    assert out["kappa"] == pytest.approx(0.4)
    assert out["confusion"] == {"fail": {"fail": 3, "pass": 2}, "pass": {"fail": 1, "pass": 4}}
    assert metrics.cohen_kappa(["x", "x"], ["x", "x"])["kappa"] == 1.0
    with pytest.raises(ValueError, match="differ in length"):
        metrics.cohen_kappa(["x"], [])


def test_win_rate_both_orders_ties_and_position_bias():
    j = [
        PairJudgment("1", "a", "first"), PairJudgment("1", "b", "second"),  # A wins in both orders: 1.0
        PairJudgment("2", "a", "first"), PairJudgment("2", "b", "first"),   # first position always wins: 0.5
        PairJudgment("3", "a", "tie"), PairJudgment("3", "b", "tie"),       # ties: 0.5
        PairJudgment("4", "a", "second"), PairJudgment("4", "b", "first"),  # B wins both: 0.0
        PairJudgment("5", "a", None),                                       # judge failed: abstained
    ]
    w = metrics.win_rate(j, n_resamples=100, seed=0)
    assert w["win_rate_a"] == pytest.approx((1.0 + 0.5 + 0.5 + 0.0) / 4)
    assert (w["items"], w["judgments"], w["abstained"]) == (4, 8, 1)
    assert (w["wins_a"], w["wins_b"], w["ties"]) == (3, 3, 2)
    # decided judgments: 6; won by the first position: item1 AB, item2 both, item4 BA -> 4 of 6
    assert w["first_position_rate"] == pytest.approx(4 / 6)
    assert w["position_bias"] == pytest.approx(4 / 6 - 0.5)
    assert (w["order_flips"], w["items_in_both_orders"]) == (1, 4)  # only item 2 changes winner with order
    lo, hi = w["ci"]
    assert 0.0 <= lo <= 0.5 <= hi <= 1.0


def test_canaries_by_hand():
    assert canaries.length_drift(["a b c d", "a b"], ["a", "b c"]) == pytest.approx(3 / 1.5)
    # "a b a b a": 3-grams (a b a) (b a b) (a b a) -> one repeat of three
    assert canaries.repetition_rate(["a b a b a", "x y"]) == pytest.approx(1 / 3)
    assert canaries.pearson([1, 2, 3], [2, 4, 6]) == pytest.approx(1.0)
    assert canaries.score_length_correlation([1.0, None, 0.0], ["a b c", "x", "a"]) == pytest.approx(1.0)
    assert canaries.pearson([1, 1], [2, 3]) is None
    # "Thanks!" / "thanks" are the same after normalising; the Jaccard pair shares 9 of 10 words
    replies = ["Thanks!", "thanks", "one two three four five six seven eight nine ten",
               "one two three four five six seven eight nine", "something else entirely"]
    assert canaries.near_duplicate_share(replies, threshold=0.9) == pytest.approx(4 / 5)
    kl = canaries.kl_to_base([[-1.0, -2.0], [-0.5]], [[-1.5, -2.5], [-1.0]])
    assert kl == {"kl": pytest.approx((1.0 + 0.5) / 2), "kl_per_token": pytest.approx(1.5 / 3), "n": 2}
    with pytest.raises(ValueError, match="sample 0 has 1 model tokens vs 2 base tokens"):
        canaries.kl_to_base([[-1.0]], [[-1.0, -2.0]])


def test_cluster_bootstrap_resamples_whole_groups():
    """Rows of one near-duplicate group pass or fail together; resampling them one by one makes the interval too
    narrow. With `groups` whole groups are drawn: ten groups of ten identical outcomes give exactly the interval of
    the ten group means, far wider than the row bootstrap; groups of one row give the row bootstrap itself."""
    outcomes = [1.0] * 7 + [0.0] * 3
    values = [v for v in outcomes for _ in range(10)]
    groups = [g for g in range(10) for _ in range(10)]
    by_group = metrics.bootstrap_ci(values, groups=groups)
    assert by_group == metrics.bootstrap_ci(outcomes)  # the same draws, over the ten groups
    rows = metrics.bootstrap_ci(values)
    assert by_group[1] - by_group[0] > 2 * (rows[1] - rows[0])
    assert metrics.bootstrap_ci(values, groups=list(range(100))) == rows
    # abstentions (None) leave their group; a group left empty is not drawn
    assert metrics.bootstrap_ci([1.0, None, 0.0, 0.0], groups=["a", "a", "b", "b"]) == \
        metrics.bootstrap_ci([1.0, 0.0, 0.0], groups=["a", "b", "b"])
    with pytest.raises(ValueError):
        metrics.bootstrap_ci([1.0, 0.0], groups=["a"])
