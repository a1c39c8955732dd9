"""CPU lowerings of the normalisation layers (private).

Two entry points, each taking the reference from
:mod:`jaxlayers.functional.normalization` and returning it unchanged where the
lowering does not apply (setting ``"reference"``, a backend other than CPU):

* :func:`fused_norm` — ``(y, mean, var)`` with moments over trailing axes (layer
  norm; group norm in torch's layout) or leading axes (single-device batch norm
  channels-last or over ``(N, C)``; in torch's layout on the channels-last view,
  :func:`_channel_second`).  The moments are the raw ``E[x]``,
  ``E[x²]`` where they are exact enough, else a shifted one-pass variance
  (:func:`_guarded_moments`); the derivative is torch's analytic formula
  written as a **custom JVP**, so
  forward mode (``jvp``, ``jacfwd``, ``hessian``) works and reverse mode is its
  transpose (one fused reduction pass and one elementwise pass).
* :func:`scale_trailing` — ``y * weight`` for a weight over the trailing dims,
  whose weight gradient (a sum over many leading rows) is a ones-vector product
  (:func:`_sum_over`), because XLA:CPU's column reductions are slow.

Why CPU only: the guard works around XLA:CPU's slow fused subtract-and-reduce
and column reductions; GPUs and TPUs reduce at memory speed and would pay for
the ``lax.cond`` instead.  Both are algorithmic (fewer passes over the data, a
GEMM for a pathological reduction) rather than thresholds tuned to one CPU;
measurements are in docs/normalization.md.
"""

from __future__ import annotations

import functools
import math
from typing import Any, Callable

import jax
import jax.numpy as jnp
from jax import lax

from .._utils import concrete, first_finite
from . import autotune, enabled

Array = jax.Array


def _shifted_moments(x: Array, axes: tuple[int, ...]) -> tuple[Array, Array]:
    """Biased mean and variance over ``axes`` (kept), one pass, numerically stable.

    ``d = x − s`` with a per-slice shift ``s`` (the first element of each slice, or 0 where that
    is not finite: an infinite shift made ``inf − inf`` a NaN mean where torch's is inf),
    ``mean = s + E[d]``, ``var = E[d²] − E[d]²``: the shift removes any common
    offset (``1e4 + N(0, 1)``).  Float32 error of the normalised output vs
    float64 on ``1e4 + N(0, 1)``: 4e-4 to 6e-4 (torch: ~1e-3).
    """
    shift = first_finite(x, axes)
    m = math.prod(x.shape[i] for i in axes)
    d = x - shift
    md = jnp.sum(d, axes, keepdims=True) / m
    var = jnp.maximum(jnp.sum(d * d, axes, keepdims=True) / m - md * md, 0)
    return shift + md, var


# The raw moments E[x], E[x²] are exact enough while the mean is small next to the spread,
# mean² <= 4·var (|mean| <= 2 std): E[x²] − E[x]² loses a factor 1 + mean²/var.  Float32 error of
# the normalised output against float64 with every slice's mean at 1.99 std (just inside the bound),
# 768 to 2**20 elements per slice: LayerNorm 0.8-2.4e-6, BatchNorm 0.6-11e-6 (worst at 768 per
# channel); the shifted form just above it 0.4-2.8e-6, two passes 0.5-1e-6, torch 0.2-1e-6.  The
# bound was 64: 8e-6 to 1.1e-4 at 7.95 std.  (Intel(R) Xeon(R) Processor, XLA's default flags.)
# Beyond the bound, or for NaN or constant slices, the shifted form is used, at about 1.9x the
# forward time.
_RAW_MOMENTS_MAX_MEAN_SQ_OVER_VAR = 4.0


