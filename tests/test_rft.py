"""`algorithm: rft` (rlft.trainers.rft): which prompts are drawn, which completion each keeps, that hints are tried only
where nothing passed, what the loss covers (the model's tokens and a hint's, never the prompt or the looked-up
article), that a round on the tiny model writes its samples and trains the adapter, and one-line recipe errors."""

from __future__ import annotations

import dataclasses
import json

import pytest
import torch

from rlft.decoding.prompting import build_trie
from rlft.errors import RecipeError
from rlft.recipe.sections import DecodingConfig, Recipe, RFTConfig
from rlft.scoring.loader import RewardSpec
from rlft.trainers.rft.examples import IGNORE, collate, training_example
from rlft.trainers.rft.sampler import sentence_ends
from rlft.trainers.rft.selection import best_per_prompt, departure, head_only_picks, pick_prompts
from tests.test_lookup import ARTICLES, LABELS, _article_ids, _heads, articles_file, decoding, tiny  # noqa: F401

HINT = " Could you"


def test_prompts_are_drawn_in_turn_from_each_label_and_repeatably():
    labels = ["b"] * 5 + ["a"] * 2 + ["c"] * 3
    picked = pick_prompts(labels, len(labels), 7, seed=3)
    assert picked == pick_prompts(labels, len(labels), 7, seed=3) != pick_prompts(labels, len(labels), 7, seed=4)
    assert len(set(picked)) == 7
    assert [labels[i] for i in picked] == ["a", "b", "c", "a", "b", "c", "b"]  # "a" runs out after two turns
    assert sorted(pick_prompts(labels, len(labels), 50, seed=0)) == list(range(10))  # never more than the data
    plain = pick_prompts(None, 10, 4, seed=0)
    assert len(set(plain)) == 4 and plain == pick_prompts([], 10, 4, seed=0)


def test_each_prompt_keeps_its_best_completion_reaching_the_bar():
    prompt_of = [0, 0, 1, 1, 2, 2, 0]
    totals = [1.0, 2.0, 0.5, None, 2.0, 2.0, 2.0]
    assert best_per_prompt(prompt_of, totals, 1.0) == {0: [1], 2: [4]}  # prompt 1 never reaches 1.0; ties: the first
    assert best_per_prompt(prompt_of, totals, 2.5) == {}
    assert best_per_prompt(prompt_of, totals, 1.0, keep=2) == {0: [1, 6], 2: [4, 5]}
    same = [[1], [2], [3], [3], [7], [7], [2]]  # prompt 0's 1 and 6 are the same completion; prompt 2's 4 and 5 too
    assert best_per_prompt(prompt_of, totals, 1.0, keep=3, completions=same) == {0: [1, 0], 2: [4]}


def test_the_loss_covers_what_the_model_wrote_not_the_prompt_or_the_article(tiny, decoding):
    _, tok = tiny
    trie = build_trie(tok, LABELS, decoding)
    head, article = _heads(tok)["review"], _article_ids(tok, "review")
    reply = tok.encode(" Thanks! Could you rate it?", add_special_tokens=False) + [tok.eos_token_id]
    prompt = [5, 6, 7]
    example = training_example(prompt, head + article + reply, trie)
    assert example["input_ids"] == prompt + head + article + reply
    assert example["labels"] == [IGNORE] * 3 + head + [IGNORE] * len(article) + reply
    batch = collate(0)([example, {"input_ids": [1, 2], "labels": [IGNORE, 2]}])
    width = len(example["input_ids"])
    assert batch["input_ids"][1].tolist() == [1, 2] + [0] * (width - 2)
    assert batch["labels"][1].tolist() == [IGNORE, 2] + [IGNORE] * (width - 2)
    assert batch["attention_mask"].sum(1).tolist() == [width, 2]


def _rft_context(tiny_model_dir, tmp_path, decoding, reward, rft, weights=None):
    from rlft.scoring.loader import as_loaded_rewards
    from rlft.trainers.context import TrainContext
    from tests.test_lookup import tiny_lora_rows

    rewards = list(reward) if isinstance(reward, (list, tuple)) else [reward]
    tok, model, data = tiny_lora_rows(tiny_model_dir)
    recipe = Recipe(algorithm="rft", output_dir=str(tmp_path / "out"), seed=0, decoding=decoding, rft=rft,
                    rewards=[RewardSpec(r.__name__) for r in rewards],
                    trainer={"max_completion_length": 64, "temperature": 1.3, "per_device_train_batch_size": 2,
                             "num_generations": 2, "max_steps": 2, "learning_rate": 1e-2, "use_cpu": True})
    return TrainContext(recipe=recipe, model=model, tokenizer=tok, train_dataset=data, eval_dataset=None,
                        rewards=as_loaded_rewards(rewards, weights or [1.0] * len(rewards)), labels=LABELS, device="cpu"), tok


