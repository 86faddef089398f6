"""Oracle recipes (issue 29, item 3): a prompt that reads gold-derived text (`{policy}` from `data.policies`, or the
label column itself) is named an oracle by `rlft.data.oracle`, and `rlft check`, the report header and the model card
say so; a recipe whose prompt reads nothing gold-derived gets no such line anywhere."""

from __future__ import annotations

import html
import json
from pathlib import Path

import pytest

from rlft.recipe.sections import DataConfig, Recipe
from rlft.data.oracle import oracle_columns, oracle_note
from rlft.recipe.load import load_recipe

RECIPES = Path(__file__).resolve().parents[1] / "recipes"
ORACLE = "oracle: the prompt reads {policy}, the gold intent's text from data.policies"


def recipe_with(**data: object) -> Recipe:
    return Recipe(data=DataConfig(**data))


@pytest.mark.parametrize("name", ["support_agent.yaml", "support_agent_bitext_oracle.yaml", "support_agent_bitext_exact.yaml"])
def test_article_recipes_are_oracles(name):
    recipe = load_recipe(RECIPES / name, check=False)
    assert oracle_columns(recipe) == ["policy"]
    note = oracle_note(recipe)
    assert note is not None and note.startswith(ORACLE) and "upper bound, not a headline" in note


@pytest.mark.parametrize("name", ["intent_grpo.yaml", "support_agent_bitext.yaml", "support_agent_bitext_distill.yaml"])
def test_recipes_without_gold_text_are_not_oracles(name):
    """intent_grpo shows the message only; the lookup agent fetches the article of the label the model chose; the
    distilled agent's gold article is its teacher's (signal.teacher_lookup), never in its own prompt."""
    recipe = load_recipe(RECIPES / name, check=False)
    assert oracle_columns(recipe) == []
    assert oracle_note(recipe) is None


def test_template_reading_the_label_column_is_an_oracle():
    recipe = recipe_with(prompt_template="{utterance} ({intent})")
    assert oracle_columns(recipe) == ["intent"]
    assert oracle_note(recipe).startswith("oracle: the prompt reads {intent}, the gold intent itself")


@pytest.mark.parametrize("template,policies,label_column,expected", [
    ("{utterance}\n\n{policy}", None, "intent", []),  # a `policy` column of the user's own file: not gold-derived
    ("{utterance}\n\n{policy}", "demo", "intent", ["policy"]),
    ("{{intent}}: {utterance}", None, "intent", []),  # escaped braces are literal text, not a field
    ("{intent.upper} {utterance}", None, "intent", ["intent"]),  # attribute / index access still reads the column
    ("{intent[0]} {utterance}", None, "intent", ["intent"]),
    ("{utterance:>{intent}}", None, "intent", ["intent"]),  # a field nested in a format spec is formatted too
    ("{category}: {utterance}", None, "category", ["category"]),  # whatever data.label_column names
    ("{intent} {policy} {intent}", "demo", "intent", ["intent", "policy"]),  # each once, template order
])
def test_which_fields_are_gold_derived(template, policies, label_column, expected):
    recipe = recipe_with(prompt_template=template, policies=policies, label_column=label_column)
    assert oracle_columns(recipe) == expected
    assert (oracle_note(recipe) is None) == (not expected)


def test_both_columns_named_in_one_note():
    note = oracle_note(recipe_with(prompt_template="{intent}: {policy}", policies="demo"))
    assert "{intent}, the gold intent itself" in note and "{policy}, the gold intent's text from data.policies" in note


# --- where the line shows -------------------------------------------------------------------------------------------

def _check(path: Path, capsys) -> tuple[int, str]:
    from rlft.cli import run

    code = run(["check", str(path)])
    captured = capsys.readouterr()
    return code, captured.out + captured.err


