"""Sequential, ModuleList, ModuleDict, ParameterList, ParameterDict, Flatten, Unflatten."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Callable, ClassVar

import flax.linen as fnn
import jax.numpy as jnp
import numpy as np

from .._memory_format import channels_last
from .. import ops
from .._utils import accepts_train, train_positional

__all__ = ["Sequential", "ModuleList", "ModuleDict", "ParameterList", "ParameterDict", "Flatten", "Unflatten"]


class _AdoptsLayers(fnn.Module):
    """A container whose ``layers`` field holds its children: Flax would adopt them as "layers_0",
    "layers_1", ...; bound (inside ``init``/``apply``), ``setup`` clones each under its torch name
    in ``names`` instead (plain callables are kept as they are)."""

    def _register_submodules(self, name: str, val: Any) -> None:
        if name == "layers":
            object.__setattr__(self, name, val)
            return
        super()._register_submodules(name, val)

    def setup(self) -> None:
        object.__setattr__(self, "_bound_children", tuple(
            layer.clone(parent=self, name=name) if isinstance(layer, fnn.Module) else layer
            for name, layer in zip(self.names, self.layers)))

    def _bound_layers(self) -> tuple:
        """The bound children inside ``init``/``apply``; the children as given otherwise."""
        if self.scope is None:
            return self.layers
        self._try_setup()
        return self._bound_children


class Sequential(_AdoptsLayers):
    """Chain of layers, as ``torch.nn.Sequential``.

    ``Sequential(a, b, c)`` names its children ``"0"``, ``"1"``, ``"2"``;
    ``Sequential(OrderedDict(conv=..., relu=...))`` (or a plain dict) names them
    by the keys, so parameter paths match torch's ``state_dict`` keys
    (``"0.weight"``, ``"conv.bias"``).  ``train`` is passed on to every child
    whose ``__call__`` takes it; other children are called with the input only.
    Children may also be plain callables (e.g. ``jax.nn.relu``).  Inside
    ``init``/``apply`` (a parent's ``setup`` or ``__call__``), ``seq[i]`` is the bound
    child and ``seq[i:j]`` a ``Sequential`` of bound children, so both use the
    container's own variables, as torch's ``self.features[:k](x)``.

    Shape: whatever the chain maps ``input`` to.
    """

    layers: tuple = ()
    names: tuple = ()

    def __call__(self, input: Any, *, train: bool | None = None) -> Any:
        x = input
        for layer in self._bound_layers():
            if train is not None and train_positional(layer):  # e.g. a block under nn.remat(static_argnums)
                x = layer(x, train)
            elif train is not None and accepts_train(layer):
                x = layer(x, train=train)
            else:
                x = layer(x)
        return x

    def __len__(self) -> int:
        return len(self.layers)

    def __getitem__(self, idx: int | str | slice) -> Any:
        children = self._bound_layers()
        if isinstance(idx, str):
            if idx not in self.names:
                raise KeyError(f"Sequential: no child named {idx!r}; children are {list(self.names)}")
            return children[self.names.index(idx)]
        if isinstance(idx, slice):  # torch: a Sequential of the slice, keeping the children's names
            return Sequential(layers=children[idx], names=self.names[idx], parent=None)
        if not -len(children) <= idx < len(children):
            raise IndexError(f"Sequential: index {idx} is out of range for {len(children)} children")
        return children[idx]


_sequential_dataclass_init = Sequential.__init__


def _sequential_init(self, *args: Any, layers: Any = None, names: Any = None, **kwargs: Any) -> None:
    if args:
        if layers is not None:
            raise TypeError("Sequential: give the layers positionally or as layers=, not both")
        if len(args) == 1 and isinstance(args[0], Mapping):
            names = tuple(args[0].keys())
            layers = tuple(args[0].values())
        else:
            layers = tuple(args)
    layers = tuple(layers or ())
    if names is None:
        names = tuple(str(i) for i in range(len(layers)))
    names = tuple(names)
    if len(names) != len(layers):
        raise ValueError(f"Sequential: {len(names)} names for {len(layers)} layers")
    _check_keys("Sequential", names)
    for name, layer in zip(names, layers):
        if not callable(layer):
            raise TypeError(f"Sequential: child {name!r} is not callable: {layer!r}")
    _sequential_dataclass_init(self, layers=layers, names=names, **kwargs)


Sequential.__init__ = _sequential_init  # torch's varargs / OrderedDict constructor


class Flatten(fnn.Module):
    """Flatten dims ``start_dim..end_dim``, as ``torch.nn.Flatten``.

    Defaults keep the batch dim: ``(N, *dims) -> (N, prod(dims))``.
    """

    start_dim: int = 1
    end_dim: int = -1

    @channels_last
    def __call__(self, input):
        return ops.flatten(input, self.start_dim, self.end_dim)


class Unflatten(fnn.Module):
    """Expand dim ``dim`` into ``unflattened_size``, as ``torch.nn.Unflatten``.

    Shape: ``(*, S_dim, *) -> (*, U_1, ..., U_n, *)`` with ``prod(U) = S_dim``
    (one entry may be -1).
    """

    dim: int
    unflattened_size: tuple

    def __call__(self, input):
        return ops.unflatten(input, self.dim, tuple(self.unflattened_size))


# --------------------------------------------------------------------------- ModuleList / ModuleDict


def _check_keys(cls_name: str, names: tuple) -> None:
    """torch's rule for child names: distinct non-empty strings without '.'."""
    for k in names:
        if not isinstance(k, str):
            raise TypeError(f"{cls_name}: keys must be strings (torch's names), got {k!r}")
        if not k or "." in k:
            raise ValueError(f"{cls_name}: key {k!r} must be a non-empty string without '.'")
    if len(set(names)) != len(names):
        raise ValueError(f"{cls_name}: duplicate keys in {list(names)}")


def _container_pairs(cls_name: str, arg: str, value: Any, keyed: bool) -> tuple[tuple, tuple]:
    """``(names, items)`` from a sequence (names "0", "1", ...) or, if ``keyed``, a mapping or pairs."""
    if value is None:
        return (), ()
    if keyed:
        if isinstance(value, Mapping):
            pairs = list(value.items())
        else:
            try:
                pairs = [tuple(p) for p in value]
            except TypeError:
                raise TypeError(f"{cls_name}: {arg} must be a mapping or an iterable of (key, value) pairs, "
                                f"got {type(value).__name__}") from None
            if any(len(p) != 2 for p in pairs):
                raise ValueError(f"{cls_name}: {arg} must be a mapping or an iterable of (key, value) pairs")
        names = tuple(k for k, _ in pairs)
        _check_keys(cls_name, names)
        return names, tuple(v for _, v in pairs)
    if isinstance(value, (Mapping, str)) or not hasattr(value, "__iter__"):
        raise TypeError(f"{cls_name}: {arg} must be an iterable of items, got {type(value).__name__}")
    items = tuple(value)
    return tuple(str(i) for i in range(len(items))), items


class _Container(fnn.Module):
    """Base of ModuleList/ModuleDict/ParameterList/ParameterDict: the entries ``layers`` under
    torch's ``names``; ``_entries()`` gives what reading them returns (bound children, arrays)."""

    layers: tuple = ()
    names: tuple = ()

    _noun: ClassVar[str] = ""  # what the messages call one entry: "module", "parameter"

    def _entries(self) -> tuple:
        raise NotImplementedError

    def __len__(self) -> int:
        return len(self.layers)


class _ListAccess(_Container):
    """Iteration and int (negative too) / slice indexing over ``_entries()``, as torch's lists."""

    def _slice(self, entries: tuple, idx: slice) -> Any:
        raise NotImplementedError

    def __iter__(self):
        return iter(self._entries())

    def __getitem__(self, idx: int | slice) -> Any:
        cls = type(self).__name__
        entries = self._entries()
        if isinstance(idx, slice):
            return self._slice(entries, idx)
        if not isinstance(idx, (int, np.integer)) or isinstance(idx, bool):
            raise TypeError(f"{cls}: indices must be integers or slices, got {type(idx).__name__}")
        if not -len(entries) <= idx < len(entries):
            raise IndexError(f"{cls}: index {idx} is out of range for {len(entries)} {self._noun}s")
        return entries[idx]


class _DictAccess(_Container):
    """Key lookup, ``in``, ``keys``/``values``/``items`` and iteration over the keys, in order, as
    torch's dicts; the values are ``_entries()``."""

    def __iter__(self):
        return iter(self.names)

    def __contains__(self, key: Any) -> bool:
        return key in self.names

    def keys(self) -> tuple:
        return tuple(self.names)

    def values(self) -> tuple:
        return tuple(self._entries())

    def items(self) -> tuple:
        return tuple(zip(self.names, self._entries()))

    def __getitem__(self, key: str) -> Any:
        if key not in self.names:
            raise KeyError(f"{type(self).__name__}: no {self._noun} named {key!r}; keys are {list(self.names)}")
        return self._entries()[self.names.index(key)]


class _ModuleContainer(_AdoptsLayers, _Container):
    """Holds child modules under torch's names (``"0"``, ``"1"``, ... or the dict's keys).

    The children are kept as given in ``layers``; when the container is bound (inside
    ``init``/``apply``) its ``setup`` clones each one under its torch name, so its
    variables live at ``<attribute>/<name>/...`` and ``variables_to_state_dict`` gives
    ``"<attribute>.<name>.weight"``, as torch's ``state_dict``.
    """

    _noun: ClassVar[str] = "module"

    def _entries(self) -> tuple:
        return self._bound_layers()

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        cls = type(self).__name__
        raise TypeError(f"{cls} is not callable; iterate over it (or index it) in the parent's __call__, "
                        f"as torch's forward does")


def _check_modules(cls_name: str, names: tuple, layers: tuple) -> None:
    for name, layer in zip(names, layers):
        if not isinstance(layer, fnn.Module):
            raise TypeError(f"{cls_name}: child {name!r} is not a flax.linen Module: {type(layer).__name__}")


class ModuleList(_ModuleContainer, _ListAccess):
    """A list of child modules, as ``torch.nn.ModuleList``.

    Assign it in a parent's ``setup`` (``self.blocks = ModuleList([Conv2d(3, 8, 3), ReLU()])``) or
    create it in a compact ``__call__`` with ``name=`` (``ModuleList([...], name="blocks")``), then
    iterate, index (int, negative, slice) and ``len()`` it in the parent's ``__call__`` as torch's
    ``forward`` does.  Children are named ``"0"``, ``"1"``, ..., so the variables of the child ``i``
    of the attribute ``blocks`` are torch's ``blocks.i.*``.

    Args:
      modules: an iterable of ``flax.linen`` modules (TypeError for anything else).

    Differs from torch: modules are immutable, so there is no ``append``/``extend``/``insert``
    (build the list at once: ``ModuleList([*a, b])``); a slice is a new ``ModuleList`` of the
    (bound) children; calling a ModuleList raises TypeError, as torch's does.

    Example:
      >>> import jax, jax.numpy as jnp, flax.linen as fnn
      >>> from jaxlayers import nn
      >>> class Net(fnn.Module):
      ...     def setup(self):
      ...         self.layers = nn.ModuleList([nn.Linear(2, 3), nn.ReLU(), nn.Linear(3, 1)])
      ...     def __call__(self, x):
      ...         for layer in self.layers:
      ...             x = layer(x)
      ...         return x
      >>> v = Net().init(jax.random.key(0), jnp.ones((4, 2)))
      >>> jax.tree_util.tree_map(jnp.shape, v["params"]["layers"]["2"])
      {'bias': (1,), 'weight': (1, 3)}
    """

    def _slice(self, entries: tuple, idx: slice) -> Any:
        return ModuleList(layers=tuple(entries[idx]), names=tuple(self.names[idx]), parent=None)


class ModuleDict(_ModuleContainer, _DictAccess):
    """An ordered dict of child modules, as ``torch.nn.ModuleDict``.

    ``self.blocks = ModuleDict({"conv": Conv2d(3, 8, 3), "act": ReLU()})`` in ``setup`` (or with
    ``name=`` in a compact ``__call__``); in the parent's ``__call__``: ``self.blocks["conv"]``,
    ``"conv" in self.blocks``, ``len()``, ``keys()``, ``values()``, ``items()`` and iteration over
    the keys, in insertion order.  The child under key ``k`` of the attribute ``blocks`` holds torch's
    ``blocks.k.*`` variables.

    Args:
      modules: a mapping (dict, OrderedDict) or an iterable of ``(key, module)`` pairs; keys are
        non-empty strings without ``"."``.

    Differs from torch: immutable (no ``update``/``pop``/``clear``); calling it raises TypeError.

    Example:
      >>> import jax, jax.numpy as jnp, flax.linen as fnn
      >>> from jaxlayers import nn
      >>> class Net(fnn.Module):
      ...     @fnn.compact
      ...     def __call__(self, x):
      ...         heads = nn.ModuleDict({"a": nn.Linear(2, 3), "b": nn.Linear(2, 1)}, name="heads")
      ...         return {k: head(x).shape for k, head in heads.items()}
      >>> Net().init_with_output(jax.random.key(0), jnp.ones((4, 2)))[0]
      {'a': (4, 3), 'b': (4, 1)}
    """


def _container_init(cls: type, arg: str, keyed: bool, check: Any) -> None:
    dataclass_init = cls.__init__

    def __init__(self, *args: Any, layers: Any = None, names: Any = None, **kwargs: Any) -> None:
        if len(args) > 1:
            raise TypeError(f"{cls.__name__}: takes one positional argument ({arg}), got {len(args)}")
        if arg in kwargs:
            args = (kwargs.pop(arg),)
        if args:
            if layers is not None:
                raise TypeError(f"{cls.__name__}: give {arg} positionally or as layers=, not both")
            names, layers = _container_pairs(cls.__name__, arg, args[0], keyed)
        layers = tuple(layers or ())
        names = tuple(str(i) for i in range(len(layers))) if names is None else tuple(names)
        if len(names) != len(layers):
            raise ValueError(f"{cls.__name__}: {len(names)} names for {len(layers)} items")
        check(cls.__name__, names, layers)
        dataclass_init(self, layers=layers, names=names, **kwargs)

    cls.__init__ = __init__


_container_init(ModuleList, "modules", False, _check_modules)
_container_init(ModuleDict, "modules", True, _check_modules)


# --------------------------------------------------------------------------- ParameterList / ParameterDict


def _param_spec(cls_name: str, name: str, value: Any) -> Callable:
    """An initialiser ``rng -> array`` for one entry: an array-like (its value, its dtype) or
    ``(init, shape)`` / ``(init, shape, dtype)`` with a ``jax.nn.initializers``-style ``init``."""
    if isinstance(value, tuple) and value and callable(value[0]):
        if len(value) not in (2, 3):
            raise ValueError(f"{cls_name}: entry {name!r} must be an array or (init, shape[, dtype]), got "
                             f"a tuple of {len(value)} items")
        init_fn, shape = value[0], value[1]
        dtype = value[2] if len(value) == 3 else jnp.float32
        try:
            shape = tuple(int(s) for s in ((shape,) if isinstance(shape, (int, np.integer)) else shape))
        except TypeError:
            raise TypeError(f"{cls_name}: entry {name!r}: shape must be a tuple of ints, got {shape!r}") from None
        return lambda rng: init_fn(rng, shape, dtype)
    if isinstance(value, fnn.Module) or callable(value):
        raise TypeError(f"{cls_name}: entry {name!r} must be an array or (init, shape[, dtype]), "
                        f"got {type(value).__name__}")
    try:
        array = jnp.asarray(value)
    except TypeError:
        raise TypeError(f"{cls_name}: entry {name!r} must be an array or (init, shape[, dtype]), "
                        f"got {type(value).__name__}") from None
    return lambda rng: array


def _check_params(cls_name: str, names: tuple, values: tuple) -> None:
    for name, value in zip(names, values):
        _param_spec(cls_name, name, value)


class _ParamContainer(_Container):
    """Creates one parameter per entry, named as torch names them; reading returns the arrays."""

    _noun: ClassVar[str] = "parameter"

    def setup(self) -> None:
        cls = type(self).__name__
        object.__setattr__(self, "_values", tuple(
            self.param(name, _param_spec(cls, name, value)) for name, value in zip(self.names, self.layers)))

    def _entries(self) -> tuple:
        cls = type(self).__name__
        if self.scope is None:
            raise ValueError(f"{cls}: parameters exist only inside init/apply; read them in the parent's "
                             f"__call__")
        self._try_setup()
        return self._values

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        raise TypeError(f"{type(self).__name__} is not callable; index it in the parent's __call__")


class ParameterList(_ParamContainer, _ListAccess):
    """A list of parameters, as ``torch.nn.ParameterList``.

    ``self.scales = ParameterList([jnp.ones(3), jnp.zeros((2, 2))])`` in a parent's ``setup``
    creates the parameters ``scales/0`` and ``scales/1`` (torch's ``scales.0``, ``scales.1``)
    initialised to those values; ``self.scales[i]`` (int, negative, slice), iteration and
    ``len()`` in the parent's ``__call__`` give the current arrays.

    Args:
      values: an iterable of entries, each an array-like (the initial value, its dtype kept) or
        ``(init, shape)`` / ``(init, shape, dtype)`` with ``init(key, shape, dtype)`` as in
        ``jax.nn.initializers`` (dtype float32 by default).

    Differs from torch: immutable (no ``append``/``extend``).

    Example:
      >>> import jax, jax.numpy as jnp, flax.linen as fnn
      >>> from jaxlayers import nn
      >>> class Scale(fnn.Module):
      ...     def setup(self):
      ...         self.w = nn.ParameterList([jnp.full((2,), 3.0), (jax.nn.initializers.ones, (2,))])
      ...     def __call__(self, x):
      ...         return x * self.w[0] + self.w[-1]
      >>> Scale().init_with_output(jax.random.key(0), jnp.ones(2))[0].tolist()
      [4.0, 4.0]
    """

    def _slice(self, entries: tuple, idx: slice) -> Any:
        return list(entries[idx])


class ParameterDict(_ParamContainer, _DictAccess):
    """An ordered dict of parameters, as ``torch.nn.ParameterDict``.

    ``self.p = ParameterDict({"alpha": jnp.zeros(()), "beta": (init, (4,))})`` in ``setup`` creates
    ``p/alpha`` and ``p/beta`` (torch's ``p.alpha``, ``p.beta``); ``self.p["alpha"]``, ``in``,
    ``len()``, ``keys()``, ``values()``, ``items()`` and iteration over the keys give the arrays.

    Args:
      values: a mapping or an iterable of ``(key, entry)`` pairs, entries as :class:`ParameterList`'s.

    Differs from torch: immutable (no ``update``/``pop``).

    Example:
      >>> import jax, jax.numpy as jnp, flax.linen as fnn
      >>> from jaxlayers import nn
      >>> class Affine(fnn.Module):
      ...     def setup(self):
      ...         self.p = nn.ParameterDict({"scale": jnp.full((2,), 2.0), "shift": jnp.ones(2)})
      ...     def __call__(self, x):
      ...         return x * self.p["scale"] + self.p["shift"]
      >>> Affine().init_with_output(jax.random.key(0), jnp.ones(2))[0].tolist()
      [3.0, 3.0]
    """


_container_init(ParameterList, "values", False, _check_params)
_container_init(ParameterDict, "parameters", True, _check_params)
