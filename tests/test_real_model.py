"""Slow: the default recipe end to end on the real embedded SmolLM2-135M-Instruct (converted from its .gguf)."""

import json
import subprocess
import sys

import pytest

from tests.conftest import ROOT


@pytest.mark.slow
def test_default_recipe_launcher_trains_and_adapter_loads_with_plain_peft(tmp_path):
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    out = tmp_path / "run"
    proc = subprocess.run(
        [sys.executable, str(ROOT / "recipes" / "intent_grpo.py"), f"output_dir={out}", "trainer.max_steps=2",
         "evaluation.max_samples=8"],
        capture_output=True, text=True, timeout=1800, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "[rlft] held-out before" in proc.stdout and "[rlft] held-out after" in proc.stdout
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["global_step"] == 2
    assert 0.0 <= metrics["eval_after"]["intent_accuracy"] <= 1.0
    card = (out / "README.md").read_text()
    # the card names the base portably (the hub id of the embedded model, not a machine-local cache path); offline,
    # load the same weights from rlft's local conversion of the embedded GGUF
    assert card.split("base_model: ", 1)[1].split("\n", 1)[0] == "HuggingFaceTB/SmolLM2-135M-Instruct"
    from rlft.recipe.sections import ModelConfig
    from rlft.run.models import resolve_model_path

    base_dir = resolve_model_path(ModelConfig())
    base = AutoModelForCausalLM.from_pretrained(base_dir)
    model = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(base_dir), out)
    ids = torch.tensor([[1, 2, 3, 4, 5]])
    with torch.no_grad():
        assert base(ids).logits.shape == model(ids).logits.shape
        assert not torch.equal(base(ids).logits, model(ids).logits)
