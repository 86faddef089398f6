"""Rows shaped for each TRL trainer: prompt rows get a conversational `prompt` (an optional system message, where
`{labels}` becomes the allowed labels, and a user message from `data.prompt_template`; other columns stay, so
rewards receive them as keyword arguments); preference rows are normalised to TRL's formats: DPO / reward model
`prompt, chosen, rejected` (also Tinker's `prompt, response_a, response_b, winner`), KTO `prompt, completion, label`
(also UBIAI's `system_prompt, input, output, rating`).
"""

from __future__ import annotations

import string
from typing import Any

from rlft.data.reading import require_columns
from rlft.errors import DataError
from rlft.recipe.sections import DataConfig
from rlft.trainers import algorithm_spec


WINNER_A = {"a", "response_a", "1"}


WINNER_B = {"b", "response_b", "2"}


RATING = {"accurate": True, "inaccurate": False}


def template_fields(template: str) -> list[str]:
    return [f for _, f, _, _ in string.Formatter().parse(template) if f]


def customer_fields(cfg: DataConfig) -> list[str]:
    """The fields of `data.prompt_template` that hold what the customer wrote: all but the label column and
    `policy` (gold-derived context from data.policies, shared by a label's rows)."""
    return [f for f in template_fields(cfg.prompt_template) if f not in (cfg.label_column, "policy")]


def system_message(cfg: DataConfig, labels: list[str]) -> str | None:
    if cfg.system_prompt is None:
        return None
    return cfg.system_prompt.replace("{labels}", ", ".join(labels))


def as_prompt(system: str | None, user: Any) -> list[dict[str, str]]:
    """A conversational prompt; a prompt that already is a message list keeps its turns."""
    if isinstance(user, list):
        if not system:
            return list(user)
        return [{"role": "system", "content": system}] + [m for m in user if m.get("role") != "system"]
    return ([{"role": "system", "content": system}] if system else []) + [{"role": "user", "content": user}]


def prompt_rows(ds: Any, cfg: DataConfig, labels: list[str], source: str) -> Any:
    fields = template_fields(cfg.prompt_template)
    require_columns(ds, fields, source, f"data.prompt_template '{cfg.prompt_template}'")
    system = system_message(cfg, labels)

    whole_field = fields[0] if len(fields) == 1 and cfg.prompt_template == "{" + fields[0] + "}" else None

    renamed = "prompt" in ds.column_names  # TRL's `prompt` column is rebuilt; the original is kept beside it

    def build(row: dict) -> dict:
        values = {**row, "prompt": row["source_prompt"]} if renamed else row
        if whole_field and isinstance(values[whole_field], list):  # a conversation (e.g. from `rlft generate`)
            return {"prompt": as_prompt(system, values[whole_field])}
        return {"prompt": as_prompt(system, cfg.prompt_template.format(**values))}

    if renamed:
        ds = ds.rename_column("prompt", "source_prompt")
    return ds.map(build)


def _pairwise_to_dpo(ds: Any, source: str, dropped: dict[str, int]) -> Any:
    require_columns(ds, ["prompt", "response_a", "response_b", "winner"], source, "the pairwise format")
    keep, rows = [], ds.to_list()
    for i, row in enumerate(rows):
        winner = str(row["winner"]).strip().lower()
        if winner in WINNER_A:
            keep.append({**row, "chosen": row["response_a"], "rejected": row["response_b"]})
        elif winner in WINNER_B:
            keep.append({**row, "chosen": row["response_b"], "rejected": row["response_a"]})
        elif winner in {"tie", "none", ""}:
            dropped["tie"] = dropped.get("tie", 0) + 1
        else:
            raise DataError(f"{source}: row {i + 1}: winner must be 'a' or 'b' (or 'tie'), got {row['winner']!r}")
    import datasets

    return datasets.Dataset.from_list(keep)


def _ubiai_to_kto(ds: Any, source: str) -> Any:
    require_columns(ds, ["input", "output", "rating"], source, "the UBIAI format")
    rows = []
    for i, row in enumerate(ds.to_list()):
        rating = str(row["rating"]).strip().lower()
        if rating not in RATING:
            raise DataError(f"{source}: row {i + 1}: rating must be Accurate or Inaccurate, got {row['rating']!r}")
        system = row.get("system_prompt")
        prompt = as_prompt(system, row["input"]) if system else row["input"]
        rows.append({**row, "prompt": prompt, "completion": row["output"], "label": RATING[rating]})
    import datasets

    return datasets.Dataset.from_list(rows)


def _assistant(text: Any) -> Any:
    return text if isinstance(text, list) else [{"role": "assistant", "content": text}]


def preference_rows(ds: Any, algorithm: str, cfg: DataConfig, labels: list[str], source: str,
                     dropped: dict[str, int]) -> Any:
    system = system_message(cfg, labels)
    if algorithm_spec(algorithm).data == "pairs":
        if "chosen" not in ds.column_names and "winner" in ds.column_names:
            ds = _pairwise_to_dpo(ds, source, dropped)
        require_columns(ds, ["prompt", "chosen", "rejected"], source, f"{algorithm} (prompt, chosen, rejected)")
        same = [i for i, r in enumerate(ds) if r["chosen"] == r["rejected"]]
        if same:
            raise DataError(f"{source}: row {same[0] + 1}: chosen and rejected are identical ({len(same)} rows); "
                            f"drop ties before training")
        for col in ("chosen", "rejected"):
            empty = [i for i, v in enumerate(ds[col]) if not (v if isinstance(v, list) else str(v).strip())]
            if empty:
                raise DataError(f"{source}: row {empty[0] + 1}: '{col}' is empty ({len(empty)} rows)")
        return ds.map(lambda r: {"prompt": as_prompt(system, r["prompt"]), "chosen": _assistant(r["chosen"]),
                                 "rejected": _assistant(r["rejected"])})
    # kto
    if "label" not in ds.column_names and "rating" in ds.column_names:
        ds = _ubiai_to_kto(ds, source)
    require_columns(ds, ["prompt", "completion", "label"], source, "kto (prompt, completion, label)")
    for i, value in enumerate(ds["label"]):
        if not isinstance(value, bool):
            raise DataError(f"{source}: row {i + 1}: label must be true/false, got {value!r} "
                            f"(UBIAI files use rating: Accurate/Inaccurate)")
    if len(set(ds["label"])) < 2:
        raise DataError(f"{source}: KTO needs both desirable (true) and undesirable (false) labels; all are "
                        f"{ds['label'][0]}")
    return ds.map(lambda r: {"prompt": as_prompt(system, r["prompt"]), "completion": _assistant(r["completion"])})
