"""Glue between the recipe's `signal:` section and the GRPO signal features in `rlft.signal`."""

from __future__ import annotations

from typing import Any

from rlft.errors import RecipeError


def build_signal_config(raw: dict[str, Any], where: str) -> Any:
    from rlft.recipe import _build_section, _Provenance
    from rlft.signal import SignalConfig

    return _build_section(SignalConfig, raw, "signal", _Provenance(), where)


def build_signal_trainer(ctx: Any, kwargs: dict[str, Any]) -> Any:
    from rlft.signal import SignalGRPOTrainer

    signal = build_signal_config(ctx.recipe.signal, ctx.recipe.source_file or "recipe")
    return SignalGRPOTrainer(**kwargs, signal=signal, labels=ctx.labels)


def eval_generation_kwargs(recipe: Any, tokenizer: Any, labels: list[str]) -> dict[str, Any]:
    from rlft.signal import eval_generation_kwargs as kw

    signal = build_signal_config(recipe.signal, recipe.source_file or "recipe")
    try:
        return kw(signal, tokenizer, labels)
    except ValueError as exc:
        raise RecipeError(f"signal: {exc}") from None
