"""The judge's typed specs behind the flat recipe params; bad values as one-line errors; time limits; early stops."""

import asyncio
import inspect
import time
from pathlib import Path

import pytest
import yaml
from tests.judge_stub_server import StubJudge, StubServer

from rlft.errors import RewardError
from rlft.judge.specs import FLAT_KEYS, BudgetSpec, ClientSpec, GateSpec, JudgeSpec
from rlft.scoring.loader import RewardSpec, load_reward
from rlft.rewards.judge import JudgeReward

ROOT = Path(__file__).parents[1]
GUIDE = "Mention the $4.99 cancellation fee."


def test_flat_params_and_typed_specs_build_the_same_judge():
    flat = JudgeReward(model="m", api_key_env=None, guideline=GUIDE, cache=None, budget_usd=5.0, min_words=4,
                       on_limit="finish")
    typed = JudgeReward(spec=JudgeSpec(client=ClientSpec(model="m", api_key_env=None),
                                       judging=JudgeSpec.from_params(model="m", guideline=GUIDE).judging,
                                       budget=BudgetSpec(cache=None, budget_usd=5.0), gate=GateSpec(min_words=4),
                                       failure=JudgeSpec.from_params(model="m", on_limit="finish").failure))
    assert flat.spec == typed.spec and flat.fingerprint == typed.fingerprint
    assert flat.spec.to_params()["budget_usd"] == 5.0 and set(flat.spec.to_params()) == set(FLAT_KEYS)
    with pytest.raises(TypeError, match="either spec= or flat parameters"):
        JudgeReward(spec=flat.spec, min_words=2)


def test_signature_lists_every_flat_key_so_the_loader_checks_names():
    named = set(inspect.signature(JudgeReward.__init__).parameters) - {"self", "spec", "client", "calibration"}
    assert named == set(FLAT_KEYS)
    assert inspect.signature(JudgeReward.__init__).parameters["min_words"].default == 3
    with pytest.raises(RewardError, match=r"does not accept parameter 'mnax_words' \(did you mean 'max_words'\?\)"):
        load_reward(RewardSpec(name="judge", params={"model": "m", "api_key_env": None, "guideline": GUIDE,
                                                     "mnax_words": 3}))


def test_shipped_recipes_judge_params_still_load():
    """recipes/policy_*.yaml write the judge's params flat; every key must still be accepted and validated."""
    seen = 0
    for path in sorted(ROOT.glob("recipes/*.yaml")):
        for reward in (yaml.safe_load(path.read_text()) or {}).get("rewards") or []:
            if reward.get("name") == "judge":
                spec = JudgeSpec.from_params(**reward["params"])
                assert spec.gate.min_words == reward["params"].get("min_words", 3), path
                seen += 1
    assert seen >= 1


# (params, exact message): what the recipe loader prints after "rewards[0]: reward 'judge' rejected its params: "
BAD = [
    ({"timeout_s": -1}, "timeout_s must be a number of seconds in (0, 600], got -1"),
    ({"timeout_s": 1e9}, "timeout_s must be a number of seconds in (0, 600], got 1000000000.0"),
    ({"timeout_s": float("nan")}, "timeout_s must be a number of seconds in (0, 600], got nan"),
    ({"regex_timeout_s": 0}, "regex_timeout_s must be a number of seconds in (0, 10], got 0"),
    ({"batch_budget_s": 1e9}, "batch_budget_s must be a number of seconds in (0, 300], got 1000000000.0"),
    ({"backoff_max_s": -2}, "backoff_max_s must be a number of seconds in [0, 600], got -2"),
    ({"min_words": -1}, "min_words must be an integer >= 0, got -1"),
    ({"min_words": 5, "max_words": 2}, "max_words (2) must be >= min_words (5)"),
    ({"max_chars": 10}, "max_chars must be an integer >= 100 or null, got 10"),
    ({"budget_usd": -1}, "budget_usd must be a number >= 0 or null, got -1"),
    ({"on_limit": "ignore"}, "on_limit must be one of stop, finish, raise, got 'ignore'"),
    ({"max_error_rate": 2}, "max_error_rate must be within [0, 1] or null, got 2"),
    ({"votes": 0}, "votes must be an integer >= 1, got 0"),
    ({"gate": "label"}, "gate must be one of null, intent, rubric, got 'label'"),
]


@pytest.mark.parametrize(("params", "message"), BAD, ids=[m for _, m in BAD])
def test_bad_values_are_one_line_recipe_errors(params, message):
    spec = RewardSpec(name="judge", params={"model": "m", "api_key_env": None, "guideline": GUIDE, **params})
    with pytest.raises(RewardError) as err:
        load_reward(spec, "rewards[0]")
    assert str(err.value) == f"rewards[0]: reward 'judge' rejected its params: {message}"


