"""rlft: reinforcement fine-tuning of small language models with pluggable rewards.

Public API: `load_recipe`, `train`, `Recipe`, `RewardSpec`, `reward`, `completion_text`, `evaluate`, `UserError`.
"""

from rlft.telemetry import disable_unless_opted_in as _no_telemetry

_no_telemetry()  # before transformers/huggingface_hub read their settings

import logging as _logging  # noqa: E402

# bitsandbytes logs a warning on every import on CPU about an optional kernels package; it is not actionable.
_logging.getLogger("bitsandbytes.backends.cpu.ops").setLevel(_logging.ERROR)

from rlft.config import Recipe  # noqa: E402
from rlft.errors import UserError  # noqa: E402
from rlft.recipe import load_recipe  # noqa: E402
from rlft.reward import RewardSpec, completion_text, reward  # noqa: E402
from rlft.version import __version__  # noqa: E402


def train(recipe, overrides=(), callbacks=None):  # noqa: ANN001, ANN201 - thin lazy wrapper, see rlft.train.train
    """Train a recipe (object or YAML path); see `rlft.pipeline.train`."""
    from rlft.pipeline import train as _train

    return _train(recipe, overrides, callbacks)


__all__ = ["Recipe", "RewardSpec", "UserError", "__version__", "completion_text", "load_recipe", "reward", "train"]
