"""A short GRPO run (rlft.train, tiny random Llama + LoRA) judged by a server injecting ~30% faults.

The run must complete; the failures the reward counted must match, status by status, the faults the server
injected; no failed sample may get a numeric reward; the judge metrics reach the trainer's log; and the API key
must not appear in anything the run wrote (recipe copy, metrics, model card, checkpoint, audit log).
"""

import hashlib
import json
from collections import Counter

import pytest

import rlft
from tests.judge_stub_server import StubJudge, StubServer

SECRET = "sk-test-grpo-NEVER-WRITTEN-41c9"


def coin_flip(body):
    """Deterministic, content-dependent verdicts so GRPO groups have some reward variance."""
    text = body["messages"][-1]["content"]
    response = text.split("<response>")[1].split("</response>")[0]
    heads = hashlib.sha256(response.encode()).digest()[0] % 2 == 0
    return f"Checked against the policy.\nVERDICT: {'Accurate' if heads else 'Inaccurate'}"


def test_grpo_with_injected_faults(tiny_model_dir, write_recipe, tmp_path, monkeypatch):
    monkeypatch.setenv("RLFT_TEST_GRPO_KEY", SECRET)
    stub = StubJudge(responder=coin_flip, fault_rate=0.3, seed=7, hang_s=3.0, retry_after_s=0.05)
    # 5 faults in the 16 requests of the run (31%), one of each kind; any further request: 30% at random
    stub.queue = [None, "hang", None, None, "malformed", None, "500", None, None, "429", None, "offmenu"] + [None] * 4
    out, audit = tmp_path / "run", tmp_path / "audit.jsonl"
    with StubServer(stub) as url:
        recipe = write_recipe(f"""algorithm: grpo
output_dir: {out}
model: {{name: {tiny_model_dir}}}
adapter: {{type: lora, r: 4, alpha: 8}}
data: {{source: "demo:intents", demo_size: 40, system_prompt: "Answer the customer."}}
rewards:
  - name: judge
    params:
      model: stub-judge
      base_url: {url}
      api_key_env: RLFT_TEST_GRPO_KEY
      guideline: Mention the $4.99 cancellation fee when the customer cancels.
      timeout_s: 0.5
      max_retries: 0            # one request per judgment, so failures can be matched to injected faults
      breaker_threshold: 0      # no fail-fast: every failure is an injected one
      injection_guard: false    # random-model text must reach the judge
      min_words: 0              # (8 random tokens may be fewer than the default 3 words)
      cache: {tmp_path / "judge.sqlite"}
      audit_path: {audit}
trainer: {{max_steps: 2, per_device_train_batch_size: 8, num_generations: 4, max_completion_length: 8,
          learning_rate: 0.05, beta: 0.0, save_strategy: steps, save_steps: 1}}
evaluation: {{before: false, after: false}}
""")
        result = rlft.train(recipe)

    assert result.metrics["global_step"] == 2
    rows = [json.loads(line) for line in audit.read_text().splitlines()]
    assert len(rows) == 2 * 8
    # every failed completion abstained; every ok one got a number
    assert all(r["reward"] is None for r in rows if r["status"] != "ok")
    assert all(isinstance(r["reward"], float) for r in rows if r["status"] == "ok")
    # one judgment per distinct (batch, prompt, completion): identical completions in a batch are judged once
    unique = {(r["batch"], r["prompt"], r["completion"]): r["status"] for r in rows}
    counted = Counter(unique.values())
    assert stub.requests == len(unique)
    injected = stub.faults
    assert set(injected) == {"hang", "malformed", "500", "429", "offmenu"}
    assert 0.25 <= sum(injected.values()) / stub.requests <= 0.45
    assert counted["timeout"] == injected["hang"]
    assert counted["api_error"] == injected["500"] + injected["429"] + injected["malformed"]
    assert counted["parse_error"] == injected["offmenu"]
    assert counted["ok"] == stub.requests - sum(injected.values())
    # the judge's rates reached the trainer's log
    logged = [h for h in result.metrics["log_history"] if "judge/ok_rate" in h]
    assert logged and all(0.0 <= h["judge/ok_rate"] <= 1.0 for h in logged)
    # the key went to the server, and nowhere else
    assert all(h == f"Bearer {SECRET}" for h in stub.auth_headers)
    written = [p for p in tmp_path.rglob("*") if p.is_file()]
    assert any(p.name == "recipe.yaml" for p in written) and any("checkpoint-" in str(p) for p in written)
    for p in written:
        assert SECRET.encode() not in p.read_bytes(), p


@pytest.mark.slow
def test_grpo_stops_cleanly_when_the_budget_is_spent(tiny_model_dir, write_recipe, tmp_path):
    """With the judge's trainer callback registered, a spent budget ends training after that step, normally:
    no exception, fewer steps than max_steps, the unjudged samples abstained, and the adapter can be saved."""
    from rlft.data.loading import prepare
    from rlft.run.models import load_model
    from rlft.run.pipeline import load_recipe_rewards
    from rlft.trainers import trainer_builder
    from rlft.trainers.context import TrainContext

    stub = StubJudge(responder=coin_flip)
    with StubServer(stub) as url:
        recipe = rlft.load_recipe(write_recipe(f"""algorithm: grpo
output_dir: {tmp_path / "run"}
model: {{name: {tiny_model_dir}}}
adapter: {{type: lora, r: 4, alpha: 8}}
data: {{source: "demo:intents", demo_size: 40, system_prompt: "Answer the customer."}}
rewards:
  - name: judge
    params: {{model: stub-judge, base_url: "{url}", api_key_env: null, guideline: Be polite., cache: null,
              injection_guard: false, min_words: 0, budget_tokens: 2000, price_input_per_mtok: 1.0}}
trainer: {{max_steps: 6, per_device_train_batch_size: 8, num_generations: 4, max_completion_length: 8,
          learning_rate: 0.05, beta: 0.0}}
"""))
        data = prepare(recipe.data, "grpo", recipe.seed)
        rewards = load_recipe_rewards(recipe, data.labels, [data.train])
        judge = rewards[0].inner
        model, tok = load_model(recipe.model, recipe.adapter, "cpu")
        ctx = TrainContext(recipe, model, tok, data.train, data.eval, rewards, data.labels, "cpu",
                           callbacks=[judge.trainer_callback()])
        trainer = trainer_builder("grpo")(ctx)
        trainer.train()
        trainer.save_model(str(tmp_path / "run"))

    assert judge.stop_reason and "budget_tokens=2000" in judge.stop_reason
    assert 1 <= trainer.state.global_step < 6
    assert judge.stats["stopped"] > 0 and judge.usage.total_tokens >= 2000
    assert (tmp_path / "run" / "adapter_model.safetensors").is_file()
