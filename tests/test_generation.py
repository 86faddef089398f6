"""The one generate loop (`rlft.decoding.generation`): same greedy output as the old HF `generate` loop, same prompt ids as
every other loop and TRL, forced trie tokens cost no model call, seeded sampling, stop after the label suffix."""

from __future__ import annotations

import types

import pytest
import torch

from benchmarks.eval_speed import old_generate
from rlft.recipe.sections import DecodingConfig
from rlft.decoding.constrained import processor_factory
from rlft.decoding.prompting import prefill_ids, prompt_ids
from rlft.evaluation.held_out import generate, generate_with
from rlft.decoding.generation import Sampling, common_prefix_length
from rlft.decoding.generation import generate as new_generate
from rlft.data.labeling.sample import SamplingConfig, batch_seed, sample_batch

LABELS = ["cancel_order", "change_order", "track_order", "track_refund", "get_refund", "check_invoice",
          "contact_human_agent", "contact_customer_service", "review"]
WORDS = "where is my parcel refund please cancel the order now I want to talk to a human agent thanks".split()
PROMPTS = [[{"role": "system", "content": "Classify."},
            {"role": "user", "content": " ".join(WORDS[i % 7:i % 7 + 2 + i % 9])}] for i in range(24)]


@pytest.fixture(scope="module")
def tiny(tiny_model_dir):
    """The tiny Llama re-initialised with larger weights, so greedy outputs differ from prompt to prompt."""
    from transformers import AutoConfig, AutoTokenizer, LlamaForCausalLM

    config = AutoConfig.from_pretrained(tiny_model_dir)
    config.initializer_range = 0.1
    torch.manual_seed(0)
    return LlamaForCausalLM(config).eval(), AutoTokenizer.from_pretrained(tiny_model_dir)


@pytest.mark.parametrize("constrained", [True, False], ids=["trie", "free"])
@pytest.mark.parametrize("batch_size", [5, 32])
def test_greedy_equals_the_old_generate_loop(tiny, constrained, batch_size):
    model, tok = tiny
    factory = processor_factory(tok, LABELS, "<intent>", "</intent>") if constrained else None
    old = old_generate(model, tok, PROMPTS, 12, 16, "<intent>", factory)
    new = generate(model, tok, PROMPTS, 12, batch_size, "<intent>", factory)
    assert new == old
    assert len(set(old)) >= 5  # the comparison means something: outputs differ between prompts
    decoding = DecodingConfig(prefill="<intent>", constrain_labels=constrained)
    assert generate_with(model, tok, PROMPTS, decoding, LABELS, max_new_tokens=12, batch_size=batch_size) == old


def test_prompt_ids_are_the_same_in_evaluation_labelling_decoding_and_trl(tiny, monkeypatch):
    from trl import GRPOTrainer

    import rlft.decoding.generation

    model, tok = tiny
    seen: list[list[list[int]]] = []
    real = rlft.decoding.generation.generate_ids

    def spy(model, ids, **kwargs):
        seen.append([list(x) for x in ids])
        return real(model, ids, **kwargs)

    monkeypatch.setattr(rlft.decoding.generation, "generate_ids", spy)
    decoding = DecodingConfig(prefill="<intent>")
    prompts = PROMPTS[:4]
    generate(model, tok, prompts, 2, 16, "<intent>")
    generate_with(model, tok, prompts, decoding, max_new_tokens=2)
    sample_batch(model, tok, prompts, SamplingConfig(n=1, temperature=0, max_new_tokens=2, prefill="<intent>"), 0)
    expected = [prompt_ids(tok, p, decoding) for p in prompts]
    trl_self = types.SimpleNamespace(processing_class=tok, _is_vlm=False, environment_factories=None, tools=None,
                                     chat_template=None, chat_template_kwargs={})
    trl_ids = GRPOTrainer._tokenize_prompts(trl_self, prompts)[0]
    assert seen == [expected, expected, expected]
    assert expected == [list(ids) + prefill_ids(tok, decoding) for ids in trl_ids]


def test_forced_trie_tokens_need_no_model_call(tiny):
    model, tok = tiny
    labels = ["review", "track_order"]  # differ at their first token: after it the whole path is forced
    calls = []
    handle = model.register_forward_hook(lambda module, args, kwargs_out: calls.append(1))
    try:
        out = generate_with(model, tok, PROMPTS[:6], DecodingConfig(prefill="<intent>", constrain_labels=True),
                            labels, max_new_tokens=20)
    finally:
        handle.remove()
    assert set(out) <= {"<intent>review</intent>", "<intent>track_order</intent>"}
    assert len(calls) == 2  # the shared system-prompt prefix once, the batch's prompts once; no decode steps


def test_common_prefix_keeps_one_token_per_row():
    assert common_prefix_length([[1, 2, 3, 4], [1, 2, 3, 5], [1, 2, 3, 4, 6]]) == 3
    assert common_prefix_length([[1, 2], [1, 2, 3]]) == 1
    assert common_prefix_length([[7], [7]]) == 0


def test_seeded_sampling_repeats_and_stays_in_the_label_set(tiny):
    model, tok = tiny
    decoding = DecodingConfig(prefill="<intent>", constrain_labels=True)
    run = lambda seed: new_generate(model, tok, PROMPTS[:4], decoding, LABELS, max_new_tokens=20,  # noqa: E731
                                    sampling=Sampling(temperature=1.5, n=3, seed=seed))
    first = run(1)
    assert len(first) == 12 and first == run(1) and first != run(2)
    assert set(first) <= {f"<intent>{x}</intent>" for x in LABELS}
    assert len(set(first)) > 1


def test_labelling_samples_through_the_same_loop(tiny):
    model, tok = tiny
    cfg = SamplingConfig(n=2, temperature=1.0, top_k=50, max_new_tokens=6, prefill="<intent>", seed=3)
    got = sample_batch(model, tok, PROMPTS[:3], cfg, batch_index=4)
    flat = new_generate(model, tok, PROMPTS[:3], DecodingConfig(prefill="<intent>"), max_new_tokens=6,
                        batch_size=3, sampling=Sampling(temperature=1.0, top_k=50, n=2, seed=batch_seed(3, 4)))
    assert got == [flat[0:2], flat[2:4], flat[4:6]]
    assert got == sample_batch(model, tok, PROMPTS[:3], cfg, batch_index=4)  # a resumed batch repeats itself


def test_stop_at_suffix_ends_the_reply_right_after_it(tiny):
    model, tok = tiny
    free = generate(model, tok, PROMPTS[:1], 12, 16, "<intent>")[0]
    suffix = free[len("<intent>"):][3:9]  # a piece of what the model writes anyway
    decoding = DecodingConfig(prefill="<intent>", stop_at_suffix=True, label_suffix=suffix)
    cut = generate_with(model, tok, PROMPTS[:1], decoding, max_new_tokens=12)[0]
    assert suffix in cut and free.startswith(cut) and len(cut) < len(free)
    assert suffix not in tok.decode(tok.encode(cut, add_special_tokens=False)[:-1])
