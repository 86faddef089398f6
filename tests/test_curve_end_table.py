"""benchmarks/curve_end.py reads a finished run's metrics.json: the swing over the last third and final - best."""

import json
import subprocess
import sys

import pytest

from benchmarks.curve_end import curve_summary
from tests.conftest import ROOT


def _metrics(values, best_step, split="selection", after=0.9):
    history = [{"step": 50 * (i + 1), "intent_accuracy": v, "format_rate": 1.0} for i, v in enumerate(values)]
    best = {"step": best_step, "value": max(values), "split": split}
    return {"heldout_history": history, "best": best, "eval_after": {"intent_accuracy": after}, "train_seconds": 60.0}


def test_the_swing_is_max_minus_min_over_the_last_third_and_final_minus_best_is_signed():
    # steps 50..350: the last third starts at 233, i.e. steps 250, 300, 350
    summary = curve_summary(_metrics([0.10, 0.99, 0.70, 0.80, 0.85, 0.88, 0.86], best_step=100))
    assert summary["swing_last_third"] == pytest.approx(0.03)  # 0.88 - 0.85; the early 0.99 is not in the window
    assert summary["final_minus_best"] == pytest.approx(0.86 - 0.99)  # best over the whole curve
    assert summary["split"] == "selection" and summary["best_step"] == 100 and summary["final_heldout"] == 0.9
    flat_end = curve_summary(_metrics([0.5, 0.6, 0.7, 0.8, 0.9, 0.9, 0.9], best_step=350))
    assert flat_end["swing_last_third"] == 0 and flat_end["final_minus_best"] == 0


def test_a_run_without_periodic_evaluation_is_named():
    with pytest.raises(ValueError, match="evaluation.every_steps"):
        curve_summary({"heldout_history": [], "eval_after": {"intent_accuracy": 0.9}})


def test_the_script_prints_the_table_and_writes_json(tmp_path):
    for name, values in (("a", [0.6, 0.8, 0.7]), ("b", [0.6, 0.7, 0.8])):
        (tmp_path / name).mkdir()
        (tmp_path / name / "metrics.json").write_text(json.dumps(_metrics(values, best_step=100)))
    out = tmp_path / "curve.json"
    done = subprocess.run([sys.executable, "benchmarks/curve_end.py", f"a={tmp_path / 'a'}", f"b={tmp_path / 'b'}",
                           "--out", str(out)], cwd=ROOT, capture_output=True, text=True, check=True)
    assert "| a | 0.600 0.800 0.700 | selection | 10.0 | -10.0 | 0.900 |" in done.stdout
    assert "| b | 0.600 0.700 0.800 | selection | 10.0 | +0.0 | 0.900 |" in done.stdout
    assert set(json.loads(out.read_text())) == {"a", "b"}
