"""Logging where users already look: `trainer.report_to` passes through to TRL, and rlft's own metrics (signal/*,
heldout/* from periodic evaluation, reward means) reach the tracker; TRL's `log_completions` works from `trainer:`.

One 2-step GRPO run on the tiny Llama with `report_to: [tensorboard]` (TensorBoard's writer here is tensorboardX,
the test extra): the event file is read back record by record, and a plain `TrainerCallback` recording `on_log` (the
same hook every tracker integration uses) sees the same keys.
"""

import struct
from pathlib import Path

import pytest
from transformers import TrainerCallback

import rlft
from rlft.recipe.load import load_recipe
from rlft.trainers.args import build_args


class Recorder(TrainerCallback):
    def __init__(self):
        self.logs: list[tuple[int, dict]] = []

    def on_log(self, args, state, control, logs=None, **kwargs):
        self.logs.append((state.global_step, dict(logs or {})))


def _scalars(event_file: Path) -> dict[str, list[tuple[int, float]]]:
    """Every scalar of a TensorBoard event file: TFRecord framing (u64 length, u32 crc, data, u32 crc)."""
    from tensorboardX.proto import event_pb2

    data, pos, out = event_file.read_bytes(), 0, {}
    while pos < len(data):
        (length,) = struct.unpack("<Q", data[pos:pos + 8])
        event = event_pb2.Event.FromString(data[pos + 12:pos + 12 + length])
        pos += 12 + length + 4
        for value in event.summary.value:
            out.setdefault(value.tag, []).append((event.step, value.simple_value))
    return out


@pytest.fixture(scope="module")
def logged_run(tmp_path_factory, tiny_model_dir):
    root = tmp_path_factory.mktemp("logging")
    data = root / "intents.csv"
    rows = [("please cancel my order", "cancel_order"), ("where is my parcel", "track_order"),
            ("I want my money back", "get_refund"), ("stop the order now", "cancel_order")] * 3
    data.write_text("utterance,intent\n" + "".join(f"{u},{i}\n" for u, i in rows))
    recipe = root / "recipe.yaml"
    recipe.write_text(f"""
output_dir: {root / 'run'}
model: {{name: {tiny_model_dir}, device: cpu}}
adapter: {{type: lora, r: 4, alpha: 8}}
data: {{source: {data}, eval_fraction: 0.34, system_prompt: "Intents: {{labels}}"}}
rewards: [{{name: intent}}]
decoding: {{prefill: "<intent>", constrain_labels: true}}
trainer: {{max_steps: 2, per_device_train_batch_size: 4, num_generations: 4, max_completion_length: 8,
          report_to: [tensorboard], log_completions: true}}
evaluation: {{before: false, after: false, every_steps: 1, max_samples: 4, batch_size: 4}}
""")
    recorder = Recorder()
    result = rlft.train(load_recipe(recipe), callbacks=[recorder])
    return recipe, result, recorder


def test_report_to_from_the_recipe_overrides_rlfts_none(logged_run, tmp_path):
    recipe, _, _ = logged_run
    assert build_args(load_recipe(recipe), "cpu").report_to == ["tensorboard"]
    plain = tmp_path / "plain.yaml"
    plain.write_text("data: {source: demo:intents}\nrewards: [{name: intent}]\n")
    assert build_args(load_recipe(plain), "cpu").report_to == []  # rlft's default: no integration unless asked


def test_rlft_metrics_reach_the_tensorboard_event_file(logged_run):
    _, result, _ = logged_run
    files = list((result.output_dir / "runs").rglob("events.out.tfevents*"))
    assert len(files) == 1, files
    scalars = _scalars(files[0])
    # Trainer's TensorBoard callback prefixes train/ (rewrite_logs); one point per step
    for tag in ("train/signal/frac_zero_std_first_draw", "train/signal/frac_all_correct", "train/rewards/intent/mean",
                "train/reward", "train/heldout/intent_accuracy", "train/heldout/format_rate"):
        assert [step for step, _ in scalars[tag]] == [1, 2], tag
    history = result.metrics["heldout_history"]
    assert [v for _, v in scalars["train/heldout/intent_accuracy"]] == pytest.approx(
        [row["intent_accuracy"] for row in history])
    assert scalars["train/heldout/format_rate"][0][1] == 1.0  # constrained decoding: every reply parses


def test_on_log_callbacks_see_signal_heldout_and_reward_metrics(logged_run):
    _, _, recorder = logged_run
    seen = {key for _, logs in recorder.logs for key in logs}
    assert {"signal/frac_all_wrong", "rewards/intent/mean", "heldout/intent_accuracy", "heldout/macro_f1"} <= seen
    heldout_steps = [step for step, logs in recorder.logs if "heldout/intent_accuracy" in logs]
    assert heldout_steps == [1, 2]


def test_log_completions_from_trainer_writes_trls_completion_tables(logged_run):
    import pandas as pd

    _, result, _ = logged_run
    tables = sorted((result.output_dir / "completions").glob("completions_*.parquet"))
    assert [p.name for p in tables] == ["completions_00001.parquet", "completions_00002.parquet"]
    frame = pd.read_parquet(tables[0])
    assert len(frame) == 4 and {"prompt", "completion", "intent", "advantage"} <= set(frame.columns)
    # conversational completions: the generated text after the prefill (the prefill is part of the prompt ids)
    labels = {"cancel_order", "get_refund", "track_order"}
    assert all(c[0]["content"].removesuffix("</intent>") in labels for c in frame["completion"])
