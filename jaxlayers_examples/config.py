"""Typed experiment configs: YAML files in ``configs/`` loaded into dataclasses.

Why YAML into dataclasses (rather than ml_collections): a YAML file is data, not
code, so a config cannot run anything; the dataclasses give every field a type
and a default in one place, so an unknown key or an ill-typed value is caught
with a message naming it before any JAX work starts.

Overrides use dotted keys, ``optim.lr=0.01 train.epochs=3``; the value is parsed
as YAML (``3`` is an int, ``[32, 64]`` a list, ``null`` None) and then checked
against the field's type like any value in the file.  A string field takes the
override's text as written (``output.dir=2024-06-01`` or ``prompt=yes`` stay
strings; YAML alone would make them a date and a bool), and a number field
takes any text ``float()`` reads (PyYAML, YAML 1.1, reads ``1e-3`` as a string).
"""

from __future__ import annotations

import dataclasses
import datetime
import pathlib
import types
import typing
from typing import Any, Sequence, TypeVar

import yaml

T = TypeVar("T")


class ConfigError(ValueError):
    """A config file or override that does not fit the config's dataclasses."""


@dataclasses.dataclass(frozen=True)
class _Override:
    """A command-line value: as YAML parses it, and the text as written (for string fields)."""

    value: Any
    text: str


def _type_name(tp: Any) -> str:
    """``int``, ``list[int]``; a union as its members: ``Optional[int]`` is ``int or null``."""
    if typing.get_origin(tp) in (typing.Union, types.UnionType):
        return " or ".join("null" if arg is type(None) else _type_name(arg) for arg in typing.get_args(tp))
    if typing.get_origin(tp) is not None:
        return str(tp).replace("typing.", "")
    return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")


def _number(value: Any, tp: type, where: str) -> Any:
    """``value`` as an int or a float: a number of that kind, or text that ``tp()`` reads exactly
    (YAML 1.1 leaves ``1e-3`` a string); never a bool, never NaN."""
    kind = "a number" if tp is float else "an integer"
    if isinstance(value, str):
        try:
            value = tp(value)
        except ValueError:
            raise ConfigError(f"{where}: expected {kind}, got {value!r}") from None
    ok = (int, float) if tp is float else int
    if isinstance(value, bool) or not isinstance(value, ok) or value != value:
        raise ConfigError(f"{where}: expected {kind}, got {value!r}")
    return tp(value)


def _string(value: Any, where: str) -> str:
    """A string field: an override's text as written, a YAML date as written (``2024-06-01``)."""
    if isinstance(value, _Override):
        return value.text
    if isinstance(value, datetime.date):  # datetimes too
        return str(value)
    if not isinstance(value, str):
        raise ConfigError(f"{where}: expected a string, got {value!r}")
    return value


def _coerce(value: Any, tp: Any, where: str) -> Any:
    if tp is str:
        return _string(value, where)
    override = value  # a union's string member takes the override's text
    if isinstance(value, _Override):
        value = value.value
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _coerce(override, arg, where)
            except ConfigError as e:
                errors.append(str(e))
        raise ConfigError(f"{where}: expected {_type_name(tp)}, got {value!r}")
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a mapping of {tp.__name__} fields, got {value!r}")
        return _build(tp, value, where)
    if origin in (list, tuple, Sequence) or tp in (list, tuple):
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{where}: expected a list, got {value!r}")
        (item,) = typing.get_args(tp)[:1] or (Any,)
        return [_coerce(v, item, f"{where}[{i}]") for i, v in enumerate(value)]
    if tp is Any:
        return value
    if tp in (float, int):
        return _number(value, tp, where)
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{where}: expected true or false, got {value!r}")
        return value
    raise ConfigError(f"{where}: unsupported field type {tp!r}")


def _build(cls: type[T], data: dict, where: str) -> T:
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        prefix = f"{where}." if where else ""
        raise ConfigError(
            f"unknown key{'s' if len(unknown) > 1 else ''} {', '.join(prefix + k for k in unknown)}; "
            f"known keys{' of ' + where if where else ''}: {', '.join(fields)}"
        )
    kwargs = {}
    for name, value in data.items():
        kwargs[name] = _coerce(value, hints[name], f"{where}.{name}" if where else name)
    obj = cls(**kwargs)
    validate = getattr(obj, "validate", None)
    if validate is not None:
        validate()
    return obj


def _set_dotted(data: dict, key: str, value: Any) -> None:
    parts = key.split(".")
    node = data
    for part in parts[:-1]:
        node = node.setdefault(part, {})
        if not isinstance(node, dict):
            raise ConfigError(f"override {key}: {part} is not a section")
    node[parts[-1]] = value


def load_config(cls: type[T], path: str | pathlib.Path | None = None, overrides: Sequence[str] = ()) -> T:
    """Load ``path`` (YAML) into ``cls``, then apply ``key=value`` overrides."""
    data: dict = {}
    if path is not None:
        path = pathlib.Path(path)
        if not path.is_file():
            raise ConfigError(f"config file {path} does not exist")
        try:
            data = yaml.safe_load(path.read_text()) or {}
        except yaml.YAMLError as e:
            raise ConfigError(f"config file {path} is not valid YAML: {e}") from None
        if not isinstance(data, dict):
            raise ConfigError(f"config file {path} must hold a mapping at the top level")
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"override {item!r} must look like key=value (e.g. optim.lr=0.01)")
        key, raw = item.split("=", 1)
        try:
            value = yaml.safe_load(raw)
        except yaml.YAMLError:
            value = raw
        if not isinstance(value, (dict, list)):  # a scalar: a string field takes the text
            value = _Override(value, raw)
        _set_dotted(data, key.strip(), value)
    return _build(cls, data, "")


def to_dict(cfg: Any) -> dict:
    return dataclasses.asdict(cfg)
