"""Evaluation metrics as pure functions over plain lists (no torch, no models): what a report table shows.

Conventions every function follows:

* A missing prediction (no parseable label) is `None` and counts as wrong, never as a label.
* An abstained reward or verdict is `None` and is *left out* of means and rates, and counted as `abstained`;
  it is never a 0.
* Rates over an empty set are `None` (nothing to report), not 0.

Example::

    >>> accuracy(["a", "b", None], ["a", "a", "b"])
    0.3333333333333333
    >>> mean_ignoring_abstentions([1.0, None, 0.0])
    {'mean': 0.5, 'n': 2, 'abstained': 1}
    >>> decisions = ["a", "handoff", "b", "b"]
    >>> coverage(decisions, "handoff"), selective_accuracy(decisions, ["a", "b", "a", "b"], "handoff")
    (0.75, 0.6666666666666666)

Not here: parsing completions (`rlft.rewards.intent`), generating them (`rlft.evaluate`), or writing files
(`rlft.report.files`).
"""

from __future__ import annotations

import math
import random
from collections import Counter
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass

NONE_LABEL = "(none)"  # the column of the confusion table for completions without a parseable label


def _rate(hits: int, n: int) -> float | None:
    return hits / n if n else None


def accuracy(predicted: Sequence[str | None], gold: Sequence[str]) -> float | None:
    """Share of rows whose predicted label equals the gold label (None predictions are wrong)."""
    return _rate(sum(p is not None and p == g for p, g in zip(predicted, gold, strict=True)), len(gold))


def format_rate(predicted: Sequence[str | None]) -> float | None:
    """Share of rows with a parseable label (whatever the label)."""
    return _rate(sum(p is not None for p in predicted), len(predicted))


def macro_f1(predicted: Sequence[str | None], gold: Sequence[str], labels: Sequence[str] = ()) -> float | None:
    """Unweighted mean of per-class F1 over `labels` plus every gold label; classes never predicted nor present
    are left out (their F1 is undefined)."""
    classes = sorted(set(labels) | set(gold))
    f1s = []
    for c in classes:
        tp = sum(p == c and g == c for p, g in zip(predicted, gold, strict=True))
        fp = sum(p == c and g != c for p, g in zip(predicted, gold, strict=True))
        fn = sum(p != c and g == c for p, g in zip(predicted, gold, strict=True))
        if tp + fp + fn:
            f1s.append(2 * tp / (2 * tp + fp + fn))
    return sum(f1s) / len(f1s) if f1s else None


def confusion(predicted: Sequence[str | None], gold: Sequence[str]) -> dict[str, dict[str, int]]:
    """{gold label: {predicted label or "(none)": count}}, rows and columns sorted."""
    table: dict[str, Counter] = {}
    for p, g in zip(predicted, gold, strict=True):
        table.setdefault(g, Counter())[NONE_LABEL if p is None else p] += 1
    return {g: dict(sorted(table[g].items())) for g in sorted(table)}


def per_intent_accuracy(predicted: Sequence[str | None], gold: Sequence[str]) -> dict[str, dict[str, float | int]]:
    """{gold label: {"accuracy": share right, "n": rows}}."""
    out: dict[str, dict[str, float | int]] = {}
    for g in sorted(set(gold)):
        idx = [i for i, x in enumerate(gold) if x == g]
        out[g] = {"accuracy": sum(predicted[i] == g for i in idx) / len(idx), "n": len(idx)}
    return out


def coverage(predicted: Sequence[str | None], handoff: str) -> float | None:
    """Share of rows answered, i.e. not handed off (a row with no parseable label counts as answered: wrongly)."""
    return _rate(sum(p != handoff for p in predicted), len(predicted))


def selective_accuracy(predicted: Sequence[str | None], gold: Sequence[str], handoff: str) -> float | None:
    """Accuracy over the answered rows (every row not handed off); None when every row was handed off."""
    kept = [(p, g) for p, g in zip(predicted, gold, strict=True) if p != handoff]
    return _rate(sum(p is not None and p == g for p, g in kept), len(kept))


def abstain_below(predicted: Sequence[str | None], confidence: Sequence[float], threshold: float,
                  handoff: str) -> list[str | None]:
    """A confidence-threshold policy's decisions: each row's label when its confidence >= `threshold`, else the
    hand-off label (the cross-entropy + threshold baseline of a selective classifier)."""
    return [p if c >= threshold else handoff for p, c in zip(predicted, confidence, strict=True)]


