"""``torch.nn.utils.weight_norm`` / ``remove_weight_norm`` (the pre-parametrization API).

params ``<name>_g`` and ``<name>_v`` next to the module's other parameters (``conv.weight_g``,
``conv.weight_v``, ``conv.bias``), as torch's old hook stores them.
"""

from __future__ import annotations

from typing import Mapping

import flax.linen as fnn

from .parametrizations import WeightNorm
from .parametrize import _remove, register_parametrization

__all__ = ["weight_norm", "remove_weight_norm"]


def weight_norm(module: fnn.Module, name: str = "weight", dim: int | None = 0, *,
                module_name: str | None = None) -> fnn.Module:
    """Weight normalisation, as the old ``torch.nn.utils.weight_norm``.

    ``name = g * v / ||v||``, the norm over every dim but ``dim`` (``None`` or ``-1``: whole tensor).

    Args:
      module: the linen module to wrap; name: its parameter; dim: the dim kept by the norm.
      module_name: the wrapper's linen name (``name`` is torch's tensor name).

    Variables: params ``<name>_g`` (shape with 1s but at ``dim``; 0-d for ``dim=None``) and
    ``<name>_v`` (the weight's shape), initialised from the module's initial ``name``.

    Example:
      >>> import jax, jax.numpy as jnp
      >>> from jaxlayers import nn, interop
      >>> m = weight_norm(nn.Conv1d(2, 3, 2))
      >>> v = m.init(jax.random.key(0), jnp.ones((1, 2, 5)))
      >>> {k: a.shape for k, a in interop.variables_to_state_dict(v).items()}
      {'bias': (3,), 'weight_g': (3, 1, 1), 'weight_v': (3, 2, 2)}
    """
    return register_parametrization(module, name, WeightNorm(dim, legacy=True), module_name=module_name)


def remove_weight_norm(module: fnn.Module, variables: Mapping, name: str = "weight") -> tuple[fnn.Module, dict]:
    """Undo :func:`weight_norm`: ``(module, variables)`` -> the plain module and variables with
    ``name = g * v / ||v||``."""
    return _remove("remove_weight_norm", module, variables, name, (WeightNorm,))
