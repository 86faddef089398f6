"""Greedy decoding speed of evaluation: the old `model.generate` loop vs `rlft.decoding.generation`, side by side.

The real model (SmolLM2-135M-Instruct, fp32, CPU), 540 Bitext utterances (20 per intent from
benchmarks/data/bitext_grouped_eval.csv), the intent system prompt and the `<intent>` prefill; label-constrained
and free decoding; rows/s with `--threads` torch threads; prediction agreement between the two loops. Writes
benchmarks/results/eval_speed.json.

    OMP_NUM_THREADS=2 .venv/bin/python benchmarks/eval_speed.py            # all 540 rows
    OMP_NUM_THREADS=2 .venv/bin/python benchmarks/eval_speed.py --rows 64  # quick look

`old_generate` is the loop `rlft.evaluation.held_out.generate` ran before (text prefill, HF `generate` + trie logits
processor, batches of 16), copied here so the comparison stays runnable.
"""

from __future__ import annotations

import argparse
import csv
import json
import platform
import sys
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
EVAL_CSV = ROOT / "benchmarks" / "data" / "bitext_grouped_eval.csv"
TRAIN_CSV = ROOT.parent / "shared" / "data" / "bitext" / "bitext_customer_service_train.csv"
SYSTEM = "Classify the customer's message into one intent. Reply as <intent>label</intent>."
PREFILL = "<intent>"


def old_generate(model: Any, tokenizer: Any, prompts: Any, max_new_tokens: int = 32, batch_size: int = 16,
                 prefill: str = "", logits_processor_factory: Any = None) -> list[str]:
    """The previous `rlft.evaluation.held_out.generate`, verbatim (the baseline)."""
    import torch

    device = next(model.parameters()).device
    side = tokenizer.padding_side
    tokenizer.padding_side = "left"
    outputs: list[str] = []
    was_training = model.training
    model.eval()
    try:
        for start in range(0, len(prompts), batch_size):
            batch = prompts[start:start + batch_size]
            texts = [tokenizer.apply_chat_template(p, tokenize=False, add_generation_prompt=True)
                     if isinstance(p, list) else p for p in batch]
            texts = [t + prefill for t in texts]
            enc = tokenizer(texts, return_tensors="pt", padding=True, add_special_tokens=False).to(device)
            kwargs: dict[str, Any] = {}
            if logits_processor_factory is not None:
                kwargs["logits_processor"] = [logits_processor_factory(enc["input_ids"].shape[1])]
            with torch.no_grad():
                out = model.generate(**enc, max_new_tokens=max_new_tokens, do_sample=False,
                                     pad_token_id=tokenizer.pad_token_id, **kwargs)
            new = out[:, enc["input_ids"].shape[1]:]
            outputs.extend(prefill + t for t in tokenizer.batch_decode(new, skip_special_tokens=True))
    finally:
        tokenizer.padding_side = side
        model.train(was_training)
    return outputs


def load_rows(per_intent: int = 20) -> tuple[list[dict[str, str]], list[str]]:
    """`per_intent` utterances of every intent (file order) and the sorted label set."""
    path = EVAL_CSV if EVAL_CSV.is_file() else TRAIN_CSV
    groups: dict[str, list[dict[str, str]]] = defaultdict(list)
    with open(path, newline="") as f:
        for row in csv.DictReader(f):
            if len(groups[row["intent"]]) < per_intent:
                groups[row["intent"]].append(row)
    return [r for rows in groups.values() for r in rows], sorted(groups)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rows", type=int, default=540, help="first N of the 540 utterances")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--batch-size", type=int, default=32, help="batch size of the new loop (the old one keeps 16)")
    p.add_argument("--old-rows", type=int, default=None, help="time the old loop on the first N rows only (slow)")
    p.add_argument("--skip-old", action="store_true", help="time only the new loop")
    p.add_argument("--modes", default="constrained,free", help="comma-separated: constrained, free")
    p.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "eval_speed.json"))
    args = p.parse_args(argv)

    import torch

    from rlft.recipe.sections import AdapterConfig, DecodingConfig, ModelConfig
    from rlft.decoding.prompting import logits_processor_factory
    from rlft.decoding.generation import generate
    from rlft.run.models import load_model
    from rlft.rewards.intent import IntentParser

    torch.set_num_threads(args.threads)
    model, tokenizer = load_model(ModelConfig(), AdapterConfig(type="none"), "cpu")
    rows, labels = load_rows()
    rows = rows[:args.rows]
    prompts = [[{"role": "system", "content": SYSTEM}, {"role": "user", "content": r["utterance"]}] for r in rows]
    gold = [r["intent"] for r in rows]
    parser = IntentParser()
    results: dict[str, Any] = {"rows": len(rows), "threads": args.threads, "model": "smollm2-135m-instruct fp32",
                               "cpu": platform.processor() or platform.machine(), "new_batch_size": args.batch_size,
                               "torch": torch.__version__, "modes": {}}
    old_n = len(rows) if args.old_rows is None else min(args.old_rows, len(rows))
    results["old_rows"] = 0 if args.skip_old else old_n
    for mode in args.modes.split(","):
        decoding = DecodingConfig(prefill=PREFILL, constrain_labels=mode == "constrained")
        timing: dict[str, Any] = {}
        outs: dict[str, list[str]] = {}
        if not args.skip_old:
            factory = logits_processor_factory(tokenizer, labels, decoding)
            t0 = time.perf_counter()
            outs["old"] = old_generate(model, tokenizer, prompts[:old_n], 32, 16, PREFILL, factory)
            timing["old_s"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        outs["new"] = generate(model, tokenizer, prompts, decoding, labels, max_new_tokens=32,
                               batch_size=args.batch_size)
        timing["new_s"] = time.perf_counter() - t0
        entry: dict[str, Any] = {}
        for name, texts in outs.items():
            entry[f"{name}_rows_per_s"] = round(len(texts) / timing[f"{name}_s"], 2)
            entry[f"{name}_seconds"] = round(timing[f"{name}_s"], 2)
            entry[f"{name}_accuracy"] = round(sum(parser.parse(t)[1] == g for t, g in zip(texts, gold, strict=False))
                                              / len(texts), 4)
        if "old" in outs:
            same = [a == b for a, b in zip(outs["old"], outs["new"], strict=False)]
            entry["identical_completions"] = sum(same)
            entry["speedup"] = round(entry["new_rows_per_s"] / entry["old_rows_per_s"], 2)
            entry["first_differences"] = [{"row": i, "old": outs["old"][i], "new": outs["new"][i]}
                                          for i, s in enumerate(same) if not s][:5]
        results["modes"][mode] = entry
        print(mode, json.dumps(entry), flush=True)
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(results, indent=2) + "\n")
    print(f"{'mode':12} {'old rows/s':>11} {'new rows/s':>11} {'speedup':>8} {'identical':>10} {'acc old/new':>12}")
    for mode, e in results["modes"].items():
        print(f"{mode:12} {e.get('old_rows_per_s', float('nan')):>11} {e['new_rows_per_s']:>11} "
              f"{e.get('speedup', float('nan')):>8} {str(e.get('identical_completions', '-')) + '/' + str(old_n):>10} "
              f"{e.get('old_accuracy', float('nan'))}/{e['new_accuracy']}")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(results, indent=2) + "\n")
    return results


if __name__ == "__main__":
    main()
