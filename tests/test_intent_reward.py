"""The RLEF intent reward: every row of its outcome table, normalisation, partial credit, hostile input."""

import time

import pytest

from rlft.rewards.intent import IntentFormatReward, IntentParser, IntentReward

LABELS = ["cancel_order", "track_order", "get_refund", "track_refund"]


@pytest.mark.parametrize(
    ("completion", "expected", "why"),
    [
        ("<intent>cancel_order</intent>", 1.0, "correct label"),
        ("<intent> Cancel Order </intent> Sure, I can help.", 1.0, "case, spaces and trailing reply normalised"),
        ("<intent>cancel-order</intent>", 1.0, "hyphen normalised to underscore"),
        ("<intent>track_order</intent>", 0.0, "valid label but wrong"),
        ("<intent>buy_a_boat</intent>", -0.5, "label outside the allowed set"),
        ("<intent>cancel_order</intent><intent>track_order</intent>", -1.0, "multiple tags"),
        ("<intent>cancel_order", -1.0, "opening tag without closing tag"),
        ("<intent>  </intent>", -1.0, "empty tag"),
        ("I think you want to cancel your order.", -1.0, "no tag at all"),
        ("", -1.0, "empty completion"),
    ],
)
def test_outcome_table(completion, expected, why):
    reward = IntentReward(labels=LABELS)
    assert reward(prompts=["p"], completions=[completion], intent=["cancel_order"]) == [expected], why


def test_outcome_values_are_configurable_and_chat_completions_are_read():
    reward = IntentReward(labels=LABELS, correct=2.0, wrong=-0.1, invalid=-0.3, missing=-5.0)
    chat = [[{"role": "assistant", "content": "<intent>cancel_order</intent>"}]]
    assert reward(prompts=["p"], completions=chat, intent=["cancel_order"]) == [2.0]
    out = reward(prompts=["p"] * 3, completions=["<intent>track_order</intent>", "<intent>zzz</intent>", "no"],
                 intent=["cancel_order"] * 3)
    assert out == [-0.1, -0.3, -5.0]


def test_partial_credit_orders_near_misses_above_unrelated_labels():
    reward = IntentReward(labels=LABELS, partial_credit=0.5)
    out = reward(prompts=["p"] * 3, intent=["track_refund"] * 3,
                 completions=["<intent>track_refund</intent>", "<intent>get_refund</intent>",
                              "<intent>cancel_order</intent>"])
    assert out[0] == 1.0
    assert out[1] == pytest.approx(0.5 * 1 / 3)  # shares "refund" out of {get, refund, track}
    assert out[2] == 0.0


def test_aliases_and_prefix_for_prefilled_generation():
    reward = IntentReward(labels=LABELS, aliases={"cancel": "cancel_order"}, prefix="<intent>")
    assert reward(prompts=["p"], completions=["cancel</intent>"], intent=["cancel_order"]) == [1.0]


def test_without_label_set_every_wrong_label_counts_as_wrong():
    reward = IntentReward()
    assert reward(prompts=["p"], completions=["<intent>anything</intent>"], intent=["cancel_order"]) == [0.0]


def test_metrics_are_logged_per_intent():
    logged = {}
    reward = IntentReward(labels=LABELS)
    reward(prompts=["p"] * 3, completions=["<intent>cancel_order</intent>", "x", "<intent>track_order</intent>"],
           intent=["cancel_order", "cancel_order", "get_refund"], log_metric=logged.__setitem__)
    assert logged["intent/accuracy"] == pytest.approx(1 / 3)
    assert logged["intent/format_rate"] == pytest.approx(2 / 3)
    assert logged["intent/accuracy/cancel_order"] == 0.5
    assert logged["intent/accuracy/get_refund"] == 0.0


def test_catastrophic_backtracking_user_pattern_returns_within_timeout():
    # ^(a|aa)+$ on 'aaaa…b' is exponential even for the `regex` module; the timeout must stop it.
    reward = IntentReward(pattern=r"^(a|aa)+$", timeout_s=0.2, timeout=-2.0)
    start = time.process_time()  # this process's CPU: a loaded machine does not stretch it (wall time would)
    out = reward(prompts=["p"], completions=["a" * 60 + "b"], intent=["a"])
    assert out == [-2.0]
    assert time.process_time() - start < 2.0


def test_hostile_long_completion_is_clipped_and_fast():
    reward = IntentReward(labels=LABELS)
    hostile = "<intent>" * 200_000 + "cancel_order"
    start = time.process_time()
    assert reward(prompts=["p"], completions=[hostile], intent=["cancel_order"]) == [-1.0]
    assert time.process_time() - start < 1.0


def test_bad_pattern_is_rejected_with_a_clear_message():
    with pytest.raises(ValueError, match="exactly one capture group"):
        IntentParser(pattern=r"<intent>.*</intent>")
    with pytest.raises(ValueError, match="not a valid regular expression"):
        IntentParser(pattern=r"<intent>(.*</intent>")


def test_format_reward_ignores_correctness():
    reward = IntentFormatReward(labels=LABELS)
    out = reward(prompts=["p"] * 3, completions=["<intent>track_order</intent>", "<intent>nope</intent>", "x"])
    assert out == [1.0, 0.0, 0.0]
