"""Held-out splits that keep near-duplicate utterances on one side (for templated data such as Bitext).

A random split of a templated intent dataset puts paraphrases of the same template on both sides, so a held-out
score measures template memory: TF-IDF + logistic regression scores ~1.00 on a random split of the Bitext CSV
and ~0.77 on unseen Bitext utterances. `grouped_split` clusters each label's utterances by lexical similarity and
holds out whole clusters instead of rows.

Similarity: cosine between word-set vectors weighted by *label IDF*, ``log(n_labels / n_labels_using_word)``.
Words every intent uses (the request frames "could you help me", "I want information about") weigh 0, so two
utterances are near-duplicates when they share the words that say *which* intent it is, whatever frame wraps
them. Clusters: union-find over the pairs of one label at or above ``threshold``. In templated data single links
chain: at a low threshold one cluster can swallow most of a label, leaving nothing the right size to hold out. A
label's threshold is therefore raised in steps of ``step`` until clusters other than its largest, each no bigger
than the held-out share, add up to that share; `SplitClusters.thresholds` records the value each label used. The
held-out side then holds each label's phrasings least like the rest of that label: a deliberately hard split.

`shift_split` (`data.shift_holdout`) holds out by distribution shift instead: the groups (at a fixed, higher
threshold) made mostly of rows that carry a mark, e.g. Bitext's colloquial / typo flags, so training sees mostly
unmarked text and evaluation the marked variants, with no group on both sides.

`near_duplicate_leakage` is the label-free check for reports: the share of held-out rows whose nearest training
row has a word-set Jaccard similarity at or above a threshold.

Pure Python + numpy (no torch, no scikit-learn). Cost: one ``n_label x n_label`` similarity matrix per label
(Bitext's 8,175 rows: well under a second). Not handled: cross-label near-duplicates (clusters never span labels;
an utterance that is near-identical to one of another label is a hard example, not leakage), non-text inputs.
"""

from __future__ import annotations

import math
import random
import re
from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

_WORD = re.compile(r"[a-z0-9']+")


def words(text: str) -> set[str]:
    """Lower-cased word set of an utterance (letters, digits, apostrophes)."""
    return set(_WORD.findall(str(text).lower()))


@dataclass
class SplitClusters:
    """Per-row cluster ids (a cluster never spans two labels) and the similarity threshold each label used."""

    cluster: list[int]
    thresholds: dict[str, float] = field(default_factory=dict)


def _label_idf_vectors(word_sets: Sequence[set[str]], labels: Sequence[str]) -> np.ndarray:
    used_by: dict[str, set[str]] = defaultdict(set)
    for ws, label in zip(word_sets, labels, strict=True):
        for w in ws:
            used_by[w].add(label)
    n_labels = len(set(labels))
    vocab = {w: i for i, w in enumerate(sorted(used_by))}
    weight = np.array([math.log(n_labels / len(used_by[w])) for w in vocab], dtype=np.float32)
    x = np.zeros((len(word_sets), len(vocab)), dtype=np.float32)
    for row, ws in enumerate(word_sets):
        x[row, [vocab[w] for w in ws]] = 1.0
    x *= weight
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return x / np.maximum(norms, 1e-12)


def _components(n: int, pairs_i: np.ndarray, pairs_j: np.ndarray) -> list[int]:
    """Union-find; every row's id is the smallest row index of its component (deterministic)."""
    parent = list(range(n))

    def find(a: int) -> int:
        while parent[a] != a:
            parent[a] = parent[parent[a]]
            a = parent[a]
        return a

    for a, b in zip(pairs_i.tolist(), pairs_j.tolist(), strict=True):
        ra, rb = find(a), find(b)
        if ra != rb:
            parent[max(ra, rb)] = min(ra, rb)
    return [find(a) for a in range(n)]


