"""Issue 30, item 3, "a curve that ends high": `evaluation.select_fraction` (keep_best chooses on rows carved from
training, not on the reported held-out rows) and `adapter.ema_decay` (the saved adapter is a moving average of the
trainable weights; checkpoints carry the average, so a resumed run ends with the same adapter)."""

from __future__ import annotations

import csv
import json
import shutil
from types import SimpleNamespace

import pytest
import torch
from safetensors.torch import load_file
from transformers import TrainerCallback

import rlft
from rlft.cli import run
from rlft.recipe.sections import DataConfig
from rlft.data.loading import prepare
from rlft.run.ema import STATE_FILE
from rlft.errors import RecipeError

# ---------------------------------------------------------------------------------------------------------------
# The selection split
# ---------------------------------------------------------------------------------------------------------------

# Templated data: per label, phrasing families (the words that say which family) under shared request frames, so
# rows of one family are near-duplicates and a row split puts a family on both sides.
FAMILIES = {
    "cancel_order": ["cancel my order", "stop the purchase", "revoke that buy", "abort checkout now",
                     "drop this transaction"],
    "track_order": ["track my parcel", "where is package", "locate shipment status", "follow delivery route",
                    "trace courier box"],
    "get_refund": ["refund my money", "reimburse the payment", "return cash back", "repay charge amount",
                   "credit card reversal"],
}
FRAMES = ["please {}", "i want to {}", "can you {}", "help me {}", "i need to {}", "could you {}"]


def _templated_csv(path):
    with path.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["utterance", "intent"])
        for label, families in FAMILIES.items():
            for family in families:
                for frame in FRAMES:
                    writer.writerow([frame.format(family), label])
    return path


def _utterances(ds):
    return [row["utterance"] for row in ds]


def test_selection_split_is_carved_from_training_rows_disjoint_and_grouped(tmp_path):
    from rlft.data.splits import near_duplicate_clusters

    source = _templated_csv(tmp_path / "templated.csv")
    cfg = DataConfig(source=str(source), holdout="grouped", eval_fraction=0.2)
    plain = prepare(cfg, "grpo", 7)
    data = prepare(cfg, "grpo", 7, select_fraction=0.25)
    assert plain.select is None
    train, held, select = _utterances(data.train), _utterances(data.eval), _utterances(data.select)
    # the held-out split is untouched: the same rows as without a selection split
    assert sorted(held) == sorted(_utterances(plain.eval))
    # the selection rows are training rows held back: disjoint from what trains and from the held-out rows
    assert select and not set(select) & set(train) and not set(select) & set(held)
    assert sorted(train + select) == sorted(_utterances(plain.train))
    assert 0.1 * len(plain.train) <= len(select) <= 0.5 * len(plain.train)
    # grouped: no near-duplicate cluster of the training rows has members on both sides
    rows = train + select
    labels = [r["intent"] for r in data.train] + [r["intent"] for r in data.select]
    clusters = near_duplicate_clusters(rows, labels, 0.4, 0.25, cap=2.5).cluster
    side = {}
    for text, cluster in zip(rows, clusters, strict=True):
        side.setdefault(cluster, set()).add(text in set(select))
    assert len(side) > 3 and all(len(s) == 1 for s in side.values()), side
    # and it differs from a row split, which puts families on both sides of this data
    rows_cfg = DataConfig(source=str(source), holdout="random", eval_fraction=0.2)
    by_rows = prepare(rows_cfg, "grpo", 7, select_fraction=0.25)
    r_train, r_select = _utterances(by_rows.train), _utterances(by_rows.select)
    family_of = {frame.format(fam): fam for fams in FAMILIES.values() for fam in fams for frame in FRAMES}
    assert {family_of[u] for u in r_train} & {family_of[u] for u in r_select}


def test_selection_split_of_preference_data_holds_whole_prompts_back():
    cfg = DataConfig(source="demo:intent_pairs", demo_size=60)
    data = prepare(cfg, "dpo", 3, select_fraction=0.2)
    prompts = [{json.dumps(p) for p in part["prompt"]} for part in (data.train, data.select, data.eval)]
    assert all(prompts) and not prompts[0] & prompts[1] and not prompts[1] & prompts[2]


DPO = """algorithm: dpo
output_dir: {out}
model: {{name: {model}}}
adapter: {{type: lora, r: 4, alpha: 8{adapter}}}
data: {{source: demo:intent_pairs, demo_size: 40}}
trainer: {{max_steps: {steps}, per_device_train_batch_size: 4, learning_rate: 0.05, max_length: 64{trainer}}}
evaluation: {{before: false, after: false, keep_best: true{evaluation}}}
"""

