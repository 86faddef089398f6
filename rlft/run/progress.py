"""One compact progress line per logging step, instead of transformers' raw log dict.

transformers prints every `on_log` dict as it is (`ProgressCallback` writes ~40 keys under its tqdm bar,
`PrinterCallback` prints them when `disable_tqdm` is set). rlft replaces both with `CompactProgress`, which prints
the metrics that say whether a run is learning, e.g.::

    [rlft] step 4/50 | reward 0.250 (intent 0.250, length 0.000) | acc 0.375 | zero-std 0.50 | loss 0.0031 |
           2.41 s/step | eta 1:50      (one line; wrapped here)

Fields appear only when the trainer logged them: `reward` (GRPO, PPO; per-reward means from `rewards/<name>/mean`
when there are 2+ rewards), `acc` (the first of `intent/accuracy`, `rewards/accuracies` (DPO's preference
accuracy), `accuracy`, `label_pg/accuracy`), `zero-std` (share of GRPO groups with no reward spread: rlft's
`signal/frac_zero_std_first_draw`, else TRL's `frac_reward_zero_std`), `margin` (DPO), `kl`, `loss`. Step time and
ETA are wall-clock, measured here (periodic evaluation time included, so the ETA is honest about it).

At the end of training it warns when the rewards never gave a learning signal (what an offline demo with a weak
model looks like, e.g. recipes/policy_grpo.py): every logged step had `zero-std` 1.00 (all completions of each
prompt got the same reward, so GRPO's advantages were 0), or a judge reward skipped every completion (its gate or
word limits: `judge/skipped_rate` 1.00), i.e. the judge was never asked.

The warnings are also written to metrics.json (`warnings`) and the model card ("Warnings"), so a run read later
says it too. The full dict is untouched: it still reaches `trainer.state.log_history` (written to metrics.json) and every
`report_to` tracker. No tqdm bar by default (the line carries the ETA, and log files stay readable); a recipe that
sets `trainer.disable_tqdm: false` explicitly keeps transformers' bar, without its dict printing.
"""

from __future__ import annotations

import math
import time
from typing import Any

from transformers import TrainerCallback
from transformers.trainer_callback import PrinterCallback, ProgressCallback

ACCURACY_KEYS = ("intent/accuracy", "rewards/accuracies", "accuracy", "label_pg/accuracy")
ZERO_STD_KEYS = ("signal/frac_zero_std_first_draw", "frac_reward_zero_std")
SUMMARY_KEY = "train_runtime"  # Trainer's end-of-training log


def _num(value: Any) -> float | None:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def _first(logs: dict[str, Any], keys: tuple[str, ...]) -> float | None:
    for key in keys:
        if (value := _num(logs.get(key))) is not None:
            return value
    return None


def _clock(seconds: float) -> str:
    if math.isnan(seconds) or seconds < 0:
        return "?"
    seconds = int(round(seconds))
    hours, rest = divmod(seconds, 3600)
    return f"{hours}:{rest // 60:02d}:{rest % 60:02d}" if hours else f"{rest // 60}:{rest % 60:02d}"


def format_line(logs: dict[str, Any], step: int, max_steps: int, step_seconds: float | None,
                eta_seconds: float | None) -> str:
    """The progress line for one training log (pure: what `CompactProgress` prints)."""
    parts = [f"step {step}/{max_steps}" if max_steps > 0 else f"step {step}"]
    reward = _num(logs.get("reward"))
    means = {k[len("rewards/"):-len("/mean")]: v for k, v in logs.items()
             if k.startswith("rewards/") and k.endswith("/mean") and _num(v) is not None}
    if reward is not None:
        detail = f" ({', '.join(f'{name} {v:.3f}' for name, v in means.items())})" if len(means) > 1 else ""
        parts.append(f"reward {reward:.3f}{detail}")
    for label, value, fmt in (("acc", _first(logs, ACCURACY_KEYS), ".3f"),
                              ("zero-std", _first(logs, ZERO_STD_KEYS), ".2f"),
                              ("margin", _num(logs.get("rewards/margins")), ".3f"),
                              ("kl", _num(logs.get("kl")), ".4f"),
                              ("loss", _num(logs.get("loss")), ".4f")):
        if value is not None:
            parts.append(f"{label} {value:{fmt}}")
    if step_seconds is not None:
        parts.append(f"{step_seconds:.2f} s/step")
    if eta_seconds is not None:
        parts.append(f"eta {_clock(eta_seconds)}")
    return "[rlft] " + " | ".join(parts)


