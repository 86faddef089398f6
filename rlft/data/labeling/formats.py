"""Exports of labelled sets to the formats other pipelines use.

- UBIAI (KTO): `system_prompt, input, output, rating` with rating `Accurate` / `Inaccurate`. `input` is the
  conversation as text: the customer's message for a single-turn prompt, else one `Customer:` / `Agent:` line per
  turn, ending with the customer's unanswered message.
- Tinker (pairwise): `prompt, response_a, response_b, winner` (`a` or `b`) plus `system_prompt` and `tags` (the
  source columns). Which side holds the chosen response is a stable hash of the prompt key, so the export carries
  no position bias and re-exporting gives the same file.

Both keep the labelling metadata in `meta`. `rlft.data.loading` reads both formats back for training.
Not here: reading.
"""

from __future__ import annotations

import hashlib
from typing import Any

ROLE_NAMES = {"user": "Customer", "assistant": "Agent"}
OUTPUT_COLUMNS = ("prompt", "completion", "label", "chosen", "rejected", "meta")


def system_text(messages: list[dict[str, str]]) -> str:
    return "\n".join(m["content"] for m in messages if m["role"] == "system")


def transcript(messages: list[dict[str, str]]) -> str:
    """The non-system turns as text; a lone user message is returned as is."""
    turns = [m for m in messages if m["role"] != "system"]
    if len(turns) == 1 and turns[0]["role"] == "user":
        return turns[0]["content"]
    return "\n".join(f"{ROLE_NAMES.get(m['role'], m['role'].capitalize())}: {m['content']}" for m in turns)


def _source_columns(row: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in row.items() if k not in OUTPUT_COLUMNS}


def to_ubiai(kto_rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """KTO rows -> UBIAI rows (`system_prompt, input, output, rating`, source columns, `meta`)."""
    return [{"system_prompt": system_text(r["prompt"]), "input": transcript(r["prompt"]), "output": r["completion"],
             "rating": "Accurate" if r["label"] else "Inaccurate", **_source_columns(r), "meta": r.get("meta", {})}
            for r in kto_rows]


def chosen_side(key: str) -> str:
    return "a" if hashlib.sha256(key.encode()).digest()[0] % 2 == 0 else "b"


def to_tinker(dpo_rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """DPO rows -> Tinker pairwise rows (`prompt, response_a, response_b, winner`, `system_prompt`, `tags`)."""
    out = []
    for r in dpo_rows:
        side = chosen_side(r.get("meta", {}).get("key", transcript(r["prompt"])))
        a, b = (r["chosen"], r["rejected"]) if side == "a" else (r["rejected"], r["chosen"])
        out.append({"prompt": transcript(r["prompt"]), "response_a": a, "response_b": b, "winner": side,
                    "system_prompt": system_text(r["prompt"]), "tags": _source_columns(r), "meta": r.get("meta", {})})
    return out
