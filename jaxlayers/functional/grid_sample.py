"""Sampling grids: ``grid_sample`` and ``affine_grid``.

``grid_sample`` reads the input at the grid's points with one vectorised gather
of channel rows for all interpolation taps (4 or 8 for bilinear/trilinear, 1 for
nearest, 16 for bicubic; ``jaxlayers._lowering.grid_sample`` reads them in place
on CPU), so compile time does not depend on the input or grid size.  The coordinate
maths is torch's (``GridSampler.h``): unnormalisation with or without ``align_corners``,
``border`` clipping and ``reflection`` about the borders (or the border pixel
centres with ``align_corners``), nearest rounding half to even (``nearbyint``),
bicubic with ``A = -0.75`` and padding applied to every tap's integer
coordinate.  Gradients with respect to the input and the grid come from JAX's
autodiff of these formulas; the clipping is written so that its derivative is
torch's (0 on and outside the borders, 1 strictly inside), and so is the
reflection's (+1 at the reflection point).
"""

from __future__ import annotations

import itertools
from typing import Any, Optional

import jax
import jax.numpy as jnp
import numpy as np

from .._lowering import grid_sample as _lowering_grid_sample
from .._memory_format import channels_last
from .._utils import compiled, one_program, shape_str

__all__ = ["grid_sample", "affine_grid"]

_GS_MODES = ("bilinear", "nearest", "bicubic")
_PADDING_MODES = ("zeros", "border", "reflection")


def _check_grid_sample(x: jax.Array, g: jax.Array, mode: str, padding_mode: str, name: str) -> None:
    if mode not in _GS_MODES:
        raise ValueError(f"{name}: expected mode to be 'bilinear', 'nearest' or 'bicubic', got {mode!r}")
    if padding_mode not in _PADDING_MODES:
        raise ValueError(
            f"{name}: expected padding_mode to be 'zeros', 'border' or 'reflection', got {padding_mode!r}"
        )
    if x.ndim not in (4, 5) or g.ndim != x.ndim:
        raise ValueError(
            f"{name}: expected 4-D or 5-D input and a grid with the same number of dimensions, got input of "
            f"shape {shape_str(x)} and grid of shape {shape_str(g)}"
        )
    n = x.ndim - 2
    if g.shape[-1] != n:
        raise ValueError(
            f"{name}: expected grid to have size {n} in its last dimension for {x.ndim}-D input, got grid of "
            f"shape {shape_str(g)}"
        )
    if g.shape[0] != x.shape[0]:
        raise ValueError(
            f"{name}: expected grid and input to have the same batch size, got input of shape {shape_str(x)} and "
            f"grid of shape {shape_str(g)}"
        )
    if any(s == 0 for s in x.shape[2:]):
        raise ValueError(f"{name}: expected input with non-empty spatial dimensions, got shape {shape_str(x)}")
    if mode == "bicubic" and x.ndim != 4:
        raise ValueError(f"{name}: bicubic interpolation only supports 4-D input, got shape {shape_str(x)}")
    for a, what in ((x, "input"), (g, "grid")):
        if not jnp.issubdtype(a.dtype, jnp.inexact):
            raise TypeError(f"{name}: expected a floating-point {what}, got dtype {a.dtype}")
    if x.dtype != g.dtype:  # torch raises too; promoting would round the other one silently
        raise TypeError(f"{name}: expected input and grid to have the same dtype, got input {x.dtype} and "
                        f"grid {g.dtype}")


def _unnormalize(c: jax.Array, size: int, align_corners: bool) -> jax.Array:
    """``grid_sampler_unnormalize``: [-1, 1] to pixel coordinates."""
    if align_corners:
        return (c + 1) / 2 * (size - 1)
    return ((c + 1) * size - 1) / 2


def _clip(c: jax.Array, size: int) -> jax.Array:
    """``clip_coordinates`` with torch's gradient: 1 strictly inside (0, size - 1), 0 elsewhere;
    NaN (also a reflected infinity) goes to 0, as in torch."""
    hi = jnp.asarray(size - 1, c.dtype)
    return jnp.where(~(c > 0), jnp.zeros_like(c), jnp.where(c >= hi, hi, c))


def _reflect(c: jax.Array, twice_low: int, twice_high: int) -> jax.Array:
    """``reflect_coordinates``: reflect about ``twice_low / 2`` and ``twice_high / 2``."""
    if twice_low == twice_high:
        return jnp.zeros_like(c)
    lo = twice_low / 2
    span = (twice_high - twice_low) / 2
    d = c - lo
    d = jnp.where(d < 0, -d, d)
    extra = jnp.fmod(d, span)
    flips = jnp.floor(jax.lax.stop_gradient(d) / span)
    return jnp.where(jnp.fmod(flips, 2) == 0, extra + lo, span - extra + lo)


