"""`rlft label --split train|eval` labels the rows training trains on / holds out, whatever `data.holdout` is: the
split is made in one place (`rlft.data.holdout.held_out_split`). Before, labelling used a random row split even for
`holdout: grouped`, so `--split eval` of a Bitext recipe labelled rows the recipe had trained on."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

from rlft.data.labeling.sources import load_prompts
from rlft.data.loading import prepare
from rlft.data.holdout import recipe_select_fraction
from rlft.recipe.sections import DataConfig

BITEXT = Path(__file__).resolve().parents[1] / "benchmarks" / "data" / "bitext_grouped_train.csv"


@pytest.fixture(scope="module")
def source(tmp_path_factory):
    """600 Bitext rows (6 intents x 100, templated paraphrases: near-duplicate groups to keep together)."""
    with BITEXT.open(newline="") as f:
        rows = list(csv.DictReader(f))
    keep, seen = [], {}
    for row in rows:
        if seen.setdefault(row["intent"], 0) < 100 and len(seen) <= 6:
            seen[row["intent"]] += 1
            keep.append({"utterance": row["utterance"], "intent": row["intent"]})
    path = tmp_path_factory.mktemp("data") / "rows.csv"
    with path.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=["utterance", "intent"])
        writer.writeheader()
        writer.writerows(keep)
    assert len(keep) == 600
    return str(path)


def _user_texts(rows) -> list[str]:
    return sorted(r.prompt[-1]["content"] for r in rows)


@pytest.mark.parametrize("holdout", ["grouped", "random", "prompt"])
def test_label_splits_are_trainings(source, holdout):
    cfg = DataConfig(source=source, prompt_template="{utterance}", label_column="intent", holdout=holdout,
                     eval_fraction=0.2, system_prompt="Intents: {labels}")
    data = prepare(cfg, "grpo", seed=3)
    trained = sorted(p[-1]["content"] for p in data.train["prompt"])
    held = sorted(p[-1]["content"] for p in data.eval["prompt"])
    train_rows, _ = load_prompts(cfg, seed=3, split="train")
    eval_rows, _ = load_prompts(cfg, seed=3, split="eval")
    assert _user_texts(train_rows) == trained and _user_texts(eval_rows) == held
    assert len(held) + len(trained) == 600 and 0 < len(held) < 600


def test_a_grouped_split_differs_from_a_random_one(source):
    """What the old code did (a random row split) is not the grouped split: the test above would catch it."""
    grouped = DataConfig(source=source, prompt_template="{utterance}", label_column="intent", holdout="grouped",
                         eval_fraction=0.2)
    random_ = DataConfig(source=source, prompt_template="{utterance}", label_column="intent", eval_fraction=0.2)
    g, _ = load_prompts(grouped, seed=3, split="eval")
    r, _ = load_prompts(random_, seed=3, split="eval")
    assert _user_texts(g) != _user_texts(r)


@pytest.mark.parametrize("holdout", ["grouped", "random"])
def test_label_train_split_leaves_the_selection_rows_out(source, holdout):
    """With `evaluation.select_fraction` (and periodic evaluation) training holds back selection rows for keep_best;
    `--split train` must not label them either, or a labelled set would train on the rows the best adapter is
    chosen on."""
    cfg = DataConfig(source=source, prompt_template="{utterance}", label_column="intent", holdout=holdout,
                     eval_fraction=0.2, system_prompt="Intents: {labels}")
    data = prepare(cfg, "grpo", seed=3, select_fraction=0.25)
    trained = sorted(p[-1]["content"] for p in data.train["prompt"])
    selection = {p[-1]["content"] for p in data.select["prompt"]}
    rows, _ = load_prompts(cfg, seed=3, split="train", select_fraction=0.25, algorithm="grpo")
    assert _user_texts(rows) == trained and not selection & set(trained)
    assert len(trained) + len(selection) == len(load_prompts(cfg, seed=3, split="train")[0])


def test_which_recipes_hold_selection_rows_back():
    from rlft.recipe.sections import EvaluationConfig

    assert recipe_select_fraction(EvaluationConfig(every_steps=50, select_fraction=0.1), "label_pg") == 0.1
    assert recipe_select_fraction(EvaluationConfig(every_steps=0, select_fraction=0.1), "grpo") == 0.0
    assert recipe_select_fraction(EvaluationConfig(every_steps=50, select_fraction=0.1), "reward_model") == 0.0
