"""What a judge's GRPO signal is worth before training on it (issue 31): one set of real rollouts, many referees.

The judge-quality curve (benchmarks/judge_curve.py) trains one agent per referee, ~41 GRPO steps each: hours of CPU
an arm. This script asks the cheaper question those runs answer only at the end: on the SAME rollouts of the stage-2
start (the stage-1 head, the head-triggered lookup, 8 samples a prompt at temperature 1, as GRPO draws them), how
much of the rubric's teaching signal does each referee's reward carry? Every referee is called for real: the
judge arms go through `JudgeReward` (the recipe's own params from recipes/support_agent_bitext_judge.yaml: prompt
rendering, the openai SDK, injection guard, word-count cascade, votes, `gate: rubric`) to the SIMULATED judge
(benchmarks/simulated_judge.py: the rubric's verdict flipped at the arm's rate) served on loopback, once per draw
of the flips (`--draws`, each its own judge seed).

    rlft label recipes/support_agent_bitext.yaml --adapter runs/agent_s42_head --split train --limit 48 --n 8 \
        --temperature 1.0 --top-k 0 --seed 42 --out runs/signal_head          # and --seed 43 --out runs/signal_head_b
    python benchmarks/judge_signal.py --records runs/signal_head --records runs/signal_head_b rubric f0.1 f0.1k3 \
        f0.1s f0.1g0.25 f0.2 f0.2g0.25 f0.3 f0.3g0.25 --draws 5

Per arm (names as in judge_curve.py: f<rate>[k<votes>][g<min score>][s]), over the rollouts of every draw:

- **truth** is the gold intent's rubric (the `rubric` score in the records: what evaluation reports); a reply
  truly passes at 1.0.
- the arm's reply reward is what its recipe trains the reply on: `rubric_chosen` (the `rubric` arm, the shipped
  stage 2) or the judge (weight 1), plus the length reward (weight 0.5); abstentions take their group's mean
  (`rlft.scoring.abstain`), the group advantage is (reward - group mean) / group std, as TRL's GRPO computes it.
- `false credit`: the share of the referee's credit (the sum of its values) given to replies that truly fail.
- `groups ranked`: the share of prompts whose referee values are not all equal (a group of ties teaches nothing).
- `alignment`: the Pearson correlation, over all rollouts, of the arm's advantage with the truth's advantage (the
  gold rubric's score, centred and scaled within the group): how much of a GRPO step pushes towards replies the
  truth prefers. `vs rubric` divides it by the rubric arm's. `alignment with pass/fail`: the same against the truth's
  pass/fail verdict (1.0 or not) instead of its score.

Prints the table (mean and spread over draws) and writes benchmarks/results/judge_signal.json. A proxy: it scores
the first step's signal, not what 41 steps of it teach; docs/judge.md#judge-signal sets it beside the trained arms.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.judge_curve import GRPO_JUDGE_RECIPE, JUDGE_INDEX, RESULTS, parse_arm  # noqa: E402
from benchmarks.simulated_judge import simulated_stub  # noqa: E402
from rlft.report import canaries  # noqa: E402
from rlft.scoring.abstain import impute_abstentions  # noqa: E402

TRUTH, CHOSEN, LENGTH = "rubric", "rubric_chosen", "length"  # reward names in recipes/support_agent_bitext.yaml
LENGTH_WEIGHT = 0.5  # both stage-2 recipes weigh the length reward 0.5 and the reply's policy reward 1.0
EPS = 1e-4  # TRL's GRPO adds it to the group std
STEP_PROMPTS = 4  # the stage-2 recipes' GRPO step: 32 rollouts, 8 per prompt (one reward call each)


def read_records(folder: Path) -> list[dict[str, Any]]:
    """The labelling run's records (`rlft label ... --out FOLDER`); a one-line error when a score is missing."""
    path = folder / "records.jsonl"
    if not path.is_file():
        raise SystemExit(f"error: {path}: no records; run `rlft label` first (see this script's docstring)")
    records = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    for i, rec in enumerate(records, 1):
        missing = [k for k in (TRUTH, CHOSEN, LENGTH) if k not in rec["scores"]]
        if missing:
            raise SystemExit(f"error: {path}: record {i} has no {', '.join(missing)} score; label with "
                             "recipes/support_agent_bitext.yaml's rewards")
    return records


