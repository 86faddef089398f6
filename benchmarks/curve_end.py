"""Does a run's curve end high? The periodic-evaluation curve of finished runs, side by side (issue 30, item 3).

    python benchmarks/curve_end.py constant=runs/curve/constant cosine=runs/curve/cosine ema=runs/curve/ema
    # -> a table, and benchmarks/results/curve_end.json
    python benchmarks/curve_end.py --add grouped_cosine=runs/grouped_cosine   # one more arm, the others kept

Reads each run's metrics.json, nothing else: `heldout_history` (the curve on the split periodic evaluation used,
`best.split`: "selection" when `evaluation.select_fraction` held rows back, else the reported held-out rows),
`best` and `eval_after`. Per run: the swing over the last third of the run (max - min of the points at or after
2/3 of its steps; target <= 2 points), the final point minus the best point (target within 1), and the final
adapter's held-out accuracy. One seed per run unless you pass several.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent


def curve_summary(metrics: dict[str, Any], metric: str = "intent_accuracy") -> dict[str, Any]:
    """The curve of one run's metrics.json and what the issue's targets read from it."""
    history = metrics.get("heldout_history") or []
    points = [(int(h["step"]), float(h[metric])) for h in history if metric in h and "step" in h]
    if not points:
        raise ValueError(f"no heldout_history with {metric}: train with evaluation.every_steps")
    last_step = points[-1][0]
    tail = [v for s, v in points if s >= last_step * 2 / 3]
    best = metrics.get("best") or {}
    after = (metrics.get("eval_after") or {}).get(metric)
    return {"curve": points, "split": best.get("split", "held-out"),
            "swing_last_third": round(max(tail) - min(tail), 4),
            "best_step": best.get("step"), "best": best.get("value"),
            "final_minus_best": round(points[-1][1] - max(v for _, v in points), 4),
            "final_heldout": after, "train_seconds": metrics.get("train_seconds")}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", help="NAME=RUN_DIR (a finished rlft train output folder)")
    parser.add_argument("--metric", default="intent_accuracy")
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "curve_end.json"))
    parser.add_argument("--add", action="store_true", help="keep the runs already in --out (their folders may be "
                        "gone) and add or replace these")
    args = parser.parse_args()
    out = Path(args.out)
    rows = json.loads(out.read_text()) if args.add and out.is_file() else {}
    for item in args.runs:
        name, _, run = item.partition("=")
        rows[name] = {"run": run, **curve_summary(json.loads((Path(run) / "metrics.json").read_text()), args.metric)}
    print(f"| run | curve ({args.metric}) | split | swing, last third | final - best | final, held-out |")
    print("|---|---|---|---:|---:|---:|")
    for name, r in rows.items():
        curve = " ".join(f"{v:.3f}" for _, v in r["curve"])
        final = "—" if r["final_heldout"] is None else f"{r['final_heldout']:.3f}"
        print(f"| {name} | {curve} | {r['split']} | {100 * r['swing_last_third']:.1f} | "
              f"{100 * r['final_minus_best']:+.1f} | {final} |")
    out.write_text(json.dumps(rows, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