def _pad_coordinates(c: jax.Array, size: int, padding_mode: str, align_corners: bool) -> jax.Array:
    """``compute_coordinates``: apply ``border`` / ``reflection`` to pixel coordinates."""
    if padding_mode == "border":
        return _clip(c, size)
    if padding_mode == "reflection":
        c = _reflect(c, 0, 2 * (size - 1)) if align_corners else _reflect(c, -1, 2 * size - 1)
        return _clip(c, size)
    return c


def _cubic_coeffs(t: jax.Array) -> list[jax.Array]:
    """``get_cubic_upsample_coefficients`` with ``A = -0.75``."""
    A = -0.75

    def c1(x):
        return ((A + 2) * x - (A + 3)) * x * x + 1

    def c2(x):
        return ((A * x - 5 * A) * x + 8 * A) * x - 4 * A

    return [c2(t + 1), c1(t), c1(1 - t), c2(2 - t)]


def _tap_table(idx: list[jax.Array], w: list[Optional[jax.Array]], sizes: list[int],
               dtype: Any) -> tuple[jax.Array, jax.Array, jax.Array]:
    """``(flat, valid, scale)``, each ``(taps, N, P)``: every tap's flat index into the
    ``prod(sizes)`` spatial elements (clamped in range), whether it lies inside the input,
    and its weight ``prod_k w[k]`` (``0 * weight`` outside the input, so that a NaN or
    infinite weight gives NaN, as in torch).  Taps run over the combinations
    of the coordinates' taps, the first coordinate slowest.

    ``idx[k]`` / ``w[k]``: ``(t_k, N, P)`` integer taps and weights along coordinate
    ``k`` (spatial dim ``-1 - k``); ``w[k] = None`` means weight 1.
    """
    # per coordinate, for all its taps at once: inside the input, and the clamped index times its stride
    strides = [int(np.prod(sizes[:k])) for k in range(len(sizes))]
    inside = [(i >= 0) & (i < size) for i, size in zip(idx, sizes)]
    offset = [jnp.clip(i, 0, size - 1) * stride for i, size, stride in zip(idx, sizes, strides)]
    flats, valids, scales = [], [], []
    for combo in itertools.product(*(range(i.shape[0]) for i in idx)):
        flat, valid, weight = 0, True, None
        for k, j in enumerate(combo):
            valid = valid & inside[k][j]
            flat = flat + offset[k][j]
            if w[k] is not None:
                weight = w[k][j] if weight is None else weight * w[k][j]
        if weight is None:
            scale = valid.astype(dtype)
        else:  # 0 * weight, not 0: XLA turns a multiply by the converted mask into a select, losing NaN
            scale = jnp.where(valid, weight, weight * 0)
        flats.append(flat)
        valids.append(valid)
        scales.append(scale)
    return jnp.stack(flats), jnp.stack(valids), jnp.stack(scales)


def _sample(xf: jax.Array, idx: list[jax.Array], w: list[Optional[jax.Array]], sizes: list[int]) -> jax.Array:
    """``sum_taps prod_k w[k] * xf[n, c, idx]`` with zeros outside the input, ``(N, C, P)``
    from ``xf`` ``(N, C, prod(sizes))`` (taps as in :func:`_tap_table`): the reference is
    :func:`_weighted_rows`, which ``jaxlayers._lowering.grid_sample`` may lower."""
    flat, valid, scale = _tap_table(idx, w, sizes, xf.dtype)
    return _lowering_grid_sample.weighted_taps(xf, flat, valid, scale, reference=_weighted_rows)


def _weighted_rows(xf: jax.Array, flat: jax.Array, valid: jax.Array, scale: jax.Array) -> jax.Array:
    """``sum_t where(valid[t], xf[n, c, flat[t]], 0) * scale[t]`` in ONE gather of whole
    channel rows: ``(N, H*W, C)[n, flat] -> (N, taps * P, C)``, so that the index array has
    one entry per point and tap, not per channel."""
    taps, nb, p = flat.shape
    xt = jnp.swapaxes(xf, 1, 2)
    rows = jnp.moveaxis(flat, 0, 1).reshape(nb, taps * p)
    v = jax.vmap(lambda a, i: a.at[i].get(mode="promise_in_bounds"))(xt, rows)
    v = v.reshape(nb, taps, p, xf.shape[1])
    v = jnp.where(jnp.moveaxis(valid, 0, 1)[..., None], v, jnp.zeros((), v.dtype))
    scale = jnp.moveaxis(scale, 0, 1)
    # the taps summed one by one: XLA:CPU handed a multiply-and-reduce over them to a library (YNNPACK)
    # fusion, a reduction of 4 per point and channel (bilinear 8x16x64x64 forward+backward 24 -> 8 ms)
    y = v[:, 0] * scale[:, 0, :, None]
    for t in range(1, taps):
        y = y + v[:, t] * scale[:, t, :, None]
    return jnp.swapaxes(y, 1, 2)


