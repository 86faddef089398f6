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
