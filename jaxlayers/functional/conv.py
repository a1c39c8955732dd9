"""Convolution and transposed convolution (torch.nn.functional.conv*d / conv_transpose*d).

One N-d implementation each (:func:`_conv_nd`, :func:`_conv_transpose_nd`); the
reference is :func:`_reference_conv`, ``lax.conv_general_dilated`` in torch layout, which
``jaxlayers._lowering.conv`` may lower on CPU (setting ``"auto"``, see ``jaxlayers.config``);
the public 1d/2d/3d functions are one-liners.
Arrays are in torch layout: input ``(N, C, *S)`` or unbatched ``(C, *S)``,
weight ``(out, in/groups, *k)`` (transposed: ``(in, out/groups, *k)``).
"""

from __future__ import annotations

from typing import Any, Sequence

import jax.numpy as jnp
from jax import lax

from .._lowering import conv as _lowering
from .._memory_format import channels_last
from .._utils import _is_int, add_bias, check_input_rank, compiled_when_eager, ntuple, product_sharding, shape_str

__all__ = [
    "conv1d",
    "conv2d",
    "conv3d",
    "conv_transpose1d",
    "conv_transpose2d",
    "conv_transpose3d",
    "conv_tbc",
]

_SPATIAL = {1: "L", 2: "H, W", 3: "D, H, W"}


def _reference_conv(x, w, stride, pairs, lhs_dilation, dilation, groups, precision):
    """Cross-correlation of ``x`` (N, C, *S) with ``w`` (O, C/groups, *K), torch layout: XLA's
    convolution, or :func:`_taps_conv` where XLA would abort on it (:func:`_swap_hazard`)."""
    n = x.ndim - 2
    lhs = (1,) * n if lhs_dilation is None else tuple(lhs_dilation)
    if _swap_hazard(x.shape[2:], w.shape[2:], stride, pairs, lhs, dilation):
        return _taps_conv(x, w, stride, pairs, lhs, dilation, groups, precision)
    spec = "NC" + "DHW"[3 - n:]
    return lax.conv_general_dilated(
        x, w, window_strides=stride, padding=pairs, lhs_dilation=lhs_dilation, rhs_dilation=dilation,
        dimension_numbers=(spec, "OI" + "DHW"[3 - n:], spec), feature_group_count=groups, precision=precision,
        out_sharding=product_sharding(x, w, [("x", 0), ("w", 0)] + [None] * n),  # batch, out channels
    )


def _dilated(size: int, d: int) -> int:
    return 0 if size == 0 else 1 + d * (size - 1)


def _swap_hazard(spatial, kernel, stride, pairs, lhs_dilation, dilation, depth: int = 2) -> bool:
    """Whether XLA would abort the process compiling this convolution or, to ``depth`` orders of
    differentiation, the convolutions JAX's transpose rules derive from it (``jax.grad``, and
    its grad for hessians).

    XLA's ``ConvOperandSwapper`` (run by the algebraic simplifier, jaxlib 0.10.2) swaps the operands
    of an ungrouped convolution (grouped ones are expanded on CPU first) with 2 or more spatial dims
    when the input is smaller than the kernel, and copies unchanged any dim it reads as a "group"
    dim: no padding, no window dilation, base dilation equal to the window size and window stride
    one less.  The copied window no longer matches the
    swapped kernel, and a CHECK aborts: "Window dimensions do not match RHS shape"
    (``algebraic_simplifier.cc``).  The input gradient of ``conv2d(x (1, 1, 3, 4), w (1, 1, 2, 2),
    stride=2, padding=(0, 1))`` is one: its last dim has kernel 2, base dilation 2 (the stride),
    stride 1, no padding.  This predicate flags every such dim, whether or not the swap would pay.
    """
    if len(spatial) < 2:
        return False
    out = [(_dilated(s, l) + lo + hi - _dilated(k, d)) // st + 1
           for s, k, st, (lo, hi), l, d in zip(spatial, kernel, stride, pairs, lhs_dilation, dilation)]
    group_dims = [d == 1 and lo == hi == 0 and l == k and st == k - 1
                  for k, st, (lo, hi), l, d in zip(kernel, stride, pairs, lhs_dilation, dilation)]
    if any(group_dims) and not all(group_dims):
        return True
    if depth == 0 or any(o < 1 for o in out):
        return False
    # JAX's transposes: w.r.t. the input, a convolution of the output with the flipped kernel
    # (strides and base dilations exchanged); w.r.t. the kernel, of the input with the output
    pad_lo = [_dilated(k, d) - lo - 1 for k, d, (lo, _) in zip(kernel, dilation, pairs)]
    lhs_pairs = [(b, _dilated(s, l) + _dilated(k, d) - 1 - _dilated(o, st) - b)
                 for b, s, l, k, d, o, st in zip(pad_lo, spatial, lhs_dilation, kernel, dilation, out, stride)]
    rhs_pairs = [(lo, _dilated(o, st) - _dilated(s, l) + _dilated(k, d) - lo - 1)
                 for (lo, _), o, st, s, l, k, d in zip(pairs, out, stride, spatial, lhs_dilation, kernel, dilation)]
    return (_swap_hazard(out, kernel, lhs_dilation, lhs_pairs, stride, dilation, depth - 1)
            or _swap_hazard(spatial, out, dilation, rhs_pairs, lhs_dilation, stride, depth - 1))


