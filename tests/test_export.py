"""`rlft export` on a 1-step `rlft train` run of the tiny Llama: the merged model reloads with plain transformers and
decodes exactly what the adapter decodes (greedy, with and without the exported label constraint), and
serving.json carries the settings a server needs (regex, prefill, prompt ids), with no secret in any file."""

import json

import pytest
import torch

import rlft
from rlft.cli import run as cli_run
from rlft.recipe.sections import DecodingConfig
from rlft.decoding.prompting import prompt_ids, structured_output_regex
from rlft.evaluation.held_out import generate_with, intent_metrics
from rlft.run.export import SERVING_FILE

LABELS = ["cancel_order", "get_refund", "track_order"]
UTTERANCES = [("please cancel my order", "cancel_order"), ("where is my parcel", "track_order"),
              ("I want my money back", "get_refund"), ("stop the order now", "cancel_order"),
              ("track package 123", "track_order"), ("refund please", "get_refund")]
SECRET = "hunter2sekrit"
VARIED = """
def distinct_chars(prompts, completions, endpoint=None, **kwargs):
    return [0.1 * len(set(c if isinstance(c, str) else c[0]["content"])) for c in completions]
"""


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory, tiny_model_dir):
    root = tmp_path_factory.mktemp("export")
    data = root / "intents.csv"
    data.write_text("utterance,intent\n" + "".join(f"{u},{i}\n" for u, i in UTTERANCES * 3))
    (root / "varied.py").write_text(VARIED)
    recipe = root / "recipe.yaml"
    recipe.write_text(f"""
output_dir: {root / 'run'}
model: {{name: {tiny_model_dir}, device: cpu}}
adapter: {{type: lora, r: 4, alpha: 8}}
data:
  source: {data}
  labels: {LABELS}
  system_prompt: "Classify into {{labels}}."
rewards:
  - name: intent
  - {{name: '{root / 'varied.py'}:distinct_chars', params: {{endpoint: "http://reader:{SECRET}@judge.local/v1"}}}}
decoding: {{prefill: "<intent>", constrain_labels: true}}
trainer: {{max_steps: 1, per_device_train_batch_size: 4, num_generations: 4, max_completion_length: 8,
          learning_rate: 0.5, beta: 0.0}}
evaluation: {{before: false, after: false}}
""")
    assert cli_run(["train", str(recipe)]) == 0
    return root, root / "run"


def _prompts(serving):
    user = serving["prompt_template"]
    return [[{"role": "system", "content": serving["system_prompt"]},
             {"role": "user", "content": user.replace("{utterance}", u)}] for u, _ in UTTERANCES]


def test_merged_export_decodes_like_the_adapter(trained_run, tiny_model_dir):
    from peft import PeftModel
    from safetensors.torch import load_file
    from transformers import AutoModelForCausalLM, AutoTokenizer

    root, run_dir = trained_run
    out = root / "merged"
    assert cli_run(["export", str(run_dir), "--merged", "--out", str(out)]) == 0
    serving = json.loads((out / SERVING_FILE).read_text())
    assert serving["format"] == "merged" and serving["labels"] == LABELS
    assert {"config.json", "model.safetensors", "tokenizer.json", SERVING_FILE} <= {p.name for p in out.iterdir()}
    assert not (out / "adapter_config.json").exists()  # a plain transformers directory, no PEFT needed

    # the merge did something: weights differ from the base (1 step at a large learning rate moved LoRA B)
    merged_w, base_w = load_file(str(out / "model.safetensors")), load_file(str(tiny_model_dir / "model.safetensors"))
    moved = [k for k in base_w if k in merged_w and not torch.equal(merged_w[k], base_w[k])]
    assert moved, "merged weights equal the base: the adapter had no effect to test"

    tokenizer = AutoTokenizer.from_pretrained(out)
    merged = AutoModelForCausalLM.from_pretrained(out).eval()
    adapter = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(tiny_model_dir), str(run_dir)).eval()
    prompts = _prompts(serving)
    constrained = DecodingConfig(**serving["decoding"])
    free = DecodingConfig(prefill=serving["decoding"]["prefill"])
    for decoding in (constrained, free):
        a = generate_with(adapter, tokenizer, prompts, decoding, LABELS, max_new_tokens=8)
        m = generate_with(merged, tokenizer, prompts, decoding, LABELS, max_new_tokens=8)
        assert m == a, decoding
    a = generate_with(adapter, tokenizer, prompts, constrained, LABELS, max_new_tokens=8)
    assert all(c.startswith("<intent>") and c.endswith("</intent>") for c in a)
    gold = [i for _, i in UTTERANCES]
    m_metrics, _ = intent_metrics(generate_with(merged, tokenizer, prompts, constrained, LABELS, 8), gold, LABELS)
    a_metrics, _ = intent_metrics(a, gold, LABELS)
    assert m_metrics == a_metrics and m_metrics["format_rate"] == 1.0
    # exporting the adapter into the same folder replaces the merged export whole (no stale model.safetensors)
    assert rlft.export(run_dir, out)["format"] == "adapter" and not (out / "model.safetensors").exists()


