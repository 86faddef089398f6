"""`train(recipe)`: recipe -> (model, data, rewards) -> TRL trainer -> adapter + metrics -> evaluation.

This is the Python API behind `rlft train` and every `recipes/*.py` launcher::

    import rlft
    recipe = rlft.load_recipe("recipes/intent_grpo.yaml", ["trainer.max_steps=5"])
    recipe.rewards.append(rlft.RewardSpec(name="my_rewards.py:brevity", weight=0.2))
    result = rlft.train(recipe)
    print(result.adapter_dir, result.metrics["eval_after"])
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rlft.scoring.abstain import neutral_rewards
from rlft.run.checkpoints import (MarkCompleteCheckpoints, check_resumed_recipe, check_steps_left, recorded_threads,
                                  resolve_resume)
from rlft.recipe.sections import Recipe
from rlft.data.loading import drop_long_prompts, prepare
from rlft.data.holdout import recipe_select_fraction
from rlft.run.distributed import is_main_process
from rlft.run.ema import AdapterEMA
from rlft.run.finite_weights import FiniteWeights
from rlft.errors import RecipeError
from rlft.evaluation.held_out import EvalReport, evaluate
from rlft.judge.gate import check_judge_gates
from rlft.run.models import load_model, resolve_device, resolve_model_path
from rlft.run.outputs import held_output_dir, recipe_record, write_metrics, write_model_card, write_recipe
from rlft.evaluation.periodic import PeriodicEval
from rlft.run.progress import use_compact_progress
from rlft.recipe.load import load_recipe
from rlft.scoring.for_recipe import load_recipe_rewards
from rlft.scoring.loader import LoadedReward
from rlft.scoring.protocol import TrainingStopped
from rlft.scoring.state import SaveRewardState
from rlft.run.telemetry import disable_unless_opted_in
from rlft.run.threads import use_run_threads
from rlft.run.time_budget import CLOCKS, TrainTimeBudget
from rlft.trainers import algorithm_spec, trainer_builder
from rlft.trainers.context import TrainContext
from rlft.recipe.validate import validate

logger = logging.getLogger("rlft")


@dataclass
class TrainResult:
    output_dir: Path
    adapter_dir: Path
    metrics: dict[str, Any]
    eval_before: EvalReport | None
    eval_after: EvalReport | None
    stopped_early: dict[str, Any] | None = None  # {reason, kind, ok} when a reward's callback stopped training


def _stop_record(callbacks: list[Any]) -> dict[str, Any] | None:
    """Why a reward's callback (a judge's budget or error-rate bound) ended training early, if one did."""
    for cb in callbacks:
        reason = getattr(cb, "stop_reason", None)
        if reason:
            return {"reason": reason, "kind": getattr(cb, "stop_kind", None),
                    "ok": bool(getattr(cb, "stop_ok", False))}
    return None


def _eval(recipe: Recipe, model: Any, tokenizer: Any, data: Any, rewards: list[LoadedReward],
          name: str = "model", source: str = "model", rows: Any = None) -> EvalReport:
    """Evaluate on `rows` (default: the held-out split; periodic evaluation passes the selection split)."""
    ev = recipe.evaluation
    if recipe.decoding.constrain_labels and not data.labels:
        raise RecipeError(f"{recipe.source_file or 'recipe'}: decoding.constrain_labels needs the label set "
                          "(data.labels or a label column in the data)")
    return evaluate(model, tokenizer, data.eval if rows is None else rows, decoding=recipe.decoding,
                    label_column=recipe.data.label_column, labels=data.labels, rewards=rewards if ev.rewards else (),
                    max_samples=ev.max_samples, max_new_tokens=ev.max_new_tokens, batch_size=ev.batch_size, name=name,
                    source=source)


def write_train_report(recipe: Recipe, out: Path, data: Any, before: EvalReport | None, after: EvalReport,
                       log_history: list[dict]) -> Path:
    """The same report files as `rlft eval` (report.json/.md, traces.jsonl, traces.html, curves) for base vs tuned
    on the held-out rows, from the completions training already generated and scored: `output_dir/report/`."""
    from rlft.evaluation.eval_models import write_eval_report

    runs = [r.run for r in (before, after) if r is not None and r.run is not None]
    report_dir = out / "report"
    write_eval_report(report_dir, recipe, after.rows, list(data.labels), runs, log_history,
                      title=f"rlft train {recipe.source_file or recipe.output_dir}: base vs tuned (held-out split)",
                      data_desc=f"{recipe.data.eval_source or recipe.data.source} (held-out split)")
    return report_dir


def _print_eval(phase: str, report: EvalReport) -> None:
    shown = ", ".join(f"{k}={v:.3f}" for k, v in report.metrics.items())
    print(f"[rlft] held-out {phase} ({report.n} rows): {shown}", flush=True)


def train(recipe: Recipe | str | Path, overrides: list[str] | tuple[str, ...] = (), callbacks: list | None = None
          ) -> TrainResult:
    """Train a recipe (object or file path) and return where the adapter and metrics went."""
    disable_unless_opted_in()
    if isinstance(recipe, (str, Path)):
        recipe = load_recipe(recipe, overrides)
    else:
        validate(recipe)
    from transformers import set_seed

    set_seed(recipe.seed)
    device = resolve_device(recipe.model)
    use_run_threads(device)  # one rule for the API, `rlft train` and `accelerate launch`
    # Claimed before anything (a judge's cache) writes there, and held until the run ends (rlft.run.outputs.IN_PROGRESS)
    with held_output_dir(recipe, _where(recipe, "output_dir")) as out:
        return _train_in(recipe, out, device, callbacks)


def _train_in(recipe: Recipe, out: Path, device: str, callbacks: list | None) -> TrainResult:
    """`train` in its claimed and held output folder: each step below, in the order it runs."""
    spec = algorithm_spec(recipe.algorithm)
    data = _prepare_data(recipe, spec)
    resume = _resume_point(recipe, out, data, device)  # before write_recipe replaces the saved recipe
    rewards = load_recipe_rewards(recipe, data.labels, [data.train, data.eval]) if recipe.rewards else []
    write_recipe(recipe, out, data.labels)
    gates = check_judge_gates(recipe, rewards)  # a judge below its min_kappa never trains (before the model loads)
    model, tokenizer = load_model(recipe.model, recipe.adapter, device, task=spec.task)
    _drop_long_prompts(recipe, data, tokenizer)
    metrics = _run_facts(recipe, data, gates)
    can_generate = spec.task == "causal_lm" and "prompt" in data.eval.column_names

    before = None
    if recipe.evaluation.before and can_generate:
        before = _eval(recipe, model, tokenizer, data, rewards, "base", "recipe base model")
        _record_eval("before", before, metrics)

    hooks = _Hooks.build(recipe, data, rewards, tokenizer, out, periodic=can_generate)
    trainer, progress = _build_trainer(recipe, model, tokenizer, data, rewards, device, hooks, callbacks)
    train_output, seconds = _fit(trainer, hooks, resume)
    metrics.update(_training_record(trainer, train_output, seconds, hooks, progress))
    _save_adapter(trainer, tokenizer, out, hooks, metrics)

    after = None
    if recipe.evaluation.after and can_generate:
        after = _eval(recipe, trainer.model, tokenizer, data, rewards, "tuned", f"adapter {out}")
        _record_eval("after", after, metrics)
    _write_outputs(recipe, out, data, before, after, trainer, tokenizer, metrics)
    return TrainResult(out, out, metrics, before, after, hooks.stopped())


def _prepare_data(recipe: Recipe, spec: Any) -> Any:
    """The recipe's splits; the selection split only when periodic evaluation (which generates) will read it."""
    data = prepare(recipe.data, recipe.algorithm, recipe.seed,
                   select_fraction=recipe_select_fraction(recipe.evaluation, recipe.algorithm))
    if recipe.decoding.constrain_labels and not data.labels and spec.online:
        raise RecipeError(f"{_where(recipe, 'decoding.constrain_labels')}: decoding.constrain_labels needs the label "
                          f"set: {recipe.data.source} has no label column '{recipe.data.label_column}' (columns: "
                          f"{', '.join(c for c in data.train.column_names if c != 'prompt')}) and data.labels is not "
                          f"set")
    return data