def test_a_round_tries_hints_where_nothing_passed_keeps_and_trains(tiny_model_dir, tmp_path, decoding):
    from rlft.trainers.rft.trainer import build_trainer

    seen: list[str] = []

    def asks(prompts, completions, intent, **kwargs):  # cancel_order passes only with the hint, the others always
        texts = [c if isinstance(c, str) else c[0]["content"] for c in completions]
        seen.extend(texts)
        return [1.0 if HINT.strip() in t or label != "cancel_order" else 0.0 for t, label in zip(texts, intent)]

    # a random model seldom ends a reply: a stop on any token holding "e" ends most within a few tokens
    dec = DecodingConfig(**{**decoding.__dict__, "reply_max_tokens": 20, "reply_stop": "e"})
    ctx, tok = _rft_context(tiny_model_dir, tmp_path, dec, asks, RFTConfig(prompts=6, samples=2, hints=[HINT],
                                                                            min_reward=1.0))
    trainer = build_trainer(ctx)
    out = tmp_path / "out"
    summary = json.loads((out / "rft_summary.json").read_text())
    kept = [json.loads(line) for line in (out / "rft_samples.jsonl").read_text().splitlines()]
    assert summary["prompts"] == 6 and summary["samples"] == 2
    assert summary["prompts_per_label"] == {"cancel_order": 2, "get_refund": 2, "review": 1, "track_order": 1}
    assert 0 < summary["hinted_tried"] <= 2  # one hint per failing prompt (the two cancel_order ones)
    assert summary["completions"] == 12 + summary["hinted_tried"]
    assert len(seen) == summary["completions"]  # every sampled and every hinted completion was scored once
    assert summary["kept"] == len(kept) == 4 + summary["kept_after_hint"] and summary["kept_after_hint"] > 0
    assert summary["kept_per_label"]["cancel_order"] == summary["kept_after_hint"]
    for k in kept:  # each kept line shows its own prompt's completion (the hinted ones were sampled last)
        assert k["reward"] == 1.0 and (k["hint"] == HINT) == (k["intent"] == "cancel_order") == (HINT in k["completion"])
    assert not any(a in text for text in seen for a in ARTICLES.values())  # rewards never see the article
    assert len(trainer.train_dataset) == len(kept)

    example = trainer.train_dataset[[k["hint"] for k in kept].index(HINT)]
    trie = build_trie(tok, LABELS, dec)
    ids, labels = example["input_ids"], example["labels"]
    start = next(i for i, t in enumerate(labels) if t != IGNORE)
    lo, hi = trie.lookup_span(ids[start:])
    assert all(t == IGNORE for t in labels[start + lo:start + hi])  # the article is out of the loss ...
    hint = tok.encode(HINT, add_special_tokens=False)
    at = next(k for k in range(start + hi, len(ids)) if ids[k:k + len(hint)] == hint)
    assert labels[at:at + len(hint)] == hint  # ... the hint is in it

    before = {n: p.detach().clone() for n, p in trainer.model.named_parameters() if p.requires_grad}
    trainer.train()
    moved = [n for n, p in trainer.model.named_parameters() if p.requires_grad and not torch.equal(p, before[n])]
    assert moved  # the adapter was fine-tuned on the kept completions


def test_hint_repeat_puts_each_hinted_completion_in_the_fine_tuning_set_that_many_times(tiny_model_dir, tmp_path,
                                                                                         decoding):
    from rlft.trainers.rft.trainer import build_trainer

    def asks(prompts, completions, intent, **kwargs):  # cancel_order passes only with the hint, the others always
        texts = [c if isinstance(c, str) else c[0]["content"] for c in completions]
        return [1.0 if HINT.strip() in t or label != "cancel_order" else 0.0 for t, label in zip(texts, intent)]

    dec = DecodingConfig(**{**decoding.__dict__, "reply_max_tokens": 20, "reply_stop": "e"})
    ctx, _ = _rft_context(tiny_model_dir, tmp_path, dec, asks, RFTConfig(prompts=6, samples=2, hints=[HINT],
                                                                          min_reward=1.0, hint_repeat=3))
    trainer = build_trainer(ctx)
    kept = [json.loads(line) for line in (tmp_path / "out" / "rft_samples.jsonl").read_text().splitlines()]
    hinted = [k for k in kept if k["hint"]]
    assert hinted and len(hinted) < len(kept)  # the same draw as the test above: both kinds kept
    assert len(trainer.train_dataset) == len(kept) + 2 * len(hinted)
    rows = [tuple(ids) for ids in trainer.train_dataset["input_ids"]]
    hint = tuple(ctx.tokenizer.encode(HINT, add_special_tokens=False))
    with_hint = [r for r in rows if any(r[i:i + len(hint)] == hint for i in range(len(r)))]
    assert len(with_hint) == 3 * len(hinted)  # each hinted completion three times, in a row
    assert all(rows.count(r) == 3 for r in with_hint)
    summary = json.loads((tmp_path / "out" / "rft_summary.json").read_text())
    assert summary["kept"] == len(kept)  # the summary counts completions kept, not copies


