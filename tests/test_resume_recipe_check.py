"""Resuming with a changed recipe is refused: one line naming the first differing key and both values, exit 2,
nothing in the output folder touched; max_steps and logging/save/eval settings may change; overwrite=true forces.

One real GRPO step makes the run to resume (recipe.yaml + a complete checkpoint-1); each refused case stops before
the model loads, so the table is cheap. The allowed cases go through the same check; one of them (a longer
max_steps) really resumes.
"""

from __future__ import annotations

import pytest
import yaml

import rlft
from rlft.run.checkpoints import check_resumed_recipe, first_difference
from rlft.cli import run
from rlft.errors import RecipeError
from rlft.run.outputs import recipe_record
from rlft.recipe.load import load_recipe

RECIPE = """algorithm: grpo
output_dir: {out}
seed: 42
model: {{name: {model}}}
adapter: {{type: lora, r: 4, alpha: 8}}
data: {{source: demo:intents, demo_size: 24}}
rewards: [{{name: intent}}]
decoding: {{prefill: "<intent>", constrain_labels: true}}
trainer: {{max_steps: 1, per_device_train_batch_size: 4, num_generations: 2, max_completion_length: 8,
          learning_rate: 0.05, save_strategy: steps, save_steps: 1}}
evaluation: {{before: false, after: false}}
"""

RESUME = "trainer.resume_from_checkpoint=last"

# (overrides on the resumed run, the first differing key, saved value, new value): why each must be refused
REFUSED = [
    (["trainer.learning_rate=0.1"], "trainer.learning_rate", "0.05", "0.1"),           # another optimisation
    (["trainer.beta=0.04"], "trainer.beta", "0.0", "0.04"),                            # unset -> TRL default 0.0
    (["seed=7"], "seed", "42", "7"),                                                   # another data split
    (["model.dtype=float32"], "model.dtype", "'auto'", "'float32'"),
    (["adapter.r=8"], "adapter.r", "4", "8"),                                          # another adapter shape
    (["data.prompt_template=Question {utterance}"], "data.prompt_template", "'{utterance}'",
     "'Question {utterance}'"),
    (["rewards=[{name: intent, weight: 0.5}]"], "rewards[0].weight", "1.0", "0.5"),
    (["decoding.prefill="], "decoding.prefill", "'<intent>'", "''"),
    (["signal.drop_zero_std=true"], "signal.drop_zero_std", "False", "True"),
    (["trainer.max_steps=5", "trainer.num_generations=4"], "trainer.num_generations", "2", "4"),  # first key only
]

# overrides that must resume: how long, how often to log/save/evaluate, what is reported; a default spelled out
ALLOWED = [
    ["trainer.max_steps=3"],
    ["trainer.logging_steps=5", "trainer.save_steps=2", "trainer.save_total_limit=1"],
    ["trainer.eval_strategy=no", "evaluation.before=true", "evaluation.max_samples=10"],
    ["trainer.learning_rate=5.0e-2"],     # the same number written differently
    ["trainer.temperature=1.0"],          # GRPOConfig's default, now explicit
    ["model.cache_dir=/tmp/elsewhere"],   # where GGUF conversions are cached: not what is trained
]


@pytest.fixture(scope="module")
def started_run(tiny_model_dir, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("resume_check")
    out = tmp / "run"
    recipe = tmp / "recipe.yaml"
    recipe.write_text(RECIPE.format(out=out, model=tiny_model_dir))
    rlft.train(recipe)
    assert (out / "checkpoint-1").is_dir()
    return recipe, out


def _snapshot(out):
    return {p.relative_to(out): p.read_bytes() for p in sorted(out.rglob("*")) if p.is_file()}


@pytest.mark.parametrize(("overrides", "key", "old", "new"), REFUSED, ids=[c[1] for c in REFUSED])
def test_changed_recipe_is_refused_and_nothing_is_written(started_run, overrides, key, old, new):
    recipe, out = started_run
    before = _snapshot(out)
    with pytest.raises(RecipeError) as err:
        rlft.train(recipe, [RESUME, *overrides])
    message = str(err.value)
    assert "\n" not in message
    assert message.startswith(f"{recipe}: cannot resume {out / 'checkpoint-1'}: the recipe changed since that run "
                              f"started: {key} was {old}, now {new} ({out / 'recipe.yaml'}); ")
    assert message.endswith("or set overwrite=true to resume with this one")
    assert _snapshot(out) == before


@pytest.mark.parametrize("overrides", ALLOWED, ids=[o[0] for o in ALLOWED])
def test_length_logging_saving_and_evaluation_may_change(started_run, overrides):
    recipe, out = started_run
    labels = yaml.safe_load((out / "recipe.yaml").read_text())["data"]["labels"]
    record = recipe_record(load_recipe(recipe, [RESUME, *overrides]), labels)
    check_resumed_recipe(record, out, out / "checkpoint-1", str(recipe))  # no error


def test_cli_exits_2_with_one_line(started_run, capsys):
    recipe, out = started_run
    assert run(["train", str(recipe), RESUME, "adapter.alpha=16"]) == 2
    errors = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and "the recipe changed since that run started: adapter.alpha was 8, now 16" in errors[0]


def test_extending_max_steps_resumes_and_overwrite_forces_a_change(started_run):
    recipe, out = started_run
    result = rlft.train(recipe, [RESUME, "trainer.max_steps=2"])
    assert result.metrics["global_step"] == 2
    assert yaml.safe_load((out / "recipe.yaml").read_text())["trainer"]["max_steps"] == 2
    # overwrite=true: resume anyway (from checkpoint-2) and save the new recipe
    result = rlft.train(recipe, [RESUME, "trainer.max_steps=3", "trainer.learning_rate=0.01", "overwrite=true"])
    assert result.metrics["global_step"] == 3
    assert yaml.safe_load((out / "recipe.yaml").read_text())["trainer"]["learning_rate"] == 0.01


@pytest.mark.parametrize(("section", "value", "key"), [
    ("algorithm", "label_pg", "algorithm"),  # (a recipe validates label_pg: only with algorithm label_pg)
    ("label_pg", {"weighting": "expected"}, "label_pg.weighting"),
    ("data", {"labels": ["only_one"]}, "data.labels"),  # the resolved label set of the data changed
])
def test_algorithm_label_pg_and_label_set_are_compared(started_run, section, value, key):
    recipe, out = started_run
    record = yaml.safe_load((out / "recipe.yaml").read_text())
    record[section] = {**record[section], **value} if isinstance(value, dict) else value
    with pytest.raises(RecipeError, match=rf"started: {key.replace('.', '[.]')} was "):
        check_resumed_recipe(record, out, out / "checkpoint-1", str(recipe))


def test_first_difference_walks_nested_values_in_saved_order():
    assert first_difference({"a": {"x": 1, "y": [1, {"z": 2}]}}, {"a": {"x": 1.0, "y": [1, {"z": 3}]}}) == \
        ("a.y[1].z", 2, 3)
    assert first_difference({"a": [1, 2]}, {"a": [1]}) == ("a", [1, 2], [1])
    assert first_difference({"a": 1}, {"a": 1, "b": None}) == ("b", "<not set>", None)
    assert first_difference({"a": True}, {"a": 1}) == ("a", True, 1)
