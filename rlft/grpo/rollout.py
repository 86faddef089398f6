"""The GRPO rollout as TRL's public `rollout_func(prompts, trainer) -> dict`: prefill, label constraint,
stop-at-suffix and shared-prefix sampling, with no override of TRL's tokenising or generating methods.

What it returns, per row (TRL repeats each prompt `num_generations` times before calling it):
- ``prompt_ids``: exactly `rlft.decoding.prompting.prompt_ids` (chat template + prefill ids), the ids evaluation,
  labelling and PPO decode after. The prefill is part of the prompt, so it is never in the loss and the
  shared-prefix cache covers it; rewards still see it as the start of each completion (`rlft.grpo.trl_hooks`
  puts the prefill text in front of the decoded completions TRL hands to the reward functions, as evaluation
  returns them: ``<intent>label</intent>``). Putting the prefill ids at the start of ``completion_ids`` with
  ``env_mask`` 0 instead would avoid that, but splits the prompt from what evaluation uses and spends loss-forward
  tokens on text the policy never chose.
- ``env_mask`` (with ``signal.decision_tokens_only``): 0 where the trie allowed a single token, 1 where the
  policy chose; with ``decoding.lookup`` (and no decision_tokens_only): 0 on the looked-up text only. TRL turns
  ``env_mask`` into its ``tool_mask``, which multiplies the loss mask (and is left out of the logged completion
  lengths).
- ``logprobs``: None on the transformers path. The trie-constrained sampler's log-probs are not the model's raw
  log-probs (the same mismatch TRL 1.17 fixes for top-k/top-p truncation); with None TRL uses the model's own
  log-probs as the behaviour policy, so its importance-sampling terms stay neutral (ratio 1 at generation time)
  instead of being biased by log Z of the mask. With vLLM the ids and log-probs come from TRL's own vLLM client
  (the label constraint as ``vllm_structured_outputs_regex``) and are passed on unchanged.
Text-only prompts; multimodal batches, TRL tools and `GRPOConfig.chat_template_kwargs` are not applied here
(evaluation does not apply them either; pass your own `rollout_func` to the trainer for those).
"""

from __future__ import annotations

from typing import Any

import torch
from trl.trainer.utils import pad

from rlft.decoding.prompting import prompt_ids as decoding_prompt_ids
from rlft.decoding.shared_prefix import sample_shared_prefix


def rollout(prompts: list[Any], trainer: Any) -> dict[str, Any]:
    """TRL `rollout_func` of `SignalGRPOTrainer` (reads its `decoding`, `signal` and `trie`: the recipe's
    `rlft.decoding.constraint.Constraint`, whose processor / step every sampler here applies)."""
    full = [decoding_prompt_ids(trainer.processing_class, p, trainer.decoding) for p in prompts]
    generated, logprobs = _sample(trainer, full)
    if trainer.signal.reply_hints and trainer.model.training and trainer.trie is not None:
        generated = _add_hints(trainer, full, generated)
    out: dict[str, Any] = {"prompt_ids": full, "completion_ids": generated, "logprobs": logprobs}
    trie = trainer.trie
    if trie is not None and trainer.signal.decision_tokens_only:
        out["env_mask"] = [[0 if trie.is_forced(ids[:k]) else 1 for k in range(len(ids))] for ids in generated]
    elif trie is not None and trie.lookup_lengths:  # looked-up text: context, never a generated token
        out["env_mask"] = [trie.lookup_mask(ids) for ids in generated]
    return out


def _sample(trainer: Any, prompt_ids: list[list[int]]) -> tuple[list[list[int]], list[list[float]] | None]:
    """Completion ids after each prompt (+ prefill), cut after the first EOS (and after the suffix when asked)."""
    own = trainer.trie is not None or trainer.decoding.stop_at_suffix or trainer.signal.shared_prefix
    if trainer.use_vllm or not own:
        mode = "train" if trainer.model.training else "eval"
        n = trainer.num_generations if mode == "train" else trainer.num_generations_eval
        return trainer._generate_single_turn(prompt_ids, None, {}, n)  # TRL's own sampler (pinned in test_trl_seams)
    if trainer.trie is not None and trainer.trie.lookup_lengths:
        completions = _sample_chunked(trainer, prompt_ids)
    elif trainer.signal.shared_prefix:
        completions = _sample_shared(trainer, prompt_ids)
    else:
        completions = _generate_hf(trainer, prompt_ids)
    eos = set(trainer.eos_token_ids)
    result = []
    for ids in completions:
        ids = ids[:next((i + 1 for i, t in enumerate(ids) if t in eos), len(ids))]
        if trainer.trie is None and trainer.decoding.stop_at_suffix:
            ids = _cut_after_suffix(trainer.processing_class, ids, trainer.decoding.label_suffix)
        result.append(ids)
    return result, None