def test_batch_time_budget_bounds_a_pathological_gate_pattern():
    """Per-completion regex timeouts alone cost 16 x the timeout; the batch budget caps the whole screening."""
    reward = JudgeReward(model="m", api_key_env=None, guideline=GUIDE, cache=None, gate="intent",
                         gate_pattern=r"((?:a|aa)+)$", regex_timeout_s=0.5, batch_budget_s=1.0)
    completions = [f"reply number {i} " + "a" * 40 + "!" for i in range(16)]
    logged = {}
    start = time.perf_counter()
    out = asyncio.run(reward(["p"] * 16, completions, intent=["x"] * 16, log_metric=logged.__setitem__))
    elapsed = time.perf_counter() - start
    assert out == [None] * 16 and elapsed < 5.0  # without the budget: 16 timeouts of >= 0.5 s each
    assert reward.stats["guard_timeout"] >= 12 and reward.stats["guard_timeout"] + reward.stats["skipped"] == 16
    assert logged["judge/guard_timeout_rate"] == reward.stats["guard_timeout"] / 16


@pytest.fixture
def stub():
    judge = StubJudge()
    with StubServer(judge) as url:
        judge.url = url
        yield judge


def _stopped(stub, on_limit, **limits):
    from transformers import TrainerControl

    reward = JudgeReward(model="stub", base_url=stub.url, api_key_env=None, guideline=GUIDE, cache=None,
                         max_retries=0, breaker_threshold=0, max_concurrency=1, on_limit=on_limit, **limits)
    callback, control = reward.trainer_callback(), TrainerControl()
    callback.on_train_begin(None, None, control)
    for i in range(3):
        asyncio.run(reward(["p"], [f"Cancelled with the $4.99 fee, reply {i}."]))
    callback.on_step_end(None, None, control)
    return callback, control


@pytest.mark.parametrize(("on_limit", "limits", "kind", "ok"), [
    ("stop", {"budget_tokens": 1}, "budget", False),
    ("finish", {"budget_tokens": 1}, "budget", True),
    ("finish", {"max_error_rate": 0.1, "min_error_samples": 2}, "error_rate", False),
], ids=["budget stop is an early end", "budget stop under finish is a success", "error-rate stop always fails"])
def test_the_callback_says_why_the_run_stopped(stub, on_limit, limits, kind, ok):
    if kind == "error_rate":
        stub.fault_rate, stub.fault_types = 1.0, ("500",)
    callback, control = _stopped(stub, on_limit, **limits)
    assert control.should_training_stop
    assert callback.stop_kind == kind and callback.stop_ok is ok
    assert callback.stop_reason.startswith("judge: ")
    expected = "budget_tokens=1" if kind == "budget" else "max_error_rate=0.1"
    assert expected in callback.stop_reason


def test_no_stop_means_no_reason(stub):
    callback, control = _stopped(stub, "stop")
    assert not control.should_training_stop and callback.stop_reason is None and callback.stop_kind is None
    assert callback.stop_ok is False


def test_credentials_in_base_url_never_shown(stub, monkeypatch):
    """repr, identity (cache keys, fingerprint) and endpoint errors show the URL without its userinfo."""
    url = stub.url.replace("http://", "http://alice:S3CRET@") + "?api_key=K3Y"
    reward = JudgeReward(model="stub", base_url=url, api_key_env=None, guideline=GUIDE, cache=None, max_retries=0)
    shown = [repr(reward), repr(reward.client), str(reward.client.identity())]
    stub.queue = ["401"]
    with pytest.raises(RewardError) as err:
        asyncio.run(reward(["p"], ["Cancelled with the $4.99 fee."]))
    shown.append(str(err.value))
    assert " answered HTTP 4" in shown[-1]  # 404: the query string does not belong in a base_url anyway
    for text in shown:
        assert "S3CRET" not in text and "alice" not in text and "K3Y" not in text, text
        assert "***@127.0.0.1" in text, text


def test_validate_params_checks_values_without_building_anything():
    """What `rlft validate` can call: no client, no key lookup, no cache file, same messages as at train time."""
    spec = JudgeReward.validate_params({"model": "m", "api_key_env": "RLFT_UNSET_KEY_VAR", "cache": "/nonexistent/x"})
    assert spec.client.api_key_env == "RLFT_UNSET_KEY_VAR"
    with pytest.raises(ValueError, match=r"^timeout_s must be a number of seconds in \(0, 600\], got -1$"):
        JudgeReward.validate_params({"model": "m", "timeout_s": -1})
