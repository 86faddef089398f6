"""`rlft check` on the tiny model: a good recipe passes with every section of the report; a reward that raises or
returns the wrong length fails with exit 1 and its name; a judge whose projected spend exceeds its budget fails
with exit 4 (stub judge server on loopback); a recipe mistake is exit 2 before any model loads."""

from __future__ import annotations

import pytest

from rlft.cli import run
from tests.judge_stub_server import StubJudge, StubServer, keyword_responder

REWARDS = '''
def raises(prompts, completions, **kwargs):
    raise ZeroDivisionError("bad reward")

def short(prompts, completions, **kwargs):
    return [1.0] * (len(completions) - 1)

def flaky(prompts, completions, **kwargs):
    import random
    return [random.random() for _ in completions]
'''


def grpo_recipe(tiny_model_dir, tmp_path, rewards: str) -> str:
    return f"""algorithm: grpo
output_dir: {tmp_path / 'out'}
model: {{name: {tiny_model_dir}}}
adapter: {{type: lora, r: 4, alpha: 8}}
data: {{source: "demo:intents", demo_size: 24, system_prompt: "Classify."}}
rewards:
{rewards}
decoding: {{prefill: "<intent>", constrain_labels: true}}
trainer: {{max_steps: 10, per_device_train_batch_size: 4, num_generations: 2, max_completion_length: 6}}
"""


@pytest.fixture
def reward_file(tmp_path):
    path = tmp_path / "my_rewards.py"
    path.write_text(REWARDS)
    return path


def check(path, capsys, *overrides) -> tuple[int, str]:
    code = run(["check", str(path), *overrides])
    captured = capsys.readouterr()
    return code, captured.out + captured.err


def test_good_recipe_reports_every_section(tiny_model_dir, tmp_path, write_recipe, reward_file, capsys):
    path = write_recipe(grpo_recipe(tiny_model_dir, tmp_path, f"  - name: intent\n  - name: {reward_file}:flaky"))
    code, out = check(path, capsys)
    assert code == 0, out
    lines = [line for line in out.splitlines() if line.startswith("[rlft check]")]
    assert lines[0].startswith("[rlft check] recipe: ok (grpo, 2 reward(s)")
    assert "data: 21 train / 3 held-out rows" in out  # demo_size 24, eval_fraction 0.1
    assert "reward 'intent': ok, 4 values" in out and "0 None (abstain), deterministic" in out
    assert "reward 'flaky': ok, 4 values" in out and "NOT deterministic (two calls differ)" in out
    assert "zero-variance forecast:" in out and "of 2 generations at temperature 1.0" in out
    assert "one forward+backward on 4x" in out and "for 10 steps" in out
    assert lines[-1] == "[rlft check] result: ok (exit 0)"
    assert not (tmp_path / "out").exists()  # a dry run writes no output folder


def test_broken_rewards_fail_and_are_named(tiny_model_dir, tmp_path, write_recipe, reward_file, capsys):
    """One that raises, one that returns one value too few: exit 1, each named with what it did."""
    rewards = f"  - name: intent\n  - name: {reward_file}:raises\n  - name: {reward_file}:short"
    path = write_recipe(grpo_recipe(tiny_model_dir, tmp_path, rewards))
    code, out = check(path, capsys)
    assert code == 1, out
    assert "reward 'intent': ok, 4 values" in out
    assert "reward 'raises': BROKEN: RewardError: reward 'raises' raised ZeroDivisionError on row 1" in out
    assert "reward 'short': BROKEN: RewardError: reward 'short' returned 3 values for 4 completions" in out
    assert "zero-variance forecast" not in out  # no forecast on rewards that do not work
    assert "[rlft check] result: broken reward(s): raises, short (exit 1)" in out


def test_judge_projection_over_budget(tiny_model_dir, tmp_path, write_recipe, capsys, monkeypatch):
    monkeypatch.setenv("RLFT_CHECK_KEY", "sk-check")
    stub = StubJudge(responder=keyword_responder("fee"))
    with StubServer(stub) as url:
        judge = f"""  - name: judge
    params: {{model: stub, base_url: {url}, api_key_env: RLFT_CHECK_KEY, guideline: Mention the fee.,
             injection_guard: false, min_words: 0, max_retries: 0, price_input_per_mtok: 1000.0,
             price_output_per_mtok: 1000.0, budget_usd: 0.5}}"""
        path = write_recipe(grpo_recipe(tiny_model_dir, tmp_path, judge))
        code, out = check(path, capsys)
    assert code == 4, out
    assert stub.requests > 0  # the judge was really called on the samples
    projected = next(line for line in out.splitlines() if "judge 'judge': projected for 10 steps x 4 completions" in line)
    assert "40 judgments" in projected and "OVER BUDGET (budget_usd=0.5)" in projected
    assert "[rlft check] result: judge projection over budget: judge (exit 4)" in out


def test_recipe_mistake_is_exit_2(tmp_path, write_recipe, capsys):
    path = write_recipe(f"algorithm: grpo\noutput_dir: {tmp_path}/o\nrewards: [{{name: intent}}]\n"
                        f"trainer: {{learning_rate: -1}}\n")
    code, out = check(path, capsys)
    assert code == 2
    assert "trainer.learning_rate: expected a number >= 0.0, got -1" in out


@pytest.mark.slow
def test_gpu_check_script_cpu_smoke(tmp_path):
    """benchmarks/gpu_check.sh --cpu: every algorithm trains 2 fp32 LoRA steps on the tiny model; table + JSON."""
    import json
    import subprocess

    from tests.conftest import ROOT

    proc = subprocess.run([str(ROOT / "benchmarks" / "gpu_check.sh"), "--cpu", "--steps", "2", "--out",
                           str(tmp_path)], capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    rows = json.loads((tmp_path / "results.json").read_text())["rows"]
    assert [r["case"] for r in rows] == ["grpo + lora", "dpo + lora", "kto + lora", "ppo + lora", "label_pg + lora"]
    assert all(r["ok"] and r["steps"] == 2 and r["step_s"] > 0 and r["peak_mib"] > 0 for r in rows)
    assert "| grpo + lora | ok | 2 |" in proc.stdout and "5/5 ok" in proc.stdout


def test_gpu_check_without_cuda_says_so(capsys, monkeypatch, tmp_path):
    """Without --cpu on a machine without CUDA: exit 2 and the hint, before building or training anything."""
    import importlib.util

    import torch

    from tests.conftest import ROOT

    spec = importlib.util.spec_from_file_location("gpu_check", ROOT / "benchmarks" / "gpu_check.py")
    gpu_check = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(gpu_check)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert gpu_check.main(["--out", str(tmp_path / "gc")]) == 2
    assert not (tmp_path / "gc").exists()
    assert "no CUDA device" in capsys.readouterr().err