def _tap_index(c: jax.Array) -> jax.Array:
    """Integer tap coordinates; a NaN one (a NaN grid point) is outside the input, as torch's
    out-of-range integer cast: it samples nothing and takes no gradient (XLA casts NaN to 0, a
    valid tap, whose NaN weight made the input's gradient NaN there).  The NaN weight keeps the
    output NaN."""
    return jnp.where(jnp.isnan(c), -1, c).astype(jnp.int32)


def _grid_sample(input: Any, grid: Any, mode: str, padding_mode: str, align_corners: Optional[bool],
                 name: str) -> jax.Array:
    x, g = jnp.asarray(input), jnp.asarray(grid)
    _check_grid_sample(x, g, mode, padding_mode, name)
    align_corners = bool(align_corners) if align_corners is not None else False
    out_shape = x.shape[:2] + tuple(g.shape[1:-1])
    if 0 in out_shape:
        return jnp.zeros(out_shape, x.dtype)
    # one program per shape and options when called outside jit (op by op it compiled ~45)
    return compiled(_sampled, (mode, padding_mode, align_corners), x, g)


def _sampled(x: jax.Array, g: jax.Array, mode: str, padding_mode: str, align_corners: bool) -> jax.Array:
    """grid_sample's arithmetic on checked, non-empty arrays of one dtype."""
    dtype = x.dtype
    n = x.ndim - 2
    nb, ch = x.shape[:2]
    out_shape = (nb, ch) + tuple(g.shape[1:-1])
    # grid[..., k] indexes spatial dim -1 - k: (x, y[, z]) -> (W, H[, D])
    sizes = [int(x.shape[-1 - k]) for k in range(n)]
    xf = x.reshape(nb, ch, -1)
    coords = [_unnormalize(g[..., k].reshape(nb, -1), sizes[k], align_corners) for k in range(n)]
    if mode == "bicubic":
        # taps floor(c) - 1 .. floor(c) + 2; padding applies to each tap's integer coordinate
        idx, w = [], []
        for k, c in enumerate(coords):
            base = jnp.floor(jax.lax.stop_gradient(c))
            taps = base[None] + jnp.arange(-1, 3, dtype=dtype).reshape(4, 1, 1)
            idx.append(_tap_index(_pad_coordinates(taps, sizes[k], padding_mode, align_corners)))
            w.append(jnp.stack(_cubic_coeffs(c - base)))
        return _sample(xf, idx, w, sizes).reshape(out_shape)
    coords = [_pad_coordinates(c, s, padding_mode, align_corners) for c, s in zip(coords, sizes)]
    if mode == "nearest":
        idx = [_tap_index(jnp.round(jax.lax.stop_gradient(c)))[None] for c in coords]
        return _sample(xf, idx, [None] * n, sizes).reshape(out_shape)
    idx, w = [], []
    for c in coords:
        lo = jnp.floor(jax.lax.stop_gradient(c))
        idx.append(_tap_index(jnp.stack([lo, lo + 1])))
        w.append(jnp.stack([lo + 1 - c, c - lo]))
    return _sample(xf, idx, w, sizes).reshape(out_shape)


@channels_last
def grid_sample(input: Any, grid: Any, mode: str = "bilinear", padding_mode: str = "zeros",
                align_corners: Optional[bool] = None) -> jax.Array:
    """Sample ``input`` at the grid's points, as ``torch.nn.functional.grid_sample``.

    Args:
        input: ``(N, C, H_in, W_in)`` or ``(N, C, D_in, H_in, W_in)``.
        grid: ``(N, H_out, W_out, 2)`` or ``(N, D_out, H_out, W_out, 3)`` with
            normalised ``(x, y[, z])`` coordinates in ``[-1, 1]`` (``x`` indexes
            the width); of ``input``'s floating dtype (TypeError otherwise, as torch).
        mode: ``"bilinear"`` (trilinear for 5-D), ``"nearest"`` (rounds half to
            even) or ``"bicubic"`` (4-D only).
        padding_mode: values outside the input: ``"zeros"``, ``"border"``
            (clamped coordinates) or ``"reflection"``.
        align_corners: whether -1 and 1 are the centres of the corner pixels
            (``True``) or their outer edges (``False``); ``None`` means ``False``.

    Shape: ``(N, C, *grid.shape[1:-1])``.

    Gradients flow to ``input`` and ``grid`` (zero for ``grid`` with ``"nearest"``),
    as torch's.

    Example:
        >>> import jax.numpy as jnp
        >>> from jaxlayers import functional as F
        >>> x = jnp.arange(4.0).reshape(1, 1, 2, 2)
        >>> F.grid_sample(x, jnp.zeros((1, 1, 1, 2)), align_corners=True)
        Array([[[[1.5]]]], dtype=float32)
    """
    return _grid_sample(input, grid, mode, padding_mode, align_corners, "grid_sample")


