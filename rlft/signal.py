"""Moved to `rlft.grpo` (kept so `from rlft.signal import SignalGRPOTrainer` keeps working)."""

from rlft.grpo import SignalGRPOTrainer

__all__ = ["SignalGRPOTrainer"]
