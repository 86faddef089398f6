"""Resume picks the newest *complete* checkpoint and continues to the same adapter as an uninterrupted run."""

import shutil

import torch
from safetensors.torch import load_file

import rlft
from rlft.run.checkpoints import MARKER, last_complete_checkpoint

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


# --- GRPO with every signal feature: the checkpoint carries the sampler, buffer, statistics and TRL's counter ---

class _Reward:
    """'solved' prompts always score 1, 'tie' prompts 0 (zero variance both), others alternate 0/1."""

    __name__ = "solved_tie_var"

    def __call__(self, prompts, completions, **kwargs):
        text = [p[-1]["content"] for p in prompts]
        return [1.0 if "solved" in t else 0.0 if "tie" in t else float(i % 2) for i, t in enumerate(text)]


def _signal_trainer(tiny_model_dir, out, save=False):
    from datasets import Dataset
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import GRPOConfig

    from rlft.recipe.sections import DecodingConfig, SignalConfig
    from rlft.grpo import SignalGRPOTrainer

    rows = [{"prompt": [{"role": "user", "content": f"{kind} question {i}"}]}
            for kind in ("solved", "tie", "var") for i in range(6)]
    torch.manual_seed(0)
    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    model = get_peft_model(AutoModelForCausalLM.from_pretrained(tiny_model_dir),
                           LoraConfig(r=4, lora_alpha=8, target_modules="all-linear", task_type="CAUSAL_LM"))
    args = GRPOConfig(output_dir=str(out), per_device_train_batch_size=4, num_generations=2, steps_per_generation=2,
                      max_completion_length=6, max_steps=4, learning_rate=5e-3, beta=0.0, report_to=[],
                      save_strategy="steps" if save else "no", save_steps=1, use_cpu=True, logging_steps=1, seed=0)
    signal = SignalConfig(drop_zero_std=True, refill_rounds=2, adaptive=True, seed=3)
    decoding = DecodingConfig(prefill="<intent>", constrain_labels=True)
    return SignalGRPOTrainer(model=model, reward_funcs=[_Reward()], args=args, train_dataset=Dataset.from_list(rows),
                             processing_class=tok, signal=signal, decoding=decoding,
                             labels=["cancel_order", "track_order", "get_refund"])


def _lora(trainer) -> dict[str, torch.Tensor]:
    return {n: p.detach().clone() for n, p in trainer.model.named_parameters() if "lora_" in n}


def test_grpo_signal_resume_on_and_off_a_generation_boundary_equals_uninterrupted_run(tiny_model_dir, tmp_path):
    from rlft.grpo.signal_state import STATE_FILE

    full = _signal_trainer(tiny_model_dir, tmp_path / "full", save=True)
    full.train()
    want = _lora(full)
    totals = dict(full.signal_totals)
    assert totals["adaptive_draws"] > 0 and totals["groups_dropped"] > 0  # the features under test were exercised
    assert (tmp_path / "full" / "checkpoint-3" / STATE_FILE).is_file()
    # steps_per_generation=2: checkpoint-2 sits on a generation boundary, checkpoint-3 in the middle of one
    for step in (2, 3):
        out = tmp_path / f"resumed-{step}"
        shutil.copytree(tmp_path / "full" / f"checkpoint-{step}", out / f"checkpoint-{step}")
        resumed = _signal_trainer(tiny_model_dir, out)
        resumed.train(resume_from_checkpoint=str(out / f"checkpoint-{step}"))
        got = _lora(resumed)
        diff = max(float((want[k] - got[k]).abs().max()) for k in want)
        assert diff == 0.0, f"resumed from checkpoint-{step}: max |delta| {diff}"
        assert resumed.signal_totals == totals
    # without rlft's state the same resume differs: the test would catch a checkpoint that lost it
    out = tmp_path / "no-state"
    shutil.copytree(tmp_path / "full" / "checkpoint-3", out / "checkpoint-3")
    (out / "checkpoint-3" / STATE_FILE).unlink()
    blind = _signal_trainer(tiny_model_dir, out)
    blind.train(resume_from_checkpoint=str(out / "checkpoint-3"))
    got = _lora(blind)
    assert max(float((want[k] - got[k]).abs().max()) for k in want) > 0.0


GRPO_RECIPE = """algorithm: grpo
output_dir: {out}
model: {{name: {model}}}
adapter: {{type: lora, r: 4, alpha: 8}}
data: {{source: demo:intents, demo_size: 24}}
rewards: [{{name: intent}}]
decoding: {{prefill: "<intent>", constrain_labels: true}}
signal: {{drop_zero_std: true, refill_rounds: 2, adaptive: true}}
trainer: {{max_steps: 4, per_device_train_batch_size: 4, num_generations: 2, steps_per_generation: 2,
          max_completion_length: 8, learning_rate: 0.05, beta: 0.0, save_strategy: steps, save_steps: 1}}
evaluation: {{before: false, after: false}}
"""


def test_grpo_signal_kill_9_then_resume_last_equals_uninterrupted_run(tiny_model_dir, write_recipe, tmp_path):
    import os
    import signal
    import subprocess
    import sys
    import time

    from tests.conftest import ROOT

    full = tmp_path / "full"
    rlft.train(write_recipe(GRPO_RECIPE.format(out=full, model=tiny_model_dir), "full.yaml"))
    killed = tmp_path / "killed"
    recipe = write_recipe(GRPO_RECIPE.format(out=killed, model=tiny_model_dir), "killed.yaml")
    proc = subprocess.Popen([sys.executable, "-m", "rlft", "train", str(recipe)], cwd=ROOT,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env={**os.environ})
    deadline = time.monotonic() + 300
    while not (killed / "checkpoint-1" / MARKER).is_file() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL  # killed mid-run, not finished
    last = last_complete_checkpoint(killed)
    assert last is not None and int(last.name.split("-")[1]) < 4
    rlft.train(recipe, ["trainer.resume_from_checkpoint=last"])
    a = load_file(str(full / "adapter_model.safetensors"))
    b = load_file(str(killed / "adapter_model.safetensors"))
    assert a.keys() == b.keys()
    assert max(float((a[k] - b[k]).abs().max()) for k in a) == 0.0, f"resumed from {last.name}"