def _grpo_recipe(tiny_model_dir: Path, tmp_path: Path, data: str) -> str:
    return f"""algorithm: grpo
output_dir: {tmp_path / 'out'}
model: {{name: {tiny_model_dir}}}
adapter: {{type: lora, r: 4, alpha: 8}}
data: {{source: "demo:intents", demo_size: 24, system_prompt: "Classify.", {data}}}
rewards:
  - name: intent
decoding: {{prefill: "<intent>", constrain_labels: true}}
trainer: {{max_steps: 2, per_device_train_batch_size: 2, num_generations: 2, max_completion_length: 4}}
"""


def test_check_warns_on_an_oracle_and_keeps_its_exit_code(tiny_model_dir, tmp_path, write_recipe, capsys,
                                                          one_torch_thread):
    data = 'policies: "demo:articles", prompt_template: "{utterance}\\n\\nHelp-centre article: {policy}"'
    code, out = _check(write_recipe(_grpo_recipe(tiny_model_dir, tmp_path, data)), capsys)
    assert code == 0, out  # a warning, not a failure
    assert f"[rlft check] recipe: warning: {ORACLE}" in out
    assert "[rlft check] result: ok (exit 0)" in out


def test_check_says_nothing_on_a_recipe_that_is_not_an_oracle(tiny_model_dir, tmp_path, write_recipe, capsys,
                                                              monkeypatch):
    """The line comes right after the recipe line; stop the dry run at the data step (no model load needed)."""
    from rlft.errors import DataError

    def stop(*args, **kwargs):
        raise DataError("stopped by the test")

    monkeypatch.setattr("rlft.data.loading.prepare", stop)
    code, out = _check(write_recipe(_grpo_recipe(tiny_model_dir, tmp_path, 'prompt_template: "{utterance}"')), capsys)
    assert "[rlft check] recipe: ok (grpo" in out and "stopped by the test" in out, out
    assert "oracle" not in out


def _write_report(tmp_path: Path, recipe: Recipe) -> str:
    import datasets

    from rlft.evaluation.eval_models import write_eval_report
    from rlft.report.summary import ModelRun

    rows = datasets.Dataset.from_list([{"prompt": "p1", "intent": "a"}, {"prompt": "p2", "intent": "b"}])
    run_ = ModelRun("tuned", "test", ["<intent>a</intent>", "<intent>a</intent>"], predicted=["a", "a"],
                    parse_status=["ok", "ok"])
    result = write_eval_report(tmp_path, recipe, rows, ["a", "b"], [run_], title="t", data_desc="d")
    return result["paths"]["report.md"].read_text()


def test_report_header_carries_the_oracle_line(tmp_path):
    recipe = recipe_with(prompt_template="{utterance}\n\n{policy}", policies="demo:articles")
    text = _write_report(tmp_path, recipe)
    header = text.split("## Headline", 1)[0]  # above every figure
    assert f"> **Warning:** {ORACLE}" in header
    assert json.loads((tmp_path / "report.json").read_text())["oracle"].startswith(ORACLE)
    assert html.escape(ORACLE) in (tmp_path / "traces.html").read_text()  # the trace browser's settings list


def test_report_has_no_oracle_line_otherwise(tmp_path):
    text = _write_report(tmp_path, recipe_with(prompt_template="{utterance}"))
    assert "oracle:" not in text and "gold" not in text
    assert "oracle" not in json.loads((tmp_path / "report.json").read_text())


def test_model_card_carries_the_oracle_line(tmp_path):
    from rlft.run.outputs import write_model_card

    recipe = recipe_with(prompt_template="{utterance}\n\n{policy}", policies="demo:articles")
    recipe.output_dir = str(tmp_path)
    card = write_model_card(recipe, "base", {}, tmp_path).read_text()
    assert ORACLE in card


def test_model_card_has_no_oracle_line_otherwise(tmp_path):
    from rlft.run.outputs import write_model_card

    recipe = recipe_with(prompt_template="{utterance}")
    recipe.output_dir = str(tmp_path)
    card = write_model_card(recipe, "base", {}, tmp_path).read_text()
    assert "oracle:" not in card and "gold" not in card  # (tmp_path's own name holds the word "oracle")
