"""Numerics of ``CrossMapLRN2d`` (torch has no functional form; the module lives in
:mod:`jaxlayers.nn.norm_extra`).

torch's ``CrossMapLRN2d`` (``torch/nn/modules/_functions.py``, the Lua-torch port) is not
:func:`~jaxlayers.functional.local_response_norm`: its channel windows come from a running
sum whose first term is never removed, and its backward is a hand-written formula with another
window that is not the derivative of its forward.  Both are reproduced here, the forward as a
static 0/1 window matrix and the backward as a ``custom_jvp`` whose transpose is torch's
backward, so outputs and gradients are torch's.
"""

from __future__ import annotations

import functools
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from .._utils import floating_input, shape_str

__all__: list[str] = []


@functools.lru_cache(maxsize=None)
def _forward_window(channels: int, size: int) -> np.ndarray:
    """``M[c, j] = 1`` when ``x[j]²`` is in torch's running sum for channel ``c``."""
    pre_pad = int((size - 1) / 2 + 1)
    m = np.zeros((channels, channels))
    m[0, :min(pre_pad, channels)] = 1
    for c in range(1, channels):  # static, O(C): the recurrence of torch's forward
        m[c] = m[c - 1]
        if c < channels - pre_pad + 1:
            m[c, c + pre_pad - 1] += 1
        if c > pre_pad:
            m[c, c - pre_pad] -= 1
    return m


@functools.lru_cache(maxsize=None)
def _backward_window(channels: int, size: int) -> np.ndarray:
    """``B[c, c'] = 1`` when ``c'`` is in the window torch's backward sums for channel ``c``:
    ``c - ipp <= c' <= c + size - 1 - ipp`` with ``ipp = int(size - (size - 1) / 2)``."""
    ipp = int(size - (size - 1) / 2)
    c = np.arange(channels)
    d = c[None, :] - c[:, None]
    return ((d >= -ipp) & (d <= size - 1 - ipp)).astype(np.float64)


def _scale(x: jax.Array, size: int, alpha: float, k: float) -> jax.Array:
    m = jnp.asarray(_forward_window(x.shape[1], size), x.dtype)
    s = jnp.einsum("cj,njhw->nchw", m, x * x, precision=lax.Precision.HIGHEST)
    return s * jnp.asarray(alpha / size, x.dtype) + jnp.asarray(k, x.dtype)


@functools.partial(jax.custom_jvp, nondiff_argnums=(1, 2, 3, 4))
def _cross_map_lrn(x: jax.Array, size: int, alpha: float, beta: float, k: float) -> jax.Array:
    return x * _scale(x, size, alpha, k) ** jnp.asarray(-beta, x.dtype)


@_cross_map_lrn.defjvp
def _cross_map_lrn_jvp(size, alpha, beta, k, primals, tangents):
    (x,), (t,) = primals, tangents
    scale = _scale(x, size, alpha, k)
    inv = scale ** jnp.asarray(-beta, x.dtype)
    out = x * inv
    # the transpose of this linear map in t is torch's backward:
    # grad_in[c] = inv[c] g[c] - K x[c] * sum_{c' in B(c)} g[c'] out[c'] / scale[c']
    b = jnp.asarray(_backward_window(x.shape[1], size), x.dtype)
    cross = jnp.einsum("cd,nchw->ndhw", b, x * t, precision=lax.Precision.HIGHEST)
    coef = jnp.asarray(2 * alpha * beta / size, x.dtype)
    return out, inv * t - coef * (out / scale) * cross


def _cross_map_lrn2d(input: Any, size: int, alpha: float, beta: float, k: float, name: str) -> jax.Array:
    """torch's ``CrossMapLRN2d`` forward and backward on a 4-D ``(N, C, H, W)`` input.

    ``y[c] = x[c] * (k + alpha / size * sum_j M[c, j] x[j]²) ** -beta`` with ``M`` the window of
    torch's running sum (:func:`_forward_window`).
    """
    x = jnp.asarray(input)
    if x.ndim != 4:
        raise ValueError(f"{name}: expected 4-D input (N, C, H, W), got {x.ndim}-D input of shape {shape_str(x)}")
    x = floating_input(x, name)
    return _cross_map_lrn(x, int(size), float(alpha), float(beta), float(k))
