"""Datasets: read files, rename columns, split deterministically, and shape rows for each TRL trainer.

Prompt datasets (GRPO, PPO) get a conversational `prompt` column: an optional system message (where `{labels}` is
replaced by the allowed labels) and a user message from `data.prompt_template`. Other columns stay, so rewards
receive them as keyword arguments. Preference datasets are normalised to TRL's formats:
DPO/reward model `prompt, chosen, rejected` (also accepts Tinker's `prompt, response_a, response_b, winner`);
KTO `prompt, completion, label` (also accepts UBIAI's `system_prompt, input, output, rating`).
"""

from __future__ import annotations

import string
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rlft.config import DataConfig
from rlft.demo_data import DEMO_SOURCES
from rlft.errors import DataError

PREFERENCE_ALGOS = ("dpo", "reward_model")
WINNER_A = {"a", "response_a", "1"}
WINNER_B = {"b", "response_b", "2"}
RATING = {"accurate": True, "inaccurate": False}


@dataclass
class PreparedData:
    train: Any  # datasets.Dataset
    eval: Any  # datasets.Dataset
    labels: list[str]
    dropped: dict[str, int]


def check_source(source: str, where: str, key: str = "data.source") -> None:
    if source in DEMO_SOURCES or source.startswith("hf:"):
        return
    if source.startswith("demo:"):
        raise DataError(f"{where}: {key}: unknown demo source '{source}'; use one of {', '.join(DEMO_SOURCES)}")
    if not Path(source).expanduser().exists():
        raise DataError(f"{where}: {key}: file '{source}' does not exist")


def read_source(cfg: DataConfig, source: str, seed: int) -> Any:
    """Load a source into a `datasets.Dataset` (one split)."""
    import datasets

    if source in DEMO_SOURCES:
        return datasets.Dataset.from_list(DEMO_SOURCES[source](cfg.demo_size, seed))
    if source.startswith("hf:"):
        return datasets.load_dataset(source[3:], split=cfg.split)
    path = Path(source).expanduser()
    fmt = cfg.format
    if fmt == "auto":
        fmt = "datasets" if path.is_dir() else {".csv": "csv", ".json": "json", ".jsonl": "jsonl"}.get(
            path.suffix.lower(), "")
        if not fmt:
            raise DataError(f"{source}: cannot tell the format from '{path.suffix}'; set data.format to csv, json, "
                            f"jsonl or datasets")
    if path.is_file() and path.stat().st_size == 0:
        raise DataError(f"{source}: the file is empty")
    try:
        if fmt == "datasets":
            ds = datasets.load_from_disk(str(path))
            if isinstance(ds, datasets.DatasetDict):
                if cfg.split not in ds:
                    raise DataError(f"{source}: split '{cfg.split}' not found; available: {', '.join(ds)}")
                ds = ds[cfg.split]
        else:
            builder = "csv" if fmt == "csv" else "json"
            ds = datasets.load_dataset(builder, data_files=str(path), split="train")
    except DataError:
        raise
    except Exception as exc:  # pyarrow/pandas parse errors: one line naming the file
        message = " ".join(str(exc).split())[:300]
        raise DataError(f"{source}: cannot read as {fmt}: {type(exc).__name__}: {message}") from None
    if len(ds) == 0:
        raise DataError(f"{source}: no rows")
    return ds


def rename_columns(ds: Any, cfg: DataConfig, source: str) -> Any:
    for target, column in cfg.columns.items():
        if column not in ds.column_names:
            raise DataError(f"{source}: data.columns.{target}: column '{column}' not found; columns are "
                            f"{', '.join(ds.column_names)}")
        if target != column:
            if target in ds.column_names:
                ds = ds.remove_columns(target)
            ds = ds.rename_column(column, target)
    return ds


def require_columns(ds: Any, needed: list[str], source: str, why: str) -> None:
    missing = [c for c in needed if c not in ds.column_names]
    if missing:
        raise DataError(f"{source}: missing column(s) {', '.join(missing)} needed by {why}; columns are "
                        f"{', '.join(ds.column_names)} (map yours with data.columns)")


def template_fields(template: str) -> list[str]:
    return [f for _, f, _, _ in string.Formatter().parse(template) if f]


