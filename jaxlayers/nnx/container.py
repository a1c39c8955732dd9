"""Sequential, ModuleList, ModuleDict, ParameterList, ParameterDict as native NNX modules.

Children are attributes named as torch names them (``"0"``, ``"1"``, ... or the
dict's keys), so ``model[0]`` is the NNX child itself and ``state_dict()`` keys
are torch's (``"0.weight"``, ``"blocks.conv.weight"``).
"""

from __future__ import annotations

import functools
import inspect
import operator

from collections.abc import Iterable, Iterator, Mapping
from typing import Any

import flax.linen as fnn
import jax
import jax.numpy as jnp
from flax import nnx

from .module import Module
from .parameter import Parameter

__all__ = ["Sequential", "ModuleList", "ModuleDict", "ParameterList", "ParameterDict"]

_RESERVED = frozenset({"rngs"})


class _Container(Module):
    """Children stored as attributes under ``_keys`` (static, in order)."""

    def _init_container(self) -> None:
        self._keys: tuple[str, ...] = ()

    def _check_key(self, key: Any) -> str:
        name = type(self).__name__
        if not isinstance(key, str):
            raise TypeError(f"{name}: keys must be strings, got {type(key).__name__}")
        if "." in key or key == "" or key in _RESERVED or key.startswith("_"):
            raise KeyError(f"{name}: {key!r} cannot be a child name (no dots, no leading underscore, "
                           f"not one of {sorted(_RESERVED)})")
        if key not in self._keys and hasattr(self, key):  # a method (train, values, ...) or a flag
            raise KeyError(f"attribute '{key}' already exists")  # torch's message
        return key

    def _check_child(self, key: str, value: Any) -> Any:
        return value

    def _set(self, key: str, value: Any) -> None:
        key = self._check_key(key)
        setattr(self, key, self._check_child(key, value))
        if key not in self._keys:
            self._keys = self._keys + (key,)

    def _replace_all(self, items: Iterable[tuple[str, Any]]) -> None:
        for key in self._keys:
            delattr(self, key)
        self._keys = ()
        for key, value in items:
            self._set(key, value)

    def _index(self, idx: int) -> str:
        n = len(self._keys)
        try:
            idx = operator.index(idx)  # any integer (numpy's too), as torch
        except TypeError:
            raise TypeError(f"{type(self).__name__}: indices must be int or slice, got {type(idx).__name__}") from None
        if not -n <= idx < n:
            raise IndexError(f"{type(self).__name__}: index {idx} is out of range for {n} entries")
        return self._keys[idx % n]

    def __len__(self) -> int:
        return len(self._keys)

    def _delete(self, idx: int | slice) -> None:
        """Remove entries by position; the rest are renumbered ``"0"``, ``"1"``, ... (torch's rule)."""
        values = self._values()
        del values[idx if isinstance(idx, slice) else self._keys.index(self._index(idx))]
        self._replace_all((str(i), v) for i, v in enumerate(values))

    def _insert(self, index: int, value: Any) -> None:
        values = self._values()
        values.insert(index, value)
        self._replace_all((str(i), v) for i, v in enumerate(values))

    def pop(self, idx: int | slice) -> Any:
        """Remove the entry (or a slice of them) at ``idx`` and return it; the rest are renumbered."""
        value = self[idx]
        self._delete(idx)
        return value

    def _child_order(self) -> tuple[str, ...]:
        return self._keys

    def _values(self) -> list[Any]:
        return [getattr(self, k) for k in self._keys]


def _check_module(container: str, key: str, value: Any) -> Any:
    if isinstance(value, fnn.Module):
        raise TypeError(f"{container}: child {key!r} is a flax.linen module ({type(value).__name__}); use the NNX "
                        "layer of the same name from jaxlayers.nnx, or jaxlayers.nnx.from_linen(module)")
    if not callable(value) and not isinstance(value, nnx.Module):  # containers nest (a ModuleList of ModuleLists)
        raise TypeError(f"{container}: child {key!r} is neither an NNX module nor callable: {value!r}")
    return value


def _accepts_rngs(layer: Any) -> bool:
    """Whether ``Sequential``'s ``rngs=`` goes to a child: flax's Dropout (which takes a key too)
    and ``jaxlayers.nnx`` modules whose call takes ``rngs`` (or ``**kwargs``)."""
    return isinstance(layer, nnx.Dropout) or (isinstance(layer, Module) and _call_takes_rngs(type(layer)))


@functools.lru_cache(maxsize=None)
def _call_takes_rngs(cls: type) -> bool:
    params = inspect.signature(cls.__call__).parameters.values()
    return any(p.name == "rngs" or p.kind is p.VAR_KEYWORD for p in params)


