"""How good a judge must be to teach the deployed support agent its policy (issue 31): the judge-quality curve.

Each arm runs stage 3 of the deployed agent (rejection-sampling fine-tuning: the same prompts, samples and hints)
from ONE stage-2 adapter, with a different referee deciding which replies are kept:

- `rubric`: the shipped stage 3 (recipes/support_agent_bitext_rft.yaml), the deterministic rubric: the ground truth.
- `f<RATE>` / `f<RATE>k<VOTES>`: recipes/support_agent_bitext_rft_judge.yaml, the reply judged over HTTP by the
  SIMULATED judge (benchmarks/simulated_judge.py: the rubric's verdict, flipped with probability RATE per request;
  not a language model), with VOTES votes per judgment (majority). An arm name ending in `s` (`f0.2s`) asks the judge
  for a 1-10 score instead of pass/fail (`mode: score`): the rubric's share of requirements met, mapped onto 1-10, a
  flip mirroring it (n -> 11 - n), so a reply that meets more of its policy scores higher. RATE 0.1 / 0.2 / 0.3 / 0.5
  is Cohen's kappa about 0.8 / 0.6 / 0.4 / 0 against the rubric; the arm starts and stops its own server.

`--stage grpo` runs stage 2 instead (GRPO from the stage-1 head, 41 steps): `rubric` is the shipped stage 2
(recipes/support_agent_bitext.yaml), `f<RATE>` recipes/support_agent_bitext_judge.yaml, where the judge is the
reply's only policy reward; these arms' folders are named grpo_ARM. At stage 3 most replies the round judges already
pass, so any referee keeps a mostly right set; at stage 2 the judge is the reply's only teacher.

Every arm's agent is then scored by the rubric on the same held-out rows
(`rlft eval recipes/support_agent_bitext.yaml`).

    python benchmarks/judge_curve.py train f0.2 --init runs/agent_s42_grpo --out runs/judge_curve
    python benchmarks/judge_curve.py train f0.2k3 --init runs/agent_s42_grpo --out runs/judge_curve
    python benchmarks/judge_curve.py train f0.1 --stage grpo --init runs/agent_s42_head --out runs/judge_curve
    python benchmarks/judge_curve.py table rubric=runs/agent_s42 runs/judge_curve/f0.2 runs/judge_curve/f0.2k3 ...

`table` prints, per arm: the judge's measured agreement and kappa with the rubric (per request, from the server's
counts), judge requests and a cost projected at a public API price, what the round kept (and how many of the kept
replies truly pass the rubric: the kept set's precision), then intent, policy-following and system accuracy of the
resulting agent on the held-out rows; writes benchmarks/results/judge_curve<TAG>.json.
"""

from __future__ import annotations

import argparse
import json
import re
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
RESULTS = ROOT / "benchmarks" / "results"
RUBRIC_RECIPE = ROOT / "recipes" / "support_agent_bitext_rft.yaml"
JUDGE_RECIPE = ROOT / "recipes" / "support_agent_bitext_rft_judge.yaml"
AGENT = ROOT / "recipes" / "support_agent_bitext.yaml"
GRPO_JUDGE_RECIPE = ROOT / "recipes" / "support_agent_bitext_judge.yaml"
STAGES = {"rft": (RUBRIC_RECIPE, JUDGE_RECIPE), "grpo": (AGENT, GRPO_JUDGE_RECIPE)}  # stage -> (rubric, judge) recipe
JUDGE_INDEX = 3  # rewards.3 of both judge recipes is the judge
# Projected judge cost: gpt-4o-mini's public list price (USD per million tokens, input / output), and ~4/3 tokens a
# word (the simulated server counts words).
PRICE_IN, PRICE_OUT, TOKENS_PER_WORD = 0.15, 0.60, 4 / 3
ARM = re.compile(r"^(?:grpo_)?(?:rubric|f(?P<rate>0(?:\.\d+)?|1(?:\.0+)?)(?:k(?P<votes>[1-9]\d*))?"
                 r"(?:g(?P<gate>0\.\d*[1-9]\d*|1(?:\.0+)?))?(?P<score>s)?)$")


