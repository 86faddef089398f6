"""Segment credit (`signal.segment_credit`, `rlft.grpo.segments`): the intent reward's advantage reaches only head
tokens and the rubric's only reply tokens; per-token values by hand, the gradient, the batch plumbing
(drop_zero_std / merge), one-line recipe errors and a 2-step train of the support agent recipe."""

from __future__ import annotations

import math
from types import SimpleNamespace

import pytest
import torch
from datasets import Dataset

from rlft.recipe.sections import DecodingConfig, Recipe, RewardSpec, SignalConfig
from rlft.decoding.constrained import label_token_ids
from rlft.decoding.prompting import build_trie
from rlft.errors import RecipeError, UserError
from rlft.grpo import batch as B
from rlft.grpo import segments as S

LABELS = ["cancel_order", "track_order", "get_refund", "review"]
FREE = DecodingConfig(prefill="<intent>", constrain_labels=True, free_reply=True)
CREDIT = {"head": ["intent"], "reply": ["rubric"]}
G = 4


def _std(xs: list[float]) -> float:  # unbiased, as TRL's nanstd
    m = sum(xs) / len(xs)
    return math.sqrt(sum((x - m) ** 2 for x in xs) / (len(xs) - 1))


def _adv(xs: list[float]) -> list[float]:
    m, s = sum(xs) / len(xs), _std(xs)
    return [(x - m) / (s + 1e-4) for x in xs]


@pytest.fixture(scope="module")
def tok(tiny_model_dir):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(tiny_model_dir)


def _fake_trainer(tok, rewards: list[list[float]], weights=(1.0, 1.0), scale="group") -> SimpleNamespace:
    logged: dict[str, list[float]] = {}
    acc = SimpleNamespace(process_index=0, device=torch.device("cpu"), gather=lambda t: t)
    return SimpleNamespace(
        _last_rewards_per_func=torch.tensor(rewards), num_generations=G, num_generations_eval=G,
        model=SimpleNamespace(training=True), scale_rewards=scale, accelerator=acc, trie=build_trie(tok, LABELS, FREE),
        processing_class=tok, decoding=FREE, reward_weights=torch.tensor(weights),
        segments=S.reward_segments(CREDIT, ["intent", "rubric"]), logged=logged,
        log_signal_metric=lambda name, value: logged.setdefault(name, []).append(value))


def _completions(tok) -> list[list[int]]:
    heads = dict(zip(LABELS, label_token_ids(tok, LABELS, "<intent>", "</intent>"), strict=True))
    reply = tok.encode(" Sure, I can help.", add_special_tokens=False)
    return [heads["cancel_order"] + reply,                  # closed head + reply
            heads["get_refund"] + reply[:2] + [tok.eos_token_id],
            heads["review"],                                # head only (no reply yet)
            heads["track_order"][:2]]                       # cut inside the head: no </intent>


def _batch(rows: list[list[int]]) -> dict[str, torch.Tensor]:
    ids = B.pad([torch.tensor(r) for r in rows], padding_value=0, padding_side="right")
    mask = B.pad([torch.ones(len(r), dtype=torch.long) for r in rows], padding_value=0, padding_side="right")
    return {"completion_ids": ids, "completion_mask": mask, "advantages": torch.zeros(len(rows))}


def test_head_ends_after_the_label_suffix_and_an_unclosed_head_is_all_head(tok):
    rows = _completions(tok)
    trie = build_trie(tok, LABELS, FREE)
    lengths, closed = S.head_lengths(rows, trie, tok, "</intent>")
    heads = label_token_ids(tok, LABELS, "<intent>", "</intent>")
    assert lengths == [len(heads[0]), len(heads[2]), len(heads[3]), 2] and closed == [True, True, True, False]
    for row, n in zip(rows[:3], lengths[:3], strict=True):
        assert tok.decode(row[:n]).endswith("</intent>") and "</intent>" not in tok.decode(row[:n - 1])
    assert S.head_lengths(rows, None, tok, "</intent>") == (lengths, closed)  # the text fallback agrees


