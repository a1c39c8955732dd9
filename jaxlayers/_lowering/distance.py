"""CPU lowering of ``pdist`` with ``p = 2`` (private).

The reference (:func:`jaxlayers.functional.distance._pdist`) reduces every
pair's exact difference, ``sum_m (x_im - x_jm)**2``, and its derivative sums
``A_ij (x_i - x_j)`` over ``j``: ``N**2 M`` elementwise operations in XLA:CPU's
fused reductions, the backward's over the middle axis of ``(N, N, M)``.
2048x64 took 30-37 ms forward and 320-340 ms forward + backward where torch
takes 5-8 and 22-34.

:func:`pdist` computes the same distances from GEMMs (an algorithmic win on
any CPU: the ``N**2 M`` multiply-adds go to the matrix unit):
``D_ij**2 = |c_i|**2 + |c_j|**2 - 2 c_i.c_j`` on the centred rows
``c = x - mean(x)`` (a common offset does not change a difference), and its
derivative ``dD_ij = (s_i + s_j - c_i.t_j - t_i.c_j) / D_ij`` with
``s_i = c_i.t_i`` (two GEMMs, no matrix transpose: XLA:CPU's 2048x2048
transpose alone took 38 ms).  The expansion cancels where a pair is close
next to the rows' norms, so it is kept only where a pair is **separated**:
``D_ij**2 >= (|c_i|**2 + |c_j|**2) / 4``, which bounds its rounding error to
about 8 times the exact form's.  A pair that is not (a duplicated or
near-duplicated row) takes its distance from its exact difference, as long as
each row has at most one such partner.  Otherwise (clusters of close points,
NaN or infinite values) the reference runs.  A ``lax.switch`` picks the form
(under ``vmap``, the batch's most general one for every element,
:func:`jaxlayers._lowering.batch_max`); JAX differentiates it, the patched and reference forms
under ``jax.checkpoint`` (:func:`pdist`).
2048x64: 6.6-9 ms forward, 29-31 ms forward + backward (torch 5-7 and 22-25; a
duplicated row 9.5-11 and 36-47; Intel Xeon, AVX-512, 2 cores; docs/distance.md).
"""

from __future__ import annotations

from typing import Callable

import jax
import jax.numpy as jnp
from jax import lax

from .._utils import upper_triangle
from . import batch_max, enabled

Array = jax.Array

_HIGHEST = lax.Precision.HIGHEST

# every pair i < j must have D_ij**2 >= _MIN_SEPARATION * (|c_i|**2 + |c_j|**2) for the GEMM form
_MIN_SEPARATION = 0.25


def _centred(x: Array) -> Array:
    """``x - mean(x)``, the mean reduced from ``x / N``.  The expansions below cancel exactly only
    if every term reads the same centred rows: from ``jnp.mean`` (a sum times ``1 / N``) XLA:CPU
    fused the product into each consumer, where LLVM contracted it with the subtraction into one
    ``fma`` at some uses and not at others (1-column rows at an offset of 1e6 in float32 had
    distances off by 0.015 and gradients by 0.02).  A reduction's output is one value for all."""
    return x - jnp.sum(x * (1 / x.shape[0]), 0, keepdims=True)


def _squared_distances(x: Array) -> tuple[Array, Array]:
    """``(|c_i|**2 + |c_j|**2, D_ij**2)`` of the centred rows ``c``, the squared distances from
    their Gram matrix: ``|c_i|**2 + |c_j|**2 - 2 c_i.c_j``."""
    c = _centred(x)
    sq = jnp.sum(c * c, 1)
    total = sq[:, None] + sq[None, :]
    return total, total - 2 * lax.dot(c, c.T, precision=_HIGHEST)


def _distances(d2: Array) -> Array:
    """``sqrt(D**2)`` with the diagonal exactly zero."""
    eye = jnp.eye(d2.shape[0], dtype=bool)
    return jnp.where(eye, jnp.zeros((), d2.dtype), jnp.sqrt(jnp.maximum(d2, 0)))


@jax.custom_jvp
def _gram_distances(x: Array) -> Array:
    """``(N, N)`` Euclidean distances of the rows of ``x`` from the Gram matrix of the centred
    rows, ``|c_i|**2 + |c_j|**2 - 2 c_i.c_j``; the diagonal is exactly zero."""
    return _distances(_squared_distances(x)[1])


@_gram_distances.defjvp
def _gram_distances_jvp(primals, tangents):
    """``dD_ij = (c_i - c_j).(t_i - t_j) / D_ij`` expanded into GEMMs, 0 at a zero distance;
    recomputed in reverse mode (``jax.checkpoint``), so only ``(N, N)`` matrices are kept."""
    (x,), (t,) = primals, tangents
    d = _gram_distances(x)

    def tangent(c, d, t):
        s = jnp.sum(c * t, 1)
        cross = lax.dot(c, t.T, precision=_HIGHEST) + lax.dot(t, c.T, precision=_HIGHEST)
        inv = jnp.where(d != 0, 1 / jnp.where(d != 0, d, 1), jnp.zeros((), d.dtype))
        return (s[:, None] + s[None, :] - cross) * inv

    return d, jax.checkpoint(tangent)(_centred(x), d, _centred(t))


