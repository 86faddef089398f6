"""The one place rlft reaches into TRL's private `GRPOTrainer` API. Everything else uses public seams
(`rollout_func`, callbacks, reward functions, config fields).

Overridden (no public hook exists in TRL 1.16):
- `_generate_and_score_completions(inputs)`: the scored batch is the only place a zero-variance group can be
  dropped before the backward pass, and where advantages can be recomputed (`signal.baseline`).
- `_calculate_rewards(inputs, prompts, completions, completion_ids_list)`: rewards see ``decoding.prefill`` as the
  start of each completion (the prefill ids are in the prompt, `rlft.grpo.rollout`) and never the text a
  ``decoding.lookup`` appended (it is context, like a tool result), and rlft keeps the
  per-function rewards TRL computed, which its batch does not carry (success statistics, all-correct / all-wrong
  counts, the prompt baseline).
- `_get_per_token_logps_and_entropies(...)`: shared-prefix scoring (`signal.shared_prefix`).
`JudgedRowMetrics` (in every GRPO trainer rlft builds, plain or `SignalGRPOTrainer`) overrides
`_calculate_rewards` and `_generate_and_score_completions` only to correct three logged numbers: `reward` and
`rewards/<name>/mean|std` are over the rows each reward judged (an abstention imputed by `rlft.scoring.abstain`, or left
NaN and summed as 0 by TRL, is not a judged 0); advantages are untouched.
Called: `_generate_single_turn` (TRL's sampler, from the rollout when rlft does not sample itself).
Read/written: `_metrics` (rlft's `signal/*` metrics; TRL's public `log_metric` is only offered to reward
functions), `_step` and `_buffered_inputs` (TRL's generation counter and buffer, saved for exact resume).

tests/test_trl_seams.py pins the signatures of all of these and the keys of the batch, so a TRL upgrade that
changes them fails in CI instead of silently mis-training.
"""

from __future__ import annotations

from typing import Any

import torch
from trl.trainer.utils import nanstd

from rlft.decoding.shared_prefix import shared_prefix_logps

OVERRIDDEN = ("_generate_and_score_completions", "_calculate_rewards", "_get_per_token_logps_and_entropies")
CALLED = ("_generate_single_turn",)
ATTRIBUTES = ("_metrics", "_step", "_buffered_inputs")


class JudgedRowMetrics:
    """Mixin placed before `trl.GRPOTrainer`: the logged `reward` is the weighted sum of each reward's mean over
    the rows it judged (an abstention is left out, not counted as 0 or as its imputed group mean), and
    `rewards/<name>/mean|std` are over the judged rows. TRL's advantages are untouched."""

    def _calculate_rewards(self, inputs, prompts, completions, completion_ids_list):
        per_func = super()._calculate_rewards(inputs, prompts, completions, completion_ids_list)
        # what each reward abstained on, before rlft.scoring.abstain imputed it (a wrapped reward records its last call)
        local = torch.zeros(len(prompts), len(self.reward_funcs), dtype=torch.bool, device=per_func.device)
        for i, func in enumerate(self.reward_funcs):
            abstained = getattr(func, "rlft_abstained", None)
            if abstained is not None and len(abstained) == len(prompts):
                local[:, i] = torch.tensor(abstained, dtype=torch.bool, device=per_func.device)
        mask = self.accelerator.gather(local) | torch.isnan(per_func)  # TRL gathers per_func the same way
        self._judged_rewards_per_func = per_func.masked_fill(mask, torch.nan)
        self._scored_rewards_per_func = per_func
        return per_func

    def _generate_and_score_completions(self, inputs: list[dict[str, Any]]) -> dict[str, Any]:
        out = super()._generate_and_score_completions(inputs)
        judged = getattr(self, "_judged_rewards_per_func", None)
        if judged is None:
            return out
        metrics = self._metrics["train" if self.model.training else "eval"]
        judged = judged.float()
        means = torch.nanmean(judged, dim=0)
        weights = self.reward_weights.to(means.device)
        scored = ~torch.isnan(means)
        total = float((means[scored] * weights[scored]).sum()) if bool(scored.any()) else float("nan")
        if metrics.get("reward"):
            metrics["reward"][-1] = total
        self._log_tied_groups(metrics)
        for i, name in enumerate(self.reward_func_names):
            for key, value in ((f"rewards/{name}/mean", torch.nanmean(judged[:, i])),
                               (f"rewards/{name}/std", nanstd(judged[:, i]))):
                if metrics.get(key):
                    metrics[key][-1] = float(value)
        self._judged_rewards_per_func = None
        return out


    def _log_tied_groups(self, metrics: dict[str, list[float]]) -> None:
        """`frac_reward_zero_std` from ties of the rewards (`rlft.grpo.batch.tied_groups`) where TRL's reads a group's
        std: the rounding of a float32 mean (std ~1e-7) is no reward spread. Under group-wise
        `sum_then_normalize` only (TRL's `normalize_then_sum` and batch scaling read a batch-wide std)."""
        from rlft.grpo.batch import tied_groups

        per_func = getattr(self, "_scored_rewards_per_func", None)
        self._scored_rewards_per_func = None
        if (per_func is None or not metrics.get("frac_reward_zero_std")
                or self.multi_objective_aggregation != "sum_then_normalize" or self.scale_rewards == "batch"):
            return
        g = self.num_generations if self.model.training else self.num_generations_eval
        weights = self.reward_weights.to(per_func.device)
        total = (per_func * weights.unsqueeze(0)).nansum(dim=1)
        total[torch.isnan(per_func).all(dim=1)] = torch.nan
        if g and len(total) % g == 0:
            tied = tied_groups(total, g)
            metrics["frac_reward_zero_std"][-1] = sum(tied) / max(len(tied), 1)


