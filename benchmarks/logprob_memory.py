"""Peak memory of `rlft eval`'s log-prob pass (the KL canary) on the support agent's prompts: former vs now.

    OMP_NUM_THREADS=1 python benchmarks/logprob_memory.py                 # 64 rows (evaluation.batch_size), 150 tokens
    OMP_NUM_THREADS=1 python benchmarks/logprob_memory.py --rows 32 --completion-tokens 160

`rlft eval` scores every adapter's completions twice, teacher-forced, under the adapter and under its base
(`rlft.evaluation.eval_models.completion_logprobs`). The former pass ran `evaluation.batch_size` rows (64) in one
forward and kept full-vocabulary logits for every position, prompt included, plus their log-softmax: for the
support agent's prompts (system prompt with 27 labels + message + a 160-token completion) that was ~11 GB and made
the agent's evaluation peak at ~12 GB RSS. Now a forward keeps logits only from the first completion position on
(`logits_to_keep`) and takes as many rows as fit `LOGITS_BYTES`.

Each arm runs in its own process (SmolLM2-135M-Instruct, float32, CPU, the real prompts of
recipes/support_agent_bitext.yaml's held-out rows and a filler completion of the given token count): peak RSS
(`ru_maxrss`), RSS after loading (so the pass's own share is their difference), wall time, and the largest
difference between the two arms' log-probs. Prints a table and writes benchmarks/results/logprob_memory.json.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RECIPE = ROOT / "recipes" / "support_agent_bitext.yaml"


def former_logprobs(model, tokenizer, prompts, completions, decoding, batch_size):
    """The pass as it was before (full logits of every position, then their log-softmax): the baseline."""
    import torch

    from rlft.decoding.prompting import prompt_ids

    out = []
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    for start in range(0, len(prompts), batch_size):
        seqs, spans = [], []
        for p, c in zip(prompts[start:start + batch_size], completions[start:start + batch_size], strict=True):
            head = list(prompt_ids(tokenizer, p, decoding))
            tail = tokenizer(c[len(decoding.prefill):], add_special_tokens=False)["input_ids"]
            seqs.append(head + tail)
            spans.append((len(head), len(tail)))
        width = max(len(s) for s in seqs)
        ids = torch.tensor([s + [pad] * (width - len(s)) for s in seqs])
        mask = torch.tensor([[1] * len(s) + [0] * (width - len(s)) for s in seqs])
        with torch.no_grad():
            logps = torch.log_softmax(model(input_ids=ids, attention_mask=mask).logits.float(), dim=-1)
        for row, (h, n) in enumerate(spans):
            out.append(logps[row, torch.arange(h - 1, h - 1 + n), ids[row, h:h + n]].tolist())
    return out


def one_arm(arm: str, rows: int, tokens: int, out_file: str) -> None:
    import torch

    from rlft.evaluation.eval_models import completion_logprobs, load_eval_rows
    from rlft.recipe.load import load_recipe
    from rlft.run.models import load_model

    recipe = load_recipe(str(RECIPE), [])
    eval_rows, _ = load_eval_rows(recipe, None, rows)
    prompts = list(eval_rows["prompt"])
    model, tokenizer = load_model(recipe.model, dataclasses.replace(recipe.adapter, type="none"), "cpu")
    filler = " ".join(["order"] * tokens)  # one token per word for this tokenizer: the completion's length
    completions = [recipe.decoding.prefill + f"{i}</intent> {filler}" for i in eval_rows["intent"]]
    loaded = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    torch.manual_seed(0)
    start = time.time()
    if arm == "former":
        logps = former_logprobs(model, tokenizer, prompts, completions, recipe.decoding, recipe.evaluation.batch_size)
    else:
        logps = completion_logprobs(model, tokenizer, prompts, completions, recipe.decoding,
                                    recipe.evaluation.batch_size)
    seconds = time.time() - start
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    Path(out_file).write_text(json.dumps({"arm": arm, "loaded_mb": loaded / 1024, "peak_mb": peak / 1024,
                                          "seconds": seconds, "logps": logps}))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=64)
    ap.add_argument("--completion-tokens", type=int, default=150)
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "logprob_memory.json"))
    ap.add_argument("--arm", help=argparse.SUPPRESS)
    ap.add_argument("--arm-out", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.arm:
        one_arm(args.arm, args.rows, args.completion_tokens, args.arm_out)
        return
    results = {}
    for arm in ("former", "now"):
        tmp = Path(args.out).with_suffix(f".{arm}.tmp")
        subprocess.run([sys.executable, __file__, "--arm", arm, "--arm-out", str(tmp), "--rows", str(args.rows),
                        "--completion-tokens", str(args.completion_tokens)], check=True)
        results[arm] = json.loads(tmp.read_text())
        tmp.unlink()
    diff = max((abs(a - b) for ra, rb in zip(results["former"]["logps"], results["now"]["logps"], strict=True)
                for a, b in zip(ra, rb, strict=True)), default=0.0)
    table = []
    for arm in ("former", "now"):
        r = results[arm]
        table.append({"arm": arm, "peak_rss_mb": round(r["peak_mb"]), "after_load_mb": round(r["loaded_mb"]),
                      "pass_mb": round(r["peak_mb"] - r["loaded_mb"]), "seconds": round(r["seconds"], 1)})
    print(f"{args.rows} rows, {args.completion_tokens}-token completions, {RECIPE.name}'s prompts, "
          f"max |logp difference| {diff:.2e}")
    print(f"{'arm':8} {'peak RSS MB':>12} {'after load MB':>14} {'pass MB':>9} {'seconds':>8}")
    for t in table:
        print(f"{t['arm']:8} {t['peak_rss_mb']:>12} {t['after_load_mb']:>14} {t['pass_mb']:>9} {t['seconds']:>8}")
    ratio = table[1]["pass_mb"] / max(table[0]["pass_mb"], 1)
    print(f"now / former: pass memory {ratio:.3f}, time {table[1]['seconds'] / max(table[0]['seconds'], 1e-9):.2f}")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps({"rows": args.rows, "completion_tokens": args.completion_tokens,
                                          "max_abs_logp_difference": diff, "table": table,
                                          "machine": {"platform": platform.platform(), "cpus": os.cpu_count(),
                                                      "threads": os.environ.get("OMP_NUM_THREADS")}},
                                         indent=1) + "\n")


if __name__ == "__main__":
    main()
