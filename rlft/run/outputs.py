"""What a run leaves behind: adapter + tokenizer, resolved recipe, metrics, model card; optional merged model.

Files are written to a temporary name and renamed, so an interrupted run never leaves a half-written metrics or
recipe file in place of a good one. `claim_output_dir` runs before anything is written: a directory that already
holds another run is refused unless the recipe resumes it (`trainer.resume_from_checkpoint`) or says
`overwrite: true` (then that run's files are removed first), so an output directory never mixes two runs. A finished
run with no complete checkpoint is never "resumed": that would be a fresh start over its files (a finished run whose
last checkpoint already reached `trainer.max_steps`: `rlft.run.checkpoints.check_steps_left`). `held_output_dir` claims
the folder and holds it for the whole run with an in-progress marker (`IN_PROGRESS`: the owner's pid and host): a
second run into the same folder is refused while the owner lives, even before the first run has written more than
its recipe; a marker whose process is gone (kill -9) is taken over.
Everything written passes through `rlft.run.redact.redact_secrets`: credentials in a URL never reach the disk.
Under `accelerate launch` / torchrun only rank 0 claims and writes (`rlft.run.distributed.is_main_process`).
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import shutil
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml

from rlft.recipe.sections import Recipe, recipe_to_dict
from rlft.run.distributed import is_main_process
from rlft.errors import RecipeError
from rlft.run.redact import redact_secrets

IN_PROGRESS = ".rlft-in-progress"  # held by a running run: {"pid", "host", "start", "started"}
# Files a run that failed before training may leave; such a directory is reused without `overwrite`.
PROVISIONAL = {"recipe.yaml", ".recipe.yaml.tmp", IN_PROGRESS}
# Files only the end of a run writes (the final adapter or model, metrics, card): the folder holds a finished run.
FINISHED = ("metrics.json", "adapter_model.safetensors", "model.safetensors", "README.md")
# Hub ids of the embedded models (the card's `base_model:`); the weights are the de-quantized GGUF of that model.
EMBEDDED_HUB_IDS = {"smollm2-135m-instruct": "HuggingFaceTB/SmolLM2-135M-Instruct"}


def folder_problem(folder: str | Path) -> str | None:
    """Why a folder cannot be written at `folder` (it is a file, it lies under a file, it or the nearest existing
    folder above it is not writable), or None. Nothing is created."""
    path = Path(folder).expanduser()
    if path.exists():
        if not path.is_dir():
            return "is a file; expected a directory"
        return None if os.access(path, os.W_OK | os.X_OK) else "is not writable"
    for above in path.parents:
        if above.exists():
            if not above.is_dir():
                return f"cannot be created: '{above}' is a file"
            return None if os.access(above, os.W_OK | os.X_OK) else f"cannot be created: '{above}' is not writable"
    return None


def check_output_path(output_dir: str, where: str) -> None:
    """`output_dir` must be a directory (or not exist yet)."""
    path = Path(output_dir).expanduser()
    if path.exists() and not path.is_dir():
        raise RecipeError(f"{where}: output_dir: '{output_dir}' is a file; expected a directory (new or empty, or a "
                          f"run to resume)")


def claim_output_dir(recipe: Recipe, where: str = "recipe") -> Path:
    """Create `output_dir`, or refuse one that holds another run (see the module docstring)."""
    out = Path(recipe.output_dir).expanduser()
    check_output_path(recipe.output_dir, where)
    if not is_main_process():  # under accelerate/torchrun only rank 0 checks, clears and writes the folder
        out.mkdir(parents=True, exist_ok=True)
        return out
    _refuse_live_owner(out, recipe.output_dir, where)
    found = sorted(p.name for p in out.iterdir() if not p.name.startswith(IN_PROGRESS)) if out.is_dir() else []
    resume = recipe.trainer.get("resume_from_checkpoint")
    if resume in ("last", True) and found:
        if not _check_resume_last(recipe, out, found, where):
            resume = None  # a finished run without a checkpoint, and overwrite=true: replaced below, not resumed
    if found and not set(found) <= PROVISIONAL and not resume:
        if not recipe.overwrite:
            shown = ", ".join(found[:4]) + (", ..." if len(found) > 4 else "")
            raise RecipeError(f"{where}: output_dir: '{recipe.output_dir}' already holds files ({shown}); set "
                              f"trainer.resume_from_checkpoint=last to continue that run, overwrite=true to replace "
                              f"it, or choose another output_dir")
        if "recipe.yaml" not in found:
            raise RecipeError(f"{where}: output_dir: '{recipe.output_dir}' is not an rlft run (no recipe.yaml); "
                              f"overwrite only replaces rlft runs, choose another output_dir")
        for name in found:
            target = out / name
            shutil.rmtree(target) if target.is_dir() and not target.is_symlink() else target.unlink()
    _mkdir(out, recipe.output_dir, where)
    return out


def _check_resume_last(recipe: Recipe, out: Path, found: list[str], where: str) -> bool:
    """`resume_from_checkpoint: last` into a folder that holds a finished run: True when it has a checkpoint to resume;
    False when it has none and the recipe says `overwrite: true` (start over); else a one-line refusal."""
    from rlft.run.checkpoints import last_complete_checkpoint  # imports transformers: only when resuming

    finished = [name for name in FINISHED if name in found]
    if not finished:
        return True  # an interrupted run: its newest complete checkpoint, or a fresh start over a failed start
    checkpoint = last_complete_checkpoint(out)
    if checkpoint is None:
        if recipe.overwrite:
            return False
        raise RecipeError(f"{where}: trainer.resume_from_checkpoint: '{recipe.output_dir}' holds a finished run "
                          f"({', '.join(finished)}) and no complete checkpoint-* to resume, so 'last' would train "
                          f"again from scratch over it; train on from its adapter in another output_dir "
                          f"(adapter.init_from={recipe.output_dir}), or set overwrite=true to replace it")
    return True  # whether it has steps left to train: rlft.run.checkpoints.check_steps_left, after the recipe check


def _mkdir(out: Path, output_dir: str, where: str) -> None:
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:  # under a file, read-only, no permission: one line, not a traceback
        raise RecipeError(f"{where}: output_dir: cannot create '{output_dir}': {exc.strerror or exc}") from None


def _process_stat(pid: int) -> tuple[str, str] | None:
    """(state, start time in clock ticks since boot) of a process (Linux): a zombie is gone, and a different start
    time means the pid was reused."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
        return fields[0], fields[19]
    except (OSError, IndexError):
        return None


