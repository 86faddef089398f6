"""What a run leaves behind: adapter + tokenizer, resolved recipe, metrics, model card; optional merged model.

Files are written to a temporary name and renamed, so an interrupted run never leaves a half-written metrics or
recipe file in place of a good one.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from rlft.config import Recipe
from rlft.recipe import recipe_to_dict

import yaml


def write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def write_recipe(recipe: Recipe, out: Path) -> Path:
    path = out / "recipe.yaml"
    write_atomic(path, yaml.safe_dump(recipe_to_dict(recipe), sort_keys=False))
    return path


def write_metrics(metrics: dict[str, Any], out: Path) -> Path:
    path = out / "metrics.json"
    write_atomic(path, json.dumps(metrics, indent=2, default=str))
    return path


def _fmt(value: Any) -> str:
    return f"{value:.3f}" if isinstance(value, float) else str(value)


def write_model_card(recipe: Recipe, base_model: str, metrics: dict[str, Any], out: Path) -> Path:
    rewards = "\n".join(f"- `{r.name}` (weight {r.weight}, params {r.params or {}})" for r in recipe.rewards) or "- none"
    rows = []
    for phase in ("before", "after"):
        for key, value in (metrics.get(f"eval_{phase}") or {}).items():
            rows.append(f"| {phase} | {key} | {_fmt(value)} |")
    table = "\n".join(["| phase | metric | value |", "|---|---|---|", *rows]) if rows else "No evaluation was run."
    adapter = "none (full fine-tune)" if recipe.adapter.type == "none" else \
        f"{recipe.adapter.type} r={recipe.adapter.r} alpha={recipe.adapter.alpha}"
    card = f"""---
library_name: peft
base_model: {base_model}
tags: [rlft, {recipe.algorithm}]
---
# {Path(recipe.output_dir).name}

Trained with [rlft](https://github.com/rlft/rlft) using **{recipe.algorithm}**.

- Base model: `{base_model}`
- Adapter: {adapter}
- Data: `{recipe.data.source}` ({metrics.get('train_rows', '?')} training rows, {metrics.get('eval_rows', '?')} held out)
- Recipe: `recipe.yaml` in this folder (resolved, with every default)

## Rewards
{rewards}

## Held-out evaluation
{table}

## Load
```python
from peft import PeftModel
from transformers import AutoModelForCausalLM, AutoTokenizer
base = AutoModelForCausalLM.from_pretrained("{base_model}")
model = PeftModel.from_pretrained(base, "{out}")
tokenizer = AutoTokenizer.from_pretrained("{out}")
```
"""
    path = out / "README.md"
    write_atomic(path, card)
    return path
