"""The `length` reward (rewards/length.py): its values, and `start_step`, which phases it in during training."""

from __future__ import annotations

import json

import pytest
from transformers import TrainerState

import rlft
from rewards.length import LengthReward
from rlft.recipe.load import load_recipe
from rlft.scoring.completions import score
from tests.test_progress import intents_csv


def at_step(step: int) -> TrainerState:
    state = TrainerState()
    state.global_step = step
    return state


def test_words_past_the_budget_cost_the_penalty_down_to_the_floor():
    reward = LengthReward(max_words=3, penalty_per_word=0.2, floor=-0.5)
    assert reward(prompts=["p"] * 4, completions=["", "a b c", "a b c d e", "a b c d e f g h"]) == [0.0, 0.0, -0.4, -0.5]


def test_start_step_scores_zero_before_it_and_the_penalty_from_it_on():
    reward = LengthReward(max_words=1, penalty_per_word=0.1, start_step=30)
    long = ["one two three"]
    assert reward(prompts=["p"], completions=long, trainer_state=at_step(29)) == [0.0]
    assert reward(prompts=["p"], completions=long, trainer_state=at_step(30)) == [pytest.approx(-0.2)]
    assert reward(prompts=["p"], completions=long) == [pytest.approx(-0.2)]  # no trainer (rlft eval): always on
    with pytest.raises(ValueError, match="start_step must be >= 0"):
        LengthReward(start_step=-1)


def test_scoring_passes_the_trainer_state_through_to_it():  # the path label_pg and PPO score with
    reward = rlft.scoring.loader.load_reward(rlft.scoring.loader.RewardSpec(name="length", params={
        "max_words": 0, "penalty_per_word": 0.5, "start_step": 1}))
    before = score([reward], ["p"], ["a b"], {}, trainer_state=at_step(0)).total
    after = score([reward], ["p"], ["a b"], {}, trainer_state=at_step(1)).total
    assert [float(x) for x in before] == [0.0] and [float(x) for x in after] == [-1.0]


def test_grpo_logs_no_length_penalty_before_start_step_and_one_after(tmp_path, tiny_model_dir):
    data = intents_csv(tmp_path, [("please cancel my order", "cancel_order"), ("where is my parcel", "track_order"),
                                  ("I want my money back", "get_refund"), ("stop the order now", "cancel_order")] * 3)
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(f"""
output_dir: {tmp_path / 'run'}
model: {{name: {tiny_model_dir}, device: cpu}}
adapter: {{type: lora, r: 4, alpha: 8}}
data: {{source: {data}, eval_fraction: 0.34}}
rewards: [{{name: intent}}, {{name: length, params: {{max_words: 0, penalty_per_word: 1.0, start_step: 1}}}}]
decoding: {{prefill: "<intent>", constrain_labels: true}}
trainer: {{max_steps: 2, per_device_train_batch_size: 4, num_generations: 4, max_completion_length: 8,
          logging_steps: 1}}
evaluation: {{before: false, after: false}}
""")
    result = rlft.train(load_recipe(recipe))
    logged = json.loads((result.output_dir / "metrics.json").read_text())["log_history"]
    length = [h["rewards/length/mean"] for h in logged if "rewards/length/mean" in h]
    assert length[0] == 0.0  # step 1 runs at global_step 0 < start_step
    assert length[1] == -1.0  # every completion holds a label word, past max_words 0 (floor -1)