def test_adapter_export_writes_serving_settings_and_no_secret(trained_run, capsys):
    from transformers import AutoTokenizer

    root, run_dir = trained_run
    info = rlft.export(run_dir, root / "adapter_export")
    out = root / "adapter_export"
    assert info["format"] == "adapter" and info["out"] == str(out)
    assert {"adapter_config.json", "adapter_model.safetensors", "tokenizer.json", SERVING_FILE} <= set(info["files"])
    serving = json.loads((out / SERVING_FILE).read_text())
    decoding = DecodingConfig(**serving["decoding"])
    assert decoding.prefill == "<intent>" and decoding.constrain_labels
    assert serving["structured_output_regex"] == structured_output_regex(LABELS, decoding)
    chat = serving["requests"]["chat_completions"]
    assert chat["structured_outputs"] == {"regex": serving["structured_output_regex"]}
    assert chat["messages"][-1] == {"role": "assistant", "content": "<intent>"} and chat["continue_final_message"]
    # the prompt example is exactly the ids training decoded after (chat template ids + prefill ids)
    tokenizer = AutoTokenizer.from_pretrained(out)
    example = serving["prompt_example"]
    assert example["prompt_ids"] == prompt_ids(tokenizer, example["messages"], decoding)
    assert serving["requests"]["completions"]["prompt"] == example["prompt_ids"]
    assert example["text"].endswith("<|im_start|>assistant\n<intent>")
    assert serving["system_prompt"] == "Classify into cancel_order, get_refund, track_order."
    # the credential in a reward's endpoint (recipe.yaml keeps it masked) reaches no exported file
    assert "http://***@judge.local/v1" in (run_dir / "recipe.yaml").read_text()
    for path in out.iterdir():
        assert SECRET not in path.read_bytes().decode("utf-8", "replace"), path.name


def test_export_refuses_what_is_not_a_finished_run(tmp_path, capsys):
    assert cli_run(["export", str(tmp_path)]) == 2
    assert capsys.readouterr().err.strip() == (
        f"error: rlft export {tmp_path}: no recipe.yaml in it; expected a finished `rlft train` output folder "
        f"(adapter, recipe.yaml, metrics.json)")
    taken = tmp_path / "taken"
    taken.mkdir()
    (taken / "notes.txt").write_text("mine")
    (tmp_path / "recipe.yaml").write_text("algorithm: grpo\n")
    (tmp_path / "metrics.json").write_text("{}")
    assert cli_run(["export", str(tmp_path), "--out", str(taken)]) == 2
    assert "exists and is not an earlier export (no serving.json)" in capsys.readouterr().err
    assert (taken / "notes.txt").read_text() == "mine"


def test_rlft_evaluate_scores_the_adapter_as_the_merged_export_decodes(trained_run):
    """`rlft.evaluate` (the Python `rlft eval`) on the trained adapter reports the accuracy the merged export gets."""
    import inspect

    from transformers import AutoModelForCausalLM, AutoTokenizer

    import importlib

    importlib.import_module("rlft.evaluate")  # the module's old path (rlft/_moved.py) must not replace the function
    assert inspect.isfunction(rlft.evaluate) and "rlft.evaluate([" in rlft.evaluate.__doc__
    root, run_dir = trained_run
    data = root / "intents.csv"
    result = rlft.evaluate(["base", f"tuned={run_dir}"], root / "recipe.yaml", root / "eval", data=str(data),
                           max_samples=6)
    assert [m["name"] for m in result["models"]] == ["base", "tuned"]
    assert {"report.json", "report.md", "traces.jsonl", "traces.html"} <= set(result["paths"])
    merged_dir = root / "merged_for_eval"
    rlft.export(run_dir, merged_dir, merged=True)
    serving = json.loads((merged_dir / SERVING_FILE).read_text())
    model, tokenizer = AutoModelForCausalLM.from_pretrained(merged_dir), AutoTokenizer.from_pretrained(merged_dir)
    replies = generate_with(model, tokenizer, _prompts(serving), DecodingConfig(**serving["decoding"]), LABELS, 8)
    merged_metrics, _ = intent_metrics(replies, [i for _, i in UTTERANCES], LABELS)
    assert result["models"][1]["headline"]["intent_accuracy"] == pytest.approx(merged_metrics["intent_accuracy"])
