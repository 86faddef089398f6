"""Head-triggered lookup (`decoding.lookup`): after `<intent>X</intent>` the article of the label the MODEL chose is
appended as context it did not generate, then the reply continues. The trie locates and forces it, every sampler
fetches the chosen label's article, GRPO leaves it out of the loss (zero gradient) and out of what rewards score
and count, the vLLM regex carries it, and bad recipes are one-line errors."""

from __future__ import annotations

import re

import pytest
import torch

from rlft.recipe.sections import DecodingConfig
from rlft.decoding.constrained import TrieLogitsProcessor, label_token_ids
from rlft.decoding.prompting import build_trie, prompt_ids, structured_output_regex
from rlft.errors import RecipeError
from rlft.decoding.generation import Sampling, eos_token_ids, generate, generate_ids

LABELS = ["cancel_order", "track_order", "get_refund", "review"]
ARTICLES = {"cancel_order": "Cancelling costs $4.99; we need your order number.",
            "track_order": "Track parcels under Account > Orders.",
            "get_refund": "Refunds take 5 to 7 business days.",
            "review": "Reviews go live within a day."}
TEMPLATE = "\nArticle: {article}\nAnswer:"
MESSAGES = [[{"role": "user", "content": t}] for t in ("where is my parcel", "refund please", "cancel it", "hi")]
FORMAT = re.compile(r"<intent>(" + "|".join(LABELS) + r")</intent>(.*)", re.DOTALL)


@pytest.fixture(scope="module")
def articles_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("lookup") / "articles.yaml"
    path.write_text("".join(f"{k}: \"{v}\"\n" for k, v in ARTICLES.items()))
    return path


@pytest.fixture(scope="module")
def decoding(articles_file) -> DecodingConfig:
    return DecodingConfig(prefill="<intent>", constrain_labels=True, free_reply=True, reply_min_tokens=2,
                          lookup=str(articles_file), lookup_template=TEMPLATE)


@pytest.fixture(scope="module")
def tiny(tiny_model_dir):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    torch.manual_seed(0)
    return AutoModelForCausalLM.from_pretrained(tiny_model_dir), AutoTokenizer.from_pretrained(tiny_model_dir)


def _article_ids(tok, label: str) -> list[int]:
    return tok.encode(TEMPLATE.replace("{article}", ARTICLES[label]), add_special_tokens=False)


def _heads(tok) -> dict[str, list[int]]:
    return dict(zip(LABELS, label_token_ids(tok, LABELS, "<intent>", "</intent>"), strict=True))


def _label_of(tok, ids: list[int]) -> str:
    return next(label for label, head in _heads(tok).items() if ids[:len(head)] == head)


def test_trie_forces_the_article_after_each_head_and_locates_it(tiny, decoding):
    _, tok = tiny
    trie = build_trie(tok, LABELS, decoding)
    reply = tok.encode(" Sure, what is the order number?", add_special_tokens=False)
    for label, head in _heads(tok).items():
        article = _article_ids(tok, label)
        ids = head + article + reply
        assert trie.lookup_span(ids) == (len(head), len(head) + len(article))
        assert trie.strip_lookup(ids) == head + reply
        assert trie.lookup_mask(ids) == [1] * len(head) + [0] * len(article) + [1] * len(reply)
        assert all(trie.is_forced(ids[:k]) for k in range(len(head), len(head) + len(article)))
        assert trie.tail(head + article) == 0 and trie.tail(ids) == len(reply)  # the reply budget excludes it
        assert trie.tail(head + article[:-1]) is None  # still inside the lookup: not released
        assert trie.lookup_span(head[:-1]) is None  # the head is not complete yet: nothing looked up
        part = head + article[:3]  # cut inside the lookup (generation limit): the span ends with the row
        assert trie.lookup_span(part) == (len(head), len(part)) and trie.strip_lookup(part) == head


def test_every_sampler_fetches_the_article_of_the_label_it_chose(tiny, decoding):
    model, tok = tiny
    trie = build_trie(tok, LABELS, decoding)
    rows = [prompt_ids(tok, m, decoding) for m in MESSAGES]
    eos = eos_token_ids(model, tok)
    chunked = generate_ids(model, rows, max_new_tokens=60, eos_token_ids=eos, pad_token_id=tok.pad_token_id,
                           trie=trie, sampling=Sampling(temperature=1.5, n=4, seed=1))
    width = max(map(len, rows))
    input_ids = torch.tensor([[tok.pad_token_id] * (width - len(r)) + r for r in rows] * 2)
    mask = torch.tensor([[0] * (width - len(r)) + [1] * len(r) for r in rows] * 2)
    torch.manual_seed(1)
    hf = model.generate(input_ids=input_ids, attention_mask=mask, do_sample=True, temperature=1.5,
                        max_new_tokens=60, pad_token_id=tok.pad_token_id,
                        logits_processor=[TrieLogitsProcessor(trie, width, tok.pad_token_id)])[:, width:].tolist()
    outs = chunked + hf
    chosen = {_label_of(tok, ids) for ids in outs}
    assert len(chosen) > 1  # a random model picks several labels: each fetches its own article
    for ids in outs:
        label = _label_of(tok, ids)
        head = _heads(tok)[label]
        assert ids[len(head):len(head) + len(_article_ids(tok, label))] == _article_ids(tok, label)


