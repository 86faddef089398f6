"""`rlft.data.noise` and `data.augment_noise`: seeded, label-keeping noise on training rows only."""

import json
import re

import pytest

from rlft.recipe.sections import DataConfig, Recipe
from rlft.data.checks import check_sample
from rlft.data.loading import prepare
from rlft.errors import RecipeError
from rlft.data.noise import PROFANITY, noisy, noisy_rows

TEXTS = ["I am trying to cancel the order I made yesterday, can you please help me?",
         "I want information about your refund policy.",
         "where is my parcel {{Order Number}} shipped on 12/03",
         "help"]


def test_same_seed_same_text_other_seed_other_text():
    for text in TEXTS[:3]:
        assert noisy(text, 7, 0.4) == noisy(text, 7, 0.4)
        assert noisy(text, "7", 0.4) == noisy(text, 7, 0.4)  # the seed is read as text
    outputs = {noisy(TEXTS[0], seed, 0.4) for seed in range(10)}
    assert len(outputs) == 10 and TEXTS[0] not in outputs
    assert noisy(TEXTS[0], 1, 0.4) != noisy(TEXTS[0], 2, 0.4)


def test_rate_zero_is_the_identity_and_bad_rates_raise():
    for text in [*TEXTS, "", "   "]:
        assert noisy(text, 3, 0.0) == text
    for bad in (-0.1, 1.5):
        with pytest.raises(ValueError, match="rate"):
            noisy("x", 0, bad)


def test_placeholders_and_numbers_survive_and_rules_fire():
    for seed in range(30):
        out = noisy(TEXTS[2], seed, 1.0, profanity=True)
        assert "{{Order Number}}" in out and "12/03" in out
    out = noisy(TEXTS[1], 3, 1.0)
    assert " u" in out or " ur " in out or "info" in out  # an abbreviation fired
    assert not any(w in noisy(t, s, 1.0).split() for t in TEXTS for s in range(20) for w in PROFANITY)
    assert any(w in noisy(TEXTS[0], s, 0.5, profanity=True).split() for s in range(20) for w in PROFANITY)


def test_noisy_rows_keep_every_column_but_the_text():
    rows = [{"utterance": t, "intent": f"i{k}", "flags": "B", "n": k} for k, t in enumerate(TEXTS)]
    copies = noisy_rows(rows, ["utterance"], seed=0, rate=0.5)
    assert copies == noisy_rows(rows, ["utterance"], seed=0, rate=0.5)
    for row, copy in zip(rows, copies, strict=True):
        kept = {k: v for k, v in copy.items() if k != "utterance"}
        assert kept == {k: v for k, v in row.items() if k != "utterance"}
    assert sum(c["utterance"] != r["utterance"] for r, c in zip(rows, copies, strict=True)) >= 3
    assert rows[0]["utterance"] == TEXTS[0]  # the input rows are not changed


def _rows(tmp_path):
    path = tmp_path / "d.jsonl"
    rows = [{"utterance": f"please can you cancel order number {i} for me", "intent": "cancel_order", "flags": "B"}
            if i % 2 else {"utterance": f"where is my parcel {i}, I want to track it", "intent": "track_order",
                           "flags": "BQ"} for i in range(40)]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_augment_noise_copies_training_rows_only_and_keeps_labels(tmp_path):
    plain_cfg = DataConfig(source=str(_rows(tmp_path)), eval_fraction=0.25)
    plain = prepare(plain_cfg, "grpo", seed=0)
    noisy_cfg = DataConfig(source=plain_cfg.source, eval_fraction=0.25, augment_noise=0.3)
    data = prepare(noisy_cfg, "grpo", seed=0)
    assert data.eval.to_list() == plain.eval.to_list()  # evaluation rows untouched
    assert len(data.train) == 2 * len(plain.train) == 60
    originals = {r["utterance"]: r for r in plain.train}
    added = [r for r in data.train if r["utterance"] not in originals]
    assert len(added) >= 25  # nearly every copy differs from its original
    by_number = {re.search(r"\d+", u).group(): r for u, r in originals.items()}  # numbers are never noised
    for row in added:  # label and other columns kept; the prompt is built from the noisy text
        source = by_number[re.search(r"\d+", row["utterance"]).group()]
        assert (row["intent"], row["flags"]) == (source["intent"], source["flags"])
        assert row["prompt"][-1]["content"] == row["utterance"]
    assert prepare(noisy_cfg, "grpo", seed=0).train.to_list() == data.train.to_list()
    assert prepare(noisy_cfg, "grpo", seed=1).train["utterance"] != data.train["utterance"]


@pytest.mark.parametrize("algorithm, rate, message", [
    ("grpo", 1.5, "data.augment_noise: expected a rate in \\[0, 1\\]"),
    ("dpo", 0.2, "data.augment_noise: noisy copies are made of prompt rows"),
])
def test_bad_augment_noise_is_one_line(algorithm, rate, message):
    recipe = Recipe(algorithm=algorithm, data=DataConfig(augment_noise=rate))
    with pytest.raises(RecipeError, match=message):
        check_sample(recipe, lambda r, k: "r.yaml")
