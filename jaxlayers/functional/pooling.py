"""Max, average, adaptive, LP pooling and max unpooling.

Every public function is a one-liner over an N-d implementation
(``_max_pool_nd``, ``_avg_pool_nd``, ...) that takes ``num_spatial_dims`` and
the layer ``name`` used in error messages.  Inputs are torch layout
``(N, C, *spatial)`` or unbatched ``(C, *spatial)``.

Indices (``return_indices=True``) index the flattened spatial input of each
``(n, c)`` plane, exactly as torch's (``h * W + w`` in 2-d), with torch's tie
rule (the first maximum in row-major window order; a NaN always wins).  Their
dtype is ``jaxlayers._utils.index_dtype()``: int64 with x64 enabled, else int32.
"""

from __future__ import annotations

import functools
import itertools
import math
from typing import Any, Callable, NamedTuple, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from .._utils import check_input_rank, index_dtype, ntuple, shape_str

__all__ = [
    "max_pool1d",
    "max_pool2d",
    "max_pool3d",
    "max_unpool1d",
    "max_unpool2d",
    "max_unpool3d",
    "avg_pool1d",
    "avg_pool2d",
    "avg_pool3d",
    "adaptive_avg_pool1d",
    "adaptive_avg_pool2d",
    "adaptive_avg_pool3d",
    "adaptive_max_pool1d",
    "adaptive_max_pool2d",
    "adaptive_max_pool3d",
    "lp_pool1d",
    "lp_pool2d",
    "lp_pool3d",
]

_LAYOUT = {1: "(N, C, L) or (C, L)", 2: "(N, C, H, W) or (C, H, W)", 3: "(N, C, D, H, W) or (C, D, H, W)"}


# ----------------------------------------------------------------------------- helpers


def _batched(x: Any, n: int, name: str) -> tuple[jax.Array, bool]:
    """Check the rank; add a batch dim to an unbatched ``(C, *spatial)`` input."""
    if not hasattr(x, "shape") or not hasattr(x, "dtype"):
        x = jnp.asarray(x)
    ndim = check_input_rank(name, x, (n + 1, n + 2), _LAYOUT[n])
    if any(int(s) == 0 for s in x.shape[-n:]):
        raise ValueError(f"{name}: spatial dims of the input must be non-empty, got shape {shape_str(x)}")
    unbatched = ndim == n + 1
    return (x[None] if unbatched else x), unbatched


def _unbatch(y: Any, unbatched: bool) -> Any:
    return y[0] if unbatched else y


def _stride(stride: Any, kernel: tuple[int, ...], n: int, name: str) -> tuple[int, ...]:
    if stride is None or (isinstance(stride, (tuple, list)) and len(stride) == 0):
        return kernel
    return ntuple(stride, n, "stride", name, min_value=1)


def _window_args(kernel_size: Any, stride: Any, padding: Any, n: int, name: str) -> tuple[tuple[int, ...], ...]:
    """``(kernel, stride, padding)`` as n-tuples: kernel >= 1, stride >= 1 (default: kernel), padding >= 0."""
    k = ntuple(kernel_size, n, "kernel_size", name, min_value=1)
    return k, _stride(stride, k, n, name), ntuple(padding, n, "padding", name, min_value=0)


def _pool_out_size(size: int, k: int, s: int, p: int, d: int, ceil_mode: bool) -> int:
    """torch's pooling_output_shape: floor/ceil, and the last window must start
    inside the input or the left padding."""
    eff = d * (k - 1) + 1
    out = (size + 2 * p - eff + (s - 1 if ceil_mode else 0)) // s + 1
    if ceil_mode and (out - 1) * s >= size + p:
        out -= 1
    return out


def _window_geometry(
    name: str, x: jax.Array, n: int, k, s, p, d, ceil_mode: bool
) -> tuple[tuple[int, ...], tuple[tuple[int, int], ...]]:
    """Output spatial sizes and the (low, high) padding that yields exactly them."""
    for i in range(n):
        if p[i] > k[i] // 2:
            raise ValueError(
                f"{name}: padding should be at most half of kernel_size, got padding={p} "
                f"and kernel_size={k} (dim {i}: {p[i]} > {k[i]} // 2)"
            )
    spatial = tuple(int(v) for v in x.shape[2:])
    outs = tuple(_pool_out_size(spatial[i], k[i], s[i], p[i], d[i], ceil_mode) for i in range(n))
    if any(o < 1 for o in outs):
        raise ValueError(
            f"{name}: kernel_size={k} (dilation={d}) is larger than the padded input: input of shape "
            f"{shape_str(x)} with padding={p} gives output size {outs}, which is too small"
        )
    pads = tuple(
        (p[i], max(0, (outs[i] - 1) * s[i] + d[i] * (k[i] - 1) + 1 - spatial[i] - p[i])) for i in range(n)
    )
    return outs, pads


def _lowest(dtype: Any) -> Any:
    if jnp.issubdtype(dtype, jnp.floating):
        return -jnp.inf
    if jnp.issubdtype(dtype, jnp.integer):
        return jnp.iinfo(dtype).min
    if dtype == jnp.bool_:
        return False
    raise TypeError(f"unsupported dtype {dtype}")


def _is_nan(v: jax.Array) -> jax.Array:
    if jnp.issubdtype(v.dtype, jnp.inexact):
        return jnp.isnan(v)
    return jnp.zeros(v.shape, bool)


