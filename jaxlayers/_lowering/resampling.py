"""CPU lowering of ``interpolate``'s interpolating modes (private).

The reference (:mod:`jaxlayers.functional.resampling`) resizes each dim with a
dense ``(out, in)`` matrix: ``in`` multiply-adds per output where torch's kernels
read 2 (linear), 4 (cubic) or the filter's support (antialiased) taps.  Where the
sampling positions repeat with a short period, as for integer and other simple
ratios (``x2``, ``x4``, ``/2``, ``align_corners`` between ``n`` and ``k(n-1)+1``),
:func:`resize_axis` computes the value from the taps only (an algorithmic win, on
any machine): output ``p·m + r`` (phase ``r``) reads input ``q·m + a_r + k`` for
``k < K_r``, so each phase is ``K_r`` strided slices times per-output weights,
and the phases interleave.  The weights are the reference matrix's entries, so
values agree with it up to the order of the float additions, and a non-finite input
stays in its taps (as torch) instead of spreading along the row.

Its derivative is the reference's (a ``custom_jvp`` whose tangent is the matrix
contraction), so reverse mode transposes that contraction as before: JAX's
transpose of the strided slices is one input-sized padded buffer per tap, which
XLA:CPU does not fuse, and lost to the matrix's transpose at 224 -> 448 bicubic.
Compile time is bounded: at most :data:`MAX_TAPS` slices per dim, whatever the
input size; other ratios keep the matrix.
"""

from __future__ import annotations

import functools
import hashlib
import math
from typing import Callable, NamedTuple, Optional

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from . import autotune, enabled

# Slices per resized dim (sum over phases of the taps): x2 bilinear needs 4, x4 bicubic 16,
# x8 bilinear 16, antialiased /2 bilinear 5-6, /4 bicubic about 34 (so the matrix).
MAX_TAPS = 32


class _Phase(NamedTuple):
    start: int  # first input tap of the phase's first output (may be < 0 or >= n_in: zero padding)
    weights: np.ndarray  # (taps, outputs of the phase); column j weighs input start + q*j + k


class PhasePlan(NamedTuple):
    """Output ``period * m + r`` reads input ``stride * m + phases[r].start + k``."""

    period: int
    stride: int
    phases: tuple[_Phase, ...]


