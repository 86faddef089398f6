"""GRPO step time with an LLM judge of 0 / 200 / 1000 ms latency: judge calls one at a time vs concurrent.

    python benchmarks/judge_overlap.py                                  # tiny random model, 64 rollouts, 3 steps
    python benchmarks/judge_overlap.py --latency-ms 0 200 --concurrency 1 16 64 --steps 4 --rollouts 32

Each row is a real `rlft.train` GRPO run of a tiny random Llama (2 layers, hidden 64, LoRA; built here, no
download) on `demo:intents`, rewarded only by the `judge` reward, which asks the SIMULATED judge
(`benchmarks/simulated_judge.py`, in its own process on 127.0.0.1, verdicts = the demo rubric's, flip rate 0.2)
over HTTP with the openai SDK. Every rollout is judged (no cache, no gate, no length skip), so a step asks
`--rollouts` requests. `max_concurrency` 1 is "sequential"; larger values let that many requests be in flight.

Measured per step (steps after the first, which carries warm-up): wall time (a callback's on_step_begin ->
on_step_end: generation, reward, loss, optimizer), and the judge reward's own wall time inside it. "judge/rest" is
the judge's wall time over the rest of the same steps, which does not drift with the machine's load between rows;
"vs 0 ms" is the step time over the 0 ms row with the same concurrency, which does. Ideal judge time per step:
ceil(rollouts / concurrency) x latency, plus the client's CPU per request.

Overlap: TRL 1.16's GRPOTrainer runs async reward functions (rlft's judge reward is one) on a daemon event loop,
all async rewards of a batch concurrently with each other, but it waits for them (`.result()`) after generation
and before the loss: judge calls never overlap generation or the backward pass. So the judge's wall time adds to
the step; concurrency only shrinks it. That is what this measures; there is no "overlapped" row.

Prints a table and writes benchmarks/results/judge_overlap.json (or --out). No assertions.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))
RESULTS = ROOT / "benchmarks" / "results" / "judge_overlap.json"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _get(url: str, method: str = "GET") -> dict:
    with urllib.request.urlopen(urllib.request.Request(url, method=method), timeout=5) as r:
        return json.loads(r.read())


def start_judge(latency_ms: float, flip_rate: float, seed: int) -> tuple[subprocess.Popen, str]:
    """The simulated judge in its own process; returns (process, base URL without /v1)."""
    port = _free_port()
    proc = subprocess.Popen([sys.executable, "-m", "benchmarks.simulated_judge", "--port", str(port),
                             "--latency-ms", str(latency_ms), "--flip-rate", str(flip_rate), "--seed", str(seed)],
                            cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            env={**os.environ, "OMP_NUM_THREADS": "1"})
    base = f"http://127.0.0.1:{port}"
    deadline = time.time() + 60
    while True:
        try:
            _get(f"{base}/health")
            return proc, base
        except OSError:
            if time.time() > deadline or proc.poll() is not None:
                proc.kill()
                raise RuntimeError("simulated judge did not start") from None
            time.sleep(0.2)


def tiny_model(out: Path) -> Path:
    """A 2-layer, hidden-64 random Llama with the embedded SmolLM2 tokenizer (as tests/conftest.py builds it)."""
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    from rlft.run.models import embedded_gguf

    gguf = embedded_gguf("smollm2-135m-instruct")
    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=512,
                         bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
                         pad_token_id=tokenizer.pad_token_id, tie_word_embeddings=True)
    LlamaForCausalLM(config).save_pretrained(out)
    tokenizer.save_pretrained(out)
    return out


def recipe(out: Path, model_dir: Path, url: str, concurrency: int, args: argparse.Namespace) -> str:
    return f"""algorithm: grpo
output_dir: {out}
model: {{name: {model_dir}}}
adapter: {{type: lora, r: 4, alpha: 8}}
data: {{source: "demo:intents", demo_size: 200, system_prompt: "Answer the customer."}}
rewards:
  - name: judge
    params: {{model: simulated, base_url: "{url}", api_key_env: null, policies: demo, cache: null,
              injection_guard: false, min_words: 0, max_retries: 0, timeout_s: 30,
              max_concurrency: {concurrency}}}
trainer: {{max_steps: {args.steps}, per_device_train_batch_size: {args.rollouts}, num_generations: 4,
          max_completion_length: {args.completion_tokens}, learning_rate: 0.01, beta: 0.0}}