def risk_coverage(confidence: Sequence[float], correct: Sequence[bool]) -> list[dict[str, float | int]]:
    """The risk-coverage curve of answering only rows whose confidence >= t, for every distinct confidence t
    (highest first; tied rows are answered together): one point per threshold with `threshold`, `covered` (rows
    answered), `coverage`, `selective_accuracy` and `risk` (1 - selective accuracy)."""
    if len(confidence) != len(correct):
        raise ValueError(f"confidence and correct differ in length: {len(confidence)} vs {len(correct)}")
    order = sorted(range(len(confidence)), key=lambda i: -confidence[i])
    points: list[dict[str, float | int]] = []
    right = 0
    for pos, i in enumerate(order):
        right += bool(correct[i])
        last_of_tie = pos + 1 == len(order) or confidence[order[pos + 1]] != confidence[i]
        if last_of_tie:
            acc = right / (pos + 1)
            points.append({"threshold": float(confidence[i]), "covered": pos + 1,
                           "coverage": (pos + 1) / len(order), "selective_accuracy": acc, "risk": 1 - acc})
    return points


def at_coverage(curve: Sequence[dict[str, float | int]], target: float) -> dict[str, float | int] | None:
    """The point of a `risk_coverage` curve with the least coverage >= `target` (the highest threshold answering
    at least that share of rows); None for an empty curve."""
    for point in curve:
        if point["coverage"] >= target - 1e-12:
            return point
    return curve[-1] if curve else None


def at_accuracy(curve: Sequence[dict[str, float | int]], target: float) -> dict[str, float | int] | None:
    """The point of a `risk_coverage` curve with the largest coverage whose selective accuracy >= `target`; None
    when no threshold reaches it."""
    best = None
    for point in curve:
        if point["selective_accuracy"] >= target - 1e-12:
            best = point
    return best


def mean_ignoring_abstentions(values: Sequence[float | None]) -> dict[str, float | int | None]:
    """{"mean": mean of the non-None values (None when all abstained), "n": how many, "abstained": how many None}."""
    present = [float(v) for v in values if v is not None]
    return {"mean": sum(present) / len(present) if present else None, "n": len(present),
            "abstained": len(values) - len(present)}


def passed(verdicts: Sequence[float | None], threshold: float = 0.5) -> list[bool | None]:
    """Judge/rubric values -> pass (value >= threshold), fail, or None (abstained)."""
    return [None if v is None else float(v) >= threshold for v in verdicts]


def policy_following_rate(verdicts: Sequence[float | None], threshold: float = 0.5) -> dict[str, float | int | None]:
    """Share of judged (non-abstained) samples whose verdict passes; abstentions are counted, not failed."""
    flags = passed(verdicts, threshold)
    judged = [f for f in flags if f is not None]
    return {"rate": _rate(sum(judged), len(judged)), "n": len(judged), "abstained": len(flags) - len(judged)}


def system_correct(intent_right: Sequence[bool], policy_pass: Sequence[bool | None]) -> list[bool | None]:
    """Per sample: right only when the intent is right AND the policy verdict passes.

    A wrong intent is wrong whatever the judge said (or did not say); a right intent with an abstained verdict is
    unknown (None), because the turn could still fail on policy.
    """
    out: list[bool | None] = []
    for intent, policy in zip(intent_right, policy_pass, strict=True):
        out.append(False if not intent else None if policy is None else bool(policy))
    return out


def system_accuracy(intent_right: Sequence[bool], policy_pass: Sequence[bool | None]) -> dict[str, float | int | None]:
    """{"accuracy": share right among known samples, "n": known, "unknown": intent right but verdict abstained}."""
    flags = system_correct(intent_right, policy_pass)
    known = [f for f in flags if f is not None]
    return {"accuracy": _rate(sum(known), len(known)), "n": len(known), "unknown": len(flags) - len(known)}


def _mean(values: Sequence[float]) -> float:
    return sum(values) / len(values)


def percentile(sorted_values: Sequence[float], q: float) -> float:
    """Linear-interpolated percentile (q in [0, 1]) of already sorted values, like numpy's default."""
    pos = q * (len(sorted_values) - 1)
    lo, hi = math.floor(pos), math.ceil(pos)
    return sorted_values[lo] + (sorted_values[hi] - sorted_values[lo]) * (pos - lo)


def bootstrap_ci(values: Sequence[float | None], statistic: Callable[[Sequence[float]], float] = _mean,
                 n_resamples: int = 1000, seed: int = 0, confidence: float = 0.95,
                 groups: Sequence[Hashable] | None = None) -> tuple[float, float] | None:
    """Percentile bootstrap interval of `statistic` over `values` (None entries dropped first), fixed seed.

    `groups` (one key per value): a cluster bootstrap, each resample draws whole groups with replacement (as many as
    there are) and pools their values, for rows that are not independent: the near-duplicates of a templated
    held-out split pass or fail together, and resampling them one by one makes the interval too narrow
    (`rlft.data.splits.row_groups`). Groups of one row each give exactly the row bootstrap. Resamples are drawn with
    `random.Random(seed).choices`, so the same inputs always give the same bounds. Returns None for no values.
    """
    by_group: dict[Hashable, list[float]] = {}  # no groups: every row its own group, i.e. the row bootstrap
    for v, g in zip(values, range(len(values)) if groups is None else groups, strict=True):
        if v is not None:
            by_group.setdefault(g, []).append(float(v))
    clusters = list(by_group.values())
    if not clusters:
        return None
    rng = random.Random(seed)
    stats = sorted(statistic([x for c in rng.choices(clusters, k=len(clusters)) for x in c])
                   for _ in range(n_resamples))
    tail = (1 - confidence) / 2
    return percentile(stats, tail), percentile(stats, 1 - tail)