def _periods(n_in: int, n_out: int) -> list[tuple[int, int]]:
    """Candidate ``(p, q)`` with positions repeating every ``p`` outputs, ``q`` inputs:
    the sizes' ratio (``in / out`` scales) and ``(in - 1) / (out - 1)`` (align_corners)."""
    out = []
    for a, b in ((n_out, n_in), (n_out - 1, n_in - 1)):
        if a > 0 and b > 0:
            g = math.gcd(a, b)
            out.append((a // g, b // g))
    return out


def phase_plan(m: np.ndarray, max_taps: int = MAX_TAPS) -> Optional[PhasePlan]:
    """The cheapest :class:`PhasePlan` reproducing the ``(out, in)`` matrix ``m``
    (every non-zero inside a phase's tap window), or ``None`` when every candidate
    needs more than ``max_taps`` slices or as many as the matrix has columns."""
    n_out, n_in = m.shape
    nz = m != 0
    has = nz.any(1)
    lo = np.where(has, nz.argmax(1), 0)
    hi = np.where(has, n_in - 1 - nz[:, ::-1].argmax(1), 0)
    best, best_taps = None, min(max_taps, n_in) + 1
    for p, q in _periods(n_in, n_out):
        if p > n_out:
            continue
        phases, total = [], 0
        for r in range(p):
            d = np.arange(r, n_out, p)
            base = q * np.arange(len(d))
            live = has[d]
            if live.any():
                start = int((lo[d] - base)[live].min())
                taps = int((hi[d] - base)[live].max()) - start + 1
            else:
                start, taps = 0, 1
            cols = start + base[None, :] + np.arange(taps)[:, None]  # (taps, outputs)
            inside = (cols >= 0) & (cols < n_in)
            w = np.where(inside, m[d[None, :], np.clip(cols, 0, n_in - 1)], 0.0)
            phases.append(_Phase(start, w))
            total += taps
        if total < best_taps:
            best, best_taps = PhasePlan(p, q, tuple(phases)), total
    return best


def _phased(x: jax.Array, axis: int, plan: PhasePlan, n_out: int) -> jax.Array:
    """The phases' tap sums, interleaved along ``axis``."""
    n_in, q = x.shape[axis], plan.stride
    counts = [ph.weights.shape[1] for ph in plan.phases]
    left = max(0, -min(ph.start for ph in plan.phases))
    right = max(0, max(ph.start + q * (c - 1) + ph.weights.shape[0] for ph, c in zip(plan.phases, counts)) - n_in)
    pad = [(0, 0, 0)] * x.ndim
    pad[axis] = (left, right, 0)
    xp = lax.pad(x, jnp.zeros((), x.dtype), pad) if left or right else x
    shape = [1] * x.ndim
    full = counts[0]
    ys = []
    for ph, c in zip(plan.phases, counts):
        shape[axis] = c
        acc = None
        for k, w in enumerate(ph.weights):
            if not w.any():
                continue
            s = left + ph.start + k
            term = lax.slice_in_dim(xp, s, s + q * (c - 1) + 1, q, axis) * jnp.asarray(w.reshape(shape), x.dtype)
            acc = term if acc is None else acc + term
        if acc is None:
            acc = jnp.zeros(x.shape[:axis] + (c,) + x.shape[axis + 1:], x.dtype)
        if c < full:  # the last phases have one output fewer when p does not divide out
            pad[axis] = (0, full - c, 0)
            acc = lax.pad(acc, jnp.zeros((), x.dtype), pad)
        ys.append(acc)
    if len(ys) == 1:
        y = ys[0]
    else:
        y = jnp.stack(ys, axis + 1).reshape(x.shape[:axis] + (full * plan.period,) + x.shape[axis + 1:])
    return lax.slice_in_dim(y, 0, n_out, 1, axis) if y.shape[axis] != n_out else y


def _phased_resize(x: jax.Array, axis: int, m: np.ndarray, plan: PhasePlan,
                   tangent: Callable[[jax.Array], jax.Array]) -> jax.Array:
    """:func:`_phased` with ``tangent`` (a linear map equal to ``m``) as its derivative."""

    @jax.custom_jvp
    def resize(v):
        return _phased(v, axis, plan, m.shape[0])

    @resize.defjvp
    def _(primals, tangents):
        return resize(primals[0]), tangent(tangents[0])

    return resize(x)


def _transposed_phases(t: jax.Array, axis: int, m: np.ndarray, plan_t: PhasePlan) -> jax.Array:
    """``m`` applied to ``t`` as JAX's transpose of the phased ``m^T`` (``plan_t``), so
    that reverse mode, transposing it back, runs the phased ``m^T``: strided slices of
    the padded cotangent instead of a contraction with the matrix."""
    out = jax.ShapeDtypeStruct(t.shape[:axis] + (m.shape[0],) + t.shape[axis + 1:], t.dtype)
    return jax.linear_transpose(lambda c: _phased(c, axis, plan_t, m.shape[1]), out)(t)[0]


def resize_axis(x: jax.Array, axis: int, m: np.ndarray, *,
                reference: Callable[[jax.Array], jax.Array]) -> jax.Array:
    """``reference(x)``: ``x`` resized along ``axis`` by the ``(out, in)`` matrix ``m``.

    On CPU with lowerings on, the value is computed from the taps where
    :func:`phase_plan` finds a short period.  Its derivative is the reference's
    contraction; with autotuning on, the phased transpose (:func:`_transposed_phases`)
    is measured against it for each shape: it won 2-4x when downsampling or at
    3 x 224 x 224 -> 448 and lost 1.3-1.8x at 64 x 56 x 56 -> 112 / 224 (AMD EPYC,
    AVX-512, 2 cores), which is no rule for every machine.
    """
    if not enabled("cpu"):
        return reference(x)
    plan = phase_plan(m)
    if plan is None:
        return reference(x)
    candidates = {"matrix derivative": functools.partial(_phased_resize, axis=axis, m=m, plan=plan,
                                                         tangent=reference)}
    plan_t = phase_plan(np.ascontiguousarray(m.T))
    if plan_t is not None:
        candidates["phased derivative"] = functools.partial(
            _phased_resize, axis=axis, m=m, plan=plan,
            tangent=functools.partial(_transposed_phases, axis=axis, m=m, plan_t=plan_t))
    key = ("interpolate", tuple(x.shape), str(x.dtype), axis, hashlib.sha1(m.tobytes()).hexdigest()[:16])
    return candidates[autotune.choose(key, candidates, [(x.shape, x.dtype)])](x)