def test_hint_from_greedy_appends_the_hint_to_the_deployed_reply_and_continues_greedily(tiny_model_dir, tmp_path,
                                                                                        decoding):
    from rlft.decoding.generation import eos_token_ids, generate_ids
    from rlft.trainers.rft.trainer import build_trainer

    def asks(prompts, completions, intent, **kwargs):  # cancel_order passes only with the hint, the others always
        texts = [c if isinstance(c, str) else c[0]["content"] for c in completions]
        return [1.0 if HINT.strip() in t or label != "cancel_order" else 0.0 for t, label in zip(texts, intent)]

    # the random model's greedy reply starts with ":" and repeats it to the budget (a reply that never ends is not
    # hinted): a stop there, allowed at once, ends it
    dec = DecodingConfig(**{**decoding.__dict__, "reply_max_tokens": 20, "reply_stop": ":", "reply_min_tokens": 0})
    hints = [HINT, " Please"]
    kept_by_seed = []
    for seed in (0, 1):
        out = tmp_path / f"s{seed}"
        ctx, tok = _rft_context(tiny_model_dir, out, dec, asks, RFTConfig(prompts=6, samples=2, hints=hints,
                                                                          min_reward=1.0, hint_from="greedy",
                                                                          keep_per_prompt=2))
        ctx.recipe.seed = seed  # other prompts sampled; the greedy reply of a prompt does not depend on it
        trainer = build_trainer(ctx)
        kept = [json.loads(line) for line in (out / "out" / "rft_samples.jsonl").read_text().splitlines()]
        hinted = [k for k in kept if k["hint"]]
        assert hinted and all(k["hint"] == HINT for k in hinted)  # " Please" never holds the word the reward wants
        trie = build_trie(tok, LABELS, dec)
        checked = 0
        for example in trainer.train_dataset:
            ids, labels = example["input_ids"], example["labels"]
            start = next(i for i, t in enumerate(labels) if t != IGNORE) - 1  # the prompt ends before the head
            prompt, completion = ids[:start + 1], ids[start + 1:]
            hint = tok.encode(HINT, add_special_tokens=False)
            at = next((k for k in range(len(completion)) if completion[k:k + len(hint)] == hint), None)
            if at is None:
                continue
            greedy = generate_ids(ctx.model, [prompt], max_new_tokens=64, eos_token_ids=eos_token_ids(ctx.model, tok),
                                  pad_token_id=tok.pad_token_id or 0, trie=trie)[0]
            assert completion[:at] == greedy[:-1]  # the greedy reply without its EOS, then the hint
            resumed = generate_ids(ctx.model, [prompt + completion[:at + len(hint)]], max_new_tokens=64,
                                   eos_token_ids=eos_token_ids(ctx.model, tok), pad_token_id=tok.pad_token_id or 0,
                                   stop=lambda ids: len(ids) - 1 if ids and ids[-1] in trie.reply_stop_ids else None)[0]
            written = completion[at + len(hint):-1]  # the continuation without the EOS that ends it
            assert written == resumed[:len(written)]  # continued greedily
            checked += 1
        assert checked == len(hinted)
        kept_by_seed.append({(k["prompt"][-1]["content"], k["completion"]) for k in hinted})
    # the same prompt fails under both seeds -> the same hinted completion (no sampling in it)
    shared = {p for p, _ in kept_by_seed[0]} & {p for p, _ in kept_by_seed[1]}
    assert all({c for p, c in kept_by_seed[0] if p == q} == {c for p, c in kept_by_seed[1] if p == q} for q in shared)


def test_a_sentence_ends_at_a_stop_followed_by_a_space_never_inside_a_number():
    texts = [" It", " costs", " $4", ".", "99", ".", " We", " need", " it", "!", " Bye", "."]
    assert sentence_ends(texts) == [5, 9]  # "$4." is no end; the reply's last token is its end, not a cut
    assert sentence_ends([" Hi", "?", "\n"]) == [1] and sentence_ends([" no", " stop"]) == [] == sentence_ends([])


def _sentence_sampler(ctx, decoding, reply: str):
    """A Sampler whose every first reply (sampled or greedy) is cancel_order's head, its article and `reply`, then
    EOS; continuations after a hint are the tiny model's own (greedy)."""
    from rlft.trainers.rft.sampler import Sampler

    tok = ctx.tokenizer
    whole = (_heads(tok)["cancel_order"] + _article_ids(tok, "cancel_order")
             + tok.encode(reply, add_special_tokens=False) + [tok.eos_token_id])

    class FirstReplies(Sampler):
        def sample(self, prompt_ids, n, seed):
            return [list(whole) for _ in prompt_ids for _ in range(n)]

    args = type("Args", (), {"max_completion_length": 64, "temperature": 1.0, "top_k": 0, "top_p": 1.0})()
    return FirstReplies(ctx.model, tok, decoding, ctx.rewards, LABELS, args), whole