def parse_arm(name: str) -> tuple[float | None, int, str, float | None]:
    """(flip rate, votes, judge mode, rubric gate): 'rubric' -> (None, 1, '', None); 'f0.2' -> (0.2, 1, 'binary',
    None); 'f0.2k3' -> (0.2, 3, 'binary', None); 'f0.2s' -> (0.2, 1, 'score', None): the judge grades 1-10 (the
    rubric's share of requirements met, a flip mirrors it) instead of pass/fail; 'f0.2g0.25' -> (0.2, 1, 'binary',
    0.25): `gate: rubric` with `gate_min_score: 0.25`, only replies meeting at least that share of the policy's
    requirements are judged (the rest score 0). Anything else is a one-line error."""
    m = ARM.match(name)
    if not m:
        raise SystemExit(f"error: arm {name!r}: expected 'rubric', 'f<rate>', 'f<rate>k<votes>', each optionally "
                         "followed by 'g<min score>' for a rubric gate and ending in 's' for a 1-10 score (e.g. "
                         "f0.2k3, f0.2g0.25, f0.2s)")
    if m["rate"] is None:
        return None, 1, "", None
    gate = float(m["gate"]) if m["gate"] else None
    return float(m["rate"]), int(m["votes"] or 1), "score" if m["score"] else "binary", gate


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def get_json(url: str) -> dict[str, Any]:
    with urllib.request.urlopen(url, timeout=10) as r:
        return json.loads(r.read())


def start_judge(rate: float, seed: int, log: Path) -> tuple[subprocess.Popen, int]:
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "benchmarks.simulated_judge", "--port", str(port), "--flip-rate",
                             str(rate), "--seed", str(seed)], cwd=ROOT, stdout=log.open("w"), stderr=subprocess.STDOUT)
    for _ in range(120):
        try:
            get_json(f"http://127.0.0.1:{port}/health")
            return proc, port
        except OSError:
            if proc.poll() is not None:
                raise SystemExit(f"error: the simulated judge exited with {proc.returncode}; see {log}")
            time.sleep(0.5)
    proc.kill()
    raise SystemExit(f"error: the simulated judge did not answer on port {port} within 60 s; see {log}")


def run_rlft(args: list[str]) -> None:
    """`rlft train ARGS`; its failure ends this script with rlft's exit code (rlft printed the one-line error)."""
    done = subprocess.run([sys.executable, "-m", "rlft", "train", *args])
    if done.returncode:
        raise SystemExit(done.returncode)


def train(ns: argparse.Namespace) -> None:
    arm = ns.arm.removeprefix("grpo_")
    rate, votes, mode, gate = parse_arm(arm)
    rubric_recipe, judge_recipe = STAGES[ns.stage]
    name = arm if ns.stage == "rft" else f"{ns.stage}_{arm}"
    out = Path(ns.out) / name  # rlft refuses a folder that already holds a run
    out.parent.mkdir(parents=True, exist_ok=True)
    common = [f"seed={ns.seed}", f"adapter.init_from={ns.init}", f"output_dir={out}", "evaluation.before=false",
              "evaluation.after=false", *ns.override]  # every arm is scored by the rubric afterwards (`table`)
    if rate is None:
        run_rlft([str(rubric_recipe), *common])
        return
    proc, port = start_judge(rate, ns.judge_seed, out.parent / f"{name}.judge_server.log")
    judge = f"rewards.{JUDGE_INDEX}.params"
    try:
        run_rlft([str(judge_recipe), *common, f"{judge}.base_url=http://127.0.0.1:{port}/v1", f"{judge}.votes={votes}",
                  f"{judge}.mode={mode}", f"{judge}.cache={out / 'judge_cache.sqlite'}",
                  *([f"{judge}.gate=rubric", f"{judge}.gate_min_score={gate}", f"{judge}.skip_value=0.0"]
                    if gate is not None else [])])
        stats = get_json(f"http://127.0.0.1:{port}/stats")
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    record = {"flip_rate": rate, "votes": votes, "mode": mode, "gate_min_score": gate, **stats}
    (out / "judge_stats.json").write_text(json.dumps(record, indent=1) + "\n")


def kappa(stats: dict[str, Any]) -> tuple[float | None, float | None]:
    """(agreement, Cohen's kappa) of the judge's verdicts with the rubric's, per request, from the server's counts."""
    r = stats.get("responder") or {}
    n = r.get("judged", 0)
    if not n:
        return None, None
    agree = r["agree"] / n
    labels = set(r.get("truths", {})) | set(r.get("verdicts", {}))
    chance = sum(r.get("truths", {}).get(k, 0) / n * r.get("verdicts", {}).get(k, 0) / n for k in labels)
    return agree, (None if chance == 1 else (agree - chance) / (1 - chance))


