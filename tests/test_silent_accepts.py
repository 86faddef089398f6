"""Issue 33's silent accepts: values rlft took without a word and trained or evaluated on. Each row is a command line
(through `rlft.cli.run`) and what it must say now: an error line (exit 2) for a value that cannot work, a warning
line (exit 0) for a key that does nothing in this recipe."""

from __future__ import annotations

import glob

import pytest

from rlft.cli import run
from tests.conftest import ROOT

RECIPE = """algorithm: {algorithm}
output_dir: {tmp}/out
model: {{name: {model}}}
data: {{source: demo:intents, demo_size: 40}}
rewards:
  - name: intent
trainer: {{max_steps: 1, per_device_train_batch_size: 4{generations}}}
evaluation: {{before: false, after: false}}
"""
JUDGE = "rewards=[{{name: judge, params: {{model: m, {0}}}}}]"
FREE = ["decoding.constrain_labels=true", "decoding.free_reply=true"]

# (why, algorithm, command after `rlft` ({recipe}: the recipe), the error line after "error: ")
ERRORS = [
    ("a minimum reply above the maximum masked EOS past the forced end", "grpo",
     ["validate", "{recipe}", *FREE, "decoding.reply_min_tokens=20", "decoding.reply_max_tokens=10"],
     "command line: decoding.reply_min_tokens: expected <= decoding.reply_max_tokens (10), got 20 (EOS would be "
     "masked past the "
     "forced end)"),
    ("a NaN success threshold counts no rollout as a success", "grpo",
     ["validate", "{recipe}", "signal.success_threshold=.nan"],
     "command line: signal.success_threshold: expected a finite number, got nan"),
    ("a negative judge temperature", "grpo", ["validate", "{recipe}", JUDGE.format("temperature: -1")],
     "command line: rewards[0].params: temperature must be a finite number >= 0, got -1"),
    ("a NaN judge scale", "grpo", ["validate", "{recipe}", JUDGE.format("scale_reward: .nan")],
     "command line: rewards[0].params: scale_reward must be a finite number, got nan"),
    ("an infinite judge offset", "grpo", ["validate", "{recipe}", JUDGE.format("offset: .inf")],
     "command line: rewards[0].params: offset must be a finite number, got inf"),
    ("a judge base_url that is not a URL", "grpo", ["validate", "{recipe}", JUDGE.format("base_url: not a url")],
     "command line: rewards[0].params: base_url must be an http(s) URL such as http://127.0.0.1:8000/v1, got "
     "'not a url'"),
    ("a judge base_url without a host", "grpo", ["validate", "{recipe}", JUDGE.format("base_url: 'http:///v1'")],
     "command line: rewards[0].params: base_url must be an http(s) URL such as http://127.0.0.1:8000/v1, got "
     "'http:///v1'"),
    ("eval --max-samples -3 evaluated 0 rows and exited 0", "grpo",
     ["eval", "{recipe}", "--model", "base", "--max-samples", "-3", "--out", "{tmp}/eval"],
     "--max-samples: expected a number of rows >= 1, got -3"),
]

# (why, algorithm, command, the warning line on stdout after "[rlft] warning: ")
WARNINGS = [
    ("validity_weight with validity off", "label_pg", ["validate", "{recipe}", "label_pg.validity_weight=0.5"],
     "command line: label_pg.validity_weight: has no effect without label_pg.validity_paths > 0 (validity is off)"),
    ("exact_head_weight without exact_head", "grpo", ["validate", "{recipe}", "signal.exact_head_weight=0.1"],
     "command line: signal.exact_head_weight: has no effect without signal.exact_head"),
    ("a reply length without a free reply", "grpo", ["validate", "{recipe}", "decoding.reply_min_tokens=5"],
     "command line: decoding.reply_min_tokens: has no effect without decoding.free_reply: true"),
    ("free_weight without normaliser both", "label_pg", ["validate", "{recipe}", "label_pg.free_weight=0.2"],
     "command line: label_pg.free_weight: has no effect without label_pg.normaliser: both"),
]


def _recipe(tmp_path, model, algorithm: str):
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(RECIPE.format(algorithm=algorithm, tmp=tmp_path, model=model,
                                    generations=", num_generations: 4" if algorithm == "grpo" else ""))
    return recipe


def _argv(command: list[str], recipe, tmp_path) -> list[str]:
    return [a.replace("{recipe}", str(recipe)).replace("{tmp}", str(tmp_path)) for a in command]


@pytest.mark.parametrize(("why", "algorithm", "command", "message"), ERRORS, ids=[c[0] for c in ERRORS])
def test_a_value_that_cannot_work_is_one_line_exit_2(tmp_path, tiny_model_dir, capsys, why, algorithm, command,
                                                     message):
    code = run(_argv(command, _recipe(tmp_path, tiny_model_dir, algorithm), tmp_path))
    err = capsys.readouterr().err.strip()
    assert code == 2, err
    assert "Traceback" not in err
    assert err.splitlines()[-1] == "error: " + message


@pytest.mark.parametrize(("why", "algorithm", "command", "message"), WARNINGS, ids=[c[0] for c in WARNINGS])
def test_a_key_that_does_nothing_here_is_a_warning_line(tmp_path, tiny_model_dir, capsys, why, algorithm, command,
                                                        message):
    recipe = _recipe(tmp_path, tiny_model_dir, algorithm)
    assert run(_argv(command, recipe, tmp_path)) == 0
    out = capsys.readouterr().out
    assert [line for line in out.splitlines() if "warning" in line] == ["[rlft] warning: " + message]
    assert run(["validate", str(recipe)]) == 0  # the same recipe without the key: no warning
    assert "warning" not in capsys.readouterr().out


def test_a_key_set_in_the_recipe_file_is_named_there_and_inherited_keys_are_not_warned(tmp_path, tiny_model_dir):
    from rlft.recipe.load import load_recipe
    from rlft.recipe.validate import inert_keys

    parent = _recipe(tmp_path, tiny_model_dir, "grpo")
    parent.write_text(parent.read_text() + "signal: {exact_head_weight: 0.1}\n")
    child = tmp_path / "child.yaml"
    child.write_text(f"extends: {parent.name}\nseed: 3\n")
    assert inert_keys(load_recipe(parent, check=False)) == [
        f"{parent}: signal.exact_head_weight: has no effect without signal.exact_head"]
    assert inert_keys(load_recipe(child, check=False)) == []


@pytest.mark.parametrize("path", sorted(glob.glob(str(ROOT / "recipes" / "*.yaml"))),
                         ids=lambda p: p.rsplit("/", 1)[-1])
def test_no_bundled_recipe_sets_a_key_that_does_nothing(path):
    from rlft.recipe.load import load_recipe
    from rlft.recipe.validate import inert_keys

    assert inert_keys(load_recipe(path, check=False)) == []
