"""How :mod:`jaxlayers.functional.conv` lowers a convolution (private).

:func:`conv` is ``lax.conv_general_dilated`` in torch layout (NC*S / OI*K) with a
faster *weight gradient* on CPU.  XLA:CPU computes ``dL/dweight`` of a convolution
as a convolution whose "kernel" is the whole output gradient, which is several
times slower than the forward pass.  On CPU, for ``stride == 1``, ``groups == 1``
and non-negative padding, :func:`conv` is a ``jax.custom_jvp`` whose primal is
XLA's convolution and whose tangent w.r.t. the weight is :func:`_tap_conv`, the
same convolution written as one GEMM per kernel tap.  Reverse mode transposes
that tangent, so ``dL/dweight[:, :, tap] = dy_wide @ x_flat[:, off(tap):][:L].T``:
per tap one plain GEMM over contiguous, copy-free slices of the padded input
flattened channel-major (the "wide grid" trick: the output is computed on the
padded grid, whose extra rows/columns are discarded; their gradient is zero).
The input gradient stays XLA's transposed convolution (fast).  Transposed
convolutions (``lhs_dilation > 1``, any padding) use :func:`_scatter_tap_conv`
instead: per tap a GEMM scattered to the strided output positions, whose
transpose is a strided slice of the output gradient and one GEMM.

Where it is used (:func:`use_tap_weight_grad`) follows measurements of the
weight gradient alone on a 2-core x86 CPU (jax 0.10, medians, ms, XLA / per tap):
transposed convolutions win everywhere tried (8 shapes, 1-3 d, 3.3x to 16x
faster); 1x1 kernels win everywhere (3.5x to 17x); k x k kernels win only on
large 2-d maps with many channels (b32 64->64 32x32: 660 / 150, 5x5: 570 / 330,
b8 128->128 56x56: 300 / 218) and lose on small maps, few channels and 1-d
inputs (b64 32->32 8x8: 2.0 / 7.8, 32->32 32x32: 23 / 67, 1-d L1024: 12 / 48,
16->16 5x5 64x64: 35 / 223), so those keep XLA's.

The *forward* of a 1-d or 3-d transposed convolution on this path is :func:`_subpixel_conv`:
one stride-1 convolution of the undilated input per output phase, interleaved.  Measured
against XLA's convolution of the stride-dilated input (forward, float32, taking turns):
3-d ``k2 s2`` 4x32x8^3 -> 16: 56 / 1.0 ms, ``k3 s2 p1 op1``: 157 / 6.9 ms, ``k4 s2 p1``: 386 / 345 ms;
1-d L256 b32 64 -> 32: ``k4 s2 p1`` 2.5-3.5 / 2.0-2.6 ms, ``k3 s2 p1 op1`` 5.6 / 2.1, ``k2 s2`` 1.9 / 1.2.
In 2-d it lost (b32 64 -> 32 16x16: ``k4 s2 p1`` 12.8-15.4 / 15.0-16.6 ms, ``k2 s2`` 4.2-4.4 / 5.8-6.5),
so 2-d keeps XLA's.

``jax.jvp``, ``jax.grad`` (any order), ``jax.vmap`` and ``jax.hessian`` all work:
the rule is a custom JVP, not a custom VJP.  Other backends (GPU/TPU, decided by
``jax.default_backend()`` at trace time) and the shapes not covered use plain
``lax.conv_general_dilated``.
"""

from __future__ import annotations

import itertools
import math
from functools import partial
from typing import Any, NamedTuple, Sequence

import jax
import jax.numpy as jnp
from jax import lax
from jax.custom_derivatives import SymbolicZero

# The wide grid computes prod(padded) / prod(out) times the useful work; beyond this
# ratio (e.g. a kernel as large as the input) XLA's weight-gradient convolution wins.
_MAX_WIDE_OVERHEAD = 2.0
_MAX_TAPS = 27
# k x k (non-1x1) kernels: per-tap GEMMs beat XLA only from these sizes on (2-d only).
_MIN_TAP_CHANNELS = 64
_MIN_TAP_SPATIAL = 32
# Transposed-convolution forwards computed per output phase (:func:`_subpixel_conv`): 1-d and 3-d
# only; in 2-d XLA's convolution of the stride-dilated input measured as fast or faster.
_SUBPIXEL_RANKS = (1, 3)