def _bounds(target: float, cap: float) -> tuple[float, float]:
    """A label's acceptable held-out row count: from 80 % of its share (1 row at least) to `cap` x its share."""
    return max(1.0, target - max(1.0, 0.2 * target)), max(cap * target, target + 1.0)


def _fillable(sizes: list[int], eval_fraction: float, cap: float) -> bool:
    """Can clusters other than the largest, each small enough to take whole, hold out ~eval_fraction of the rows?"""
    low, high = _bounds(eval_fraction * sum(sizes), cap)
    return sum(s for s in sorted(sizes)[:-1] if s <= high) >= low


def near_duplicate_clusters(texts: Sequence[str], labels: Sequence[str], threshold: float = 0.5,
                            eval_fraction: float | None = None, step: float = 0.05, cap: float = 1.2
                            ) -> SplitClusters:
    """Cluster each label's rows: union-find over label-IDF cosine >= the label's threshold (see module doc).

    With `eval_fraction`, a label's threshold starts at `threshold` and rises by `step` until clusters other than
    its largest, each no bigger than `cap` x the held-out share, add up to that share (or the threshold passes 1).
    """
    if len(texts) != len(labels):
        raise ValueError(f"texts and labels differ in length: {len(texts)} != {len(labels)}")
    word_sets = [words(t) for t in texts]
    x = _label_idf_vectors(word_sets, labels)
    by_label: dict[str, list[int]] = defaultdict(list)
    for i, label in enumerate(labels):
        by_label[label].append(i)
    cluster = [0] * len(texts)
    used: dict[str, float] = {}
    for label in sorted(by_label):
        idx = np.array(by_label[label])
        sim = x[idx] @ x[idx].T
        t = threshold
        while True:
            pi, pj = np.nonzero(np.triu(sim >= t - 1e-6, 1))
            local = _components(len(idx), pi, pj)
            if eval_fraction is None or t > 1.0 or _fillable(list(Counter(local).values()), eval_fraction, cap):
                break
            t = round(t + step, 6)
        used[label] = round(t, 4)
        for row, root in zip(idx.tolist(), local, strict=True):
            cluster[row] = int(idx[root])
    return SplitClusters(cluster, used)


GROUP_THRESHOLD = 0.4  # grouped_split's starting similarity: two rows of one label at or above it are one group
MAX_GROUPED_ROWS = 5000  # row_groups: a label with more rows is not clustered (an n x n matrix per label)


def row_groups(texts: Sequence[str], labels: Sequence[str] | None = None) -> list[int] | None:
    """A group key per row: rows of one label linked by similarity >= `GROUP_THRESHOLD` share one
    (`near_duplicate_clusters`), for intervals that resample whole groups (`rlft.report.metrics.bootstrap_ci`).
    The rows of a held-out cluster of a templated dataset pass or fail together, so a row-by-row bootstrap is too
    narrow: on the Bitext agent's 270 grouped held-out rows (42 groups) the intent interval of 0.878 is [0.837,
    0.915] row by row and [0.74, 0.98] by group. Without `labels` all rows are one label, whose label IDF weighs
    every word 0: no row joins another (the row bootstrap). None when a label has more than `MAX_GROUPED_ROWS` rows
    (not clustered: the caller keeps the row bootstrap)."""
    labels = [""] * len(texts) if labels is None else [str(v) for v in labels]
    if not texts or max(Counter(labels).values()) > MAX_GROUPED_ROWS:
        return None
    return near_duplicate_clusters(texts, labels, threshold=GROUP_THRESHOLD).cluster