def _resume_point(recipe: Recipe, out: Path, data: Any, device: str) -> str | None:
    """The checkpoint to resume from, if any, after refusing a changed recipe or a run with no steps left."""
    resume = resolve_resume(recipe.trainer.get("resume_from_checkpoint"), out)
    if resume:
        check_resumed_recipe(recipe_record(recipe, data.labels), out, resume, _where(recipe, "output_dir"),
                             force=recipe.overwrite)
        check_steps_left(resume, recipe.trainer.get("max_steps"), out, _where(recipe, "trainer.max_steps"))
        keep_threads(resume, device)
    return resume


def _drop_long_prompts(recipe: Recipe, data: Any, tokenizer: Any) -> None:
    """`data.max_prompt_tokens`: drop (and count) the rows whose prompt is longer, in every split."""
    limit = recipe.data.max_prompt_tokens
    if not limit:
        return
    data.train, data.eval = (drop_long_prompts(ds, tokenizer, limit, recipe.data.source, data.dropped)
                             for ds in (data.train, data.eval))
    if data.select is not None:
        data.select = drop_long_prompts(data.select, tokenizer, limit, recipe.data.source, data.dropped)


def _run_facts(recipe: Recipe, data: Any, gates: Any) -> dict[str, Any]:
    """metrics.json's opening keys: what trained on what."""
    import torch

    metrics: dict[str, Any] = {"algorithm": recipe.algorithm, "torch_threads": torch.get_num_threads(),
                               "train_rows": len(data.train),
                               "eval_rows": len(data.eval), "dropped_rows": data.dropped, "labels": data.labels}
    if data.select is not None:
        metrics["select_rows"] = len(data.select)
    if gates:
        metrics["judge_calibration"] = gates
    return metrics


