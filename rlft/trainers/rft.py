"""`algorithm: rft`: rejection-sampling fine-tuning (RAFT, Dong et al. 2023; ReST-EM, Singh et al. 2023): sample, keep
what the rewards pass, fine-tune on it by maximum likelihood. docs/algorithms.md#rft.

One round, before the optimiser's first step:

1. `rft.prompts` training prompts, taken in turn from each label when the data has a label column (so a rare label
   gets its share), `rft.samples` completions each, decoded exactly as GRPO's rollouts and evaluation decode them:
   `rlft.decoding.generation.generate_ids` under the recipe's constraint (constrained head, looked-up article, free
   reply) with the trainer's sampling settings (`temperature`, `top_k`, `top_p`, `max_completion_length`).
2. Every completion is scored by the recipe's rewards, weighted and summed as evaluation scores them
   (`rlft.scoring.completions.score`; the rewards see what evaluation shows them: the looked-up text left out).
3. Where no sample of a prompt reaches `rft.min_reward`, each of `rft.hints` is appended to one of its replies once
   that reply has ended and the model writes on from it (`rlft.grpo.hints.extend_with_hints`, the continuation GRPO's
   hinted exploration uses), and the hinted completions are scored the same way. `rft.hint_from: greedy` appends
   the hints to the reply greedy decoding writes (the deployed one) and continues greedily instead; with
   `rft.keep_passing_greedy` that reply is scored first, and a prompt whose deployed reply passes keeps it and is not
   hinted (a hinted variant would push down, with `rft.unlikelihood`, a choice the deployed reply got right).
   `rft.hint_at: sentences` also tries each hint after each earlier sentence of that reply, the rest of it dropped
   (`Sampler.sentence_cuts`): a move the reply's word budget has no room for at its end (the article copied whole,
   then a question) can replace the sentences after it.
4. Each prompt keeps its best completion(s) reaching `rft.min_reward` (up to `rft.keep_per_prompt` distinct ones: a
   prompt that passed only with hints can keep several hinted replies, weighting the rare move); the kept completions go to
   `output_dir/rft_samples.jsonl` (text, summed reward, each reward's value, hint) and the counts to `output_dir/rft_summary.json`.
   A completion kept after a hint enters the fine-tuning set `rft.hint_repeat` times (oversampling the rare move).
5. A `transformers.Trainer` fine-tunes on them (causal-LM loss): on every token the model wrote and on a hint's
   tokens (a hint that pays is the move being taught, as in GRPO's hinted exploration), never on the prompt or the
   looked-up text (`Constraint.lookup_mask`, GRPO's `env_mask`). With `rft.unlikelihood` > 0, each hinted completion
   also pushes down, where it departs from the reply its hint was appended to, what that reply wrote there (the
   stop, or the next sentence): `rlft.trainers.unlikelihood`.

Why it exists: GRPO learns a move only from the rollouts of the few prompts of each step and pays a backward pass
for every rollout, passing or not. Here sampling is forward-only and only the kept completions are trained on, so
one CPU minute reaches far more prompts: the cheap way to turn moves the hints found (a question for the order
number, an apology) into the policy's own before GRPO polishes it (docs/support_agent.md#rft).

`trainer:` is GRPO's config (GRPOConfig), so a stage that extends a GRPO recipe keeps its keys: rft reads the
sampling keys above and the optimiser's (learning rate, batch size, epochs or max_steps, scheduler); GRPO's loss
keys (`beta`, `loss_type`, `num_generations`, ...) do nothing here. Sampling is not counted by
`max_train_minutes` (only optimiser steps are); `rft.prompts` and `rft.samples` set its cost.

Several processes (`accelerate launch --num_processes N`) split the sampling: process k samples and scores every N-th
picked prompt from the k-th (`share`: each gets every label's turn alike), all with the round's seed, then every
process gathers all the kept completions (`merge`): the same list on each, in the order one process lists them (prompt
order), which the Trainer then shards as any dataset. Which completion a prompt draws depends on N (one torch generator
draws for a whole batch of prompts; one per prompt would cost the batching), so N processes keep a different set than
one, as another seed would. The summary sums the counts (`sampling_cpu_s` too: the CPU all processes spent, about what
one process would spend alone) and adds `processes` and `sampling_cpu_s_per_process`; only the main process writes
the two files and prints the line.
"""

