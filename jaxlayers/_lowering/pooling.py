"""CPU lowerings of the pooling family (private).

Each entry point takes the reference implementation from
:mod:`jaxlayers.functional.pooling` and returns ``reference(...)`` unless
:func:`jaxlayers._lowering.enabled` says ``"cpu"`` and the case is covered.
What they compute equals the reference (values, indices, every derivative
mode) up to rounding and two bit-level details: average and LP pooling sum
overlapping windows one dim at a time (float rounding differs in the last bits);
a max whose window holds a zero of both signs may give +0.0 where torch gives its
first, and a window with several NaNs gives one of them, not necessarily torch's
last (under differentiation adaptive max pooling returns the reference's values,
torch's bits).  Compile time does not grow with the input
size: loops run over window taps and spatial dims only.

* :func:`max_pool` — on the channels-last view (torch's layout moved there and back,
  as :func:`jaxlayers._lowering.norm._channel_second` for batch norm); the values
  are one strided slice per tap where windows do not overlap, else one
  ``reduce_window`` max per spatial dim (separable; compiles and runs faster than
  the taps unrolled); the derivative reads the tangent through stride phases, so
  JAX's transpose of it (the gradient) is one pass per phase instead of one
  interior-padded, input-sized array per window tap (an algorithmic saving:
  ``prod(kernel)`` input-sized buffers fewer), at the tap found by a search that
  compares every tap with the final maximum only, its NaN pass under a ``lax.cond``.
  Indices asked for, not differentiated: the reference's single pass.
* :func:`adaptive_max_pool` — the values as a plain ``max`` over each dim's bins,
  outermost dim first, bins that do not tile the dim an elementwise ``max`` folded over
  their slots (one gather of ``out`` positions per slot, in a loop);
  torch's index (asked for, or in the derivative) as a search, dim by dim, for
  the first slot holding each bin's maximum (or its last NaN), instead of the
  reference's ``(value, index)`` reduction.
* :func:`window_sum` (average and LP pooling) — the sums as the maxima above,
  and the same stride-phase tangent.
* :func:`adaptive_avg_pool` — bins that do not tile their dim averaged by a product
  with the ``(out, in)`` averaging matrix, per dim, on finite input.

The one-GEMM (Kronecker) adaptive average that used to live here no longer
beat the per-dim contractions and was dropped (docs/pooling.md).

docs/pooling.md records what each wins, measured against the reference.
"""

from __future__ import annotations

import functools
import itertools
import math
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from .._utils import bins_tile, extreme, holds_nan, index_dtype, lowest_value, when_nan
from . import batch_max, enabled

# ----------------------------------------------------------------------------- shared

# The window code below unrolls one slice (and select) per tap, and XLA:CPU's compile time
# grows with it: a global MaxPool2d over 14x14 compiled forward+backward in 10 s, over 28x28
# in 80 s.  Larger windows take the bins path (max pooling, as adaptive max pooling: a gather
# per spatial dim) or the reference's ``reduce_window`` (sums).
MAX_UNROLLED_TAPS = 49


