"""Reward-model route: train a Bradley–Terry RM with LoRA through `rlft.train`, check its held-out accuracy and
calibration report, score with `RewardModelReward`, then use it as the PPO reward and watch the policy move."""

from __future__ import annotations

import json
import random

import pytest
import torch

import rlft
from rlft.evaluation.calibration import pairwise_report


@pytest.fixture(scope="module")
def scaled_dir(tiny_model_dir, tmp_path_factory):
    """Tiny model with embeddings ×10 (not-flat next-token distribution), as in test_ppo_trainer."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32)
    with torch.no_grad():
        model.get_input_embeddings().weight.mul_(10.0)
    out = tmp_path_factory.mktemp("tiny_x10")
    model.save_pretrained(out)
    AutoTokenizer.from_pretrained(tiny_model_dir).save_pretrained(out)
    return out


def _token_sets(model_dir):
    """Ordinary tokens split by the sign of their embedding's first coordinate: the 'preferred' set is visible to
    a linear read-out of (pooled) embeddings, so a tiny RM can learn it and a tiny policy can move towards it."""
    from safetensors.torch import load_file
    from transformers import AutoTokenizer

    emb = load_file(str(model_dir / "model.safetensors"))["model.embed_tokens.weight"]
    tok = AutoTokenizer.from_pretrained(model_dir)
    special = set(tok.all_special_ids)
    ordinary = [i for i in range(200, emb.shape[0]) if i not in special]
    good = [i for i in ordinary if emb[i, 0] > 0]
    bad = [i for i in ordinary if emb[i, 0] <= 0]
    return tok, set(good), good, bad


def _write_pairs(path, tok, good, bad, n=160, seed=0):
    rng = random.Random(seed)
    with open(path, "w") as f:
        for i in range(n):
            preferred = tok.decode(rng.sample(good, 6))
            other = tok.decode(rng.sample(bad, 6))
            a_wins = rng.random() < 0.5
            row = {"prompt": f"Write something for ticket {i}", "response_a": preferred if a_wins else other,
                   "response_b": other if a_wins else preferred, "winner": "a" if a_wins else "b"}
            f.write(json.dumps(row) + "\n")


@pytest.fixture(scope="module")
def rm_run(scaled_dir, tmp_path_factory):
    root = tmp_path_factory.mktemp("rm")
    tok, _, good, bad = _token_sets(scaled_dir)
    _write_pairs(root / "pairs.jsonl", tok, good, bad)
    recipe = root / "rm.yaml"
    recipe.write_text(f"""algorithm: reward_model
output_dir: {root / 'out'}
model: {{name: {scaled_dir}}}
adapter: {{type: lora, r: 8, alpha: 16}}
data: {{source: {root / 'pairs.jsonl'}, eval_fraction: 0.25}}
trainer: {{max_steps: 40, per_device_train_batch_size: 8, learning_rate: 0.005, max_length: 128,
           activation_checkpointing: false, logging_steps: 10}}