def judge_params(votes: int, mode: str, gate: float | None) -> dict[str, Any]:
    """The judge arm's params: the recipe's judge (rewards[3] of support_agent_bitext_judge.yaml) as judge_curve.py
    overrides it."""
    params = dict(yaml.safe_load(GRPO_JUDGE_RECIPE.read_text())["rewards"][JUDGE_INDEX]["params"])
    params.update(votes=votes, mode=mode, cache=None)
    if gate is not None:
        params.update(gate="rubric", gate_min_score=gate, skip_value=0.0)
    return params


def judge_values(records: list[dict[str, Any]], rate: float, votes: int, mode: str, gate: float | None,
                 seed: int) -> tuple[list[float | None], dict[str, Any]]:
    """Every rollout judged once by the simulated judge (flip rate `rate`, judge seed `seed`) through JudgeReward."""
    from rlft.rewards.judge import JudgeReward
    from tests.judge_stub_server import StubServer

    prompts = [r["prompt"] for r in records for _ in r["completions"]]
    completions = [c for r in records for c in r["completions"]]
    columns = {k: [r["columns"][k] for r in records for _ in r["completions"]] for k in records[0]["columns"]}
    stub = simulated_stub(flip_rate=rate, seed=seed)
    step = STEP_PROMPTS * len(records[0]["completions"])

    async def judge_all(reward: JudgeReward) -> list[float | None]:
        values: list[float | None] = []
        for start in range(0, len(completions), step):  # one reward call per GRPO step's rollouts, as in training
            values += await reward(prompts[start:start + step], completions[start:start + step],
                                   **{k: v[start:start + step] for k, v in columns.items()})
        return values

    with StubServer(stub) as url:
        params = judge_params(votes, mode, gate)
        params["base_url"] = url
        reward = JudgeReward(**params)
        values = asyncio.run(judge_all(reward))
        return values, {"requests": stub.requests, "statuses": dict(reward.stats)}


def group_advantages(values: list[float], size: int) -> list[float]:
    out = []
    for start in range(0, len(values), size):
        group = values[start:start + size]
        mean = sum(group) / len(group)
        std = statistics.pstdev(group) if len(group) > 1 else 0.0
        out.extend((v - mean) / (std + EPS) for v in group)
    return out


def pearson(xs: list[float], ys: list[float]) -> float:
    """rlft's Pearson correlation (`rlft.report.canaries`), 0.0 where a side is constant (no signal)."""
    return canaries.pearson(xs, ys) or 0.0


def signal(referee: list[float | None], records: list[dict[str, Any]]) -> dict[str, float]:
    """false credit, groups ranked and alignment of one referee's values over the records' rollouts."""
    size = len(records[0]["completions"])
    groups = [i for i, r in enumerate(records) for _ in r["completions"]]
    truth = [v for r in records for v in r["scores"][TRUTH]]
    length = [v for r in records for v in r["scores"][LENGTH]]
    filled = impute_abstentions(referee, groups)
    filled = [0.0 if v is None else v for v in filled]
    total = [v + LENGTH_WEIGHT * (0.0 if x is None else x) for v, x in zip(filled, length, strict=True)]
    truth0 = [0.0 if t is None else t for t in truth]
    credit = sum(v for v in filled if v > 0)
    false = sum(v for v, t in zip(filled, truth0, strict=True) if v > 0 and t < 1.0)
    ranked = sum(len(set(filled[s:s + size])) > 1 for s in range(0, len(filled), size)) / len(records)
    passed = [1.0 if t >= 1.0 else 0.0 for t in truth0]
    advantage = group_advantages(total, size)
    return {"false_credit": false / credit if credit else 0.0, "groups_ranked": ranked,
            "alignment": pearson(advantage, group_advantages(truth0, size)),
            "alignment_pass": pearson(advantage, group_advantages(passed, size))}


