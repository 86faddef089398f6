"""The judge calibration gate: a judge reward may train only after it agrees with humans well enough.

    rewards:
      - name: judge
        params:
          model: judge
          calibration: {human_labels: data/judge_human.csv, min_kappa: 0.6}   # label_column: human (default)

Before the policy model loads, `rlft train` has the judge grade every completion of `human_labels` exactly as in
training (the same code as `rlft eval --human-labels`: `rlft.evaluation.eval_models.judge_calibration`, Cohen's kappa from
`rlft.report.metrics.cohen_kappa`) and refuses to start (one line, exit 2) when kappa is below `min_kappa` or
cannot be computed (every row abstained). The file has the recipe's prompt columns, a `completion` column and a
pass/fail `label_column`. A relative `human_labels` path is looked up next to the recipe file first.

The calibration calls are ordinary judge calls: cached, and counted in the judge's budget and usage. Not here: the
metric (`rlft.report.metrics`) or the report (`rlft eval`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rlft.errors import UserError


class JudgeGateError(UserError):
    """A judge reward failed (or could not run) its calibration gate."""


@dataclass(frozen=True)
class CalibrationGate:
    """`calibration:` of a judge reward: the human-labelled file, the kappa it must reach, its label column."""

    human_labels: str
    min_kappa: float
    label_column: str = "human"


def parse_calibration(value: Any) -> CalibrationGate | None:
    """The `calibration` param as a `CalibrationGate` (None: no gate); a bad value is a one-line ValueError."""
    if value is None:
        return None
    if not isinstance(value, dict):
        raise ValueError(f"calibration: expected a mapping {{human_labels: FILE, min_kappa: 0.6}}, got {value!r}")
    unknown = sorted(set(value) - {"human_labels", "min_kappa", "label_column"})
    if unknown:
        raise ValueError(f"calibration: unknown key '{unknown[0]}' (allowed: human_labels, min_kappa, label_column)")
    file, kappa = value.get("human_labels"), value.get("min_kappa")
    if not isinstance(file, str) or not file:
        raise ValueError(f"calibration.human_labels: expected a CSV/JSON/JSONL file path, got {file!r}")
    if isinstance(kappa, bool) or not isinstance(kappa, (int, float)) or not -1.0 <= kappa <= 1.0:
        raise ValueError(f"calibration.min_kappa: expected a number in [-1, 1], got {kappa!r}")
    column = value.get("label_column", "human")
    if not isinstance(column, str) or not column:
        raise ValueError(f"calibration.label_column: expected a column name, got {column!r}")
    return CalibrationGate(file, float(kappa), column)


def _human_file(gate: CalibrationGate, recipe: Any) -> str:
    path = Path(gate.human_labels).expanduser()
    if not path.is_absolute() and recipe.source_file:
        near = Path(recipe.source_file).parent / path
        if near.is_file():
            return str(near)
    return str(path)


def check_judge_gates(recipe: Any, rewards: Sequence[Any]) -> list[dict[str, Any]]:
    """Run every judge reward's calibration gate; raise `JudgeGateError` for the first that fails.

    Returns one record per gated reward: {reward, file, n, abstained, agreement, kappa, min_kappa, confusion}.
    """
    from rlft.evaluation.eval_models import EvalError, judge_calibration

    out = []
    where = recipe.source_file or "recipe"
    for index, reward in enumerate(rewards):
        gate = reward.calibration
        if gate is None:
            continue
        key = f"{where}: rewards[{index}] ({reward.name}): calibration"
        file = _human_file(gate, recipe)
        if not Path(file).is_file():
            raise JudgeGateError(f"{key}.human_labels: file '{gate.human_labels}' does not exist")
        try:
            result = judge_calibration(recipe, [reward], file, gate.label_column)
        except EvalError as exc:
            raise JudgeGateError(f"{key}: {str(exc).removeprefix(f'--human-labels {file}: ')}") from None
        kappa = result["kappa"]
        seen = f"on {gate.human_labels} ({result['n']} rows judged, {result['abstained']} abstained)"
        if kappa is None:
            raise JudgeGateError(f"{key}: no Cohen's kappa {seen}; the judge abstained on every row, so it may "
                                 f"not train (check the judge endpoint)")
        if kappa < gate.min_kappa:
            raise JudgeGateError(f"{key}: Cohen's kappa {kappa:.3f} {seen} is below min_kappa {gate.min_kappa}; the "
                                 f"judge may not train (improve its guideline or model, or lower min_kappa)")
        print(f"[rlft] judge '{reward.name}' calibration: Cohen's kappa {kappa:.3f} >= {gate.min_kappa} {seen}",
              flush=True)
        out.append({"reward": reward.name, "min_kappa": gate.min_kappa, **result, "file": gate.human_labels})
    return out
