"""Upsample, UpsamplingNearest2d, UpsamplingBilinear2d: thin over
:func:`jaxlayers.functional.interpolate`.  No variables; the mode is checked at
construction, everything else at call time (it depends on the input's shape).
"""

from __future__ import annotations

from typing import Any, Optional

import flax.linen as fnn
import jax

from .._memory_format import channels_last
from ..functional import resampling as _R

__all__ = ["Upsample", "UpsamplingNearest2d", "UpsamplingBilinear2d"]


class Upsample(fnn.Module):
    """Resize the spatial dims, as ``torch.nn.Upsample`` (``F.interpolate`` without antialias).

    Args:
        size: output spatial size (int or one per spatial dim).
        scale_factor: multiplier of the spatial size (number or one per dim);
            exactly one of ``size`` and ``scale_factor``.
        mode: ``"nearest"``, ``"nearest-exact"``, ``"linear"``, ``"bilinear"``,
            ``"bicubic"``, ``"trilinear"`` or ``"area"``. Default ``"nearest"``.
        align_corners: interpolating modes only (``None`` means ``False``).
        recompute_scale_factor: recompute the kernel's scale from the output size.

    Shape: ``(N, C, *in) -> (N, C, *out)``, ``out = size`` or ``floor(in * scale_factor)``.

    Example:
        >>> import jax.numpy as jnp
        >>> from jaxlayers import nn
        >>> nn.Upsample(scale_factor=2, mode="bilinear").apply({}, jnp.ones((1, 3, 4, 5))).shape
        (1, 3, 8, 10)
    """

    size: Any = None
    scale_factor: Any = None
    mode: str = "nearest"
    align_corners: Optional[bool] = None
    recompute_scale_factor: Optional[bool] = None

    def __post_init__(self) -> None:
        if self.mode not in _R.MODES:
            raise ValueError(
                f"{type(self).__name__}: unknown mode {self.mode!r}; expected one of {', '.join(_R.MODES)}"
            )
        super().__post_init__()

    @channels_last
    def __call__(self, input: Any) -> jax.Array:
        return _R._interpolate(input, self.size, self.scale_factor, self.mode, self.align_corners,
                               self.recompute_scale_factor, False, type(self).__name__)


class UpsamplingNearest2d(fnn.Module):
    """Nearest-neighbour upsampling, as ``torch.nn.UpsamplingNearest2d``
    (``interpolate(mode="nearest")``).

    Args:
        size: output ``(H, W)`` (int or pair).
        scale_factor: multiplier of ``(H, W)``.

    Shape: ``(N, C, H, W) -> (N, C, H_out, W_out)``.

    Example:
        >>> import jax.numpy as jnp
        >>> from jaxlayers import nn
        >>> nn.UpsamplingNearest2d(scale_factor=2).apply({}, jnp.ones((1, 1, 2, 3))).shape
        (1, 1, 4, 6)
    """

    size: Any = None
    scale_factor: Any = None

    @channels_last
    def __call__(self, input: Any) -> jax.Array:
        return _R._interpolate(input, self.size, self.scale_factor, "nearest", None, None, False,
                               type(self).__name__)


class UpsamplingBilinear2d(fnn.Module):
    """Bilinear upsampling with ``align_corners=True``, as ``torch.nn.UpsamplingBilinear2d``.

    Args:
        size: output ``(H, W)`` (int or pair).
        scale_factor: multiplier of ``(H, W)``.

    Shape: ``(N, C, H, W) -> (N, C, H_out, W_out)``.

    Example:
        >>> import jax.numpy as jnp
        >>> from jaxlayers import nn
        >>> nn.UpsamplingBilinear2d(size=(3, 3)).apply({}, jnp.arange(4.0).reshape(1, 1, 2, 2))[0, 0, 1]
        Array([1. , 1.5, 2. ], dtype=float32)
    """

    size: Any = None
    scale_factor: Any = None

    @channels_last
    def __call__(self, input: Any) -> jax.Array:
        return _R._interpolate(input, self.size, self.scale_factor, "bilinear", True, None, False,
                               type(self).__name__)
