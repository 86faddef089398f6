"""Task-neutral evaluation: rewards declare the headline metrics they contribute (`eval_metrics`, like inspect_ai's
`@scorer(metrics=[...])`); the labels come from the reward declaring a label metric, the pass/fail verdicts from the
one declaring a verdict metric, whatever its name; `rlft.report.headline` computes the numbers for both the report
and metrics.json."""

from __future__ import annotations

import sys

import pytest
from datasets import Dataset

from rlft import BaseReward, completion_text
from rlft.evaluation.held_out import EVAL_METRICS, evaluate, intent_parser, score_run, verdict_reward
from rlft.report.headline import LABEL_METRICS, METRICS, SELECTIVE_METRICS, VERDICT_METRICS, flat, headline
from rlft.report.summary import ModelRun, summarise
from rlft.scoring.loader import LoadedReward, RewardSpec, load_rewards
from rlft.rewards.intent import IntentFormatReward, IntentParser, IntentReward
from rlft.rewards.judge import JudgeReward
from rlft.rewards.rubric import RubricReward


def _loaded(inner, name: str) -> LoadedReward:
    return LoadedReward(name, inner, 1.0, tuple(getattr(inner, "columns", ())), False, inner)


class Bracket:
    """Reads a label written as `[label]`."""

    def parse(self, completion):
        text = completion_text(completion)
        if text.startswith("[") and "]" in text:
            return "ok", text[1:text.index("]")].strip().lower()
        return "missing", None

    def normalize(self, label):
        return label.strip().lower()


class BracketLabel(BaseReward):
    name, eval_metrics = "bracket", ("intent_accuracy",)
    parser = Bracket()

    def __call__(self, prompts, completions, **kwargs):
        return [1.0] * len(completions)


class Polite(BaseReward):
    """1.0 when the reply says please, 0.5 when it says thanks; grades 'policy' when declared."""

    name = "polite"

    def __init__(self, declared: bool = True):
        self.eval_metrics = VERDICT_METRICS if declared else ()

    def __call__(self, prompts, completions, **kwargs):
        return [1.0 if "please" in c else 0.5 if "thanks" in c else 0.0 for c in completions]


JUDGE_MODE = {"binary": {}, "score": {"scale": [1, 5]}, "pairwise": {"reference_column": "ref"}}


def _judge(mode: str) -> JudgeReward:
    return JudgeReward(model="m", base_url="http://127.0.0.1:9/v1", api_key_env=None, guideline="g", cache=None,
                       mode=mode, **JUDGE_MODE[mode])


def test_built_in_rewards_declare_their_metrics_and_the_loader_reads_them():
    assert IntentReward.eval_metrics == LABEL_METRICS
    assert IntentFormatReward.eval_metrics == ("format_rate",)
    assert RubricReward.eval_metrics == VERDICT_METRICS
    assert _judge("binary").eval_metrics == _judge("score").eval_metrics == VERDICT_METRICS
    assert _judge("pairwise").eval_metrics == ()  # compares two replies: no per-row verdict
    assert BaseReward.eval_metrics == ()
    loaded = load_rewards([RewardSpec("intent", params={"labels": ["a"]}), RewardSpec("length")])
    assert [r.eval_metrics for r in loaded] == [LABEL_METRICS, ()]
    assert EVAL_METRICS == METRICS == (*LABEL_METRICS, *VERDICT_METRICS, *SELECTIVE_METRICS)


def test_the_labels_come_from_the_reward_declaring_a_label_metric():
    intent = _loaded(IntentReward(aliases={"money back": "refund"}), "intent")
    bracket = _loaded(BracketLabel(), "bracket")
    assert intent_parser([bracket, intent]) is bracket.parser
    assert intent_parser([intent, bracket]) is intent.inner.parser
    assert isinstance(intent_parser([_loaded(Polite(), "polite")]), IntentParser)  # nobody declares: the default
    run = ModelRun("m", "model", ["[Refund] sure", "<intent>refund</intent>"])
    score_run(run, [bracket], ["p", "p"], {}, intent_parser([bracket]))
    assert run.predicted == ["refund", None] and run.parse_status == ["ok", "missing"]


@pytest.mark.parametrize("declared", [True, False])
def test_the_verdicts_come_from_the_reward_declaring_a_verdict_metric_whatever_its_name(declared):
    polite = _loaded(Polite(declared), "tone_check")  # not named "rubric"
    run = ModelRun("m", "model", ["please wait", "thanks", "no"])
    score_run(run, [polite], ["p"] * 3, {}, IntentParser())
    assert run.rewards == {"tone_check": [1.0, 0.5, 0.0]}
    assert run.policy == ([1.0, 0.0, 0.0] if declared else None)  # without a judge a row passes at its full score
    assert (verdict_reward([polite]) is polite) is declared


def test_evaluate_reports_exactly_the_declared_metrics_from_the_one_computation(monkeypatch):
    rows = Dataset.from_list([{"prompt": [{"role": "user", "content": f"q{i}"}], "intent": g}
                              for i, g in enumerate(["refund", "refund", "cancel", "cancel"])])
    completions = ["[refund] please", "[cancel] please", "[cancel] thanks", "no label"]
    monkeypatch.setattr(sys.modules["rlft.evaluation.held_out"], "generate_with", lambda *a, **k: list(completions))
    labels_only = evaluate(None, None, rows, labels=["refund", "cancel"], rewards=[_loaded(BracketLabel(), "bracket")])
    both = evaluate(None, None, rows, labels=["refund", "cancel"],
                    rewards=[_loaded(BracketLabel(), "bracket"), _loaded(Polite(), "tone")])
    assert list(labels_only.metrics) == [*LABEL_METRICS, "reward/bracket"]
    assert labels_only.metrics["intent_accuracy"] == 0.5 and labels_only.metrics["format_rate"] == 0.75
    assert list(both.metrics) == [*LABEL_METRICS, "reward/bracket", "reward/tone", *VERDICT_METRICS]
    assert both.metrics["policy_following"] == 0.5  # please, please pass; thanks, nothing fail
    assert both.metrics["system_accuracy"] == 0.25  # only row 0: label right and passed
    # the report's headline is the same computation, with intervals and counts
    report = summarise(both.run, ["refund", "refund", "cancel", "cancel"], ["refund", "cancel"])["headline"]
    assert flat(report) == {k: v for k, v in both.metrics.items() if not k.startswith("reward/")}
    assert report["policy_judged"] == 4 and report["system_known"] == 4 and len(report["intent_accuracy_ci"]) == 2


def test_headline_conventions_undefined_label_metric_is_zero_undefined_verdict_is_nan():
    values = headline([], [], [], [None], intervals=False)
    assert values == {"intent_accuracy": None, "format_rate": None, "macro_f1": None, "policy_following": None}
    got = flat(values)
    assert got["intent_accuracy"] == got["format_rate"] == got["macro_f1"] == 0.0
    assert got["policy_following"] != got["policy_following"]  # NaN: every row abstained, not a zero
