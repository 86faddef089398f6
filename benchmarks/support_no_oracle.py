"""The support agent without the answer in its prompt: every design and baseline on the same held-out rows.

    python benchmarks/support_no_oracle.py --model lookup_s42=runs/lookup_s42 --model lookup_s1=runs/lookup_s1

Rows (Bitext, the recipes' grouped held-out split, the first --rows rows; scored by the lookup recipe's rewards:
intent, the rubric against the GOLD intent's policy, length):
- `tfidf+article` (no model): TF-IDF + logistic regression picks the intent from the message, the reply is that
  intent's help-centre article pasted verbatim.
- `handbook/base`: the base model with all 27 articles in its system prompt (recipes/support_agent_bitext_handbook.yaml,
  prompt engineering).
- `lookup/base` and each `--model`: recipes/support_agent_bitext.yaml: the prompt is the customer's message;
  the article of the label the model wrote is appended after its head (decoding.lookup).
An adapter directory whose own end-of-training report already scored these rows (same recipe, same row count) is
read from DIR/report/report.json; anything else runs `rlft eval`. Oracle figures (the gold intent's article in the
prompt) are not rows here: docs/support_agent.md labels them.

Also reports each design's deployed prompt length in tokens (mean over the rows), as a ratio to the handbook's, and
for the lookup design the prompt + looked-up article. Writes benchmarks/results/support_no_oracle<TAG>.json.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
RESULTS = ROOT / "benchmarks" / "results"
LOOKUP = ROOT / "recipes" / "support_agent_bitext.yaml"
HANDBOOK = ROOT / "recipes" / "support_agent_bitext_handbook.yaml"
ORACLE = ROOT / "recipes" / "support_agent_bitext_exact.yaml"


def eval_report(recipe: Path, model: str, rows: int, out: Path, seed: int) -> dict[str, Any]:
    """The model's summary from `rlft eval` on the recipe's first `rows` held-out rows (reused when present)."""
    name, _, ref = model.partition("=") if "=" in model else (model, "", model)
    own = Path(ref) / "report" / "report.json"
    if ref != "base" and own.exists():
        summary = json.loads(own.read_text())["models"][-1]
        if summary["n"] == rows:
            return {**summary, "name": name}
    report = out / "report.json"
    if not report.exists():
        subprocess.run([sys.executable, "-m", "rlft", "eval", str(recipe), f"seed={seed}", "--model", model,
                        "--max-samples", str(rows), "--out", str(out)], check=True)
    return {**json.loads(report.read_text())["models"][-1], "name": name}


def prompt_tokens(recipe_path: Path, rows: int, seed: int) -> tuple[float, float]:
    """(mean deployed prompt tokens, mean looked-up tokens) over the first `rows` held-out rows."""
    import rlft
    from transformers import AutoTokenizer

    from rlft.data.loading import prepare
    from rlft.decoding.prompting import build_trie, prompt_ids
    from rlft.run.models import embedded_gguf

    recipe = rlft.load_recipe(str(recipe_path), [f"seed={seed}"])
    data = prepare(recipe.data, recipe.algorithm, recipe.seed)
    held = data.eval.select(range(min(rows, len(data.eval))))
    gguf = embedded_gguf("smollm2-135m-instruct")
    tok = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    lengths = [len(prompt_ids(tok, p, recipe.decoding)) for p in held["prompt"]]
    looked_up = 0.0
    if recipe.decoding.lookup:
        trie = build_trie(tok, data.labels, recipe.decoding)
        looked_up = statistics.mean(trie.lookup_lengths.values())
    return statistics.mean(lengths), looked_up


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", action="append", default=[], help="NAME=ADAPTER_DIR of the lookup recipe (repeatable)")
    p.add_argument("--rows", type=int, default=270)
    p.add_argument("--out", default="runs/no_oracle")
    p.add_argument("--tag", default="")
    p.add_argument("--skip-base", action="store_true", help="no handbook/base and lookup/base rows")
    p.add_argument("--seed", type=int, default=42, help="the recipe seed: it also draws the grouped split, so each "
                   "training seed is scored on its own held-out rows (a run of seed 1 trained on seed 42's rows)")
    ns = p.parse_args()
    out = Path(ns.out)

    from benchmarks.support_retrieval import article_row, retrieve, write_rows

    import rlft
    from rlft.data.loading import prepare
    from rlft.judge.policies import Guidelines

    recipe = rlft.load_recipe(str(LOOKUP), [f"seed={ns.seed}"])
    cfg = recipe.data
    data = prepare(cfg, recipe.algorithm, recipe.seed)
    held = data.eval.select(range(min(ns.rows, len(data.eval))))
    texts, truth = [str(t) for t in held["utterance"]], [str(t) for t in held[cfg.label_column]]
    picked = retrieve([str(t) for t in data.train["utterance"]], [str(t) for t in data.train[cfg.label_column]], texts)
    articles = Guidelines.from_params(None, recipe.decoding.lookup)
    csv_path = write_rows(out / "retrieved.csv", [
        {"utterance": t, cfg.label_column: y, "policy": articles.for_key(k), "retrieved_intent": k}
        for t, y, k in zip(texts, truth, picked, strict=True)])
    rows = [("tfidf+article", "none (TF-IDF intent, article pasted)", article_row(str(LOOKUP), csv_path,
                                                                                   out / "article"))]
    if not ns.skip_base:
        rows.append(("handbook/base", "all 27 articles in the system prompt",
                     eval_report(HANDBOOK, "base", ns.rows, out / "handbook_base", ns.seed)))
        rows.append(("lookup/base", "customer message; article of the chosen label after the head",
                     eval_report(LOOKUP, "base", ns.rows, out / "lookup_base", ns.seed)))
    for model in ns.model:
        name = model.partition("=")[0]
        rows.append((f"lookup/{name}", "customer message; article of the chosen label after the head",
                     eval_report(LOOKUP, model, ns.rows, out / name, ns.seed)))

    hb_tokens, _ = prompt_tokens(HANDBOOK, ns.rows, ns.seed)
    lk_tokens, lk_article = prompt_tokens(LOOKUP, ns.rows, ns.seed)
    or_tokens, _ = prompt_tokens(ORACLE, ns.rows, ns.seed)
    lengths = {"handbook": hb_tokens, "lookup": lk_tokens, "lookup_with_article": lk_tokens + lk_article,
               "oracle_article_prompt": or_tokens}
    table = []
    for name, prompt, m in rows:
        h = m["headline"]
        table.append({"row": name, "prompt": prompt, "n": m["n"], "intent_accuracy": h["intent_accuracy"],
                      "intent_ci": h["intent_accuracy_ci"], "policy_following": h["policy_following"],
                      "policy_ci": h["policy_following_ci"], "system_accuracy": h["system_accuracy"],
                      "system_ci": h["system_accuracy_ci"], "mean_words": m["canaries"]["mean_words"]})
    print(f"\nTF-IDF retriever accuracy on these rows: {sum(a == b for a, b in zip(picked, truth)) / len(truth):.3f}")
    print("\n| row | n | intent | policy-following | system accuracy | words |")
    print("|---|---:|---:|---:|---:|---:|")
    for r in table:
        print(f"| {r['row']} | {r['n']} | {r['intent_accuracy']:.3f} | {r['policy_following']:.3f} "
              f"[{r['policy_ci'][0]:.3f}, {r['policy_ci'][1]:.3f}] | {r['system_accuracy']:.3f} "
              f"[{r['system_ci'][0]:.3f}, {r['system_ci'][1]:.3f}] | {r['mean_words']:.1f} |")
    print("\n| deployed prompt | mean tokens | / handbook |")
    print("|---|---:|---:|")
    for k, v in lengths.items():
        print(f"| {k} | {v:.0f} | {v / hb_tokens:.2f} |")
    RESULTS.mkdir(parents=True, exist_ok=True)
    summary = {"rows": ns.rows, "seed": ns.seed, "models": ns.model, "table": table, "prompt_tokens": lengths}
    (RESULTS / f"support_no_oracle{ns.tag}.json").write_text(json.dumps(summary, indent=2) + "\n")


if __name__ == "__main__":
    main()
