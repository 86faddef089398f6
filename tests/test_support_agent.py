"""The support agent: partial constraint (head constrained, reply free) in evaluation, HF/shared-prefix sampling,
GRPO rollouts and the vLLM regex; the support_agent recipe with the judge on loopback."""

from __future__ import annotations

import re

import pytest
import torch

from rlft.recipe.sections import DecodingConfig
from rlft.decoding.constrained import LabelTrie, TrieLogitsProcessor
from rlft.decoding.prompting import build_trie, structured_output_regex
from rlft.errors import RecipeError
from rlft.decoding.generation import Sampling, generate

LABELS = ["cancel_order", "change_order", "track_order", "track_refund", "get_refund", "check_invoice",
          "contact_human_agent", "contact_customer_service", "review"]
FREE = DecodingConfig(prefill="<intent>", constrain_labels=True, free_reply=True)
HEAD = re.compile(r"<intent>(" + "|".join(LABELS) + r")</intent>")


@pytest.fixture(scope="module")
def tiny(tiny_model_dir):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    torch.manual_seed(0)
    return AutoModelForCausalLM.from_pretrained(tiny_model_dir), AutoTokenizer.from_pretrained(tiny_model_dir)


MESSAGES = [[{"role": "user", "content": t}] for t in ("where is my parcel", "refund please", "cancel it", "hi")]


def _split(text: str) -> tuple[str, str]:
    m = HEAD.match(text)
    assert m, text
    return m.group(1), text[m.end():]


def test_release_trie_tail_and_forced():
    trie = LabelTrie([[1, 2, 3], [1, 4], [5]], eos_token_id=0, release=True)
    assert sorted(trie.allowed([1])) == [2, 4]
    assert trie.tail([1]) is None and trie.tail([1, 2]) is None and trie.tail([9, 9]) is None
    assert trie.tail([1, 2, 3]) == 0 and trie.tail([1, 2, 3, 7, 7]) == 2 and trie.tail([5, 0]) == 1
    assert trie.is_forced([1, 2]) and not trie.is_forced([1, 2, 3]) and not trie.is_forced([5, 8])
    assert LabelTrie([[1, 2]], 0).tail([1, 2]) is None  # the full constraint never releases


def test_processor_releases_after_head_and_caps_reply():
    trie = LabelTrie([[1, 2], [3]], eos_token_id=0, release=True, reply_max_tokens=2)
    proc = TrieLogitsProcessor(trie, prompt_length=1, pad_token_id=9)
    out = proc(torch.tensor([[7, 1, 2, 5, 6], [7, 3, 5, 5, 5], [7, 1, 9, 9, 9]]), torch.zeros(3, 10))
    assert torch.isfinite(out[0]).tolist() == [True] + [False] * 9  # 2 reply tokens: only EOS
    assert torch.isfinite(out[1]).tolist() == [True] + [False] * 9
    assert torch.isfinite(out[2]).tolist() == [False] * 9 + [True]  # left the trie: pad only
    out = proc(torch.tensor([[7, 3], [7, 1]]), torch.zeros(2, 10))
    assert torch.isfinite(out[0]).all()  # released, nothing masked
    assert torch.isfinite(out[1]).tolist() == [False, False, True] + [False] * 7


def test_reply_min_tokens_masks_eos_until_the_reply_is_long_enough(tiny):
    trie = LabelTrie([[1, 2]], eos_token_id=0, release=True, reply_min_tokens=2)
    proc = TrieLogitsProcessor(trie, prompt_length=0, pad_token_id=9)
    out = proc(torch.tensor([[1, 2, 5, 9], [1, 2, 5, 6]]), torch.zeros(2, 10))
    assert torch.isfinite(out[1]).all()  # 2 reply tokens: EOS allowed
    out = proc(torch.tensor([[1, 2, 5]]), torch.zeros(1, 10))
    assert not torch.isfinite(out[0, 0]) and torch.isfinite(out[0, 1:]).all()  # 1 reply token: no EOS yet
    model, tok = tiny
    # bias the tiny model towards EOS right after the head: without the floor every reply would be empty
    eos = tok.eos_token_id
    with torch.no_grad():
        model.lm_head.bias = torch.nn.Parameter(torch.zeros(model.config.vocab_size))
        model.lm_head.bias[eos] = 1e4
    from rlft.decoding.prompting import prompt_ids
    from rlft.decoding.generation import eos_token_ids, generate_ids

    floor = DecodingConfig(prefill="<intent>", constrain_labels=True, free_reply=True, reply_min_tokens=5)
    ids = [prompt_ids(tok, m, FREE) for m in MESSAGES]
    kw = {"max_new_tokens": 30, "eos_token_ids": eos_token_ids(model, tok), "pad_token_id": tok.pad_token_id}
    try:
        plain = generate_ids(model, ids, trie=build_trie(tok, LABELS, FREE), **kw)
        floored = generate_ids(model, ids, trie=build_trie(tok, LABELS, floor), **kw)
    finally:
        del model.lm_head.bias
        model.lm_head.register_parameter("bias", None)
    trie = build_trie(tok, LABELS, floor)
    assert all(trie.tail(r) == 1 and r[-1] == eos for r in plain)  # EOS right after the head
    assert all(trie.tail(r) == 6 and r[-1] == eos for r in floored)  # 5 reply tokens, then EOS


