"""CPU cost of one label_pg step with and without the shared system-prefix pass, for two system prompts.

    OMP_NUM_THREADS=1 python benchmarks/label_pg_step.py
    python benchmarks/label_pg_step.py --model <tiny model dir> --steps 1      # smoke

One step = `rlft.decoding.label_space.label_pg_loss` forward + backward on 16 grouped Bitext training rows (the recipe's
batch), SmolLM2-135M-Instruct + LoRA r 16 on all linear layers, the recipe's `label_pg` section (free normaliser,
one rewarded path per prompt). Arms, run interleaved on the same batches so machine load hits them alike:

- prompt `shipped` (the short prompt recipes/intent_label_pg.yaml shipped until 2026-12-02) or `labels listed`
  (the same + "Allowed intents: {labels}.", what the recipe ships now, docs/benchmarks.md#label-list: ~130 more
  tokens, the same on every row);
- `share_prefix` on (the batch's common token prefix runs once, its cache broadcast) or off (every row in full).

Reports process CPU seconds per step (median over --steps, after one warm-up) and the ratio to the shipped prompt
without sharing. Prints a table and writes benchmarks/results/label_pg_step.json.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.supervised_reference import DATA, SYSTEM, read_csv  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results" / "label_pg_step.json"
LISTED = SYSTEM + " Allowed intents: {labels}."


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="smollm2-135m-instruct")
    parser.add_argument("--steps", type=int, default=5, help="timed steps per arm (after one warm-up)")
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--out", type=Path, default=RESULTS)
    ns = parser.parse_args(argv)

    import torch

    from rlft.recipe.sections import AdapterConfig, DecodingConfig, LabelPGConfig, ModelConfig
    from rlft.decoding.prompting import prompt_ids
    from rlft.decoding.generation import common_prefix_length
    from rlft.decoding.label_space import LabelSpace, label_pg_loss
    from rlft.run.models import load_model

    torch.manual_seed(0)
    adapter = AdapterConfig(type="lora", r=16, alpha=32)
    model, tokenizer = load_model(ModelConfig(name=ns.model), adapter, "cpu")
    model.train()
    rows = read_csv(DATA / "bitext_grouped_train.csv")
    labels = sorted({r["intent"] for r in rows})
    decoding = DecodingConfig(prefill="<intent>", constrain_labels=True)
    space = LabelSpace.build(tokenizer, labels, decoding)
    cfg = LabelPGConfig(weighting="log", normaliser="free")
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    rng = random.Random(0)
    batches = [rng.sample(rows, ns.batch) for _ in range(ns.steps + 1)]
    prompts = {"shipped": SYSTEM, "labels listed": LISTED.format(labels=", ".join(labels))}

    def batch_ids(system: str, batch: list[dict[str, str]]) -> list[list[int]]:
        return [prompt_ids(tokenizer, [{"role": "system", "content": system},
                                       {"role": "user", "content": r["utterance"]}], decoding) for r in batch]

    def step(ids: list[list[int]], gold: list[str], share: bool) -> float:
        rewards = torch.tensor([[float(k == g) for k in labels] for g in gold])
        model.zero_grad()
        start = time.process_time()
        loss, _ = label_pg_loss(model, space, cfg, ids, rewards, pad, share_prefix=share)
        loss.backward()
        return time.process_time() - start

    arms = [(p, share) for p in prompts for share in (False, True)]
    seconds: dict[tuple[str, bool], list[float]] = {arm: [] for arm in arms}
    tokens: dict[str, dict[str, float]] = {}
    for i, batch in enumerate(batches):
        gold = [r["intent"] for r in batch]
        for name, share in arms:
            ids = batch_ids(prompts[name], batch)
            tokens[name] = {"prompt_tokens": statistics.mean(len(r) for r in ids),
                            "shared_prefix_tokens": common_prefix_length(ids)}
            spent = step(ids, gold, share)
            if i:  # the first batch warms up every arm
                seconds[(name, share)].append(spent)
    base = statistics.median(seconds[("shipped", False)])
    table = []
    for name, share in arms:
        med = statistics.median(seconds[(name, share)])
        table.append({"prompt": name, "share_prefix": share, "cpu_s_per_step": round(med, 2),
                      "ratio": round(med / base, 2), **{k: round(v, 1) for k, v in tokens[name].items()}})
    result = {"model": ns.model, "batch": ns.batch, "steps": ns.steps, "threads": torch.get_num_threads(),
              "table": table, "command": " ".join(["python", "benchmarks/label_pg_step.py", *(argv or sys.argv[1:])])}
    print(f"{'prompt':<14} {'share_prefix':<12} {'prompt tok':>10} {'shared tok':>10} {'CPU s/step':>10} {'ratio':>6}")
    for row in table:
        print(f"{row['prompt']:<14} {str(row['share_prefix']):<12} {row['prompt_tokens']:>10} "
              f"{row['shared_prefix_tokens']:>10} {row['cpu_s_per_step']:>10} {row['ratio']:>6}")
    ns.out.parent.mkdir(parents=True, exist_ok=True)
    ns.out.write_text(json.dumps(result, indent=2) + "\n")
    return result


if __name__ == "__main__":
    main()
