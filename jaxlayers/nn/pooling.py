"""MaxPool*, MaxUnpool*, AvgPool*, Adaptive*Pool*, LPPool*.

Each family is one N-d linen module over the N-d function in
``jaxlayers.functional.pooling``; the 1d/2d/3d classes only fix
``num_spatial_dims``.  Pools have no variables.  Arguments are checked at
construction; shapes at call time.  Inputs ``(N, C, *spatial)`` or unbatched
``(C, *spatial)``.
"""

from __future__ import annotations

from typing import Any, ClassVar

import flax.linen as fnn

from .._memory_format import channels_last
from .._utils import ntuple
from ..functional import pooling as _P

__all__ = [
    "MaxPool1d",
    "MaxPool2d",
    "MaxPool3d",
    "MaxUnpool1d",
    "MaxUnpool2d",
    "MaxUnpool3d",
    "AvgPool1d",
    "AvgPool2d",
    "AvgPool3d",
    "AdaptiveAvgPool1d",
    "AdaptiveAvgPool2d",
    "AdaptiveAvgPool3d",
    "AdaptiveMaxPool1d",
    "AdaptiveMaxPool2d",
    "AdaptiveMaxPool3d",
    "LPPool1d",
    "LPPool2d",
    "LPPool3d",
]


def _check_window_args(module: fnn.Module, names: tuple[str, ...]) -> None:
    """Validate int-or-tuple window arguments at construction, naming the layer."""
    layer = type(module).__name__
    n = module.num_spatial_dims
    for arg in names:
        value = getattr(module, arg)
        if arg == "stride" and (value is None or value == () or value == []):
            continue
        ntuple(value, n, arg, layer, min_value=0 if arg == "padding" else 1)


class _MaxPoolNd(fnn.Module):
    kernel_size: Any
    stride: Any = None
    padding: Any = 0
    dilation: Any = 1
    return_indices: bool = False
    ceil_mode: bool = False

    num_spatial_dims: ClassVar[int] = 0

    def __post_init__(self) -> None:
        _check_window_args(self, ("kernel_size", "stride", "padding", "dilation"))
        super().__post_init__()

    @channels_last(native=True)
    def __call__(self, input: Any, *, channel_axis: int = 1) -> Any:
        """``channel_axis`` is set by channels-last mode (-1: ``(N, *spatial, C)``)."""
        return _P._max_pool_nd(input, self.kernel_size, self.stride, self.padding, self.dilation, self.ceil_mode,
                               self.return_indices, self.num_spatial_dims, type(self).__name__, channel_axis)


class MaxPool1d(_MaxPoolNd):
    """1-d max pooling, as ``torch.nn.MaxPool1d`` (see :class:`MaxPool2d`).

    Shape: ``(N, C, L) -> (N, C, L_out)``, ``L_out = floor((L + 2p - d(k-1) - 1 [+ s-1 if ceil_mode]) / s) + 1``.
    """

    num_spatial_dims: ClassVar[int] = 1


class MaxPool2d(_MaxPoolNd):
    """2-d max pooling, as ``torch.nn.MaxPool2d``.

    Args:
      kernel_size: window size, int or pair.
      stride: window step; default ``kernel_size``.
      padding: implicit ``-inf`` padding on both sides, at most ``kernel_size // 2``.
      dilation: spacing between window elements.
      return_indices: also return torch's flat indices into each ``H * W``
        input plane (first maximum on ties, NaN wins), dtype int64 with x64
        enabled, else int32 — what :class:`MaxUnpool2d` takes.
      ceil_mode: ceil instead of floor in the output size; the last window must
        start inside the input or the left padding.

    Shape: ``(N, C, H, W) -> (N, C, H_out, W_out)`` (or unbatched ``(C, H, W)``),
    ``H_out = floor((H + 2p - d(k-1) - 1 [+ s-1 if ceil_mode]) / s) + 1``, likewise ``W_out``;
    in ceil mode one less if the last window would start in the right padding.

    Example — the 5×5 input ``[[1,2,0,3,1],[0,1,2,3,1],[1,2,1,0,0],[5,2,3,1,1],[2,1,0,1,1]]``
    with ``kernel_size=3`` (stride 3) gives ``[[2]]``; with ``ceil_mode=True`` the
    partial windows on the right and bottom count too, giving ``[[2, 3], [5, 1]]``::

        >>> import jax.numpy as jnp
        >>> x = jnp.array([[1,2,0,3,1],[0,1,2,3,1],[1,2,1,0,0],[5,2,3,1,1],[2,1,0,1,1]], float)[None]
        >>> MaxPool2d(3, ceil_mode=True).apply({}, x).tolist()
        [[[2.0, 3.0], [5.0, 1.0]]]
    """

    num_spatial_dims: ClassVar[int] = 2