def test_generate_yields_valid_head_then_free_text(tiny):
    model, tok = tiny
    greedy = generate(model, tok, MESSAGES, FREE, LABELS, max_new_tokens=24)
    sampled = generate(model, tok, MESSAGES, FREE, LABELS, max_new_tokens=24,
                       sampling=Sampling(temperature=1.5, n=4, seed=3))
    for text in greedy + sampled:
        _split(text)
    tails = [_split(t)[1] for t in greedy + sampled]
    assert len({_split(t)[0] for t in sampled}) > 1
    assert sum(len(t) > 0 for t in tails) >= len(tails) - 1  # free text follows the head (random model: rarely EOS)
    full = generate(model, tok, MESSAGES, DecodingConfig(prefill="<intent>", constrain_labels=True), LABELS,
                    max_new_tokens=24)
    assert all(HEAD.fullmatch(t) for t in full)  # the full constraint still ends right after the head


def test_reply_max_tokens_caps_the_reply(tiny):
    model, tok = tiny
    capped = DecodingConfig(prefill="<intent>", constrain_labels=True, free_reply=True, reply_max_tokens=3)
    trie = build_trie(tok, LABELS, capped)
    from rlft.decoding.prompting import prompt_ids
    from rlft.decoding.generation import eos_token_ids, generate_ids

    ids = [prompt_ids(tok, m, capped) for m in MESSAGES]
    out = generate_ids(model, ids, max_new_tokens=40, eos_token_ids=eos_token_ids(model, tok),
                       pad_token_id=tok.pad_token_id, trie=trie, sampling=Sampling(temperature=1.0, n=2, seed=0))
    for row in out:
        assert trie.tail(row) is not None and trie.tail(row) <= 4  # 3 reply tokens + EOS at most
        assert len(row) == 40 or row[-1] == tok.eos_token_id or trie.tail(row) <= 4


def test_hf_generate_and_shared_prefix_sampling_release(tiny):
    """The GRPO rollout's two samplers (HF generate + processor, shared-prefix + processor) obey the head."""
    from rlft.decoding.prompting import prompt_ids
    from rlft.decoding.shared_prefix import sample_shared_prefix

    model, tok = tiny
    trie = build_trie(tok, LABELS, FREE)
    rows = [prompt_ids(tok, m, FREE) for m in MESSAGES] * 2
    torch.manual_seed(2)
    shared = sample_shared_prefix(model, rows, max_new_tokens=20, eos_token_ids=[tok.eos_token_id],
                                  pad_token_id=tok.pad_token_id, temperature=1.2,
                                  logits_processor=TrieLogitsProcessor(trie, 0, tok.pad_token_id))
    width = max(map(len, rows))
    input_ids = torch.tensor([[tok.pad_token_id] * (width - len(r)) + r for r in rows])
    mask = torch.tensor([[0] * (width - len(r)) + [1] * len(r) for r in rows])
    hf = model.generate(input_ids=input_ids, attention_mask=mask, do_sample=True, temperature=1.2,
                        max_new_tokens=20, pad_token_id=tok.pad_token_id,
                        logits_processor=[TrieLogitsProcessor(trie, width, tok.pad_token_id)])
    hf = hf[:, width:].tolist()
    for out in list(shared) + hf:
        assert trie.tail(out) is not None and trie.tail(out) > 0
        _split("<intent>" + tok.decode(out, skip_special_tokens=True))


