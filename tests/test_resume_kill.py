"""`kill -9` during a DPO and a PPO run, then `resume_from_checkpoint: last`: the final adapter (and PPO's value head)
equal an uninterrupted run's bit for bit, and the logged history matches.

Same shape as tests/test_resume.py's GRPO kill -9 test: the run to kill is a real `python -m rlft train` subprocess;
it is killed with SIGKILL as soon as its first checkpoint is complete, so the kill lands during a later step (often
while that step's checkpoint is being written: the half-written one is skipped).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from safetensors.torch import load_file

import rlft
from rlft.run.checkpoints import MARKER, last_complete_checkpoint
from tests.conftest import ROOT

DPO = """algorithm: dpo
output_dir: {out}
model: {{name: {model}}}
adapter: {{type: lora, r: 4, alpha: 8}}
data: {{source: demo:intent_pairs, demo_size: 40}}
trainer: {{max_steps: 5, per_device_train_batch_size: 4, learning_rate: 0.05, max_length: 64,
          save_strategy: steps, save_steps: 1}}
evaluation: {{before: false, after: false}}
"""

# target_kl: the adaptive KL controller moves beta every step (its value must be in the checkpoint); logging_steps 3
# with a checkpoint every step: the resumed run must also carry the half-filled logging window. save_total_limit 2:
# older checkpoints are deleted only after the newest is complete.
PPO = """algorithm: ppo
output_dir: {out}
model: {{name: {model}}}
adapter: {{type: lora, r: 4, alpha: 8}}
data: {{source: demo:intents, demo_size: 24}}
rewards: [{{name: intent}}]
decoding: {{prefill: "<intent>", constrain_labels: true}}
trainer: {{max_steps: 5, per_device_train_batch_size: 4, num_generations: 2, max_completion_length: 8,
          learning_rate: 0.05, ppo_epochs: 2, num_mini_batches: 2, target_kl: 0.1, kl_horizon: 10,
          logging_steps: 3, save_strategy: steps, save_steps: 1, save_total_limit: 2}}
evaluation: {{before: false, after: false}}
"""


def kill_after_first_checkpoint(recipe: Path, out: Path, max_steps: int) -> Path:
    """Run `rlft train recipe` in a subprocess, SIGKILL it once checkpoint-1 is complete; return the checkpoint
    `resume_from_checkpoint: last` will pick (asserted to be before the end)."""
    proc = subprocess.Popen([sys.executable, "-m", "rlft", "train", str(recipe)], cwd=ROOT,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            env={**os.environ, "OMP_NUM_THREADS": "1"})
    deadline = time.monotonic() + 300
    while not (out / "checkpoint-1" / MARKER).is_file() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL  # killed mid-run, not finished
    assert not (out / "adapter_model.safetensors").exists()
    last = last_complete_checkpoint(out)
    assert last is not None and int(last.name.split("-")[1]) < max_steps
    return last


def max_delta(a_file: Path, b_file: Path) -> float:
    a, b = load_file(str(a_file)), load_file(str(b_file))
    assert a.keys() == b.keys()
    return max(float((a[k] - b[k]).abs().max()) for k in a)


def _losses(metrics: dict) -> list[tuple[int, float]]:
    return [(h["step"], h["loss"]) for h in metrics["log_history"] if "loss" in h]


@pytest.mark.slow  # ~90 s here (three DPO runs, one a subprocess), two shared cores
@pytest.mark.usefixtures("one_torch_thread")  # the same thread count as the killed child
def test_dpo_kill_9_then_resume_last_equals_uninterrupted_run(tiny_model_dir, write_recipe, tmp_path):
    full = tmp_path / "full"
    want = rlft.train(write_recipe(DPO.format(out=full, model=tiny_model_dir), "full.yaml"))
    killed = tmp_path / "killed"
    recipe = write_recipe(DPO.format(out=killed, model=tiny_model_dir), "killed.yaml")
    last = kill_after_first_checkpoint(recipe, killed, 5)
    got = rlft.train(recipe, ["trainer.resume_from_checkpoint=last"])
    # transformers checkpoints weights, optimizer, scheduler and RNG and skips the batches already trained on
    assert max_delta(full / "adapter_model.safetensors", killed / "adapter_model.safetensors") == 0.0, last.name
    assert got.metrics["global_step"] == 5
    assert _losses(got.metrics) == _losses(want.metrics)


@pytest.mark.slow  # ~35 s here
@pytest.mark.usefixtures("one_torch_thread")  # the same thread count as the killed child
def test_ppo_kill_9_then_resume_last_equals_uninterrupted_run(tiny_model_dir, write_recipe, tmp_path):
    from rlft.ppo.checkpoint import STATE_FILE

    full = tmp_path / "full"
    want = rlft.train(write_recipe(PPO.format(out=full, model=tiny_model_dir), "full.yaml"))
    assert {"optimizer.pt", "scheduler.pt", "rng_state.pth", "trainer_state.json", STATE_FILE,
            "value_head.safetensors", "adapter_model.safetensors", MARKER} <= {
        p.name for p in (full / "checkpoint-5").iterdir()}
    assert sorted(p.name for p in full.glob("checkpoint-*")) == ["checkpoint-4", "checkpoint-5"]
    kl_coefs = [h["kl_coef"] for h in want.metrics["log_history"] if "kl_coef" in h]
    assert len(set(kl_coefs)) == len(kl_coefs)  # the adaptive controller moved beta between logs
    killed = tmp_path / "killed"
    recipe = write_recipe(PPO.format(out=killed, model=tiny_model_dir), "killed.yaml")
    last = kill_after_first_checkpoint(recipe, killed, 5)
    got = rlft.train(recipe, ["trainer.resume_from_checkpoint=last"])
    for name in ("adapter_model.safetensors", "value_head.safetensors"):
        assert max_delta(full / name, killed / name) == 0.0, f"{name}, resumed from {last.name}"
    assert got.metrics["global_step"] == 5
    assert got.metrics["train"]["final_kl_coef"] == want.metrics["train"]["final_kl_coef"]
    assert got.metrics["train"]["train_loss"] == want.metrics["train"]["train_loss"]
    drop = ("train_runtime", "train_steps_per_second")
    assert [{k: v for k, v in h.items() if k not in drop} for h in got.metrics["log_history"]] == \
        [{k: v for k, v in h.items() if k not in drop} for h in want.metrics["log_history"]]



@pytest.mark.slow  # ~40 s here (an evaluation every step)
def test_resume_keeps_the_held_out_history_and_best_record(tiny_model_dir, write_recipe, tmp_path):
    """`evaluation.every_steps` + `keep_best`: the checkpoint carries the history and the best record
    (rlft_eval_state.json), so the resumed run reports every evaluation and the same best step as an uninterrupted
    one. Before, a resumed run's history started at the checkpoint and its best record was lost."""
    import shutil

    from rlft.evaluation.periodic import STATE_FILE

    recipe = DPO.replace("max_steps: 5", "max_steps: 4").replace("save_steps: 1", "save_steps: 2").replace(
        "evaluation: {{before: false, after: false}}",
        "evaluation: {{before: false, after: false, every_steps: 1, keep_best: true, best_metric: format_rate,\n"
        "             max_samples: 4, max_new_tokens: 6}}")
    full = tmp_path / "full"
    want = rlft.train(write_recipe(recipe.format(out=full, model=tiny_model_dir), "full.yaml"))
    assert (full / "checkpoint-2" / STATE_FILE).is_file() and len(want.metrics["heldout_history"]) == 4
    resumed = tmp_path / "resumed"
    resumed.mkdir()
    shutil.copy(full / "recipe.yaml", resumed / "recipe.yaml")
    shutil.copytree(full / "checkpoint-2", resumed / "checkpoint-2")
    got = rlft.train(write_recipe(recipe.format(out=resumed, model=tiny_model_dir), "resumed.yaml"),
                     ["trainer.resume_from_checkpoint=last"])

    def rows(metrics):
        return [{k: v for k, v in row.items() if k != "train_seconds"} for row in metrics["heldout_history"]]

    assert rows(got.metrics) == rows(want.metrics)
    assert {k: v for k, v in got.metrics["best"].items() if k != "dir"} == \
        {k: v for k, v in want.metrics["best"].items() if k != "dir"}
    seconds = [row["train_seconds"] for row in got.metrics["heldout_history"]]
    assert seconds == sorted(seconds)  # training time continues from the checkpoint's, not from 0