def test_sentence_cuts_end_the_reply_after_each_earlier_sentence_never_inside_the_article(tiny_model_dir, tmp_path,
                                                                                          decoding):
    ctx, tok = _rft_context(tiny_model_dir, tmp_path, decoding, lambda prompts, completions, **kw: [0.0] * len(prompts),
                            RFTConfig())
    sampler, whole = _sentence_sampler(ctx, decoding, " It costs $4.99. We need the number. Bye.")
    cuts = sampler.sentence_cuts(whole)
    # the article ("Cancelling costs $4.99; we need your order number.") is not the reply: no cut inside it
    assert [tok.decode(c[:-1]).split("Answer:")[1] for c in cuts] == [" It costs $4.99.", " It costs $4.99. We need the number."]
    assert all(c[-1] == tok.eos_token_id and whole[:len(c) - 1] == c[:-1] for c in cuts)
    assert sampler.sentence_cuts(whole[:-1]) == []  # a reply that did not end by itself is not cut
    assert sampler.sentence_cuts(_heads(tok)["review"][:2]) == []  # nor one whose reply never opened


def test_hint_at_sentences_finds_a_move_that_must_replace_the_reply_s_last_sentence(tiny_model_dir, tmp_path, decoding):
    from rlft.trainers.rft.collect import collect

    def asks_instead_of_bye(prompts, completions, intent, **kwargs):  # the hint, and no "Bye" after the first reply
        texts = [c if isinstance(c, str) else c[0]["content"] for c in completions]
        return [1.0 if HINT.strip() in t and "Bye" not in t else 0.0 for t in texts]

    dec = DecodingConfig(**{**decoding.__dict__, "reply_max_tokens": 40})
    kept_by = {}
    for hint_at in ("end", "sentences"):
        ctx, tok = _rft_context(tiny_model_dir, tmp_path / hint_at, dec, asks_instead_of_bye, RFTConfig())
        sampler, whole = _sentence_sampler(ctx, dec, " It costs $4.99. We need the number. Bye.")
        cfg = RFTConfig(prompts=4, samples=1, hints=[HINT], min_reward=1.0, hint_from="greedy", hint_at=hint_at,
                        keep_per_prompt=3)
        kept, summary = collect(sampler, ctx.train_dataset.select(range(4)), cfg, seed=0)
        kept_by[hint_at] = (kept, summary)
    kept, summary = kept_by["end"]
    assert kept == [] and summary["hinted_tried"] == 4  # after the whole reply, "Bye" stays: nothing passes
    kept, summary = kept_by["sentences"]
    assert summary["hinted_tried"] == 4 * 3  # the end and the two earlier sentence ends of each failing prompt
    assert {k["prompt"] for k in kept} == {0, 1, 2, 3} and all(k["hint"] == HINT for k in kept)
    for k in kept:  # the reply up to an earlier sentence, then the hint, then what the model wrote
        reply = k["text"].split("</intent>")[1]
        assert reply.startswith((" It costs $4.99." + HINT, " It costs $4.99. We need the number." + HINT))
        hint = tok.encode(HINT, add_special_tokens=False)
        assert any(k["completion_ids"][:len(c) - 1 + len(hint)] == c[:-1] + hint for c in sampler.sentence_cuts(whole))


def _no_label(prompts, completions, intent, **kwargs):  # a reply must not show the label (a leak)
    texts = [c if isinstance(c, str) else c[0]["content"] for c in completions]
    return [0.0 if "cancel_order costs" in t else 1.0 for t in texts]


def _two_replies(tiny_model_dir, tmp_path, decoding, sampled_reply: str, greedy_reply: str):
    """A Sampler whose every sample is cancel_order's head, its article and `sampled_reply`, whose greedy reply
    (seed None) is the same with `greedy_reply`, and whose continuations after a hint are the tiny model's; with the
    3 rows it draws from and the length of the head + article."""
    from rlft.trainers.rft.sampler import Sampler

    dec = DecodingConfig(**{**decoding.__dict__, "reply_max_tokens": 40})
    ctx, tok = _rft_context(tiny_model_dir, tmp_path, dec, _no_label, RFTConfig())
    opening = _heads(tok)["cancel_order"] + _article_ids(tok, "cancel_order")

    def ids(reply):
        return opening + tok.encode(reply, add_special_tokens=False) + [tok.eos_token_id]

    class Replies(Sampler):
        def sample(self, prompt_ids, n, seed):
            return [ids(sampled_reply if seed is not None else greedy_reply) for _ in prompt_ids for _ in range(n)]

    args = type("Args", (), {"max_completion_length": 64, "temperature": 1.0, "top_k": 0, "top_p": 1.0})()
    return Replies(ctx.model, tok, dec, ctx.rewards, LABELS, args), ctx.train_dataset.select(range(3)), len(opening)


