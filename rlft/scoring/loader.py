"""How a recipe's rewards are found, loaded, parameterised, checked and wrapped (what a reward *is*:
`rlft.scoring.protocol`).

A recipe names a reward by a built-in short name (`intent`), an import path (`package.module:func`) or a file path
(`path/to/file.py:func`), and gives it `params`. For a **function**, params bind to its named keyword parameters;
its named parameters without a default (other than prompts/completions) are the dataset columns it needs. For a
**class**, params go to `__init__` and the instance is the reward; it lists the columns it needs in `columns`.
Built-ins are the `BaseReward` subclasses of the modules in the top-level `rewards/` folder (installed as
`rlft.rewards`), found by their `name`: adding a module there is all it takes.

`LoadedReward` is what the rest of rlft handles: the checked callable plus typed accessors for what the reward
declares about itself (`inner`, `parser`, `judge`, `calibration`, `fingerprint`, `metrics`, `trainer_callback()`).

This module never imports trainers: rewards depend on the contract only. Loading an import path runs that code,
exactly like importing it: only name files you trust.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import dataclasses
import functools
import importlib
import importlib.util
import inspect
import math
import numbers
import pkgutil
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rlft.errors import RewardError, UserError, did_you_mean
from rlft.scoring.protocol import BaseReward, Reward, completion_text

# Keywords TRL passes to every reward function; they are never recipe params nor dataset columns.
TRL_INJECTED = frozenset({"prompts", "completions", "completion_ids", "trainer_state", "log_metric", "log_extra",
                          "environments"})
BUILTIN_PACKAGE = "rlft.rewards"
DEFAULT_TIMEOUT = 600.0  # seconds per reward call (one batch): a judge over a large batch fits, a hung reward stops


@functools.cache
def builtin_rewards() -> dict[str, str]:
    """Built-in short name -> import path: every `BaseReward` subclass with a `name`, defined in a module of
    `rlft.rewards` (imported here, once, the first time a short name is resolved)."""
    package = importlib.import_module(BUILTIN_PACKAGE)
    found: dict[str, str] = {}
    for info in sorted(pkgutil.iter_modules(package.__path__), key=lambda m: m.name):
        module = importlib.import_module(f"{BUILTIN_PACKAGE}.{info.name}")
        for attr, obj in vars(module).items():
            if (inspect.isclass(obj) and issubclass(obj, BaseReward) and obj.__module__ == module.__name__
                    and obj.name):
                if obj.name in found:
                    raise RuntimeError(f"two built-in rewards are named '{obj.name}': {found[obj.name]} and "
                                       f"{module.__name__}:{attr}")
                found[obj.name] = f"{module.__name__}:{attr}"
    return found


@dataclass
class RewardSpec:
    """One entry of a recipe's `rewards:` list."""

    name: str = field(metadata={"help": "Built-in short name, `pkg.module:attr` or `path/to/file.py:attr`."})
    weight: float = field(default=1.0, metadata={"help": "Weight in the weighted sum of rewards."})
    params: dict[str, Any] = field(default_factory=dict, metadata={"help": "Keyword arguments for the reward."})
    alias: str | None = field(default=None, metadata={"help": "Metric name; defaults to the short/attr name."})
    timeout: float | None = field(default=DEFAULT_TIMEOUT, metadata={
        "help": "Seconds one call of the reward (one batch) may take before the run stops with an error naming it "
                "(null: no limit)."})

    @property
    def display_name(self) -> str:
        if self.alias:
            return self.alias
        return self.name.rsplit(":", 1)[-1] if ":" in self.name else self.name


