"""Judge throughput: judgments per second against a local OpenAI-compatible server with a fixed latency.

    python benchmarks/judge_throughput.py                    # 50 ms server latency, concurrency 1/4/16/64 + cache
    python benchmarks/judge_throughput.py --latency 0.2 --out benchmarks/results/judge_throughput_200ms.json

The server is `tests/judge_stub_server.py` in its own process (its own core), answering every request after
`--latency` seconds. The client is the real judge reward (`rlft.rewards.judge.JudgeReward`: openai SDK, prompt
rendering, parsing, accounting) scoring distinct completions, so no request is de-duplicated or cached, except in
the `warm cache` row, which re-scores the samples of a previous run from the SQLite cache (0 server calls).
Target: at concurrency c, at least 0.8·c× the sequential rate while the server keeps up (its own ceiling is
c / latency) and the machine has CPU to spare: the client and the server each spend CPU per request, printed
per row, and on a small shared machine that CPU, not the latency, becomes the ceiling at high concurrency.
Prints a table and writes benchmarks/results/judge_throughput.json (or --out). No assertions.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results" / "judge_throughput.json"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _get(url: str, method: str = "GET") -> dict:
    with urllib.request.urlopen(urllib.request.Request(url, method=method), timeout=5) as r:
        return json.loads(r.read())


def start_server(latency: float) -> tuple[subprocess.Popen, str]:
    port = _free_port()
    proc = subprocess.Popen([sys.executable, str(ROOT / "tests" / "judge_stub_server.py"), "--port", str(port),
                             "--latency", str(latency)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}"
    deadline = time.time() + 30
    while True:
        try:
            _get(f"{base}/health")
            return proc, base
        except OSError:
            if time.time() > deadline or proc.poll() is not None:
                proc.kill()
                raise RuntimeError("stub judge server did not start") from None
            time.sleep(0.1)


def run_once(base: str, concurrency: int, n: int, tag: str, cache: str | None) -> dict:
    from rlft.rewards.judge import JudgeReward

    reward = JudgeReward(model="bench-judge", base_url=f"{base}/v1", api_key_env=None, cache=cache,
                         guideline="Mention the $4.99 cancellation fee.", max_concurrency=concurrency,
                         timeout_s=30, max_retries=0)
    completions = [f"Order {tag}-{i} is cancelled; a $4.99 fee applies." for i in range(n)]
    prompts = [f"cancel order {tag}-{i}" for i in range(n)]
    _get(f"{base}/stats/reset", "POST")
    server_cpu = _get(f"{base}/stats")["cpu_s"]
    start, cpu = time.perf_counter(), time.process_time()
    out = asyncio.run(reward(prompts, completions))
    seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
    stats = _get(f"{base}/stats")
    ok = sum(v is not None for v in out)
    return {"concurrency": concurrency, "n": n, "ok": ok, "seconds": round(seconds, 3),
            "judgments_per_s": round(n / seconds, 1), "server_requests": stats["requests"],
            "server_max_in_flight": stats["max_in_flight"], "client_cpu_ms_per_judgment": round(1000 * cpu / n, 2),
            "server_cpu_ms_per_request": (round(1000 * (stats["cpu_s"] - server_cpu) / stats["requests"], 2)
                                          if stats["requests"] else None)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--latency", type=float, default=0.05, help="server latency per request, seconds")
    parser.add_argument("--seconds", type=float, default=2.0, help="ideal duration of each row (sets n)")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[4, 16, 64])
    parser.add_argument("--out", type=Path, default=RESULTS, help="JSON result file")
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")

    proc, base = start_server(args.latency)
    rows = []
    try:
        run_once(base, 4, 16, "warmup", None)  # imports, first connections: not part of any row
        n_seq = max(10, int(args.seconds / args.latency))
        seq = run_once(base, 1, n_seq, "seq", None)
        seq.update(mode="sequential", speedup=1.0, target_speedup=None)
        rows.append(seq)
        for c in args.concurrency:
            n = max(c * 4, int(args.seconds * c / args.latency))
            row = run_once(base, c, n, f"c{c}", None)
            row.update(mode="concurrent", speedup=round(row["judgments_per_s"] / seq["judgments_per_s"], 2),
                       target_speedup=round(0.8 * c, 1))
            rows.append(row)
        with tempfile.TemporaryDirectory() as tmp:
            cache = str(Path(tmp) / "judge.sqlite")
            c = max(args.concurrency)
            n = max(c * 4, int(args.seconds * c / args.latency))
            cold = run_once(base, c, n, "cache", cache)
            cold.update(mode="cold cache (filling)",
                        speedup=round(cold["judgments_per_s"] / seq["judgments_per_s"], 2),
                        target_speedup=None)
            warm = run_once(base, c, n, "cache", cache)
            warm.update(mode="warm cache", speedup=round(warm["judgments_per_s"] / seq["judgments_per_s"], 2),
                        target_speedup=None)
            rows += [cold, warm]
    finally:
        proc.terminate()
        proc.wait(timeout=10)

    header = (f"{'mode':<22}{'conc.':>6}{'n':>7}{'seconds':>9}{'judg./s':>10}{'speedup':>9}{'target':>8}"
              f"{'in flight':>10}{'client ms':>10}{'server ms':>10}")
    print(f"judge throughput, server latency {args.latency * 1000:.0f} ms (server ceiling = concurrency / latency)")
    print(header)
    print("-" * len(header))
    for r in rows:
        target = f"{r['target_speedup']:.1f}" if r["target_speedup"] else "-"
        server_ms = f"{r['server_cpu_ms_per_request']:.2f}" if r["server_cpu_ms_per_request"] is not None else "-"
        print(f"{r['mode']:<22}{r['concurrency']:>6}{r['n']:>7}{r['seconds']:>9.2f}{r['judgments_per_s']:>10.1f}"
              f"{r['speedup']:>9.2f}{target:>8}{r['server_max_in_flight']:>10}{r['client_cpu_ms_per_judgment']:>10.2f}"
              f"{server_ms:>10}")
    print("client/server ms = CPU milliseconds per judgment/request; when their sum times the rate nears the cores "
          "available, the run is CPU-bound, not latency-bound")
    out = args.out if args.out.is_absolute() else ROOT / args.out
    out.parent.mkdir(parents=True, exist_ok=True)
    result = {"benchmark": "judge_throughput", "latency_s": args.latency, "rows": rows,
              "machine": {"cpus": os.cpu_count(), "python": platform.python_version(),
                          "load_avg_1m": round(os.getloadavg()[0], 2)},
              "command": "python benchmarks/judge_throughput.py " + " ".join(sys.argv[1:])}
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
