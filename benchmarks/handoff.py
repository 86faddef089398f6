"""Hand-off vs cross-entropy + a confidence threshold, on the same held-out rows (issue 30, item 4).

    OMP_NUM_THREADS=1 python benchmarks/handoff.py --baseline runs/intent_grpo_bitext \\
        --handoff runs/intent_handoff_bitext
    python benchmarks/handoff.py --recipe <tiny recipe> --baseline-recipe <tiny recipe> --baseline base \\
        --handoff base --max-samples 8 --out /tmp/handoff.json                                       # smoke

(a) The baseline: `--baseline` (an adapter directory, or `base`) under `--baseline-recipe` (default
recipes/intent_grpo_bitext.yaml: its prompt and label set, the hand-off label dropped if listed). For every
held-out row, one teacher-forced pass scores every label (`rlft.decoding.label_space.label_logprobs`, the objective's own
code): the constrained label distribution π_con, its argmax is the answer and max π_con the confidence. Sweeping
the threshold gives the risk-coverage curve (`rlft.report.metrics.risk_coverage`); the table reads it at the
largest coverage with selective accuracy >= `--target` (0.95) and at the hand-off adapter's coverage.

(b) The hand-off adapter `--handoff` under `--recipe` (default recipes/intent_handoff_bitext.yaml): its own
decisions, greedy under the recipe's decoding (what `rlft eval` reports) and the argmax of its π_con over the
labels with the hand-off; and its own curve (confidence = max π_con over the other labels, the hand-off counted
as the least confident).

Both recipes must select the same held-out rows (the same data, split and seed; checked). Every decision is graded
by the hand-off recipe's intent reward (`decision_value`: right 1, hand-off 0.5, wrong 0 by default), so expected
reward and cost per row are comparable. Prints a table and writes benchmarks/results/handoff.json.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from rlft.report import metrics  # noqa: E402
from rlft.report.headline import selective_metrics  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results" / "handoff.json"


def load(recipe: Any, ref: str) -> tuple[Any, Any]:
    """The recipe's base model, with the adapter `ref` on it unless `ref` is `base`."""
    import dataclasses

    from rlft.run.models import load_model

    model, tokenizer = load_model(recipe.model, dataclasses.replace(recipe.adapter, type="none"), "cpu")
    if ref != "base":
        from peft import PeftModel

        model = PeftModel.from_pretrained(model, ref)
    return model.eval(), tokenizer


def label_probs(model: Any, tokenizer: Any, prompts: list[Any], labels: list[str], decoding: Any,
                batch: int) -> list[list[float]]:
    """π_con(label | prompt) for every row and label, from `rlft.decoding.label_space.label_logprobs`."""
    import torch

    from rlft.decoding.prompting import prompt_ids
    from rlft.decoding.label_space import LabelSpace, label_logprobs

    space = LabelSpace.build(tokenizer, labels, decoding)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    out: list[list[float]] = []
    for start in range(0, len(prompts), batch):
        ids = [prompt_ids(tokenizer, p, decoding) for p in prompts[start:start + batch]]
        with torch.no_grad():
            lp = label_logprobs(model, space, ids, pad_token_id=pad, free=False)
        out += lp.constrained.exp().tolist()
    return out


def argmax_decisions(probs: list[list[float]], labels: list[str], handoff: str | None = None
                     ) -> tuple[list[str], list[float]]:
    """Per row: the likeliest label, and the confidence max π over the labels other than the hand-off (a row
    whose likeliest label is the hand-off gets confidence -1: the first to be handed off)."""
    keep = [i for i, label in enumerate(labels) if label != handoff]
    answers, confidence = [], []
    for row in probs:
        best = max(range(len(labels)), key=row.__getitem__)
        answers.append(labels[best])
        confidence.append(-1.0 if labels[best] == handoff else max(row[i] for i in keep))
    return answers, confidence


def operating_point(name: str, decided: list[str | None], gold: list[str], grading: Any,
                    threshold: float | None = None) -> dict[str, Any]:
    values = selective_metrics(decided, gold, grading, intervals=False)
    return {"arm": name, "threshold": threshold, **{k: values[k] for k in (
        "coverage", "selective_accuracy", "handoff_rate", "expected_reward", "expected_cost")}}


