"""The PPO critic: a linear value head on the policy's last hidden state, saved as safetensors next to the adapter.

The critic shares the policy's backbone (and its LoRA weights), so PPO costs one model in memory, not two. The head
is tiny (hidden_size + 1 parameters), starts at zero so the first values are 0, and is stored as
`value_head.safetensors` + `value_head.json` in the same directory as the adapter.
Not here: the forward pass through the backbone (see `rlft.ppo.sampling.forward_policy`).
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from torch import nn

WEIGHTS_NAME = "value_head.safetensors"
CONFIG_NAME = "value_head.json"


class ValueHead(nn.Module):
    """V(s_t) = w·dropout(h_t) + b for every position's last hidden state h_t."""

    def __init__(self, hidden_size: int, dropout: float = 0.0) -> None:
        super().__init__()
        self.hidden_size = hidden_size
        self.dropout = nn.Dropout(dropout)
        self.summary = nn.Linear(hidden_size, 1)
        nn.init.zeros_(self.summary.weight)
        nn.init.zeros_(self.summary.bias)

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        hidden_states = hidden_states.to(self.summary.weight.dtype)
        return self.summary(self.dropout(hidden_states)).squeeze(-1)

    def save(self, directory: str | Path) -> Path:
        from safetensors.torch import save_file

        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        state = {k: v.detach().cpu().contiguous() for k, v in self.state_dict().items()}
        save_file(state, str(directory / WEIGHTS_NAME))
        (directory / CONFIG_NAME).write_text(json.dumps({"hidden_size": self.hidden_size,
                                                         "dropout": self.dropout.p}, indent=2))
        return directory / WEIGHTS_NAME

    @classmethod
    def load(cls, directory: str | Path, device: str | torch.device = "cpu") -> ValueHead:
        from safetensors.torch import load_file

        directory = Path(directory)
        weights = directory / WEIGHTS_NAME
        if not weights.is_file():
            raise FileNotFoundError(f"{weights} not found (a PPO output directory holds {WEIGHTS_NAME})")
        config = json.loads((directory / CONFIG_NAME).read_text())
        head = cls(int(config["hidden_size"]), float(config.get("dropout", 0.0)))
        head.load_state_dict(load_file(str(weights)))
        return head.to(device)


def hidden_size_of(model: nn.Module) -> int:
    """Hidden size of a (possibly PEFT-wrapped, possibly multimodal) causal LM."""
    config = model.config
    text_config = config.get_text_config() if hasattr(config, "get_text_config") else config
    return int(text_config.hidden_size)
