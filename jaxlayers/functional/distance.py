"""Distances and small vector functions: ``cosine_similarity``, ``pairwise_distance``,
``pdist``, ``normalize``, ``one_hot``, ``gumbel_softmax``.

The p-norms differentiate as torch's ``linalg_vector_norm`` backward does
(``FunctionsManual.cpp``): zero gradient at a zero norm instead of NaN, for
``p = inf`` the gradient split evenly between the tied maxima (``pdist``
gives each tied maximum the full gradient, as torch's ``_pdist_backward``),
and zero gradient for ``p = 0``.  This is one ``custom_jvp``, so forward mode
and higher orders work.
"""

from __future__ import annotations

import functools
import math
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from .._lowering import distance as _lowering
from .._utils import (_is_int, floating_input, half_in_float32, clamp_min, clamp_min_straight_through, compiled, compute_dtype, concrete, extreme, gathered, holds_nan,
                      index_dtype, nan_max, nan_min, sgn, shape_str, upper_triangle, when_nan)

__all__ = ["cosine_similarity", "pairwise_distance", "pdist", "normalize", "one_hot", "gumbel_softmax"]


def _float(x: Any) -> jax.Array:
    x = jnp.asarray(x)
    if not jnp.issubdtype(x.dtype, jnp.inexact):
        x = x.astype(jnp.result_type(float))
    return x


def _wrap_dim(dim: Any, ndim: int, name: str) -> int:
    if not _is_int(dim):
        raise TypeError(f"{name}: dim must be an int, got {dim!r}")
    n = max(ndim, 1)
    if not -n <= dim < n:
        raise IndexError(f"{name}: dim {dim} out of range for {ndim}-D input (expected in [{-n}, {n - 1}])")
    return int(dim) % n


def _check_p(p: Any, name: str) -> float:
    if not isinstance(p, (int, float, np.integer, np.floating)) or isinstance(p, bool):
        raise TypeError(f"{name}: p must be a number, got {p!r}")
    return float(p)


# ----------------------------------------------------------------------------- p-norm with torch's gradient


def _norm_value(x: jax.Array, p: float, axis: int, keepdims: bool) -> jax.Array:
    a = jnp.abs(x)
    if p == 0:
        return jnp.sum((x != 0).astype(x.dtype), axis, keepdims=keepdims)
    if p == math.inf:
        return nan_max(a, axis, keepdims=keepdims)
    if p == -math.inf:
        return nan_min(a, axis, keepdims=keepdims)
    if p == 1:
        return jnp.sum(a, axis, keepdims=keepdims)
    if p == 2:
        return jnp.sqrt(jnp.sum(x * x, axis, keepdims=keepdims))
    return jnp.sum(a**p, axis, keepdims=keepdims) ** (1 / p)


@functools.partial(jax.custom_jvp, nondiff_argnums=(1, 2, 3, 4))
def _norm(x: jax.Array, p: float, axis: int, keepdims: bool, inf_full: bool) -> jax.Array:
    return _norm_value(x, p, axis, keepdims)


def _norm_grad(x: jax.Array, norm: jax.Array, p: float, axis: int, inf_full: bool) -> jax.Array:
    """d norm / d x (torch's backward with grad = 1); ``norm`` has keepdims."""
    zero = jnp.zeros((), x.dtype)
    a = jnp.abs(x)
    nz = norm != 0
    safe_norm = jnp.where(nz, norm, 1)
    if p == 0:
        return jnp.zeros_like(x)
    if p == 2:
        return jnp.where(nz, x / safe_norm, zero)
    if p == 1:
        return sgn(x)
    if math.isinf(p):
        mask = (a == norm) | jnp.isnan(a)
        g = sgn(x) * mask
        return g if inf_full else g / jnp.sum(mask, axis, keepdims=True)
    if p < 1:
        nonzero = x != 0
        scaled = jnp.sign(x) * jnp.where(nonzero, jnp.where(nonzero, a, 1) ** (p - 1), zero)
        return scaled * norm ** (1 - p)
    if p < 2:
        scaled = jnp.sign(x) * a ** (p - 1)
    else:
        scaled = x * a ** (p - 2)
    return scaled * jnp.where(nz, 1 / safe_norm ** (p - 1), zero)


