"""Issue 33: the logged total reward and the judge's counts.

- GRPO's logged `reward` (and `rewards/<name>/mean`) is over the rows each reward judged: an abstention is left out,
  not counted as 0 nor as the group mean `rlft.scoring.abstain` imputes for the advantages (which stay as they were).
- A judge's `judge/*` counts reach metrics.json with every algorithm that calls rewards while training (label_pg
  had none: its rewards' `log_metric` went nowhere).
"""

from __future__ import annotations

import json

import pytest

import rlft
from tests.judge_stub_server import StubJudge, StubServer

# Per call of 8 rows (2 prompts x 4 generations): the first prompt's group judged only on its first row (1.0), the
# second prompt's group judged 0.0 on every row. Judged rows: 1, 0, 0, 0, 0 -> mean 0.2. rlft.scoring.abstain imputes the
# three abstentions with their group's mean (1.0), so TRL logged 0.5 for this reward.
PARTIAL = """def partial(prompts, completions, **kwargs):
    return [1.0 if i % 8 == 0 else None if i % 8 < 4 else 0.0 for i in range(len(completions))]


def constant(prompts, completions, **kwargs):
    return [0.5] * len(completions)
"""
GRPO = """algorithm: grpo
output_dir: {out}
model: {{name: {model}}}
adapter: {{type: lora, r: 4, alpha: 8}}
data: {{source: "demo:intents", demo_size: 40}}
rewards:
  - {{name: "{file}:partial", weight: {weight}}}
  - {{name: "{file}:constant"}}
trainer: {{max_steps: 2, per_device_train_batch_size: 8, num_generations: 4, max_completion_length: 4,
          logging_steps: 1, beta: 0.0}}
evaluation: {{before: false, after: false}}
{extra}
"""


@pytest.mark.parametrize("extra", ["", "signal: {warn_window: 3}"], ids=["trl_grpo", "signal_grpo"])
def test_grpo_logs_the_reward_over_the_rows_each_reward_judged(tiny_model_dir, tmp_path, extra):
    (tmp_path / "rewards_file.py").write_text(PARTIAL)
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(GRPO.format(out=tmp_path / "run", model=tiny_model_dir, file=tmp_path / "rewards_file.py",
                                  weight=2.0, extra=extra))
    rlft.train(recipe)
    steps = [h for h in json.loads((tmp_path / "run" / "metrics.json").read_text())["log_history"] if "reward" in h]
    assert len(steps) == 2
    for h in steps:
        assert h["rewards/partial/mean"] == pytest.approx(0.2)  # TRL logged the imputed mean, 0.5
        assert h["rewards/constant/mean"] == pytest.approx(0.5)
        assert h["reward"] == pytest.approx(2.0 * 0.2 + 0.5)  # TRL logged 2 x 0.5 + 0.5 = 1.5


def test_advantages_still_see_the_imputed_abstentions(tiny_model_dir, tmp_path):
    """What trains is unchanged: the group whose three rows abstained ties (1.0 imputed), so its advantages are 0
    and the other group's too (all 0.0 + 0.5): TRL's `frac_reward_zero_std` is 1 at every step."""
    (tmp_path / "rewards_file.py").write_text(PARTIAL)
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(GRPO.format(out=tmp_path / "run", model=tiny_model_dir, file=tmp_path / "rewards_file.py",
                                  weight=1.0, extra=""))
    rlft.train(recipe)
    steps = [h for h in json.loads((tmp_path / "run" / "metrics.json").read_text())["log_history"] if "reward" in h]
    assert [h["frac_reward_zero_std"] for h in steps] == [1.0, 1.0]


JUDGE = """algorithm: {algorithm}
output_dir: {out}
model: {{name: {model}}}
adapter: {{type: lora, r: 4, alpha: 8}}
data: {{source: "demo:intents", demo_size: 40, system_prompt: "Answer the customer."}}
rewards:
  - name: judge
    params: {{model: stub-judge, base_url: "{url}", api_key_env: null, guideline: Be polite., cache: null,
              injection_guard: false, min_words: 0}}
trainer: {{max_steps: 2, per_device_train_batch_size: {batch}, logging_steps: 1{more}}}
evaluation: {{before: false, after: false}}
"""
MORE = {"grpo": ", num_generations: 4, beta: 0.0, max_completion_length: 4", "label_pg": "",
        "ppo": ", ppo_epochs: 1, max_completion_length: 4"}


@pytest.mark.parametrize("algorithm", ["label_pg", "grpo", "ppo"])
def test_judge_counts_reach_metrics_json_with_every_algorithm(tiny_model_dir, tmp_path, algorithm):
    stub = StubJudge(responder=lambda body: "Fine.\nVERDICT: Accurate")
    with StubServer(stub) as url:
        recipe = tmp_path / "recipe.yaml"
        recipe.write_text(JUDGE.format(algorithm=algorithm, out=tmp_path / "run", model=tiny_model_dir, url=url,
                                       batch=8 if algorithm == "grpo" else 2, more=MORE[algorithm]))
        rlft.train(recipe)
    history = json.loads((tmp_path / "run" / "metrics.json").read_text())["log_history"]
    steps = [h for h in history if "judge/requests" in h]
    assert len(steps) == 2, history
    assert stub.requests > 0
    assert steps[-1]["judge/requests"] == stub.requests  # the judge's running count at the last step's calls
    assert all(h["judge/ok_rate"] == 1.0 and h["judge/abstain_rate"] == 0.0 for h in steps)
    if algorithm == "label_pg":  # every label is scored: the intent reward's accuracy over them is 1/K, not the policy's
        assert not [k for h in history for k in h if k.startswith("intent/")], history
