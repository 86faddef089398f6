"""Append-only, resumable record of a labelling run: one JSON line per finished prompt.

A labelling run appends a record (completions, scores, rationales) as soon as a prompt is scored, flushing and
fsync-ing each line, so a killed run loses at most the prompt in flight. On restart the log is read back, a torn
last line (killed mid-write) is cut off, and the run continues after the last complete prompt without sampling or
scoring finished prompts again. `run.json` fingerprints what produced the records (model, adapter, sampling,
rewards, labelling thresholds excluded); resuming with different settings is refused instead of mixing two runs.

Not here: what goes into a record (`rlft.data.labeling.label`).
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from rlft.errors import UserError

RECORDS = "records.jsonl"
RUN = "run.json"


def dumps(obj: Any) -> str:
    """One canonical JSON line (stable key order as written, UTF-8 kept)."""
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":"))


def atomic_write(path: Path, text: str) -> None:
    """Write via a temp file and rename, so a killed run never leaves half a file under the final name."""
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


class RecordLog:
    """The records file of one output directory; `done` maps finished prompt keys to their records."""

    def __init__(self, out_dir: str | Path, run_info: dict[str, Any], keys: Sequence[str], overwrite: bool = False):
        self.dir = Path(out_dir)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.path = self.dir / RECORDS
        run_path = self.dir / RUN
        if overwrite:
            self.path.unlink(missing_ok=True)
            run_path.unlink(missing_ok=True)
        if run_path.is_file():
            previous = json.loads(run_path.read_text(encoding="utf-8"))
            if previous != run_info:
                changed = sorted(k for k in set(previous) | set(run_info) if previous.get(k) != run_info.get(k))
                raise UserError(f"{run_path}: this directory holds a labelling run with different settings "
                                f"({', '.join(changed)}); use another --out or pass --overwrite")
        elif self.path.exists() and self.path.stat().st_size:
            raise UserError(f"{self.path}: records without {RUN}; use another --out or pass --overwrite")
        else:
            atomic_write(run_path, json.dumps(run_info, indent=2, ensure_ascii=False) + "\n")
        self.records: list[dict[str, Any]] = self._read(keys)
        self.done = {r["key"] for r in self.records}

    def _read(self, keys: Sequence[str]) -> list[dict[str, Any]]:
        if not self.path.is_file():
            return []
        raw = self.path.read_bytes()
        good_end = raw.rfind(b"\n") + 1  # a torn last line (killed mid-write) is dropped and redone
        if good_end < len(raw):
            with open(self.path, "r+b") as f:
                f.truncate(good_end)
        records = [json.loads(line) for line in raw[:good_end].decode("utf-8").splitlines() if line]
        for i, rec in enumerate(records):
            if i >= len(keys) or rec.get("key") != keys[i]:
                raise UserError(f"{self.path}: line {i + 1} is for prompt {rec.get('key')!r} but the data now has "
                                f"{keys[i] if i < len(keys) else 'no such row'!r} there (the data or its split "
                                f"changed); use another --out or pass --overwrite")
        return records

    def append(self, record: dict[str, Any]) -> None:
        with open(self.path, "a", encoding="utf-8") as f:
            f.write(dumps(record) + "\n")
            f.flush()
            os.fsync(f.fileno())
        self.records.append(record)
        self.done.add(record["key"])
