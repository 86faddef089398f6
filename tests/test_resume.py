"""Resume picks the newest *complete* checkpoint and continues to the same adapter as an uninterrupted run."""

import shutil

import torch
from safetensors.torch import load_file

import rlft
from rlft.checkpoints import MARKER, last_complete_checkpoint

RECIPE = """algorithm: dpo
output_dir: {out}
model: {{name: {model}}}
adapter: {{type: lora, r: 4, alpha: 8}}
data: {{source: demo:intent_pairs, demo_size: 40}}
trainer: {{max_steps: 4, per_device_train_batch_size: 4, learning_rate: 0.05, max_length: 64,
          save_strategy: steps, save_steps: 2}}
evaluation: {{before: false, after: false}}
"""


def test_resume_skips_half_written_checkpoint_and_matches_uninterrupted_run(tiny_model_dir, write_recipe, tmp_path):
    full = tmp_path / "full"
    rlft.train(write_recipe(RECIPE.format(out=full, model=tiny_model_dir), "full.yaml"))
    assert (full / "checkpoint-2" / MARKER).is_file() and (full / "checkpoint-4" / MARKER).is_file()

    resumed = tmp_path / "resumed"
    resumed.mkdir()
    shutil.copytree(full / "checkpoint-2", resumed / "checkpoint-2")
    broken = resumed / "checkpoint-3"  # what a kill during saving leaves behind: no marker, truncated weights
    broken.mkdir()
    (broken / "adapter_model.safetensors").write_bytes(b"\x00" * 10)
    assert last_complete_checkpoint(resumed) == resumed / "checkpoint-2"

    rlft.train(write_recipe(RECIPE.format(out=resumed, model=tiny_model_dir), "resumed.yaml"),
               ["trainer.resume_from_checkpoint=last"])
    a = load_file(str(full / "adapter_model.safetensors"))
    b = load_file(str(resumed / "adapter_model.safetensors"))
    assert a.keys() == b.keys()
    assert all(torch.allclose(a[k], b[k], atol=1e-6) for k in a)