def _record_eval(phase: str, report: EvalReport, metrics: dict[str, Any]) -> None:
    _print_eval(phase, report)
    metrics[f"eval_{phase}"] = report.metrics
    metrics[f"eval_{phase}_per_intent"] = report.per_intent
    if phase == "after":
        metrics["eval_after_samples"] = report.samples


@dataclass
class _Hooks:
    """What rlft adds to the trainer's callbacks, in the order they must run at each step."""

    reward_callbacks: list[Any]  # a reward's own stop (a judge's budget or error-rate bound)
    time_budget: list[Any]  # before periodic evaluation: a step's clock stops at on_step_end
    ema: AdapterEMA | None  # before periodic evaluation: a step's average is updated before it is evaluated
    periodic: PeriodicEval | None
    reward_state: SaveRewardState  # a callback with state_dict/load_state_dict (a judge's spend) is checkpointed
    finite: FiniteWeights  # first of rlft's: a NaN step raises before any checkpoint, evaluation or average sees it
    marker: MarkCompleteCheckpoints  # last: a checkpoint is complete only after every callback wrote its state

    @classmethod
    def build(cls, recipe: Recipe, data: Any, rewards: list[LoadedReward], tokenizer: Any, out: Path,
              periodic: bool) -> _Hooks:
        named_callbacks = [(r.name, cb) for r in rewards if (cb := r.trainer_callback()) is not None]
        time_budget = ([TrainTimeBudget(recipe.max_train_minutes, clock=CLOCKS[recipe.max_train_clock])]
                       if recipe.max_train_minutes else [])
        ema = AdapterEMA(recipe.adapter.ema_decay) if recipe.adapter.ema_decay else None
        ev = recipe.evaluation
        evaluator = None
        if ev.every_steps and periodic:
            rows, split = (data.eval, "held-out") if data.select is None else (data.select, "selection")
            evaluator = PeriodicEval(lambda m: _eval(recipe, m, tokenizer, data, rewards, rows=rows), ev.every_steps,
                                     out, keep_best=ev.keep_best, best_metric=ev.best_metric, split=split,
                                     weights=ema.swapped if ema is not None else None)
        return cls([cb for _, cb in named_callbacks], time_budget, ema, evaluator, SaveRewardState(named_callbacks),
                   FiniteWeights(_where(recipe, "trainer.learning_rate")), MarkCompleteCheckpoints())

    def callbacks(self, user: list | None) -> list[Any]:
        return [self.marker, self.finite, *(user or []), *self.reward_callbacks, *self.time_budget,
                *([self.ema] if self.ema else []), *([self.periodic] if self.periodic else []),
                *([self.reward_state] if self.reward_state else [])]

    def stopped(self) -> dict[str, Any] | None:
        return _stop_record([*self.reward_callbacks, *self.time_budget])


