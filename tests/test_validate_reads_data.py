"""Issue 33: `rlft validate` reads the data it promises to read (the header and a bounded sample) and rejects what
`rlft check`, `rlft eval` and training reject, with the same line; one reader for a UTF-8 BOM in `data.source` and
`rlft eval --data`; `--data` with an empty label cell or only a header is one line naming the file (and row and
column), not a reward's AttributeError or a `datasets` internal message."""

from __future__ import annotations

import pytest

from rlft.cli import run
from rlft.data.loading import prepare
from rlft.errors import DataError
from rlft.recipe.load import load_recipe
from tests.conftest import tiny_grpo_recipe

ROWS = "hello there,greet\nwhere is my order,track\nrefund please,get_refund\nbye,bye\n"
FILES = {
    "empty_label.csv": "utterance,intent\nhello,greet\nbye,\nrefund,get_refund\nwhere,track\n",
    "null_label.jsonl": '{"utterance": "hi", "intent": "greet"}\n{"utterance": "bye", "intent": null}\n'
                        '{"utterance": "refund", "intent": "get_refund"}\n',
    "header_only.csv": "utterance,intent\n",
    "notes.md": "# my tickets\n",
    "bom.csv": "\ufeffutterance,intent\n" + ROWS,
    "bom.jsonl": "\ufeff" + "".join(f'{{"utterance": "{u}", "intent": "{i}"}}\n'
                                   for u, i in (r.split(",") for r in ROWS.splitlines())),
    "good.csv": "utterance,intent\n" + ROWS,
}
NOT_SAVED = ("is a folder but not a dataset saved by datasets' save_to_disk (no state.json or dataset_dict.json in "
             "it); give a CSV, JSON or JSONL file, or a saved dataset folder")
EMPTY_CELL = "label column 'intent' must be text, got None"

# (why, overrides after `rlft validate RECIPE`, the line after "error: ")
CASES = [
    ("a folder that is not a saved dataset", ["data.source={tmp}/folder"], f"{{tmp}}/folder: {NOT_SAVED}"),
    ("an empty folder", ["data.source={tmp}/empty"], f"{{tmp}}/empty: {NOT_SAVED}"),
    ("a markdown file", ["data.source={tmp}/notes.md"],
     "{tmp}/notes.md: cannot tell the format from '.md'; set data.format to csv, json, jsonl or datasets"),
    ("a folder read as csv", ["data.source={tmp}/folder", "data.format=csv"],
     "{tmp}/folder: is a folder; data.format: csv reads one file"),
    ("a file read as a saved dataset", ["data.source={tmp}/good.csv", "data.format=datasets"],
     "{tmp}/good.csv: data.format: datasets reads a folder saved by save_to_disk; this is a file"),
    ("an empty label cell in a CSV", ["data.source={tmp}/empty_label.csv"], f"{{tmp}}/empty_label.csv: row 2: {EMPTY_CELL}"),
    ("a null label in JSON lines", ["data.source={tmp}/null_label.jsonl"], f"{{tmp}}/null_label.jsonl: row 2: {EMPTY_CELL}"),
    ("an empty label cell in the eval source",
     ["data.source={tmp}/good.csv", "data.eval_source={tmp}/empty_label.csv"],
     f"{{tmp}}/empty_label.csv: row 2: {EMPTY_CELL}"),
    ("an empty label cell with data.labels set: the training file is read as before, the eval file is checked",
     ["data.source={tmp}/good.csv", "data.eval_source={tmp}/empty_label.csv", "data.labels=[greet, bye, track]"],
     f"{{tmp}}/empty_label.csv: row 2: {EMPTY_CELL}"),
    ("a header-only CSV", ["data.source={tmp}/header_only.csv"],
     "{tmp}/header_only.csv: no rows (only the header line utterance,intent)"),
    ("a header-only eval source", ["data.source={tmp}/good.csv", "data.eval_source={tmp}/header_only.csv"],
     "{tmp}/header_only.csv: no rows (only the header line utterance,intent)"),
]