@dataclass
class LoadedReward:
    """A ready-to-call reward: checked TRL-convention callable, its weight and the dataset columns it needs.

    `inner` is the object the recipe named (a class reward's instance, or the function); the accessors below read
    what it declares (`rlft.scoring.protocol`), so callers never probe attributes themselves."""

    name: str
    func: Callable[..., Any]
    weight: float
    columns: tuple[str, ...]
    is_async: bool
    inner: Reward | None = None

    def __post_init__(self) -> None:
        if self.inner is None:  # rebuilt from a loaded `func` (or a bare callable): the loader marked its inner
            self.inner = getattr(self.func, "rlft_inner", self.func)

    def _declared(self, attr: str, default: Any = None) -> Any:
        return getattr(self.inner, attr, default)

    @property
    def parser(self) -> Any:
        """The reward's label parser (e.g. `rlft.rewards.intent.IntentParser`), or None."""
        return self._declared("parser")

    @property
    def selective(self) -> Any:
        """A reward's hand-off grading (`rlft.rewards.intent.Selective`: the hand-off label and the value of each
        decision), or None."""
        return self._declared("selective")

    @property
    def judge(self) -> Any:
        """The `rlft.judge.judgment.Judge` of a judge reward (its mode, budget), or None."""
        return self._declared("judge")

    @property
    def calibration(self) -> Any:
        """A judge reward's calibration gate (`rlft.judge.gate.CalibrationGate`), or None."""
        return self._declared("calibration")

    @property
    def fingerprint(self) -> str | int | float | None:
        """What the reward says identifies its verdicts (`fingerprint`, else `version` / `judge_version`)."""
        for attr in ("fingerprint", "version", "judge_version"):
            value = self._declared(attr)
            if isinstance(value, (str, int, float)):
                return value
        return None

    @property
    def metrics(self) -> tuple[str, ...]:
        """Names the reward logs through `log_metric` (declared; `()` when it declares none)."""
        return tuple(self._declared("metrics", ()) or ())

    @property
    def eval_metrics(self) -> tuple[str, ...]:
        """Headline metrics the reward contributes to evaluation (declared; `()` when it declares none)."""
        return tuple(self._declared("eval_metrics", ()) or ())

    def trainer_callback(self) -> Any:
        """A new transformers `TrainerCallback` the reward asks to register, or None."""
        make = self._declared("trainer_callback")
        return make() if callable(make) else None


def resolve_target(name: str, where: str) -> Any:
    """Import the object a reward name points at (built-in short name, `mod:attr` or `file.py:attr`)."""
    path = name if ":" in name else builtin_rewards().get(name, name)
    if ":" not in path:
        raise RewardError(
            f"{where}: unknown reward '{name}'{did_you_mean(name, builtin_rewards())}; use a built-in "
            f"({', '.join(sorted(builtin_rewards()))}), 'package.module:function' or 'path/to/file.py:function'"
        )
    module_ref, attr = path.rsplit(":", 1)
    if module_ref.endswith(".py"):
        module = _import_file(module_ref, where)
    else:
        try:
            module = importlib.import_module(module_ref)
        except ImportError as exc:
            raise RewardError(f"{where}: cannot import module '{module_ref}' for reward '{name}': {exc}") from None
        except SystemExit as exc:
            raise RewardError(f"{where}: importing '{module_ref}' {_exited(exc)} {_AT_IMPORT}") from None
    if not hasattr(module, attr):
        public = [n for n in dir(module) if not n.startswith("_")]
        raise RewardError(f"{where}: '{module_ref}' has no attribute '{attr}'{did_you_mean(attr, public)}")
    target = getattr(module, attr)
    if not callable(target):
        raise RewardError(f"{where}: '{path}' is not callable (got {type(target).__name__})")
    return target


def _import_file(file_ref: str, where: str) -> Any:
    path = Path(file_ref).expanduser().resolve()
    if not path.is_file():
        raise RewardError(f"{where}: reward file '{file_ref}' does not exist")
    module_name = f"rlft_user_reward_{abs(hash(str(path)))}"
    if module_name in sys.modules:
        return sys.modules[module_name]
    spec = importlib.util.spec_from_file_location(module_name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    try:
        spec.loader.exec_module(module)
    except SystemExit as exc:  # sys.exit()/exit() at module level would end rlft silently with its code
        del sys.modules[module_name]
        raise RewardError(f"{where}: importing '{file_ref}' {_exited(exc)} {_AT_IMPORT}") from None
    except Exception as exc:  # the user's file failed to import: say where, keep it one line
        del sys.modules[module_name]
        raise RewardError(f"{where}: importing '{file_ref}' failed: {type(exc).__name__}: {exc}") from None
    return module


_AT_IMPORT = ("(a reward module must not exit when imported: put script code under "
              "`if __name__ == '__main__':`)")


def _exited(exc: SystemExit) -> str:
    """'called sys.exit(3)': what a reward's `SystemExit` did, for a one-line error."""
    return f"called sys.exit({exc.code!r})" if exc.code is not None else "called sys.exit()"


def _signature_params(target: Any) -> tuple[dict[str, inspect.Parameter], bool]:
    """Named parameters a reward accepts (minus TRL-injected ones) and whether it takes **kwargs."""
    fn = target.__init__ if inspect.isclass(target) else target
    sig = inspect.signature(fn)
    named = {}
    var_kw = False
    for p in sig.parameters.values():
        if p.kind is inspect.Parameter.VAR_KEYWORD:
            var_kw = True
        elif p.kind is not inspect.Parameter.VAR_POSITIONAL and p.name not in TRL_INJECTED and p.name != "self":
            named[p.name] = p
    return named, var_kw


def _check_call_signature(target: Any, spec: RewardSpec, where: str) -> None:
    """A reward is called as f(prompts=..., completions=..., **columns): it must accept those two keywords (a class:
    its instances must, so the class defines `__call__`)."""
    fn = _class_call(target, spec, where) if inspect.isclass(target) else target
    try:
        params = inspect.signature(fn).parameters.values()
    except (TypeError, ValueError):
        return
    names = {p.name for p in params if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)}
    if any(p.kind is p.VAR_KEYWORD for p in params):
        return
    missing = [n for n in ("prompts", "completions") if n not in names]
    if missing:
        raise RewardError(f"{where}: reward '{spec.name}' has no parameter {' or '.join(missing)}; a reward is "
                          f"called as f(prompts, completions, **columns) (add them, and **kwargs)")


