"""`PPOTrainer`: PPO with a value head and a KL penalty to the adapter-disabled base, for any rlft reward.

A `transformers.Trainer` subclass (optimizer, scheduler, accelerate, callbacks, logging and saving are the
Trainer's) whose `train()` runs PPO's own loop::

    for step in range(max_steps):
        rollout = sample prompts -> generate -> score with rewards (sync/async, weighted)
                  + old log-probs and values (policy) + reference log-probs (same model, adapters disabled)
        rewards  = score on the last token − β·KL per token;  advantages, returns = GAE(γ, λ)
        for epoch in range(ppo_epochs): for each mini-batch: clipped policy loss + vf_coef · clipped value loss
        β <- KL controller (fixed, or adaptive towards target_kl)

`save_model` writes the adapter (as the Trainer does) plus `value_head.safetensors`; with `save_strategy: steps`
each `checkpoint-N` also holds optimizer, scheduler, RNG and PPO state, and `train(resume_from_checkpoint=...)`
continues exactly (`rlft.ppo.checkpoint`). Tested with TRL 1.16, transformers 5.24, PEFT 0.21 on CPU. Not
supported: vLLM generation, evaluation during training.

Rollouts can start after a `prefill` and be restricted by a logits processor (the recipe's `decoding.prefill` /
`signal.constrain_labels`, as for GRPO). Log-probs for the ratio, KL and loss come from the unconstrained
policy, as in TRL's GRPO with constrained decoding; the constraint only decides which tokens get sampled.
"""

from __future__ import annotations

import copy
import math
import time
from collections import defaultdict
from collections.abc import Callable, Sequence
from typing import Any

import torch
from transformers import Trainer, TrainerState
from transformers.trainer_callback import ExportableState
from transformers.trainer_utils import TrainOutput

from rlft.ppo import checkpoint, core
from rlft.ppo.ppo_config import PPOConfig
from rlft.ppo.kl_control import make_kl_controller
from rlft.ppo.sampling import (PolicyWithValue, Rollout, decode_completions, encode_prompts, eos_ids,
                              fill_in_scores, forward_policy, sample)
from rlft.ppo.value_head import ValueHead, hidden_size_of
from rlft.scoring.loader import LoadedReward, as_loaded_rewards
from rlft.scoring.completions import score

def _mean_std(values: Sequence[float | None]) -> tuple[float, float]:
    known = [v for v in values if v is not None]
    if not known:
        return float("nan"), float("nan")
    mean = sum(known) / len(known)
    return mean, math.sqrt(sum((v - mean) ** 2 for v in known) / len(known))


