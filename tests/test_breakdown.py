"""`data.breakdown_columns`: per-value metrics in report.json / report.md, counted exactly (letters once per row)."""

import dataclasses
import json

import pytest

from rlft.recipe.sections import DataConfig, Recipe
from rlft.report.breakdown import breakdown, parse_spec, row_keys
from rlft.report.summary import ModelRun

# flags, category, gold intent, model a's label, model a's policy verdict, model b's label
ROWS = [("BQ", "ORDER", "cancel", "cancel", 1.0, "cancel"),
        ("BQZ", "ORDER", "track", "cancel", 1.0, "track"),
        ("B", "REFUND", "refund", "refund", 0.0, "refund"),
        ("BZ", "REFUND", "refund", None, None, "cancel"),
        ("BLL", "ACCOUNT", "cancel", "cancel", 1.0, "track"),  # L twice: counted once under L
        ("", "ORDER", "track", "track", None, "track")]


def test_parse_spec_and_row_keys():
    assert parse_spec("flags:letters") == parse_spec(" flags:letters")
    assert parse_spec("flags:letters").letters and parse_spec("flags:letters").key == "flags:letters"
    assert not parse_spec("category").letters
    for bad in ("flags:chars", ":letters", ""):
        with pytest.raises(ValueError, match="COLUMN:letters"):
            parse_spec(bad)
    assert row_keys("BLL", True) == ["B", "L"]
    assert row_keys("BQ", False) == ["BQ"]
    assert row_keys("", True) == row_keys(None, False) == ["(empty)"]
    assert row_keys(3, False) == ["3"]


def test_breakdown_counts_rows_once_per_value():
    keys = [row_keys(r[0], True) for r in ROWS]
    right = [r[3] == r[2] for r in ROWS]
    policy = [None if r[4] is None else r[4] >= 0.5 for r in ROWS]
    out = breakdown(keys, right, policy)
    assert list(out) == ["(empty)", "B", "L", "Q", "Z"]
    assert out["B"] == {"n": 5, "intent_accuracy": 3 / 5, "policy_following": 3 / 4, "policy_judged": 4,
                        "system_accuracy": 2 / 5, "system_known": 5}
    assert out["Q"] == {"n": 2, "intent_accuracy": 0.5, "policy_following": 1.0, "policy_judged": 2,
                        "system_accuracy": 0.5, "system_known": 2}
    assert out["Z"] == {"n": 2, "intent_accuracy": 0.0, "policy_following": 1.0, "policy_judged": 1,
                        "system_accuracy": 0.0, "system_known": 2}
    assert out["L"]["n"] == 1 and out["L"]["intent_accuracy"] == 1.0
    assert out["(empty)"] == {"n": 1, "intent_accuracy": 1.0, "policy_following": None, "policy_judged": 0,
                              "system_accuracy": None, "system_known": 0}
    assert breakdown(keys, right) == {k: {"n": v["n"], "intent_accuracy": v["intent_accuracy"]}
                                      for k, v in out.items()}


def test_eval_report_json_and_markdown_carry_the_breakdown(tmp_path):
    import datasets

    from rlft.evaluation.eval_models import write_eval_report

    rows = datasets.Dataset.from_list([{"prompt": [{"role": "user", "content": f"message {i}"}], "flags": r[0],
                                        "category": r[1], "intent": r[2]} for i, r in enumerate(ROWS)])
    recipe = Recipe(data=DataConfig(breakdown_columns=["flags:letters", "category"]), rewards=[])
    a = ModelRun("a", "adapter a", [f"<intent>{r[3]}</intent>" for r in ROWS], predicted=[r[3] for r in ROWS],
                 policy=[r[4] for r in ROWS])
    b = ModelRun("b", "adapter b", [f"<intent>{r[5]}</intent>" for r in ROWS], predicted=[r[5] for r in ROWS])
    result = write_eval_report(tmp_path, recipe, rows, ["cancel", "refund", "track"], [a, b], title="t",
                               data_desc="handmade")
    report = json.loads((tmp_path / "report.json").read_text())
    ba, bb = (m["breakdown"] for m in report["models"])
    assert ba == result["models"][0]["breakdown"]
    assert {k: v["n"] for k, v in ba["flags:letters"].items()} == {"(empty)": 1, "B": 5, "L": 1, "Q": 2, "Z": 2}
    assert {k: (v["n"], v["intent_accuracy"]) for k, v in ba["category"].items()} == {
        "ACCOUNT": (1, 1.0), "ORDER": (3, 2 / 3), "REFUND": (2, 0.5)}
    assert ba["category"]["ORDER"]["system_accuracy"] == 0.5 and ba["category"]["ORDER"]["system_known"] == 2
    assert {k: v["intent_accuracy"] for k, v in bb["flags:letters"].items()} == {
        "(empty)": 1.0, "B": 3 / 5, "L": 0.0, "Q": 1.0, "Z": 0.5}
    assert "policy_following" not in bb["category"]["ORDER"]  # model b has no judge verdicts
    md = (tmp_path / "report.md").read_text()
    assert "## By flags:letters (a row counts once under each letter it carries)" in md
    assert "| B | 5 | 0.600 | 0.750 | 0.400 | 0.600 | — | — |" in md
    assert "| ORDER | 3 | 0.667 | 1.000 | 0.500 | 1.000 | — | — |" in md
    assert "| a intent_accuracy | a policy_following | a system_accuracy | b intent_accuracy |" in md


def test_no_breakdown_columns_no_section(tmp_path):
    import datasets

    from rlft.evaluation.eval_models import write_eval_report

    rows = datasets.Dataset.from_list([{"prompt": "hi", "flags": "B", "intent": "x"}])
    recipe = dataclasses.replace(Recipe(), rewards=[])
    write_eval_report(tmp_path, recipe, rows, ["x"], [ModelRun("a", "s", ["x"], predicted=["x"])], title="t",
                      data_desc="d")
    assert "breakdown" not in json.loads((tmp_path / "report.json").read_text())["models"][0]
    assert "## By " not in (tmp_path / "report.md").read_text()


def _csv(tmp_path):
    path = tmp_path / "d.csv"
    lines = "".join(f"B{'Q' * (i % 2)},message {i},i{i % 3}\n" for i in range(12))
    path.write_text("flags,utterance,intent\n" + lines)
    return path


@pytest.mark.parametrize("columns, message", [
    (["flags:chars"], "data.breakdown_columns: expected a column name or COLUMN:letters"),
    (["flags:letters", "category"], "data.breakdown_columns: column 'category' not found"),
])
def test_bad_breakdown_columns_are_one_line(tmp_path, columns, message):
    from rlft.data.checks import check_sample
    from rlft.errors import UserError

    recipe = Recipe(data=DataConfig(source=str(_csv(tmp_path)), breakdown_columns=columns))
    with pytest.raises(UserError, match=message) as err:
        check_sample(recipe, lambda r, k: "r.yaml")
    assert "\n" not in str(err.value)


def test_prepare_keeps_breakdown_columns_and_refuses_missing_ones(tmp_path):
    from rlft.data.loading import prepare
    from rlft.errors import DataError

    data = prepare(DataConfig(source=str(_csv(tmp_path)), breakdown_columns=["flags:letters"]), "grpo", seed=0)
    assert "flags" in data.eval.column_names and "flags" in data.train.column_names
    with pytest.raises(DataError, match="data.breakdown_columns: column\\(s\\) category not in the evaluation rows"):
        prepare(DataConfig(source=str(_csv(tmp_path)), breakdown_columns=["category"]), "grpo", seed=0)
