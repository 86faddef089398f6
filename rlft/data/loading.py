"""Datasets: read files, rename columns, split deterministically, and shape rows for each TRL trainer.

Prompt datasets (GRPO, PPO) get a conversational `prompt` column: an optional system message (where `{labels}` is
replaced by the allowed labels) and a user message from `data.prompt_template`. Other columns stay, so rewards
receive them as keyword arguments. Preference datasets are normalised to TRL's formats:
DPO/reward model `prompt, chosen, rejected` (also accepts Tinker's `prompt, response_a, response_b, winner`);
KTO `prompt, completion, label` (also accepts UBIAI's `system_prompt, input, output, rating`).
For robustness to shifted traffic (docs/data.md#shift): `data.shift_holdout` holds out the near-duplicate groups of
flagged rows (`rlft.data.splits.shift_split`), `data.augment_noise` adds noisy copies of training rows
(`rlft.data.noise`), `data.breakdown_columns` must name columns of the evaluation rows (the report's per-value tables).
"""

from __future__ import annotations

import codecs
import csv
import io
import json
import string
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rlft.recipe.sections import DataConfig
from rlft.data.demo import DEMO_SOURCES
from rlft.errors import DataError, RecipeError
from rlft.trainers import algorithm_spec, algorithms_where

WINNER_A = {"a", "response_a", "1"}
WINNER_B = {"b", "response_b", "2"}
RATING = {"accurate": True, "inaccurate": False}
SAMPLE_BYTES = 1_000_000  # what `rlft validate` reads of each data file (plus the last TAIL_BYTES of JSON lines)
TAIL_BYTES = 65_536
DIAGNOSE_BYTES = 200_000_000  # when a file fails to load, how much is scanned to name the bad line
SMALL_HELD_OUT = 10
MAX_LABEL_CHARS = 200  # a label is a class name; a 1 MB one hung `rlft check` (system prompt, constraint trie)
MAX_PROMPT_CHARS = 1_000_000  # a prompt row rlft reads at all (with data.max_prompt_tokens: null)
# Columns each data shape (`Algorithm.data`) needs, as alternatives (after data.columns renames); prompt datasets
# need their template's fields instead.
NEEDED = {"pairs": (("prompt", "chosen", "rejected"), ("prompt", "response_a", "response_b", "winner")),
          "kto": (("prompt", "completion", "label"), ("input", "output", "rating"))}


@dataclass
class PreparedData:
    train: Any  # datasets.Dataset
    eval: Any  # datasets.Dataset
    labels: list[str]
    dropped: dict[str, int]
    select: Any = None  # datasets.Dataset: evaluation.select_fraction's selection split (rows carved from training)


def _file_format(path: Path, fmt: str) -> str:
    if fmt != "auto":
        return fmt
    return "datasets" if path.is_dir() else {".csv": "csv", ".json": "json", ".jsonl": "jsonl"}.get(
        path.suffix.lower(), "")


def source_problem(path: Path, fmt: str, fmt_setting: str = "auto") -> str | None:
    """Why a local data path cannot be read as `fmt` (`_file_format`), before reading it; None when it can be
    tried. One answer for `rlft validate` (`check_sample`) and every reader (`read_source`)."""
    if not fmt:
        return (f"cannot tell the format from '{path.suffix}'; set data.format to csv, json, jsonl or datasets"
                if fmt_setting == "auto" else None)
    if path.is_dir():
        if fmt != "datasets":
            return f"is a folder; data.format: {fmt} reads one file"
        if not ((path / "state.json").is_file() and (path / "dataset_info.json").is_file()
                or (path / "dataset_dict.json").is_file()):
            return ("is a folder but not a dataset saved by datasets' save_to_disk (no state.json or "
                    "dataset_dict.json in it); give a CSV, JSON or JSONL file, or a saved dataset folder")
    elif fmt == "datasets":
        return "data.format: datasets reads a folder saved by save_to_disk; this is a file"
    return None


def _sample_text(path: Path, limit: int | None) -> tuple[str, bool]:
    """Decoded text of the first `limit` bytes (cut at a line end) and whether that is the whole file; a UTF-8 byte
    order mark is dropped, as the loaders drop it (a BOM'd header would read '\ufeffutterance')."""
    with path.open("rb") as f:
        raw = f.read(limit + 1) if limit else f.read()
    whole = not limit or len(raw) <= limit
    if not whole:
        raw = raw[: raw.rfind(b"\n", 0, limit) + 1] or raw[:limit]
    if raw.startswith(codecs.BOM_UTF8):
        raw = raw[len(codecs.BOM_UTF8):]
    try:
        return raw.decode("utf-8"), whole
    except UnicodeDecodeError as exc:
        line = raw.count(b"\n", 0, exc.start) + 1
        raise DataError(f"{path}: line {line}: not UTF-8 text (byte {exc.start}: {raw[exc.start:exc.start + 1]!r}); "
                        f"save the file as UTF-8") from None


def _csv_rows(text: str, whole: bool) -> tuple[list[str], list[dict[str, str]], str | None]:
    csv.field_size_limit(max(csv.field_size_limit(), len(text) + 1))  # the sample is bounded already
    reader = csv.reader(io.StringIO(text), strict=True)
    rows: list[list[str]] = []
    last = 0  # line number of the last complete record
    try:
        for row in reader:
            rows.append(row)
            last = reader.line_num
    except csv.Error as exc:
        if whole or "end of data" not in str(exc):
            return [], [], f"line {last + 1}: broken CSV quoting ({exc}); quote fields that hold " \
                f"commas, quotes or line breaks, and double quotes inside them"
    if not rows:
        return [], [], "no header row"
    header = rows[0]
    for n, row in enumerate(rows[1:], start=2):
        if len(row) > len(header):
            return header, [], f"row {n - 1} has {len(row)} fields, the header has {len(header)} (an unquoted comma " \
                f"or a broken quote?)"
    return header, [dict(zip(header, r)) for r in rows[1:] if r], None