def test_departures_all_marks_kept_samples_where_they_leave_a_failing_greedy_reply(tiny_model_dir, tmp_path, decoding):
    from rlft.trainers.rft.collect import collect

    sampler, rows, opening = _two_replies(tiny_model_dir, tmp_path, decoding, " It costs $4.99.",
                                          " cancel_order costs $4.99.")
    leak = sampler.tokenizer.encode(" cancel_order", add_special_tokens=False)[0]
    kept, summary = collect(sampler, rows, RFTConfig(prompts=3, samples=1, unlikelihood=1.0, departures="all"), 0)
    assert len(kept) == 3 and summary["greedy_failed_kept_sample"] == 3 and summary["departures"] == 3
    assert all(k["departure"] == (opening, [leak]) for k in kept)  # the reply's first token: the label's
    kept, summary = collect(sampler, rows, RFTConfig(prompts=3, samples=1, unlikelihood=1.0, hints=[HINT]), 0)
    assert all(k["departure"] is None for k in kept) and summary["departures"] == 0  # hinted: no hint, no term
    sampler, rows, _ = _two_replies(tiny_model_dir, tmp_path / "clean", decoding, " It costs $4.99.", " It is $4.99.")
    kept, summary = collect(sampler, rows, RFTConfig(prompts=3, samples=1, unlikelihood=1.0, departures="all"), 0)
    assert len(kept) == 3 and summary["greedy_failed_kept_sample"] == 0  # the deployed reply passes: nothing to
    assert all(k["departure"] is None for k in kept)  # push away from


def test_keep_passing_greedy_keeps_a_passing_deployed_reply_unhinted(tiny_model_dir, tmp_path, decoding):
    from rlft.trainers.rft.collect import collect

    cfg = RFTConfig(prompts=3, samples=1, hints=[HINT], hint_from="greedy", keep_per_prompt=3, unlikelihood=1.0,
                    keep_passing_greedy=True)
    sampler, rows, _ = _two_replies(tiny_model_dir, tmp_path, decoding, " cancel_order costs $4.99.",
                                    " It costs $4.99.")
    kept, summary = collect(sampler, rows, dataclasses.replace(cfg, keep_passing_greedy=False), 0)
    assert summary["greedy_kept"] == 0 and summary["hinted_tried"] == 3  # off: the passing deployed reply is hinted
    assert all(k["hint"] == HINT and k["departure"] is not None for k in kept)
    kept, summary = collect(sampler, rows, cfg, 0)  # the sample fails, the deployed reply passes
    assert summary["greedy_kept"] == 3 and summary["hinted_tried"] == 0
    assert [(k["hint"], k["departure"], k["text"].split("</intent>")[-1]) for k in kept] == [
        ("", None, " It costs $4.99.")] * 3
    sampler, rows, _ = _two_replies(tiny_model_dir, tmp_path / "both", decoding, " cancel_order costs $4.99.",
                                    " cancel_order costs $4.99.")
    kept, summary = collect(sampler, rows, cfg, 0)  # both fail: the deployed reply is hinted
    assert summary["greedy_kept"] == 0 and summary["hinted_tried"] > 0


def test_head_only_picks_the_first_passing_head_of_each_prompt_with_nothing_kept():
    prompt_of = [0, 0, 1, 1, 2, 2, 3]
    heads = [1.0, 1.0, 0.0, 1.0, None, 0.0, 1.0]
    assert head_only_picks(prompt_of, heads, 1.0, kept_prompts={3}) == [0, 3]  # 2 never passes, 3 is kept whole
    assert head_only_picks(prompt_of, heads, 0.0, kept_prompts=set()) == [0, 2, 5, 6]  # an abstention never passes


def test_a_head_reward_trains_the_heads_of_prompts_whose_reply_failed(tiny_model_dir, tmp_path, decoding):
    from rlft.trainers.rft.trainer import build_trainer

    def head_ok(prompts, completions, intent, **kwargs):  # get_refund and review heads pass
        return [1.0 if label in ("get_refund", "review") else 0.0 for label in intent]

    def reply_ok(prompts, completions, intent, **kwargs):  # only review replies pass
        return [1.0 if label == "review" else 0.0 for label in intent]

    ctx, tok = _rft_context(tiny_model_dir, tmp_path, decoding, [head_ok, reply_ok],
                            RFTConfig(prompts=6, samples=2, min_reward=2.0, head_reward="head_ok"))
    trainer = build_trainer(ctx)
    out = tmp_path / "out"
    summary = json.loads((out / "rft_summary.json").read_text())
    lines = [json.loads(line) for line in (out / "rft_samples.jsonl").read_text().splitlines()]
    assert summary["kept"] == 1 and summary["kept_per_label"] == {"review": 1}
    assert summary["heads_only"] == 2 and summary["heads_only_per_label"] == {"get_refund": 2}  # one per prompt
    assert [(k["intent"], k["head_only"]) for k in lines] == [("review", False), ("get_refund", True),
                                                              ("get_refund", True)]
    # each line carries every reward's own value (why it was kept), not only their sum
    assert [k["rewards"] for k in lines] == [{"head_ok": 1.0, "reply_ok": 1.0}] + [{"head_ok": 1.0, "reply_ok": 0.0}] * 2
    assert [k["reward"] for k in lines] == [2.0, 1.0, 1.0]
    trie = build_trie(tok, LABELS, decoding)
    heads = [h for h in _heads(tok).values()]
    for k, example in enumerate(trainer.train_dataset):
        ids, labels = example["input_ids"], example["labels"]
        start = next(i for i, t in enumerate(labels) if t != IGNORE)
        if not lines[k]["head_only"]:
            assert trie.lookup_span(ids[start:]) is not None  # the whole completion: head, article, reply
            continue
        assert ids[start:] in heads and labels[start:] == ids[start:]  # the head's tokens only, all in the loss
        assert lines[k]["completion"] == decoding.prefill + tok.decode(ids[start:], skip_special_tokens=True)


