"""A decoding state registered from one file of its own (tests/toy_decoding_state.py: a `State` with `end`, `step`
and `regex`, and its builder) is followed by every generate loop -- rlft.decoding.generation's chunked loop (evaluation,
labelling, lookup rollouts), HF `generate` with the constraint's processor (GRPO, PPO), shared-prefix sampling --
by the structured-outputs regex and by the forced-token mask, without touching another module."""

from __future__ import annotations

import importlib
import re

import pytest
import torch

from rlft.decoding import constraint as C
from rlft.decoding.states import label_token_ids
from rlft.recipe.sections import DecodingConfig
from rlft.decoding.prompting import build_trie, prompt_ids, structured_output_regex
from rlft.decoding.generation import Sampling, eos_token_ids, generate, generate_ids
from rlft.decoding.shared_prefix import sample_shared_prefix

LABELS = ["cancel_order", "track_order", "get_refund", "review"]
FREE = DecodingConfig(prefill="<intent>", constrain_labels=True, free_reply=True)
MESSAGES = [[{"role": "user", "content": t}] for t in ("where is my parcel", "refund please", "cancel it", "hi")]
SHAPE = re.compile(r"<intent>(" + "|".join(LABELS) + r")</intent> Confidence:([1-5])(.*)", re.DOTALL)


@pytest.fixture
def toy():
    module = importlib.import_module("tests.toy_decoding_state")
    C.register_state(module.Confidence.name, module.build, after="head")  # again, when an earlier test removed it
    yield module
    C.unregister_state(module.Confidence.name)


@pytest.fixture(scope="module")
def tiny(tiny_model_dir):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    torch.manual_seed(0)
    return AutoModelForCausalLM.from_pretrained(tiny_model_dir), AutoTokenizer.from_pretrained(tiny_model_dir)


def _head(tok, label: str) -> list[int]:
    return label_token_ids(tok, [label], "<intent>", "</intent>")[0]


def test_the_state_takes_its_place_in_the_constraint(toy, tiny):
    _, tok = tiny
    constraint = build_trie(tok, LABELS, FREE)
    assert [s.name for s in constraint.states] == ["head", "confidence", "reply"]
    prefix = tok.encode(toy.PREFIX, add_special_tokens=False)
    head = _head(tok, "review")
    assert constraint.step(head).allowed == (prefix[0],)  # forced: the model makes no decision
    assert constraint.is_forced(head) and not constraint.is_forced(head + prefix)
    digits = constraint.step(head + prefix).allowed
    assert [tok.decode([d]) for d in digits] == list("12345")  # the model's choice
    done = head + prefix + [digits[2]]
    assert constraint.tail(done) == 0 and constraint.tail(head + prefix) is None  # the reply starts after it
    assert constraint.step(done + [7]).state == "reply" and constraint.step(head + [7]).allowed == ()
    processor = constraint.processor(0, tok.pad_token_id)
    out = processor(torch.tensor([head + prefix]), torch.zeros(1, len(tok)))
    assert torch.isfinite(out[0]).nonzero().flatten().tolist() == sorted(digits)


def test_every_loop_follows_it(toy, tiny):
    model, tok = tiny
    constraint = build_trie(tok, LABELS, FREE)
    rows = [prompt_ids(tok, m, FREE) for m in MESSAGES]
    eos = eos_token_ids(model, tok)
    chunked = generate_ids(model, rows, max_new_tokens=30, eos_token_ids=eos, pad_token_id=tok.pad_token_id,
                           trie=constraint, sampling=Sampling(temperature=1.5, n=3, seed=1))
    torch.manual_seed(2)
    shared = sample_shared_prefix(model, rows * 2, max_new_tokens=30, eos_token_ids=eos,
                                  pad_token_id=tok.pad_token_id, temperature=1.5,
                                  logits_processor=constraint.processor(0, tok.pad_token_id))
    width = max(map(len, rows))
    input_ids = torch.tensor([[tok.pad_token_id] * (width - len(r)) + r for r in rows])
    mask = torch.tensor([[0] * (width - len(r)) + [1] * len(r) for r in rows])
    hf = model.generate(input_ids=input_ids, attention_mask=mask, do_sample=True, temperature=1.5, max_new_tokens=30,
                        pad_token_id=tok.pad_token_id, logits_processor=[constraint.processor(width)])
    hf = hf[:, width:].tolist()
    texts = ["<intent>" + tok.decode(ids, skip_special_tokens=True) for ids in chunked + shared + hf]
    texts += generate(model, tok, MESSAGES, FREE, LABELS, max_new_tokens=30)  # evaluation's entry point
    regex = structured_output_regex(LABELS, FREE)
    assert regex.endswith("</intent>" + re.escape(toy.PREFIX) + "[1-5][\\s\\S]*")
    for text in texts:
        assert SHAPE.fullmatch(text), text
        assert re.fullmatch(regex, text[len("<intent>"):])
    assert len({SHAPE.fullmatch(t).group(2) for t in texts}) > 1  # a choice, not a forced digit


def test_off_when_its_builder_says_so_and_gone_when_unregistered(toy, tiny):
    _, tok = tiny
    full = build_trie(tok, LABELS, DecodingConfig(prefill="<intent>", constrain_labels=True))
    assert [s.name for s in full.states] == ["head"]  # no reply: its builder returns None
    C.unregister_state(toy.Confidence.name)
    assert [s.name for s in build_trie(tok, LABELS, FREE).states] == ["head", "reply"]
    assert "Confidence" not in structured_output_regex(LABELS, FREE)


def test_a_decoding_state_without_end_or_step_is_refused_when_built():
    from rlft.decoding.states import State

    class NoStep(State):
        name = "no_step"

        def end(self, ids):  # noqa: ANN001, ANN201
            return None

    with pytest.raises(TypeError, match="abstract method"):
        NoStep()
