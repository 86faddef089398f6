"""The exact label-space objective (`rlft.decoding.label_space`, `algorithm: label_pg`) on a tiny random Llama: its
log-probabilities, expectation and gradient are checked against independent computations, and a recipe trains
through `rlft.train` with LoRA and QLoRA."""

import json
import math

import pytest
import torch

import rlft
from rlft.recipe.sections import DecodingConfig, LabelPGConfig
from rlft.decoding.constrained import LabelTrie, TrieLogitsProcessor
from rlft.decoding.prompting import prompt_ids
from rlft.decoding.label_space import (LabelSpace, label_logprobs, label_pg_loss, label_rewards, log_expected,
                              normalise_rewards, validity_draw)
from rlft.scoring.loader import LoadedReward, RewardSpec, load_rewards

LABELS = ["cancel_order", "track_order", "get_refund", "track_refund"]
DECODING = DecodingConfig(prefill="<intent>")
PROMPTS = [[{"role": "user", "content": "cancel my order please"}],
           [{"role": "system", "content": "Classify the message."}, {"role": "user", "content": "refund status?"}]]
GOLD = ["cancel_order", "track_refund"]


@pytest.fixture(scope="module")
def setup(tiny_model_dir):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir).eval()
    space = LabelSpace.build(tokenizer, LABELS, DECODING)
    ids = [prompt_ids(tokenizer, p, DECODING) for p in PROMPTS]
    return tokenizer, model, space, ids


def _intent(**params):
    return load_rewards([RewardSpec(name="intent", params={"labels": LABELS, **params})])


def test_shared_cache_logprobs_equal_per_sequence_full_forward(setup):
    tokenizer, model, space, ids = setup
    with torch.no_grad():
        lp = label_logprobs(model, space, ids, pad_token_id=tokenizer.pad_token_id)
        for b, pid in enumerate(ids):
            for k, path in enumerate(space.paths):
                logits = model(torch.tensor([pid + path])).logits[0, len(pid) - 1:-1].double()
                free = logits.log_softmax(-1).gather(1, torch.tensor(path)[:, None]).sum()
                con = sum(logits[t, path[t]] - logits[t, a].logsumexp(0)
                          for t, a in enumerate(space.choices[k]) if a is not None)
                assert lp.free[b, k].item() == pytest.approx(free.item(), abs=1e-4)
                assert lp.constrained[b, k].item() == pytest.approx(float(con), abs=1e-5)
    # the trie-renormalised policy is a distribution over labels; the free one leaves mass outside them
    assert torch.allclose(lp.constrained.exp().sum(1), torch.ones(2), atol=1e-5)
    assert bool((lp.free.exp().sum(1) < 1).all())


def test_exact_expected_reward_equals_monte_carlo_of_constrained_samples(setup):
    tokenizer, model, space, ids = setup
    rewards = _intent(partial_credit=0.5)  # graded: track_order vs cancel_order shares "order"
    prompt, gold = PROMPTS[0], GOLD[0]
    r = label_rewards(rewards, space, [prompt], {"intent": [gold]})[0]
    assert len(set(r.tolist())) == 3  # 1, partial credit, 0: a non-trivial expectation
    with torch.no_grad():
        pi = label_logprobs(model, space, ids[:1], pad_token_id=tokenizer.pad_token_id).constrained[0].exp()
    exact = float((pi.double() * r).sum())

    n = 500
    torch.manual_seed(1)
    x = torch.tensor([ids[0]] * n)
    trie = LabelTrie.from_labels(tokenizer, LABELS, DECODING.prefill, DECODING.label_suffix)
    with torch.no_grad():
        out = model.generate(x, attention_mask=torch.ones_like(x), do_sample=True, temperature=1.0, top_k=0,
                             top_p=1.0, max_new_tokens=12, pad_token_id=tokenizer.pad_token_id,
                             logits_processor=[TrieLogitsProcessor(trie, x.shape[1], tokenizer.pad_token_id)])
    texts = [DECODING.prefill + t for t in tokenizer.batch_decode(out[:, x.shape[1]:], skip_special_tokens=True)]
    sampled = rlft.scoring.completions.score(rewards, [prompt] * n, texts, {"intent": [gold] * n}).total
    mean = sum(sampled) / n
    std = math.sqrt(sum((v - mean) ** 2 for v in sampled) / (n - 1))
    assert abs(mean - exact) < 4 * std / math.sqrt(n)  # within sampling error