def check_text_column(ds: Any, column: str, source: str) -> None:
    for i, value in enumerate(ds[column]):
        if not isinstance(value, str) or not value.strip():
            raise DataError(f"{source}: row {i + 1}: column '{column}' must be non-empty text, got {value!r}")


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


def _prompt_rows(ds: Any, cfg: DataConfig, labels: list[str], source: str) -> Any:
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


def _preference_rows(ds: Any, algorithm: str, cfg: DataConfig, labels: list[str], source: str,
                     dropped: dict[str, int]) -> Any:
    system = system_message(cfg, labels)
    if algorithm in PREFERENCE_ALGOS:
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


def _labels(ds: Any, cfg: DataConfig, source: str) -> list[str]:
    if cfg.labels:
        return list(cfg.labels)
    if cfg.label_column not in ds.column_names:
        return []
    values = ds[cfg.label_column]
    for i, v in enumerate(values):
        if not isinstance(v, str) or not v.strip():
            raise DataError(f"{source}: row {i + 1}: label column '{cfg.label_column}' must be text, got {v!r}")
    return sorted(set(values))


def prepare(cfg: DataConfig, algorithm: str, seed: int, reward_columns: list[str] | None = None) -> PreparedData:
    """Read, rename, validate, split and shape the data for `algorithm`."""
    ds = rename_columns(read_source(cfg, cfg.source, seed), cfg, cfg.source)
    if cfg.eval_source:
        eval_ds = rename_columns(read_source(cfg, cfg.eval_source, seed), cfg, cfg.eval_source)
        train_ds = ds
    else:
        if not 0 < cfg.eval_fraction < 1 or len(ds) < 2:
            raise DataError(f"{cfg.source}: data.eval_fraction must be in (0, 1) and the data needs 2+ rows")
        split = ds.train_test_split(test_size=cfg.eval_fraction, seed=seed)
        train_ds, eval_ds = split["train"], split["test"]
    if cfg.max_train_samples:
        train_ds = train_ds.select(range(min(cfg.max_train_samples, len(train_ds))))
    if cfg.max_eval_samples:
        eval_ds = eval_ds.select(range(min(cfg.max_eval_samples, len(eval_ds))))
    labels = _labels(ds, cfg, cfg.source)
    dropped: dict[str, int] = {}
    out = []
    for part, source in ((train_ds, cfg.source), (eval_ds, cfg.eval_source or cfg.source)):
        if reward_columns:
            require_columns(part, reward_columns, source, "the recipe's rewards")
        if algorithm in ("grpo", "label_pg", "ppo"):
            out.append(_prompt_rows(part, cfg, labels, source))
        else:
            out.append(_preference_rows(part, algorithm, cfg, labels, source, dropped))
    if len(out[0]) == 0:
        raise DataError(f"{cfg.source}: no training rows left after the split and drops {dropped}")
    return PreparedData(out[0], out[1], labels, dropped)


def _prompt_length(tokenizer: Any, prompt: Any, limit: int) -> int:
    text = prompt if isinstance(prompt, str) else "".join(str(m.get("content", "")) for m in prompt)
    if len(text) > 16 * limit:  # never tokenize a multi-megabyte row just to learn that it is too long
        return len(text)
    from rlft.decoding import template_ids

    return len(template_ids(tokenizer, prompt))


def drop_long_prompts(ds: Any, tokenizer: Any, max_tokens: int, source: str, dropped: dict[str, int]) -> Any:
    """Drop rows whose prompt is longer than `max_tokens` tokens (chat template included); count them in
    `dropped['too_long']`. A training set left empty is an error naming the limit."""
    if "prompt" not in ds.column_names:
        return ds
    keep = [i for i, p in enumerate(ds["prompt"]) if _prompt_length(tokenizer, p, max_tokens) <= max_tokens]
    if len(keep) == len(ds):
        return ds
    dropped["too_long"] = dropped.get("too_long", 0) + len(ds) - len(keep)
    if not keep:
        raise DataError(f"{source}: every prompt is longer than data.max_prompt_tokens={max_tokens} tokens; raise "
                        f"the limit or shorten the rows")
    print(f"[rlft] {source}: dropped {len(ds) - len(keep)} row(s) longer than data.max_prompt_tokens={max_tokens} "
          f"tokens", flush=True)
    return ds.select(keep)
