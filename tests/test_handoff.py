"""The hand-off label (issue 30, item 4): the intent reward's graded hand-off (1 right, 0.5 hand-off, 0 wrong) and
pair rewards, its one-line errors, the selective metrics on a hand-made set with known counts, the risk-coverage
helpers of the cross-entropy + threshold baseline, and where the exact label-space objective's optimum moves to the
hand-off (label_space maths on a fixed distribution of gold labels)."""

import json

import pytest
import torch

from rlft.errors import RewardError
from rlft.evaluation.held_out import label_metrics, score_run, selective_grading
from rlft.decoding.label_space import LabelSpace, label_rewards, log_expected, normalise_rewards, prompt_weight
from rlft.report import metrics
from rlft.report.headline import headline
from rlft.report.summary import ModelRun, summarise
from rlft.scoring.loader import RewardSpec, load_rewards
from rlft.rewards.intent import IntentReward

LABELS = ["get_invoice", "check_invoice", "cancel_order", "handoff"]
HANDOFF = {"label": "handoff", "reward": 0.5}


def _reward(**params):
    return IntentReward(labels=LABELS, handoff=HANDOFF, **params)


@pytest.mark.parametrize(
    ("completion", "truth", "expected", "why"),
    [
        ("<intent>get_invoice</intent>", "get_invoice", 1.0, "right label"),
        ("<intent>handoff</intent>", "get_invoice", 0.5, "handed off: half the credit, whatever the truth"),
        ("<intent>Handoff</intent>", "cancel_order", 0.5, "the hand-off label is normalised like any label"),
        ("<intent>check_invoice</intent>", "get_invoice", 0.0, "wrong label"),
        ("<intent>handoff</intent>", "handoff", 1.0, "a row whose truth is the hand-off: it is the right answer"),
        ("<intent>buy_a_boat</intent>", "get_invoice", -0.5, "outside the allowed set: invalid, as before"),
        ("no tag", "get_invoice", -1.0, "no label: missing, as before"),
    ],
)
def test_graded_reward_table(completion, truth, expected, why):
    assert _reward()(prompts=["p"], completions=[completion], intent=[truth]) == [expected], why


def test_without_handoff_the_handoff_answer_is_just_wrong():
    plain = IntentReward(labels=LABELS)
    assert plain(prompts=["p"], completions=["<intent>handoff</intent>"], intent=["get_invoice"]) == [0.0]
    assert plain.selective is None and "coverage" not in plain.eval_metrics


def test_pair_rewards_from_a_file_and_a_mapping_override_single_pairs(tmp_path):
    costs = tmp_path / "pairs.csv"
    costs.write_text("truth,predicted,reward\nget_invoice,check_invoice,0.3\ncancel_order,handoff,0.8\n")
    completions = ["<intent>check_invoice</intent>", "<intent>handoff</intent>", "<intent>handoff</intent>",
                   "<intent>get_invoice</intent>"]
    truths = ["get_invoice", "cancel_order", "get_invoice", "check_invoice"]
    for source in (str(costs), {"get_invoice": {"check_invoice": 0.3}, "cancel_order": {"handoff": 0.8}}):
        reward = _reward(pair_rewards=source)
        # the listed pair, a hand-off priced per truth, the default hand-off, an unlisted (reverse) pair
        assert reward(prompts=["p"] * 4, completions=completions, intent=truths) == [0.3, 0.8, 0.5, 0.0]
        assert [reward.decision_value(p, t) for p, t in
                zip(["check_invoice", "handoff", "handoff", "get_invoice"], truths, strict=True)] == [0.3, 0.8, 0.5,
                                                                                                      0.0]


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"labels": ["a", "b"], "handoff": HANDOFF},
         "handoff.label: 'handoff' is not in the allowed labels; add it to data.labels (no row needs to carry it)"),
        ({"labels": LABELS, "handoff": {"label": "handoff", "reward": 1.0}},
         "handoff.reward: expected a value strictly between wrong (0) and correct (1), got 1 (at or above correct "
         "every row would be handed off; at or below wrong, none)"),
        ({"labels": LABELS, "handoff": {"label": "handoff", "reward": "half"}},
         "handoff.reward: expected a finite number, got 'half'"),
        ({"labels": LABELS, "handoff": {"label": "handoff"}},
         "handoff.reward: missing; the hand-off answer's reward, between wrong and correct (e.g. 0.5)"),
        ({"labels": LABELS, "handoff": {"label": "handoff", "rewrd": 0.5}},
         "handoff: unknown key 'rewrd'; expected label, reward"),
        ({"labels": LABELS, "handoff": "handoff"},
         "handoff: expected a mapping {label: handoff, reward: 0.5}, got 'handoff'"),
        ({"labels": LABELS, "handoff": HANDOFF, "pair_rewards": {"get_invoice": {"refund": 0.2}}},
         "pair_rewards: predicted 'refund' is not an allowed label"),
        ({"labels": LABELS, "handoff": HANDOFF, "pair_rewards": {"get_invoice": {"get_invoice": 0.2}}},
         "pair_rewards: get_invoice -> get_invoice is the right answer (its reward is `correct`); list only wrong "
         "pairs or hand-offs"),
        ({"labels": LABELS, "pair_rewards": "missing.csv"},
         "pair_rewards: file 'missing.csv' does not exist (a CSV with columns truth,predicted,reward)"),
    ],
)
def test_bad_params_are_one_line_errors_naming_the_key(params, message):
    with pytest.raises(RewardError) as err:
        load_rewards([RewardSpec(name="intent", params=params)])
    assert str(err.value) == f"rewards[0]: reward 'intent' rejected its params: {message}"
    assert "\n" not in str(err.value)


