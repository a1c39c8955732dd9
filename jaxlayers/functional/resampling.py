"""Resampling: ``interpolate`` (``upsample``, ``upsample_nearest``, ``upsample_bilinear``).

Every mode is separable: each resized spatial dim is one small per-axis
operator computed with NumPy at trace time from the static sizes, so that
compile time does not depend on the input size:

* ``nearest`` / ``nearest-exact``: a gather with a static index array
  (``jnp.take``; its gradient is torch's scatter-add);
* ``linear`` / ``bilinear`` / ``trilinear`` / ``bicubic`` and the antialiased
  kernels: a dense ``(out, in)`` interpolation matrix contracted with
  ``jnp.tensordot`` (its transpose is the gradient); on CPU, where the sampling
  positions repeat with a short period, the value is computed from the taps
  (:mod:`jaxlayers._lowering.resampling`);
* ``area``: :func:`jaxlayers.functional.adaptive_avg_pool1d` / ``2d`` / ``3d``.

Indices and weights follow ATen's CPU kernels (``UpSample.h``,
``UpSampleKernel.cpp``) step by step, in the same floating-point type
(float32 for float32/bfloat16/float16 inputs, float64 for float64): the scale
is ``1 / scale_factor`` when a ``scale_factor`` is given and
``recompute_scale_factor`` is not true, ``in / out`` otherwise, or
``(in - 1) / (out - 1)`` with ``align_corners``; source indices are
``scale * (dst + 0.5) - 0.5`` (clamped at 0 except for cubic), torch's legacy
nearest is ``floor(dst * scale)``, nearest-exact ``floor((dst + 0.5) * scale)``,
bicubic uses ``A = -0.75`` with clamped index access at the borders, and the
antialiased kernels are PIL's (triangle / Keys cubic with ``a = -0.5``,
support widened by the scale when downsampling, weights normalised).
"""

from __future__ import annotations

import functools
import math
from typing import Any, NamedTuple, Optional

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from .._lowering import resampling as _lowering_resampling
from .._memory_format import channels_last
from .._utils import compiled, compute_dtype, shape_str
from .pooling import _adaptive_avg_pool_nd

__all__ = ["interpolate", "upsample", "upsample_nearest", "upsample_bilinear"]

MODES = ("nearest", "nearest-exact", "linear", "bilinear", "bicubic", "trilinear", "area")
_INTERPOLATING = ("linear", "bilinear", "bicubic", "trilinear")
# mode -> the only input rank it accepts (None: 3-D, 4-D and 5-D)
_MODE_RANK = {"linear": 3, "bilinear": 4, "bicubic": 4, "trilinear": 5}


class InterpSpec(NamedTuple):
    """Parsed ``interpolate`` arguments for one input shape."""

    mode: str
    out: tuple[int, ...]  # output spatial sizes
    scales: tuple[Optional[float], ...]  # per dim: the scale_factor torch's kernel receives, or None
    align_corners: bool
    antialias: bool


def _is_int(v: Any) -> bool:
    return isinstance(v, (int, np.integer)) and not isinstance(v, bool)


def _is_real(v: Any) -> bool:
    return isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, bool)