def _out_sizes(spatial, kernel, pairs, lhs_dilation, dilation) -> tuple[int, ...]:
    """Output sizes of a stride-1 convolution of the ``lhs_dilation``-dilated, ``pairs``-padded input."""
    return tuple((s - 1) * st + 1 + lo + hi - d * (k - 1)
                 for s, k, (lo, hi), st, d in zip(spatial, kernel, pairs, lhs_dilation, dilation))


def _xla_conv(x, w, stride, pairs, lhs_dilation, rhs_dilation, groups, precision):
    return lax.conv_general_dilated(
        x, w, window_strides=stride, padding=pairs, lhs_dilation=lhs_dilation, rhs_dilation=rhs_dilation,
        feature_group_count=groups, precision=precision,
    )


def _tap_conv(x: Any, w: Any, pairs: Sequence[tuple[int, int]], dilation: Sequence[int], precision: Any) -> Any:
    """Stride-1, groups-1 cross-correlation as one GEMM per kernel tap (linear in ``w``).

    ``x`` is zero-padded and flattened to ``(C, N*prod(padded))``; tap ``t`` reads the
    contiguous slice starting at its flat offset, and the sum over taps is the output on
    the padded grid, cropped to the valid output positions.
    """
    n = x.ndim - 2
    batch, chans = x.shape[:2]
    out_ch, kernel = w.shape[0], tuple(w.shape[2:])
    xp = jnp.pad(x, [(0, 0), (0, 0)] + [tuple(p) for p in pairs])
    padded = xp.shape[2:]
    out = _out_sizes(x.shape[2:], kernel, pairs, (1,) * n, dilation)
    xf = jnp.moveaxis(xp, 1, 0).reshape(chans, -1)  # (C, M)
    m = xf.shape[1]
    flat_stride = [math.prod(padded[i + 1:]) for i in range(n)]
    max_off = sum(d * (k - 1) * st for k, d, st in zip(kernel, dilation, flat_stride))
    length = m - max_off  # every valid output position p has p + max_off < m
    w3 = w.reshape(out_ch, chans, -1)
    acc = None
    for t, tap in enumerate(itertools.product(*(range(k) for k in kernel))):
        off = sum(i * d * st for i, d, st in zip(tap, dilation, flat_stride))
        term = jnp.matmul(w3[:, :, t], lax.slice_in_dim(xf, off, off + length, axis=1), precision=precision)
        acc = term if acc is None else acc + term
    y = jnp.pad(acc, ((0, 0), (0, max_off))).reshape((out_ch, batch) + tuple(padded))
    y = y[(slice(None), slice(None)) + tuple(slice(0, o) for o in out)]
    return jnp.moveaxis(y, 0, 1)


def _scatter_tap_conv(
    x: Any, w: Any, pairs: Sequence[tuple[int, int]], lhs_dilation: Sequence[int], dilation: Sequence[int],
    precision: Any,
) -> Any:
    """Groups-1 convolution of the ``lhs_dilation``-dilated input (a transposed convolution) per tap.

    Tap ``t`` contributes ``w[:, :, t] @ x`` placed at output positions
    ``stride*p + lo - dilation*t`` (an interior-padded, shifted ``lax.pad``), so no
    zeros of the dilated input are multiplied.  Linear in ``w``; its transpose is a
    strided slice of the output gradient and one GEMM per tap.
    """
    batch, chans = x.shape[:2]
    spatial = tuple(x.shape[2:])
    out_ch, kernel = w.shape[0], tuple(w.shape[2:])
    out = _out_sizes(spatial, kernel, pairs, lhs_dilation, dilation)
    xf = jnp.moveaxis(x, 1, 0).reshape(chans, -1)  # (C, N*prod(S))
    w3 = w.reshape(out_ch, chans, -1)
    zero = jnp.zeros((), x.dtype)
    acc = None
    for t, tap in enumerate(itertools.product(*(range(k) for k in kernel))):
        z = jnp.matmul(w3[:, :, t], xf, precision=precision).reshape((out_ch, batch) + spatial)
        config = [(0, 0, 0), (0, 0, 0)]
        for s, st, (lo, _), d, i, o in zip(spatial, lhs_dilation, pairs, dilation, tap, out):
            low = lo - d * i
            config.append((low, o - 1 - (low + (s - 1) * st), st - 1))
        term = lax.pad(z, zero, config)
        acc = term if acc is None else acc + term
    return jnp.moveaxis(acc, 0, 1)