class Sequential(_Container):
    """Chain of layers, as ``torch.nn.Sequential``, as an NNX module.

    ``Sequential(a, b, c)`` names its children ``"0"``, ``"1"``, ``"2"``;
    ``Sequential(OrderedDict(conv=..., relu=...))`` (or a dict) names them by the
    keys.  Children are NNX modules (any ``nnx.Module``, e.g. ``jaxlayers.nnx``
    layers or flax's own) or plain callables (``jax.nn.relu``).  ``model[0]`` is
    the child, ``model[1:]`` a Sequential of the same child objects with their
    names, ``len(model)``, iteration, ``append``/``extend``/``insert``/``pop``, ``model[i] = layer``,
    ``del model[i]`` (the rest renumbered, as torch), ``model + other``.

    Call: ``model(x, rngs=None)``: each child in order; each child uses its own mode
    (``train()``/``eval()``).  ``rngs`` (a key, ``nnx.Rngs`` or ``RngStream``)
    replaces the dropout streams of the children whose call takes ``rngs`` for this
    call; a key is split per child as ``jax.random.fold_in(key, position)``.

    Shape: whatever the chain maps the input to.

    >>> from flax import nnx as fnnx
    >>> from jaxlayers import nnx
    >>> model = nnx.Sequential(nnx.Linear(3, 4, rngs=fnnx.Rngs(0)), nnx.ReLU(), nnx.Linear(4, 2, rngs=fnnx.Rngs(1)))
    >>> model(jnp.ones((5, 3))).shape, len(model), type(model[0]).__name__
    ((5, 2), 3, 'Linear')
    """

    def __init__(self, *args: Any):
        self._init_container()
        if len(args) == 1 and isinstance(args[0], Mapping):
            items = [(str(k), v) for k, v in args[0].items()]
        else:
            items = [(str(i), v) for i, v in enumerate(args)]
        for key, value in items:
            self._set(key, value)

    def _check_child(self, key: str, value: Any) -> Any:
        return _check_module("Sequential", key, value)

    def __call__(self, input: Any, *, rngs: Any = None) -> Any:
        x = input
        for i, key in enumerate(self._keys):
            layer = getattr(self, key)
            if rngs is not None and _accepts_rngs(layer):
                x = layer(x, rngs=jax.random.fold_in(rngs, i) if isinstance(rngs, jax.Array) else rngs)
            else:
                x = layer(x)
        return x

    def __getitem__(self, idx: int | slice | str) -> Any:
        if isinstance(idx, slice):
            return Sequential(dict(zip(self._keys[idx], self._values()[idx])))
        if isinstance(idx, str):
            if idx not in self._keys:
                raise KeyError(f"Sequential: no child named {idx!r}; children are {list(self._keys)}")
            return getattr(self, idx)
        return getattr(self, self._index(idx))

    def __iter__(self) -> Iterator[Any]:
        return iter(self._values())

    def __setitem__(self, idx: int, module: Any) -> None:
        self._set(self._index(idx), module)

    def __delitem__(self, idx: int | slice) -> None:
        self._delete(idx)  # torch renumbers every child, named ones too

    def __add__(self, other: "Sequential") -> "Sequential":
        if not isinstance(other, Sequential):
            raise TypeError(f"Sequential: can only add a Sequential, got {type(other).__name__}")
        return Sequential(*self._values(), *other._values())

    def insert(self, index: int, module: Any) -> "Sequential":
        self._insert(index, module)
        return self

    def append(self, module: Any) -> "Sequential":
        self._set(str(len(self._keys)), module)
        return self

    def extend(self, modules: Iterable[Any]) -> "Sequential":
        for m in modules:
            self.append(m)
        return self


class ModuleList(_Container):
    """A list of NNX modules, as ``torch.nn.ModuleList``: children ``"0"``, ``"1"``, ...

    Indexing (``ml[0]``, ``ml[-1]``, ``ml[1:]`` -> a ModuleList of the same
    children), assignment, ``del`` (later children are renumbered, as torch),
    ``append``, ``extend``, ``insert``, ``pop``, ``len``, iteration.  Not callable.

    >>> from flax import nnx as fnnx
    >>> from jaxlayers import nnx
    >>> blocks = nnx.ModuleList([nnx.Linear(2, 2, rngs=fnnx.Rngs(i)) for i in range(3)])
    >>> list(blocks.state_dict())[:3], len(blocks)
    (['0.weight', '0.bias', '1.weight'], 3)
    """

    def __init__(self, modules: Iterable[Any] | None = None):
        self._init_container()
        if modules is not None:
            self.extend(modules)

    def _check_child(self, key: str, value: Any) -> Any:
        return _check_module("ModuleList", key, value)

    def __getitem__(self, idx: int | slice) -> Any:
        if isinstance(idx, slice):
            return type(self)(self._values()[idx])
        return getattr(self, self._index(idx))

    def __setitem__(self, idx: int, value: Any) -> None:
        self._set(self._index(idx), value)

    def __delitem__(self, idx: int | slice) -> None:
        self._delete(idx)

    def __iter__(self) -> Iterator[Any]:
        return iter(self._values())

    def __iadd__(self, modules: Iterable[Any]) -> "ModuleList":
        return self.extend(modules)

    def append(self, value: Any) -> "ModuleList":
        self._set(str(len(self._keys)), value)
        return self

    def extend(self, values: Iterable[Any]) -> "ModuleList":
        if not isinstance(values, Iterable) or isinstance(values, (str, Mapping)):
            raise TypeError(f"{type(self).__name__}.extend: expected an iterable of entries, got {type(values).__name__}")
        for v in values:
            self.append(v)
        return self

    def insert(self, index: int, value: Any) -> None:
        self._insert(index, value)


