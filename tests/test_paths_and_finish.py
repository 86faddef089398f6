"""Recipe-relative input paths (command-line paths stay relative to the working directory), `rlft --version`, the
`next:` line, and how an early stop by a reward's limit is recorded and turned into the exit code."""

from __future__ import annotations

import types
from pathlib import Path

import pytest

from rlft.cli import finish_message, run
from rlft.recipe.load import load_recipe
from tests.conftest import ROOT

RECIPE = """algorithm: grpo
output_dir: runs/x
model: {{name: {model}}}
data: {{source: tickets.csv}}
rewards:
  - name: my_rewards.py:short
  - name: judge_like.py:judge
    params: {{policy_file: policies.yaml, path: runs/rm}}
trainer: {{max_steps: 1}}
"""


def test_input_paths_are_read_next_to_the_recipe_and_overrides_from_the_working_directory(
        tmp_path, tiny_model_dir, monkeypatch):
    folder = tmp_path / "project" / "recipes"
    folder.mkdir(parents=True)
    (folder / "tickets.csv").write_text("utterance,intent\nhi,greet\nbye,leave\n")
    (folder / "my_rewards.py").write_text("def short(prompts, completions, **kw):\n"
                                          "    return [1.0] * len(completions)\n")
    (folder / "judge_like.py").write_text("def judge(prompts, completions, policy_file='', path='', **kw):\n"
                                          "    return [1.0] * len(completions)\n")
    (folder / "policies.yaml").write_text("refund: be kind\n")
    (folder / "recipe.yaml").write_text(RECIPE.format(model=tiny_model_dir))
    (tmp_path / "here.csv").write_text("utterance,intent\nhi,greet\nbye,leave\n")
    monkeypatch.chdir(tmp_path)
    recipe = load_recipe("project/recipes/recipe.yaml")
    assert recipe.data.source == "project/recipes/tickets.csv"
    assert [r.name for r in recipe.rewards] == ["project/recipes/my_rewards.py:short",
                                                "project/recipes/judge_like.py:judge"]
    assert recipe.rewards[1].params == {"policy_file": "project/recipes/policies.yaml", "path": "runs/rm"}
    assert recipe.output_dir == "runs/x"  # outputs: working directory
    assert load_recipe("project/recipes/recipe.yaml", ["data.source=here.csv"]).data.source == "here.csv"


def test_dpo_and_kto_recipes_evaluate_with_the_intent_prefill():
    for name in ("intent_dpo", "intent_kto"):
        assert load_recipe(ROOT / "recipes" / f"{name}.yaml", check=False).decoding.prefill == "<intent>"


def test_version(capsys):
    from rlft import __version__

    with pytest.raises(SystemExit) as info:
        run(["--version"])
    assert info.value.code == 0 and capsys.readouterr().out.strip() == f"rlft {__version__}"


def _result(stop=None):
    return types.SimpleNamespace(output_dir=Path("runs/x"), stopped_early=stop)


@pytest.fixture
def venv(tmp_path, monkeypatch):
    """A venv-like folder holding an `rlft` script, rlft started as `venv/bin/rlft` from tmp_path."""
    bin_dir = tmp_path / "venv" / "bin"
    bin_dir.mkdir(parents=True)
    (bin_dir / "rlft").write_text("#!/bin/sh\n")
    (bin_dir / "rlft").chmod(0o755)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr("sys.argv", ["venv/bin/rlft", "train", "recipes/r.yaml", "data.source=my.csv"])
    return bin_dir


@pytest.mark.parametrize(("active", "command"), [(True, "rlft"), (False, "venv/bin/rlft")])
def test_next_evaluates_the_runs_own_recipe_with_the_command_as_the_user_types_it(venv, capsys, monkeypatch, active,
                                                                                  command):
    """The run's recipe.yaml keeps the command-line overrides (data.source=my.csv); the recipe given did not."""
    monkeypatch.setenv("PATH", f"{venv}:/usr/bin:/bin" if active else "/usr/bin:/bin")
    assert finish_message(_result(), "recipes/r.yaml") == 0
    out = capsys.readouterr().out.splitlines()
    assert out[1] == (f"[rlft] next: {command} eval runs/x/recipe.yaml --model base --model runs/x --out runs/x/eval"
                      f"   (serving it: {command} export runs/x --merged, docs/evaluation.md#serving)")


def test_finish_prints_next_and_an_unaccepted_early_stop_exits_3(capsys):
    assert finish_message(_result(), "recipes/r.yaml") == 0
    out = capsys.readouterr().out
    assert " eval runs/x/recipe.yaml --model base --model runs/x --out runs/x/eval" in out
    stop = {"reason": "judge: budget_tokens=2000 spent", "kind": "budget", "ok": False}
    assert finish_message(_result(stop), "r.yaml") == 3
    assert capsys.readouterr().err.strip() == "error: training stopped early: judge: budget_tokens=2000 spent"
    assert finish_message(_result({**stop, "ok": True}), "r.yaml") == 0


def test_an_early_stop_goes_into_metrics_and_the_card(tmp_path):
    from rlft.recipe.sections import Recipe
    from rlft.run.outputs import write_model_card
    from rlft.run.pipeline import _stop_record

    callback = types.SimpleNamespace(stop_reason="judge: error rate 0.6 > max_error_rate 0.5", stop_kind="error_rate",
                                     stop_ok=False)
    record = _stop_record([object(), callback])
    assert record == {"reason": callback.stop_reason, "kind": "error_rate", "ok": False}
    card = write_model_card(Recipe(output_dir=str(tmp_path)), "x", {"stopped_early": record, "global_step": 3},
                            tmp_path).read_text()
    assert ("Training stopped at step 3 before its end (error_rate, counted as a failed run): judge: error rate 0.6 "
            "> max_error_rate 0.5") in card