def parse_interpolate(
    shape: tuple[int, ...],
    size: Any,
    scale_factor: Any,
    mode: str,
    align_corners: Optional[bool],
    recompute_scale_factor: Optional[bool],
    antialias: bool,
    name: str,
) -> InterpSpec:
    """torch's argument rules of ``F.interpolate`` for an input of ``shape``."""
    ndim = len(shape)
    if not isinstance(mode, str) or mode not in MODES:
        raise ValueError(f"{name}: unknown mode {mode!r}; expected one of {', '.join(MODES)}")
    if ndim not in (3, 4, 5):
        raise ValueError(
            f"{name}: expected 3-D, 4-D or 5-D input (N, C, *spatial), got {ndim}-D input of shape {shape_str(shape)}"
        )
    need = _MODE_RANK.get(mode)
    if need is not None and ndim != need:
        raise ValueError(
            f"{name}: mode {mode!r} needs {need}-D input, got {ndim}-D input of shape {shape_str(shape)}"
        )
    if mode in _INTERPOLATING:
        align_corners = bool(align_corners) if align_corners is not None else False
    elif align_corners is not None:
        raise ValueError(
            f"{name}: align_corners can only be set with the interpolating modes: linear | bilinear | bicubic "
            f"| trilinear, got align_corners={align_corners!r} with mode {mode!r}"
        )
    else:
        align_corners = False
    if antialias and not (mode in ("bilinear", "bicubic") and ndim == 4):
        raise ValueError(
            f"{name}: antialias is restricted to the bilinear and bicubic modes and needs 4-D input, got mode "
            f"{mode!r} and input of shape {shape_str(shape)}"
        )
    n = ndim - 2
    spatial = tuple(int(s) for s in shape[2:])
    if size is not None and scale_factor is not None:
        raise ValueError(f"{name}: only one of size or scale_factor should be defined, got both")
    if size is None and scale_factor is None:
        raise ValueError(f"{name}: either size or scale_factor should be defined")
    if size is not None:
        if recompute_scale_factor:
            raise ValueError(f"{name}: recompute_scale_factor is not meaningful with an explicit size")
        sizes = tuple(size) if isinstance(size, (tuple, list)) else (size,) * n
        if len(sizes) != n:
            raise ValueError(
                f"{name}: input and output must have the same number of spatial dimensions, got input of shape "
                f"{shape_str(shape)} and size={size!r}"
            )
        if not all(_is_int(s) for s in sizes):
            raise TypeError(f"{name}: size must be an int or a sequence of {n} ints, got {size!r}")
        out = tuple(int(s) for s in sizes)
        scales: tuple[Optional[float], ...] = (None,) * n
    else:
        factors = tuple(scale_factor) if isinstance(scale_factor, (tuple, list)) else (scale_factor,) * n
        if len(factors) != n:
            raise ValueError(
                f"{name}: input and scale_factor must have the same number of spatial dimensions, got input of "
                f"shape {shape_str(shape)} and scale_factor={scale_factor!r}"
            )
        if not all(_is_real(f) for f in factors):
            raise TypeError(f"{name}: scale_factor must be a number or a sequence of {n} numbers, got {scale_factor!r}")
        factors = tuple(float(f) for f in factors)
        if not all(math.isfinite(f) for f in factors):
            raise ValueError(f"{name}: scale_factor must be finite, got {scale_factor!r}")
        out = tuple(int(math.floor(float(s) * f)) for s, f in zip(spatial, factors))
        # torch passes the given scales on to the kernels unless they are recomputed
        # from the output size (always so for "area").
        recompute = bool(recompute_scale_factor) or mode == "area"
        scales = (None,) * n if recompute else factors
    if min(spatial) <= 0 or min(out) < (0 if mode == "area" else 1):  # "area" is adaptive pooling: size 0 is empty
        raise ValueError(
            f"{name}: input and output sizes should be greater than 0, got input of shape {shape_str(shape)} and "
            f"output size {out}"
        )
    return InterpSpec(mode, out, scales, align_corners, bool(antialias))


# ----------------------------------------------------------------------------- per-axis operators


def _opmath(dtype: Any) -> type:
    """ATen's accumulation type for the index computation: float64 for float64, else float32."""
    return np.float64 if jnp.dtype(dtype) == jnp.float64 else np.float32


def _floorf(v: np.ndarray) -> np.ndarray:
    """C ``floorf`` on a float or double (the argument is rounded to float first), as int."""
    return np.floor(np.asarray(v, np.float64).astype(np.float32)).astype(np.int64)


def _area_scale(ot: type, n_in: int, n_out: int, align_corners: bool, scale: Optional[float]) -> Any:
    """``area_pixel_compute_scale`` (``compute_scales_value`` without align_corners)."""
    if align_corners:
        return ot(n_in - 1) / ot(n_out - 1) if n_out > 1 else ot(0)
    if scale is not None and scale > 0:
        return ot(1.0 / scale)
    return ot(n_in) / ot(n_out)


def _source_index(ot: type, scale: Any, n_out: int, align_corners: bool, cubic: bool) -> np.ndarray:
    """``area_pixel_compute_source_index`` for every destination index."""
    dst = np.arange(n_out).astype(ot)
    if align_corners:
        return scale * dst
    src = scale * (dst + ot(0.5)) - ot(0.5)
    return src if cubic else np.where(src < 0, ot(0), src)


