"""rlft's GRPO: `SignalGRPOTrainer` (`signal_trainer`), its rollout (`rollout`), the private TRL hooks it needs
(`trl_hooks`), batch filtering (`batch`), per-prompt statistics (`prompt_stats`), exact resume (`signal_state`), and
the reply signals: segment credit (`segments`), the exact head (`exact_head`), the distillation teacher (`teacher`)."""

from rlft.grpo.signal_trainer import PlainGRPOTrainer, SignalGRPOTrainer

__all__ = ["PlainGRPOTrainer", "SignalGRPOTrainer"]