def _taps_conv(x, w, stride, pairs, lhs_dilation, dilation, groups, precision):
    """:func:`_reference_conv` without a convolution op: the input dilated and padded by ``lax.pad``,
    then one strided slice per kernel tap (the lowering's ``_tap_slices``), contracted with that
    tap's weights, summed in at least float32 and rounded once (as torch)."""
    dtype = jnp.result_type(x, w)
    acc = jnp.promote_types(dtype, jnp.float32)
    x, w = x.astype(acc), w.astype(acc)
    zero = jnp.zeros((), x.dtype)
    xp = lax.pad(x, zero, [(0, 0, 0)] * 2 + [(lo, hi, l - 1) for (lo, hi), l in zip(pairs, lhs_dilation)])
    kernel = w.shape[2:]
    nb, ch, o = x.shape[0], x.shape[1], w.shape[0]
    xg = xp.reshape((nb, groups, ch // groups) + xp.shape[2:])
    wg = w.reshape((groups, o // groups, ch // groups) + kernel)
    y = None
    for tap, cols in _lowering._tap_slices(xg, kernel, stride, dilation, first=3):
        term = jnp.einsum("ngc...,goc->ngo...", cols, wg[(Ellipsis,) + tap], precision=precision)
        y = term if y is None else y + term
    return y.reshape((nb, o) + y.shape[3:]).astype(dtype)


def _layouts(n: int) -> str:
    return f"(N, C, {_SPATIAL[n]}) or (C, {_SPATIAL[n]})"


def _parse_padding(padding: Any, n: int, name: str, *, allow_str: bool = True) -> str | tuple[int, ...]:
    """``"same"``/``"valid"`` or a tuple of ``n`` non-negative ints."""
    if isinstance(padding, str):
        if not allow_str:
            raise TypeError(f"{name}: padding must be an int or a tuple of {n} ints, got {padding!r}")
        if padding not in ("same", "valid"):
            raise ValueError(f"{name}: padding must be 'same', 'valid', an int or a tuple of {n} ints, got {padding!r}")
        return padding
    pad = ntuple(padding, n, "padding", name)
    if any(p < 0 for p in pad):
        raise ValueError(f"{name}: negative padding is not supported, got padding={padding!r}")
    return pad


def _same_padding(kernel: Sequence[int], dilation: Sequence[int]) -> list[tuple[int, int]]:
    """torch's ``padding="same"``: total ``d*(k-1)``, the extra element on the right."""
    out = []
    for k, d in zip(kernel, dilation):
        total = d * (k - 1)
        out.append((total // 2, total - total // 2))
    return out


def same_padding_reversed(kernel: Sequence[int], dilation: Sequence[int]) -> tuple[int, ...]:
    """``"same"`` padding as an :func:`~jaxlayers.functional.pad` tuple (last dim first)."""
    out: list[int] = []
    for lo, hi in reversed(_same_padding(kernel, dilation)):
        out += [lo, hi]
    return tuple(out)


def _check_groups(groups: Any, name: str) -> int:
    if not _is_int(groups):
        raise TypeError(f"{name}: groups must be an int, got {groups!r}")
    if groups < 1:
        raise ValueError(f"{name}: groups must be a positive int, got groups={groups}")
    return int(groups)


def _promote(x: Any, weight: Any, bias: Any) -> tuple[Any, Any, Any]:
    x, weight = jnp.asarray(x), jnp.asarray(weight)
    dtype = jnp.result_type(x, weight) if bias is None else jnp.result_type(x, weight, bias)
    if not jnp.issubdtype(dtype, jnp.inexact):
        dtype = jnp.result_type(dtype, jnp.float32)
    x, weight = x.astype(dtype), weight.astype(dtype)
    if bias is not None:
        bias = jnp.asarray(bias).astype(dtype)
    return x, weight, bias


def _check_bias(bias: Any, out_channels: int, name: str) -> None:
    if bias is not None and tuple(bias.shape) != (out_channels,):
        raise ValueError(f"{name}: bias must have shape ({out_channels},) (out_channels), got {shape_str(bias)}")


def _add_bias(y: Any, bias: Any, n: int) -> Any:
    return add_bias(y, None if bias is None else bias.reshape((-1,) + (1,) * n))


def _common_args(x: Any, weight: Any, bias: Any, groups: Any, stride: Any, dilation: Any, n: int, name: str,
                 weight_layout: str) -> tuple:
    """Promote dtypes and check what plain and transposed convs share; returns
    ``(x, weight, bias, groups, stride, dilation, kernel)``."""
    x, weight, bias = _promote(x, weight, bias)
    check_input_rank(name, x, (n + 1, n + 2), _layouts(n))
    groups = _check_groups(groups, name)
    if weight.ndim != n + 2:
        raise ValueError(f"{name}: weight must be {weight_layout} ({n + 2}-D), got shape {shape_str(weight)}")
    stride = ntuple(stride, n, "stride", name, min_value=1)
    dilation = ntuple(dilation, n, "dilation", name, min_value=1)
    kernel = tuple(int(k) for k in weight.shape[2:])
    if any(k < 1 for k in kernel):
        raise ValueError(f"{name}: kernel size must be positive, got weight of shape {shape_str(weight)}")
    return x, weight, bias, groups, stride, dilation, kernel


def _conv_nd(
    x: Any,
    weight: Any,
    bias: Any = None,
    stride: Any = 1,
    padding: Any = 0,
    dilation: Any = 1,
    groups: int = 1,
    *,
    n: int,
    name: str,
    precision: Any = None,
) -> Any:
    """N-d cross-correlation in torch layout; ``name`` prefixes every error message."""
    x, weight, bias, groups, stride, dilation, kernel = _common_args(
        x, weight, bias, groups, stride, dilation, n, name, "(out_channels, in_channels/groups, *kernel_size)")
    out_ch, in_per_group = int(weight.shape[0]), int(weight.shape[1])
    if out_ch == 0:
        raise ValueError(f"{name}: weight has no output channels (shape {shape_str(weight)})")
    if out_ch % groups:
        raise ValueError(
            f"{name}: groups={groups} must divide out_channels={out_ch} (weight of shape {shape_str(weight)})"
        )
    channels = int(x.shape[-n - 1])
    if channels != in_per_group * groups:
        raise ValueError(
            f"{name}: expected input with {in_per_group * groups} channels (weight of shape {shape_str(weight)}, "
            f"groups={groups}), got shape {shape_str(x)}"
        )
    _check_bias(bias, out_ch, name)
    pad = _parse_padding(padding, n, name)
    if pad == "same":
        if any(s != 1 for s in stride):
            raise ValueError(f"{name}: padding='same' is not supported for strided convolutions, got stride={stride}")
        pairs = _same_padding(kernel, dilation)
    elif pad == "valid":
        pairs = [(0, 0)] * n
    else:
        pairs = [(p, p) for p in pad]
    spatial = x.shape[-n:]
    padded = tuple(s + lo + hi for s, (lo, hi) in zip(spatial, pairs))
    effective = tuple(d * (k - 1) + 1 for k, d in zip(kernel, dilation))
    if any(e > p for e, p in zip(effective, padded)):
        raise ValueError(
            f"{name}: kernel size {kernel} (dilated: {effective}) is larger than the padded input size {padded} "
            f"(input of shape {shape_str(x)}, padding {tuple(pairs)})"
        )
    static = (n, stride, tuple(pairs), dilation, groups, None, precision, False)
    return compiled_when_eager(_conv_core, static, x, weight, bias)


def _conv_core(x: Any, weight: Any, bias: Any, n: int, stride: tuple, pairs: tuple, dilation: tuple, groups: int,
               lhs_dilation: tuple | None, precision: Any, transposed: bool) -> Any:
    """The arithmetic of :func:`_conv_nd` and :func:`_conv_transpose_nd` on checked arguments (one program
    when called eagerly)."""
    if transposed:
        # (in, out/g, *k) -> (out, in/g, *k), spatially flipped: a forward conv over the stride-dilated input.
        in_ch, out_per_group, kernel = weight.shape[0], weight.shape[1], weight.shape[2:]
        w = weight.reshape((groups, in_ch // groups, out_per_group) + kernel)
        w = jnp.swapaxes(w, 1, 2).reshape((out_per_group * groups, in_ch // groups) + kernel)
        weight = jnp.flip(w, axis=tuple(range(2, n + 2)))
    batched = x if x.ndim == n + 2 else x[None]
    y = _lowering.conv(batched, weight, stride=stride, pairs=pairs, dilation=dilation, groups=groups,
                       lhs_dilation=lhs_dilation, precision=precision, reference=_reference_conv)
    y = _add_bias(y, bias, n)
    return y if x.ndim == n + 2 else y[0]


def transpose_output_size(
    spatial: Sequence[int], kernel: Sequence[int], stride: Sequence[int], padding: Sequence[int],
    output_padding: Sequence[int], dilation: Sequence[int],
) -> tuple[int, ...]:
    """``(S - 1)*stride - 2*padding + dilation*(k - 1) + output_padding + 1`` per spatial dim."""
    return tuple(
        (s - 1) * st - 2 * p + d * (k - 1) + op + 1
        for s, k, st, p, op, d in zip(spatial, kernel, stride, padding, output_padding, dilation)
    )


def _check_output_padding(output_padding: tuple, stride: tuple, dilation: tuple, name: str) -> None:
    if any(op < 0 for op in output_padding):
        raise ValueError(f"{name}: output_padding must be non-negative, got output_padding={output_padding}")
    if any(op >= s and op >= d for op, s, d in zip(output_padding, stride, dilation)):
        raise ValueError(
            f"{name}: output_padding must be smaller than either stride or dilation, got "
            f"output_padding={output_padding}, stride={stride}, dilation={dilation}"
        )


def _output_padding(
    input_shape: Sequence[int],
    output_size: Any,
    kernel: Sequence[int],
    stride: Sequence[int],
    padding: Sequence[int],
    dilation: Sequence[int],
    *,
    n: int,
    name: str,
) -> tuple[int, ...]:
    """torch's ``_ConvTransposeNd._output_padding``: the output_padding that yields ``output_size``.

    ``output_size`` is the full size (with N and C, or C when unbatched) or only
    the ``n`` spatial sizes; sizes outside ``[min, min + stride - 1]`` raise.
    """
    non_spatial = 2 if len(input_shape) == n + 2 else 1
    size = tuple(int(s) for s in output_size)
    if len(size) == non_spatial + n:
        size = size[non_spatial:]
    if len(size) != n:
        raise ValueError(
            f"{name}: for {len(input_shape)}-D input, output_size must have {n} or {non_spatial + n} elements, "
            f"got output_size={tuple(output_size)}"
        )
    spatial = tuple(input_shape[-n:])
    min_sizes = transpose_output_size(spatial, kernel, stride, padding, (0,) * n, dilation)
    max_sizes = tuple(m + s - 1 for m, s in zip(min_sizes, stride))
    if any(not lo <= sz <= hi for sz, lo, hi in zip(size, min_sizes, max_sizes)):
        raise ValueError(
            f"{name}: requested an output size of {size}, but valid sizes range from {min_sizes} to {max_sizes} "
            f"(for an input of shape {shape_str(input_shape)})"
        )
    return tuple(sz - lo for sz, lo in zip(size, min_sizes))


def _conv_transpose_nd(
    x: Any,
    weight: Any,
    bias: Any = None,
    stride: Any = 1,
    padding: Any = 0,
    output_padding: Any = 0,
    groups: int = 1,
    dilation: Any = 1,
    *,
    n: int,
    name: str,
    precision: Any = None,
) -> Any:
    """N-d transposed convolution (the gradient of :func:`_conv_nd` w.r.t. its input) in torch layout."""
    x, weight, bias, groups, stride, dilation, kernel = _common_args(
        x, weight, bias, groups, stride, dilation, n, name, "(in_channels, out_channels/groups, *kernel_size)")
    pad = _parse_padding(padding, n, name, allow_str=False)
    output_padding = ntuple(output_padding, n, "output_padding", name)
    _check_output_padding(output_padding, stride, dilation, name)
    in_ch, out_per_group = int(weight.shape[0]), int(weight.shape[1])
    if in_ch == 0 or out_per_group == 0:
        raise ValueError(f"{name}: weight has no {'input' if in_ch == 0 else 'output'} channels "
                         f"(shape {shape_str(weight)}, (in_channels, out_channels/groups, *kernel_size))")
    if in_ch % groups:
        raise ValueError(f"{name}: groups={groups} must divide in_channels={in_ch} (weight of shape {shape_str(weight)})")
    if int(x.shape[-n - 1]) != in_ch:
        raise ValueError(
            f"{name}: expected input with {in_ch} channels (weight of shape {shape_str(weight)}), got shape {shape_str(x)}"
        )
    out_ch = out_per_group * groups
    _check_bias(bias, out_ch, name)
    out_size = transpose_output_size(x.shape[-n:], kernel, stride, pad, output_padding, dilation)
    if any(s < 1 for s in out_size):
        raise ValueError(
            f"{name}: the output size {out_size} is too small (input of shape {shape_str(x)}, kernel {kernel}, "
            f"stride {stride}, padding {pad}, dilation {dilation}, output_padding {output_padding})"
        )
    pairs = tuple((d * (k - 1) - p, d * (k - 1) - p + op) for k, d, p, op in zip(kernel, dilation, pad, output_padding))
    static = (n, (1,) * n, pairs, dilation, groups, stride, precision, True)
    return compiled_when_eager(_conv_core, static, x, weight, bias)


_CONV_DOC = """{n}-d convolution (cross-correlation), as ``torch.nn.functional.conv{n}d``.

    Args:
      input: ``{layout}``.
      weight: ``(out_channels, in_channels/groups, *kernel_size)``.
      bias: ``(out_channels,)`` or None.
      stride, dilation: int or tuple of {n} positive ints.
      padding: int, tuple of {n} ints, ``"valid"`` (0) or ``"same"`` (output size =
        input size; total ``dilation*(k-1)`` with the odd element on the right, as
        torch; needs stride 1).
      groups: split input and output channels into this many groups.
      precision: ``lax.Precision`` (keyword only; not in torch).

    Shape: ``S_out = floor((S + 2*padding - dilation*(k-1) - 1) / stride) + 1``.

    Example:
      >>> import jax.numpy as jnp
      >>> from jaxlayers import functional as F
      >>> x = jnp.ones((1, 2) + (5,) * {n})           # (N, C_in, *S), S = 5
      >>> w = jnp.ones((4, 1) + (3,) * {n})           # (C_out, C_in/groups, *k), k = 3
      >>> y = F.conv{n}d(x, w, stride=2, padding=1, groups=2)
      >>> y.shape[:2], set(y.shape[2:])             # floor((5 + 2 - 2 - 1) / 2) + 1 = 3
      ((1, 4), {{3}})
    """

_CONVT_DOC = """{n}-d transposed convolution, as ``torch.nn.functional.conv_transpose{n}d``.

    Args:
      input: ``{layout}``.
      weight: ``(in_channels, out_channels/groups, *kernel_size)``.
      bias: ``(out_channels,)`` or None.
      stride, dilation: int or tuple of {n} positive ints.
      padding: int or tuple: ``padding`` elements are cropped from both sides of
        each dim of the full transposed output (the equivalent forward conv pads
        ``dilation*(k-1) - padding``), as torch.
      output_padding: extra size on one side of each dim; must be smaller than
        stride or dilation.
      groups: split input and output channels into this many groups.
      precision: ``lax.Precision`` (keyword only; not in torch).

    Shape: ``S_out = (S - 1)*stride - 2*padding + dilation*(k-1) + output_padding + 1``.

    Example:
      >>> import jax.numpy as jnp
      >>> from jaxlayers import functional as F
      >>> x = jnp.ones((1, 4) + (3,) * {n})           # (N, C_in, *S), S = 3
      >>> w = jnp.ones((4, 1) + (3,) * {n})           # (C_in, C_out/groups, *k), k = 3
      >>> y = F.conv_transpose{n}d(x, w, stride=2, padding=1, output_padding=1, groups=2)
      >>> y.shape[:2], set(y.shape[2:])             # (3 - 1)*2 - 2 + 2 + 1 + 1 = 6
      ((1, 2), {{6}})
    """


@channels_last(spatial=1)
def conv1d(input, weight, bias=None, stride=1, padding=0, dilation=1, groups=1, *, precision=None):
    return _conv_nd(input, weight, bias, stride, padding, dilation, groups, n=1, name="conv1d", precision=precision)


@channels_last(spatial=2)
def conv2d(input, weight, bias=None, stride=1, padding=0, dilation=1, groups=1, *, precision=None):
    return _conv_nd(input, weight, bias, stride, padding, dilation, groups, n=2, name="conv2d", precision=precision)


@channels_last(spatial=3)
def conv3d(input, weight, bias=None, stride=1, padding=0, dilation=1, groups=1, *, precision=None):
    return _conv_nd(input, weight, bias, stride, padding, dilation, groups, n=3, name="conv3d", precision=precision)


@channels_last(spatial=1)
def conv_transpose1d(input, weight, bias=None, stride=1, padding=0, output_padding=0, groups=1, dilation=1, *,
                     precision=None):
    return _conv_transpose_nd(input, weight, bias, stride, padding, output_padding, groups, dilation,
                              n=1, name="conv_transpose1d", precision=precision)


@channels_last(spatial=2)
def conv_transpose2d(input, weight, bias=None, stride=1, padding=0, output_padding=0, groups=1, dilation=1, *,
                     precision=None):
    return _conv_transpose_nd(input, weight, bias, stride, padding, output_padding, groups, dilation,
                              n=2, name="conv_transpose2d", precision=precision)


@channels_last(spatial=3)
def conv_transpose3d(input, weight, bias=None, stride=1, padding=0, output_padding=0, groups=1, dilation=1, *,
                     precision=None):
    return _conv_transpose_nd(input, weight, bias, stride, padding, output_padding, groups, dilation,
                              n=3, name="conv_transpose3d", precision=precision)


for _n, _f in ((1, conv1d), (2, conv2d), (3, conv3d)):
    _f.__doc__ = _CONV_DOC.format(n=_n, layout=_layouts(_n))
for _n, _f in ((1, conv_transpose1d), (2, conv_transpose2d), (3, conv_transpose3d)):
    _f.__doc__ = _CONVT_DOC.format(n=_n, layout=_layouts(_n))
del _n, _f


def conv_tbc(input, weight, bias, pad=0):
    """1-d convolution over a ``(time, batch, channels)`` sequence, as ``torch.nn.functional.conv_tbc``.

    Args:
      input: ``(T, B, C_in)``.
      weight: ``(kernel_width, C_in, C_out)``.
      bias: ``(C_out,)``.
      pad: time steps of zeros added on both ends; negative crops, as in torch.

    Shape: ``(T, B, C_in) -> (T + 2 * pad - kernel_width + 1, B, C_out)``.

    Example:
      >>> import jax.numpy as jnp
      >>> from jaxlayers import functional as F
      >>> F.conv_tbc(jnp.ones((5, 2, 3)), jnp.ones((3, 3, 4)), jnp.zeros(4), 1)[:, 0, 0].tolist()
      [6.0, 9.0, 9.0, 9.0, 6.0]
    """
    x, weight, bias = _promote(input, weight, bias)
    if x.ndim != 3:
        raise ValueError(f"conv_tbc: input must be (time, batch, in_channels), got shape {shape_str(x)}")
    if weight.ndim != 3 or weight.shape[1] != x.shape[2]:
        raise ValueError(f"conv_tbc: weight must be (kernel_width, {x.shape[2]}, out_channels) for input of shape "
                         f"{shape_str(x)}, got {shape_str(weight)}")
    if bias is None or bias.shape != weight.shape[2:]:
        raise ValueError(f"conv_tbc: bias must have shape ({weight.shape[2]},) (out_channels of weight "
                         f"{shape_str(weight)}), got {None if bias is None else shape_str(bias)}")
    if not _is_int(pad):
        raise TypeError(f"conv_tbc: pad must be an int, got {pad!r}")
    out = x.shape[0] + 2 * int(pad) - weight.shape[0] + 1
    if out < 0:
        raise ValueError(f"conv_tbc: kernel width {weight.shape[0]} is larger than the padded input length "
                         f"{x.shape[0] + 2 * int(pad)} (input {shape_str(x)}, pad={pad})")
    y = lax.conv_general_dilated(x, weight, (1,), [(int(pad), int(pad))], dimension_numbers=("HNC", "HIO", "HNC"),
                                 out_sharding=product_sharding(x, weight, [None, ("x", 1), ("w", 2)]))
    return add_bias(y, bias)
