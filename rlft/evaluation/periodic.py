"""Held-out evaluation during training, for every trainer, and keeping the best adapter.

`PeriodicEval` is a transformers `TrainerCallback`: every `every_steps` optimizer steps it calls the pipeline's
evaluation function (the same decoding, rewards and metrics as the before/after evaluation), appends the row to
`history` and to the trainer's `log_history` as ``heldout/*`` (``select/*`` on a selection split), and with
`keep_best` saves the adapter of the best row (by `best_metric`, higher is better) to `output_dir/best`. It knows nothing about the task: the metrics are
whatever the evaluation reports (intent accuracy for the intent task, reward means for any reward).

The ``heldout/*`` row is also sent to every callback's `on_log` (the path TensorBoard, trackio and W&B callbacks
read, `trainer.report_to`), through the trainer's callback handler that `rlft.run.pipeline` hands over as `log_handler`.

`history` rows carry `train_seconds` (wall-clock spent training, evaluation time excluded) so accuracy can be
plotted against training time.

Which rows: by default the held-out split, the rows the final report uses, so `keep_best` then selects on the test
set. With `evaluation.select_fraction` the pipeline hands over the selection split instead (rows carved from the
training data, never trained on: `rlft.data.holdout.select_split`) and `split="selection"`: rows are logged as ``select/*``
and the best record says ``"split": "selection"``, and the held-out split is left for the final report.

Weights: `weights(model)`, when given, is a context manager in which the model carries the weights to judge (the
adapter's moving average, `rlft.run.ema.AdapterEMA.swapped`); both the evaluation and the best adapter's save run
inside it.

Resume: every checkpoint gets ``rlft_eval_state.json`` (history, best record, training seconds so far), and
`load_state(checkpoint)` restores it, so a resumed run reports the whole history and keeps the right best adapter.
"""

from __future__ import annotations

import json
import logging
import math
import time
from collections.abc import Callable
from contextlib import nullcontext
from pathlib import Path
from typing import Any

from transformers import TrainerCallback

BEST_DIR = "best"
STATE_FILE = "rlft_eval_state.json"
SPLIT_PREFIX = {"held-out": "heldout/", "selection": "select/"}  # log_history / report_to keys of each split
logger = logging.getLogger("rlft")


class PeriodicEval(TrainerCallback):
    def __init__(self, evaluate: Callable[[Any], Any], every_steps: int, output_dir: str | Path,
                 keep_best: bool = False, best_metric: str = "intent_accuracy", split: str = "held-out",
                 weights: Callable[[Any], Any] | None = None):
        """`evaluate(model) -> EvalReport` (an object with `.metrics` and `.per_intent`); `split`: which rows it
        evaluates, "held-out" or "selection" (the log prefix and the best record say it)."""
        if split not in SPLIT_PREFIX:
            raise ValueError(f"split must be one of {', '.join(SPLIT_PREFIX)}, got {split!r}")
        self.evaluate = evaluate
        self.split = split
        self.prefix = SPLIT_PREFIX[split]
        self.weights = weights
        self.every_steps = every_steps
        self.best_dir = Path(output_dir) / BEST_DIR
        self.keep_best = keep_best
        self.best_metric = best_metric
        self.history: list[dict[str, Any]] = []
        self.best: dict[str, Any] | None = None
        self._start: float | None = None
        self._eval_seconds = 0.0
        self._seconds_before = 0.0  # training seconds of the run this one resumed
        self.log_handler: Any = None  # the trainer's CallbackHandler: heldout/* reach report_to trackers through it

    def on_train_begin(self, args, state, control, **kwargs):
        self._start = time.time()

    def run(self, model: Any, step: int) -> dict[str, Any]:
        t0 = time.time()
        with self.weights(model) if self.weights is not None else nullcontext():
            report = self.evaluate(model)
            self._eval_seconds += time.time() - t0
            train_seconds = self._train_seconds()
            row = {"step": step, "train_seconds": round(train_seconds, 1), "split": self.split, **report.metrics,
                   "per_intent": report.per_intent}
            self.history.append(row)
            value = row.get(self.best_metric)
            if self.keep_best and value is None and len(self.history) == 1:
                logger.warning("[rlft] evaluation.best_metric %r is not among this evaluation's metrics (%s): no "
                               "best adapter is kept", self.best_metric, ", ".join(sorted(report.metrics)))
            if self.keep_best and isinstance(value, (int, float)) and not math.isnan(value):
                if self.best is None or value > self.best["value"]:
                    self.best = {"step": step, "metric": self.best_metric, "value": value, "split": self.split,
                                 "dir": str(self.best_dir)}
                    model.save_pretrained(str(self.best_dir))
        return row

    def _train_seconds(self) -> float:
        return self._seconds_before + ((time.time() - self._start - self._eval_seconds) if self._start else 0.0)

    def on_save(self, args, state, control, **kwargs):
        folder = Path(args.output_dir) / f"checkpoint-{state.global_step}"
        if state.is_world_process_zero and folder.is_dir():
            record = {"history": self.history, "best": self.best, "train_seconds": self._train_seconds()}
            (folder / STATE_FILE).write_text(json.dumps(record), encoding="utf-8")

    def load_state(self, checkpoint: str | Path) -> bool:
        """Restore history and best record from a checkpoint; False (with a warning) when it has none."""
        path = Path(checkpoint) / STATE_FILE
        if not path.is_file():
            logger.warning("rlft: %s has no %s; the held-out history and best record start fresh", checkpoint,
                           STATE_FILE)
            return False
        record = json.loads(path.read_text(encoding="utf-8"))
        self.history, self.best = list(record["history"]), record["best"]
        self._seconds_before = float(record["train_seconds"])
        return True

    def on_step_end(self, args, state, control, model=None, **kwargs):
        if not self.every_steps or state.global_step % self.every_steps or model is None:
            return
        if not state.is_world_process_zero:  # one evaluation and one best adapter per run
            return
        row = self.run(model, state.global_step)
        flat = {f"{self.prefix}{k}": v for k, v in row.items() if isinstance(v, (int, float)) and k != "step"}
        state.log_history.append({"step": state.global_step, **flat})
        if self.log_handler is not None:  # Trainer.log's own dispatch, without TRL's merge of its step metrics
            should_log = control.should_log  # the handler clears it, which would skip this step's regular log
            self.log_handler.on_log(args, state, control, flat)
            control.should_log = should_log
        shown = ", ".join(f"{k}={v:.3f}" for k, v in row.items() if isinstance(v, float))
        print(f"[rlft] step {state.global_step} {self.split}: {shown}", flush=True)
