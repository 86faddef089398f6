"""`decoding.reply_stop`: a reply token whose text contains the stop string ends the reply (taken as EOS) in every
loop: the one generate loop (evaluation, lookup rollouts), the logits processor (HF generate, PPO, shared-prefix
sampling: the stop's probability folded into EOS), and the serving regex / request."""

from __future__ import annotations

import re

import pytest
import torch

from rlft.recipe.sections import DecodingConfig
from rlft.decoding.constrained import TrieLogitsProcessor, fold_stops_into_eos, label_regex, stop_ids
from rlft.decoding.prompting import build_trie, prompt_ids, structured_output_regex
from rlft.errors import RecipeError
from rlft.decoding.generation import eos_token_ids, generate_ids

LABELS = ["cancel_order", "track_order", "get_refund", "review"]
MESSAGES = [[{"role": "user", "content": t}] for t in ("where is my parcel", "refund please", "cancel it", "hi")]


@pytest.fixture(scope="module")
def tiny(tiny_model_dir):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    torch.manual_seed(0)
    return AutoModelForCausalLM.from_pretrained(tiny_model_dir), AutoTokenizer.from_pretrained(tiny_model_dir)


def _decode(model, tok, decoding, n_tokens=24):
    trie = build_trie(tok, LABELS, decoding)
    ids = [prompt_ids(tok, m, decoding) for m in MESSAGES]
    out = generate_ids(model, ids, max_new_tokens=n_tokens, eos_token_ids=eos_token_ids(model, tok),
                       pad_token_id=tok.pad_token_id or 0, trie=trie)
    return trie, out


def test_a_stop_token_in_the_reply_ends_it_with_eos_and_nothing_else_changes(tiny):
    model, tok = tiny
    plain = DecodingConfig(prefill="<intent>", constrain_labels=True, free_reply=True)
    trie, free = _decode(model, tok, plain)
    # the stop string is the text of a token the unstopped greedy reply picked
    row = next(r for r in free if (trie.tail(r) or 0) >= 3)
    start = len(row) - trie.tail(row)
    stop_tok = row[start + 1]
    text = tok.decode([stop_tok])
    assert text.strip(), "the tiny model picked a blank token; choose another position"
    stopped = DecodingConfig(prefill="<intent>", constrain_labels=True, free_reply=True, reply_stop=text)
    trie_s, cut = _decode(model, tok, stopped)
    assert stop_tok in trie_s.reply_stop_ids
    hit = 0
    for before, after in zip(free, cut, strict=True):
        reply_start = len(before) - trie.tail(before)
        first = next((k for k in range(reply_start, len(before)) if before[k] in trie_s.reply_stop_ids), None)
        if first is None:
            assert after == before  # greedy: identical until a stop token would be picked
        else:
            hit += 1
            assert after == before[:first] + [trie_s.eos_token_id]
    assert hit >= 1


def test_stop_tokens_are_masked_before_reply_min_tokens(tiny):
    _, tok = tiny
    d = DecodingConfig(prefill="<intent>", constrain_labels=True, free_reply=True, reply_min_tokens=3,
                       reply_stop="e")
    trie = build_trie(tok, LABELS, d)
    head = tok.encode("<intent>review</intent>", add_special_tokens=False)[len(tok.encode("<intent>",
                                                                                add_special_tokens=False)):]
    assert trie.tail(head) == 0
    scores = torch.zeros(1, len(tok))
    out = TrieLogitsProcessor(trie, 0)(torch.tensor([head]), scores)
    stops = sorted(trie.reply_stop_ids)
    assert torch.isinf(out[0, stops]).all() and torch.isinf(out[0, trie.eos_token_id])
    later = TrieLogitsProcessor(trie, 0)(torch.tensor([head + [tok.encode("x", add_special_tokens=False)[0]] * 3]),
                                         scores)
    assert torch.isinf(later[0, stops]).all() and later[0, trie.eos_token_id] > 0  # folded: log(1 + #stops)


def test_folding_moves_exactly_the_stop_tokens_probability_onto_eos():
    torch.manual_seed(1)
    logits = torch.randn(2, 12)
    folded = fold_stops_into_eos(logits, [3, 7], eos=5)
    p, q = logits.softmax(-1), folded.softmax(-1)
    assert torch.allclose(q[:, 5], p[:, 5] + p[:, 3] + p[:, 7])
    assert (q[:, [3, 7]] == 0).all()
    keep = [i for i in range(12) if i not in (3, 5, 7)]
    assert torch.allclose(q[:, keep], p[:, keep])


def test_stop_ids_are_every_token_containing_the_string(tiny):
    _, tok = tiny
    ids = stop_ids(tok, "\n")
    assert ids and all("\n" in tok.decode([i]) for i in ids)
    assert not any("\n" in tok.decode([i]) for i in range(len(tok)) if i not in set(ids) | set(tok.all_special_ids))
    assert not set(stop_ids(tok, "e")) & set(tok.all_special_ids)  # "<|endoftext|>" holds an e: EOS is no stop


def test_the_serving_regex_keeps_a_one_character_stop_out_of_the_reply():
    d = DecodingConfig(prefill="<intent>", constrain_labels=True, free_reply=True, reply_stop="\n")
    regex = structured_output_regex(["track_order", "review"], d)
    assert regex.endswith("</intent>[^\\n]*")
    assert re.fullmatch(regex, "track_order</intent> It is on its way.")
    assert not re.fullmatch(regex, "track_order</intent> It is on its way.\n\nHelp-centre article:")
    assert label_regex(["a"], suffix="!", free_tail=True, tail_max_chars=9, tail_without="|") == "(?:a)!" + "[^\\|]{0,9}"


def test_a_longer_stop_is_the_serving_request_stop(tiny, tmp_path):
    from rlft.run.export import serving_config
    from rlft.recipe.load import load_recipe

    path = tmp_path / "r.yaml"
    path.write_text("algorithm: grpo\noutput_dir: out\ndata: {source: demo:intents}\nrewards: [{name: intent}]\n"
                    "decoding: {prefill: '<intent>', constrain_labels: true, free_reply: true, reply_stop: \"\\n\\n\"}\n")
    recipe = load_recipe(path)
    _, tok = tiny
    record = serving_config(recipe, {"labels": LABELS}, tok, "adapter")
    assert record["structured_output_regex"].endswith("</intent>[\\s\\S]*")
    assert record["requests"]["chat_completions"]["stop"] == ["\n\n"]
    assert record["requests"]["completions"]["stop"] == ["\n\n"]


def test_reply_stop_without_free_reply_is_a_one_line_error():
    with pytest.raises(RecipeError, match=r"^decoding\.reply_stop: needs decoding\.free_reply: true \(it ends the "
                                          r"free reply after the head\)$"):
        DecodingConfig(constrain_labels=True, reply_stop="\n")