def _guarded_moments(x: Array, axes: tuple[int, ...]) -> tuple[Array, Array]:
    """Biased mean and variance over ``axes`` (kept): the raw moments (two plain
    sums, XLA's fastest reductions), recomputed with :func:`_shifted_moments` when any
    slice has ``mean² > _RAW_MOMENTS_MAX_MEAN_SQ_OVER_VAR · var`` or a variance that is not
    finite (``lax.cond``: one branch runs, except under ``vmap``, where both run and the
    result is selected).  An overflowing ``Σx²`` (values near 1e18 in float32) makes the
    variance infinite, which passed the comparison and normalised every value to 0."""
    m = math.prod(x.shape[i] for i in axes)
    mean = jnp.sum(x, axes, keepdims=True) / m
    var = jnp.maximum(jnp.sum(x * x, axes, keepdims=True) / m - mean * mean, 0)
    ok = jnp.all((mean * mean <= _RAW_MOMENTS_MAX_MEAN_SQ_OVER_VAR * var) & jnp.isfinite(var))
    return lax.cond(ok, lambda: (mean, var), lambda: _shifted_moments(x, axes))


# XLA:CPU sums over leading axes ("column" reductions) slowly when many columns are
# kept: summing (32, 65536) over axis 0 takes ~21 ms, the same sum as a vector-matrix
# product ~0.35 ms (8 rows: 5 ms vs 0.09 ms); below ~16k columns both take well under 1 ms.
_DOT_COLUMN_SUM_MIN = 1 << 14


def _columns_as_product(lead: int, kept: int) -> bool:
    """Whether a sum over ``lead`` leading dims of ``kept`` columns (or its transpose,
    a broadcast over them) is written as a product with a ones vector."""
    return lead > 0 and kept >= _DOT_COLUMN_SUM_MIN


def _sum_over(v: Array, axes: tuple[int, ...]) -> Array:
    """``jnp.sum(v, axes, keepdims=True)``; a sum over many leading rows of wide
    columns is a ``ones @ v`` product instead (see ``_DOT_COLUMN_SUM_MIN``)."""
    k = len(axes)
    if k == 0:
        return v
    kept = math.prod(v.shape[k:])
    if (axes != tuple(range(k)) or not jnp.issubdtype(v.dtype, jnp.floating)
            or not _columns_as_product(k, kept)):
        return jnp.sum(v, axes, keepdims=True)
    rows = math.prod(v.shape[:k])
    total = lax.dot_general(jnp.ones((rows,), v.dtype), v.reshape(rows, kept), (((0,), (0,)), ((), ())),
                            precision=lax.Precision.HIGHEST)
    return total.reshape((1,) * k + v.shape[k:])


def _broadcast_leading(w: Array, shape: tuple[int, ...]) -> Array:
    """``jnp.broadcast_to(w, shape)`` for ``w`` over the trailing dims; where
    :func:`_sum_over` sums with a product, the outer product ``ones ⊗ w``, whose
    transpose (reverse mode) is that product."""
    k = len(shape) - w.ndim
    if not _columns_as_product(k, math.prod(w.shape)):
        return jnp.broadcast_to(w, shape)
    rows = math.prod(shape[:k])
    outer = lax.dot_general(jnp.ones((rows,), w.dtype), w.reshape(-1), (((), ()), ((), ())),
                            precision=lax.Precision.HIGHEST)
    return outer.reshape(shape)


@jax.custom_jvp
def _scale_trailing(y: Array, weight: Array) -> Array:
    return y * weight


@_scale_trailing.defjvp
def _scale_trailing_jvp(primals, tangents):
    y, weight = primals
    dy, dweight = tangents
    return y * weight, dy * weight + y * _broadcast_leading(dweight, y.shape)


def scale_trailing(y: Array, weight: Array, *, reference: Callable[[Array, Array], Array]) -> Array:
    """``y * weight`` (weight over the trailing dims of ``y``): on CPU with a
    custom JVP whose transpose sums the weight gradient as a product."""
    if not enabled("cpu"):
        return reference(y, weight)
    return _scale_trailing(y, weight)


def _trailing_weight(x_shape: tuple[int, ...], pshape: tuple[int, ...]) -> bool:
    """Whether a weight of shape ``pshape`` covers exactly the trailing dims (layer norm)."""
    return len(pshape) < len(x_shape) and tuple(x_shape[len(x_shape) - len(pshape):]) == tuple(pshape)


def _fused_primal(x, weight, bias, eps, axes, pshape):
    """``(y, mean, var)`` with guarded moments, in the statistics dtype ``sdt``."""
    sdt = jnp.promote_types(x.dtype, jnp.float32)
    mean, var = _guarded_moments(x.astype(sdt), axes)
    inv = lax.rsqrt(var + jnp.asarray(eps, sdt))
    y = (x.astype(sdt) - mean) * inv
    if weight is not None:
        y = y * jnp.reshape(weight, pshape).astype(sdt)
    if bias is not None:
        y = y + jnp.reshape(bias, pshape).astype(sdt)
    return y.astype(x.dtype), mean, var