def arm_row(spec: str, rows: int, seed: int, evals: Path) -> dict[str, Any]:
    """One table row: ARM_DIR or NAME=ADAPTER_DIR (the adapter of another folder, e.g. the shipped pipeline's)."""
    from benchmarks.support_no_oracle import eval_report

    name, given, folder = spec.partition("=")
    if not given:
        name, folder = Path(spec).name, spec
    rate, votes, mode, gate = parse_arm(name)
    folder_path = Path(folder)
    row: dict[str, Any] = {"arm": name, "flip_rate": rate, "votes": votes, "mode": mode, "gate_min_score": gate,
                           "kept": None,
                           "kept_after_hint": None, "kept_precision": None, "sampling_cpu_s": None}
    if (folder_path / "rft_summary.json").exists():  # an rft arm: what its round kept
        summary = json.loads((folder_path / "rft_summary.json").read_text())
        kept = [json.loads(line) for line in (folder_path / "rft_samples.jsonl").read_text().splitlines()]
        whole = [k for k in kept if not k.get("head_only")]
        truth = [k["rewards"]["rubric"] for k in whole]  # the gold intent's rubric: 1.0 is a true pass
        row.update(kept=summary["kept"], kept_after_hint=summary["kept_after_hint"],
                   kept_precision=sum(v is not None and v >= 1.0 for v in truth) / len(truth) if truth else None,
                   sampling_cpu_s=summary["sampling_cpu_s"])
    stats_file = folder_path / "judge_stats.json"
    if stats_file.exists():
        stats = json.loads(stats_file.read_text())
        agree, k = kappa(stats)
        usage = stats.get("usage", {})
        cost = (usage.get("prompt_tokens", 0) * PRICE_IN + usage.get("completion_tokens", 0) * PRICE_OUT) \
            * TOKENS_PER_WORD / 1e6
        row.update(judge_requests=stats["requests"], agreement=agree, kappa=k, projected_cost_usd=cost)
    report = eval_report(AGENT, f"{name}={folder}", rows, evals / name, seed)
    h = report["headline"]
    row.update(n=report["n"], intent_accuracy=h["intent_accuracy"], policy_following=h["policy_following"],
               policy_ci=h["policy_following_ci"], system_accuracy=h["system_accuracy"],
               system_ci=h["system_accuracy_ci"])
    return row


def table(ns: argparse.Namespace) -> None:
    rows = [arm_row(spec, ns.rows, ns.seed, Path(ns.eval_out)) for spec in ns.arms]

    def num(v: Any, digits: int = 3) -> str:
        return "–" if v is None else f"{v:.{digits}f}"

    def kept(r: dict[str, Any]) -> str:
        return "–" if r["kept"] is None else f"{r['kept']} ({r['kept_after_hint']})"

    print("\n| arm | flip rate | votes | agreement | kappa | judge requests | cost (USD) | kept (after hint) | "
          "kept precision | intent | policy-following | system accuracy |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        print(f"| {r['arm']} | {num(r['flip_rate'], 2)} | {r['votes']} | {num(r.get('agreement'))} | "
              f"{num(r.get('kappa'))} | {r.get('judge_requests', '–')} | {num(r.get('projected_cost_usd'), 4)} | "
              f"{kept(r)} | {num(r['kept_precision'])} | {num(r['intent_accuracy'])} | "
              f"{num(r['policy_following'])} [{num(r['policy_ci'][0])}, {num(r['policy_ci'][1])}] | "
              f"{num(r['system_accuracy'])} [{num(r['system_ci'][0])}, {num(r['system_ci'][1])}] |")
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"judge_curve{ns.tag}.json"
    path.write_text(json.dumps({"rows": ns.rows, "seed": ns.seed, "arms": ns.arms, "table": rows,
                                "price_usd_per_mtok": {"input": PRICE_IN, "output": PRICE_OUT}}, indent=1) + "\n")
    print(f"\nwrote {path.relative_to(ROOT)}")


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="command", required=True)
    t = sub.add_parser("train", help="run one arm's stage (and its judge server)")
    t.add_argument("arm", help="rubric | f<rate> | f<rate>k<votes>, either optionally followed by g<min score> (a "
                   "rubric gate) and ending in 's' for a 1-10 score judge")
    t.add_argument("--init", required=True, help="the adapter every arm starts from (stage 2's for --stage rft, "
                   "stage 1's head for --stage grpo)")
    t.add_argument("--stage", choices=sorted(STAGES), default="rft",
                   help="the stage the referee trains: rft (stage 3, rejection sampling; the default) or grpo "
                   "(stage 2, GRPO from the head: the judge is the reply's only policy reward); grpo arms are named "
                   "grpo_ARM")
    t.add_argument("--out", default="runs/judge_curve")
    t.add_argument("--seed", type=int, default=42, help="the recipe seed (the split and the prompts drawn)")
    t.add_argument("--judge-seed", type=int, default=0, help="seeds the simulated judge's flips")
    t.add_argument("--set", dest="override", action="append", default=[], metavar="KEY=VALUE",
                   help="another recipe override (repeatable)")
    s = sub.add_parser("table", help="score every arm on the held-out rows and print the table")
    s.add_argument("arms", nargs="+", help="ARM_DIR (named by its folder) or ARM=DIR")
    s.add_argument("--rows", type=int, default=270)
    s.add_argument("--seed", type=int, default=42)
    s.add_argument("--eval-out", default="runs/judge_curve/eval")
    s.add_argument("--tag", default="")
    ns = p.parse_args(argv)
    (train if ns.command == "train" else table)(ns)


if __name__ == "__main__":
    main()
