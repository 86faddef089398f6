"""Checks a YAML value against a dataclass field's type hint, so recipes fail before any model loads."""

from __future__ import annotations

import types
import typing
from typing import Any


def describe(hint: Any) -> str:
    """Readable name of a type hint: 'int', 'list[str] or str', 'float or null'."""
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        return " or ".join("null" if a is type(None) else describe(a) for a in typing.get_args(hint))
    if origin is typing.Literal:
        return " | ".join(repr(a) for a in typing.get_args(hint))
    if origin is not None:
        args = ", ".join(describe(a) for a in typing.get_args(hint))
        return f"{getattr(origin, '__name__', str(origin))}[{args}]" if args else getattr(origin, "__name__", "")
    if hint is type(None):
        return "null"
    return getattr(hint, "__name__", str(hint))


def matches(value: Any, hint: Any) -> bool:
    """True when `value` (parsed YAML) fits `hint`. Unknown/complex hints are accepted (TRL validates them)."""
    if hint is Any or hint is typing.Any:
        return True
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        return any(matches(value, a) for a in typing.get_args(hint))
    if origin is typing.Literal:
        return value in typing.get_args(hint)
    if hint is type(None):
        return value is None
    if hint is bool:
        return isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if hint is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if hint is str:
        return isinstance(value, str)
    if origin in (list, tuple) or hint in (list, tuple):
        if not isinstance(value, (list, tuple)):
            return False
        args = typing.get_args(hint)
        return not args or all(matches(v, args[0]) for v in value)
    if origin is dict or hint is dict:
        if not isinstance(value, dict):
            return False
        args = typing.get_args(hint)
        return not args or all(matches(k, args[0]) and matches(v, args[1]) for k, v in value.items())
    if isinstance(hint, type):
        try:
            return isinstance(value, hint)
        except TypeError:
            return True
    return True


def to_spec(hint: Any) -> Any:
    """A JSON-able form of a type hint that `from_spec` turns back into one `describe`/`matches` read the same way
    (rlft caches TRL config schemas with it: rlft.trainers.args); tuples become lists (`matches` treats them alike)."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if hint is Any or hint is typing.Any:
        return "any"
    if hint is type(None):
        return "null"
    if origin in (typing.Union, types.UnionType):
        return {"union": [to_spec(a) for a in args]}
    if origin is typing.Literal:
        values = list(args)
        plain = all(isinstance(v, (str, int, float, bool, type(None))) for v in values)
        return {"literal": values} if plain else "any"
    if hint in _BUILTINS.values():
        return next(name for name, t in _BUILTINS.items() if t is hint)
    if origin in (list, tuple) or hint in (list, tuple):
        return {"list": to_spec(args[0]) if args else None}
    if origin is dict or hint is dict:
        return {"dict": [to_spec(args[0]), to_spec(args[1])] if len(args) == 2 else None}
    if origin is None and isinstance(hint, type):  # an enum or config class: no YAML value is an instance of it
        return {"class": hint.__name__}
    return "any"


def from_spec(spec: Any) -> Any:
    """The type hint a `to_spec` result stands for."""
    if isinstance(spec, str):
        return {"any": Any, "null": type(None), **_BUILTINS}.get(spec, Any)
    if "union" in spec:
        return typing.Union[tuple(from_spec(s) for s in spec["union"])]  # noqa: UP007 - built from a list
    if "literal" in spec:
        return typing.Literal[tuple(spec["literal"])]
    if "list" in spec:
        return list if spec["list"] is None else list[from_spec(spec["list"])]
    if "dict" in spec:
        return dict if spec["dict"] is None else dict[from_spec(spec["dict"][0]), from_spec(spec["dict"][1])]
    if "class" in spec:
        return type(spec["class"], (), {})  # same name for messages; isinstance is False for YAML values, as before
    return Any


_BUILTINS = {"bool": bool, "int": int, "float": float, "str": str}