class ModuleDict(_Container):
    """An ordered dict of NNX modules, as ``torch.nn.ModuleDict``: children named by the keys.

    ``md["conv"]``, assignment, ``del``, ``in``, ``keys()``, ``values()``,
    ``items()``, ``update``, ``pop``, ``len``, iteration over keys.  Not callable.
    Keys are strings without dots that are not attributes (``"train"``, ``"values"``:
    torch's ``KeyError``).  The entries may come as a mapping, a ``ModuleDict`` or
    ``(key, value)`` pairs.
    """

    def __init__(self, modules: Mapping[str, Any] | ModuleDict | Iterable[tuple[str, Any]] | None = None):
        self._init_container()
        if modules is not None:
            self.update(modules)

    def _check_child(self, key: str, value: Any) -> Any:
        return _check_module(type(self).__name__, key, value)

    def __getitem__(self, key: str) -> Any:
        if key not in self._keys:
            raise KeyError(f"{type(self).__name__}: no entry {key!r}; keys are {list(self._keys)}")
        return getattr(self, key)

    def __setitem__(self, key: str, value: Any) -> None:
        self._set(key, value)

    def __delitem__(self, key: str) -> None:
        self[key]  # noqa: B018 - raises KeyError naming the container
        delattr(self, key)
        self._keys = tuple(k for k in self._keys if k != key)

    def __contains__(self, key: object) -> bool:
        return key in self._keys

    def __iter__(self) -> Iterator[str]:
        return iter(self._keys)

    def keys(self) -> list[str]:
        return list(self._keys)

    def values(self) -> list[Any]:
        return self._values()

    def items(self) -> list[tuple[str, Any]]:
        return list(zip(self._keys, self._values()))

    def update(self, entries: Mapping[str, Any] | ModuleDict | Iterable[tuple[str, Any]]) -> None:
        items = entries.items() if isinstance(entries, (Mapping, ModuleDict)) else entries
        for key, value in items:
            self._set(key, value)

    def pop(self, key: str) -> Any:
        value = self[key]
        del self[key]
        return value


def _to_param(container: str, key: str, value: Any) -> nnx.Variable:
    if isinstance(value, nnx.Variable):
        return value
    if isinstance(value, (jax.Array, int, float)) or hasattr(value, "__array__"):
        return Parameter(jnp.asarray(value))
    raise TypeError(f"{container}: entry {key!r} must be an array or an nnx.Param, got {type(value).__name__}")


class ParameterList(ModuleList):
    """A list of parameters, as ``torch.nn.ParameterList``: entries ``"0"``, ``"1"``, ...

    Arrays are stored as ``nnx.Param`` (an ``nnx.Variable`` is kept as it is);
    ``plist[0]`` is the variable (``plist[0][...]`` its array).  Same list
    operations as :class:`ModuleList`.

    >>> from jaxlayers import nnx
    >>> plist = nnx.ParameterList([jnp.zeros(2), jnp.ones((2, 3))])
    >>> {k: v.shape for k, v in plist.state_dict().items()}
    {'0': (2,), '1': (2, 3)}
    """

    def __init__(self, values: Iterable[Any] | None = None):  # torch's argument name
        super().__init__(values)

    def _check_child(self, key: str, value: Any) -> Any:
        return _to_param("ParameterList", key, value)


class ParameterDict(ModuleDict):
    """An ordered dict of parameters, as ``torch.nn.ParameterDict``: entries named by the keys.

    Arrays are stored as ``nnx.Param``; ``pdict["scale"]`` is the variable.  Same
    dict operations as :class:`ModuleDict`.
    """

    def __init__(self, parameters: Mapping[str, Any] | Iterable[tuple[str, Any]] | None = None):  # torch's name
        super().__init__(parameters)

    def _check_child(self, key: str, value: Any) -> Any:
        return _to_param("ParameterDict", key, value)
