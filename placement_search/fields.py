"""Typed tables: a TOML/JSON table checked into a frozen dataclass, field by field, with errors
that name the field, the bad value and what was expected. The one coercer behind the study
file's sections (``study/config.py``) and a space file's ``backbone_args`` (``space/files.py``)."""

from __future__ import annotations

import dataclasses
import difflib
import math
import types
import typing
from collections.abc import Callable, Mapping
from typing import Any, Literal

from .errors import UserError

__all__ = ["coerce", "from_table", "type_name", "unknown_field"]


def type_name(tp: Any) -> str:
    """What a value of type ``tp`` looks like in a file ("an integer", "one of 'a', 'b'")."""
    if tp is type(None):
        return "nothing"
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        return " or ".join(type_name(a) for a in typing.get_args(tp) if a is not type(None))
    if origin is Literal:
        return "one of " + ", ".join(repr(a) for a in typing.get_args(tp))
    if origin is tuple:
        return "a list of integers"
    return {int: "an integer", float: "a number", bool: "true or false", str: "a string"}.get(tp, str(tp))


def coerce(value: Any, tp: Any, where: str) -> Any:
    """``value`` as type ``tp`` (int, float, bool, str, Literal, ``tuple[int, ...]`` and optional
    ones); a :class:`UserError` naming ``where`` otherwise. Booleans are never numbers, floats
    must be finite, an int is accepted for a float."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return None
        for a in args:
            if a is type(None):
                continue
            try:
                return coerce(value, a, where)
            except UserError:
                pass
        raise UserError(f"{where}: expected {type_name(tp)}, got {value!r}")
    if origin is Literal:
        if value not in typing.get_args(tp):
            raise UserError(f"{where}: expected {type_name(tp)}, got {value!r}")
        return value
    if origin is tuple:
        if isinstance(value, list | tuple) and all(isinstance(v, int) and not isinstance(v, bool) for v in value):
            return tuple(value)
        raise UserError(f"{where}: expected {type_name(tp)}, got {value!r}")
    if tp is bool:
        if not isinstance(value, bool):
            raise UserError(f"{where}: expected true or false, got {value!r}")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise UserError(f"{where}: expected an integer, got {value!r}")
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
            raise UserError(f"{where}: expected a number, got {value!r}")
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise UserError(f"{where}: expected a string, got {value!r}")
        return value
    raise UserError(f"{where}: unsupported value {value!r}")  # pragma: no cover


def unknown_field(key: str, allowed: list[str], where: str) -> UserError:
    """The error for a field the table does not have (with the closest one, if any)."""
    near = difflib.get_close_matches(key, allowed, n=1)
    hint = f" (did you mean {near[0]!r}?)" if near else ""
    return UserError(f"{where}: unknown field {key!r}{hint}; allowed fields: {', '.join(allowed)}")


def from_table(
    cls: Any,
    table: Any,
    where: str,
    *,
    skip: tuple[str, ...] = (),
    special: Mapping[str, Callable[[Any, str], Any]] | None = None,
    check: bool = True,
) -> Any:
    """The dataclass ``cls`` from ``table``: unknown fields refused, each value coerced to its
    field's type (or by ``special[field](value, where)``), then ``cls(...)`` and its ``check``
    method, if any. ``skip``: fields a file may not set."""
    if not isinstance(table, Mapping):
        raise UserError(f"{where}: expected a table of fields, got {table!r}")
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls) if f.name not in skip]
    kwargs: dict[str, Any] = {}
    for key, value in table.items():
        if key not in names:
            raise unknown_field(key, names, where)
        if special and key in special:
            kwargs[key] = special[key](value, f"{where}.{key}")
        else:
            kwargs[key] = coerce(value, hints[key], f"{where}.{key}")
    try:
        obj = cls(**kwargs)
    except (UserError, ValueError, TypeError) as e:
        raise UserError(f"{where}: {e}") from None
    if check and hasattr(obj, "check"):
        obj.check(where)
    return obj
