"""`rlft eval`'s intervals resample whole groups of near-duplicate rows: the rows of a templated held-out cluster
pass or fail together, so a row-by-row bootstrap is too narrow (Bitext's 270 grouped held-out rows are 42 groups:
0.878 [0.837, 0.915] row by row, [0.74, 0.98] by group)."""

from __future__ import annotations

import json

import pytest

from rlft.data.splits import row_groups
from rlft.evaluation.eval_models import ModelRef, evaluate_models
from rlft.recipe.load import load_recipe
from rlft.report import metrics

PARAPHRASES = {
    "cancel_order": ["please cancel my order", "cancel my order please", "I want to cancel my order",
                     "can you cancel my order"],
    "track_order": ["where is my parcel", "where is my parcel now", "tell me where my parcel is",
                    "where is the parcel"],
    "get_refund": ["I want my money back", "give me my money back", "my money back please", "money back now"],
}


def test_row_groups_link_near_duplicates_of_one_label_only():
    texts = ["cancel my order please", "please cancel my order", "where is my parcel", "where is my parcel now",
             "cancel my order please"]
    labels = ["cancel_order", "cancel_order", "track_order", "track_order", "get_refund"]
    g = row_groups(texts, labels)
    assert g[0] == g[1] and g[2] == g[3] and g[0] != g[2]
    assert g[4] != g[0]  # the same words under another label: never one group (groups never span labels)
    assert len(set(row_groups(["alpha beta", "alpha beta"]))) == 2  # no labels: label IDF is 0, no groups


def test_row_groups_gives_up_on_a_label_too_large_to_cluster(monkeypatch):
    import rlft.data.splits as splits

    monkeypatch.setattr(splits, "MAX_GROUPED_ROWS", 3)
    assert splits.row_groups(["a", "b", "c", "d"], ["x"] * 4) is None
    assert splits.row_groups(["a", "b", "c"], ["x"] * 3) is not None


@pytest.fixture(scope="module")
def report(tmp_path_factory, tiny_model_dir):
    root = tmp_path_factory.mktemp("groups")
    data = root / "eval.csv"
    data.write_text("utterance,intent\n" + "".join(f"{u},{i}\n" for i, us in PARAPHRASES.items() for u in us))
    recipe_path = root / "recipe.yaml"
    recipe_path.write_text(f"""
model: {{name: {tiny_model_dir}}}
data:
  source: {data}
  system_prompt: "Classify the message. Allowed intents: {{labels}}."
rewards:
  - name: intent
decoding: {{prefill: "<intent>", constrain_labels: true}}
evaluation: {{max_new_tokens: 8, batch_size: 4}}
""")
    out = root / "report"
    evaluate_models([ModelRef("base", "base")], load_recipe(recipe_path), out, data_file=str(data))
    return out


def test_the_report_intervals_resample_the_groups_of_its_rows(report):
    data = json.loads((report / "report.json").read_text())
    texts = [u for us in PARAPHRASES.values() for u in us]
    gold = [i for i, us in PARAPHRASES.items() for _ in us]
    groups = row_groups(texts, gold)
    assert len(set(groups)) == 3  # one group of four paraphrases per intent
    traces = [json.loads(line) for line in (report / "traces.jsonl").read_text().splitlines()]
    right = [t["scores"]["intent"]["value"] for t in sorted(traces, key=lambda t: t["metadata"]["row"])]
    headline = data["models"][0]["headline"]
    assert headline["intent_accuracy"] == pytest.approx(sum(right) / 12)
    assert headline["intent_accuracy_ci"] == list(metrics.bootstrap_ci(right, groups=groups, n_resamples=1000,
                                                                       seed=0))
    assert data["settings"]["bootstrap"] == ("percentile, 1000 resamples of the 3 groups of near-duplicate rows "
                                             "among the 12 (a group's rows together), seed 0")
    assert "95% bootstrap intervals: percentile, 1000 resamples of the 3 groups" in (report / "report.md").read_text()


def test_paired_differences_on_the_same_rows():
    """Each model after the first against the first, per row, over the rows where both outcomes are known; the
    interval resamples whole groups when given."""
    from rlft.report.headline import paired_differences, row_outcomes

    gold = ["a", "a", "b", "b", "c", "c"]
    base = row_outcomes(["a", "b", "b", "a", "c", "c"], gold, [1.0, 1.0, 0.0, 1.0, None, 1.0])
    tuned = row_outcomes(["a", "a", "b", "b", "c", "a"], gold, [1.0, 1.0, 1.0, 1.0, 1.0, 1.0])
    assert base["intent_accuracy"] == [1.0, 0.0, 1.0, 0.0, 1.0, 1.0]
    assert base["system_accuracy"] == [1.0, 0.0, 0.0, 0.0, None, 1.0]  # right intent, abstained verdict: unknown
    groups = [0, 0, 1, 1, 2, 2]
    rows = {d["metric"]: d for d in paired_differences([("base", base), ("tuned", tuned)], groups)}
    assert rows["intent_accuracy"]["difference"] == pytest.approx((0 + 1 + 0 + 1 + 0 - 1) / 6)
    assert rows["system_accuracy"]["rows"] == 5  # the unknown row is left out of the pair
    assert rows["system_accuracy"]["difference"] == pytest.approx((0 + 1 + 1 + 1 - 1) / 5)
    diffs = [0.0, 1.0, 0.0, 1.0, 0.0, -1.0]
    assert rows["intent_accuracy"]["ci"] == metrics.bootstrap_ci(diffs, groups=groups, n_resamples=1000, seed=0)
    assert {d["model"] for d in rows.values()} == {"tuned"} and rows["intent_accuracy"]["against"] == "base"
    assert paired_differences([("base", base)]) == []


def test_a_two_model_report_carries_the_paired_difference(report):
    data = json.loads((report / "report.json").read_text())
    assert "paired" not in data  # one model: nothing to pair
