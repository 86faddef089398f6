"""Data files in: read a source (CSV, JSON, JSON lines, a saved `datasets` folder, `hf:`, the demo sources) into one
`datasets.Dataset` with the recipe's column names; and, for `rlft validate` and for a file that fails to load, read a
bounded sample of it and name the line that is wrong.

Every problem is a one-line `DataError` naming the file (and the line or row). Not here: which columns a recipe
needs (`rlft.data.checks`), splits (`rlft.data.holdout`), row shaping (`rlft.data.shapes`).
"""

from __future__ import annotations

import codecs
import csv
import io
import json
from pathlib import Path
from typing import Any

from rlft.data.demo import DEMO_SOURCES
from rlft.errors import DataError
from rlft.recipe.sections import DataConfig


SAMPLE_BYTES = 1_000_000  # what `rlft validate` reads of each data file (plus the last TAIL_BYTES of JSON lines)


TAIL_BYTES = 65_536


DIAGNOSE_BYTES = 200_000_000  # when a file fails to load, how much is scanned to name the bad line


def file_format(path: Path, fmt: str) -> str:
    if fmt != "auto":
        return fmt
    return "datasets" if path.is_dir() else {".csv": "csv", ".json": "json", ".jsonl": "jsonl"}.get(
        path.suffix.lower(), "")


def source_problem(path: Path, fmt: str, fmt_setting: str = "auto") -> str | None:
    """Why a local data path cannot be read as `fmt` (`file_format`), before reading it; None when it can be
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
    fmt = file_format(path, cfg.format)
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
