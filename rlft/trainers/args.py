"""Build the TRL config object for a recipe's algorithm from its `trainer:` mapping, with rlft's defaults.

rlft's defaults differ from TRL's only where TRL's would hurt: no reporting integrations unless asked, and mixed
precision chosen from the actual device (TRL defaults to bf16, which is ~150x slower than fp32 on CPUs without
bf16 units).

`check_trainer_keys` reads the config class's field names and types from a schema cached on disk
(`$RLFT_CACHE` or ~/.cache/rlft, `trainer_schema/`), keyed by the TRL and transformers versions and rlft's own
source: importing a TRL config class imports transformers' TrainingArguments, torch and PEFT (10-30 s on a busy
CPU machine), which a misspelt trainer key should not cost. The first check on a machine (or after an upgrade)
imports the class and writes the schema; every `rlft train` refreshes it.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import os
import tempfile
import typing
from importlib import metadata
from pathlib import Path
from typing import Any

from rlft.recipe.sections import Recipe
from rlft.errors import RecipeError, did_you_mean
from rlft.recipe.typecheck import describe, from_spec, matches, to_spec


def config_class(algorithm: str) -> type:
    """TRL (or rlft) config dataclass for an algorithm (each trainer module says which: `rlft.trainers`)."""
    from rlft.trainers import algorithm_spec

    return algorithm_spec(algorithm).config_class()  # an unknown name: "algorithm: unknown '<name>'"


def _type_hints(cls: type) -> dict[str, Any]:
    hints: dict[str, Any] = {}
    for klass in reversed(cls.__mro__):
        if dataclasses.is_dataclass(klass):
            try:
                hints.update(typing.get_type_hints(klass))
            except Exception:  # forward references TRL/transformers cannot resolve: skip type checks for them
                pass
    return hints


_RLFT = Path(__file__).resolve().parents[1]  # the rlft package folder


def _module_bytes(algorithm: str) -> bytes:
    """The source of an algorithm's module when it lives outside rlft (found, not imported), else b""."""
    import importlib.util

    from rlft.trainers import algorithm_spec

    try:
        found = importlib.util.find_spec(algorithm_spec(algorithm).module)
    except (ImportError, ValueError):
        return b""
    origin = Path(found.origin) if found is not None and found.origin else None
    if origin is None or not origin.is_file() or _RLFT in origin.resolve().parents:
        return b""
    return origin.read_bytes()


def _schema_file(algorithm: str) -> Path:
    versions = []
    for dist in ("trl", "transformers"):
        try:
            versions.append(metadata.version(dist))
        except metadata.PackageNotFoundError:
            versions.append("none")
    digest = hashlib.sha1("|".join(versions).encode())
    for path in sorted(_RLFT.rglob("*.py")):  # rlft's own config classes (PPO, label_pg) live here
        digest.update(path.read_bytes())
    digest.update(_module_bytes(algorithm))  # an algorithm registered from outside rlft: its own module too
    root = Path(os.environ.get("RLFT_CACHE") or Path.home() / ".cache" / "rlft").expanduser()
    return root / "trainer_schema" / f"{algorithm}-{digest.hexdigest()[:16]}.json"


@functools.lru_cache(maxsize=None)
def trainer_schema(algorithm: str) -> tuple[str, frozenset[str], dict[str, Any]]:
    """(class name, init field names, type hints) of the algorithm's config class, from the on-disk cache when it
    has this version's schema, else by importing the class (then cached; an unwritable cache is skipped)."""
    from rlft.trainers import algorithm_spec

    algorithm_spec(algorithm)  # an unknown name: "algorithm: unknown '<name>'"
    path = _schema_file(algorithm)
    try:
        data = json.loads(path.read_text())
        return data["class"], frozenset(data["fields"]), {k: from_spec(v) for k, v in data["hints"].items()}
    except (OSError, ValueError, KeyError, TypeError):
        pass
    cls = config_class(algorithm)
    names = frozenset(f.name for f in dataclasses.fields(cls) if f.init)
    hints = {k: v for k, v in _type_hints(cls).items() if k in names}
    data = {"class": cls.__name__, "fields": sorted(names), "hints": {k: to_spec(v) for k, v in hints.items()}}
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile("w", dir=path.parent, delete=False, suffix=".tmp") as tmp:
            json.dump(data, tmp)
        os.replace(tmp.name, path)
    except OSError:
        pass
    return cls.__name__, names, hints


def check_trainer_keys(recipe: Recipe, where: str) -> None:
    """Unknown key (with a suggestion) or wrong type in `trainer:` -> one-line RecipeError."""
    class_name, names, hints = trainer_schema(recipe.algorithm)
    for key, value in recipe.trainer.items():
        if key not in names:
            raise RecipeError(f"{where}: trainer.{key}: not a {class_name} option{did_you_mean(key, sorted(names))} "
                              f"(see docs/recipes.md#trainer)")
        hint = hints.get(key)
        if hint is not None and value is not None and not matches(value, hint):
            raise RecipeError(f"{where}: trainer.{key}: expected {describe(hint)}, got {value!r}")


def precision_flags(device: str, dtype: str) -> dict[str, bool]:
    """bf16/fp16 autocast flags for the device: never bf16 on CPU unless the recipe asks for it."""
    if dtype == "bfloat16":
        return {"bf16": True, "fp16": False}
    if dtype == "float16":
        return {"bf16": False, "fp16": device == "cuda"}
    if dtype == "float32" or device != "cuda":
        return {"bf16": False, "fp16": False}
    import torch

    return {"bf16": torch.cuda.is_bf16_supported(), "fp16": not torch.cuda.is_bf16_supported()}


def build_args(recipe: Recipe, device: str, where: str = "trainer", **extra: Any) -> Any:
    """Instantiate the TRL config for the recipe; TRL's own validation errors become one-line RecipeErrors."""
    cls = config_class(recipe.algorithm)
    kwargs: dict[str, Any] = {"output_dir": recipe.output_dir, "seed": recipe.seed, "report_to": "none",
                              "logging_steps": 1, "save_strategy": "no"}
    kwargs.update(precision_flags(device, recipe.model.dtype))
    if device == "cpu":
        # Small models on CPU are compute-bound: recomputing activations costs ~30% per step for little memory.
        kwargs.update(use_cpu=True, gradient_checkpointing=False)
    kwargs.update(extra)
    kwargs.update(recipe.trainer)
    try:
        return cls(**kwargs)
    except (ValueError, TypeError) as exc:
        message = " ".join(str(exc).split())
        raise RecipeError(f"{where}: {cls.__name__} rejected the trainer settings: {message}") from None