from __future__ import annotations

import json
import math
import random
import time
from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from rlft.errors import RecipeError
from rlft.trainers.context import TrainContext

IGNORE = -100  # the label of a token outside the loss (transformers' causal-LM loss ignores it)
HINT_FROM = ("sample", "greedy")  # rft.hint_from: the reply a hint is appended to
HINT_AT = ("end", "sentences")  # rft.hint_at: where in that reply the hints go
DEPARTURES = ("hinted", "all")  # rft.departures: the kept completions the unlikelihood term sits on


def config_class() -> type:
    from trl import GRPOConfig

    return GRPOConfig


def check_recipe(recipe: Any, where: Callable[[Any, str], str]) -> None:
    """rft's own rules for `rlft validate` (its spec's `checks`)."""
    cfg = recipe.rft
    if cfg.prompts < 1:
        raise RecipeError(f"{where(recipe, 'rft.prompts')}: rft.prompts: expected >= 1, got {cfg.prompts}")
    if cfg.keep_per_prompt < 1:
        raise RecipeError(f"{where(recipe, 'rft.keep_per_prompt')}: rft.keep_per_prompt: expected >= 1, got "
                          f"{cfg.keep_per_prompt}")
    if cfg.hint_from not in HINT_FROM:
        raise RecipeError(f"{where(recipe, 'rft.hint_from')}: rft.hint_from: expected one of {', '.join(HINT_FROM)}, "
                          f"got {cfg.hint_from!r}")
    if cfg.hint_at not in HINT_AT:
        raise RecipeError(f"{where(recipe, 'rft.hint_at')}: rft.hint_at: expected one of {', '.join(HINT_AT)}, "
                          f"got {cfg.hint_at!r}")
    if cfg.hint_repeat < 1:
        raise RecipeError(f"{where(recipe, 'rft.hint_repeat')}: rft.hint_repeat: expected >= 1, got {cfg.hint_repeat}")
    if not (math.isfinite(cfg.unlikelihood) and cfg.unlikelihood >= 0):
        raise RecipeError(f"{where(recipe, 'rft.unlikelihood')}: rft.unlikelihood: expected a finite number >= 0, got "
                          f"{cfg.unlikelihood}")
    if cfg.departures not in DEPARTURES:
        raise RecipeError(f"{where(recipe, 'rft.departures')}: rft.departures: expected one of "
                          f"{', '.join(DEPARTURES)}, got {cfg.departures!r}")
    if cfg.unlikelihood and cfg.departures == "hinted" and not cfg.hints:
        raise RecipeError(f"{where(recipe, 'rft.unlikelihood')}: rft.unlikelihood: needs rft.hints (the term sits "
                          f"where a hinted completion departs from the reply the hint was appended to) or "
                          f"rft.departures: all")
    if cfg.keep_passing_greedy and cfg.hint_from != "greedy":
        raise RecipeError(f"{where(recipe, 'rft.keep_passing_greedy')}: rft.keep_passing_greedy: needs rft.hint_from: "
                          f"greedy (it is the deployed reply the hints would be appended to)")
    if cfg.departures == "all" and not cfg.unlikelihood:
        raise RecipeError(f"{where(recipe, 'rft.departures')}: rft.departures: all needs rft.unlikelihood > 0 (the "
                          f"departures are where that term sits)")
    if cfg.round < 1:
        raise RecipeError(f"{where(recipe, 'rft.round')}: rft.round: expected >= 1, got {cfg.round}")
    if cfg.samples < 1:
        raise RecipeError(f"{where(recipe, 'rft.samples')}: rft.samples: expected >= 1, got {cfg.samples}")
    if not math.isfinite(cfg.min_reward):
        raise RecipeError(f"{where(recipe, 'rft.min_reward')}: rft.min_reward: expected a finite number, got "
                          f"{cfg.min_reward}")
    if not math.isfinite(cfg.head_min_reward):
        raise RecipeError(f"{where(recipe, 'rft.head_min_reward')}: rft.head_min_reward: expected a finite number, "
                          f"got {cfg.head_min_reward}")
    if cfg.head_reward:
        names = [spec.display_name for spec in recipe.rewards]
        if cfg.head_reward not in names:
            raise RecipeError(f"{where(recipe, 'rft.head_reward')}: rft.head_reward: unknown reward "
                              f"{cfg.head_reward!r} (rewards: {', '.join(names)})")
        if not (recipe.decoding.constrain_labels and recipe.decoding.free_reply):
            raise RecipeError(f"{where(recipe, 'rft.head_reward')}: rft.head_reward: needs decoding.constrain_labels "
                              f"and decoding.free_reply (the head is the constrained label before the reply)")
    for i, hint in enumerate(cfg.hints):
        if not isinstance(hint, str) or not hint.strip():
            raise RecipeError(f"{where(recipe, 'rft.hints')}: rft.hints[{i}]: expected a non-empty text, got "
                              f"{hint!r}")
    if cfg.hints and not (recipe.decoding.constrain_labels and recipe.decoding.free_reply):
        raise RecipeError(f"{where(recipe, 'rft.hints')}: rft.hints: needs decoding.constrain_labels and "
                          f"decoding.free_reply (a hint goes after the reply the model ended)")


