"""CPU lowerings of the convolutions (private).

:func:`conv` takes the reference (``lax.conv_general_dilated`` in torch layout,
NC*S / OI*K, from :mod:`jaxlayers.functional.conv`) and returns it unchanged
where no lowering applies (setting ``"reference"``, a backend other than CPU,
grouped convolutions, shapes not covered).  On CPU it picks one of:

* **Transposed convolutions** (``lhs_dilation > 1``) — by construction, on by
  default: :func:`_cpu_conv`, whose weight gradient is :func:`_scatter_tap_conv`
  (per kernel tap one GEMM scattered to the strided output positions, so no
  zero of the stride-dilated input is multiplied) and whose 1-d/3-d forward is
  :func:`_subpixel_conv` (one stride-1 convolution of the undilated input per
  output phase).  Measured against XLA's convolution of the dilated input:
  3-d ``k2 s2`` 56 -> 1.0 ms forward; weight gradients 3-16x faster (docs/conv.md).
  In 2-d the sub-pixel forward measured slower on one CPU, so 2-d keeps XLA's forward.
  Beyond ``_MAX_TAPS`` taps (a 4x4x4 kernel) the weight gradient is the sub-pixel
  form's transpose (one weight-gradient convolution per output phase) instead of a
  loop over the taps: 3-d ``k4 s2`` on 2x64x16^3, forward 1274 -> 42 ms, forward +
  backward 522 -> 96 ms (torch 6.6 / 16; AMD EPYC Zen 5, AVX-512, 2 cores).
* **Pointwise (1x1) convolutions** — by construction: :func:`_pointwise_conv`,
  one GEMM over the channels of the channels-last view of the input.  A 1x1
  convolution is a GEMM; as one it needs no relayout of the kernel, and in
  channels-last mode (:mod:`jaxlayers._memory_format`) its channel moves cancel
  against the wrapper's, so it moves nothing at all.  In torch layout it moves
  the activations as XLA's convolution does (NC* -> N*C and back).  Forward and
  forward + backward 1.1-3.3x faster than XLA's convolution at ResNet-50's
  1x1 shapes, in either layout (AMD EPYC, AVX-512; docs/conv.md).
* **Depthwise convolutions** (one input channel per group) — by construction:
  :func:`_depthwise_conv`, a sum over the kernel taps of strided slices times
  per-channel weights (the convolution's own multiply-adds, no GEMM).
  XLA:CPU's grouped convolution is pathological there: 3x3 over 8x96x56x56
  took 68-117 ms forward against 2.2 ms as taps (torch 12-32 ms), and
  forward + backward 140-262 ms against 52-57 ms (AMD EPYC, AVX-512).  In
  channels-last mode (:func:`jaxlayers._memory_format.moved`) it computes on
  the channels-last view, so its moves cancel against the wrapper's.  Compile
  time grows with the taps (one weight-gradient reduction per tap), hence the
  limit of 49 (7x7).
* **Tiny maps** (at most ``_TINY_POSITIONS`` output positions per image) — by
  construction: :func:`_stacked_taps_conv`, one GEMM over the stacked kernel
  taps (im2col).  XLA:CPU's convolution is pathological there: a 3x3 512->512
  convolution on 2x2 maps took 62 ms against 0.36 ms as a GEMM (AMD EPYC,
  AVX-512), 290 vs 1.8 ms at batch 8.
* **Measured on the running machine** (:mod:`.autotune`, when autotuning is turned on; off by default):
  the per-tap weight gradient (:func:`_tap_conv`, one GEMM per tap over
  copy-free slices of the flattened padded input) and the stacked-taps GEMM on
  small maps, each against the reference, forward + backward.  The per-tap
  weight gradient won 2-5x on one 2-core AVX2 CPU and lost 2.2x on an AVX-512
  one, so it is never a fixed rule.

Every path is a ``jax.custom_jvp`` or plain JAX, so ``jvp``, ``grad`` of any
order, ``vmap`` and ``hessian`` work; each is tested against the reference.
"""

from __future__ import annotations

