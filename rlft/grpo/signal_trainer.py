"""GRPO with learning signal where plain TRL has none: `SignalGRPOTrainer`.

It reads two recipe sections (`rlft.recipe.sections`): `decoding:` (shared with evaluation, labelling, PPO and export)
and `signal:` (GRPO sampling). Generation goes through TRL's public `rollout_func` (`rlft.grpo.rollout`: prefill,
label constraint, stop-at-suffix, shared-prefix sampling, forced tokens out of the loss); the few private TRL
methods still overridden live in `rlft.grpo.trl_hooks`, pinned by tests/test_trl_seams.py.

- **signal.drop_zero_std** / **refill_rounds**: groups whose advantages are all zero carry no gradient; drop them
  from the batch (no backward pass is spent on them), and draw fresh prompts up to `refill_rounds` times to refill
  the batch with groups that have signal. Surplus signal groups wait in a one-step buffer. **signal.adaptive**
  draws those prompts by their success so far (`rlft.grpo.prompt_stats`).
- **signal.baseline**: group (TRL's advantages) or prompt_ema (reward minus the prompt's running mean).
- Metrics ``signal/*``: frac_zero_std_first_draw, frac_all_correct, frac_all_wrong, refill_rounds,
  groups_trained, adaptive counts; a warning fires when the zero-signal fraction stays above `warn_zero_std`.
- **signal.segment_credit**: per-token advantages, each reward's only on its segment of a free-reply completion
  (head / reply; `rlft.grpo.segments`); the batch's ``advantages`` is then (B, T). Metrics ``segment/*``.
- **signal.exact_head**: the head's rewards (e.g. intent) maximised exactly over the label set by the
  label-space objective, added to the GRPO loss, instead of by sampled advantages (`rlft.grpo.exact_head`).
  Metrics ``exact_head/*``.
- **signal.reply_hints**: hinted exploration, a move (" Could you") appended after the reply of a share of each
  group's rollouts and continued by the policy, so the rewards can rank a move the sampler never makes
  (`rlft.grpo.hints`, applied in the rollout). Metric ``signal/hinted``.
- **signal.teacher_lookup**: context distillation, a teacher that sees the gold label's article adds a per-token
  term to each reply token's advantage (`rlft.grpo.teacher`). Metrics ``teacher/*``.
- Exact resume: `rlft.grpo.signal_state` saves the sampler, buffer, statistics and TRL's generation counter.

Periodic held-out evaluation is not here: it is task-neutral and works for every trainer (`rlft.evaluation.periodic`).
"""

from __future__ import annotations

import logging
import random
from collections import deque
from collections.abc import Sequence
from typing import Any

import torch
from trl import GRPOTrainer

from rlft.recipe.sections import DecodingConfig, LabelPGConfig, SignalConfig
from rlft.decoding.prompting import build_trie, prefill_ids, prompt_ids
from rlft.grpo import batch as B
from rlft.grpo import segments as S
from rlft.grpo.exact_head import ExactHead, head_reward_indices
from rlft.grpo.prompt_stats import PromptStats, prompt_key
from rlft.grpo.signal_state import SaveSignalState, load_state
from rlft.grpo.rollout import rollout
from rlft.grpo.teacher import Teacher
from rlft.grpo.trl_hooks import JudgedRowMetrics, TRLHooks
from rlft.scoring.loader import as_loaded_rewards

logger = logging.getLogger("rlft.signal")


class PlainGRPOTrainer(JudgedRowMetrics, GRPOTrainer):
    """TRL's `GRPOTrainer` as rlft runs a recipe without `decoding:` or `signal:`; only the logged `reward` and
    `rewards/<name>/mean|std` differ: over the rows each reward judged (`rlft.grpo.trl_hooks.JudgedRowMetrics`)."""


