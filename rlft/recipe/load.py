"""Recipe files: load YAML (with `extends:`), apply `section.key=value` overrides, validate, and build a `Recipe`.

Validation happens before any model loads and reports the first problem as one line that names the file, the key
and what is allowed. Where a key came from an `extends:` parent, that parent file is named.
"""

from __future__ import annotations

import copy
import dataclasses
import re
import typing
from pathlib import Path
from typing import Any

import yaml

from rlft.recipe.sections import (
    ALGORITHMS,
    AdapterConfig,
    DataConfig,
    DecodingConfig,
    EvaluationConfig,
    ExportConfig,
    LabelPGConfig,
    ModelConfig,
    Recipe,
    RFTConfig,
    SignalConfig,
)
from rlft.errors import RecipeError, did_you_mean
from rlft.scoring.loader import RewardSpec
from rlft.trainers import algorithm_names
from rlft.recipe.typecheck import describe, matches

SECTIONS = {"model": ModelConfig, "adapter": AdapterConfig, "data": DataConfig, "decoding": DecodingConfig,
            "signal": SignalConfig, "label_pg": LabelPGConfig, "rft": RFTConfig, "evaluation": EvaluationConfig, "export": ExportConfig}
CHOICES = {
    "algorithm": ALGORITHMS,
    "model.dtype": ("auto", "float32", "bfloat16", "float16"),
    "model.device": ("auto", "cpu", "cuda"),
    "adapter.type": ("lora", "qlora", "none"),
    "adapter.bias": ("none", "all", "lora_only"),
    "adapter.quant_type": ("nf4", "fp4"),
    "adapter.compute_dtype": ("auto", "float32", "bfloat16", "float16"),
    "data.format": ("auto", "csv", "json", "jsonl", "datasets"),
    "data.holdout": ("random", "grouped", "prompt"),
    "label_pg.weighting": ("expected", "maxrl", "log"),
    "label_pg.normaliser": ("free", "constrained", "both"),
}
# Keys that moved to another section (recipes written before the `decoding:` section existed).
MOVED = {
    "signal.prefill": "decoding.prefill", "signal.constrain_labels": "decoding.constrain_labels",
    "signal.label_suffix": "decoding.label_suffix", "signal.stop_at_suffix": "decoding.stop_at_suffix",
    "evaluation.prefill": "decoding.prefill", "signal.eval_every_steps": "evaluation.every_steps",
    "signal.eval_max_samples": "evaluation.max_samples", "signal.eval_batch_size": "evaluation.batch_size",
    "signal.eval_max_new_tokens": "evaluation.max_new_tokens", "signal.label_column": "data.label_column",
}
COMMAND_LINE = "command line"
# Input paths a recipe file may give relative to its own folder (see `_resolve_paths`).
PATH_KEYS = {"data": ("source", "eval_source"), "model": ("name",), "adapter": ("init_from",),
             "decoding": ("lookup",)}
PATH_PARAMS = ("policies", "policy_file", "path", "pair_rewards")


class _Provenance(dict):
    """Dotted key -> file that set it, so errors name the right file when recipes extend each other."""

    def origin(self, key: str, default: str) -> str:
        key = re.sub(r"\[(\d+)\]", r".\1", key)  # rewards[0].params, as errors name it: set as rewards.0.params
        below = [v for k, v in self.items() if k.startswith(key + ".")]
        if key not in self and below:
            return below[-1]
        while key:
            if key in self:
                return self[key]
            key = key.rpartition(".")[0]
        return default


MAX_YAML_VALUES = 100_000  # values a recipe may expand to once aliases are followed (an alias bomb has billions)
MAX_RECIPE_BYTES = 1_000_000
MAX_NUMBER_DIGITS = 100  # a longer integer is a typo (and Python refuses to read one of over 4300 digits)
# YAML 1.1 reads an unquoted `no` as False; these TRL options take the string "no".
NO_STRINGS = ("save_strategy", "eval_strategy", "logging_strategy", "hub_strategy")


