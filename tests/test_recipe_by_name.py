"""Issue 33, smaller: `rlft validate intent_grpo` finds the bundled recipe by name (recipes/intent_grpo.yaml of the
checkout it runs in) for train, validate and check; a file of that name, a path or a suffix is taken as given."""

from __future__ import annotations

from rlft.cli import bundled_recipe, run
from tests.conftest import ROOT


def test_validate_finds_a_bundled_recipe_by_name(capsys, monkeypatch):
    monkeypatch.chdir(ROOT)
    assert run(["validate", "intent_grpo"]) == 0
    assert capsys.readouterr().out.startswith("recipes/intent_grpo.yaml: ok (grpo, 1 reward(s)")


def test_a_name_that_is_no_bundled_recipe_is_still_one_line(capsys, monkeypatch):
    monkeypatch.chdir(ROOT)
    assert run(["validate", "intent_grpoo"]) == 2
    assert capsys.readouterr().err == "error: recipe: recipe file 'intent_grpoo' does not exist\n"


def test_a_file_path_or_suffix_is_taken_as_given(tmp_path, monkeypatch):
    (tmp_path / "recipes").mkdir()
    (tmp_path / "recipes" / "mine.yaml").write_text("algorithm: grpo\n")
    (tmp_path / "mine").write_text("algorithm: grpo\n")  # a file named like the recipe wins
    monkeypatch.chdir(tmp_path)
    assert bundled_recipe("mine") == "mine"
    assert bundled_recipe("other.yaml") == "other.yaml" and bundled_recipe("x/mine") == "x/mine"
    (tmp_path / "mine").unlink()
    assert bundled_recipe("mine") == "recipes/mine.yaml"
