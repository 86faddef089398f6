"""Issue 33: NaN/inf and out-of-range values that validate accepted and training used silently (a NaN adapter,
clipping switched off, loss 0 at every step) or turned into a traceback. Each row is the exact command line
`rlft validate RECIPE key=value` (a subprocess) and the one line it must answer with: exit 2, no traceback."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from tests.conftest import ROOT

GRPO, KTO = ROOT / "recipes" / "intent_grpo.yaml", ROOT / "recipes" / "intent_kto.yaml"
BIG = "9" * 5000

# (recipe, override, expected stderr line after "error: command line: ")
CASES = [
    (GRPO, "trainer.weight_decay=.nan", "trainer.weight_decay: expected a number >= 0, got nan"),
    (GRPO, "trainer.weight_decay=.inf", "trainer.weight_decay: expected a number >= 0, got inf"),
    (GRPO, "trainer.weight_decay=-0.1", "trainer.weight_decay: expected a number >= 0, got -0.1"),
    (GRPO, "trainer.max_grad_norm=.nan", "trainer.max_grad_norm: expected a number >= 0, got nan"),
    (GRPO, "trainer.max_grad_norm=-1", "trainer.max_grad_norm: expected a number >= 0, got -1"),
    (GRPO, "trainer.beta=.nan", "trainer.beta: expected a number >= 0, got nan"),
    (GRPO, "trainer.epsilon=-0.2", "trainer.epsilon: expected a number > 0, got -0.2"),
    (KTO, "trainer.desirable_weight=.nan", "trainer.desirable_weight: expected a number >= 0, got nan"),
    (KTO, "trainer.desirable_weight=-1", "trainer.desirable_weight: expected a number >= 0, got -1"),
    (KTO, "trainer.undesirable_weight=.nan", "trainer.undesirable_weight: expected a number >= 0, got nan"),
    (KTO, "trainer.undesirable_weight=-2", "trainer.undesirable_weight: expected a number >= 0, got -2"),
    (KTO, "trainer.beta=-1", "trainer.beta: expected a number > 0, got -1"),
    (KTO, "trainer.beta=0", "trainer.beta: expected a number > 0, got 0"),
    (GRPO, "rewards.0.weight=.nan", "rewards[0].weight: expected a finite number, got nan"),
    (GRPO, "rewards.0.weight=.inf", "rewards[0].weight: expected a finite number, got inf"),
    (GRPO, "rewards.0.weight=-.inf", "rewards[0].weight: expected a finite number, got -inf"),
    (GRPO, "trainer.top_p=2", "trainer.top_p: expected a number in (0, 1], got 2"),
    (GRPO, "trainer.top_p=0", "trainer.top_p: expected a number in (0, 1], got 0"),
    (GRPO, "trainer.top_k=-1", "trainer.top_k: expected a number >= 0, got -1"),
    (GRPO, "trainer.num_iterations=0", "trainer.num_iterations: expected a number >= 1, got 0"),
    (GRPO, "trainer.steps_per_generation=0", "trainer.steps_per_generation: expected a number >= 1, got 0"),
    (GRPO, "seed=-1", "seed: expected an integer in [0, 4294967295], got -1"),
    (GRPO, "seed=4294967296", "seed: expected an integer in [0, 4294967295], got 4294967296"),
    (GRPO, "trainer.seed=-1", "trainer.seed: expected a number in [0, 4294967295], got -1"),
    (GRPO, "trainer.adam_beta1=2", "trainer.adam_beta1: expected a number in [0, 1), got 2"),
    (GRPO, "trainer.adam_beta1=.nan", "trainer.adam_beta1: expected a number in [0, 1), got nan"),
    (KTO, "trainer.adam_beta2=1", "trainer.adam_beta2: expected a number in [0, 1), got 1"),
    (GRPO, "trainer.adam_beta2=-0.5", "trainer.adam_beta2: expected a number in [0, 1), got -0.5"),
    (GRPO, "trainer.adam_epsilon=-1", "trainer.adam_epsilon: expected a number > 0, got -1"),
    (KTO, "trainer.adam_epsilon=0", "trainer.adam_epsilon: expected a number > 0, got 0"),
    (GRPO, "trainer.learning_rate=.nan", "trainer.learning_rate: expected a number >= 0.0, got nan"),
    (KTO, "trainer.learning_rate=-1e-5", "trainer.learning_rate: expected a number >= 0.0, got -1e-05"),
    (GRPO, "trainer.delta=.inf", "trainer.delta: expected a finite number, got inf"),  # any numeric key: finite
    (GRPO, "trainer.reward_weights=[.nan]", "trainer.reward_weights: expected finite numbers, got [nan]"),
    (GRPO, f"trainer.max_steps={BIG}", "trainer.max_steps: expected a number of at most 100 digits, got a "
     "5000-digit number"),
    (GRPO, f"trainer.max_steps={'9' * 30}", f"trainer.max_steps: expected -1 (use num_train_epochs) or "
     f"1..1000000000, got {'9' * 30}"),
]


def _validate(tmp_path, recipe, *overrides):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, "-m", "rlft", "validate", str(recipe), *overrides], capture_output=True,
                          text=True, timeout=300, cwd=tmp_path, env=env)


@pytest.mark.parametrize(("recipe", "override", "message"), CASES, ids=[c[1][:40] for c in CASES])
def test_a_value_out_of_range_is_one_line_exit_2(tmp_path, recipe, override, message):
    proc = _validate(tmp_path, recipe, override)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr
    assert proc.stderr.strip() == f"error: command line: {message}"


def test_the_limits_themselves_are_accepted(tmp_path):
    edges = ["trainer.top_p=1", "trainer.top_k=0", "trainer.beta=0", "trainer.weight_decay=0",
             "trainer.max_grad_norm=0", "trainer.adam_beta1=0", "trainer.adam_beta2=0.999",
             "trainer.adam_epsilon=1e-8", "trainer.num_iterations=1", "trainer.steps_per_generation=1", "seed=0",
             "rewards.0.weight=-0.5"]
    proc = _validate(tmp_path, GRPO, *edges)
    assert proc.returncode == 0, proc.stderr
    proc = _validate(tmp_path, KTO, "trainer.desirable_weight=0", "trainer.undesirable_weight=1.5", "seed=4294967295")
    assert proc.returncode == 0, proc.stderr


def test_an_over_long_number_in_a_recipe_file_names_the_file_and_line(tmp_path):
    recipe = tmp_path / "long.yaml"
    recipe.write_text(f"extends: {GRPO}\ntrainer:\n  max_steps: {BIG}\n")
    proc = _validate(tmp_path, recipe.name)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert proc.stderr.strip() == ("error: long.yaml: line 3: expected a number of at most 100 digits, got a "
                                   "5000-digit number")  # the recipe as given, relative to the working directory


def test_in_range():
    from rlft.recipe.validate import in_range

    assert in_range(1, "(0, 1]") and not in_range(0, "(0, 1]") and in_range(0, "[0, 1)") and not in_range(1, "[0, 1)")
    assert in_range(0, ">= 0") and not in_range(0, "> 0") and not in_range(float("nan"), ">= 0")
    assert not in_range(float("inf"), ">= 0") and in_range(10**400, ">= 0")  # a huge int does not overflow