def _class_call(target: type, spec: RewardSpec, where: str) -> Callable:
    """The `__call__` a class reward's instances run; a class without one (or only an abstract one) is refused."""
    for klass in inspect.getmro(target):
        if klass not in (object, Reward) and "__call__" in vars(klass):
            call = vars(klass)["__call__"]
            if not getattr(call, "__isabstractmethod__", False):
                return call
            break
    raise RewardError(f"{where}: reward '{spec.name}': class {target.__name__} defines no __call__; its instance is "
                      f"the reward, called as reward(prompts, completions, **columns)")


def wants_labels(target: Any) -> bool:
    """Whether a reward class asks for the data's label set as its `labels` param (`BaseReward.wants_labels`)."""
    return bool(getattr(target, "wants_labels", False))


def check_params(target: Any, spec: RewardSpec, where: str) -> None:
    """Reject recipe params the reward does not accept (names only; values are the reward's business), and a
    reward that cannot be called with `prompts` and `completions`."""
    _check_call_signature(target, spec, where)
    named, var_kw = _signature_params(target)
    if inspect.isclass(target) and var_kw:
        return
    for key in spec.params:
        if key not in named:
            allowed = ", ".join(sorted(named)) or "none"
            raise RewardError(
                f"{where}: reward '{spec.name}' does not accept parameter '{key}'{did_you_mean(key, named)}; "
                f"it accepts: {allowed}"
            )


def required_columns(target: Any, instance: Any, spec: RewardSpec) -> tuple[str, ...]:
    """Dataset columns a reward reads: declared `columns`, plus a function's required named parameters."""
    declared = tuple(getattr(instance, "columns", None) or getattr(target, "rlft_columns", ()) or ())
    if inspect.isclass(target):
        return declared
    named, _ = _signature_params(target)
    implicit = tuple(n for n, p in named.items() if p.default is inspect.Parameter.empty and n not in spec.params)
    return tuple(dict.fromkeys(declared + implicit))


def load_reward(spec: RewardSpec, where: str = "rewards") -> LoadedReward:
    """Import, parameterise and wrap one reward so bad outputs fail loudly with its name."""
    target = resolve_target(spec.name, where)
    check_params(target, spec, where)
    if inspect.isclass(target):
        try:
            instance = target(**spec.params)
        except (TypeError, ValueError) as exc:
            raise RewardError(f"{where}: reward '{spec.name}' rejected its params: {exc}") from None
        except SystemExit as exc:
            raise RewardError(f"{where}: reward '{spec.name}' {_exited(exc)} when created (a reward returns "
                              "values or raises; it must not exit the process)") from None
        func = instance
    else:
        instance = target
        func = functools.partial(target, **spec.params) if spec.params else target
    name = spec.alias or getattr(instance, "name", None) or getattr(target, "rlft_name", None) or spec.display_name
    is_async = inspect.iscoroutinefunction(func) or inspect.iscoroutinefunction(getattr(func, "__call__", None))
    if isinstance(func, functools.partial):
        is_async = inspect.iscoroutinefunction(func.func)
    checked = _checked(name, func, is_async, instance, spec.timeout, where)
    return LoadedReward(name, checked, float(spec.weight), required_columns(target, instance, spec), is_async,
                        instance)


