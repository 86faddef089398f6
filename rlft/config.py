"""Typed sections of a recipe. Each field carries `help` metadata; `docs/recipes.md` lists them all.

Only rlft's own choices live here. Trainer settings are *not* re-declared: the recipe's `trainer:` mapping is
handed to TRL's config class for the chosen algorithm (GRPOConfig, DPOConfig, KTOConfig, ...), so every TRL
option stays reachable and is validated against TRL's own fields.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from rlft.reward import RewardSpec

DEFAULT_MODEL = "smollm2-135m-instruct"
ALGORITHMS = ("grpo", "dpo", "kto", "ppo", "reward_model")


def _f(default: Any = None, help: str = "", factory: Any = None) -> Any:  # noqa: A002 - mirrors dataclass naming
    if factory is not None:
        return field(default_factory=factory, metadata={"help": help})
    return field(default=default, metadata={"help": help})


@dataclass
class ModelConfig:
    name: str = _f(DEFAULT_MODEL, "Embedded model name, Hugging Face id, local directory, or path to a .gguf file.")
    gguf_file: str | None = _f(None, "GGUF file name inside `name` (a directory or hub repo), if loading GGUF.")
    revision: str | None = _f(None, "Hub revision (branch, tag or commit) for hub ids.")
    dtype: str = _f("auto", "auto | float32 | bfloat16 | float16. auto: bf16 on CUDA that supports it, else fp32.")
    device: str = _f("auto", "auto | cpu | cuda. auto: CUDA when available, else CPU.")
    trust_remote_code: bool = _f(False, "Allow model code from the hub to run. Off: it executes remote code.")
    attn_implementation: str | None = _f(None, "transformers attention implementation, e.g. sdpa, eager.")
    cache_dir: str | None = _f(None, "Where converted GGUF models are cached (default ~/.cache/rlft/models).")


@dataclass
class AdapterConfig:
    type: str = _f("lora", "lora | qlora (4-bit base via bitsandbytes) | none (full fine-tuning).")
    r: int = _f(16, "LoRA rank.")
    alpha: int = _f(32, "LoRA alpha (scaling = alpha / r).")
    dropout: float = _f(0.0, "LoRA dropout. 0 keeps RL rollouts and their log-probs consistent.")
    target_modules: list[str] | str = _f("all-linear", "Modules to adapt: 'all-linear' or a list of names.")
    bias: str = _f("none", "none | all | lora_only.")
    init_from: str | None = _f(None, "Start from an existing adapter directory instead of a fresh one.")
    quant_type: str = _f("nf4", "QLoRA 4-bit type: nf4 | fp4.")
    double_quant: bool = _f(True, "QLoRA nested quantization of the quantization constants.")
    compute_dtype: str = _f("auto", "QLoRA compute dtype: auto | float32 | bfloat16 | float16.")


@dataclass
class DataConfig:
    source: str = _f("demo:intents", "demo:intents | demo:intent_pairs | demo:intent_kto | a CSV/JSON/JSONL file | "
                     "a `datasets` directory saved with save_to_disk | hf:<org/name> (needs hub access).")
    format: str = _f("auto", "auto | csv | json | jsonl | datasets (auto: from the file suffix).")
    split: str = _f("train", "Split to read from a DatasetDict or hub dataset.")
    columns: dict[str, str] = _f(factory=dict, help="Rename map {name rlft expects: column in your file}, "
                                 "e.g. {utterance: text, intent: label}.")
    system_prompt: str | None = _f(None, "System message prepended to every prompt (null: none).")
    prompt_template: str = _f("{utterance}", "User message built from row columns with str.format, e.g. "
                              "'Customer: {utterance}'. Used for prompt datasets (grpo, ppo).")
    label_column: str = _f("intent", "Ground-truth label column (intent accuracy, label sets).")
    labels: list[str] | None = _f(None, "Allowed labels. null: the distinct values of label_column in the data.")
    eval_source: str | None = _f(None, "Separate evaluation file; otherwise eval_fraction of source is held out.")
    eval_fraction: float = _f(0.1, "Share of rows held out for evaluation when eval_source is not given.")
    max_train_samples: int | None = _f(None, "Keep at most this many training rows (after the split).")
    max_eval_samples: int | None = _f(None, "Keep at most this many evaluation rows.")
    demo_size: int = _f(600, "Rows generated for demo: sources.")


@dataclass
class EvaluationConfig:
    before: bool = _f(True, "Evaluate the base model on the held-out split before training.")
    after: bool = _f(True, "Evaluate the trained model on the held-out split after training.")
    max_samples: int = _f(64, "Held-out rows used (greedy decoding).")
    max_new_tokens: int = _f(32, "Generation length for evaluation.")
    batch_size: int = _f(16, "Generation batch size for evaluation.")
    rewards: bool = _f(True, "Also report the mean of each recipe reward on the held-out completions.")
    prefill: str = _f("", "Text every evaluated reply starts with, e.g. '<intent>' (the `signal` section's "
                          "decoding wins when set).")


@dataclass
class ExportConfig:
    merged: bool = _f(False, "Also write the base model with the adapter merged in (output_dir/merged).")


@dataclass
class Recipe:
    """A whole recipe. `trainer` goes to TRL's config class; `signal` to rlft's GRPO signal features."""

    algorithm: str = _f("grpo", "grpo | dpo | kto | ppo | reward_model.")
    output_dir: str = _f("runs/rlft", "Where the adapter, recipe, metrics and model card are written.")
    seed: int = _f(42, "Seed for data splits, sampling and initialisation.")
    model: ModelConfig = _f(factory=ModelConfig, help="The base model.")
    adapter: AdapterConfig = _f(factory=AdapterConfig, help="LoRA / QLoRA / none.")
    data: DataConfig = _f(factory=DataConfig, help="Dataset, columns and prompts.")
    rewards: list[RewardSpec] = _f(factory=list, help="Rewards: [{name, weight, params, alias}].")
    trainer: dict[str, Any] = _f(factory=dict, help="Settings for TRL's config class of the algorithm.")
    signal: dict[str, Any] = _f(factory=dict, help="GRPO signal features (see docs/recipes.md#signal).")
    evaluation: EvaluationConfig = _f(factory=EvaluationConfig, help="Held-out evaluation before/after.")
    export: ExportConfig = _f(factory=ExportConfig, help="Extra exports.")
    source_file: str | None = field(default=None, repr=False, metadata={"help": "Recipe file (not a key)."})
