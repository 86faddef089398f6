"""Signal features of `SignalGRPOTrainer` on a tiny random Llama: prefill + constraint, zero-variance groups
dropped/refilled and counted, forced tokens out of the loss, shared-prefix scoring equal to per-row scoring,
the zero-signal warning, and held-out evaluation during training (`rlft.evaluation.periodic`)."""

from __future__ import annotations

import logging

import pytest
import torch
from datasets import Dataset

from rlft.recipe.sections import DecodingConfig, SignalConfig
from rlft.decoding.prompting import generation_kwargs, prompt_ids
from rlft.grpo import SignalGRPOTrainer
from rlft.grpo.batch import loss_tokens, pad_rows, prompt_rows

LABELS = ["cancel_order", "track_order", "get_refund", "review"]
DECODING_KEYS = {"prefill", "constrain_labels", "label_suffix", "stop_at_suffix"}


def _cfg(**settings) -> tuple[SignalConfig, DecodingConfig]:
    """The recipe's `signal:` and `decoding:` sections from one keyword list."""
    decoding = {k: v for k, v in settings.items() if k in DECODING_KEYS}
    signal = {k: v for k, v in settings.items() if k not in DECODING_KEYS}
    return SignalConfig(**signal), DecodingConfig(**decoding)
G = 4


def _rows(n_tie: int, n_var: int) -> Dataset:
    rows = [{"prompt": [{"role": "user", "content": f"tie question {i}"}], "intent": "review"} for i in range(n_tie)]
    rows += [{"prompt": [{"role": "user", "content": f"var question {i}"}], "intent": "get_refund"}
             for i in range(n_var)]
    return Dataset.from_list(rows)


class Recorder:
    """Reward: prompts saying 'tie' always score 0 (zero variance); others alternate 0/1 within the group."""

    __name__ = "recorder"

    def __init__(self):
        self.seen: list[str] = []

    def __call__(self, prompts, completions, **kwargs):
        texts = [c[0]["content"] for c in completions]
        self.seen.extend(texts)
        return [0.0 if "tie" in p[-1]["content"] else float(i % 2) for i, p in enumerate(prompts)]


def _trainer(tiny_model_dir, tmp_path, cfg: tuple[SignalConfig, DecodingConfig], data: Dataset, reward=None,
             eval_data=None, **grpo) -> SignalGRPOTrainer:
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import GRPOConfig

    torch.manual_seed(0)
    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    model = get_peft_model(AutoModelForCausalLM.from_pretrained(tiny_model_dir),
                           LoraConfig(r=4, lora_alpha=8, target_modules="all-linear", task_type="CAUSAL_LM"))
    settings = dict(output_dir=str(tmp_path / "out"), per_device_train_batch_size=4 * G, num_generations=G,
                    max_completion_length=12, max_steps=1, learning_rate=1e-3, beta=0.0, report_to=[],
                    save_strategy="no", use_cpu=True, logging_steps=1, seed=0)
    settings.update(grpo)
    return SignalGRPOTrainer(model=model, reward_funcs=[reward or Recorder()], args=GRPOConfig(**settings),
                             train_dataset=data, eval_dataset=eval_data, processing_class=tok, signal=cfg[0],
                             decoding=cfg[1], labels=LABELS)


def _batch(trainer: SignalGRPOTrainer, data: Dataset, n_groups: int) -> list[dict]:
    return [dict(data[i]) for i in range(n_groups) for _ in range(G)]


def test_defaults_are_plain_trl():
    sig, dec = SignalConfig(), DecodingConfig()
    assert not (dec.prefill or dec.constrain_labels or sig.drop_zero_std or sig.refill_rounds
                or sig.shared_prefix or sig.decision_tokens_only)


def test_constrained_rollouts_are_valid_labels_and_rewards_see_the_prefill(tiny_model_dir, tmp_path):
    reward = Recorder()
    data = _rows(2, 2)
    trainer = _trainer(tiny_model_dir, tmp_path, _cfg(prefill="<intent>", constrain_labels=True), data,
                       reward)
    trainer.model.train()
    rows = _batch(trainer, data, 4)
    out = trainer._generate_and_score_completions(rows)
    # the rollout decodes after exactly the ids evaluation uses (template + prefill ids)
    assert prompt_rows(out) == [prompt_ids(trainer.processing_class, r["prompt"], trainer.decoding) for r in rows]
    assert len(reward.seen) == 4 * G
    assert set(reward.seen) <= {f"<intent>{x}</intent>" for x in LABELS}
    kwargs = generation_kwargs(trainer.processing_class, LABELS, trainer.decoding)
    assert kwargs["prefill"] == "<intent>" and callable(kwargs["logits_processor_factory"])