@functools.partial(jax.custom_jvp, nondiff_argnums=(3, 4, 5, 6))
def _fused_norm(x, weight, bias, eps, axes, pshape, reference):
    """Not differentiated: :func:`_fused_primal`, or, when autotuning picks it, the reference.
    XLA:CPU puts the reference's whole norm into one library (YNNPACK) fusion, and the two
    forwards win or lose by shape (Intel Xeon, AVX-512: the fused one takes 0.82x the
    reference's time for LayerNorm (16, 128, 256), 1.16-1.20x at (4096, 768) and (8, 512,
    1024), 0.59x for GroupNorm 16x256x28x28; docs/normalization.md).  Differentiated, the
    fused moments and torch's analytic derivative (:func:`_fused_norm_jvp`) win."""
    present = (weight is not None, bias is not None)

    def call(fn):
        def run(x, *given):
            it = iter(given)
            return fn(x, next(it) if present[0] else None, next(it) if present[1] else None, eps, axes, pshape)
        return run

    arrays = [a for a in (x, weight, bias) if a is not None]
    candidates = {"fused": call(_fused_primal), "reference": call(reference)}
    # timed as used: layer and group norm (trailing axes) return y alone, which lets XLA fuse the
    # reference whole; batch norm's moments also update the running statistics
    rows = axes == tuple(range(x.ndim - len(axes), x.ndim))
    timed = {k: (lambda *a, fn=fn: fn(*a)[0]) if rows else fn for k, fn in candidates.items()}
    choice = autotune.choose(("norm forward", x.shape, str(x.dtype), axes, pshape, present), timed,
                             [(a.shape, a.dtype) for a in arrays], forward_only=True)
    return candidates[choice](*arrays)


def _is_zero(t: Any) -> bool:
    return t is None or isinstance(t, jax.custom_derivatives.SymbolicZero)


def _norm_tangents(eps, axes, pshape, x, weight, bias, mean, var, tangents):
    """torch's analytic derivative as a JVP (linear in the tangents); JAX's
    transpose of it is torch's backward: ``dx = inv·(g·w − E[g·w] − x̂·E[g·w·x̂])``.
    Returns the tangents of ``(y, mean, var)``."""
    dx, dweight, dbias = tangents
    sdt = mean.dtype
    m = math.prod(x.shape[i] for i in axes)
    inv = lax.rsqrt(var + jnp.asarray(eps, sdt))
    xhat = (x.astype(sdt) - mean) * inv
    # a weight constant along the reduced axes (batch norm channels-last) scales in the reduced shape, so the
    # transpose (reverse mode) takes Σg and Σg·x̂ once each, for dx and the weight and bias gradients
    per_slice = weight is not None and all(pshape[i - (x.ndim - len(pshape))] == 1 for i in axes
                                           if i >= x.ndim - len(pshape))
    # per-slice coefficients (reduced shape) of x̂ and of 1 in dy; each is one sum in reverse mode
    slope = shift = None
    if _is_zero(dx):
        dmean = dvar = jnp.zeros_like(mean)
        dy = jnp.zeros(x.shape, sdt)
    else:
        dx = dx.astype(sdt)
        dmean = jnp.sum(dx, axes, keepdims=True) / m
        dxhat_mean = jnp.sum(xhat * dx, axes, keepdims=True) / m
        dvar = 2.0 * dxhat_mean / inv
        if per_slice:
            scale = inv * jnp.reshape(weight, pshape).astype(sdt)
            dy, shift, slope = scale * dx, -scale * dmean, -scale * dxhat_mean
        else:
            dy = inv * (dx - dmean - xhat * dxhat_mean)
            if weight is not None:
                dy = dy * jnp.reshape(weight, pshape).astype(sdt)
    trailing = _trailing_weight(x.shape, pshape)
    if weight is not None and not _is_zero(dweight):
        dw = jnp.reshape(dweight, pshape).astype(sdt)
        if trailing:
            dy = dy + xhat * _broadcast_leading(dw, x.shape)
        else:
            slope = dw if slope is None else slope + dw
    if bias is not None and not _is_zero(dbias):
        db = jnp.reshape(dbias, pshape).astype(sdt)
        if trailing:
            dy = dy + _broadcast_leading(db, x.shape)
        else:
            shift = db if shift is None else shift + db
    if slope is not None:
        dy = dy + xhat * slope
    if shift is not None:
        dy = dy + shift
    return dy.astype(x.dtype), dmean, dvar


