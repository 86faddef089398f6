"""The analysis block (`decoding.analysis_max_tokens`): free reasoning, closed by `</analysis>` (forced once the
budget is spent), then the constrained head, then the free reply: trie, both samplers, segments, regex, recipe
errors, and GRPO rollouts."""

from __future__ import annotations

import re

import pytest
import torch

from rlft.recipe.sections import DecodingConfig
from rlft.decoding.constrained import Analysis, LabelTrie, TrieLogitsProcessor
from rlft.decoding.prompting import build_trie, prompt_ids, structured_output_regex
from rlft.errors import RecipeError
from rlft.decoding.generation import Sampling, eos_token_ids, generate, generate_ids

LABELS = ["cancel_order", "change_order", "track_order", "track_refund", "get_refund", "review"]
THINK = DecodingConfig(prefill="<analysis>", constrain_labels=True, free_reply=True, analysis_max_tokens=6,
                       label_prefix="<intent>")
FORMAT = re.compile(r"<analysis>(.*?)</analysis><intent>(" + "|".join(LABELS) + r")</intent>(.*)", re.DOTALL)
MESSAGES = [[{"role": "user", "content": t}] for t in ("where is my parcel", "refund please", "cancel it", "hi")]


@pytest.fixture(scope="module")
def tiny(tiny_model_dir):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    torch.manual_seed(0)
    return AutoModelForCausalLM.from_pretrained(tiny_model_dir), AutoTokenizer.from_pretrained(tiny_model_dir)


def _words_trie(max_tokens: int = 3) -> LabelTrie:
    """Token t decodes to 'w<t> '; the close is token 50 then 51 ('w50 w51 ')."""
    analysis = Analysis(max_tokens, "w50 w51 ", (50, 51), lambda ids: "".join(f"w{t} " for t in ids))
    return LabelTrie([[1, 2], [3]], eos_token_id=0, release=True, analysis=analysis)


def test_trie_finds_the_close_the_model_wrote_or_forces_it_after_the_budget():
    trie = _words_trie()
    assert trie.analysis_end([7, 8]) is None and trie.analysis_forced([7, 8]) is None
    assert trie.analysis_end([7, 50, 51]) == 3  # written by the model, inside the budget
    assert trie.analysis_end([7, 50, 51, 3, 9]) == 3
    assert trie.analysis_forced([7, 8, 9]) == 50 and trie.analysis_forced([7, 8, 9, 50]) == 51  # budget spent
    assert trie.analysis_end([7, 8, 9, 50, 51]) == 5
    # the head's lookups start after the block
    assert sorted(trie.allowed([7, 50, 51])) == [1, 3] and trie.allowed([7, 8]) is None
    assert trie.tail([7, 50, 51, 1]) is None and trie.tail([7, 50, 51, 1, 2, 5]) == 1
    assert trie.tail([7, 8]) is None  # inside the block is inside the head
    assert not trie.is_forced([7]) and trie.is_forced([7, 8, 9]) and trie.is_forced([7, 50, 51, 1])
    assert not trie.is_forced([7, 50, 51])  # the label is a choice


def test_processor_masks_eos_in_the_block_then_forces_the_close_then_the_head():
    proc = TrieLogitsProcessor(_words_trie(), prompt_length=1, pad_token_id=9)
    rows = [[4, 7, 8], [4, 7, 8, 9], [4, 7, 8, 9, 50], [4, 50, 51]]
    finite = torch.cat([torch.isfinite(proc(torch.tensor([r]), torch.zeros(1, 60))) for r in rows])
    assert not finite[0, 0] and finite[0, 1:].all()  # free, but no EOS
    assert finite[1].nonzero().flatten().tolist() == [50]
    assert finite[2].nonzero().flatten().tolist() == [51]
    assert finite[3].nonzero().flatten().tolist() == [1, 3]  # the head's first tokens


def _check_format(texts: list[str]) -> list[tuple[str, str, str]]:
    parts = []
    for text in texts:
        m = FORMAT.fullmatch(text)
        assert m, text
        parts.append(m.groups())
    return parts


