"""Grouped held-out split: near-duplicates stay on one side, labels on both, leakage far below a random split."""

from __future__ import annotations

import csv
import random

import pytest

from rlft.data.splits import grouped_split, near_duplicate_clusters, near_duplicate_leakage, nearest_train_similarity
from tests.conftest import BITEXT

FRAMES = ["how do I {}", "I want to {}", "can you help me {}", "I need to {} today", "please {}",
          "what is the way to {}", "I would like to {}", "help me {} quickly"]
# intent -> phrasing families; a family's variants are near-duplicates of each other, families are not
FAMILIES = {
    "cancel_order": [["cancel my order", "cancel the order"], ["call off my purchase", "call off the purchase"],
                     ["scrap my basket", "scrap the basket"]],
    "track_order": [["track my parcel", "track the parcel"], ["locate my shipment", "locate the shipment"],
                    ["follow my package", "follow the package"]],
    "get_refund": [["get my money back", "get the money back"], ["claim a reimbursement", "claim my reimbursement"],
                   ["obtain a repayment", "obtain my repayment"]],
    "edit_account": [["edit my profile", "edit the profile"], ["modify my account details", "modify account details"],
                     ["update my user data", "update the user data"]],
}


def templated() -> tuple[list[str], list[str], list[tuple[str, int]]]:
    """Frames x family variants: 4 intents x 3 families x 2 variants x 8 frames = 192 rows, shuffled."""
    rows = [(frame.format(v), intent, (intent, k)) for intent, fams in FAMILIES.items()
            for k, fam in enumerate(fams) for v in fam for frame in FRAMES]
    random.Random(0).shuffle(rows)
    return [r[0] for r in rows], [r[1] for r in rows], [r[2] for r in rows]


def random_split(n: int, fraction: float, seed: int) -> tuple[list[int], list[int]]:
    idx = list(range(n))
    random.Random(seed).shuffle(idx)
    k = round(fraction * n)
    return sorted(idx[k:]), sorted(idx[:k])


def test_same_seed_same_split_and_seeds_differ():
    texts, labels, _ = templated()
    first = grouped_split(texts, labels, eval_fraction=0.3, seed=3)
    assert grouped_split(texts, labels, eval_fraction=0.3, seed=3) == first
    assert grouped_split(texts, labels, eval_fraction=0.3, seed=4) != first
    train, held = first
    assert sorted(train + held) == list(range(len(texts)))  # a partition: every row once
    assert train == sorted(train) and held == sorted(held)


def test_whole_families_are_held_out_and_labels_on_both_sides():
    texts, labels, family = templated()
    train, held = grouped_split(texts, labels, eval_fraction=0.3, seed=0)
    train_fams, held_fams = {family[i] for i in train}, {family[i] for i in held}
    assert not train_fams & held_fams  # a phrasing family never straddles the split
    assert {labels[i] for i in train} == {labels[i] for i in held} == set(FAMILIES)
    assert len(held) == 4 * 16  # one whole family (16 rows) per intent: 33 % of each label


def test_no_cluster_straddles_the_split():
    texts, labels, _ = templated()
    train, held = grouped_split(texts, labels, eval_fraction=0.3, seed=1, threshold=0.4, cap=2.5)
    clusters = near_duplicate_clusters(texts, labels, 0.4, eval_fraction=0.3, cap=2.5).cluster
    assert {clusters[i] for i in train}.isdisjoint({clusters[i] for i in held})


def test_grouped_leakage_far_below_a_random_split():
    texts, labels, _ = templated()
    train, held = grouped_split(texts, labels, eval_fraction=0.3, seed=0)
    r_train, r_held = random_split(len(texts), 0.33, seed=0)
    grouped = near_duplicate_leakage([texts[i] for i in train], [texts[i] for i in held], threshold=0.6)
    randomly = near_duplicate_leakage([texts[i] for i in r_train], [texts[i] for i in r_held], threshold=0.6)
    # random: 52 of 63 held-out rows have their other variant (same frame) or a close frame sibling in train;
    # grouped: only 4 of 64, a long shared frame ("I would like to ...") with another family's short phrase
    assert randomly == pytest.approx(52 / 63)
    assert grouped == pytest.approx(4 / 64)


