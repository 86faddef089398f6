"""An algorithm registered from one file of its own (tests/toy_algorithm.py: an `Algorithm` spec, a config class,
its own rule and a trainer builder) is a recipe's `algorithm:` everywhere: recipe loading, `rlft validate` (its
rewards, its trainer ranges, its own checks, the sections it does not own), data preparation (its data shape),
`rlft check` (its online / group-relative declarations) and `rlft.train` -- without touching another module.
The built-in specs answer what the name checks they replace answered."""

from __future__ import annotations

import importlib
import json

import pytest

import rlft
from rlft import trainers
from rlft.cli import run
from rlft.data.loading import prepare
from rlft.errors import RecipeError


@pytest.fixture
def toy():
    module = importlib.import_module("tests.toy_algorithm")
    trainers.register(module.SPEC)  # again, when an earlier test unregistered it
    yield module.SPEC
    trainers.unregister("toy_grpo")


def _recipe(tiny_model_dir, tmp_path, trainer="{max_steps: 1, per_device_train_batch_size: 2, num_generations: 2, "
            "max_completion_length: 4}", extra="", rewards="rewards: [{name: intent}]\n"):
    return f"""algorithm: toy_grpo
output_dir: {tmp_path / 'out'}
model: {{name: {tiny_model_dir}}}
adapter: {{type: lora, r: 4, alpha: 8}}
data: {{source: "demo:intents", demo_size: 12, system_prompt: "Intents: {{labels}}"}}
{rewards}trainer: {trainer}
evaluation: {{before: false, after: false}}
{extra}"""


def test_unregistered_name_is_refused(tiny_model_dir, tmp_path, write_recipe):
    trainers.unregister("toy_grpo")
    with pytest.raises(RecipeError, match=r"algorithm: 'toy_grpo' is not one of grpo, label_pg, dpo, kto, ppo, "
                                          r"reward_model"):
        rlft.load_recipe(write_recipe(_recipe(tiny_model_dir, tmp_path)))


def test_toy_is_validated_and_prepared_from_its_spec(toy, tiny_model_dir, tmp_path, write_recipe):
    recipe = rlft.load_recipe(write_recipe(_recipe(tiny_model_dir, tmp_path)))  # validate runs here
    assert recipe.algorithm == "toy_grpo"
    data = prepare(recipe.data, recipe.algorithm, recipe.seed)  # prompt rows, as the spec declares
    assert "prompt" in data.train.column_names and data.labels
    assert data.train[0]["prompt"][0]["role"] == "system"


@pytest.mark.parametrize(("change", "message"), [
    (dict(rewards=""), "rewards: algorithm 'toy_grpo' needs at least one reward"),  # needs_rewards
    (dict(trainer="{per_device_train_batch_size: 2, num_generations: 2}"),  # its own check
     "trainer.max_steps: toy_grpo trains a fixed number of steps; set it"),
    (dict(trainer="{max_steps: 1, num_generations: 1}"),  # its trainer_ranges
     "trainer.num_generations: expected a number >= 2, got 1"),
    (dict(extra="signal: {drop_zero_std: true}\n"),  # a section it does not own
     "signal: only applies to algorithm grpo (this recipe is toy_grpo); decoding settings live in decoding:"),
    (dict(extra="data: {source: 'demo:intent_pairs'}\n"),  # prompt rows, not preference rows
     "missing column(s)"),
])
def test_toy_rules_come_from_its_spec(toy, tiny_model_dir, tmp_path, write_recipe, change, message):
    text = _recipe(tiny_model_dir, tmp_path, **change)
    if "demo:intent_pairs" in text:  # a preference-data file for a prompt algorithm
        pairs = tmp_path / "pairs.jsonl"
        pairs.write_text(json.dumps({"prompt": "hi", "chosen": "a", "rejected": "b"}) + "\n")
        text = text.replace('source: "demo:intents"', f"source: {pairs}").replace(
            "data: {source: 'demo:intent_pairs'}\n", "")
        message = "missing column(s) utterance, intent needed by toy_grpo (data.prompt_template / data.label_column)"
    with pytest.raises(rlft.UserError) as exc:
        rlft.load_recipe(write_recipe(text))
    assert message in str(exc.value)


def test_toy_checks_and_trains(toy, tiny_model_dir, tmp_path, write_recipe, capsys):
    path = write_recipe(_recipe(tiny_model_dir, tmp_path))
    assert run(["check", str(path)]) == 0
    out = capsys.readouterr().out
    assert "recipe: ok (toy_grpo, 1 reward(s)" in out
    assert "zero-variance forecast:" in out  # group_relative
    result = rlft.train(rlft.load_recipe(path))
    metrics = json.loads((tmp_path / "out" / "metrics.json").read_text())
    assert metrics["algorithm"] == "toy_grpo" and metrics["global_step"] == 1
    assert result.adapter_dir == tmp_path / "out"


@pytest.mark.parametrize(("name", "data", "task", "rewards", "online"), [
    ("grpo", "prompt", "causal_lm", True, True), ("label_pg", "prompt", "causal_lm", True, False),
    ("dpo", "pairs", "causal_lm", False, False), ("kto", "kto", "causal_lm", False, False),
    ("ppo", "prompt", "causal_lm", True, True), ("reward_model", "pairs", "seq_cls", False, False),
])
def test_builtin_specs_answer_as_the_name_checks_did(name, data, task, rewards, online):
    spec = trainers.algorithm_spec(name)
    assert (spec.data, spec.task, spec.needs_rewards, spec.online) == (data, task, rewards, online)
    assert spec.group_relative == spec.trl_reward_aggregation == (name == "grpo")
    assert ("signal" in spec.sections, "label_pg" in spec.sections) == (name == "grpo", name == "label_pg")
    assert spec.lookup == (name != "ppo") and spec.analysis == (name != "label_pg")
    assert spec.completions_per_step(4, ["a", "b", "c"]) == (12 if name == "label_pg" else 4)
    assert dict(spec.trainer_ranges) == ({"beta": "> 0"} if name in ("dpo", "kto") else {})


def test_unknown_algorithm_is_one_line():
    with pytest.raises(RecipeError, match=r"^algorithm: unknown 'nope'$"):
        trainers.algorithm_spec("nope")