import itertools
import math
from functools import partial
from typing import Any, Callable, NamedTuple, Sequence

import jax
import jax.numpy as jnp
from jax import lax
from jax.custom_derivatives import SymbolicZero

from .._memory_format import moved
from . import autotune, enabled

# The wide grid computes prod(padded) / prod(out) times the useful work; beyond this
# ratio (e.g. a kernel as large as the input) the per-tap weight gradient is not tried.
_MAX_WIDE_OVERHEAD = 2.0
_MAX_TAPS = 27
# Transposed convolutions with up to this many output phases (the stride's product) are lowered;
# beyond _MAX_TAPS taps their weight derivative is taken per phase (the sub-pixel form's transpose).
_MAX_PHASES = 27
# Depthwise convolutions up to this many taps (ConvNeXt's 7x7) are sums over taps.
_MAX_DEPTHWISE_TAPS = 49
# Output maps this small are one GEMM over the stacked taps by default; up to
# _TUNED_STACK_POSITIONS the GEMM is a candidate for autotuning.
_TINY_POSITIONS = 4
_TUNED_STACK_POSITIONS = 64
# Transposed-convolution forwards computed per output phase (:func:`_subpixel_conv`): 1-d and 3-d
# only; in 2-d XLA's convolution of the stride-dilated input measured as fast or faster.
_SUBPIXEL_RANKS = (1, 3)


def _out_sizes(spatial, kernel, pairs, lhs_dilation, dilation) -> tuple[int, ...]:
    """Output sizes of a stride-1 convolution of the ``lhs_dilation``-dilated, ``pairs``-padded input."""
    return tuple((s - 1) * st + 1 + lo + hi - d * (k - 1)
                 for s, k, (lo, hi), st, d in zip(spatial, kernel, pairs, lhs_dilation, dilation))


def _pad_spatial(x: Any, pairs: Sequence[tuple[int, int]], first: int = 2) -> Any:
    """Zero-pad the spatial dims (``first`` onwards); a negative entry crops (a stride-1
    transposed convolution's padding beyond ``dilation * (kernel - 1)``)."""
    config = [(0, 0, 0)] * first + [(int(lo), int(hi), 0) for lo, hi in pairs]
    config += [(0, 0, 0)] * (x.ndim - len(config))
    return lax.pad(x, jnp.zeros((), x.dtype), config)