def arm_row(name: str, records: list[dict[str, Any]], draws: int) -> dict[str, Any]:
    rate, votes, mode, gate = parse_arm(name)
    if rate is None:
        referee = [v for r in records for v in r["scores"][CHOSEN]]
        runs = [signal(referee, records)]
        calls: list[dict[str, Any]] = []
    else:
        runs, calls = [], []
        for seed in range(draws):
            values, counts = judge_values(records, rate, votes, mode, gate, seed)
            runs.append(signal(values, records))
            calls.append(counts)
    row: dict[str, Any] = {"arm": name, "flip_rate": rate, "votes": votes, "mode": mode, "gate_min_score": gate,
                           "draws": len(runs), "judge_requests": [c["requests"] for c in calls],
                           "statuses": [c["statuses"] for c in calls]}
    for key in ("false_credit", "groups_ranked", "alignment", "alignment_pass"):
        vals = [r[key] for r in runs]
        row[key] = statistics.fmean(vals)
        row[f"{key}_sd"] = statistics.pstdev(vals) if len(vals) > 1 else 0.0
    return row


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("arms", nargs="+", help="rubric | f<rate>[k<votes>][g<min score>][s] (as judge_curve.py)")
    p.add_argument("--records", action="append", required=True,
                   help="an `rlft label --out` folder of the head's rollouts (repeatable: their records are pooled)")
    p.add_argument("--draws", type=int, default=5, help="judge seeds per judge arm (each its own flips)")
    p.add_argument("--tag", default="")
    ns = p.parse_args(argv)
    if ns.draws < 1:
        raise SystemExit(f"error: --draws must be >= 1, got {ns.draws}")
    records = [rec for folder in ns.records for rec in read_records(Path(folder))]
    if len({len(r["completions"]) for r in records}) != 1:
        raise SystemExit("error: the records' prompts have different numbers of rollouts; label them with one --n")
    truth = [v for r in records for v in r["scores"][TRUTH]]
    passing = sum(v is not None and v >= 1.0 for v in truth) / len(truth)
    rows = []
    for name in ns.arms:
        start = time.perf_counter()
        rows.append(arm_row(name, records, ns.draws))
        rows[-1]["seconds"] = round(time.perf_counter() - start, 1)
        print(f"[judge_signal] {name}: alignment {rows[-1]['alignment']:.3f}, false credit "
              f"{rows[-1]['false_credit']:.3f} ({rows[-1]['seconds']} s)", flush=True)
    base = next((r["alignment"] for r in rows if r["arm"] == "rubric"), None)
    print(f"\n{len(records)} prompts x {len(records[0]['completions'])} rollouts; truly passing: {passing:.3f}\n")
    print("| arm | judge requests (a draw) | false credit | groups ranked | alignment | vs rubric | alignment with "
          "pass/fail |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        requests = statistics.fmean(r["judge_requests"]) if r["judge_requests"] else 0
        share = f"{r['alignment'] / base:.2f}" if base else "–"
        print(f"| {r['arm']} | {requests:.0f} | {r['false_credit']:.3f} ± {r['false_credit_sd']:.3f} | "
              f"{r['groups_ranked']:.3f} ± {r['groups_ranked_sd']:.3f} | {r['alignment']:.3f} ± "
              f"{r['alignment_sd']:.3f} | {share} | {r['alignment_pass']:.3f} ± {r['alignment_pass_sd']:.3f} |")
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"judge_signal{ns.tag}.json"
    path.write_text(json.dumps({"records": ns.records, "prompts": len(records),
                                "rollouts_per_prompt": len(records[0]["completions"]), "truly_passing": passing,
                                "draws": ns.draws, "table": rows}, indent=1) + "\n")
    print(f"\nwrote {path.relative_to(ROOT) if path.is_relative_to(ROOT) else path}")


if __name__ == "__main__":
    main()
