"""Checks on KTO and DPO rows before they are written or trained on; every problem is an error or a counted drop.

KTO (`prompt, completion, label`):
- `label` must be a real boolean (not "true", not 1) -> error;
- both desirable and undesirable rows must exist -> error with `strict`, else reported as a problem;
- per-device batch size must be > 1 (KTO's KL term pairs each prompt with another row of the batch) -> error;
- empty completions and prompts that leave no room under `max_length` tokens -> dropped, counted.
DPO (`prompt, chosen, rejected`):
- identical chosen/rejected, an empty side, prompts that leave no room under `max_length` -> dropped, counted.

Not here: scoring, and the recipe-level checks of `rlft.recipe.validate`.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rlft.errors import DataError


@dataclass
class CheckReport:
    rows: int
    dropped: dict[str, int] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)


def _text(value: Any) -> str:
    if isinstance(value, list):
        return "".join(str(m.get("content", "")) for m in value if isinstance(m, dict))
    return "" if value is None else str(value)


def _prompt_too_long(rows: list[dict[str, Any]], max_length: int | None, tokenizer: Any) -> list[bool]:
    if not max_length or tokenizer is None or not rows:
        return [False] * len(rows)
    from rlft.data.labeling.sample import prompt_lengths

    cache: dict[str, bool] = {}
    out = []
    for r in rows:
        k = json.dumps(r["prompt"], sort_keys=True)
        if k not in cache:
            cache[k] = prompt_lengths(tokenizer, [r["prompt"]])[0] >= max_length
        out.append(cache[k])
    return out


def check_kto_rows(rows: list[dict[str, Any]], *, per_device_batch: int | None = None, max_length: int | None = None,
                   tokenizer: Any = None, strict: bool = True, where: str = "kto") -> tuple[list[dict], CheckReport]:
    """Kept rows and a report; raises `DataError` for what cannot be fixed by dropping rows."""
    if per_device_batch is not None and per_device_batch <= 1:
        raise DataError(f"{where}: per_device_train_batch_size must be > 1 for KTO, got {per_device_batch} (its KL "
                        f"reference term pairs each prompt with another completion of the batch)")
    for i, r in enumerate(rows):
        for col in ("prompt", "completion", "label"):
            if col not in r:
                raise DataError(f"{where}: row {i + 1}: missing '{col}' (KTO rows are prompt, completion, label)")
        if not isinstance(r["label"], bool):
            raise DataError(f"{where}: row {i + 1}: label must be true or false, got {r['label']!r}")
    dropped: Counter = Counter()
    too_long = _prompt_too_long(rows, max_length, tokenizer)
    kept = []
    for r, long_prompt in zip(rows, too_long, strict=True):
        if not _text(r["completion"]).strip():
            dropped["empty_completion"] += 1
        elif long_prompt:
            dropped["prompt_over_max_length"] += 1
        else:
            kept.append(r)
    report = CheckReport(len(kept), dict(sorted(dropped.items())))
    classes = {r["label"] for r in kept}
    if len(classes) < 2:
        which = "no rows" if not classes else f"only {'desirable' if True in classes else 'undesirable'} rows"
        message = f"{where}: KTO needs both desirable (true) and undesirable (false) rows; there are {which}"
        if strict:
            raise DataError(message)
        report.problems.append(message)
    return kept, report


def check_dpo_rows(rows: list[dict[str, Any]], *, max_length: int | None = None, tokenizer: Any = None,
                   where: str = "dpo") -> tuple[list[dict], CheckReport]:
    """Kept pairs and a report of what was dropped and why."""
    for i, r in enumerate(rows):
        for col in ("prompt", "chosen", "rejected"):
            if col not in r:
                raise DataError(f"{where}: row {i + 1}: missing '{col}' (DPO rows are prompt, chosen, rejected)")
    dropped: Counter = Counter()
    too_long = _prompt_too_long(rows, max_length, tokenizer)
    kept = []
    for r, long_prompt in zip(rows, too_long, strict=True):
        chosen, rejected = _text(r["chosen"]).strip(), _text(r["rejected"]).strip()
        if not chosen or not rejected:
            dropped["empty_completion"] += 1
        elif chosen == rejected:
            dropped["identical"] += 1
        elif long_prompt:
            dropped["prompt_over_max_length"] += 1
        else:
            kept.append(r)
    return kept, CheckReport(len(kept), dict(sorted(dropped.items())))


def read_jsonl(path: str | Path) -> list[dict[str, Any]]:
    rows = []
    with open(path, encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            if line.strip():
                try:
                    rows.append(json.loads(line))
                except json.JSONDecodeError as exc:
                    raise DataError(f"{path}: line {n}: not valid JSON ({exc.msg})") from None
    return rows


def validate_file(path: str | Path, kind: str, *, per_device_batch: int | None = None, max_length: int | None = None,
                  tokenizer: Any = None) -> CheckReport:
    """Check a written `kto` or `dpo` JSONL file strictly; returns what would be dropped."""
    rows = read_jsonl(path)
    if kind == "kto":
        return check_kto_rows(rows, per_device_batch=per_device_batch, max_length=max_length, tokenizer=tokenizer,
                              where=str(path))[1]
    if kind == "dpo":
        return check_dpo_rows(rows, max_length=max_length, tokenizer=tokenizer, where=str(path))[1]
    raise DataError(f"{path}: kind must be 'kto' or 'dpo', got {kind!r}")
