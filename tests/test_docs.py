"""Docs stay in step with the code: every recipe key is documented, every built-in reward is listed."""

import dataclasses

from rlft.recipe.sections import (
    AdapterConfig,
    DataConfig,
    DecodingConfig,
    EvaluationConfig,
    ExportConfig,
    LabelPGConfig,
    ModelConfig,
    Recipe,
    RFTConfig,
    SignalConfig,
)
from rlft.scoring.loader import builtin_rewards
from tests.conftest import ROOT


def test_every_recipe_key_is_in_docs_recipes():
    text = (ROOT / "docs" / "recipes.md").read_text()
    sections = {"": Recipe, "model.": ModelConfig, "adapter.": AdapterConfig, "data.": DataConfig,
                "evaluation.": EvaluationConfig, "export.": ExportConfig, "decoding.": DecodingConfig,
                "signal.": SignalConfig, "label_pg.": LabelPGConfig, "rft.": RFTConfig}
    missing = [f"{p}{f.name}" for p, cls in sections.items() for f in dataclasses.fields(cls)
               if f.name != "source_file" and f"`{p}{f.name}`" not in text]
    assert not missing, f"undocumented recipe keys: {missing}"


def test_every_builtin_reward_is_in_docs_rewards():
    text = (ROOT / "docs" / "rewards.md").read_text()
    assert all(f"`{name}`" in text for name in builtin_rewards())


def test_readme_test_command_is_what_ci_runs():
    readme = (ROOT / "README.md").read_text()
    ci = (ROOT / ".ci" / "run").read_text()
    command = next(line for line in ci.splitlines() if line.startswith("python3 -m venv"))
    assert command.replace(" -q", "") in readme