def test_nothing_reaching_the_bar_is_a_one_line_error(tiny_model_dir, tmp_path, decoding):
    from rlft.trainers.rft.trainer import build_trainer

    ctx, _ = _rft_context(tiny_model_dir, tmp_path, decoding, lambda prompts, completions, **kw: [0.0] * len(prompts),
                          RFTConfig(prompts=2, samples=2, min_reward=0.5))
    with pytest.raises(RecipeError) as err:
        build_trainer(ctx)
    assert str(err.value) == ("recipe: rft.min_reward: no sampled completion of the 2 prompts reached 0.5 (best 0.0); "
                              "lower it, add rft.hints, or start from a stronger adapter (adapter.init_from)")


def test_rft_recipe_errors_are_one_line(articles_file):
    from rlft.recipe.validate import _validate_sections
    from rlft.trainers import algorithm_spec

    free = DecodingConfig(prefill="<intent>", constrain_labels=True, free_reply=True, lookup=str(articles_file))
    where = lambda recipe, key: "recipe"  # noqa: E731
    for settings, message in [
        (dict(rft=RFTConfig(prompts=0)), "rft.prompts: expected >= 1, got 0"),
        (dict(rft=RFTConfig(samples=0)), "rft.samples: expected >= 1, got 0"),
        (dict(rft=RFTConfig(keep_per_prompt=0)), "rft.keep_per_prompt: expected >= 1, got 0"),
        (dict(rft=RFTConfig(round=0)), "rft.round: expected >= 1, got 0"),
        (dict(rft=RFTConfig(hint_repeat=0)), "rft.hint_repeat: expected >= 1, got 0"),
        (dict(rft=RFTConfig(unlikelihood=-0.5)), "rft.unlikelihood: expected a finite number >= 0, got -0.5"),
        (dict(rft=RFTConfig(unlikelihood=1.0)), "rft.unlikelihood: needs rft.hints (the term sits where a hinted "
                                                "completion departs from the reply the hint was appended to) or "
                                                "rft.departures: all"),
        (dict(rft=RFTConfig(keep_passing_greedy=True)), "rft.keep_passing_greedy: needs rft.hint_from: greedy (it is "
                                                        "the deployed reply the hints would be appended to)"),
        (dict(rft=RFTConfig(departures="some")), "rft.departures: expected one of hinted, all, got 'some'"),
        (dict(rft=RFTConfig(departures="all")), "rft.departures: all needs rft.unlikelihood > 0 (the departures are "
                                                "where that term sits)"),
        (dict(rft=RFTConfig(hint_from="best")), "rft.hint_from: expected one of sample, greedy, got 'best'"),
        (dict(rft=RFTConfig(hint_at="words")), "rft.hint_at: expected one of end, sentences, got 'words'"),
        (dict(rft=RFTConfig(min_reward=float("nan"))), "rft.min_reward: expected a finite number, got nan"),
        (dict(rft=RFTConfig(head_min_reward=float("inf"))), "rft.head_min_reward: expected a finite number, got inf"),
        (dict(decoding=free, rft=RFTConfig(head_reward="intnet")), "rft.head_reward: unknown reward 'intnet' "
                                                                  "(rewards: intent)"),
        (dict(rft=RFTConfig(head_reward="intent")), "rft.head_reward: needs decoding.constrain_labels and "
                                                    "decoding.free_reply (the head is the constrained label before "
                                                    "the reply)"),
        (dict(decoding=free, rft=RFTConfig(hints=[HINT, " "])), "rft.hints[1]: expected a non-empty text, got ' '"),
        (dict(rft=RFTConfig(hints=[HINT])), "rft.hints: needs decoding.constrain_labels and decoding.free_reply (a "
                                            "hint goes after the reply the model ended)")]:
        recipe = Recipe(algorithm="rft", rewards=[RewardSpec("intent")], **settings)
        with pytest.raises(RecipeError) as err:
            algorithm_spec("rft").validate(recipe, where)
        assert str(err.value) == f"recipe: {message}"
    with pytest.raises(RecipeError) as err:
        _validate_sections(Recipe(algorithm="grpo", rewards=[RewardSpec("intent")], rft=RFTConfig(prompts=5)))
    assert str(err.value) == "recipe: rft: only applies to algorithm rft (this recipe is grpo)"
    algorithm_spec("rft").validate(Recipe(algorithm="rft", decoding=free, rft=RFTConfig(hints=[HINT])), where)
    algorithm_spec("rft").validate(Recipe(algorithm="rft", rft=RFTConfig(unlikelihood=1.0, departures="all")), where)