def _add_hints(trainer: Any, prompt_ids: list[list[int]], generated: list[list[int]]) -> list[list[int]]:
    """`signal.reply_hints` (`rlft.grpo.hints`): a hint and the policy's continuation after the reply of
    `signal.hint_share` of each group's rollouts; the share actually hinted is logged as `signal/hinted`."""
    from trl.models import unwrap_model_for_generation

    from rlft.decoding.generation import Sampling, generate_ids
    from rlft.grpo import hints

    tok, sig, g = trainer.processing_class, trainer.signal, trainer.num_generations
    hint_ids = [tok.encode(h, add_special_tokens=False) for h in sig.reply_hints]
    positions = hints.hinted_positions(len(generated), g, sig.hint_share)
    step = trainer.state.global_step
    sampling = Sampling.like(trainer)

    def sample(prefixes: list[list[int]], max_new_tokens: int, stop: Any) -> list[list[int]]:
        with unwrap_model_for_generation(trainer.model_wrapped, trainer.accelerator,
                                         generation_kwargs=trainer.generation_kwargs) as unwrapped:
            return generate_ids(unwrapped, prefixes, max_new_tokens=max_new_tokens,
                                eos_token_ids=trainer.eos_token_ids, pad_token_id=tok.pad_token_id,
                                sampling=sampling, batch_size=max(len(prefixes), 1), stop=stop)

    out, done = hints.extend_with_hints(generated, prompt_ids, positions, hint_ids,
                                        lambda p: hints.hint_for(p, g, range(len(hint_ids)), step), trainer.trie,
                                        trainer.eos_token_ids, trainer.max_completion_length, sample)
    trainer.log_signal_metric("signal/hinted", len(done) / max(len(generated), 1))
    return out


def _sample_shared(trainer: Any, prompt_ids: list[list[int]]) -> list[list[int]]:
    from trl.models import unwrap_model_for_generation

    pad_id = trainer.processing_class.pad_token_id
    processor = trainer.trie.processor(0, pad_id) if trainer.trie is not None else None
    with unwrap_model_for_generation(trainer.model_wrapped, trainer.accelerator,
                                     generation_kwargs=trainer.generation_kwargs) as unwrapped:
        return sample_shared_prefix(unwrapped, prompt_ids, max_new_tokens=trainer.max_completion_length,
                                    eos_token_ids=trainer.eos_token_ids, pad_token_id=pad_id,
                                    temperature=trainer.temperature, top_k=trainer.top_k, top_p=trainer.top_p,
                                    logits_processor=processor)


def _sample_chunked(trainer: Any, prompt_ids: list[list[int]]) -> list[list[int]]:
    """`rlft.decoding.generation.generate_ids` with the trainer's sampling settings: forced runs of the trie (a looked-up
    article: tens of tokens) go in as one chunk instead of one forward step per token. A group's G identical
    prompts run once and are sampled G times."""
    from trl.models import unwrap_model_for_generation

    from rlft.decoding.generation import Sampling, generate_ids

    g = trainer.num_generations if trainer.model.training else trainer.num_generations_eval
    grouped = len(prompt_ids) % g == 0 and all(prompt_ids[i] == prompt_ids[i - i % g] for i in range(len(prompt_ids)))
    n = g if grouped else 1
    unique = prompt_ids[::n]
    sampling = Sampling.like(trainer, n)
    tok = trainer.processing_class
    with unwrap_model_for_generation(trainer.model_wrapped, trainer.accelerator,
                                     generation_kwargs=trainer.generation_kwargs) as unwrapped:
        return generate_ids(unwrapped, unique, max_new_tokens=trainer.max_completion_length,
                            eos_token_ids=trainer.eos_token_ids, pad_token_id=tok.pad_token_id, trie=trainer.trie,
                            sampling=sampling, batch_size=max(len(unique), 1))


def _generate_hf(trainer: Any, prompt_ids: list[list[int]]) -> list[list[int]]:
    from trl.models import unwrap_model_for_generation

    tok = trainer.processing_class
    device = trainer.accelerator.device
    prompts = [torch.tensor(ids) for ids in prompt_ids]
    input_ids = pad(prompts, padding_value=tok.pad_token_id, padding_side="left").to(device)
    attention_mask = pad([torch.ones_like(t) for t in prompts], padding_value=0, padding_side="left").to(device)
    extra: dict[str, Any] = {}
    if trainer.trie is not None:
        extra["logits_processor"] = [trainer.trie.processor(input_ids.size(1), tok.pad_token_id)]
    elif trainer.decoding.stop_at_suffix:
        extra.update(stop_strings=[trainer.decoding.label_suffix], tokenizer=tok)
    with (unwrap_model_for_generation(trainer.model_wrapped, trainer.accelerator,
                                      generation_kwargs=trainer.generation_kwargs) as unwrapped, torch.no_grad()):
        out = unwrapped.generate(input_ids=input_ids, attention_mask=attention_mask,
                                 generation_config=trainer.generation_config, **extra)
    return out[:, input_ids.size(1):].cpu().tolist()


def _cut_after_suffix(tokenizer: Any, ids: list[int], suffix: str) -> list[int]:
    for k in range(1, len(ids) + 1):
        if suffix in tokenizer.decode(ids[:k], skip_special_tokens=True):
            return ids[:k]
    return ids
