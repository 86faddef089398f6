"""The rft trainer (the algorithm and its steps: rlft.trainers.rft): the recipe's checks, then one round (sample,
keep, write rft_samples.jsonl and rft_summary.json) and the `transformers.Trainer` that fine-tunes on it."""

from __future__ import annotations

import json
import math
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

from rlft.errors import RecipeError
from rlft.trainers.context import TrainContext
from rlft.trainers.rft.collect import collect_shared
from rlft.trainers.rft.examples import collate, training_example
from rlft.trainers.rft.sampler import Sampler
from rlft.trainers.rft.selection import pick_prompts

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
                    data_collator=collate(sampler.pad), processing_class=ctx.tokenizer,
                    callbacks=ctx.callbacks or None)
    if unlikely:
        from rlft.trainers.rft.unlikelihood import UnlikelihoodTrainer

        return UnlikelihoodTrainer(unlikelihood=cfg.unlikelihood, **settings)
    return Trainer(**settings)
