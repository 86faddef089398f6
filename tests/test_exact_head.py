"""`signal.exact_head` (`rlft.grpo.exact_head`): inside GRPO, the head's intent reward is maximised exactly over the
label set instead of by sampled advantages. The label paths stop after the suffix, the sampled intent advantage is
gone, the exact loss alone moves the gold label up, bad settings are one-line recipe errors, and the support agent
recipe trains with it and logs it."""

from __future__ import annotations

import pathlib

import pytest
import torch
from datasets import Dataset

from rlft.recipe.sections import DecodingConfig, LabelPGConfig, Recipe, RewardSpec, SignalConfig
from rlft.errors import RecipeError
from rlft.decoding.label_space import LabelSpace, label_logprobs

LABELS = ["cancel_order", "track_order", "get_refund", "review"]
FREE = DecodingConfig(prefill="<intent>", constrain_labels=True, free_reply=True)
G = 4


class Intent:
    """1 when the head names the row's intent."""

    __name__ = "intent"

    def __call__(self, prompts, completions, intent, **kwargs):
        return [float(c[0]["content"].startswith(f"<intent>{i}</intent>")) for c, i in zip(completions, intent,
                                                                                          strict=True)]


def test_label_paths_stop_after_the_suffix_when_a_reply_follows(tiny_model_dir):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    only_label = LabelSpace.build(tok, LABELS, DecodingConfig(prefill="<intent>", constrain_labels=True))
    with_reply = LabelSpace.build(tok, LABELS, FREE)
    for a, b in zip(only_label.paths, with_reply.paths, strict=True):
        assert a[-1] == tok.eos_token_id and a[:-1] == b and b[-1] != tok.eos_token_id
        assert tok.decode(b).endswith("</intent>")


def _trainer(tiny_model_dir, tmp_path, exact_head: list[str], steps: int = 3, extra: int = 0):
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import GRPOConfig

    from rlft.grpo import SignalGRPOTrainer

    torch.manual_seed(0)
    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    model = get_peft_model(AutoModelForCausalLM.from_pretrained(tiny_model_dir),
                           LoraConfig(r=4, lora_alpha=8, target_modules="all-linear", task_type="CAUSAL_LM"))
    data = Dataset.from_list([{"prompt": [{"role": "user", "content": f"question {i}"}], "intent": LABELS[i % 4]}
                              for i in range(4)])
    args = GRPOConfig(output_dir=str(tmp_path / "out"), per_device_train_batch_size=4 * G, num_generations=G,
                      max_completion_length=8, max_steps=steps, learning_rate=2e-2, beta=0.0, report_to=[],
                      save_strategy="no", use_cpu=True, seed=0, loss_type="dapo", logging_steps=1)
    return SignalGRPOTrainer(model=model, reward_funcs=[Intent()], args=args, train_dataset=data,
                             processing_class=tok, labels=LABELS, decoding=FREE,
                             signal=SignalConfig(exact_head=exact_head, exact_head_extra_prompts=extra), label_pg=LabelPGConfig(weighting="log"))


def _gold_logprob(trainer) -> float:
    """Mean log π_free(gold label + </intent>) over the training prompts."""
    from rlft.decoding.prompting import prompt_ids

    data, tok = trainer.train_dataset, trainer.processing_class
    ids = [prompt_ids(tok, row["prompt"], FREE) for row in data]
    with torch.no_grad():
        lp = label_logprobs(trainer.model, trainer.exact_head.space, ids, pad_token_id=tok.eos_token_id)
    return float(sum(lp.free[b, LABELS.index(row["intent"])] for b, row in enumerate(data)) / len(data))


