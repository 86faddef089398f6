"""Hinted exploration (`signal.reply_hints`, rlft.grpo.hints): which rollouts get a hint, what is appended (the hint
and the policy's own continuation, inside the reply budget, ended by EOS), that the hint's tokens are trained as the
policy's while a looked-up article stays out of the loss, that rewards score the hinted reply, that evaluation never
hints, and one-line recipe errors."""

from __future__ import annotations

import pytest

from rlft.decoding.prompting import build_trie
from rlft.errors import RecipeError
from rlft.grpo.hints import extend_with_hints, hint_for, hinted_positions
from rlft.recipe.sections import DecodingConfig, SignalConfig
from tests.test_lookup import ARTICLES, LABELS, _heads, articles_file, decoding, tiny  # noqa: F401 (fixtures)

HINT = " Could you"


def test_hinted_positions_are_the_last_of_each_group():
    assert hinted_positions(16, 4, 0.25) == [3, 7, 11, 15]
    assert hinted_positions(16, 8, 0.25) == [6, 7, 14, 15]
    assert hinted_positions(8, 4, 0.01) == [3, 7]  # at least one per group
    assert hinted_positions(8, 4, 1.0) == list(range(8))
    assert hinted_positions(8, 4, 0.0) == [] and hinted_positions(8, 0, 0.5) == []
    assert hinted_positions(10, 4, 0.25) == [3, 7]  # an incomplete trailing group is left alone


def test_every_hint_is_tried_in_turn_across_groups_and_steps():
    hints = ["a", "b", "c"]
    positions = hinted_positions(24, 8, 0.375)  # 3 per group
    assert [hint_for(p, 8, hints) for p in positions[:3]] == ["c", "a", "b"]
    assert {hint_for(p, 8, hints) for p in positions[:3]} == set(hints)  # one group tries every hint
    assert [hint_for(p, 8, hints, step=1) for p in positions[:3]] == ["a", "b", "c"]  # the turn moves with the step
    assert [hint_for(p, 8, hints) for p in positions[3:6]] == ["a", "b", "c"]  # ... and with the group


def test_extend_appends_hint_and_continuation_inside_the_budget(tiny, articles_file):
    _, tok = tiny
    eos = tok.eos_token_id
    dec = DecodingConfig(prefill="<intent>", constrain_labels=True, free_reply=True, lookup=str(articles_file),
                         lookup_template="\nArticle: {article}\nAnswer:", reply_max_tokens=12, reply_stop="\n")
    trie = build_trie(tok, LABELS, dec)
    head = _heads(tok)["track_order"]
    article = tok.encode("\nArticle: " + ARTICLES["track_order"] + "\nAnswer:", add_special_tokens=False)
    reply = tok.encode(" It ships soon.", add_special_tokens=False)
    hint = tok.encode(HINT, add_special_tokens=False)
    more = tok.encode(" share the order number?", add_special_tokens=False)
    newline = next(iter(trie.reply_stop_ids))
    ended = head + article + reply + [eos]
    completions = [ended, head + article + reply,  # 1: hit the generation limit (no EOS): left alone
                   head[:2] + [eos],  # 2: the head never completed: left alone
                   head + article + tok.encode(" x" * 11, add_special_tokens=False) + [eos],  # 3: budget full
                   ended, ended]
    calls = []

    def sample(prefixes, max_new_tokens, stop):
        calls.append((prefixes, max_new_tokens))
        assert stop(more + [newline]) == len(more) and stop(more) is None  # a stop token cuts the continuation
        return [more + [eos], more + more, more[:1]]  # ended by EOS / past its budget / cut at a stop token

    prompt = [[7, 8, 9]] * 6
    out, done = extend_with_hints(completions, prompt, [0, 1, 2, 3, 4, 5], [hint], lambda p: 0, trie, [eos], 200,
                                  sample)
    assert done == [0, 4, 5]
    assert out[1:4] == completions[1:4]  # not hinted
    room = 12 - len(reply) - len(hint)
    assert calls == [([[7, 8, 9] + head + article + reply + hint] * 3, room)]
    assert out[0] == head + article + reply + hint + more + [eos]
    assert out[4] == head + article + reply + hint + (more + more)[:room] + [eos]  # the reply cap, then EOS
    assert out[5] == head + article + reply + hint + more[:1] + [eos]  # a stop token ends it as EOS does
    for ids in (out[0], out[4], out[5]):
        assert trie.lookup_span(ids) == (len(head), len(head) + len(article))
        assert len(ids) - len(head) - len(article) - 1 <= 12  # the reply (hint included) keeps its budget
    # the completion limit binds too: a 1-token room is the least a hint gets
    tight = len(ended) - 1 + len(hint) + 1 + 1
    out, done = extend_with_hints([ended], [[7]], [0], [hint], lambda p: 0, trie, [eos], tight,
                                  lambda prefixes, n, stop: [more])
    assert done == [0] and out[0] == ended[:-1] + hint + more[:1] + [eos] and len(out[0]) == tight
    out, done = extend_with_hints([ended], [[7]], [0], [hint], lambda p: 0, trie, [eos], tight - 1,
                                  lambda prefixes, n, stop: pytest.fail("no room: nothing is sampled"))
    assert done == [] and out == [ended]


