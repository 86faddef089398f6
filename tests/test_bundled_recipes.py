"""The bundled recipes measure what their headers say (issue 13, item 6), checked without the real model:

- intent_dpo / intent_kto evaluate after the `<intent>` prefill (without it, both before and after scored 0.000 with
  format 0): a one-step run of each recipe on the tiny Llama decodes every held-out reply from the prefill.
- Preference data (policy_dpo / policy_kto rows from `rlft label`: several rows per prompt) is held out by whole
  prompts; `data.holdout: prompt` does the same for any data, and intent_rm.yaml + rm_ppo.yaml use it so the PPO
  stage's held-out prompts are the reward model's held-out prompts, seen by neither training.
- rm_ppo's `trainer.max_steps` on the command line also caps the reward-model stage.
- The demo GRPO/PPO recipes (random row split) say in their headers that 13 of 60 held-out utterances also occur
  in training; `data.holdout: prompt` removes the overlap.
- `rlft train recipes/intent_grpo_bitext.yaml` runs the benchmark's winning method, the exact label-space objective
  (issue 11, item 6); the sampled-GRPO recipe lives on as intent_grpo_bitext_sampled.yaml.
- A run whose rewards never gave a signal (policy_grpo's offline demo: reward -1 everywhere, judge gated off) says
  so at the end.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import json

import pytest

import rlft
from rlft.data.loading import prepare
from rlft.run.progress import CompactProgress, no_signal_warnings
from rlft.recipe.load import load_recipe
from tests.conftest import ROOT

RECIPES = ROOT / "recipes"


def _user_texts(ds) -> set[str]:
    return {p if isinstance(p, str) else next(m["content"] for m in p if m["role"] == "user") for p in ds["prompt"]}


@pytest.mark.parametrize("name", ["intent_dpo", "intent_kto"])
def test_preference_intent_recipes_evaluate_after_the_prefill(name, tiny_model_dir, tmp_path):
    recipe = load_recipe(RECIPES / f"{name}.yaml", [
        f"model.name={tiny_model_dir}", f"output_dir={tmp_path / 'run'}", "model.device=cpu", "data.demo_size=40",
        "trainer.max_steps=1", "trainer.per_device_train_batch_size=2",
        "evaluation.before=false", "evaluation.max_samples=3", "evaluation.batch_size=3",
        "evaluation.max_new_tokens=2", "adapter.r=2", "adapter.alpha=4"])
    assert recipe.decoding.prefill == "<intent>"
    result = rlft.train(recipe)
    samples = result.metrics["eval_after_samples"]
    assert len(samples) == 3
    assert all(s["completion"].startswith("<intent>") for s in samples), samples


def _labelled(path, kind: str) -> None:
    """Rows the way `rlft label` writes them: 12 prompts (system + user messages) x 6 samples each."""
    rows = []
    for i in range(12):
        prompt = [{"role": "system", "content": "Classify."}, {"role": "user", "content": f"message number {i}"}]
        for j in range(6):
            if kind == "kto":
                rows.append({"prompt": prompt, "completion": [{"role": "assistant", "content": f"<intent>x{j}"}],
                             "label": j % 2 == 0, "intent": "x0"})
            else:
                rows.append({"prompt": prompt, "chosen": [{"role": "assistant", "content": "<intent>x0"}],
                             "rejected": [{"role": "assistant", "content": f"<intent>x{j + 1}"}], "intent": "x0"})
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))


@pytest.mark.parametrize("name,kind", [("policy_kto", "kto"), ("policy_dpo", "dpo")])
@pytest.mark.parametrize("holdout", ["random", "prompt"])
def test_labelled_preference_rows_are_held_out_by_whole_prompts(name, kind, holdout, tmp_path):
    source = tmp_path / f"{kind}.jsonl"
    _labelled(source, kind)
    recipe = load_recipe(RECIPES / f"{name}.yaml", [f"data.source={source}", f"data.holdout={holdout}",
                                                    "data.eval_fraction=0.25"], check=False)
    data = prepare(recipe.data, recipe.algorithm, recipe.seed)
    train, held = _user_texts(data.train), _user_texts(data.eval)
    assert len(held) == 3 and len(train) == 9  # ceil(0.25 x 12) prompts, all 6 rows of each
    assert train.isdisjoint(held)
    assert len(data.eval) == 3 * 6


def test_prompt_holdout_keeps_repeated_prompt_data_disjoint(tmp_path):
    source = tmp_path / "intents.csv"  # GRPO/PPO data with repeated utterances (a random row split shares them)
    source.write_text("utterance,intent\n" + "".join(f"message {i % 10},i{i % 3}\n" for i in range(60)))
    recipe = load_recipe(RECIPES / "intent_grpo.yaml", [f"data.source={source}", "data.holdout=prompt",
                                                         "data.eval_fraction=0.2"], check=False)
    data = prepare(recipe.data, recipe.algorithm, recipe.seed)
    assert len(data.eval) == 12 and _user_texts(data.train).isdisjoint(_user_texts(data.eval))


def test_reward_model_and_ppo_stage_hold_out_the_same_unseen_prompts():
    rm = load_recipe(RECIPES / "intent_rm.yaml", check=False)
    ppo = load_recipe(RECIPES / "rm_ppo.yaml", check=False)
    assert rm.data.holdout == ppo.data.holdout == "prompt"
    rm_data = prepare(rm.data, rm.algorithm, rm.seed)
    ppo_data = prepare(ppo.data, ppo.algorithm, ppo.seed)
    held = _user_texts(ppo_data.eval)
    assert len(held) > 20
    assert held == _user_texts(rm_data.eval)
    assert held.isdisjoint(_user_texts(ppo_data.train)) and held.isdisjoint(_user_texts(rm_data.train))


def _rm_ppo_module():
    spec = importlib.util.spec_from_file_location("rm_ppo_recipe", RECIPES / "rm_ppo.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_rm_ppo_max_steps_caps_the_reward_model_stage(tmp_path):
    rm_ppo = _rm_ppo_module()
    assert rm_ppo.reward_model_recipe([]).trainer["max_steps"] == 60  # intent_rm.yaml's own
    capped = rm_ppo.reward_model_recipe(["trainer.max_steps=3", "trainer.learning_rate=1.0", "--config", "x.yaml"])
    assert capped.trainer["max_steps"] == 3
    assert capped.trainer["learning_rate"] == 1.0e-4  # the other overrides are the PPO stage's
    (tmp_path / "metrics.json").write_text(json.dumps({"global_step": 3}))
    assert rm_ppo.trained_steps(tmp_path) == 3 and rm_ppo.trained_steps(tmp_path / "none") is None


def test_a_run_without_learning_signal_says_so_at_the_end(capsys):
    # policy_grpo's offline demo: every completion -1 (no tag), the judge gated off for all of them
    from transformers import TrainerControl, TrainerState, TrainingArguments

    progress, state = CompactProgress(), TrainerState(max_steps=2)
    args = TrainingArguments(output_dir="unused", report_to="none")
    progress.on_train_begin(args, state, TrainerControl())
    for step in (1, 2):
        state.global_step = step
        progress.on_log(args, state, TrainerControl(), logs={
            "reward": -1.0, "rewards/intent/mean": -1.0, "rewards/judge/mean": 0.0, "frac_reward_zero_std": 1.0,
            "judge/skipped_rate": 1.0, "loss": 0.0})
    progress.on_train_end(args, state, TrainerControl())
    out = capsys.readouterr().out
    assert out.count("[rlft] warning: ") == 2, out
    assert "[rlft] warning: no learning signal: in all 2 logged steps every prompt's completions got the same reward" \
        in out
    assert "[rlft] warning: the judge was never asked: it skipped every completion in all 2 logged steps" in out


@pytest.mark.parametrize("zero_std,skipped,count", [
    ([1.0, 1.0], [], 1),          # plain GRPO, no judge: only the signal warning
    ([1.0, 0.5], [1.0, 1.0], 1),  # one step had a spread; the judge never ran
    ([0.75], [0.9], 0),           # some signal, judge asked sometimes: nothing to say
    ([], [], 0),                  # DPO / KTO / PPO: no groups, no judge
])
def test_no_signal_warnings_need_every_logged_step(zero_std, skipped, count):
    assert len(no_signal_warnings(zero_std, skipped)) == count


@pytest.mark.parametrize("name", ["intent_grpo", "intent_ppo", "support_agent"])
def test_demo_prompt_recipes_headers_state_their_overlap_and_prompt_holdout_removes_it(name):
    header = (RECIPES / f"{name}.yaml").read_text()
    assert "13 of the 60 held-out ones\n# also occur verbatim in training" in header
    recipe = load_recipe(RECIPES / f"{name}.yaml", check=False)
    data = prepare(recipe.data, recipe.algorithm, recipe.seed)
    train = _user_texts(data.train)
    assert len(data.eval) == 60 and sum(_user_texts(data.eval.select([i])) <= train for i in range(60)) == 13
    strict = load_recipe(RECIPES / f"{name}.yaml", ["data.holdout=prompt"], check=False)
    data = prepare(strict.data, strict.algorithm, strict.seed)
    assert _user_texts(data.eval).isdisjoint(_user_texts(data.train))


def test_bitext_headline_recipe_is_the_label_space_recipe():
    headline = load_recipe(RECIPES / "intent_grpo_bitext.yaml", check=False)
    label_pg = load_recipe(RECIPES / "intent_label_pg.yaml", check=False)
    sampled = load_recipe(RECIPES / "intent_grpo_bitext_sampled.yaml", check=False)
    assert (headline.algorithm, sampled.algorithm) == ("label_pg", "grpo")
    assert headline.output_dir == "runs/intent_grpo_bitext"
    # the same run but for the learning-rate decay (docs/benchmarks.md#curve-end)
    assert headline.trainer == {**label_pg.trainer, "lr_scheduler_type": "cosine_with_min_lr",
                                "lr_scheduler_kwargs": {"min_lr_rate": 0.1}}
    same_run = dataclasses.replace(headline, output_dir=label_pg.output_dir, source_file=label_pg.source_file,
                                   trainer=label_pg.trainer)
    assert same_run == label_pg
    for dependent in ("support_agent_bitext_head.yaml", "intent_handoff_bitext.yaml"):  # measured at a constant rate
        trainer = load_recipe(RECIPES / dependent, check=False).trainer
        assert trainer["lr_scheduler_type"] == "constant" and trainer["lr_scheduler_kwargs"] is None, dependent
    assert sampled.data.source == label_pg.data.source and sampled.data.holdout == label_pg.data.holdout == "grouped"


def test_the_deployed_agent_fails_label_leaks_and_pushes_the_stop_down_where_hints_depart():
    """docs/support_agent.md#label-leak and #unlikelihood: both rubrics of the agent (the reported one and the training
    one) fail a reply that shows a label, and its rft stage (which extends it) keeps that and adds the unlikelihood
    term; the judge-curve arms keep the rubric they were measured with."""
    agent = load_recipe(RECIPES / "support_agent_bitext.yaml", check=False)
    rft = load_recipe(RECIPES / "support_agent_bitext_rft.yaml", check=False)
    for recipe in (agent, rft):
        rubrics = [r for r in recipe.rewards if r.name == "rubric"]
        assert len(rubrics) == 2 and all(r.params["forbid_labels"] is True for r in rubrics)
    assert rft.rft.unlikelihood == 2.0 and rft.rft.hints and rft.rft.hint_from == "greedy"
    judge = load_recipe(RECIPES / "support_agent_bitext_judge.yaml", check=False)
    assert all("forbid_labels" not in r.params for r in judge.rewards if r.name == "rubric")