def test_returned_texts_hold_what_the_model_wrote_not_the_article(tiny, decoding):
    model, tok = tiny
    texts = generate(model, tok, MESSAGES, decoding, LABELS, max_new_tokens=60,
                     sampling=Sampling(temperature=1.2, n=3, seed=0))
    for text in texts:
        m = FORMAT.fullmatch(text)
        assert m, text
        assert "Article:" not in text and all(a not in text for a in ARTICLES.values())
        assert m.group(2).strip()  # a reply follows (reply_min_tokens 2)


def tiny_lora_rows(tiny_model_dir):
    """(tokenizer, the tiny model with a LoRA r4 adapter, 8 prompt rows over LABELS), seeded."""
    from datasets import Dataset
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    torch.manual_seed(0)
    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    model = get_peft_model(AutoModelForCausalLM.from_pretrained(tiny_model_dir),
                           LoraConfig(r=4, lora_alpha=8, target_modules="all-linear", task_type="CAUSAL_LM"))
    data = Dataset.from_list([{"prompt": [{"role": "user", "content": f"question {i}"}], "intent": LABELS[i % 4]}
                              for i in range(8)])
    return tok, model, data


def lookup_trainer(tiny_model_dir, tmp_path, decoding, signal, reward, max_completion_length=48):
    """A one-step SignalGRPOTrainer on the tiny model: 8 prompts over LABELS, groups of 4, LoRA r4, `reward` the
    only reward function."""
    from trl import GRPOConfig

    from rlft.grpo import SignalGRPOTrainer

    tok, model, data = tiny_lora_rows(tiny_model_dir)
    args = GRPOConfig(output_dir=str(tmp_path / "out"), per_device_train_batch_size=16, num_generations=4,
                      max_completion_length=max_completion_length, max_steps=1, learning_rate=1e-3, beta=0.0,
                      report_to=[], save_strategy="no", use_cpu=True, seed=0, loss_type="dapo", temperature=1.3)
    trainer = SignalGRPOTrainer(model=model, reward_funcs=[reward], args=args, train_dataset=data,
                                processing_class=tok, labels=LABELS, decoding=decoding, signal=signal)
    return trainer, tok, data


def test_looked_up_tokens_get_no_gradient_and_are_never_scored_or_counted(tiny_model_dir, tmp_path, decoding):
    from rlft.recipe.sections import SignalConfig

    seen: list[str] = []

    def spread(prompts, completions, **kwargs):  # alternating 0/1 in every group: a non-zero advantage everywhere
        seen.extend(c[0]["content"] for c in completions)
        return [float(i % 2) for i in range(len(completions))]

    trainer, tok, data = lookup_trainer(tiny_model_dir, tmp_path, decoding,
                                        SignalConfig(segment_credit={"reply": ["spread"]}), spread)
    trainer.model.train()
    batch = trainer._generate_and_score_completions([dict(data[i]) for i in range(4) for _ in range(4)])
    mask = batch["completion_mask"].bool()
    rows = [ids[m].tolist() for ids, m in zip(batch["completion_ids"], mask, strict=True)]
    looked_up = torch.zeros_like(mask)
    for r, ids in enumerate(rows):
        start, end = trainer.trie.lookup_span(ids)
        assert ids[start:end] == _article_ids(tok, _label_of(tok, ids))[:end - start]
        looked_up[r, start:end] = True
    assert looked_up.any()
    assert torch.equal(batch["tool_mask"].bool() & mask, mask & ~looked_up)  # the loss mask drops exactly them

    from tests.test_segment_credit import _logp_grad

    grad = _logp_grad(trainer, batch)
    assert grad[looked_up].abs().max().item() == 0.0  # no gradient reaches a looked-up token
    assert grad[mask & ~looked_up].abs().max().item() > 0  # the head and the reply still learn

    assert len(seen) == 16 and all(FORMAT.fullmatch(text) for text in seen)  # rewards saw head + reply ...
    assert not any(a in text for text in seen for a in ARTICLES.values())  # ... never the article
    generated = [len(ids) - (trainer.trie.lookup_span(ids)[1] - trainer.trie.lookup_span(ids)[0]) for ids in rows]
    logged = trainer._metrics["train"]["completions/mean_length"][-1]
    assert logged == pytest.approx(sum(generated) / len(generated))  # lengths count generated tokens only
    heads = [len(_heads(tok)[_label_of(tok, ids)]) for ids in rows]  # segment credit: the reply excludes it too
    assert trainer._metrics["train"]["segment/head_tokens"][-1] == pytest.approx(sum(heads) / len(rows))
    assert trainer._metrics["train"]["segment/reply_tokens"][-1] == pytest.approx(
        sum(g - h for g, h in zip(generated, heads, strict=True)) / len(rows))