def test_partial_credit_from_a_custom_reward_changes_p_exactly(setup):
    tokenizer, model, space, ids = setup

    def custom(prompts, completions, intent, **kwargs):  # gold 1, one second label 0.5, the rest 0
        text = [c[0]["content"] for c in completions]
        return [1.0 if t == f"<intent>{g}</intent>" else 0.5 if "track_order" in t else 0.0
                for t, g in zip(text, intent, strict=True)]

    rewards = [LoadedReward("custom", custom, 1.0, ("intent",), False)]
    r = label_rewards(rewards, space, PROMPTS[:1], {"intent": GOLD[:1]})
    assert r.tolist() == [[1.0, 0.5, 0.0, 0.0]]
    with torch.no_grad():
        pi = label_logprobs(model, space, ids[:1], pad_token_id=tokenizer.pad_token_id).constrained[0].exp()
        _, metrics = label_pg_loss(model, space, LabelPGConfig(normaliser="constrained"), ids[:1], r,
                                   tokenizer.pad_token_id)
    by_hand = float(pi[0] + 0.5 * pi[1])
    assert metrics["p_constrained"] == pytest.approx(by_hand, rel=1e-5)
    assert metrics["label_paths"] == 2  # the two zero-reward labels were pruned


def test_abstentions_and_ties():
    r = torch.tensor([[2.0, float("nan"), 0.0, 1.0], [0.5, 0.5, 0.5, float("nan")]], dtype=torch.float64)
    rt, signal = normalise_rewards(r)
    assert rt.tolist() == [[1.0, 0.0, 0.0, 0.5], [0.0, 0.0, 0.0, 0.0]]
    assert signal.tolist() == [True, False]  # every label ties: no signal, skipped
    logpi = torch.log(torch.tensor([[0.1, 0.2, 0.3, 0.4]]))
    assert log_expected(logpi, rt[:1]).exp().item() == pytest.approx(0.1 + 0.5 * 0.4)


@pytest.mark.parametrize("cfg", [LabelPGConfig(weighting="log", normaliser="both", prune_zero_reward=False),
                                 LabelPGConfig(weighting="expected", normaliser="constrained")])
def test_gradient_matches_finite_differences(setup, cfg, tiny_model_dir, monkeypatch):
    from transformers import AutoModelForCausalLM
    from transformers.models.llama.modeling_llama import LlamaRMSNorm

    def rms_norm_float64(self, h):  # Llama's RMSNorm rounds through float32, which would swamp the differences
        return self.weight * (h * torch.rsqrt(h.pow(2).mean(-1, keepdim=True) + self.variance_epsilon))

    monkeypatch.setattr(LlamaRMSNorm, "forward", rms_norm_float64)
    tokenizer, _, space, ids = setup
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float64).eval()
    r = label_rewards(_intent(partial_credit=0.5), space, PROMPTS, {"intent": GOLD})
    param = model.model.layers[0].self_attn.q_proj.weight
    loss, _ = label_pg_loss(model, space, cfg, ids, r, tokenizer.pad_token_id)
    (grad,) = torch.autograd.grad(loss, param)

    def objective() -> float:  # the function whose gradient the surrogate loss has
        with torch.no_grad():
            if cfg.weighting == "log":
                return label_pg_loss(model, space, cfg, ids, r, tokenizer.pad_token_id)[0].item()
            rt, _ = normalise_rewards(r)
            lp = label_logprobs(model, space, ids, pad_token_id=tokenizer.pad_token_id)
            return -log_expected(lp.constrained, rt).exp().mean().item()

    torch.manual_seed(0)
    direction = torch.randn_like(param)
    eps = 1e-5
    with torch.no_grad():
        param += eps * direction
        up = objective()
        param -= 2 * eps * direction
        down = objective()
        param += eps * direction
    fd = (up - down) / (2 * eps)
    assert float((grad * direction).sum()) == pytest.approx(fd, rel=1e-5)


