"""Deep recipe checks that need imports but no model: files exist, rewards resolve and accept their params,
trainer keys are real options of TRL's config class, and the combination makes sense for the algorithm."""

from __future__ import annotations

import importlib.util

from rlft.config import Recipe
from rlft.data import check_source
from rlft.errors import RecipeError, UserError
from rlft.models import check_model_source, resolve_device
from rlft.reward import check_params, resolve_target
from rlft.trainer_args import build_args, check_trainer_keys

REWARD_ALGOS = ("grpo", "ppo")
PPO_SIGNAL_KEYS = ("prefill", "constrain_labels", "label_suffix")  # the decoding part of `signal:`


def _where(recipe: Recipe, key: str) -> str:
    prov = getattr(recipe, "_provenance", None)
    default = recipe.source_file or "recipe"
    return prov.origin(key, default) if prov is not None else default


def validate(recipe: Recipe) -> None:
    """Raise a one-line `UserError` for the first problem found; return None when the recipe is usable."""
    check_model_source(recipe.model, _where(recipe, "model.name"))
    check_source(recipe.data.source, _where(recipe, "data.source"))
    if recipe.data.eval_source:
        check_source(recipe.data.eval_source, _where(recipe, "data.eval_source"), "data.eval_source")
    if not 0.0 < recipe.data.eval_fraction < 1.0:
        raise RecipeError(f"{_where(recipe, 'data.eval_fraction')}: data.eval_fraction: expected a number between "
                          f"0 and 1 (exclusive), got {recipe.data.eval_fraction}")
    _validate_adapter(recipe)
    _validate_rewards(recipe)
    check_trainer_keys(recipe, _where(recipe, "trainer"))
    if recipe.algorithm == "kto":
        batch = recipe.trainer.get("per_device_train_batch_size", 8)
        if batch <= 1:
            raise RecipeError(f"{_where(recipe, 'trainer')}: trainer.per_device_train_batch_size: KTO needs > 1 "
                              f"(its KL reference term pairs each prompt with another completion in the batch)")
    _validate_signal(recipe)
    build_args(recipe, resolve_device(recipe.model), where=_where(recipe, "trainer"))


def _validate_adapter(recipe: Recipe) -> None:
    a, where = recipe.adapter, _where(recipe, "adapter")
    if a.type == "none":
        return
    if a.r <= 0 or a.alpha <= 0:
        raise RecipeError(f"{where}: adapter.r and adapter.alpha must be positive, got r={a.r}, alpha={a.alpha}")
    if not 0.0 <= a.dropout < 1.0:
        raise RecipeError(f"{where}: adapter.dropout: expected 0 <= dropout < 1, got {a.dropout}")
    if a.type == "qlora" and importlib.util.find_spec("bitsandbytes") is None:
        raise RecipeError(f"{where}: adapter.type: qlora needs bitsandbytes (pip install bitsandbytes)")


def _validate_rewards(recipe: Recipe) -> None:
    if recipe.algorithm in REWARD_ALGOS and not recipe.rewards:
        raise RecipeError(f"{_where(recipe, 'rewards')}: rewards: algorithm '{recipe.algorithm}' needs at least "
                          f"one reward (e.g. - name: intent)")
    for i, spec in enumerate(recipe.rewards):
        where = f"{_where(recipe, f'rewards.{i}.name')}: rewards[{i}]"
        params_where = f"{_where(recipe, f'rewards.{i}.params')}: rewards[{i}]"
        try:
            check_params(resolve_target(spec.name, where), spec, params_where)
        except UserError:
            raise
        except Exception as exc:  # a reward module that fails to import is the user's file: one line
            raise RecipeError(f"{where}: loading '{spec.name}' failed: {type(exc).__name__}: {exc}") from None


def _validate_signal(recipe: Recipe) -> None:
    if not recipe.signal:
        return
    if recipe.algorithm == "ppo":
        extra = sorted(set(recipe.signal) - set(PPO_SIGNAL_KEYS))
        if extra:
            raise RecipeError(f"{_where(recipe, 'signal')}: signal.{extra[0]} only applies to algorithm grpo; "
                              f"ppo accepts signal.{', signal.'.join(PPO_SIGNAL_KEYS)}")
    elif recipe.algorithm != "grpo":
        raise RecipeError(f"{_where(recipe, 'signal')}: signal: only applies to algorithms grpo and ppo "
                          f"(this recipe is {recipe.algorithm})")
    from rlft.signal_options import build_signal_config

    build_signal_config(recipe.signal, _where(recipe, "signal"))
