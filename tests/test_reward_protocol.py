"""The reward protocol (`rlft.scoring.protocol`) and what `LoadedReward` reads from it: a `BaseReward` subclass named
in a recipe declares its columns, fingerprint, metrics and trainer callback, and the loaded reward's accessors
return exactly those; a plain function is a reward too (the protocol is structural); a class without `__call__`
is refused at validation with one line naming the recipe key."""

import dataclasses

import pytest

from rlft import BaseReward, Reward, completion_text
from rlft.scoring.abstain import neutral_rewards
from rlft.cli import run
from rlft.scoring.loader import LoadedReward, RewardSpec, builtin_rewards, load_rewards, with_data_labels
from rlft.recipe.load import load_recipe

CUSTOM = '''
from rlft import BaseReward, completion_text


class Polite(BaseReward):
    """1.0 when the reply says please; reads the `tone` column; asks for the label set."""

    name = "polite"
    wants_labels = True
    metrics = ("polite/rate",)

    def __init__(self, word="please", labels=None):
        self.word, self.labels = word, labels
        self.columns = ("tone",)
        self.made = []

    @property
    def fingerprint(self):
        return f"polite-v1-{self.word}"

    def trainer_callback(self):
        self.made.append("callback")
        return ("callback", self.word)

    def __call__(self, prompts, completions, log_metric=None, **columns):
        return [float(self.word in completion_text(c)) for c in completions]


def brevity(prompts, completions, max_words=3, **kwargs):
    return [float(len(completion_text(c).split()) <= max_words) for c in completions]


class NoCall(BaseReward):
    name = "no_call"

    def __init__(self, level=1):
        self.level = level
'''


@pytest.fixture
def recipe_with(tmp_path):
    (tmp_path / "my_rewards.py").write_text(CUSTOM)

    def write(rewards_yaml: str):
        path = tmp_path / "recipe.yaml"
        path.write_text(f"output_dir: {tmp_path / 'run'}\nrewards:\n{rewards_yaml}")
        return path

    return write


def test_a_base_reward_subclass_from_a_recipe_declares_itself_through_the_accessors(recipe_with):
    recipe = load_recipe(recipe_with("  - name: my_rewards.py:Polite\n    params: {word: thanks}\n"))
    (polite,) = load_rewards(recipe.rewards)
    assert (polite.name, polite.columns, polite.fingerprint) == ("polite", ("tone",), "polite-v1-thanks")
    assert polite.metrics == ("polite/rate",) and polite.parser is None and polite.judge is None
    assert polite.trainer_callback() == ("callback", "thanks")  # a new callback each call, made by the reward
    assert polite.inner.made == ["callback"] and isinstance(polite.inner, Reward)
    assert polite.func(prompts=["p", "p"], completions=["thanks!", "no"], tone=["a", "b"]) == [1.0, 0.0]


def test_wants_labels_gets_the_data_label_set_unless_the_recipe_gives_one(recipe_with):
    recipe = load_recipe(recipe_with("  - name: my_rewards.py:Polite\n  - name: my_rewards.py:brevity\n"))
    filled = with_data_labels(recipe.rewards, ["refund", "cancel"])
    assert [s.params for s in filled] == [{"labels": ["refund", "cancel"]}, {}]  # a function never asks
    given = dataclasses.replace(recipe.rewards[0], params={"labels": ["mine"]})
    assert with_data_labels([given], ["refund"])[0].params == {"labels": ["mine"]}


def test_a_plain_function_is_a_reward_with_no_declarations(recipe_with):
    recipe = load_recipe(recipe_with("  - name: my_rewards.py:brevity\n    params: {max_words: 1}\n"))
    (brevity,) = load_rewards(recipe.rewards)
    assert isinstance(brevity.inner, Reward) and brevity.inner.__name__ == "brevity"
    declared = (brevity.parser, brevity.fingerprint, brevity.metrics, brevity.trainer_callback())
    assert declared == (None, None, (), None)
    assert brevity.func(prompts=["p", "p"], completions=["one", "two words"]) == [1.0, 0.0]


def test_the_documented_ten_line_reward_satisfies_the_protocol():
    def brevity(prompts, completions, max_words=40, **kwargs):  # docs/rewards.md, unchanged
        out = []
        for c in completions:
            n = len(completion_text(c).split())
            out.append(1.0 if n <= max_words else max(0.0, 2 - n / max_words))
        return out

    assert isinstance(brevity, Reward) and not isinstance("not callable", Reward)


def test_a_class_without_call_is_one_line_naming_the_recipe_key(recipe_with, capsys):
    path = recipe_with("  - name: intent\n  - name: my_rewards.py:NoCall\n    params: {level: 2}\n")
    assert run(["validate", str(path)]) == 2
    assert capsys.readouterr().err.strip() == (
        f"error: {path}: rewards[1]: reward '{path.parent}/my_rewards.py:NoCall': class NoCall defines no __call__; its instance "
        f"is the reward, called as reward(prompts, completions, **columns)")


def test_accessors_survive_the_wrappers_that_rebuild_a_loaded_reward(recipe_with):
    recipe = load_recipe(recipe_with("  - name: my_rewards.py:Polite\n  - name: intent\n"))
    rewards = load_rewards(recipe.rewards)
    neutral = neutral_rewards(rewards, "grpo", {})  # 2 rewards, sum_then_normalize: each func is wrapped
    assert [r.func for r in neutral] != [r.func for r in rewards]
    assert [r.inner for r in neutral] == [r.inner for r in rewards]
    assert neutral[1].parser is rewards[1].inner.parser
    rebuilt = LoadedReward("polite", rewards[0].func, 2.0, ("tone",), False)  # as PPO re-weights a reward
    assert rebuilt.inner is rewards[0].inner and rebuilt.fingerprint == "polite-v1-please"


def test_builtins_are_the_base_reward_subclasses_of_rlft_rewards():
    found = builtin_rewards()
    assert found == {"intent": "rlft.rewards.intent:IntentReward",
                     "intent_format": "rlft.rewards.intent:IntentFormatReward",
                     "judge": "rlft.rewards.judge:JudgeReward", "length": "rlft.rewards.length:LengthReward",
                     "reward_model": "rlft.rewards.reward_model:RewardModelReward",
                     "rubric": "rlft.rewards.rubric:RubricReward"}
    (intent,) = load_rewards([RewardSpec(name="intent")])
    assert isinstance(intent.inner, BaseReward) and "intent/accuracy" in intent.metrics
