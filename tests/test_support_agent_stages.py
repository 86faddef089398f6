"""recipes/support_agent_bitext.py: the deployed agent's three stages in one command. Stage 1 (the head alone, label_pg
under the agent's prompt) is trained into the agent's output_dir + "_head" with the command line's seed, model, data
and evaluation overrides; stage 2 (the GRPO + lookup reply) starts from that adapter into output_dir + "_grpo"; stage
3 (rejection-sampling fine-tuning) starts from stage 2's into output_dir, or, with head_again=STEPS, from a stage that
trains the head alone again from stage 2's adapter into output_dir + "_refresh"; rounds=N chains N rft rounds (2 by
default, the later ones with rft.departures: all); a folder of another seed (another held-out split) is refused in
one line, never reused."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import yaml

from tests.conftest import ROOT

SCRIPT = ROOT / "recipes" / "support_agent_bitext.py"


def _run(args: list[str]) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, str(SCRIPT), *args], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=900)


def _tiny(model_dir, out) -> list[str]:
    return [f"model.name={model_dir}", f"output_dir={out}", "model.device=cpu", "trainer.max_steps=1",
            "evaluation.before=false", "evaluation.max_samples=2", "evaluation.batch_size=2",
            "evaluation.max_new_tokens=100", "evaluation.every_steps=0", "evaluation.keep_best=false", "adapter.r=2", "adapter.alpha=4"]


def test_three_stages_run_each_starting_from_the_last(tiny_model_dir, tmp_path):
    out = tmp_path / "agent"
    done = _run(_tiny(tiny_model_dir, out) + ["seed=3", "head_again=0", "rounds=1",
                                              "trainer.per_device_train_batch_size=8",
                                              "trainer.gradient_accumulation_steps=1",
                                              "head.trainer.max_steps=2", "rft.prompts=3", "rft.samples=1",
                                              "rft.min_reward=-10"])
    assert done.returncode == 0, done.stderr[-3000:]
    head, grpo = tmp_path / "agent_head", tmp_path / "agent_grpo"
    assert all((d / "adapter_config.json").is_file() for d in (head, grpo, out))
    assert yaml.safe_load((head / "recipe.yaml").read_text())["seed"] == 3  # the command line's seed reached it
    assert yaml.safe_load((head / "recipe.yaml").read_text())["algorithm"] == "label_pg"
    second = yaml.safe_load((grpo / "recipe.yaml").read_text())
    assert second["algorithm"] == "grpo" and second["adapter"]["init_from"] == str(head) and second["seed"] == 3
    assert second["decoding"]["lookup"] and second["decoding"]["reply_stop"] == "\n"
    agent = yaml.safe_load((out / "recipe.yaml").read_text())
    assert agent["algorithm"] == "rft" and agent["adapter"]["init_from"] == str(grpo) and agent["seed"] == 3
    assert agent["rft"]["prompts"] == 3 and agent["decoding"] == second["decoding"]  # rft.<key>: stage 3 only
    assert [line.split(" (")[0] for line in done.stdout.splitlines() if line.startswith("[rlft] stage")] == [
        "[rlft] stage 1: the intent head", "[rlft] stage 2: the reply by GRPO",
        "[rlft] stage 3: rejection-sampling fine-tuning"]
    assert json.loads((head / "metrics.json").read_text())["global_step"] == 2  # head.<key>: stage 1 only
    assert json.loads((grpo / "metrics.json").read_text())["global_step"] == 1
    assert json.loads((out / "rft_summary.json").read_text())["kept"] == 3

    written = (out / "adapter_model.safetensors").read_bytes()
    again = _run(_tiny(tiny_model_dir, tmp_path / "agent") + ["seed=4", "head_again=0"])  # the head folder: seed 3
    assert again.returncode == 2
    assert "Traceback" not in again.stderr and (out / "adapter_model.safetensors").read_bytes() == written
    assert [line for line in again.stderr.splitlines() if line.startswith("error")] == [
        f"error: {head}: holds an adapter trained with seed 3, this run's seed is 4 (another held-out split); delete "
        "the folder or pass another output_dir"]


def test_rounds_chain_rft_stages_each_from_the_last(tiny_model_dir, tmp_path):
    import importlib.util

    from rlft.errors import RecipeError

    spec = importlib.util.spec_from_file_location("support_agent_bitext", SCRIPT)
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    out = tmp_path / "agent"
    stages = script.stage_recipes(_tiny(tiny_model_dir, out) + ["rounds=3", "rft.prompts=5", "seed=2", "head_again=0"])
    rounds = stages[2:]
    assert [r.output_dir for r in rounds] == [f"{out}_rft1", f"{out}_rft2", str(out)]
    assert [r.adapter.init_from for r in rounds] == [f"{out}_grpo", f"{out}_rft1", f"{out}_rft2"]
    assert [r.rft.round for r in rounds] == [1, 2, 3]  # each round draws other prompts
    assert [r.algorithm for r in stages] == ["label_pg", "grpo", "rft", "rft", "rft"]  # no head-again stage
    assert [r.evaluation.after for r in rounds] == [False, False, True]  # only the agent is measured
    assert [r.rft.departures for r in rounds] == ["hinted", "all", "all"]  # script.LATER_ROUNDS after the first
    assert {r.rft.prompts for r in rounds} == {5} and {r.seed for r in stages} == {2}
    default = script.stage_recipes(_tiny(tiny_model_dir, out))  # the shipped order: head, GRPO, head again, 2 rft
    assert [r.algorithm for r in default] == ["label_pg", "grpo", "label_pg", "rft", "rft"] and script.ROUNDS == 2
    assert default[2].trainer["max_steps"] == script.HEAD_AGAIN == 100 and default[2].output_dir == f"{out}_refresh"
    assert default[3].adapter.init_from == f"{out}_refresh" and default[3].rft.unlikelihood == 2.0
    assert default[4].adapter.init_from == f"{out}_rft1" == default[3].output_dir and default[4].output_dir == str(out)
    assert (default[3].rft.departures, default[4].rft.departures) == ("hinted", "all")
    assert script.stage_recipes(_tiny(tiny_model_dir, out) + ["rft.departures=hinted"])[4].rft.departures == "hinted"
    for bad in ("0", "two"):
        with pytest.raises(RecipeError) as err:
            script.stage_recipes(_tiny(tiny_model_dir, out) + [f"rounds={bad}"])
        assert str(err.value) == f"rounds: expected a whole number >= 1, got '{bad}'"
    with pytest.raises(RecipeError) as err:
        script.stage_recipes(_tiny(tiny_model_dir, out) + ["head_again=-1"])
    assert str(err.value) == "head_again: expected a whole number >= 0, got '-1'"


def test_head_again_trains_the_head_alone_between_grpo_and_rft(tiny_model_dir, tmp_path):
    out = tmp_path / "agent"
    done = _run(_tiny(tiny_model_dir, out) + ["seed=3", "trainer.per_device_train_batch_size=8",
                                              "trainer.gradient_accumulation_steps=1", "head.trainer.max_steps=2",
                                              "head_again=3", "refresh.trainer.learning_rate=5e-5",
                                              "rft.prompts=3", "rft.samples=1", "rft.min_reward=-10"])
    assert done.returncode == 0, done.stderr[-3000:]
    grpo, again = tmp_path / "agent_grpo", tmp_path / "agent_refresh"
    assert [line.split(" (")[0] for line in done.stdout.splitlines() if line.startswith("[rlft] stage")] == [
        "[rlft] stage 1: the intent head", "[rlft] stage 2: the reply by GRPO",
        "[rlft] stage 3: the intent head again", "[rlft] stage 4.1: rejection-sampling fine-tuning, round 1 of 2",
        "[rlft] stage 4.2: rejection-sampling fine-tuning"]  # the shipped two rounds
    third = yaml.safe_load((again / "recipe.yaml").read_text())
    assert third["algorithm"] == "label_pg" and third["adapter"]["init_from"] == str(grpo) and third["seed"] == 3
    assert third["trainer"]["learning_rate"] == 5e-5  # refresh.<key>: this stage only
    second = yaml.safe_load((grpo / "recipe.yaml").read_text())
    assert third["data"]["system_prompt"] == second["data"]["system_prompt"]  # the head the agent decodes with
    assert json.loads((again / "metrics.json").read_text())["global_step"] == 3  # head_again=STEPS
    first = yaml.safe_load((tmp_path / "agent_rft1" / "recipe.yaml").read_text())
    assert first["algorithm"] == "rft" and first["adapter"]["init_from"] == str(again)
    assert first["rft"]["departures"] == "hinted" and first["rft"]["round"] == 1
    agent = yaml.safe_load((out / "recipe.yaml").read_text())
    assert agent["adapter"]["init_from"] == str(tmp_path / "agent_rft1") and agent["rft"]["round"] == 2
    assert agent["rft"]["departures"] == "all"  # later rounds: kept samples leaving a failing deployed reply too