def _phase_elements(t: jax.Array, win: Any) -> list:
    """The window taps of ``t`` padded with zeros (as ``win.elements``), read
    through stride phases so that JAX transposes them into a fast gradient.

    The padded input reshaped to ``(.., q, s, ..)`` holds position ``q * s + r``
    at ``[q, r]``, so tap ``e`` of output ``j`` is phase ``e % s`` at
    ``j + e // s``: a unit-stride slice.  The transpose is, per phase, a sum of
    shifted copies of the cotangent, and the phases are concatenated (one
    pass); the transpose of strided slices is an interior-padded, input-sized
    array per tap.
    """
    n, (k, s, p, d) = len(win.k), (win.k, win.s, win.p, win.d)
    N, C = win.batch_channels(t)
    spatial = win.spatial(t)
    lp = [spatial[i] + sum(win.pads[i]) for i in range(n)]
    q = [max(-(-lp[i] // s[i]), win.outs[i] + (k[i] - 1) * d[i] // s[i]) for i in range(n)]
    tp = jnp.pad(t, win.full([(p[i], q[i] * s[i] - spatial[i] - p[i]) for i in range(n)], (0, 0), (0, 0)))
    tp = tp.reshape(win.full([a for i in range(n) for a in (q[i], s[i])], N, C))
    # phase dims first, then the layout with each spatial dim replaced by its quotient
    first = win.axis(0)
    quotients = win.full([first + 2 * i for i in range(n)], 0, 1 + 2 * n if win.last else 1)
    tp = jnp.transpose(tp, tuple(first + 1 + 2 * i for i in range(n)) + quotients)
    # One split per phase dim (its transpose is a concatenation: each input
    # element's gradient then sums only its own phase's contributions).
    phases = [tp]
    for i in range(n):
        phases = [part for ph in phases for part in lax.split(ph, (1,) * s[i], axis=i)]
    phases = dict(zip(itertools.product(*[range(si) for si in s]), (ph.reshape(tp.shape[n:]) for ph in phases)))
    values = []
    for off in win.offsets():
        e = [o * di for o, di in zip(off, d)]
        lo = tuple(ei // si for ei, si in zip(e, s))
        ph = phases[tuple(ei % si for ei, si in zip(e, s))]
        values.append(lax.slice(ph, win.full(lo, 0, 0), win.full([a + o for a, o in zip(lo, win.outs)], N, C)))
    return values


# ----------------------------------------------------------------------------- max pool


def max_pool(x: jax.Array, win: Any, return_indices: bool, *, reference: Callable) -> Any:
    """``reference(x, win, return_indices)`` (max pooling, torch's values,
    indices and gradient rule), faster on CPU."""
    if not enabled("cpu"):
        return reference(x, win, return_indices)
    if win.last:
        return _max_and_index(x, win, reference) if return_indices else _max_values(x, win)
    # torch's layout: pool the channels-last view.  In a CNN the pool's input is a convolution's
    # output, which XLA:CPU computes channels-last, so the view is a bitcast and the next
    # convolution reads the result as it wants it; pooled as NCHW, the result and the layers
    # after it were relaid (ResNet-18 eval 135 -> 121 ms; alone on an NCHW-stored array the two
    # transposes cost 1.1-1.3x, docs/pooling.md).  Indices are per plane, the same in either layout.
    out = max_pool(jnp.moveaxis(x, 1, -1), win._replace(last=True), return_indices, reference=reference)
    return jax.tree.map(lambda a: jnp.moveaxis(a, -1, 1), out)


@functools.partial(jax.custom_jvp, nondiff_argnums=(1, 2))
def _max_and_index(x: jax.Array, win: Any, reference: Callable) -> tuple[jax.Array, jax.Array]:
    """Values and torch's indices of a channels-last ``x`` by the reference's single pass over
    the taps (a select of ``(value, index)`` per tap).  Computing the maxima first and then
    searching the taps for them (:func:`_argmax_taps`) ran that forward 1.3-3x slower
    (MaxPool2d(3, 2, 1) with indices on 8x112x112x64: 13.6 against 4.3 ms; Intel Xeon,
    AVX-512), but it is what the derivative uses: the reference's derivative is a scatter at
    the indices, the search's reads the tangent through stride phases (as
    :func:`_max_values_jvp`; forward+backward at 32x64x32x32 14 -> 9 ms).  Decoding the tap
    from the reference's index instead let XLA fuse the reference's pass, and integer
    divisions, into the gradient's (15 ms)."""
    return reference(x, win, True)


@_max_and_index.defjvp
def _max_and_index_jvp(win, reference, primals, tangents):
    """The maxima, torch's tap found for them (:func:`_argmax_taps`), its flat index, and the
    tangent read through stride phases at that tap (channels-last ``x``)."""
    (x,), (tx,) = primals, tangents
    best, taps, tangent = _max_tangent(x, tx, win)
    # torch's index: the flat index of the window tap torch's loop ends on
    itype = index_dtype()
    spatial = win.spatial(x)
    fs = [int(math.prod(spatial[i + 1:])) for i in range(len(win.k))]
    flats = [jnp.full(taps.shape, sum(o * di * f for o, di, f in zip(off, win.d, fs)), itype)
             for off in win.offsets()]
    shift = lax.select_n(taps, *flats) if len(flats) > 1 else flats[0]
    base = sum(win.bcast(start * f, i) for i, (start, f) in enumerate(zip(win.starts(), fs)))
    return (best, jnp.asarray(base, itype) + shift), (tangent, np.zeros(taps.shape, jax.dtypes.float0))


def _window_reduce(x: jax.Array, win: Any, init: Any, op: Callable) -> jax.Array:
    """``op`` (``lax.max`` or ``lax.add``, both separable) over every window.

    Windows that do not overlap (``kernel <= stride``, no dilation: every input
    element is read at most once, which nothing beats), or a window over one dim
    only (nothing to separate): one strided slice per tap, folded with ``op``.
    Otherwise one ``lax.reduce_window`` per spatial dim, which XLA:CPU compiles and
    runs faster than the taps unrolled (the stem's MaxPool2d(3, 2, 1) on
    4x112x112x64: compile 0.18 -> 0.04 s, forward 1.7 -> 1.0 ms; MaxPool2d(2) at
    32x64x32x32 stays 0.3-0.4 ms as taps, 1.0 ms per dim).  Cropped to the output
    sizes."""
    init = np.array(init, x.dtype)  # a NumPy init: JAX emits its reduce_window_max / _sum
    disjoint = all(k <= s and (d == 1 or k == 1) for k, s, d in zip(win.k, win.s, win.d))
    if disjoint or sum(k > 1 for k in win.k) < 2:
        taps = win.elements(win.pad(x, init))
        out = taps[0]
        for v in taps[1:]:
            out = op(out, v)
        return out
    out = x
    for i in range(len(win.k)):
        if win.k[i] == 1 and win.s[i] == 1 and win.pads[i] == (0, 0):
            continue
        axis = win.axis(i)

        def along(value, default):
            return tuple(value if a == axis else default for a in range(x.ndim))

        out = lax.reduce_window(out, init, op, along(win.k[i], 1), along(win.s[i], 1),
                                along(win.pads[i], (0, 0)), window_dilation=along(win.d[i], 1))
    return out[win.full([slice(0, o) for o in win.outs], slice(None), slice(None))]


@functools.partial(jax.custom_jvp, nondiff_argnums=(1,))
def _max_values(x: jax.Array, win: Any) -> jax.Array:
    """The window maxima (:func:`_window_reduce` with ``lax.max``).  Padding holds
    the lowest value.  A NaN in a window gives a NaN because XLA's ``max``
    propagates NaN (a fast-min-max XLA flag would break that, and the index search
    with it).  Bit-level differences from torch: a zero maximum of both signs may
    be +0.0 where torch keeps its first, and of several NaNs any may come out; the
    derivative follows torch's pick."""
    return _window_reduce(x, win, lowest_value(x.dtype), lax.max)


@_max_values.defjvp
def _max_values_jvp(win, primals, tangents):
    (x,), (tx,) = primals, tangents
    best, _, tangent = _max_tangent(x, tx, win)
    return best, tangent


def _max_tangent(x: jax.Array, tx: jax.Array, win: Any) -> tuple[jax.Array, jax.Array, jax.Array]:
    """``(maxima, torch's tap for each, the tangent read at that tap through stride phases)``."""
    best = _max_values(x, win)
    taps = _argmax_taps(x, best, win)
    phases = _phase_elements(tx, win)
    return best, taps, (lax.select_n(taps, *phases) if len(phases) > 1 else phases[0])


def _argmax_taps(x: jax.Array, best: jax.Array, win: Any) -> jax.Array:
    """Tap number (in ``win.offsets()`` order) of torch's pick given the
    maximum ``best``: the first element equal to it (``==``, so -0.0 and +0.0
    tie, as in torch's loop), or the last NaN; a window of
    only the lowest value picks its first element inside the input.

    Select chains compare with the final maximum only (a chain through the
    intermediate maxima would be recomputed by XLA for the second output): in
    reverse a match overrides, so the first match wins; then in order a NaN
    overrides, so the last NaN wins.  The NaN pass (half the cost) runs under a
    ``lax.cond`` only when some maximum is NaN; the cond also keeps XLA from
    fusing this search into the gradient's pass, which then redid it for every
    input element (MaxPool2d(3, 2, 1) on 32x64x32x32: 37-45 ms instead of 11)."""
    keys = [jnp.asarray(t, jnp.int32) for t in range(len(win.offsets()))]

    def pick(src, best, with_nan):
        values = win.elements(src)
        out = jnp.zeros(best.shape, jnp.int32)
        for key, v in reversed(list(zip(keys, values))):
            out = jnp.where(v == best, key, out)
        for key, v in zip(keys, values) if with_nan else ():
            out = jnp.where(v != v, key, out)
        return out

    src = win.pad(x, lowest_value(x.dtype))
    some_nan = jnp.any(best != best) if jnp.issubdtype(best.dtype, jnp.inexact) else None
    taps = when_nan((src, best), lambda a, nan: pick(*a, nan), some_nan)
    return jnp.where(best == lowest_value(x.dtype), jnp.asarray(win.first_tap()), taps)


# ----------------------------------------------------------------------------- adaptive max pool


def adaptive_max_pool(x: jax.Array, outs: tuple, return_indices: bool, *, bin_elements: Callable,
                      reference: Callable, steps: tuple | None = None) -> Any:
    """``reference(x, outs)`` is ``(values, indices)`` (torch's pick by a
    ``(value, index)`` reduction); on CPU the values are a plain ``max`` and the
    indices (asked for, or for the derivative) a search for that maximum.

    ``bin_elements(v, i, out, fill)`` lays out the bins of spatial dim ``i`` (its
    ``out`` axis followed by a slot axis, slots past a bin's end holding ``fill``);
    slot ``j`` of a bin is its first element plus ``j * steps[i]`` (default 1; a
    dilated max pool window's dilation)."""
    if not enabled("cpu") or x.size == 0 or 0 in outs:
        values, indices = reference(x, outs)
        return (values, indices) if return_indices else values
    steps = tuple(steps or (1,) * len(outs))
    if return_indices:
        index = _adaptive_argmax(lax.stop_gradient(x), outs, bin_elements, steps)
        return _read_at(x, index), index
    return _adaptive_max_values(x, outs, bin_elements, steps)


# slots read per iteration of :func:`_slot_max`'s loop; the slot count is padded to a multiple
_SLOT_UNROLL = 8


def _slot_max(v: jax.Array, ax: int, sel: np.ndarray, inside: np.ndarray) -> jax.Array:
    """The maxima over the bins of the ``(out, K)`` static index table ``sel`` (mask ``inside``)
    along axis ``ax`` (which becomes ``out``), an elementwise ``max`` folded over the slots:
    slot ``j`` reads position ``sel[:, j]`` of every bin (a bin's first element once past its
    end: ``max`` is idempotent), one gather of ``out`` positions.  A ``while_loop`` over chunks
    of ``_SLOT_UNROLL`` slots (padded with repeats of the first), so the program does not grow
    with the bins' width, and no ``(out, K)`` array of bins is built.  An elementwise ``max``
    propagates NaN.  Not reverse-differentiable (a ``while_loop``): it computes a custom JVP's
    primal."""
    rows = np.where(inside, sel, sel[:, :1]).T
    rows = jnp.asarray(np.concatenate([rows, np.repeat(rows[:1], -len(rows) % _SLOT_UNROLL, 0)]).astype(np.int32))

    def chunk(state):
        c, acc = state
        for u in range(_SLOT_UNROLL):
            acc = lax.max(acc, v.at[(slice(None),) * ax + (rows[c * _SLOT_UNROLL + u],)].get(mode="promise_in_bounds"))
        return c + 1, acc

    init = jnp.full(v.shape[:ax] + (sel.shape[0],) + v.shape[ax + 1:], lowest_value(v.dtype), v.dtype)
    chunks = rows.shape[0] // _SLOT_UNROLL
    return lax.while_loop(lambda state: state[0] < chunks, chunk, (jnp.int32(0), init))[1]


def _bin_maxima(x: jax.Array, outs: tuple, bin_elements: Callable, flag: Any = False) -> list:
    """``[x, m_(n-1), ..., m_0]``: the maxima over each adaptive bin, one spatial dim at a
    time, innermost first (``m_0`` is the pool's values; NaN propagates: :func:`extreme`)."""
    lowest = np.array(lowest_value(x.dtype), x.dtype)

    def maxima(x, nan):
        out = [x]
        for i in reversed(range(len(outs))):
            out.append(extreme(bin_elements(out[-1], i, outs[i], lowest), 2 + i + 1, nan=nan))
        return out

    return when_nan(x, maxima, flag)


def _read_at(v: jax.Array, index: jax.Array) -> jax.Array:
    """``v`` (N, C, *S) read at flat spatial indices ``index`` (N, C, *outs)."""
    n, c = v.shape[:2]
    flat = jnp.take_along_axis(v.reshape(n, c, -1), index.reshape(n, c, -1), axis=2)
    return flat.reshape(index.shape)


def _adaptive_argmax(x: jax.Array, outs: tuple, bin_elements: Callable, steps: tuple) -> jax.Array:
    """torch's flat spatial index of each bin's maximum: the first element in row-major
    order equal to it (``==``: -0.0 and +0.0 tie, as in torch's loop; a bin of only the
    lowest value picks its first element), or the last NaN.

    Separable, innermost dim first, as the values: along a dim, the first slot of each
    bin that holds the bin's maximum of the maxima so far (the last NaN), whose flat
    offset into the dims already done is carried along.  Row-major first is
    lexicographic, so the first row holding the maximum and the first column of that row
    is torch's pick.  The maxima are computed first and the search in a ``lax.cond``
    (:func:`when_nan`): fused with the maxima, XLA:CPU ran both 3-4x slower.  This
    replaces the reference's ``(value, index)`` reduction, which XLA:CPU runs slowly
    (AdaptiveMaxPool2d((7, 7)) on 32x64x33x17: 4.5-4.9 ms for the pairs against 2.0
    for the values)."""
    spatial, itype = x.shape[2:], index_dtype()
    lowest = np.array(lowest_value(x.dtype), x.dtype)
    zero = np.array(0, itype)
    flag = holds_nan(x)
    maxima = _bin_maxima(x, outs, bin_elements, flag)

    def search(maxima, nan):
        offset = None  # the pick's flat offset into the dims done so far
        for step, i in enumerate(reversed(range(len(outs)))):
            ax = 2 + i + 1  # the slot axis of the bins along spatial dim i
            bins, m = bin_elements(maxima[step], i, outs[i], lowest), jnp.expand_dims(maxima[step + 1], ax)
            pick = jnp.argmax(bins == m, axis=ax).astype(itype)
            if nan:
                slot = lax.broadcasted_iota(itype, bins.shape, ax)
                pick = jnp.where(jnp.squeeze(m != m, ax),
                                 jnp.max(jnp.where(bins != bins, slot, -1), axis=ax), pick)
            positions = lax.broadcasted_iota(itype, (1,) * (2 + i) + (spatial[i],), 2 + i)
            start = bin_elements(positions, i, outs[i], zero)[..., 0]  # each bin's first position
            new = (start.reshape(start.shape + (1,) * (bins.ndim - 1 - ax)) + pick * steps[i]) \
                * math.prod(spatial[i + 1:])
            if offset is not None:
                carried = bin_elements(offset, i, outs[i], zero)
                new = new + jnp.take_along_axis(carried, jnp.expand_dims(pick, ax), axis=ax).squeeze(ax)
            offset = new
        return offset

    return when_nan(maxima, search, flag)


@functools.partial(jax.custom_jvp, nondiff_argnums=(1, 2, 3))
def _adaptive_max_values(x: jax.Array, outs: tuple, bin_elements: Callable, steps: tuple) -> jax.Array:
    """The bin maxima, one spatial dim at a time, outermost first:
    reducing the innermost (contiguous) dim first, over the whole input, ran 1.7-2.3x
    slower.  Bins that do not tile the dim are read slot by slot (:func:`_slot_max`), an
    elementwise ``max`` that propagates NaN by itself; tiling bins are reduced (NaN put back by
    :func:`when_nan`; the same bit-level caveats as :func:`_max_values`).
    AdaptiveMaxPool2d((7, 7)) forward, Intel Xeon (AVX-512): 32x64x33x17 2.5 -> 0.8 ms,
    8x64x225x225 54 -> 6.5 ms (torch 2.7 and 16).  The derivative reads the tangent at
    torch's pick (:func:`_adaptive_argmax`)."""
    tables = [bin_elements.table(i) for i in range(len(outs))]
    lowest = np.array(lowest_value(x.dtype), x.dtype)

    def maxima(x, nan):
        for i, (sel, inside) in enumerate(tables):
            if bins_tile(sel, inside):
                x = extreme(bin_elements(x, i, outs[i], lowest), 2 + i + 1, nan=nan)
            else:
                x = _slot_max(x, 2 + i, sel, inside)
        return x

    # the slot folds propagate NaN themselves; a reduction over tiling bins needs the NaN pass
    if not any(bins_tile(*t) for t in tables):
        return maxima(x, False)
    return when_nan(x, maxima)


@_adaptive_max_values.defjvp
def _adaptive_max_values_jvp(outs, bin_elements, steps, primals, tangents):
    (x,), (tx,) = primals, tangents
    index = _adaptive_argmax(x, outs, bin_elements, steps)
    return _read_at(x, index), _read_at(tx, index)  # the values read at torch's pick: torch's bits


# ----------------------------------------------------------------------------- window sum (avg, LP)


def window_sum(x: jax.Array, win: Any, *, reference: Callable) -> jax.Array:
    """``reference(x, win)``: the sum over each window (zero padding).  Windows of more
    than ``MAX_UNROLLED_TAPS`` taps stay on the reference (one ``reduce_window``)."""
    if not enabled("cpu") or math.prod(win.k) > MAX_UNROLLED_TAPS:
        return reference(x, win)
    return _window_sum(x, win)


@functools.partial(jax.custom_jvp, nondiff_argnums=(1,))
def _window_sum(x: jax.Array, win: Any) -> jax.Array:
    """:func:`_window_reduce` with ``lax.add`` (the reference sums each window in one
    ``reduce_window``): AvgPool2d(3, 2, 1) forward 1.1 -> 0.8 ms at 32x64x32x32,
    1.3 -> 0.6 ms channels-last at 32x32x32x64."""
    return _window_reduce(x, win, 0, lax.add)


@_window_sum.defjvp
def _window_sum_jvp(win, primals, tangents):
    (x,), (tx,) = primals, tangents
    values = _phase_elements(tx, win)
    tangent = values[0]
    for v in values[1:]:
        tangent = tangent + v
    return _window_sum(x, win), tangent


# ----------------------------------------------------------------------------- adaptive average


def _matrix_bin_means(y: jax.Array, ax: int, size: int, out: int, *, bin_table: Callable) -> jax.Array:
    """The bins' means along ``ax`` as a product with the ``(out, size)`` averaging matrix."""
    sel, inside = bin_table(size, out)
    a = np.zeros((out, size))
    a[np.nonzero(inside)[0], sel[inside]] = 1.0  # a bin holds each of its elements once
    a = jnp.asarray(a / inside.sum(1)[:, None], y.dtype)
    return jnp.moveaxis(jnp.tensordot(y, a, axes=((ax,), (1,)), precision=lax.Precision.HIGHEST), -1, ax)


def adaptive_avg_pool(x: jax.Array, outs: tuple, first: int, *, bin_table: Callable,
                      reference: Callable) -> jax.Array:
    """``reference(x, outs, first)``, the bins that do not tile their dim averaged as a product
    with the averaging matrix (NumPy at trace time) instead of the reference's sums of each
    bin's elements, sliced out and padded to the widest (forward+backward ``(32, 256, 13, 13)
    -> 6``: 4.3 vs 9.0 ms; ``(8, 64, 100, 100) -> 3``: 2.9 vs 9.2 ms; Intel Xeon, AVX-512, 2
    cores).  The product multiplies every value by the other bins' zeros, and an infinite value
    times 0 is NaN, which reaches the result (bins that do not tile leave every element out of
    some bin): a result holding a NaN is recomputed by the reference (a ``lax.cond`` on the
    result, cheaper than a test of the input; under ``vmap`` on the whole batch,
    :func:`jaxlayers._lowering.batch_max`).  The pooling is linear, so its derivative is the
    product alone, whatever the input holds (a custom JVP: differentiated through the
    ``lax.cond``, reverse mode added an input-sized zero cotangent, forward+backward 2.3 -> 5.5 ms
    at ``(8, 64, 100, 100) -> 3``)."""
    tiled = all(out == 0 or size % out == 0 for size, out in zip(x.shape[first:first + len(outs)], outs))
    if tiled or not enabled("cpu"):
        return reference(x, outs, first)
    return _product_means(x, outs, first, functools.partial(_matrix_bin_means, bin_table=bin_table), reference)


@functools.partial(jax.custom_jvp, nondiff_argnums=(1, 2, 3, 4))
def _product_means(x: jax.Array, outs: tuple, first: int, means: Callable, reference: Callable) -> jax.Array:
    y = reference(x, outs, first, bin_means=means)
    return lax.cond(batch_max(jnp.any(jnp.isnan(y)).astype(jnp.int32)) > 0,
                    lambda x, y: reference(x, outs, first), lambda x, y: y, x, y)


@_product_means.defjvp
def _product_means_jvp(outs, first, means, reference, primals, tangents):
    (x,), (t,) = primals, tangents
    return _product_means(x, outs, first, means, reference), reference(t, outs, first, bin_means=means)
