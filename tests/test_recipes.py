"""Recipe loading: extends, overrides, and one exact one-line error (exit 2, no traceback) per user mistake."""

import subprocess
import sys

import pytest

from rlft.cli import run
from rlft.recipe.load import load_recipe

BASE = """algorithm: grpo
output_dir: {out}
model: {{name: {model}}}
data: {{source: demo:intents}}
rewards:
  - name: intent
trainer: {{max_steps: 2}}
"""


@pytest.fixture
def base(write_recipe, tmp_path, tiny_model_dir):
    return write_recipe(BASE.format(out=tmp_path / "out", model=tiny_model_dir), "base.yaml")


def test_valid_recipe_extends_and_overrides(base, write_recipe, tmp_path):
    child = write_recipe("extends: base.yaml\ntrainer: {learning_rate: 1.0e-4}\nadapter: {r: 4}\n", "child.yaml")
    recipe = load_recipe(child, ["trainer.max_steps=7", "rewards.0.weight=0.5", "data.columns={utterance: text}"])
    assert recipe.trainer == {"max_steps": 7, "learning_rate": 1e-4}
    assert recipe.adapter.r == 4 and recipe.adapter.alpha == 32
    assert recipe.rewards[0].weight == 0.5
    assert recipe.data.columns == {"utterance": "text"}
    assert recipe.model.name == str(tmp_path / "tiny_llama0") or recipe.model.name.endswith("tiny_llama0")


def test_override_scientific_notation_is_a_float(base):
    assert load_recipe(base, ["trainer.learning_rate=3e-5"]).trainer["learning_rate"] == 3e-5


def _error(capsys, args):
    code = run(args)
    err = capsys.readouterr().err.strip()
    assert code == 2
    assert "\n" not in err, err
    return err


CASES = [
    # (text appended to the base recipe, overrides, expected stderr line; {file} = the recipe, {cli} = command line)
    ("adapter: {rank: 8}\n", [], "{file}: adapter.rank: unknown key (did you mean 'r'?); allowed: "
     "type, r, alpha, dropout, target_modules, bias, init_from, quant_type, double_quant, compute_dtype, ema_decay"),
    ("", ["trainer.lerning_rate=0.1"], "{cli}: trainer.lerning_rate: not a GRPOConfig option (did you mean "
     "'learning_rate'?) (see docs/recipes.md#trainer)"),
    ("", ["trainer.max_steps=ten"], "{cli}: trainer.max_steps: expected int, got 'ten'"),
    ("", ["adapter.r=sixteen"], "{cli}: adapter.r: expected int, got 'sixteen'"),
    ("", ["adapter.type=lorax"], "{cli}: adapter.type: 'lorax' is not one of lora, qlora, none "
     "(did you mean 'lora'?)"),
    ("", ["algorithm=grpoo"], "{cli}: algorithm: 'grpoo' is not one of grpo, label_pg, dpo, kto, ppo, reward_model, rft "
     "(did you mean 'grpo'?)"),
    ("", ["data.source=missing.csv"], "{cli}: data.source: file 'missing.csv' does not exist"),
    ("", ["rewards.0.name=intnet"], "{cli}: rewards[0]: unknown reward 'intnet' (did you mean 'intent'?); use a "
     "built-in (intent, intent_format, judge, length, reward_model, rubric), 'package.module:function' or "
     "'path/to/file.py:function'"),
    ("", ["rewards.0.params={partial: 0.5}"], "{cli}: rewards[0]: reward 'intent' does not accept parameter "
     "'partial' (did you mean 'partial_credit'?); it accepts: aliases, correct, handoff, invalid, label_column, labels, log_per_intent, malformed, "
     "max_chars, missing, multiple, pair_rewards, partial_credit, pattern, prefix, timeout, timeout_s, wrong"),
    ("", ["trainr.max_steps=3"], "{cli}: trainr: unknown section (did you mean 'trainer'?); allowed: adapter, "
     "algorithm, data, decoding, evaluation, export, label_pg, max_train_clock, max_train_minutes, model, "
     "output_dir, overwrite, rewards, rft, seed, signal, trainer"),
    ("", ["rewards=[]"], "{cli}: rewards: algorithm 'grpo' needs at least one reward (e.g. - name: intent)"),
    ("", ["model.name=not/a/real/path"], "{cli}: model.name: 'not/a/real/path' is not an embedded model "
     "(smollm2-135m-instruct), an existing path, or a hub id like org/name"),
    ("", ["algorithm=kto", "rewards=[]", "trainer.per_device_train_batch_size=1"],
     "{cli}: trainer.per_device_train_batch_size: KTO needs > 1 (its KL reference term pairs each prompt with "
     "another completion in the batch)"),
    ("", ["data.eval_fraction=1.5"], "{cli}: data.eval_fraction: expected a number between 0 and 1 (exclusive), "
     "got 1.5"),
    ("adapter: {compute_dtype: fp32}\n", [], "{file}: adapter.compute_dtype: 'fp32' is not one of auto, float32, "
     "bfloat16, float16"),
    ("signal: {drop_zero_std: true}\n", ["algorithm=ppo"], "{file}: signal: only applies to algorithm grpo (this "
     "recipe is ppo); decoding settings live in decoding:"),
    ("signal: {prefill: '<intent>'}\n", [], "{file}: signal.prefill: moved to decoding.prefill (one decoding "
     "section for training, evaluation and export)"),
    ("evaluation: {prefill: '<intent>'}\n", [], "{file}: evaluation.prefill: moved to decoding.prefill (one "
     "decoding section for training, evaluation and export)"),
    ("", ["signal.refill_rounds=-3"], "{cli}: signal.refill_rounds: expected >= 0, got -3"),
    ("", ["signal.refill_rounds=2"], "{cli}: signal.refill_rounds: needs signal.drop_zero_std: true"),
    ("", ["signal.decision_tokens_only=true"], "{cli}: signal.decision_tokens_only: needs "
     "decoding.constrain_labels: true"),
    ("", ["evaluation.every_steps=-1"], "{cli}: evaluation.every_steps: expected >= 0 (0: off), got -1"),
    ("", ["evaluation.max_samples=-1"], "{cli}: evaluation.max_samples: expected >= 1, got -1"),
    ("", ["evaluation.keep_best=true"], "{cli}: evaluation.keep_best: needs evaluation.every_steps > 0"),
    ("", ["evaluation.every_steps=5", "evaluation.keep_best=true", "evaluation.best_metric=intent_acc"],
     "{cli}: evaluation.best_metric: unknown metric 'intent_acc' (did you mean 'intent_accuracy'?); evaluation "
     "reports intent_accuracy, format_rate, macro_f1, policy_following, system_accuracy, coverage, "
     "selective_accuracy, expected_reward, reward/intent"),
    ("", ["label_pg.weighting=mean"], "{cli}: label_pg.weighting: 'mean' is not one of expected, maxrl, log"),
    ("", ["label_pg.maxrl_t=0"], "{cli}: label_pg: only applies to algorithm label_pg or signal.exact_head "
     "(this recipe is grpo)"),
    ("", ["algorithm=label_pg", "label_pg.maxrl_t=0"], "{cli}: label_pg.maxrl_t: expected >= 1, got 0"),
    ("", ["trainer.num_generations=3"], "{file}: GRPOConfig rejected the trainer settings: generation_batch_size "
     "(8) must be divisible by num_generations (3)."),
]


