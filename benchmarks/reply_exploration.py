"""Can GRPO still learn an intent's policy from this adapter? Sampled replies per intent, scored by the gold rubric.

    python benchmarks/reply_exploration.py --adapter runs/agent90_s42 --adapter runs/agent90_s42_head \
        --recipe runs/agent90_s42/recipe.yaml --per-intent 3 --generations 8

GRPO learns from a prompt only when its sampled group disagrees: if all `--generations` replies to a prompt get the
same reward, the group's advantage is zero and the prompt teaches nothing (`zero-std` in training logs). This
script samples `--generations` replies per prompt the way training does (the recipe's decoding: constrained head,
the looked-up article, temperature 1) for `--per-intent` training rows of each intent, scores them with the
recipe's rubric against the GOLD intent's policy (the reward with weight 0 that the recipe logs, `rewards.N`
with `use_predicted_intent` unset), and prints per intent: the mean reward, the share of replies that pass the
rubric fully, and the share of prompts whose group is tied (no learning signal). An intent whose replies never pass
(`pass` 0.00 with `tied` 1.00) cannot be learned by more steps of the same recipe: the sampler never shows the
trainer a reply that does better.

`--template NAME=TEXT` (repeatable) also samples with another `decoding.lookup_template` (TEXT holds {article}).
Writes benchmarks/results/reply_exploration.json (or --out).
"""

from __future__ import annotations

import argparse
import collections
import dataclasses
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
RESULTS = ROOT / "benchmarks" / "results"


def gold_rubric(rewards: list[Any]) -> Any:
    """The recipe's rubric reward scored against the row's gold intent (not the model's chosen one)."""
    for reward in rewards:
        if "rubric" in reward.name and not getattr(reward.inner, "use_predicted_intent", False):
            return reward
    raise SystemExit("reply_exploration: the recipe has no rubric reward scored against the gold intent")


def pick_rows(rows: Any, label_column: str, per_intent: int) -> list[int]:
    """The first `per_intent` row indices of every label, in data order (deterministic)."""
    seen: collections.Counter = collections.Counter()
    picked = []
    for i, label in enumerate(rows[label_column]):
        if seen[label] < per_intent:
            seen[label] += 1
            picked.append(i)
    return picked


def per_label(labels: list[str], scores: list[float], generations: int) -> dict[str, dict[str, Any]]:
    """Per label: prompts, mean reward, share of replies scoring 1 (`pass`) and share of prompts whose
    `generations` replies all got the same reward (`tied`: GRPO's advantage is zero there, nothing is learned).
    `scores` holds `generations` consecutive scores per prompt, in `labels` order."""
    if len(scores) != len(labels) * generations:
        raise ValueError(f"expected {len(labels)} x {generations} scores, got {len(scores)}")
    per: dict[str, dict[str, Any]] = {}
    for label in sorted(set(labels)):
        groups = [scores[i * generations:(i + 1) * generations] for i, gold in enumerate(labels) if gold == label]
        flat = [s for group in groups for s in group]
        per[label] = {"prompts": len(groups), "mean": round(statistics.fmean(flat), 3),
                      "pass": round(sum(s >= 1.0 for s in flat) / len(flat), 3),
                      "tied": round(sum(len(set(group)) == 1 for group in groups) / len(groups), 3)}
    return per


def load_adapter(recipe: Any, adapter: str) -> tuple[Any, Any]:
    """The recipe's base model (CPU, fp32) with `adapter` on it, in eval mode, and its tokenizer."""
    from peft import PeftModel

    from rlft.run.models import load_model

    model, tokenizer = load_model(recipe.model, dataclasses.replace(recipe.adapter, type="none", init_from=None),
                                  "cpu")
    model = PeftModel.from_pretrained(model, adapter)
    model.eval()
    return model, tokenizer


