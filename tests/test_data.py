"""Data: formats, column mapping, deterministic splits, preference-format normalisation, and one-line errors."""

import json

import pytest

from rlft.recipe.sections import DataConfig
from rlft.data.loading import prepare
from rlft.errors import DataError
from tests.conftest import BITEXT

ROWS = [{"text": f"where is my order {i}", "label": "track_order" if i % 2 else "cancel_order"} for i in range(20)]


def _write(tmp_path, fmt):
    path = tmp_path / f"d.{fmt}"
    if fmt == "csv":
        path.write_text("text,label\n" + "".join(f"{r['text']},{r['label']}\n" for r in ROWS))
    elif fmt == "jsonl":
        path.write_text("".join(json.dumps(r) + "\n" for r in ROWS))
    elif fmt == "json":
        path.write_text(json.dumps(ROWS))
    return path


@pytest.mark.parametrize("fmt", ["csv", "json", "jsonl", "datasets"])
def test_formats_and_column_mapping(tmp_path, fmt):
    if fmt == "datasets":
        import datasets

        path = tmp_path / "saved"
        datasets.DatasetDict({"train": datasets.Dataset.from_list(ROWS)}).save_to_disk(str(path))
    else:
        path = _write(tmp_path, fmt)
    cfg = DataConfig(source=str(path), columns={"utterance": "text", "intent": "label"}, system_prompt="Pick: {labels}",
                     eval_fraction=0.25)
    data = prepare(cfg, "grpo", seed=1)
    assert len(data.train) == 15 and len(data.eval) == 5
    assert data.labels == ["cancel_order", "track_order"]
    prompt = data.train[0]["prompt"]
    assert prompt[0] == {"role": "system", "content": "Pick: cancel_order, track_order"}
    assert prompt[1]["role"] == "user" and prompt[1]["content"].startswith("where is my order")
    assert "intent" in data.train.column_names


def test_split_is_deterministic_per_seed(tmp_path):
    cfg = DataConfig(source=str(_write(tmp_path, "jsonl")), columns={"utterance": "text", "intent": "label"})
    a, b, c = (prepare(cfg, "grpo", seed=s).eval["utterance"] for s in (3, 3, 4))
    assert a == b and a != c


def test_bitext_csv_reads_with_its_own_columns():
    cfg = DataConfig(source=str(BITEXT), eval_fraction=0.05, max_train_samples=100)
    data = prepare(cfg, "grpo", seed=0)
    assert len(data.labels) == 27 and len(data.train) == 100 and len(data.eval) == 409


def test_pairwise_winner_format_becomes_dpo_pairs_and_ties_are_counted(tmp_path):
    rows = [{"prompt": "q1", "response_a": "A1", "response_b": "B1", "winner": "a"},
            {"prompt": "q2", "response_a": "A2", "response_b": "B2", "winner": "B"},
            {"prompt": "q3", "response_a": "A3", "response_b": "B3", "winner": "tie"},
            {"prompt": "q4", "response_a": "A4", "response_b": "B4", "winner": "a"}]
    path = tmp_path / "pairs.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    data = prepare(DataConfig(source=str(path), eval_source=str(path)), "dpo", seed=0)
    chosen = {r["prompt"][-1]["content"]: r["chosen"][0]["content"] for r in data.train}
    assert chosen == {"q1": "A1", "q2": "B2", "q4": "A4"}
    assert data.dropped == {"tie": 2}  # once for train, once for the eval copy


def test_ubiai_rating_format_becomes_kto_rows(tmp_path):
    path = tmp_path / "ubiai.csv"
    path.write_text("system_prompt,input,output,rating\nBe kind,hi,hello,Accurate\nBe kind,yo,go away,Inaccurate\n")
    data = prepare(DataConfig(source=str(path), eval_source=str(path)), "kto", seed=0)
    assert data.train["label"] == [True, False]
    assert data.train[0]["prompt"][0] == {"role": "system", "content": "Be kind"}
    assert data.train[1]["completion"] == [{"role": "assistant", "content": "go away"}]


