"""The held-out and selection splits of a dataset: `held_out_split` carves `data.eval_fraction` out of
data.source as `data.holdout` (random, grouped: whole near-duplicate clusters per label, prompt: whole prompts) and
`data.shift_holdout` say; `select_split` carves `evaluation.select_fraction` out of the training rows the same way.
The one place both splits are made, for training and evaluation (`rlft.data.loading.prepare`) and for `rlft label
--split` (`rlft.data.labeling.sources`). The split algorithms on texts are `rlft.data.splits`.
"""

from __future__ import annotations

import json
from typing import Any

from rlft.data.reading import require_columns
from rlft.errors import DataError
from rlft.recipe.sections import DataConfig
from rlft.trainers import algorithm_spec


def prompt_keys(ds: Any, cfg: DataConfig) -> list[str]:
    """The user-facing prompt of each raw row, as text: the `prompt` column (preference data; chat messages as
    JSON), else `prompt_template` filled from the row (prompt data). Equal keys = the same prompt."""
    if "prompt" in ds.column_names:
        return [p if isinstance(p, str) else json.dumps(p, sort_keys=True) for p in ds["prompt"]]
    return template_texts(ds, cfg)


def _holdout(ds: Any, fraction: float, seed: int, by_prompt: bool, keys: list[str] | None = None
             ) -> tuple[Any, Any]:
    """Row split; for preference data (several rows per prompt, e.g. KTO rows from `rlft label`) whole prompts are
    held out, so no held-out prompt was trained on. With `keys` (`data.holdout: prompt`) whole prompts are held
    out for any data, chosen from the *sorted* distinct prompts: two sources with the same prompts (a reward model's
    pairs and the PPO prompts it scores) get the same held-out prompts."""
    if keys is not None:
        unique = sorted(set(keys))
    else:
        keys = [repr(p) for p in ds["prompt"]] if by_prompt and "prompt" in ds.column_names else []
        unique = list(dict.fromkeys(keys))
        if len(unique) == len(keys) or len(unique) < 2:
            split = ds.train_test_split(test_size=fraction, seed=seed)
            return split["train"], split["test"]
    import math
    import random

    random.Random(seed).shuffle(unique)
    held = set(unique[: min(len(unique) - 1, max(1, math.ceil(fraction * len(unique))))])
    eval_rows = [i for i, k in enumerate(keys) if k in held]
    train_rows = [i for i, k in enumerate(keys) if k not in held]
    return ds.select(train_rows), ds.select(eval_rows)


def template_texts(ds: Any, cfg: DataConfig) -> list[str]:
    """Each row's user message as data.prompt_template builds it (what near-duplicate groups compare)."""
    try:
        return [cfg.prompt_template.format(**row) for row in ds]
    except (KeyError, IndexError, ValueError) as exc:
        raise DataError(f"{cfg.source}: data.prompt_template: cannot fill it from the rows: {exc}") from None


def _grouped_holdout(ds: Any, cfg: DataConfig, seed: int) -> tuple[Any, Any]:
    """`data.holdout: grouped`: hold out whole clusters of near-duplicate user messages (`rlft.data.splits`), per
    label."""
    from rlft.data.splits import grouped_split

    require_columns(ds, [cfg.label_column], cfg.source, "data.holdout: grouped")
    texts = template_texts(ds, cfg)
    try:
        train_idx, eval_idx = grouped_split(texts, [str(v) for v in ds[cfg.label_column]],
                                            eval_fraction=cfg.eval_fraction, seed=seed)
    except ValueError as exc:
        raise DataError(f"{cfg.source}: data.holdout: grouped: {exc}") from None
    # indices come back in source order; shuffle the held-out side so evaluation.max_samples takes a mix of labels
    return ds.select(train_idx).shuffle(seed=seed), ds.select(eval_idx).shuffle(seed=seed)


def _shift_holdout(ds: Any, cfg: DataConfig, seed: int) -> tuple[Any, Any]:
    """`data.shift_holdout: COLUMN:LETTERS`: hold out the near-duplicate groups made mostly of rows whose column
    holds one of the letters (`rlft.data.splits.shift_split`), so training sees mostly unmarked text."""
    from rlft.data.splits import parse_shift, shift_split

    try:
        column, letters = parse_shift(cfg.shift_holdout)
    except ValueError as exc:
        raise DataError(f"{cfg.source}: data.shift_holdout: {exc}") from None
    require_columns(ds, [cfg.label_column, column], cfg.source, f"data.shift_holdout '{cfg.shift_holdout}'")
    shifted = [any(ch in str(v if v is not None else "") for ch in letters) for v in ds[column]]
    if not any(shifted):
        raise DataError(f"{cfg.source}: data.shift_holdout: no row's '{column}' holds any of {letters!r}; nothing "
                        f"to hold out")
    labels = [str(v) for v in ds[cfg.label_column]]
    train_idx, eval_idx = shift_split(template_texts(ds, cfg), labels, shifted)
    if not eval_idx:
        raise DataError(f"{cfg.source}: data.shift_holdout: every row marked {letters!r} sits in a near-duplicate "
                        f"group of mostly unmarked rows; nothing to hold out")
    marked = (sum(shifted[i] for i in eval_idx), sum(shifted[i] for i in train_idx))
    print(f"[rlft] data.shift_holdout {cfg.shift_holdout}: {len(eval_idx)} held-out rows ({marked[0]} marked) over "
          f"{len({labels[i] for i in eval_idx})} labels; {len(train_idx)} training rows ({marked[1]} marked)",
          flush=True)
    return ds.select(train_idx).shuffle(seed=seed), ds.select(eval_idx).shuffle(seed=seed)