def test_regex_carries_each_labels_article(tiny, decoding):
    _, tok = tiny
    regex = structured_output_regex(LABELS, decoding)
    for label in LABELS:
        text = label + "</intent>" + TEMPLATE.replace("{article}", ARTICLES[label]) + " Any reply."
        assert re.fullmatch(regex, text)
    wrong = "review</intent>" + TEMPLATE.replace("{article}", ARTICLES["get_refund"]) + " reply"
    assert not re.fullmatch(regex, wrong)  # a head can only fetch its own article


def test_lookup_recipe_errors_are_one_line(tiny, tmp_path, articles_file):
    from rlft.recipe.sections import Recipe, RewardSpec
    from rlft.recipe.validate import _validate_sections

    _, tok = tiny
    for kwargs, message in [
        (dict(constrain_labels=True, lookup="x.yaml"), "decoding.lookup: needs decoding.free_reply: true"),
        (dict(constrain_labels=True, free_reply=True, lookup="x.yaml", lookup_template="Article:"),
         "decoding.lookup_template: expected text containing {article}, got 'Article:'")]:
        with pytest.raises(RecipeError) as err:
            DecodingConfig(**kwargs)
        assert str(err.value).startswith(message) and "\n" not in str(err.value)
    partial = tmp_path / "partial.yaml"
    partial.write_text("review: Reviews go live within a day.\n")
    with pytest.raises(RecipeError) as err:
        build_trie(tok, LABELS, DecodingConfig(prefill="<intent>", constrain_labels=True, free_reply=True,
                                               lookup=str(partial)))
    assert str(err.value) == f"decoding.lookup: {partial} has no text for label 'cancel_order' (and no default:)"
    free = DecodingConfig(prefill="<intent>", constrain_labels=True, free_reply=True, lookup=str(articles_file))
    for settings, message in [
        (dict(algorithm="ppo"), "decoding.lookup: not with algorithm ppo (its rollouts would train on the "
                                "looked-up text); use grpo"),
        (dict(trainer={"use_vllm": True}), "decoding.lookup: not with trainer.use_vllm (vLLM picks the looked-up "
                                           "text's tokens itself, so they cannot be kept out of the loss; serve "
                                           "with vLLM, train with the transformers sampler)")]:
        with pytest.raises(RecipeError) as err:
            _validate_sections(Recipe(rewards=[RewardSpec("intent")], decoding=free, **settings))
        assert str(err.value) == f"recipe: {message}"
    _validate_sections(Recipe(rewards=[RewardSpec("intent")], decoding=free))  # GRPO: fine


def test_shipped_lookup_recipe_shows_no_article_in_the_prompt_and_fetches_it_after_the_head(tiny):
    """The deployed prompt (system prompt + customer message) holds no article; the trie holds all 27."""
    import pathlib

    from rlft.recipe.load import load_recipe

    _, tok = tiny
    root = pathlib.Path(__file__).resolve().parents[1]
    recipe = load_recipe(root / "recipes" / "support_agent_bitext.yaml", [])
    assert not recipe.data.policies and "{policy}" not in recipe.data.prompt_template
    from rlft.judge.policies import Guidelines

    articles = Guidelines.from_params(None, recipe.decoding.lookup)
    labels = sorted(articles.policies)
    system = recipe.data.system_prompt.replace("{labels}", ", ".join(labels))
    prompt = [{"role": "system", "content": system}, {"role": "user", "content": "I want to cancel my order"}]
    text = tok.decode(prompt_ids(tok, prompt, recipe.decoding))
    assert not any(a[:40] in text for a in articles.policies.values())
    trie = build_trie(tok, labels, recipe.decoding)
    head = label_token_ids(tok, ["cancel_order"], "<intent>", "</intent>")[0]
    ids, node = list(head), trie.root
    for t in head:
        node = node[t]
    while len(node) == 1:  # forced: the article of the chosen label
        (t,) = node
        ids.append(t)
        node = node[t]
    assert articles.for_key("cancel_order") in tok.decode(ids) and not node  # then released into the reply


def test_handbook_baseline_prompt_is_the_whole_help_centre_verbatim():
    """recipes/support_agent_bitext_handbook.yaml (prompt engineering) shows every article, nothing per row."""
    import pathlib

    from rlft.judge.policies import Guidelines
    from rlft.recipe.load import load_recipe

    root = pathlib.Path(__file__).resolve().parents[1]
    recipe = load_recipe(root / "recipes" / "support_agent_bitext_handbook.yaml", [])
    articles = Guidelines.from_params(None, "demo:articles").policies
    assert len(articles) == 27 and not recipe.decoding.lookup and not recipe.data.policies
    for label, text in articles.items():
        assert f"- {label}: {' '.join(text.split())}" in recipe.data.system_prompt
    assert recipe.data.prompt_template == "{utterance}"
