"""Persistent judge cache: one SQLite file, safe to share between processes (WAL mode), survives restarts.

The key is a SHA-256 of everything that decides the judge's answer: endpoint model, rendered messages (so the
template, guideline and graded sample), generation settings and the vote index. The API key is never part of it
and never stored. Only successful replies are cached: a timeout or an error is retried on the next run, never
frozen in. Stored per entry: the raw reply text and its token usage, so parsing changes apply to cached replies.

Not here: in-batch de-duplication of identical requests (that is `rlft.judge.judgment`, in memory).
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
import threading
import time
from pathlib import Path
from typing import Any

SCHEMA = """CREATE TABLE IF NOT EXISTS judgments (
    key TEXT PRIMARY KEY, reply TEXT NOT NULL, prompt_tokens INTEGER NOT NULL, completion_tokens INTEGER NOT NULL,
    created REAL NOT NULL)"""


def cache_key(payload: dict[str, Any]) -> str:
    """Stable hash of a JSON-able request description (sorted keys, no whitespace variance)."""
    blob = json.dumps(payload, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()


def _switch_to_wal(conn: sqlite3.Connection, attempts: int = 100) -> None:
    """PRAGMA journal_mode=WAL, retried: while another process is creating or converting the same new file, SQLite
    answers "database is locked" at once instead of waiting out the busy timeout."""
    for attempt in range(attempts):
        try:
            conn.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or attempt == attempts - 1:
                raise
            time.sleep(0.05)


class JudgeCache:
    """`get(key) -> (reply, prompt_tokens, completion_tokens) | None`, `put(key, reply, pt, ct)`."""

    def __init__(self, path: str | Path):
        self.path = Path(path).expanduser()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()  # one connection per cache object, used from TRL's loop thread and others
        self._conn = sqlite3.connect(str(self.path), timeout=30.0, check_same_thread=False, isolation_level=None)
        _switch_to_wal(self._conn)  # readers never block the writer; several processes share it
        self._conn.execute("PRAGMA synchronous=NORMAL")
        self._conn.execute("PRAGMA busy_timeout=30000")
        self._conn.execute(SCHEMA)

    def get(self, key: str) -> tuple[str, int, int] | None:
        with self._lock:
            row = self._conn.execute(
                "SELECT reply, prompt_tokens, completion_tokens FROM judgments WHERE key = ?", (key,)
            ).fetchone()
        return (row[0], int(row[1]), int(row[2])) if row else None

    def put(self, key: str, reply: str, prompt_tokens: int, completion_tokens: int) -> None:
        with self._lock:
            self._conn.execute(
                "INSERT OR REPLACE INTO judgments (key, reply, prompt_tokens, completion_tokens, created) "
                "VALUES (?, ?, ?, ?, ?)", (key, reply, int(prompt_tokens), int(completion_tokens), time.time())
            )

    def __len__(self) -> int:
        with self._lock:
            return int(self._conn.execute("SELECT COUNT(*) FROM judgments").fetchone()[0])

    def close(self) -> None:
        with self._lock:
            self._conn.close()

    def __repr__(self) -> str:
        return f"JudgeCache({str(self.path)!r})"

    def __getstate__(self) -> dict[str, Any]:  # picklable (TRL/accelerate may deep-copy rewards): reopen on load
        return {"path": str(self.path)}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(state["path"])