PPO_2PROC = """algorithm: ppo
output_dir: {out}
model: {{name: {model}}}
adapter: {{type: lora, r: 4, alpha: 8}}
data: {{source: "demo:intents", demo_size: 40, system_prompt: "Classify."}}
rewards: [{{name: intent}}]
decoding: {{prefill: "<intent>", constrain_labels: true}}
trainer: {{max_steps: 3, per_device_train_batch_size: 4, num_generations: 2, max_completion_length: 6,
          ppo_epochs: 1, num_mini_batches: 1, learning_rate: 0.01, logging_steps: 1, target_kl: 0.1, kl_horizon: 10,
          save_strategy: steps, save_steps: 1}}
evaluation: {{before: false, after: false}}
"""


@pytest.mark.slow  # ~75 s here: three 2-process launches
def test_ppo_two_process_resume_equals_uninterrupted_run(tiny_model_dir, write_recipe, tmp_path):
    """2 CPU processes (recipes/accelerate/cpu_2proc.yaml): RNG and PPO state per process, resumed bit-exactly."""
    import shutil

    from tests.test_multiprocess import launch

    full = tmp_path / "full"
    launch(write_recipe(PPO_2PROC.format(out=full, model=tiny_model_dir), "full.yaml"), tmp_path)
    assert {"rng_state_0.pth", "rng_state_1.pth", "rlft_ppo_state.pt", "rlft_ppo_state_rank1.pt", MARKER} <= {
        p.name for p in (full / "checkpoint-2").iterdir()}
    resumed = tmp_path / "resumed"
    resumed.mkdir()
    shutil.copy(full / "recipe.yaml", resumed / "recipe.yaml")
    shutil.copytree(full / "checkpoint-2", resumed / "checkpoint-2")
    launch(write_recipe(PPO_2PROC.format(out=resumed, model=tiny_model_dir), "resumed.yaml"), tmp_path,
           "trainer.resume_from_checkpoint=last")
    for name in ("adapter_model.safetensors", "value_head.safetensors"):
        assert max_delta(full / name, resumed / name) == 0.0, name
