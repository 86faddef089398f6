"""GRPO with learning signal where plain TRL has none: `SignalGRPOTrainer`.

It reads two recipe sections (`rlft.config`): `decoding:` (shared with evaluation, labelling, PPO and export)
and `signal:` (GRPO sampling). With both at their defaults it behaves like TRL's `GRPOTrainer`.

- **decoding.prefill**: token ids appended to every prompt after the chat template (e.g. ``<intent>``); rewards
  and logs see it as the start of each completion, exactly as evaluation returns it.
- **decoding.constrain_labels**: generation may only emit one allowed label + `label_suffix` + EOS
  (`rlft.constrained`). Every rollout is then a valid, few-token answer; no label list is needed in the prompt.
  With vLLM the same constraint goes to TRL's ``vllm_structured_outputs_regex``.
- **decoding.stop_at_suffix**: without the constraint, cut each completion right after `label_suffix`.
- **signal.decision_tokens_only**: with the constraint, leave tokens the trie forces (one possible continuation)
  out of the loss, so the gradient goes to the tokens where the policy chose.
- **signal.drop_zero_std** / **refill_rounds**: groups whose rewards all tie carry no gradient; drop them from
  the batch (no backward pass is spent on them), and draw fresh prompts up to `refill_rounds` times to refill the
  batch with groups that have signal. Surplus signal groups wait in a one-step buffer. Counted in metrics
  ``signal/*``; a warning fires when the zero-signal fraction stays above `warn_zero_std`.

Periodic held-out evaluation is not here: it is task-neutral and works for every trainer (`rlft.periodic_eval`).
Not here: rewards (``rewards/``), recipes, model loading.
"""

from __future__ import annotations

import logging
import random
from collections import deque
from collections.abc import Sequence
from typing import Any

import torch
from trl import GRPOTrainer
from trl.trainer.utils import pad

from rlft.config import DecodingConfig, SignalConfig
from rlft.constrained import TrieLogitsProcessor
from rlft.decoding import build_trie, prefill_ids, structured_output_regex
from rlft.shared_prefix import sample_shared_prefix, shared_prefix_logps

logger = logging.getLogger("rlft.signal")


_PROMPT_KEYS = ("prompt_ids", "prompt_mask")
_COMPLETION_KEYS = ("completion_ids", "completion_mask", "tool_mask", "old_per_token_logps",
                    "ref_per_token_logps", "sampling_per_token_logps", "importance_sampling_ratio")


def _select_rows(batch: dict[str, Any], rows: list[int]) -> dict[str, Any]:
    idx = torch.tensor(rows, dtype=torch.long)
    out = {}
    for key, value in batch.items():
        if key == "num_items_in_batch":
            continue
        if isinstance(value, torch.Tensor) and value.dim() >= 1:
            out[key] = value[idx.to(value.device)]
        else:
            raise ValueError(f"signal: cannot filter batch field '{key}' (multimodal batches are not supported)")
    return out


def _merge(parts: list[dict[str, Any]], pad_token_id: int) -> dict[str, Any]:
    """Concatenate generation batches row-wise, re-padding prompts on the left and completions on the right."""
    if len(parts) == 1:
        return dict(parts[0])
    out: dict[str, Any] = {}
    for key in parts[0]:
        values = [p[key] for p in parts]
        if key in _PROMPT_KEYS or key in _COMPLETION_KEYS:
            side = "left" if key in _PROMPT_KEYS else "right"
            fill = pad_token_id if key.endswith("_ids") else (1 if key == "tool_mask" else 0)
            rows = [r for v in values for r in v]
            out[key] = pad(rows, padding_value=fill, padding_side=side)
        else:
            out[key] = torch.cat(values)
    return out