def _guard(ot: type, real: np.ndarray, n_in: int) -> tuple[np.ndarray, np.ndarray]:
    """``guard_index_and_lambda``: floor index (<= in - 1) and its weight in [0, 1]."""
    idx = np.minimum(_floorf(real), n_in - 1)
    lam = np.clip(real - idx.astype(ot), ot(0), ot(1)).astype(ot)
    return idx, lam


def _cubic_coeffs(ot: type, t: np.ndarray, a: float = -0.75) -> list[np.ndarray]:
    """``get_cubic_upsample_coefficients``: the 4 weights for fractional offset ``t``."""
    A = ot(a)

    def c1(x):
        return ((A + 2) * x - (A + 3)) * x * x + 1

    def c2(x):
        return ((A * x - 5 * A) * x + 8 * A) * x - 4 * A

    one = ot(1)
    return [c2(t + one), c1(t), c1(one - t), c2(one - t + one)]


def _keys(x: np.ndarray, a: float) -> np.ndarray:
    """The cubic convolution kernel (PIL's bicubic filter for ``a = -0.5``)."""
    x = np.abs(x)
    c1 = ((a + 2) * x - (a + 3)) * x * x + 1
    c2 = ((a * x - 5 * a) * x + 8 * a) * x - 4 * a
    return np.where(x < 1, c1, np.where(x < 2, c2, 0.0))


def _aa_matrix(ot: type, n_in: int, n_out: int, scale: Any, bicubic: bool) -> np.ndarray:
    """``_compute_indices_min_size_weights_aa``: PIL's antialiased weights as an (out, in) matrix."""
    interp = 4 if bicubic else 2
    support = ot(interp * 0.5) * scale if scale >= 1 else ot(interp * 0.5)
    max_size = int(math.ceil(support)) * 2 + 1
    invscale = ot(1) / scale if scale >= 1 else ot(1)
    center = scale * (np.arange(n_out).astype(ot) + ot(0.5))
    xmin = np.maximum(np.trunc(center - support + ot(0.5)).astype(np.int64), 0)
    xsize = np.clip(np.minimum(np.trunc(center + support + ot(0.5)).astype(np.int64), n_in) - xmin, 0, max_size)
    j = np.arange(max_size)
    x = ((j[None, :] + xmin[:, None]).astype(ot) - center[:, None] + ot(0.5)) * invscale
    w = _keys(x, -0.5) if bicubic else np.maximum(1 - np.abs(x), 0)
    w = np.where(j[None, :] < xsize[:, None], w, 0).astype(np.float64)
    total = w.sum(1, keepdims=True)
    w = np.where(total != 0, w / np.where(total != 0, total, 1), w)
    m = np.zeros((n_out, n_in))
    cols = np.minimum(j[None, :] + xmin[:, None], n_in - 1)
    np.add.at(m, (np.repeat(np.arange(n_out), max_size), cols.ravel()), w.ravel())
    return m


@functools.lru_cache(maxsize=512)
def _axis_operator(
    mode: str, n_in: int, n_out: int, scale: Optional[float], align_corners: bool, antialias: bool, ot: type,
    two_d: bool = False,
) -> tuple[str, np.ndarray]:
    """``("take", indices)`` or ``("matrix", (out, in) weights)`` resizing one axis.

    ``two_d``: the axis belongs to a 4-D input (torch's 2-d nearest kernels differ).
    """
    if mode in ("nearest", "nearest-exact"):
        dst = np.arange(n_out)
        if two_d:
            # 2-d kernels: nearest_idx / nearest_exact_idx (UpSample.h), float scale.
            s = _area_scale(np.float32, n_in, n_out, False, scale)
            if mode == "nearest-exact":
                idx = _floorf((dst + 0.5) * np.float64(s))
            elif n_out == n_in:
                idx = dst
            elif n_out == 2 * n_in:
                idx = dst >> 1
            else:
                idx = _floorf(dst.astype(np.float32) * s)
        else:
            # 1-d and 3-d kernels: HelperInterpNearest(Exact), scale in the input's opmath type.
            s = _area_scale(ot, n_in, n_out, False, scale)
            if mode == "nearest":
                idx = _floorf(s * dst.astype(ot))
            else:
                idx = _floorf(_source_index(ot, s, n_out, False, False).astype(np.float64) + 0.5)
        return "take", np.minimum(idx, n_in - 1)
    s = _area_scale(ot, n_in, n_out, align_corners, scale)
    rows = np.arange(n_out)
    m = np.zeros((n_out, n_in))
    if antialias:
        return "matrix", _aa_matrix(ot, n_in, n_out, s, mode == "bicubic")
    if mode == "bicubic":
        idx, lam = _guard(ot, _source_index(ot, s, n_out, align_corners, True), n_in)
        for j, c in enumerate(_cubic_coeffs(ot, lam)):
            np.add.at(m, (rows, np.clip(idx - 1 + j, 0, n_in - 1)), c.astype(np.float64))
        return "matrix", m
    # linear: compute_source_index_and_lambda
    if n_out == n_in:
        return "take", rows
    i0, lam1 = _guard(ot, _source_index(ot, s, n_out, align_corners, False), n_in)
    i1 = i0 + (i0 < n_in - 1)
    np.add.at(m, (rows, i0), (ot(1) - lam1).astype(np.float64))
    np.add.at(m, (rows, i1), lam1.astype(np.float64))
    return "matrix", m