def pick_prompts(labels: Sequence[Any] | None, rows: int, count: int, seed: int) -> list[int]:
    """`count` row indices (fewer when the data is smaller), drawn with `seed`: in turn from each label (labels in
    sorted order, rows shuffled within each) when `labels` is given, else a shuffled prefix."""
    rng = random.Random(seed)
    if not labels:
        order = list(range(rows))
        rng.shuffle(order)
        return order[:count]
    by_label: dict[Any, list[int]] = {}
    for i, label in enumerate(labels):
        by_label.setdefault(label, []).append(i)
    queues = []
    for label in sorted(by_label, key=str):
        rows_of = by_label[label]
        rng.shuffle(rows_of)
        queues.append(rows_of)
    picked: list[int] = []
    depth = 0
    while len(picked) < count and any(depth < len(q) for q in queues):
        picked.extend(q[depth] for q in queues if depth < len(q) and len(picked) < count)
        depth += 1
    return picked


def best_per_prompt(prompt_of: Sequence[int], totals: Sequence[float | None], min_reward: float, keep: int = 1,
                    completions: Sequence[Sequence[int]] | None = None) -> dict[int, list[int]]:
    """prompt -> indices of its `keep` best completions among those reaching `min_reward`, best first (the first of
    equals first); with `completions`, a completion equal to one already kept for its prompt is skipped."""
    ranked = sorted((i for i, total in enumerate(totals) if total is not None and total >= min_reward),
                    key=lambda i: (-totals[i], i))
    best: dict[int, list[int]] = {}
    seen: set[tuple[int, tuple[int, ...]]] = set()
    for i in ranked:
        chosen = best.setdefault(prompt_of[i], [])
        key = (prompt_of[i], tuple(completions[i]) if completions is not None else (i,))
        if len(chosen) < keep and key not in seen:
            chosen.append(i)
            seen.add(key)
    return {p: chosen for p, chosen in best.items() if chosen}


def head_only_picks(prompt_of: Sequence[int], head_rewards: Sequence[float | None], min_head: float,
                    kept_prompts: set[int]) -> list[int]:
    """For each prompt with no kept completion (not in `kept_prompts`), its first completion whose head reward reaches
    `min_head`: the completions whose head alone is trained (`rft.head_reward`), in prompt order."""
    first: dict[int, int] = {}
    for i, (p, r) in enumerate(zip(prompt_of, head_rewards, strict=True)):
        if p not in kept_prompts and p not in first and r is not None and r >= min_head:
            first[p] = i
    return [first[p] for p in sorted(first)]