def test_per_token_advantages_equal_hand_computed_values(tok):
    intent, rubric = [1.0, 0.0, 0.0, 1.0], [0.0, 1.0, 0.0, 0.5]
    trainer = _fake_trainer(tok, [list(p) for p in zip(intent, rubric, strict=True)], weights=(1.0, 2.0))
    rows = _completions(tok)
    batch = _batch(rows)
    S.apply(trainer, batch)
    adv = batch["advantages"]
    assert adv.shape == batch["completion_ids"].shape
    lengths, _ = S.head_lengths(rows, trainer.trie, tok, "</intent>")
    a_head, a_reply = _adv(intent), [2.0 * a for a in _adv(rubric)]
    for r, (row, n) in enumerate(zip(rows, lengths, strict=True)):
        expected = [a_head[r]] * n + [a_reply[r]] * (len(row) - n) + [0.0] * (adv.size(1) - len(row))
        assert adv[r].tolist() == pytest.approx(expected, abs=1e-5), r
    assert adv[3, :2].tolist() == pytest.approx([a_head[3]] * 2)  # no </intent>: every token is head
    assert trainer.logged["segment/frac_unclosed_head"] == [0.25]
    assert trainer.logged["segment/head_tokens"] == [sum(lengths) / 4]


def test_abstention_contributes_nothing_and_unlisted_rewards_reach_every_token(tok):
    nan = float("nan")
    # rubric abstains on row 0: left out of its mean/std, advantage 0 there; a third, unlisted reward: everywhere
    rewards = [[1.0, nan, 1.0], [0.0, 1.0, 0.0], [0.0, 0.0, 0.0], [1.0, 1.0, 1.0]]
    trainer = _fake_trainer(tok, rewards, weights=(1.0, 1.0, 1.0))
    trainer.segments = S.reward_segments(CREDIT, ["intent", "rubric", "length"])
    adv = S.per_reward_advantages(torch.tensor(rewards), G, "group")
    assert adv[0, 1] == 0.0
    assert adv[1:, 1].tolist() == pytest.approx(_adv([1.0, 0.0, 1.0]), abs=1e-5)
    rows = _completions(tok)
    batch = _batch(rows)
    S.apply(trainer, batch)
    n0 = S.head_lengths(rows, trainer.trie, tok, "</intent>")[0][0]
    extra = _adv([1.0, 0.0, 0.0, 1.0])
    assert batch["advantages"][0, 0].item() == pytest.approx(_adv([1.0, 0.0, 0.0, 1.0])[0] + extra[0], abs=1e-5)
    assert batch["advantages"][0, n0].item() == pytest.approx(0.0 + extra[0], abs=1e-5)
    none = S.per_reward_advantages(torch.tensor([[1.0], [0.0], [0.0], [1.0]]), G, "none")
    assert none[:, 0].tolist() == [0.5, -0.5, -0.5, 0.5]


def test_per_token_advantages_survive_drop_zero_std_and_merge():
    a = {"advantages": torch.tensor([[1.0, 1.0, 0.0]] * G + [[0.0, 0.0, 0.0]] * G),
         "completion_ids": torch.ones(2 * G, 3, dtype=torch.long), "completion_mask": torch.ones(2 * G, 3)}
    kept, zero = B.split_groups(a["advantages"], G)
    assert kept == [list(range(G))] and zero == [list(range(G, 2 * G))]
    b = {"advantages": torch.full((G, 5), -1.0), "completion_ids": torch.ones(G, 5, dtype=torch.long),
         "completion_mask": torch.ones(G, 5)}
    merged = B.merge([B.select_rows(a, kept[0]), b], pad_token_id=0)
    assert merged["advantages"].shape == (2 * G, 5)
    assert merged["advantages"][0].tolist() == [1.0, 1.0, 0.0, 0.0, 0.0]
    padded = B.pad_rows(merged, 2 * G + 2)
    assert padded["advantages"].shape == (2 * G + 2, 5) and padded["advantages"][-1].abs().sum() == 0


