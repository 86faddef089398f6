"""What is checked of a recipe's data before any model loads (`rlft validate`, `rlft check`, `prepare`): the
columns each algorithm needs, label cells and label text, `data.breakdown_columns`, `data.shift_holdout` and
`data.augment_noise` values, and a bounded sample of every local file (`check_sample`). One-line errors naming the
file, row or recipe key.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from rlft.data.demo import DEMO_SOURCES
from rlft.data.reading import file_format, no_rows, read_sample, source_problem
from rlft.data.shapes import template_fields
from rlft.errors import DataError, RecipeError
from rlft.recipe.sections import DataConfig
from rlft.trainers import algorithm_spec, algorithms_where


MAX_LABEL_CHARS = 200  # a label is a class name; a 1 MB one hung `rlft check` (system prompt, constraint trie)


# Columns each data shape (`Algorithm.data`) needs, as alternatives (after data.columns renames); prompt datasets
# need their template's fields instead.
NEEDED = {"pairs": (("prompt", "chosen", "rejected"), ("prompt", "response_a", "response_b", "winner")),
          "kto": (("prompt", "completion", "label"), ("input", "output", "rating"))}


def shown_label(label: str, limit: int = 60) -> str:
    """A label as an error message shows it: its repr, cut to `limit` characters."""
    text = repr(label)
    return text if len(text) <= limit else f"{text[:limit - 4]}...{text[0]}"


def check_label_text(label: str, decoding: Any) -> str | None:
    """Why a label cannot be used (too long, or it would break the reply format or the system prompt), or None."""
    if len(label) > MAX_LABEL_CHARS:
        return f"is {len(label)} characters long; a label is a class name of at most {MAX_LABEL_CHARS} characters"
    brace = "a brace, which system prompts use for {labels}"
    for bad, why in ((decoding.label_suffix, "the label suffix"), (decoding.prefill, "the prefill"),
                     ("<intent>", "the intent tag"), ("{", brace), ("}", brace), ("\n", "a line break")):
        if bad and bad in label:
            return f"contains {bad!r}: {why}"
    return None


def _needed_columns(recipe: Any) -> tuple[tuple[str, ...], ...]:
    shape = algorithm_spec(recipe.algorithm).data
    if shape in NEEDED:
        return NEEDED[shape]
    needed = tuple(f for f in template_fields(recipe.data.prompt_template)
                   if not (recipe.data.policies and f == "policy"))  # filled by add_policy_column
    intent_rewards = any(r.name in ("intent", "rubric") and "label_column" not in r.params for r in recipe.rewards)
    if intent_rewards or (recipe.decoding.constrain_labels and not recipe.data.labels):
        needed += (recipe.data.label_column,)
    return (tuple(dict.fromkeys(needed)),)


def check_data_options(recipe: Any, where: Callable[[Any, str], str]) -> None:
    """One-line errors for `data.breakdown_columns`, `data.shift_holdout` and `data.augment_noise` values, before
    any file is read (their columns are checked against the files by `check_sample`)."""
    from rlft.report.breakdown import parse_spec

    cfg = recipe.data
    for spec in cfg.breakdown_columns:
        try:
            parse_spec(spec)
        except ValueError as exc:
            raise RecipeError(f"{where(recipe, 'data.breakdown_columns')}: data.breakdown_columns: {exc}") from None
    if cfg.shift_holdout:
        from rlft.data.splits import parse_shift  # numpy: only when the key is set

        key = where(recipe, "data.shift_holdout")
        try:
            parse_shift(cfg.shift_holdout)
        except ValueError as exc:
            raise RecipeError(f"{key}: data.shift_holdout: {exc}") from None
        if cfg.eval_source:
            raise RecipeError(f"{key}: data.shift_holdout: holds rows of data.source out, but data.eval_source is "
                              f"set (nothing is held out); drop one of the two")
        if cfg.holdout != "grouped":
            raise RecipeError(f"{key}: data.shift_holdout: holds out near-duplicate groups; needs data.holdout: "
                              f"grouped, got {cfg.holdout}")
    if not 0.0 <= cfg.augment_noise <= 1.0:
        raise RecipeError(f"{where(recipe, 'data.augment_noise')}: data.augment_noise: expected a rate in [0, 1] "
                          f"(0: off), got {cfg.augment_noise}")
    if cfg.augment_noise and algorithm_spec(recipe.algorithm).data != "prompt":
        prompt_algorithms = algorithms_where(lambda a: a.data == "prompt")
        raise RecipeError(f"{where(recipe, 'data.augment_noise')}: data.augment_noise: noisy copies are made of "
                          f"prompt rows ({', '.join(prompt_algorithms)}), not {recipe.algorithm} data")


def _option_columns(cfg: DataConfig, key: str) -> list[tuple[str, str]]:
    """(recipe key, column) pairs that the file behind `key` (data.source / data.eval_source) must have."""
    from rlft.report.breakdown import parse_spec

    out = []
    if key == ("data.eval_source" if cfg.eval_source else "data.source"):  # the file the eval rows come from
        out += [("data.breakdown_columns", parse_spec(c).column) for c in cfg.breakdown_columns]
    if key == "data.source" and cfg.shift_holdout and not cfg.eval_source:
        from rlft.data.splits import parse_shift

        out.append(("data.shift_holdout", parse_shift(cfg.shift_holdout)[0]))
    return out


def check_sample(recipe: Any, where: Callable[[Any, str], str]) -> None:
    """What `rlft validate` reads of local data files: the header and a bounded sample (first 1 MB; for JSON lines
    also the last 64 KB). Reports unreadable text, broken quoting or JSON, missing columns, bad labels and a file
    too small to hold rows out -- the problems training would hit later."""
    check_data_options(recipe, where)
    cfg = recipe.data
    for key, source in (("data.source", cfg.source), ("data.eval_source", cfg.eval_source)):
        if not source or source in DEMO_SOURCES or source.startswith(("hf:", "demo:")):
            continue
        path = Path(source).expanduser()
        fmt = file_format(path, cfg.format)
        problem = source_problem(path, fmt, cfg.format) if path.exists() else None
        if problem:
            raise DataError(f"{source}: {problem}")
        if fmt not in ("csv", "json", "jsonl") or not path.is_file():
            continue
        if path.stat().st_size == 0:
            raise DataError(f"{source}: the file is empty")
        header, rows, whole, problem = read_sample(path, fmt)
        if problem:
            raise DataError(f"{source}: {problem}")
        if whole and not rows:
            raise DataError(f"{source}: {no_rows(fmt, header)}")
        if not header:
            continue
        columns = set(header)
        for target, column in cfg.columns.items():
            if column not in columns:
                raise DataError(f"{source}: data.columns.{target}: column '{column}' not found; columns are "
                                f"{', '.join(header)}")
            columns = (columns - {column}) | {target}
        options = _needed_columns(recipe)
        if not any(set(o) <= columns for o in options):
            missing = [c for c in options[0] if c not in columns]
            why = " (data.prompt_template / data.label_column)" if algorithm_spec(recipe.algorithm).data == \
                "prompt" else ""
            raise DataError(f"{source}: missing column(s) {', '.join(missing)} needed by {recipe.algorithm}{why}"
                            f"; columns are {', '.join(header)} (map yours with data.columns)")
        for option, column in _option_columns(cfg, key):
            if column not in columns:
                raise DataError(f"{source}: {option}: column '{column}' not found; columns are "
                                f"{', '.join(sorted(columns))}")
        renamed = {column: target for target, column in cfg.columns.items()}
        label_column = next((c for c, t in renamed.items() if t == cfg.label_column), cfg.label_column)
        if label_column in header and (key == "data.eval_source" or not cfg.labels):  # as `prepare` reads them
            for n, row in enumerate(rows, start=1):
                value = row.get(label_column)
                value = None if value == "" and fmt == "csv" else value  # datasets reads an empty CSV cell as None
                problem = label_cell_problem(value, cfg.label_column)
                if problem:
                    raise DataError(f"{source}: row {n}: {problem}")
        if not cfg.labels:
            for n, row in enumerate(rows, start=1):
                value = row.get(label_column)
                problem = check_label_text(value, recipe.decoding) if isinstance(value, str) else None
                if problem:
                    raise DataError(f"{source}: row {n}: label {shown_label(value)} {problem}")
        if whole and key == "data.source" and not cfg.eval_source and len(rows) < 2:
            raise DataError(f"{source}: {len(rows)} row(s); holding out data.eval_fraction needs 2+ rows (or set "
                            f"data.eval_source)")


def label_cell_problem(value: Any, column: str) -> str | None:
    """Why a label cell cannot be a row's label (empty, not text), or None."""
    if isinstance(value, str) and value.strip():
        return None
    return f"label column '{column}' must be text, got {value!r}"


def check_label_cells(values: Any, column: str, source: str) -> None:
    """A one-line `DataError` naming the file, row and column of the first empty or non-text label cell."""
    for i, v in enumerate(values):
        problem = label_cell_problem(v, column)
        if problem:
            raise DataError(f"{source}: row {i + 1}: {problem}")


def check_breakdown_columns(ds: Any, cfg: DataConfig, source: str) -> None:
    """`data.breakdown_columns` must name columns of the evaluation rows (checked before any model runs)."""
    from rlft.report.breakdown import parse_spec

    try:
        missing = [c for c in (parse_spec(s).column for s in cfg.breakdown_columns) if c not in ds.column_names]
    except ValueError as exc:
        raise DataError(f"{source}: data.breakdown_columns: {exc}") from None
    if missing:
        raise DataError(f"{source}: data.breakdown_columns: column(s) {', '.join(missing)} not in the evaluation "
                        f"rows; columns are {', '.join(ds.column_names)}")
