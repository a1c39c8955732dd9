"""PixelShuffle, PixelUnshuffle, ChannelShuffle, Fold, Unfold: thin over
:mod:`jaxlayers.functional.rearrange`.  No variables; arguments are checked at
construction, shapes at call time.
"""

from __future__ import annotations

from typing import Any

import flax.linen as fnn
import jax

from .._memory_format import channels_last
from .._utils import ntuple
from ..functional import rearrange as _R

__all__ = ["PixelShuffle", "PixelUnshuffle", "ChannelShuffle", "Fold", "Unfold"]


class PixelShuffle(fnn.Module):
    """``(*, C r^2, H, W) -> (*, C, H r, W r)``, as ``torch.nn.PixelShuffle``.

    Args:
        upscale_factor: ``r``.

    Shape: ``(*, C r^2, H, W) -> (*, C, H r, W r)``.

    Example:
        >>> import jax.numpy as jnp
        >>> from jaxlayers import nn
        >>> nn.PixelShuffle(3).apply({}, jnp.ones((1, 9, 4, 4))).shape
        (1, 1, 12, 12)
    """

    upscale_factor: int

    def __post_init__(self) -> None:
        _R._positive_int(self.upscale_factor, "upscale_factor", type(self).__name__)
        super().__post_init__()

    @channels_last(spatial=2)
    def __call__(self, input: Any) -> jax.Array:
        return _R._pixel_shuffle(input, self.upscale_factor, type(self).__name__)


class PixelUnshuffle(fnn.Module):
    """``(*, C, H r, W r) -> (*, C r^2, H, W)``, as ``torch.nn.PixelUnshuffle``.

    Args:
        downscale_factor: ``r``.

    Shape: ``(*, C, H r, W r) -> (*, C r^2, H, W)``.

    Example:
        >>> import jax.numpy as jnp
        >>> from jaxlayers import nn
        >>> nn.PixelUnshuffle(2).apply({}, jnp.ones((1, 1, 4, 4))).shape
        (1, 4, 2, 2)
    """

    downscale_factor: int

    def __post_init__(self) -> None:
        _R._positive_int(self.downscale_factor, "downscale_factor", type(self).__name__)
        super().__post_init__()

    @channels_last(spatial=2)
    def __call__(self, input: Any) -> jax.Array:
        return _R._pixel_unshuffle(input, self.downscale_factor, type(self).__name__)


class ChannelShuffle(fnn.Module):
    """Interleave groups of channels, as ``torch.nn.ChannelShuffle``.

    Args:
        groups: number of groups; must divide the channels.

    Shape: ``(N, C, *)``, unchanged.

    Example:
        >>> import jax.numpy as jnp
        >>> from jaxlayers import nn
        >>> nn.ChannelShuffle(2).apply({}, jnp.arange(4.0).reshape(1, 4, 1, 1))[0, :, 0, 0]
        Array([0., 2., 1., 3.], dtype=float32)
    """

    groups: int

    def __post_init__(self) -> None:
        _R._positive_int(self.groups, "groups", type(self).__name__)
        super().__post_init__()

    @channels_last
    def __call__(self, input: Any) -> jax.Array:
        return _R._channel_shuffle(input, self.groups, type(self).__name__)


def _check_block_args(module: fnn.Module) -> None:
    _R._block_args(module.kernel_size, module.dilation, module.padding, module.stride, type(module).__name__)


class Unfold(fnn.Module):
    """Sliding local blocks as columns (im2col), as ``torch.nn.Unfold``.

    Args:
        kernel_size, dilation, padding, stride: ints or pairs.

    Shape: ``(N, C, H, W) -> (N, C kh kw, L)`` (unbatched ``(C, H, W)`` too); see
    :func:`jaxlayers.functional.unfold`.

    Example:
        >>> import jax.numpy as jnp
        >>> from jaxlayers import nn
        >>> nn.Unfold(kernel_size=(2, 3)).apply({}, jnp.ones((2, 5, 3, 4))).shape
        (2, 30, 4)
    """

    kernel_size: Any
    dilation: Any = 1
    padding: Any = 0
    stride: Any = 1

    def __post_init__(self) -> None:
        _check_block_args(self)
        super().__post_init__()

    def __call__(self, input: Any) -> jax.Array:
        return _R._unfold(input, self.kernel_size, self.dilation, self.padding, self.stride, type(self).__name__)


class Fold(fnn.Module):
    """Sum sliding local blocks into an image (col2im), as ``torch.nn.Fold``.

    Args:
        output_size: ``(H, W)`` (int or pair).
        kernel_size, dilation, padding, stride: ints or pairs.

    Shape: ``(N, C kh kw, L) -> (N, C, H, W)`` (unbatched ``(C kh kw, L)`` too); see
    :func:`jaxlayers.functional.fold`.

    Example:
        >>> import jax.numpy as jnp
        >>> from jaxlayers import nn
        >>> nn.Fold(output_size=(4, 5), kernel_size=2).apply({}, jnp.ones((1, 12, 12))).shape
        (1, 3, 4, 5)
    """

    output_size: Any
    kernel_size: Any
    dilation: Any = 1
    padding: Any = 0
    stride: Any = 1

    def __post_init__(self) -> None:
        _check_block_args(self)
        ntuple(self.output_size, 2, "output_size", type(self).__name__, min_value=1)
        super().__post_init__()

    def __call__(self, input: Any) -> jax.Array:
        return _R._fold(input, self.output_size, self.kernel_size, self.dilation, self.padding, self.stride,
                        type(self).__name__)
