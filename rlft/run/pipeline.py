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
from rlft.run.checkpoints import MarkCompleteCheckpoints, check_resumed_recipe, check_steps_left, resolve_resume
from rlft.recipe.sections import Recipe
from rlft.data.loading import drop_long_prompts, prepare
from rlft.run.distributed import is_main_process
from rlft.run.ema import AdapterEMA
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
from rlft.run.threads import recorded_threads, torch_threads
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
    import torch
    from transformers import set_seed

    set_seed(recipe.seed)
    device = resolve_device(recipe.model)
    if device == "cpu":  # one rule for the API, `rlft train` and `accelerate launch` (rlft.run.threads)
        torch.set_num_threads(torch_threads())
    # Claimed before anything (a judge's cache) writes there, and held until the run ends (rlft.run.outputs.IN_PROGRESS)
    with held_output_dir(recipe, _where(recipe, "output_dir")) as out:
        return _train_in(recipe, out, device, callbacks)


def _train_in(recipe: Recipe, out: Path, device: str, callbacks: list | None) -> TrainResult:
    """`train` in its claimed and held output folder."""
    spec = algorithm_spec(recipe.algorithm)
    ev = recipe.evaluation  # the selection split only feeds periodic evaluation, which generates
    select_fraction = ev.select_fraction if ev.every_steps and spec.task != "seq_cls" else 0.0
    data = prepare(recipe.data, recipe.algorithm, recipe.seed, select_fraction=select_fraction)
    if recipe.decoding.constrain_labels and not data.labels and spec.online:
        raise RecipeError(f"{_where(recipe, 'decoding.constrain_labels')}: decoding.constrain_labels needs the label "
                          f"set: {recipe.data.source} has no label column '{recipe.data.label_column}' (columns: "
                          f"{', '.join(c for c in data.train.column_names if c != 'prompt')}) and data.labels is not "
                          f"set")
    resume = resolve_resume(recipe.trainer.get("resume_from_checkpoint"), out)
    if resume:  # before write_recipe replaces the saved recipe: resuming with a changed recipe is refused
        check_resumed_recipe(recipe_record(recipe, data.labels), out, resume, _where(recipe, "output_dir"),
                             force=recipe.overwrite)
        check_steps_left(resume, recipe.trainer.get("max_steps"), out, _where(recipe, "trainer.max_steps"))
        keep_threads(resume, device)
    rewards = load_recipe_rewards(recipe, data.labels, [data.train, data.eval]) if recipe.rewards else []
    write_recipe(recipe, out, data.labels)
    gates = check_judge_gates(recipe, rewards)  # a judge below its min_kappa never trains (before the model loads)

    task = spec.task
    model, tokenizer = load_model(recipe.model, recipe.adapter, device, task=task)
    if recipe.data.max_prompt_tokens:
        data.train, data.eval = (drop_long_prompts(ds, tokenizer, recipe.data.max_prompt_tokens, recipe.data.source,
                                                   data.dropped) for ds in (data.train, data.eval))
        if data.select is not None:
            data.select = drop_long_prompts(data.select, tokenizer, recipe.data.max_prompt_tokens, recipe.data.source,
                                            data.dropped)
    import torch

    metrics: dict[str, Any] = {"algorithm": recipe.algorithm, "torch_threads": torch.get_num_threads(),
                               "train_rows": len(data.train),
                               "eval_rows": len(data.eval), "dropped_rows": data.dropped, "labels": data.labels}
    if data.select is not None:
        metrics["select_rows"] = len(data.select)
    if gates:
        metrics["judge_calibration"] = gates
    can_generate = task == "causal_lm" and "prompt" in data.eval.column_names
    before = after = None
    if recipe.evaluation.before and can_generate:
        before = _eval(recipe, model, tokenizer, data, rewards, "base", "recipe base model")
        _print_eval("before", before)
        metrics["eval_before"] = before.metrics
        metrics["eval_before_per_intent"] = before.per_intent

    # Rewards may ask to stop training cleanly (a judge's budget or error-rate bound): they offer a callback. A
    # callback with state_dict/load_state_dict (a judge's spend) is checkpointed and restored: rlft.scoring.state.
    named_callbacks = [(r.name, cb) for r in rewards if (cb := r.trainer_callback()) is not None]
    reward_callbacks = [cb for _, cb in named_callbacks]
    # Before PeriodicEval: a step's clock stops at on_step_end, so held-out evaluation is not counted.
    time_budget = ([TrainTimeBudget(recipe.max_train_minutes, clock=CLOCKS[recipe.max_train_clock])]
                   if recipe.max_train_minutes else [])
    reward_state = SaveRewardState(named_callbacks)
    # adapter.ema_decay: before PeriodicEval, so a step's average is updated before that step's evaluation
    ema = AdapterEMA(recipe.adapter.ema_decay) if recipe.adapter.ema_decay else None
    periodic = None
    if ev.every_steps and can_generate:
        rows, split = (data.eval, "held-out") if data.select is None else (data.select, "selection")
        periodic = PeriodicEval(lambda m: _eval(recipe, m, tokenizer, data, rewards, rows=rows), ev.every_steps,
                                out, keep_best=ev.keep_best, best_metric=ev.best_metric, split=split,
                                weights=ema.swapped if ema is not None else None)
    # TRL's default sum_then_normalize would count an abstention as 0 next to scored rows: see rlft.scoring.abstain.
    trained_rewards = neutral_rewards(rewards, recipe.algorithm, recipe.trainer)
    marker = MarkCompleteCheckpoints()
    ctx = TrainContext(recipe, model, tokenizer, data.train, data.eval, trained_rewards, data.labels, device,
                       callbacks=[marker, *(callbacks or []), *reward_callbacks, *time_budget,
                                  *([ema] if ema else []), *([periodic] if periodic else []),
                                  *([reward_state] if reward_state else [])])
    trainer = trainer_builder(recipe.algorithm)(ctx)
    _check_rows_left(recipe, trainer, len(data.train))
    trainer.remove_callback(marker)  # last: a checkpoint is complete only after every callback wrote its state
    trainer.add_callback(marker)
    # One compact line per log step instead of transformers' raw dict (rlft.run.progress); the dict still goes to
    # log_history / metrics.json and the report_to trackers.
    progress = use_compact_progress(trainer, keep_bar=recipe.trainer.get("disable_tqdm") is False)
    if periodic is not None:  # heldout/* also go to the report_to trackers (rlft.evaluation.periodic)
        periodic.log_handler = getattr(trainer, "callback_handler", None)
    if resume:
        print(f"[rlft] resuming from {resume}", flush=True)
        if periodic is not None:
            periodic.load_state(resume)
        if ema is not None:
            ema.load_state(resume)
        if reward_state:
            reward_state.load_state(resume, trainer.args.process_index)
    start = time.time()
    try:
        train_output = trainer.train(resume_from_checkpoint=resume)
    except TrainingStopped as stop:  # a restored reward state says stop (a judge budget spent): no step trains
        print(f"[rlft] not training further: {stop}", flush=True)
        train_output = None
    if ema is not None:  # on_train_end did it, unless training stopped before it began
        ema.finalize(trainer.model)
        metrics["ema"] = {"decay": ema.decay, "steps_averaged": ema.updates}
    metrics["train_seconds"] = round(time.time() - start, 1)
    metrics["train"] = {k: v for k, v in (train_output.metrics if train_output else {}).items()
                        if isinstance(v, (int, float))}
    metrics["global_step"] = trainer.state.global_step
    metrics["log_history"] = trainer.state.log_history
    stopped = _stop_record([*reward_callbacks, *time_budget])
    if stopped:
        metrics["stopped_early"] = stopped
    if progress is not None and progress.warnings:  # "no learning signal", "the judge was never asked"
        metrics["warnings"] = progress.warnings
    if getattr(trainer, "calibration", None) is not None:  # the reward-model trainer's held-out report
        metrics["calibration"] = trainer.calibration
    trainer.save_model(str(out))
    tokenizer.save_pretrained(str(out))
    if periodic is not None:
        metrics["heldout_history"] = periodic.history
        if periodic.best is not None:
            tokenizer.save_pretrained(periodic.best["dir"])
            metrics["best"] = periodic.best
            print(f"[rlft] best {periodic.best.get('split', 'held-out')} {periodic.best['metric']}="
                  f"{periodic.best['value']:.3f} at step "
                  f"{periodic.best['step']}: adapter in {periodic.best['dir']}", flush=True)

    if recipe.evaluation.after and can_generate:
        after = _eval(recipe, trainer.model, tokenizer, data, rewards, "tuned", f"adapter {out}")
        _print_eval("after", after)
        metrics["eval_after"] = after.metrics
        metrics["eval_after_per_intent"] = after.per_intent
        metrics["eval_after_samples"] = after.samples
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
    return TrainResult(out, out, metrics, before, after, stopped)


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


