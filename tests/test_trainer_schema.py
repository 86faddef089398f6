"""Trainer-key validation without importing TRL: `rlft.trainers.args.trainer_schema` caches each config class's field
names and types on disk, so a misspelt or mistyped `trainer:` key fails in about a second instead of paying the
transformers/TRL/PEFT import (26-30 s measured on the shared CPU machine before; docs/recipes.md#validation)."""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
import typing

import pytest

from rlft.trainers import args as trainer_args
from rlft.errors import RecipeError
from rlft.recipe.load import load_recipe
from rlft.trainers.args import check_trainer_keys, config_class, trainer_schema
from rlft.recipe.typecheck import describe, from_spec, matches, to_spec
from tests.conftest import ROOT


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("RLFT_CACHE", str(tmp_path))
    trainer_schema.cache_clear()
    yield tmp_path
    trainer_schema.cache_clear()


@pytest.mark.parametrize("algorithm", ["grpo", "dpo", "ppo"])
def test_every_field_type_survives_the_cache(algorithm):
    cls = config_class(algorithm)
    hints = trainer_args._type_hints(cls)
    for f in dataclasses.fields(cls):
        if f.init and f.name in hints:
            hint = hints[f.name]
            if typing.get_origin(hint) is tuple or hint is tuple:
                continue  # cached as a list: `matches` treats both alike
            assert describe(from_spec(to_spec(hint))) == describe(hint), f.name


@pytest.mark.parametrize("key,value", [("learnin_rate", 1.0), ("max_steps", "ten"), ("report_to", 5),
                                       ("eval_strategy", 5), ("num_generations", 2.5), ("beta", "high")])
def test_cached_schema_gives_the_same_errors_as_the_class(cache, key, value):
    recipe = load_recipe(ROOT / "recipes" / "intent_grpo.yaml", check=False)
    recipe = dataclasses.replace(recipe, trainer={key: value})

    def message() -> str:
        with pytest.raises(RecipeError) as err:
            check_trainer_keys(recipe, "here")
        return str(err.value)

    fresh = message()  # computed from the class, then written to the cache
    assert len(list((cache / "trainer_schema").glob("grpo-*.json"))) == 1
    trainer_schema.cache_clear()
    assert message() == fresh  # read back from the file


def test_a_misspelt_trainer_key_fails_without_importing_transformers(cache):
    trainer_schema("grpo")  # what any earlier `rlft train` or `rlft validate` on this machine left
    code = ("import sys; from rlft.cli import run; rc = run(['validate', 'recipes/intent_grpo.yaml', "
            "'trainer.learnin_rate=1e-4']); "
            "print(rc, sorted(m for m in ('transformers', 'trl', 'torch', 'peft') if m in sys.modules))")
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=300,
                          env={**os.environ, "RLFT_CACHE": str(cache), "OMP_NUM_THREADS": "1"})
    assert done.stdout.strip().splitlines()[-1] == "2 []", done.stdout + done.stderr
    assert done.stderr.strip() == ("error: command line: trainer.learnin_rate: not a GRPOConfig option (did you "
                                   "mean 'learning_rate'?) (see docs/recipes.md#trainer)")


def test_schema_file_is_keyed_by_versions_and_rlft_source(cache, monkeypatch):
    first = trainer_args._schema_file("grpo")
    assert first.parent == cache / "trainer_schema" and first.name.startswith("grpo-")
    assert trainer_args._schema_file("dpo").name.startswith("dpo-")
    real = trainer_args.metadata.version
    monkeypatch.setattr(trainer_args.metadata, "version", lambda dist: "0.0" if dist == "trl" else real(dist))
    assert trainer_args._schema_file("grpo") != first  # a TRL upgrade reads a fresh schema


def test_unwritable_cache_still_validates(tmp_path, monkeypatch):
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    monkeypatch.setenv("RLFT_CACHE", str(blocker))
    trainer_schema.cache_clear()
    try:
        name, names, hints = trainer_schema("grpo")
    finally:
        trainer_schema.cache_clear()
    assert name == "GRPOConfig" and "learning_rate" in names and matches(1e-4, hints["learning_rate"])
