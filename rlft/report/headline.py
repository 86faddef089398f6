"""The headline metrics, computed in one place for every consumer: `rlft eval`'s report (values with 95% bootstrap
intervals and counts, `rlft.report.summary.summarise`) and the flat numbers of metrics.json, periodic evaluation
and `evaluation.best_metric` (`rlft.evaluation.held_out.evaluate`, through `flat`).

Which metrics a run has follows from what the recipe's rewards declare (`eval_metrics`, `rlft.scoring.protocol`),
as inspect_ai's `@scorer(metrics=[...])`: a reward declaring a `LABEL_METRICS` name supplies the labels parsed from
each completion (the intent reward), one declaring a `VERDICT_METRICS` name the pass/fail verdicts
(the rubric, a binary/score judge), one declaring a `SELECTIVE_METRICS` name a hand-off answer and the value of each
decision (its `selective` declaration: the intent reward with `handoff`); `rlft.evaluation.held_out.score_run` fills the run
from them. Pure Python.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from rlft.report import metrics

LABEL_METRICS = ("intent_accuracy", "format_rate", "macro_f1")  # parsed labels against the gold column
VERDICT_METRICS = ("policy_following", "system_accuracy")  # pass/fail verdicts (system: label right AND passed)
# a hand-off answer (the `selective` declaration): share answered, accuracy over them, mean decision value per row
SELECTIVE_METRICS = ("coverage", "selective_accuracy", "expected_reward")
SELECTIVE_EXTRA = ("handoff_rate", "expected_cost")  # reported beside them; lower is better, so not a best_metric
METRICS = (*LABEL_METRICS, *VERDICT_METRICS, *SELECTIVE_METRICS)  # the names `evaluation.best_metric` may take
BOOTSTRAP = {"n_resamples": 1000, "seed": 0, "confidence": 0.95}


def intent_correct(predicted: Sequence[str | None], gold: Sequence[str]) -> list[bool]:
    return [p is not None and p == g for p, g in zip(predicted, gold, strict=True)]


def headline(predicted: Sequence[str | None], gold: Sequence[str] | None, labels: Sequence[str],
             verdicts: Sequence[float | None] | None, *, intervals: bool = True,
             policy_threshold: float = 0.5, selective: Any = None,
             groups: Sequence[Any] | None = None) -> dict[str, Any]:
    """Label metrics when `gold` is given; verdict metrics when `verdicts` is (system accuracy also needs gold and at
    least one row); selective metrics when `selective` (a reward's declaration: `.label`, `.best`, `.value(p, g)`)
    and `gold` are. With `intervals`: a `<metric>_ci` after each metric, and the judged / abstained / known /
    unknown / covered counts; None where a metric is undefined (no rows, every verdict abstained, every row handed
    off). `groups` (a key per row, `rlft.data.splits.row_groups`): the intervals resample whole groups of
    near-duplicate rows (`metrics.bootstrap_ci`)."""
    out: dict[str, Any] = {}

    def ci(key: str, values: list[float | None]) -> None:
        if intervals:
            out[f"{key}_ci"] = metrics.bootstrap_ci(values, groups=groups, **BOOTSTRAP)

    if gold is not None:
        out["intent_accuracy"] = metrics.accuracy(predicted, gold)
        ci("intent_accuracy", [float(x) for x in intent_correct(predicted, gold)])
        out["format_rate"] = metrics.format_rate(predicted)
        ci("format_rate", [float(p is not None) for p in predicted])
        out["macro_f1"] = metrics.macro_f1(predicted, gold, labels)
        if selective is not None:
            out.update(selective_metrics(predicted, gold, selective, intervals, groups))
    if verdicts is not None:
        pol = metrics.policy_following_rate(verdicts, policy_threshold)
        flags = metrics.passed(verdicts, policy_threshold)
        out["policy_following"] = pol["rate"]
        ci("policy_following", [None if f is None else float(f) for f in flags])
        if intervals:
            out["policy_judged"], out["policy_abstained"] = pol["n"], pol["abstained"]
        if gold is not None and predicted:
            right = intent_correct(predicted, gold)
            sa = metrics.system_accuracy(right, flags)
            out["system_accuracy"] = sa["accuracy"]
            ci("system_accuracy", [None if s is None else float(s) for s in metrics.system_correct(right, flags)])
            if intervals:
                out["system_known"], out["system_unknown"] = sa["n"], sa["unknown"]
    return out


PAIRED_METRICS = ("intent_accuracy", "system_accuracy")  # per-row 0/1 outcomes a paired difference is taken over


def row_outcomes(predicted: Sequence[str | None], gold: Sequence[str] | None, verdicts: Sequence[float | None] | None,
                 policy_threshold: float = 0.5) -> dict[str, list[float | None]]:
    """Each row's 0/1 outcome for the `PAIRED_METRICS` a run has (None: unknown, e.g. an abstained verdict)."""
    out: dict[str, list[float | None]] = {}
    if gold is None or not predicted:
        return out
    right = intent_correct(predicted, gold)
    out["intent_accuracy"] = [float(x) for x in right]
    if verdicts is not None:
        flags = metrics.passed(verdicts, policy_threshold)
        out["system_accuracy"] = [None if s is None else float(s) for s in metrics.system_correct(right, flags)]
    return out


def paired_differences(runs: Sequence[tuple[str, dict[str, list[float | None]]]],
                       groups: Sequence[Any] | None = None) -> list[dict[str, Any]]:
    """Each run after the first against the first, on the same rows: the mean per-row difference of every metric
    both have, over the rows where both outcomes are known, with a 95 % bootstrap interval (over `groups` of
    near-duplicate rows when given). Two models scored on the same rows differ far less by chance than either
    model's own interval suggests; this is the interval to read before calling one better."""
    if len(runs) < 2:
        return []
    (first, ref), out = runs[0], []
    for name, outcomes in runs[1:]:
        for metric in PAIRED_METRICS:
            if metric not in outcomes or metric not in ref:
                continue
            keep = [i for i, (a, b) in enumerate(zip(outcomes[metric], ref[metric], strict=True))
                    if a is not None and b is not None]
            diffs = [outcomes[metric][i] - ref[metric][i] for i in keep]
            if not diffs:
                continue
            kept_groups = None if groups is None else [groups[i] for i in keep]
            out.append({"model": name, "against": first, "metric": metric, "rows": len(diffs),
                        "difference": sum(diffs) / len(diffs),
                        "ci": metrics.bootstrap_ci(diffs, groups=kept_groups, **BOOTSTRAP)})
    return out


def selective_metrics(predicted: Sequence[str | None], gold: Sequence[str], selective: Any,
                      intervals: bool = True, groups: Sequence[Any] | None = None) -> dict[str, Any]:
    """coverage, selective_accuracy, handoff_rate, expected_reward and expected_cost (= best − value, per row) of
    the decisions `predicted` (the hand-off label = handed off), with intervals and the `covered` count."""
    label = selective.label
    out: dict[str, Any] = {}
    answered = [p != label for p in predicted]
    values = [float(selective.value(p, g)) for p, g in zip(predicted, gold, strict=True)]
    out["coverage"] = metrics.coverage(predicted, label)
    out["selective_accuracy"] = metrics.selective_accuracy(predicted, gold, label)
    out["handoff_rate"] = None if out["coverage"] is None else 1 - out["coverage"]
    out["expected_reward"] = sum(values) / len(values) if values else None
    out["expected_cost"] = None if not values else selective.best - out["expected_reward"]
    if intervals:
        right = [p is not None and p == g for p, g in zip(predicted, gold, strict=True)]
        answered_groups = None if groups is None else [k for k, a in zip(groups, answered, strict=True) if a]
        out["coverage_ci"] = metrics.bootstrap_ci([float(a) for a in answered], groups=groups, **BOOTSTRAP)
        out["selective_accuracy_ci"] = metrics.bootstrap_ci([float(r) for r, a in zip(right, answered, strict=True)
                                                             if a], groups=answered_groups, **BOOTSTRAP)
        out["handoff_rate_ci"] = metrics.bootstrap_ci([float(not a) for a in answered], groups=groups, **BOOTSTRAP)
        out["expected_reward_ci"] = metrics.bootstrap_ci(values, groups=groups, **BOOTSTRAP)
        out["expected_cost_ci"] = metrics.bootstrap_ci([selective.best - v for v in values], groups=groups,
                                                       **BOOTSTRAP)
        out["covered"] = sum(answered)
    return out


def flat(values: dict[str, Any], names: Sequence[str] = METRICS) -> dict[str, float]:
    """The `names` present in a `headline(...)` as plain numbers: an undefined label metric is 0.0, an undefined
    verdict or selective metric NaN (every row abstained or handed off: not a zero)."""
    return {k: (0.0 if k in LABEL_METRICS else math.nan) if values[k] is None else values[k]
            for k in names if k in values}
