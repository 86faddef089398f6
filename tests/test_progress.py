"""The compact progress line (rlft.run.progress): one line per log step with the metrics that matter, no raw dict.

A 2-step GRPO run on the tiny Llama with two rewards prints exactly two `[rlft] step N/2 | ...` lines and a
`trained` line, nothing that looks like transformers' `{'loss': ...}` dict, while the full dict still reaches
`log_history` (metrics.json). `format_line` is checked on hand-made logs of each trainer family.
"""

from __future__ import annotations

import json
import re

import pytest

import rlft
from rlft.run.progress import format_line
from rlft.recipe.load import load_recipe

NUM = r"-?\d+\.\d+"


def intents_csv(tmp_path, rows):
    """An utterance,intent CSV of `rows` in tmp_path (also used by tests/test_time_budget.py)."""
    data = tmp_path / "intents.csv"
    data.write_text("utterance,intent\n" + "".join(f"{u},{i}\n" for u, i in rows))
    return data
STEP_LINE = re.compile(rf"\[rlft\] step (\d)/2 \| reward {NUM} \(intent {NUM}, length {NUM}\) \| acc {NUM} \| "
                       rf"zero-std {NUM} \| loss {NUM} \| {NUM} s/step \| eta \d+:\d\d")


def test_compact_lines_replace_the_raw_dict(tmp_path, tiny_model_dir, capfd):
    data = intents_csv(tmp_path, [("please cancel my order", "cancel_order"), ("where is my parcel", "track_order"),
                                  ("I want my money back", "get_refund"), ("stop the order now", "cancel_order")] * 3)
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(f"""
output_dir: {tmp_path / 'run'}
model: {{name: {tiny_model_dir}, device: cpu}}
adapter: {{type: lora, r: 4, alpha: 8}}
data: {{source: {data}, eval_fraction: 0.34, system_prompt: "Intents: {{labels}}"}}
rewards: [{{name: intent}}, {{name: length, params: {{max_words: 2}}, weight: 0.5}}]
decoding: {{prefill: "<intent>", constrain_labels: true}}
trainer: {{max_steps: 2, per_device_train_batch_size: 4, num_generations: 4, max_completion_length: 8}}
evaluation: {{before: false, after: false}}
""")
    result = rlft.train(load_recipe(recipe))
    out, err = capfd.readouterr()
    steps = [line for line in out.splitlines() if line.startswith("[rlft] step ")]
    assert len(steps) == 2, out
    for n, line in enumerate(steps, start=1):
        match = STEP_LINE.fullmatch(line)
        assert match, line
        assert match.group(1) == str(n)
    assert re.search(rf"^\[rlft\] trained 2 steps in {NUM} s \({NUM} s/step\), train_loss {NUM}$", out, re.M), out
    for stream in (out, err):  # transformers' dict printing (ProgressCallback / PrinterCallback) is gone
        assert "{'loss'" not in stream and "'reward':" not in stream, stream
    # the full dict is still recorded
    logged = json.loads((result.output_dir / "metrics.json").read_text())["log_history"]
    assert {"completions/mean_length", "rewards/intent/mean", "rewards/length/mean", "signal/frac_all_correct",
            "learning_rate"} <= set(logged[0])


@pytest.mark.parametrize("logs,expected", [
    # GRPO, one reward: no per-reward detail; rlft's first-draw zero-std wins over TRL's post-filter one
    ({"reward": 0.5, "rewards/intent/mean": 0.5, "intent/accuracy": 0.25, "frac_reward_zero_std": 0.0,
      "signal/frac_zero_std_first_draw": 0.75, "kl": 0.00123, "loss": 0.1},
     "[rlft] step 3/10 | reward 0.500 | acc 0.250 | zero-std 0.75 | kl 0.0012 | loss 0.1000 | 1.50 s/step | eta 0:10"),
    # plain TRL GRPO: its own zero-std fraction
    ({"reward": -1.0, "frac_reward_zero_std": 1.0},
     "[rlft] step 3/10 | reward -1.000 | zero-std 1.00 | 1.50 s/step | eta 0:10"),
    # DPO: preference accuracy and margin, no reward
    ({"loss": 0.69, "rewards/accuracies": 0.5, "rewards/margins": 0.01, "rewards/chosen": 0.1},
     "[rlft] step 3/10 | acc 0.500 | margin 0.010 | loss 0.6900 | 1.50 s/step | eta 0:10"),
    # PPO: reward and kl (which can be negative: docs/algorithms.md)
    ({"reward": 0.2, "kl": -0.003, "loss": 1.5},
     "[rlft] step 3/10 | reward 0.200 | kl -0.0030 | loss 1.5000 | 1.50 s/step | eta 0:10"),
])
def test_format_line_per_trainer_family(logs, expected):
    assert format_line(logs, 3, 10, 1.5, 10.4) == expected


def test_format_line_long_eta_and_first_log():
    assert format_line({"loss": 1.0}, 1, 5000, None, 3725) == "[rlft] step 1/5000 | loss 1.0000 | eta 1:02:05"
    assert format_line({}, 1, -1, None, None) == "[rlft] step 1"


@pytest.mark.parametrize("keep_bar", [False, True])
def test_dict_printers_are_replaced_and_the_bar_kept_only_when_asked(keep_bar):
    from types import SimpleNamespace

    from transformers.trainer_callback import CallbackHandler, PrinterCallback, ProgressCallback

    from rlft.run.progress import CompactProgress, use_compact_progress

    handler = CallbackHandler([ProgressCallback(), PrinterCallback()], None, None, None, None)
    use_compact_progress(SimpleNamespace(callback_handler=handler), keep_bar=keep_bar)
    kinds = [type(cb).__name__ for cb in handler.callbacks if type(cb).__name__ != "DefaultFlowCallback"]
    assert kinds == (["_BarOnly", "CompactProgress"] if keep_bar else ["CompactProgress"])
    bar = handler.callbacks[-2] if keep_bar else None
    assert bar is None or bar.on_log(None, None, None, logs={"loss": 1.0}) is None  # transformers' would print it
    assert isinstance(handler.callbacks[-1], CompactProgress)


def test_no_signal_warning_is_kept_in_metrics_and_model_card(tmp_path, tiny_model_dir, capfd):
    # a reward that ties on every completion (no reply is longer than 1000 words): every group has zero spread
    data = intents_csv(tmp_path, [("please cancel my order", "cancel_order"),
                                  ("where is my parcel", "track_order")] * 4)
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(f"""
output_dir: {tmp_path / 'run'}
model: {{name: {tiny_model_dir}, device: cpu}}
adapter: {{type: lora, r: 4, alpha: 8}}
data: {{source: {data}, eval_fraction: 0.25}}
rewards: [{{name: length, params: {{max_words: 1000}}}}]
trainer: {{max_steps: 2, per_device_train_batch_size: 4, num_generations: 4, max_completion_length: 4,
           logging_steps: 1}}
evaluation: {{before: false, after: false}}
""")
    result = rlft.train(load_recipe(recipe))
    out = capfd.readouterr().out
    warnings = json.loads((result.output_dir / "metrics.json").read_text())["warnings"]
    assert len(warnings) == 1 and warnings[0].startswith("no learning signal: in all 2 logged steps")
    assert f"[rlft] warning: {warnings[0]}" in out
    card = (result.output_dir / "README.md").read_text()
    assert f"## Warnings\n- {warnings[0]}\n" in card
