"""One rft round's collection (steps 1-4 of rlft.trainers.rft): sample, score, hint the failing prompts, keep the
best, in one process or split over several (`share`, `merge`)."""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

from rlft.trainers.rft.sampler import Sampler
from rlft.trainers.rft.selection import best_per_prompt, departure, head_only_picks


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