def thresholded(name: str, curve: list[dict], point: dict | None, answers: list[str], confidence: list[float],
                gold: list[str], grading: Any) -> dict[str, Any]:
    if point is None:
        return {"arm": name, "threshold": None, "coverage": None, "selective_accuracy": None, "handoff_rate": None,
                "expected_reward": None, "expected_cost": None}
    decided = metrics.abstain_below(answers, confidence, float(point["threshold"]), grading.label)
    return operating_point(name, decided, gold, grading, float(point["threshold"]))


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--recipe", default=str(ROOT / "recipes" / "intent_handoff_bitext.yaml"))
    parser.add_argument("--handoff", default="runs/intent_handoff_bitext", help="hand-off adapter dir, or base")
    parser.add_argument("--baseline-recipe", default=str(ROOT / "recipes" / "intent_grpo_bitext.yaml"))
    parser.add_argument("--baseline", default="runs/intent_grpo_bitext", help="baseline adapter dir, or base")
    parser.add_argument("--target", type=float, default=0.95, help="selective accuracy of the baseline's point")
    parser.add_argument("--max-samples", type=int, default=None, help="first N held-out rows (default: all)")
    parser.add_argument("--batch-size", type=int, default=27)
    parser.add_argument("--out", type=Path, default=RESULTS)
    ns = parser.parse_args(argv)

    import torch

    from rlft.evaluation.eval_models import load_eval_rows
    from rlft.evaluation.held_out import generate_with, selective_grading
    from rlft.recipe.load import load_recipe
    from rlft.scoring.for_recipe import load_recipe_rewards

    torch.manual_seed(0)
    recipe = load_recipe(ns.recipe)
    base_recipe = load_recipe(ns.baseline_recipe)
    rows, labels = load_eval_rows(recipe, None, ns.max_samples)
    base_rows, base_labels = load_eval_rows(base_recipe, None, ns.max_samples)
    if [p[-1]["content"] for p in rows["prompt"]] != [p[-1]["content"] for p in base_rows["prompt"]]:
        sys.exit("the two recipes select different held-out rows (data, split or seed differ): compare on the same")
    rewards = load_recipe_rewards(recipe, labels, [rows])
    grading = selective_grading(rewards)
    if grading is None:
        sys.exit(f"{ns.recipe}: no reward declares a hand-off (intent reward params.handoff)")
    parse = next(r.parser for r in rewards if r.selective is grading)
    gold = [parse.normalize(g) for g in rows[recipe.data.label_column]]
    base_labels = [x for x in base_labels if parse.normalize(x) != grading.label]
    result: dict[str, Any] = {"recipe": ns.recipe, "handoff_adapter": ns.handoff, "baseline_recipe":
                              ns.baseline_recipe, "baseline_adapter": ns.baseline, "rows": len(gold),
                              "handoff_label": grading.label, "target_selective_accuracy": ns.target}

    # (a) the baseline's label distribution, thresholded
    start = time.process_time()
    model, tokenizer = load(base_recipe, ns.baseline)
    probs = label_probs(model, tokenizer, list(base_rows["prompt"]), base_labels, base_recipe.decoding,
                        ns.batch_size)
    del model
    answers, confidence = argmax_decisions(probs, [parse.normalize(x) for x in base_labels])
    curve = metrics.risk_coverage(confidence, [a == g for a, g in zip(answers, gold, strict=True)])
    result["baseline_cpu_s"] = round(time.process_time() - start, 1)

    # (b) the hand-off adapter: greedy decisions (as rlft eval), argmax of pi_con, its own curve
    start = time.process_time()
    model, tokenizer = load(recipe, ns.handoff)
    completions = generate_with(model, tokenizer, list(rows["prompt"]), recipe.decoding, labels,
                                max_new_tokens=recipe.evaluation.max_new_tokens, batch_size=ns.batch_size)
    greedy = [parse.parse(c)[1] for c in completions]
    h_probs = label_probs(model, tokenizer, list(rows["prompt"]), labels, recipe.decoding, ns.batch_size)
    del model
    h_answers, h_confidence = argmax_decisions(h_probs, [parse.normalize(x) for x in labels], grading.label)
    h_curve = metrics.risk_coverage(h_confidence, [a == g for a, g in zip(h_answers, gold, strict=True)])
    result["handoff_cpu_s"] = round(time.process_time() - start, 1)

    own = operating_point("handoff adapter, greedy (rlft eval)", greedy, gold, grading)
    arms = [
        thresholded(f"CE + threshold, selective accuracy >= {ns.target}", curve,
                    metrics.at_accuracy(curve, ns.target), answers, confidence, gold, grading),
        thresholded("CE + threshold, at the hand-off adapter's coverage", curve,
                    metrics.at_coverage(curve, own["coverage"] or 0.0), answers, confidence, gold, grading),
        operating_point("CE, no threshold", answers, gold, grading),
        own,
        operating_point("handoff adapter, argmax pi_con", h_answers, gold, grading),
        thresholded(f"handoff adapter + threshold, selective accuracy >= {ns.target}", h_curve,
                    metrics.at_accuracy(h_curve, ns.target), h_answers, h_confidence, gold, grading),
    ]
    result["arms"] = arms
    result["baseline_curve"] = curve
    result["handoff_curve"] = h_curve

    header = ("arm", "threshold", "coverage", "sel. acc", "hand-off", "E[reward]", "E[cost]")
    table = [header] + [(a["arm"], *("-" if a[k] is None else f"{a[k]:.3f}" for k in (
        "threshold", "coverage", "selective_accuracy", "handoff_rate", "expected_reward", "expected_cost")))
        for a in arms]
    widths = [max(len(r[i]) for r in table) for i in range(len(header))]
    for r in table:
        print("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)))
    print(f"{len(gold)} held-out rows; CPU s: baseline {result['baseline_cpu_s']}, hand-off {result['handoff_cpu_s']}")
    ns.out.parent.mkdir(parents=True, exist_ok=True)
    ns.out.write_text(json.dumps(result, indent=1))
    print(f"wrote {ns.out}")
    return result


if __name__ == "__main__":
    main()