def training_example(prompt_ids: Sequence[int], completion_ids: Sequence[int], trie: Any,
                     departure: tuple[int, Sequence[int]] | None = None, unlikely: bool = False) -> dict[str, Any]:
    """input_ids and labels of one kept completion: the prompt and any looked-up text are out of the loss.

    With `unlikely` (rft.unlikelihood on), also `unlikely_at` and `unlikely_ids`: the position in input_ids where the
    completion departs from the reply its hint was appended to and the token ids that reply wrote there
    (`departure`: (index into the completion, ids)); -1 and [] for a completion without one."""
    mask = trie.lookup_mask(completion_ids) if trie is not None else [1] * len(completion_ids)
    labels = [IGNORE] * len(prompt_ids) + [t if keep else IGNORE for t, keep in zip(completion_ids, mask, strict=True)]
    example: dict[str, Any] = {"input_ids": [*prompt_ids, *completion_ids], "labels": labels}
    if unlikely:
        at, ids = (len(prompt_ids) + departure[0], departure[1]) if departure is not None else (-1, [])
        example["unlikely_at"], example["unlikely_ids"] = at, [int(t) for t in ids]
    return example


def departure(reply: Sequence[int], completion: Sequence[int],
              stop_ids: Sequence[int]) -> tuple[int, list[int]] | None:
    """Where a kept `completion` first leaves `reply` (a failing reply of the same prompt: the one its hint was
    appended to, or the greedy one) and what `reply` wrote there: every stop id where the reply stopped (its EOS, or a
    reply stop token), else the reply's token. None when one is a prefix of the other (nothing to push down)."""
    stops = {int(t) for t in stop_ids}
    for at, (wrote, kept) in enumerate(zip(reply, completion)):
        if wrote != kept:
            return (at, sorted(stops)) if int(wrote) in stops else (at, [int(wrote)])
    return None


def sentence_ends(token_texts: Sequence[str]) -> list[int]:
    """Indices of the tokens that end a sentence inside a reply (`token_texts`: each reply token's text), its last
    token excluded: the token's text ends with '.', '!' or '?' and the next token's text starts with whitespace (so
    '$4.99' is not cut after '$4.')."""
    return [i for i in range(len(token_texts) - 1)
            if token_texts[i].endswith((".", "!", "?")) and token_texts[i + 1][:1].isspace()]


def collate(pad_token_id: int) -> Callable[[list[dict[str, list[int]]]], dict[str, Any]]:
    """Right-padding collator: pad ids, labels IGNORE, attention mask 0 on padding."""
    import torch

    def batch(examples: list[dict[str, list[int]]]) -> dict[str, Any]:
        width = max(len(e["input_ids"]) for e in examples)
        pad = [width - len(e["input_ids"]) for e in examples]
        out = {
            "input_ids": torch.tensor([e["input_ids"] + [pad_token_id] * p for e, p in zip(examples, pad)]),
            "labels": torch.tensor([e["labels"] + [IGNORE] * p for e, p in zip(examples, pad)]),
            "attention_mask": torch.tensor([[1] * len(e["input_ids"]) + [0] * p for e, p in zip(examples, pad)]),
        }
        if "unlikely_at" in examples[0]:  # rft.unlikelihood: ids padded with -1
            most = max(1, max(len(e["unlikely_ids"]) for e in examples))
            out["unlikely_at"] = torch.tensor([e["unlikely_at"] for e in examples])
            out["unlikely_ids"] = torch.tensor([list(e["unlikely_ids"]) + [-1] * (most - len(e["unlikely_ids"]))
                                                for e in examples])
        return out

    return batch


