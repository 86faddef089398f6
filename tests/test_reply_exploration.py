"""benchmarks/reply_exploration.py: which intents can GRPO still learn (counted exactly on fixed scores)."""

import pytest

from benchmarks.reply_exploration import per_label, pick_rows


def test_per_label_counts_pass_and_tied_groups_exactly():
    labels = ["a", "b", "a"]  # three prompts, two generations each, scores consecutive per prompt
    scores = [0.5, 0.5,   # a: tied (no GRPO signal), no pass
              1.0, 0.0,   # b: one pass, not tied
              1.0, 1.0]   # a: tied at the top
    per = per_label(labels, scores, generations=2)
    assert per["a"] == {"prompts": 2, "mean": 0.75, "pass": 0.5, "tied": 1.0}
    assert per["b"] == {"prompts": 1, "mean": 0.5, "pass": 0.5, "tied": 0.0}


def test_per_label_refuses_a_score_count_that_does_not_match():
    with pytest.raises(ValueError, match="expected 2 x 4 scores, got 7"):
        per_label(["a", "b"], [0.0] * 7, generations=4)


def test_pick_rows_takes_the_first_rows_of_each_label_in_data_order():
    rows = {"intent": ["x", "y", "x", "x", "z", "y", "y"]}
    assert pick_rows(rows, "intent", 2) == [0, 1, 2, 4, 5]
