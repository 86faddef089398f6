"""Rewards as rlft runs them (the built-in rewards themselves are `rlft.rewards`).

- `protocol`: what a reward is (`Reward`, `BaseReward`, `completion_text`, `@reward`).
- `loader`: find, load, parameterise, check and wrap a recipe's rewards (`load_rewards`, `builtin_rewards`).
- `for_recipe`: a recipe's rewards loaded for its data (label set, columns).
- `completions`: score completions outside a trainer (evaluation, labelling, PPO) (`score`).
- `abstain`: `None` is "no contribution" when rewards combine; `state`: reward state in checkpoints.
- `echo`: does a reply repeat what its prompt told the agent to do?

`rlft.scoring.score` and the other names of the former `rlft/scoring.py` are read from `completions`.
"""


from rlft._moved import reexport

__getattr__ = reexport(__name__, "completions")
