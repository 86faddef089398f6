"""De-duplication of generated conversations: exact (after normalising) and near duplicates (word shingles).

Normalising lower-cases, collapses whitespace and masks digits, so two conversations that differ only in an order
number or a date count as the same scenario. Near duplicates are pairs whose word 3-shingle Jaccard similarity is
at least `threshold`; the first one generated is kept. Quadratic in the number of conversations, which is fine for
the hundreds the pipeline targets. Not here: semantic (embedding) similarity.
"""

from __future__ import annotations

from collections.abc import Sequence

import regex


def normalize(text: str) -> str:
    return regex.sub(r"\s+", " ", regex.sub(r"\d", "0", text.lower())).strip()


def shingles(text: str, k: int = 3) -> frozenset[tuple[str, ...]]:
    words = regex.findall(r"\w+", normalize(text))
    if len(words) < k:
        return frozenset([tuple(words)])
    return frozenset(tuple(words[i:i + k]) for i in range(len(words) - k + 1))


def jaccard(a: frozenset, b: frozenset) -> float:
    return len(a & b) / len(a | b) if a or b else 1.0


def dedup_indices(texts: Sequence[str], threshold: float = 0.9) -> tuple[list[int], dict[str, int]]:
    """Indices to keep (first occurrence wins) and counts of exact / near duplicates removed."""
    seen: set[str] = set()
    kept: list[int] = []
    kept_shingles: list[frozenset] = []
    counts = {"exact": 0, "near": 0}
    for i, text in enumerate(texts):
        norm = normalize(text)
        if norm in seen:
            counts["exact"] += 1
            continue
        sh = shingles(text)
        if threshold < 1.0 and any(jaccard(sh, other) >= threshold for other in kept_shingles):
            counts["near"] += 1
            continue
        seen.add(norm)
        kept.append(i)
        kept_shingles.append(sh)
    return kept, counts
