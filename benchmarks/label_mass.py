"""Where free decoding puts its probability: mass on valid labels, training rows vs grouped held-out rows.

    OMP_NUM_THREADS=1 python benchmarks/label_mass.py --adapter runs/bitext_label_pg_30min
    python benchmarks/label_mass.py --model <tiny model dir> --rows 6 --adapter none     # smoke

A diagnostic for the free-decoding gap of issue 11 (docs/benchmarks.md#free-gap). For every row it computes, in
one teacher-forced pass over all 27 label paths (`rlft.decoding.label_space.label_logprobs`, the objective's own code):

- `valid_label_mass`: Σₖ π_free(k|x), the probability that plain greedy-free sampling (prefill only, no grammar)
  writes some allowed `label</intent>` + EOS; 1 − it is mass on replies that are no label (invented labels);
- `p_free_gold` / `p_con_gold`: π_free and π_con (the trie-renormalised policy) of the gold label;
- `frac_rows_mass_below_half`: rows where most of the free mass is off the label set.

Rows: `--rows` training rows drawn from benchmarks/data/bitext_grouped_train.csv (seed 0) and the 270 grouped
held-out rows of benchmarks/data/bitext_grouped_eval_270.csv (the first `--rows` of them), same system prompt and
`<intent>` prefill as benchmarks/intent_rlef.py. For the base model and, unless `--adapter none`, the adapter.
Prints a table and writes benchmarks/results/label_mass.json.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.supervised_reference import DATA, SYSTEM, read_csv  # noqa: E402
from rlft.recipe.sections import AdapterConfig, DecodingConfig, ModelConfig  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results" / "label_mass.json"
DECODING = DecodingConfig(prefill="<intent>", constrain_labels=True)


def mass_stats(model, tokenizer, space, labels: list[str], rows: list[dict[str, str]], batch: int = 27) -> dict:
    import torch

    from rlft.decoding.prompting import prompt_ids
    from rlft.decoding.label_space import label_logprobs

    mass, p_free, p_con = [], [], []
    for start in range(0, len(rows), batch):
        chunk = rows[start:start + batch]
        ids = [prompt_ids(tokenizer, [{"role": "system", "content": SYSTEM},
                                      {"role": "user", "content": r["utterance"]}], DECODING) for r in chunk]
        with torch.no_grad():
            lp = label_logprobs(model, space, ids, pad_token_id=tokenizer.pad_token_id)
        gold = torch.tensor([labels.index(r["intent"]) for r in chunk])
        at = torch.arange(len(chunk))
        mass += lp.free.exp().sum(1).tolist()
        p_free += lp.free.exp()[at, gold].tolist()
        p_con += lp.constrained.exp()[at, gold].tolist()
    n = len(rows)
    return {"rows": n, "valid_label_mass": round(sum(mass) / n, 4), "p_free_gold": round(sum(p_free) / n, 4),
            "p_con_gold": round(sum(p_con) / n, 4),
            "frac_rows_mass_below_half": round(sum(m < 0.5 for m in mass) / n, 4)}


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="smollm2-135m-instruct")
    parser.add_argument("--adapter", default="runs/bitext_label_pg_30min", help="adapter dir, or none")
    parser.add_argument("--rows", type=int, default=270, help="rows per side")
    parser.add_argument("--out", type=Path, default=RESULTS)
    ns = parser.parse_args(argv)

    import torch

    from rlft.decoding.label_space import LabelSpace
    from rlft.run.models import load_model

    torch.manual_seed(0)
    model, tokenizer = load_model(ModelConfig(name=ns.model), AdapterConfig(type="none"), "cpu")
    held = read_csv(DATA / "bitext_grouped_eval_270.csv")[:ns.rows]
    train = random.Random(0).sample(read_csv(DATA / "bitext_grouped_train.csv"), ns.rows)
    labels = sorted({r["intent"] for r in read_csv(DATA / "bitext_grouped_train.csv")})
    space = LabelSpace.build(tokenizer, labels, DECODING)
    names = ["base"] + ([Path(ns.adapter).name] if ns.adapter != "none" else [])
    result = {"command": "python benchmarks/label_mass.py " + " ".join(argv if argv is not None else sys.argv[1:]),
              "models": {}}
    print(f"{'model':<24} {'rows':<9} {'valid-label mass':>16} {'p_free(gold)':>12} {'p_con(gold)':>11} "
          f"{'rows mass<0.5':>13}")
    m = model
    for name in names:
        if name != "base":  # only now: PEFT injects the adapter into `model` in place
            from peft import PeftModel

            m = PeftModel.from_pretrained(model, ns.adapter)
        m.eval()
        result["models"][name] = {}
        for side, rows in (("train", train), ("heldout", held)):
            s = mass_stats(m, tokenizer, space, labels, rows)
            result["models"][name][side] = s
            print(f"{name:<24} {side:<9} {s['valid_label_mass']:>16.3f} {s['p_free_gold']:>12.3f} "
                  f"{s['p_con_gold']:>11.3f} {s['frac_rows_mass_below_half']:>13.3f}", flush=True)
    ns.out.parent.mkdir(parents=True, exist_ok=True)
    ns.out.write_text(json.dumps(result, indent=1) + "\n")
    return result


if __name__ == "__main__":
    main()