evaluation: {{before: false, after: false}}
""")
    return rlft.train(rlft.load_recipe(recipe))


def test_calibration_report_hand_computed():
    # margins 2, −1, 0.5 -> σ = .881 (right), .731 (wrong, confidence of rejected), .622 (right)
    report = pairwise_report([2.0, 0.0, 0.5], [0.0, 1.0, 0.0])
    assert report["accuracy"] == pytest.approx(2 / 3)
    rows = {r["confidence"]: r for r in report["table"]}
    assert rows["0.8-0.9"]["pairs"] == 1 and rows["0.8-0.9"]["accuracy"] == 1.0
    assert rows["0.7-0.8"]["accuracy"] == 0.0 and rows["0.6-0.7"]["accuracy"] == 1.0
    expected_ece = (abs(1 - 0.8808) + abs(0 - 0.7311) + abs(1 - 0.6225)) / 3
    assert report["ece"] == pytest.approx(expected_ece, abs=1e-3)


def test_reward_model_separates_held_out_pairs_and_reports_calibration(rm_run, scaled_dir):
    from rlft.rewards.reward_model import RewardModelReward

    out = rm_run.output_dir
    calibration = json.loads((out / "calibration.json").read_text())
    assert calibration["pairs"] == 40
    assert calibration["accuracy"] >= 0.9, calibration
    assert sum(r["pairs"] for r in calibration["table"]) == 40
    assert rm_run.metrics["train"]["eval_accuracy"] == calibration["accuracy"]
    assert (out / "adapter_config.json").is_file()

    tok, _, good, bad = _token_sets(scaled_dir)
    rng = random.Random(123)  # fresh pairs, never seen in training
    prompts = [[{"role": "user", "content": f"Write something for ticket {900 + i}"}] for i in range(20)]
    preferred = [[{"role": "assistant", "content": tok.decode(rng.sample(good, 6))}] for _ in range(20)]
    other = [[{"role": "assistant", "content": tok.decode(rng.sample(bad, 6))}] for _ in range(20)]
    reward = RewardModelReward(path=str(out), batch_size=7)
    assert reward._model is None  # lazy
    hi, lo = reward(prompts, preferred), reward(prompts, other)
    assert sum(h > l for h, l in zip(hi, lo)) >= 18
    sig = RewardModelReward(path=str(out), normalize="sigmoid")(prompts[:3], preferred[:3])
    assert all(0 < v < 1 for v in sig)
    batch = RewardModelReward(path=str(out), normalize="batch")(prompts, preferred + other[:0])
    assert abs(sum(batch) / len(batch)) < 1e-4
    with pytest.raises(ValueError):
        RewardModelReward(path=str(out), normalize="softmax")


@pytest.mark.slow
def test_reward_model_as_ppo_reward_moves_policy_towards_preferred_tokens(rm_run, scaled_dir, tmp_path):
    import datasets
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    from rlft.ppo import PPOConfig, PPOTrainer
    from rlft.scoring.loader import RewardSpec, load_rewards

    tok, good_set, _, _ = _token_sets(scaled_dir)

    def preferred_share(prompts, completions, completion_ids, **kwargs):  # ground truth, logged with weight 0
        return [sum(t in good_set for t in ids) / max(len(ids), 1) for ids in completion_ids]

    torch.manual_seed(0)
    policy = get_peft_model(AutoModelForCausalLM.from_pretrained(scaled_dir, dtype=torch.float32),
                            LoraConfig(r=8, lora_alpha=16, target_modules="all-linear"))
    rewards = load_rewards([RewardSpec(name="reward_model", params={"path": str(rm_run.output_dir)})])
    data = datasets.Dataset.from_list([{"prompt": [{"role": "user", "content": f"Write something {i}"}]}
                                       for i in range(64)])
    args = PPOConfig(output_dir=str(tmp_path / "ppo"), max_steps=10, per_device_train_batch_size=16, ppo_epochs=2,
                     max_completion_length=6, learning_rate=2e-2, init_kl_coef=0.0, whiten_rewards=False,
                     report_to="none", use_cpu=True, bf16=False, logging_steps=2, save_strategy="no", seed=0,
                     disable_tqdm=True, reward_weights=[1.0, 0.0])
    trainer = PPOTrainer(model=policy, processing_class=tok, reward_funcs=rewards + [preferred_share], args=args,
                         train_dataset=data)
    trainer.train()
    logs = [h for h in trainer.state.log_history if "rewards/preferred_share/mean" in h]
    shares = [round(h["rewards/preferred_share/mean"], 3) for h in logs]
    rm_scores = [round(h["rewards/reward_model/mean"], 3) for h in logs]
    print("preferred share:", shares, "RM score:", rm_scores)
    assert rm_scores[-1] > rm_scores[0]
    assert shares[-1] > shares[0] + 0.1