class SignalGRPOTrainer(TRLHooks, JudgedRowMetrics, GRPOTrainer):
    """TRL's `GRPOTrainer` plus the signal features of `SignalConfig` (see the module docstring).

    ``SignalGRPOTrainer(model=..., reward_funcs=..., args=GRPOConfig(...), train_dataset=..., eval_dataset=...,
    processing_class=tokenizer, signal=SignalConfig(...), decoding=DecodingConfig(...), labels=[...])``; every
    other keyword goes to TRL (a `rollout_func` of your own replaces rlft's rollout). `label_pg` configures the
    exact head objective (`signal.exact_head`).
    """

    def __init__(self, *args: Any, signal: SignalConfig | None = None, decoding: DecodingConfig | None = None,
                 labels: Sequence[str] | None = None, label_pg: LabelPGConfig | None = None,
                 label_column: str = "intent", **kwargs: Any):
        self.signal = signal or SignalConfig()
        self.decoding = decoding or DecodingConfig()
        self.labels = list(labels or [])
        grpo_args = kwargs.get("args")
        tokenizer = kwargs.get("processing_class")
        # the decoding constraint (rlft.decoding.constraint.Constraint) every sampler of the rollout applies
        self.trie = build_trie(tokenizer, self.labels, self.decoding) if self.decoding.constrain_labels else None
        self.prefill_ids = prefill_ids(tokenizer, self.decoding)
        if (self.signal.shared_prefix or self.signal.exact_head) and grpo_args is not None:
            # checkpointing re-runs layers in backward, which would append to the shared KV cache a second time, and
            # turns the cache off (the exact head's label paths run on it); on small models it is also pure overhead.
            # transformers 5 renamed the option to activation_checkpointing.
            for name in ("gradient_checkpointing", "activation_checkpointing"):
                if getattr(grpo_args, name, False):
                    logger.info("rlft signal: shared_prefix / exact_head turn off %s", name)
                    setattr(grpo_args, name, False)
        if self.trie is not None and grpo_args is not None and getattr(grpo_args, "use_vllm", False):
            grpo_args.vllm_structured_outputs_regex = self.trie.regex()  # the same constraint, for vLLM
        kwargs.setdefault("rollout_func", rollout)
        super().__init__(*args, **kwargs)
        # one stream per process: the same seed everywhere would refill every process with the same prompts
        self.refill_rng = random.Random(self.signal.seed + self.accelerator.process_index)
        self.surplus: list[dict[str, Any]] = []
        self.prompt_stats = PromptStats(self.signal.success_threshold, self.signal.baseline_ema)
        self.zero_std_window: deque[float] = deque(maxlen=self.signal.warn_window)
        self.warned_at = -10**9
        self.signal_totals = {"groups_generated": 0, "groups_zero_std": 0, "groups_dropped": 0,
                              "groups_trained": 0, "refill_rounds": 0, "steps_without_signal": 0,
                              "groups_all_correct": 0, "groups_all_wrong": 0, "adaptive_draws": 0,
                              "adaptive_unseen": 0, "adaptive_solved_retests": 0}
        self._row_keys: dict[int, str] = {}
        self.segments: list[str | None] | None = None
        if self.signal.segment_credit:
            if not self.decoding.free_reply:
                raise ValueError("signal.segment_credit: needs decoding.free_reply: true")
            if self.signal.baseline != "group":
                raise ValueError("signal.segment_credit: needs signal.baseline: group")
            self.segments = S.reward_segments(self.signal.segment_credit, self.reward_func_names)
        self.exact_head: ExactHead | None = None
        self.head_rows: list[dict[str, Any]] = []
        if self.signal.exact_head:
            self.exact_head = self._build_exact_head(label_pg or LabelPGConfig())
        self.teacher: Teacher | None = None
        if self.signal.teacher_lookup:
            self.teacher = Teacher(self.signal, self.labels, label_column, self.processing_class)
        # first in the list: the state file is written before rlft's checkpoint completion marker
        self.callback_handler.callbacks.insert(0, SaveSignalState(self))

    def train(self, resume_from_checkpoint: str | bool | None = None, **kwargs: Any) -> Any:
        """`Trainer.train`, restoring rlft's signal state from the checkpoint it resumes from."""
        checkpoint = resume_from_checkpoint
        if checkpoint is True:
            from transformers.trainer_utils import get_last_checkpoint

            checkpoint = get_last_checkpoint(self.args.output_dir)
        if checkpoint:
            load_state(self, checkpoint)
        return super().train(resume_from_checkpoint=resume_from_checkpoint, **kwargs)

    def _build_exact_head(self, config: LabelPGConfig) -> ExactHead:
        indices = head_reward_indices(self.signal.exact_head, self.reward_func_names)
        loaded = as_loaded_rewards(self.reward_funcs, self.reward_weights.tolist())
        head = ExactHead([loaded[i] for i in indices], self.labels, self.processing_class, self.decoding, config)
        self.reward_weights[indices] = 0.0  # the exact loss replaces their sampled advantage
        return head

    def compute_loss(self, model: Any, inputs: dict[str, Any], return_outputs: bool = False,
                     num_items_in_batch: Any = None) -> Any:
        """TRL's GRPO loss, plus the exact head loss on the round's prompts (`signal.exact_head`)."""
        loss = super().compute_loss(model, inputs, return_outputs, num_items_in_batch)
        rows, self.head_rows = self.head_rows, []
        if self.exact_head is not None and rows and model.training:
            head_loss, metrics = self.exact_head.loss(model, rows, trainer_state=self.state)
            loss = loss + self.signal.exact_head_weight * head_loss.to(loss.dtype)
            for key, value in metrics.items():
                self.log_signal_metric(f"exact_head/{key}", value)
        return loss

    # --- the training batch -----------------------------------------------------------------------------------

    def build_batch(self, inputs: list[dict[str, Any]]) -> dict[str, Any]:
        """Generate and score `inputs`; in training, apply the baseline, drop and refill groups without signal."""
        batch, rewards = self.score_draw(inputs)
        if not self.model.training:
            return batch
        g = self.num_generations
        if self.exact_head is not None:  # this round's prompts, once each, and the extra rows: the head's batch
            data, extra = self.train_dataset, self.signal.exact_head_extra_prompts
            self.head_rows = [dict(row) for row in inputs[::g]]
            self.head_rows += [dict(data[self.refill_rng.randrange(len(data))]) for _ in range(extra)]
        n_groups = len(inputs) // g
        kept, zero = self._observe(batch, rewards, first_draw=True)
        if not self.signal.drop_zero_std:
            return batch
        parts = [B.select_rows(batch, [r for grp in kept for r in grp])] if kept else []
        have = len(kept)
        while self.surplus and have < n_groups:  # groups with signal left over from the previous step
            part = self.surplus.pop(0)
            take = min(len(part["advantages"]) // g, n_groups - have)
            parts.append(B.select_rows(part, list(range(take * g))))
            have += take
        self.surplus = []
        rounds = 0
        # a refill round gathers across processes (TRL's scoring): every process runs it while any one needs it,
        # and a process that is already full keeps what it draws as surplus
        while rounds < self.signal.refill_rounds and self.any_process(have < n_groups):
            rounds += 1
            more, more_rewards = self.score_draw(self.draw_prompts(n_groups, g))
            more_kept, _ = self._observe(more, more_rewards, first_draw=False)
            need = n_groups - have
            if more_kept[:need]:
                parts.append(B.select_rows(more, [r for grp in more_kept[:need] for r in grp]))
            if self.signal.keep_surplus and more_kept[need:]:
                self.surplus.append(B.select_rows(more, [r for grp in more_kept[need:] for r in grp]))
            have += min(need, len(more_kept))
        self.signal_totals["refill_rounds"] += rounds
        self.log_signal_metric("signal/refill_rounds", rounds)
        if not parts:  # no group had signal: train on one tied group (zero advantage, zero gradient)
            self.signal_totals["steps_without_signal"] += 1
            parts = [B.select_rows(batch, zero[0])]
            have = 0
        self.signal_totals["groups_trained"] += have
        self.log_signal_metric("signal/groups_trained", self.sum_over_processes([have])[0])
        merged = B.merge(parts, self.processing_class.pad_token_id)
        # TRL gathers per-row tensors in the loss (clip-ratio metrics), which needs the same row count everywhere
        rows = self.accelerator.gather(torch.tensor([len(merged["advantages"])], device=self.accelerator.device))
        merged = B.pad_rows(merged, int(rows.max()))
        # TRL's convention: the loss-token count summed over processes (its loss divides by the process count)
        merged["num_items_in_batch"] = self.accelerator.gather(B.loss_tokens(merged)).sum()
        return merged

    def score_draw(self, inputs: list[dict[str, Any]]) -> tuple[dict[str, Any], torch.Tensor]:
        """`score`, then per-token segment advantages when `signal.segment_credit` is set."""
        batch, rewards = self.score(inputs)
        if self.segments is not None:
            S.apply(self, batch)
        if self.teacher is not None and self.model.training:
            self.teacher.apply(self, batch, inputs)
        return batch, rewards

    def any_process(self, flag: bool) -> bool:
        """True on every process when `flag` is true on any (a collective: every process must call it)."""
        return bool(self.accelerator.gather(torch.tensor([int(flag)], device=self.accelerator.device)).max())

    def sum_over_processes(self, counts: list[int]) -> list[int]:
        """`counts` summed element-wise over processes (a collective: every process must call it)."""
        local = torch.tensor(counts, dtype=torch.long, device=self.accelerator.device)
        return self.accelerator.gather(local).view(-1, len(counts)).sum(dim=0).tolist()

    def _observe(self, batch: dict[str, Any], rewards: torch.Tensor, first_draw: bool
                 ) -> tuple[list[list[int]], list[list[int]]]:
        """Baseline, per-prompt statistics and counts for one scored draw; returns (signal groups, the others)."""
        g = self.num_generations
        keys = [prompt_key(ids) for ids in B.prompt_rows(batch)[::g]]
        grouped = rewards.view(-1, g)
        if self.signal.baseline == "prompt_ema":
            self.prompt_stats.start_draw(rewards.tolist())
            base = torch.tensor([self.prompt_stats.baseline(k) for k in keys]).repeat_interleave(g)
            adv = torch.nan_to_num(rewards - base, nan=0.0)
            batch["advantages"] = adv.to(batch["advantages"].device, batch["advantages"].dtype)
        self.prompt_stats.update(keys, grouped.tolist())
        kept, zero = B.split_groups(batch["advantages"], g, self._tied(rewards))
        success = grouped >= self.signal.success_threshold  # NaN compares False: an unscorable rollout is no success
        all_correct = int(success.all(dim=1).sum())
        all_wrong = int((~success).all(dim=1).sum())
        t = self.signal_totals
        t["groups_generated"] += len(keys)
        t["groups_zero_std"] += len(zero)
        t["groups_all_correct"] += all_correct
        t["groups_all_wrong"] += all_wrong
        if self.signal.drop_zero_std:
            t["groups_dropped"] += len(zero)
        if first_draw:  # fractions of the groups of all processes (every process makes a first draw)
            n_zero, n_correct, n_wrong, n = self.sum_over_processes([len(zero), all_correct, all_wrong, len(keys)])
            n = max(n, 1)
            self.log_signal_metric("signal/frac_zero_std_first_draw", n_zero / n)
            self.log_signal_metric("signal/frac_all_correct", n_correct / n)
            self.log_signal_metric("signal/frac_all_wrong", n_wrong / n)
            self._warn_if_no_signal(n_zero / n)
        return kept, zero

    def _tied(self, rewards: torch.Tensor) -> list[bool] | None:
        """Groups whose rewards tie (`rlft.grpo.batch.tied_groups`) under the group baseline: the weighted totals,
        or with segment credit every weighted reward (each has its own advantage); None under prompt_ema (a tied
        group still differs from its prompt's running mean)."""
        if self.signal.baseline != "group" or self.teacher is not None:  # the teacher's terms differ in every group
            return None
        if self.segments is None:
            return B.tied_groups(rewards, self.num_generations)
        n = len(rewards)
        start = self.accelerator.process_index * n
        per_func = self._last_rewards_per_func[start:start + n].detach().float().cpu()
        weights = self.reward_weights.detach().float().cpu()
        return B.tied_groups(per_func[:, weights != 0] * weights[weights != 0], self.num_generations)

    def _warn_if_no_signal(self, frac: float) -> None:
        window = self.zero_std_window
        window.append(frac)
        mean = sum(window) / len(window)
        step = self.state.global_step
        if len(window) == window.maxlen and mean > self.signal.warn_zero_std and step - self.warned_at >= len(window):
            self.warned_at = step
            logger.warning(
                "rlft signal: %.0f%% of GRPO groups had zero reward variance over the last %d steps (no gradient). "
                "Try decoding.constrain_labels / decoding.prefill, a shaped reward, more num_generations, "
                "temperature 1.0, signal.baseline: prompt_ema, or signal.drop_zero_std with refill_rounds.",
                100 * mean, len(window))

    # --- refill prompts ---------------------------------------------------------------------------------------

    def row_key(self, index: int) -> str:
        """Stable prompt id of training row `index`: hash of its `rlft.decoding.prompting.prompt_ids`, as the batch has them."""
        key = self._row_keys.get(index)
        if key is None:
            prompt = self.train_dataset[index]["prompt"]
            key = self._row_keys[index] = prompt_key(prompt_ids(self.processing_class, prompt, self.decoding))
        return key

    def draw_prompts(self, n_groups: int, g: int) -> list[dict[str, Any]]:
        """`n_groups` training rows, each repeated `g` times: uniform, or weighted by success with `adaptive`."""
        data, rng = self.train_dataset, self.refill_rng
        if not self.signal.adaptive:
            picks = [rng.randrange(len(data)) for _ in range(n_groups)]
        else:
            pool = list(dict.fromkeys(rng.randrange(len(data)) for _ in range(n_groups * self.signal.adaptive_pool)))
            weights = [self.prompt_stats.weight(self.row_key(i), self.signal.retest_solved) for i in pool]
            # weighted sampling without replacement (Efraimidis-Spirakis): the n largest u^(1/w)
            ranked = sorted(zip(pool, weights, strict=True),
                            key=lambda iw: rng.random() ** (1.0 / iw[1]) if iw[1] > 0 else 0.0, reverse=True)
            picks = [i for i, _ in ranked[:n_groups]]
            while len(picks) < n_groups:
                picks.append(picks[len(picks) % len(ranked)])
            t = self.signal_totals
            rates = [self.prompt_stats.success_rate(self.row_key(i)) for i in picks]
            unseen, solved = sum(r is None for r in rates), sum(r == 1.0 for r in rates)
            t["adaptive_draws"] += len(picks)
            t["adaptive_unseen"] += unseen
            t["adaptive_solved_retests"] += solved
            # draw_prompts runs in refill rounds, which every process runs together: the gathers match
            solved_all, tracked_all = self.sum_over_processes([solved, len(self.prompt_stats.stats)])
            self.log_signal_metric("signal/adaptive_solved_retests", solved_all)
            self.log_signal_metric("signal/prompts_tracked", tracked_all)
        return [dict(data[i]) for i in picks for _ in range(g)]