def _json_rows(text: str, whole: bool, tail: str | None) -> tuple[list[str], list[dict[str, Any]], str | None]:
    if text.lstrip().startswith("["):
        if not whole:
            return [], [], None  # a large JSON array: checked when it is loaded
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            return [], [], f"line {exc.lineno}: not valid JSON ({exc.msg})"
        rows = [r for r in data if isinstance(r, dict)] if isinstance(data, list) else []
        if not isinstance(data, list) or len(rows) != len(data):
            return [], [], "expected a JSON array of objects (one per row)"
    else:
        rows = []
        lines = text.splitlines()
        for n, line in enumerate(lines, start=1):
            problem = _json_line(line)
            if problem:
                return [], [], f"line {n}: {problem}"
            if line.strip():
                rows.append(json.loads(line))
        if tail is not None:
            last = tail.splitlines()[-1] if tail.strip() else ""
            problem = _json_line(last)
            if problem:
                return [], [], f"last line: {problem} (a truncated file?)"
    header = list(dict.fromkeys(k for r in rows for k in r))
    return header, rows, None


def _json_line(line: str) -> str | None:
    if not line.strip():
        return None
    try:
        value = json.loads(line)
    except json.JSONDecodeError as exc:
        return f"not valid JSON ({exc.msg}, column {exc.colno}); one JSON object per line"
    return None if isinstance(value, dict) else f"expected a JSON object, got {type(value).__name__}"


def read_sample(path: Path, fmt: str, limit: int | None = SAMPLE_BYTES
                ) -> tuple[list[str], list[dict], bool, str | None]:
    """(columns, rows, whole file read, problem) from the first `limit` bytes of a CSV/JSON/JSONL file."""
    text, whole = _sample_text(path, limit)
    if fmt == "csv":
        header, rows, problem = _csv_rows(text, whole)
    else:
        tail = None
        if not whole:
            with path.open("rb") as f:
                f.seek(max(0, path.stat().st_size - TAIL_BYTES))
                tail = f.read().decode("utf-8", errors="replace")
        header, rows, problem = _json_rows(text, whole, tail)
    return header, rows, whole, problem


def diagnose_file(path: Path, fmt: str, limit: int | None) -> str | None:
    """The first problem in a file that failed to load (`line N: ...`), or None when none is found."""
    if fmt not in ("csv", "json", "jsonl") or not path.is_file():
        return None
    try:
        header, rows, whole, problem = read_sample(path, fmt, limit)
    except DataError as exc:
        return str(exc).split(": ", 1)[1]
    return problem or (no_rows(fmt, header) if whole and not rows else None)


def no_rows(fmt: str, header: list[str]) -> str:
    return f"no rows (only the header line {','.join(header)})" if fmt == "csv" and header else "no rows"


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
        fmt = _file_format(path, cfg.format)
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
    fmt = _file_format(path, cfg.format)
    problem = source_problem(path, fmt, cfg.format)
    if problem:
        raise DataError(f"{source}: {problem}")
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
    except Exception as exc:  # pyarrow/pandas parse errors: find the line ourselves, one line naming the file
        problem = diagnose_file(path, fmt, DIAGNOSE_BYTES)
        if problem:
            raise DataError(f"{source}: {problem}") from None
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


def prompt_keys(ds: Any, cfg: DataConfig) -> list[str]:
    """The user-facing prompt of each raw row, as text: the `prompt` column (preference data; chat messages as
    JSON), else `prompt_template` filled from the row (prompt data). Equal keys = the same prompt."""
    if "prompt" in ds.column_names:
        return [p if isinstance(p, str) else json.dumps(p, sort_keys=True) for p in ds["prompt"]]
    try:
        return [cfg.prompt_template.format(**row) for row in ds]
    except (KeyError, IndexError, ValueError) as exc:
        raise DataError(f"{cfg.source}: data.prompt_template: cannot fill it from the rows: {exc}") from None


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


def _template_texts(ds: Any, cfg: DataConfig) -> list[str]:
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
    texts = _template_texts(ds, cfg)
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
    train_idx, eval_idx = shift_split(_template_texts(ds, cfg), labels, shifted)
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
            train_idx, select_idx = grouped_split(_template_texts(train_ds, cfg),
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


def add_noisy_copies(ds: Any, cfg: DataConfig, seed: int) -> Any:
    """`data.augment_noise`: the training rows plus a noisy copy of each (`rlft.data.noise`), shuffled with `seed`.

    The copy rewrites the text of `data.prompt_template`'s fields except the label column and `policy` (context
    from data.policies, not the customer's words); every other column, the label included, is kept."""
    import datasets

    from rlft.data.noise import noisy_rows

    fields = [f for f in template_fields(cfg.prompt_template) if f not in (cfg.label_column, "policy")]
    copies = noisy_rows(ds.to_list(), fields, seed, cfg.augment_noise, cfg.augment_profanity)
    noisy_ds = datasets.Dataset.from_list(copies, features=ds.features)
    return datasets.concatenate_datasets([ds, noisy_ds]).shuffle(seed=seed)


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
            out.append(_prompt_rows(part, cfg, labels, source))
        else:
            out.append(_preference_rows(part, algorithm, cfg, labels, source, dropped))
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
