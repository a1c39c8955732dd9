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
values agree with it up to the order of the float additions, and a non-finite
input reaches the outputs whose taps hold it, and those of the same phase for which
it is a zero-weight slot of a window wider than their taps (the matrix multiplies it by
the zero weights of a whole row; torch reads its taps, but its border-clamped
cubic taps and zero-weight taps give NaN at a few outputs where the taps give inf).

Under differentiation the reference's program runs, value and derivative (a
``custom_jvp``), so a training step is unchanged: with the taps' value and the
matrix's derivative, forward+backward won 1.5-2x at some real sizes and lost
5-15 % at others, and JAX's transpose of the strided slices (one input-sized
padded buffer per tap, which XLA:CPU does not fuse) lost to the matrix's
transpose.  Autotuning, when turned on, measures those variants per shape.
Compile time is bounded: at most :data:`MAX_TAPS` slices per dim, whatever the
input size; other ratios keep the matrix.  The plans are found once per matrix.
"""

from __future__ import annotations

import functools
import math
from typing import Callable, Hashable, NamedTuple, Optional

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from .. import config
from . import autotune, enabled
from .conv import _pad_spatial

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
    needs more than ``max_taps`` slices, or more than the matrix has columns."""
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
    counts = [ph.weights.shape[1] for ph in plan.phases]  # outputs per phase: full, or one fewer
    left = max(0, -min(ph.start for ph in plan.phases))
    right = max(0, max(ph.start + q * (c - 1) + ph.weights.shape[0] for ph, c in zip(plan.phases, counts)) - n_in)
    xp = _pad_spatial(x, [(left, right)], first=axis)  # taps outside the input have zero weights
    full = counts[0]
    ys = []
    for ph, c in zip(plan.phases, counts):
        along = (1,) * axis + (c,) + (1,) * (x.ndim - axis - 1)  # the weights broadcast along axis
        acc = jnp.zeros(x.shape[:axis] + (c,) + x.shape[axis + 1:], x.dtype)
        for k, w in enumerate(ph.weights):
            if w.any():  # a tap of zero weight for every output of the phase is not read
                s = left + ph.start + k
                acc = acc + lax.slice_in_dim(xp, s, s + q * (c - 1) + 1, q, axis) * jnp.asarray(w.reshape(along),
                                                                                               x.dtype)
        ys.append(_pad_spatial(acc, [(0, full - c)], first=axis))
    if len(ys) == 1:
        y = ys[0]
    else:
        y = jnp.stack(ys, axis + 1).reshape(x.shape[:axis] + (full * plan.period,) + x.shape[axis + 1:])
    return lax.slice_in_dim(y, 0, n_out, 1, axis) if y.shape[axis] != n_out else y


def _taps_resize(x: jax.Array, axis: int, n_out: int, plan: PhasePlan, *,
                 reference: Callable[[jax.Array], jax.Array],
                 derivative: Optional[Callable[[jax.Array], jax.Array]]) -> jax.Array:
    """:func:`_phased` as the value; differentiated, ``reference`` gives value and
    tangent (the reference's program) unless ``derivative`` is given: then the value
    stays the taps' and ``derivative`` (a linear map equal to the matrix) is the tangent."""

    @jax.custom_jvp
    def resize(v):
        return _phased(v, axis, plan, n_out)

    @resize.defjvp
    def _(primals, tangents):
        (v,), (t,) = primals, tangents
        if derivative is None:
            return reference(v), reference(t)
        return resize(v), derivative(t)

    return resize(x)


def _transposed_phases(t: jax.Array, axis: int, n_out: int, plan_t: PhasePlan) -> jax.Array:
    """The matrix applied to ``t`` as JAX's transpose of the phased ``m^T`` (``plan_t``),
    so that reverse mode, transposing it back, runs the phased ``m^T``: strided slices
    of the padded cotangent instead of a contraction with the matrix."""
    out = jax.ShapeDtypeStruct(t.shape[:axis] + (n_out,) + t.shape[axis + 1:], t.dtype)
    return jax.linear_transpose(lambda c: _phased(c, axis, plan_t, t.shape[axis]), out)(t)[0]


_PLANS: dict = {}


def _plan(key: Hashable, m: np.ndarray, transposed: bool = False) -> Optional[PhasePlan]:
    """:func:`phase_plan` of ``m`` (or ``m^T``), found once per matrix ``key``."""
    k = (key, transposed)
    if k not in _PLANS:
        if len(_PLANS) >= 1024:
            _PLANS.clear()
        _PLANS[k] = phase_plan(np.ascontiguousarray(m.T) if transposed else m)
    return _PLANS[k]


def resize_axis(x: jax.Array, axis: int, m: np.ndarray, *, key: Hashable,
                reference: Callable[[jax.Array], jax.Array]) -> jax.Array:
    """``reference(x)``: ``x`` resized along ``axis`` by the ``(out, in)`` matrix ``m``,
    which ``key`` (hashable) identifies.

    On CPU with lowerings on, where :func:`phase_plan` finds a short period, the value is
    computed from the taps; under differentiation the reference's program runs (value and
    derivative), so training costs what it cost.  With autotuning on, two more candidates
    are measured (forward + backward) per shape: the taps' value with the matrix's
    derivative, and the taps' value with the phased transpose as derivative
    (:func:`_transposed_phases`).  Against the reference they won 1.5-4x at some shapes
    and lost 5 % to 1.8x at others (AMD EPYC, AVX-512, 2 cores), which is no rule for
    every machine.
    """
    if not enabled("cpu"):
        return reference(x)
    plan = _plan(key, m)
    if plan is None:
        return reference(x)
    taps = functools.partial(_taps_resize, axis=axis, n_out=m.shape[0], plan=plan, reference=reference)
    candidates = {"reference derivative": functools.partial(taps, derivative=None)}
    if config.get_autotune():
        candidates["taps value"] = functools.partial(taps, derivative=reference)
        plan_t = _plan(key, m, transposed=True)
        if plan_t is not None:
            candidates["taps value and derivative"] = functools.partial(
                taps, derivative=functools.partial(_transposed_phases, axis=axis, n_out=m.shape[0], plan_t=plan_t))
    choice = autotune.choose(("interpolate", tuple(x.shape), str(x.dtype), axis, key), candidates,
                             [(x.shape, x.dtype)])
    return candidates[choice](x)