def _near(total: Array, d2: Array) -> Array:
    """``(N, N)`` from :func:`_squared_distances`: the pairs ``i != j`` that are not separated,
    ``D_ij**2 < (|c_i|**2 + |c_j|**2) / 4``.  Where they are, the GEMM form's rounding error of
    ``D_ij**2``, about ``2 eps (|c_i|**2 + |c_j|**2)``, is at most ``8 eps D_ij**2``.  A NaN or
    infinite value makes its column's mean, so the centred rows and the distances, NaN, and NaN
    fails the comparison: near.  So is a pair whose squared norms overflow (``total`` infinite,
    where ``inf >= inf`` would pass)."""
    far = (d2 >= _MIN_SEPARATION * total) & jnp.isfinite(total)
    return ~(far | jnp.eye(d2.shape[0], dtype=bool))


def _exact_distances(x: Array, partner: Array) -> Array:
    """``|x_i - x_partner[i]|`` from the difference itself, with derivative 0 at a zero distance
    (torch's)."""
    diff = x - x[partner]
    s = jnp.sum(diff * diff, 1)
    zero = s == 0
    return jnp.where(zero, jnp.zeros((), x.dtype), jnp.sqrt(jnp.where(zero, jnp.ones((), x.dtype), s)))


@jax.custom_jvp
def _gram_pairs(x: Array, pairs: Array) -> Array:
    """``pairs``, the upper triangle of :func:`_gram_distances` ``(x)`` computed by the caller
    without a derivative, with the derivative in ``x`` (``pairs``' own tangent is zero: it comes
    from ``stop_gradient(x)``).  One GEMM then serves the guard and the values, and the derivative
    runs only inside the form that uses it (recomputing the Gram matrix there)."""
    return pairs


@_gram_pairs.defjvp
def _gram_pairs_jvp(primals, tangents):
    (x, pairs), (t, _) = primals, tangents
    return _gram_pairs(x, pairs), upper_triangle(jax.jvp(_gram_distances, (x,), (t,))[1])


def _partners(near: Array) -> tuple[Array, Array]:
    """``(count, partner)``: each row's number of near partners (:func:`_near`) and, where it has
    one, that partner, as one product (XLA:CPU's integer row sums materialise and tree-reduce);
    exact in float32 to 2**24 rows."""
    n = near.shape[0]
    columns = jnp.stack([jnp.ones(n, jnp.float32), jnp.arange(n, dtype=jnp.float32)], 1)
    sums = lax.dot(near.astype(jnp.float32), columns, precision=_HIGHEST)
    return sums[:, 0].astype(jnp.int32), sums[:, 1].astype(jnp.int32)


_SEPARATED, _PATCHED, _REFERENCE = 0, 1, 2


def _classify(near: Array) -> tuple[Array, Array]:
    """``(case, partner)``: the form that computes the distances, the GEMM form where no pair is
    near, the patched one where each row has at most one near partner (``partner``, else 0),
    else the reference.  The partners are counted only when some pair is near (a ``lax.cond``).
    Rounding can make the Gram matrix, so ``near``, slightly asymmetric; a pair then near from
    one side only is on the separation bound, where the GEMM form is still accurate."""
    def some_near(near):
        count, partner = _partners(near)
        return jnp.where(jnp.all(count <= 1), _PATCHED, _REFERENCE), partner

    def none_near(near):
        return jnp.asarray(_SEPARATED), jnp.zeros(near.shape[0], jnp.int32)

    return lax.cond(jnp.any(near), some_near, none_near, near)


def _patch(x: Array, pairs: Array, partner: Array) -> Array:
    """``pairs`` with each row's near pair (row ``a`` and ``partner[a] > a``) recomputed from its
    exact difference; rows without one (partner 0) write nowhere."""
    n = x.shape[0]
    a = jnp.arange(n, dtype=jnp.int32)
    # pair (a, b), a < b, sits at a (2n - a - 1) / 2 + b - a - 1 of the row-major upper triangle
    k = jnp.where(a < partner, a * (2 * n - a - 1) // 2 + partner - a - 1, n * (n - 1) // 2)
    return pairs.at[k].set(_exact_distances(x, partner), mode="drop")


def pdist(x: Array, p: float, *, reference: Callable[[Array, float], Array]) -> Array:
    """``reference(x, p)``, the upper triangle of the distance matrix of the rows of ``x``
    ``(N, M)``, from GEMMs for ``p = 2`` in float32/float64 where the rows are separated (each
    near pair, at most one per row, from its exact difference).

    A ``lax.switch`` picks the form; JAX differentiates it.  The patched and reference forms run
    under ``jax.checkpoint``, so reverse mode keeps their input alone: differentiated as they
    are, the untaken forms' ``(N, N)`` residuals were stored, zero-filled (2048x64 forward +
    backward 33 -> 29-31 ms).  The GEMM form's pairs are computed once, beside the test, without
    a derivative, and handed to the first two forms, which attach it (:func:`_gram_pairs`):
    differentiated outside the switch, the GEMM form's derivative ran whatever form was taken, and
    its NaNs (an infinite input) reached every gradient through a zero cotangent.  Their triangle
    is taken outside the switch: taken inside a branch, XLA:CPU's forward ran 7.5 -> 14 ms."""
    if (p != 2 or x.shape[0] < 2 or x.dtype not in (jnp.float32, jnp.float64)
            or not enabled("cpu")):
        return reference(x, p)
    total, d2 = _squared_distances(lax.stop_gradient(x))
    case, partner = _classify(_near(total, d2))

    def patched(x, pairs, partner):
        return _patch(x, _gram_pairs(x, pairs), partner)

    forms = [lambda x, pairs, partner: _gram_pairs(x, pairs), jax.checkpoint(patched),
             jax.checkpoint(lambda x, pairs, partner: reference(x, p))]
    return lax.switch(batch_max(case), forms, x, upper_triangle(_distances(d2)), partner)