def _owner(out: Path) -> dict[str, Any] | None:
    """The in-progress marker's owner when that run is still alive (or on another host: it cannot be checked)."""
    try:
        owner = json.loads((out / IN_PROGRESS).read_text(encoding="utf-8"))
        pid = int(owner["pid"])
    except (OSError, ValueError, KeyError, TypeError):
        return None  # no marker, or one left half-written by a killed run
    if owner.get("host") != socket.gethostname():
        return owner
    if pid == os.getpid():
        return None  # this process's own (a claim before an earlier error in the same Python session)
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return None
    except PermissionError:
        pass  # alive, another user's
    stat = _process_stat(pid)
    if stat is not None and (stat[0] == "Z" or owner.get("start") not in (None, stat[1])):
        return None  # exited (not yet reaped), or the pid now belongs to another process
    return owner


def _refuse_live_owner(out: Path, output_dir: str, where: str) -> None:
    owner = _owner(out)
    if owner is not None:
        gone = f"; if it is gone, delete {out / IN_PROGRESS}" if owner.get("host") != socket.gethostname() else ""
        raise RecipeError(f"{where}: output_dir: '{output_dir}' is in use by another rlft run (pid {owner.get('pid')} "
                          f"on {owner.get('host')}, since {owner.get('started', '?')}); wait for it to end or choose "
                          f"another output_dir{gone}")


def _take(out: Path, output_dir: str, where: str) -> None:
    """Write the in-progress marker atomically (hard link of a complete file: two runs cannot both create it)."""
    me = {"pid": os.getpid(), "host": socket.gethostname(), "start": (_process_stat(os.getpid()) or (0, None))[1],
          "started": time.strftime("%Y-%m-%d %H:%M:%S")}
    marker, tmp = out / IN_PROGRESS, out / f"{IN_PROGRESS}.{os.getpid()}.tmp"
    tmp.write_text(json.dumps(me), encoding="utf-8")
    try:
        for _ in range(2):
            try:
                os.link(tmp, marker)
                return
            except FileExistsError:
                _refuse_live_owner(out, output_dir, where)
                marker.unlink(missing_ok=True)  # a stale marker (its process is gone): taken over
            except OSError:  # no hard links on this file system: exclusive create
                with open(marker, "x", encoding="utf-8") as fh:
                    fh.write(json.dumps(me))
                return
        _refuse_live_owner(out, output_dir, where)
        raise RecipeError(f"{where}: output_dir: '{output_dir}': another run took it over while this one started")
    finally:
        tmp.unlink(missing_ok=True)