@pytest.mark.parametrize(
    ("content", "algorithm", "cfg", "message"),
    [
        ("", "grpo", {}, "{path}: the file is empty"),
        ("text,label\nhi,cancel_order\nyo,track_order\n", "grpo", {},
         "{path}: missing column(s) utterance needed by data.prompt_template '{{utterance}}'; columns are text, "
         "label (map yours with data.columns)"),
        ("utterance,intent\nhi,1\nyo,2\nhey,3\n", "grpo", {},
         "{path}: row 1: label column 'intent' must be text, got 1"),
        ("utterance,intent\nhi,a\n", "grpo", {"columns": {"utterance": "txt"}},
         "{path}: data.columns.utterance: column 'txt' not found; columns are utterance, intent"),
        ("prompt,completion,label\na,b,yes\nc,d,no\n", "kto", {},
         "{path}: row 1: label must be true/false, got 'yes' (UBIAI files use rating: Accurate/Inaccurate)"),
        ('{"prompt": "a", "completion": "b", "label": true}\n{"prompt": "c", "completion": "d", "label": true}\n',
         "kto", {}, "{path}: KTO needs both desirable (true) and undesirable (false) labels; all are True"),
        ('{"prompt": "a", "chosen": "x", "rejected": "x"}\n', "dpo", {},
         "{path}: row 1: chosen and rejected are identical (1 rows); drop ties before training"),
        ('{"prompt": "a", "response_a": "x", "response_b": "y", "winner": "c"}\n', "dpo", {},
         "{path}: row 1: winner must be 'a' or 'b' (or 'tie'), got 'c'"),
    ],
)
def test_bad_data_gives_one_line_errors(tmp_path, content, algorithm, cfg, message):
    path = tmp_path / ("d.jsonl" if content.startswith("{") else "d.csv")
    path.write_text(content)
    with pytest.raises(DataError) as err:
        prepare(DataConfig(source=str(path), eval_source=str(path), **cfg), algorithm, seed=0)
    assert str(err.value) == message.format(path=path)
    assert "\n" not in str(err.value)


def test_conversation_prompts_keep_their_turns_under_the_recipe_system_prompt(tmp_path):
    """`rlft generate` writes `prompt` as a message list; a recipe reads it with prompt_template '{prompt}'."""
    turns = [{"role": "system", "content": "old system"}, {"role": "user", "content": "my order #123 is late"},
             {"role": "assistant", "content": "Sorry! Let me check."}, {"role": "user", "content": "still nothing"}]
    path = tmp_path / "conv.jsonl"
    path.write_text("".join(json.dumps({"prompt": turns, "aspect": "shipping"}) + "\n" for _ in range(4)))
    cfg = DataConfig(source=str(path), prompt_template="{prompt}", system_prompt="Be kind.", eval_fraction=0.25)
    prompt = prepare(cfg, "grpo", seed=0).train[0]["prompt"]
    assert prompt == [{"role": "system", "content": "Be kind."}] + turns[1:]
    no_system = DataConfig(source=str(path), prompt_template="{prompt}", system_prompt=None, eval_fraction=0.25)
    assert prepare(no_system, "grpo", seed=0).train[0]["prompt"] == turns


def test_grouped_holdout_keeps_near_duplicates_on_one_side():
    """data.holdout: grouped on Bitext: far fewer held-out rows have a near-duplicate in training than with a
    random split of the same size, and every intent is on both sides."""
    from rlft.data.splits import near_duplicate_leakage

    leak = {}
    for holdout in ("random", "grouped"):
        data = prepare(DataConfig(source=str(BITEXT), holdout=holdout, eval_fraction=0.1), "grpo", seed=0)
        train_text = [r["prompt"][-1]["content"] for r in data.train]
        eval_text = [r["prompt"][-1]["content"] for r in data.eval]
        assert set(data.train["intent"]) == set(data.eval["intent"]) == set(data.labels)
        assert not set(train_text) & set(eval_text)
        leak[holdout] = near_duplicate_leakage(train_text, eval_text)
    assert leak["grouped"] < 0.1 < 0.4 < leak["random"]