def _base_coords(steps: int, align_corners: bool) -> np.ndarray:
    """torch's ``_linspace_from_neg_one``: ``linspace(-1, 1, steps)``, scaled by
    ``(steps - 1) / steps`` without ``align_corners`` (``[0]`` for one step)."""
    if steps <= 1:
        return np.zeros(1)
    r = np.linspace(-1.0, 1.0, steps)
    return r if align_corners else r * (steps - 1) / steps


@one_program
def _affine_grid(theta: Any, size: Any, align_corners: Optional[bool], name: str) -> jax.Array:
    t = jnp.asarray(theta)
    if not jnp.issubdtype(t.dtype, jnp.floating):
        raise TypeError(f"{name}: expected theta to have a floating-point dtype, got {t.dtype}")
    try:
        ints = tuple(int(s) for s in size)
    except TypeError:
        raise TypeError(f"{name}: size must be a sequence of ints (N, C, H, W) or (N, C, D, H, W), got {size!r}")
    if any(isinstance(s, bool) or s != i for s, i in zip(size, ints)):  # 4.5 was truncated to 4
        raise TypeError(f"{name}: size must be a sequence of ints (N, C, H, W) or (N, C, D, H, W), got {size!r}")
    size = ints
    if len(size) not in (4, 5):
        raise ValueError(
            f"{name}: only 4-D and 5-D sizes are supported, for 2-D and 3-D affine transforms, got size {size}"
        )
    n = len(size) - 2
    if t.shape != (size[0], n, n + 1):
        raise ValueError(
            f"{name}: expected a batch of {n}-D affine matrices of shape ({size[0]}, {n}, {n + 1}) for size {size}, "
            f"got theta of shape {shape_str(t)}"
        )
    if min(size) <= 0:
        raise ValueError(f"{name}: expected a positive output size, got {size}")
    align_corners = bool(align_corners) if align_corners is not None else False
    spatial = size[2:]
    # base[..., k] = coordinate along spatial dim -1 - k (x, y[, z]); last entry 1
    axes = [_base_coords(spatial[-1 - k], align_corners) for k in range(n)]
    # broadcast in the program from the 1-d axes: a (*spatial, n + 1) constant grows it with the size
    cols = [jnp.broadcast_to(jnp.asarray(a, t.dtype).reshape([-1 if d == n - 1 - k else 1 for d in range(n)]),
                             spatial) for k, a in enumerate(axes)]
    base = jnp.stack(cols + [jnp.ones(spatial, t.dtype)], axis=-1).reshape(-1, n + 1)  # (*spatial, n + 1)
    grid = jnp.einsum("pk,bjk->bpj", base, t, precision=jax.lax.Precision.HIGHEST)
    return grid.reshape((size[0],) + tuple(spatial) + (n,))


def affine_grid(theta: Any, size: Any, align_corners: Optional[bool] = None) -> jax.Array:
    """The sampling grid of a batch of affine maps, as ``torch.nn.functional.affine_grid``.

    Args:
        theta: ``(N, 2, 3)`` for a 4-D ``size`` or ``(N, 3, 4)`` for a 5-D one.
        size: the output's ``(N, C, H, W)`` or ``(N, C, D, H, W)``.
        align_corners: as in :func:`grid_sample`; ``None`` means ``False``.

    Shape: ``(N, H, W, 2)`` or ``(N, D, H, W, 3)``: ``grid[n, ..., :] = theta[n] @ (x, y[, z], 1)``.

    Example:
        >>> import jax.numpy as jnp
        >>> from jaxlayers import functional as F
        >>> theta = jnp.array([[[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]]])
        >>> F.affine_grid(theta, (1, 1, 2, 2), align_corners=True)[0, :, :, 0]
        Array([[-1.,  1.],
               [-1.,  1.]], dtype=float32)
    """
    return _affine_grid(theta, size, align_corners, "affine_grid")