class Sampler:
    """Samples and scores completions for prompts the way the recipe decodes them (see the module docstring)."""

    def __init__(self, model: Any, tokenizer: Any, decoding: Any, rewards: Sequence[Any], labels: Sequence[str],
                 args: Any):
        from rlft.decoding.generation import eos_token_ids
        from rlft.decoding.prompting import build_trie

        self.model, self.tokenizer, self.decoding, self.rewards, self.args = model, tokenizer, decoding, rewards, args
        self.trie = build_trie(tokenizer, labels, decoding) if decoding.constrain_labels else None
        self.eos = eos_token_ids(model, tokenizer)
        pad = tokenizer.pad_token_id
        self.pad = tokenizer.eos_token_id if pad is None else pad
        self.max_new_tokens = int(args.max_completion_length)
        reply_stops = self.trie.reply_stop_ids if self.trie is not None else ()
        self.stop_ids = sorted({*self.eos, *reply_stops})  # what ends a reply: EOS, or a reply stop token

    def sample(self, prompt_ids: list[list[int]], n: int, seed: int | None) -> list[list[int]]:
        """`n` completions per prompt (consecutive) with the trainer's sampling, or the greedy one (`seed` None); a
        row ends at its first EOS (`generate_ids` stops it there)."""
        import torch

        from rlft.decoding.generation import generate_ids

        with torch.no_grad():
            return generate_ids(self.model, prompt_ids, max_new_tokens=self.max_new_tokens, eos_token_ids=self.eos,
                                pad_token_id=self.pad, trie=self.trie, sampling=self._sampling(n, seed),
                                batch_size=32)

    def _sampling(self, n: int, seed: int | None) -> Any:  # a rlft.decoding.generation.Sampling
        from rlft.decoding.generation import Sampling

        return Sampling(n=n) if seed is None else Sampling.like(self.args, n, seed)  # Sampling(): greedy

    def hinted(self, prompt_ids: list[list[int]], completions: list[list[int]], hints: Sequence[str],
               hint_index: Sequence[int], seed: int | None) -> tuple[list[list[int]], list[int]]:
        """Each completion continued after its hint (`hints[hint_index[k]]` for completion k) with the trainer's
        sampling, or greedily (`seed` None); returns them and the indices actually hinted (a reply that did not end
        by itself, or has no room left, is not)."""
        import torch

        from rlft.decoding.generation import generate_ids
        from rlft.grpo.hints import extend_with_hints

        hint_ids = [self.tokenizer.encode(h, add_special_tokens=False) for h in hints]

        def continue_from(prefixes: list[list[int]], max_new: int, stop: Any) -> list[list[int]]:
            with torch.no_grad():
                return generate_ids(self.model, prefixes, max_new_tokens=max_new, eos_token_ids=self.eos,
                                    pad_token_id=self.pad, sampling=self._sampling(1, seed),
                                    batch_size=32, stop=stop)

        return extend_with_hints(completions, prompt_ids, range(len(completions)), hint_ids, hint_index.__getitem__,
                                 self.trie, self.eos, self.max_new_tokens, continue_from)

    def sentence_cuts(self, completion: Sequence[int]) -> list[list[int]]:
        """The completion cut after each sentence of its reply but the last, each ended by the completion's own EOS
        (the points `rft.hint_at: sentences` tries the hints at besides the reply's end; `sentence_ends`). [] for a
        completion that did not end by itself or whose reply never opened."""
        ids = list(completion)
        if not ids or ids[-1] not in self.eos:
            return []
        body = ids[:-1]
        state, start = self.trie.locate(body)
        if self.trie.states[state] is not self.trie.reply:
            return []
        texts = [self.tokenizer.decode([t]) for t in body[start:]]
        return [body[:start + i + 1] + [ids[-1]] for i in sentence_ends(texts)]

    def texts(self, completions: Sequence[Sequence[int]]) -> list[str]:
        from rlft.decoding.generation import completion_texts

        return completion_texts(self.tokenizer, completions, self.decoding, self.trie)

    def score(self, rows: Any, prompt_of: Sequence[int], texts: Sequence[str]) -> Any:  # rlft.scoring Scores
        from rlft.scoring.completions import score

        table = {c: list(rows[c]) for c in rows.column_names}
        columns = {c: [values[p] for p in prompt_of] for c, values in table.items() if c != "prompt"}
        return score(self.rewards, [table["prompt"][p] for p in prompt_of], texts, columns)

    def head_lengths(self, completions: Sequence[Sequence[int]]) -> list[int]:
        from rlft.grpo.segments import head_lengths

        return head_lengths(completions, self.trie, self.tokenizer, self.decoding.label_suffix)[0]


