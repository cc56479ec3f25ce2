"""`--set key=value` on a frozen dataclass config, shared by levl-train's recipes and levl-eval's
suites (levl_model is the package both import): the dotted key walks the config's sections and
the text is parsed as the field's declared type. Each CLI turns `OverrideError` into its own
one-line error."""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from collections.abc import Callable
from typing import Any


class OverrideError(ValueError):
    """A key or value `--set` cannot apply; the message names it and the fix."""


def set_from_text(node: Any, key: str, raw: str, hidden: tuple[str, ...] = ()) -> Any:
    """`node` with the field at dotted `key` parsed from `raw` as its declared type."""
    return replace_field(node, key, lambda hint: parse_value(raw, hint, key), hidden)


def replace_field(node: Any, key: str, make: Callable[[Any], Any],
                  hidden: tuple[str, ...] = ()) -> Any:
    """`node` with the field at dotted `key` set to `make(its type hint)`; `hidden` fields are
    not settable (e.g. a suite's name)."""
    return _replace_path(node, key.split("."), key, make, hidden)


def _replace_path(node: Any, path: list[str], full_key: str, make: Callable[[Any], Any],
                  hidden: tuple[str, ...]) -> Any:
    hints = typing.get_type_hints(type(node))
    name = path[0]
    if name not in hints or name in hidden:
        known = ", ".join(f.name for f in dataclasses.fields(node) if f.name not in hidden)
        raise OverrideError(f"--set {full_key}: unknown key {name!r} (known here: {known})")
    current = getattr(node, name)
    if len(path) > 1:
        if not dataclasses.is_dataclass(current):
            raise OverrideError(f"--set {full_key}: {name!r} is a value, not a section")
        inner = _replace_path(current, path[1:], full_key, make, hidden)
        return dataclasses.replace(node, **{name: inner})
    if dataclasses.is_dataclass(current):
        raise OverrideError(f"--set {full_key}: {name!r} is a section; set one of its keys")
    return dataclasses.replace(node, **{name: make(hints[name])})


def parse_value(raw: str, hint: Any, key: str) -> Any:
    """Parse a `--set` string as `hint` (int, float, bool, str, tuples, optionals)."""
    if _is_optional(hint):
        if raw.lower() in ("none", "null"):
            return None
        hint = next(arg for arg in typing.get_args(hint) if arg is not type(None))
    if typing.get_origin(hint) is tuple:
        item = typing.get_args(hint)[0]
        return tuple(parse_value(part.strip(), item, key) for part in raw.split(",") if part.strip())
    parser = _SCALAR_PARSERS.get(hint)
    if parser is None:
        raise OverrideError(f"--set {key}: values of type {hint} cannot be set from the CLI")
    try:
        return parser(raw)
    except ValueError:
        finite = " (a finite number, not nan or inf)" if hint is float else ""
        raise OverrideError(f"--set {key}={raw}: expected {hint.__name__}{finite}") from None


def _is_optional(hint: Any) -> bool:
    return typing.get_origin(hint) in (typing.Union, types.UnionType) \
        and type(None) in typing.get_args(hint)


def _parse_int(raw: str) -> int:
    value = float(raw)  # accept 1e3 but not 0.5
    if not value.is_integer():
        raise ValueError(raw)
    return int(value)


def _parse_bool(raw: str) -> bool:
    lowered = raw.lower()
    if lowered in ("true", "1", "yes"):
        return True
    if lowered in ("false", "0", "no"):
        return False
    raise ValueError(raw)


def _parse_float(raw: str) -> float:
    """float() without nan and inf: NaN passes every range check silently (`nan <= 0` is false)
    and an infinite lr or clip would train on garbage."""
    value = float(raw)
    if not math.isfinite(value):
        raise ValueError(raw)
    return value


_SCALAR_PARSERS = {int: _parse_int, float: _parse_float, str: str, bool: _parse_bool}
