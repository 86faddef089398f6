"""The fine-tuning set of an rft round (step 5 of rlft.trainers.rft): one example per kept completion, the prompt
and any looked-up text out of the loss, and the right-padding collator."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

IGNORE = -100  # the label of a token outside the loss (transformers' causal-LM loss ignores it)


def training_example(prompt_ids: Sequence[int], completion_ids: Sequence[int], trie: Any,
                     departure: tuple[int, Sequence[int]] | None = None, unlikely: bool = False) -> dict[str, Any]:
    """input_ids and labels of one kept completion: the prompt and any looked-up text are out of the loss.

    With `unlikely` (rft.unlikelihood on), also `unlikely_at` and `unlikely_ids`: the position in input_ids where the
    completion departs from the reply its hint was appended to and the token ids that reply wrote there
    (`departure`: (index into the completion, ids)); -1 and [] for a completion without one."""
    mask = trie.lookup_mask(completion_ids) if trie is not None else [1] * len(completion_ids)
    labels = [IGNORE] * len(prompt_ids) + [t if keep else IGNORE for t, keep in zip(completion_ids, mask, strict=True)]
    example: dict[str, Any] = {"input_ids": [*prompt_ids, *completion_ids], "labels": labels}
    if unlikely:
        at, ids = (len(prompt_ids) + departure[0], departure[1]) if departure is not None else (-1, [])
        example["unlikely_at"], example["unlikely_ids"] = at, [int(t) for t in ids]
    return example


def collate(pad_token_id: int) -> Callable[[list[dict[str, list[int]]]], dict[str, Any]]:
    """Right-padding collator: pad ids, labels IGNORE, attention mask 0 on padding."""
    import torch

    def batch(examples: list[dict[str, list[int]]]) -> dict[str, Any]:
        width = max(len(e["input_ids"]) for e in examples)
        pad = [width - len(e["input_ids"]) for e in examples]
        out = {
            "input_ids": torch.tensor([e["input_ids"] + [pad_token_id] * p for e, p in zip(examples, pad)]),
            "labels": torch.tensor([e["labels"] + [IGNORE] * p for e, p in zip(examples, pad)]),
            "attention_mask": torch.tensor([[1] * len(e["input_ids"]) + [0] * p for e, p in zip(examples, pad)]),
        }
        if "unlikely_at" in examples[0]:  # rft.unlikelihood: ids padded with -1
            most = max(1, max(len(e["unlikely_ids"]) for e in examples))
            out["unlikely_at"] = torch.tensor([e["unlikely_at"] for e in examples])
            out["unlikely_ids"] = torch.tensor([list(e["unlikely_ids"]) + [-1] * (most - len(e["unlikely_ids"]))
                                                for e in examples])
        return out

    return batch
