"""Typed settings: dataclasses filled from YAML plus `key=value` overrides.

Every stage declares one dataclass of settings. `load_settings` reads defaults
from the dataclass, then a YAML file, then command-line overrides (dotted keys
reach nested dataclasses), and rejects unknown keys and values of the wrong type
with one line that names the key. `__post_init__` may raise ValueError for range
checks; that too becomes a one-line UserError. `save_settings` writes the
resolved settings next to a result.

YAML is read with one change to PyYAML's YAML 1.1 rules: numbers in exponent
notation without a dot (`1e-3`) are floats, as in YAML 1.2 and every
programming language, instead of strings. Float settings must be finite.
"""

from __future__ import annotations

import dataclasses
import math
import re
import types
import typing
from pathlib import Path
from typing import Any, Literal, TypeVar, Union, get_args, get_origin

import yaml

from salclass.errors import UserError
from salclass.io import atomic_write_text

T = TypeVar("T")


class SettingsError(UserError):
    pass


class _Loader(yaml.SafeLoader):
    """SafeLoader that also reads 1e-3, 5E+4, -2e5 as floats."""


_EXPONENT_FLOAT = re.compile(r"^[-+]?([0-9][0-9_]*(\.[0-9_]*)?|\.[0-9_]+)[eE][-+]?[0-9]+$")
_Loader.add_implicit_resolver("tag:yaml.org,2002:float", _EXPONENT_FLOAT, list("-+0123456789."))


def load_yaml(text: str) -> Any:
    """yaml.safe_load, with 1e-3 read as a number (see the module's docstring)."""
    return yaml.load(text, Loader=_Loader)


def _type_name(tp: Any) -> str:
    origin = get_origin(tp)
    if origin is Literal:
        return " | ".join(repr(a) for a in get_args(tp))
    if origin in (Union, types.UnionType):
        return " | ".join(_type_name(a) for a in get_args(tp))
    if origin in (list, tuple):
        args = get_args(tp)
        return f"list of {_type_name(args[0])}" if args else "list"
    if tp is type(None):
        return "null"
    return getattr(tp, "__name__", str(tp))


def _convert(value: Any, tp: Any, where: str) -> Any:
    """Check (and lightly coerce) `value` against the annotation `tp`."""
    origin = get_origin(tp)
    if tp is Any:
        return value
    if origin is Literal:
        if value in get_args(tp):
            return value
        raise SettingsError(f"{where}: {value!r} is not one of {_type_name(tp)}")
    if origin in (Union, types.UnionType):
        args = get_args(tp)
        if value is None and type(None) in args:
            return None
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _convert(value, arg, where)
            except SettingsError:
                continue
        raise SettingsError(f"{where}: {value!r} is not a {_type_name(tp)}")
    if origin in (list, tuple):
        if not isinstance(value, (list, tuple)):
            raise SettingsError(f"{where}: expected a {_type_name(tp)}, got {value!r}")
        args = get_args(tp)
        item = args[0] if args else Any
        out = [_convert(v, item, f"{where}[{i}]") for i, v in enumerate(value)]
        return tuple(out) if origin is tuple else out
    if dataclasses.is_dataclass(tp):
        if isinstance(value, tp):
            return value
        if not isinstance(value, dict):
            raise SettingsError(f"{where}: expected a mapping, got {value!r}")
        return _build(tp, value, where)
    if tp is bool:
        if isinstance(value, bool):
            return value
        raise SettingsError(f"{where}: expected true or false, got {value!r}")
    if tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        raise SettingsError(f"{where}: expected an integer, got {value!r}")
    if tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            if not math.isfinite(value):
                raise SettingsError(f"{where}: expected a finite number, got {value!r}")
            return float(value)
        raise SettingsError(f"{where}: expected a number, got {value!r}")
    if tp is str:
        if isinstance(value, str):
            return value
        raise SettingsError(f"{where}: expected a string, got {value!r}")
    if tp is Path:
        if isinstance(value, (str, Path)):
            return Path(value)
        raise SettingsError(f"{where}: expected a path, got {value!r}")
    if tp is dict or origin is dict:
        if isinstance(value, dict):
            return value
        raise SettingsError(f"{where}: expected a mapping, got {value!r}")
    raise TypeError(f"settings type {tp!r} at {where} is not supported")