def with_data_labels(specs: Sequence[RewardSpec], labels: Sequence[str]) -> list[RewardSpec]:
    """Give rewards that ask for the label set (`wants_labels`) the data's labels, unless the recipe set them."""
    out = []
    for spec in specs:
        if labels and "labels" not in spec.params and wants_labels(resolve_target(spec.name, "rewards")):
            spec = dataclasses.replace(spec, params={**spec.params, "labels": list(labels)})
        out.append(spec)
    return out


def load_rewards(specs: Sequence[RewardSpec], where: str = "rewards") -> list[LoadedReward]:
    loaded = [load_reward(s, f"{where}[{i}]") for i, s in enumerate(specs)]
    names = [r.name for r in loaded]
    dupes = {n for n in names if names.count(n) > 1}
    if dupes:
        raise RewardError(f"{where}: two rewards share the metric name {sorted(dupes)}; give one an 'alias'")
    return loaded


def validate_output(name: str, values: Any, expected: int) -> list[float | None]:
    """Check a reward's return value: one finite number or None per completion."""
    if hasattr(values, "tolist"):
        values = values.tolist()
    if not isinstance(values, (list, tuple)):
        raise RewardError(f"reward '{name}' returned {type(values).__name__}; expected a list of floats or None")
    if len(values) != expected:
        raise RewardError(f"reward '{name}' returned {len(values)} values for {expected} completions")
    out: list[float | None] = []
    for i, v in enumerate(values):
        if v is None:
            out.append(None)
            continue
        if isinstance(v, bool) or not isinstance(v, numbers.Real):
            raise RewardError(f"reward '{name}' returned {type(v).__name__} {v!r} at index {i}; expected float or None")
        v = float(v)
        if not math.isfinite(v):
            raise RewardError(f"reward '{name}' returned {v} at index {i}; return None to abstain instead")
        out.append(v)
    return out


def _failing_row(func: Callable, prompts: Sequence[Any], completions: Sequence[Any], kwargs: dict[str, Any],
                 deadline: float | None = None) -> int:
    """Index of the first completion the (sync) reward raises on when called alone; -1 if none does (or the search
    passes `deadline`, a `time.monotonic()` value)."""
    for i in range(len(completions)):
        row = {k: ([v[i]] if isinstance(v, (list, tuple)) and len(v) == len(completions) else v)
               for k, v in kwargs.items()}
        left = None if deadline is None else deadline - time.monotonic()
        if left is not None and left <= 0:
            return -1
        try:
            _bounded(functools.partial(func, prompts=[prompts[i]], completions=[completions[i]], **row), left)
        except _TimedOut:
            return -1
        except (Exception, SystemExit):  # noqa: BLE001 - the row it fails on alone, however it fails
            return i
    return -1


def _raised(name: str, exc: Exception, row: int, completions: Sequence[Any]) -> RewardError:
    message = " ".join(str(exc).split())[:200]
    shown = completion_text(completions[row])[:80] if row >= 0 else ""
    where = (f"on row {row + 1} of a batch of {len(completions)} (completion {shown!r})" if row >= 0
             else f"on a batch of {len(completions)} completions")
    return RewardError(f"reward '{name}' raised {type(exc).__name__} {where}: {message}")


def _exited_call(name: str, exc: SystemExit, completions: Sequence[Any]) -> RewardError:
    return RewardError(f"reward '{name}' {_exited(exc)} on a batch of {len(completions)} completions (a reward "
                       "returns one value or None per completion, or raises; it must not exit the process)")


class _TimedOut(Exception):
    """A bounded call did not return in time (its thread is left running as a daemon)."""


def _timed_out(name: str, timeout: float, completions: Sequence[Any], key: str) -> RewardError:
    return RewardError(f"reward '{name}' did not return within {timeout:g} s on a batch of {len(completions)} "
                       f"completions (a hung reward?); make it faster or raise {key}.timeout (null: no limit)")


def _grad_modes() -> Callable[[], Any]:
    """A context factory that re-enters the caller's torch grad/inference mode (thread-local) in another thread."""
    torch = sys.modules.get("torch")
    if torch is None:
        return contextlib.nullcontext
    grad, inference = torch.is_grad_enabled(), torch.is_inference_mode_enabled()

    def modes() -> Any:
        stack = contextlib.ExitStack()
        if inference:
            stack.enter_context(torch.inference_mode())
        stack.enter_context(torch.set_grad_enabled(grad))
        return stack

    return modes