def explore(model: Any, tokenizer: Any, rubric: Any, recipe: Any, rows: Any, labels: list[str],
            template: str | None, generations: int, max_new_tokens: int, seed: int) -> dict[str, Any]:
    """Sample `generations` replies per row under the recipe's decoding (or `template` as its lookup) and score
    them with the gold-intent `rubric`."""
    import torch

    from rlft.decoding.generation import Sampling, generate

    decoding = recipe.decoding if template is None else dataclasses.replace(recipe.decoding,
                                                                              lookup_template=template)
    prompts = list(rows["prompt"])
    sampling = Sampling(temperature=float(recipe.trainer.get("temperature", 1.0)), n=generations, seed=seed)
    start = time.process_time()
    with torch.no_grad():
        completions = generate(model, tokenizer, prompts, decoding, labels, max_new_tokens=max_new_tokens,
                               batch_size=32, sampling=sampling)
    cpu_s = time.process_time() - start
    repeat = lambda values: [v for v in values for _ in range(generations)]  # noqa: E731
    columns = {c: repeat(rows[c]) for c in rows.column_names if c != "prompt"}
    scores = rubric.func(repeat(prompts), completions, **columns)
    gold = list(rows[recipe.data.label_column])
    per = per_label(gold, scores, generations)
    for label, row in per.items():
        row["example"] = completions[gold.index(label) * generations][:200]
    return {"template": template or recipe.decoding.lookup_template, "cpu_s": round(cpu_s, 1),
            "mean": round(statistics.fmean(scores), 3), "pass": round(sum(s >= 1.0 for s in scores) / len(scores), 3),
            "per_intent": per}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--adapter", action="append", required=True, help="a LoRA adapter directory (repeatable)")
    parser.add_argument("--recipe", required=True, help="the stage-2 recipe (its rubric, decoding and data)")
    parser.add_argument("--per-intent", type=int, default=3)
    parser.add_argument("--intent", action="append", default=[], help="only rows of this intent (repeatable; "
                        "default: every intent)")
    parser.add_argument("--generations", type=int, default=8)
    parser.add_argument("--max-new-tokens", type=int, default=None,
                        help="default: the recipe's trainer.max_completion_length (head, looked-up text and reply)")
    parser.add_argument("--template", action="append", default=[], help="NAME=TEXT: another lookup_template")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default=str(RESULTS / "reply_exploration.json"))
    args = parser.parse_args(argv)

    import torch

    from rlft.data.loading import prepare
    from rlft.recipe.load import load_recipe
    from rlft.scoring.for_recipe import load_recipe_rewards

    torch.set_num_threads(1)
    recipe = load_recipe(args.recipe, ["adapter.init_from=null"], check=False)
    data = prepare(recipe.data, "grpo", recipe.seed)
    picked = pick_rows(data.train, recipe.data.label_column, args.per_intent)
    if args.intent:
        wanted = set(args.intent)
        if wanted - set(data.labels):
            raise SystemExit(f"reply_exploration: --intent {sorted(wanted - set(data.labels))}: not a label of "
                             f"{args.recipe}")
        picked = [i for i in picked if data.train[i][recipe.data.label_column] in wanted]
    rows = data.train.select(picked)
    labels = list(data.labels)
    rubric = gold_rubric(load_recipe_rewards(recipe, labels, [rows]))
    max_new = args.max_new_tokens or int(recipe.trainer.get("max_completion_length", 160))
    templates: list[tuple[str, str | None]] = [("recipe", None)]
    for item in args.template:
        name, _, text = item.partition("=")
        templates.append((name, text.encode().decode("unicode_escape")))
    results = []
    for adapter in args.adapter:
        model, tokenizer = load_adapter(recipe, adapter)  # once per adapter, whatever the number of templates
        for name, text in templates:
            result = {"name": name, "adapter": adapter,
                      **explore(model, tokenizer, rubric, recipe, rows, labels, text, args.generations, max_new,
                                args.seed)}
            results.append(result)
            print(f"\n{adapter} [{name}]  mean {result['mean']:.3f}  pass {result['pass']:.3f}  "
                  f"({result['cpu_s']:.0f} CPU s)")
            print(f"  {'intent':<26}{'mean':>6}{'pass':>6}{'tied':>6}")
            for label, row in result["per_intent"].items():
                print(f"  {label:<26}{row['mean']:>6.2f}{row['pass']:>6.2f}{row['tied']:>6.2f}")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps({"recipe": args.recipe, "per_intent": args.per_intent,
                                          "max_new_tokens": max_new, "generations": args.generations,
                                          "seed": args.seed,
                                          "results": results}, indent=1) + "\n")
    print(f"\nwrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