def release_output_dir(out: Path) -> None:
    """Remove the in-progress marker if this process holds it."""
    marker = Path(out) / IN_PROGRESS
    try:
        if json.loads(marker.read_text(encoding="utf-8")).get("pid") == os.getpid():
            marker.unlink()
    except (OSError, ValueError, AttributeError):
        pass


@contextlib.contextmanager
def held_output_dir(recipe: Recipe, where: str = "recipe") -> Iterator[Path]:
    """`claim_output_dir`, holding the folder with the in-progress marker from before the first write until the
    block ends (also on an error; a kill leaves a marker that the next run takes over)."""
    if not is_main_process():
        yield claim_output_dir(recipe, where)
        return
    out = Path(recipe.output_dir).expanduser()
    check_output_path(recipe.output_dir, where)
    _mkdir(out, recipe.output_dir, where)
    try:
        _take(out, recipe.output_dir, where)
    except OSError as exc:
        raise RecipeError(f"{where}: output_dir: cannot write into '{recipe.output_dir}': "
                          f"{exc.strerror or exc}") from None
    try:
        yield claim_output_dir(recipe, where)
    finally:
        release_output_dir(out)


def write_atomic(path: Path, text: str) -> None:
    if not is_main_process():  # several processes would race on the same temporary name
        return
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def recipe_record(recipe: Recipe, labels: list[str] | None = None) -> dict[str, Any]:
    """The recipe as saved: every default, the resolved label list, secrets redacted."""
    out = recipe_to_dict(recipe)
    if labels:
        out["data"]["labels"] = list(labels)
    return redact_secrets(out)


def write_recipe(recipe: Recipe, out: Path, labels: list[str] | None = None) -> Path:
    path = out / "recipe.yaml"
    write_atomic(path, yaml.safe_dump(recipe_record(recipe, labels), sort_keys=False, allow_unicode=True))
    return path


def write_metrics(metrics: dict[str, Any], out: Path) -> Path:
    path = out / "metrics.json"
    write_atomic(path, json.dumps(redact_secrets(metrics), indent=2, default=str))
    return path


def _fmt(value: Any) -> str:
    return f"{value:.3f}" if isinstance(value, float) else str(value)


def portable_base(recipe: Recipe) -> tuple[str, str]:
    """(name for the card's metadata, Python expression that loads the base weights) -- never a cache path."""
    name = recipe.model.name
    if name in EMBEDDED_HUB_IDS:
        return EMBEDDED_HUB_IDS[name], f'resolve_model_path(ModelConfig(name="{name}"))'
    path = Path(name).expanduser()
    if path.suffix == ".gguf" or recipe.model.gguf_file:
        return path.name if path.suffix == ".gguf" else name, \
            f'resolve_model_path(ModelConfig(name="{name}", gguf_file={recipe.model.gguf_file!r}))'
    if path.is_dir():  # the user's own directory: load it from there; the metadata names the hub id it came from
        try:
            origin = json.loads((path / "config.json").read_text()).get("_name_or_path") or ""
        except (OSError, ValueError):
            origin = ""
        return (origin if origin.count("/") == 1 and not Path(origin).exists() else path.name), f'"{name}"'
    return name, f'"{name}"'


def _decoding_section(recipe: Recipe, labels: list[str], system: str | None) -> str:
    d = recipe.decoding
    lines = [f"- Prefill (every reply starts with it): `{d.prefill!r}`" if d.prefill else "- Prefill: none",
             f"- Label constraint: {'on' if d.constrain_labels else 'off'} (label suffix `{d.label_suffix}`"
             f"{', stop at suffix' if d.stop_at_suffix else ''})",
             f"- Labels ({len(labels)}): {', '.join(f'`{x}`' for x in labels) if labels else 'none'}",
             f"- Prompt template: `{recipe.data.prompt_template}`",
             f"- System prompt: {json.dumps(system) if system else 'none'}"]
    return "\n".join(lines)


def _stop_section(metrics: dict[str, Any]) -> str:
    stop = metrics.get("stopped_early")
    if not stop:
        return ""
    status = "counted as success" if stop.get("ok") else "counted as a failed run"
    return (f"\n## Stopped early\nTraining stopped at step {metrics.get('global_step', '?')} before its end "
            f"({stop.get('kind')}, {status}): {stop.get('reason')}\n")


def _weights_lines(metrics: dict[str, Any]) -> str:
    """Model-card lines: the weight average this adapter is (adapter.ema_decay) and where keep_best chose best/."""
    lines = ""
    if metrics.get("ema"):
        ema = metrics["ema"]
        lines += (f"- Weights: moving average of the trainable weights, decay {ema['decay']} over "
                  f"{ema['steps_averaged']} optimizer steps (`adapter.ema_decay`)\n")
    best = metrics.get("best")
    if best:
        split = best.get("split", "held-out")
        how = ("rows held back from training (`evaluation.select_fraction`), not the held-out rows below"
               if split == "selection" else "the held-out rows below (selection on the reported rows: optimistic)")
        lines += (f"- Best checkpoint: `best/`, step {best['step']}, {best['metric']} {_fmt(best['value'])} on "
                  f"{how}\n")
    return lines