def grouped_split(texts: Sequence[str], labels: Sequence[str], eval_fraction: float = 0.1, seed: int = 0,
                  threshold: float = GROUP_THRESHOLD, cap: float = 2.5) -> tuple[list[int], list[int]]:
    """Train and eval row indices (ascending) with whole near-duplicate clusters held out, stratified by label.

    For each label, its clusters are visited in a seeded order and taken for evaluation while the label's held-out
    count stays at most `cap` x ``eval_fraction`` of its rows (at least one row over), until it reaches 80 % of
    that share; when lumpy clusters leave it short, the cluster that brings it closest to the share is added. A
    cluster is never taken if it would empty the label's training side, so every label with 2+ clusters lands on
    both sides. A larger `cap` lets whole phrasing families be held out (a harder split, uneven per label).
    Deterministic for a given seed and input order.

    >>> texts = ["cancel my order", "please cancel my order", "track my parcel", "where is my parcel",
    ...          "refund my money", "give me my money back", "I want a refund", "cancel the purchase"]
    >>> labels = ["cancel", "cancel", "track", "track", "refund", "refund", "refund", "cancel"]
    >>> train, held_out = grouped_split(texts, labels, eval_fraction=0.3, seed=0)
    >>> sorted({labels[i] for i in held_out}) == sorted(set(labels)), len(train) + len(held_out)
    (True, 8)
    """
    if not 0.0 < eval_fraction < 1.0:
        raise ValueError(f"eval_fraction must be in (0, 1), got {eval_fraction}")
    if cap < 1.0:
        raise ValueError(f"cap must be >= 1, got {cap}")
    clusters = near_duplicate_clusters(texts, labels, threshold, eval_fraction, cap=cap)
    members: dict[int, list[int]] = defaultdict(list)
    for row, c in enumerate(clusters.cluster):
        members[c].append(row)
    label_clusters: dict[str, list[int]] = defaultdict(list)
    for c in sorted(members):
        label_clusters[labels[c]].append(c)
    rng = random.Random(seed)
    held: list[int] = []
    for label in sorted(label_clusters):
        order = list(label_clusters[label])
        n = sum(len(members[c]) for c in order)
        rng.shuffle(order)
        if len(order) < 2:  # one cluster (or one row): it cannot be on both sides, so it trains
            continue
        target = eval_fraction * n
        low, high = _bounds(target, cap)
        taken: list[int] = []
        got = 0
        for c in order:
            size = len(members[c])
            if got + size <= high and n - got - size > 0:
                taken.append(c)
                got += size
            if got >= low:
                break
        while got < low:  # lumpy clusters: add the one that brings the count closest to the share
            rest = [c for c in order if c not in taken and n - got - len(members[c]) > 0]
            best = min(rest, key=lambda c: (abs(got + len(members[c]) - target), c), default=None)
            if best is None or (taken and abs(got + len(members[best]) - target) >= abs(got - target)):
                break
            taken.append(best)
            got += len(members[best])
        for c in taken:
            held.extend(members[c])
    held_set = set(held)
    return [i for i in range(len(texts)) if i not in held_set], sorted(held_set)


def _binary_word_matrix(word_sets: Sequence[set[str]], vocab: dict[str, int]) -> np.ndarray:
    x = np.zeros((len(word_sets), len(vocab)), dtype=np.float32)
    for row, ws in enumerate(word_sets):
        cols = [vocab[w] for w in ws if w in vocab]
        x[row, cols] = 1.0
    return x


def nearest_train_similarity(train_texts: Sequence[str], eval_texts: Sequence[str], block: int = 1024) -> list[float]:
    """For each eval row, the highest word-set Jaccard similarity to any training row (label-free)."""
    if not train_texts:
        return [0.0] * len(eval_texts)
    train_sets = [words(t) for t in train_texts]
    eval_sets = [words(t) for t in eval_texts]
    vocab = {w: i for i, w in enumerate(sorted(set().union(*train_sets, *eval_sets)))}
    xt = _binary_word_matrix(train_sets, vocab)
    xe = _binary_word_matrix(eval_sets, vocab)
    st, se = xt.sum(axis=1), xe.sum(axis=1)
    out: list[float] = []
    for start in range(0, len(xe), block):
        inter = xe[start:start + block] @ xt.T
        union = se[start:start + block, None] + st[None, :] - inter
        jac = np.where(union > 0, inter / np.maximum(union, 1e-12), 1.0)  # two empty sets are identical
        out.extend(jac.max(axis=1).tolist())
    return out


