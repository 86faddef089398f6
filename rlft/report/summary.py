"""What one evaluated model produced (`ModelRun`) and the per-model summary every report file is built from.

`summarise` turns completions, parsed labels and reward values into the headline metrics with bootstrap
intervals (`rlft.report.headline`, the one place they are computed), the confusion table, per-intent accuracy,
reward means (abstentions counted, never zeros) and the reward-hacking canaries against the base. Pure Python: the runner (`rlft.evaluation.eval_models`) fills `ModelRun`s; tests can
build them by hand.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from rlft.report import canaries, metrics
from rlft.report.headline import BOOTSTRAP
from rlft.report.headline import headline as headline_metrics


@dataclass
class ModelRun:
    """One model's results on the eval rows, index-aligned with the rows.

    `predicted`: parsed label or None; `parse_status`: the parser's status per row ("ok", "missing", ...);
    `rewards`: reward name -> value or None (abstained); `policy`: policy verdict per row (value in [0, 1] or None)
    when a judge reward is present; `judge_status` / `judge_rationale`: per row, when the judge reported them;
    `logps` / `base_logps`: per-token log-probs of this model's completions under itself and under the base
    (for the KL canary).
    """

    name: str
    source: str
    completions: list[str]
    decoding: dict[str, Any] = field(default_factory=dict)
    predicted: list[str | None] = field(default_factory=list)
    parse_status: list[str] = field(default_factory=list)
    rewards: dict[str, list[float | None]] = field(default_factory=dict)
    policy: list[float | None] | None = None
    judge_status: list[str] | None = None
    judge_rationale: list[str] | None = None
    logps: list[list[float]] | None = None
    base_logps: list[list[float]] | None = None
    seconds: float | None = None
    selective: Any = None  # a hand-off reward's grading (`rlft.evaluation.held_out.selective_grading`): coverage & co.


def _with_ci(values: list[float | None], key: str, summary: dict, groups: list[Any] | None = None) -> dict:
    summary[f"{key}_ci"] = metrics.bootstrap_ci(values, groups=groups, **BOOTSTRAP)
    return summary


def summarise(run: ModelRun, gold: list[str] | None, labels: list[str], base: ModelRun | None = None,
              policy_threshold: float = 0.5, groups: list[Any] | None = None) -> dict[str, Any]:
    """Headline metrics (with 95% bootstrap intervals; with `groups`, a key per row, over whole groups of
    near-duplicate rows), tables and canaries for one model."""
    n = len(run.completions)
    out: dict[str, Any] = {"name": run.name, "source": run.source, "n": n, "decoding": run.decoding,
                           "generation_seconds": run.seconds,
                           "rows_per_second": round(n / run.seconds, 2) if run.seconds else None}
    labelled = gold is not None and bool(run.predicted)
    if labelled:
        out["confusion"] = metrics.confusion(run.predicted, gold)
        out["per_intent"] = metrics.per_intent_accuracy(run.predicted, gold)
    headline = headline_metrics(run.predicted, gold if labelled else None, labels, run.policy,
                                policy_threshold=policy_threshold, selective=run.selective, groups=groups)
    out["headline"] = headline
    out["rewards"] = {}
    for name, values in run.rewards.items():
        out["rewards"][name] = _with_ci(values, "mean", metrics.mean_ignoring_abstentions(values), groups)
    out["canaries"] = run_canaries(run, base)
    return out


def run_canaries(run: ModelRun, base: ModelRun | None) -> dict[str, Any]:
    c: dict[str, Any] = {"mean_words": canaries.mean_length(run.completions),
                         "repetition_rate_3gram": canaries.repetition_rate(run.completions, 3),
                         "near_duplicate_share": canaries.near_duplicate_share(run.completions)}
    c["score_length_correlation"] = {name: canaries.score_length_correlation(values, run.completions)
                                     for name, values in run.rewards.items()}
    if base is not None and base is not run:
        c["length_drift_vs_base"] = canaries.length_drift(run.completions, base.completions)
    if run.logps is not None and run.base_logps is not None:
        c["kl_to_base"] = canaries.kl_to_base(run.logps, run.base_logps)
    return c


def disagreements(runs: list[ModelRun]) -> list[bool]:
    """Per row: do the models' parsed labels (or, without labels, their normalised texts) differ?"""
    if len(runs) < 2:
        return [False] * (len(runs[0].completions) if runs else 0)
    out = []
    for i in range(len(runs[0].completions)):
        if all(r.predicted for r in runs):
            keys = {r.predicted[i] for r in runs}
        else:
            keys = {canaries.normalise(r.completions[i]) for r in runs}
        out.append(len(keys) > 1)
    return out


def decoding_text(decoding: dict[str, Any] | None) -> str:
    """Decoding settings as the recipe writes them (`prefill: "<intent>", constrain_labels: true, ...`: JSON values,
    so a newline shows as "\\n"); unset ones (None, "") are left out."""
    shown = [f"{k}: {json.dumps(v, default=str)}" for k, v in (decoding or {}).items() if v is not None and v != ""]
    return ", ".join(shown) if shown else "defaults"


def label_only(decoding: dict[str, Any] | None) -> bool:
    """Every reply is one allowed label and nothing else (the label constraint without a free reply)."""
    d = decoding or {}
    return bool(d.get("constrain_labels")) and not d.get("free_reply")


def _cell(summary: dict, key: str) -> str:
    v, ci = summary.get(key), summary.get(f"{key}_ci")
    if v is None:
        return "—"
    if isinstance(v, float):
        return f"{v:.3f} [{ci[0]:.3f}, {ci[1]:.3f}]" if ci else f"{v:.3f}"
    return str(v)


def headline_rows(models: list[dict]) -> tuple[list[str], list[list[str]]]:
    """(header, rows) of the headline table: one row per model, metrics with their 95% interval."""
    keys: list[str] = []
    for m in models:
        keys += [k for k in m["headline"] if not k.endswith("_ci") and k not in keys]
    rewards: list[str] = []
    for m in models:
        rewards += [r for r in m["rewards"] if r not in rewards]
    header = ["model", "n", *keys, *(f"reward/{r}" for r in rewards)]
    rows = []
    for m in models:
        row = [m["name"], str(m["n"]), *(_cell(m["headline"], k) for k in keys)]
        for r in rewards:
            s = m["rewards"].get(r)
            row.append("—" if s is None else f"{_cell(s, 'mean')} (abstained {s['abstained']})")
        rows.append(row)
    return header, rows
