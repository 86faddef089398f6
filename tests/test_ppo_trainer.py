"""PPOTrainer on a tiny random Llama + LoRA: reference log-probs, learning a reward, KL control, save/reload."""

from __future__ import annotations

import asyncio

import pytest
import torch


def _scaled_model_dir(tiny_model_dir, tmp_path, scale: float):
    """The tiny model with embeddings scaled up: a random LM whose next-token distribution is not flat, so a
    token-set reward has a learnable direction (tied embeddings -> the output layer scales too)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32)
    with torch.no_grad():
        model.get_input_embeddings().weight.mul_(scale)
    out = tmp_path / f"tiny_x{scale:g}"
    model.save_pretrained(out)
    AutoTokenizer.from_pretrained(tiny_model_dir).save_pretrained(out)
    return out


def _policy(model_dir, r: int = 8):
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    return get_peft_model(model, LoraConfig(r=r, lora_alpha=2 * r, target_modules="all-linear")), tokenizer


def _prompts(n: int = 32):
    import datasets

    return datasets.Dataset.from_list([{"prompt": [{"role": "user", "content": f"Say something about item {i}"}],
                                        "item": i} for i in range(n)])


def _config(tmp_path, **kw):
    from rlft.ppo import PPOConfig

    base = dict(output_dir=str(tmp_path / "out"), per_device_train_batch_size=16, num_mini_batches=1,
                ppo_epochs=2, max_completion_length=6, learning_rate=1e-2, init_kl_coef=0.0, report_to="none",
                use_cpu=True, bf16=False, logging_steps=1, save_strategy="no", seed=0, disable_tqdm=True)
    base.update(kw)
    return PPOConfig(**base)


def _in_set_reward(model):
    """Reward = share of completion tokens whose embedding has a positive first coordinate (about half the vocab)."""
    keep = set((model.get_input_embeddings().weight[:, 0] > 0).nonzero().flatten().tolist())

    def in_set(prompts, completions, completion_ids, **kwargs):
        return [sum(t in keep for t in ids) / max(len(ids), 1) for ids in completion_ids]

    return in_set


def test_reference_logprobs_come_from_the_adapter_disabled_model(tiny_model_dir, tmp_path):
    from transformers import AutoModelForCausalLM

    from rlft.ppo import PPOTrainer
    from rlft.ppo.sampling import forward_policy

    model, tokenizer = _policy(tiny_model_dir)
    with torch.no_grad():  # a non-trivial adapter, so policy and reference differ
        for name, p in model.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 0.5)
    seen_columns = {}

    def length(prompts, completions, item, **kwargs):
        seen_columns["item"] = item
        return [float(len(c[0]["content"])) for c in completions]

    trainer = PPOTrainer(model=model, processing_class=tokenizer, reward_funcs=[length],
                         args=_config(tmp_path, init_kl_coef=0.1, num_generations=2), train_dataset=_prompts(8))
    rows = [trainer.train_dataset[i] for i in range(8)]
    rollout, stats = trainer.make_rollout(rows)

    base = AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32).eval()
    with torch.no_grad():
        expected = forward_policy(base, None, rollout.input_ids, rollout.attention_mask, rollout.n_completion)
    mask = rollout.completion_mask.bool()
    torch.testing.assert_close(rollout.ref_logprobs[mask], expected["logprobs"][mask], atol=1e-5, rtol=1e-5)
    assert (rollout.logprobs[mask] - rollout.ref_logprobs[mask]).abs().max() > 1e-2  # adapters were on for π
    assert sum(1 for m in trainer.model.modules() if isinstance(m, type(base))) == 1  # one model copy, no ref copy
    assert trainer.ref_model is None
    assert len(rollout) == 16 and seen_columns["item"] == [r["item"] for r in rows for _ in range(2)]
    assert stats["kl"] != 0.0 and stats["kl_coef"] == pytest.approx(0.1)
    assert torch.all(rollout.values == 0)  # fresh value head starts at zero
    assert torch.all(rollout.advantages[~mask] == 0) and torch.all(rollout.returns[~mask] == 0)


def test_adaptive_kl_coefficient_follows_the_update_rule_with_async_rewards(tiny_model_dir, tmp_path):
    from rlft.ppo import PPOTrainer

    model, tokenizer = _policy(tiny_model_dir)

    async def sometimes_abstains(prompts, completions, item, **kwargs):
        await asyncio.sleep(0)
        return [None if i % 2 else float(len(c[0]["content"]) % 3) for i, c in enumerate(completions)]

    args = _config(tmp_path, max_steps=3, init_kl_coef=0.2, target_kl=0.01, kl_horizon=64,
                   per_device_train_batch_size=8)
    trainer = PPOTrainer(model=model, processing_class=tokenizer, reward_funcs=sometimes_abstains, args=args,
                         train_dataset=_prompts(16))
    trainer.train()
    logs = [h for h in trainer.state.log_history if "kl_coef" in h]
    assert [h["step"] for h in logs] == [1, 2, 3]
    for before, after in zip(logs, logs[1:]):
        error = min(max(before["kl"] / 0.01 - 1, -0.2), 0.2)
        assert after["kl_coef"] == pytest.approx(before["kl_coef"] * (1 + error * 8 / 64), rel=1e-5)
    assert logs[0]["rewards/abstained_ratio"] == 0.5  # odd rows abstained: they got the neutral (mean) score
    assert 0 <= logs[0]["rewards/sometimes_abstains/mean"] <= 2  # mean over the rows that did score
    assert logs[-1]["kl"] != 0  # the k1 estimate can be negative on a batch; it is zero only at π = π_ref


@pytest.mark.slow
def test_short_ppo_run_raises_reward_and_saves_reloadable_adapter_and_value_head(tiny_model_dir, tmp_path):
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    from rlft.ppo import PPOTrainer
    from rlft.ppo.sampling import forward_policy
    from rlft.ppo.value_head import WEIGHTS_NAME, ValueHead

    model_dir = _scaled_model_dir(tiny_model_dir, tmp_path, 10.0)
    model, tokenizer = _policy(model_dir)
    trainer = PPOTrainer(model=model, processing_class=tokenizer, reward_funcs=[_in_set_reward(model)],
                         args=_config(tmp_path, max_steps=10, logging_steps=2, learning_rate=2e-2),
                         train_dataset=_prompts(64))
    result = trainer.train()
    logs = [h for h in trainer.state.log_history if "reward" in h]
    first, last = logs[0]["reward"], logs[-1]["reward"]
    print("PPO reward by logging window:", [round(h["reward"], 3) for h in logs])
    assert last > first + 0.1, [(round(h["reward"], 3), h["completions/mean_length"]) for h in logs]
    for key in ("kl", "kl_coef", "policy_loss", "value_loss", "explained_variance", "policy_clipfrac",
                "value_clipfrac", "entropy", "approx_kl", "rewards/in_set/mean", "rewards/in_set/std"):
        assert key in logs[-1], key
    assert logs[-1]["value_loss"] < logs[0]["value_loss"]
    assert result.global_step == 10 and "train_loss" in result.metrics

    out = tmp_path / "saved"
    trainer.save_model(str(out))
    assert (out / "adapter_config.json").is_file() and (out / WEIGHTS_NAME).is_file()
    head = ValueHead.load(out)
    torch.testing.assert_close(head.summary.weight, trainer.value_head.summary.weight)
    assert head.summary.weight.abs().sum() > 0  # the critic learned something
    base = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
    reloaded = PeftModel.from_pretrained(base, out).eval()
    ids = tokenizer(["hello there, how are you doing today?"], return_tensors="pt")
    with torch.no_grad():
        a = forward_policy(trainer.model.eval(), trainer.value_head, ids["input_ids"], ids["attention_mask"], 2)
        b = forward_policy(reloaded, head, ids["input_ids"], ids["attention_mask"], 2)
    torch.testing.assert_close(a["logprobs"], b["logprobs"])
    torch.testing.assert_close(a["values"], b["values"])


@pytest.mark.parametrize("adapter", ["lora", "qlora"])
def test_ppo_recipe_trains_through_rlft_train_and_writes_value_head(adapter, tiny_model_dir, write_recipe, tmp_path):
    import json

    import rlft
    from rlft.ppo.value_head import WEIGHTS_NAME

    out = tmp_path / "run"
    recipe = write_recipe(f"""algorithm: ppo