def held_out_split(ds: Any, cfg: DataConfig, shape: str, seed: int) -> tuple[Any, Any]:
    """(training rows, held-out rows) of data.source as `data.holdout` and `data.shift_holdout` carve
    `data.eval_fraction` out of it: the one place the held-out split is made, for training and evaluation
    (`prepare`) and for `rlft label --split` (`rlft.data.labeling.sources`), so both see the same rows. `shape` is
    the algorithm's data shape: under `holdout: random`, preference rows (not `prompt`) hold out whole prompts."""
    if not 0 < cfg.eval_fraction < 1:
        raise DataError(f"{cfg.source}: data.eval_fraction: expected a number between 0 and 1 (exclusive), "
                        f"got {cfg.eval_fraction}")
    if len(ds) < 2:
        raise DataError(f"{cfg.source}: {len(ds)} row(s); holding out data.eval_fraction needs 2+ rows (or set "
                        f"data.eval_source)")
    if cfg.shift_holdout and cfg.holdout != "grouped":
        raise DataError(f"{cfg.source}: data.shift_holdout: holds out near-duplicate groups; needs "
                        f"data.holdout: grouped, got {cfg.holdout}")
    if cfg.holdout == "grouped" and cfg.shift_holdout:
        return _shift_holdout(ds, cfg, seed)
    if cfg.holdout == "grouped":
        return _grouped_holdout(ds, cfg, seed)
    if cfg.holdout == "prompt":
        keys = prompt_keys(ds, cfg)
        if len(set(keys)) < 2:
            raise DataError(f"{cfg.source}: data.holdout: prompt: needs 2+ distinct prompts, the data has "
                            f"{len(set(keys))}")
        return _holdout(ds, cfg.eval_fraction, seed, by_prompt=True, keys=keys)
    return _holdout(ds, cfg.eval_fraction, seed, by_prompt=shape != "prompt")


def recipe_select_fraction(evaluation: Any, algorithm: str) -> float:
    """The share of training rows held back as the selection split: `evaluation.select_fraction` when periodic
    evaluation (which generates) reads it, else 0. Training (`prepare`) and `rlft label --split train` both use it,
    so labelling never samples the rows `keep_best` chooses on."""
    if evaluation.every_steps and algorithm_spec(algorithm).task != "seq_cls":
        return evaluation.select_fraction
    return 0.0


def select_split(train_ds: Any, cfg: DataConfig, algorithm: str, fraction: float, seed: int) -> tuple[Any, Any]:
    """`evaluation.select_fraction`: (training rows, selection rows), the selection carved out of the TRAINING rows
    the way `data.holdout` carves the held-out split (grouped: whole near-duplicate clusters per label; prompt, or
    preference data under random: whole prompts; else rows), so periodic evaluation and keep_best choose on rows
    that are neither trained on nor the final report's."""
    if not 0.0 < fraction < 1.0:
        raise DataError(f"{cfg.source}: evaluation.select_fraction: expected a share between 0 and 1 (exclusive), "
                        f"got {fraction}")
    if len(train_ds) < 2:
        raise DataError(f"{cfg.source}: {len(train_ds)} training row(s); evaluation.select_fraction needs 2+ to "
                        f"carve a selection split from")
    if cfg.holdout == "grouped":
        from rlft.data.splits import grouped_split

        try:
            train_idx, select_idx = grouped_split(template_texts(train_ds, cfg),
                                                  [str(v) for v in train_ds[cfg.label_column]],
                                                  eval_fraction=fraction, seed=seed)
        except ValueError as exc:
            raise DataError(f"{cfg.source}: evaluation.select_fraction (data.holdout: grouped): {exc}") from None
        train, select = train_ds.select(train_idx).shuffle(seed=seed), train_ds.select(select_idx).shuffle(seed=seed)
    elif cfg.holdout == "prompt":
        train, select = _holdout(train_ds, fraction, seed, by_prompt=True, keys=prompt_keys(train_ds, cfg))
    else:
        by_prompt = algorithm_spec(algorithm).data != "prompt"  # preference rows: whole prompts
        train, select = _holdout(train_ds, fraction, seed, by_prompt=by_prompt)
    if len(select) == 0 or len(train) == 0:
        raise DataError(f"{cfg.source}: evaluation.select_fraction {fraction}: carving the selection split left "
                        f"{len(train)} training and {len(select)} selection rows; change the fraction")
    print(f"[rlft] evaluation.select_fraction {fraction}: {len(select)} selection rows carved from the "
          f"{len(train_ds)} training rows ({cfg.holdout}); periodic evaluation and keep_best use them, the "
          f"held-out split is left for the final report", flush=True)
    return train, select