def test_the_exact_loss_alone_moves_the_gold_label_up(tiny_model_dir, tmp_path):
    trainer = _trainer(tiny_model_dir, tmp_path, ["intent"])
    assert trainer.reward_weights.tolist() == [0.0]  # the sampled intent advantage is gone ...
    trainer.model.train()
    inputs = [dict(trainer.train_dataset[i]) for i in range(4) for _ in range(G)]
    batch = trainer._generate_and_score_completions(inputs)
    assert batch["advantages"].abs().max().item() == 0.0  # ... so GRPO alone has no gradient here
    assert [row["intent"] for row in trainer.head_rows] == LABELS  # one row per prompt of the round
    trainer.head_rows = []
    trainer.model.eval()
    before = _gold_logprob(trainer)
    trainer.train()
    after = _gold_logprob(trainer)
    assert after > before + 0.05, (before, after)
    logged = [h for h in trainer.state.log_history if "exact_head/p_free" in h]
    assert len(logged) == 3 and all(0.0 < h["exact_head/p_free"] <= 1.0 for h in logged)
    assert all(h["exact_head/label_paths"] == 1.0 for h in logged)  # 0/1 reward: only the gold path runs
    # extra rows: the round's prompts, then that many training rows for the head loss alone
    more = _trainer(tiny_model_dir, tmp_path / "more", ["intent"], steps=1, extra=5)
    more.model.train()
    more._generate_and_score_completions(inputs)
    assert len(more.head_rows) == 9 and [r["intent"] for r in more.head_rows[:4]] == LABELS
    assert all(r in [dict(row) for row in more.train_dataset] for r in more.head_rows[4:])
    # the same run without the exact head: the intent reward still trains through sampled advantages
    plain = _trainer(tiny_model_dir, tmp_path / "plain", [], steps=1)
    assert plain.reward_weights.tolist() == [1.0] and plain.exact_head is None


def test_bad_exact_head_is_a_one_line_recipe_error():
    from rlft.recipe.validate import _validate_sections

    rewards = [RewardSpec("intent"), RewardSpec("rubric")]
    cases = [(dict(signal=SignalConfig(exact_head=["intnet"]), decoding=FREE),
              "signal.exact_head: unknown reward 'intnet' (rewards: intent, rubric)"),
             (dict(signal=SignalConfig(exact_head=["intent"]), decoding=DecodingConfig(constrain_labels=True)),
              "signal.exact_head: needs decoding.constrain_labels: true and decoding.free_reply: true (the head is "
              "one allowed label, then the reply)"),
             (dict(signal=SignalConfig(exact_head=["intent", "intent"]), decoding=FREE),
              "signal.exact_head: reward 'intent' is listed twice"),
             (dict(signal=SignalConfig(exact_head=["intent"], exact_head_weight=0.0), decoding=FREE),
              "signal.exact_head_weight: expected > 0, got 0.0"),
             (dict(signal=SignalConfig(exact_head=["intent"], exact_head_extra_prompts=-1), decoding=FREE),
              "signal.exact_head_extra_prompts: expected >= 0, got -1"),
             (dict(label_pg=LabelPGConfig(weighting="expected"), decoding=FREE),
              "label_pg: only applies to algorithm label_pg or signal.exact_head (this recipe is grpo)")]
    for settings, message in cases:
        with pytest.raises(RecipeError) as err:
            _validate_sections(Recipe(rewards=rewards, **settings))
        assert str(err.value) == f"recipe: {message}"
    # the label_pg: section configures the exact head
    _validate_sections(Recipe(rewards=rewards, decoding=FREE, signal=SignalConfig(exact_head=["intent"]),
                              label_pg=LabelPGConfig(weighting="expected")))


def test_support_agent_recipe_with_exact_head_trains_and_logs_it(tiny_model_dir, write_recipe, tmp_path):
    import rlft

    base = pathlib.Path(__file__).resolve().parents[1] / "recipes" / "support_agent.yaml"
    recipe = write_recipe(f"""extends: {base}
output_dir: {tmp_path / "run"}
model: {{name: {tiny_model_dir}}}
adapter: {{type: lora, r: 4, alpha: 8}}
data: {{demo_size: 40}}
signal: {{exact_head: [intent], exact_head_extra_prompts: 4, segment_credit: {{reply: [rubric]}}}}
trainer: {{max_steps: 2, per_device_train_batch_size: 8, num_generations: 4, max_completion_length: 12,
          learning_rate: 0.05, logging_steps: 1}}
evaluation: {{before: false, after: false}}
""", name="exact_head.yaml")
    result = rlft.train(recipe)
    assert result.metrics["global_step"] == 2
    logs = [h for h in result.metrics["log_history"] if "exact_head/p_free" in h]
    assert len(logs) == 2 and all(h["exact_head/frac_no_signal"] == 0.0 for h in logs)
