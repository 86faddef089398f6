"""`rlft label` and `rlft generate`: parse arguments and hand off to `rlft.data.labeling` / `rlft.data.synthetic`.

    rlft label recipes/intent_grpo.yaml --out runs/labels --n 4 --split train
    rlft label data.source=prompts.jsonl model.name=/path/to/model --reward judge --out runs/labels
    rlft generate --out data/synthetic.jsonl --aspects "refund handling" "shipping communication"
    rlft generate --config synthetic.yaml --generator openai --base-url http://localhost:8000/v1

`rlft.cli` mounts both with `add_label_parser(sub)` and `add_generate_parser(sub)`; each sets `func`, which
returns the exit code. User mistakes raise `UserError` (one line, exit 2) like the rest of the CLI.
"""

from __future__ import annotations

import argparse
import json
from typing import Any

from rlft.errors import RecipeError, UserError


def _set(raw: dict[str, Any], parts: list[str], value: Any) -> None:
    node = raw
    for part in parts[:-1]:
        node = node.setdefault(part, {})
        if not isinstance(node, dict):
            raise RecipeError(f"command line: {'.'.join(parts)}: '{part}' is not a section")
    node[parts[-1]] = value


def recipe_from_args(args: list[str], rewards: list[str] | None = None) -> Any:
    """A Recipe from `[RECIPE.yaml] [key=value ...]` (defaults when no file), plus `--reward` names."""
    from rlft.data.reading import check_source
    from rlft.run.models import check_model_source
    from rlft.recipe.load import build_recipe, load_recipe, parse_override
    from rlft.scoring.loader import RewardSpec

    path = args[0] if args and "=" not in args[0] else None
    overrides = args[1:] if path else args
    if path:
        recipe = load_recipe(path, overrides, check=False)
    else:
        raw: dict[str, Any] = {}
        for text in overrides:
            parts, value = parse_override(text)
            _set(raw, parts, value)
        recipe = build_recipe(raw, file="command line")
    for name in rewards or []:
        recipe.rewards.append(RewardSpec(name=name))
    where = recipe.source_file or "command line"
    check_model_source(recipe.model, where)
    check_source(recipe.data.source, where)
    return recipe


def _label(args: argparse.Namespace) -> int:
    from rlft.data.labeling.label import LabelConfig, completion_tokens, label_dataset
    from rlft.data.labeling.sample import SamplingConfig

    recipe = recipe_from_args(args.args, args.reward)
    max_new_tokens = completion_tokens(recipe) if args.max_new_tokens is None else args.max_new_tokens
    sampling = SamplingConfig(n=args.n, temperature=args.temperature, top_p=args.top_p, top_k=args.top_k,
                              max_new_tokens=max_new_tokens, prompts_per_batch=args.prompts_per_batch,
                              seed=recipe.seed if args.seed is None else args.seed, prefill=args.prefill)
    label_cfg = LabelConfig(threshold=args.threshold, label_reward=args.label_reward, min_margin=args.min_margin,
                            pairs=args.pairs, chosen_min_score=args.chosen_min_score, kto_prompts=args.kto_prompts)
    result = label_dataset(recipe, args.out, sampling, label_cfg, split=args.split, limit=args.limit,
                           adapter=args.adapter, max_prompt_tokens=args.max_prompt_tokens, max_length=args.max_length,
                           overwrite=args.overwrite, progress=not args.quiet)
    s = result.summary
    kto, dpo = s["kto"], s["dpo"]
    print(f"[rlft label] {s['prompts']} prompts, {s['completions']} completions")
    print(f"[rlft label] KTO: {kto['rows']} rows, {kto['desirable']} desirable / {kto['undesirable']} undesirable, "
          f"dropped {kto['dropped']}")
    for problem in kto.get("problems", []):
        print(f"[rlft label] WARNING: {problem}")
    print(f"[rlft label] DPO: {dpo['pairs']} pairs from {dpo['prompts']} prompts, dropped {dpo['dropped']}")
    print(f"[rlft label] files in {result.out_dir}: " + ", ".join(p.name for p in result.files.values()))
    return 0