class _Phase(NamedTuple):
    """The stride-1 convolution over the undilated input that yields one dim's outputs
    ``st*u + r`` (``u < length``): taps ``first, first + step, ...`` of the kernel, dilated."""

    first: int
    step: int
    dilation: int
    pad: tuple[int, int]
    length: int


def _phase_conv_dims(size, kernel, st, lo, d, out) -> list:
    """Per output phase ``r`` of one dim of the stride-``st`` dilated convolution (``out``
    outputs): its :class:`_Phase`, or ``None`` when no tap reaches it."""
    g = math.gcd(st, d)
    phases = []
    for r in range(st):
        taps = [t for t in range(kernel) if (r + d * t - lo) % st == 0]
        length = -(-(out - r) // st)
        if not taps or length < 1:
            phases.append(None)
            continue
        first, last = (r + d * taps[0] - lo) // st, (r + d * taps[-1] - lo) // st
        phases.append(_Phase(taps[0], st // g, d // g, (-first, length - 1 + last - (size - 1)), length))
    return phases


def _subpixel_conv(x, w, pairs, lhs_dilation, dilation, precision):
    """Groups-1 convolution of the ``lhs_dilation``-dilated input (a transposed convolution) as
    one stride-1 convolution per output phase (sub-pixel form), so no zero of the dilated input
    is multiplied; channels-last inside (XLA:CPU's convolution layout), one transpose back.

    Output position ``st*u + r`` only meets the taps ``t`` with ``(r + d*t - lo) % st == 0``;
    they form a sub-kernel ``w[..., t0::st/g]`` (``g = gcd(st, d)``) with dilation ``d/g`` over
    the undilated input.  Phases are padded to a common length and interleaved.
    """
    n = x.ndim - 2
    batch, out_ch = x.shape[0], w.shape[0]
    outs = _out_sizes(x.shape[2:], w.shape[2:], pairs, lhs_dilation, dilation)
    dims = [_phase_conv_dims(s, k, st, lo, d, o) for s, k, st, (lo, _), d, o
            in zip(x.shape[2:], w.shape[2:], lhs_dilation, pairs, dilation, outs)]
    full = [-(-o // st) for o, st in zip(outs, lhs_dilation)]
    xl = jnp.moveaxis(x, 1, -1)
    wl = jnp.moveaxis(w, (0, 1), (-1, -2))  # (*k, I, O)
    spec = "DHW"[3 - n:]
    parts = []
    for combo in itertools.product(*dims):
        if any(c is None for c in combo):
            parts.append(jnp.zeros((batch, *full, out_ch), x.dtype))
            continue
        sub = wl[tuple(slice(c.first, None, c.step) for c in combo)]
        y = lax.conv_general_dilated(
            xl, sub, (1,) * n, [c.pad for c in combo], rhs_dilation=[c.dilation for c in combo],
            dimension_numbers=(f"N{spec}C", f"{spec}IO", f"N{spec}C"), precision=precision)
        parts.append(jnp.pad(y, [(0, 0)] + [(0, m - c.length) for m, c in zip(full, combo)] + [(0, 0)]))
    # interleave channels-last (contiguous channel vectors move), then one NC* transpose
    y = jnp.stack(parts, axis=-2).reshape((batch, *full, *lhs_dilation, out_ch))
    perm = [0] + [a for i in range(n) for a in (1 + i, n + 1 + i)] + [2 * n + 1]
    y = jnp.transpose(y, perm).reshape((batch, *(m * st for m, st in zip(full, lhs_dilation)), out_ch))
    return jnp.moveaxis(y[(slice(None),) + tuple(slice(0, o) for o in outs)], -1, 1)


def _make_cpu_conv():
    @partial(jax.custom_jvp, nondiff_argnums=(2, 3, 4, 5))
    def cpu_conv(x, w, pairs, lhs_dilation, dilation, precision):
        if any(st != 1 for st in lhs_dilation) and x.ndim - 2 in _SUBPIXEL_RANKS:
            return _subpixel_conv(x, w, pairs, lhs_dilation, dilation, precision)
        n = x.ndim - 2
        return _xla_conv(x, w, (1,) * n, pairs, lhs_dilation, dilation, 1, precision)

    def jvp(pairs, lhs_dilation, dilation, precision, primals, tangents):
        x, w = primals
        dx, dw = tangents
        n = x.ndim - 2
        y = cpu_conv(x, w, pairs, lhs_dilation, dilation, precision)
        ty = None
        if not isinstance(dx, SymbolicZero):
            ty = _xla_conv(dx, w, (1,) * n, pairs, lhs_dilation, dilation, 1, precision)
        if not isinstance(dw, SymbolicZero):
            if all(s == 1 for s in lhs_dilation) and all(lo >= 0 and hi >= 0 for lo, hi in pairs):
                t = _tap_conv(x, dw, pairs, dilation, precision)
            else:
                t = _scatter_tap_conv(x, dw, pairs, lhs_dilation, dilation, precision)
            ty = t if ty is None else ty + t
        if ty is None:
            ty = jnp.zeros_like(y)
        return y, ty

    cpu_conv.defjvp(jvp, symbolic_zeros=True)
    return cpu_conv


_cpu_conv = _make_cpu_conv()


def use_tap_weight_grad(x_shape, w_shape, stride, pairs, lhs_dilation, dilation, groups) -> bool:
    """Whether :func:`conv` takes the CPU path with the per-tap weight gradient."""
    if jax.default_backend() != "cpu":
        return False
    if groups != 1 or any(s != 1 for s in stride):
        return False
    kernel = tuple(w_shape[2:])
    if math.prod(kernel) > _MAX_TAPS:
        return False
    lhs = tuple(lhs_dilation or (1,) * len(kernel))
    padded = [(s - 1) * st + 1 + lo + hi for s, st, (lo, hi) in zip(x_shape[2:], lhs, pairs)]
    out = _out_sizes(x_shape[2:], kernel, pairs, lhs, dilation)
    if any(o < 1 for o in out):
        return False
    if any(st != 1 for st in lhs):
        return True  # transposed: per-tap scatter form, no wasted work
    if any(lo < 0 or hi < 0 for lo, hi in pairs):
        return False
    if math.prod(padded) > _MAX_WIDE_OVERHEAD * math.prod(out):
        return False
    if math.prod(kernel) == 1:
        return True
    out_ch, in_ch = w_shape[0], w_shape[1]
    return (len(kernel) == 2 and min(out_ch, in_ch) >= _MIN_TAP_CHANNELS
            and min(out) >= _MIN_TAP_SPATIAL)


def conv(
    x: Any, w: Any, *, stride: Sequence[int], pairs: Sequence[tuple[int, int]], dilation: Sequence[int],
    groups: int = 1, lhs_dilation: Sequence[int] | None = None, precision: Any = None,
) -> Any:
    """``lax.conv_general_dilated`` (NC*S, OI*K) with the lowering chosen as described above."""
    pairs = tuple((int(lo), int(hi)) for lo, hi in pairs)
    stride, dilation = tuple(stride), tuple(dilation)
    lhs = None if lhs_dilation is None else tuple(lhs_dilation)
    if use_tap_weight_grad(x.shape, w.shape, stride, pairs, lhs, dilation, groups):
        return _cpu_conv(x, w, pairs, lhs or (1,) * len(dilation), dilation, precision)
    return _xla_conv(x, w, stride, pairs, lhs, dilation, groups, precision)
