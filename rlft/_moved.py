"""Import paths from before the package layout (rlft 0.1 had one flat folder): `import rlft.config` still works.

Each old module path is an alias of the module that now holds the code (the same module object, not a copy), found
by a finder placed first on `sys.meta_path`, with a `DeprecationWarning` naming the new path. A moved package's
submodules follow it (`rlft.synthetic.generate` is `rlft.data.synthetic.generate`). The four old modules whose
names are now packages (`rlft.recipe`, `rlft.data`, `rlft.scoring`, `rlft.decoding`) need no alias: each package
re-exports its old module's public names (`reexport`). docs/architecture.md has the layout.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import sys
import warnings

MOVED = {
    "rlft.config": "rlft.recipe.sections",
    "rlft.typecheck": "rlft.recipe.typecheck",
    "rlft.validate": "rlft.recipe.validate",
    "rlft.check": "rlft.recipe.check",
    "rlft.demo_data": "rlft.data.demo",
    "rlft.splits": "rlft.data.splits",
    "rlft.noise": "rlft.data.noise",
    "rlft.oracle": "rlft.data.oracle",
    "rlft.labeling.cli": "rlft.data.labeling.commands",
    "rlft.labeling.export": "rlft.data.labeling.formats",
    "rlft.labeling.prompts": "rlft.data.labeling.sources",
    "rlft.labeling.resume": "rlft.data.labeling.record",
    "rlft.labeling": "rlft.data.labeling",
    "rlft.synthetic": "rlft.data.synthetic",
    "rlft.reward_protocol": "rlft.scoring.protocol",
    "rlft.reward_loader": "rlft.scoring.loader",
    "rlft.reward_state": "rlft.scoring.state",
    "rlft.recipe_rewards": "rlft.scoring.for_recipe",
    "rlft.abstain": "rlft.scoring.abstain",
    "rlft.echo": "rlft.scoring.echo",
    "rlft.constraint": "rlft.decoding.constraint",
    "rlft.constrained": "rlft.decoding.constrained",
    "rlft.generation": "rlft.decoding.generation",
    "rlft.shared_prefix": "rlft.decoding.shared_prefix",
    "rlft.label_space": "rlft.decoding.label_space",
    "rlft.trainer_args": "rlft.trainers.args",
    "rlft.trainers.reward_model": "rlft.trainers.reward_trainer",
    "rlft.grpo.trainer": "rlft.grpo.signal_trainer",
    "rlft.grpo.resume": "rlft.grpo.signal_state",
    "rlft.ppo.trainer": "rlft.ppo.ppo_trainer",
    "rlft.ppo.config": "rlft.ppo.ppo_config",
    "rlft.ppo.rollout": "rlft.ppo.sampling",
    "rlft.judge.judge": "rlft.judge.judgment",
    "rlft.judge.prompts": "rlft.judge.prompt_templates",
    "rlft.judge_gate": "rlft.judge.gate",
    "rlft.evaluate": "rlft.evaluation.held_out",
    "rlft.eval_run": "rlft.evaluation.eval_models",
    "rlft.periodic_eval": "rlft.evaluation.periodic",
    "rlft.calibration": "rlft.evaluation.calibration",
    "rlft.pipeline": "rlft.run.pipeline",
    "rlft.models": "rlft.run.models",
    "rlft.outputs": "rlft.run.outputs",
    "rlft.checkpoints": "rlft.run.checkpoints",
    "rlft.progress": "rlft.run.progress",
    "rlft.time_budget": "rlft.run.time_budget",
    "rlft.ema": "rlft.run.ema",
    "rlft.distributed": "rlft.run.distributed",
    "rlft.launch": "rlft.run.launch",
    "rlft.telemetry": "rlft.run.telemetry",
    "rlft.redact": "rlft.run.redact",
    "rlft.export": "rlft.run.export",
}


_LONGEST_FIRST = sorted(MOVED, key=len, reverse=True)


def new_name(name: str) -> str | None:
    """Where the old module path `name` lives now, or None when it never moved."""
    for old in _LONGEST_FIRST:
        if name == old or name.startswith(old + "."):
            return MOVED[old] + name[len(old):]
    return None


class _Alias(importlib.abc.Loader):
    def __init__(self, target: str) -> None:
        self.target = target

    def create_module(self, spec):  # noqa: ANN001, ANN201 - importlib's protocol
        warnings.warn(f"{spec.name} moved to {self.target}", DeprecationWarning, stacklevel=3)
        module = importlib.import_module(self.target)
        self._spec = module.__spec__
        return module

    def exec_module(self, module) -> None:  # noqa: ANN001 - importlib's protocol
        module.__spec__ = self._spec  # the import system stamped the alias's spec on the real module: undo it


class MovedModules(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):  # noqa: ANN001, ANN201 - importlib's protocol
        new = new_name(name) if name.startswith("rlft.") else None
        if new is None:
            return None
        return importlib.machinery.ModuleSpec(name, _Alias(new))


def reexport(package: str, *modules: str):  # noqa: ANN201 - a PEP 562 module __getattr__
    """The `__getattr__` of a package that was a module: its public names are read from `package.<module>`, the
    first of `modules` that has the name, imported on first use (`rlft.scoring.score` is
    `rlft.scoring.completions.score`)."""

    def __getattr__(name: str):  # noqa: ANN202, N807 - PEP 562
        if not name.startswith("_"):
            for module in modules:
                found = importlib.import_module(f"{package}.{module}")  # not `from . import`: it would ask this hook
                if hasattr(found, name):
                    return getattr(found, name)
        raise AttributeError(f"module {package!r} has no attribute {name!r}")

    return __getattr__


def install() -> None:
    if not any(isinstance(f, MovedModules) for f in sys.meta_path):
        # first: under an old package path (`rlft.synthetic`) the path finder would load a second copy of a submodule
        # from the real package's folder; no old path names a file, so nothing real is shadowed
        sys.meta_path.insert(0, MovedModules())
