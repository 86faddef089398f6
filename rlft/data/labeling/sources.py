"""The prompts to label: read a recipe's data source, pick a split, and shape each row into a chat prompt.

Two kinds of rows are accepted:
- rows with a `prompt` column that already holds chat messages (`rlft generate` writes these); the recipe's
  system prompt is prepended when the conversation has none;
- plain rows (e.g. `utterance, intent`) turned into `[system, user]` with `data.prompt_template`, exactly as GRPO
  recipes build them.

The split is training's own (`rlft.data.holdout.held_out_split`: `data.holdout` random, grouped or prompt, and
`data.shift_holdout`, less `evaluation.select_fraction`'s selection rows), so `--split train` labels precisely the
rows a recipe with the same `data` and `evaluation` settings trains on and `--split eval` keeps the held-out rows
unseen.

Not here: sampling or scoring.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any

from rlft.recipe.sections import DataConfig
from rlft.data.reading import read_source, rename_columns, require_columns
from rlft.data.holdout import held_out_split
from rlft.data.holdout import select_split as carve_selection
from rlft.data.shapes import system_message, template_fields
from rlft.errors import DataError

SPLITS = ("all", "train", "eval")
# Output columns of KTO/DPO rows; a source column with one of these names is kept as `source_<name>`.
RESERVED = ("prompt", "completion", "label", "chosen", "rejected", "meta")


@dataclass
class PromptRow:
    key: str
    prompt: list[dict[str, str]]
    columns: dict[str, Any]


def prompt_key(index: int, prompt: Any, columns: dict[str, Any]) -> str:
    """Row position plus a content hash: resuming against changed data is detected, duplicates stay distinct."""
    blob = json.dumps([prompt, columns], sort_keys=True, ensure_ascii=False, default=str)
    return f"{index}:{hashlib.sha256(blob.encode()).hexdigest()[:16]}"


def _is_messages(value: Any) -> bool:
    return isinstance(value, list) and all(isinstance(m, dict) and "role" in m and "content" in m for m in value)


def _with_system(system: str | None, messages: list[dict[str, str]]) -> list[dict[str, str]]:
    messages = [{"role": m["role"], "content": m["content"]} for m in messages]
    if system and not any(m["role"] == "system" for m in messages):
        return [{"role": "system", "content": system}] + messages
    return messages


def data_labels(ds: Any, cfg: DataConfig) -> list[str]:
    if cfg.labels:
        return list(cfg.labels)
    if cfg.label_column not in ds.column_names:
        return []
    return sorted({v for v in ds[cfg.label_column] if isinstance(v, str) and v.strip()})


def select_split(ds: Any, cfg: DataConfig, split: str, seed: int, select_fraction: float = 0.0,
                 algorithm: str = "grpo") -> Any:
    """`all` rows of data.source, or the train/eval part exactly as training splits it (eval_source or seeded);
    `select_fraction` (`rlft.data.holdout.recipe_select_fraction`) leaves the selection rows out of `train`, as
    training does."""
    if split not in SPLITS:
        raise DataError(f"label: split '{split}' is not one of {', '.join(SPLITS)}")
    if split == "all":
        return ds
    if cfg.eval_source:
        part = ds if split == "train" else rename_columns(read_source(cfg, cfg.eval_source, seed), cfg,
                                                          cfg.eval_source)
    else:  # data.holdout (random, grouped, prompt) and data.shift_holdout, as training carves them
        train, held = held_out_split(ds, cfg, "prompt", seed)
        part = train if split == "train" else held
    if split == "train" and select_fraction:  # the rows keep_best chooses on are never trained on: nor labelled
        part, _ = carve_selection(part, cfg, algorithm, select_fraction, seed)
    limit = cfg.max_train_samples if split == "train" else cfg.max_eval_samples
    return part.select(range(min(limit, len(part)))) if limit else part


def load_prompts(cfg: DataConfig, seed: int, split: str = "all", limit: int | None = None,
                 select_fraction: float = 0.0, algorithm: str = "grpo") -> tuple[list[PromptRow], list[str]]:
    """Prompt rows of one split (optionally the first `limit`) and the data's label set; `select_fraction` and
    `algorithm` as in `select_split`."""
    ds = rename_columns(read_source(cfg, cfg.source, seed), cfg, cfg.source)
    labels = data_labels(ds, cfg)
    ds = select_split(ds, cfg, split, seed, select_fraction, algorithm)
    if limit is not None:
        ds = ds.select(range(min(limit, len(ds))))
    system = system_message(cfg, labels)
    has_messages = "prompt" in ds.column_names and len(ds) > 0 and _is_messages(ds[0]["prompt"])
    if not has_messages:
        require_columns(ds, template_fields(cfg.prompt_template), cfg.source,
                        f"data.prompt_template '{cfg.prompt_template}'")
    rows = []
    for i, row in enumerate(ds):
        if has_messages:
            if not _is_messages(row["prompt"]) or not row["prompt"]:
                raise DataError(f"{cfg.source}: row {i + 1}: 'prompt' must be a list of {{role, content}} messages")
            prompt = _with_system(system, row["prompt"])
        else:
            user = cfg.prompt_template.format(**row)
            if not user.strip():
                raise DataError(f"{cfg.source}: row {i + 1}: the prompt built from data.prompt_template is empty")
            prompt = _with_system(system, [{"role": "user", "content": user}])
        columns = {(f"source_{k}" if k in RESERVED else k): v for k, v in row.items()
                   if not (has_messages and k == "prompt")}
        rows.append(PromptRow(prompt_key(i, prompt, columns), prompt, columns))
    if not rows:
        raise DataError(f"{cfg.source}: no prompts in split '{split}'")
    return rows, labels