def _bounded(call: Callable[[], Any], timeout: float | None) -> Any:
    """`call()`, or `_TimedOut` after `timeout` seconds. The call runs in a daemon thread (with the caller's context
    variables and torch grad mode), so this works from the main thread and from worker threads alike, and a call
    that never returns cannot keep the process alive once rlft exits."""
    if timeout is None:
        return call()
    result: dict[str, Any] = {}
    context, modes = contextvars.copy_context(), _grad_modes()

    def runner() -> None:
        try:
            with modes():
                result["value"] = context.run(call)
        except BaseException as exc:  # noqa: BLE001 - re-raised in the caller's thread
            result["error"] = exc

    thread = threading.Thread(target=runner, name="rlft-reward", daemon=True)
    thread.start()
    thread.join(timeout)
    if thread.is_alive():
        raise _TimedOut
    if "error" in result:
        raise result["error"]
    return result["value"]


def _checked(name: str, func: Callable, is_async: bool, inner: Any, timeout: float | None = DEFAULT_TIMEOUT,
             key: str = "rewards[]") -> Callable:
    """The one place a recipe's reward is called: errors name the reward, outputs are checked, and a call that takes
    longer than `timeout` seconds (None: no limit) stops with a `RewardError` naming it."""
    if is_async:

        async def guarded(prompts, completions, **kwargs):
            try:  # inside the task: a SystemExit escaping a task would stop its event loop, not reach the caller
                return await func(prompts=prompts, completions=completions, **kwargs)
            except SystemExit as exc:
                raise _exited_call(name, exc, completions) from None

        async def checked_async(prompts, completions, **kwargs):
            try:
                # a coroutine that blocks its event loop (time.sleep) cannot be cancelled; one that awaits can
                values = await asyncio.wait_for(guarded(prompts=prompts, completions=completions, **kwargs), timeout)
            except UserError:
                raise
            except asyncio.TimeoutError:
                raise _timed_out(name, timeout, completions, key) from None
            except Exception as exc:  # the user's reward failed: name it (rows are not retried: a judge costs money)
                raise _raised(name, exc, -1, completions) from exc
            return validate_output(name, values, len(completions))

        checked = checked_async
    else:

        def checked_sync(prompts, completions, **kwargs):
            try:
                values = _bounded(functools.partial(func, prompts=prompts, completions=completions, **kwargs),
                                  timeout)
            except UserError:
                raise
            except _TimedOut:
                raise _timed_out(name, timeout, completions, key) from None
            except SystemExit as exc:
                raise _exited_call(name, exc, completions) from None
            except Exception as exc:  # the user's reward failed: name it and the first row it fails on alone
                deadline = None if timeout is None else time.monotonic() + timeout
                raise _raised(name, exc, _failing_row(func, prompts, completions, kwargs, deadline),
                              completions) from exc
            return validate_output(name, values, len(completions))

        checked = checked_sync
    checked.__name__ = checked.__qualname__ = name
    checked.rlft_inner = inner  # what LoadedReward.inner falls back to when a LoadedReward is rebuilt from `func`
    return checked


def as_loaded_rewards(reward_funcs: Sequence[Any], weights: Sequence[float] | None) -> list[LoadedReward]:
    """Accept rlft `LoadedReward`s or bare TRL-convention callables (sync or async); apply `weights` if given."""
    if weights is not None and len(weights) != len(reward_funcs):
        raise ValueError(f"reward_weights has {len(weights)} values for {len(reward_funcs)} reward functions")
    loaded = []
    for i, func in enumerate(reward_funcs):
        if not isinstance(func, LoadedReward):
            name = getattr(func, "name", None) or getattr(func, "__name__", None) or type(func).__name__
            call = getattr(func, "__call__", None)
            is_async = inspect.iscoroutinefunction(func) or inspect.iscoroutinefunction(call)
            func = LoadedReward(name, _validated(name, func, is_async), 1.0, tuple(getattr(func, "columns", ()) or ()),
                                is_async)
        if weights is not None:
            func = LoadedReward(func.name, func.func, float(weights[i]), func.columns, func.is_async)
        loaded.append(func)
    names = [r.name for r in loaded]
    if len(set(names)) != len(names):
        raise ValueError(f"reward functions need distinct names, got {names}")
    return loaded


def _validated(name: str, func: Callable, is_async: bool) -> Callable:
    if is_async:
        async def run_async(prompts, completions, **kwargs):
            return validate_output(name, await func(prompts=prompts, completions=completions, **kwargs),
                                   len(completions))
        return run_async

    def run(prompts, completions, **kwargs):
        return validate_output(name, func(prompts=prompts, completions=completions, **kwargs), len(completions))
    return run