@_norm.defjvp
def _norm_jvp(p, axis, keepdims, inf_full, primals, tangents):
    (x,), (t,) = primals, tangents
    norm = _norm(x, p, axis, True, inf_full)
    dot = jnp.sum(_norm_grad(x, norm, p, axis, inf_full) * t, axis, keepdims=True)
    if not keepdims:
        norm, dot = jnp.squeeze(norm, axis), jnp.squeeze(dot, axis)
    return norm, dot


# ----------------------------------------------------------------------------- public functions


def _cosine_similarity(x1: Any, x2: Any, dim: int, eps: float, name: str) -> jax.Array:
    if not eps >= 0:
        raise ValueError(f"{name}: eps must be non-negative, got {eps}")
    a, b = jnp.asarray(x1), jnp.asarray(x2)
    try:
        shape = jnp.broadcast_shapes(a.shape, b.shape)
    except ValueError:
        raise ValueError(f"{name}: x1 of shape {shape_str(a)} and x2 of shape {shape_str(b)} do not broadcast")
    # torch: an integer input is promoted to a floating other's dtype; two integer inputs raise
    dtype = floating_input(jnp.zeros((), jnp.result_type(a.dtype, b.dtype)), name).dtype
    work = compute_dtype(dtype)  # half precision: float32 norms and sums (torch accumulates in float32)
    a, b = jnp.broadcast_to(a, shape).astype(work), jnp.broadcast_to(b, shape).astype(work)
    d = _wrap_dim(dim, len(shape), name)
    if len(shape) == 0:
        a, b = a[None], b[None]
    na = clamp_min_straight_through(_norm(a, 2.0, d, True, False), eps)
    nb = clamp_min_straight_through(_norm(b, 2.0, d, True, False), eps)
    return jnp.sum((a / na) * (b / nb), axis=d).astype(dtype)


def cosine_similarity(x1: Any, x2: Any, dim: int = 1, eps: float = 1e-8) -> jax.Array:
    """Cosine similarity along ``dim``, as ``torch.nn.functional.cosine_similarity``.

    ``sum((x1 / max(||x1||, eps)) * (x2 / max(||x2||, eps)), dim)``: each norm is
    clamped separately, and, as in torch, the clamp does not enter the gradient.

    Args:
        x1, x2: arrays that broadcast together.
        dim: the dimension of the vectors. Default 1.
        eps: lower bound of each norm. Default 1e-8.

    Shape: the broadcast shape without ``dim``.

    Example:
        >>> import jax.numpy as jnp
        >>> from jaxlayers import functional as F
        >>> F.cosine_similarity(jnp.array([[1.0, 0.0]]), jnp.array([[1.0, 1.0]]))
        Array([0.70710677], dtype=float32)
    """
    return _cosine_similarity(x1, x2, dim, eps, "cosine_similarity")


def _pairwise_distance(x1: Any, x2: Any, p: float, eps: float, keepdim: bool, name: str) -> jax.Array:
    a, b = _float(x1), _float(x2)
    p = _check_p(p, name)
    try:
        jnp.broadcast_shapes(a.shape, b.shape)
    except ValueError:
        raise ValueError(f"{name}: x1 of shape {shape_str(a)} and x2 of shape {shape_str(b)} do not broadcast")
    d = a - b + jnp.asarray(eps, jnp.result_type(a.dtype, b.dtype))
    if abs(p) == math.inf and d.ndim and d.shape[-1] == 0:
        raise ValueError(f"{name}: the inf norm of an empty last dim is undefined (x1 {shape_str(a)}, "
                         f"x2 {shape_str(b)})")
    dtype = d.dtype
    d = d.astype(compute_dtype(dtype))  # the difference rounds in half precision, its norm in float32 (torch)
    if d.ndim == 0:  # a scalar is one element; the result stays 0-d, also with keepdim (torch)
        return _norm(d[None], p, 0, False, False).astype(dtype)
    return _norm(d, p, d.ndim - 1, bool(keepdim), False).astype(dtype)