# accuracy the fake evaluation reports at each periodic evaluation: the two splits disagree on the best step
SCORES = {"selection": [0.2, 0.9, 0.1], "held-out": [0.9, 0.1, 0.2]}


@pytest.mark.parametrize("select", [True, False])
def test_keep_best_chooses_on_the_selection_split_and_leaves_held_out_rows_alone(
        select, tiny_model_dir, write_recipe, tmp_path, monkeypatch, capsys):
    out = tmp_path / "run"
    evaluation = ", every_steps: 1" + (", select_fraction: 0.25" if select else "")
    path = write_recipe(DPO.format(out=out, model=tiny_model_dir, adapter="", steps=3, trainer="",
                                   evaluation=evaluation))
    recipe = rlft.load_recipe(path)
    expected = prepare(recipe.data, "dpo", recipe.seed, select_fraction=0.25 if select else 0.0)
    held = {json.dumps(p) for p in expected.eval["prompt"]}
    chosen = {json.dumps(p) for p in (expected.select if select else expected.eval)["prompt"]}
    split = "selection" if select else "held-out"
    seen = []

    def fake(model, tokenizer, rows, **kwargs):
        prompts = {json.dumps(p) for p in rows["prompt"]}
        seen.append(prompts)
        return SimpleNamespace(metrics={"intent_accuracy": SCORES[split][len(seen) - 1]}, per_intent={},
                               n=len(rows))

    monkeypatch.setattr("rlft.run.pipeline.evaluate", fake)
    capsys.readouterr()
    result = rlft.train(recipe)
    printed = capsys.readouterr().out

    assert len(seen) == 3 and all(s == chosen for s in seen)
    if select:
        assert all(not s & held for s in seen)  # periodic evaluation never looked at the reported rows
    metrics = json.loads((out / "metrics.json").read_text())
    best_step = 2 if select else 1
    assert metrics["best"]["step"] == best_step and metrics["best"]["split"] == split
    assert metrics["best"]["value"] == SCORES[split][best_step - 1]
    assert [h["split"] for h in metrics["heldout_history"]] == [split] * 3
    prefix = "select/" if select else "heldout/"
    assert [h[f"{prefix}intent_accuracy"] for h in metrics["log_history"] if f"{prefix}intent_accuracy" in h] == \
        SCORES[split]
    assert (out / "best" / "adapter_model.safetensors").is_file()
    card = (out / "README.md").read_text()
    assert f"step {best_step}" in card and ("select_fraction" in card) == select
    assert ("select_rows" in metrics) == select and result.metrics["eval_rows"] == len(expected.eval)
    warning = "evaluation.keep_best: chooses output_dir/best on the held-out rows the final report is measured on"
    assert (warning in printed) != select


def test_validate_warns_in_one_line_when_keep_best_selects_on_the_reported_rows(tiny_model_dir, write_recipe,
                                                                                 tmp_path, capsys):
    path = write_recipe(DPO.format(out=tmp_path / "run", model=tiny_model_dir, adapter="", steps=3, trainer="",
                                   evaluation=", every_steps: 1"))
    assert run(["validate", str(path)]) == 0
    lines = [line for line in capsys.readouterr().out.splitlines() if "warning" in line]
    assert lines == [f"[rlft] warning: {path}: evaluation.keep_best: chooses output_dir/best on the held-out rows "
                     f"the final report is measured on (selection on the test set: its figure is optimistic); set "
                     f"evaluation.select_fraction, e.g. 0.1, to choose on rows held back from training"]
    assert run(["validate", str(path), "evaluation.select_fraction=0.1"]) == 0
    assert "warning" not in capsys.readouterr().out
    assert run(["validate", str(path), "evaluation.select_fraction=1.5"]) == 2
    assert capsys.readouterr().err.strip().splitlines()[-1] == (
        "error: command line: evaluation.select_fraction: expected a share of the training rows in [0, 1) (0: off), "
        "got 1.5")
    assert run(["validate", str(path), "adapter.ema_decay=1"]) == 2
    assert capsys.readouterr().err.strip().splitlines()[-1] == (
        "error: command line: adapter.ema_decay: expected a decay in [0, 1) (0: off), got 1")


# ---------------------------------------------------------------------------------------------------------------
# The weight average
# ---------------------------------------------------------------------------------------------------------------