def test_the_agent_stage_recipe_resets_grpo_sections_and_warns_of_nothing():
    from rlft.recipe.load import load_recipe
    from rlft.recipe.sections import LabelPGConfig, SignalConfig
    from rlft.recipe.validate import inert_keys

    recipe = load_recipe("recipes/support_agent_bitext_rft.yaml", ["adapter.init_from=null"])
    parent = load_recipe("recipes/support_agent_bitext.yaml", ["adapter.init_from=null"], check=False)
    assert recipe.algorithm == "rft" and parent.signal.exact_head and parent.label_pg != LabelPGConfig()
    assert recipe.signal == SignalConfig() and recipe.label_pg == LabelPGConfig()  # `signal: null`: the defaults
    assert inert_keys(recipe) == []  # the parent's signal keys are gone, not reported as set here
    assert (recipe.decoding, recipe.rewards, recipe.data) == (parent.decoding, parent.rewards, parent.data)
    assert recipe.rft.hints and recipe.rft.min_reward == 2.0


def test_a_later_round_draws_other_prompts(tiny_model_dir, tmp_path, decoding):
    from rlft.trainers.rft.trainer import build_trainer

    drawn = []
    for round_ in (1, 2):
        ctx, _ = _rft_context(tiny_model_dir, tmp_path / str(round_), decoding,
                              lambda prompts, completions, **kw: [1.0] * len(prompts),
                              RFTConfig(prompts=4, samples=1, round=round_))
        build_trainer(ctx)
        lines = (tmp_path / str(round_) / "out" / "rft_samples.jsonl").read_text().splitlines()
        drawn.append(sorted(json.loads(line)["prompt"][0]["content"] for line in lines))
    assert len(drawn[0]) == len(drawn[1]) == 4 and drawn[0] != drawn[1]  # one prompt per label each, other rows


def test_a_departure_is_where_the_kept_completion_leaves_the_reply_and_what_the_reply_wrote_there():
    whole = [11, 12, 13, 14, 2]  # 2: EOS
    assert departure(whole, [11, 12, 13, 14, 7, 8, 2], [2, 9]) == (4, [2, 9])  # a hint after the end: it stopped
    assert departure(whole, [11, 12, 7, 8, 2], [2, 9]) == (2, [13])  # after an earlier sentence: it went on with 13
    assert departure(whole, [11, 12, 13, 7, 2], [2, 9]) == (3, [14])  # a hint whose first token the reply wrote too:
    # the departure is where they differ, not the hint's first token (pushed down, it would fight the hint's loss)
    assert departure(whole, [20, 12, 13, 14, 2], [2, 9]) == (0, [11])  # a kept sample leaving the greedy reply at once
    assert departure(whole, whole, [2, 9]) is None  # nothing to push down
    example = training_example([5, 6], [11, 12, 7, 8, 2], None, (2, [13]), unlikely=True)
    assert example["unlikely_at"] == 4 and example["input_ids"][4] == 7 and example["unlikely_ids"] == [13]
    plain = training_example([5, 6], [11, 12, 2], None, None, unlikely=True)
    assert (plain["unlikely_at"], plain["unlikely_ids"]) == (-1, [])
    assert "unlikely_at" not in training_example([5, 6], [11, 2], None, (1, [2]))  # off: the batch is unchanged
    batch = collate(0)([example, plain])
    assert batch["unlikely_at"].tolist() == [4, -1] and batch["unlikely_ids"].tolist() == [[13], [-1]]


def test_the_unlikelihood_term_is_minus_log_one_minus_the_set_s_probability():
    from rlft.trainers.rft.unlikelihood import departure_probabilities, summed_nll, unlikelihood

    logits = torch.randn(3, 5, 7)
    at, ids = torch.tensor([2, -1, 4]), torch.tensor([[1, 3], [-1, -1], [6, -1]])
    p = departure_probabilities(logits, at, ids)
    probs0, probs2 = logits[0, 1].softmax(-1), logits[2, 3].softmax(-1)  # predicted one position earlier
    assert torch.allclose(p, torch.stack([probs0[1] + probs0[3], probs2[6]]))  # row 1 has none: left out
    assert torch.allclose(unlikelihood(p), -torch.log(1 - p).sum())
    assert unlikelihood(torch.tensor([1.0])).item() == pytest.approx(13.8155, abs=1e-3)  # floored, not infinite
    assert departure_probabilities(logits, torch.tensor([-1, -1, -1]), ids).numel() == 0
    labels = torch.full((3, 5), IGNORE)
    labels[0, 3], labels[2, 1] = 4, 0
    expected = -(logits[0, 2].log_softmax(-1)[4] + logits[2, 0].log_softmax(-1)[0])
    assert summed_nll(logits, labels).item() == pytest.approx(expected.item(), rel=1e-5)