def test_leakage_values():
    # Jaccard of {how,do,i,cancel,my,order} and {how,do,i,cancel,my,order}: 1.0; {track,my,parcel}: 1/8
    assert nearest_train_similarity(["how do I cancel my order"], ["How do I cancel my order?", "track my parcel"]) \
        == pytest.approx([1.0, 1 / 8])
    assert near_duplicate_leakage(["how do I cancel my order"], ["how do I cancel my order?", "track my parcel"]) \
        == 0.5
    assert near_duplicate_leakage(["a b c d"], ["a b c e"], threshold=0.6) == 1.0  # 3 shared of 5: 0.6
    assert near_duplicate_leakage(["a b c d"], ["a b c e"], threshold=0.61) == 0.0
    assert near_duplicate_leakage(["x"], []) == 0.0


def test_a_label_with_one_cluster_trains_and_others_still_split():
    texts, labels, _ = templated()
    texts, labels = texts + ["close my newsletter subscription"], labels + ["newsletter"]
    train, held = grouped_split(texts, labels, eval_fraction=0.3, seed=0)
    assert len(texts) - 1 in train
    assert {labels[i] for i in held} == set(FAMILIES)


@pytest.mark.parametrize("kwargs, message", [
    ({"eval_fraction": 0.0}, "eval_fraction must be in (0, 1), got 0.0"),
    ({"eval_fraction": 1.0}, "eval_fraction must be in (0, 1), got 1.0"),
    ({"cap": 0.5}, "cap must be >= 1, got 0.5"),
])
def test_bad_arguments(kwargs, message):
    texts, labels, _ = templated()
    with pytest.raises(ValueError) as err:
        grouped_split(texts, labels, **{"eval_fraction": 0.2, **kwargs})
    assert str(err.value) == message


def test_length_mismatch():
    with pytest.raises(ValueError) as err:
        near_duplicate_clusters(["a", "b"], ["x"])
    assert str(err.value) == "texts and labels differ in length: 2 != 1"


def test_bitext_grouped_split_cuts_near_duplicate_leakage():
    with open(BITEXT, newline="") as fh:
        rows = list(csv.DictReader(fh))
    texts, labels = [r["utterance"] for r in rows], [r["intent"] for r in rows]
    train, held = grouped_split(texts, labels, eval_fraction=0.1, seed=0)
    assert {labels[i] for i in train} == {labels[i] for i in held} and len(set(labels)) == 27
    assert 0.08 <= len(held) / len(texts) <= 0.2
    clusters = near_duplicate_clusters(texts, labels, 0.4, eval_fraction=0.1, cap=2.5).cluster
    assert {clusters[i] for i in train}.isdisjoint({clusters[i] for i in held})
    r_train, r_held = random_split(len(texts), len(held) / len(texts), seed=0)
    grouped = near_duplicate_leakage([texts[i] for i in train], [texts[i] for i in held])
    randomly = near_duplicate_leakage([texts[i] for i in r_train], [texts[i] for i in r_held])
    assert randomly > 0.4 and grouped < 0.1  # measured: ~0.51 and ~0.04 at word-set Jaccard >= 0.8


def test_committed_grouped_csvs_are_what_the_split_gives(tmp_path):
    from benchmarks.baselines import DATA_DIR, write_grouped_csvs

    written = write_grouped_csvs(BITEXT, tmp_path)
    for path in written:
        assert path.read_bytes() == (DATA_DIR / path.name).read_bytes(), f"regenerate {path.name}: " \
            "python benchmarks/baselines.py"