def add_label_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = sub.add_parser("label", help="sample completions, score them with rewards, write KTO/DPO sets",
                       description="Sample N completions per prompt, score them with the recipe's rewards and write "
                                   "kto.jsonl, dpo.jsonl, UBIAI/Tinker exports and summary.json. Resumable: rerun "
                                   "the same command to continue an interrupted run.")
    p.add_argument("args", nargs="*", metavar="RECIPE_OR_KEY=VALUE",
                   help="optional recipe YAML, then section.key=value overrides (e.g. data.source=prompts.jsonl)")
    p.add_argument("--out", required=True, help="output directory (records, sets, exports, summary)")
    p.add_argument("--reward", action="append", help="add a reward by name or import path (repeatable)")
    p.add_argument("--adapter", help="sample from base + this PEFT adapter (default: recipe adapter.init_from)")
    p.add_argument("--split", default="all", choices=("all", "train", "eval"),
                   help="which rows of the data: the recipe's seeded train/eval split or all (default: all)")
    p.add_argument("--limit", type=int, help="label only the first N prompts of the split")
    p.add_argument("--n", type=int, default=4, help="completions per prompt (default: 4)")
    p.add_argument("--temperature", type=float, default=0.7, help="sampling temperature (default: 0.7)")
    p.add_argument("--top-p", type=float, default=1.0)
    p.add_argument("--top-k", type=int, default=50, help="top-k filter (default: 50); 0 disables it")
    p.add_argument("--max-new-tokens", type=int,
                   help="completion length limit in tokens (default: the recipe's trainer.max_completion_length, "
                        "where its rollouts are cut; else 64)")
    p.add_argument("--prompts-per-batch", type=int, default=4, help="prompts per generate call (x n sequences)")
    p.add_argument("--seed", type=int, help="sampling seed (default: the recipe seed)")
    p.add_argument("--prefill", default="", help="text that starts every completion, e.g. '<intent>'")
    p.add_argument("--threshold", type=float, default=0.5, help="KTO: score >= threshold is desirable")
    p.add_argument("--label-reward", help="KTO: label by this reward (e.g. judge) instead of the weighted total")
    p.add_argument("--kto-prompts", default="all", choices=("all", "contrast"),
                   help="KTO: every prompt, or only prompts with both a desirable and an undesirable sample")
    p.add_argument("--min-margin", type=float, default=0.0, help="DPO: drop pairs whose score gap is smaller")
    p.add_argument("--pairs", default="best_vs_worst", choices=("best_vs_worst", "best_vs_rest"),
                   help="DPO: one best-vs-worst pair per prompt, or the best against every lower sample")
    p.add_argument("--chosen-min-score", type=float, help="DPO: drop pairs whose chosen score is below this")
    p.add_argument("--max-prompt-tokens", type=int, help="drop (and count) longer prompts before sampling")
    p.add_argument("--max-length", type=int, help="drop (and count) rows whose prompt leaves no room under this")
    p.add_argument("--overwrite", action="store_true", help="discard an earlier run in --out instead of resuming")
    p.add_argument("--quiet", action="store_true", help="no per-batch progress lines")
    p.set_defaults(func=_label)
    return p


def _generate(args: argparse.Namespace) -> int:
    from rlft.data.synthetic.generate import SyntheticConfig, generate_dataset, load_config, write_dataset

    overrides = {k: v for k, v in {
        "aspects": args.aspects, "personas_per_aspect": args.personas_per_aspect,
        "conversations_per_persona": args.conversations_per_persona, "generator": args.generator,
        "base_url": args.base_url, "model": args.model, "api_key_env": args.api_key_env, "seed": args.seed,
        "min_turns": args.min_turns, "max_turns": args.max_turns}.items() if v is not None}
    cfg = load_config(args.config, overrides) if args.config else SyntheticConfig(**overrides)
    rows, report = generate_dataset(cfg)
    path = write_dataset(rows, report, args.out)
    print(f"[rlft generate] {report['personas']} personas, {report['generated']} conversations, "
          f"{report['rejected']} rejected, duplicates removed {json.dumps(report['duplicates'])}")
    print(f"[rlft generate] {len(rows)} prompts in {path} (report: {path.name}.report.json)")
    if not rows:
        raise UserError("generate: no conversation passed the schema checks; see the report's 'retries'")
    return 0


def add_generate_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = sub.add_parser("generate", help="synthetic support conversations (personas -> conversations)",
                       description="Generate challenging personas per training aspect, then multi-turn conversations "
                                   "ending with an unanswered customer message; write a prompt dataset (JSONL) for "
                                   "`rlft label`.")
    p.add_argument("--out", required=True, help="output JSONL file")
    p.add_argument("--config", help="YAML with SyntheticConfig keys (flags override it)")
    p.add_argument("--aspects", nargs="+", help="training aspects (default: UBIAI's eight)")
    p.add_argument("--personas-per-aspect", type=int)
    p.add_argument("--conversations-per-persona", type=int)
    p.add_argument("--min-turns", type=int)
    p.add_argument("--max-turns", type=int)
    p.add_argument("--generator", choices=("template", "openai"), help="template (offline, default) or openai")
    p.add_argument("--base-url", help="OpenAI-compatible endpoint, e.g. http://localhost:8000/v1")
    p.add_argument("--model", help="model name at the endpoint")
    p.add_argument("--api-key-env", help="env var holding the API key (default OPENAI_API_KEY)")
    p.add_argument("--seed", type=int)
    p.set_defaults(func=_generate)
    return p
