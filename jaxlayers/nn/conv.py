"""Conv*d, ConvTranspose*d and their Lazy variants.

One N-d base per kind (:class:`_ConvNd`, :class:`_ConvTransposeNd`, sharing
:class:`_ConvBase`); the 1d/2d/3d classes only fix ``num_spatial_dims`` and the
Lazy classes only make ``in_channels`` optional (inferred from the input at
``init``, read back from the weight afterwards).  Numerics live in
:mod:`jaxlayers.functional.conv`.
"""

from __future__ import annotations

from typing import Any, ClassVar, Optional

import flax.linen as fnn
import jax.numpy as jnp
from flax.linen.dtypes import promote_dtype

from .._memory_format import channels_last
from .. import init as jl_init
from .._utils import check_input_rank, check_sizes, ntuple, shape_str
from ..functional.conv import (
    _check_output_padding,
    _conv_nd,
    _conv_transpose_nd,
    _layouts,
    _output_padding,
    _parse_padding,
    same_padding_reversed,
)
from ..functional.padding import _pad
from ._options import LayerOptions, kw_only, set_field
from ._param import param

__all__ = [
    "Conv1d", "Conv2d", "Conv3d",
    "ConvTranspose1d", "ConvTranspose2d", "ConvTranspose3d",
    "LazyConv1d", "LazyConv2d", "LazyConv3d",
    "LazyConvTranspose1d", "LazyConvTranspose2d", "LazyConvTranspose3d",
]

_PADDING_MODES = ("zeros", "reflect", "replicate", "circular")


def _lazy_in_channels() -> Any:
    return kw_only(None)