def test_zero_variance_groups_are_dropped_and_counted(tiny_model_dir, tmp_path):
    data = _rows(2, 2)  # rows 0-1 tie, rows 2-3 have variance
    trainer = _trainer(tiny_model_dir, tmp_path, _cfg(prefill="<intent>", constrain_labels=True,
                                                              drop_zero_std=True), data)
    trainer.model.train()
    out = trainer._generate_and_score_completions(_batch(trainer, data, 4))
    adv = out["advantages"].view(-1, G)
    assert adv.shape[0] == 2  # the two tied groups never reach the backward pass
    assert bool((adv.abs() > 0).any(dim=1).all())
    totals = trainer.signal_totals
    assert (totals["groups_generated"], totals["groups_zero_std"], totals["groups_dropped"],
            totals["groups_trained"]) == (4, 2, 2, 2)
    assert trainer._metrics["train"]["signal/frac_zero_std_first_draw"] == [0.5]
    assert int(out["num_items_in_batch"]) == int(out["completion_mask"].sum())


def test_refill_draws_fresh_prompts_until_the_batch_has_signal(tiny_model_dir, tmp_path):
    data = _rows(4, 12)
    trainer = _trainer(tiny_model_dir, tmp_path, _cfg(prefill="<intent>", constrain_labels=True,
                                                              drop_zero_std=True, refill_rounds=6), data)
    trainer.model.train()
    out = trainer._generate_and_score_completions(_batch(trainer, data, 4))  # the 4 tied rows first
    adv = out["advantages"].view(-1, G)
    assert adv.shape[0] == 4
    assert bool((adv.abs() > 0).any(dim=1).all())
    totals = trainer.signal_totals
    assert totals["refill_rounds"] >= 1
    assert totals["groups_generated"] == 4 * (1 + totals["refill_rounds"])
    assert totals["groups_dropped"] == totals["groups_zero_std"] >= 4
    assert totals["groups_trained"] == 4
    again = trainer._generate_and_score_completions(_batch(trainer, data, 4))  # may use last step's surplus
    assert again["advantages"].shape[0] == 4 * G
    assert trainer.signal_totals["groups_trained"] == 8


def test_padding_rows_for_other_processes_stay_out_of_the_loss():
    """A process with fewer groups is padded to the row count of the others (TRL gathers per-row values in the
    loss); the added rows must add no loss tokens and no advantage."""
    batch = {"prompt_ids": torch.tensor([[0, 5], [6, 7]]), "prompt_mask": torch.tensor([[0, 1], [1, 1]]),
             "completion_ids": torch.tensor([[8, 9, 2], [3, 2, 0]]),
             "completion_mask": torch.tensor([[1, 1, 1], [1, 1, 0]]),
             "tool_mask": torch.tensor([[1, 0, 1], [1, 1, 1]]), "advantages": torch.tensor([0.5, -0.5])}
    padded = pad_rows(batch, 5)
    assert padded["advantages"].tolist() == [0.5, -0.5, 0.0, 0.0, 0.0]
    assert padded["completion_ids"][2:].tolist() == [[8, 9, 2]] * 3  # copies of row 0, so shapes stay valid
    assert padded["completion_mask"][2:].sum() == 0
    assert int(loss_tokens(padded)) == int(loss_tokens(batch)) == 4
    assert pad_rows(batch, 2) is batch  # already as many rows as the largest process: unchanged


def test_all_tied_batch_trains_one_zero_advantage_group_and_warns(tiny_model_dir, tmp_path, caplog):
    data = _rows(4, 0)
    trainer = _trainer(tiny_model_dir, tmp_path, _cfg(drop_zero_std=True, warn_window=1,
                                                              warn_zero_std=0.5), data, max_completion_length=4)
    trainer.model.train()
    with caplog.at_level(logging.WARNING, logger="rlft.signal"):
        out = trainer._generate_and_score_completions(_batch(trainer, data, 4))
    assert out["advantages"].shape[0] == G and float(out["advantages"].abs().sum()) == 0.0
    assert trainer.signal_totals["steps_without_signal"] == 1
    assert "zero reward variance" in caplog.text