# --- the real trainer on the tiny model ------------------------------------------------------------------------


class Intent:
    """1 when the head names the row's intent."""

    __name__ = "intent"

    def __call__(self, prompts, completions, intent, **kwargs):
        return [float(c[0]["content"].startswith(f"<intent>{i}</intent>")) for c, i in zip(completions, intent,
                                                                                          strict=True)]


class Rubric:
    """Constant 0 (zeroed) or alternating 0/1 within the group."""

    __name__ = "rubric"

    def __init__(self, zero: bool):
        self.zero = zero

    def __call__(self, prompts, completions, **kwargs):
        return [0.0 if self.zero else float(i % 2) for i in range(len(completions))]


def _trainer(tiny_model_dir, tmp_path, segment_credit: dict, zero_rubric: bool):
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import GRPOConfig

    from rlft.grpo import SignalGRPOTrainer

    torch.manual_seed(0)
    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    model = get_peft_model(AutoModelForCausalLM.from_pretrained(tiny_model_dir),
                           LoraConfig(r=4, lora_alpha=8, target_modules="all-linear", task_type="CAUSAL_LM"))
    data = Dataset.from_list([{"prompt": [{"role": "user", "content": f"question {i}"}], "intent": LABELS[i % 4]}
                              for i in range(8)])
    args = GRPOConfig(output_dir=str(tmp_path / "out"), per_device_train_batch_size=4 * G, num_generations=G,
                      max_completion_length=10, max_steps=1, learning_rate=1e-3, beta=0.0, report_to=[],
                      save_strategy="no", use_cpu=True, seed=0, loss_type="dapo",
                      multi_objective_aggregation="normalize_then_sum")
    return SignalGRPOTrainer(model=model, reward_funcs=[Intent(), Rubric(zero_rubric)], args=args,
                             train_dataset=data, processing_class=tok, labels=LABELS, decoding=FREE,
                             signal=SignalConfig(segment_credit=segment_credit))


def _logp_grad(trainer, batch) -> torch.Tensor:
    """d loss / d per-token log-prob: what each completion token receives."""
    orig = trainer._get_per_token_logps_and_entropies
    seen = {}

    def spy(*args, **kwargs):
        logps, entropy, aux = orig(*args, **kwargs)
        seen["logps"] = logps.detach().requires_grad_(True)
        return seen["logps"], entropy, aux

    trainer._get_per_token_logps_and_entropies = spy
    trainer.current_gradient_accumulation_steps = 1  # set by the training loop
    trainer.compute_loss(trainer.model, batch).backward()
    return seen["logps"].grad


def _segments_of(trainer, batch) -> tuple[torch.Tensor, torch.Tensor]:
    """(head, reply) token masks of a scored batch."""
    mask = batch["completion_mask"].bool()
    rows = [ids[m].tolist() for ids, m in zip(batch["completion_ids"], mask, strict=True)]
    lengths, _ = S.head_lengths(rows, trainer.trie, trainer.processing_class, "</intent>")
    head = torch.arange(mask.size(1)).unsqueeze(0) < torch.tensor(lengths).unsqueeze(1)
    return head & mask, mask & ~head


