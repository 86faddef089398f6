"""The reward plug-in contract: loading by name/path/module with kwargs, output checks, weighted composition."""

import asyncio

import pytest

from rlft.errors import RewardError
from rlft.scoring.loader import RewardSpec, load_reward, load_rewards
from rlft.scoring.completions import combine, score

CUSTOM = '''
import asyncio

def brevity(prompts, completions, max_words=3, **kwargs):
    return [1.0 if len(c.split()) <= max_words else 0.0 for c in completions]

def needs_column(prompts, completions, intent, **kwargs):
    return [float(i in c) for c, i in zip(completions, intent)]

async def slow_judge(prompts, completions, delay=0.05, **kwargs):
    await asyncio.sleep(delay)
    return [0.5 for _ in completions]

def wrong_length(prompts, completions, **kwargs):
    return [1.0]

def gives_nan(prompts, completions, **kwargs):
    return [float("nan") for _ in completions]

def gives_text(prompts, completions, **kwargs):
    return ["good" for _ in completions]

def abstains(prompts, completions, **kwargs):
    return [None for _ in completions]
'''


@pytest.fixture
def custom_file(tmp_path):
    path = tmp_path / "my_rewards.py"
    path.write_text(CUSTOM)
    return str(path)


def test_file_path_reward_gets_recipe_kwargs(custom_file):
    r = load_reward(RewardSpec(name=f"{custom_file}:brevity", params={"max_words": 1}))
    assert r.name == "brevity" and r.columns == ()
    assert r.func(prompts=["p", "p"], completions=["short", "not short"]) == [1.0, 0.0]


def test_required_columns_come_from_the_signature(custom_file):
    r = load_reward(RewardSpec(name=f"{custom_file}:needs_column"))
    assert r.columns == ("intent",)


def test_module_path_and_builtin_name_load_the_same_class():
    by_name = load_reward(RewardSpec(name="intent"))
    by_path = load_reward(RewardSpec(name="rlft.rewards.intent:IntentReward", alias="intent2"))
    assert type(by_name.inner) is type(by_path.inner)
    assert by_name.columns == ("intent",)


def test_unknown_param_is_rejected_with_suggestion(custom_file):
    with pytest.raises(RewardError, match=r"does not accept parameter 'max_word' \(did you mean 'max_words'\?\)"):
        load_reward(RewardSpec(name=f"{custom_file}:brevity", params={"max_word": 2}))


def test_unknown_builtin_and_missing_file_and_attr(custom_file):
    with pytest.raises(RewardError, match=r"unknown reward 'intnet' \(did you mean 'intent'\?\)"):
        load_reward(RewardSpec(name="intnet"))
    with pytest.raises(RewardError, match="reward file 'nope.py' does not exist"):
        load_reward(RewardSpec(name="nope.py:f"))
    with pytest.raises(RewardError, match=r"has no attribute 'brevty' \(did you mean 'brevity'\?\)"):
        load_reward(RewardSpec(name=f"{custom_file}:brevty"))


@pytest.mark.parametrize(
    ("attr", "message"),
    [
        ("wrong_length", "reward 'wrong_length' returned 1 values for 2 completions"),
        ("gives_nan", "reward 'gives_nan' returned nan at index 0; return None to abstain instead"),
        ("gives_text", "reward 'gives_text' returned str 'good' at index 0; expected float or None"),
    ],
)
def test_bad_outputs_fail_loudly_naming_the_reward(custom_file, attr, message):
    r = load_reward(RewardSpec(name=f"{custom_file}:{attr}"))
    with pytest.raises(RewardError) as err:
        r.func(prompts=["p", "p"], completions=["a", "b"])
    assert str(err.value) == message


def test_async_reward_stays_async_and_runs_concurrently(custom_file):
    rewards = load_rewards([RewardSpec(name=f"{custom_file}:slow_judge", alias=f"j{i}", params={"delay": 0.2})
                            for i in range(5)])
    assert all(r.is_async for r in rewards)
    assert asyncio.iscoroutinefunction(rewards[0].func)
    import time

    start = time.perf_counter()
    s = score(rewards, ["p"], ["c"])
    assert time.perf_counter() - start < 0.8  # five 0.2 s judges concurrently, not 1.0 s in sequence
    assert s.total == [pytest.approx(2.5)]


def test_weighted_composition_ignores_abstentions(custom_file):
    rewards = load_rewards([
        RewardSpec(name=f"{custom_file}:brevity", weight=2.0),
        RewardSpec(name="intent", weight=0.5),
        RewardSpec(name=f"{custom_file}:abstains", weight=10.0),
    ])
    s = score(rewards, ["p", "p"], ["<intent>a</intent>", "<intent>b</intent> and many more words"],
              {"intent": ["a", "a"]})
    assert s.per_reward["brevity"] == [1.0, 0.0]
    assert s.per_reward["intent"] == [1.0, 0.0]
    assert s.per_reward["abstains"] == [None, None]
    assert s.total == [2.0 * 1.0 + 0.5 * 1.0, 0.0]
    assert s.metrics["intent/accuracy"] == 0.5


def test_all_abstaining_row_stays_none_and_normalise_then_sum():
    assert combine({"a": [None, 1.0]}, {"a": 1.0}) == [None, 1.0]
    out = combine({"a": [0.0, 1.0], "b": [0.0, 100.0]}, {"a": 1.0, "b": 1.0}, "normalize_then_sum", group_size=2)
    assert out[0] == pytest.approx(-2.0, abs=1e-3) and out[1] == pytest.approx(2.0, abs=1e-3)


def test_duplicate_metric_names_need_an_alias():
    with pytest.raises(RewardError, match="share the metric name"):
        load_rewards([RewardSpec(name="intent"), RewardSpec(name="intent")])