def _resize_axis(x: jax.Array, axis: int, op: tuple[str, np.ndarray], key: tuple) -> jax.Array:
    """``x`` resized along ``axis`` by ``op`` (from :func:`_axis_operator`, whose arguments are ``key``)."""
    kind, a = op
    if kind == "take":
        n_in, n_out = x.shape[axis], len(a)
        if np.array_equal(a, np.arange(n_out)) and n_out == n_in:
            return x
        if n_out % n_in == 0 and np.array_equal(a, np.arange(n_out) // (n_out // n_in)):
            return jnp.repeat(x, n_out // n_in, axis=axis)  # integer upsampling: broadcast + reshape
        step = int(a[1] - a[0]) if n_out > 1 else 1
        if step > 0 and np.array_equal(a, a[0] + step * np.arange(n_out)):
            return lax.slice_in_dim(x, int(a[0]), int(a[-1]) + 1, step, axis)  # strided subsampling
        # the indices behind a barrier: XLA would otherwise constant-fold the gradient's scatter
        # when the cotangent is constant too (grad of a sum: 13-22 s compiling 224 -> 299)
        return jnp.take(x, lax.optimization_barrier(jnp.asarray(a)), axis=axis, mode="clip")
    return _lowering_resampling.resize_axis(x, axis, a, key=key,
                                            reference=functools.partial(_contract, axis=axis, m=a))


def _contract(x: jax.Array, axis: int, m: np.ndarray) -> jax.Array:
    """``x`` resized along ``axis`` by the dense ``(out, in)`` matrix ``m`` (the reference)."""
    y = jnp.tensordot(x, jnp.asarray(m, x.dtype), axes=((axis,), (1,)), precision=lax.Precision.HIGHEST)
    return jnp.moveaxis(y, -1, axis)


def _interpolate(
    input: Any,
    size: Any,
    scale_factor: Any,
    mode: str,
    align_corners: Optional[bool],
    recompute_scale_factor: Optional[bool],
    antialias: bool,
    name: str,
) -> jax.Array:
    x = jnp.asarray(input)
    spec = parse_interpolate(tuple(x.shape), size, scale_factor, mode, align_corners,
                             recompute_scale_factor, antialias, name)
    n = x.ndim - 2
    if spec.mode == "area":
        return _adaptive_avg_pool_nd(x, spec.out, n, name)
    if spec.mode not in ("nearest", "nearest-exact") and not jnp.issubdtype(x.dtype, jnp.inexact):
        raise TypeError(f"{name}: mode {spec.mode!r} needs a floating-point input, got dtype {x.dtype}")
    if spec.antialias and tuple(x.shape[2:]) == spec.out:
        return x
    return compiled(_resize, (spec,), x)


def _resize(x: jax.Array, spec: InterpSpec) -> jax.Array:
    """``x`` resized by ``spec``'s mode, one spatial dim at a time (any mode but ``area``)."""
    n = x.ndim - 2
    ot = _opmath(x.dtype)
    spatial = tuple(int(s) for s in x.shape[2:])
    y = x
    if spec.mode in ("nearest", "nearest-exact"):  # a gather: exact in any dtype, but its gradient sums the
        cdtype = compute_dtype(x.dtype)  # repeats, in float32 for half precision as torch
        y = y.astype(cdtype)
    else:
        cdtype = jnp.promote_types(x.dtype, jnp.float32)
        y = y.astype(cdtype)
    for i in reversed(range(n)):  # innermost dim first, as torch's separable kernels
        if spec.antialias and spatial[i] == spec.out[i]:
            continue
        key = (spec.mode, spatial[i], spec.out[i], spec.scales[i], spec.align_corners, spec.antialias, ot, n == 2)
        y = _resize_axis(y, 2 + i, _axis_operator(*key), key)
    return y.astype(x.dtype)


@channels_last
def interpolate(
    input: Any,
    size: Any = None,
    scale_factor: Any = None,
    mode: str = "nearest",
    align_corners: Optional[bool] = None,
    recompute_scale_factor: Optional[bool] = None,
    antialias: bool = False,
) -> jax.Array:
    """Resize the spatial dims of ``input``, as ``torch.nn.functional.interpolate``.

    Args:
        input: ``(N, C, L)``, ``(N, C, H, W)`` or ``(N, C, D, H, W)``.
        size: output spatial size, an int or one int per spatial dim.
        scale_factor: multiplier of the spatial size, a number or one per dim
            (exactly one of ``size`` and ``scale_factor``).
        mode: ``"nearest"`` (torch's legacy ``floor(dst * scale)``),
            ``"nearest-exact"``, ``"linear"`` (3-D), ``"bilinear"`` (4-D),
            ``"bicubic"`` (4-D), ``"trilinear"`` (5-D) or ``"area"``
            (adaptive average pooling).
        align_corners: interpolating modes only; ``None`` means ``False``.
            Setting it with another mode is an error, as in torch.
        recompute_scale_factor: if true, the kernel's scale is recomputed as
            ``in / out`` from the floored output size instead of ``1 / scale_factor``.
        antialias: bilinear and bicubic on 4-D input: PIL's antialiased kernels
            (they differ from the plain ones when downsampling).

    Shape: ``(N, C, *in) -> (N, C, *out)`` with ``out = size`` or
    ``out[i] = floor(in[i] * scale_factor[i])``.

    Differences from torch: integer inputs work in the nearest modes only; in
    the interpolating modes a non-finite input value spreads NaN along its row
    where a dense interpolation matrix is used (it multiplies the value by zero
    weights: the ``"reference"`` setting, differentiated calls, and ratios without
    a short period; otherwise it reaches the outputs whose taps hold it, and those
    of the same output phase whose weight for it is zero, where a phase's window is
    wider than one output's taps, as with ``align_corners`` and sizes ``2n - 1``).
    torch 2.13's ``"lanczos"`` mode is not implemented.

    Example:
        >>> import jax.numpy as jnp
        >>> from jaxlayers import functional as F
        >>> F.interpolate(jnp.arange(4.0).reshape(1, 1, 4), size=8, mode="linear")[0, 0]
        Array([0.  , 0.25, 0.75, 1.25, 1.75, 2.25, 2.75, 3.  ], dtype=float32)
        >>> F.interpolate(jnp.ones((1, 3, 5, 7)), scale_factor=2).shape
        (1, 3, 10, 14)
    """
    return _interpolate(input, size, scale_factor, mode, align_corners, recompute_scale_factor, antialias,
                        "interpolate")


@channels_last
def upsample(input: Any, size: Any = None, scale_factor: Any = None, mode: str = "nearest",
             align_corners: Optional[bool] = None) -> jax.Array:
    """``interpolate`` under its deprecated torch name ``torch.nn.functional.upsample``.

    Shape: as :func:`interpolate`.
    """
    return _interpolate(input, size, scale_factor, mode, align_corners, None, False, "upsample")


@channels_last
def upsample_nearest(input: Any, size: Any = None, scale_factor: Any = None) -> jax.Array:
    """``interpolate(..., mode="nearest")``, as ``torch.nn.functional.upsample_nearest``.

    Shape: as :func:`interpolate`.
    """
    return _interpolate(input, size, scale_factor, "nearest", None, None, False, "upsample_nearest")


@channels_last
def upsample_bilinear(input: Any, size: Any = None, scale_factor: Any = None) -> jax.Array:
    """``interpolate(..., mode="bilinear", align_corners=True)``, as ``torch.nn.functional.upsample_bilinear``.

    Shape: as :func:`interpolate`; 4-D input only.
    """
    return _interpolate(input, size, scale_factor, "bilinear", True, None, False, "upsample_bilinear")
