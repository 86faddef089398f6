"""What a reward is: the `Reward` protocol, the small `BaseReward` class the built-ins subclass, `completion_text`.

A reward speaks TRL's reward-function convention exactly, so any rlft reward drops into plain TRL and any TRL
reward drops into rlft::

    def my_reward(prompts, completions, **columns) -> list[float | None]     # or `async def`

`prompts`/`completions` are strings or chat-message lists; each dataset column arrives as a keyword argument
holding one value per completion; `None` means "not applicable / abstain". TRL also passes `trainer_state`,
`log_metric` and `log_extra`; accept `**kwargs` so new keywords never break you.

The protocol is structural: a plain function is a `Reward`. A class reward (recipe `params` go to `__init__`, the
instance is the reward) may declare more about itself; every declaration is optional and read by
`rlft.scoring.loader.LoadedReward`'s accessors, never by attribute probing elsewhere:

    name             metric name (default: the recipe's short name / attribute name)
    columns          dataset columns it reads (checked against the data before training)
    wants_labels     True: rlft passes the data's label set as `labels` when the recipe does not (class attribute)
    metrics          names it logs through `log_metric` (`<label>` stands for one name per label), for docs/reports
    eval_metrics     headline metrics it contributes to evaluation (`rlft.report.headline.METRICS` names), like
                     inspect_ai's `@scorer(metrics=[...])`: a label metric (`intent_accuracy`, ...) makes its
                     `parser` read each completion's label, a verdict metric (`policy_following`, ...) makes its
                     values the pass/fail verdicts (a judge's raw verdict; otherwise a row passes at 1.0)
    selective        with a selective metric (`coverage`, ...): its hand-off label and the value of each decision
                     (`rlft.rewards.intent.Selective`), from which evaluation counts coverage and expected cost
    fingerprint      short string that changes when anything deciding its values changes (recorded with labels)
    trainer_callback()  a transformers `TrainerCallback` to register (e.g. a judge's graceful budget stop); with
                     `state_dict()` / `load_state_dict()` its state goes into every checkpoint (rlft.scoring.state),
                     and raising `TrainingStopped` from its `on_train_begin` ends a (resumed) run before its first step

This module imports nothing heavy and nothing of rlft: rewards depend on it, never on trainers.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import Any, ClassVar, Protocol, runtime_checkable


@runtime_checkable
class Reward(Protocol):
    """Anything called as `reward(prompts=..., completions=..., **columns) -> list[float | None]` (or awaitable)."""

    def __call__(self, prompts: list[Any], completions: list[Any],
                 **columns: Any) -> list[float | None] | Awaitable[list[float | None]]: ...


class TrainingStopped(Exception):
    """Raised by a reward's trainer callback in `on_train_begin` when the run must not train another step (a resumed
    run whose judge budget is already spent). `rlft.train` catches it and ends the run as a graceful stop: the
    checkpoint's adapter is saved and the callback's `stop_reason` recorded; a plain TRL script sees the exception."""


class BaseReward:
    """Optional base for class rewards: the declarations of the module docstring, with their defaults.

    Subclass it, set what applies and define `__call__`::

        >>> class Shout(BaseReward):
        ...     name, metrics = "shout", ("shout/rate",)
        ...     def __call__(self, prompts, completions, log_metric=None, **kwargs):
        ...         return [float(completion_text(c).isupper()) for c in completions]
        >>> Shout()(prompts=["p", "p"], completions=["HI", "hi"]), isinstance(Shout(), Reward)
        ([1.0, 0.0], True)
    """

    name: ClassVar[str | None] = None
    columns: tuple[str, ...] = ()
    wants_labels: ClassVar[bool] = False
    metrics: ClassVar[tuple[str, ...]] = ()
    eval_metrics: tuple[str, ...] = ()
    fingerprint: str | None = None

    def trainer_callback(self) -> Any:
        """A transformers `TrainerCallback` rlft registers for this reward, or None (the default)."""
        return None


def completion_text(completion: Any) -> str:
    """Text of a completion, whatever its shape: a string (evaluation, labelling, PPO, plain-text prompts) or the
    assistant contents of a chat-message list (GRPO with chat prompts). Use it in every reward you write::

        >>> completion_text("<intent>refund</intent>"), completion_text([{"role": "assistant", "content": "hi"}])
        ('<intent>refund</intent>', 'hi')
    """
    if isinstance(completion, str):
        return completion
    if isinstance(completion, list):
        return "".join(str(m.get("content", "")) for m in completion if isinstance(m, dict))
    return str(completion)


def reward(name: str | None = None, columns: Sequence[str] = ()) -> Callable[[Callable], Callable]:
    """Optional decorator: give a reward function a metric name and declare extra dataset columns it reads."""

    def mark(fn: Callable) -> Callable:
        fn.rlft_name = name or fn.__name__
        fn.rlft_columns = tuple(columns)
        return fn

    return mark
