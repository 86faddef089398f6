"""The launch environment `accelerate launch` (or torchrun) sets, and the recipe combinations it cannot run.

`launch_env()` reads what accelerate 1.15 exports to every worker (`accelerate/utils/launch.py`): ``WORLD_SIZE``
(torchrun), ``ACCELERATE_USE_DEEPSPEED``, ``ACCELERATE_DEEPSPEED_ZERO_STAGE`` or the stage inside
``ACCELERATE_DEEPSPEED_CONFIG_FILE``, ``ACCELERATE_USE_FSDP``, ``FSDP_VERSION`` and
``FSDP_ACTIVATION_CHECKPOINTING``; a recipe's own ``trainer.deepspeed`` / ``trainer.fsdp`` count too.
`check_launch(recipe)` (called by `rlft.recipe.validate.validate`, so before any model loads) raises a one-line
`RecipeError` for a combination that would fail or silently mis-train later:

- QLoRA under DeepSpeed ZeRO-3 or FSDP (v1 or v2): both shard parameters, and bitsandbytes 4-bit weights are only
  shardable with ``bnb_4bit_quant_storage`` equal to the compute dtype, which rlft does not set up.
- ``signal.shared_prefix`` with FSDP activation checkpointing: recomputing layers in backward would extend the
  shared KV cache a second time (rlft turns off the Trainer's gradient checkpointing itself, but not FSDP's).
- ``signal:`` / ``decoding:`` GRPO on several processes with a per-process generation batch that is not whole
  groups: TRL may split a prompt's group across processes, rlft's zero-variance dropping needs whole groups.
- ``trainer.use_vllm`` without vllm installed, or a ``vllm_mode`` other than colocate / server.

Not here: anything that needs the model or a GPU; the multi-process behaviour itself (docs/scaling.md).
"""

from __future__ import annotations

import importlib.util
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rlft.recipe.sections import DecodingConfig, Recipe, SignalConfig
from rlft.errors import RecipeError
from rlft.trainers import algorithm_spec

VLLM_MODES = ("colocate", "server")


@dataclass(frozen=True)
class LaunchEnv:
    """What this process was launched into; `engine` is none | ddp | deepspeed | fsdp."""

    world_size: int = 1
    engine: str = "none"
    zero_stage: int | None = None
    fsdp_version: int | None = None
    fsdp_activation_checkpointing: bool = False
    source: str = "environment"  # where the engine was read from, for the error message

    @property
    def shards_parameters(self) -> bool:
        return self.engine == "fsdp" or (self.engine == "deepspeed" and self.zero_stage == 3)

    def describe(self) -> str:
        if self.engine == "deepspeed":
            return f"DeepSpeed ZeRO-{self.zero_stage if self.zero_stage is not None else '?'} ({self.source})"
        if self.engine == "fsdp":
            return f"FSDP{self.fsdp_version or 1} ({self.source})"
        return f"{self.world_size} process(es), {'DDP' if self.engine == 'ddp' else 'no engine'}"


def _flag(env: Mapping[str, str], name: str) -> bool:
    return str(env.get(name, "")).strip().lower() in ("1", "true", "yes", "on")