def _lora_setup(tiny_model_dir):
    """A fresh LoRA model on the tiny Llama (seed 0) with the label space and the prompts' ids."""
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    torch.manual_seed(0)
    model = get_peft_model(AutoModelForCausalLM.from_pretrained(tiny_model_dir),
                           LoraConfig(r=8, lora_alpha=16, target_modules="all-linear"))
    space = LabelSpace.build(tokenizer, LABELS, DECODING)
    return tokenizer, model, space, [prompt_ids(tokenizer, p, DECODING) for p in PROMPTS]


def test_the_batch_common_prefix_runs_once_with_the_values_and_gradients_of_the_full_pass(tiny_model_dir):
    """Prompts that share a long system turn (a label list) and differ in tail length: the shared-prefix pass gives
    the per-row pass's log-probabilities and LoRA gradients, with the prefix's gradient reaching it once."""
    from rlft.decoding.generation import common_prefix_length

    tokenizer, model, space, _ = _lora_setup(tiny_model_dir)
    system = {"role": "system", "content": "Classify the message. Allowed intents: " + ", ".join(LABELS) + "."}
    users = ["cancel my order please", "refund?", "where is the parcel I ordered last week, it is late"]
    ids = [prompt_ids(tokenizer, [system, {"role": "user", "content": u}], DECODING) for u in users]
    n_shared = common_prefix_length(ids)
    assert n_shared > 20 and all(r[:n_shared] == ids[0][:n_shared] for r in ids)
    assert len({len(r) for r in ids}) == 3  # tails of three lengths: padding sits between prefix and tail
    rewards = torch.tensor([[1.0, 0, 0, 0], [0, 0, 0.5, 1.0], [0, 1.0, 0, 0.5]])
    cfg = LabelPGConfig(normaliser="both")
    results = []
    for share in (True, False):
        model.zero_grad()
        lp = label_logprobs(model, space, ids, pad_token_id=tokenizer.pad_token_id, share_prefix=share)
        log_p = log_expected(lp.free, normalise_rewards(rewards)[0]) + log_expected(lp.constrained, rewards)
        (-log_p.mean()).backward()
        grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.requires_grad}
        results.append((lp.free.detach(), lp.constrained.detach(), grads))
    (free_s, con_s, grad_s), (free_f, con_f, grad_f) = results
    assert torch.allclose(free_s, free_f, atol=1e-5) and torch.allclose(con_s, con_f, atol=1e-5)
    assert sum(float(g.abs().sum()) for g in grad_f.values()) > 0
    for name, g in grad_f.items():
        assert torch.allclose(grad_s[name], g, atol=1e-5, rtol=1e-4), name
    loss_s, _ = label_pg_loss(model, space, cfg, ids, rewards, tokenizer.pad_token_id)
    assert common_prefix_length([[1, 2, 3], [1, 2, 3]]) == 2 and common_prefix_length([[1, 2], [3]]) == 0
    assert torch.isfinite(loss_s)


def _adam_steps(model, steps, loss_and_metrics):
    """`steps` Adam steps (lr 1e-2) on the model's trainable parameters; the last step's metrics."""
    opt = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    for _ in range(steps):
        loss, metrics = loss_and_metrics()
        opt.zero_grad()
        loss.backward()
        opt.step()
    return metrics


def test_free_mass_on_valid_labels_rises_under_the_free_objective(tiny_model_dir):
    tokenizer, model, space, ids = _lora_setup(tiny_model_dir)
    r = label_rewards(_intent(), space, PROMPTS, {"intent": GOLD})
    cfg = LabelPGConfig(weighting="log", normaliser="free")

    def mass() -> float:
        with torch.no_grad():
            return float(label_logprobs(model, space, ids, pad_token_id=tokenizer.pad_token_id).free.exp().sum(1)
                         .mean())

    start = mass()
    metrics = _adam_steps(model, 4, lambda: label_pg_loss(model, space, cfg, ids, r, tokenizer.pad_token_id))
    assert metrics["label_paths"] == 1  # 0/1 reward: only the gold path of each prompt is run
    assert start < 1e-20  # a random model almost never free-decodes a whole valid label
    assert mass() > 10 * start  # measured ~90x after 4 steps


