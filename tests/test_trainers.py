"""GRPO, DPO and KTO recipes train a few steps on a tiny local model with LoRA and QLoRA: adapter weights move,
base weights do not, outputs are written, and the adapter loads back with plain `peft`."""

import json

import pytest
import torch
from safetensors.torch import load_file

import rlft

TRAINER = {
    "grpo": "{max_steps: 2, per_device_train_batch_size: 4, num_generations: 4, max_completion_length: 8, "
            "learning_rate: 0.05, beta: 0.0}",
    "dpo": "{max_steps: 2, per_device_train_batch_size: 4, learning_rate: 0.05, max_length: 96}",
    "kto": "{max_steps: 2, per_device_train_batch_size: 4, learning_rate: 0.05, max_length: 96}",
}
SOURCE = {"grpo": "demo:intents", "dpo": "demo:intent_pairs", "kto": "demo:intent_kto"}


VARIED = """
def distinct_chars(prompts, completions, scale=0.1, **kwargs):
    # varies between random completions, so GRPO groups have a non-zero advantage on a random model
    return [scale * len(set(c if isinstance(c, str) else c[0]["content"])) for c in completions]
"""


def _recipe(algorithm, adapter, model_dir, out):
    reward_file = out.parent / "varied.py"
    reward_file.write_text(VARIED)
    rewards = (f"rewards: [{{name: intent}}, {{name: '{reward_file}:distinct_chars', params: {{scale: 0.2}}}}]\n"
               if algorithm == "grpo" else "")
    return f"""algorithm: {algorithm}
output_dir: {out}
model: {{name: {model_dir}}}
adapter: {{type: {adapter}, r: 4, alpha: 8}}
data: {{source: {SOURCE[algorithm]}, demo_size: 40, system_prompt: "Intents: {{labels}}"}}
{rewards}trainer: {TRAINER[algorithm]}
evaluation: {{max_samples: 4, max_new_tokens: 6, batch_size: 4}}
"""


def _base_weights(model_dir):
    return load_file(str(model_dir / "model.safetensors"))


@pytest.mark.parametrize("adapter", ["lora", "qlora"])
@pytest.mark.parametrize("algorithm", ["grpo", "dpo", "kto"])
def test_algorithm_trains_adapter_only(algorithm, adapter, tiny_model_dir, write_recipe, tmp_path):
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    out = tmp_path / "run"
    recipe = rlft.load_recipe(write_recipe(_recipe(algorithm, adapter, tiny_model_dir, out)))
    before_base = _base_weights(tiny_model_dir)
    result = rlft.train(recipe)

    # outputs
    for name in ("adapter_model.safetensors", "adapter_config.json", "tokenizer.json", "recipe.yaml",
                 "metrics.json", "README.md"):
        assert (out / name).is_file(), name
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["global_step"] == 2 and metrics["algorithm"] == algorithm
    assert set(metrics["eval_after"]) >= {"intent_accuracy", "format_rate", "macro_f1"}
    assert result.adapter_dir == out

    # every run ends with rlft eval's report for base vs tuned, from the completions it already scored
    report = json.loads((out / "report" / "report.json").read_text())
    assert [(m["name"], m["n"]) for m in report["models"]] == [("base", 4), ("tuned", 4)]
    for phase, m in zip(("eval_before", "eval_after"), report["models"], strict=True):
        assert m["headline"]["intent_accuracy"] == pytest.approx(metrics[phase]["intent_accuracy"])
    traces = [json.loads(line) for line in (out / "report" / "traces.jsonl").read_text().splitlines()]
    assert [t["metadata"]["model"] for t in traces] == ["base", "tuned"] * 4  # one record per (row, model)
    assert "tuned" in (out / "report" / "traces.html").read_text()

    # adapter moved away from its initialisation (LoRA B starts at zero), base untouched
    trained = load_file(str(out / "adapter_model.safetensors"))
    lora_b = [v for k, v in trained.items() if "lora_B" in k]
    assert lora_b and any(v.abs().max() > 0 for v in lora_b)
    trainable = result_model_base_unchanged(result, before_base, tiny_model_dir)
    assert trainable

    # plain peft loads it and the adapter changes the logits
    base = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    ids = torch.tensor([[1, 2, 3, 4]])
    with torch.no_grad():
        plain = base(ids).logits
        adapted = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(tiny_model_dir), out)(ids).logits
    assert not torch.allclose(plain, adapted)


def result_model_base_unchanged(result, before_base, model_dir):
    """The saved base checkpoint on disk is untouched and the run never wrote full weights."""
    after_base = _base_weights(model_dir)
    assert all(torch.equal(before_base[k], after_base[k]) for k in before_base)
    assert not (result.output_dir / "model.safetensors").exists()
    return True


def test_base_weights_frozen_in_memory_during_grpo(tiny_model_dir, write_recipe, tmp_path):
    """Train through the pipeline pieces and compare every base parameter before/after."""
    from rlft.data.loading import prepare
    from rlft.run.models import load_model
    from rlft.run.pipeline import load_recipe_rewards
    from rlft.trainers import trainer_builder
    from rlft.trainers.context import TrainContext

    recipe = rlft.load_recipe(write_recipe(_recipe("grpo", "lora", tiny_model_dir, tmp_path / "o")))
    data = prepare(recipe.data, "grpo", recipe.seed)
    rewards = load_recipe_rewards(recipe, data.labels, [data.train])
    model, tok = load_model(recipe.model, recipe.adapter, "cpu")
    base_before = {n: p.detach().clone() for n, p in model.named_parameters() if "lora_" not in n}
    lora_before = {n: p.detach().clone() for n, p in model.named_parameters() if "lora_" in n}
    trainer = trainer_builder("grpo")(TrainContext(recipe, model, tok, data.train, data.eval, rewards,
                                                   data.labels, "cpu"))
    trainer.train()
    params = dict(model.named_parameters())
    assert all(torch.equal(params[n], v) for n, v in base_before.items())
    assert any(not torch.equal(params[n], v) for n, v in lora_before.items())


def test_merged_export_and_no_telemetry(tiny_model_dir, write_recipe, tmp_path):
    from huggingface_hub import constants
    from huggingface_hub.utils import _telemetry

    out = tmp_path / "m"
    path = write_recipe(_recipe("dpo", "lora", tiny_model_dir, out) + "export: {merged: true}\n")
    rlft.train(path, ["evaluation.before=false"])
    assert (out / "merged" / "model.safetensors").is_file()
    assert constants.HF_HUB_DISABLE_TELEMETRY is True
    assert _telemetry._TELEMETRY_THREAD is None  # no telemetry thread was ever started
