"""PPO for LoRA/QLoRA policies with any rlft reward (TRL >= 1.13 ships no PPOTrainer; this one is rlft's own).

Modules: `core` (pure tensor maths: GAE, clipped losses, whitening, KL shaping), `kl_control` (adaptive/fixed KL
coefficient), `value_head` (the critic on the policy's last hidden state), `ppo_config` (`PPOConfig`), `sampling`
(generation, reference/old log-probs, values, scores), `checkpoint` (its resume state) and `ppo_trainer` (`PPOTrainer`). Tested with TRL 1.16,
transformers 5.x, PEFT 0.21.
"""

from rlft.ppo.ppo_config import PPOConfig
from rlft.ppo.kl_control import AdaptiveKLController, FixedKLController, make_kl_controller

__all__ = ["AdaptiveKLController", "FixedKLController", "PPOConfig", "PPOTrainer", "make_kl_controller"]


def __getattr__(name: str):
    if name == "PPOTrainer":  # the trainer imports torch/transformers/peft; keep `import rlft.ppo` light
        from rlft.ppo.ppo_trainer import PPOTrainer

        return PPOTrainer
    raise AttributeError(name)