def _build(cls: type[T], data: dict, where: str) -> T:
    # A class may rewrite keys that older versions of it wrote (renamed settings).
    upgrade = getattr(cls, "upgrade_settings", None)
    if upgrade is not None:
        data = upgrade(dict(data))
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    unknown = [k for k in data if k not in fields]
    if unknown:
        prefix = f"{where}." if where else ""
        raise SettingsError(
            f"unknown setting '{prefix}{unknown[0]}' (valid: {', '.join(sorted(fields))})"
        )
    kwargs = {}
    for name, value in data.items():
        key = f"{where}.{name}" if where else name
        kwargs[name] = _convert(value, hints[name], key)
    missing = [
        n for n, f in fields.items()
        if n not in kwargs and f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
    ]
    if missing:
        prefix = f"{where}." if where else ""
        raise SettingsError(f"missing required setting '{prefix}{missing[0]}'")
    try:
        return cls(**kwargs)
    except ValueError as e:
        raise SettingsError(f"{where + ': ' if where else ''}{e}") from None


def _set_dotted(tree: dict, dotted: str, value: Any) -> None:
    parts = dotted.split(".")
    node = tree
    for p in parts[:-1]:
        nxt = node.get(p)
        if not isinstance(nxt, dict):
            nxt = {} if nxt is None else nxt
            if not isinstance(nxt, dict):
                raise SettingsError(f"--set {dotted}: '{p}' is not a group of settings")
            node[p] = nxt
        node = nxt
    node[parts[-1]] = value


def parse_override(text: str) -> tuple[str, Any]:
    """'a.b=3' -> ('a.b', 3); the value is read as YAML, so lists and bools work."""
    if "=" not in text:
        raise SettingsError(f"--set {text!r}: expected key=value")
    key, raw = text.split("=", 1)
    key = key.strip()
    if not key:
        raise SettingsError(f"--set {text!r}: empty key")
    try:
        value = load_yaml(raw) if raw.strip() else ""
    except yaml.YAMLError:
        value = raw
    return key, value


def read_yaml(path: str | Path) -> dict:
    path = Path(path)
    if not path.is_file():
        raise SettingsError(f"{path}: config file not found")
    try:
        data = load_yaml(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        at = f" at line {mark.line + 1}" if mark else ""
        raise SettingsError(f"{path}: not valid YAML{at}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise SettingsError(f"{path}: expected a mapping of settings at the top level")
    return data


def settings_from_dict(cls: type[T], data: dict, overrides: list[str] | tuple[str, ...] = ()) -> T:
    data = _deep_copy(data)
    for text in overrides:
        key, value = parse_override(text)
        _set_dotted(data, key, value)
    return _build(cls, data, "")


def load_settings(cls: type[T], path: str | Path | None = None, overrides: list[str] | tuple[str, ...] = ()) -> T:
    """Defaults of `cls` <- YAML file at `path` <- `overrides` ('key=value')."""
    data = read_yaml(path) if path is not None else {}
    return settings_from_dict(cls, data, overrides)


def to_dict(obj: Any) -> Any:
    """Plain YAML/JSON-safe form of a settings dataclass."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: to_dict(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, (list, tuple)):
        return [to_dict(v) for v in obj]
    if isinstance(obj, dict):
        return {k: to_dict(v) for k, v in obj.items()}
    if isinstance(obj, Path):
        return str(obj)
    return obj


def save_settings(obj: Any, path: str | Path) -> None:
    atomic_write_text(path, yaml.safe_dump(to_dict(obj), sort_keys=False))


def _deep_copy(data: Any) -> Any:
    if isinstance(data, dict):
        return {k: _deep_copy(v) for k, v in data.items()}
    if isinstance(data, list):
        return [_deep_copy(v) for v in data]
    return data