def _int(value: Any) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def _deepspeed_stage(config: Any) -> int | None:
    """ZeRO stage of a DeepSpeed config (a dict, or a path to its JSON); None when it cannot be read."""
    if isinstance(config, (str, Path)):
        try:
            config = json.loads(Path(config).expanduser().read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
    if isinstance(config, Mapping):
        return _int((config.get("zero_optimization") or {}).get("stage"))
    return None


def launch_env(env: Mapping[str, str] | None = None, trainer: Mapping[str, Any] | None = None) -> LaunchEnv:
    """The launch this process runs under, from accelerate's environment variables (and the recipe's trainer)."""
    env = os.environ if env is None else env
    trainer = trainer or {}
    world = _int(env.get("WORLD_SIZE")) or 1
    if _flag(env, "ACCELERATE_USE_DEEPSPEED") or trainer.get("deepspeed"):
        stage = _int(env.get("ACCELERATE_DEEPSPEED_ZERO_STAGE"))
        source = "ACCELERATE_DEEPSPEED_ZERO_STAGE"
        if stage is None and env.get("ACCELERATE_DEEPSPEED_CONFIG_FILE"):
            stage = _deepspeed_stage(env["ACCELERATE_DEEPSPEED_CONFIG_FILE"])
            source = "ACCELERATE_DEEPSPEED_CONFIG_FILE"
        if stage is None and trainer.get("deepspeed"):
            stage, source = _deepspeed_stage(trainer["deepspeed"]), "trainer.deepspeed"
        return LaunchEnv(world, "deepspeed", zero_stage=stage, source=source)
    fsdp_trainer = trainer.get("fsdp")
    if _flag(env, "ACCELERATE_USE_FSDP") or fsdp_trainer:
        from_env = _flag(env, "ACCELERATE_USE_FSDP")
        fsdp_config = trainer.get("fsdp_config") if isinstance(trainer.get("fsdp_config"), Mapping) else {}
        version = _int(env.get("FSDP_VERSION")) if from_env else _int(fsdp_config.get("version"))
        checkpointing = (_flag(env, "FSDP_ACTIVATION_CHECKPOINTING") if from_env
                         else bool(fsdp_config.get("activation_checkpointing")))
        return LaunchEnv(world, "fsdp", fsdp_version=version or 1, fsdp_activation_checkpointing=checkpointing,
                         source="ACCELERATE_USE_FSDP" if from_env else "trainer.fsdp")
    return LaunchEnv(world, "ddp" if world > 1 else "none")


def _signal_trainer(recipe: Recipe) -> bool:
    """rlft's SignalGRPOTrainer runs (the algorithm has a signal: section; the recipe sets it or decoding:)."""
    return "signal" in algorithm_spec(recipe.algorithm).sections and \
        (recipe.signal != SignalConfig() or recipe.decoding != DecodingConfig())


def check_launch(recipe: Recipe, env: Mapping[str, str] | None = None, where: str | None = None) -> LaunchEnv:
    """Raise a one-line `RecipeError` for a recipe the launch cannot run (see the module docstring)."""
    where = where or recipe.source_file or "recipe"
    t = recipe.trainer
    launch = launch_env(env, t)
    if recipe.adapter.type == "qlora" and launch.shards_parameters:
        raise RecipeError(
            f"{where}: adapter.type: qlora cannot run under {launch.describe()}: it shards parameters and "
            f"bitsandbytes 4-bit weights are not shardable as rlft loads them; use adapter.type: lora, or QLoRA with "
            f"DDP / DeepSpeed ZeRO-2 (recipes/accelerate/multi_gpu.yaml, deepspeed_zero2.yaml)")
    if ("signal" in algorithm_spec(recipe.algorithm).sections and recipe.signal.shared_prefix
            and launch.engine == "fsdp" and launch.fsdp_activation_checkpointing):
        raise RecipeError(
            f"{where}: signal.shared_prefix cannot run with FSDP activation checkpointing "
            f"(FSDP_ACTIVATION_CHECKPOINTING=true): recomputing layers in backward would extend the shared KV cache "
            f"twice; set fsdp_activation_checkpointing: false in the accelerate config or signal.shared_prefix: false")
    if launch.world_size > 1 and _signal_trainer(recipe):
        g = _int(t.get("num_generations", 8)) or 8
        per_device = _int(t.get("per_device_train_batch_size", 8)) or 8
        steps = _int(t.get("steps_per_generation")) or _int(t.get("gradient_accumulation_steps", 1)) or 1
        if (per_device * steps) % g:
            raise RecipeError(
                f"{where}: trainer.per_device_train_batch_size: on {launch.world_size} processes each one's "
                f"generation batch (per_device_train_batch_size {per_device} x steps_per_generation {steps} = "
                f"{per_device * steps}) must be a multiple of num_generations ({g}), so no prompt's group is split "
                f"across processes (rlft's signal: features drop and refill whole groups)")
    if t.get("use_vllm"):
        mode = t.get("vllm_mode", "colocate")
        if mode not in VLLM_MODES:
            raise RecipeError(f"{where}: trainer.vllm_mode: expected colocate or server, got {mode!r}")
        if importlib.util.find_spec("vllm") is None:
            raise RecipeError(f"{where}: trainer.use_vllm: needs vllm installed (pip install vllm, on a CUDA "
                              f"machine), or set trainer.use_vllm: false")
    return launch


def is_main_process(env: Mapping[str, str] | None = None) -> bool:
    """True on the process that writes a run's files: global rank 0 (``RANK`` from torchrun / accelerate), or alone."""
    env = os.environ if env is None else env
    return (_int(env.get("RANK")) or 0) == 0


def any_rank(flag: bool) -> bool:
    """True on every rank when `flag` is true on any (a no-op outside torch.distributed)."""
    import torch
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()):
        return flag
    device = torch.device("cuda", torch.cuda.current_device()) if dist.get_backend() == "nccl" else "cpu"
    value = torch.tensor([1.0 if flag else 0.0], device=device)
    dist.all_reduce(value, op=dist.ReduceOp.MAX)
    return bool(value.item() > 0)