class _ConvBase(LayerOptions):
    """Shared checks, parameters and dtype handling of every convolution module."""

    num_spatial_dims: ClassVar[int] = 0
    transposed: ClassVar[bool] = False

    # ------------------------------------------------------------ construction
    def __post_init__(self) -> None:
        self._validate()
        # torch's attributes: kernel_size, stride, dilation, output_padding and a numeric padding as tuples
        n, name = self.num_spatial_dims, self._name
        for arg in ("kernel_size", "stride", "dilation") + (("output_padding",) if self.transposed else ()):
            set_field(self, arg, ntuple(getattr(self, arg), n, arg, name))
        if not isinstance(self.padding, str):
            set_field(self, "padding", ntuple(self.padding, n, "padding", name))
        super().__post_init__()

    @property
    def _name(self) -> str:
        return type(self).__name__

    @fnn.nowrap  # called by __post_init__, unbound (flax's wrapper needs a scope under tabulate)
    def _validate(self) -> None:
        name, n = self._name, self.num_spatial_dims
        sizes = ("out_channels", "groups") + (("in_channels",) if self.in_channels is not None else ())
        check_sizes(name, 1, **{arg: getattr(self, arg) for arg in sizes})
        for arg in ("in_channels", "out_channels"):
            v = getattr(self, arg)
            if v is not None and v % self.groups:
                raise ValueError(f"{name}: {arg}={v} must be divisible by groups={self.groups}")
        ntuple(self.kernel_size, n, "kernel_size", name, min_value=1)
        stride = ntuple(self.stride, n, "stride", name, min_value=1)
        dilation = ntuple(self.dilation, n, "dilation", name, min_value=1)
        padding = _parse_padding(self.padding, n, name, allow_str=not self.transposed)
        if padding == "same" and any(s != 1 for s in stride):
            raise ValueError(f"{name}: padding='same' is not supported for strided convolutions, got stride={self.stride!r}")
        if self.padding_mode not in _PADDING_MODES:
            raise ValueError(f"{name}: padding_mode must be one of {_PADDING_MODES}, got {self.padding_mode!r}")
        if self.transposed:
            if self.padding_mode != "zeros":
                raise ValueError(f"{name}: only padding_mode='zeros' is supported, got {self.padding_mode!r}")
            _check_output_padding(ntuple(self.output_padding, n, "output_padding", name), stride, dilation, name)

    # ------------------------------------------------------------- parameters
    def _weight_shape(self, in_channels: int) -> tuple[int, ...]:
        if self.transposed:
            return (in_channels, self.out_channels // self.groups) + self.kernel_size
        return (self.out_channels, in_channels // self.groups) + self.kernel_size

    def _in_channels_from_weight(self, shape: tuple[int, ...]) -> int:
        return shape[0] if self.transposed else shape[1] * self.groups

    def _check_input(self, x: Any) -> int:
        """Rank and channel checks; returns ``in_channels`` (inferred for Lazy modules)."""
        name, n = self._name, self.num_spatial_dims
        check_input_rank(name, x, (n + 1, n + 2), _layouts(n))
        channels = int(jnp.shape(x)[-n - 1])
        in_channels = self.in_channels
        if in_channels is None:  # Lazy: the weight fixes it after init, the input at init
            if self.has_variable("params", "weight"):
                in_channels = self._in_channels_from_weight(tuple(self.get_variable("params", "weight").shape))
            else:
                in_channels = channels
                if in_channels % self.groups:
                    raise ValueError(
                        f"{name}: in_channels={in_channels} (inferred from input of shape {shape_str(x)}) "
                        f"must be divisible by groups={self.groups}"
                    )
        if channels != in_channels:
            raise ValueError(
                f"{name}: expected input with {in_channels} channels (in_channels={in_channels}), "
                f"got shape {shape_str(x)}"
            )
        return in_channels

    def _params(self, x: Any) -> tuple[Any, Any, Any]:
        in_channels = self._check_input(x)
        shape = self._weight_shape(in_channels)
        w_init = self.weight_init if self.weight_init is not None else jl_init.torch_weight_default()
        weight = param(self, "weight", w_init, shape, self.param_dtype)
        bias = None
        if self.bias:
            fan_in = jl_init.fan_in_and_fan_out(shape)[0]
            b_init = self.bias_init if self.bias_init is not None else jl_init.uniform_fan_in(fan_in)
            bias = param(self, "bias", b_init, (self.out_channels,), self.param_dtype)
        return promote_dtype(x, weight, bias, dtype=self.dtype)


class _ConvNd(_ConvBase):
    """N-d convolution module over :func:`jaxlayers.functional.conv2d` & co.

    Args:
      in_channels: channels of the input.
      out_channels: channels of the output.
      kernel_size: int or tuple.
      stride: int or tuple (default 1).
      padding: int, tuple, ``"valid"`` or ``"same"`` (needs stride 1) (default 0).
      dilation: int or tuple (default 1).
      groups: input and output channels are split into this many groups (default 1).
      bias: learn an additive bias (default True).
      padding_mode: ``"zeros"``, ``"reflect"``, ``"replicate"`` or ``"circular"``.
      dtype: computation dtype (Flax meaning; None = promote input and parameters).
      param_dtype: parameter dtype (default float32).
      weight_init, bias_init: initialiser overrides ``init(key, shape, dtype)``;
        None = torch's default U(±1/sqrt(fan_in)) for both.
      precision: ``lax.Precision`` of the convolution.

    Variables: ``params/weight`` ``(out_channels, in_channels/groups, *kernel_size)``,
    ``params/bias`` ``(out_channels,)``.

    Shape: ``(N, C_in, *S)`` or ``(C_in, *S)`` ->
    ``S_out = floor((S + 2*padding - dilation*(k-1) - 1) / stride) + 1``.
    """

    in_channels: Optional[int]
    out_channels: int
    kernel_size: Any
    stride: Any = 1
    padding: Any = 0
    dilation: Any = 1
    groups: int = 1
    bias: bool = True
    padding_mode: str = "zeros"

    def _explicit_padding(self) -> tuple[int, ...]:
        """torch's ``_reversed_padding_repeated_twice``: the F.pad tuple for non-zeros padding modes."""
        n = self.num_spatial_dims
        padding = _parse_padding(self.padding, n, self._name)
        if padding == "same":
            return same_padding_reversed(self.kernel_size, self.dilation)
        if padding == "valid":
            return (0,) * (2 * n)
        return tuple(p for p in reversed(padding) for _ in range(2))

    @channels_last
    @fnn.compact
    def __call__(self, input: Any) -> Any:
        x, weight, bias = self._params(input)
        padding = self.padding
        if self.padding_mode != "zeros":
            x = _pad(x, self._explicit_padding(), self.padding_mode, name=self._name)
            padding = 0
        return _conv_nd(x, weight, bias, self.stride, padding, self.dilation, self.groups,
                        n=self.num_spatial_dims, name=self._name, precision=self.precision)


class _ConvTransposeNd(_ConvBase):
    """N-d transposed convolution module over :func:`jaxlayers.functional.conv_transpose2d` & co.

    Args:
      in_channels, out_channels, kernel_size, stride, groups, bias, dilation: as for Conv.
      padding: int or tuple: crops ``padding`` from both sides of each output dim.
      output_padding: extra size on one side of each output dim (< stride or dilation).
      padding_mode: only ``"zeros"``, as torch.
      dtype, param_dtype, weight_init, bias_init, precision: Flax options, as for Conv.

    Call: ``m(x, output_size=None)``: ``output_size`` (the full size incl. N and C, or
    only the spatial sizes) picks the output_padding that reaches it, as torch.

    Variables: ``params/weight`` ``(in_channels, out_channels/groups, *kernel_size)``,
    ``params/bias`` ``(out_channels,)``.

    Shape: ``S_out = (S - 1)*stride - 2*padding + dilation*(k-1) + output_padding + 1``.
    """

    in_channels: Optional[int]
    out_channels: int
    kernel_size: Any
    stride: Any = 1
    padding: Any = 0
    output_padding: Any = 0
    groups: int = 1
    bias: bool = True
    dilation: Any = 1
    padding_mode: str = "zeros"

    transposed: ClassVar[bool] = True

    @channels_last(shapes=("output_size",))
    @fnn.compact
    def __call__(self, input: Any, output_size: Any = None) -> Any:
        x, weight, bias = self._params(input)
        n, name = self.num_spatial_dims, self._name
        output_padding = self.output_padding
        if output_size is not None:
            output_padding = _output_padding(
                jnp.shape(x), output_size, self.kernel_size, self.stride, self.padding, self.dilation,
                n=n, name=name,
            )
        return _conv_transpose_nd(x, weight, bias, self.stride, self.padding, output_padding, self.groups,
                                  self.dilation, n=n, name=name, precision=self.precision)


# 1d/2d/3d: only the number of spatial dims differs.
class Conv1d(_ConvNd):
    """1-d convolution, as ``torch.nn.Conv1d``; arguments as :class:`_ConvNd`. Input ``(N, C, L)`` or ``(C, L)``.

    Example:
        >>> import jax, jax.numpy as jnp
        >>> from jaxlayers import nn
        >>> m, x = nn.Conv1d(2, 4, 3, stride=2, padding=1), jnp.ones((1, 2, 140))
        >>> v = m.init(jax.random.key(0), x)
        >>> v["params"]["weight"].shape, m.apply(v, x).shape
        ((4, 2, 3), (1, 4, 70))
    """

    num_spatial_dims: ClassVar[int] = 1


class Conv2d(_ConvNd):
    """2-d convolution, as ``torch.nn.Conv2d``; arguments as :class:`_ConvNd`. Input ``(N, C, H, W)`` or ``(C, H, W)``.

    Example:
        >>> import jax, jax.numpy as jnp
        >>> from jaxlayers import nn
        >>> m, x = nn.Conv2d(3, 8, 3, stride=2, padding=1), jnp.ones((1, 3, 18, 18))
        >>> v = m.init(jax.random.key(0), x)
        >>> v["params"]["weight"].shape, m.apply(v, x).shape
        ((8, 3, 3, 3), (1, 8, 9, 9))
    """

    num_spatial_dims: ClassVar[int] = 2


class Conv3d(_ConvNd):
    """3-d convolution, as ``torch.nn.Conv3d``; arguments as :class:`_ConvNd`. Input ``(N, C, D, H, W)`` or ``(C, D, H, W)``.

    Example:
        >>> import jax, jax.numpy as jnp
        >>> from jaxlayers import nn
        >>> m, x = nn.Conv3d(2, 4, 3, stride=2, padding=1), jnp.ones((1, 2, 10, 10, 10))
        >>> v = m.init(jax.random.key(0), x)
        >>> v["params"]["weight"].shape, m.apply(v, x).shape
        ((4, 2, 3, 3, 3), (1, 4, 5, 5, 5))
    """

    num_spatial_dims: ClassVar[int] = 3


class ConvTranspose1d(_ConvTransposeNd):
    """1-d transposed convolution, as ``torch.nn.ConvTranspose1d``; arguments as :class:`_ConvTransposeNd`.

    Example:
        >>> import jax, jax.numpy as jnp
        >>> from jaxlayers import nn
        >>> m, x = nn.ConvTranspose1d(4, 2, 3, stride=2), jnp.ones((1, 4, 5))
        >>> v = m.init(jax.random.key(0), x)
        >>> v["params"]["weight"].shape, m.apply(v, x).shape
        ((4, 2, 3), (1, 2, 11))
    """

    num_spatial_dims: ClassVar[int] = 1


class ConvTranspose2d(_ConvTransposeNd):
    """2-d transposed convolution, as ``torch.nn.ConvTranspose2d``; arguments as :class:`_ConvTransposeNd`.

    Example:
        >>> import jax, jax.numpy as jnp
        >>> from jaxlayers import nn
        >>> m, x = nn.ConvTranspose2d(8, 3, 3, stride=2, padding=1, output_padding=1), jnp.ones((1, 8, 2, 2))
        >>> v = m.init(jax.random.key(0), x)
        >>> v["params"]["weight"].shape, m.apply(v, x).shape
        ((8, 3, 3, 3), (1, 3, 4, 4))
    """

    num_spatial_dims: ClassVar[int] = 2


class ConvTranspose3d(_ConvTransposeNd):
    """3-d transposed convolution, as ``torch.nn.ConvTranspose3d``; arguments as :class:`_ConvTransposeNd`.

    Example:
        >>> import jax, jax.numpy as jnp
        >>> from jaxlayers import nn
        >>> m, x = nn.ConvTranspose3d(4, 2, 3, stride=2), jnp.ones((1, 4, 1, 2, 2))
        >>> v = m.init(jax.random.key(0), x)
        >>> v["params"]["weight"].shape, m.apply(v, x).shape
        ((4, 2, 3, 3, 3), (1, 2, 3, 5, 5))
    """

    num_spatial_dims: ClassVar[int] = 3


# Lazy: torch's signature without in_channels (out_channels first); in_channels is
# inferred from the input at init (it may also be given by keyword).
class LazyConv1d(Conv1d):
    """``torch.nn.LazyConv1d``: :class:`Conv1d` with ``in_channels`` inferred from the input.

    Example:
        >>> import jax, jax.numpy as jnp
        >>> from jaxlayers import nn
        >>> m, x = nn.LazyConv1d(4, 3, stride=2, padding=1), jnp.ones((1, 2, 140))
        >>> v = m.init(jax.random.key(0), x)
        >>> v["params"]["weight"].shape, m.apply(v, x).shape
        ((4, 2, 3), (1, 4, 70))
    """

    in_channels: Optional[int] = _lazy_in_channels()


class LazyConv2d(Conv2d):
    """``torch.nn.LazyConv2d``: :class:`Conv2d` with ``in_channels`` inferred from the input.

    Example:
        >>> import jax, jax.numpy as jnp
        >>> from jaxlayers import nn
        >>> m, x = nn.LazyConv2d(8, 3, stride=2, padding=1), jnp.ones((1, 3, 18, 18))
        >>> v = m.init(jax.random.key(0), x)
        >>> v["params"]["weight"].shape, m.apply(v, x).shape
        ((8, 3, 3, 3), (1, 8, 9, 9))
    """

    in_channels: Optional[int] = _lazy_in_channels()


class LazyConv3d(Conv3d):
    """``torch.nn.LazyConv3d``: :class:`Conv3d` with ``in_channels`` inferred from the input.

    Example:
        >>> import jax, jax.numpy as jnp
        >>> from jaxlayers import nn
        >>> m, x = nn.LazyConv3d(4, 3, stride=2, padding=1), jnp.ones((1, 2, 10, 10, 10))
        >>> v = m.init(jax.random.key(0), x)
        >>> v["params"]["weight"].shape, m.apply(v, x).shape
        ((4, 2, 3, 3, 3), (1, 4, 5, 5, 5))
    """

    in_channels: Optional[int] = _lazy_in_channels()


class LazyConvTranspose1d(ConvTranspose1d):
    """``torch.nn.LazyConvTranspose1d``: :class:`ConvTranspose1d` with ``in_channels`` inferred from the input.

    Example:
        >>> import jax, jax.numpy as jnp
        >>> from jaxlayers import nn
        >>> m, x = nn.LazyConvTranspose1d(2, 3, stride=2), jnp.ones((1, 4, 5))
        >>> v = m.init(jax.random.key(0), x)
        >>> v["params"]["weight"].shape, m.apply(v, x).shape
        ((4, 2, 3), (1, 2, 11))
    """

    in_channels: Optional[int] = _lazy_in_channels()


class LazyConvTranspose2d(ConvTranspose2d):
    """``torch.nn.LazyConvTranspose2d``: :class:`ConvTranspose2d` with ``in_channels`` inferred from the input.

    Example:
        >>> import jax, jax.numpy as jnp
        >>> from jaxlayers import nn
        >>> m, x = nn.LazyConvTranspose2d(3, 3, stride=2), jnp.ones((1, 8, 2, 2))
        >>> v = m.init(jax.random.key(0), x)
        >>> v["params"]["weight"].shape, m.apply(v, x).shape
        ((8, 3, 3, 3), (1, 3, 5, 5))
    """

    in_channels: Optional[int] = _lazy_in_channels()


class LazyConvTranspose3d(ConvTranspose3d):
    """``torch.nn.LazyConvTranspose3d``: :class:`ConvTranspose3d` with ``in_channels`` inferred from the input.

    Example:
        >>> import jax, jax.numpy as jnp
        >>> from jaxlayers import nn
        >>> m, x = nn.LazyConvTranspose3d(2, 3, stride=2), jnp.ones((1, 4, 1, 2, 2))
        >>> v = m.init(jax.random.key(0), x)
        >>> v["params"]["weight"].shape, m.apply(v, x).shape
        ((4, 2, 3, 3, 3), (1, 2, 3, 5, 5))
    """

    in_channels: Optional[int] = _lazy_in_channels()


def _full_docs() -> None:
    """Give each public class its torch one-liner plus the N-d base's Args/Shape sections,
    then the class's own Example."""
    for cls in (Conv1d, Conv2d, Conv3d, ConvTranspose1d, ConvTranspose2d, ConvTranspose3d,
                LazyConv1d, LazyConv2d, LazyConv3d,
                LazyConvTranspose1d, LazyConvTranspose2d, LazyConvTranspose3d):
        base = _ConvTransposeNd if issubclass(cls, _ConvTransposeNd) else _ConvNd
        own, _, example = cls.__doc__.partition("\n")
        head = own.split("; arguments as")[0].rstrip(".")
        body = base.__doc__.split("\n", 1)[1].rstrip()
        cls.__doc__ = f"{head}.\n{body}\n{example}"


_full_docs()
