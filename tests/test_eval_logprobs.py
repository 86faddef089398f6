"""`completion_logprobs` (the KL canary of `rlft eval`): exact per-token log-probs under a logits memory budget."""

import pytest

from rlft.evaluation.eval_models import completion_logprobs
from rlft.recipe.sections import DecodingConfig

SYSTEM = ("You are the shop's customer-support agent. Reply with the intent of the customer's message as "
          "<intent>label</intent>, then answer in one to three sentences using the help-centre article's facts. "
          "Allowed intents: cancel_order, track_order, get_refund, change_shipping_address.")
PROMPTS = [[{"role": "system", "content": SYSTEM}, {"role": "user", "content": u}]
           for u in ("hi", "please cancel my order straight away, it was placed by mistake", "where is it", "refund",
                     "I would like to change the shipping address on my last order please")]
COMPLETIONS = ["cancel_order</intent> Sure.", "cancel_order</intent> Done, it is cancelled now.", "",
               "get_refund</intent>", "track_order</intent> It ships tomorrow; what is your order number?"]


@pytest.fixture(scope="module")
def model_and_tokenizer(tiny_model_dir):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    torch.manual_seed(0)
    return AutoModelForCausalLM.from_pretrained(tiny_model_dir), AutoTokenizer.from_pretrained(tiny_model_dir)


def reference(model, tokenizer, decoding):
    """One row at a time, the full logits of an unpadded sequence."""
    import torch

    from rlft.decoding.prompting import prompt_ids

    out = []
    for p, c in zip(PROMPTS, COMPLETIONS, strict=True):
        head = prompt_ids(tokenizer, p, decoding)
        tail = tokenizer(c, add_special_tokens=False)["input_ids"]  # COMPLETIONS come without the prefill
        with torch.no_grad():
            logps = torch.log_softmax(model(input_ids=torch.tensor([head + tail])).logits[0], dim=-1)
        out.append([float(logps[len(head) - 1 + k, t]) for k, t in enumerate(tail)])
    return out


@pytest.mark.parametrize("logits_bytes", [1, 10**12], ids=["one row per forward", "all rows in one forward"])
def test_logprobs_match_an_unbatched_full_forward(model_and_tokenizer, logits_bytes):
    model, tokenizer = model_and_tokenizer
    decoding = DecodingConfig(prefill="<intent>")
    completions = ["<intent>" + c for c in COMPLETIONS]
    got = completion_logprobs(model, tokenizer, PROMPTS, completions, decoding, batch_size=4,
                              logits_bytes=logits_bytes)
    want = reference(model, tokenizer, decoding)
    assert [len(g) for g in got] == [len(w) for w in want]
    assert got[2] == []  # an empty completion has no tokens to score
    for g, w in zip(got, want, strict=True):
        assert g == pytest.approx(w, abs=1e-4)


def test_a_forward_keeps_logits_within_the_budget(model_and_tokenizer):
    """The budget bounds what one forward keeps: rows x positions from the earliest completion start x vocabulary."""
    from rlft.decoding.prompting import prompt_ids

    model, tokenizer = model_and_tokenizer
    decoding = DecodingConfig(prefill="<intent>")
    shortest_prompt = min(len(prompt_ids(tokenizer, p, decoding)) for p in PROMPTS)
    vocab = model.get_output_embeddings().weight.shape[0]
    kept: list[tuple[int, int]] = []
    hook = model.lm_head.register_forward_hook(lambda _m, _i, out: kept.append(tuple(out.shape[:2])))
    try:
        budget = 2 * 40 * vocab * 4  # two rows of 40 kept positions
        completion_logprobs(model, tokenizer, PROMPTS, ["<intent>" + c for c in COMPLETIONS], decoding,
                            batch_size=64, logits_bytes=budget)
    finally:
        hook.remove()
    assert sum(rows for rows, _ in kept) == len(PROMPTS)
    assert len(kept) > 1
    for rows, positions in kept:
        assert rows * positions * vocab * 4 <= budget or rows == 1
        assert positions < shortest_prompt  # the system prompt's positions get no logits