class SignalGRPOTrainer(GRPOTrainer):
    """TRL's `GRPOTrainer` plus the signal features of `SignalConfig` (see the module docstring).

    ``SignalGRPOTrainer(model=..., reward_funcs=..., args=GRPOConfig(...), train_dataset=..., eval_dataset=...,
    processing_class=tokenizer, signal=SignalConfig(...), decoding=DecodingConfig(...), labels=[...])``; every
    other keyword goes to TRL.
    """

    def __init__(self, *args: Any, signal: SignalConfig | None = None, decoding: DecodingConfig | None = None,
                 labels: Sequence[str] | None = None, **kwargs: Any):
        self.signal = signal or SignalConfig()
        self.decoding = decoding or DecodingConfig()
        self.labels = list(labels or [])
        grpo_args = kwargs.get("args")
        tokenizer = kwargs.get("processing_class")
        self._trie = build_trie(tokenizer, self.labels, self.decoding) if self.decoding.constrain_labels else None
        if self.signal.shared_prefix and grpo_args is not None:
            # checkpointing re-runs layers in backward, which would append to the shared KV cache a second time;
            # on small models it is also pure overhead (one more forward per step). transformers 5 renamed the
            # option to activation_checkpointing and keeps both attributes.
            for name in ("gradient_checkpointing", "activation_checkpointing"):
                if getattr(grpo_args, name, False):
                    logger.info("rlft signal: shared_prefix turns off %s", name)
                    setattr(grpo_args, name, False)
        if self._trie is not None and grpo_args is not None and getattr(grpo_args, "use_vllm", False):
            grpo_args.vllm_structured_outputs_regex = structured_output_regex(self.labels, self.decoding)
        super().__init__(*args, **kwargs)
        self._prefill_ids = prefill_ids(self._tokenizer, self.decoding)
        self._rng = random.Random(self.signal.seed)
        self._surplus: list[dict[str, Any]] = []
        self._zero_std_window: deque[float] = deque(maxlen=self.signal.warn_window)
        self._warned_at = -10**9
        self.signal_totals = {"groups_generated": 0, "groups_zero_std": 0, "groups_dropped": 0,
                              "groups_trained": 0, "refill_rounds": 0, "steps_without_signal": 0}

    # --- prompts and generation -------------------------------------------------------------------------------

    def _tokenize_prompts(self, prompts: list):
        prompt_ids, images, multimodal_fields = super()._tokenize_prompts(prompts)
        if self._prefill_ids:
            prompt_ids = [list(ids) + self._prefill_ids for ids in prompt_ids]
        return prompt_ids, images, multimodal_fields

    def _generate_single_turn(self, prompt_ids, images, multimodal_fields, num_generations, has_tool_images=False):
        wants_own = (self._trie is not None or self.decoding.stop_at_suffix or self.signal.shared_prefix) \
            and not self.use_vllm
        if not wants_own or images is not None or multimodal_fields or self.use_transformers_continuous_batching:
            return super()._generate_single_turn(prompt_ids, images, multimodal_fields, num_generations,
                                                 has_tool_images)
        return self._generate_text_only(prompt_ids), None

    def _generate_text_only(self, prompt_ids: list[list[int]]) -> list[list[int]]:
        if self.signal.shared_prefix:
            completions = self._sample_shared(prompt_ids)
        else:
            completions = self._generate_hf(prompt_ids)
        eos = set(self.eos_token_ids)
        result = []
        for ids in completions:
            cut = next((i + 1 for i, t in enumerate(ids) if t in eos), len(ids))
            ids = ids[:cut]
            if self._trie is None and self.decoding.stop_at_suffix:
                ids = self._cut_after_suffix(ids)
            result.append(ids)
        return result

    def _sample_shared(self, prompt_ids: list[list[int]]) -> list[list[int]]:
        from trl.models import unwrap_model_for_generation

        processor = None
        if self._trie is not None:
            processor = TrieLogitsProcessor(self._trie, 0, self._tokenizer.pad_token_id)
        with unwrap_model_for_generation(self.model_wrapped, self.accelerator,
                                         generation_kwargs=self.generation_kwargs) as unwrapped:
            return sample_shared_prefix(unwrapped, prompt_ids, max_new_tokens=self.max_completion_length,
                                        eos_token_ids=self.eos_token_ids, pad_token_id=self._tokenizer.pad_token_id,
                                        temperature=self.temperature, top_k=self.top_k, top_p=self.top_p,
                                        logits_processor=processor)

    def _generate_hf(self, prompt_ids: list[list[int]]) -> list[list[int]]:
        from trl.models import unwrap_model_for_generation

        device = self.accelerator.device
        prompts = [torch.tensor(ids) for ids in prompt_ids]
        input_ids = pad(prompts, padding_value=self._tokenizer.pad_token_id, padding_side="left").to(device)
        attention_mask = pad([torch.ones_like(t) for t in prompts], padding_value=0, padding_side="left").to(device)
        extra: dict[str, Any] = {}
        if self._trie is not None:
            extra["logits_processor"] = [TrieLogitsProcessor(self._trie, input_ids.size(1),
                                                             self._tokenizer.pad_token_id)]
        elif self.decoding.stop_at_suffix:
            extra.update(stop_strings=[self.decoding.label_suffix], tokenizer=self._tokenizer)
        with (unwrap_model_for_generation(self.model_wrapped, self.accelerator,
                                          generation_kwargs=self.generation_kwargs) as unwrapped, torch.no_grad()):
            out = unwrapped.generate(input_ids=input_ids, attention_mask=attention_mask,
                                     generation_config=self.generation_config, **extra)
        return out[:, input_ids.size(1):].cpu().tolist()

    def _get_per_token_logps_and_entropies(self, model, input_ids, attention_mask, logits_to_keep, batch_size=None,
                                           compute_entropy=False, compute_aux_loss=False, **multimodal):
        if not self.signal.shared_prefix or compute_aux_loss or any(v is not None for v in multimodal.values()):
            return super()._get_per_token_logps_and_entropies(
                model, input_ids, attention_mask, logits_to_keep, batch_size, compute_entropy, compute_aux_loss,
                **multimodal)
        with self.accelerator.autocast():
            logps, entropy = shared_prefix_logps(model, input_ids, attention_mask, logits_to_keep, compute_entropy)
        return logps, entropy, None

    def _cut_after_suffix(self, ids: list[int]) -> list[int]:
        for k in range(1, len(ids) + 1):
            if self.decoding.label_suffix in self._tokenizer.decode(ids[:k], skip_special_tokens=True):
                return ids[:k]
        return ids

    def _generate(self, prompts: list):
        result = list(super()._generate(prompts))
        if self.decoding.prefill:  # rewards and logs see the prefill as the start of the completion
            completions = result[3]
            result[3] = [[{**c[0], "content": self.decoding.prefill + c[0]["content"]}] if isinstance(c, list)
                         else self.decoding.prefill + c for c in completions]
        return tuple(result)

    # --- groups with signal -----------------------------------------------------------------------------------

    def _generate_and_score_completions(self, inputs: list[dict[str, Any]]) -> dict[str, Any]:
        mode = "train" if self.model.training else "eval"
        batch = super()._generate_and_score_completions(inputs)
        if self.signal.decision_tokens_only:
            batch = self._mask_forced_tokens(batch)
        if mode != "train":
            return batch
        g = self.num_generations
        n_groups = len(inputs) // g
        kept, zero = self._split_groups(batch, g)
        self._count(n_groups, len(zero), first_draw=True)
        if not self.signal.drop_zero_std:
            return batch
        parts = [_select_rows(batch, [r for grp in kept for r in grp])] if kept else []
        have = len(kept)
        while self._surplus and have < n_groups:  # groups with signal left over from the previous step
            part = self._surplus.pop(0)
            take = min(len(part["advantages"]) // g, n_groups - have)
            parts.append(_select_rows(part, list(range(take * g))))
            have += take
        self._surplus = []
        rounds = 0
        while have < n_groups and rounds < self.signal.refill_rounds:
            rounds += 1
            fresh = self._draw_prompts(n_groups, g)
            more = super()._generate_and_score_completions(fresh)
            if self.signal.decision_tokens_only:
                more = self._mask_forced_tokens(more)
            more_kept, more_zero = self._split_groups(more, g)
            self._count(n_groups, len(more_zero), first_draw=False)
            need = n_groups - have
            if more_kept[:need]:
                parts.append(_select_rows(more, [r for grp in more_kept[:need] for r in grp]))
            if self.signal.keep_surplus and more_kept[need:]:
                self._surplus.append(_select_rows(more, [r for grp in more_kept[need:] for r in grp]))
            have += min(need, len(more_kept))
        self.signal_totals["refill_rounds"] += rounds
        self._metrics["train"]["signal/refill_rounds"].append(float(rounds))
        if not parts:  # no group had signal: train on one tied group (zero advantage, zero gradient)
            self.signal_totals["steps_without_signal"] += 1
            parts = [_select_rows(batch, zero[0])]
            have = 0
        self.signal_totals["groups_trained"] += have
        self._metrics["train"]["signal/groups_trained"].append(float(have))
        merged = _merge(parts, self._tokenizer.pad_token_id)
        mask = merged["completion_mask"] * merged.get("tool_mask", 1)
        merged["num_items_in_batch"] = mask.sum()
        return merged

    @staticmethod
    def _split_groups(batch: dict[str, Any], g: int) -> tuple[list[list[int]], list[list[int]]]:
        """Row indices of groups with reward variance (non-zero advantages) and of tied groups."""
        adv = batch["advantages"].detach().float().cpu().view(-1, g)
        kept, zero = [], []
        for i, row in enumerate(adv):
            rows = list(range(i * g, (i + 1) * g))
            (kept if bool((row.abs() > 1e-6).any()) else zero).append(rows)
        return kept, zero

    def _draw_prompts(self, n_groups: int, g: int) -> list[dict[str, Any]]:
        data = self.train_dataset
        picks = [self._rng.randrange(len(data)) for _ in range(n_groups)]
        return [dict(data[i]) for i in picks for _ in range(g)]

    def _count(self, n_groups: int, n_zero: int, first_draw: bool) -> None:
        t = self.signal_totals
        t["groups_generated"] += n_groups
        t["groups_zero_std"] += n_zero
        if self.signal.drop_zero_std:
            t["groups_dropped"] += n_zero
        if not first_draw:
            return
        frac = n_zero / max(n_groups, 1)
        self._metrics["train"]["signal/frac_zero_std_first_draw"].append(frac)
        self._zero_std_window.append(frac)
        window = self._zero_std_window
        mean = sum(window) / len(window)
        step = self.state.global_step
        if len(window) == window.maxlen and mean > self.signal.warn_zero_std and step - self._warned_at >= len(window):
            self._warned_at = step
            logger.warning(
                "rlft signal: %.0f%% of GRPO groups had zero reward variance over the last %d steps (no gradient). "
                "Try decoding.constrain_labels / decoding.prefill, a shaped reward, more num_generations, "
                "temperature 1.0, or signal.drop_zero_std with refill_rounds.", 100 * mean, len(window))

    def _mask_forced_tokens(self, batch: dict[str, Any]) -> dict[str, Any]:
        """tool_mask = 0 where the constraint allowed a single token (no decision was made there)."""
        ids = batch["completion_ids"].cpu().tolist()
        mask = batch["completion_mask"].cpu()
        decision = torch.zeros_like(mask)
        for r, row in enumerate(ids):
            for k in range(len(row)):
                if mask[r, k] and not self._trie.is_forced(row[:k]):
                    decision[r, k] = 1
        existing = batch.get("tool_mask")
        decision = decision.to(batch["completion_mask"].device)
        batch["tool_mask"] = decision if existing is None else existing * decision
        batch["num_items_in_batch"] = (batch["completion_mask"] * batch["tool_mask"]).sum()
        return batch