def _fused_norm_jvp(eps, axes, pshape, reference, primals, tangents):
    """The primal outputs and :func:`_norm_tangents`, the latter under
    ``jax.checkpoint``: reverse mode then keeps ``x`` and the moments and recomputes
    ``x̂`` in the backward pass (as torch's backward does) instead of storing it,
    which halves the activation memory the norm keeps and lets XLA keep the
    layouts of its neighbours (Transformer LM step 564 -> 382 ms, see
    docs/normalization.md)."""
    x, weight, bias = primals
    y, mean, var = _fused_norm(x, weight, bias, eps, axes, pshape, reference)
    zero = tuple(_is_zero(t) for t in tangents)

    def tangent_map(x, weight, bias, mean, var, *live):
        it = iter(live)
        return _norm_tangents(eps, axes, pshape, x, weight, bias, mean, var,
                              tuple(None if z else next(it) for z in zero))

    live = tuple(t for t, z in zip(tangents, zero) if not z)
    return (y, mean, var), jax.checkpoint(tangent_map)(x, weight, bias, mean, var, *live)


_fused_norm.defjvp(_fused_norm_jvp, symbolic_zeros=True)


def fused_norm(x: Array, weight: Array | None, bias: Array | None, eps: float, axes: tuple[int, ...],
               pshape: tuple[int, ...], *, reference: Callable[..., Any]) -> tuple[Array, Array, Array]:
    """``(y, mean, var)`` of ``(x − mean) · rsqrt(var + eps) · weight + bias`` with the
    biased moments over ``axes`` (kept); ``weight``/``bias`` reshape to ``pshape``.
    Lowered on CPU when ``axes`` are the trailing axes (rows: layer norm, group norm
    in torch's layout), the leading ones (columns: batch norm channels-last and over
    ``(N, C)``) or all but axis 1 (batch norm in torch's layout: the columns of the
    channels-last view, :func:`_channel_second`); other axes run the reference, and so does a
    traced ``eps`` (the custom JVP takes ``eps`` as a constant: its derivative would be 0)."""
    axes = tuple(axes)
    k = len(axes)
    rows, columns = axes == tuple(range(x.ndim - k, x.ndim)), axes == tuple(range(k))
    if not enabled("cpu") or x.size == 0 or concrete(eps) is None:
        return reference(x, weight, bias, eps, axes, pshape)
    if rows or columns:
        return _fused_norm(x, weight, bias, eps, axes, tuple(pshape), reference)
    if x.ndim > 2 and axes == (0,) + tuple(range(2, x.ndim)):
        return _channel_second(x, weight, bias, eps, pshape, reference)
    return reference(x, weight, bias, eps, axes, pshape)


def _channel_second(x, weight, bias, eps, pshape, reference):
    """Batch norm in torch's layout, ``(N, C, *S)`` with the moments over all but ``C``: the
    column lowering on the channels-last view, moved back.  Inside a CNN the view is a bitcast
    of the convolution's output, which XLA:CPU computes channels-last, and the normalised result
    feeds the next convolution as it wants it; over the interleaved axes XLA:CPU relaid the
    activations to NCHW and back around every norm (ResNet-18 training step: 291 -> 88
    relayouts, 1107 -> 834 ms).  A batch norm alone on an array stored NCHW pays the two
    transposes instead (about 2x; docs/normalization.md)."""
    k = x.ndim - 1
    y, mean, var = _fused_norm(jnp.moveaxis(x, 1, -1), weight, bias, eps, tuple(range(k)),
                               (1,) * k + (x.shape[1],), reference)
    return jnp.moveaxis(y, -1, 1), jnp.reshape(mean, pshape), jnp.reshape(var, pshape)
