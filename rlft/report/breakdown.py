"""Headline metrics per value of a categorical column of the eval rows (`data.breakdown_columns`).

Why: one accuracy over the whole eval set hides where a model fails. Bitext rows carry `flags` letters (Q
colloquial, Z typos, W offensive, ...) and a `category`; accuracy per letter says whether the model holds on
colloquial and noisy messages, which is what real traffic has more of than the training sample.

A spec is a column name (``category``: one value per row) or ``COLUMN:letters`` (``flags:letters``: the value is a
set of one-character tags, and a row counts once under EACH distinct letter it carries, so the row counts of a
letters breakdown add up to more than the rows). Values are compared as text; a missing or empty value is
``(empty)``. Per value: `n` rows, `intent_accuracy` (a missing prediction is wrong), and with a policy judge
`policy_following` (over judged rows; `policy_judged` of them) and `system_accuracy` (over rows whose outcome is
known; `system_known` of them), the conventions of `rlft.report.metrics`. Pure Python, no intervals (per-value
counts are small; the `n` says how much to trust a figure).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from rlft.report import metrics

LETTERS = "letters"
EMPTY = "(empty)"


@dataclass(frozen=True)
class BreakdownSpec:
    """One entry of `data.breakdown_columns`: a column, split into characters when `letters`."""

    column: str
    letters: bool = False

    @property
    def key(self) -> str:
        return f"{self.column}:{LETTERS}" if self.letters else self.column


def parse_spec(text: str) -> BreakdownSpec:
    """``category`` or ``flags:letters``; ValueError saying what is expected otherwise."""
    column, sep, mode = str(text).partition(":")
    if not column.strip() or (sep and mode != LETTERS):
        raise ValueError(f"expected a column name or COLUMN:letters (e.g. 'category', 'flags:letters'), got {text!r}")
    return BreakdownSpec(column.strip(), bool(sep))


def row_keys(value: Any, letters: bool) -> list[str]:
    """The values a row counts under: its value as text, or its distinct non-space characters (sorted)."""
    text = "" if value is None else str(value).strip()
    if not text:
        return [EMPTY]
    if letters:
        return sorted(set(text) - {" ", ",", "\t"}) or [EMPTY]
    return [text]


def breakdown(keys: Sequence[Sequence[str]], intent_right: Sequence[bool] | None = None,
              policy_pass: Sequence[bool | None] | None = None) -> dict[str, dict[str, Any]]:
    """{value: {"n", "intent_accuracy", "policy_following", "policy_judged", "system_accuracy", "system_known"}}
    over the rows listed under each value (`keys[i]`: row i's values); metric keys appear only when their inputs
    are given. Values sorted."""
    rows: dict[str, list[int]] = {}
    for i, ks in enumerate(keys):
        for k in ks:
            rows.setdefault(k, []).append(i)
    out: dict[str, dict[str, Any]] = {}
    for value in sorted(rows):
        idx = rows[value]
        cell: dict[str, Any] = {"n": len(idx)}
        if intent_right is not None:
            cell["intent_accuracy"] = sum(bool(intent_right[i]) for i in idx) / len(idx)
        if policy_pass is not None:
            judged = [policy_pass[i] for i in idx if policy_pass[i] is not None]
            cell["policy_following"] = sum(judged) / len(judged) if judged else None
            cell["policy_judged"] = len(judged)
            if intent_right is not None:
                sa = metrics.system_accuracy([intent_right[i] for i in idx], [policy_pass[i] for i in idx])
                cell["system_accuracy"], cell["system_known"] = sa["accuracy"], sa["n"]
        out[value] = cell
    return out


def model_breakdown(specs: Sequence[BreakdownSpec], columns: dict[str, list[Any]], predicted: Sequence[str | None],
                    gold: Sequence[str] | None, policy: Sequence[float | None] | None = None,
                    policy_threshold: float = 0.5) -> dict[str, dict[str, dict[str, Any]]]:
    """{spec key: breakdown} for one model's parsed labels and policy verdicts; specs whose column is not in
    `columns` are left out (the caller checks columns up front)."""
    right = None
    if gold is not None and predicted:
        right = [p is not None and p == g for p, g in zip(predicted, gold, strict=True)]
    flags = metrics.passed(policy, policy_threshold) if policy is not None else None
    out = {}
    for spec in specs:
        if spec.column in columns:
            keys = [row_keys(v, spec.letters) for v in columns[spec.column]]
            out[spec.key] = breakdown(keys, right, flags)
    return out


METRICS = ("intent_accuracy", "policy_following", "system_accuracy")


def markdown_section(models: list[dict]) -> list[str]:
    """report.md lines: one table per breakdown spec, a row per value, a column per (model, metric)."""
    specs: list[str] = []
    for m in models:
        specs += [k for k in m.get("breakdown", {}) if k not in specs]
    lines: list[str] = []
    for key in specs:
        tables = [m.get("breakdown", {}).get(key, {}) for m in models]
        values = sorted({v for t in tables for v in t})
        shown = [k for k in METRICS if any(k in c for t in tables for c in t.values())]
        note = " (a row counts once under each letter it carries)" if key.endswith(f":{LETTERS}") else ""
        cols = [f"{m['name']}" if len(shown) == 1 else f"{m['name']} {k}" for m in models for k in shown]
        lines += ["", f"## By {key}{note}", "", "| value | n | " + " | ".join(cols) + " |",
                  "|" + "---|" * (len(cols) + 2)]
        for v in values:
            n = next(t[v]["n"] for t in tables if v in t)
            cells = [_fmt(t.get(v, {}).get(k)) for t in tables for k in shown]
            lines.append(f"| {v} | {n} | " + " | ".join(cells) + " |")
    return lines


def _fmt(v: Any) -> str:
    return "—" if v is None else f"{v:.3f}" if isinstance(v, float) else str(v)
