"""`rft.unlikelihood`: the rejection-sampling round's causal-LM loss plus a token-level unlikelihood term (Welleck et
al. 2019, "Neural Text Generation with Unlikelihood Training") at each hinted completion's departure point.

A completion kept after a hint is the deployed reply up to some point, then a move it did not make (a question for
the order number, a confirmation). Where the deployed reply stopped (or went on with the article), the kept one
asks. Maximum likelihood raises the move's probability there; on unseen prompts the move and the stop are often a
near-tie (measured: stop 0.44-0.51 against 0.4-0.5 for the move's first tokens on three intents,
docs/support_agent.md#unlikelihood), and each fine-tune lands on one side of it. The term adds -log(1 - p) at that
point, p the probability of what the deployed reply wrote there (the stop ids, or the next sentence's first
token), so the fine-tune also pushes that choice down, not only the move up.

Scale: each departure counts as one token of the causal-LM loss, weighted `rft.unlikelihood`, under whatever
normalisation the Trainer applied to that loss (per token of the batch, or of the accumulated batch across
processes): the summed NLL is recomputed from the same logits and the term is scaled by loss / NLL. The mean p at
the departures is logged as `rft/departure_p`.
"""

from __future__ import annotations

from typing import Any

import torch
from transformers import Trainer

from rlft.trainers.rft.examples import IGNORE


def departure_probabilities(logits: torch.Tensor, at: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
    """For each row with a departure (`at` >= 0), the probability the model gives, at position at - 1 (predicting
    position at), to the set `ids` (-1: padding); rows without one are left out."""
    rows = (at >= 0).nonzero().flatten()
    if rows.numel() == 0:
        return logits.new_zeros(0, dtype=torch.float32)
    logp = logits[rows, at[rows] - 1].float().log_softmax(-1)
    picked = ids[rows]
    gathered = logp.gather(1, picked.clamp(min=0)).masked_fill(picked < 0, float("-inf"))
    return torch.logsumexp(gathered, dim=1).exp()


def unlikelihood(p: torch.Tensor, floor: float = 1e-6) -> torch.Tensor:
    """-log(1 - p) summed, with 1 - p kept at or above `floor` (a certain stop costs 13.8, not infinity)."""
    return -torch.log((1 - p).clamp(min=floor)).sum()


def summed_nll(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """The causal-LM loss summed over its tokens (labels shifted by one, IGNORE left out); only the labelled positions'
    logits are normalised (the reply's tokens, not the prompt's)."""
    shifted = labels[:, 1:]
    kept = shifted != IGNORE
    return torch.nn.functional.cross_entropy(logits[:, :-1][kept].float(), shifted[kept], reduction="sum")


class UnlikelihoodTrainer(Trainer):
    """A `transformers.Trainer` over rft's kept completions whose batches carry `unlikely_at` / `unlikely_ids`
    (rlft.trainers.rft.examples.collate); `unlikelihood` is the term's weight (see the module docstring)."""

    def __init__(self, *args: Any, unlikelihood: float, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.unlikelihood = unlikelihood
        self._departure_p: list[float] = []

    def compute_loss(self, model: Any, inputs: dict[str, Any], return_outputs: bool = False,
                     num_items_in_batch: Any = None) -> Any:
        at, ids = inputs.pop("unlikely_at"), inputs.pop("unlikely_ids")
        loss, outputs = super().compute_loss(model, inputs, return_outputs=True, num_items_in_batch=num_items_in_batch)
        p = departure_probabilities(outputs.logits, at, ids)
        if p.numel() and self.unlikelihood:
            nll = summed_nll(outputs.logits, inputs["labels"]).detach()
            if nll > 0:  # the Trainer's normalisation of one token's loss, applied to the term
                loss = loss + self.unlikelihood * unlikelihood(p) * (loss.detach() / nll)
            if model.training:
                self._departure_p.extend(p.detach().tolist())
        return (loss, outputs) if return_outputs else loss

    def log(self, logs: dict[str, float], start_time: float | None = None) -> None:
        if self._departure_p and "loss" in logs:
            logs = {**logs, "rft/departure_p": sum(self._departure_p) / len(self._departure_p)}
            self._departure_p = []
        super().log(logs, start_time)