class MaxPool3d(_MaxPoolNd):
    """3-d max pooling, as ``torch.nn.MaxPool3d`` (see :class:`MaxPool2d`).

    Shape: ``(N, C, D, H, W) -> (N, C, D_out, H_out, W_out)``, each as in MaxPool2d;
    indices index the flattened ``D * H * W`` volume.
    """

    num_spatial_dims: ClassVar[int] = 3


class _MaxUnpoolNd(fnn.Module):
    kernel_size: Any
    stride: Any = None
    padding: Any = 0

    num_spatial_dims: ClassVar[int] = 0

    def __post_init__(self) -> None:
        _check_window_args(self, ("kernel_size", "stride", "padding"))
        super().__post_init__()

    @channels_last(moved=2, shapes=("output_size",))
    def __call__(self, input: Any, indices: Any, output_size: Any = None) -> Any:
        return _P._max_unpool_nd(input, indices, self.kernel_size, self.stride, self.padding, output_size,
                                 self.num_spatial_dims, type(self).__name__)


_UNPOOL_DOC = """Partial inverse of MaxPool{n}d, as ``torch.nn.MaxUnpool{n}d``.

    Args:
      kernel_size, stride (default ``kernel_size``), padding: those of the max pool.

    Call: ``(input, indices, output_size=None)``; ``indices`` from
    ``MaxPool{n}d(..., return_indices=True)``.  Non-maximal positions are zero.

    Shape: ``out = (in - 1) * stride - 2 * padding + kernel_size`` per dim, or
    ``output_size`` ({n} or {n2} entries), which must lie strictly within
    ``out ± stride``.

    Differs from torch: out-of-range indices are dropped instead of raising.
    """


class MaxUnpool1d(_MaxUnpoolNd):
    num_spatial_dims: ClassVar[int] = 1


class MaxUnpool2d(_MaxUnpoolNd):
    num_spatial_dims: ClassVar[int] = 2


class MaxUnpool3d(_MaxUnpoolNd):
    num_spatial_dims: ClassVar[int] = 3


class _AvgPoolNd(fnn.Module):
    kernel_size: Any
    stride: Any = None
    padding: Any = 0
    ceil_mode: bool = False
    count_include_pad: bool = True

    num_spatial_dims: ClassVar[int] = 0

    def __post_init__(self) -> None:
        _check_window_args(self, ("kernel_size", "stride", "padding"))
        super().__post_init__()

    @channels_last(native=True)
    def __call__(self, input: Any, *, channel_axis: int = 1) -> Any:
        """``channel_axis`` is set by channels-last mode (-1: ``(N, *spatial, C)``)."""
        return _P._avg_pool_nd(input, self.kernel_size, self.stride, self.padding, self.ceil_mode,
                               self.count_include_pad, getattr(self, "divisor_override", None),
                               self.num_spatial_dims, type(self).__name__, channel_axis)


class _AvgPoolNdOverride(_AvgPoolNd):
    divisor_override: Any = None


_AVG_DOC = """{n}-d average pooling, as ``torch.nn.AvgPool{n}d``.

    Args:
      kernel_size: window size; stride: default ``kernel_size``; padding: zero
        padding on both sides, at most ``kernel_size // 2``.
      ceil_mode: ceil instead of floor in the output size (the last window must
        start inside the input or the left padding).
      count_include_pad: divide by the window size counting zero padding
        (windows in the ceil-mode overhang are clipped to the padded input first,
        as torch does); otherwise by the number of input elements.{override}

    Shape: ``out = floor((in + 2p - k [+ s-1 if ceil_mode]) / s) + 1`` per spatial dim;
    unbatched ``(C, *spatial)`` works too.
    """


class AvgPool1d(_AvgPoolNd):
    num_spatial_dims: ClassVar[int] = 1


class AvgPool2d(_AvgPoolNdOverride):
    num_spatial_dims: ClassVar[int] = 2


class AvgPool3d(_AvgPoolNdOverride):
    num_spatial_dims: ClassVar[int] = 3


class _AdaptiveAvgPoolNd(fnn.Module):
    output_size: Any

    num_spatial_dims: ClassVar[int] = 0

    @channels_last(native=True)
    def __call__(self, input: Any, *, channel_axis: int = 1) -> Any:
        """``channel_axis`` is set by channels-last mode (-1: ``(N, *spatial, C)``)."""
        return _P._adaptive_avg_pool_nd(input, self.output_size, self.num_spatial_dims, type(self).__name__,
                                        channel_axis)


