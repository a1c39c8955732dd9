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
from typing import Any, Sequence

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


@functools.partial(jax.jit, static_argnums=(1, 2, 3, 4, 5, 6, 7))
def _max_pool_core(x, k, s, p, d, outs, pads, return_indices):
    n = len(k)
    spatial = tuple(int(v) for v in x.shape[2:])
    N, C = x.shape[:2]
    lowest = _lowest(x.dtype)
    xp = jnp.pad(x, ((0, 0), (0, 0)) + pads, constant_values=lowest)

    # torch's loop, vectorised over output positions and unrolled over the
    # (static, small) window: start from -inf and take a window element when it
    # is strictly larger or NaN.  Padding holds the lowest value, so it never
    # wins.  jax.grad through the selects routes the gradient to exactly the
    # element torch's index points at.
    best = jnp.full((N, C) + outs, lowest, x.dtype)
    offsets = list(itertools.product(*[range(ki) for ki in k]))
    windows = []
    for off in offsets:
        start = (0, 0) + tuple(o * di for o, di in zip(off, d))
        limit = (N, C) + tuple(st + (o - 1) * si + 1 for st, o, si in zip(start[2:], outs, s))
        v = lax.slice(xp, start, limit, (1, 1) + s)
        windows.append(v)
        best = jnp.where((v > best) | _is_nan(v), v, best)
    if not return_indices:
        return best
    # Which window element torch's loop ends on: the first one equal to the
    # maximum, or the last NaN.  One min-reduction over keys that depend only
    # on the final maximum (no chain through intermediate maxima).  The keys are
    # the elements' flat offsets inside the window, which grow with the window
    # order, so the minimum is the first match (NaNs: -offset - 1, the last).
    itype = index_dtype()
    fs = _flat_strides(spatial)
    big = int(sum(di * (ki - 1) * f for di, ki, f in zip(d, k, fs))) + 1
    code = jnp.full((N, C) + outs, big, itype)
    for off, v in zip(offsets, windows):
        flat = int(sum(o * di * f for o, di, f in zip(off, d, fs)))
        key = jnp.where(v == best, jnp.asarray(flat, itype), jnp.asarray(big, itype))
        if jnp.issubdtype(v.dtype, jnp.inexact):
            key = jnp.where(jnp.isnan(v), jnp.asarray(-flat - 1, itype), key)
        code = jnp.minimum(code, key)
    shift = jnp.where(code < 0, -code - 1, code)
    base = 0
    init = 0
    for i in range(n):
        starts = np.arange(outs[i]) * s[i] - p[i]
        first = np.where(starts < 0, starts + (-starts + d[i] - 1) // d[i] * d[i], starts)
        base = base + _bcast(starts * fs[i], i, n)
        init = init + _bcast(first * fs[i], i, n)
    # A maximum of -inf (every in-bounds element -inf, padding alike): torch
    # keeps the first in-bounds position.
    idx = jnp.where(best == lowest, jnp.asarray(init, itype), jnp.asarray(base, itype) + shift)
    return best, idx


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
    summed = lax.reduce_window(
        x, np.array(0, x.dtype), lax.add, (1, 1) + k, (1, 1) + s, ((0, 0), (0, 0)) + pads
    )
    summed = summed[(slice(None), slice(None)) + tuple(slice(0, o) for o in outs)]
    if divisor_override is not None:
        out = summed / jnp.asarray(divisor_override, x.dtype)
    else:
        div = 1.0
        for i in range(n):
            div = div * _bcast(_avg_divisor(spatial[i], k[i], s[i], p[i], outs[i], count_include_pad), i, n)
        out = summed / jnp.asarray(div, x.dtype)
    return out


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
    # Separable, one spatial dim at a time.  When the output size divides the
    # input size torch's bins are disjoint windows of ``in // out`` elements: a
    # reshape and a mean (``output_size=1``: a plain mean).  Otherwise one
    # (out, in) averaging matrix from torch's bins.
    for i in range(n):
        if outs[i] == spatial[i]:
            continue
        if outs[i] > 0 and spatial[i] % outs[i] == 0:
            ax = 2 + i
            shape = y.shape[:ax] + (outs[i], spatial[i] // outs[i]) + y.shape[ax + 1:]
            y = jnp.mean(jnp.reshape(y, shape), ax + 1)
            continue
        start, end = _bins(spatial[i], outs[i])
        cols = np.arange(spatial[i])
        mask = (cols[None, :] >= start[:, None]) & (cols[None, :] < end[:, None])
        a = jnp.asarray(mask / (end - start)[:, None], cdtype)
        y = jnp.moveaxis(
            jnp.tensordot(y, a, axes=((2 + i,), (1,)), precision=lax.Precision.HIGHEST), -1, 2 + i
        )
    return y.astype(x.dtype)


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
    # Separable, innermost dim first: a bin's first maximum in row-major order
    # is the first maximum (over rows) of the rows' first maxima.  Each stage
    # gathers the j-th element of every bin (clipped to the bin's last element:
    # a repeat never beats an equal value) and keeps strictly larger or NaN.
    # Differentiated by a custom VJP: the gradient goes to the argmax.
    y = x
    fs = _flat_strides(spatial)
    fidx = 0
    for i in range(n):
        fidx = fidx + _bcast(np.arange(spatial[i]) * fs[i], i, n)
    fidx = jnp.broadcast_to(jnp.asarray(fidx, index_dtype()), x.shape)
    for i in reversed(range(n)):
        axis = 2 + i
        start, end = _bins(spatial[i], outs[i])
        lmax = int((end - start).max())
        sel = np.minimum(start[:, None] + np.arange(lmax)[None, :], (end - 1)[:, None]).ravel()
        split = y.shape[:axis] + (outs[i], lmax) + y.shape[axis + 1:]
        g = jnp.take(y, sel, axis=axis, indices_are_sorted=True, mode="clip").reshape(split)
        gi = jnp.take(fidx, sel, axis=axis, indices_are_sorted=True, mode="clip").reshape(split)
        best = bidx = None
        for j in range(lmax):
            v = lax.index_in_dim(g, j, axis + 1, keepdims=False)
            vi = lax.index_in_dim(gi, j, axis + 1, keepdims=False)
            if j == 0:
                best, bidx = v, vi
                continue
            take = (v > best) | _is_nan(v)
            best = jnp.where(take, v, best)
            bidx = jnp.where(take, vi, bidx)
        y, fidx = best, bidx
    return y, fidx


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