class _StrictLoader(yaml.SafeLoader):
    """Safe YAML that rejects duplicate keys and bounds how far aliases expand."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict:
        seen: dict[Any, int] = {}
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=True)
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"duplicate key '{key}' (first at line {seen[key] + 1})", key_node.start_mark)
            seen[key] = key_node.start_mark.line
        return super().construct_mapping(node, deep)

    def construct_yaml_int(self, node: yaml.ScalarNode) -> int:
        digits = sum(c.isdigit() for c in str(node.value))
        if digits > MAX_NUMBER_DIGITS:
            line = node.start_mark.line + 1
            raise _NumberTooLong(f"line {line}", f"expected a number of at most {MAX_NUMBER_DIGITS} digits, got a "
                                 f"{digits}-digit number")
        return super().construct_yaml_int(node)


class _NumberTooLong(RecipeError):
    def __init__(self, line: str, problem: str) -> None:
        super().__init__(f"{line}: {problem}")
        self.line, self.problem = line, problem


_StrictLoader.add_constructor("tag:yaml.org,2002:int", _StrictLoader.construct_yaml_int)


def _expanded_size(node: yaml.Node, memo: dict[int, int]) -> int:
    """Values the document holds once every alias is expanded (linear time: shared nodes are counted once)."""
    if id(node) in memo:
        if memo[id(node)] < 0:
            raise yaml.constructor.ConstructorError(None, None, "a recursive alias (a value that contains itself)",
                                                    node.start_mark)
        return memo[id(node)]
    memo[id(node)] = -1  # in progress
    if isinstance(node, yaml.SequenceNode):
        size = 1 + sum(_expanded_size(n, memo) for n in node.value)
    elif isinstance(node, yaml.MappingNode):
        size = 1 + sum(_expanded_size(k, memo) + _expanded_size(v, memo) for k, v in node.value)
    else:
        size = 1
    memo[id(node)] = size
    return size


def safe_yaml(text: str, where: str) -> Any:
    """Parse YAML like `yaml.safe_load`, but one-line errors for duplicate keys and alias bombs."""
    try:
        loader = _StrictLoader(text)
        try:
            node = loader.get_single_node()
            if node is None:
                return None
            if _expanded_size(node, {}) > MAX_YAML_VALUES:
                raise RecipeError(f"{where}: YAML aliases expand to more than {MAX_YAML_VALUES} values (an alias "
                                  f"bomb?); write the values out")
            try:
                return loader.construct_document(node)
            except _NumberTooLong as exc:
                raise _NumberTooLong(f"{where}: {exc.line}", exc.problem) from None
        finally:
            loader.dispose()
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = f" line {mark.line + 1}" if mark else ""
        raise RecipeError(f"{where}:{line} is not valid YAML: {getattr(exc, 'problem', exc)}") from None


def _read_yaml(path: Path, where: str) -> dict[str, Any]:
    if not path.is_file():
        raise RecipeError(f"{where}: recipe file '{path}' does not exist")
    if path.stat().st_size > MAX_RECIPE_BYTES:
        raise RecipeError(f"{path}: a recipe over {MAX_RECIPE_BYTES // 1_000_000} MB is not a recipe (data belongs "
                          f"in data.source)")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise RecipeError(f"{path}: not UTF-8 text (byte {exc.start})") from None
    data = safe_yaml(text, str(path))
    if data is None:
        shown = "only comments" if text.strip() else "empty"
        raise RecipeError(f"{path}: the recipe file is {shown}; a recipe sets at least algorithm, model, data and "
                          f"rewards (start from one in recipes/, or write extends: <recipe> and the keys you change)")
    if not isinstance(data, dict):
        raise RecipeError(f"{path}: a recipe must be a mapping of sections, got {type(data).__name__}")
    return data


def _merge(base: dict, update: dict, prov: _Provenance, file: str, prefix: str = "") -> dict:
    """Deep-merge mappings (lists and scalars replace), recording which file set each key."""
    out = dict(base)
    for key, value in update.items():
        dotted = f"{prefix}{key}"
        if isinstance(value, dict) and isinstance(out.get(key), dict) and key not in ("columns", "params"):
            out[key] = _merge(out[key], value, prov, file, dotted + ".")
        else:
            out[key] = copy.deepcopy(value)
            prov[dotted] = file
            for k in [k for k in prov if k.startswith(dotted + ".")]:  # the parent's keys under it are gone (a
                del prov[k]                                            # section set to null is back to defaults)
    return out


def _display(path: Path) -> Path:
    """Path as the user would write it: relative to the working directory when inside it."""
    try:
        return path.resolve().relative_to(Path.cwd())
    except ValueError:
        return path.resolve()


def _near(value: Any, folder: Path) -> Any:
    """A relative path that exists next to the recipe file, as seen from the working directory; else unchanged."""
    if not isinstance(value, str) or not value or value.startswith(("demo:", "hf:", "~")) or Path(value).is_absolute():
        return value
    file_part, sep, attr = value.rpartition(":") if value.count(":") == 1 and ".py:" in value else (value, "", "")
    candidate = folder / file_part
    if folder == Path(".") or not candidate.exists():
        return value
    return f"{_display(candidate)}{sep}{attr}"


def _resolve_paths(data: dict[str, Any], folder: Path) -> None:
    """Input paths in one recipe file are relative to that file's folder: data sources, model / adapter
    directories, reward files (`file.py:func`) and reward params naming files (policies, policy_file, path). A path
    that does not exist there is kept as written (relative to the working directory, where earlier runs' outputs
    such as `runs/x/kto.jsonl` live). Outputs (`output_dir`, caches, audit logs) are always relative to the working
    directory, and so are command-line overrides."""
    for section, keys in PATH_KEYS.items():
        if isinstance(data.get(section), dict):
            for key in keys:
                if key in data[section]:
                    data[section][key] = _near(data[section][key], folder)
    for item in data.get("rewards") or []:
        if isinstance(item, dict):
            if ".py:" in str(item.get("name", "")):
                item["name"] = _near(item["name"], folder)
            params = item.get("params")
            if isinstance(params, dict):
                for key in PATH_PARAMS:
                    if key in params:
                        params[key] = _near(params[key], folder)


def _load_raw(path: Path, prov: _Provenance, seen: tuple[Path, ...] = ()) -> dict[str, Any]:
    path = _display(path)
    if path in seen:
        raise RecipeError(f"{path}: extends: circular chain {' -> '.join(str(p) for p in seen + (path,))}")
    data = _read_yaml(path, str(seen[-1]) if seen else "recipe")
    _resolve_paths(data, path.parent)
    parent = data.pop("extends", None)
    if parent is None:
        return _merge({}, data, prov, str(path))
    if not isinstance(parent, str):
        raise RecipeError(f"{path}: extends: expected a file path, got {type(parent).__name__}")
    parent_path = (path.parent / parent) if not Path(parent).is_absolute() else Path(parent)
    parent_path = _display(parent_path)
    if not parent_path.is_file():
        raise RecipeError(f"{path}: extends: file '{parent}' does not exist")
    base = _load_raw(parent_path, prov, seen + (path,))
    return _merge(base, data, prov, str(path))


def parse_override(text: str) -> tuple[list[str], Any]:
    """'trainer.learning_rate=1e-4' -> (['trainer', 'learning_rate'], 1e-4). Values are parsed as YAML."""
    if "=" not in text:
        raise RecipeError(f"{COMMAND_LINE}: override '{text}' must look like section.key=value")
    key, _, raw = text.partition("=")
    if not key or any(not p for p in key.split(".")):
        raise RecipeError(f"{COMMAND_LINE}: override '{text}' has an empty key")
    try:
        value = safe_yaml(raw, f"{COMMAND_LINE}: override '{key}'") if raw != "" else ""
    except RecipeError as exc:
        if isinstance(exc, _NumberTooLong):
            raise RecipeError(f"{COMMAND_LINE}: {key}: {exc.problem}") from None
        if "alias" in str(exc) or "duplicate key" in str(exc):
            raise
        value = raw
    if isinstance(value, str) and raw.strip() and "e" in raw.lower():
        try:  # YAML 1.1 reads '1e-4' as a string; users mean a float
            value = float(raw)
        except ValueError:
            pass
    return key.split("."), value


def _apply_override(raw: dict, parts: list[str], value: Any, prov: _Provenance) -> None:
    node: Any = raw
    for i, part in enumerate(parts[:-1]):
        if isinstance(node, list):
            node = _list_item(node, part, parts[: i + 1])
        else:
            node = node.setdefault(part, {})
            if not isinstance(node, (dict, list)):
                raise RecipeError(f"{COMMAND_LINE}: {'.'.join(parts[: i + 1])} is not a section")
    last = parts[-1]
    if isinstance(node, list):
        idx = _list_index(node, last, parts)
        node[idx] = value
    else:
        node[last] = value
    prov[".".join(parts)] = COMMAND_LINE


def _list_index(node: list, part: str, parts: list[str]) -> int:
    if not part.isdigit() or int(part) >= len(node):
        raise RecipeError(f"{COMMAND_LINE}: {'.'.join(parts)}: '{part}' is not an index of a list of {len(node)}")
    return int(part)


def _list_item(node: list, part: str, parts: list[str]) -> Any:
    return node[_list_index(node, part, parts)]


def _build_section(cls: type, raw: Any, section: str, prov: _Provenance, default_file: str) -> Any:
    where = prov.origin(section, default_file)
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise RecipeError(f"{where}: {section}: expected a mapping of keys, got {type(raw).__name__}")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    for key, value in raw.items():
        dotted = f"{section}.{key}"
        where = prov.origin(dotted, default_file)
        if dotted in MOVED:
            raise RecipeError(f"{where}: {dotted}: moved to {MOVED[dotted]} (one decoding section for training, "
                              f"evaluation and export)")
        if key not in fields:
            raise RecipeError(f"{where}: {dotted}: unknown key{did_you_mean(str(key), fields)}; "
                              f"allowed: {', '.join(fields)}")
        if not matches(value, hints[key]):
            raise RecipeError(f"{where}: {dotted}: expected {describe(hints[key])}, got {value!r}")
        allowed = CHOICES.get(dotted)
        if allowed and value not in allowed:
            raise RecipeError(f"{where}: {dotted}: '{value}' is not one of {', '.join(allowed)}"
                              f"{did_you_mean(str(value), allowed)}")
    try:
        return cls(**raw)
    except RecipeError as exc:  # a section's own check (DecodingConfig.__post_init__) names the key, not its file
        named = str(exc).split(":", 1)[0]
        if named.startswith(section + ".") and " " not in named:
            raise RecipeError(f"{prov.origin(named, default_file)}: {exc}") from None
        raise


def _build_rewards(raw: Any, prov: _Provenance, default_file: str) -> list[RewardSpec]:
    where = prov.origin("rewards", default_file)
    if raw is None:
        return []
    if not isinstance(raw, list):
        raise RecipeError(f"{where}: rewards: expected a list of {{name, weight, params}}, got {type(raw).__name__}")
    specs = []
    for i, item in enumerate(raw):
        if isinstance(item, str):
            item = {"name": item}
        key = f"rewards[{i}]"
        if not isinstance(item, dict) or "name" not in item:
            raise RecipeError(f"{where}: {key}: expected a mapping with a 'name', got {item!r}")
        specs.append(_build_section(RewardSpec, item, key, prov, default_file))
        if not matches(specs[-1].weight, float):
            raise RecipeError(f"{where}: {key}.weight: expected a number")
    return specs


def build_recipe(raw: dict[str, Any], prov: _Provenance | None = None, file: str = "recipe") -> Recipe:
    """Turn a merged mapping into a validated `Recipe` (structure and types; see `validate` for the rest)."""
    prov = prov if prov is not None else _Provenance()
    fields = {f.name for f in dataclasses.fields(Recipe)} - {"source_file"}
    for key in raw:
        if key not in fields:
            where = prov.origin(str(key), file)
            raise RecipeError(f"{where}: {key}: unknown section{did_you_mean(str(key), fields)}; "
                              f"allowed: {', '.join(sorted(fields))}")
    kwargs: dict[str, Any] = {}
    hints = typing.get_type_hints(Recipe)
    for key in ("algorithm", "output_dir", "seed", "overwrite", "max_train_minutes", "max_train_clock"):
        if key in raw:
            if not matches(raw[key], hints[key]):
                raise RecipeError(f"{prov.origin(key, file)}: {key}: expected {describe(hints[key])}, "
                                  f"got {raw[key]!r}")
            kwargs[key] = raw[key]
    known = algorithm_names()  # the registry, read now: an algorithm registered by a module of yours counts
    if kwargs.get("algorithm", "grpo") not in known:
        value = kwargs["algorithm"]
        raise RecipeError(f"{prov.origin('algorithm', file)}: algorithm: '{value}' is not one of "
                          f"{', '.join(known)}{did_you_mean(str(value), known)}")
    for name, cls in SECTIONS.items():
        if name in raw:
            kwargs[name] = _build_section(cls, raw[name], name, prov, file)
    kwargs["rewards"] = _build_rewards(raw.get("rewards"), prov, file)
    value = raw.get("trainer") or {}
    if not isinstance(value, dict):
        raise RecipeError(f"{prov.origin('trainer', file)}: trainer: expected a mapping, got {type(value).__name__}")
    kwargs["trainer"] = {k: ("no" if k in NO_STRINGS and v is False else v) for k, v in value.items()}
    return Recipe(**kwargs, source_file=file)


def load_recipe(path: str | Path, overrides: list[str] | tuple[str, ...] = (), check: bool = True) -> Recipe:
    """Load a recipe file, apply overrides, and validate it (set `check=False` to skip the deep checks)."""
    prov = _Provenance()
    raw = _load_raw(Path(path), prov)
    for text in overrides:
        parts, value = parse_override(text)
        _apply_override(raw, parts, value, prov)
    recipe = build_recipe(raw, prov, str(path))
    recipe._provenance = prov  # type: ignore[attr-defined]
    if check:
        from rlft.recipe.validate import validate

        validate(recipe)
    return recipe