output_dir: {out}
model: {{name: {tiny_model_dir}}}
adapter: {{type: {adapter}, r: 4, alpha: 8}}
data: {{source: demo:intents, demo_size: 40, system_prompt: "Intents: {{labels}}"}}
rewards: [{{name: intent, weight: 1.0}}, {{name: length, weight: 0.1}}]
trainer: {{max_steps: 2, per_device_train_batch_size: 4, num_mini_batches: 2, ppo_epochs: 1,
           max_completion_length: 6, learning_rate: 0.01, init_kl_coef: 0.05, target_kl: 1.0}}
evaluation: {{max_samples: 4, max_new_tokens: 6, batch_size: 4}}
""")
    result = rlft.train(rlft.load_recipe(recipe))
    for name in ("adapter_model.safetensors", "adapter_config.json", WEIGHTS_NAME, "value_head.json",
                 "metrics.json"):
        assert (out / name).is_file(), name
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["global_step"] == 2 and metrics["algorithm"] == "ppo"
    logged = [h for h in metrics["log_history"] if "kl_coef" in h]
    assert len(logged) == 2 and {"rewards/intent/mean", "rewards/length/mean"} <= set(logged[0])
    assert result.eval_after is not None


def test_prefilled_label_constrained_rollouts(tiny_model_dir, tmp_path):
    """signal.prefill / constrain_labels for PPO: every rollout is one allowed label after the prefill, the
    prefill is prompt (no loss, no KL), and rewards see it as the start of the completion."""
    from rlft.decoding.constrained import processor_factory
    from rlft.ppo import PPOTrainer
    from rlft.rewards.intent import IntentReward

    labels = ["cancel_order", "track_order", "get_refund"]
    model, tokenizer = _policy(tiny_model_dir)
    seen = []

    def spy(prompts, completions, **kwargs):
        seen.extend(c[0]["content"] for c in completions)
        return [0.0] * len(completions)

    intent = IntentReward(labels=labels)
    rows = [{"prompt": [{"role": "user", "content": f"order {i}"}], "intent": labels[i % 3]} for i in range(8)]
    import datasets

    trainer = PPOTrainer(model=model, processing_class=tokenizer, reward_funcs=[intent, spy],
                         args=_config(tmp_path, init_kl_coef=0.1, max_completion_length=12, num_generations=2),
                         train_dataset=datasets.Dataset.from_list(rows), prefill="<intent>",
                         logits_processor_factory=processor_factory(tokenizer, labels, "<intent>", "</intent>"))
    rollout, stats = trainer.make_rollout(rows)
    allowed = {f"<intent>{label}</intent>" for label in labels}
    assert len(seen) == 16 and set(seen) <= allowed  # a random tiny model, yet never a format failure
    prefill_ids = tokenizer.encode("<intent>", add_special_tokens=False)
    width = rollout.input_ids.shape[1] - rollout.n_completion
    assert rollout.input_ids[:, width - len(prefill_ids):width].tolist() == [prefill_ids] * 16
    label_lengths = {len(tokenizer.encode(text[len("<intent>"):], add_special_tokens=False)) + 1 for text in seen}
    assert set(rollout.completion_mask.sum(1).tolist()) <= label_lengths  # label + suffix + EOS, no prefill
    assert stats["rewards/intent/mean"] >= 0  # only correct (1) or valid-but-wrong (0): no -1 format penalties