def test_forced_tokens_are_left_out_of_the_loss(tiny_model_dir, tmp_path):
    data = _rows(0, 4)
    trainer = _trainer(tiny_model_dir, tmp_path, _cfg(prefill="<intent>", constrain_labels=True,
                                                              decision_tokens_only=True), data)
    trainer.model.train()
    out = trainer._generate_and_score_completions(_batch(trainer, data, 4))
    mask, decision = out["completion_mask"], out["tool_mask"]
    assert int((decision * mask).sum()) < int(mask.sum())  # the `</intent>` tokens and EOS are forced
    for row, dec in zip(out["completion_ids"].tolist(), decision.tolist(), strict=True):
        assert dec[0] == 1  # the first label token is always a choice among the labels
        end = row.index(trainer.processing_class.eos_token_id)
        assert dec[end] == 0  # EOS after the suffix is forced


def test_shared_prefix_scoring_equals_per_row_scoring(tiny_model_dir, tmp_path):
    data = _rows(0, 4)
    shared = _trainer(tiny_model_dir, tmp_path, _cfg(prefill="<intent>", constrain_labels=True,
                                                             shared_prefix=True), data)
    shared.model.train()
    batch = shared._generate_and_score_completions(_batch(shared, data, 4))
    ids = torch.cat([batch["prompt_ids"], batch["completion_ids"]], dim=1)
    mask = torch.cat([batch["prompt_mask"], batch["completion_mask"]], dim=1)
    k = batch["completion_ids"].size(1)
    got, _, _ = shared._get_per_token_logps_and_entropies(shared.model, ids, mask, k)
    model = shared.model
    for r in range(ids.size(0)):  # reference: each row alone, unpadded, plain logits
        keep = mask[r].bool()
        row = ids[r][keep][None]
        n_completion = int(batch["completion_mask"][r].sum())
        with torch.no_grad():
            logits = model(input_ids=row).logits[0].float()
        logp = torch.log_softmax(logits[:-1], -1).gather(1, row[0, 1:, None])[:, 0][-n_completion:]
        assert torch.allclose(got[r, :n_completion].detach(), logp, atol=2e-3)
    assert all(len(set(c)) >= 1 for c in batch["completion_ids"].tolist())


def test_training_step_with_all_features_logs_signal_and_heldout_metrics(tiny_model_dir, tmp_path):
    from rlft.evaluation.held_out import evaluate
    from rlft.evaluation.periodic import PeriodicEval

    data = _rows(2, 6)
    cfg = _cfg(prefill="<intent>", constrain_labels=True, shared_prefix=True, drop_zero_std=True, refill_rounds=2,
               decision_tokens_only=True)
    trainer = _trainer(tiny_model_dir, tmp_path, cfg, data, loss_type="dapo")
    held_out = data.select(range(4))
    periodic = PeriodicEval(lambda m: evaluate(m, trainer.processing_class, held_out, labels=LABELS,
                                               decoding=cfg[1]),
                            every_steps=1, output_dir=tmp_path / "out", keep_best=True)
    trainer.add_callback(periodic)
    before = {n: p.detach().clone() for n, p in trainer.model.named_parameters() if "lora_B" in n}
    trainer.train()
    after = dict(trainer.model.named_parameters())
    assert any(not torch.equal(before[n], after[n]) for n in before)
    logged = {k for row in trainer.state.log_history for k in row}
    assert {"signal/frac_zero_std_first_draw", "signal/groups_trained", "heldout/intent_accuracy",
            "heldout/format_rate", "heldout/macro_f1"} <= logged
    assert periodic.history[0]["format_rate"] == 1.0  # constrained evaluation: always a valid label
    assert set(periodic.history[0]["per_intent"]) <= set(LABELS)
    assert periodic.best["step"] == 1 and (tmp_path / "out" / "best" / "adapter_config.json").is_file()


class SolvedTieVar:
    """'solved' prompts always score 1 (all correct), 'tie' prompts 0 (all wrong), others alternate 0/1."""

    __name__ = "solved_tie_var"

    def __call__(self, prompts, completions, **kwargs):
        text = [p[-1]["content"] for p in prompts]
        return [1.0 if "solved" in t else 0.0 if "tie" in t else float(i % 2) for i, t in enumerate(text)]


def _kinds(*kinds: str) -> Dataset:
    return Dataset.from_list([{"prompt": [{"role": "user", "content": f"{k} question {i}"}], "intent": "review"}
                              for i, k in enumerate(kinds)])


