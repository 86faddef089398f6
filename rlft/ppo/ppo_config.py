"""`PPOConfig`: every PPO knob as a TrainingArguments dataclass, so recipes' `trainer:` keys are validated like TRL's.

Batch vocabulary (per device):
    rollout      = per_device_train_batch_size completions, i.e. per_device_train_batch_size / num_generations
                   prompts, generated with the current policy and scored once;
    mini-batch   = rollout / num_mini_batches completions -> one optimizer step (split further into
                   gradient_accumulation_steps micro-batches if memory is short);
    one training step (`max_steps`, `global_step`) = one rollout + ppo_epochs passes over its mini-batches.
"""

from __future__ import annotations

from dataclasses import dataclass

from trl.trainer.base_config import _BaseConfig

from rlft.recipe.sections import _f


@dataclass
class PPOConfig(_BaseConfig):
    """Configuration for `rlft.ppo.PPOTrainer`; inherits every `transformers.TrainingArguments` option."""

    # TrainingArguments defaults that suit PPO on small models
    learning_rate: float = _f(1e-5, "Optimizer learning rate for the LoRA weights and the value head.")
    per_device_train_batch_size: int = _f(8, "Completions per rollout per device (prompts × num_generations).")
    activation_checkpointing: bool | None = _f(False, "Recompute activations in the backward pass to save memory "
                                               "(slower; useful for larger models on GPU). TRL configs default to "
                                               "on; PPO on small models is faster without it.")
    logging_steps: float = _f(1, "Log every N PPO steps (rollouts).")

    # Rollout
    num_generations: int = _f(1, "Completions sampled per prompt in a rollout. PPO needs no groups; >1 reuses "
                              "each prompt's encoding and gives the critic contrasting samples.")
    max_prompt_length: int | None = _f(512, "Prompts longer than this many tokens are truncated from the left "
                                       "(None: no limit).")
    max_completion_length: int = _f(64, "Maximum generated tokens per completion.")
    temperature: float = _f(1.0, "Sampling temperature; log-probs are computed at the same temperature.")
    top_p: float = _f(1.0, "Nucleus sampling threshold for rollouts.")
    top_k: int = _f(0, "Top-k sampling for rollouts (0: off).")
    missing_eos_penalty: float | None = _f(None, "Subtract this from the score of completions that hit "
                                           "max_completion_length without an EOS (None: no penalty).")
    reward_weights: list[float] | None = _f(None, "Weights of the reward functions, in order (None: all 1.0).")

    # PPO optimisation
    ppo_epochs: int = _f(4, "Passes over each rollout.")
    num_mini_batches: int = _f(1, "Mini-batches (optimizer steps) per pass over a rollout.")
    gamma: float = _f(1.0, "Discount factor γ for GAE over completion tokens.")
    lam: float = _f(0.95, "GAE λ (bias/variance trade-off of the advantages).")
    cliprange: float = _f(0.2, "PPO clip range ε for the policy ratio.")
    cliprange_value: float = _f(0.2, "Clip range for value updates around the rollout's values.")
    vf_coef: float = _f(0.1, "Weight of the value loss in the total loss.")
    entropy_coef: float = _f(0.0, "Entropy bonus weight (0: none; PPO for LMs rarely needs one).")
    whiten_rewards: bool = _f(False, "Whiten per-token rewards across the rollout (keeps their mean).")
    whiten_advantages: bool = _f(True, "Whiten advantages across the rollout (zero mean, unit variance).")

    # KL to the reference (the base model with adapters disabled)
    init_kl_coef: float = _f(0.05, "Initial coefficient β of the per-token KL penalty to the reference.")
    target_kl: float | None = _f(None, "Target per-sequence KL for the adaptive controller (Ziegler et al.); "
                                 "None keeps β fixed at init_kl_coef.")
    kl_horizon: int = _f(10000, "Adaptive controller horizon in sequences: larger = slower β changes.")
    kl_estimator: str = _f("k1", "Per-token KL estimator for the penalty: k1 (log-ratio) or k3 (non-negative).")

    # Critic
    value_head_init: str | None = _f(None, "Directory holding value_head.safetensors to start the critic from "
                                     "(e.g. a previous PPO run); None: fresh head.")
    value_head_dropout: float = _f(0.0, "Dropout on the hidden state before the value head.")

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.per_device_train_batch_size % self.num_generations:
            raise ValueError(f"per_device_train_batch_size ({self.per_device_train_batch_size}) must be divisible "
                             f"by num_generations ({self.num_generations})")
        per_mini = self.per_device_train_batch_size / self.num_mini_batches
        if per_mini != int(per_mini) or per_mini < 1:
            raise ValueError(f"per_device_train_batch_size ({self.per_device_train_batch_size}) must be divisible "
                             f"by num_mini_batches ({self.num_mini_batches})")
        if int(per_mini) % self.gradient_accumulation_steps:
            raise ValueError(f"the mini-batch ({int(per_mini)} completions) must be divisible by "
                             f"gradient_accumulation_steps ({self.gradient_accumulation_steps})")
        if self.kl_estimator not in ("k1", "k3"):
            raise ValueError(f"kl_estimator must be 'k1' or 'k3', got {self.kl_estimator!r}")
        if self.target_kl is not None and self.target_kl <= 0:
            raise ValueError(f"target_kl must be > 0 or None, got {self.target_kl}")
        if self.ppo_epochs < 1 or self.max_completion_length < 1:
            raise ValueError("ppo_epochs and max_completion_length must be >= 1")
        if self.eval_strategy != "no":
            raise ValueError("PPOConfig does not evaluate during training (eval_strategy must be 'no'); rlft's "
                             "evaluation section runs before and after training")

    @property
    def prompts_per_rollout(self) -> int:
        return self.per_device_train_batch_size // self.num_generations

    @property
    def mini_batch_size(self) -> int:
        return self.per_device_train_batch_size // self.num_mini_batches
