"""Max, average, adaptive, LP pooling and max unpooling (reference implementations).

Every public function is a one-liner over an N-d implementation
(``_max_pool_nd``, ``_avg_pool_nd``, ...) that takes ``num_spatial_dims`` and
the layer ``name`` used in error messages.  Inputs are torch layout
``(N, C, *spatial)`` or unbatched ``(C, *spatial)``; an empty batch gives an
empty result, as in torch.

The code here is the reference: plain JAX differentiated by JAX itself, whose
program size does not depend on the input size (loops run over the static
window taps and spatial dims only, never over positions or bins).  Faster CPU
paths live in :mod:`jaxlayers._lowering.pooling` and fall back to these.

Indices (``return_indices=True``) index the flattened spatial input of each
``(n, c)`` plane, exactly as torch's (``h * W + w`` in 2-d), with torch's rule:
the first maximum in row-major window order, and a NaN always wins (the last
NaN).  Their dtype is ``jaxlayers._utils.index_dtype()``: int64 with x64
enabled, else int32.  Gradients go to the element the index points at.
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

from .._lowering import pooling as _lowering_pooling
from .._memory_format import channels_last
from .._utils import (abs_sign_grad, always_indices, batch_sharding, bins_tile, broadcast_like, channel_dim, check_input_rank, compiled,
                      concrete, index_dtype, lowest_value, ntuple, reshape, shape_str)

__all__ = [
    "max_pool1d",
    "max_pool2d",
    "max_pool3d",
    "max_pool1d_with_indices",
    "max_pool2d_with_indices",
    "max_pool3d_with_indices",
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
    "adaptive_max_pool1d_with_indices",
    "adaptive_max_pool2d_with_indices",
    "adaptive_max_pool3d_with_indices",
    "lp_pool1d",
    "lp_pool2d",
    "lp_pool3d",
]

_LAYOUT = {1: "(N, C, L) or (C, L)", 2: "(N, C, H, W) or (C, H, W)", 3: "(N, C, D, H, W) or (C, D, H, W)"}


# ----------------------------------------------------------------------------- helpers


def _batched(x: Any, n: int, name: str, empty_channels: bool = False,
             last: bool = False) -> tuple[jax.Array, bool]:
    """Check the rank and sizes; add a batch dim to an unbatched ``(C, *spatial)`` input.

    As torch: the batch may be empty, the spatial dims may not; empty channels
    only where ``empty_channels`` (torch's adaptive average pools).  With
    ``last`` (``channel_axis=-1``, see :func:`_is_last`) the input is
    ``(N, *spatial, C)``, batched only (an unbatched ``(*spatial, C)`` would be
    ambiguous)."""
    if not hasattr(x, "shape") or not hasattr(x, "dtype"):
        x = jnp.asarray(x)
    if x.dtype == jnp.bool_ or jnp.issubdtype(x.dtype, jnp.complexfloating):  # torch has no such kernels
        raise TypeError(f"{name}: expected a real (integer or floating-point) input, got dtype {x.dtype} "
                        f"(shape {shape_str(x)})")
    if last:
        if x.ndim != n + 2:
            raise ValueError(f"{name}: channel_axis=-1 expects a batched (N, *{n} spatial dims, C) input "
                             f"({n + 2}-D), got shape {shape_str(x)}")
        unbatched, spatial, channels = False, x.shape[1:-1], x.shape[-1]
    else:
        unbatched = check_input_rank(name, x, (n + 1, n + 2), _LAYOUT[n]) == n + 1
        spatial, channels = x.shape[-n:], x.shape[-n - 1]
    if any(int(s) == 0 for s in spatial):
        raise ValueError(f"{name}: spatial dims of the input must be non-empty, got shape {shape_str(x)}")
    if not empty_channels and int(channels) == 0:
        raise ValueError(f"{name}: the channel dim of the input must be non-empty (only the batch may be empty), "
                         f"got shape {shape_str(x)}")
    return (x[None] if unbatched else x), unbatched


def _is_last(name: str, channel_axis: Any, n: int) -> bool:
    """Whether ``channel_axis`` (1 or -1, checked) puts the channels last."""
    return channel_dim(name, channel_axis, n + 2) != 1


def _spatial_shape(x: jax.Array, last: bool) -> tuple[int, ...]:
    """The spatial sizes of a batched ``(N, C, *S)`` or, with ``last``, ``(N, *S, C)`` array."""
    return tuple(int(v) for v in (x.shape[1:-1] if last else x.shape[2:]))


def _unbatch(y: Any, unbatched: bool) -> Any:
    if isinstance(y, tuple):
        return tuple(_unbatch(v, unbatched) for v in y)
    return y[0] if unbatched else y


def _window_args(kernel_size: Any, stride: Any, padding: Any, n: int, name: str) -> tuple[tuple[int, ...], ...]:
    """``(kernel, stride, padding)`` as n-tuples: kernel >= 1, stride >= 1 (default: kernel), padding >= 0."""
    k = ntuple(kernel_size, n, "kernel_size", name, min_value=1)
    if stride is None or (isinstance(stride, (tuple, list)) and len(stride) == 0):
        s = k
    else:
        s = ntuple(stride, n, "stride", name, min_value=1)
    return k, s, ntuple(padding, n, "padding", name, min_value=0)


def _pool_out_size(size: int, k: int, s: int, p: int, d: int, ceil_mode: bool) -> int:
    """torch's pooling_output_shape: floor/ceil, and the last window must start
    inside the input or the left padding."""
    eff = d * (k - 1) + 1
    out = (size + 2 * p - eff + (s - 1 if ceil_mode else 0)) // s + 1
    if ceil_mode and (out - 1) * s >= size + p:
        out -= 1
    return out


class _Window(NamedTuple):
    """Static geometry of a pooling window: kernel, stride, padding, dilation,
    output sizes and the (low, high) padding that yields exactly them."""

    k: tuple
    s: tuple
    p: tuple
    d: tuple
    outs: tuple
    pads: tuple
    last: bool = False  # channels last: (N, *spatial, C), else (N, C, *spatial)

    def offsets(self) -> list:
        """Window taps (in kernel units), in torch's row-major loop order."""
        return list(itertools.product(*[range(ki) for ki in self.k]))

    def full(self, spatial: Sequence, batch: Any, channel: Any) -> tuple:
        """A per-axis tuple of the input's layout from per-spatial-dim entries."""
        return (batch, *spatial, channel) if self.last else (batch, channel, *spatial)

    def axis(self, i: int) -> int:
        """The array axis of spatial dim ``i``."""
        return i + (1 if self.last else 2)

    def spatial(self, x: jax.Array) -> tuple:
        return _spatial_shape(x, self.last)

    def batch_channels(self, x: jax.Array) -> tuple:
        """``(N, C)`` of a batched array in this layout."""
        return x.shape[0], x.shape[-1 if self.last else 1]

    def bcast(self, vec: np.ndarray, i: int) -> np.ndarray:
        """A per-position vector of spatial dim ``i``, shaped to broadcast against the output."""
        shape = [1] * len(self.k)
        shape[i] = vec.shape[0]
        return vec.reshape(self.full(shape, 1, 1))

    def starts(self) -> list:
        """Per spatial dim, where each output's window starts (negative in the left padding)."""
        return [np.arange(o) * s - p for o, s, p in zip(self.outs, self.s, self.p)]

    def first_inside(self) -> list:
        """Per spatial dim, the kernel tap at which each output's window enters the input
        (torch's loop starts there, so a window of only the lowest value picks it)."""
        return [np.clip((d - 1 - st) // d, 0, k - 1) for st, d, k in zip(self.starts(), self.d, self.k)]

    def first_tap(self) -> np.ndarray:
        """The row-major tap number (``offsets()`` order) of torch's starting element,
        shaped to broadcast against the output."""
        tap = np.zeros((1,) * (len(self.k) + 2), np.int32)
        for i, (k, inside) in enumerate(zip(self.k, self.first_inside())):
            tap = tap * k + self.bcast(inside.astype(np.int32), i)
        return tap

    def pad(self, x: jax.Array, value: Any) -> jax.Array:
        return jnp.pad(x, self.full(self.pads, (0, 0), (0, 0)), constant_values=value)

    def elements(self, xp: jax.Array) -> list:
        """Every output's window elements from the padded input ``xp``: one
        strided slice per tap, each shaped like the output."""
        N, C = self.batch_channels(xp)
        out = []
        for off in self.offsets():
            start = tuple(o * di for o, di in zip(off, self.d))
            limit = tuple(st + (o - 1) * si + 1 for st, o, si in zip(start, self.outs, self.s))
            out.append(lax.slice(xp, self.full(start, 0, 0), self.full(limit, N, C), self.full(self.s, 1, 1)))
        return out


def _window(name: str, x: jax.Array, k, s, p, d, ceil_mode: bool, last: bool = False) -> _Window:
    """The window of a pool over ``x`` (batched; channels last if ``last``), with torch's checks."""
    n = len(k)
    for i in range(n):
        if p[i] > k[i] // 2:
            raise ValueError(
                f"{name}: padding should be at most half of kernel_size, got padding={p} "
                f"and kernel_size={k} (dim {i}: {p[i]} > {k[i]} // 2)"
            )
    spatial = _spatial_shape(x, last)
    outs = tuple(_pool_out_size(spatial[i], k[i], s[i], p[i], d[i], ceil_mode) for i in range(n))
    if any(o < 1 for o in outs):
        raise ValueError(
            f"{name}: kernel_size={k} (dilation={d}) is larger than the padded input: input of shape "
            f"{shape_str(x)} with padding={p} gives output size {outs}, which is too small"
        )
    pads = tuple(
        (p[i], max(0, (outs[i] - 1) * s[i] + d[i] * (k[i] - 1) + 1 - spatial[i] - p[i])) for i in range(n)
    )
    return _Window(k, s, p, d, outs, pads, last)


def _is_nan(v: jax.Array) -> jax.Array:
    if jnp.issubdtype(v.dtype, jnp.inexact):
        return jnp.isnan(v)
    return jnp.zeros(v.shape, bool)


def _flat_strides(spatial: Sequence[int]) -> list[int]:
    return [int(math.prod(spatial[i + 1:])) for i in range(len(spatial))]


# ----------------------------------------------------------------------------- max pool


def _max_pool_nd(input: Any, kernel_size: Any, stride: Any, padding: Any, dilation: Any, ceil_mode: bool,
                 return_indices: bool, num_spatial_dims: int, name: str, channel_axis: int = 1) -> Any:
    n = num_spatial_dims
    k, s, p = _window_args(kernel_size, stride, padding, n, name)
    d = ntuple(dilation, n, "dilation", name, min_value=1)
    last = _is_last(name, channel_axis, n)
    x, unbatched = _batched(input, n, name, last=last)
    win = _window(name, x, k, s, p, d, ceil_mode, last)
    res = compiled(_max_pool, (win, bool(return_indices)), x)
    return _unbatch(res, unbatched)


def _max_pool(x: jax.Array, win: _Window, return_indices: bool) -> Any:
    if math.prod(win.k) > _lowering_pooling.MAX_UNROLLED_TAPS:
        return _max_pool_by_bins(x, win, return_indices)
    return _lowering_pooling.max_pool(x, win, return_indices, reference=_max_pool_reference)


class _WindowBins(NamedTuple):
    """``bin_elements`` (as :class:`_AdaptiveBins`) for max pooling windows: along spatial dim
    ``i``, each output's window elements inside the input, from the first (where torch's
    loop starts) at ``dilation`` spacing; the slots past the last hold ``fill``."""

    win: _Window
    spatial: tuple

    def table(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        w = self.win
        first_tap = w.first_inside()[i]
        first = w.starts()[i] + first_tap * w.d[i]
        slot = np.arange(w.k[i])
        pos = first[:, None] + slot[None, :] * w.d[i]
        inside = (first_tap[:, None] + slot[None, :] < w.k[i]) & (pos < self.spatial[i])
        return np.clip(pos, 0, self.spatial[i] - 1), inside

    def __call__(self, v: jax.Array, i: int, out: int, fill: Any) -> jax.Array:
        return _take_bins(v, 2 + i, *self.table(i), fill)


def _max_pool_by_bins(x: jax.Array, win: _Window, return_indices: bool) -> Any:
    """Max pooling over large windows (more taps than the window code unrolls) as adaptive
    max pooling over the windows: one gather per spatial dim, so the program does not grow
    with the kernel (a global ``max_pool2d(x, x.shape[2:])`` is a common idiom).  The same
    values, indices and gradient rule (first maximum, last NaN) as :func:`_max_pool_reference`."""
    xc = jnp.moveaxis(x, -1, 1) if win.last else x
    bins = _WindowBins(win, tuple(int(v) for v in xc.shape[2:]))
    res = _lowering_pooling.adaptive_max_pool(
        xc, win.outs, return_indices, bin_elements=bins, steps=win.d,
        reference=lambda x, outs: _bins_max_reference(x, outs, bins))
    if win.last:
        res = tuple(jnp.moveaxis(r, 1, -1) for r in res) if return_indices else jnp.moveaxis(res, 1, -1)
    return res


def _max_pool_reference(x: jax.Array, win: _Window, return_indices: bool) -> Any:
    """torch's loop over the window, vectorised over outputs: keep an element
    when it is strictly larger than the best so far, or NaN, and its flat index.

    The loop starts, as torch's, at the first element inside the input (so a
    window of only ``-inf`` picks it); padding holds the lowest value and never
    wins.  The values are then read at the indices, so JAX's gradient goes to
    torch's pick (ties: the first maximum; NaN: the last)."""
    spatial = win.spatial(x)
    taps = win.elements(win.pad(lax.stop_gradient(x), lowest_value(x.dtype)))
    first_tap, first_flat, tap_flat = _window_flat_indices(spatial, win)
    best = taps[0] if len(taps) == 1 else lax.select_n(broadcast_like(first_tap, taps[0]), *taps)
    index = broadcast_like(jnp.asarray(first_flat, index_dtype()), taps[0])
    for t, v in enumerate(taps):
        keep = (v > best) | _is_nan(v)
        best = jnp.where(keep, v, best)
        index = jnp.where(keep, jnp.asarray(tap_flat[t], index_dtype()), index)
    N, C = win.batch_channels(x)
    flat = win.full((math.prod(spatial),), N, C)
    values = jnp.take_along_axis(reshape(x, flat), reshape(index, win.full((math.prod(win.outs),), N, C)),
                                 axis=win.axis(0), mode="fill", fill_value=lowest_value(x.dtype))
    values = reshape(values, index.shape)
    return (values, index) if return_indices else values


def _window_flat_indices(spatial: Sequence[int], win: _Window) -> tuple[np.ndarray, np.ndarray, list]:
    """Static (NumPy) indices, each shaped to broadcast against the output: the tap number and
    flat input index of torch's starting element (the window's first element
    inside the input), and every tap's flat input index."""
    n = len(win.k)
    fs = _flat_strides(spatial)
    starts, inside = win.starts(), win.first_inside()
    first_flat = np.zeros((1,) * (n + 2), np.int64)
    for i in range(n):
        first_flat = first_flat + win.bcast((starts[i] + inside[i] * win.d[i]) * fs[i], i)
    base = sum(win.bcast(starts[i] * fs[i], i) for i in range(n))
    tap_flat = [base + sum(o * win.d[i] * fs[i] for i, o in enumerate(off)) for off in win.offsets()]
    return win.first_tap(), first_flat, tap_flat


@channels_last(spatial=1, native=True)
def max_pool1d(input, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False, return_indices=False, *,
               channel_axis=1):
    """1-d max pooling, as ``torch.nn.functional.max_pool1d`` (see :func:`max_pool2d`).

    Shape: ``(N, C, L) -> (N, C, L_out)``, ``L_out = floor((L + 2p - d(k-1) - 1 [+ s-1 if ceil_mode]) / s) + 1``,
    minus one in ceil mode if the last window would start in the right padding.

    Example:
      >>> import jax.numpy as jnp
      >>> from jaxlayers import functional as F
      >>> F.max_pool1d(jnp.array([[[1., 3., 2., 5., 4.]]]), 2, return_indices=True)[1].tolist()
      [[[1, 3]]]
    """
    return _max_pool_nd(input, kernel_size, stride, padding, dilation, ceil_mode, return_indices, 1, "max_pool1d",
                        channel_axis)


@channels_last(spatial=2, native=True)
def max_pool2d(input, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False, return_indices=False, *,
               channel_axis=1):
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
      channel_axis: 1, or -1 for a batched ``(N, H, W, C)`` input (what
        channels-last mode passes; the pooling runs in place).

    Shape: ``H_out = floor((H + 2p - d(k-1) - 1 [+ s-1 if ceil_mode]) / s) + 1``, likewise ``W_out``.

    The gradient goes to the element the index points at, as in torch.

    Example:
      >>> import jax.numpy as jnp
      >>> from jaxlayers import functional as F
      >>> F.max_pool2d(jnp.arange(16.).reshape(1, 4, 4), 2).tolist()
      [[[5.0, 7.0], [13.0, 15.0]]]
    """
    return _max_pool_nd(input, kernel_size, stride, padding, dilation, ceil_mode, return_indices, 2, "max_pool2d",
                        channel_axis)


@channels_last(spatial=3, native=True)
def max_pool3d(input, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False, return_indices=False, *,
               channel_axis=1):
    """3-d max pooling, as ``torch.nn.functional.max_pool3d`` (see :func:`max_pool2d`).

    Indices index the flattened ``D * H * W`` input volume.

    Example:
      >>> import jax.numpy as jnp
      >>> from jaxlayers import functional as F
      >>> F.max_pool3d(jnp.ones((2, 3, 4, 5, 6)), 2, ceil_mode=True).shape
      (2, 3, 2, 3, 3)
    """
    return _max_pool_nd(input, kernel_size, stride, padding, dilation, ceil_mode, return_indices, 3, "max_pool3d",
                        channel_axis)


# ----------------------------------------------------------------------------- max unpool


def _max_unpool_nd(input: Any, indices: Any, kernel_size: Any, stride: Any, padding: Any, output_size: Any,
                   num_spatial_dims: int, name: str) -> jax.Array:
    n = num_spatial_dims
    k, s, p = _window_args(kernel_size, stride, padding, n, name)
    if not hasattr(indices, "dtype"):
        indices = jnp.asarray(indices)
    if not jnp.issubdtype(indices.dtype, jnp.integer):
        raise TypeError(f"{name}: indices must be an integer array (as returned with return_indices=True), "
                        f"got dtype {indices.dtype}")
    x, unbatched = _batched(input, n, name, empty_channels=jnp.ndim(input) == n + 1)
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
        if len(out) == n + 2:
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
    N, C = x.shape[:2]
    total = int(math.prod(out))
    known = concrete(indices)
    if known is not None and known.size and ((known < 0) | (known >= total)).any():
        bad = int(known[(known < 0) | (known >= total)].ravel()[0])
        raise IndexError(f"{name}: found an invalid max index {bad} (the output's spatial size is "
                         f"{' x '.join(map(str, out))} = {total}; indices as returned with return_indices=True)")
    flat_i = ind.reshape(N, C, math.prod(spatial))
    flat_i = jnp.where((flat_i < 0) | (flat_i >= total), total, flat_i)  # out of range: dropped
    y = compiled(_scatter_planes, (total,), x.reshape(N, C, math.prod(spatial)), flat_i)
    return _unbatch(y.reshape((N, C) + out), unbatched)


@functools.partial(jax.custom_jvp, nondiff_argnums=(2,))
def _scatter_planes(values: jax.Array, indices: jax.Array, total: int) -> jax.Array:
    """Per ``(n, c)`` plane: a zero vector of length ``total`` with ``values``
    written at ``indices`` (out-of-range indices dropped).

    Its tangent adds the tangents at their indices, whose transpose, the
    gradient, reads the output gradient at every index: torch's max_unpool
    backward, which gives a duplicated index's gradient to all its inputs (the
    derivative of a plain scatter would give it to one of them)."""
    return _scatter(values, indices, total, add=False)


def _scatter(values: jax.Array, indices: jax.Array, total: int, add: bool) -> jax.Array:
    N, C = values.shape[:2]
    sharding = batch_sharding(values, 3)  # an Explicit mesh's batch: the planes sharded alike
    at = jnp.zeros((N, C, total), values.dtype, out_sharding=sharding).at[
        jnp.arange(N)[:, None, None], jnp.arange(C)[None, :, None], indices]
    return (at.add(values, mode="drop", out_sharding=sharding) if add
            else at.set(values, mode="drop", out_sharding=sharding))


@_scatter_planes.defjvp
def _scatter_planes_jvp(total, primals, tangents):
    values, indices = primals
    return _scatter(values, indices, total, add=False), _scatter(tangents[0], indices, total, add=True)


_UNPOOL_DOC = """Partial inverse of max pooling, as ``torch.nn.functional.max_unpool{n}d``.

    Args:
      input: the pooled values ``(N, C, *in)`` or ``(C, *in)``.
      indices: torch's flat indices, from ``max_pool{n}d(..., return_indices=True)``.
      kernel_size, stride (default ``kernel_size``), padding: those of the max pool.
      output_size: spatial output size ({n} entries, or {n2} with the first two
        ignored); it must lie strictly within ``default ± stride``.

    Scatters ``input`` to the positions ``indices`` of a zero array.

    Shape: ``out = (in - 1) * stride - 2 * padding + kernel_size`` per dim, or ``output_size``.

    Differs from torch: indices outside the output are dropped (torch raises;
    the check would depend on traced values).  With duplicated indices the
    gradient reaches every input, as torch's; forward-mode tangents add up.

    Example:
      >>> import jax.numpy as jnp
      >>> from jaxlayers import functional as F
      >>> F.max_unpool1d(jnp.array([[[3., 5.]]]), jnp.array([[[1, 2]]]), 2).tolist()
      [[[0.0, 3.0, 5.0, 0.0]]]
    """


@channels_last(moved=2, spatial=1, shapes=("output_size",))
def max_unpool1d(input, indices, kernel_size, stride=None, padding=0, output_size=None):
    return _max_unpool_nd(input, indices, kernel_size, stride, padding, output_size, 1, "max_unpool1d")


@channels_last(moved=2, spatial=2, shapes=("output_size",))
def max_unpool2d(input, indices, kernel_size, stride=None, padding=0, output_size=None):
    return _max_unpool_nd(input, indices, kernel_size, stride, padding, output_size, 2, "max_unpool2d")


@channels_last(moved=2, spatial=3, shapes=("output_size",))
def max_unpool3d(input, indices, kernel_size, stride=None, padding=0, output_size=None):
    return _max_unpool_nd(input, indices, kernel_size, stride, padding, output_size, 3, "max_unpool3d")


for _n, _f in ((1, max_unpool1d), (2, max_unpool2d), (3, max_unpool3d)):
    _f.__doc__ = _UNPOOL_DOC.format(n=_n, n2=_n + 2)


# ----------------------------------------------------------------------------- avg pool


def _avg_divisor(size: int, k: int, s: int, p: int, out: int, count_include_pad: bool) -> np.ndarray:
    """torch's per-dim divisor: the window clipped to the padded input, or to the input."""
    start = np.arange(out) * s - p
    end = np.minimum(start + k, size + p)
    if count_include_pad:
        return (end - start).astype(np.float64)
    return (np.minimum(end, size) - np.maximum(start, 0)).astype(np.float64)


def _avg_pool_nd(input: Any, kernel_size: Any, stride: Any, padding: Any, ceil_mode: bool, count_include_pad: bool,
                 divisor_override: Any, num_spatial_dims: int, name: str, channel_axis: int = 1) -> jax.Array:
    n = num_spatial_dims
    k, s, p = _window_args(kernel_size, stride, padding, n, name)
    if divisor_override is not None:
        if isinstance(divisor_override, bool) or not isinstance(divisor_override, (int, np.integer)):
            raise TypeError(f"{name}: divisor_override must be an int or None, got {divisor_override!r}")
        if divisor_override == 0:
            raise ValueError(f"{name}: divisor_override must be non-zero, got {divisor_override}")
    last = _is_last(name, channel_axis, n)
    x, unbatched = _batched(input, n, name, last=last)
    integer = jnp.issubdtype(x.dtype, jnp.integer)  # torch's int64 kernel: integer sums, truncating division
    spatial = _spatial_shape(x, last)
    if n == 3 and any(a < b for a, b in zip(spatial, k)):  # torch's 3-d average pool checks this, whatever the padding
        raise ValueError(f"{name}: input of spatial size {spatial} is smaller than kernel_size {k} "
                         f"(input of shape {shape_str(input)})")
    win = _window(name, x, k, s, p, (1,) * n, ceil_mode, last)
    # sums and the division in at least float32, rounded once, as torch's (bfloat16 sums of
    # 1 + 3 * 2**-8 lost the small terms)
    if integer:
        summed = _window_sum(x, win)
    else:
        summed = compiled(_window_sum_entry, (win,), x.astype(jnp.promote_types(x.dtype, jnp.float32)))
    if divisor_override is not None:
        divisor = np.float64(divisor_override)
    else:
        divisor = math.prod(win.bcast(_avg_divisor(spatial[i], k[i], s[i], p[i], win.outs[i], count_include_pad), i)
                            for i in range(n))
        if np.all(divisor == divisor.flat[0]):  # one divisor everywhere: a scalar, not a broadcast array
            divisor = divisor.flat[0]
    if integer:  # lax.div truncates towards zero, as C++'s integer division
        return _unbatch(lax.div(summed, jnp.broadcast_to(jnp.asarray(divisor, x.dtype), summed.shape)), unbatched)
    return _unbatch((summed / jnp.asarray(divisor, summed.dtype)).astype(x.dtype), unbatched)


def _window_sum_entry(x: jax.Array, win: _Window) -> jax.Array:
    return _lowering_pooling.window_sum(x, win, reference=_window_sum)


def _window_sum(x: jax.Array, win: _Window) -> jax.Array:
    """Sum over each window (zero padding), cropped to the output sizes (a guard:
    the padding ``_window`` computes gives exactly them)."""
    summed = lax.reduce_window(x, np.array(0, x.dtype), lax.add, win.full(win.k, 1, 1), win.full(win.s, 1, 1),
                               win.full(win.pads, (0, 0), (0, 0)))
    return summed[win.full([slice(0, o) for o in win.outs], slice(None), slice(None))]


@channels_last(spatial=1, native=True)
def avg_pool1d(input, kernel_size, stride=None, padding=0, ceil_mode=False, count_include_pad=True, *, channel_axis=1):
    """1-d average pooling, as ``torch.nn.functional.avg_pool1d`` (see :func:`avg_pool2d`).

    Example:
      >>> import jax.numpy as jnp
      >>> from jaxlayers import functional as F
      >>> F.avg_pool1d(jnp.array([[[1., 2., 3., 4.]]]), 2).tolist()
      [[[1.5, 3.5]]]
    """
    return _avg_pool_nd(input, kernel_size, stride, padding, ceil_mode, count_include_pad, None, 1, "avg_pool1d",
                        channel_axis)


@channels_last(spatial=2, native=True)
def avg_pool2d(input, kernel_size, stride=None, padding=0, ceil_mode=False, count_include_pad=True,
               divisor_override=None, *, channel_axis=1):
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
      channel_axis: 1, or -1 for a batched ``(N, H, W, C)`` input (channels-last mode).

    Shape: ``H_out = floor((H + 2p - k [+ s-1 if ceil_mode]) / s) + 1``, likewise ``W_out``.

    Example:
      >>> import jax.numpy as jnp
      >>> from jaxlayers import functional as F
      >>> F.avg_pool2d(jnp.arange(16.).reshape(1, 4, 4), 2).tolist()
      [[[2.5, 4.5], [10.5, 12.5]]]
    """
    return _avg_pool_nd(input, kernel_size, stride, padding, ceil_mode, count_include_pad, divisor_override, 2,
                        "avg_pool2d", channel_axis)


@channels_last(spatial=3, native=True)
def avg_pool3d(input, kernel_size, stride=None, padding=0, ceil_mode=False, count_include_pad=True,
               divisor_override=None, *, channel_axis=1):
    """3-d average pooling, as ``torch.nn.functional.avg_pool3d`` (see :func:`avg_pool2d`).

    Example:
      >>> import jax.numpy as jnp
      >>> from jaxlayers import functional as F
      >>> F.avg_pool3d(jnp.ones((1, 2, 4, 4, 4)), 2, divisor_override=1).tolist()[0][0][0][0]
      [8.0, 8.0]
    """
    return _avg_pool_nd(input, kernel_size, stride, padding, ceil_mode, count_include_pad, divisor_override, 3,
                        "avg_pool3d", channel_axis)


# ----------------------------------------------------------------------------- adaptive pools


def _adaptive_sizes(output_size: Any, spatial: tuple[int, ...], n: int, name: str) -> tuple[int, ...]:
    """The output size: an int, or a sequence of n entries (1 is repeated), each an int or, for 2-d and
    3-d pools, None (keep that dim) — torch's accepted forms."""
    entries = "ints or None" if n > 1 else "ints"
    if isinstance(output_size, (int, np.integer)) and not isinstance(output_size, bool):
        sizes = (output_size,) * n
    elif isinstance(output_size, (tuple, list)):
        sizes = tuple(output_size)
        if len(sizes) == 1 and n > 1:
            sizes = sizes * n
        if len(sizes) != n:
            raise ValueError(f"{name}: output_size must be an int or a sequence of {n} {entries}, "
                             f"got {output_size!r}")
    else:
        raise TypeError(f"{name}: output_size must be an int or a sequence of {n} {entries}, got {output_size!r}")
    out = []
    for i, v in enumerate(sizes):
        if v is None and n > 1:
            out.append(spatial[i])
        elif isinstance(v, (int, np.integer)) and not isinstance(v, bool):
            if v < 0:
                raise ValueError(f"{name}: output_size must be >= 0 everywhere, got {output_size!r}")
            out.append(int(v))
        else:
            raise TypeError(f"{name}: output_size entries must be {entries}, got {output_size!r}")
    return tuple(out)


def _bins(size: int, out: int) -> tuple[np.ndarray, np.ndarray]:
    """torch's adaptive bins: start = floor(i*in/out), end = ceil((i+1)*in/out)."""
    i = np.arange(out)
    return (i * size) // out, -((-(i + 1) * size) // out)


def _bin_table(size: int, out: int) -> tuple[np.ndarray, np.ndarray]:
    """torch's adaptive bins along a dim of ``size`` as an ``(out, K)`` index table (``K`` the
    widest bin) and its mask of the slots inside each bin."""
    start, end = _bins(size, out)
    sel = start[:, None] + np.arange(int((end - start).max()) if out else 0)[None, :]
    return np.minimum(sel, size - 1), sel < end[:, None]


def _bin_means(y: jax.Array, ax: int, size: int, out: int) -> jax.Array:
    """Means of torch's adaptive bins along ``ax``: each bin's elements (:func:`_take_bins`, the
    slots past its end 0) summed and divided by its length, as torch.  (A dense averaging matrix
    multiplies every value by the other bins' zeros: an infinite value made every bin NaN.)"""
    sel, inside = _bin_table(size, out)
    total = jnp.sum(_take_bins(y, ax, sel, inside, 0), ax + 1)
    return total / jnp.asarray(inside.sum(1).reshape((out,) + (1,) * (y.ndim - ax - 1)), y.dtype)


def _adaptive_avg_pool_nd(input: Any, output_size: Any, num_spatial_dims: int, name: str,
                          channel_axis: int = 1) -> jax.Array:
    n = num_spatial_dims
    last = _is_last(name, channel_axis, n)
    x, unbatched = _batched(input, n, name, empty_channels=True, last=last)
    first = 1 if last else 2
    if not jnp.issubdtype(x.dtype, jnp.inexact):
        raise TypeError(f"{name}: expected a floating-point input, got dtype {x.dtype}")
    outs = _adaptive_sizes(output_size, _spatial_shape(x, last), n, name)
    y = compiled(_adaptive_avg_pool, (outs, first), x)
    return _unbatch(y, unbatched)


def _adaptive_avg_pool(x: jax.Array, outs: tuple[int, ...], first: int) -> jax.Array:
    return _lowering_pooling.adaptive_avg_pool(x, outs, first, bin_table=_bin_table,
                                               reference=_adaptive_avg_pool_reference)


def _adaptive_avg_pool_reference(x: jax.Array, outs: tuple[int, ...], first: int = 2,
                                 bin_means: Callable = _bin_means) -> jax.Array:
    """Separable, innermost dim first: a mean over equal bins where ``out``
    divides ``in`` (global pooling included), else ``bin_means(y, ax, in, out)``, by
    default the masked sums of the bins' gathered elements (:func:`_bin_means`); the
    spatial dims start at ``first`` (2, or 1 for channels-last input)."""
    y = x.astype(jnp.promote_types(x.dtype, jnp.float32))
    for i in reversed(range(len(outs))):
        size, ax, out = int(x.shape[first + i]), first + i, outs[i]
        if out == size:
            continue
        if out == 0:  # torch: an empty result
            y = jnp.zeros(y.shape[:ax] + (0,) + y.shape[ax + 1:], y.dtype)
            continue
        if size % out == 0:  # equal, disjoint bins: a mean over a split dim (a reduction, any layout)
            y = jnp.mean(y.reshape(y.shape[:ax] + (out, size // out) + y.shape[ax + 1:]), ax + 1)
            continue
        y = bin_means(y, ax, size, out)
    return y.astype(x.dtype)


def _adaptive_max_pool_nd(input: Any, output_size: Any, return_indices: bool, num_spatial_dims: int,
                          name: str) -> Any:
    n = num_spatial_dims
    x, unbatched = _batched(input, n, name, empty_channels=jnp.ndim(input) == n + 1)
    outs = _adaptive_sizes(output_size, _spatial_shape(x, False), n, name)
    return _unbatch(compiled(_adaptive_max_pool, (outs, bool(return_indices)), x), unbatched)


def _adaptive_max_pool(x: jax.Array, outs: tuple[int, ...], return_indices: bool) -> Any:
    bins = _AdaptiveBins(tuple(int(v) for v in x.shape[2:]), outs)
    return _lowering_pooling.adaptive_max_pool(x, outs, return_indices, bin_elements=bins,
                                               reference=lambda x, outs: _bins_max_reference(x, outs, bins))


def _torch_max_pair(a: tuple, b: tuple) -> tuple:
    """torch's choice between two ``(value, flat index)`` pairs: a NaN wins
    (the later of two NaNs), else the larger value, else the earlier element.
    A choice by a total order, so associative and commutative: any reduction
    order gives torch's loop result (first maximum in row-major order, last NaN)."""
    (av, ai), (bv, bi) = a, b
    a_nan, b_nan = _is_nan(av), _is_nan(bv)
    take_b = jnp.where(a_nan | b_nan, b_nan & (~a_nan | (bi > ai)), (bv > av) | ((bv == av) & (bi < ai)))
    return jnp.where(take_b, bv, av), jnp.where(take_b, bi, ai)


class _AdaptiveBins(NamedTuple):
    """``bin_elements`` for torch's adaptive bins of a ``(N, C, *spatial)`` input: along
    spatial dim ``i``, axis ``2 + i`` becomes ``(out, K)`` (``K`` the widest bin) and slots
    past a bin's end hold ``fill``.  ``table(i)``: the NumPy index table and its mask."""

    spatial: tuple
    outs: tuple

    def table(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        return _bin_table(self.spatial[i], self.outs[i])

    def __call__(self, v: jax.Array, i: int, out: int, fill: Any) -> jax.Array:
        return _take_bins(v, 2 + i, *self.table(i), fill)


def _take_bins(v: jax.Array, ax: int, sel: np.ndarray, inside: np.ndarray, fill: Any) -> jax.Array:
    """Axis ``ax`` of ``v`` gathered as ``(out, K)`` bins by the static index table ``sel``,
    with ``fill`` where ``inside`` is false.  Bins that tile a stretch of the axis (an
    adaptive pool whose output divides the input, a global pool, windows with stride ==
    kernel) are a slice and a reshape: a gather of the whole input is several times slower
    on XLA:CPU (global max over 8x64x224x224: 459 -> 9 ms forward, AMD EPYC AVX-512).
    Other runs of consecutive elements (adaptive bins that do not tile, at most
    ``_MAX_SLICED_BINS`` of them) are one static slice per bin, padded to ``K`` and
    stacked: AdaptiveMaxPool2d(7) on 8x64x225x225 forward 102 -> 61 ms, forward+backward
    163 -> 120 (Intel Xeon AVX-512; the gradient is slices and pads, not a scatter)."""
    out, k = sel.shape
    first = int(sel[0, 0])
    if bins_tile(sel, inside):
        tiles = lax.slice_in_dim(v, first, first + out * k, axis=ax)
        return tiles.reshape(v.shape[:ax] + (out, k) + v.shape[ax + 1:])
    widths = inside.sum(axis=1)
    runs = all(np.array_equal(sel[i, :w], sel[i, 0] + np.arange(w)) and inside[i, :w].all()
               for i, w in enumerate(widths))
    if runs and out <= _MAX_SLICED_BINS:
        fill = jnp.asarray(fill, v.dtype)
        parts = []
        for i, w in enumerate(widths):
            part = lax.slice_in_dim(v, int(sel[i, 0]), int(sel[i, 0]) + int(w), axis=ax)
            if w < k:
                part = lax.pad(part, fill, [(0, int(k - w) if a == ax else 0, 0) for a in range(v.ndim)])
            parts.append(part)
        return jnp.stack(parts, axis=ax)
    inside = inside.reshape(inside.shape + (1,) * (v.ndim - 1 - ax))
    return jnp.where(inside, jnp.take(v, sel, axis=ax), fill)


# one slice per bin: the program grows with the number of bins (not with the input), so
# many bins along a dim keep the gather
_MAX_SLICED_BINS = 32


def _bins_max_reference(x: jax.Array, outs: tuple[int, ...], bin_elements: Any) -> tuple[jax.Array, jax.Array]:
    """Separable over dims, innermost first, on ``(value, flat input index)``
    pairs.  Along a dim of size ``L``, the ``(out, K)`` index array of torch's
    bins (adaptive bins, or max pooling windows: ``bin_elements``; ``K`` the widest
    bin; NumPy at trace time) gathers each bin's
    elements; slots past a bin's end hold the lowest value and an index that
    loses every tie; a reduction over ``K`` with torch's choice
    (:func:`_torch_max_pair`) keeps one pair per bin.  The choice orders
    elements by flat index, so dim-by-dim gives the same pick as torch's loop
    over the whole bin.  Values are then read at the indices: JAX's gradient
    goes to torch's argmax."""
    n = len(outs)
    N, C = x.shape[:2]
    spatial = tuple(int(v) for v in x.shape[2:])
    itype = index_dtype()
    if any(o == 0 for o in outs):
        return jnp.zeros((N, C) + outs, x.dtype), jnp.zeros((N, C) + outs, itype)
    lowest, last = jnp.asarray(lowest_value(x.dtype), x.dtype), jnp.asarray(jnp.iinfo(itype).max, itype)
    values = lax.stop_gradient(x)
    index = jnp.broadcast_to(jnp.arange(math.prod(spatial), dtype=itype).reshape(spatial), x.shape)
    for i in reversed(range(n)):
        bins = (bin_elements(values, i, outs[i], lowest), bin_elements(index, i, outs[i], last))
        values, index = lax.reduce(bins, (lowest, last), _torch_max_pair, (2 + i + 1,))
    values = jnp.take_along_axis(x.reshape(N, C, math.prod(spatial)), index.reshape(N, C, math.prod(outs)), axis=2)
    return values.reshape(index.shape), index


_ADAPTIVE_AVG_DOC = """Adaptive average pooling to ``output_size``, as ``torch.nn.functional.adaptive_avg_pool{n}d``.

    Args:
      input: ``(N, C, *in)`` or ``(C, *in)``, floating point.
      output_size: an int or a sequence of {n} ints, where ``None`` keeps that dim (2-d and 3-d).
      channel_axis: ``1``, or ``-1`` for ``(N, *in, C)`` (what channels-last mode passes).

    Output cell ``i`` along a dim of size ``in`` averages input
    ``[floor(i*in/out), ceil((i+1)*in/out))`` (bins overlap when ``out`` does not
    divide ``in``, and repeat when ``out > in``).  Computed as one ``(out, in)``
    averaging matrix per dim.  ``adaptive_avg_pool{n}d(x, 1)`` is global average pooling.

    Shape: ``(N, C, *in) -> (N, C, *output_size)``.

    Example:
      >>> import jax.numpy as jnp
      >>> from jaxlayers import functional as F
      >>> F.adaptive_avg_pool{n}d(jnp.ones((2, 3) + (5,) * {n}), 3).shape == (2, 3) + (3,) * {n}
      True
    """

_ADAPTIVE_MAX_DOC = """Adaptive max pooling to ``output_size``, as ``torch.nn.functional.adaptive_max_pool{n}d``.

    Args:
      input: ``(N, C, *in)`` or ``(C, *in)``.
      output_size: an int or a sequence of {n} ints, where ``None`` keeps that dim (2-d and 3-d).
      return_indices: also return torch's flat indices into the input's spatial
        plane (first maximum on ties, NaN wins), dtype ``index_dtype()``.

    Bins as in ``adaptive_avg_pool{n}d``: ``[floor(i*in/out), ceil((i+1)*in/out))``.
    The gradient goes to the element the index points at, as in torch.

    Shape: ``(N, C, *in) -> (N, C, *output_size)``.

    Example:
      >>> import jax.numpy as jnp
      >>> from jaxlayers import functional as F
      >>> F.adaptive_max_pool{n}d(jnp.ones((2, 3) + (5,) * {n}), 3).shape == (2, 3) + (3,) * {n}
      True
    """


@channels_last(spatial=1, native=True)
def adaptive_avg_pool1d(input, output_size, *, channel_axis=1):
    return _adaptive_avg_pool_nd(input, output_size, 1, "adaptive_avg_pool1d", channel_axis)


@channels_last(spatial=2, native=True)
def adaptive_avg_pool2d(input, output_size, *, channel_axis=1):
    return _adaptive_avg_pool_nd(input, output_size, 2, "adaptive_avg_pool2d", channel_axis)


@channels_last(spatial=3, native=True)
def adaptive_avg_pool3d(input, output_size, *, channel_axis=1):
    return _adaptive_avg_pool_nd(input, output_size, 3, "adaptive_avg_pool3d", channel_axis)


@channels_last(spatial=1)
def adaptive_max_pool1d(input, output_size, return_indices=False):
    return _adaptive_max_pool_nd(input, output_size, return_indices, 1, "adaptive_max_pool1d")


@channels_last(spatial=2)
def adaptive_max_pool2d(input, output_size, return_indices=False):
    return _adaptive_max_pool_nd(input, output_size, return_indices, 2, "adaptive_max_pool2d")


@channels_last(spatial=3)
def adaptive_max_pool3d(input, output_size, return_indices=False):
    return _adaptive_max_pool_nd(input, output_size, return_indices, 3, "adaptive_max_pool3d")


for _n, _f in ((1, adaptive_avg_pool1d), (2, adaptive_avg_pool2d), (3, adaptive_avg_pool3d)):
    _f.__doc__ = _ADAPTIVE_AVG_DOC.format(n=_n)
for _n, _f in ((1, adaptive_max_pool1d), (2, adaptive_max_pool2d), (3, adaptive_max_pool3d)):
    _f.__doc__ = _ADAPTIVE_MAX_DOC.format(n=_n)


# ----------------------------------------------------------------------------- LP pool


def _lp_pool_nd(input: Any, norm_type: Any, kernel_size: Any, stride: Any, ceil_mode: bool, num_spatial_dims: int,
                name: str, channel_axis: int = 1) -> jax.Array:
    n = num_spatial_dims
    if isinstance(norm_type, bool) or not isinstance(norm_type, (int, float, np.integer, np.floating)):
        raise TypeError(f"{name}: norm_type must be a number, got {norm_type!r}")
    if norm_type == 0:
        raise ValueError(f"{name}: norm_type must be non-zero, got {norm_type!r}")
    k = ntuple(kernel_size, n, "kernel_size", name, min_value=1)
    if norm_type == math.inf:  # |x| with torch's slope sign(x): a window of zeros passes no gradient
        return _max_pool_nd(abs_sign_grad(jnp.asarray(input)), k, stride, 0, 1, ceil_mode, False, n, name,
                            channel_axis)
    if norm_type == -math.inf:
        return -_max_pool_nd(-abs_sign_grad(jnp.asarray(input)), k, stride, 0, 1, ceil_mode, False, n, name,
                             channel_axis)
    x = jnp.asarray(input)
    avg = _avg_pool_nd(jnp.power(x, norm_type), k, stride, 0, ceil_mode, True, None, n, name, channel_axis)
    # torch: (sign(avg) * relu(|avg|)) * prod(k), then ** (1/p); the gradient
    # is zero where the window's sum of x**p is zero.
    scale = jnp.asarray(math.prod(k), avg.dtype)
    nonzero = avg != 0
    safe = jnp.where(nonzero, avg, jnp.ones_like(avg))
    out = jnp.power(safe * scale, 1.0 / norm_type)
    return jnp.where(nonzero, out, lax.stop_gradient(jnp.power(avg * scale, 1.0 / norm_type)))


_LP_DOC = """Power-average pooling, as ``torch.nn.functional.lp_pool{n}d``.

    Args:
      input: ``(N, C, *in)`` or ``(C, *in)``.
      norm_type: ``p`` (non-zero; ``inf`` is max pooling of ``|x|``, ``-inf`` min).
      kernel_size, stride (default ``kernel_size``), ceil_mode: as ``avg_pool{n}d``.
      channel_axis: 1, or -1 for a batched ``(N, *in, C)`` input (channels-last mode).

    ``out = (sum over window of x**p) ** (1/p)`` computed as torch does:
    ``avg_pool{n}d(x**p, kernel_size, stride, 0, ceil_mode) * prod(kernel_size)``
    (so ceil-mode overhang windows are rescaled as in torch), then
    ``** (1/norm_type)`` with torch's sign convention (a negative sum stays
    negative for odd integer ``p``, NaN otherwise; zero gradient where the sum
    is zero).

    Shape: as ``avg_pool{n}d`` with ``padding=0``.

    Example:
      >>> import jax.numpy as jnp
      >>> from jaxlayers import functional as F
      >>> F.lp_pool1d(jnp.array([[[3., 4., 0., 0.]]]), 2, 2).tolist()
      [[[5.0, 0.0]]]
    """


@channels_last(spatial=1, native=True)
def lp_pool1d(input, norm_type, kernel_size, stride=None, ceil_mode=False, *, channel_axis=1):
    return _lp_pool_nd(input, norm_type, kernel_size, stride, ceil_mode, 1, "lp_pool1d", channel_axis)


@channels_last(spatial=2, native=True)
def lp_pool2d(input, norm_type, kernel_size, stride=None, ceil_mode=False, *, channel_axis=1):
    return _lp_pool_nd(input, norm_type, kernel_size, stride, ceil_mode, 2, "lp_pool2d", channel_axis)


@channels_last(spatial=3, native=True)
def lp_pool3d(input, norm_type, kernel_size, stride=None, ceil_mode=False, *, channel_axis=1):
    return _lp_pool_nd(input, norm_type, kernel_size, stride, ceil_mode, 3, "lp_pool3d", channel_axis)


for _n, _f in ((1, lp_pool1d), (2, lp_pool2d), (3, lp_pool3d)):
    _f.__doc__ = _LP_DOC.format(n=_n)
del _n, _f


# ----------------------------------------------------------------------------- *_with_indices
max_pool1d_with_indices = always_indices(max_pool1d, """\
      >>> F.max_pool1d_with_indices(jnp.array([[[1., 3., 2., 5.]]]), 2)[1].tolist()
      [[[1, 3]]]""")
max_pool2d_with_indices = always_indices(max_pool2d, """\
      >>> F.max_pool2d_with_indices(jnp.arange(16.).reshape(1, 4, 4), 2)[1].tolist()
      [[[5, 7], [13, 15]]]""")
max_pool3d_with_indices = always_indices(max_pool3d, """\
      >>> F.max_pool3d_with_indices(jnp.arange(8.).reshape(1, 2, 2, 2), 2)[1].tolist()
      [[[[7]]]]""")
adaptive_max_pool1d_with_indices = always_indices(adaptive_max_pool1d, """\
      >>> F.adaptive_max_pool1d_with_indices(jnp.array([[[1., 3., 2., 5., 4.]]]), 2)[1].tolist()
      [[[1, 3]]]""")
adaptive_max_pool2d_with_indices = always_indices(adaptive_max_pool2d, """\
      >>> F.adaptive_max_pool2d_with_indices(jnp.arange(16.).reshape(1, 4, 4), 1)[1].tolist()
      [[[15]]]""")
adaptive_max_pool3d_with_indices = always_indices(adaptive_max_pool3d, """\
      >>> F.adaptive_max_pool3d_with_indices(jnp.arange(8.).reshape(1, 2, 2, 2), 1)[1].tolist()
      [[[[7]]]]""")