class _AdaptiveMaxPoolNd(fnn.Module):
    output_size: Any
    return_indices: bool = False

    num_spatial_dims: ClassVar[int] = 0

    @channels_last
    def __call__(self, input: Any) -> Any:
        return _P._adaptive_max_pool_nd(input, self.output_size, self.return_indices, self.num_spatial_dims,
                                        type(self).__name__)


_ADAPTIVE_DOC = """Adaptive {kind} pooling, as ``torch.nn.Adaptive{Kind}Pool{n}d``.

    Args:
      output_size: int or {n} ints; ``None`` keeps that input dim.  Sizes need
        not divide the input and may exceed it: output cell ``i`` of a dim of
        size ``in`` pools ``[floor(i*in/out), ceil((i+1)*in/out))``.{extra}

    Shape: ``(N, C, *in) -> (N, C, *output_size)`` (or unbatched ``(C, *in)``).
    """


class AdaptiveAvgPool1d(_AdaptiveAvgPoolNd):
    num_spatial_dims: ClassVar[int] = 1


class AdaptiveAvgPool2d(_AdaptiveAvgPoolNd):
    num_spatial_dims: ClassVar[int] = 2


class AdaptiveAvgPool3d(_AdaptiveAvgPoolNd):
    num_spatial_dims: ClassVar[int] = 3


class AdaptiveMaxPool1d(_AdaptiveMaxPoolNd):
    num_spatial_dims: ClassVar[int] = 1


class AdaptiveMaxPool2d(_AdaptiveMaxPoolNd):
    num_spatial_dims: ClassVar[int] = 2


class AdaptiveMaxPool3d(_AdaptiveMaxPoolNd):
    num_spatial_dims: ClassVar[int] = 3


class _LPPoolNd(fnn.Module):
    norm_type: Any
    kernel_size: Any
    stride: Any = None
    ceil_mode: bool = False

    num_spatial_dims: ClassVar[int] = 0

    def __post_init__(self) -> None:
        _check_window_args(self, ("kernel_size", "stride"))
        super().__post_init__()

    @channels_last(native=True)
    def __call__(self, input: Any, *, channel_axis: int = 1) -> Any:
        """``channel_axis`` is set by channels-last mode (-1: ``(N, *spatial, C)``)."""
        return _P._lp_pool_nd(input, self.norm_type, self.kernel_size, self.stride, self.ceil_mode,
                              self.num_spatial_dims, type(self).__name__, channel_axis)


_LP_DOC = """{n}-d power-average pooling, as ``torch.nn.LPPool{n}d``.

    ``out = (sum over window of x ** p) ** (1 / p)``, computed as torch does
    (``avg_pool{n}d(x ** p) * prod(kernel_size)``, torch's sign convention, zero
    gradient where the window sum is zero); ``p = inf`` is max pooling of ``|x|``.

    Args:
      norm_type: ``p``; kernel_size; stride (default ``kernel_size``); ceil_mode.

    Shape: ``out = floor((in - k [+ s-1 if ceil_mode]) / s) + 1`` per spatial dim.
    """


class LPPool1d(_LPPoolNd):
    num_spatial_dims: ClassVar[int] = 1


class LPPool2d(_LPPoolNd):
    num_spatial_dims: ClassVar[int] = 2


class LPPool3d(_LPPoolNd):
    num_spatial_dims: ClassVar[int] = 3


for _n in (1, 2, 3):
    globals()[f"MaxUnpool{_n}d"].__doc__ = _UNPOOL_DOC.format(n=_n, n2=_n + 2)
    globals()[f"AvgPool{_n}d"].__doc__ = _AVG_DOC.format(
        n=_n, override="" if _n == 1 else "\n      divisor_override: divide every window sum by this instead.")
    globals()[f"AdaptiveAvgPool{_n}d"].__doc__ = _ADAPTIVE_DOC.format(
        kind="average", Kind="Avg", n=_n, extra="  ``AdaptiveAvgPool{}d(1)`` is global average pooling.".format(_n))
    globals()[f"AdaptiveMaxPool{_n}d"].__doc__ = _ADAPTIVE_DOC.format(
        kind="max", Kind="Max", n=_n,
        extra="\n      return_indices: also return torch's flat indices into the input plane.")
    globals()[f"LPPool{_n}d"].__doc__ = _LP_DOC.format(n=_n)
del _n