def collect(sampler: Sampler, rows: Any, cfg: Any, seed: int) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Steps 1-4 of the module docstring for the dataset `rows` (a `prompt` column and the reward columns): the kept
    completions (prompt index, ids, text, reward, hint) and a summary."""
    from rlft.decoding.prompting import prompt_ids as decoding_prompt_ids

    start = time.process_time()
    prompts = [decoding_prompt_ids(sampler.tokenizer, p, sampler.decoding) for p in rows["prompt"]]
    completions = sampler.sample(prompts, cfg.samples, seed)
    texts = sampler.texts(completions)
    prompt_of = [p for p in range(len(prompts)) for _ in range(cfg.samples)]
    scores = sampler.score(rows, prompt_of, texts)
    totals, per_reward = scores.total, scores.per_reward
    hint_of: list[str] = [""] * len(completions)
    departures: list[tuple[int, list[int]] | None] = [None] * len(completions)  # where it leaves a failing reply
    best = best_per_prompt(prompt_of, totals, cfg.min_reward, cfg.keep_per_prompt, completions)
    failing = [p for p in range(len(prompts)) if p not in best]
    tried = greedy_kept = 0

    def add(new: list[list[int]], new_prompt_of: list[int], hints: list[str],
            new_departures: list[tuple[int, list[int]] | None]) -> None:
        """Score `new` completions and list them beside the others."""
        nonlocal totals, per_reward
        new_texts = sampler.texts(new)
        new_scores = sampler.score(rows, new_prompt_of, new_texts)
        totals = totals + new_scores.total
        per_reward = {name: values + new_scores.per_reward[name] for name, values in per_reward.items()}
        completions.extend(new)
        texts.extend(new_texts)
        prompt_of.extend(new_prompt_of)
        hint_of.extend(hints)
        departures.extend(new_departures)

    if cfg.hints and failing:
        if cfg.hint_from == "greedy":  # the deployed reply of each failing prompt, continued greedily after the hint
            greedy = dict(zip(failing, sampler.sample([prompts[p] for p in failing], 1, None), strict=True))
            if cfg.keep_passing_greedy:  # a prompt whose deployed reply passes keeps it and is not hinted
                add([greedy[p] for p in failing], list(failing), [""] * len(failing), [None] * len(failing))
                best = best_per_prompt(prompt_of, totals, cfg.min_reward, cfg.keep_per_prompt, completions)
                greedy_kept = sum(p in best for p in failing)
                failing = [p for p in failing if p not in best]
            start_of, continue_seed = (lambda p, k: greedy[p]), None
        else:  # one of the prompt's sampled replies, continued with the trainer's sampling
            start_of, continue_seed = (lambda p, k: completions[p * cfg.samples + k % cfg.samples]), seed + 1
        cuts: dict[tuple[int, ...], list[list[int]]] = {}  # greedy: one reply per prompt, cut once for all hints

        def starts(p: int, k: int) -> list[tuple[list[int], list[int]]]:
            """(the reply hint k goes after, the reply it is cut from): the whole reply, then its sentence cuts"""
            whole = start_of(p, k)
            if cfg.hint_at != "sentences":
                return [(whole, whole)]
            key = tuple(whole)
            if key not in cuts:
                cuts[key] = sampler.sentence_cuts(whole)
            return [(whole, whole), *((cut, whole) for cut in cuts[key])]

        bases = [(p, k, ids, whole) for p in failing for k in range(len(cfg.hints)) for ids, whole in starts(p, k)]
        extended, done = sampler.hinted([prompts[p] for p, _, _, _ in bases], [ids for _, _, ids, _ in bases],
                                        cfg.hints, [k for _, k, _, _ in bases], continue_seed) if bases else ([], [])
        tried = len(done)
        if done:
            add([extended[k] for k in done], [bases[k][0] for k in done], [cfg.hints[bases[k][1]] for k in done],
                [departure(bases[k][3], extended[k], sampler.stop_ids) for k in done])
            best = best_per_prompt(prompt_of, totals, cfg.min_reward, cfg.keep_per_prompt, completions)
    chosen = [(p, i) for p in sorted(best) for i in best[p]]  # (prompt, completion index), in prompt order
    greedy_failed = 0
    if cfg.unlikelihood and cfg.departures == "all":  # kept samples of prompts whose deployed reply fails
        sampled = [(p, i) for p, i in chosen if i < len(prompts) * cfg.samples]  # the first completions: samples
        own = sorted({p for p, _ in sampled})
        if own:
            replies = dict(zip(own, sampler.sample([prompts[p] for p in own], 1, None), strict=True))
            reply_totals = dict(zip(own, sampler.score(rows, own, sampler.texts([replies[p] for p in own])).total,
                                    strict=True))
            failed = {p for p in own if reply_totals[p] is None or reply_totals[p] < cfg.min_reward}
            greedy_failed = len(failed)
            for p, i in sampled:
                if p in failed:
                    departures[i] = departure(replies[p], completions[i], sampler.stop_ids)

    def values_of(i: int) -> dict[str, float | None]:  # completion i's value of each reward
        return {name: values[i] for name, values in per_reward.items()}

    kept = [{"prompt": p, "prompt_ids": prompts[p], "completion_ids": completions[i], "text": texts[i],
             "reward": totals[i], "rewards": values_of(i), "hint": hint_of[i], "head_only": False,
             "departure": departures[i]} for p, i in chosen]
    if cfg.head_reward:
        heads_only = head_only_picks(prompt_of, per_reward[cfg.head_reward], cfg.head_min_reward, set(best))
        lengths = sampler.head_lengths([completions[i] for i in heads_only])
        cut = [completions[i][:n] for i, n in zip(heads_only, lengths)]
        kept += [{"prompt": prompt_of[i], "prompt_ids": prompts[prompt_of[i]], "completion_ids": ids, "text": text,
                  "reward": totals[i], "rewards": values_of(i), "hint": "", "head_only": True, "departure": None}
                 for i, ids, text in zip(heads_only, cut, sampler.texts(cut))]
    scored = [t for t in totals if t is not None]
    summary = {"prompts": len(prompts), "samples": cfg.samples, "completions": len(completions),
               "hinted_tried": tried, "greedy_kept": greedy_kept, **kept_counts(kept),
               "greedy_failed_kept_sample": greedy_failed,
               "departures": sum(k["departure"] is not None for k in kept),
               "best_reward": max(scored) if scored else None, "min_reward": cfg.min_reward,
               "sampling_cpu_s": round(time.process_time() - start, 1)}
    return kept, summary


def kept_counts(kept: Sequence[dict[str, Any]]) -> dict[str, int]:
    """The summary's counts of a kept list: whole completions, heads only, and whole ones kept after a hint."""
    return {"kept": sum(not k["head_only"] for k in kept), "heads_only": sum(k["head_only"] for k in kept),
            "kept_after_hint": sum(bool(k["hint"]) for k in kept)}