def test_generate_yields_analysis_then_valid_head_then_free_reply(tiny):
    model, tok = tiny
    greedy = generate(model, tok, MESSAGES, THINK, LABELS, max_new_tokens=40)
    sampled = generate(model, tok, MESSAGES, THINK, LABELS, max_new_tokens=40,
                       sampling=Sampling(temperature=1.5, n=4, seed=3))
    parts = _check_format(greedy + sampled)
    assert all(thought.strip() for thought, _, _ in parts)  # a random model never closes early: budget spent
    assert len({label for _, label, _ in parts}) > 1
    assert sum(bool(reply) for _, _, reply in parts) >= len(parts) - 1
    # the full constraint ends right after the head
    full = DecodingConfig(prefill="<analysis>", constrain_labels=True, analysis_max_tokens=6, label_prefix="<intent>")
    for text in generate(model, tok, MESSAGES, full, LABELS, max_new_tokens=40):
        assert FORMAT.fullmatch(text) and text.endswith("</intent>"), text


def test_eos_cannot_end_the_block(tiny):
    """A model that wants to stop at once still writes the block, its close and a head."""
    model, tok = tiny
    with torch.no_grad():
        model.lm_head.bias = torch.nn.Parameter(torch.zeros(model.config.vocab_size))
        model.lm_head.bias[tok.eos_token_id] = 1e4
    try:
        texts = generate(model, tok, MESSAGES, THINK, LABELS, max_new_tokens=40)
    finally:
        del model.lm_head.bias
        model.lm_head.register_parameter("bias", None)
    assert all(reply == "" and thought for thought, _, reply in _check_format(texts))  # EOS right after the head


def test_a_close_written_inside_the_budget_starts_the_head_there(tiny):
    model, tok = tiny
    close = tok.encode("</analysis>", add_special_tokens=False)
    trie = build_trie(tok, LABELS, THINK)
    row = tok.encode(" checking", add_special_tokens=False) + close
    assert trie.analysis_end(row) == len(row) and trie.analysis_end(row[:-1]) is None
    assert sorted(trie.allowed(row)) == sorted({ids[0] for ids in (tok.encode("<intent>" + x + "</intent>",
                                                                               add_special_tokens=False)
                                                                    for x in LABELS)})


def test_hf_generate_and_shared_prefix_sampling_obey_the_block(tiny):
    """The GRPO / PPO samplers (HF generate + processor, shared-prefix + processor) produce the same format."""
    from rlft.decoding.shared_prefix import sample_shared_prefix

    model, tok = tiny
    trie = build_trie(tok, LABELS, THINK)
    rows = [prompt_ids(tok, m, THINK) for m in MESSAGES] * 2
    torch.manual_seed(2)
    shared = sample_shared_prefix(model, rows, max_new_tokens=40, eos_token_ids=[tok.eos_token_id],
                                  pad_token_id=tok.pad_token_id, temperature=1.2,
                                  logits_processor=TrieLogitsProcessor(trie, 0, tok.pad_token_id))
    width = max(map(len, rows))
    input_ids = torch.tensor([[tok.pad_token_id] * (width - len(r)) + r for r in rows])
    mask = torch.tensor([[0] * (width - len(r)) + [1] * len(r) for r in rows])
    hf = model.generate(input_ids=input_ids, attention_mask=mask, do_sample=True, temperature=1.2,
                        max_new_tokens=40, pad_token_id=tok.pad_token_id,
                        logits_processor=[TrieLogitsProcessor(trie, width, tok.pad_token_id)])
    outs = list(shared) + hf[:, width:].tolist()
    _check_format(["<analysis>" + tok.decode(o, skip_special_tokens=True) for o in outs])
    assert all(trie.tail(o) is not None for o in outs)


def test_segments_count_the_block_as_head(tiny):
    from rlft.grpo.segments import head_lengths

    model, tok = tiny
    trie = build_trie(tok, LABELS, THINK)
    kw = {"max_new_tokens": 40, "eos_token_ids": eos_token_ids(model, tok), "pad_token_id": tok.pad_token_id}
    out = generate_ids(model, [prompt_ids(tok, m, THINK) for m in MESSAGES], trie=trie, **kw)
    lengths, closed = head_lengths(out, trie, tok, THINK.label_suffix)
    assert all(closed)
    close = len(tok.encode("</analysis>", add_special_tokens=False))
    assert all(THINK.analysis_max_tokens < trie.analysis_end(ids) <= THINK.analysis_max_tokens + close for ids in out)
    for ids, n in zip(out, lengths, strict=True):
        head = tok.decode(ids[:n], skip_special_tokens=True)
        assert head.endswith("</intent>") and "</analysis><intent>" in head, head


