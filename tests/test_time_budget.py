"""`max_train_minutes` (rlft.run.time_budget): training stops at the first step that reaches the budget, counting only
optimizer-step time, and the run still ends with its adapter, metrics.json record and model card."""

from __future__ import annotations

import json
import time

import pytest
from transformers import TrainerControl, TrainerState

import rlft
from rlft.errors import RecipeError
from rlft.recipe.load import load_recipe
from rlft.run.time_budget import CLOCKS, TrainTimeBudget
from rlft.recipe.validate import TRAIN_CLOCKS
from tests.test_progress import intents_csv


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_only_step_time_counts_and_the_first_step_past_the_budget_stops():
    clock = FakeClock()
    budget = TrainTimeBudget(0.5, clock=clock)  # 30 s
    state, control = TrainerState(), TrainerControl()
    stopped_at = None
    for step in range(1, 6):
        budget.on_step_begin(None, state, control)
        clock.now += 10.0  # a 10 s step
        state.global_step = step
        budget.on_step_end(None, state, control)
        if control.should_training_stop:
            stopped_at = step
            break
        clock.now += 100.0  # periodic evaluation / saving between steps: not training time
    assert stopped_at == 3
    assert budget.spent_s == 30.0
    assert budget.stop_reason == "max_train_minutes=0.5 reached after step 3 (0.5 minutes of training steps)"
    assert (budget.stop_kind, budget.stop_ok) == ("time_budget", True)


def test_a_run_that_ends_before_the_budget_records_no_stop():
    clock = FakeClock()
    budget = TrainTimeBudget(1.0, clock=clock)
    state, control = TrainerState(), TrainerControl()
    for step in range(1, 4):
        budget.on_step_begin(None, state, control)
        clock.now += 5.0
        state.global_step = step
        budget.on_step_end(None, state, control)
    assert not control.should_training_stop and budget.stop_reason is None and budget.spent_s == 15.0


def test_the_cpu_clock_counts_this_process_cpu_time_not_time_spent_waiting():
    budget = TrainTimeBudget(1.0, clock=CLOCKS["cpu"])
    state, control = TrainerState(), TrainerControl()
    budget.on_step_begin(None, state, control)
    time.sleep(0.3)  # a step that waits (another job has the core): no CPU time spent
    cpu0 = time.process_time()
    while time.process_time() - cpu0 < 0.2:  # a step that computes
        sum(i * i for i in range(1000))
    state.global_step = 1
    budget.on_step_end(None, state, control)
    assert 0.2 <= budget.spent_s < 0.3  # the compute, not the 0.3 s asleep
    assert set(CLOCKS) == set(TRAIN_CLOCKS)  # validate's list (kept apart to avoid importing transformers)


def _recipe(tmp_path, tiny_model_dir, minutes, clock="wall"):
    data = intents_csv(tmp_path, [("please cancel my order", "cancel_order"), ("where is my parcel", "track_order"),
                                  ("I want my money back", "get_refund")] * 4)
    path = tmp_path / "recipe.yaml"
    path.write_text(f"""
algorithm: label_pg
output_dir: {tmp_path / 'run'}
max_train_minutes: {minutes}
max_train_clock: {clock}
model: {{name: {tiny_model_dir}, device: cpu}}
adapter: {{type: lora, r: 4, alpha: 8}}
data: {{source: {data}, eval_fraction: 0.25}}
rewards: [{{name: intent}}]
decoding: {{prefill: "<intent>", constrain_labels: true}}
trainer: {{max_steps: 6, per_device_train_batch_size: 3, logging_steps: 1}}
evaluation: {{before: false, after: false}}
""")
    return path


def test_train_stops_at_the_budget_and_says_so_in_metrics_and_model_card(tmp_path, tiny_model_dir, capfd):
    result = rlft.train(load_recipe(_recipe(tmp_path, tiny_model_dir, "0.000001")))
    out = capfd.readouterr().out
    metrics = json.loads((result.output_dir / "metrics.json").read_text())
    assert metrics["global_step"] == 1  # max_steps is 6: the budget stopped it after the first step
    stop = metrics["stopped_early"]
    assert stop["kind"] == "time_budget" and stop["ok"] is True
    assert stop["reason"].startswith("max_train_minutes=1e-06 reached after step 1 (")
    assert f"[rlft] stopping: {stop['reason']}" in out
    assert (result.output_dir / "adapter_model.safetensors").is_file()
    card = (result.output_dir / "README.md").read_text()
    assert "## Stopped early" in card and "time_budget, counted as success" in card


def test_a_cpu_time_budget_stops_the_run_and_says_cpu_time(tmp_path, tiny_model_dir):
    result = rlft.train(load_recipe(_recipe(tmp_path, tiny_model_dir, "0.000001", clock="cpu")))
    stop = json.loads((result.output_dir / "metrics.json").read_text())["stopped_early"]
    assert stop["reason"].startswith("max_train_minutes=1e-06 reached after step 1 (")
    assert stop["reason"].endswith(" minutes of training steps (CPU time))")


def test_an_unknown_clock_is_one_line_naming_the_key(tmp_path, tiny_model_dir):
    path = _recipe(tmp_path, tiny_model_dir, "1", clock="gpu")
    with pytest.raises(RecipeError) as err:
        rlft.train(load_recipe(path))
    assert str(err.value) == f"{path}: max_train_clock: expected one of wall, cpu, got 'gpu'"


@pytest.mark.parametrize("value,message", [
    ("-1", "max_train_minutes: expected minutes >= 0 (0: no time limit), got -1"),
    ("'soon'", "max_train_minutes: expected float, got 'soon'"),
])
def test_a_bad_budget_is_one_line_naming_the_key(tmp_path, tiny_model_dir, value, message):
    path = _recipe(tmp_path, tiny_model_dir, value)
    with pytest.raises(RecipeError) as err:
        rlft.train(load_recipe(path))
    assert str(err.value) == f"{path}: {message}"
