"""Judge-rubric agreement: a real model as the policy judge, graded against the rubric's verdicts (Cohen's kappa).

    python benchmarks/judge_agreement.py --traces runs/support_agent_phased/report/traces.jsonl
    python benchmarks/judge_agreement.py --traces T.jsonl --base-url http://127.0.0.1:8000/v1 --model NAME

The replies are those of an `rlft eval` (or end-of-training) report: `traces.jsonl` holds each held-out reply with
its `rubric` value. A reply passes the rubric when it meets every requirement of its intent's policy (value 1.0).
Those verdicts stand where `rlft eval --human-labels` expects human labels (the `rubric` column here), and the
recipe's judge reward grades the same replies exactly as in training: `rlft.evaluation.eval_models.judge_calibration`, the code
of the calibration gate (docs/evaluation.md#gate). The rubric is not a human: kappa here says how far the judge
agrees with the deterministic check the recipes train on, the issue's "judge-rubric agreement".

The judge (the recipe's `judge` reward, its intent gate off so every reply is judged against its row's policy):
- default: the script starts `transformers serve` on 127.0.0.1 with --judge (default: the embedded
  SmolLM2-135M-Instruct) on the CPU, fp32, and judges through HTTP with the openai SDK (the recipe's real path);
- --base-url URL --model NAME: a server that is already running (vLLM, an API, ...);
- --local: the same model in this process with `constrained: true` (it scores the allowed verdict lines instead
  of generating, so a small model always gives a verdict: docs/judge.md).
Prints one line per figure and writes benchmarks/results/judge_agreement<--tag>.json (kappa, agreement,
confusion, abstentions, judge call counts and seconds).
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

RESULTS = ROOT / "benchmarks" / "results"
JUDGE_REWARD = "judge"


def rubric_rows(traces: Path, models: list[str] | None) -> list[dict[str, str]]:
    """One row per traced reply with a rubric value: the data columns, the completion and the rubric verdict."""
    rows = []
    for line in traces.read_text().splitlines():
        record = json.loads(line)
        meta = record["metadata"]
        value = record["scores"].get("rubric", {}).get("value")
        if value is None or (models and meta["model"] not in models):
            continue
        columns = {k: str(v) for k, v in meta["columns"].items() if k in ("utterance", "intent")}
        rows.append({**columns, "completion": record["output"]["completion"], "model": meta["model"],
                     "rubric": "pass" if float(value) >= 1.0 else "fail"})
    if not rows:
        raise SystemExit(f"error: {traces}: no reply with a 'rubric' score (is it an rlft report of a rubric recipe?)")
    return rows


def write_csv(rows: list[dict[str, str]], path: Path) -> Path:
    with path.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return path


def main(argv: list[str] | None = None) -> dict[str, Any]:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--traces", type=Path, required=True, help="traces.jsonl of an rlft report (rubric recipe)")
    p.add_argument("--models", nargs="*", default=None, help="only these report models (default: every one)")
    p.add_argument("--recipe", default="recipes/support_agent_judge.yaml")
    p.add_argument("--judge", default=None, help="model directory transformers serve loads (default: embedded)")
    p.add_argument("--base-url", default=None, help="use this running OpenAI-compatible server instead")
    p.add_argument("--model", default=None, help="with --base-url: the model name it serves")
    p.add_argument("--local", action="store_true", help="judge in this process, verdicts scored (constrained)")
    p.add_argument("--max-tokens", type=int, default=48, help="judge reply length (the verdict comes first)")
    p.add_argument("--tag", default="", help="suffix of the result file")
    p.add_argument("--out", type=Path, default=RESULTS, help="folder of the result file")
    ns = p.parse_args(argv)

    import rlft
    from rlft.evaluation.eval_models import judge_calibration, load_eval_rows
    from rlft.scoring.for_recipe import load_recipe_rewards

    from rlft.recipe.sections import ModelConfig
    from rlft.run.models import resolve_model_path

    rows = rubric_rows(ns.traces, ns.models)
    tmp = Path(tempfile.mkdtemp(prefix="judge_agreement_"))
    labels_csv = write_csv(rows, tmp / "rubric_labels.csv")
    recipe_path = ns.recipe if Path(ns.recipe).exists() else ROOT / ns.recipe
    names = [spec.name for spec in rlft.load_recipe(recipe_path).rewards]
    if JUDGE_REWARD not in names:
        raise SystemExit(f"error: {ns.recipe}: the recipe has no '{JUDGE_REWARD}' reward")
    key = f"rewards.{names.index(JUDGE_REWARD)}.params"
    judge_dir = ns.judge or resolve_model_path(ModelConfig())
    settings = ["cache=null", "gate=null", f"max_tokens={ns.max_tokens}", f"audit_path={tmp / 'audit.jsonl'}"]
    server = None
    if ns.local:
        settings += ["backend=local", "base_url=null", f"model={judge_dir}", "constrained=true"]
    else:
        if ns.base_url is None:
            from tests.test_judge_serve import Served  # the real `transformers serve` launcher the tests use

            server = Served(Path(judge_dir), tmp)
            ns.base_url, ns.model = server.url, server.model
        # one request at a time: the CPU server answers serially, queued requests would only time out
        settings += [f"base_url={ns.base_url}", f"model={ns.model}", "timeout_s=300", "max_concurrency=1"]
    try:
        recipe = rlft.load_recipe(recipe_path, [f"{key}.{setting}" for setting in settings])
        eval_rows, labels = load_eval_rows(recipe, str(labels_csv), None)
        rewards = load_recipe_rewards(recipe, labels, [eval_rows])
        start = time.time()
        result = judge_calibration(recipe, rewards, str(labels_csv), label_column="rubric")
        seconds = time.time() - start
        judge = next(reward.inner for reward in rewards if reward.name == JUDGE_REWARD)
        stats = {**dict(judge.stats), "requests": judge.usage.requests,
                 "completion_tokens": judge.usage.completion_tokens}
    finally:
        if server is not None:
            server.stop()
    by_model = {m: sum(r["rubric"] == "pass" for r in rows if r["model"] == m) for m in {r["model"] for r in rows}}
    out = {"traces": str(ns.traces), "recipe": ns.recipe, "judge_model": Path(str(ns.model or judge_dir)).name,
           "judge_path": "local, constrained verdicts" if ns.local else f"openai SDK -> {ns.base_url}",
           "rows": len(rows),
           "rubric_pass_by_model": by_model, **{k: v for k, v in result.items() if k != "file"},
           "judge_stats": stats, "judge_seconds": round(seconds, 1),
           "command": "python benchmarks/judge_agreement.py " + " ".join(argv or sys.argv[1:])}
    path = ns.out / f"judge_agreement{ns.tag}.json"
    path.write_text(json.dumps(out, indent=2) + "\n")
    for key in ("rows", "n", "abstained", "agreement", "kappa", "confusion", "judge_stats", "judge_seconds"):
        print(f"{key:>12}: {out.get(key)}")
    print(f"wrote {path}")
    return out


if __name__ == "__main__":
    main()