class RecordWeights(TrainerCallback):
    """The adapter's trained weights (as saved: PEFT's state dict) at the start and after every optimizer step."""

    def __init__(self):
        self.steps: list[dict[str, torch.Tensor]] = []

    def _record(self, model):
        from peft import get_peft_model_state_dict

        self.steps.append({k: v.detach().to(torch.float32).clone()
                           for k, v in get_peft_model_state_dict(model).items()})

    def on_train_begin(self, args, state, control, model=None, **kwargs):
        self._record(model)

    def on_step_end(self, args, state, control, model=None, **kwargs):
        self._record(model)


def _ema(steps, decay):
    shadow = dict(steps[0])
    for weights in steps[1:]:
        shadow = {k: decay * shadow[k] + (1 - decay) * weights[k] for k in shadow}
    return shadow


def _close(a, b, atol=1e-6):
    assert a.keys() == b.keys()
    return all(torch.allclose(a[k], b[k], atol=atol) for k in a)


DECAY = 0.6


@pytest.fixture(scope="module")
def ema_runs(tiny_model_dir, tmp_path_factory):
    """Two 4-step DPO runs with periodic evaluation and checkpoints at steps 2 and 4: one with adapter.ema_decay,
    one with it at 0; the weights each trained and the weights each periodic evaluation saw."""
    from peft import get_peft_model_state_dict

    root = tmp_path_factory.mktemp("ema")
    runs = {}
    for name, decay in (("ema", DECAY), ("off", 0.0)):
        out = root / name
        path = root / f"{name}.yaml"
        path.write_text(DPO.format(out=out, model=tiny_model_dir, adapter=f", ema_decay: {decay}", steps=4,
                                   trainer=", save_strategy: steps, save_steps: 2",
                                   evaluation=", every_steps: 2, select_fraction: 0.2"))
        evaluated = []

        def fake(model, tokenizer, rows, evaluated=evaluated, **kwargs):
            evaluated.append({k: v.detach().clone() for k, v in get_peft_model_state_dict(model).items()})
            return SimpleNamespace(metrics={"intent_accuracy": 0.5}, per_intent={}, n=len(rows))

        recorder = RecordWeights()
        with pytest.MonkeyPatch.context() as mp:
            mp.setattr("rlft.run.pipeline.evaluate", fake)
            rlft.train(rlft.load_recipe(path), callbacks=[recorder])
        runs[name] = SimpleNamespace(out=out, path=path, steps=recorder.steps, evaluated=evaluated,
                                     saved=load_file(str(out / "adapter_model.safetensors")))
    return runs


def test_saved_adapter_is_the_moving_average_of_the_trained_weights(ema_runs):
    run_ = ema_runs["ema"]
    assert len(run_.steps) == 5  # the start and 4 optimizer steps
    assert not _close(run_.steps[-1], run_.steps[-2])  # the weights moved: the average differs from the last step
    assert _close(run_.saved, _ema(run_.steps, DECAY))
    assert not _close(run_.saved, run_.steps[-1])
    # periodic evaluation (steps 2, 4) and best/ saw the average of that step, and training went on from the
    # trained weights (the recorder saw them after each evaluation)
    assert len(run_.evaluated) == 2
    assert _close(run_.evaluated[0], _ema(run_.steps[:3], DECAY)) and _close(run_.evaluated[1], run_.saved)
    best = load_file(str(run_.out / "best" / "adapter_model.safetensors"))
    assert _close(best, _ema(run_.steps[:3], DECAY))  # equal scores: the first evaluation stays best
    metrics = json.loads((run_.out / "metrics.json").read_text())
    assert metrics["ema"] == {"decay": DECAY, "steps_averaged": 4}
    assert "moving average of the trainable weights, decay 0.6 over 4" in (run_.out / "README.md").read_text()
    for step in (2, 4):
        assert (run_.out / f"checkpoint-{step}" / STATE_FILE).is_file()


def test_decay_0_trains_and_saves_exactly_what_a_run_without_it_does(ema_runs):
    on, off = ema_runs["ema"], ema_runs["off"]
    # the average never leaks into training: both runs trained the same weights step by step
    assert len(on.steps) == len(off.steps) == 5
    assert all(_close(a, b, atol=0) for a, b in zip(on.steps, off.steps, strict=True))
    # decay 0 is off: the last trained weights are saved and evaluated, no average is checkpointed
    assert _close(off.saved, off.steps[-1], atol=0)
    assert _close(off.evaluated[0], off.steps[2], atol=0)
    assert not (off.out / "checkpoint-2" / STATE_FILE).exists()
    assert "ema" not in json.loads((off.out / "metrics.json").read_text())


