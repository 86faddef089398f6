"""Stop training cleanly after a budget of training minutes (`max_train_minutes` in the recipe).

Budgets in this field are stated in minutes ("within 60 minutes on a 2-core CPU"), while TrainingArguments only
counts steps, and a step's cost depends on the machine and the rollouts. `TrainTimeBudget` adds up the wall-clock
time of each optimizer step (from `on_step_begin` to `on_step_end`: generation, reward calls, forward and backward
included; periodic held-out evaluation, checkpoint saving and logging, which run after `on_step_end`, are not) and
sets `control.should_training_stop` at the end of the first step that reaches the budget. Training then ends the
way it does at `max_steps`: the adapter is saved, the final evaluation, report and model card run, and
metrics.json records `stopped_early: {reason, kind: "time_budget", ok: true}` with the step it stopped at.

Under several processes every rank must stop at the same step (otherwise the others wait forever in the next
collective): the decision is an all-reduce (max) of each rank's flag, so the slowest clock does not matter.

`max_train_clock: cpu` counts this process's CPU time (`time.process_time`, all its threads) instead of elapsed
time: a run on a machine shared with other jobs then gets the same compute as on an idle one (with one torch thread
the two clocks agree on an idle machine; with N threads CPU time runs up to N times faster than the wall clock).

The clock counts one launch: a resumed run gets the whole budget again (the checkpoint does not store elapsed
time). `trainer.max_steps` still applies; whichever comes first stops the run.
"""

from __future__ import annotations

import time
from typing import Any

from transformers import TrainerCallback

from rlft.run.distributed import any_rank


CLOCKS = {"wall": time.monotonic, "cpu": time.process_time}  # max_train_clock


class TrainTimeBudget(TrainerCallback):
    """Ends training after `minutes` of optimizer-step time; `stop_reason` says when (read by rlft.run.pipeline)."""

    stop_kind = "time_budget"
    stop_ok = True  # a planned end, not a failure

    def __init__(self, minutes: float, clock: Any = time.monotonic) -> None:
        self.budget_s = float(minutes) * 60.0
        self.clock = clock
        self.spent_s = 0.0
        self.stop_reason: str | None = None
        self._step_start: float | None = None

    def on_step_begin(self, args, state, control, **kwargs):
        self._step_start = self.clock()

    def on_step_end(self, args, state, control, **kwargs):
        if self._step_start is not None:
            self.spent_s += self.clock() - self._step_start
            self._step_start = None
        if any_rank(self.spent_s >= self.budget_s) and not control.should_training_stop:
            control.should_training_stop = True
            kind = " (CPU time)" if self.clock is time.process_time else ""
            self.stop_reason = (f"max_train_minutes={self.budget_s / 60:g} reached after step {state.global_step} "
                                f"({self.spent_s / 60:.1f} minutes of training steps{kind})")
            print(f"[rlft] stopping: {self.stop_reason}", flush=True)
        return control