class PPOTrainer(Trainer):
    """PPO for a (PEFT) causal LM with TRL-convention reward functions; see the module docstring."""

    def __init__(self, model: Any, processing_class: Any, reward_funcs: Any, args: PPOConfig | None = None,
                 train_dataset: Any = None, value_head: ValueHead | None = None, callbacks: list | None = None,
                 optimizers: tuple = (None, None), prefill: str = "",
                 logits_processor_factory: Callable[[int], Any] | None = None) -> None:
        """`prefill`: text every reply starts with (part of the prompt, so never trained on; rewards see it as the
        start of the completion). `logits_processor_factory`: `prompt_length -> LogitsProcessor` constraining the
        rollouts, e.g. `rlft.decoding.constrained.processor_factory(tokenizer, labels, prefill, "</intent>")`."""
        from trl.trainer.utils import disable_dropout_in_model

        args = args or PPOConfig(output_dir="ppo-output")
        if not isinstance(args, PPOConfig):
            raise TypeError(f"args must be an rlft PPOConfig, got {type(args).__name__}")
        if train_dataset is None or "prompt" not in train_dataset.column_names:
            raise ValueError("PPOTrainer needs a train_dataset with a 'prompt' column")
        single = callable(reward_funcs) or isinstance(reward_funcs, LoadedReward)
        reward_funcs = [reward_funcs] if single else list(reward_funcs)
        if not reward_funcs:
            raise ValueError("PPOTrainer needs at least one reward function")
        self.rewards = as_loaded_rewards(reward_funcs, args.reward_weights)
        if processing_class.pad_token is None:
            processing_class.pad_token = processing_class.eos_token
        disable_dropout_in_model(model)  # identical forward passes for rollout and update -> ratio 1 at start
        super().__init__(model=model, args=args, train_dataset=train_dataset, processing_class=processing_class,
                         data_collator=lambda rows: rows, callbacks=callbacks, optimizers=optimizers)
        if value_head is None:
            value_head = (ValueHead.load(args.value_head_init) if args.value_head_init
                          else ValueHead(hidden_size_of(model), args.value_head_dropout))
        self.value_head = value_head.to(self.args.device)
        self.policy_value = PolicyWithValue(self.model, self.value_head)
        self.is_peft = hasattr(self.model, "disable_adapter") and hasattr(self.model, "peft_config")
        self.ref_model = None
        if not self.is_peft and self.uses_reference:  # full fine-tuning: the reference needs its own frozen copy
            self.ref_model = copy.deepcopy(self.model).eval().requires_grad_(False)
        self.kl_ctl = make_kl_controller(args.init_kl_coef, args.target_kl, args.kl_horizon)
        self.prefill = prefill
        self._prefill_ids = processing_class.encode(prefill, add_special_tokens=False) if prefill else []
        self.logits_processor_factory = logits_processor_factory
        self._generator = torch.Generator().manual_seed(args.seed)

    @property
    def uses_reference(self) -> bool:
        return self.args.init_kl_coef > 0 or self.args.target_kl is not None

    # ----- data -----

    def _prompt_loader(self) -> Any:
        from torch.utils.data import DataLoader

        loader = DataLoader(self.train_dataset, batch_size=self.args.prompts_per_rollout, shuffle=True,
                            drop_last=len(self.train_dataset) >= self.args.prompts_per_rollout,
                            collate_fn=lambda rows: rows, generator=torch.Generator().manual_seed(self.args.seed))
        return self.accelerator.prepare(loader)

    # ----- rollout -----

    def _micro_batches(self, n: int) -> list[torch.Tensor]:
        size = max(self.args.mini_batch_size // self.args.gradient_accumulation_steps, 1)
        return list(torch.arange(n).split(size))

    @torch.no_grad()
    def _forward_no_grad(self, rollout: Rollout, reference: bool) -> dict[str, torch.Tensor]:
        chunks: dict[str, list[torch.Tensor]] = defaultdict(list)
        for idx in self._micro_batches(len(rollout)):
            ids, mask = rollout.input_ids[idx], rollout.attention_mask[idx]
            with self.accelerator.autocast():
                if reference and self.ref_model is not None:
                    out = forward_policy(self.ref_model, None, ids, mask, rollout.n_completion, self.args.temperature)
                elif reference:
                    with self.model.disable_adapter():
                        out = forward_policy(self.model, None, ids, mask, rollout.n_completion,
                                             self.args.temperature)
                else:
                    out = forward_policy(self.model, self.value_head, ids, mask, rollout.n_completion,
                                         self.args.temperature)
            for k, v in out.items():
                chunks[k].append(v)
        return {k: torch.cat(v) for k, v in chunks.items()}

    def make_rollout(self, rows: list[dict[str, Any]]) -> tuple[Rollout, dict[str, float]]:
        """Generate, score and evaluate one batch of prompt rows; returns the rollout (with advantages) and stats."""
        args, tok = self.args, self.processing_class
        rows = [row for row in rows for _ in range(args.num_generations)]
        prompts = [row["prompt"] for row in rows]
        columns = {k: [row[k] for row in rows] for k in rows[0] if k != "prompt"}
        prompt_ids, prompt_mask = encode_prompts(tok, prompts, args.max_prompt_length, self.args.device)
        if self._prefill_ids:  # appended as ids (not text) so the chat template's last token cannot merge with it
            prefill = torch.tensor(self._prefill_ids, device=prompt_ids.device).expand(len(rows), -1)
            prompt_ids = torch.cat([prompt_ids, prefill], 1)
            prompt_mask = torch.cat([prompt_mask, torch.ones_like(prefill)], 1)
        processor = self.logits_processor_factory(prompt_ids.shape[1]) if self.logits_processor_factory else None
        completion_ids, completion_mask = sample(self.accelerator.unwrap_model(self.model), tok, prompt_ids,
                                                 prompt_mask, args, logits_processor=processor)
        rollout = Rollout(torch.cat([prompt_ids, completion_ids], 1), torch.cat([prompt_mask, completion_mask], 1),
                          completion_mask)
        completions = decode_completions(tok, completion_ids, completion_mask, prompts, self.prefill)
        columns["completion_ids"] = [ids[m.bool()].tolist() for ids, m in zip(completion_ids, completion_mask,
                                                                               strict=True)]
        scored = score(self.rewards, prompts, completions, columns, trainer_state=self.state)
        totals, abstained = fill_in_scores(scored.total)
        scores = torch.tensor(totals, dtype=torch.float32, device=self.args.device)
        lengths = completion_mask.sum(1)
        stop = torch.tensor(eos_ids(self.model, tok), device=completion_ids.device)
        truncated = completion_mask[:, -1].bool() & ~torch.isin(completion_ids[:, -1], stop)
        if args.missing_eos_penalty is not None:
            scores = scores - args.missing_eos_penalty * truncated.float()

        policy = self._forward_no_grad(rollout, reference=False)
        rollout.logprobs, rollout.values = policy["logprobs"], policy["values"]
        rollout.ref_logprobs = (self._forward_no_grad(rollout, reference=True)["logprobs"] if self.uses_reference
                                else rollout.logprobs.clone())
        mask = completion_mask.float()
        kl = core.kl_per_token(rollout.logprobs, rollout.ref_logprobs, args.kl_estimator) * mask
        rewards = core.shaped_rewards(scores, kl, mask, self.kl_ctl.value)
        if args.whiten_rewards:
            rewards = core.masked_whiten(rewards, mask, shift_mean=False)
        advantages, returns = core.gae(rewards, rollout.values, mask, args.gamma, args.lam)
        if args.whiten_advantages:
            advantages = core.masked_whiten(advantages, mask)
        rollout.scores, rollout.rewards, rollout.advantages, rollout.returns = scores, rewards, advantages, returns

        mean, std = _mean_std(totals)
        stats = {"reward": mean, "reward_std": std, "kl": kl.sum(1).mean().item(), "kl_coef": self.kl_ctl.value,
                 "non_score_reward": (-self.kl_ctl.value * kl).sum(1).mean().item(),
                 "explained_variance": core.explained_variance(rollout.values, returns, mask).item(),
                 "value_mean": core.masked_mean(rollout.values, mask).item(),
                 "completions/mean_length": lengths.float().mean().item(),
                 "completions/clipped_ratio": truncated.float().mean().item(),
                 "rewards/abstained_ratio": abstained / len(rows)}
        for name, values in scored.per_reward.items():
            stats[f"rewards/{name}/mean"], stats[f"rewards/{name}/std"] = _mean_std(values)
        stats.update(scored.metrics)
        return rollout, stats

    # ----- optimisation -----

    def _loss(self, batch: Rollout) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        args = self.args
        with self.accelerator.autocast():
            out = self.policy_value(batch.input_ids, batch.attention_mask, batch.n_completion, args.temperature,
                                    with_values=True, with_entropy=True if args.entropy_coef else None)
        mask = batch.completion_mask.float()
        pg = core.policy_loss(out["logprobs"], batch.logprobs, batch.advantages, mask, args.cliprange)
        vf = core.value_loss(out["values"], batch.values, batch.returns, mask, args.cliprange_value)
        entropy = core.masked_mean(out["entropy"], mask)
        loss = pg.loss + args.vf_coef * vf.loss - args.entropy_coef * entropy
        return loss, {"policy_loss": pg.loss, "value_loss": vf.loss, "policy_clipfrac": pg.clipfrac,
                      "value_clipfrac": vf.clipfrac, "entropy": entropy,
                      "approx_kl": core.approx_kl(out["logprobs"], batch.logprobs, mask), "loss": loss}

    def ppo_update(self, rollout: Rollout) -> dict[str, float]:
        """ppo_epochs passes of mini-batch optimizer steps over one rollout; returns the mean of each loss stat."""
        args = self.args
        sums: dict[str, float] = defaultdict(float)
        count = 0
        params = [p for p in self.policy_value.parameters() if p.requires_grad]
        for _ in range(args.ppo_epochs):
            order = torch.randperm(len(rollout), generator=self._generator).to(rollout.input_ids.device)
            for mini in order.split(args.mini_batch_size):
                for micro in mini.split(max(len(mini) // args.gradient_accumulation_steps, 1)):
                    loss, parts = self._loss(rollout.select(micro))
                    self.accelerator.backward(loss * len(micro) / len(mini))
                    for k, v in parts.items():
                        sums[k] += v.item()
                    count += 1
                if args.max_grad_norm and args.max_grad_norm > 0:
                    self.accelerator.clip_grad_norm_(params, args.max_grad_norm)
                self.optimizer.step()
                self.lr_scheduler.step()
                self.optimizer.zero_grad(set_to_none=True)
        return {k: v / count for k, v in sums.items()}

    def _setup(self, max_steps: int) -> None:
        args = self.args
        if args.activation_checkpointing:
            self.model.gradient_checkpointing_enable(
                gradient_checkpointing_kwargs=args.activation_checkpointing_kwargs or {"use_reentrant": False})
        self.create_optimizer(self.policy_value)
        self.create_scheduler(max_steps * args.ppo_epochs * args.num_mini_batches, self.optimizer)
        self.policy_value, self.optimizer = self.accelerator.prepare(self.policy_value, self.optimizer)
        self.model_wrapped = self.policy_value
        self.state = TrainerState(stateful_callbacks=[cb for cb in self.callback_handler.callbacks + [self.control]
                                                      if isinstance(cb, ExportableState)])
        self.state.max_steps = max_steps
        self.state.num_train_epochs = math.ceil(args.num_train_epochs)
        self.state.logging_steps = _absolute(args.logging_steps, max_steps)
        self.state.save_steps = _absolute(args.save_steps, max_steps)
        self.state.train_batch_size = args.per_device_train_batch_size
        self.state.is_local_process_zero = self.is_local_process_zero()
        self.state.is_world_process_zero = self.is_world_process_zero()
        for name in ("optimizer", "lr_scheduler"):
            setattr(self.callback_handler, name, getattr(self, name))

    def train(self, resume_from_checkpoint: str | bool | None = None, trial: Any = None,
              ignore_keys_for_eval: list[str] | None = None, **kwargs: Any) -> TrainOutput:
        """Run PPO for max_steps; `resume_from_checkpoint` (a `checkpoint-N` folder) continues exactly from it."""
        if resume_from_checkpoint is True:
            raise ValueError("PPOTrainer.train: give the checkpoint folder (rlft.run.checkpoints.resolve_resume finds the "
                             "newest complete one)")
        args = self.args
        loader = self._prompt_loader()
        self.callback_handler.train_dataloader = loader
        updates_per_epoch = max(len(loader), 1)
        max_steps = args.max_steps if args.max_steps > 0 else math.ceil(args.num_train_epochs * updates_per_epoch)
        if resume_from_checkpoint:
            checkpoint.load_weights(self, str(resume_from_checkpoint))
        self._setup(max_steps)
        self.model.train()
        prompts = _PromptStream(loader)
        window: dict[str, list[float]] = defaultdict(list)
        losses: list[float] = []
        if resume_from_checkpoint:
            saved_window, losses = checkpoint.load_state(self, str(resume_from_checkpoint), prompts.skip)
            window.update(saved_window)
        self.control = self.callback_handler.on_train_begin(args, self.state, self.control)
        start, first = time.time(), self.state.global_step
        for step in range(first, max_steps):
            rows = prompts.next()
            self.control = self.callback_handler.on_step_begin(args, self.state, self.control)
            rollout, stats = self.make_rollout(rows)
            stats.update(self.ppo_update(rollout))
            self.kl_ctl.update(stats["kl"], len(rollout) * self.accelerator.num_processes)
            losses.append(stats["loss"])
            for k, v in stats.items():
                window[k].append(v)
            self.state.global_step = step + 1
            self.state.epoch = (step + 1) / updates_per_epoch
            self.control = self.callback_handler.on_step_end(args, self.state, self.control)
            if self.state.global_step % self.state.logging_steps == 0 or step + 1 == max_steps:
                logs = {k: _nanmean(v) for k, v in window.items()}
                logs["learning_rate"] = self.lr_scheduler.get_last_lr()[0]
                self.log(logs)
                window.clear()
            if args.save_strategy == "steps" and self.state.global_step % self.state.save_steps == 0:
                checkpoint.save_checkpoint(self, window, losses)
                self.control = self.callback_handler.on_save(args, self.state, self.control)
                checkpoint.rotate(self)
            if self.control.should_training_stop:
                break
        runtime = time.time() - start
        done = self.state.global_step - first
        metrics = {"train_runtime": round(runtime, 2), "train_steps_per_second": round(done / max(runtime, 1e-9), 3),
                   "train_loss": _nanmean(losses), "final_kl_coef": self.kl_ctl.value}
        self.control = self.callback_handler.on_train_end(args, self.state, self.control)
        return TrainOutput(self.state.global_step, metrics["train_loss"], metrics)

    # ----- saving -----

    def _save(self, output_dir: str | None = None, state_dict: dict | None = None) -> None:
        """Adapter (or full model) + tokenizer as the Trainer saves them, plus the value head."""
        output_dir = output_dir or self.args.output_dir
        super()._save(output_dir, state_dict=state_dict)
        if self.args.should_save:
            self.accelerator.unwrap_model(self.policy_value).value_head.save(output_dir)


class _PromptStream:
    """Batches of prompt rows from the loader, epoch after epoch (a new shuffle each epoch)."""

    def __init__(self, loader: Any) -> None:
        self.loader, self.epoch, self.batches = loader, 0, iter(loader)

    def next(self) -> list[dict[str, Any]]:
        try:
            return next(self.batches)
        except StopIteration:
            self.epoch += 1
            if hasattr(self.loader, "set_epoch"):
                self.loader.set_epoch(self.epoch)
            self.batches = iter(self.loader)
            return next(self.batches)

    def skip(self, n: int) -> None:
        for _ in range(n):
            self.next()


def _absolute(steps: float, max_steps: int) -> int:
    """TrainingArguments allow ratios (< 1) of the total for logging/save steps."""
    return max(math.ceil(max_steps * steps) if steps < 1 else int(steps), 1)


def _nanmean(values: list[float]) -> float:
    known = [v for v in values if not math.isnan(v)]
    return sum(known) / len(known) if known else float("nan")
