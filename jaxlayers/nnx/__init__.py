"""Flax NNX modules with ``torch.nn``'s names, constructor arguments and variable names.

``jaxlayers.nnx.Conv2d(3, 16, 3, rngs=nnx.Rngs(0))`` is an ``nnx.Module`` built
from the linen layer ``jaxlayers.nn.Conv2d`` (one definition per layer): the same
arguments and checks, parameters as ``nnx.Param`` and running statistics as
``nnx.BatchStat`` under torch's names, plus torch's habits (``train()`` /
``eval()``, ``state_dict()`` / ``load_state_dict()``, ``named_parameters()``).
Containers (``Sequential``, ``ModuleList``, ``ModuleDict``, ``ParameterList``,
``ParameterDict``) are native NNX modules.  See ``docs/nnx.md``.

>>> from flax import nnx as fnnx
>>> from jaxlayers import nnx
>>> model = nnx.Sequential(nnx.Linear(4, 8, rngs=fnnx.Rngs(0)), nnx.ReLU())
>>> list(model.state_dict())
['0.weight', '0.bias']
"""

from __future__ import annotations

import flax.linen as _fnn

from .. import nn as _nn
from ._bridge import LinenLayer, from_linen, wrap_linen_class
from .container import ModuleDict, ModuleList, ParameterDict, ParameterList, Sequential
from .module import Module, Submodule
from .parameter import Parameter, TensorData

_NATIVE = {"Sequential", "ModuleList", "ModuleDict", "ParameterList", "ParameterDict"}


def _linen_layer_names() -> list[str]:
    """Public linen Module classes of ``jaxlayers.nn`` (its ``__all__`` when it declares one)."""
    names = getattr(_nn, "__all__", None) or [n for n in dir(_nn) if not n.startswith("_")]
    return [n for n in names
            if isinstance(getattr(_nn, n, None), type) and issubclass(getattr(_nn, n), _fnn.Module)
            and getattr(_nn, n).__module__.startswith("jaxlayers.")]


_WRAPPED = [n for n in _linen_layer_names() if n not in _NATIVE]
globals().update({n: wrap_linen_class(getattr(_nn, n)) for n in _WRAPPED})

__all__ = sorted(_WRAPPED + list(_NATIVE)) + [
    "Module", "Submodule", "LinenLayer", "from_linen", "wrap_linen_class", "Parameter", "TensorData",
]
