"""`gate: rubric` on the judge reward: only replies the deterministic rubric of the same policy file scores at least
`gate_min_score` reach the judge (issue 31: the rubric as the judge's pre-filter). The judge here is a real HTTP
server on loopback that approves EVERY reply, so what it is asked, and what each row scores, shows the gate alone.
"""

import asyncio

import pytest
from tests.judge_stub_server import StubJudge, StubServer

from rlft.errors import RewardError
from rlft.rewards.judge import JudgeReward
from rlft.scoring.loader import RewardSpec, load_reward

POLICIES = {
    "cancel_order": "Mention the $4.99 cancellation fee and ask for the order number.",
    "track_order": "Ask for the order number.",
    "complaint": "Apologise.",  # no rubric entry: the gate cannot check it, so the judge does
    "rubric": {
        "cancel_order": {"must_mention": {"fee": ["$4.99"]}, "must_ask_for": {"order_number": ["order number"]}},
        "track_order": {"must_ask_for": {"order_number": ["order number"]}},
    },
}
BOTH = "<intent>cancel_order</intent> There is a $4.99 fee. What is your order number?"  # rubric 1.0
HALF = "<intent>cancel_order</intent> There is a $4.99 fee for cancelling your order."  # rubric 0.5
NONE = "<intent>cancel_order</intent> Sure, your order is cancelled now."  # rubric 0.0
ASKS = "<intent>track_order</intent> Could you tell me the order number, please?"  # rubric 1.0 (track_order)
SORRY = "<intent>complaint</intent> I am so sorry about that, truly."  # no rubric for complaint


@pytest.fixture(scope="module")
def approving():
    stub = StubJudge(responder=lambda body: "Looks fine.\nVERDICT: Accurate")
    with StubServer(stub) as url:
        yield stub, url


def _reward(url, **params):
    return JudgeReward(model="yes-man", base_url=url, api_key_env=None, policies=POLICIES, cache=None,
                       injection_guard=False, **params)


def _score(reward, completions, intents):
    return asyncio.run(reward(["my order"] * len(completions), completions, intent=intents))


def test_only_replies_meeting_the_rubric_reach_the_judge(approving):
    stub, url = approving
    reward = _reward(url, gate="rubric", skip_value=0.0)
    before = stub.requests
    out = _score(reward, [BOTH, HALF, NONE, ASKS, SORRY],
                 ["cancel_order", "cancel_order", "cancel_order", "track_order", "complaint"])
    assert out == [1.0, 0.0, 0.0, 1.0, 1.0]  # the judge approves all it sees; the gate floors the rest
    assert stub.requests - before == 3  # BOTH, ASKS, and SORRY (no rubric for complaint: judged)
    assert reward.stats["skipped"] == 2 and reward.stats["ok"] == 3


def test_gate_min_score_lets_partial_replies_through(approving):
    stub, url = approving
    reward = _reward(url, gate="rubric", gate_min_score=0.5)  # skip_value None: gated rows abstain
    before = stub.requests
    assert _score(reward, [BOTH, HALF, NONE], ["cancel_order"] * 3) == [1.0, 1.0, None]
    assert stub.requests - before == 2


def test_the_rubric_grades_the_rows_gold_intent_not_the_replys_tag(approving):
    """A reply that follows track_order's policy on a cancel_order row fails cancel_order's rubric: not judged."""
    stub, url = approving
    reward = _reward(url, gate="rubric", skip_value=0.0)
    before = stub.requests
    assert _score(reward, [ASKS, ASKS], ["cancel_order", "track_order"]) == [0.0, 1.0]
    assert stub.requests - before == 1


def test_without_the_gate_the_same_judge_approves_everything(approving):
    """The control: the same rows without `gate: rubric` all reach the approving judge."""
    stub, url = approving
    reward = _reward(url)
    before = stub.requests
    assert _score(reward, [BOTH, HALF, NONE], ["cancel_order"] * 3) == [1.0, 1.0, 1.0]
    assert stub.requests - before == 3


def test_the_gate_reads_rubric_params_and_the_gate_column(approving):
    """`gate_rubric` reaches the rubric (max_words 9: BOTH's 10-word reply is too long for it) and the rubric grades
    the intent in `gate_column` (HALF fails cancel_order's rubric but is judged on a row whose truth has none)."""
    _, url = approving
    reward = _reward(url, gate="rubric", skip_value=0.0, gate_column="truth", gate_rubric={"max_words": 9})
    out = asyncio.run(reward(["my order"] * 3, [BOTH, ASKS, HALF], intent=["track_order", "track_order",
                                                                           "cancel_order"],
                             truth=["track_order", "track_order", "complaint"]))
    assert out == [0.0, 1.0, 1.0]
    assert reward.columns == ("intent", "truth")


BAD = [
    ({"gate": "rubric", "policies": None, "guideline": "Be nice."},
     "gate: rubric needs a policy file with a 'rubric:' section: set policies (or gate_rubric.policies)"),
    ({"gate": "rubric", "policies": {"cancel_order": "Mention the fee."}},
     "rubric: params.policies has no 'rubric:' section mapping intents to must_mention / must_ask_for / must_not "
     "(see docs/rewards.md#rubric)"),
    ({"gate": "rubric", "gate_rubric": {"max_word": 5}}, "gate_rubric: unknown key 'max_word' (did you mean "
                                                         "'max_words'?)"),
    ({"gate": "rubric", "gate_rubric": {"label_column": "x"}},
     "gate_rubric must not set label_column: the rubric reads gate_column"),
    ({"gate": "rubric", "gate_min_score": 0}, "gate_min_score must be within (0, 1], got 0"),
    ({"gate": "rubric", "gate_min_score": 1.5}, "gate_min_score must be within (0, 1], got 1.5"),
    ({"gate": "rubric", "gate_rubric": ["max_words"]},
     "gate_rubric must be a mapping of rubric params or null, got ['max_words']"),
]


@pytest.mark.parametrize(("params", "message"), BAD, ids=[m for _, m in BAD])
def test_bad_gate_settings_are_one_line_recipe_errors(params, message):
    params = {"model": "m", "api_key_env": None, "policies": POLICIES, "cache": None, **params}
    with pytest.raises(RewardError) as err:
        load_reward(RewardSpec(name="judge", params=params), "rewards[3]")
    assert str(err.value) == f"rewards[3]: reward 'judge' rejected its params: {message}"
    assert "\n" not in str(err.value)
    with pytest.raises(ValueError) as checked:  # `rlft validate` finds it without building a client
        JudgeReward.validate_params(params)
    assert str(checked.value) == message
