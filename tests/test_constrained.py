"""Label-constrained decoding: only allowed labels come out, the trie and the regex agree."""

from __future__ import annotations

import re

import pytest
import torch

from rlft.decoding.constrained import LabelTrie, label_regex, label_token_ids, processor_factory
from rlft.evaluation.held_out import generate, intent_metrics

LABELS = ["cancel_order", "change_order", "track_order", "track_refund", "get_refund", "check_invoice",
          "contact_human_agent", "contact_customer_service", "review"]


@pytest.fixture(scope="module")
def tiny(tiny_model_dir):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    torch.manual_seed(0)
    return AutoModelForCausalLM.from_pretrained(tiny_model_dir), AutoTokenizer.from_pretrained(tiny_model_dir)


def test_label_tokens_decode_back_to_prefill_label_suffix(tiny):
    _, tok = tiny
    prefill = tok.encode("<intent>", add_special_tokens=False)
    for label, ids in zip(LABELS, label_token_ids(tok, LABELS, "<intent>", "</intent>"), strict=True):
        assert tok.decode(prefill + ids) == f"<intent>{label}</intent>"


def test_trie_allows_prefixes_then_eos_and_rejects_strays():
    trie = LabelTrie([[1, 2, 3], [1, 4], [5]], eos_token_id=0)
    assert sorted(trie.allowed([])) == [1, 5]
    assert sorted(trie.allowed([1])) == [2, 4]
    assert trie.allowed([1, 2, 3]) == [0]
    assert trie.allowed([1, 2, 3, 0]) == []
    assert trie.allowed([9]) is None
    assert trie.is_forced([1, 2]) and not trie.is_forced([1])


def test_constrained_sampling_and_greedy_emit_only_allowed_labels(tiny):
    model, tok = tiny
    messages = [[{"role": "user", "content": text}] for text in ("where is my parcel", "refund please", "hi")]
    factory = processor_factory(tok, LABELS, "<intent>", "</intent>")
    greedy = generate(model, tok, messages, max_new_tokens=20, prefill="<intent>", logits_processor_factory=factory)
    texts = [tok.apply_chat_template(m, tokenize=False, add_generation_prompt=True) + "<intent>" for m in messages]
    tok.padding_side = "left"
    enc = tok(texts * 8, return_tensors="pt", padding=True, add_special_tokens=False)
    torch.manual_seed(1)
    out = model.generate(**enc, do_sample=True, temperature=1.5, max_new_tokens=20, pad_token_id=tok.pad_token_id,
                         logits_processor=[factory(enc["input_ids"].shape[1])])
    sampled = ["<intent>" + t for t in tok.batch_decode(out[:, enc["input_ids"].shape[1]:], skip_special_tokens=True)]
    allowed = {f"<intent>{x}</intent>" for x in LABELS}
    assert set(greedy) <= allowed
    assert set(sampled) <= allowed
    assert len(set(sampled)) > 1  # it samples among labels, not one fixed string
    metrics, _ = intent_metrics(greedy + sampled, ["review"] * (len(greedy) + len(sampled)), LABELS)
    assert metrics["format_rate"] == 1.0


def test_unconstrained_tiny_model_does_not_produce_the_format(tiny):
    model, tok = tiny
    out = generate(model, tok, [[{"role": "user", "content": "hi"}]], max_new_tokens=8, prefill="<intent>")
    assert out[0] not in {f"<intent>{x}</intent>" for x in LABELS}


def test_regex_matches_exactly_the_allowed_completions():
    pattern = re.compile(label_regex(LABELS, suffix="</intent>"))
    for label in LABELS:
        assert pattern.fullmatch(f"{label}</intent>")
    assert not pattern.fullmatch("track</intent>")
    assert not pattern.fullmatch("track_order")
    assert label_regex(["a.b", "a"], prefill="<intent>") == "<intent>(?:a\\.b|a)"


def test_empty_label_set_is_rejected(tiny):
    _, tok = tiny
    with pytest.raises(ValueError, match="at least one label"):
        label_token_ids(tok, [], "<intent>")
    with pytest.raises(ValueError, match="at least one label"):
        label_regex([])
