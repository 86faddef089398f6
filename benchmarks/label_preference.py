"""Do KTO and DPO on `rlft label` sets improve held-out intent accuracy over the base model?

Reads a labelling directory written from the *training* split of a prompt recipe (default
`recipes/label_intent.yaml`, `rlft label ... --split train`), trains `recipes/policy_kto.yaml` and
`recipes/policy_dpo.yaml` on its `kto.jsonl` / `dpo.jsonl`, and evaluates the base model and both adapters with
greedy decoding on the recipe's held-out split, which no labelling run saw. Every arm decodes after the same
prefill as the labelling run (`--prefill` to change it): DPO's log-ratios cancel on a prefix both completions
share, so a policy trained on prefilled samples is meant to be run with that prefill. Prints a table and writes
`benchmarks/results/label_preference.json`.

    rlft label recipes/label_intent.yaml --split train --limit 40 --n 6 --temperature 0.7 \
        --max-new-tokens 10 --prefill "<intent>" --out runs/label_intent
    python benchmarks/label_preference.py --label-dir runs/label_intent
    # DPO on the best sample vs every lower one, only when the best is correct (same records, no re-sampling):
    rlft label ...same flags... --pairs best_vs_rest --chosen-min-score 0.5 --out runs/label_intent_rest
    python benchmarks/label_preference.py --label-dir runs/label_intent_rest --only dpo --tag " best_vs_rest"
    # KTO only on prompts whose samples hold both labels (same records):
    rlft label ...same flags... --kto-prompts contrast --out runs/label_intent_contrast
    python benchmarks/label_preference.py --label-dir runs/label_intent_contrast --only kto --tag " contrast"
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def evaluate_adapter(recipe, eval_ds, labels, adapter_dir, args):
    from rlft.recipe.sections import AdapterConfig, DecodingConfig
    from rlft.evaluation.held_out import evaluate
    from rlft.run.models import load_model, resolve_device

    adapter = AdapterConfig(type="lora", init_from=str(adapter_dir)) if adapter_dir else AdapterConfig(type="none")
    model, tokenizer = load_model(recipe.model, adapter, resolve_device(recipe.model))
    report = evaluate(model, tokenizer, eval_ds, label_column=recipe.data.label_column, labels=labels,
                      max_samples=args.eval_samples, max_new_tokens=args.max_new_tokens, batch_size=16,
                      decoding=DecodingConfig(prefill=args.prefill))
    return report.metrics, report.samples[:4]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--prompt-recipe", default=str(ROOT / "recipes/label_intent.yaml"),
                        help="the recipe the labelling run used (its held-out split is evaluated)")
    parser.add_argument("--tag", default="", help="suffix for the arm names (compare labelling settings)")
    parser.add_argument("--label-dir", default="runs/label_intent")
    parser.add_argument("--steps", type=int, help="trainer.max_steps (default: the recipe's)")
    parser.add_argument("--eval-samples", type=int, default=60)
    parser.add_argument("--max-new-tokens", type=int, default=12)
    parser.add_argument("--prefill", help="decode every arm after this text (default: the labelling run's prefill, "
                                          "so each policy is evaluated the way its samples were drawn)")
    parser.add_argument("--out", default=str(ROOT / "benchmarks/results/label_preference.json"))
    parser.add_argument("--only", choices=("base", "kto", "dpo"), action="append", help="run only these arms")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="extra recipe override for the trained arms, e.g. trainer.learning_rate=1e-4")
    args = parser.parse_args()

    from rlft.data.loading import prepare
    from rlft.run.pipeline import train
    from rlft.recipe.load import load_recipe

    prompt_recipe = load_recipe(args.prompt_recipe, check=False)
    held_out = prepare(prompt_recipe.data, "grpo", prompt_recipe.seed)  # same split `rlft label --split train` used
    label_dir = Path(args.label_dir)
    summary = json.loads((label_dir / "summary.json").read_text())
    if args.prefill is None:
        args.prefill = summary["run"]["sampling"].get("prefill", "")
    out_path = Path(args.out)
    results = json.loads(out_path.read_text()) if out_path.is_file() else {}
    results.update({"label_dir": str(label_dir), "labelling": {k: summary[k] for k in ("prompts", "completions",
                                                                                       "kto", "dpo")},
                    "held_out_rows": min(args.eval_samples, len(held_out.eval)), "prefill": args.prefill,
                    "max_new_tokens": args.max_new_tokens})
    results.setdefault("arms", {})
    arms = args.only or ["base", "kto", "dpo"]
    for arm in arms:
        start = time.time()
        adapter_dir = None
        train_info = {}
        if arm != "base":
            run_dir = ROOT / "runs" / f"bench_label_{arm}"
            overrides = [f"data.source={label_dir / (arm + '.jsonl')}", "evaluation.before=false",
                         "evaluation.after=false", f"output_dir={run_dir}"]
            if args.steps:
                overrides.append(f"trainer.max_steps={args.steps}")
            overrides += args.set
            if arm == "kto" and "suggested_desirable_weight" in summary["kto"]:  # balance KTO's two classes
                overrides += [f"trainer.desirable_weight={summary['kto']['suggested_desirable_weight']}",
                              f"trainer.undesirable_weight={summary['kto']['suggested_undesirable_weight']}"]
            result = train(str(ROOT / f"recipes/policy_{arm}.yaml"), overrides)
            adapter_dir = result.adapter_dir
            train_info = {"train_rows": result.metrics["train_rows"], "train_seconds": result.metrics["train_seconds"],
                          "train_loss": result.metrics["train"].get("train_loss"), "overrides": overrides,
                          "steps": result.metrics["global_step"]}
        metrics, samples = evaluate_adapter(prompt_recipe, held_out.eval, held_out.labels, adapter_dir, args)
        name = arm + args.tag + (f" (prefill {args.prefill!r})" if args.prefill else "")
        results["arms"][name] = {**metrics, **train_info, "seconds": round(time.time() - start, 1), "samples": samples}
        out_path.parent.mkdir(parents=True, exist_ok=True)
        out_path.write_text(json.dumps(results, indent=2) + "\n")  # after each arm: a slow run keeps what it has
    print(f"{'arm':<24} {'intent_acc':>10} {'format':>8} {'macro_f1':>9} {'train_rows':>10} {'seconds':>8}")
    for arm, m in results["arms"].items():
        print(f"{arm:<24} {m['intent_accuracy']:>10.3f} {m['format_rate']:>8.3f} {m['macro_f1']:>9.3f} "
              f"{m.get('train_rows', '-'):>10} {m['seconds']:>8}")
    print(f"held-out rows: {results['held_out_rows']}; JSON: {out_path}")


if __name__ == "__main__":
    main()