def _warnings_section(metrics: dict[str, Any]) -> str:
    warnings = metrics.get("warnings") or []
    return "\n## Warnings\n" + "".join(f"- {w}\n" for w in warnings) if warnings else ""


def write_model_card(recipe: Recipe, base_model: str, metrics: dict[str, Any], out: Path) -> Path:
    """README.md of the output folder: what was trained, measured results, and a load-and-decode snippet.

    `base_model` is the local path the weights were loaded from; the card names the model portably instead.
    """
    recipe_view = recipe_record(recipe)
    rewards = "\n".join(f"- `{r['name']}` (weight {r['weight']}, params {r['params'] or {}})"
                        for r in recipe_view["rewards"]) or "- none"
    rows = []
    for phase in ("before", "after"):
        for key, value in (metrics.get(f"eval_{phase}") or {}).items():
            rows.append(f"| {phase} | {key} | {_fmt(value)} |")
    table = "\n".join(["| phase | metric | value |", "|---|---|---|", *rows]) if rows else "No evaluation was run."
    adapter = "none (full fine-tune)" if recipe.adapter.type == "none" else \
        f"{recipe.adapter.type} r={recipe.adapter.r} alpha={recipe.adapter.alpha}"
    labels = list(metrics.get("labels") or recipe.data.labels or [])
    from rlft.data.shapes import system_message

    system = system_message(recipe.data, labels)
    hub_name, load_expr = portable_base(recipe)
    d = recipe.decoding
    user = recipe.data.prompt_template.replace("{utterance}", "I want my money back")
    messages = ([{"role": "system", "content": system}] if system else []) + [{"role": "user", "content": user}]
    embedded_note = " (rlft's embedded model: the de-quantized GGUF of it)" if recipe.model.name in EMBEDDED_HUB_IDS \
        else ""
    rows_note = f"{metrics.get('train_rows', '?')} training rows, {metrics.get('eval_rows', '?')} held out"
    from rlft.data.oracle import oracle_note

    oracle = oracle_note(recipe)
    oracle_line = f"\n> **Warning:** {oracle}\n" if oracle else ""
    if d.lookup:
        oracle_line += (f"\nDecoding looks up `{d.lookup}`: after its `<intent>` head the text of the label it chose "
                        f"is appended (`decoding.lookup_template`) before the reply; serve it with the "
                        f"structured-outputs regex of `rlft export` (docs/support_agent.md#no-oracle).\n")
    card = f"""---
library_name: peft
base_model: {hub_name}
tags: [rlft, {recipe.algorithm}]
---
# {Path(recipe.output_dir).name}

Trained with [rlft](https://github.com/rlft/rlft) using **{recipe.algorithm}**.
{oracle_line}
- Base model: `{hub_name}`{embedded_note}
- Adapter: {adapter}
- Data: `{recipe_view['data']['source']}` ({rows_note})
- Recipe: `recipe.yaml` in this folder (resolved, with every default and the label list)
{_weights_lines(metrics)}{_stop_section(metrics)}{_warnings_section(metrics)}
## Rewards
{rewards}

## Held-out evaluation
{table}

## Decoding (replies are only meaningful decoded this way)
{_decoding_section(recipe, labels, system)}

## Load and decode
Run from this folder (or set `ADAPTER` to its path); needs `rlft` installed (`pip install -e .` in its repo).
```python
from peft import PeftModel
from transformers import AutoModelForCausalLM, AutoTokenizer

from rlft.recipe.sections import DecodingConfig, ModelConfig
from rlft.evaluation.held_out import generate_with
from rlft.run.models import resolve_model_path

ADAPTER = "."
LABELS = {json.dumps(labels)}
DECODING = DecodingConfig(**{dataclasses.asdict(d)!r})
base = AutoModelForCausalLM.from_pretrained({load_expr})
model = PeftModel.from_pretrained(base, ADAPTER)
tokenizer = AutoTokenizer.from_pretrained(ADAPTER)
messages = {json.dumps(messages, ensure_ascii=False)}
reply = generate_with(model, tokenizer, [messages], DECODING, LABELS)[0]
print(reply)
```
"""
    path = out / "README.md"
    write_atomic(path, card)
    return path
