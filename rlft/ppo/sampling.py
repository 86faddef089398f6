"""Rollouts for PPO: prompts -> sampled completions -> old/reference log-probs, values and scores.

What it does: renders chat prompts with the tokenizer's template, samples with `model.generate`, scores the decoded
completions with rlft rewards (`rlft.scoring.completions.score`, the same path GRPO's reward functions take: sync and async,
dataset columns as keywords, `None` abstains), and runs the no-grad forward passes PPO needs. The reference policy
is the *same* model with its adapters disabled (`PeftModel.disable_adapter()`): no second copy in memory.
What it does not do: advantages and losses (`rlft.ppo.core`), optimisation (`rlft.ppo.ppo_trainer`), vLLM generation.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, fields
from typing import Any

import torch
from torch import nn

from rlft.ppo import core


class PolicyWithValue(nn.Module):
    """Policy LM + value head as one module, so DDP/accelerate see one set of trainable parameters."""

    def __init__(self, policy: nn.Module, value_head: nn.Module) -> None:
        super().__init__()
        self.policy = policy
        self.value_head = value_head

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, n_completion: int,
                temperature: float = 1.0, with_values: bool = True, with_entropy: bool | None = False
                ) -> dict[str, torch.Tensor]:
        return forward_policy(self.policy, self.value_head if with_values else None, input_ids, attention_mask,
                              n_completion, temperature, with_entropy)


def forward_policy(model: nn.Module, value_head: nn.Module | None, input_ids: torch.Tensor,
                   attention_mask: torch.Tensor, n_completion: int, temperature: float = 1.0,
                   with_entropy: bool | None = False) -> dict[str, torch.Tensor]:
    """Log-probs of the last `n_completion` tokens (at `temperature`), and optionally values and entropies.

    `with_entropy`: True -> differentiable entropies, None -> detached entropies (logging), False -> none.
    Position ids follow the attention mask (left-padded prompts), exactly as `generate` numbered them, so
    log-probs match the sampling distribution. Values are read at the positions whose logits predict each token.
    """
    from trl.trainer.utils import selective_log_softmax

    position_ids = (attention_mask.long().cumsum(-1) - 1).clamp(min=0)
    out = model(input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids,
                logits_to_keep=n_completion + 1, output_hidden_states=value_head is not None, use_cache=False)
    logits = out.logits[:, :-1, :].float() / temperature
    result = {"logprobs": selective_log_softmax(logits, input_ids[:, -n_completion:])}
    if value_head is not None:
        result["values"] = value_head(out.hidden_states[-1][:, -n_completion - 1:-1, :]).float()
    if with_entropy:
        result["entropy"] = core.entropy_from_logits(logits)
    elif with_entropy is None:  # for logging only: no autograd graph over the vocabulary-sized softmax
        with torch.no_grad():
            result["entropy"] = core.entropy_from_logits(logits)
    return result


@dataclass
class Rollout:
    """One rollout's tensors (rows = completions). Filled step by step; `select` slices every tensor field."""

    input_ids: torch.Tensor  # prompt (left-padded) + completion (right-padded)
    attention_mask: torch.Tensor
    completion_mask: torch.Tensor  # 1 on completion tokens up to and including EOS
    logprobs: torch.Tensor | None = None
    ref_logprobs: torch.Tensor | None = None
    values: torch.Tensor | None = None
    scores: torch.Tensor | None = None
    rewards: torch.Tensor | None = None
    advantages: torch.Tensor | None = None
    returns: torch.Tensor | None = None

    @property
    def n_completion(self) -> int:
        return self.completion_mask.shape[1]

    def __len__(self) -> int:
        return self.input_ids.shape[0]

    def select(self, index: torch.Tensor) -> Rollout:
        return Rollout(**{f.name: None if getattr(self, f.name) is None else getattr(self, f.name)[index]
                          for f in fields(self)})


def prompt_text(prompt: Any, tokenizer: Any) -> str:
    """Chat-message prompts through the chat template (with the generation prompt); strings as they are."""
    if isinstance(prompt, list):
        return tokenizer.apply_chat_template(prompt, tokenize=False, add_generation_prompt=True)
    return str(prompt)