@pytest.mark.parametrize("keep_average", [True, False])
def test_resume_with_the_average_ends_with_the_same_adapter(ema_runs, keep_average, tmp_path, monkeypatch):
    full = ema_runs["ema"]
    resumed = tmp_path / "resumed"
    resumed.mkdir()
    shutil.copytree(full.out / "checkpoint-2", resumed / "checkpoint-2")
    if not keep_average:  # the control: without the checkpoint's average the resumed run ends elsewhere
        (resumed / "checkpoint-2" / STATE_FILE).unlink()
    monkeypatch.setattr("rlft.run.pipeline.evaluate", lambda model, tokenizer, rows, **kw: SimpleNamespace(
        metrics={"intent_accuracy": 0.5}, per_intent={}, n=len(rows)))
    text = full.path.read_text().replace(str(full.out), str(resumed))
    path = tmp_path / "resumed.yaml"
    path.write_text(text)
    rlft.train(rlft.load_recipe(path, ["trainer.resume_from_checkpoint=last"]))
    saved = load_file(str(resumed / "adapter_model.safetensors"))
    assert _close(saved, full.saved) == keep_average
    if not keep_average:  # it restarted the average from the checkpoint's weights
        assert _close(saved, _ema(full.steps[2:], DECAY))


EVERY = {
    "grpo": ("demo:intents", "rewards: [{name: 'REWARD_FILE:distinct_chars'}]\n",
             "num_generations: 4, max_completion_length: 6, beta: 0.0"),
    "label_pg": ("demo:intents",
                 "rewards: [{name: intent}]\ndecoding: {prefill: '<intent>', constrain_labels: true}\n",
                 "lr_scheduler_type: cosine_with_min_lr, lr_scheduler_kwargs: {min_lr_rate: 0.1}"),
    "kto": ("demo:intent_kto", "", "max_length: 64"),
    "ppo": ("demo:intents", "rewards: [{name: intent}]\n",
            "num_mini_batches: 2, ppo_epochs: 1, max_completion_length: 6, init_kl_coef: 0.05"),
}


VARIED = """
def distinct_chars(prompts, completions, **kwargs):
    # varies between random completions, so GRPO groups have a non-zero advantage on a random model
    return [0.2 * len(set(c if isinstance(c, str) else c[0]["content"])) for c in completions]
"""


@pytest.mark.parametrize("algorithm", sorted(EVERY))
def test_every_generating_algorithm_saves_the_average(algorithm, tiny_model_dir, write_recipe, tmp_path):
    source, extra, trainer = EVERY[algorithm]
    (tmp_path / "varied.py").write_text(VARIED)
    extra = extra.replace("REWARD_FILE", str(tmp_path / "varied.py"))
    more = f", {trainer}" if trainer else ""
    steps = 4 if algorithm == "label_pg" else 2  # label_pg: a decaying LR over 4 steps
    out = tmp_path / "run"
    path = write_recipe(f"""algorithm: {algorithm}
output_dir: {out}
model: {{name: {tiny_model_dir}}}
adapter: {{type: lora, r: 4, alpha: 8, ema_decay: 0.5}}
data: {{source: {source}, demo_size: 40}}
{extra}trainer: {{max_steps: {steps}, per_device_train_batch_size: 4, learning_rate: 0.05{more}}}
evaluation: {{before: false, after: false}}
""")
    recorder = RecordWeights()
    rlft.train(rlft.load_recipe(path), callbacks=[recorder])
    saved = load_file(str(out / "adapter_model.safetensors"))
    assert len(recorder.steps) == steps + 1 and not _close(recorder.steps[0], recorder.steps[-1])
    assert _close(saved, _ema(recorder.steps, 0.5))
    if algorithm == "label_pg":  # LR decay is TrainingArguments' own: cosine down to 10 % of learning_rate
        rates = [h["learning_rate"] for h in json.loads((out / "metrics.json").read_text())["log_history"]
                 if "learning_rate" in h]
        assert len(rates) == 4 and rates == sorted(rates, reverse=True) and rates[0] > rates[-1] >= 0.005


def test_resume_with_another_selection_split_is_refused(ema_runs, tmp_path):
    full = ema_runs["ema"]
    resumed = tmp_path / "resumed"
    shutil.copytree(full.out, resumed)
    path = tmp_path / "resumed.yaml"
    path.write_text(full.path.read_text().replace(str(full.out), str(resumed)))
    with pytest.raises(RecipeError, match=r"the recipe changed since that run started: "
                       r"evaluation\.select_fraction was 0\.2, now 0\.3"):
        rlft.train(rlft.load_recipe(path, ["trainer.resume_from_checkpoint=last", "trainer.max_steps=6",
                                           "evaluation.select_fraction=0.3"]))
