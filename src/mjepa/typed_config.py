"""Typed configuration trees: frozen dataclasses built from nested dicts (YAML / JSON) and ``key=value`` overrides.

Every value is checked against its field's annotation, so a typo or a wrong type is a one-line ``ConfigError``
naming the dotted key, what was given and what was expected (with the nearest valid key for unknown keys).
"""

from __future__ import annotations

import dataclasses
import difflib
import types
import typing
from typing import Any, Literal, TypeVar, Union

import yaml

T = TypeVar("T")


class ConfigError(ValueError):
    """A configuration key or value that does not fit the schema."""


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def _type_name(tp: Any) -> str:
    origin = typing.get_origin(tp)
    if origin is Literal:
        return " or ".join(repr(a) for a in typing.get_args(tp))
    if origin in (Union, types.UnionType):
        return " or ".join(_type_name(a) for a in typing.get_args(tp))
    if origin is tuple:
        return "a list"
    if tp is type(None):
        return "null"
    return getattr(tp, "__name__", str(tp))


def _coerce(value: Any, tp: Any, key: str) -> Any:
    """``value`` checked against (and converted to) the annotation ``tp``."""
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if tp is Any:
        return value
    if dataclasses.is_dataclass(tp):
        if isinstance(value, tp):
            return value
        if not isinstance(value, dict):
            raise ConfigError(f"{key}: expected a mapping of {tp.__name__} fields, got {value!r}")
        return build(tp, value, key)
    if origin in (Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        for option in (a for a in args if a is not type(None)):
            try:
                return _coerce(value, option, key)
            except ConfigError:
                continue
        raise ConfigError(f"{key}: expected {_type_name(tp)}, got {value!r}")
    if origin is Literal:
        if value in args:
            return value
        raise ConfigError(f"{key}: expected {_type_name(tp)}, got {value!r}")
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{key}: expected a list, got {value!r}")
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_coerce(v, args[0], f"{key}[{i}]") for i, v in enumerate(value))
        if len(value) != len(args):
            raise ConfigError(f"{key}: expected a list of {len(args)} values, got {value!r}")
        return tuple(_coerce(v, a, f"{key}[{i}]") for i, (v, a) in enumerate(zip(value, args)))
    if tp is bool:
        if isinstance(value, bool):
            return value
    elif tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
    elif tp is str:
        if isinstance(value, str):
            return value
    else:
        raise ConfigError(f"{key}: unsupported field type {tp!r}")
    raise ConfigError(f"{key}: expected {_type_name(tp)}, got {value!r}")


def _unknown_key_error(cls: type, key: str, path: str) -> ConfigError:
    replacement = getattr(cls, "RETIRED_KEYS", {}).get(key)
    if replacement is not None:
        return ConfigError(f"{_join(path, key)!r} was retired; use {replacement!r}")
    known = [f.name for f in dataclasses.fields(cls)]
    near = difflib.get_close_matches(key, known, n=1)
    hint = f"did you mean {_join(path, near[0])!r}?" if near else f"expected one of {', '.join(known)}"
    return ConfigError(f"unknown key {_join(path, key)!r}; {hint}")


def without_retired_keys(cls: type, values: dict[str, Any]) -> dict[str, Any]:
    """A saved config tree with the keys its classes list in ``RETIRED_KEYS`` removed, at every level: configs written
    by an older mjepa still load. User input keeps getting an error for them (``build``), naming the replacement."""
    retired = getattr(cls, "RETIRED_KEYS", {})
    hints = typing.get_type_hints(cls)
    out = {}
    for key, value in values.items():
        if key in retired:
            continue
        field_type = hints.get(key)
        if isinstance(value, dict) and dataclasses.is_dataclass(field_type):
            value = without_retired_keys(field_type, value)
        out[key] = value
    return out


def build(cls: type[T], values: dict[str, Any], path: str = "") -> T:
    """``cls`` from a (nested) dict; unset fields keep their defaults."""
    if not isinstance(values, dict):
        raise ConfigError(f"{path or cls.__name__}: expected a mapping, got {values!r}")
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    kwargs = {}
    for key, value in values.items():
        if key not in names:
            raise _unknown_key_error(cls, key, path)
        kwargs[key] = _coerce(value, hints[key], _join(path, key))
    for f in dataclasses.fields(cls):
        required = f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
        if required and f.name not in kwargs:
            raise ConfigError(f"{path or cls.__name__}: missing key {f.name!r}")
    try:
        return cls(**kwargs)
    except ConfigError:
        raise
    except (ValueError, TypeError) as err:
        raise ConfigError(str(err)) from None


def to_dict(obj: Any) -> Any:
    """A dataclass tree as plain dicts and lists (JSON / YAML ready)."""
    if dataclasses.is_dataclass(obj):
        return {f.name: to_dict(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, (list, tuple)):
        return [to_dict(v) for v in obj]
    return obj


def _set_path(tree: dict, cls: type, dotted: str, value: Any) -> None:
    parts = dotted.split(".")
    node, node_cls, path = tree, cls, ""
    for i, part in enumerate(parts):
        if not dataclasses.is_dataclass(node_cls) or part not in {f.name for f in dataclasses.fields(node_cls)}:
            if dataclasses.is_dataclass(node_cls):
                raise _unknown_key_error(node_cls, part, path)
            raise ConfigError(f"unknown key {dotted!r}: {path!r} has no sub-keys")
        if i == len(parts) - 1:
            node[part] = value
            return
        field_type = typing.get_type_hints(node_cls)[part]
        node = node.setdefault(part, {})
        if not isinstance(node, dict):
            raise ConfigError(f"unknown key {dotted!r}: {_join(path, part)!r} has no sub-keys")
        node_cls, path = field_type, _join(path, part)


def merge_overrides(cls: type, tree: dict, overrides: list[str]) -> dict:
    """A copy of the (possibly partial) dict ``tree`` for ``cls`` with ``key.sub=value`` overrides set.

    Values are parsed by :func:`parse_override_value`; keys are checked against the schema of ``cls``.
    """
    import copy

    tree = copy.deepcopy(tree)
    for item in overrides:
        key, sep, text = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"override {item!r} is not of the form key=value")
        _set_path(tree, cls, key.strip(), parse_override_value(text.strip()))
    return tree


def apply_overrides(config: T, overrides: list[str]) -> T:
    """``config`` with ``key.sub=value`` overrides applied."""
    return build(type(config), merge_overrides(type(config), to_dict(config), overrides))


def parse_override_value(text: str) -> Any:
    """Numbers first (PyYAML reads ``1e-4`` as a string), then YAML (true, null, [1, 2]), else the raw text."""
    for convert in (int, float):
        try:
            return convert(text)
        except ValueError:
            pass
    try:
        return yaml.safe_load(text) if text else ""
    except yaml.YAMLError:
        return text


def load_yaml(path: str) -> dict:
    try:
        with open(path, encoding="utf-8") as handle:
            data = yaml.safe_load(handle)
    except FileNotFoundError:
        raise ConfigError(f"config file {path!r} does not exist") from None
    except yaml.YAMLError as err:
        raise ConfigError(f"config file {path!r} is not valid YAML ({err.__class__.__name__})") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"config file {path!r} must hold a mapping at the top level")
    return data
