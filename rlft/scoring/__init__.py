"""Rewards as rlft runs them (the built-in rewards themselves are `rlft.rewards`).

- `protocol`: what a reward is (`Reward`, `BaseReward`, `completion_text`, `@reward`).
- `loader`: find, load, parameterise, check and wrap a recipe's rewards (`load_rewards`, `builtin_rewards`).
- `for_recipe`: a recipe's rewards loaded for its data (label set, columns).
- `completions`: score completions outside a trainer (evaluation, labelling, PPO) (`score`).
- `abstain`: `None` is "no contribution" when rewards combine; `state`: reward state in checkpoints.
- `echo`: does a reply repeat what its prompt told the agent to do?

`rlft.scoring.score` and the other names of the former `rlft/scoring.py` are read from `completions`.
"""


def __getattr__(name: str):  # noqa: ANN202 - PEP 562
    if not name.startswith("_"):
        import importlib

        module = importlib.import_module(f"{__name__}.completions")  # not `from . import`: that would ask this hook again
        if hasattr(module, name):
            return getattr(module, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
