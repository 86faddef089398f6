"""Verified checkpoints and resume.

transformers resumes from the highest `checkpoint-N` without checking that it was fully written, so a run killed
mid-save crashes on resume (transformers #35782, #35525). rlft writes a marker into each checkpoint after
transformers has finished saving it (`on_save` fires after the save), and `resume_from_checkpoint: last` picks the
newest checkpoint that has the marker.

Resuming also checks that the recipe is the one the run was started with (`check_resumed_recipe`): the
`recipe.yaml` saved in the output folder is compared with the new one on every training-relevant key, and a
difference stops the run before anything is written (`overwrite: true` resumes anyway and saves the new recipe).
"""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path
from typing import Any

import yaml
from transformers import TrainerCallback

from rlft.errors import RecipeError

MARKER = ".rlft-complete"
_CHECKPOINT = re.compile(r"^checkpoint-(\d+)$")
_THREADS = re.compile(r"^threads=(\d+)$", re.MULTILINE)


def marker_text(step: int, threads: int) -> str:
    """The completion marker's content: the step, and the torch thread count the run used (rlft.run.threads)."""
    return f"{step}\nthreads={threads}\n"


def recorded_threads(checkpoint: str | Path) -> int | None:
    """The thread count a checkpoint was written with (None for a marker written before rlft recorded it)."""
    try:
        found = _THREADS.search((Path(checkpoint) / MARKER).read_text())
    except OSError:
        return None
    return int(found.group(1)) if found else None


def rank_file(checkpoint: str | Path, name: str, process_index: int) -> Path:
    """A per-process state file in a checkpoint: `name` for process 0, `<stem>_rank<N><suffix>` for the others."""
    path = Path(name)
    return Path(checkpoint) / (name if process_index == 0 else f"{path.stem}_rank{process_index}{path.suffix}")


