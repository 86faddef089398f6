"""Sample N completions per prompt from a causal LM with `rlft.decoding.generation`, batched and reproducible.

Prompts are processed in fixed batches (`prompts_per_batch` consecutive prompts) and the torch RNG is re-seeded
from (`seed`, batch index) before each batch. A batch therefore always yields the same completions whether it runs
in one go or after an interrupted run resumed: the resume logic in `rlft.data.labeling.label` relies on this.

Not here: scoring, model loading (`rlft.run.models`), chat servers (rlft samples the policy it is going to train).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from rlft.errors import UserError


@dataclass
class SamplingConfig:
    """How completions are sampled; recorded in every labelled row's metadata."""

    n: int = field(default=4, metadata={"help": "Completions per prompt (DPO needs 2+)."})
    temperature: float = field(default=0.7, metadata={"help": "0 = greedy (then n must be 1). UBIAI phase 4 uses "
                                                              "0.7 for baseline responses."})
    top_p: float = field(default=1.0, metadata={"help": "Nucleus sampling mass."})
    top_k: int = field(default=50, metadata={"help": "Top-k filter (transformers' default 50); 0 disables it."})
    max_new_tokens: int = field(default=64, metadata={"help": "Completion length limit in tokens."})
    prompts_per_batch: int = field(default=4, metadata={"help": "Prompts per generate call (x n sequences)."})
    seed: int = field(default=0, metadata={"help": "Base seed; batch b uses a seed derived from (seed, b)."})
    prefill: str = field(default="", metadata={"help": "Text put after the chat template's assistant header (e.g. "
                                                       "'<intent>'); it starts every returned completion."})

    def check(self) -> None:
        if self.n < 1:
            raise UserError(f"sampling: n must be >= 1, got {self.n}")
        if self.temperature < 0:
            raise UserError(f"sampling: temperature must be >= 0, got {self.temperature}")
        if self.temperature == 0 and self.n > 1:
            raise UserError("sampling: temperature 0 is greedy decoding, so n > 1 would repeat one completion; "
                            "use temperature > 0 or n=1")
        if not 0 < self.top_p <= 1:
            raise UserError(f"sampling: top_p must be in (0, 1], got {self.top_p}")
        if self.max_new_tokens < 1 or self.prompts_per_batch < 1 or self.top_k < 0:
            raise UserError("sampling: max_new_tokens and prompts_per_batch must be >= 1, top_k >= 0")

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def batch_seed(seed: int, batch_index: int) -> int:
    """Seed for one batch: distinct per batch, stable across runs and resumes."""
    return (seed * 1_000_003 + batch_index * 7919) % (2**31 - 1)


def prompt_lengths(tokenizer: Any, prompts: Sequence[Any]) -> list[int]:
    """Token length of each prompt as the model sees it (chat template + assistant header, prefill excluded)."""
    from rlft.decoding.prompting import template_ids

    return [len(template_ids(tokenizer, p)) for p in prompts]


def sample_batch(model: Any, tokenizer: Any, prompts: Sequence[Any], cfg: SamplingConfig, batch_index: int,
                 decoding: Any = None, labels: Sequence[str] = ()) -> list[list[str]]:
    """`cfg.n` completions for each prompt of one batch, seeded from (`cfg.seed`, `batch_index`).

    Runs `rlft.decoding.generation.generate` (the loop evaluation uses): prompt ids from
    `rlft.decoding.prompting.prompt_ids`, the prefill appended as ids. `decoding` (a `DecodingConfig`, with
    `labels` for the label trie) replaces the plain `DecodingConfig(prefill=cfg.prefill)`. One batch is one call
    with its own generator, so it yields the same completions whether it runs in one go or after a resume.
    """
    from rlft.recipe.sections import DecodingConfig
    from rlft.decoding.generation import Sampling, generate

    decoding = decoding or DecodingConfig(prefill=cfg.prefill)
    sampling = Sampling(temperature=cfg.temperature, top_k=cfg.top_k, top_p=cfg.top_p, n=cfg.n,
                        seed=batch_seed(cfg.seed, batch_index))
    texts = generate(model, tokenizer, prompts, decoding, labels, max_new_tokens=cfg.max_new_tokens,
                     batch_size=max(len(prompts), 1), sampling=sampling)
    return [texts[i * cfg.n:(i + 1) * cfg.n] for i in range(len(prompts))]


def sampling_adapter(recipe: Any, adapter: str | None = None) -> str | None:
    """The adapter to sample with: `adapter`, else the recipe's `adapter.init_from`, else None (the plain base; a
    fresh LoRA would produce the same text, only slower). Checked before any model loads."""
    adapter = adapter or recipe.adapter.init_from
    if adapter and not (Path(adapter) / "adapter_config.json").is_file():
        raise UserError(f"adapter: '{adapter}' is not a PEFT adapter directory (no adapter_config.json)")
    return adapter


def load_sampler(recipe: Any, adapter: str | None = None) -> tuple[Any, Any]:
    """(model, tokenizer): the recipe's base model in eval mode, with `sampling_adapter(recipe, adapter)` on top."""
    from rlft.recipe.sections import AdapterConfig
    from rlft.run.models import load_model, resolve_device

    adapter = sampling_adapter(recipe, adapter)
    model, tokenizer = load_model(recipe.model, AdapterConfig(type="none"), resolve_device(recipe.model))
    if adapter:
        from peft import PeftModel

        model = PeftModel.from_pretrained(model, adapter, is_trainable=False)
    model.eval()
    return model, tokenizer
