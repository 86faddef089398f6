"""`data.shift_holdout`: near-duplicate groups made mostly of marked rows are held out, whole, and nothing else."""

import csv
from collections import defaultdict

import pytest

from rlft.recipe.sections import DataConfig, Recipe
from rlft.data.checks import check_sample
from rlft.data.loading import prepare
from rlft.errors import DataError, RecipeError
from rlft.data.splits import SHIFT_THRESHOLD, near_duplicate_clusters, parse_shift, shift_split
from tests.conftest import BITEXT

# (group, utterance, intent, flags). "please" is in every label, so it weighs 0 and each group's rows are identical
# to the similarity; groups share no other word, so they never merge.
FRAME = [("G1", "cancel order", "cancel", "BQ"), ("G1", "please cancel order", "cancel", "BZ"),
         ("G1", "cancel order please", "cancel", "B"),                       # 2 of 3 marked: held out
         ("G2", "stop purchase", "cancel", "BQ"), ("G2", "please stop purchase", "cancel", "BL"),  # 1 of 2: trains
         ("G3", "abort buy", "cancel", "BCZ"),                                # a marked singleton: held out
         ("G4", "kill transaction", "cancel", "B"), ("G4", "kill transaction please", "cancel", "BP"),
         ("T1", "track parcel", "track", "BQ"), ("T1", "please track parcel", "track", "BQ"),
         ("T1", "track parcel please", "track", "BZ"),                        # all marked: held out
         ("T2", "where shipment", "track", "B"), ("T2", "where shipment please", "track", "BI"),
         ("R1", "refund money", "refund", "BQ"), ("R1", "please refund money", "refund", "BZ"),
         ("R2", "return cash please", "refund", "BQ")]  # every refund group is marked: R2 (fewest marked) trains
HELD = {"G1", "G3", "T1", "R1"}


def _write(tmp_path):
    path = tmp_path / "frame.csv"
    with path.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["flags", "utterance", "intent", "group"])
        w.writerows([flags, text, intent, group] for group, text, intent, flags in FRAME)
    return path


def _marked(flags, letters="QZ"):
    return [any(ch in f for ch in letters) for f in flags]


def test_shift_split_exact_on_a_small_frame():
    texts, labels = [r[1] for r in FRAME], [r[2] for r in FRAME]
    train, held = shift_split(texts, labels, _marked([r[3] for r in FRAME]))
    assert held == [i for i, r in enumerate(FRAME) if r[0] in HELD]
    assert train == [i for i, r in enumerate(FRAME) if r[0] not in HELD]
    assert (len(train), len(held)) == (7, 9)


def test_prepare_holds_out_the_marked_groups_and_keeps_the_columns(tmp_path):
    cfg = DataConfig(source=str(_write(tmp_path)), holdout="grouped", shift_holdout="flags:QZ")
    data = prepare(cfg, "grpo", seed=0)
    assert sorted(data.eval["utterance"]) == sorted(r[1] for r in FRAME if r[0] in HELD)
    assert sorted(data.train["utterance"]) == sorted(r[1] for r in FRAME if r[0] not in HELD)
    assert {"flags", "group", "intent", "prompt"} <= set(data.eval.column_names)
    assert not set(data.train["group"]) & set(data.eval["group"])
    again, other = prepare(cfg, "grpo", seed=0), prepare(cfg, "grpo", seed=1)
    assert again.eval["utterance"] == data.eval["utterance"] and again.train["utterance"] == data.train["utterance"]
    assert sorted(other.eval["utterance"]) == sorted(data.eval["utterance"])  # the seed only orders each side
    # eval_fraction plays no part; the letters are a set, in any order
    wide = prepare(DataConfig(source=cfg.source, holdout="grouped", shift_holdout="flags:ZQQ", eval_fraction=0.5),
                   "grpo", seed=0)
    assert sorted(wide.eval["utterance"]) == sorted(data.eval["utterance"])


def test_bitext_shift_split_keeps_groups_whole_and_holds_out_only_marked_groups():
    with BITEXT.open() as f:
        rows = list(csv.DictReader(f))
    texts, labels = [r["utterance"] for r in rows], [r["intent"] for r in rows]
    marked = _marked([r["flags"] for r in rows], "CQZ")
    train, held = shift_split(texts, labels, marked)
    assert (train, held) == shift_split(texts, labels, marked)  # a function of the data
    assert sorted(train + held) == list(range(len(rows)))
    side = {i: "eval" for i in held} | {i: "train" for i in train}
    groups = defaultdict(list)
    for i, c in enumerate(near_duplicate_clusters(texts, labels, SHIFT_THRESHOLD).cluster):
        groups[c].append(i)
    for members in groups.values():
        assert len({side[i] for i in members}) == 1  # no near-duplicate group on both sides
        if side[members[0]] == "eval":
            assert 2 * sum(marked[i] for i in members) > len(members)  # every held-out group is mostly marked
    assert set(labels) == {labels[i] for i in train}  # every intent still trains
    held_marked, train_marked = sum(marked[i] for i in held), sum(marked[i] for i in train)
    assert (len(held), held_marked, train_marked) == (787, 657, 427)  # docs/data.md#shift quotes these


def test_parse_shift():
    assert parse_shift("flags:CQZ") == ("flags", "CQZ")
    assert parse_shift(" flags : Q Z Q") == ("flags", "QZ")
    for bad in ("flags", "flags:", ":CQZ", ""):
        with pytest.raises(ValueError, match="COLUMN:LETTERS"):
            parse_shift(bad)


def _where(recipe, key):
    return "r.yaml"


@pytest.mark.parametrize("data, message", [
    ({"holdout": "grouped", "shift_holdout": "flags:"}, "data.shift_holdout: expected COLUMN:LETTERS"),
    ({"holdout": "grouped", "shift_holdout": "CQZ"}, "data.shift_holdout: expected COLUMN:LETTERS"),
    ({"holdout": "random", "shift_holdout": "flags:CQZ"}, "needs data.holdout: grouped, got random"),
    ({"holdout": "grouped", "shift_holdout": "flags:CQZ", "eval_source": "x.csv"}, "data.eval_source is set"),
    ({"holdout": "grouped", "shift_holdout": "flag:CQZ"}, "data.shift_holdout: column 'flag' not found"),
])
def test_bad_shift_holdout_is_one_line(tmp_path, data, message):
    recipe = Recipe(data=DataConfig(source=str(_write(tmp_path)), **data))
    with pytest.raises((RecipeError, DataError), match=message) as err:
        check_sample(recipe, _where)
    assert "\n" not in str(err.value)


def test_prepare_refuses_a_frame_with_no_marked_row(tmp_path):
    cfg = DataConfig(source=str(_write(tmp_path)), holdout="grouped", shift_holdout="flags:W")
    with pytest.raises(DataError, match="no row's 'flags' holds any of 'W'"):
        prepare(cfg, "grpo", seed=0)