def test_hinted_rollouts_train_the_hint_and_rewards_score_it(tiny_model_dir, tmp_path, decoding):
    from tests.test_lookup import lookup_trainer
    from tests.test_segment_credit import _logp_grad

    seen: list[str] = []

    def spread(prompts, completions, **kwargs):
        seen.extend(c[0]["content"] for c in completions)
        return [float(i % 2) for i in range(len(completions))]

    # a random model seldom ends a reply: a stop on any token holding "e" ends most replies within a few tokens
    dec = DecodingConfig(**{**decoding.__dict__, "reply_max_tokens": 20, "reply_stop": "e"})
    trainer, tok, data = lookup_trainer(tiny_model_dir, tmp_path, dec,
                                        SignalConfig(reply_hints=[HINT], hint_share=0.25), spread, 64)
    trainer.model.train()
    batch = trainer._generate_and_score_completions([dict(data[i]) for i in range(4) for _ in range(4)])
    mask = batch["completion_mask"].bool()
    rows = [ids[m].tolist() for ids, m in zip(batch["completion_ids"], mask, strict=True)]
    hint = tok.encode(HINT, add_special_tokens=False)
    hinted = [r for r, ids in enumerate(rows)
              if any(ids[k:k + len(hint)] == hint for k in range(trainer.trie.lookup_span(ids)[1], len(ids)))]
    logged = trainer._metrics["train"]["signal/hinted"][-1]
    assert hinted and set(hinted) <= {3, 7, 11, 15} and logged == pytest.approx(len(hinted) / 16)
    assert all(HINT in seen[r] for r in hinted)  # the rewards score the hinted reply
    assert not any(a in text for text in seen for a in ARTICLES.values())  # ... never the article
    grad = _logp_grad(trainer, batch)
    for r in hinted:
        start = next(k for k in range(trainer.trie.lookup_span(rows[r])[1], len(rows[r]))
                     if rows[r][k:k + len(hint)] == hint)
        assert batch["tool_mask"][r, start:start + len(hint)].eq(1).all()  # the hint is in the loss ...
        assert grad[r, start:start + len(hint)].abs().sum().item() > 0  # ... and gets gradient
        lo, hi = trainer.trie.lookup_span(rows[r])
        assert grad[r, lo:hi].abs().max().item() == 0.0  # the looked-up article still gets none

    trainer.model.eval()  # evaluation rollouts never get a hint
    seen.clear()
    trainer._generate_and_score_completions([dict(data[i]) for i in range(4) for _ in range(4)])
    assert not any(HINT in text for text in seen)


def test_hint_recipe_errors_are_one_line(articles_file):
    from rlft.recipe.sections import Recipe, RewardSpec
    from rlft.recipe.validate import _validate_sections

    free = DecodingConfig(prefill="<intent>", constrain_labels=True, free_reply=True, lookup=str(articles_file))
    for settings, message in [
        (dict(decoding=DecodingConfig(prefill="<intent>", constrain_labels=True), signal=SignalConfig(
            reply_hints=[HINT])), "signal.reply_hints: needs decoding.constrain_labels: true and "
                                  "decoding.free_reply: true (a hint goes after the reply the policy ended)"),
        (dict(decoding=free, signal=SignalConfig(reply_hints=[HINT, " "])),
         "signal.reply_hints[1]: expected a non-empty text, got ' '"),
        (dict(decoding=free, signal=SignalConfig(reply_hints=[HINT], hint_share=0.0)),
         "signal.hint_share: expected a number in (0, 1], got 0.0"),
        (dict(decoding=DecodingConfig(prefill="<intent>", constrain_labels=True, free_reply=True),
              signal=SignalConfig(reply_hints=[HINT]), trainer={"use_vllm": True}),
         "signal.reply_hints: not with trainer.use_vllm (the hinted continuation is sampled by the training "
         "model, and vLLM's log-probs would not cover it)"),
        (dict(algorithm="label_pg", decoding=free, signal=SignalConfig(reply_hints=[HINT])),
         "signal.reply_hints: only applies to algorithm grpo (this recipe is label_pg)")]:
        with pytest.raises(RecipeError) as err:
            _validate_sections(Recipe(rewards=[RewardSpec("intent")], **settings))
        assert str(err.value) == f"recipe: {message}" and "\n" not in str(err.value)
    _validate_sections(Recipe(rewards=[RewardSpec("intent")], decoding=free, signal=SignalConfig(reply_hints=[HINT])))
