"""`adapter.ema_decay`: an exponential moving average of the trainable (LoRA) weights, for every algorithm.

A curve that swings from one evaluation to the next (issue 30: 0.889, 0.822, 0.807, 0.889 at a constant learning
rate) leaves the user with whatever the last step happened to be. Averaging the weights over the last steps is the
usual remedy (Polyak averaging; timm's ModelEmaV2, torch.optim.swa_utils.AveragedModel). `AdapterEMA` is a
transformers `TrainerCallback`, so it works with every trainer rlft builds: TRL's GRPO, DPO, KTO and reward-model
trainers, `label_pg` (a `transformers.Trainer`) and rlft's PPO trainer (its own loop calls `on_train_begin`,
`on_step_end`, `on_save` and `on_train_end` like the Trainer's).

- `on_train_begin`: the shadow starts as an fp32 copy of the trainable parameters (unless a checkpoint's was
  loaded: `load_state`).
- `on_step_end` (after each optimizer step; one PPO update round for PPO): ``shadow = d * shadow + (1 - d) * w``.
- `swapped(model)`: a context in which the model carries the shadow (cast to each parameter's dtype) and after
  which the trained weights are restored bit for bit: periodic evaluation and `keep_best` run inside it
  (`rlft.evaluation.periodic.PeriodicEval.weights`), so training itself never sees the average.
- `on_train_end` / `finalize(model)`: the shadow is copied into the model for good, so the final evaluation, the
  saved adapter, the model card's numbers and `export.merged` are the average.
- `on_save`: every checkpoint gets ``rlft_ema.safetensors`` (the shadow, fp32) next to the raw weights the
  optimizer continues from; `load_state(checkpoint)` restores it, so a resumed run ends with the same average.

What is averaged is each trainable tensor on its own: for LoRA the A and B factors, not their product B·A (the
average of products is not the product of averages; with factors that move slowly between steps the two are close).
The value head of PPO is not the model's parameter and is not averaged. Not supported: parameters sharded across
processes (FSDP, DeepSpeed ZeRO-3), where a process holds only a slice of each tensor.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch
from transformers import TrainerCallback

STATE_FILE = "rlft_ema.safetensors"
logger = logging.getLogger("rlft")


def trainable(model: Any) -> dict[str, torch.nn.Parameter]:
    """The parameters the optimizer changes, by name (LoRA A/B, a `modules_to_save` head, or all of a full tune)."""
    return {name: p for name, p in model.named_parameters() if p.requires_grad}


class AdapterEMA(TrainerCallback):
    """Moving average of the trainable weights; see the module docstring."""

    def __init__(self, decay: float):
        if not 0.0 < decay < 1.0:
            raise ValueError(f"decay must be in (0, 1), got {decay}")
        self.decay = decay
        self.shadow: dict[str, torch.Tensor] | None = None
        self.updates = 0  # optimizer steps averaged so far (a resumed run counts on)
        self.finalized = False

    # ----- the average -----

    def start(self, model: Any) -> None:
        """Shadow = the current trainable weights (fp32), unless one was restored from a checkpoint."""
        params = trainable(model)
        if self.shadow is not None:
            missing = sorted(set(params) ^ set(self.shadow))
            if missing:
                raise ValueError(f"the restored weight average does not match the model's trainable parameters "
                                 f"(e.g. {missing[0]}); was the checkpoint written by another recipe?")
            for name, p in params.items():
                self.shadow[name] = self.shadow[name].to(p.device)
            return
        self.shadow = {name: p.detach().to(torch.float32).clone() for name, p in params.items()}

    @torch.no_grad()
    def update(self, model: Any) -> None:
        if self.shadow is None:
            self.start(model)
        for name, p in trainable(model).items():
            self.shadow[name].mul_(self.decay).add_(p.detach().to(torch.float32), alpha=1.0 - self.decay)
        self.updates += 1

    @contextmanager
    def swapped(self, model: Any) -> Iterator[Any]:
        """The model with the average in place of its trained weights; the trained weights come back after."""
        if self.shadow is None or self.finalized:
            yield model
            return
        params = trainable(model)
        with torch.no_grad():
            kept = {name: p.detach().clone() for name, p in params.items()}
            for name, p in params.items():
                p.copy_(self.shadow[name].to(p.dtype))
        try:
            yield model
        finally:
            with torch.no_grad():
                for name, p in params.items():
                    p.copy_(kept[name])

    @torch.no_grad()
    def finalize(self, model: Any) -> None:
        """Copy the average into the model for good (once); the saved adapter is then the average."""
        if self.finalized or self.shadow is None:
            return
        for name, p in trainable(model).items():
            p.copy_(self.shadow[name].to(p.dtype))
        self.finalized = True

    # ----- checkpoints -----

    def save_state(self, folder: str | Path) -> None:
        from safetensors.torch import save_file

        shadow = {name: t.detach().cpu().contiguous() for name, t in (self.shadow or {}).items()}
        save_file(shadow, str(Path(folder) / STATE_FILE), metadata={"decay": repr(self.decay),
                                                                    "updates": str(self.updates)})

    def load_state(self, checkpoint: str | Path) -> bool:
        """Restore the average from a checkpoint; False (with a warning) when it has none (it restarts there)."""
        from safetensors import safe_open

        path = Path(checkpoint) / STATE_FILE
        if not path.is_file():
            logger.warning("rlft: %s has no %s; the weight average (adapter.ema_decay) restarts from the "
                           "checkpoint's weights", checkpoint, STATE_FILE)
            return False
        with safe_open(str(path), framework="pt") as f:
            self.shadow = {name: f.get_tensor(name) for name in f.keys()}  # noqa: SIM118 - safe_open has no iter
            self.updates = int((f.metadata() or {}).get("updates", 0))
        return True

    # ----- TrainerCallback -----

    def on_train_begin(self, args, state, control, model=None, **kwargs):
        if model is not None:
            self.start(model)

    def on_step_end(self, args, state, control, model=None, **kwargs):
        if model is not None:
            self.update(model)

    def on_save(self, args, state, control, **kwargs):
        folder = Path(args.output_dir) / f"checkpoint-{state.global_step}"
        if state.is_world_process_zero and folder.is_dir() and self.shadow is not None:
            self.save_state(folder)

    def on_train_end(self, args, state, control, model=None, **kwargs):
        if model is not None:
            self.finalize(model)
