"""The judge calibration gate (`calibration: {human_labels, min_kappa}` on a judge reward): `rlft train` has the judge
grade the human-labelled file first and refuses to start below `min_kappa`, before any model loads. The stub judge
passes replies that mention "fee"; on the file below it agrees with the humans on 3 of 4 rows: kappa 0.5."""

import pytest

from rlft.cli import run
from rlft.judge.gate import CalibrationGate, check_judge_gates, parse_calibration
from rlft.run.pipeline import load_recipe_rewards
from rlft.recipe.load import load_recipe

HUMAN = ("utterance,intent,completion,human\n"
         "cancel it,cancel_order,\"<intent>cancel_order</intent> A $4.99 fee applies.\",Accurate\n"
         "cancel now,cancel_order,\"<intent>cancel_order</intent> There is no fee, ever.\",Inaccurate\n"
         "stop it,cancel_order,\"<intent>cancel_order</intent> Your order has been cancelled.\",fail\n"
         "where is it,track_order,\"<intent>track_order</intent> Your parcel is on its way.\",0\n")


@pytest.fixture
def gated(tmp_path):
    from tests.judge_stub_server import StubJudge, StubServer, keyword_responder

    data = tmp_path / "train.csv"
    data.write_text("utterance,intent\n" + "please cancel,cancel_order\nwhere is my parcel,track_order\n" * 5)
    (tmp_path / "human.csv").write_text(HUMAN)
    stub = StubJudge(keyword_responder("fee"))

    def write(min_kappa, extra=""):
        recipe = tmp_path / "recipe.yaml"
        recipe.write_text(f"""
output_dir: {tmp_path / 'run'}
data: {{source: {data}}}
rewards:
  - name: judge
    params: {{backend: openai, model: judge, base_url: "{url}", api_key_env: null, cache: null,
              guideline: "Mention the $4.99 cancellation fee.",
              calibration: {{human_labels: human.csv, min_kappa: {min_kappa}{extra}}}}}
""")
        return recipe

    with StubServer(stub) as url:
        yield write, stub, tmp_path


def test_train_refuses_a_judge_below_min_kappa_before_loading_a_model(gated, capsys):
    write, stub, root = gated
    recipe = write(0.6)
    assert run(["train", str(recipe)]) == 2
    assert capsys.readouterr().err.strip().splitlines()[-1] == (
        f"error: {recipe}: rewards[0] (judge): calibration: Cohen's kappa 0.500 on human.csv (4 rows judged, "
        f"0 abstained) is below min_kappa 0.6; the judge may not train (improve its guideline or model, or lower "
        f"min_kappa)")
    assert stub.requests == 4  # the judge graded the four human-labelled rows (human.csv found next to the recipe)
    assert sorted(p.name for p in (root / "run").iterdir()) == ["recipe.yaml"]  # no model, adapter or metrics


def test_a_judge_at_or_above_min_kappa_passes_with_its_record(gated, capsys):
    write, _, _ = gated
    recipe = load_recipe(write(0.5))
    rewards = load_recipe_rewards(recipe, ["cancel_order", "track_order"], [])
    (record,) = check_judge_gates(recipe, rewards)
    assert (record["kappa"], record["agreement"], record["n"], record["abstained"]) == (0.5, 0.75, 4, 0)
    assert record["min_kappa"] == 0.5 and record["file"] == "human.csv" and record["reward"] == "judge"
    assert "Cohen's kappa 0.500 >= 0.5 on human.csv" in capsys.readouterr().out


def test_gate_file_errors_are_one_line(gated, capsys):
    write, _, root = gated
    (root / "human.csv").write_text("utterance,intent,completion\nhi,cancel_order,x\n")
    recipe = write(0.5)
    assert run(["train", str(recipe)]) == 2
    assert capsys.readouterr().err.strip().splitlines()[-1] == (
        f"error: {recipe}: rewards[0] (judge): calibration: needs a 'human' column; has ['utterance', 'intent', "
        f"'completion', 'prompt']")
    (root / "human.csv").unlink()
    assert run(["train", str(write(0.5))]) == 2
    last = capsys.readouterr().err.strip().splitlines()[-1]
    assert last.endswith("calibration.human_labels: file 'human.csv' does not exist")


@pytest.mark.parametrize("value, message", [
    ({"human_labels": "h.csv", "min_kappa": 0.6}, None),  # valid
    ({"human_labels": "h.csv", "min_kappa": 0.6, "label_column": "rater"}, None),
    ("h.csv", "calibration: expected a mapping {human_labels: FILE, min_kappa: 0.6}, got 'h.csv'"),
    ({"human_labels": "h.csv", "min_kapa": 0.6}, "calibration: unknown key 'min_kapa' (allowed: human_labels, "
     "min_kappa, label_column)"),
    ({"min_kappa": 0.6}, "calibration.human_labels: expected a CSV/JSON/JSONL file path, got None"),
    ({"human_labels": "h.csv", "min_kappa": 1.5}, "calibration.min_kappa: expected a number in [-1, 1], got 1.5"),
    ({"human_labels": "h.csv", "min_kappa": True}, "calibration.min_kappa: expected a number in [-1, 1], got True"),
])
def test_calibration_values(value, message):
    if message is None:
        assert isinstance(parse_calibration(value), CalibrationGate)
    else:
        with pytest.raises(ValueError) as err:
            parse_calibration(value)
        assert str(err.value) == message


def test_a_bad_calibration_value_stops_train_naming_the_reward(gated, capsys):
    write, stub, _ = gated
    assert run(["train", str(write(0.5, ", min_kapa: 1"))]) == 2
    err = capsys.readouterr().err
    # validate checks the judge's params before anything loads: the file, the reward's place and the key
    assert err.startswith("error: ") and err.count("\n") == 1
    assert "recipe.yaml: rewards[0].params: calibration: unknown key 'min_kapa' (allowed: human_labels, min_kappa, " \
           "label_column)" in err
    assert stub.requests == 0