def _tap_conv(x: Any, w: Any, pairs: Sequence[tuple[int, int]], dilation: Sequence[int], precision: Any) -> Any:
    """Stride-1, groups-1 cross-correlation as one GEMM per kernel tap (linear in ``w``).

    ``x`` is zero-padded and flattened to ``(C, N*prod(padded))``; tap ``t`` reads the
    contiguous slice starting at its flat offset, and the sum over taps is the output on
    the padded grid, cropped to the valid output positions.
    """
    n = x.ndim - 2
    batch, chans = x.shape[:2]
    out_ch, kernel = w.shape[0], tuple(w.shape[2:])
    xp = _pad_spatial(x, pairs)
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
    precision: Any, channels_last: bool = False,
) -> Any:
    """Groups-1 convolution of the ``lhs_dilation``-dilated input (a transposed convolution) per tap.

    Tap ``t`` contributes ``w[:, :, t] @ x`` placed at output positions
    ``stride*p + lo - dilation*t`` (an interior-padded, shifted ``lax.pad``), so no
    zeros of the dilated input are multiplied.  Linear in ``w``; its transpose is a
    strided slice of the output gradient and one GEMM per tap.  With ``channels_last``
    the GEMMs run on channels-last rows ``(N*S, C)`` (``x`` moved there and the result
    back, both moves cancelling the memory-format wrapper's), so that the transpose's
    slices of the output gradient keep whole channel vectors: ConvTranspose2d(64, 32, 4,
    2, 1) forward+backward in channels-last mode 25 -> 15 ms (docs/conv.md).
    """
    batch, chans = x.shape[:2]
    spatial = tuple(x.shape[2:])
    out_ch, kernel = w.shape[0], tuple(w.shape[2:])
    out = _out_sizes(spatial, kernel, pairs, lhs_dilation, dilation)
    w3 = w.reshape(out_ch, chans, -1)
    zero = jnp.zeros((), x.dtype)
    if channels_last:
        xf = jnp.moveaxis(x, 1, -1).reshape(-1, chans)  # (N*prod(S), C)
    else:
        xf = jnp.moveaxis(x, 1, 0).reshape(chans, -1)  # (C, N*prod(S))
    acc = None
    for t, tap in enumerate(itertools.product(*(range(k) for k in kernel))):
        config = []
        for s, st, (lo, _), d, i, o in zip(spatial, lhs_dilation, pairs, dilation, tap, out):
            low = lo - d * i
            config.append((low, o - 1 - (low + (s - 1) * st), st - 1))
        if channels_last:
            z = jnp.matmul(xf, w3[:, :, t].T, precision=precision).reshape((batch,) + spatial + (out_ch,))
            config = [(0, 0, 0)] + config + [(0, 0, 0)]
        else:
            z = jnp.matmul(w3[:, :, t], xf, precision=precision).reshape((out_ch, batch) + spatial)
            config = [(0, 0, 0), (0, 0, 0)] + config
        term = lax.pad(z, zero, config)
        acc = term if acc is None else acc + term
    return jnp.moveaxis(acc, -1, 1) if channels_last else jnp.moveaxis(acc, 0, 1)


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
    @partial(jax.custom_jvp, nondiff_argnums=(2, 3, 4, 5, 6))
    def cpu_conv(x, w, pairs, lhs_dilation, dilation, precision, reference):
        if any(st != 1 for st in lhs_dilation) and x.ndim - 2 in _SUBPIXEL_RANKS:
            return _subpixel_conv(x, w, pairs, lhs_dilation, dilation, precision)
        n = x.ndim - 2
        return reference(x, w, (1,) * n, pairs, lhs_dilation, dilation, 1, precision)

    def jvp(pairs, lhs_dilation, dilation, precision, reference, primals, tangents):
        x, w = primals
        dx, dw = tangents
        n = x.ndim - 2
        y = cpu_conv(x, w, pairs, lhs_dilation, dilation, precision, reference)
        ty = None
        if not isinstance(dx, SymbolicZero):
            ty = reference(dx, w, (1,) * n, pairs, lhs_dilation, dilation, 1, precision)
        if not isinstance(dw, SymbolicZero):
            if all(s == 1 for s in lhs_dilation) and all(lo >= 0 and hi >= 0 for lo, hi in pairs):
                t = _tap_conv(x, dw, pairs, dilation, precision)
            elif math.prod(w.shape[2:]) > _MAX_TAPS:  # too many taps to loop over: per output phase
                t = _subpixel_conv(x, dw, pairs, lhs_dilation, dilation, precision)
            else:
                t = _scatter_tap_conv(x, dw, pairs, lhs_dilation, dilation, precision, channels_last=moved())
            ty = t if ty is None else ty + t
        if ty is None:
            ty = jnp.zeros_like(y)
        return y, ty

    cpu_conv.defjvp(jvp, symbolic_zeros=True)
    return cpu_conv


_cpu_conv = _make_cpu_conv()


def _pointwise_conv(x, w, stride, pairs, precision):
    """Groups-1 convolution with a kernel of ones ``(O, C, 1, ..., 1)`` as one GEMM: the padded,
    strided input channels-last ``(N, *out, C)`` times the ``(O, C)`` weight, contracted over C.
    The input is moved first, so that in channels-last mode the move cancels the wrapper's."""
    xc = _pad_spatial(jnp.moveaxis(x, 1, -1), pairs, first=1)
    xc = xc[(slice(None),) + tuple(slice(None, None, s) for s in stride)]
    y = lax.dot_general(xc, w.reshape(w.shape[:2]), (((x.ndim - 1,), (1,)), ((), ())), precision=precision)
    return jnp.moveaxis(y, -1, 1)


