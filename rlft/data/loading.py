"""`prepare`: the data stage of a run. Read the source (`rlft.data.reading`), add the policy column, split off the
held-out rows (and the selection rows: `rlft.data.holdout`), cap, add noisy copies, check labels
(`rlft.data.checks`) and shape the rows for the algorithm's trainer (`rlft.data.shapes`).

For robustness to shifted traffic (docs/data.md#shift): `data.shift_holdout` holds out the near-duplicate groups of
flagged rows (`rlft.data.splits.shift_split`), `data.augment_noise` adds noisy copies of training rows
(`rlft.data.noise`), `data.breakdown_columns` must name columns of the evaluation rows (the report's per-value tables).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from rlft.data.checks import check_breakdown_columns, check_label_cells, check_label_text, shown_label
from rlft.data.reading import read_source, rename_columns, require_columns
from rlft.data.holdout import held_out_split, select_split
from rlft.data.shapes import customer_fields, preference_rows, prompt_rows
from rlft.errors import DataError
from rlft.recipe.sections import DataConfig
from rlft.trainers import algorithm_spec


SMALL_HELD_OUT = 10


MAX_PROMPT_CHARS = 1_000_000  # a prompt row rlft reads at all (with data.max_prompt_tokens: null)


@dataclass
class PreparedData:
    train: Any  # datasets.Dataset
    eval: Any  # datasets.Dataset
    labels: list[str]
    dropped: dict[str, int]
    select: Any = None  # datasets.Dataset: evaluation.select_fraction's selection split (rows carved from training)


def _labels(ds: Any, cfg: DataConfig, source: str, decoding: Any = None) -> list[str]:
    if cfg.labels:
        return list(cfg.labels)
    if cfg.label_column not in ds.column_names:
        return []
    values = ds[cfg.label_column]
    check_label_cells(values, cfg.label_column, source)
    for label in sorted(set(values)):
        from rlft.recipe.sections import DecodingConfig

        problem = check_label_text(label, decoding or DecodingConfig())
        if problem:
            row = values.index(label) + 1
            raise DataError(f"{source}: row {row}: label {shown_label(label)} {problem}")
    return sorted(set(values))


def add_noisy_copies(ds: Any, cfg: DataConfig, seed: int) -> Any:
    """`data.augment_noise`: the training rows plus a noisy copy of each (`rlft.data.noise`), shuffled with `seed`.

    The copy rewrites the text of `data.prompt_template`'s fields except the label column and `policy` (context
    from data.policies, not the customer's words); every other column, the label included, is kept."""
    import datasets

    from rlft.data.noise import noisy_rows

    fields = customer_fields(cfg)
    copies = noisy_rows(ds.to_list(), fields, seed, cfg.augment_noise, cfg.augment_profanity)
    noisy_ds = datasets.Dataset.from_list(copies, features=ds.features)
    return datasets.concatenate_datasets([ds, noisy_ds]).shuffle(seed=seed)


def add_policy_column(ds: Any, cfg: DataConfig, source: str) -> Any:
    """`data.policies`: a `policy` column holding each row's policy text for its `label_column` (else `default`)."""
    if not cfg.policies:
        return ds
    from rlft.judge.policies import Guidelines

    require_columns(ds, [cfg.label_column], source, "data.policies")
    table = Guidelines.from_params(None, cfg.policies)
    texts = [table.for_key(v) for v in ds[cfg.label_column]]
    if None in texts:
        raise DataError(f"{source}: row {texts.index(None) + 1}: data.policies '{cfg.policies}' has no policy (and no "
                        f"default) for {cfg.label_column} '{ds[cfg.label_column][texts.index(None)]}'")
    return ds.remove_columns([c for c in ["policy"] if c in ds.column_names]).add_column("policy", texts)


def prepare(cfg: DataConfig, algorithm: str, seed: int, reward_columns: list[str] | None = None,
            select_fraction: float = 0.0) -> PreparedData:
    """Read, rename, validate, split and shape the data for `algorithm`; with `select_fraction`
    (`evaluation.select_fraction`) also carve a selection split out of the training rows (`select_split`)."""
    shape = algorithm_spec(algorithm).data  # prompt rows, or preference rows (pairs, kto)
    ds = add_policy_column(rename_columns(read_source(cfg, cfg.source, seed), cfg, cfg.source), cfg, cfg.source)
    if cfg.eval_source:
        eval_ds = add_policy_column(rename_columns(read_source(cfg, cfg.eval_source, seed), cfg, cfg.eval_source),
                                    cfg, cfg.eval_source)
        if cfg.label_column in eval_ds.column_names:  # rewards score against these (rlft eval --data)
            check_label_cells(eval_ds[cfg.label_column], cfg.label_column, cfg.eval_source)
        train_ds = ds
    else:
        train_ds, eval_ds = held_out_split(ds, cfg, shape, seed)
    if len(eval_ds) < SMALL_HELD_OUT:
        print(f"[rlft] warning: the held-out split has only {len(eval_ds)} row(s); before/after numbers on it are "
              f"noise (raise data.eval_fraction or give data.eval_source)", flush=True)
    select_ds = None
    if select_fraction:  # before the cap and the noisy copies: the selection rows are never trained on
        train_ds, select_ds = select_split(train_ds, cfg, algorithm, select_fraction, seed)
    if cfg.max_train_samples:
        train_ds = train_ds.select(range(min(cfg.max_train_samples, len(train_ds))))
    if cfg.max_eval_samples:
        eval_ds = eval_ds.select(range(min(cfg.max_eval_samples, len(eval_ds))))
    if cfg.augment_noise:  # after the split and the cap: only training rows get noisy copies
        if not 0.0 < cfg.augment_noise <= 1.0:
            raise DataError(f"{cfg.source}: data.augment_noise: expected a rate in [0, 1] (0: off), got "
                            f"{cfg.augment_noise}")
        train_ds = add_noisy_copies(train_ds, cfg, seed)
    check_breakdown_columns(eval_ds, cfg, cfg.eval_source or cfg.source)
    labels = _labels(ds, cfg, cfg.source)
    dropped: dict[str, int] = {}
    out = []
    parts = [(train_ds, cfg.source), (eval_ds, cfg.eval_source or cfg.source)]
    for part, source in parts + ([(select_ds, cfg.source)] if select_ds is not None else []):
        if reward_columns:
            require_columns(part, reward_columns, source, "the recipe's rewards")
        if shape == "prompt":
            out.append(prompt_rows(part, cfg, labels, source))
        else:
            out.append(preference_rows(part, algorithm, cfg, labels, source, dropped))
    if len(out[0]) == 0:
        raise DataError(f"{cfg.source}: no training rows left after the split and drops {dropped}")
    return PreparedData(out[0], out[1], labels, dropped, out[2] if select_ds is not None else None)


def _prompt_length(tokenizer: Any, prompt: Any, limit: int) -> int:
    text = prompt if isinstance(prompt, str) else "".join(str(m.get("content", "")) for m in prompt)
    if len(text) > 16 * limit:  # never tokenize a multi-megabyte row just to learn that it is too long
        return len(text)
    from rlft.decoding.prompting import template_ids

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