def _build_trainer(recipe: Recipe, model: Any, tokenizer: Any, data: Any, rewards: list[LoadedReward], device: str,
                   hooks: _Hooks, callbacks: list | None) -> tuple[Any, Any]:
    """The algorithm's trainer, with rlft's callbacks, and its compact progress line (None: transformers' own)."""
    # TRL's default sum_then_normalize would count an abstention as 0 next to scored rows: see rlft.scoring.abstain.
    trained_rewards = neutral_rewards(rewards, recipe.algorithm, recipe.trainer)
    ctx = TrainContext(recipe, model, tokenizer, data.train, data.eval, trained_rewards, data.labels, device,
                       callbacks=hooks.callbacks(callbacks))
    trainer = trainer_builder(recipe.algorithm)(ctx)
    _check_rows_left(recipe, trainer, len(data.train))
    trainer.remove_callback(hooks.marker)  # last, after any callback the trainer added itself
    trainer.add_callback(hooks.marker)
    # One compact line per log step instead of transformers' raw dict (rlft.run.progress); the dict still goes to
    # log_history / metrics.json and the report_to trackers.
    progress = use_compact_progress(trainer, keep_bar=recipe.trainer.get("disable_tqdm") is False)
    if hooks.periodic is not None:  # heldout/* also go to the report_to trackers (rlft.evaluation.periodic)
        hooks.periodic.log_handler = getattr(trainer, "callback_handler", None)
    return trainer, progress


def _fit(trainer: Any, hooks: _Hooks, resume: str | None) -> tuple[Any, float]:
    """Train (from `resume` with rlft's own state restored); returns TRL's output (None when a restored reward state
    says stop before any step) and the seconds it took."""
    if resume:
        print(f"[rlft] resuming from {resume}", flush=True)
        if hooks.periodic is not None:
            hooks.periodic.load_state(resume)
        if hooks.ema is not None:
            hooks.ema.load_state(resume)
        if hooks.reward_state:
            hooks.reward_state.load_state(resume, trainer.args.process_index)
    start = time.time()
    try:
        train_output = trainer.train(resume_from_checkpoint=resume)
    except TrainingStopped as stop:  # a restored reward state says stop (a judge budget spent): no step trains
        print(f"[rlft] not training further: {stop}", flush=True)
        train_output = None
    if hooks.ema is not None:  # on_train_end did it, unless training stopped before it began
        hooks.ema.finalize(trainer.model)
    return train_output, time.time() - start


def _training_record(trainer: Any, train_output: Any, seconds: float, hooks: _Hooks, progress: Any) -> dict[str, Any]:
    """metrics.json's keys about the training itself."""
    record: dict[str, Any] = {}
    if hooks.ema is not None:
        record["ema"] = {"decay": hooks.ema.decay, "steps_averaged": hooks.ema.updates}
    record["train_seconds"] = round(seconds, 1)
    record["train"] = {k: v for k, v in (train_output.metrics if train_output else {}).items()
                       if isinstance(v, (int, float))}
    record["global_step"] = trainer.state.global_step
    record["log_history"] = trainer.state.log_history
    stopped = hooks.stopped()
    if stopped:
        record["stopped_early"] = stopped
    if progress is not None and progress.warnings:  # "no learning signal", "the judge was never asked"
        record["warnings"] = progress.warnings
    if getattr(trainer, "calibration", None) is not None:  # the reward-model trainer's held-out report
        record["calibration"] = trainer.calibration
    return record