def pairwise_distance(x1: Any, x2: Any, p: float = 2.0, eps: float = 1e-6, keepdim: bool = False) -> jax.Array:
    """``||x1 - x2 + eps||_p`` over the last dim, as ``torch.nn.functional.pairwise_distance``.

    Args:
        x1, x2: ``(N, D)`` or ``(D,)`` arrays that broadcast together.
        p: the norm degree (``0``, ``inf`` and ``-inf`` work too). Default 2.
        eps: added to the difference (not to the norm), as torch. Default 1e-6.
        keepdim: keep the reduced dim.

    Shape: the broadcast shape without its last dim (kept as 1 with ``keepdim``).

    Example:
        >>> import jax.numpy as jnp
        >>> from jaxlayers import functional as F
        >>> F.pairwise_distance(jnp.array([[3.0, 0.0]]), jnp.array([[0.0, 4.0]]), eps=0.0)
        Array([5.], dtype=float32)
    """
    return _pairwise_distance(x1, x2, p, eps, keepdim, "pairwise_distance")


@half_in_float32  # torch's CPU kernel has no half precision: computed in float32, rounded once
def pdist(input: Any, p: float = 2) -> jax.Array:
    """p-norm distances between all pairs of rows, as ``torch.nn.functional.pdist``.

    Args:
        input: ``(N, M)``.
        p: non-negative norm degree (``0`` and ``inf`` work). Default 2.

    Shape: ``(N, M) -> (N (N - 1) / 2,)``, the upper triangle of the distance
    matrix in row-major order (pairs ``(0, 1), (0, 2), ..., (1, 2), ...``).
    The gradient at a zero distance is zero, as torch's.

    Example:
        >>> import jax.numpy as jnp
        >>> from jaxlayers import functional as F
        >>> F.pdist(jnp.array([[0.0, 0.0], [3.0, 4.0], [0.0, 1.0]]))
        Array([5.       , 1.       , 4.2426405], dtype=float32)
    """
    name = "pdist"
    x = floating_input(input, "pdist")  # torch: floating-point dtypes only
    p = _check_p(p, name)
    if x.ndim != 2:
        raise ValueError(f"{name}: expected 2-D input (N, M), got {x.ndim}-D input of shape {shape_str(x)}")
    if p < 0:
        raise ValueError(f"{name}: p must be non-negative, got {p}")
    if x.shape[1] == 0:  # no coordinates: every distance is 0 (the max of nothing included)
        n = x.shape[0]
        return jnp.zeros((n * (n - 1) // 2,), x.dtype)
    return compiled(_lowered_pdist, (p,), gathered(x))  # pairs across a sharded batch: on every device


def _lowered_pdist(x: jax.Array, p: float) -> jax.Array:
    """:func:`_pdist`, the reference, or ``jaxlayers._lowering.distance``'s GEMM form where it applies."""
    return _lowering.pdist(x, p, reference=_pdist)


def _distance_matrix(x: jax.Array, p: float) -> jax.Array:
    """``(N, N)`` p-norm distances of all pairs of rows, each a reduction of the broadcast
    difference that XLA fuses (the ``(N, N, M)`` differences are never stored).  ``p = ±inf``
    takes its NaN-propagating pass (a ``lax.cond``) only when ``x`` holds a non-finite value."""
    def pairwise(x):
        return x[:, None, :] - x[None, :, :]

    if math.isinf(p):
        op = "max" if p > 0 else "min"
        return when_nan(x, lambda x, nan: extreme(jnp.abs(pairwise(x)), 2, op=op, nan=nan), holds_nan(x * 0))
    if p == 0:  # torch's count, min(ceil(|d|), 1), is NaN where a difference is
        return jnp.sum(jnp.minimum(jnp.ceil(jnp.abs(pairwise(x))), 1), 2)
    return _norm_value(pairwise(x), p, 2, False)


@functools.partial(jax.custom_jvp, nondiff_argnums=(1,))
def _pdist(x: jax.Array, p: float) -> jax.Array:
    """The upper triangle of :func:`_distance_matrix` (twice the arithmetic of the pairs alone,
    but no ``(N (N - 1) / 2, M)`` gather of their differences: 2048x64, 560 -> 45 ms); the
    derivative is :func:`_pdist_jvp`."""
    return upper_triangle(_distance_matrix(x, p))


@_pdist.defjvp
def _pdist_jvp(p, primals, tangents):
    """torch's derivative from each pair's exact difference (exact for close points, where an
    expansion through Gram matrices would cancel), 0 at a zero distance.

    ``p`` in ``0, 1, 2, inf``: on the full matrix, ``dD_ij = g(x_i - x_j) . (t_i - t_j) = R_ij + R_ji``
    with ``R_ij = g(x_i - x_j) . t_i`` (``g``, :func:`_norm_grad`, is odd), recomputed in reverse
    mode (``jax.checkpoint``), whose transpose XLA fuses without an ``(N, N, M)`` array: only
    ``(N, N)`` matrices are stored.  The distances come from :func:`_norm` (``p = 0``: the
    primal's count, whose derivative is 0), whose derivative is finite at the zero diagonal; so
    is ``g``'s there (a sign, a mask, or guarded), also where a row holds an infinity (``inf - inf``
    is NaN, whose sign :func:`sgn` takes as 0).  Other ``p``:
    :func:`_norm`'s rule on the ``(N (N - 1) / 2, M)`` pair differences, which evaluates the power
    ``|d|^(p-1)`` once per pair where the full matrix takes it twice (and its derivative at the
    zero diagonal is infinite).  2048x64 forward+backward, ``p = 1``: 580 -> 300 ms; docs/distance.md."""
    (x,), (t,) = primals, tangents
    n = x.shape[0]
    i, j = np.triu_indices(n, 1)
    if not (p in (0, 1, 2) or math.isinf(p)):
        def pairs(v):
            return jnp.take(v, i, axis=0) - jnp.take(v, j, axis=0)

        return jax.jvp(lambda d: _norm(d, p, 1, False, True), (pairs(x),), (pairs(t),))

    if p == 0:
        d = lax.stop_gradient(_distance_matrix(x, p))[:, :, None]
    else:
        d = _norm(x[:, None, :] - x[None, :, :], p, 2, True, True)

    def tangent_map(x, d, t):
        r = jnp.sum(_norm_grad(x[:, None, :] - x[None, :, :], d, p, 2, True) * t[:, None, :], axis=2)
        return upper_triangle(r + r.T)

    return upper_triangle(d[:, :, 0]), jax.checkpoint(tangent_map)(x, d, t)


@half_in_float32
def normalize(input: Any, p: float = 2.0, dim: int = 1, eps: float = 1e-12, out: Any = None) -> jax.Array:
    """``input / max(||input||_p, eps)`` along ``dim``, as ``torch.nn.functional.normalize``.

    Args:
        input: any shape with at least ``dim + 1`` dims.
        p: the norm degree. Default 2.
        dim: the dimension to normalise. Default 1.
        eps: lower bound of the norm. Default 1e-12.
        out: not supported (JAX arrays are immutable); must be ``None``.

    Shape: unchanged.

    Example:
        >>> import jax.numpy as jnp
        >>> from jaxlayers import functional as F
        >>> F.normalize(jnp.array([[3.0, 4.0]]))
        Array([[0.6, 0.8]], dtype=float32)
    """
    name = "normalize"
    if out is not None:
        raise TypeError(f"{name}: out= is not supported (JAX arrays are immutable); use the returned array")
    x = floating_input(input, name)
    p = _check_p(p, name)
    d = _wrap_dim(dim, x.ndim, name)
    y = x[None] if x.ndim == 0 else x
    n = _norm(y, p, d, True, False)
    r = y / clamp_min(n, float(eps))
    return r[0] if x.ndim == 0 else r


def one_hot(input: Any, num_classes: int = -1) -> jax.Array:
    """One-hot encoding of integer class indices, as ``torch.nn.functional.one_hot``.

    Args:
        input: integer array of class indices (torch's keyword; its docs call it ``tensor``).
        num_classes: number of classes; ``-1`` infers ``max(input) + 1``, which
            needs a concrete array (give ``num_classes`` under ``jit``).

    Shape: ``(*) -> (*, num_classes)``, dtype ``index_dtype()`` (int64 with x64,
    else int32).

    Differences from torch: out-of-range values raise on concrete arrays, as in
    torch; under ``jit`` they cannot be checked and give an all-zero row.

    Example:
        >>> import jax.numpy as jnp
        >>> from jaxlayers import functional as F
        >>> F.one_hot(jnp.array([0, 2]), 3).tolist()
        [[1, 0, 0], [0, 0, 1]]
    """
    name = "one_hot"
    x = jnp.asarray(input)
    if not jnp.issubdtype(x.dtype, jnp.integer):
        raise TypeError(f"{name}: expected an integer tensor of class indices, got dtype {x.dtype}")
    if not _is_int(num_classes):
        raise TypeError(f"{name}: num_classes must be an int, got {num_classes!r}")
    values = concrete(x)
    if num_classes == -1:
        if values is None:
            raise ValueError(
                f"{name}: num_classes=-1 infers the number of classes from the values, which are not known under "
                f"jit/vmap/grad; pass num_classes explicitly (tensor of shape {shape_str(x)})"
            )
        if x.size == 0:
            raise ValueError(f"{name}: cannot infer the number of classes from an empty tensor; pass num_classes")
        num_classes = int(values.max()) + 1
    elif num_classes < 0:
        raise ValueError(f"{name}: num_classes must be -1 or non-negative, got {num_classes}")
    if values is not None and values.size:
        if values.min() < 0:
            raise ValueError(f"{name}: class values must be non-negative, got min {values.min()}")
        if values.max() >= num_classes:
            raise ValueError(f"{name}: class values must be smaller than num_classes={num_classes}, "
                             f"got max {values.max()}")
    return (x[..., None] == jnp.arange(num_classes, dtype=x.dtype)).astype(index_dtype())


def gumbel_softmax(logits: Any, tau: float = 1, hard: bool = False, eps: float = 1e-10, dim: int = -1, *,
                   key: Any = None) -> jax.Array:
    """Gumbel-softmax samples, as ``torch.nn.functional.gumbel_softmax``.

    ``softmax((logits + g) / tau, dim)`` with Gumbel(0, 1) noise
    ``g = jax.random.gumbel(key, logits.shape, logits.dtype)``; with ``hard`` the
    one-hot of its argmax in the forward pass and the soft sample's gradient
    (straight-through: ``y_hard - stop_gradient(y_soft) + y_soft``).

    Args:
        logits: unnormalised log-probabilities, any shape.
        tau: temperature (> 0). Default 1.
        hard: return one-hot samples. Default False.
        eps: unused (deprecated in torch too).
        dim: the category dimension. Default -1.
        key: a ``jax.random`` key (required).

    Shape: unchanged.

    Example:
        >>> import jax
        >>> import jax.numpy as jnp
        >>> from jaxlayers import functional as F
        >>> y = F.gumbel_softmax(jnp.zeros((2, 3)), hard=True, key=jax.random.key(0))
        >>> y.sum(-1).tolist()
        [1.0, 1.0]
    """
    name = "gumbel_softmax"
    if key is None:
        raise ValueError(f"{name}: a PRNG key is required: gumbel_softmax(logits, ..., key=jax.random.key(0))")
    x = _float(logits)
    d = _wrap_dim(dim, x.ndim, name)
    g = jax.random.gumbel(key, x.shape, x.dtype)
    y = jax.nn.softmax((x + g) / tau, axis=d)
    if not hard:
        return y
    idx = jnp.argmax(y, axis=d, keepdims=True)
    y_hard = (jnp.arange(x.shape[d]).reshape((-1,) + (1,) * (x.ndim - 1 - d)) == idx).astype(y.dtype)
    return y_hard - jax.lax.stop_gradient(y) + y
