"""A step that leaves a trainable weight NaN or inf ends the run at that step with one line and exit 2: no adapter,
no report, no checkpoint of that step (rlft.run.finite_weights). Before this, a learning rate of 1e39 saved an adapter
of NaNs and exited 0."""

from __future__ import annotations

import math

import pytest
import torch
from transformers import TrainerCallback

from tests.conftest import tiny_grpo_recipe
from rlft.cli import run
from rlft.errors import UserError
from rlft.run.finite_weights import TrainingDiverged, first_non_finite


def test_only_trainable_weights_are_checked_and_the_kind_is_named():
    layer = torch.nn.Linear(2, 2)
    assert first_non_finite(layer) is None
    layer.bias.requires_grad_(False)
    with torch.no_grad():
        layer.bias[0] = math.nan  # frozen: a training step cannot have changed it
    assert first_non_finite(layer) is None
    with torch.no_grad():
        layer.weight[1, 0] = math.inf
    assert first_non_finite(layer) == ("weight", "inf")
    with torch.no_grad():
        layer.weight[0, 0] = math.nan
    assert first_non_finite(layer) == ("weight", "NaN")
    assert issubclass(TrainingDiverged, UserError)  # the CLI prints it in one line and exits 2


def test_a_learning_rate_that_overflows_is_one_line_exit_2_and_saves_no_adapter(tmp_path, tiny_model_dir, capsys):
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(tiny_grpo_recipe(tmp_path, tiny_model_dir))
    code = run(["train", str(recipe), "trainer.learning_rate=1e39"])
    err = capsys.readouterr().err.strip()
    assert code == 2, err
    assert "Traceback" not in err, err
    line = err.splitlines()[-1]  # above it: the data and model loading bars
    assert line == ("error: command line: training diverged at step 1: "  # a LoRA matrix: only trainable weights
                    "base_model.model.model.layers.0.self_attn.q_proj.lora_A.default.weight is NaN after the optimizer "
                    "step; no adapter was saved (checkpoints of earlier steps are kept). Lower trainer.learning_rate "
                    "(it is 1e+39) or keep trainer.max_grad_norm on"), line
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["recipe.yaml"]


class _PoisonAtStep(TrainerCallback):
    """Turns one LoRA weight NaN right after step `step`'s optimizer update, as a diverging update would."""

    def __init__(self, step: int) -> None:
        self.step = step

    def on_optimizer_step(self, args, state, control, model=None, **kwargs):
        if state.global_step + 1 == self.step:  # global_step counts the step once it has ended
            name, param = next((n, p) for n, p in model.named_parameters() if p.requires_grad)
            with torch.no_grad():
                param.fill_(math.nan)


def test_the_step_that_diverges_saves_no_checkpoint_and_earlier_ones_stay(tmp_path, tiny_model_dir):
    import rlft

    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(tiny_grpo_recipe(tmp_path, tiny_model_dir))
    with pytest.raises(TrainingDiverged, match=r"^command line: training diverged at step 2: .* is NaN after"):
        rlft.train(recipe, ["trainer.max_steps=3", "trainer.save_strategy=steps", "trainer.save_steps=1",
                    "trainer.learning_rate=1e-5"],
                   callbacks=[_PoisonAtStep(2)])
    names = sorted(p.name for p in (tmp_path / "out").iterdir())
    assert "checkpoint-1" in names and "checkpoint-2" not in names and "checkpoint-3" not in names, names
    assert "adapter_model.safetensors" not in names and "metrics.json" not in names, names
    checkpoint = rlft_checkpoint_weights(tmp_path / "out" / "checkpoint-1")
    assert all(torch.isfinite(t).all() for t in checkpoint.values())


def rlft_checkpoint_weights(folder):
    from safetensors.torch import load_file

    return load_file(str(folder / "adapter_model.safetensors"))


def test_a_healthy_run_is_not_stopped(tmp_path, tiny_model_dir):
    import rlft

    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(tiny_grpo_recipe(tmp_path, tiny_model_dir))
    result = rlft.train(recipe, ["trainer.max_steps=2", "trainer.learning_rate=1e-3"])
    assert result.metrics["global_step"] == 2
    assert (tmp_path / "out" / "adapter_model.safetensors").is_file()