def share(rows: int, index: int, processes: int) -> list[int]:
    """The picked rows process `index` of `processes` samples: every `processes`-th from its own index on (the picks
    take turns over the labels, so each process gets every label's turn alike)."""
    return list(range(index, rows, processes))


def merge(shards: Sequence[tuple[Sequence[int], list[dict[str, Any]], dict[str, Any] | None]],
          ) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """One round's kept completions and summary from each process's (its `share` of the picked rows, `collect` over
    them, or None for a summary when the share was empty), in process order: listed as one process lists them (the
    whole completions by prompt, a prompt's best first, then the heads only by prompt), each `prompt` an index into
    all picked rows; the counts and `sampling_cpu_s` summed, `best_reward` the best of all, plus `processes` and
    `sampling_cpu_s_per_process`."""
    kept = [{**k, "prompt": indices[k["prompt"]]} for indices, shard, _ in shards for k in shard]
    kept.sort(key=lambda k: (k["head_only"], k["prompt"]))  # stable: a prompt's completions keep their order
    summaries = [s for _, _, s in shards if s is not None]
    summary = dict(summaries[0])
    for key in ("prompts", "completions", "hinted_tried", "greedy_kept", "greedy_failed_kept_sample", "departures",
                *kept_counts([])):
        summary[key] = sum(s[key] for s in summaries)
    best = [s["best_reward"] for s in summaries if s["best_reward"] is not None]
    summary["best_reward"] = max(best) if best else None
    per_process = [s["sampling_cpu_s"] if s is not None else 0.0 for _, _, s in shards]
    summary["sampling_cpu_s"] = round(sum(per_process), 1)
    summary["processes"] = len(shards)
    summary["sampling_cpu_s_per_process"] = per_process
    return kept, summary


def collect_shared(sampler: Sampler, rows: Any, cfg: Any, seed: int) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """`collect` over all `rows` in one process; with several, over this process's `share`, then gathered from all
    of them (`merge`), so every process returns the same kept list and summary."""
    from accelerate import PartialState
    from accelerate.utils import gather_object

    state = PartialState()  # the one the trainer config set up (build_args), with its device and backend
    if state.num_processes == 1:
        return collect(sampler, rows, cfg, seed)
    indices = share(len(rows), state.process_index, state.num_processes)
    kept, summary = collect(sampler, rows.select(indices), cfg, seed) if indices else ([], None)
    return merge(gather_object([(indices, kept, summary)]))  # one entry per process, in process order