evaluation: {{before: false, after: false}}
"""


def run_row(model_dir: Path, base: str, latency_ms: float, concurrency: int, args: argparse.Namespace,
            tmp: Path) -> dict:
    import rlft
    from transformers import TrainerCallback

    from rlft.rewards.judge import JudgeReward

    steps: list[float] = []
    judge_s: list[float] = []

    class StepTimer(TrainerCallback):
        def on_step_begin(self, *a, **k):
            self.start = time.perf_counter()

        def on_step_end(self, *a, **k):
            steps.append(time.perf_counter() - self.start)

    original = JudgeReward.__call__

    async def timed(self, *a, **k):  # the reward's wall time inside the step (instrumentation only)
        start = time.perf_counter()
        try:
            return await original(self, *a, **k)
        finally:
            judge_s.append(time.perf_counter() - start)

    JudgeReward.__call__ = timed
    _get(f"{base}/stats/reset", "POST")
    try:
        path = tmp / f"r_{int(latency_ms)}_{concurrency}.yaml"
        path.write_text(recipe(tmp / f"run_{int(latency_ms)}_{concurrency}", model_dir, f"{base}/v1", concurrency,
                               args))
        rlft.train(path, callbacks=[StepTimer()])
    finally:
        JudgeReward.__call__ = original
    stats = _get(f"{base}/stats")
    measured, judged = steps[1:], judge_s[1:]
    ideal = math.ceil(args.rollouts / concurrency) * latency_ms / 1000
    return {"latency_ms": latency_ms, "max_concurrency": concurrency, "rollouts": args.rollouts,
            "steps": len(steps), "steps_measured": len(measured),
            "step_s_median": round(statistics.median(measured), 3), "step_s": [round(s, 3) for s in steps],
            "judge_s_median": round(statistics.median(judged), 3), "judge_s": [round(s, 3) for s in judge_s],
            "judge_ideal_s": round(ideal, 3), "server_requests": stats["requests"],
            "server_max_in_flight": stats["max_in_flight"],
            "judge_agreement_with_rubric": (round(stats["responder"]["agree"] / stats["responder"]["judged"], 3)
                                            if stats["responder"]["judged"] else None)}


def derive(rows: list[dict]) -> None:
    """Add each row's judge overhead: the judge's wall time over the rest of the same steps (robust to load drifting
    between rows on a shared machine), and the step time over the 0 ms row with the same concurrency."""
    base_step = {r["max_concurrency"]: r["step_s_median"] for r in rows if r["latency_ms"] == 0}
    for r in rows:
        rest = [s - j for s, j in zip(r["step_s"][1:], r["judge_s"][1:], strict=True)]
        r["rest_s_median"] = round(statistics.median(rest), 3)
        r["judge_overhead_pct"] = round(100 * r["judge_s_median"] / r["rest_s_median"], 1)
        b = base_step.get(r["max_concurrency"])
        r["step_vs_0ms_pct"] = round(100 * (r["step_s_median"] / b - 1), 1) if b else None


def print_table(rows: list[dict], rollouts: int, steps: int) -> None:
    header = (f"{'latency ms':>10}{'conc.':>7}{'step s':>9}{'judge s':>9}{'ideal s':>9}{'rest s':>9}"
              f"{'judge/rest':>12}{'vs 0 ms':>9}{'requests':>10}{'in flight':>10}")
    print(f"\nGRPO step time with a simulated judge: tiny random Llama, {rollouts} rollouts/step, "
          f"median of steps 2..{steps}")
    print(header)
    print("-" * len(header))
    for r in rows:
        vs0 = f"{r['step_vs_0ms_pct']:+.0f}%" if r["step_vs_0ms_pct"] is not None else "-"
        print(f"{r['latency_ms']:>10g}{r['max_concurrency']:>7}{r['step_s_median']:>9.2f}{r['judge_s_median']:>9.2f}"
              f"{r['judge_ideal_s']:>9.2f}{r['rest_s_median']:>9.2f}{r['judge_overhead_pct']:>11.0f}%{vs0:>9}"
              f"{r['server_requests']:>10}{r['server_max_in_flight']:>10}")
    print("judge/rest = the judge reward's wall time over the rest of the step (generation, loss, optimizer)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--latency-ms", type=float, nargs="+", default=[0, 200, 1000])
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 16, 64],
                        help="judge max_concurrency per row; 1 = sequential")
    parser.add_argument("--rollouts", type=int, default=64, help="completions per step (num_generations 4)")
    parser.add_argument("--steps", type=int, default=3, help="training steps per row (the first is not measured)")
    parser.add_argument("--completion-tokens", type=int, default=16)
    parser.add_argument("--flip-rate", type=float, default=0.2)
    parser.add_argument("--out", type=Path, default=RESULTS, help="JSON result file")
    args = parser.parse_args()
    if args.steps < 2:
        parser.error("--steps must be >= 2 (the first step is warm-up)")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    import torch

    rows = []
    started = time.time()
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        model_dir = tiny_model(tmp / "tiny_llama")
        for latency in args.latency_ms:
            proc, base = start_judge(latency, args.flip_rate, seed=0)
            try:
                for c in args.concurrency:
                    row = run_row(model_dir, base, latency, c, args, tmp)
                    rows.append(row)
                    print(f"latency {latency:g} ms, max_concurrency {c}: step {row['step_s_median']:.2f} s, judge "
                          f"{row['judge_s_median']:.2f} s, {row['server_requests']} requests", flush=True)
            finally:
                proc.terminate()
                proc.wait(timeout=10)
    derive(rows)
    print_table(rows, args.rollouts, args.steps)
    out = args.out if args.out.is_absolute() else ROOT / args.out
    out.parent.mkdir(parents=True, exist_ok=True)
    import trl

    result = {"benchmark": "judge_overlap", "rows": rows,
              "config": {"rollouts": args.rollouts, "steps": args.steps, "completion_tokens": args.completion_tokens,
                         "flip_rate": args.flip_rate, "model": "tiny random Llama (2 layers, hidden 64) + LoRA r4",
                         "judge": "benchmarks/simulated_judge.py, own process, 127.0.0.1"},
              "overlap": "none: TRL GRPOTrainer awaits async rewards after generation, before the loss",
              "seconds": round(time.time() - started, 1),
              "machine": {"cpus": os.cpu_count(), "torch_threads": torch.get_num_threads(),
                          "python": platform.python_version(), "torch": torch.__version__, "trl": trl.__version__,
                          "load_avg_1m": round(os.getloadavg()[0], 2)}}
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {out.relative_to(ROOT) if out.is_relative_to(ROOT) else out}")


if __name__ == "__main__":
    main()