def _save_adapter(trainer: Any, tokenizer: Any, out: Path, hooks: _Hooks, metrics: dict[str, Any]) -> None:
    """The final adapter and tokenizer in `out`; the best one's tokenizer beside it, and where it is."""
    trainer.save_model(str(out))
    tokenizer.save_pretrained(str(out))
    periodic = hooks.periodic
    if periodic is None:
        return
    metrics["heldout_history"] = periodic.history
    if periodic.best is not None:
        tokenizer.save_pretrained(periodic.best["dir"])
        metrics["best"] = periodic.best
        print(f"[rlft] best {periodic.best.get('split', 'held-out')} {periodic.best['metric']}="
              f"{periodic.best['value']:.3f} at step "
              f"{periodic.best['step']}: adapter in {periodic.best['dir']}", flush=True)


def _write_outputs(recipe: Recipe, out: Path, data: Any, before: EvalReport | None, after: EvalReport | None,
                   trainer: Any, tokenizer: Any, metrics: dict[str, Any]) -> None:
    """The report (base vs tuned), metrics.json, the model card, and the merged model when the recipe asks."""
    base_model = resolve_model_path(recipe.model)
    if after is not None and is_main_process():
        report_dir = write_train_report(recipe, out, data, before, after, trainer.state.log_history)
        print(f"[rlft] eval report (base vs tuned): {report_dir / 'report.md'}, trace browser "
              f"{report_dir / 'traces.html'}", flush=True)
    write_metrics(metrics, out)
    write_model_card(recipe, base_model, metrics, out)
    if recipe.export.merged and recipe.adapter.type != "none":
        merged = trainer.model.merge_and_unload()
        merged.save_pretrained(str(out / "merged"))
        tokenizer.save_pretrained(str(out / "merged"))


def _check_rows_left(recipe: Recipe, trainer: Any, rows: int) -> None:
    """TRL drops rows that do not fit its length limits while it tokenizes (DPO/KTO `max_length`...); when it dropped
    every one, say so in one line instead of torch's `num_samples=0` traceback."""
    kept = getattr(trainer, "train_dataset", None)
    if rows and kept is not None and hasattr(kept, "__len__") and len(kept) == 0:
        limits = [k for k in ("max_length", "max_prompt_length", "max_completion_length") if k in recipe.trainer]
        key = f"trainer.{limits[0]}" if limits else "data.source"
        hint = (f"{', '.join(f'trainer.{k}={recipe.trainer[k]}' for k in limits)} leaves no room: raise it"
                if limits else "check the prompt/completion columns")
        raise RecipeError(f"{_where(recipe, key)}: {key}: {recipe.algorithm} kept 0 of the {rows} training rows of "
                          f"{recipe.data.source} after tokenizing ({hint} or shorten the prompts)")


def keep_threads(checkpoint: str, device: str) -> None:
    """A resumed CPU run uses the torch thread count its checkpoint was written with, whatever OMP_NUM_THREADS says
    now (bit-exact resume depends on it: rlft.run.threads)."""
    import torch

    recorded = recorded_threads(checkpoint)
    if device == "cpu" and recorded and recorded != torch.get_num_threads():
        print(f"[rlft] resuming with {recorded} torch thread(s) as {checkpoint} was written (OMP_NUM_THREADS gives "
              f"{torch.get_num_threads()})", flush=True)
        torch.set_num_threads(recorded)


def _where(recipe: Recipe, key: str) -> str:
    prov = getattr(recipe, "_provenance", None)
    default = recipe.source_file or "recipe"
    return prov.origin(key, default) if prov is not None else default