def near_duplicate_leakage(train_texts: Sequence[str], eval_texts: Sequence[str], threshold: float = 0.8) -> float:
    """Share of eval rows with a near-duplicate in train: nearest training row's word-set Jaccard >= threshold.

    >>> near_duplicate_leakage(["how do I cancel my order"], ["how do I cancel my order?", "track my parcel"])
    0.5
    """
    if not eval_texts:
        return 0.0
    nearest = nearest_train_similarity(train_texts, eval_texts)
    return sum(s >= threshold - 1e-9 for s in nearest) / len(nearest)


SHIFT_THRESHOLD = 0.8  # label-IDF cosine that makes two utterances one group for `shift_split` (docs/data.md#shift)


def parse_shift(spec: str) -> tuple[str, str]:
    """`COLUMN:LETTERS` (e.g. ``flags:CQZ``) -> (column, letters); ValueError with what is expected otherwise."""
    column, sep, letters = str(spec).partition(":")
    letters = "".join(dict.fromkeys(letters.replace(" ", "")))
    if not sep or not column.strip() or not letters:
        raise ValueError(f"expected COLUMN:LETTERS, e.g. 'flags:CQZ' (a row is marked when its column holds any "
                         f"of the letters), got {spec!r}")
    return column.strip(), letters


def shift_split(texts: Sequence[str], labels: Sequence[str], shifted: Sequence[bool],
                threshold: float = SHIFT_THRESHOLD) -> tuple[list[int], list[int]]:
    """Train and eval row indices (ascending): near-duplicate groups made mostly of shifted rows are held out.

    Why: to measure what a model does on traffic unlike its training text (colloquial, typos, offensive), hold
    out the shifted variants and train on the rest, without a near-copy of a held-out utterance on the training
    side. Groups are formed first, blind to `shifted`: `near_duplicate_clusters` at a fixed `threshold` (single
    links chain at lower ones, so one cluster swallows most of a label and almost nothing would be held out). A
    group goes to evaluation when MORE than half of its rows are shifted, else it trains; rows of one group are
    never split. A label whose every group would be held out keeps the group with the fewest shifted rows (then
    the largest, then the first) for training. Shifted rows in mostly clean groups train. No seed: the split is
    a function of the data (callers shuffle each side).

    >>> texts = ["cancel my order", "cancel my order pls", "cncel ma order", "track my parcel", "trak ma parcel"]
    >>> labels = ["cancel", "cancel", "cancel", "track", "track"]
    >>> shift_split(texts, labels, [False, False, True, False, True])
    ([0, 1, 3], [2, 4])
    """
    if not len(texts) == len(labels) == len(shifted):
        raise ValueError(f"texts, labels and shifted differ in length: {len(texts)}, {len(labels)}, {len(shifted)}")
    clusters = near_duplicate_clusters(texts, labels, threshold).cluster
    members: dict[int, list[int]] = defaultdict(list)
    for row, c in enumerate(clusters):
        members[c].append(row)
    held: dict[str, list[int]] = defaultdict(list)  # label -> held-out groups
    groups_of: Counter = Counter()
    for c in sorted(members):
        groups_of[labels[c]] += 1
        if 2 * sum(bool(shifted[i]) for i in members[c]) > len(members[c]):
            held[labels[c]].append(c)
    eval_rows: list[int] = []
    for label, groups in held.items():
        if len(groups) == groups_of[label]:  # the label would vanish from training: one group stays
            keep = min(groups, key=lambda c: (sum(bool(shifted[i]) for i in members[c]), -len(members[c]), c))
            groups = [c for c in groups if c != keep]
        for c in groups:
            eval_rows.extend(members[c])
    held_set = set(eval_rows)
    return [i for i in range(len(texts)) if i not in held_set], sorted(held_set)