def _loop_max(values: list) -> jax.Array:
    """Torch's max loop over window elements (in window order), vectorised over
    outputs: keep an element when it is strictly larger or NaN."""
    best = values[0]
    for v in values[1:]:
        best = jnp.where((v > best) | _is_nan(v), v, best)
    return best


def _as_bits(v: jax.Array) -> jax.Array:
    """Floats as unsigned integers of the same width; other dtypes unchanged."""
    if jnp.issubdtype(v.dtype, jnp.inexact):
        return lax.bitcast_convert_type(v, jnp.dtype(f"uint{8 * v.dtype.itemsize}"))
    return v


def _first_max_or_last_nan(
    best: jax.Array, src: jax.Array, taps: Callable, keys: list, nan_pass_on_demand: bool = True
) -> jax.Array:
    """The key of torch's pick among the window elements ``taps(src)`` (in
    window order), whose maximum is ``best``.

    Torch's loop keeps an element when it is strictly larger or NaN, so it ends
    on the first element equal to the maximum, or on the last NaN.  Select
    chains that compare with the final maximum only (a chain through the
    intermediate maxima would be recomputed by XLA for the second output): over
    the window in reverse a match overrides, so the first match wins; then, in
    order, a NaN overrides, so the last NaN wins.  Floats match by their bits,
    which XLA:CPU compares faster; the maximum carries the bits of its first
    occurrence (a later equal element, +0 after -0, never replaces it), so the
    first bitwise match is the first equal element.  With
    ``nan_pass_on_demand``, on CPU, the NaN pass (half the cost) runs only when
    some maximum is NaN; it costs a ``lax.cond`` with ``src`` as its operand,
    whose layout XLA then fixes (bad for a transposed gather).
    """
    def pick(src, best, with_nan):
        values = taps(src)
        best_bits = _as_bits(best)
        out = jnp.zeros(best.shape, jnp.result_type(keys[0]))
        for key, v in reversed(list(zip(keys, values))):
            out = jnp.where(_as_bits(v) == best_bits, key, out)
        for key, v in zip(keys, values) if with_nan else ():
            out = jnp.where(v != v, key, out)
        return out

    if not jnp.issubdtype(best.dtype, jnp.inexact):
        return pick(src, best, False)
    if not nan_pass_on_demand or jax.default_backend() != "cpu":
        return pick(src, best, True)
    return lax.cond(
        jnp.any(best != best),
        functools.partial(pick, with_nan=True),
        functools.partial(pick, with_nan=False),
        src,
        best,
    )


def _flat_strides(spatial: Sequence[int]) -> list[int]:
    return [int(math.prod(spatial[i + 1:])) for i in range(len(spatial))]


def _bcast(vec: np.ndarray, i: int, n: int) -> np.ndarray:
    """A 1-d per-dim vector shaped to broadcast against ``(N, C, *out)``."""
    shape = [1, 1] + [1] * n
    shape[2 + i] = vec.shape[0]
    return vec.reshape(shape)


# ----------------------------------------------------------------------------- max pool


def _max_pool_nd(
    input: Any,
    kernel_size: Any,
    stride: Any,
    padding: Any,
    dilation: Any,
    ceil_mode: bool,
    return_indices: bool,
    num_spatial_dims: int,
    name: str,
) -> Any:
    n = num_spatial_dims
    k, s, p = _window_args(kernel_size, stride, padding, n, name)
    d = ntuple(dilation, n, "dilation", name, min_value=1)
    x, unbatched = _batched(input, n, name)
    outs, pads = _window_geometry(name, x, n, k, s, p, d, ceil_mode)
    res = _max_pool_core(x, k, s, p, d, outs, pads, bool(return_indices))
    if return_indices:
        return _unbatch(res[0], unbatched), _unbatch(res[1], unbatched)
    return _unbatch(res, unbatched)


