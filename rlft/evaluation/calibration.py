"""How well a pairwise reward model ranks and how honest its confidence is: accuracy, calibration table, ECE.

For a pair with scores (r_chosen, r_rejected) the Bradley–Terry model predicts P(chosen wins) = σ(r_c − r_r). The
table buckets pairs by the model's confidence max(p, 1 − p) and compares it with the observed accuracy (share of
pairs where the higher-scored response is the human-chosen one). A calibrated model's accuracy ≈ its confidence.
Not here: scoring (see `rlft.trainers.reward_trainer`) or plotting.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

DEFAULT_EDGES = (0.5, 0.6, 0.7, 0.8, 0.9, 1.0)


def pairwise_report(chosen: Sequence[float], rejected: Sequence[float], edges: Sequence[float] = DEFAULT_EDGES
                    ) -> dict[str, Any]:
    """Accuracy, mean margin, expected calibration error and the bucket table for paired scores."""
    if len(chosen) != len(rejected):
        raise ValueError(f"{len(chosen)} chosen scores but {len(rejected)} rejected scores")
    n = len(chosen)
    if n == 0:
        return {"pairs": 0, "accuracy": float("nan"), "mean_margin": float("nan"), "ece": float("nan"), "table": []}
    rows = []
    for c, r in zip(chosen, rejected, strict=True):
        p = 1.0 / (1.0 + math.exp(-(c - r))) if c - r > -700 else 0.0
        rows.append((max(p, 1.0 - p), c > r))
    table, ece = [], 0.0
    for i, (lo, hi) in enumerate(zip(edges, edges[1:])):
        last = i == len(edges) - 2
        members = [(conf, ok) for conf, ok in rows if lo <= conf < hi or (last and conf == hi)]
        if not members:
            table.append({"confidence": f"{lo:.1f}-{hi:.1f}", "pairs": 0, "mean_confidence": None, "accuracy": None})
            continue
        mean_conf = sum(c for c, _ in members) / len(members)
        acc = sum(ok for _, ok in members) / len(members)
        ece += len(members) / n * abs(acc - mean_conf)
        table.append({"confidence": f"{lo:.1f}-{hi:.1f}", "pairs": len(members),
                      "mean_confidence": round(mean_conf, 4), "accuracy": round(acc, 4)})
    return {"pairs": n, "accuracy": sum(ok for _, ok in rows) / n,
            "mean_margin": sum(c - r for c, r in zip(chosen, rejected, strict=True)) / n, "ece": ece,
            "table": table}


def format_table(report: dict[str, Any]) -> str:
    """The calibration table as aligned text for logs and the console."""
    lines = [f"pairs={report['pairs']} accuracy={report['accuracy']:.3f} ece={report['ece']:.3f}",
             f"{'confidence':<12}{'pairs':>7}{'mean conf':>11}{'accuracy':>10}"]
    for row in report["table"]:
        conf = "-" if row["mean_confidence"] is None else f"{row['mean_confidence']:.3f}"
        acc = "-" if row["accuracy"] is None else f"{row['accuracy']:.3f}"
        lines.append(f"{row['confidence']:<12}{row['pairs']:>7}{conf:>11}{acc:>10}")
    return "\n".join(lines)