def test_prompt_baseline_pushes_all_wrong_groups_down_and_all_correct_wrong_are_counted(tiny_model_dir, tmp_path):
    data = _kinds("solved", "tie", "var", "var")
    trainer = _trainer(tiny_model_dir, tmp_path, _cfg(prefill="<intent>", constrain_labels=True, drop_zero_std=True,
                                                      baseline="prompt_ema"), data, SolvedTieVar(),
                       max_completion_length=6)
    trainer.model.train()
    out = trainer._generate_and_score_completions(_batch(trainer, data, 4))
    # first draw: every prompt is new, baseline = the draw's mean reward (4 + 0 + 2 + 2) / 16 = 0.5
    adv = out["advantages"].view(-1, G)
    assert adv.shape[0] == 4  # with this baseline the tied groups carry signal: nothing is dropped
    assert adv[0].tolist() == [0.5] * G and adv[1].tolist() == [-0.5] * G  # all wrong: pushed down
    assert trainer._metrics["train"]["signal/frac_all_correct"] == [0.25]
    assert trainer._metrics["train"]["signal/frac_all_wrong"] == [0.25]
    assert (trainer.signal_totals["groups_all_correct"], trainer.signal_totals["groups_all_wrong"]) == (1, 1)
    tie = trainer.row_key(1)
    assert trainer.prompt_stats.success_rate(tie) == 0.0 and trainer.prompt_stats.success_rate(trainer.row_key(0)) == 1
    assert trainer.prompt_stats.baseline(tie) == 0.25  # running mean: 0.5 * prior 0.5 + 0.5 * this group's 0
    again = trainer._generate_and_score_completions(_batch(trainer, data, 4))
    assert again["advantages"].view(-1, G)[1].tolist() == [-0.25] * G


def test_adaptive_refill_prefers_low_success_prompts_and_counts_retests(tiny_model_dir, tmp_path):
    data = _kinds("solved", "tie", "var")
    trainer = _trainer(tiny_model_dir, tmp_path, _cfg(prefill="<intent>", constrain_labels=True, drop_zero_std=True,
                                                      refill_rounds=1, adaptive=True, retest_solved=0.1), data,
                       SolvedTieVar(), per_device_train_batch_size=3 * G, max_completion_length=6)
    trainer.model.train()
    trainer._generate_and_score_completions(_batch(trainer, data, 3))  # success rates 1, 0 and 0.5 (+ one refill)
    assert [trainer.prompt_stats.success_rate(trainer.row_key(i)) for i in range(3)] == [1.0, 0.0, 0.5]
    before = dict(trainer.signal_totals)
    counts = {"solved": 0, "tie": 0, "var": 0}
    for _ in range(300):
        row = trainer.draw_prompts(1, G)
        assert len(row) == G and all(r == row[0] for r in row)
        counts[row[0]["prompt"][-1]["content"].split()[0]] += 1
    assert counts["solved"] < counts["var"] < counts["tie"]  # weights 0.1, 0.5, 1 (unsolved first)
    assert counts["solved"] < 60
    t = trainer.signal_totals
    assert t["adaptive_draws"] - before["adaptive_draws"] == 300
    assert t["adaptive_solved_retests"] - before["adaptive_solved_retests"] == counts["solved"]
    assert t["adaptive_unseen"] == before["adaptive_unseen"]


def test_new_signal_keys_are_validated_as_one_line_recipe_errors():
    from rlft.recipe.sections import Recipe
    from rlft.errors import RecipeError
    from rlft.recipe.validate import _validate_sections

    cases = [(dict(baseline="mean"), "signal.baseline: expected group or prompt_ema, got 'mean'"),
             (dict(baseline_ema=0.0), "signal.baseline_ema: expected 0 < x <= 1, got 0.0"),
             (dict(adaptive=True), "signal.adaptive: needs signal.refill_rounds >= 1 (it chooses the refill prompts)"),
             (dict(drop_zero_std=True, refill_rounds=1, adaptive=True, adaptive_pool=0),
              "signal.adaptive_pool: expected >= 1, got 0"),
             (dict(retest_solved=1.5), "signal.retest_solved: expected 0..1, got 1.5")]
    for settings, message in cases:
        with pytest.raises(RecipeError) as err:
            _validate_sections(Recipe(signal=SignalConfig(**settings)))
        assert str(err.value) == f"recipe: {message}"
