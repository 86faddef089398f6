"""What a run leaves behind: adapter + tokenizer, resolved recipe, metrics, model card; optional merged model.

Files are written to a temporary name and renamed, so an interrupted run never leaves a half-written metrics or
recipe file in place of a good one. `claim_output_dir` runs before anything is written: a directory that already
holds another run is refused unless the recipe resumes it (`trainer.resume_from_checkpoint`) or says
`overwrite: true` (then that run's files are removed first), so an output directory never mixes two runs.
Everything written passes through `rlft.redact.redact_secrets`: credentials in a URL never reach the disk.
Under `accelerate launch` / torchrun only rank 0 claims and writes (`rlft.distributed.is_main_process`).
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
from pathlib import Path
from typing import Any

import yaml

from rlft.config import Recipe, recipe_to_dict
from rlft.distributed import is_main_process
from rlft.errors import RecipeError
from rlft.redact import redact_secrets

# Files a run that failed before training may leave; such a directory is reused without `overwrite`.
PROVISIONAL = {"recipe.yaml", ".recipe.yaml.tmp"}
# Hub ids of the embedded models (the card's `base_model:`); the weights are the de-quantized GGUF of that model.
EMBEDDED_HUB_IDS = {"smollm2-135m-instruct": "HuggingFaceTB/SmolLM2-135M-Instruct"}


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
    found = sorted(p.name for p in out.iterdir()) if out.is_dir() else []
    if found and not set(found) <= PROVISIONAL and not recipe.trainer.get("resume_from_checkpoint"):
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
    out.mkdir(parents=True, exist_ok=True)
    return out


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
    from rlft.data import system_message

    system = system_message(recipe.data, labels)
    hub_name, load_expr = portable_base(recipe)
    d = recipe.decoding
    user = recipe.data.prompt_template.replace("{utterance}", "I want my money back")
    messages = ([{"role": "system", "content": system}] if system else []) + [{"role": "user", "content": user}]
    embedded_note = " (rlft's embedded model: the de-quantized GGUF of it)" if recipe.model.name in EMBEDDED_HUB_IDS \
        else ""
    rows_note = f"{metrics.get('train_rows', '?')} training rows, {metrics.get('eval_rows', '?')} held out"
    card = f"""---
library_name: peft
base_model: {hub_name}
tags: [rlft, {recipe.algorithm}]
---
# {Path(recipe.output_dir).name}

Trained with [rlft](https://github.com/rlft/rlft) using **{recipe.algorithm}**.

- Base model: `{hub_name}`{embedded_note}
- Adapter: {adapter}
- Data: `{recipe_view['data']['source']}` ({rows_note})
- Recipe: `recipe.yaml` in this folder (resolved, with every default and the label list)
{_stop_section(metrics)}{_warnings_section(metrics)}
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

from rlft.config import DecodingConfig, ModelConfig
from rlft.evaluate import generate_with
from rlft.models import resolve_model_path

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
