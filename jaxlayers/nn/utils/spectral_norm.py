"""``torch.nn.utils.spectral_norm`` / ``remove_spectral_norm`` (the pre-parametrization API).

params ``<name>_orig``; buffers ``<name>_u``, ``<name>_v`` in ``batch_stats`` (``lin.weight_orig``,
``lin.weight_u``, ``lin.weight_v``), as torch's old hook stores them.
"""

from __future__ import annotations

from typing import Mapping

import flax.linen as fnn

from .parametrizations import SpectralNorm, _register_spectral_norm
from .parametrize import _remove

__all__ = ["spectral_norm", "remove_spectral_norm"]


def spectral_norm(module: fnn.Module, name: str = "weight", n_power_iterations: int = 1, eps: float = 1e-12,
                  dim: int | None = None, *, module_name: str | None = None) -> fnn.Module:
    """Spectral normalisation, as the old ``torch.nn.utils.spectral_norm``.

    ``name = W / sigma``, ``sigma = u . (W v)``; each training call (``train=True``) first runs
    ``n_power_iterations`` steps ``v = normalize(W^T u)``, ``u = normalize(W v)`` (stored with
    ``mutable=["batch_stats"]``).  ``train`` is required at call time.

    Args:
      module, name: the module and its parameter.
      n_power_iterations: power-method steps per training call (positive).
      eps: the normalisation's epsilon.
      dim: the output-channel dim (default 0, 1 for ConvTranspose*); non-negative, as torch's old
        hook (which fails to permute a negative one): a ``ValueError`` otherwise.
      module_name: the wrapper's linen name (``name`` is torch's tensor name).

    Variables: params ``<name>_orig``; batch_stats ``<name>_u`` ``(W.shape[dim],)`` and
    ``<name>_v`` (product of the other dims), normalised normal draws as torch's.

    Example:
      >>> import jax, jax.numpy as jnp
      >>> from jaxlayers import nn, interop
      >>> m = spectral_norm(nn.Linear(3, 4))
      >>> v = m.init(jax.random.key(0), jnp.ones((2, 3)), train=False)
      >>> list(interop.variables_to_state_dict(v))
      ['bias', 'weight_orig', 'weight_u', 'weight_v']
    """
    if dim is not None and int(dim) < 0:
        raise ValueError(f"spectral_norm: expected dim to be non-negative (the old spectral_norm hook cannot "
                         f"permute a negative dim; count it from 0), but got dim={dim}")
    return _register_spectral_norm(module, name, n_power_iterations, eps, dim, module_name, legacy=True)


def remove_spectral_norm(module: fnn.Module, variables: Mapping, name: str = "weight") -> tuple[fnn.Module, dict]:
    """Undo :func:`spectral_norm`: the plain module and variables with ``name = W / sigma`` computed
    from the stored ``u``, ``v`` (no power iteration), as torch."""
    return _remove("remove_spectral_norm", module, variables, name, (SpectralNorm,))