def encode_prompts(tokenizer: Any, prompts: Sequence[Any], max_prompt_length: int | None, device: torch.device
                   ) -> tuple[torch.Tensor, torch.Tensor]:
    """Left-padded prompt ids and mask; over-long prompts lose their *beginning* (the question stays)."""
    texts = [prompt_text(p, tokenizer) for p in prompts]
    enc = tokenizer(texts, padding=True, padding_side="left", add_special_tokens=False, return_tensors="pt")
    ids, mask = enc["input_ids"], enc["attention_mask"]
    if max_prompt_length is not None and ids.shape[1] > max_prompt_length:
        ids, mask = ids[:, -max_prompt_length:], mask[:, -max_prompt_length:]
    return ids.to(device), mask.to(device)


def completion_mask_from(completion_ids: torch.Tensor, eos_token_ids: Sequence[int]) -> torch.Tensor:
    """1 up to and including the first EOS of each row, 0 after it."""
    is_eos = torch.isin(completion_ids, torch.tensor(list(eos_token_ids), device=completion_ids.device))
    after_eos = (is_eos.long().cumsum(dim=1) - is_eos.long()) > 0
    return (~after_eos).long()


def eos_ids(model: nn.Module, tokenizer: Any) -> list[int]:
    configured = getattr(getattr(model, "generation_config", None), "eos_token_id", None)
    ids = configured if isinstance(configured, list) else [configured]
    ids = [i for i in ids if i is not None]
    if tokenizer.eos_token_id is not None and tokenizer.eos_token_id not in ids:
        ids.append(tokenizer.eos_token_id)
    return ids


@torch.no_grad()
def sample(model: nn.Module, tokenizer: Any, prompt_ids: torch.Tensor, prompt_mask: torch.Tensor, args: Any,
           logits_processor: Any = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Sample completions -> (completion_ids padded to max_completion_length, completion_mask). `logits_processor`:
    the decoding constraint's (`rlft.decoding.constraint.Constraint.processor(prompt_length)`, via the trainer's
    `logits_processor_factory`), or None."""
    from transformers import LogitsProcessorList

    from transformers import GenerationConfig

    stop = eos_ids(model, tokenizer)
    # Every sampling knob set explicitly: a model's own generation_config (e.g. repetition_penalty) must not change
    # the behaviour policy behind PPO's importance ratios.
    config = GenerationConfig(max_new_tokens=args.max_completion_length, do_sample=True,
                              temperature=args.temperature, top_p=args.top_p, top_k=args.top_k,
                              repetition_penalty=1.0, pad_token_id=tokenizer.pad_token_id, eos_token_id=stop,
                              use_cache=True)
    was_training = model.training
    model.eval()
    try:
        processors = LogitsProcessorList([logits_processor]) if logits_processor is not None else None
        out = model.generate(input_ids=prompt_ids, attention_mask=prompt_mask, generation_config=config,
                             logits_processor=processors)
    finally:
        model.train(was_training)
    completion = out[:, prompt_ids.shape[1]:]
    pad = args.max_completion_length - completion.shape[1]
    if pad > 0:  # every row stopped early: pad to a fixed width so rollouts stack
        completion = torch.nn.functional.pad(completion, (0, pad), value=tokenizer.pad_token_id)
    mask = completion_mask_from(completion, stop)
    completion = completion.masked_fill(mask == 0, tokenizer.pad_token_id)
    return completion, mask


def decode_completions(tokenizer: Any, completion_ids: torch.Tensor, mask: torch.Tensor, prompts: Sequence[Any],
                       prefill: str = "") -> list[Any]:
    """Completion text per row (after `prefill`, which rewards see as its start); conversational prompts get
    `[{"role": "assistant", "content": text}]` like TRL."""
    texts = [prefill + tokenizer.decode(ids[m.bool()].tolist(), skip_special_tokens=True)
             for ids, m in zip(completion_ids, mask, strict=True)]
    return [[{"role": "assistant", "content": t}] if isinstance(p, list) else t
            for t, p in zip(texts, prompts, strict=True)]


def fill_in_scores(total: Sequence[float | None]) -> tuple[list[float], int]:
    """Rows where every reward abstained get the rollout's mean score (neutral advantage); returns the count."""
    known = [v for v in total if v is not None]
    neutral = sum(known) / len(known) if known else 0.0
    return [neutral if v is None else float(v) for v in total], len(total) - len(known)