def test_intent_advantage_reaches_no_reply_token(tiny_model_dir, tmp_path):
    trainer = _trainer(tiny_model_dir, tmp_path, CREDIT, zero_rubric=True)
    trainer.model.train()
    data = trainer.train_dataset
    inputs = [dict(data[i]) for i in range(4) for _ in range(G)]
    batch = trainer._generate_and_score_completions(inputs)
    head, reply = _segments_of(trainer, batch)
    assert reply.any() and batch["advantages"].dim() == 2
    grad = _logp_grad(trainer, batch)
    assert grad[reply].abs().max().item() == 0.0  # the rubric is zeroed: nothing reaches the reply
    assert grad[head].abs().max().item() > 0  # the intent moves the head
    assert trainer._metrics["train"]["segment/reply_advantage_abs"] == [0.0]
    # exact resume: surplus groups keep their per-token advantages through the checkpoint's state file
    from rlft.grpo.signal_state import load_state, save_state

    trainer.surplus = [B.select_rows(batch, list(range(G)))]
    save_state(trainer, tmp_path)
    trainer.surplus = []
    assert load_state(trainer, tmp_path) and torch.equal(trainer.surplus[0]["advantages"], batch["advantages"][:G])
    # without segment credit the same intent spread pushes every reply token of the completion too
    plain = _trainer(tiny_model_dir, tmp_path, {}, zero_rubric=True)
    plain.model.train()
    batch = plain._generate_and_score_completions(inputs)
    _, reply = _segments_of(plain, batch)
    grad = _logp_grad(plain, batch)
    assert batch["advantages"].dim() == 1 and grad[reply].abs().max().item() > 0


def test_bad_segment_credit_is_a_one_line_recipe_error():
    from rlft.recipe.validate import _validate_sections

    rewards = [RewardSpec("intent"), RewardSpec("rubric")]
    cases = [(dict(signal=SignalConfig(segment_credit={"head": ["intnet"]}), decoding=FREE),
              "signal.segment_credit.head: unknown reward 'intnet' (rewards: intent, rubric)"),
             (dict(signal=SignalConfig(segment_credit=CREDIT), decoding=DecodingConfig(constrain_labels=True)),
              "signal.segment_credit: needs decoding.free_reply: true (the head ends where the constrained label + "
              "label_suffix ends)"),
             (dict(signal=SignalConfig(segment_credit=CREDIT), decoding=FREE, algorithm="ppo"),
              "signal.segment_credit: only applies to algorithm grpo (this recipe is ppo)"),
             (dict(signal=SignalConfig(segment_credit={"body": ["rubric"]}), decoding=FREE),
              "signal.segment_credit: expected keys head and/or reply, got 'body'"),
             (dict(signal=SignalConfig(segment_credit={"head": ["intent"], "reply": ["intent"]}), decoding=FREE),
              "signal.segment_credit: reward 'intent' is listed in both head and reply"),
             (dict(signal=SignalConfig(segment_credit=CREDIT, baseline="prompt_ema"), decoding=FREE),
              "signal.segment_credit: needs signal.baseline: group (prompt_ema has one baseline per completion, "
              "not per reward)")]
    for settings, message in cases:
        with pytest.raises(RecipeError) as err:
            _validate_sections(Recipe(rewards=rewards, **settings))
        assert str(err.value) == f"recipe: {message}"
    assert issubclass(RecipeError, UserError)  # the CLI's exit 2


def test_support_agent_recipe_with_segment_credit_trains_and_logs_segments(tiny_model_dir, write_recipe, tmp_path):
    import pathlib

    import rlft

    base = pathlib.Path(__file__).resolve().parents[1] / "recipes" / "support_agent.yaml"
    recipe = write_recipe(f"""extends: {base}
output_dir: {tmp_path / "run"}
model: {{name: {tiny_model_dir}}}
adapter: {{type: lora, r: 4, alpha: 8}}
data: {{demo_size: 40}}
signal: {{segment_credit: {{head: [intent], reply: [rubric]}}}}
trainer: {{max_steps: 2, per_device_train_batch_size: 8, num_generations: 4, max_completion_length: 12,
          learning_rate: 0.05, logging_steps: 1}}
evaluation: {{before: false, after: false}}
""", name="segments.yaml")
    result = rlft.train(recipe)
    assert result.metrics["global_step"] == 2
    logs = [h for h in result.metrics["log_history"] if "segment/head_tokens" in h]
    assert len(logs) == 2
    for h in logs:
        assert 1 <= h["segment/head_tokens"] <= 12 and h["segment/head_tokens"] + h["segment/reply_tokens"] <= 12
        assert h["segment/frac_unclosed_head"] <= 1.0