def test_validity_draw_skips_the_rewarded_paths_and_repeats_under_a_seed():
    rt = torch.tensor([[1.0, 0, 0, 0], [0, 0, 0.5, 1.0]])
    torch.manual_seed(3)
    first = validity_draw(rt, [[0], [2, 3]], 2)
    torch.manual_seed(3)
    assert validity_draw(rt, [[0], [2, 3]], 2) == first
    assert len(first[0]) == 2 and 0 not in first[0] and sorted(first[1]) == [0, 1]
    assert validity_draw(rt, [[0], []], 9) == [[0, 1, 2, 3]] * 2  # >= K: every label
    assert validity_draw(rt, [[0], []], 0) == [[], []]


def test_validity_term_raises_free_mass_on_valid_labels_without_any_reward_signal(tiny_model_dir):
    """Rewards that tie on every label give the reward term nothing; the validity term alone still teaches plain
    decoding to stay on the label trie, and its value is -log P(stay) = log pi_con - log pi_free of its paths."""
    tokenizer, model, space, ids = _lora_setup(tiny_model_dir)
    ties = torch.ones(len(PROMPTS), len(LABELS))  # every label rewarded alike: no signal anywhere
    cfg = LabelPGConfig(validity_paths=len(LABELS), validity_weight=1.0)

    def logprobs():
        with torch.no_grad():
            return label_logprobs(model, space, ids, pad_token_id=tokenizer.pad_token_id)

    lp = logprobs()
    loss, metrics = label_pg_loss(model, space, cfg, ids, ties, tokenizer.pad_token_id)
    assert metrics["frac_no_signal"] == 1.0 and metrics["label_paths"] == len(LABELS)
    assert math.isclose(float(loss), float((lp.constrained - lp.free).mean()), rel_tol=1e-4)
    assert math.isclose(metrics["validity_stay_prob"], float((lp.free - lp.constrained).exp().mean()), rel_tol=1e-4)
    start = float(lp.free.exp().sum(1).mean())
    _adam_steps(model, 4, lambda: label_pg_loss(model, space, cfg, ids, ties, tokenizer.pad_token_id))
    assert float(logprobs().free.exp().sum(1).mean()) > 10 * start
    off, _ = label_pg_loss(model, space, LabelPGConfig(), ids, ties, tokenizer.pad_token_id)
    assert not off.requires_grad or float(off) == 0.0  # without the term, tied rewards give no loss at all


RECIPE = """algorithm: label_pg
output_dir: {out}
model: {{name: {model}}}
adapter: {{type: {adapter}, r: 4, alpha: 8}}
data: {{source: demo:intents, demo_size: 40}}
rewards: [{{name: intent}}]
decoding: {{prefill: "<intent>", constrain_labels: true}}
label_pg: {{weighting: maxrl, normaliser: both}}
trainer: {{max_steps: {steps}, per_device_train_batch_size: 4, learning_rate: 0.01}}
evaluation: {{before: false, max_samples: 4, max_new_tokens: 16, batch_size: 4}}
"""


@pytest.mark.parametrize(("adapter", "steps"), [("lora", 2), ("qlora", 1)])
def test_label_pg_recipe_trains_through_rlft_train(adapter, steps, tiny_model_dir, write_recipe, tmp_path):
    from safetensors.torch import load_file

    out = tmp_path / "run"
    recipe = rlft.load_recipe(write_recipe(RECIPE.format(out=out, model=tiny_model_dir, adapter=adapter,
                                                         steps=steps)))
    result = rlft.train(recipe)
    weights = load_file(str(out / "adapter_model.safetensors"))
    assert any("lora_B" in k and v.abs().sum() > 0 for k, v in weights.items())  # B starts at 0: it moved
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["algorithm"] == "label_pg" and metrics["global_step"] == steps
    logged = [row for row in metrics["log_history"] if "label_pg/p_free" in row]
    assert len(logged) == steps
    assert 0.0 < logged[0]["label_pg/p_constrained"] < 1.0 and logged[0]["label_pg/label_paths"] == 1.0
    assert result.eval_after.metrics["format_rate"] == 1.0  # evaluated under the constraint