class TRLHooks:
    """Mixin placed before `trl.GRPOTrainer` in the MRO; the host implements `build_batch` and `signal`."""

    def _generate_and_score_completions(self, inputs: list[dict[str, Any]]) -> dict[str, Any]:
        return self.build_batch(inputs)

    def _calculate_rewards(self, inputs, prompts, completions, completion_ids_list):
        prefill = self.decoding.prefill
        trie = getattr(self, "trie", None)
        if trie is not None and trie.lookup_lengths:  # rewards score what the model wrote, not the looked-up text
            texts = self.processing_class.batch_decode([trie.strip_lookup(ids) for ids in completion_ids_list],
                                                       skip_special_tokens=True)
            completions = [[{**c[0], "content": t}, *c[1:]] if isinstance(c, list) else t
                           for c, t in zip(completions, texts, strict=True)]
        if prefill:
            completions = [[{**c[0], "content": prefill + c[0]["content"]}, *c[1:]] if isinstance(c, list)
                           else prefill + c for c in completions]
        rewards_per_func = super()._calculate_rewards(inputs, prompts, completions, completion_ids_list)
        self._last_rewards_per_func = rewards_per_func
        return rewards_per_func

    def _get_per_token_logps_and_entropies(self, model, input_ids, attention_mask, logits_to_keep, batch_size=None,
                                           compute_entropy=False, compute_aux_loss=False, **multimodal):
        if not self.signal.shared_prefix or compute_aux_loss or any(v is not None for v in multimodal.values()):
            return super()._get_per_token_logps_and_entropies(
                model, input_ids, attention_mask, logits_to_keep, batch_size, compute_entropy, compute_aux_loss,
                **multimodal)
        with self.accelerator.autocast():
            logps, entropy = shared_prefix_logps(model, input_ids, attention_mask, logits_to_keep, compute_entropy)
        return logps, entropy, None

    # --- helpers over the private API ---------------------------------------------------------------------------

    def score(self, inputs: list[dict[str, Any]]) -> tuple[dict[str, Any], torch.Tensor]:
        """TRL's scored batch for `inputs` and this process's total reward per row (NaN: unscorable)."""
        batch = super()._generate_and_score_completions(inputs)
        per_func = self._last_rewards_per_func
        weights = self.reward_weights.to(per_func.device)
        total = (per_func * weights.unsqueeze(0)).nansum(dim=1)
        total[torch.isnan(per_func).all(dim=1)] = torch.nan
        n = len(inputs)
        start = self.accelerator.process_index * n
        return batch, total[start:start + n].detach().float().cpu()

    def log_signal_metric(self, name: str, value: float) -> None:
        mode = "train" if self.model.training else "eval"
        self._metrics[mode][name].append(float(value))

    def generation_state(self) -> dict[str, Any]:
        return {"step": self._step, "buffered_inputs": self._buffered_inputs}

    def load_generation_state(self, state: dict[str, Any]) -> None:
        self._step = int(state["step"])
        self._buffered_inputs = state["buffered_inputs"]