def test_regex_puts_a_bounded_block_before_the_head():
    rx = structured_output_regex(LABELS, THINK)
    assert rx.startswith("[^<]{0,48}</analysis><intent>(?:")
    assert re.fullmatch(rx, " the customer asks where the parcel is</analysis><intent>track_order</intent> Hi.")
    assert not re.fullmatch(rx, " hmm</analysis><intent>lost_parcel</intent> Hi.")
    assert not re.fullmatch(rx, " a <b> tag</analysis><intent>review</intent>")  # '<' only starts the close
    assert not re.fullmatch(rx, "x" * 49 + "</analysis><intent>review</intent>")


@pytest.mark.parametrize("kwargs, message", [
    ({"analysis_max_tokens": 4}, "decoding.analysis_max_tokens: needs decoding.constrain_labels: true"),
    ({"analysis_max_tokens": -1}, "decoding.analysis_max_tokens: expected >= 0, got -1"),
    ({"constrain_labels": True, "analysis_max_tokens": 4, "analysis_close": ""},
     "decoding.analysis_close: expected a non-empty closing text"),
    ({"constrain_labels": True, "label_prefix": "<intent>"},
     "decoding.label_prefix: only applies with decoding.analysis_max_tokens > 0"),
])
def test_decoding_errors_are_one_line(kwargs, message):
    with pytest.raises(RecipeError) as info:
        DecodingConfig(**kwargs)
    assert str(info.value).startswith(message) and "\n" not in str(info.value)


def test_exact_objectives_refuse_the_block():
    from rlft.recipe.sections import Recipe, RewardSpec, SignalConfig
    from rlft.recipe.validate import _validate_sections

    rewards = [RewardSpec("intent")]
    cases = [(dict(signal=SignalConfig(exact_head=["intent"])),
              "signal.exact_head: does not support decoding.analysis_max_tokens (the exact objective scores each "
              "label right after the prompt; an analysis block would have to be sampled)"),
             (dict(algorithm="label_pg"),
              "decoding.analysis_max_tokens: does not apply to algorithm label_pg (it scores each label right after "
              "the prompt; an analysis block would have to be sampled: use grpo)")]
    for settings, message in cases:
        with pytest.raises(RecipeError) as err:
            _validate_sections(Recipe(rewards=rewards, decoding=THINK, **settings))
        assert str(err.value) == f"recipe: {message}"
    _validate_sections(Recipe(rewards=rewards, decoding=THINK))  # GRPO samples the block: fine


def test_support_agent_recipe_with_an_analysis_block_trains(tiny_model_dir, write_recipe, tmp_path):
    """GRPO rollouts and evaluation decode the block; segment credit counts it as head."""
    import pathlib

    import rlft

    base = pathlib.Path(__file__).resolve().parents[1] / "recipes" / "support_agent.yaml"
    recipe = write_recipe(f"""extends: {base}
output_dir: {tmp_path / "run"}
model: {{name: {tiny_model_dir}}}
adapter: {{type: lora, r: 4, alpha: 8}}
data: {{demo_size: 40}}
decoding: {{prefill: "<analysis>", analysis_max_tokens: 4, label_prefix: "<intent>"}}
signal: {{segment_credit: {{head: [intent], reply: [rubric]}}}}
trainer: {{max_steps: 2, per_device_train_batch_size: 8, num_generations: 4, max_completion_length: 28,
          logging_steps: 1}}
evaluation: {{before: false, after: true, max_samples: 4, max_new_tokens: 28}}
""", name="analysis.yaml")
    result = rlft.train(recipe)
    assert result.metrics["global_step"] == 2
    logs = [h for h in result.metrics["log_history"] if "segment/head_tokens" in h]
    assert len(logs) == 2
    assert all(h["segment/frac_unclosed_head"] == 0.0 and h["segment/head_tokens"] > 4 + 3 for h in logs)
    samples = result.metrics["eval_after_samples"]
    assert samples and all(FORMAT.fullmatch(s["completion"]) for s in samples)
    assert result.metrics["eval_after"]["format_rate"] == 1.0