def test_regex_matches_free_reply_completions(tiny):
    model, tok = tiny
    rx = structured_output_regex(LABELS, FREE)
    assert rx.startswith("(?:contact_customer_service|") and rx.endswith("</intent>[\\s\\S]*")
    for text in generate(model, tok, MESSAGES, FREE, LABELS, max_new_tokens=24):
        assert re.fullmatch(rx, text[len("<intent>"):])
    assert re.fullmatch(rx, "track_order</intent> Your parcel is on its way.\nAnything else?")
    assert not re.fullmatch(rx, "lost_parcel</intent> hi")
    assert structured_output_regex(LABELS, DecodingConfig(constrain_labels=True)).endswith("</intent>")


def test_free_reply_needs_the_constraint():
    with pytest.raises(RecipeError, match=r"^decoding.free_reply: needs decoding.constrain_labels: true"):
        DecodingConfig(free_reply=True)
    with pytest.raises(RecipeError, match=r"^decoding.reply_max_tokens: expected >= 0, got -1$"):
        DecodingConfig(constrain_labels=True, free_reply=True, reply_max_tokens=-1)
    with pytest.raises(RecipeError, match=r"^decoding.reply_min_tokens: expected >= 0, got -2$"):
        DecodingConfig(constrain_labels=True, free_reply=True, reply_min_tokens=-2)


def rubric_judge():
    """A scripted judge whose verdict is the rubric's: Accurate iff the reply meets every requirement of the policy
    the request carries (the policy text is mapped back to its intent through the demo policy file)."""
    from rewards.rubric import RubricReward
    from rlft.judge.policies import Guidelines

    table = Guidelines.from_params(None, "demo").policies
    by_text = {" ".join(v.split()): k for k, v in table.items()}
    rubric = RubricReward(policies="demo")

    def respond(body: dict) -> str:
        text = body["messages"][-1]["content"]
        policy = " ".join(re.search(r"<policy>\n(.*?)\n</policy>", text, re.S).group(1).split())
        reply = re.search(r"<response>\n(.*?)\n</response>", text, re.S).group(1)
        customer = re.search(r"<customer_message>\n(.*?)\n</customer_message>", text, re.S)
        result = rubric.check(customer.group(1) if customer else "", reply, by_text[policy])
        verdict = "Accurate" if result.score == 1.0 else "Inaccurate"
        return f"Checked against the policy.\nVERDICT: {verdict}"

    return respond


def _judge_recipe(write_recipe, tiny_model_dir, tmp_path, url: str, run: str) -> object:
    import pathlib

    base = pathlib.Path(__file__).resolve().parents[1] / "recipes" / "support_agent_judge.yaml"
    return write_recipe(f"""extends: {base}
output_dir: {tmp_path / run}
model: {{name: {tiny_model_dir}}}
adapter: {{type: lora, r: 4, alpha: 8}}
data: {{demo_size: 40}}
rewards:
  - {{name: intent, weight: 1.0}}
  - {{name: rubric, weight: 1.0, params: {{policies: demo, max_words: 80}}}}
  - name: judge
    weight: 1.0
    params:
      backend: openai
      base_url: {url}
      model: stub-judge
      api_key_env: null
      policies: demo
      policy_column: intent
      gate: null                # the random model's head is rarely right: judge every reply
      min_words: 0
      injection_guard: false
      on_failure: abstain
      cache: {tmp_path / "judge.sqlite"}
      audit_path: {tmp_path / run / "audit.jsonl"}
trainer: {{max_steps: 2, per_device_train_batch_size: 8, num_generations: 4, max_completion_length: 12,
          learning_rate: 0.05, logging_steps: 1}}
evaluation: {{before: false, after: false}}
""", name=f"{run}.yaml")