class _Window(NamedTuple):
    """Static geometry of a pooling window: kernel, stride, padding, dilation,
    output sizes and the (low, high) padding that yields exactly them."""

    k: tuple
    s: tuple
    p: tuple
    d: tuple
    outs: tuple
    pads: tuple

    def offsets(self) -> list:
        """Window element offsets (in kernel units), in torch's loop order."""
        return list(itertools.product(*[range(ki) for ki in self.k]))

    def elements(self, xp: jax.Array) -> list:
        """Every output's window elements from the padded input: one strided
        slice per offset, each shaped like the output."""
        N, C = xp.shape[:2]
        out = []
        for off in self.offsets():
            start = (0, 0) + tuple(o * di for o, di in zip(off, self.d))
            limit = (N, C) + tuple(st + (o - 1) * si + 1 for st, o, si in zip(start[2:], self.outs, self.s))
            out.append(lax.slice(xp, start, limit, (1, 1) + self.s))
        return out

    def phase_elements(self, t: jax.Array) -> list:
        """``elements`` of ``t`` padded with zeros, read through stride phases,
        for tangents: JAX transposes these reads into a fast gradient.

        The padded input reshaped to ``(.., q, s, ..)`` holds position
        ``q * s + r`` at ``[q, r]``, so window offset ``e`` of output ``j`` is
        phase ``e % s`` at ``j + e // s``: a unit-stride slice.  The transpose
        is, per phase, a sum of shifted copies of the cotangent, and the phases
        are concatenated (one pass); the transpose of ``elements``' strided
        slices (an interior-padded input-sized array per window element) took
        38 ms against 5.5 ms for MaxPool2d(3, 2, 1) on 32x64x32x32.
        """
        n, (k, s, p, d) = len(self.k), (self.k, self.s, self.p, self.d)
        N, C = t.shape[:2]
        spatial = t.shape[2:]
        lp = [spatial[i] + sum(self.pads[i]) for i in range(n)]
        q = [max(-(-lp[i] // s[i]), self.outs[i] + (k[i] - 1) * d[i] // s[i]) for i in range(n)]
        tp = jnp.pad(t, ((0, 0), (0, 0)) + tuple((p[i], q[i] * s[i] - spatial[i] - p[i]) for i in range(n)))
        tp = tp.reshape((N, C) + tuple(a for i in range(n) for a in (q[i], s[i])))
        tp = jnp.transpose(tp, tuple(3 + 2 * i for i in range(n)) + (0, 1) + tuple(2 + 2 * i for i in range(n)))
        # One split per phase dim (its transpose is a concatenation: each input
        # element's gradient then sums only its own phase's contributions).
        phases = [tp]
        for i in range(n):
            phases = [part for ph in phases for part in lax.split(ph, (1,) * s[i], axis=i)]
        phases = dict(zip(itertools.product(*[range(si) for si in s]), (ph.reshape(tp.shape[n:]) for ph in phases)))
        values = []
        for off in self.offsets():
            e = [o * di for o, di in zip(off, d)]
            lo = tuple(ei // si for ei, si in zip(e, s))
            ph = phases[tuple(ei % si for ei, si in zip(e, s))]
            values.append(lax.slice(ph, (0, 0) + lo, (N, C) + tuple(a + o for a, o in zip(lo, self.outs))))
        return values

    def pad(self, x: jax.Array, value: Any) -> jax.Array:
        return jnp.pad(x, ((0, 0), (0, 0)) + self.pads, constant_values=value)


@functools.partial(jax.jit, static_argnums=(1, 2, 3, 4, 5, 6, 7))
def _max_pool_core(x, k, s, p, d, outs, pads, return_indices):
    win = _Window(k, s, p, d, outs, pads)
    best = _max_values(x, win)
    if not return_indices:
        return best
    # torch's index: the window's base offset plus the flat offset of the
    # window element torch's loop ends on (the search the gradient uses too).
    n = len(k)
    itype = index_dtype()
    fs = _flat_strides(x.shape[2:])
    taps = _argmax_elements(x, best, win)
    flats = [jnp.full(taps.shape, sum(o * di * f for o, di, f in zip(off, d, fs)), itype) for off in win.offsets()]
    shift = lax.select_n(taps, *flats) if len(flats) > 1 else flats[0]
    base = 0
    for i in range(n):
        base = base + _bcast((np.arange(outs[i]) * s[i] - p[i]) * fs[i], i, n)
    idx = jnp.asarray(base, itype) + shift
    return best, idx


def _first_inside(starts: np.ndarray, d: int) -> np.ndarray:
    """The first in-bounds position of windows starting at ``starts`` (negative: in the padding)."""
    return np.where(starts < 0, starts + (-starts + d - 1) // d * d, starts)


@functools.partial(jax.custom_jvp, nondiff_argnums=(1,))
def _max_values(x: jax.Array, win: _Window) -> jax.Array:
    """Torch's loop, vectorised over output positions and unrolled over the
    (static, small) window (``_loop_max``).  Padding holds the lowest value, so
    it never wins.  Differentiated by a custom JVP that routes the tangent
    from the element torch's index points at (``_take_elements``)."""
    return _loop_max(win.elements(win.pad(x, _lowest(x.dtype))))


@_max_values.defjvp
def _max_values_jvp(win, primals, tangents):
    (x,), (tx,) = primals, tangents
    best = _max_values(x, win)
    return best, _take_elements(tx, _argmax_elements(x, best, win), win)


def _argmax_elements(x: jax.Array, best: jax.Array, win: _Window) -> jax.Array:
    """Position in the window (in ``win.offsets()`` order) of torch's pick; an
    all -inf window picks its first in-bounds element, as torch's index does.

    On CPU the NaN pass's ``lax.cond`` also keeps XLA from fusing this search
    into the gradient's pass, which then redoes it for every input element
    (MaxPool2d(3, 2, 1) on 32x64x32x32: 37-45 ms instead of 11; an
    optimization barrier or an identity cond did not stop it).  It costs
    about 0.1 s more compile time per max-pool layer."""
    n = len(win.k)
    keys = [jnp.asarray(t, jnp.int32) for t in range(len(win.offsets()))]
    taps = _first_max_or_last_nan(best, win.pad(x, _lowest(x.dtype)), win.elements, keys)
    first = 0
    spatial = x.shape[2:]
    for i in range(n):
        starts = np.arange(win.outs[i]) * win.s[i] - win.p[i]
        inside = np.minimum((_first_inside(starts, win.d[i]) - starts) // win.d[i], win.k[i] - 1)
        inside = np.where(starts >= spatial[i], 0, inside)
        first = first * win.k[i] + _bcast(inside, i, n)
    return jnp.where(best == _lowest(x.dtype), jnp.asarray(first, jnp.int32), taps)


def _take_elements(t: jax.Array, taps: jax.Array, win: _Window) -> jax.Array:
    """``t``'s window element number ``taps`` for every output (zero padding):
    the max pool's tangent, a linear map that JAX transposes for the gradient."""
    values = win.phase_elements(t)
    return lax.select_n(taps, *values) if len(values) > 1 else values[0]


def max_pool1d(input, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False, return_indices=False):
    """1-d max pooling, as ``torch.nn.functional.max_pool1d``.

    Shape: ``(N, C, L) -> (N, C, L_out)``, ``L_out = floor((L + 2p - d(k-1) - 1 [+ s-1 if ceil_mode]) / s) + 1``,
    minus one in ceil mode if the last window would start in the right padding.
    Returns ``(values, indices)`` when ``return_indices`` (see :func:`max_pool2d`).
    """
    return _max_pool_nd(input, kernel_size, stride, padding, dilation, ceil_mode, return_indices, 1, "max_pool1d")


def max_pool2d(input, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False, return_indices=False):
    """2-d max pooling, as ``torch.nn.functional.max_pool2d``.

    Args:
      input: ``(N, C, H, W)`` or ``(C, H, W)``.
      kernel_size: window size, int or pair.
      stride: window step; default ``kernel_size``.
      padding: implicit ``-inf`` padding on both sides; at most ``kernel_size // 2``.
      dilation: spacing of window elements.
      ceil_mode: ceil instead of floor in the output size; the last window must
        still start inside the input or the left padding.
      return_indices: also return the argmax of each window as an index into the
        flattened ``H * W`` input plane (torch's layout; first maximum on ties,
        NaN wins), dtype ``index_dtype()`` (int64 with x64, else int32).

    Shape: ``H_out = floor((H + 2p - d(k-1) - 1 [+ s-1 if ceil_mode]) / s) + 1``, likewise ``W_out``.

    The gradient goes to the element the index points at, as in torch.
    """
    return _max_pool_nd(input, kernel_size, stride, padding, dilation, ceil_mode, return_indices, 2, "max_pool2d")


def max_pool3d(input, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False, return_indices=False):
    """3-d max pooling, as ``torch.nn.functional.max_pool3d`` (see :func:`max_pool2d`).

    Indices index the flattened ``D * H * W`` input volume.
    """
    return _max_pool_nd(input, kernel_size, stride, padding, dilation, ceil_mode, return_indices, 3, "max_pool3d")


# ----------------------------------------------------------------------------- max unpool


def _max_unpool_nd(
    input: Any,
    indices: Any,
    kernel_size: Any,
    stride: Any,
    padding: Any,
    output_size: Any,
    num_spatial_dims: int,
    name: str,
) -> jax.Array:
    n = num_spatial_dims
    k, s, p = _window_args(kernel_size, stride, padding, n, name)
    if not hasattr(indices, "dtype"):
        indices = jnp.asarray(indices)
    if not jnp.issubdtype(indices.dtype, jnp.integer):
        raise TypeError(f"{name}: indices must be an integer array (as returned with return_indices=True), "
                        f"got dtype {indices.dtype}")
    x, unbatched = _batched(input, n, name)
    if tuple(indices.shape) != tuple(input.shape):
        raise ValueError(f"{name}: indices must have the shape of input, got indices of shape "
                         f"{shape_str(indices)} and input of shape {shape_str(input)}")
    ind = indices[None] if unbatched else indices
    spatial = tuple(int(v) for v in x.shape[2:])
    default = tuple((spatial[i] - 1) * s[i] + k[i] - 2 * p[i] for i in range(n))
    if output_size is None:
        out = default
    else:
        if hasattr(output_size, "shape") and not isinstance(output_size, (tuple, list)):
            output_size = tuple(np.asarray(output_size).tolist())
        try:
            out = tuple(int(v) for v in output_size)
        except TypeError:
            raise TypeError(f"{name}: output_size must be a sequence of ints, got {output_size!r}") from None
        if len(out) == n + 2 or (unbatched and len(out) == n + 1):
            out = out[-n:]
        if len(out) != n:
            raise ValueError(f"{name}: output_size should have {n} or {n + 2} elements, got {output_size!r}")
        for i in range(n):
            lo, hi = default[i] - s[i], default[i] + s[i]
            if not lo < out[i] < hi:
                raise ValueError(
                    f"{name}: output_size {out} is unreachable from input of shape {shape_str(input)} with "
                    f"kernel_size={k}, stride={s}, padding={p}: dim {i} must be strictly between {lo} and {hi}"
                )
    if any(o < 0 for o in out):
        raise ValueError(f"{name}: output size {out} is negative (input {shape_str(input)}, kernel_size={k}, "
                         f"stride={s}, padding={p})")
    return _unbatch(_max_unpool_core(x, ind, out), unbatched)


@functools.partial(jax.jit, static_argnums=(2,))
def _max_unpool_core(x, ind, out):
    N, C = x.shape[:2]
    total = int(math.prod(out))
    flat_x = x.reshape(N, C, -1)
    flat_i = ind.reshape(N, C, -1)
    flat_i = jnp.where((flat_i < 0) | (flat_i >= total), total, flat_i)  # out of range: dropped
    res = _scatter_planes(flat_x, flat_i, jnp.zeros((N, C, total), x.dtype))
    return res.reshape((N, C) + out)


@jax.custom_vjp
def _scatter_planes(values: jax.Array, indices: jax.Array, zeros: jax.Array) -> jax.Array:
    """Per-(n, c) scatter of ``values`` to flat ``indices`` of the ``(N, C, total)`` ``zeros``;
    out-of-range indices are dropped."""
    N, C = values.shape[:2]
    return zeros.at[jnp.arange(N)[:, None, None], jnp.arange(C)[None, :, None], indices].set(values, mode="drop")


def _scatter_planes_fwd(values, indices, zeros):
    return _scatter_planes(values, indices, zeros), indices


def _scatter_planes_bwd(indices, g):
    # torch's max_unpool backward: every input element reads the gradient at its
    # index (duplicated indices all receive it; dropped ones receive zero).
    N, C = g.shape[:2]
    grad = g.at[jnp.arange(N)[:, None, None], jnp.arange(C)[None, :, None], indices].get(mode="fill", fill_value=0)
    return grad, None, jnp.zeros_like(g)


_scatter_planes.defvjp(_scatter_planes_fwd, _scatter_planes_bwd)


_UNPOOL_DOC = """Partial inverse of max pooling, as ``torch.nn.functional.max_unpool{n}d``.

    Scatters ``input`` to the positions ``indices`` (from ``max_pool{n}d(...,
    return_indices=True)``) of a zero array of spatial size ``output_size``
    (default ``(in - 1) * stride - 2 * padding + kernel_size`` per dim; a given
    size must lie strictly within ``default ± stride``; ``output_size`` may
    also have {n2} entries, the first two ignored).

    Shape: ``(N, C, *in) -> (N, C, *out)``.

    Differs from torch: indices outside the output are dropped (torch raises;
    the check would depend on traced values).
    """


def max_unpool1d(input, indices, kernel_size, stride=None, padding=0, output_size=None):
    return _max_unpool_nd(input, indices, kernel_size, stride, padding, output_size, 1, "max_unpool1d")


def max_unpool2d(input, indices, kernel_size, stride=None, padding=0, output_size=None):
    return _max_unpool_nd(input, indices, kernel_size, stride, padding, output_size, 2, "max_unpool2d")


def max_unpool3d(input, indices, kernel_size, stride=None, padding=0, output_size=None):
    return _max_unpool_nd(input, indices, kernel_size, stride, padding, output_size, 3, "max_unpool3d")


for _n, _f in ((1, max_unpool1d), (2, max_unpool2d), (3, max_unpool3d)):
    _f.__doc__ = _UNPOOL_DOC.format(n=_n, n2=_n + 2)


# ----------------------------------------------------------------------------- avg pool


def _avg_divisor(size: int, k: int, s: int, p: int, out: int, count_include_pad: bool) -> np.ndarray:
    start = np.arange(out) * s - p
    end = np.minimum(start + k, size + p)
    if count_include_pad:
        return (end - start).astype(np.float64)
    return (np.minimum(end, size) - np.maximum(start, 0)).astype(np.float64)


def _avg_pool_nd(
    input: Any,
    kernel_size: Any,
    stride: Any,
    padding: Any,
    ceil_mode: bool,
    count_include_pad: bool,
    divisor_override: Any,
    num_spatial_dims: int,
    name: str,
) -> jax.Array:
    n = num_spatial_dims
    k, s, p = _window_args(kernel_size, stride, padding, n, name)
    if divisor_override is not None:
        if isinstance(divisor_override, bool) or not isinstance(divisor_override, (int, np.integer)):
            raise TypeError(f"{name}: divisor_override must be an int or None, got {divisor_override!r}")
        if divisor_override == 0:
            raise ValueError(f"{name}: divisor_override must be non-zero, got {divisor_override}")
    x, unbatched = _batched(input, n, name)
    if not jnp.issubdtype(x.dtype, jnp.inexact):
        raise TypeError(f"{name}: expected a floating-point input, got dtype {x.dtype}")
    outs, pads = _window_geometry(name, x, n, k, s, p, (1,) * n, ceil_mode)
    return _unbatch(_avg_pool_core(x, k, s, p, outs, pads, bool(count_include_pad), divisor_override), unbatched)


@functools.partial(jax.jit, static_argnums=(1, 2, 3, 4, 5, 6, 7))
def _avg_pool_core(x, k, s, p, outs, pads, count_include_pad, divisor_override):
    n = len(k)
    spatial = tuple(int(v) for v in x.shape[2:])
    summed = _window_sum(x, _Window(k, s, p, (1,) * n, outs, pads))
    if divisor_override is not None:
        out = summed / jnp.asarray(divisor_override, x.dtype)
    else:
        div = 1.0
        for i in range(n):
            div = div * _bcast(_avg_divisor(spatial[i], k[i], s[i], p[i], outs[i], count_include_pad), i, n)
        out = summed / jnp.asarray(div, x.dtype)
    return out


@functools.partial(jax.custom_jvp, nondiff_argnums=(1,))
def _window_sum(x: jax.Array, win: _Window) -> jax.Array:
    """Sum over each window (zero padding): ``lax.reduce_window`` forward; the
    tangent reads through stride phases (``_Window.phase_elements``), whose
    transpose is a faster gradient than ``reduce_window``'s (pad + windowed
    sum)."""
    summed = lax.reduce_window(
        x, np.array(0, x.dtype), lax.add, (1, 1) + win.k, (1, 1) + win.s, ((0, 0), (0, 0)) + win.pads
    )
    return summed[(slice(None), slice(None)) + tuple(slice(0, o) for o in win.outs)]


@_window_sum.defjvp
def _window_sum_jvp(win, primals, tangents):
    (x,), (tx,) = primals, tangents
    values = win.phase_elements(tx)
    tangent = values[0]
    for v in values[1:]:
        tangent = tangent + v
    return _window_sum(x, win), tangent


def avg_pool1d(input, kernel_size, stride=None, padding=0, ceil_mode=False, count_include_pad=True):
    """1-d average pooling, as ``torch.nn.functional.avg_pool1d`` (see :func:`avg_pool2d`)."""
    return _avg_pool_nd(input, kernel_size, stride, padding, ceil_mode, count_include_pad, None, 1, "avg_pool1d")


def avg_pool2d(input, kernel_size, stride=None, padding=0, ceil_mode=False, count_include_pad=True,
               divisor_override=None):
    """2-d average pooling, as ``torch.nn.functional.avg_pool2d``.

    Args:
      input: ``(N, C, H, W)`` or ``(C, H, W)``, floating point.
      kernel_size, stride (default ``kernel_size``), padding (zeros, at most
        ``kernel_size // 2``), ceil_mode: as :func:`max_pool2d` (no dilation).
      count_include_pad: divide by the window size including zero padding;
        windows that run into the ceil-mode overhang are clipped to the padded
        input first (torch's divisor).  Otherwise divide by the number of input
        elements in the window.
      divisor_override: divide every window sum by this instead.

    Shape: ``H_out = floor((H + 2p - k [+ s-1 if ceil_mode]) / s) + 1``, likewise ``W_out``.
    """
    return _avg_pool_nd(input, kernel_size, stride, padding, ceil_mode, count_include_pad, divisor_override, 2,
                        "avg_pool2d")


def avg_pool3d(input, kernel_size, stride=None, padding=0, ceil_mode=False, count_include_pad=True,
               divisor_override=None):
    """3-d average pooling, as ``torch.nn.functional.avg_pool3d`` (see :func:`avg_pool2d`)."""
    return _avg_pool_nd(input, kernel_size, stride, padding, ceil_mode, count_include_pad, divisor_override, 3,
                        "avg_pool3d")


# ----------------------------------------------------------------------------- adaptive pools


def _adaptive_sizes(output_size: Any, spatial: tuple[int, ...], n: int, name: str) -> tuple[int, ...]:
    if output_size is None or isinstance(output_size, (int, np.integer)) and not isinstance(output_size, bool):
        sizes = (output_size,) * n
    elif isinstance(output_size, (tuple, list)):
        sizes = tuple(output_size)
        if len(sizes) == 1 and n > 1:
            sizes = sizes * n
        if len(sizes) != n:
            raise ValueError(f"{name}: output_size must be an int, None or a sequence of {n} ints/None, "
                             f"got {output_size!r}")
    else:
        raise TypeError(f"{name}: output_size must be an int, None or a sequence of {n} ints/None, "
                        f"got {output_size!r}")
    out = []
    for i, v in enumerate(sizes):
        if v is None:
            out.append(spatial[i])
        elif isinstance(v, (int, np.integer)) and not isinstance(v, bool):
            if v < 0:
                raise ValueError(f"{name}: output_size must be >= 0 everywhere, got {output_size!r}")
            out.append(int(v))
        else:
            raise TypeError(f"{name}: output_size entries must be ints or None, got {output_size!r}")
    return tuple(out)


def _bins(size: int, out: int) -> tuple[np.ndarray, np.ndarray]:
    """torch's adaptive bins: start = floor(i*in/out), end = ceil((i+1)*in/out)."""
    i = np.arange(out)
    return (i * size) // out, -((-(i + 1) * size) // out)


def _adaptive_avg_pool_nd(input: Any, output_size: Any, num_spatial_dims: int, name: str) -> jax.Array:
    n = num_spatial_dims
    x, unbatched = _batched(input, n, name)
    if not jnp.issubdtype(x.dtype, jnp.inexact):
        raise TypeError(f"{name}: expected a floating-point input, got dtype {x.dtype}")
    spatial = tuple(int(v) for v in x.shape[2:])
    outs = _adaptive_sizes(output_size, spatial, n, name)
    return _unbatch(_adaptive_avg_core(x, outs), unbatched)


@functools.partial(jax.jit, static_argnums=(1,))
def _adaptive_avg_core(x, outs):
    n = len(outs)
    spatial = tuple(int(v) for v in x.shape[2:])
    cdtype = jnp.promote_types(x.dtype, jnp.float32)
    y = x.astype(cdtype)
    uneven = [i for i in range(n) if outs[i] != spatial[i] and not (outs[i] > 0 and spatial[i] % outs[i] == 0)]
    if uneven and math.prod(outs) <= _KRON_MAX_OUT and math.prod(spatial) * math.prod(outs) <= _KRON_MAX_SIZE:
        # Small output: one GEMM with the Kronecker product of the per-dim
        # matrices, straight on the contiguous (N, C, prod(in)) view -- 2x faster
        # than contracting dim by dim (and transposing) for (33, 17) -> (7, 7).
        a = np.ones((1, 1))
        for i in range(n):
            a = np.kron(a, _avg_matrix(spatial[i], outs[i]))
        y = jnp.dot(y.reshape(y.shape[:2] + (-1,)), jnp.asarray(a.T, cdtype), precision=lax.Precision.HIGHEST)
        return y.reshape(x.shape[:2] + outs).astype(x.dtype)
    # Separable, one spatial dim at a time, innermost first (its contraction
    # needs no transpose).  When the output size divides the input size torch's
    # bins are disjoint windows of ``in // out`` elements: a reshape and a mean
    # (``output_size=1``: a plain mean).  Otherwise one (out, in) averaging
    # matrix from torch's bins.
    for i in reversed(range(n)):
        if outs[i] == spatial[i]:
            continue
        ax = 2 + i
        if i not in uneven:
            y = jnp.mean(jnp.reshape(y, y.shape[:ax] + (outs[i], spatial[i] // outs[i]) + y.shape[ax + 1:]), ax + 1)
            continue
        a = jnp.asarray(_avg_matrix(spatial[i], outs[i]), cdtype)
        y = jnp.moveaxis(jnp.tensordot(y, a, axes=((ax,), (1,)), precision=lax.Precision.HIGHEST), -1, ax)
    return y.astype(x.dtype)


# Limits for the one-GEMM adaptive average: output cells, and matrix entries.
_KRON_MAX_OUT = 64
_KRON_MAX_SIZE = 2**20


def _avg_matrix(size: int, out: int) -> np.ndarray:
    """The ``(out, size)`` matrix that averages torch's adaptive bins."""
    start, end = _bins(size, out)
    cols = np.arange(size)
    mask = (cols[None, :] >= start[:, None]) & (cols[None, :] < end[:, None])
    return mask / (end - start)[:, None]


def _adaptive_max_pool_nd(
    input: Any, output_size: Any, return_indices: bool, num_spatial_dims: int, name: str
) -> Any:
    n = num_spatial_dims
    x, unbatched = _batched(input, n, name)
    spatial = tuple(int(v) for v in x.shape[2:])
    outs = _adaptive_sizes(output_size, spatial, n, name)
    res = _adaptive_max_core(x, outs, bool(return_indices))
    if return_indices:
        return _unbatch(res[0], unbatched), _unbatch(res[1], unbatched)
    return _unbatch(res, unbatched)


@functools.partial(jax.jit, static_argnums=(1, 2))
def _adaptive_max_core(x, outs, return_indices):
    n = len(outs)
    spatial = tuple(int(v) for v in x.shape[2:])
    N, C = x.shape[:2]
    if all(o > 0 and sz % o == 0 for sz, o in zip(spatial, outs)):
        k = tuple(sz // o for sz, o in zip(spatial, outs))
        pads = ((0, 0),) * n
        return _max_pool_core(x, k, k, (0,) * n, (1,) * n, outs, pads, return_indices)
    if any(o == 0 for o in outs):
        y = jnp.zeros((N, C) + outs, x.dtype)
        if return_indices:
            return y, jnp.zeros(y.shape, index_dtype())
        return y
    y, idx = _adaptive_max_sep(x, outs)
    return (y, idx) if return_indices else y


@functools.partial(jax.custom_vjp, nondiff_argnums=(1,))
def _adaptive_max_sep(x, outs):
    return _adaptive_max_sep_impl(x, outs)


def _adaptive_max_sep_fwd(x, outs):
    y, idx = _adaptive_max_sep_impl(x, outs)
    return (y, idx), (idx, jnp.zeros((0,) + x.shape[2:], x.dtype))


def _adaptive_max_sep_bwd(outs, res, cts):
    # torch's backward: the gradient of each output goes to its argmax.
    idx, like = res
    g = cts[0]
    N, C = g.shape[:2]
    total = int(math.prod(like.shape[1:]))
    grad = jnp.zeros((N, C, total), g.dtype).at[
        jnp.arange(N)[:, None, None], jnp.arange(C)[None, :, None], idx.reshape(N, C, -1)
    ].add(g.reshape(N, C, -1))
    return (grad.reshape((N, C) + like.shape[1:]),)


_adaptive_max_sep.defvjp(_adaptive_max_sep_fwd, _adaptive_max_sep_bwd)


def _adaptive_max_sep_impl(x, outs):
    n = len(outs)
    spatial = tuple(int(v) for v in x.shape[2:])
    # Every bin padded to the longest one by repeating its last element (a
    # repeat comes after the original in row-major order, so it never becomes
    # the first maximum, and a repeated NaN has the NaN's own key): one gather
    # per dim gives (N, C, out_1, len_1, ..., out_n, len_n), then torch's loop
    # is unrolled over the bin's elements as in max pooling.  Differentiated by
    # a custom VJP: the gradient goes to the argmax.
    g = x
    sels = []
    for i in range(n):
        axis = 2 + 2 * i
        start, end = _bins(spatial[i], outs[i])
        lmax = int((end - start).max())
        sel = np.minimum(start[:, None] + np.arange(lmax)[None, :], (end - 1)[:, None])
        sels.append(sel)
        g = jnp.take(g, sel.T.ravel(), axis=axis, mode="clip")
        g = g.reshape(g.shape[:axis] + sel.T.shape + g.shape[axis + 1:])
    # Bin elements outermost: each one's plane is contiguous for the chains.
    g = jnp.moveaxis(g, [2 + 2 * i for i in range(n)], list(range(n)))
    fs = _flat_strides(spatial)
    taps = list(itertools.product(*[range(sel.shape[1]) for sel in sels]))
    keys = [
        jnp.asarray(sum(_bcast(sel[:, t] * f, i, n) for i, (sel, t, f) in enumerate(zip(sels, tap, fs))), index_dtype())
        for tap in taps
    ]

    def elements(g):
        return [g[tap] for tap in taps]

    best = _loop_max(elements(g))
    return best, _first_max_or_last_nan(best, g, elements, keys, nan_pass_on_demand=False)


_ADAPTIVE_AVG_DOC = """Adaptive average pooling to ``output_size``, as ``torch.nn.functional.adaptive_avg_pool{n}d``.

    Output cell ``i`` along a dim of size ``in`` averages input
    ``[floor(i*in/out), ceil((i+1)*in/out))`` (bins overlap when ``out`` does not
    divide ``in``, and repeat when ``out > in``).  ``output_size`` is an int or
    a sequence of {n} ints where ``None`` keeps that dim.  Computed as one
    ``(out, in)`` averaging matrix per dim (no loop over cells).
    ``adaptive_avg_pool{n}d(x, 1)`` is global average pooling.

    Shape: ``(N, C, *in) -> (N, C, *output_size)``; unbatched ``(C, *in)`` works too.
    """

_ADAPTIVE_MAX_DOC = """Adaptive max pooling to ``output_size``, as ``torch.nn.functional.adaptive_max_pool{n}d``.

    Bins as in ``adaptive_avg_pool{n}d``: ``[floor(i*in/out), ceil((i+1)*in/out))``;
    ``None`` entries keep a dim.  With ``return_indices`` also returns torch's
    flat indices into the input's spatial plane (first maximum on ties, NaN
    wins), dtype ``index_dtype()``.

    Shape: ``(N, C, *in) -> (N, C, *output_size)``; unbatched ``(C, *in)`` works too.
    """


def adaptive_avg_pool1d(input, output_size):
    return _adaptive_avg_pool_nd(input, output_size, 1, "adaptive_avg_pool1d")


def adaptive_avg_pool2d(input, output_size):
    return _adaptive_avg_pool_nd(input, output_size, 2, "adaptive_avg_pool2d")


def adaptive_avg_pool3d(input, output_size):
    return _adaptive_avg_pool_nd(input, output_size, 3, "adaptive_avg_pool3d")


def adaptive_max_pool1d(input, output_size, return_indices=False):
    return _adaptive_max_pool_nd(input, output_size, return_indices, 1, "adaptive_max_pool1d")


def adaptive_max_pool2d(input, output_size, return_indices=False):
    return _adaptive_max_pool_nd(input, output_size, return_indices, 2, "adaptive_max_pool2d")


def adaptive_max_pool3d(input, output_size, return_indices=False):
    return _adaptive_max_pool_nd(input, output_size, return_indices, 3, "adaptive_max_pool3d")


for _n, _f in ((1, adaptive_avg_pool1d), (2, adaptive_avg_pool2d), (3, adaptive_avg_pool3d)):
    _f.__doc__ = _ADAPTIVE_AVG_DOC.format(n=_n)
for _n, _f in ((1, adaptive_max_pool1d), (2, adaptive_max_pool2d), (3, adaptive_max_pool3d)):
    _f.__doc__ = _ADAPTIVE_MAX_DOC.format(n=_n)


# ----------------------------------------------------------------------------- LP pool


def _lp_pool_nd(
    input: Any, norm_type: Any, kernel_size: Any, stride: Any, ceil_mode: bool, num_spatial_dims: int, name: str
) -> jax.Array:
    n = num_spatial_dims
    if isinstance(norm_type, bool) or not isinstance(norm_type, (int, float, np.integer, np.floating)):
        raise TypeError(f"{name}: norm_type must be a number, got {norm_type!r}")
    if norm_type == 0:
        raise ValueError(f"{name}: norm_type must be non-zero, got {norm_type!r}")
    k = ntuple(kernel_size, n, "kernel_size", name, min_value=1)
    if norm_type == math.inf:
        return _max_pool_nd(jnp.abs(jnp.asarray(input)), k, stride, 0, 1, ceil_mode, False, n, name)
    if norm_type == -math.inf:
        return -_max_pool_nd(-jnp.abs(jnp.asarray(input)), k, stride, 0, 1, ceil_mode, False, n, name)
    x = jnp.asarray(input)
    avg = _avg_pool_nd(jnp.power(x, norm_type), k, stride, 0, ceil_mode, True, None, n, name)
    # torch: (sign(avg) * relu(|avg|)) * prod(k), then ** (1/p); the gradient
    # is zero where the window's sum of x**p is zero.
    scale = jnp.asarray(math.prod(k), avg.dtype)
    nonzero = avg != 0
    safe = jnp.where(nonzero, avg, jnp.ones_like(avg))
    out = jnp.power(safe * scale, 1.0 / norm_type)
    return jnp.where(nonzero, out, lax.stop_gradient(jnp.power(avg * scale, 1.0 / norm_type)))


_LP_DOC = """Power-average pooling, as ``torch.nn.functional.lp_pool{n}d``.

    ``out = (sum over window of x**p) ** (1/p)`` computed as torch does:
    ``avg_pool{n}d(x**p, kernel_size, stride, 0, ceil_mode) * prod(kernel_size)``
    (so ceil-mode overhang windows are rescaled as in torch), then
    ``** (1/norm_type)`` with torch's sign convention (a negative sum stays
    negative for odd integer ``p``, NaN otherwise; zero gradient where the sum
    is zero).  ``norm_type=inf`` is max pooling of ``|x|``; ``-inf`` is min.

    Shape: as ``avg_pool{n}d`` with ``padding=0``.
    """


def lp_pool1d(input, norm_type, kernel_size, stride=None, ceil_mode=False):
    return _lp_pool_nd(input, norm_type, kernel_size, stride, ceil_mode, 1, "lp_pool1d")


def lp_pool2d(input, norm_type, kernel_size, stride=None, ceil_mode=False):
    return _lp_pool_nd(input, norm_type, kernel_size, stride, ceil_mode, 2, "lp_pool2d")


def lp_pool3d(input, norm_type, kernel_size, stride=None, ceil_mode=False):
    return _lp_pool_nd(input, norm_type, kernel_size, stride, ceil_mode, 3, "lp_pool3d")


for _n, _f in ((1, lp_pool1d), (2, lp_pool2d), (3, lp_pool3d)):
    _f.__doc__ = _LP_DOC.format(n=_n)
del _n, _f
