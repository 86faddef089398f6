"""The support agent with a real retriever instead of the oracle: does the tuned adapter still follow the policy?

    python benchmarks/support_retrieval.py --model tuned=runs/support_agent      # + base, both retrievers

`recipes/support_agent.yaml` shows each row the help-centre article of its TRUE intent (`data.policies`): an oracle
retriever, which also hints the intent head. Here the article is the one a retriever picks from the customer's
message alone: TF-IDF (word 1-2 + char_wb 2-5) + logistic regression fitted on the recipe's training split, top-1
intent -> that intent's article. Every model is scored by `rlft eval` on the recipe's held-out rows (the first
evaluation.max_samples, the rows training scores) twice: with the oracle article and with the retrieved one
(`data.policies=null`, the article given as the CSV's `policy` column; when the retriever is right on every row the
prompts are the oracle's and so are the scores).
Rewards and the rubric are the recipe's, against the TRUE intent. scikit-learn is a test/benchmark extra.

A non-neural row comes with them, `tfidf+article`: the head is the retriever's intent and the reply is that intent's
article, verbatim (no model). It is what copying the retrieved help text scores on the same rewards: the bar a
trained reply has to clear.

Writes OUT/{oracle,retrieved}.csv, OUT/<retriever>/report.* and benchmarks/results/support_retrieval<TAG>.json, and
prints the table.

    python benchmarks/support_retrieval.py --recipe recipes/support_agent_bitext_oracle.yaml \
        --out runs/support_retrieval_bitext --model tuned=runs/support_agent_bitext --tag _bitext
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
RESULTS = ROOT / "benchmarks" / "results"


def retrieve(train_texts: list[str], train_labels: list[str], texts: list[str]) -> list[str]:
    """Top-1 intent of each text from the TF-IDF + logistic regression baseline fitted on the training rows."""
    from benchmarks.baselines import tfidf_lr_model

    return [str(x) for x in tfidf_lr_model().fit(train_texts, train_labels).predict(texts)]


def write_rows(path: Path, rows: list[dict[str, str]]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return path


def article_row(recipe_path: str, csv_path: Path, out: Path) -> dict[str, Any]:
    """Score the non-neural reply `<intent>retrieved</intent> article` on the rows of `csv_path` (written by `main`)
    with the recipe's rewards and summarise it like `rlft eval` (report files in `out`)."""
    import rlft
    from rlft.evaluation.eval_models import load_eval_rows, write_eval_report
    from rlft.evaluation.held_out import intent_parser, score_run
    from rlft.scoring.for_recipe import load_recipe_rewards
    from rlft.report.summary import ModelRun

    recipe = rlft.load_recipe(recipe_path, ["data.policies=null", f"data.source={csv_path}"])
    rows, labels = load_eval_rows(recipe, str(csv_path), None)
    d = recipe.decoding
    completions = [f"{d.prefill}{k}{d.label_suffix} {a}" for k, a in zip(rows["retrieved_intent"], rows["policy"],
                                                                          strict=True)]
    run = ModelRun("tfidf+article", "TF-IDF + LR intent, the retrieved article as the reply (no model)", completions,
                   decoding={"mode": "none: the reply is the retrieved article"}, seconds=0.0)
    rewards = load_recipe_rewards(recipe, labels, [rows])
    prompts = list(rows["prompt"])
    score_run(run, rewards, prompts, {c: list(rows[c]) for c in rows.column_names if c != "prompt"},
              intent_parser(rewards))
    result = write_eval_report(out, recipe, rows, labels, [run], title="non-neural reply: the retrieved article",
                               data_desc=str(csv_path))
    return result["models"][0]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--recipe", default=str(ROOT / "recipes" / "support_agent.yaml"))
    p.add_argument("--model", action="append", default=[], help="NAME=ADAPTER_DIR (repeatable); base is added")
    p.add_argument("--out", default="runs/support_retrieval")
    p.add_argument("--tag", default="", help="suffix of the results file name")
    ns = p.parse_args()

    import rlft
    from rlft.data.loading import prepare
    from rlft.judge.policies import Guidelines

    recipe = rlft.load_recipe(ns.recipe)
    cfg = recipe.data
    data = prepare(cfg, recipe.algorithm, recipe.seed)
    articles = Guidelines.from_params(None, cfg.policies)
    held = data.eval.select(range(min(recipe.evaluation.max_samples, len(data.eval))))  # the rows training scores
    texts = [str(t) for t in held["utterance"]]
    truth = [str(t) for t in held[cfg.label_column]]
    picked = retrieve([str(t) for t in data.train["utterance"]], [str(t) for t in data.train[cfg.label_column]], texts)
    retrieval_accuracy = sum(a == b for a, b in zip(picked, truth, strict=True)) / len(truth)
    out = Path(ns.out)
    models = ["base", *ns.model]
    table: list[dict[str, Any]] = []
    reports: dict[str, list[dict[str, Any]]] = {}
    for name, intents in (("oracle", truth), ("retrieved", picked)):
        rows = [{"utterance": t, cfg.label_column: y, "policy": articles.for_key(k), "retrieved_intent": k}
                for t, y, k in zip(texts, truth, intents, strict=True)]
        csv_path = write_rows(out / f"{name}.csv", rows)
        if name == "retrieved" and intents == truth:  # same prompts as the oracle's: greedy gives the same replies
            print("[support_retrieval] the retriever picked the true intent's article on every row: "
                  "the retrieved scores are the oracle's")
        else:
            key = hashlib.sha256(csv_path.read_bytes() + " ".join(models).encode()).hexdigest()
            stamp = out / name / "inputs.sha256"
            if not (stamp.exists() and stamp.read_text() == key):  # reruns reuse a report of the same inputs
                cmd = [sys.executable, "-m", "rlft", "eval", ns.recipe, "data.policies=null",
                       f"data.source={csv_path}", "--data", str(csv_path), "--out", str(out / name),
                       *(x for m in models for x in ("--model", m))]
                subprocess.run(cmd, check=True)
                stamp.write_text(key)
        report = json.loads((out / ("oracle" if intents == truth else name) / "report.json").read_text())
        reports[name] = report["models"]
    reports["retrieved"] = [*reports["retrieved"], article_row(ns.recipe, out / "retrieved.csv", out / "article")]
    for name, summaries in reports.items():
        article_right = round(1.0 if name == "oracle" else retrieval_accuracy, 3)
        for m in summaries:
            h = m["headline"]
            table.append({"retriever": name, "model": m["name"], "n": m["n"], "article_of_true_intent": article_right,
                          "intent_accuracy": h["intent_accuracy"], "intent_ci": h["intent_accuracy_ci"],
                          "policy_following": h["policy_following"], "policy_ci": h["policy_following_ci"],
                          "system_accuracy": h["system_accuracy"], "system_ci": h["system_accuracy_ci"],
                          "mean_words": m["canaries"]["mean_words"],
                          "near_duplicate_share": m["canaries"]["near_duplicate_share"]})
    print(f"\nretriever accuracy (TF-IDF + LR on {len(data.train)} training rows): {retrieval_accuracy:.3f}\n")
    print("| retriever | model | article right | intent | policy-following | system | words | near-dup |")
    print("|---|---|---:|---:|---:|---:|---:|---:|")
    for r in table:
        print(f"| {r['retriever']} | {r['model']} | {r['article_of_true_intent']:.3f} | {r['intent_accuracy']:.3f} | "
              f"{r['policy_following']:.3f} [{r['policy_ci'][0]:.3f}, {r['policy_ci'][1]:.3f}] | "
              f"{r['system_accuracy']:.3f} [{r['system_ci'][0]:.3f}, {r['system_ci'][1]:.3f}] | "
              f"{r['mean_words']:.1f} | {r['near_duplicate_share']:.2f} |")
    RESULTS.mkdir(parents=True, exist_ok=True)
    summary = {"recipe": ns.recipe, "models": models, "retrieval_accuracy": retrieval_accuracy, "rows": table}
    (RESULTS / f"support_retrieval{ns.tag}.json").write_text(json.dumps(summary, indent=2) + "\n")


if __name__ == "__main__":
    main()