def _tap_slices(xp, kernel, stride, dilation, first=2):
    """For each kernel tap (row-major), ``(tap, the strided slice of the padded input xp that it
    reads)``: the output-sized view of a stride/dilation convolution; spatial dims ``first`` onwards."""
    n = len(kernel)
    spatial = xp.shape[first:first + n]
    out = tuple((p - d * (k - 1) - 1) // s + 1 for p, k, d, s in zip(spatial, kernel, dilation, stride))
    steps = [1] * xp.ndim
    steps[first:first + n] = stride
    for tap in itertools.product(*(range(k) for k in kernel)):
        start, limit = [0] * xp.ndim, list(xp.shape)
        for i, (t, d, o, s) in enumerate(zip(tap, dilation, out, stride)):
            start[first + i] = t * d
            limit[first + i] = t * d + (o - 1) * s + 1
        yield tap, lax.slice(xp, start, limit, steps)


@jax.custom_jvp
def _taps_major(w):
    """``w.T`` for ``w`` ``(C, taps)``, stored taps-major (channels contiguous) as a product with the
    identity: a transpose is fused back into the loop, which then loads each tap's weights strided
    by the taps' count (8x56x56x96 3x3 forward 4.6-5.3 -> 1.7-2.8 ms).  The derivative is the
    transpose (a custom JVP), whose own transpose, the weight gradient, would otherwise multiply
    an infinite cotangent by the identity's zeros (NaN at every tap of the channel).  An infinite
    *weight* still makes its channel NaN here (``inf * 0``; torch: inf, NaN where it meets the
    padding): handling it, by a ``lax.cond`` or by a second product carrying a code of the
    non-finite weights, made MobileNetV2's channels-last compile 0.89 -> 1.40 or 1.12 s."""
    return jnp.einsum("ct,ts->sc", w, jnp.eye(w.shape[1], dtype=w.dtype), precision=lax.Precision.HIGHEST)


@_taps_major.defjvp
def _taps_major_jvp(primals, tangents):
    return _taps_major(primals[0]), jnp.transpose(tangents[0])


def _depthwise_conv(x, w, stride, pairs, dilation, channels_last=False):
    """Depthwise convolution, ``w`` of shape ``(C * m, 1, *K)`` for ``C`` input channels (output
    channel ``o`` reads input channel ``o // m``): per kernel tap a strided slice of the padded input
    times that tap's per-channel weights, summed over the taps (in float32 at least).  With
    ``channels_last`` it computes on the channels-last view (``x`` moved there and the result back:
    in channels-last mode both moves cancel against the memory-format wrapper's)."""
    n = x.ndim - 2
    if channels_last:
        x = jnp.moveaxis(x, 1, -1)
    chan, first = (n + 1, 1) if channels_last else (1, 2)
    dtype = x.dtype
    acc_dtype = jnp.promote_types(dtype, jnp.float32)
    xp = _pad_spatial(x, pairs, first=first).astype(acc_dtype)
    mult = w.shape[0] // x.shape[chan]
    if mult > 1:
        xp = jnp.repeat(xp, mult, axis=chan)
    kernel = tuple(w.shape[2:])
    w = w.astype(acc_dtype)
    if channels_last:
        per_tap = _taps_major(w.reshape(w.shape[0], -1))
    wshape = [1] * xp.ndim
    wshape[chan] = -1
    acc = None
    for k, (tap, sl) in enumerate(_tap_slices(xp, kernel, stride, dilation, first)):
        weight = per_tap[k] if channels_last else w[(slice(None), 0) + tap]
        term = sl * weight.reshape(wshape)
        acc = term if acc is None else acc + term
    y = acc.astype(dtype)
    return jnp.moveaxis(y, -1, 1) if channels_last else y


def _stacked_taps_conv(x, w, stride, pairs, dilation, precision):
    """Groups-1 convolution as one GEMM over the stacked kernel taps (im2col):
    per tap a strided slice of the padded input, then ``einsum`` with the weight.  In at
    least float32, rounded once: in bfloat16 the input gradient, a sum of the taps'
    slices, was rounded once per tap (half of it off torch's bits at 64 channels)."""
    dtype = jnp.result_type(x, w)
    acc = jnp.promote_types(dtype, jnp.float32)
    x, w = x.astype(acc), w.astype(acc)
    taps = _tap_slices(_pad_spatial(x, pairs), tuple(w.shape[2:]), stride, dilation)
    cols = jnp.stack([sl for _, sl in taps], axis=2)  # (N, C, taps, *out)
    w3 = w.reshape(w.shape[0], x.shape[1], -1)
    return jnp.einsum("nct...,oct->no...", cols, w3, precision=precision).astype(dtype)


def _conv_out(x_shape, kernel, stride, pairs, lhs, dilation) -> tuple[int, ...]:
    """Output sizes of the (possibly input-dilated) strided convolution."""
    return tuple(((s - 1) * l + 1 + lo + hi - d * (k - 1) - 1) // st + 1
                 for s, k, st, (lo, hi), l, d in zip(x_shape[2:], kernel, stride, pairs, lhs, dilation))


def conv(
    x: Any, w: Any, *, stride: Sequence[int], pairs: Sequence[tuple[int, int]], dilation: Sequence[int],
    groups: int = 1, lhs_dilation: Sequence[int] | None = None, precision: Any = None,
    reference: Callable[..., Any],
) -> Any:
    """The convolution ``reference(x, w, stride, pairs, lhs_dilation, dilation, groups, precision)``,
    lowered on CPU as described above."""
    pairs = tuple((int(lo), int(hi)) for lo, hi in pairs)
    stride, dilation = tuple(stride), tuple(dilation)
    lhs = (1,) * len(dilation) if lhs_dilation is None else tuple(lhs_dilation)

    def ref(x, w):
        return reference(x, w, stride, pairs, None if lhs_dilation is None else lhs, dilation, groups, precision)

    if not enabled("cpu"):
        return ref(x, w)
    kernel = tuple(w.shape[2:])
    taps = math.prod(kernel)
    out = _conv_out(x.shape, kernel, stride, pairs, lhs, dilation)
    if any(o < 1 for o in out) or x.size == 0 or w.size == 0:
        return ref(x, w)
    if groups != 1:
        if groups == x.shape[1] and w.shape[1] == 1 and taps <= _MAX_DEPTHWISE_TAPS and all(st == 1 for st in lhs):
            return _depthwise_conv(x, w, stride, pairs, dilation, channels_last=moved())
        return ref(x, w)
    if any(st != 1 for st in lhs):  # transposed: skip the zeros of the dilated input
        if any(s != 1 for s in stride) or math.prod(lhs) > _MAX_PHASES:
            return ref(x, w)
        return _cpu_conv(x, w, pairs, lhs, dilation, precision, reference)
    if taps > _MAX_TAPS:
        return ref(x, w)
    if taps == 1:
        return _pointwise_conv(x, w, stride, pairs, precision)
    positions = math.prod(out)
    if positions <= _TINY_POSITIONS:
        return _stacked_taps_conv(x, w, stride, pairs, dilation, precision)
    candidates: dict[str, Callable] = {"reference": ref}
    padded = [s + lo + hi for s, (lo, hi) in zip(x.shape[2:], pairs)]
    if all(s == 1 for s in stride) and math.prod(padded) <= _MAX_WIDE_OVERHEAD * positions:
        candidates["tap_weight_grad"] = lambda x, w: _cpu_conv(x, w, pairs, lhs, dilation, precision, reference)
    if positions <= _TUNED_STACK_POSITIONS:
        candidates["stacked_taps"] = lambda x, w: _stacked_taps_conv(x, w, stride, pairs, dilation, precision)
    key = ("conv", x.shape, w.shape, str(x.dtype), str(w.dtype), stride, pairs, dilation, str(precision))
    choice = autotune.choose(key, candidates, [(x.shape, x.dtype), (w.shape, w.dtype)])
    return candidates[choice](x, w)