def build_trainer(ctx: TrainContext) -> Any:
    from accelerate import PartialState
    from datasets import Dataset
    from transformers import Trainer

    from rlft.trainers.args import build_args

    recipe, cfg = ctx.recipe, ctx.recipe.rft
    where = recipe.source_file or "recipe"
    if "prompt" not in ctx.train_dataset.column_names:
        raise RecipeError(f"{where}: data: rft needs prompt rows (data.prompt_template over your columns)")
    args = build_args(recipe, ctx.device, **{"remove_unused_columns": False, **ctx.args_overrides})
    label_column = recipe.data.label_column
    labels = ctx.train_dataset[label_column] if label_column in ctx.train_dataset.column_names else None
    seed = recipe.seed + cfg.round - 1  # a later round draws other prompts (the split stays the recipe seed's)
    rows = ctx.train_dataset.select(pick_prompts(labels, len(ctx.train_dataset), cfg.prompts, seed))
    sampler = Sampler(ctx.model, ctx.tokenizer, recipe.decoding, ctx.rewards, ctx.labels, args)
    kept, summary = collect_shared(sampler, rows, cfg, seed)
    picked_prompts = list(rows["prompt"])
    picked_labels = list(rows[label_column]) if labels is not None else None
    if picked_labels is not None:
        summary["kept_per_label"] = dict(sorted(Counter(picked_labels[k["prompt"]] for k in kept
                                                        if not k["head_only"]).items()))
        if cfg.head_reward:
            summary["heads_only_per_label"] = dict(sorted(Counter(picked_labels[k["prompt"]] for k in kept
                                                                  if k["head_only"]).items()))
        summary["prompts_per_label"] = dict(sorted(Counter(picked_labels).items()))
    out = Path(recipe.output_dir)
    if PartialState().is_main_process:  # every process holds the same kept list (collect_shared)
        out.mkdir(parents=True, exist_ok=True)
        with (out / "rft_samples.jsonl").open("w") as f:
            for k in kept:
                row = {"prompt": picked_prompts[k["prompt"]], "completion": k["text"], "reward": k["reward"],
                       "rewards": k["rewards"], "hint": k["hint"], "head_only": k["head_only"]}
                if picked_labels is not None:
                    row[label_column] = picked_labels[k["prompt"]]
                f.write(json.dumps(row) + "\n")
        (out / "rft_summary.json").write_text(json.dumps(summary, indent=1) + "\n")
        heads = f" + {summary['heads_only']} heads only" if cfg.head_reward else ""
        print(f"[rlft] rft: {summary['prompts']} prompts x {cfg.samples} samples (+{summary['hinted_tried']} hinted): "
              f"kept {summary['kept']} reaching {cfg.min_reward} ({summary['kept_after_hint']} after a hint){heads} "
              f"in {summary['sampling_cpu_s']:.0f} CPU s; {out / 'rft_samples.jsonl'}", flush=True)
    if not kept:
        best = summary["best_reward"]
        raise RecipeError(f"{where}: rft.min_reward: no sampled completion of the {summary['prompts']} prompts "
                          f"reached {cfg.min_reward} (best {best if best is None else round(best, 3)}); lower it, "
                          f"add rft.hints, or start from a stronger adapter (adapter.init_from)")
    unlikely = cfg.unlikelihood > 0
    examples = [example for k in kept  # a hinted completion tokenised once, listed hint_repeat times
                for example in [training_example(k["prompt_ids"], k["completion_ids"], sampler.trie,
                                                 k["departure"], unlikely)]
                * (cfg.hint_repeat if k["hint"] else 1)]
    settings = dict(model=ctx.model, args=args, train_dataset=Dataset.from_list(examples),
                    data_collator=collate(sampler.pad), processing_class=ctx.tokenizer, callbacks=ctx.callbacks or None)
    if unlikely:
        from rlft.trainers.unlikelihood import UnlikelihoodTrainer

        return UnlikelihoodTrainer(unlikelihood=cfg.unlikelihood, **settings)
    return Trainer(**settings)