class CompactProgress(TrainerCallback):
    """Prints `format_line` on every training log (main process only); skips held-out rows (PeriodicEval prints
    its own line) and turns the end-of-training summary into one `trained ...` line."""

    def __init__(self) -> None:
        self._start: float | None = None
        self._start_step = 0
        self._last: tuple[float, int] | None = None
        self._zero_std: list[float] = []  # per training log, when logged
        self._judge_skipped: list[float] = []
        self.warnings: list[str] = []

    def on_train_begin(self, args, state, control, **kwargs):
        self._start = time.time()
        self._start_step = state.global_step  # a resumed run: ETA from the steps this process ran
        self._last = (self._start, state.global_step)

    def on_log(self, args, state, control, logs=None, **kwargs):
        if not state.is_world_process_zero or not logs:
            return
        if any(k.startswith(("heldout/", "select/")) for k in logs):  # PeriodicEval prints its own line
            return
        now, step = time.time(), state.global_step
        if SUMMARY_KEY in logs:
            loss = _num(logs.get("train_loss"))
            ran = step - self._start_step
            per = f" ({logs[SUMMARY_KEY] / ran:.2f} s/step)" if ran > 0 else ""
            print(f"[rlft] trained {ran} steps in {logs[SUMMARY_KEY]:.1f} s{per}"
                  + (f", train_loss {loss:.4f}" if loss is not None else ""), flush=True)
            return
        if any(k.startswith("eval_") for k in logs):  # trainer-side evaluation (eval_strategy): its own line
            shown = ", ".join(f"{k}={v:.4f}" for k, v in logs.items() if _num(v) is not None)
            print(f"[rlft] step {step} eval: {shown}", flush=True)
            return
        if (zero := _first(logs, ZERO_STD_KEYS)) is not None:
            self._zero_std.append(zero)
        if (skipped := _num(logs.get("judge/skipped_rate"))) is not None:
            self._judge_skipped.append(skipped)
        step_seconds = eta = None
        if self._last is not None and step > self._last[1]:
            step_seconds = (now - self._last[0]) / (step - self._last[1])
        if self._start is not None and step > self._start_step and state.max_steps > 0:
            eta = (now - self._start) / (step - self._start_step) * max(state.max_steps - step, 0)
        self._last = (now, step)
        print(format_line(logs, step, state.max_steps, step_seconds, eta), flush=True)

    def on_train_end(self, args, state, control, **kwargs):
        self.warnings = no_signal_warnings(self._zero_std, self._judge_skipped)
        if state.is_world_process_zero:
            for warning in self.warnings:
                print(f"[rlft] warning: {warning}", flush=True)


def no_signal_warnings(zero_std: list[float], judge_skipped: list[float]) -> list[str]:
    """Why a run learned nothing from its rewards, from the per-log zero-std fractions and judge skip rates."""
    out = []
    if zero_std and min(zero_std) >= 1.0:
        out.append(f"no learning signal: in all {len(zero_std)} logged steps every prompt's completions got the same "
                   "reward (zero-std 1.00), so the advantages were 0 and the rewards taught nothing; a stronger base "
                   "model, more generations or a graded reward gives the groups a spread")
    if judge_skipped and min(judge_skipped) >= 1.0:
        out.append(f"the judge was never asked: it skipped every completion in all {len(judge_skipped)} logged steps "
                   "(its gate or min_words/max_words; judge/skipped_rate 1.00), so its reward was skip_value "
                   "throughout")
    return out


def use_compact_progress(trainer: Any, keep_bar: bool = False) -> CompactProgress | None:
    """Swap transformers' dict-printing callbacks on `trainer` for `CompactProgress` (a tqdm bar stays if asked);
    return it (its `warnings` go to metrics.json and the model card), or None for a trainer without callbacks."""
    handler = getattr(trainer, "callback_handler", None)
    if handler is None:
        return None
    for cb in list(handler.callbacks):
        if isinstance(cb, (PrinterCallback, ProgressCallback)) or type(cb).__name__ == "NotebookProgressCallback":
            handler.remove_callback(cb)
    if keep_bar:
        handler.add_callback(_BarOnly())
    progress = CompactProgress()
    handler.add_callback(progress)
    return progress


class _BarOnly(ProgressCallback):
    """transformers' tqdm bar without its raw dict under it."""

    def on_log(self, args, state, control, logs=None, **kwargs):
        return
