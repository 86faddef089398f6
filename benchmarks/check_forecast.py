"""`rlft check`'s step-time forecast against the measured step time of a short real training of the same recipe.

    OMP_NUM_THREADS=1 python benchmarks/check_forecast.py [--recipe recipes/intent_grpo.yaml] [--steps 5]
    # -> a table, and benchmarks/results/check_forecast.json

Both run in fresh processes with the same thread count (rlft.run.threads). The measured figure is the median of the
trainer's per-step times (metrics.json log_history `step_time`), step 1 excluded (warm-up). Prints, no asserts:
timings depend on the machine and what else runs on it (the result file records the load average).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--recipe", default="recipes/intent_grpo.yaml")
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "check_forecast.json"))
    args = parser.parse_args()
    env = {**os.environ, "PYTHONPATH": f"{ROOT}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    rlft = [sys.executable, "-m", "rlft"]
    load_before = os.getloadavg()[0]
    check = subprocess.run([*rlft, "check", args.recipe], cwd=ROOT, env=env, capture_output=True, text=True)
    found = re.search(r"step estimate ~([0-9.]+) s", check.stdout)
    if check.returncode != 0 or not found:
        sys.exit(f"rlft check failed ({check.returncode}):\n{check.stdout[-2000:]}\n{check.stderr[-2000:]}")
    forecast = float(found.group(1))
    detail = next(line for line in check.stdout.splitlines() if "step estimate" in line)
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "run"
        train = subprocess.run([*rlft, "train", args.recipe, f"trainer.max_steps={args.steps}",
                                "trainer.logging_steps=1", f"output_dir={out}", "evaluation.before=false",
                                "evaluation.after=false"], cwd=ROOT, env=env, capture_output=True, text=True)
        if train.returncode != 0:
            sys.exit(f"rlft train failed ({train.returncode}):\n{train.stderr[-2000:]}")
        metrics = json.loads((out / "metrics.json").read_text())
    times = [h["step_time"] for h in metrics["log_history"] if "step_time" in h]
    measured = statistics.median(times[1:] or times)
    result = {"recipe": args.recipe, "steps": args.steps, "forecast_s_per_step": forecast,
              "measured_s_per_step": round(measured, 3), "step_times": [round(t, 3) for t in times],
              "ratio_forecast_over_measured": round(forecast / measured, 3), "check_line": detail,
              "omp_num_threads": os.environ.get("OMP_NUM_THREADS"), "cpu_count": os.cpu_count(),
              "loadavg_before": round(load_before, 2), "loadavg_after": round(os.getloadavg()[0], 2)}
    print(f"| recipe | forecast s/step | measured s/step (median, step 1 excluded) | forecast / measured |")
    print(f"|---|---|---|---|")
    print(f"| {args.recipe} | {forecast:.2f} | {measured:.2f} | {forecast / measured:.2f} |")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    print(f"-> {args.out}")


if __name__ == "__main__":
    main()
