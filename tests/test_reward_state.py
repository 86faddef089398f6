"""Reward state through checkpoints (rlft.scoring.state) and the judge's part of it (JudgeReward.state_dict).

The judge's spend, error-rate window and audit batch counter survive a save/restore, so a restored judge goes on
from where the saved one was: its budget is one budget, its error-rate window one window. The end-to-end runs (kill,
resume, spend equal to an uninterrupted run) are in tests/test_resume_judge.py.
"""

import json
import logging
from types import SimpleNamespace

import pytest
from transformers import TrainerControl

from rlft.judge.budget import JudgeBudgetExceeded
from rlft.scoring.protocol import TrainingStopped
from rlft.scoring.state import SaveRewardState, state_file
from rlft.rewards.judge import JudgeErrorRateExceeded
from tests.test_judge_client import BAD, GOOD, make, run, stub  # noqa: F401 - `stub` is a fixture


def _saved_and_restored(reward, fresh):
    """`reward`'s callback state through JSON (as in the checkpoint file) into `fresh`'s callback."""
    cb = fresh.trainer_callback()
    cb.load_state_dict(json.loads(json.dumps(reward.trainer_callback().state_dict())))
    return cb


def test_a_restored_judge_counts_on_and_stops_before_training_when_its_budget_is_spent(stub):  # noqa: F811
    first = make(stub, budget_tokens=1, price_input_per_mtok=1000.0)
    run(first, [GOOD])  # one request: the token budget is spent, no check has failed yet
    assert first.stop_reason is None and stub.requests == 1

    second = make(stub, budget_tokens=1, price_input_per_mtok=1000.0)
    cb = _saved_and_restored(first, second)
    assert second.usage == first.usage and second.calls == 1 and second.stats == first.stats
    assert "token budget spent" in second.stop_reason and second.stop_kind == "budget"
    with pytest.raises(TrainingStopped, match="budget_tokens=1"):  # no step of the resumed run trains
        cb.on_train_begin(None, None, TrainerControl())
    assert stub.requests == 1

    raising = make(stub, budget_tokens=1, on_limit="raise")
    cb = _saved_and_restored(first, raising)
    assert raising.stop_reason is None  # on_limit: raise: the first request raises, as in an uninterrupted run
    cb.on_train_begin(None, None, TrainerControl())
    with pytest.raises(JudgeBudgetExceeded, match="budget_tokens=1"):
        run(raising, [BAD])
    assert stub.requests == 1


def test_the_error_rate_window_goes_on_unless_it_already_stopped_the_run(stub, caplog):  # noqa: F811
    stub.fault_rate, stub.fault_types = 1.0, ("500",)
    first = make(stub, max_error_rate=0.5, min_error_samples=4, breaker_threshold=0, on_limit="raise")
    run(first, [f"failing reply {i}" for i in range(3)])  # 3 failures: below min_error_samples
    second = make(stub, max_error_rate=0.5, min_error_samples=4, breaker_threshold=0, on_limit="raise")
    _saved_and_restored(first, second)
    assert list(second.recent) == [True, True, True]
    with pytest.raises(JudgeErrorRateExceeded, match="of the last 4 judgments"):  # 3 restored + 1 new
        run(second, ["one more failing reply"])

    third = make(stub, max_error_rate=0.5, min_error_samples=4, breaker_threshold=0, on_limit="raise")
    with caplog.at_level(logging.WARNING, logger="rlft.judge"):
        _saved_and_restored(second, third)  # 4 of 4 failed: the window the run stopped on
    assert len(third.recent) == 0 and "starts fresh" in caplog.text


class _Counting:
    def __init__(self, n):
        self.n = n

    def state_dict(self):
        return {"n": self.n}

    def load_state_dict(self, state):
        self.n = state["n"]


def test_one_entry_per_reward_by_name_and_one_file_per_process(tmp_path, caplog):
    a, b, plain = _Counting(1), _Counting(2), object()
    saver = SaveRewardState([("judge", a), ("brevity", plain), ("judge", b)])
    assert list(saver.stateful) == ["judge", "judge#2"]  # no state_dict: not saved
    (tmp_path / "checkpoint-3").mkdir()
    for rank in (0, 1):
        saver.on_save(SimpleNamespace(output_dir=str(tmp_path), process_index=rank), SimpleNamespace(global_step=3),
                      None)
    assert sorted(p.name for p in (tmp_path / "checkpoint-3").iterdir()) == ["rlft_reward_state.json",
                                                                            "rlft_reward_state_rank1.json"]
    assert json.loads(state_file(tmp_path / "checkpoint-3", 0).read_text())["rewards"] == {"judge": {"n": 1},
                                                                                           "judge#2": {"n": 2}}
    a.n = b.n = 0
    assert saver.load_state(tmp_path / "checkpoint-3", 1) and (a.n, b.n) == (1, 2)

    with caplog.at_level(logging.WARNING, logger="rlft"):
        assert not saver.load_state(tmp_path, 0)  # no file there: the state starts fresh, with a warning
    assert "has no rlft_reward_state.json" in caplog.text and (a.n, b.n) == (1, 2)
