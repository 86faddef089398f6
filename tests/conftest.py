"""Shared fixtures: a tiny random Llama with the real SmolLM2 tokenizer, built locally once per session."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

ROOT = Path(__file__).resolve().parents[1]
BITEXT = ROOT.parent / "shared" / "data" / "bitext" / "bitext_customer_service_train.csv"


@pytest.fixture(scope="session")
def smollm2_tokenizer_dir(tmp_path_factory) -> Path:
    """The embedded SmolLM2 tokenizer (with its chat template), read from the packaged .gguf."""
    from transformers import AutoTokenizer

    from rlft.run.models import embedded_gguf

    gguf = embedded_gguf("smollm2-135m-instruct")
    out = tmp_path_factory.mktemp("smollm2_tokenizer")
    AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name).save_pretrained(out)
    return out


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory, smollm2_tokenizer_dir) -> Path:
    """A 2-layer, hidden-size-64 random Llama (bitsandbytes CPU 4-bit kernels need dims >= 64) saved as a normal transformers directory (seconds, no hub)."""
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    tokenizer = AutoTokenizer.from_pretrained(smollm2_tokenizer_dir)
    config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=512,
                         bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
                         pad_token_id=tokenizer.pad_token_id, tie_word_embeddings=True)
    out = tmp_path_factory.mktemp("tiny_llama")
    LlamaForCausalLM(config).save_pretrained(out)
    tokenizer.save_pretrained(out)
    return out


@pytest.fixture
def write_recipe(tmp_path):
    """Write a recipe YAML (text) to a file in tmp_path and return its path."""

    def write(text: str, name: str = "recipe.yaml") -> Path:
        path = tmp_path / name
        path.write_text(text)
        return path

    return write


@pytest.fixture
def one_torch_thread():
    """Run this test's in-process training with one torch thread, as its `OMP_NUM_THREADS=1` subprocesses do.

    Tests that compare a subprocess's weights with an in-process run's bit for bit need the same thread count on
    both sides: with one thread in the child and two in pytest, a loaded machine made them differ by ~1e-4
    (tests/test_resume_kill.py failed in CI beside two training jobs; it passed with OMP_NUM_THREADS=1 for both)."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


# A one-step GRPO recipe on the demo intents for CLI tests (format with tmp=, model=; completion= defaults to 8).
TINY_GRPO_RECIPE = """algorithm: grpo
output_dir: {tmp}/out
model: {{name: {model}}}
data: {{source: demo:intents, demo_size: 40}}
rewards:
  - name: intent
trainer: {{max_steps: 1, per_device_train_batch_size: 4, num_generations: 4, max_completion_length: {completion}}}
evaluation: {{before: false, after: false}}
"""


def tiny_grpo_recipe(tmp, model, completion: int = 8) -> str:
    """TINY_GRPO_RECIPE filled in."""
    return TINY_GRPO_RECIPE.format(tmp=tmp, model=model, completion=completion)
