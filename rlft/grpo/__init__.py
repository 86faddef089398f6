"""rlft's GRPO: `SignalGRPOTrainer` (trainer), its rollout (`rollout`), the private TRL hooks it needs
(`trl_hooks`), batch filtering (`batch`), per-prompt statistics (`prompt_stats`) and exact resume (`resume`)."""

from rlft.grpo.signal_trainer import PlainGRPOTrainer, SignalGRPOTrainer

__all__ = ["PlainGRPOTrainer", "SignalGRPOTrainer"]
