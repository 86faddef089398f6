"""PPO vs GRPO on the demo intent task at the same generation budget: held-out accuracy and wall-clock.

Trains `recipes/intent_grpo.yaml` and `recipes/intent_ppo.yaml` (same model, data, reward, completions per step and
max_completion_length) with the same overrides, evaluates both before/after on the same held-out rows (greedy),
prints a table and writes `benchmarks/results/ppo_vs_grpo.json`. Wall-clock depends on the machine and on other
load: compare the two arms of one run, not runs across machines. `intent_grpo.yaml` now uses rlft's GRPO-only
signal features (prefill, label-constrained rollouts, a shorter prompt); for a plain like-for-like comparison pass
`--grpo-recipe` a GRPO recipe with intent_ppo.yaml's prompt and no `signal:` section.

    python benchmarks/ppo_vs_grpo.py                              # the recipes' budgets
    python benchmarks/ppo_vs_grpo.py --steps 4 --eval-samples 16  # a quick cost comparison
    # same wall-clock for both, side by side on a 2-core box (one thread each):
    python benchmarks/ppo_vs_grpo.py --only ppo --budget-minutes 15 --steps 1000 --threads 1 &
    python benchmarks/ppo_vs_grpo.py --only grpo --budget-minutes 15 --steps 1000 --threads 1
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
ARMS = {"grpo": ROOT / "recipes/intent_grpo.yaml", "ppo": ROOT / "recipes/intent_ppo.yaml"}


class WallClockBudget:
    """Stop training after `minutes` of wall-clock (checked at the end of each step)."""

    def __new__(cls, minutes: float):
        from transformers import TrainerCallback

        class _Budget(TrainerCallback):
            def on_train_begin(self, args, state, control, **kwargs):
                self.start = time.time()

            def on_step_end(self, args, state, control, **kwargs):
                if time.time() - self.start > minutes * 60:
                    control.should_training_stop = True

        return _Budget()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, help="trainer.max_steps for both arms (default: the recipes')")
    parser.add_argument("--budget-minutes", type=float, help="stop each arm after this much training wall-clock "
                                                             "(max_steps then only caps it)")
    parser.add_argument("--eval-samples", type=int, default=60)
    parser.add_argument("--threads", type=int, help="torch threads (1 each when the arms run side by side)")
    parser.add_argument("--only", choices=tuple(ARMS), action="append", help="run only these arms")
    parser.add_argument("--grpo-recipe", type=Path, default=ARMS["grpo"], help="GRPO arm's recipe")
    parser.add_argument("--out", default=str(ROOT / "benchmarks/results/ppo_vs_grpo.json"))
    args = parser.parse_args()

    import torch

    from rlft.run.pipeline import train

    if args.threads:
        torch.set_num_threads(args.threads)
    out = Path(args.out)
    for arm, recipe in {**ARMS, "grpo": args.grpo_recipe.resolve()}.items():
        if args.only and arm not in args.only:
            continue
        overrides = [f"output_dir=runs/bench_{arm}", f"evaluation.max_samples={args.eval_samples}"]
        if args.steps:
            overrides.append(f"trainer.max_steps={args.steps}")
        callbacks = [WallClockBudget(args.budget_minutes)] if args.budget_minutes else []
        start = time.time()
        result = train(recipe, overrides, callbacks=callbacks)
        m = result.metrics
        arm_result = {"recipe": str(recipe), "steps": m["global_step"], "train_seconds": m["train_seconds"],
                      "seconds_per_step": round(m["train_seconds"] / max(m["global_step"], 1), 1),
                      "total_seconds": round(time.time() - start, 1), "budget_minutes": args.budget_minutes,
                      "threads": torch.get_num_threads(), "overrides": overrides,
                      "command": "python benchmarks/ppo_vs_grpo.py " + " ".join(sys.argv[1:]),
                      "before": m.get("eval_before", {}), "after": m.get("eval_after", {})}
        # re-read before writing: the arms may run side by side as separate processes
        previous = json.loads(out.read_text()) if out.is_file() else {}
        results = previous.get("arms", {}) if previous.get("eval_samples") == args.eval_samples else {}
        results[arm] = arm_result
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps({"eval_samples": args.eval_samples, "arms": results}, indent=2))
    print(f"{'arm':<6}{'steps':>6}{'s/step':>8}{'acc before':>12}{'acc after':>11}{'format after':>14}")
    nan = float("nan")
    for arm, r in results.items():
        before, after = r["before"], r["after"]
        print(f"{arm:<6}{r['steps']:>6}{r['seconds_per_step']:>8}{before.get('intent_accuracy', nan):>12.3f}"
              f"{after.get('intent_accuracy', nan):>11.3f}{after.get('format_rate', nan):>14.3f}")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