@pytest.fixture
def setup(tmp_path, tiny_model_dir):
    import datasets

    for name, text in FILES.items():
        (tmp_path / name).write_text(text, encoding="utf-8")
    (tmp_path / "folder").mkdir()
    (tmp_path / "folder" / "tickets.csv").write_text("utterance,intent\n" + ROWS)
    (tmp_path / "empty").mkdir()
    datasets.Dataset.from_list([{"utterance": r.split(",")[0], "intent": r.split(",")[1]}
                                for r in ROWS.splitlines()]).save_to_disk(str(tmp_path / "saved"))
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(tiny_grpo_recipe(tmp_path, tiny_model_dir))
    return tmp_path, recipe


def _fill(args, tmp):
    return [a.replace("{tmp}", str(tmp)) for a in args]


@pytest.mark.parametrize(("why", "overrides", "message"), CASES, ids=[c[0] for c in CASES])
def test_validate_rejects_what_training_rejects(setup, capsys, why, overrides, message):
    tmp, recipe = setup
    code = run(["validate", str(recipe), *_fill(overrides, tmp)])
    err = capsys.readouterr().err.strip()
    assert code == 2, err
    assert err.splitlines() == ["error: " + message.replace("{tmp}", str(tmp))]


@pytest.mark.parametrize(("why", "overrides", "message"), [c for c in CASES if "format" not in c[0]],
                         ids=[c[0] for c in CASES if "format" not in c[0]])
def test_reading_the_data_says_the_same(setup, why, overrides, message):
    """The line validate prints is the one `prepare` (check, eval, train) raises."""
    tmp, recipe = setup
    r = load_recipe(str(recipe), _fill(overrides, tmp), check=False)
    with pytest.raises(DataError) as info:
        prepare(r.data, "grpo", 0)
    assert str(info.value) == message.replace("{tmp}", str(tmp))


@pytest.mark.parametrize("name", ["bom.csv", "bom.jsonl", "saved", "good.csv"])
def test_a_bom_or_a_saved_dataset_passes_and_reads_the_same_columns(setup, capsys, name):
    tmp, recipe = setup
    assert run(["validate", str(recipe), f"data.source={tmp}/{name}"]) == 0, capsys.readouterr().err
    data = prepare(load_recipe(str(recipe), [f"data.source={tmp}/{name}"]).data, "grpo", 0)
    assert set(data.train.column_names) == {"prompt", "utterance", "intent"}
    assert data.labels == ["bye", "get_refund", "greet", "track"]
    # `rlft eval --data FILE` reads FILE as data.eval_source: the same reader, the same rows
    held_out = prepare(load_recipe(str(recipe), [f"data.source={tmp}/good.csv", f"data.eval_source={tmp}/{name}"]
                                   ).data, "grpo", 0).eval
    assert held_out["utterance"] == [r.split(",")[0] for r in ROWS.splitlines()]


@pytest.mark.parametrize(("file", "message"), [
    ("empty_label.csv", f"{{tmp}}/empty_label.csv: row 2: {EMPTY_CELL}"),
    ("header_only.csv", "{tmp}/header_only.csv: no rows (only the header line utterance,intent)"),
])
def test_eval_data_names_the_file_row_and_column(setup, capsys, monkeypatch, file, message):
    tmp, recipe = setup
    import rlft.run.models

    def no_model(*args, **kwargs):
        raise AssertionError("a model was loaded before the error")

    monkeypatch.setattr(rlft.run.models, "load_model", no_model)
    code = run(["eval", str(recipe), "--model", "base", "--data", f"{tmp}/{file}", "--out", f"{tmp}/eval"])
    err = capsys.readouterr().err.strip()
    assert code == 2, err
    assert err.splitlines()[-1] == "error: " + message.replace("{tmp}", str(tmp))