@pytest.mark.parametrize(("extra", "overrides", "message"), CASES)
def test_malformed_recipe_gives_one_exact_line(base, capsys, extra, overrides, message):
    path = base
    if extra:
        path = base.with_name("bad.yaml")
        path.write_text(base.read_text() + extra)
    err = _error(capsys, ["validate", str(path), *overrides])
    assert err == "error: " + message.format(file=path, cli="command line")


def test_unknown_key_names_the_parent_file_when_inherited(write_recipe, base, capsys):
    write_recipe(base.read_text() + "evaluation: {max_sample: 3}\n", "parent.yaml")
    child = write_recipe("extends: parent.yaml\ntrainer: {max_steps: 1}\n", "child.yaml")
    err = _error(capsys, ["validate", str(child)])
    assert "parent.yaml: evaluation.max_sample: unknown key (did you mean 'max_samples'?)" in err


def test_yaml_syntax_error_and_missing_recipe_and_circular_extends(write_recipe, capsys):
    bad = write_recipe("model: {name: x\n", "broken.yaml")
    assert "is not valid YAML" in _error(capsys, ["validate", str(bad)])
    assert "recipe file 'nope.yaml' does not exist" in _error(capsys, ["validate", "nope.yaml"])
    write_recipe("extends: b.yaml\n", "a.yaml")
    b = write_recipe("extends: a.yaml\n", "b.yaml")
    assert "extends: circular chain" in _error(capsys, ["validate", str(b)])


def test_cli_subprocess_exit_code_2_and_no_traceback(base):
    proc = subprocess.run([sys.executable, "-m", "rlft", "validate", str(base), "adapter.alpah=3"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    lines = [ln for ln in proc.stderr.splitlines() if ln.startswith("error:")]
    assert lines == [f"error: command line: adapter.alpah: unknown key (did you mean 'alpha'?); allowed: type, r, "
                     "alpha, dropout, target_modules, bias, init_from, quant_type, double_quant, compute_dtype, ema_decay"]


def test_validate_ok_prints_summary(base, capsys):
    assert run(["validate", str(base)]) == 0
    assert "ok (grpo, 1 reward(s)" in capsys.readouterr().out
