"""rlft: reinforcement fine-tuning of small language models with pluggable rewards.

Public API: `load_recipe`, `train`, `evaluate`, `export`, `Recipe`, `RewardSpec`, `Reward`, `BaseReward`, `reward`,
`completion_text`, `UserError`.
"""

__version__ = "0.1.0"

from rlft.run.telemetry import disable_unless_opted_in as _no_telemetry  # noqa: E402

_no_telemetry()  # before transformers/huggingface_hub read their settings


def _source_rewards() -> None:
    """`rlft.rewards` is the top-level `rewards/` folder (pyproject's package-dir). An install maps it; a source
    checkout imported as such (Python started in the repository root after a non-editable `pip install .`: ./rlft
    shadows the installed package) has it next to this folder: find it there, when nothing else does."""
    import importlib.abc
    import importlib.util
    import sys
    from pathlib import Path

    folder = Path(__file__).resolve().parent.parent / "rewards"
    if (Path(__file__).resolve().parent / "rewards").is_dir() or not (folder / "__init__.py").is_file():
        return

    class _RewardsFolder(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):  # noqa: ANN001, ANN201 - the importlib protocol
            if name != "rlft.rewards":
                return None
            return importlib.util.spec_from_file_location(name, folder / "__init__.py",
                                                          submodule_search_locations=[str(folder)])

    if not any(type(f).__name__ == "_RewardsFolder" for f in sys.meta_path):
        sys.meta_path.append(_RewardsFolder())  # last: an install's own mapping (editable finder) wins


_source_rewards()


def _old_paths() -> None:
    """Old flat import paths (`rlft.config`, `rlft.evaluate`, ...) keep working (rlft/_moved.py). Two of them name
    public functions too (`rlft.evaluate`, `rlft.export`): importing the old module must not replace the function,
    so this package ignores a module assigned to either name."""
    import sys
    import types

    from rlft._moved import install

    class _Package(types.ModuleType):
        def __setattr__(self, name, value):  # noqa: ANN001 - object's protocol
            if name in ("evaluate", "export") and isinstance(value, types.ModuleType):
                return
            super().__setattr__(name, value)

    sys.modules[__name__].__class__ = _Package
    install()


_old_paths()


def _one_line_user_errors() -> None:
    """A `UserError` nothing catches (a script calling `rlft.train` on an output_dir that holds a run) prints the
    CLI's one line, `error: ...`, instead of a traceback; every other exception keeps the hook it had."""
    import sys

    previous = sys.excepthook
    if getattr(previous, "rlft_user_errors", False):
        return

    def hook(kind, exc, tb):  # noqa: ANN001 - sys.excepthook's protocol
        from rlft.errors import UserError, print_error

        if isinstance(exc, UserError):
            print_error(str(exc))
            return
        previous(kind, exc, tb)

    hook.rlft_user_errors = True
    sys.excepthook = hook


_one_line_user_errors()

import logging as _logging  # noqa: E402

# bitsandbytes logs a warning on every import on CPU about an optional kernels package; it is not actionable.
_logging.getLogger("bitsandbytes.backends.cpu.ops").setLevel(_logging.ERROR)

from rlft.recipe.sections import Recipe  # noqa: E402
from rlft.errors import UserError  # noqa: E402
from rlft.recipe.load import load_recipe  # noqa: E402
from rlft.scoring.loader import RewardSpec  # noqa: E402
from rlft.scoring.protocol import BaseReward, Reward, completion_text, reward  # noqa: E402

from rlft.run.export import export  # noqa: E402 - light (no torch)


def train(recipe, overrides=(), callbacks=None):  # noqa: ANN001, ANN201 - thin lazy wrapper of rlft.run.pipeline.train
    """Train a recipe (object or YAML path); see `rlft.run.pipeline.train`."""
    from rlft.run.pipeline import train as _train

    return _train(recipe, overrides, callbacks)


def evaluate(models, recipe, out_dir=None, *, data=None, overrides=(),  # noqa: ANN001, ANN201 - thin lazy wrapper
             max_samples=None, max_new_tokens=None, batch_size=None, human_labels=None, pairwise_judge=None,
             api_key_env=None):
    """Evaluate models on a recipe's held-out split (or `data`) and write the report files; `rlft eval` in Python.

    `models`: one or a list of `"base"`, an adapter directory, `"openai:URL#MODEL"` (each may be `"NAME=REF"`) or
    `rlft.evaluation.eval_models.ModelRef`s. `recipe`: a `Recipe` or a YAML path (with `overrides`). `out_dir` defaults to
    OUTPUT_DIR/eval. `pairwise_judge`: `"openai:URL#MODEL"` / `"local:MODEL"` or a pairwise `Judge`. Returns
    `rlft.evaluation.eval_models.evaluate_models`' result: {"models": per-model summaries, "paths": report files, ...}::

        import rlft
        result = rlft.evaluate(["base", "tuned=runs/intent_grpo"], "recipes/intent_grpo.yaml", "runs/eval",
                               max_samples=64)
        for m in result["models"]:
            print(m["name"], m["headline"]["intent_accuracy"])
        print(result["paths"]["traces.html"])
    """
    from pathlib import Path

    from rlft.evaluation.eval_models import build_pairwise_judge, evaluate_models, parse_model_ref

    if isinstance(recipe, (str, Path)):
        recipe = load_recipe(recipe, list(overrides))
    refs = [parse_model_ref(m, api_key_env) if isinstance(m, str) else m
            for m in ([models] if isinstance(models, str) or not hasattr(models, "__iter__") else models)]
    if isinstance(pairwise_judge, str):
        pairwise_judge = build_pairwise_judge(pairwise_judge, api_key_env)
    out = out_dir if out_dir is not None else Path(recipe.output_dir) / "eval"
    return evaluate_models(refs, recipe, out, data, max_samples, max_new_tokens, batch_size, pairwise_judge,
                           human_labels)


__all__ = ["BaseReward", "Recipe", "Reward", "RewardSpec", "UserError", "__version__", "completion_text", "evaluate",
           "export", "load_recipe", "reward", "train"]
