"""Rearrangement: pixel (un)shuffle, channel shuffle, and sliding blocks (``unfold`` / ``fold``).

``pixel_shuffle``, ``pixel_unshuffle`` and ``channel_shuffle`` are a reshape,
a transpose and a reshape.  ``unfold`` (im2col) takes one strided slice of the
padded input per kernel tap and stacks them in torch's channel-major
``(C, kh, kw)`` order; ``fold`` (col2im) is its transpose: each tap's block is
placed back with ``lax.pad`` (interior padding = stride - 1) and summed, so
overlapping blocks add up.  Both are exact (no multiplications) and loop only
over the ``kh * kw`` kernel taps.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
from jax import lax

from .._memory_format import channels_last
from .._utils import _is_int, batch_sharding, explicit_sharding, ntuple, one_program, reshape, shape_str

__all__ = ["pixel_shuffle", "pixel_unshuffle", "channel_shuffle", "native_channel_shuffle", "unfold", "fold"]


def _positive_int(v: Any, arg: str, name: str) -> int:
    if not _is_int(v):
        raise TypeError(f"{name}: {arg} must be an int, got {v!r}")
    if v <= 0:
        raise ValueError(f"{name}: {arg} must be positive, got {v}")
    return int(v)


def _pixel_shuffle(input: Any, upscale_factor: int, name: str) -> jax.Array:
    x = jnp.asarray(input)
    r = _positive_int(upscale_factor, "upscale_factor", name)
    if x.ndim < 3:
        raise ValueError(f"{name}: expected input with at least 3 dimensions (*, C, H, W), got shape {shape_str(x)}")
    *lead, c, h, w = x.shape
    if c % (r * r):
        raise ValueError(
            f"{name}: the channel dimension (input.shape[-3]={c}) must be divisible by upscale_factor**2 = {r * r}, "
            f"got input of shape {shape_str(x)}"
        )
    k = len(lead)
    y = reshape(x, (*lead, c // (r * r), r, r, h, w))
    y = jnp.transpose(y, tuple(range(k)) + (k, k + 3, k + 1, k + 4, k + 2))
    return reshape(y, (*lead, c // (r * r), h * r, w * r))


@channels_last(spatial=2)  # channels-last input must be (N, H, W, C): an unbatched one is ambiguous
def pixel_shuffle(input: Any, upscale_factor: int) -> jax.Array:
    """Rearrange ``(*, C r^2, H, W)`` to ``(*, C, H r, W r)``, as ``torch.nn.functional.pixel_shuffle``.

    Args:
        input: at least 3-D, ``(*, C * r**2, H, W)``.
        upscale_factor: ``r``, a positive int dividing the channels' square root.

    Shape: ``(*, C r^2, H, W) -> (*, C, H r, W r)``;
    ``out[..., c, h r + i, w r + j] = in[..., c r^2 + i r + j, h, w]``.

    Example:
        >>> import jax.numpy as jnp
        >>> from jaxlayers import functional as F
        >>> F.pixel_shuffle(jnp.ones((1, 4, 2, 2)), 2).shape
        (1, 1, 4, 4)
    """
    return _pixel_shuffle(input, upscale_factor, "pixel_shuffle")


def _pixel_unshuffle(input: Any, downscale_factor: int, name: str) -> jax.Array:
    x = jnp.asarray(input)
    r = _positive_int(downscale_factor, "downscale_factor", name)
    if x.ndim < 3:
        raise ValueError(f"{name}: expected input with at least 3 dimensions (*, C, H, W), got shape {shape_str(x)}")
    *lead, c, h, w = x.shape
    for size, what in ((h, "height (input.shape[-2])"), (w, "width (input.shape[-1])")):
        if size % r:
            raise ValueError(
                f"{name}: the {what} must be divisible by downscale_factor={r}, got input of shape {shape_str(x)}"
            )
    if x.size == 0:  # torch returns an empty input as it is, unshuffled shape or not
        return x
    k = len(lead)
    y = reshape(x, (*lead, c, h // r, r, w // r, r))
    y = jnp.transpose(y, tuple(range(k)) + (k, k + 2, k + 4, k + 1, k + 3))
    return reshape(y, (*lead, c * r * r, h // r, w // r))


@channels_last(spatial=2)
def pixel_unshuffle(input: Any, downscale_factor: int) -> jax.Array:
    """Rearrange ``(*, C, H r, W r)`` to ``(*, C r^2, H, W)``, as ``torch.nn.functional.pixel_unshuffle``.

    The inverse of :func:`pixel_shuffle`.

    Args:
        input: at least 3-D, ``(*, C, H * r, W * r)``.
        downscale_factor: ``r``, a positive int dividing the height and width.

    Shape: ``(*, C, H r, W r) -> (*, C r^2, H, W)``.

    Example:
        >>> import jax.numpy as jnp
        >>> from jaxlayers import functional as F
        >>> F.pixel_unshuffle(jnp.ones((1, 1, 4, 6)), 2).shape
        (1, 4, 2, 3)
    """
    return _pixel_unshuffle(input, downscale_factor, "pixel_unshuffle")


def _channel_shuffle(input: Any, groups: int, name: str) -> jax.Array:
    x = jnp.asarray(input)
    g = _positive_int(groups, "groups", name)
    if x.ndim < 3:
        raise ValueError(f"{name}: expected input with more than 2 dimensions (N, C, *), got shape {shape_str(x)}")
    n, c, *rest = x.shape
    if c % g:
        raise ValueError(
            f"{name}: the number of channels ({c}) must be divisible by groups ({g}), got input of shape {shape_str(x)}"
        )
    y = reshape(x, (n, g, c // g, *rest))
    return reshape(jnp.swapaxes(y, 1, 2), x.shape)


@channels_last
def channel_shuffle(input: Any, groups: int) -> jax.Array:
    """Interleave ``groups`` groups of channels, as ``torch.nn.functional.channel_shuffle``.

    Args:
        input: ``(N, C, *)`` with at least 3 dimensions.
        groups: a positive int dividing ``C``.

    Shape: unchanged; ``out[:, i * groups + j] = in[:, j * (C // groups) + i]``.

    Example:
        >>> import jax.numpy as jnp
        >>> from jaxlayers import functional as F
        >>> F.channel_shuffle(jnp.arange(4.0).reshape(1, 4, 1), 2)[0, :, 0]
        Array([0., 2., 1., 3.], dtype=float32)
    """
    return _channel_shuffle(input, groups, "channel_shuffle")


@channels_last
def native_channel_shuffle(input: Any, groups: int) -> jax.Array:
    """:func:`channel_shuffle` under torch's other name, ``torch.nn.functional.native_channel_shuffle``.

    Shape: unchanged.
    """
    return _channel_shuffle(input, groups, "native_channel_shuffle")


# ----------------------------------------------------------------------------- unfold / fold


def _block_args(kernel_size: Any, dilation: Any, padding: Any, stride: Any, name: str) -> tuple:
    return (
        ntuple(kernel_size, 2, "kernel_size", name, min_value=1),
        ntuple(dilation, 2, "dilation", name, min_value=1),
        ntuple(padding, 2, "padding", name, min_value=0),
        ntuple(stride, 2, "stride", name, min_value=1),
    )


def _blocks(spatial: tuple[int, int], k, d, p, s) -> tuple[int, int]:
    """Number of sliding blocks along each dim: ``floor((size + 2p - d (k - 1) - 1) / s) + 1``."""
    return tuple((spatial[i] + 2 * p[i] - d[i] * (k[i] - 1) - 1) // s[i] + 1 for i in range(2))


def _check_blocks(blocks, spatial, k, d, p, s, what: str, name: str) -> None:
    if min(blocks) < 1:
        raise ValueError(
            f"{name}: {what} {tuple(spatial)} with kernel_size={k}, dilation={d}, padding={p}, stride={s} gives "
            f"{tuple(blocks)} sliding blocks, but each must be at least 1"
        )


def _check_non_empty(batched: jax.Array, input: Any, name: str) -> None:
    """torch's fold/unfold take an empty batch but no other empty dim."""
    if 0 in batched.shape[1:]:
        raise ValueError(f"{name}: dims other than the batch dim must be non-empty, got input of shape "
                         f"{shape_str(input)}")


def _windows(x: jax.Array, axis: int, k: int, d: int, s: int, n_out: int) -> jax.Array:
    """``y[..., i, a, ...] = x[..., i * d + a * s, ...]`` for the ``k`` taps ``i`` and ``n_out``
    positions ``a`` along ``axis`` (the tap axis is inserted before it): ``k`` strided slices,
    or one reshape when the windows tile the axis (``s == k``, ``d == 1``: patches)."""
    if d == 1 and s == k:
        y = lax.slice_in_dim(x, 0, n_out * k, axis=axis)
        y = reshape(y, x.shape[:axis] + (n_out, k) + x.shape[axis + 1:])
        return jnp.swapaxes(y, axis, axis + 1)
    taps = [lax.slice_in_dim(x, i * d, i * d + (n_out - 1) * s + 1, s, axis) for i in range(k)]
    return jnp.stack(taps, axis=axis)


# Up to this many taps unfold slices each tap from the image (its gradient is one pass of
# shifted adds); beyond it, one spatial dim at a time (kh + kw slices): XLA:CPU's compile
# time grows faster than the tap count (5x5 taps: 1.8 s forward, 16x16: 12 s; per dim
# 0.3 / 0.6 s), while the per-dim gradient stores a kw-times larger intermediate (3x3 on
# 8x64x56x56: 1.7x the per-tap time).
_PER_TAP_MAX_TAPS = 9


def _unfold_blocks(x: jax.Array, k, d, p, s, blocks) -> jax.Array:
    """im2col of a batched ``(N, C, H, W)``: ``(N, C * kh * kw, L)``."""
    n, c = x.shape[:2]
    xp = jnp.pad(x, ((0, 0), (0, 0), (p[0], p[0]), (p[1], p[1])))
    tiles = all(d[i] == 1 and s[i] == k[i] for i in range(2))  # patches: a reshape
    if k[0] * k[1] <= _PER_TAP_MAX_TAPS and not tiles:
        limit = lambda i, j: (n, c, i * d[0] + (blocks[0] - 1) * s[0] + 1, j * d[1] + (blocks[1] - 1) * s[1] + 1)
        taps = [lax.slice(xp, (0, 0, i * d[0], j * d[1]), limit(i, j), (1, 1, s[0], s[1]))
                for i in range(k[0]) for j in range(k[1])]
        return reshape(jnp.stack(taps, axis=2), (n, c * k[0] * k[1], blocks[0] * blocks[1]))
    y = _windows(xp, 3, k[1], d[1], s[1], blocks[1])           # (N, C, Hp, kw, ow)
    y = _windows(y, 2, k[0], d[0], s[0], blocks[0])            # (N, C, kh, oh, kw, ow)
    return reshape(jnp.swapaxes(y, 3, 4), (n, c * k[0] * k[1], blocks[0] * blocks[1]))


@one_program
def _unfold(input: Any, kernel_size: Any, dilation: Any, padding: Any, stride: Any, name: str) -> jax.Array:
    x = jnp.asarray(input)
    k, d, p, s = _block_args(kernel_size, dilation, padding, stride, name)
    if x.ndim not in (3, 4):
        raise ValueError(
            f"{name}: expected 4-D (N, C, H, W) or unbatched 3-D (C, H, W) input, got {x.ndim}-D input of shape "
            f"{shape_str(x)}"
        )
    unbatched = x.ndim == 3
    if unbatched:
        x = x[None]
    _check_non_empty(x, input, name)
    n, c, h, w = x.shape
    oh, ow = _blocks((h, w), k, d, p, s)
    _check_blocks((oh, ow), (h, w), k, d, p, s, "input of spatial size", name)
    y = _unfold_blocks(x, k, d, p, s, (oh, ow))
    return y[0] if unbatched else y


def unfold(input: Any, kernel_size: Any, dilation: Any = 1, padding: Any = 0, stride: Any = 1) -> jax.Array:
    """Sliding local blocks as columns (im2col), as ``torch.nn.functional.unfold``.

    Args:
        input: ``(N, C, H, W)`` or unbatched ``(C, H, W)``.
        kernel_size, dilation, padding, stride: ints or pairs, as in ``conv2d``
            (zero padding).

    Shape: ``(N, C, H, W) -> (N, C * kh * kw, L)`` with ``L = L_h * L_w`` blocks,
    ``L_i = floor((size_i + 2 padding_i - dilation_i (kernel_i - 1) - 1) / stride_i) + 1``;
    the column dim is ordered ``(C, kh, kw)`` and the block dim row-major.

    Example:
        >>> import jax.numpy as jnp
        >>> from jaxlayers import functional as F
        >>> F.unfold(jnp.ones((2, 3, 5, 5)), kernel_size=2).shape
        (2, 12, 16)
    """
    return _unfold(input, kernel_size, dilation, padding, stride, "unfold")


@one_program
def _fold(input: Any, output_size: Any, kernel_size: Any, dilation: Any, padding: Any, stride: Any,
          name: str) -> jax.Array:
    x = jnp.asarray(input)
    k, d, p, s = _block_args(kernel_size, dilation, padding, stride, name)
    out = ntuple(output_size, 2, "output_size", name, min_value=1)
    if x.ndim not in (2, 3):
        raise ValueError(
            f"{name}: expected 3-D (N, C * prod(kernel_size), L) or unbatched 2-D (C * prod(kernel_size), L) input, "
            f"got {x.ndim}-D input of shape {shape_str(x)}"
        )
    unbatched = x.ndim == 2
    if unbatched:
        x = x[None]
    _check_non_empty(x, input, name)
    n, ck, length = x.shape
    kk = k[0] * k[1]
    if ck % kk:
        raise ValueError(
            f"{name}: expected the input's dimension 1 ({ck}) to be divisible by the product of kernel_size {k} "
            f"({kk}), got input of shape {shape_str(x)}"
        )
    oh, ow = _blocks(out, k, d, p, s)
    _check_blocks((oh, ow), out, k, d, p, s, "output_size", name)
    if length != oh * ow:
        raise ValueError(
            f"{name}: with output_size={out}, kernel_size={k}, dilation={d}, padding={p}, stride={s} there are "
            f"{oh} * {ow} = {oh * ow} sliding blocks, but the input's last dimension is {length} (shape "
            f"{shape_str(x)})"
        )
    # the transpose of unfold: overlapping blocks add up (bool ones OR-ed, as torch's)
    boolean = x.dtype == jnp.bool_
    if boolean:
        x = x.astype(jnp.int32)
    unfolded = lambda img: _unfold_blocks(img, k, d, p, s, (oh, ow))  # noqa: E731
    image = jax.ShapeDtypeStruct((n, ck // kk) + out, x.dtype, sharding=batch_sharding(x, 4))
    if explicit_sharding(x) is not None:  # the columns as unfold lays them out (channels may be gathered)
        x = jax.sharding.reshard(x, jax.eval_shape(unfolded, image).sharding)
    (y,) = jax.linear_transpose(unfolded, image)(x)
    if boolean:
        y = y != 0
    return y[0] if unbatched else y


def fold(input: Any, output_size: Any, kernel_size: Any, dilation: Any = 1, padding: Any = 0,
         stride: Any = 1) -> jax.Array:
    """Sum sliding local blocks back into an image (col2im), as ``torch.nn.functional.fold``.

    The transpose of :func:`unfold`: overlapping values add up.

    Args:
        input: ``(N, C * kh * kw, L)`` or unbatched ``(C * kh * kw, L)``.
        output_size: ``(H, W)`` of the output (int or pair).
        kernel_size, dilation, padding, stride: as in :func:`unfold`.

    Shape: ``(N, C * kh * kw, L) -> (N, C, H, W)``; ``L`` must equal the number
    of blocks :func:`unfold` would give for an ``(H, W)`` input.

    Example:
        >>> import jax.numpy as jnp
        >>> from jaxlayers import functional as F
        >>> F.fold(jnp.ones((1, 4, 4)), output_size=3, kernel_size=2)[0, 0]
        Array([[1., 2., 1.],
               [2., 4., 2.],
               [1., 2., 1.]], dtype=float32)
    """
    return _fold(input, output_size, kernel_size, dilation, padding, stride, "fold")