class MarkCompleteCheckpoints(TrainerCallback):
    """Writes the completion marker into the checkpoint transformers just saved."""

    def on_save(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        if state.is_world_process_zero:
            path = Path(args.output_dir) / f"checkpoint-{state.global_step}"
            if path.is_dir():  # with the run's torch thread count: a resume keeps it (rlft.run.threads)
                import torch

                (path / MARKER).write_text(marker_text(state.global_step, torch.get_num_threads()))


def last_complete_checkpoint(output_dir: str | Path) -> Path | None:
    """Newest `checkpoint-N` in `output_dir` that carries the completion marker, or None."""
    root = Path(output_dir)
    if not root.is_dir():
        return None
    found = [(int(m.group(1)), p) for p in root.iterdir() if (m := _CHECKPOINT.match(p.name)) and p.is_dir()]
    complete = [(n, p) for n, p in found if (p / MARKER).is_file()]
    return max(complete)[1] if complete else None


def resolve_resume(value: Any, output_dir: str | Path, where: str = "recipe") -> str | None:
    """`trainer.resume_from_checkpoint`: null | last (newest complete checkpoint, or a fresh start) | a path."""
    if value in (None, False, ""):
        return None
    if value in ("last", True):
        found = last_complete_checkpoint(output_dir)
        return str(found) if found else None
    path = Path(str(value))
    if not path.is_dir():
        raise RecipeError(f"{where}: trainer.resume_from_checkpoint: '{value}' is not a checkpoint directory (or "
                          f"'last')")
    if not (path / MARKER).is_file():
        raise RecipeError(f"{where}: trainer.resume_from_checkpoint: '{value}' has no completion marker ({MARKER}); "
                          f"it may "
                          f"be half-written. Use 'last' to pick the newest complete checkpoint")
    return str(path)


def check_steps_left(checkpoint: str | Path, max_steps: Any, output_dir: str | Path, where: str = "recipe") -> None:
    """A finished run (its metrics.json written) resumed from a checkpoint already at `max_steps` would train nothing
    and only rewrite its metrics, card and report: refused, asking for a larger `trainer.max_steps`."""
    match = _CHECKPOINT.match(Path(checkpoint).name)
    if not match or not (Path(output_dir) / "metrics.json").is_file():
        return
    done = int(match.group(1))
    if isinstance(max_steps, int) and not isinstance(max_steps, bool) and 0 < max_steps <= done:
        raise RecipeError(f"{where}: trainer.resume_from_checkpoint: '{output_dir}' holds a finished run whose last "
                          f"checkpoint ({Path(checkpoint).name}) is at step {done}, and trainer.max_steps={max_steps} "
                          f"leaves nothing to train (resuming would only rewrite its metrics); raise "
                          f"trainer.max_steps to train further")


# Sections of the saved recipe that decide what a training step computes. Not compared: output_dir, overwrite,
# evaluation and export (they change what is reported or written, not the trained weights).
RESUME_SECTIONS = ("algorithm", "seed", "model", "adapter", "data", "rewards", "decoding", "signal", "label_pg",
                   "rft", "trainer")
# trainer keys that may change on resume: how long (extending max_steps), how often to log, save and evaluate.
_FREE_TRAINER_KEYS = {"max_steps", "num_train_epochs", "resume_from_checkpoint", "output_dir", "logging_dir",
                      "report_to", "run_name", "disable_tqdm", "per_device_eval_batch_size", "load_best_model_at_end",
                      "metric_for_best_model", "greater_is_better", "log_completions", "num_completions_to_print",
                      "push_to_hub", "hub_model_id", "hub_strategy", "hub_token", "hub_private_repo"}
_FREE_TRAINER_PREFIXES = ("logging_", "save_", "eval_", "log_")
_FREE_KEYS = {("model", "cache_dir")}  # where converted GGUF weights are cached: not what is trained
_MISSING = "<not set>"


def resume_relevant(record: dict[str, Any], trainer_defaults: dict[str, Any] | None = None) -> dict[str, Any]:
    """The part of a saved recipe record that must not change on resume; `trainer:` keys absent from the mapping
    take the config class default (`trainer_defaults`), so writing a default out explicitly is no change."""
    out = {k: record.get(k, _MISSING) for k in RESUME_SECTIONS}
    for section, key in _FREE_KEYS:
        if isinstance(out.get(section), dict):
            out[section] = {k: v for k, v in out[section].items() if k != key}
    if isinstance(out.get("rewards"), list):  # a reward's timeout bounds a hung call; it changes no value
        out["rewards"] = [{k: v for k, v in r.items() if k != "timeout"} if isinstance(r, dict) else r
                          for r in out["rewards"]]
    trainer = {**(trainer_defaults or {}), **(record.get("trainer") or {})}
    out["trainer"] = {k: v for k, v in trainer.items()
                      if k not in _FREE_TRAINER_KEYS and not k.startswith(_FREE_TRAINER_PREFIXES)}
    # evaluation settings may change, except the selection split: it decides which rows train (rlft.data.holdout.select_split)
    ev = record.get("evaluation") if isinstance(record.get("evaluation"), dict) else {}
    out["evaluation"] = {"select_fraction": ev.get("select_fraction", 0.0) if ev.get("every_steps") else 0.0}
    return out


def first_difference(saved: Any, now: Any, path: str = "") -> tuple[str, Any, Any] | None:
    """(dotted key, saved value, new value) of the first difference between two plain YAML values, or None."""
    if isinstance(saved, dict) and isinstance(now, dict):
        for key in list(saved) + [k for k in now if k not in saved]:
            found = first_difference(saved.get(key, _MISSING), now.get(key, _MISSING), f"{path}.{key}" if path
                                     else str(key))
            if found:
                return found
        return None
    if isinstance(saved, list) and isinstance(now, list) and len(saved) == len(now):
        for i, (a, b) in enumerate(zip(saved, now, strict=True)):
            found = first_difference(a, b, f"{path}[{i}]")
            if found:
                return found
        return None
    if isinstance(saved, (int, float)) and isinstance(now, (int, float)) and not isinstance(saved, bool) \
            and not isinstance(now, bool) and float(saved) == float(now):
        return None  # 1 and 1.0 (YAML round trip) are the same setting
    if isinstance(saved, bool) != isinstance(now, bool):  # True == 1 in Python, not in a recipe
        return path, saved, now
    return None if saved == now else (path, saved, now)


def _with_defaults(saved: dict[str, Any]) -> dict[str, Any]:
    """A recipe saved by an older rlft lacks keys added since; they read as their defaults (no change)."""
    from rlft.recipe.sections import Recipe

    out = dict(saved)
    for section, default in dataclasses.asdict(Recipe()).items():
        if isinstance(default, dict) and section != "trainer" and isinstance(out.get(section), dict):
            out[section] = {**default, **out[section]}
        elif section not in out:
            out[section] = default
    return out


def _trainer_defaults(algorithm: str, keys: set[str]) -> dict[str, Any]:
    """Defaults of `keys` in the algorithm's config class, as plain values (enums by value)."""
    from enum import Enum

    from rlft.trainers import TRAINER_MODULES, config_class

    if algorithm not in TRAINER_MODULES:
        return {}
    out: dict[str, Any] = {}
    for f in dataclasses.fields(config_class(algorithm)):
        if f.name not in keys or not f.init:
            continue
        if f.default is not dataclasses.MISSING:
            value = f.default
        elif f.default_factory is not dataclasses.MISSING:  # type: ignore[misc]
            value = f.default_factory()  # type: ignore[misc]
        else:
            continue
        out[f.name] = value.value if isinstance(value, Enum) else value
    return out


def _short(value: Any, limit: int = 80) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[:limit - 3] + "..."


def check_resumed_recipe(record: dict[str, Any], output_dir: str | Path, checkpoint: str | Path,
                         where: str = "recipe", force: bool = False) -> None:
    """Refuse to resume `checkpoint` with a recipe that differs from `output_dir/recipe.yaml` in a training-relevant
    key (`RESUME_SECTIONS`; trainer keys other than length, logging, saving and evaluation). `record` is the new
    recipe as it would be saved (`rlft.run.outputs.recipe_record`). `force` (the recipe's `overwrite: true`) skips it."""
    path = Path(output_dir) / "recipe.yaml"
    if force or not path.is_file():
        return
    try:
        saved = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise RecipeError(f"{where}: cannot resume {checkpoint}: {path} is unreadable ({exc}); set overwrite=true "
                          f"to resume with this recipe anyway") from None
    now = yaml.safe_load(yaml.safe_dump(record, sort_keys=False, allow_unicode=True))  # same round trip as saved
    keys = set(saved.get("trainer") or {}) | set(now.get("trainer") or {})
    defaults = _trainer_defaults(str(now.get("algorithm")), keys)
    found = first_difference(resume_relevant(_with_defaults(saved), defaults), resume_relevant(now, defaults))
    if found:
        key, old, new = found
        raise RecipeError(f"{where}: cannot resume {checkpoint}: the recipe changed since that run started: {key} was "
                          f"{_short(old)}, now {_short(new)} ({path}); resume with the same recipe (only max_steps "
                          f"and logging/save/eval settings may change), or set overwrite=true to resume with this one")