def cohen_kappa(judge: Sequence[str], human: Sequence[str]) -> dict:
    """Agreement, Cohen's kappa and the confusion table {human label: {judge label: count}} of two raters.

    kappa = (p_o - p_e) / (1 - p_e) with p_e from each rater's label shares; when both raters use one and the same
    label throughout (p_e = 1) kappa is 1.0 if they agree everywhere.
    """
    if len(judge) != len(human):
        raise ValueError(f"judge and human labels differ in length: {len(judge)} vs {len(human)}")
    n = len(judge)
    if not n:
        return {"kappa": None, "agreement": None, "n": 0, "confusion": {}}
    po = sum(j == h for j, h in zip(judge, human, strict=True)) / n
    cj, ch = Counter(judge), Counter(human)
    pe = sum(cj[label] * ch[label] for label in set(cj) | set(ch)) / (n * n)
    kappa = 1.0 if pe == 1 and po == 1 else (po - pe) / (1 - pe) if pe != 1 else 0.0
    table: dict[str, Counter] = {}
    for j, h in zip(judge, human, strict=True):
        table.setdefault(h, Counter())[j] += 1
    return {"kappa": kappa, "agreement": po, "n": n,
            "confusion": {h: dict(sorted(table[h].items())) for h in sorted(table)}}


@dataclass(frozen=True)
class PairJudgment:
    """One pairwise verdict on `item`: which model was shown first ("a" or "b"), and which position won.

    `winner` is "first", "second" or "tie"; None when the judge failed (left out, counted as abstained).
    """

    item: str
    first: str
    winner: str | None


def _a_score(j: PairJudgment) -> float:
    if j.winner == "tie":
        return 0.5
    a_won = (j.winner == "first") == (j.first == "a")
    return 1.0 if a_won else 0.0


def win_rate(judgments: Sequence[PairJudgment], n_resamples: int = 1000, seed: int = 0) -> dict:
    """Model A's win rate over B from judgments in both orders, ties as half a win, with a position-bias figure.

    * `win_rate_a`: mean over items of A's score (1 win, 0.5 tie, 0 loss) averaged over that item's orders;
      `ci`: bootstrap over items (both orders of an item stay together).
    * `wins_a` / `wins_b` / `ties`: counts over single judgments.
    * `first_position_rate`: share of decided (non-tie) judgments won by whoever was shown first;
      `position_bias` = that minus 0.5 (0 = none, +0.5 = the first answer always wins), with a bootstrap `ci`.
    * `order_flips`: items judged in both orders whose winning *model* changed with the order.
    """
    valid = [j for j in judgments if j.winner is not None]
    for j in valid:
        if j.first not in ("a", "b") or j.winner not in ("first", "second", "tie"):
            raise ValueError(f"bad pairwise judgment {j}: first must be a|b, winner first|second|tie|None")
    by_item: dict[str, list[PairJudgment]] = {}
    for j in valid:
        by_item.setdefault(j.item, []).append(j)
    item_scores = [_mean([_a_score(j) for j in js]) for js in by_item.values()]
    wins_a = sum(_a_score(j) == 1.0 for j in valid)
    ties = sum(j.winner == "tie" for j in valid)
    decided = [1.0 if j.winner == "first" else 0.0 for j in valid if j.winner != "tie"]
    first_rate = _mean(decided) if decided else None
    flips = 0
    both = 0
    for js in by_item.values():
        orders = {j.first for j in js}
        if orders == {"a", "b"}:
            both += 1
            flips += len({_a_score(j) for j in js}) > 1
    bias_ci = bootstrap_ci(decided, n_resamples=n_resamples, seed=seed)
    return {
        "win_rate_a": _mean(item_scores) if item_scores else None,
        "ci": bootstrap_ci(item_scores, n_resamples=n_resamples, seed=seed),
        "items": len(by_item), "judgments": len(valid), "abstained": len(judgments) - len(valid),
        "wins_a": wins_a, "wins_b": len(valid) - wins_a - ties, "ties": ties,
        "first_position_rate": first_rate,
        "position_bias": None if first_rate is None else first_rate - 0.5,
        "position_bias_ci": None if bias_ci is None else (bias_ci[0] - 0.5, bias_ci[1] - 0.5),
        "order_flips": flips, "items_in_both_orders": both,
    }