def test_rlft_validate_refuses_a_bad_handoff_with_exit_2(tmp_path, tiny_model_dir, capsys):
    from rlft.cli import run

    recipe = tmp_path / "r.yaml"
    recipe.write_text(f"""algorithm: label_pg
model: {{name: {tiny_model_dir}}}
data: {{source: demo:intents, demo_size: 20, labels: [a, b, handoff]}}
rewards:
  - name: intent
    params: {{handoff: {{label: handoff, reward: 0.5}}}}
""")
    assert run(["validate", str(recipe)]) == 0
    capsys.readouterr()
    assert run(["validate", str(recipe), "rewards.0.params.handoff.reward=2"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("error: command line: rewards[0].params: handoff.reward: expected a value strictly "
                              "between wrong (0) and correct (1), got 2")


# A hand-made evaluation: 10 rows, 3 handed off, 7 answered of which 5 right (one of them a row whose truth is the
# hand-off), 1 wrong label and 1 reply with no label.
PREDICTED = ["get_invoice", "get_invoice", "cancel_order", "check_invoice", "handoff", "handoff", "handoff",
             "check_invoice", None, "handoff"]
GOLD = ["get_invoice", "get_invoice", "cancel_order", "check_invoice", "get_invoice", "cancel_order", "check_invoice",
        "get_invoice", "cancel_order", "handoff"]


def test_selective_metrics_on_a_hand_made_set():
    values = headline(PREDICTED, GOLD, LABELS, None, selective=_reward().selective)
    # answered: rows 0-3, 7, 8 (wrong / no label) -> 6 of 10; row 9 (truth handoff, answered handoff) is a hand-off
    assert values["coverage"] == pytest.approx(6 / 10)
    assert values["handoff_rate"] == pytest.approx(4 / 10)
    assert values["covered"] == 6
    assert values["selective_accuracy"] == pytest.approx(4 / 6)  # rows 0-3 right; 7 wrong, 8 no label
    # rewards: 4 right (1) + 3 hand-offs (0.5) + row 9 right (1) + 2 wrong (0: no label graded as wrong) = 6.5
    assert values["expected_reward"] == pytest.approx(6.5 / 10)
    assert values["expected_cost"] == pytest.approx(1 - 6.5 / 10)
    assert values["intent_accuracy"] == pytest.approx(5 / 10)
    lo, hi = values["coverage_ci"]
    assert lo <= 0.6 <= hi
    assert "coverage" not in headline(PREDICTED, GOLD, LABELS, None)  # no hand-off declared: no selective metrics


def test_selective_metrics_reach_metrics_json_and_the_report_through_the_reward_declaration():
    rewards = load_rewards([RewardSpec(name="intent", params={"labels": LABELS, "handoff": HANDOFF})])
    assert "selective_accuracy" in rewards[0].eval_metrics
    grading = selective_grading(rewards)
    assert grading.label == "handoff"
    completions = ["no tag" if p is None else f"<intent>{p}</intent>" for p in PREDICTED]
    run = ModelRun("tuned", "adapter", completions)
    score_run(run, rewards, ["p"] * len(GOLD), {"intent": GOLD}, rewards[0].parser)
    assert run.predicted == PREDICTED and run.selective is grading
    flat, _ = label_metrics(run.predicted, GOLD, LABELS, rewards[0].parser, run.selective)
    assert flat["coverage"] == pytest.approx(0.6) and flat["selective_accuracy"] == pytest.approx(4 / 6)
    assert flat["expected_reward"] == pytest.approx(0.65) and flat["expected_cost"] == pytest.approx(0.35)
    summary = summarise(run, GOLD, LABELS)
    assert summary["headline"]["covered"] == 6
    assert summary["headline"]["selective_accuracy"] == pytest.approx(4 / 6)


def test_risk_coverage_curve_and_operating_points():
    confidence = [0.95, 0.9, 0.9, 0.8, 0.6, 0.4]
    correct = [True, True, False, True, False, False]
    curve = metrics.risk_coverage(confidence, correct)
    # tied rows (0.9) are answered together: coverage jumps from 1/6 to 3/6
    assert [(p["covered"], p["selective_accuracy"]) for p in curve] == [
        (1, 1.0), (3, pytest.approx(2 / 3)), (4, 0.75), (5, 0.6), (6, 0.5)]
    assert metrics.at_coverage(curve, 0.5)["threshold"] == 0.9  # the least coverage >= 0.5: 3 rows
    assert metrics.at_coverage(curve, 0.51)["covered"] == 4
    assert metrics.at_accuracy(curve, 0.75)["covered"] == 4  # the most rows answered at >= 0.75 accuracy
    assert metrics.at_accuracy(curve, 1.0)["covered"] == 1
    assert metrics.abstain_below(["a", "b", "c"], [0.9, 0.5, 0.7], 0.7, "handoff") == ["a", "handoff", "c"]
    decided = metrics.abstain_below(["a", "a", "b", "a", "b", "b"], confidence, 0.8, "handoff")
    assert metrics.coverage(decided, "handoff") == pytest.approx(4 / 6)
    assert metrics.selective_accuracy(decided, ["a", "a", "a", "a", "a", "a"], "handoff") == pytest.approx(0.75)


# The exact objective on a fixed distribution: identical prompts whose gold labels follow q (an ambiguous message:
# 20 rows, so q's entries are multiples of 0.05). One label distribution pi = softmax(theta) is shared by all of
# them, and label_pg's loss (rewards from the intent reward for every label, normalised, log E[r] per row,
# weighted) is minimised over theta. The cross-entropy optimum is pi = q; with the hand-off reward c = 0.5:
#   weighting expected: maximise E_q[r] = sum_k pi_k q_k + c pi_h -> hand off iff max q < c;
#   weighting log: maximise E_q[log(pi_gold + c pi_h)] -> for max q = q1 >= c, pi_1 = q1 - c(1 - q1)/(1 - c),
#   pi_h = (1 - q1)/(1 - c), so with c = 0.5 the hand-off is the likelier answer iff q1 < (1 + c)/2 = 0.75.
LABEL_SET = ["get_invoice", "check_invoice", "cancel_order", "handoff"]


def _optimum(q: list[float], weighting: str, handoff: bool = True, steps: int = 3000) -> list[float]:
    gold = [label for label, share in zip(LABEL_SET[:3], q, strict=True) for _ in range(round(share * 20))]
    params = {"labels": LABEL_SET, **({"handoff": HANDOFF} if handoff else {})}
    rewards = load_rewards([RewardSpec(name="intent", params=params)])
    space = LabelSpace(LABEL_SET, [f"<intent>{x}</intent>" for x in LABEL_SET], [], [])
    scores = label_rewards(rewards, space, ["same message"] * len(gold), {"intent": gold})
    rt, signal = normalise_rewards(scores)
    assert bool(signal.all())
    theta = torch.zeros(len(LABEL_SET), dtype=torch.float64, requires_grad=True)
    opt = torch.optim.Adam([theta], lr=0.05)
    for _ in range(steps):
        logpi = torch.log_softmax(theta, 0).expand(len(gold), -1)
        log_p = log_expected(logpi, rt)
        loss = -(prompt_weight(log_p.exp().detach(), weighting) * log_p).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    return torch.softmax(theta, 0).tolist()


def test_handoff_reward_matrix_is_graded():
    rewards = load_rewards([RewardSpec(name="intent", params={"labels": LABEL_SET, "handoff": HANDOFF})])
    space = LabelSpace(LABEL_SET, [f"<intent>{x}</intent>" for x in LABEL_SET], [], [])
    scores = label_rewards(rewards, space, ["m", "m"], {"intent": ["get_invoice", "cancel_order"]})
    assert scores.tolist() == [[1.0, 0.0, 0.0, 0.5], [0.0, 0.0, 1.0, 0.5]]


@pytest.mark.parametrize(
    ("q", "weighting", "answer", "why"),
    [
        ([0.4, 0.35, 0.25], "expected", "handoff", "max q 0.4 < 0.5: the expected reward of guessing is below 0.5"),
        ([0.6, 0.25, 0.15], "expected", "get_invoice", "max q 0.6 > 0.5: answering beats handing off"),
        ([0.6, 0.25, 0.15], "log", "handoff", "log weighting hands off below (1 + c)/2 = 0.75"),
        ([0.85, 0.1, 0.05], "log", "get_invoice", "max q 0.85 > 0.75: answer"),
    ],
)
def test_exact_objective_optimum_moves_to_the_handoff(q, weighting, answer, why):
    pi = _optimum(q, weighting)
    assert LABEL_SET[max(range(4), key=pi.__getitem__)] == answer, (why, pi)
    if weighting == "expected":  # linear in pi: all the mass on one answer
        assert max(pi) > 0.97, pi
    else:  # the log optimum is interior: pi_1 = 2 q1 - 1, pi_h = 2 (1 - q1) for c = 0.5
        assert pi[0] == pytest.approx(2 * q[0] - 1, abs=0.02) and pi[3] == pytest.approx(2 * (1 - q[0]), abs=0.02)


def test_without_handoff_reward_the_optimum_is_the_cross_entropy_one():
    pi = _optimum([0.4, 0.35, 0.25], "log", handoff=False)  # 0/1 reward: log E[r] = log pi(gold), the CE
    assert pi[:3] == pytest.approx([0.4, 0.35, 0.25], abs=0.02)
    assert pi[3] < 0.02  # the hand-off label is merely a wrong answer


def test_eval_report_carries_the_selective_metrics(tmp_path, tiny_model_dir):
    from rlft.evaluation.eval_models import ModelRef, evaluate_models
    from rlft.recipe.load import load_recipe

    data = tmp_path / "eval.csv"
    rows = [("cancel my order", "cancel_order"), ("where is my invoice", "get_invoice"),
            ("show the invoice", "check_invoice"), ("I want to cancel", "cancel_order")]
    data.write_text("utterance,intent\n" + "".join(f"{u},{i}\n" for u, i in rows))
    recipe_path = tmp_path / "recipe.yaml"
    recipe_path.write_text(f"""algorithm: label_pg
model: {{name: {tiny_model_dir}, device: cpu}}
data: {{source: {data}, label_column: intent, labels: {LABEL_SET}}}
rewards:
  - name: intent
    params: {{handoff: {{label: handoff, reward: 0.5}}}}
decoding: {{prefill: "<intent>", constrain_labels: true}}
evaluation: {{max_new_tokens: 8, batch_size: 4}}
""")
    result = evaluate_models([ModelRef("base", "base")], load_recipe(recipe_path), tmp_path / "out",
                             data_file=str(data))
    run = result["runs"][0]
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    head = report["models"][0]["headline"]
    assert head["coverage"] == pytest.approx(sum(p != "handoff" for p in run.predicted) / len(rows))
    assert head["covered"] == sum(p != "handoff" for p in run.predicted)
    assert "expected_cost" in (tmp_path / "out" / "report.md").read_text()


def test_benchmark_script_runs_both_arms_on_the_same_rows(tmp_path, tiny_model_dir):
    from benchmarks import handoff

    data = tmp_path / "d.csv"
    utterances = ["cancel my order", "where is my invoice", "show the invoice", "I want to cancel",
                  "invoice please", "stop the order", "bill copy", "order cancel now"]
    golds = ["cancel_order", "get_invoice", "check_invoice", "cancel_order"] * 2
    data.write_text("utterance,intent\n" + "".join(f"{u},{g}\n" for u, g in zip(utterances, golds, strict=True)))
    common = f"""algorithm: label_pg
model: {{name: {tiny_model_dir}, device: cpu}}
data: {{source: {data}, label_column: intent, eval_fraction: 0.5, holdout: random}}
decoding: {{prefill: "<intent>", constrain_labels: true}}
evaluation: {{max_new_tokens: 8, batch_size: 4}}
"""
    (tmp_path / "base.yaml").write_text(common + "rewards:\n  - name: intent\n")
    (tmp_path / "handoff.yaml").write_text(common.replace("label_column: intent,", f"label_column: intent, labels: "
                                                          f"{LABEL_SET},")
                                           + "rewards:\n  - name: intent\n    params: {handoff: {label: handoff, "
                                             "reward: 0.5}}\n")
    out = tmp_path / "handoff.json"
    result = handoff.main(["--recipe", str(tmp_path / "handoff.yaml"), "--handoff", "base", "--baseline-recipe",
                           str(tmp_path / "base.yaml"), "--baseline", "base", "--out", str(out), "--batch-size", "4"])
    assert json.loads(out.read_text())["rows"] == result["rows"] == 4
    arms = {a["arm"]: a for a in result["arms"]}
    no_threshold = arms["CE, no threshold"]
    assert no_threshold["coverage"] == 1.0 and no_threshold["handoff_rate"] == 0.0
    assert result["baseline_curve"][-1]["coverage"] == 1.0
    assert result["baseline_curve"][-1]["selective_accuracy"] == pytest.approx(no_threshold["selective_accuracy"])
