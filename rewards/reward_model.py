"""Reward from a trained reward model: score each (prompt, completion) with a sequence-classification model.

Point `path` at the output directory of an `algorithm: reward_model` run (a LoRA adapter on a base model, found
through `adapter_config.json`) or at any full `AutoModelForSequenceClassification` directory with one label.
Inputs are rendered exactly as TRL's RewardTrainer saw them in training: conversational rows through the chat
template (prompt messages + the assistant completion), plain strings as prompt + completion + EOS.

The model loads lazily on the first call (so building a recipe stays cheap) and scores in batches without grad.
`normalize`: "none" (raw scores), "batch" (z-score within each call, i.e. per rollout) or "sigmoid" (σ(score),
in (0, 1)). Example recipe entry::

    rewards:
      - name: reward_model
        params: {path: runs/intent_rm, batch_size: 16, normalize: none}
"""

from __future__ import annotations

import json
import math
import threading
from pathlib import Path
from typing import Any

from rlft.scoring.protocol import BaseReward

NORMALIZE = ("none", "batch", "sigmoid")


class RewardModelReward(BaseReward):
    name = "reward_model"
    columns: tuple[str, ...] = ()

    def __init__(self, path: str, batch_size: int = 16, device: str = "auto", normalize: str = "none",
                 base_model: str | None = None, max_length: int | None = 1024) -> None:
        if normalize not in NORMALIZE:
            raise ValueError(f"normalize must be one of {', '.join(NORMALIZE)}, got {normalize!r}")
        if not Path(path).expanduser().is_dir():
            raise ValueError(f"path {path!r} is not a directory; train a reward model first (algorithm: reward_model, "
                             f"e.g. recipes/intent_rm.yaml) and point path at its output_dir")
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.path = str(Path(path).expanduser())
        self.batch_size, self.device, self.normalize = batch_size, device, normalize
        self.base_model, self.max_length = base_model, max_length
        self._model = self._tokenizer = None
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"RewardModelReward(path={self.path!r}, normalize={self.normalize!r})"

    # ----- loading -----

    def _load(self) -> None:
        import torch
        from transformers import AutoModelForSequenceClassification, AutoTokenizer

        device = self.device
        if device == "auto":
            device = "cuda" if torch.cuda.is_available() else "cpu"
        dtype = torch.float32 if device == "cpu" else torch.bfloat16
        adapter_config = Path(self.path) / "adapter_config.json"
        if adapter_config.is_file():
            from peft import PeftModel

            base = self.base_model or json.loads(adapter_config.read_text())["base_model_name_or_path"]
            model = AutoModelForSequenceClassification.from_pretrained(base, num_labels=1, dtype=dtype)
            model = PeftModel.from_pretrained(model, self.path).merge_and_unload()
            tokenizer_dir = self.path if (Path(self.path) / "tokenizer_config.json").is_file() else base
        else:
            model = AutoModelForSequenceClassification.from_pretrained(self.path, num_labels=1, dtype=dtype)
            tokenizer_dir = self.path
        tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir)
        if tokenizer.pad_token is None:
            tokenizer.pad_token = tokenizer.eos_token
        if model.config.pad_token_id is None:
            model.config.pad_token_id = tokenizer.pad_token_id
        self._model, self._tokenizer = model.to(device).eval().requires_grad_(False), tokenizer

    def _ensure_loaded(self) -> None:
        with self._lock:  # async trainers may call from several threads
            if self._model is None:
                self._load()

    # ----- scoring -----

    def _token_ids(self, prompt: Any, completion: Any) -> list[int]:
        tok = self._tokenizer
        if isinstance(prompt, list):
            reply = completion if isinstance(completion, list) else [{"role": "assistant", "content": completion}]
            ids = tok.apply_chat_template(prompt + reply, tokenize=True, return_dict=True)["input_ids"]
        else:
            text = str(prompt) + (completion if isinstance(completion, str) else
                                  "".join(m.get("content", "") for m in completion))
            if tok.eos_token and not text.endswith(tok.eos_token):
                text += tok.eos_token
            ids = tok(text, add_special_tokens=False)["input_ids"]
        if self.max_length is not None and len(ids) > self.max_length:
            ids = ids[-self.max_length:]  # keep the end: the completion is what is being judged
        return list(ids)

    def scores(self, prompts: list[Any], completions: list[Any]) -> list[float]:
        """Raw reward-model scores, one per (prompt, completion)."""
        import torch

        self._ensure_loaded()
        model, pad = self._model, self._tokenizer.pad_token_id
        ids = [self._token_ids(p, c) for p, c in zip(prompts, completions, strict=True)]
        out: list[float] = []
        with torch.no_grad():
            for start in range(0, len(ids), self.batch_size):
                chunk = ids[start:start + self.batch_size]
                width = max(len(x) for x in chunk)
                input_ids = torch.tensor([x + [pad] * (width - len(x)) for x in chunk], device=model.device)
                mask = torch.tensor([[1] * len(x) + [0] * (width - len(x)) for x in chunk], device=model.device)
                out += model(input_ids=input_ids, attention_mask=mask).logits[:, 0].float().tolist()
        return out

    def __call__(self, prompts: list[Any], completions: list[Any], **kwargs: Any) -> list[float]:
        values = self.scores(list(prompts), list(completions))
        if self.normalize == "sigmoid":
            return [1.0 / (1.0 + math.exp(-v)) if v > -700 else 0.0 for v in values]
        if self.normalize == "batch" and len(values) > 1:
            mean = sum(values) / len(values)
            std = math.sqrt(sum((v - mean) ** 2 for v in values) / len(values))
            return [(v - mean) / (std + 1e-6) for v in values]
        return values
