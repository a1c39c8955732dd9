"""Sequential, Flatten, Unflatten."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import flax.linen as fnn

from .. import ops
from .._utils import accepts_train

__all__ = ["Sequential", "Flatten", "Unflatten"]


class Sequential(fnn.Module):
    """Chain of layers, as ``torch.nn.Sequential``.

    ``Sequential(a, b, c)`` names its children ``"0"``, ``"1"``, ``"2"``;
    ``Sequential(OrderedDict(conv=..., relu=...))`` (or a plain dict) names them
    by the keys, so parameter paths match torch's ``state_dict`` keys
    (``"0.weight"``, ``"conv.bias"``).  ``train`` is passed on to every child
    whose ``__call__`` takes it; other children are called with the input only.
    Children may also be plain callables (e.g. ``jax.nn.relu``).

    Shape: whatever the chain maps ``input`` to.
    """

    layers: tuple = ()
    names: tuple = ()

    @fnn.compact
    def __call__(self, x: Any, *, train: bool | None = None) -> Any:
        for name, layer in zip(self.names, self.layers):
            if isinstance(layer, fnn.Module):
                layer = layer.clone(parent=self, name=name)
            if train is not None and accepts_train(layer):
                x = layer(x, train=train)
            else:
                x = layer(x)
        return x

    def __len__(self) -> int:
        return len(self.layers)

    def __getitem__(self, idx: int | str | slice) -> Any:
        if isinstance(idx, str):
            if idx not in self.names:
                raise KeyError(f"Sequential: no child named {idx!r}; children are {list(self.names)}")
            return self.layers[self.names.index(idx)]
        if isinstance(idx, slice):  # torch: a Sequential of the slice, keeping the children's names
            return Sequential(layers=self.layers[idx], names=self.names[idx], parent=None)
        if not -len(self.layers) <= idx < len(self.layers):
            raise IndexError(f"Sequential: index {idx} is out of range for {len(self.layers)} children")
        return self.layers[idx]


_sequential_dataclass_init = Sequential.__init__


def _sequential_init(self, *args: Any, layers: Any = None, names: Any = None, **kwargs: Any) -> None:
    if args:
        if layers is not None:
            raise TypeError("Sequential: give the layers positionally or as layers=, not both")
        if len(args) == 1 and isinstance(args[0], Mapping):
            names = tuple(str(k) for k in args[0].keys())
            layers = tuple(args[0].values())
        else:
            layers = tuple(args)
    layers = tuple(layers or ())
    if names is None:
        names = tuple(str(i) for i in range(len(layers)))
    names = tuple(names)
    if len(names) != len(layers):
        raise ValueError(f"Sequential: {len(names)} names for {len(layers)} layers")
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

    def __call__(self, x):
        return ops.flatten(x, self.start_dim, self.end_dim)


class Unflatten(fnn.Module):
    """Expand dim ``dim`` into ``unflattened_size``, as ``torch.nn.Unflatten``.

    Shape: ``(*, S_dim, *) -> (*, U_1, ..., U_n, *)`` with ``prod(U) = S_dim``
    (one entry may be -1).
    """

    dim: int
    unflattened_size: tuple

    def __call__(self, x):
        return ops.unflatten(x, self.dim, tuple(self.unflattened_size))