def test_unlikelihood_pushes_down_what_the_deployed_reply_did_where_the_hint_departs(tiny_model_dir, tmp_path,
                                                                                    decoding):
    from rlft.trainers.rft.trainer import build_trainer
    from rlft.trainers.rft.unlikelihood import departure_probabilities, summed_nll, unlikelihood

    def asks(prompts, completions, intent, **kwargs):  # cancel_order passes only with the hint, the others always
        texts = [c if isinstance(c, str) else c[0]["content"] for c in completions]
        return [1.0 if HINT.strip() in t or label != "cancel_order" else 0.0 for t, label in zip(texts, intent)]

    def at_departures(model, probe):  # the probability of the deployed reply's stop at each probe row's departure
        with torch.no_grad():
            logits = model(input_ids=probe["input_ids"], attention_mask=probe["attention_mask"]).logits
        return departure_probabilities(logits, probe["unlikely_at"], probe["unlikely_ids"])

    # the random model's greedy reply ends at ":" (a reply stop): the hint goes after it
    dec = DecodingConfig(**{**decoding.__dict__, "reply_max_tokens": 20, "reply_stop": ":", "reply_min_tokens": 0})
    hint = None
    start, after = {}, {}
    for weight in (2000.0, 0.0):  # the random model rarely stops there (p ~ 0.002): a weight that shows in 6 steps
        ctx, tok = _rft_context(tiny_model_dir, tmp_path / str(weight), dec, asks,
                                RFTConfig(prompts=6, samples=2, hints=[HINT], min_reward=1.0, hint_from="greedy",
                                          hint_repeat=2, unlikelihood=weight))
        trainer = build_trainer(ctx)
        data = trainer.train_dataset
        if weight:
            assert type(trainer).__name__ == "UnlikelihoodTrainer"
            hint = tok.encode(HINT, add_special_tokens=False)
            stops = sorted({tok.eos_token_id, *build_trie(tok, LABELS, dec).reply_stop_ids})
            hinted = [row for row in data if HINT in tok.decode(row["input_ids"])]
            assert hinted and len(hinted) < len(data)
            for row in data:  # a hinted completion: at the hint's first token, the stop ids; the others: none
                if row in hinted:
                    assert row["input_ids"][row["unlikely_at"]:row["unlikely_at"] + len(hint)] == hint
                    assert row["unlikely_ids"] == stops
                else:
                    assert (row["unlikely_at"], row["unlikely_ids"]) == (-1, [])
            probe = collate(tok.eos_token_id)(hinted)
            batch = collate(tok.eos_token_id)(hinted[:1] + [r for r in data if r not in hinted][:1])
            trainer.model.train()
            with torch.no_grad():  # the loss: the causal-LM loss + weight x one token's share of -log(1 - p)
                loss = trainer.compute_loss(trainer.model, dict(batch))
                plain = {k: batch[k] for k in ("input_ids", "labels", "attention_mask")}
                out = trainer.model(**plain)
                p = departure_probabilities(out.logits, batch["unlikely_at"], batch["unlikely_ids"])
                term = weight * unlikelihood(p) * out.loss / summed_nll(out.logits, plain["labels"])
            assert p.numel() == 1 and term.item() > 0
            assert (loss - out.loss).item() == pytest.approx(term.item(), rel=0.02)  # fp32 loss near 10
        else:  # off: the plain Trainer over the same examples, no departure columns
            assert type(trainer).__name__ == "Trainer" and "unlikely_at" not in data.column_names
            assert data["input_ids"] == ids_with
        ids_with = data["input_ids"]
        start[weight] = at_departures(trainer.model, probe)
        trainer.args.max_steps, trainer.args.logging_steps = 6, 3
        trainer.train()
        after[weight] = at_departures(trainer.model, probe)
        logged = [log["rft/departure_p"] for log in trainer.state.log_history if "rft/departure_p" in log]
        assert len(logged) == (2 if weight else 0) and all(0 < p < 0.01 for p in logged)  # the mean p, every log
    assert torch.allclose(start[2000.0], start[0.0], atol=1e-5)  # the same adapter and rows at the start
    # the stop the deployed reply made at each departure: lower after the fine-tune with the term than without it
    assert after[2000.0].mean() < after[0.0].mean()
    assert (after[2000.0] < after[0.0]).all()
    assert ((after[2000.0] - start[2000.0]) < 0.8 * (after[0.0] - start[0.0])).all()  # measured: 20e-6 against 37e-6