def test_judge_path_on_loopback_counts_calls_and_hits_the_cache(tiny_model_dir, write_recipe, tmp_path):
    """The support agent recipe + judge trains 2 steps against a loopback server; a rerun is served by the cache."""
    import json

    import rlft
    from tests.judge_stub_server import StubJudge, StubServer

    stub = StubJudge(responder=rubric_judge())
    with StubServer(stub) as url:
        first = rlft.train(_judge_recipe(write_recipe, tiny_model_dir, tmp_path, url, "first"))
        calls = stub.requests
        second = rlft.train(_judge_recipe(write_recipe, tiny_model_dir, tmp_path, url, "second"))
    assert first.metrics["global_step"] == second.metrics["global_step"] == 2
    rows = [json.loads(x) for x in (tmp_path / "first" / "audit.jsonl").read_text().splitlines()]
    assert len(rows) == 2 * 8 and all(r["status"] == "ok" for r in rows)
    unique = {(r["batch"], r["prompt"], r["completion"]) for r in rows}
    assert calls == len(unique) >= 8  # one request per distinct judged completion
    assert stub.requests == calls  # the rerun (same seed, same completions) made no request: all cache hits
    hits = [h["judge/cache_hit_rate"] for h in second.metrics["log_history"] if "judge/cache_hit_rate" in h]
    assert hits and all(h == 1.0 for h in hits)
    # the judge saw the partial-constraint completions (valid head + free reply) and answered every one
    from rlft.data.demo import TEMPLATES

    demo_head = re.compile(r"<intent>(" + "|".join(TEMPLATES) + r")</intent>")
    assert all(demo_head.match(r["completion"]) for r in rows)
    assert {r["reward"] for r in rows} <= {0.0, 1.0}


def test_the_recipe_shows_the_rows_help_article_and_grades_against_the_guidelines():
    """recipes/support_agent.yaml: the prompt carries the row's customer-facing article (`demo:articles`); the
    rubric reads the judge's guidelines (`demo`), a different text with the same facts."""
    from rlft.data.loading import prepare
    from rlft.judge.policies import Guidelines
    from rlft.recipe.load import load_recipe
    from tests.conftest import ROOT

    recipe = load_recipe(ROOT / "recipes" / "support_agent.yaml")
    articles = Guidelines.from_params(None, "demo:articles")
    guidelines = Guidelines.from_params(None, "demo")
    assert recipe.data.policies == "demo:articles"
    assert next(r for r in recipe.rewards if r.name == "rubric").params["policies"] == "demo"
    prepared = prepare(recipe.data, "grpo", recipe.seed)
    for row in list(prepared.train.select(range(20))) + list(prepared.eval.select(range(10))):
        user = row["prompt"][-1]["content"]
        assert user == f"{row['utterance']}\n\nHelp-centre article: {articles.for_key(row['intent'])}"
        assert guidelines.for_key(row["intent"]) not in user


def test_the_concise_recipe_is_the_shipped_one_plus_a_length_term_that_ranks_only_long_replies():
    """recipes/support_agent_concise.yaml: everything of support_agent.yaml except the third reward; the length term
    ties every reply of <= 40 words at 0, costs 0.05 per extra word, and is 0 in training before step 30
    (docs/support_agent.md#phase-in)."""
    from types import SimpleNamespace

    from rlft.recipe.load import load_recipe
    from rlft.scoring.loader import load_rewards
    from tests.conftest import ROOT

    shipped = load_recipe(ROOT / "recipes" / "support_agent.yaml")
    concise = load_recipe(ROOT / "recipes" / "support_agent_concise.yaml")
    assert concise.output_dir.endswith("runs/support_agent_concise")
    for section in ("data", "decoding", "signal", "trainer", "evaluation", "adapter", "model"):
        assert getattr(concise, section) == getattr(shipped, section), section
    assert list(concise.rewards[:2]) == list(shipped.rewards)
    rewards = {r.name: r for r in load_rewards(concise.rewards)}
    assert rewards["length"].weight == 0.5
    # the trained concise reply to a delete_account row (21 words with the head): inside the budget
    reply = ("<intent>delete_account</intent> It is permanent: it removes your order history and cannot be undone. "
             "We delete an account only after you confirm.")
    run_on = reply + (" Please confirm before you remove the account. I can remove your order history and cannot"
                      " be undone. Please confirm before you remove the account.")
    assert len(reply.split()) <= 40 < len(run_on.split())
    length, penalty = rewards["length"].func, pytest.approx(-0.05 * (len(run_on.split()) - 40))
    assert length(prompts=["p"] * 2, completions=[reply, run_on]) == [0.0, penalty]
    for step, penalised in ((29, 0.0), (30, penalty)):
        state = SimpleNamespace(global_step=step)
        assert length(prompts=["p"] * 2, completions=[reply, run_on], trainer_state=state) == [0.0, penalised]
