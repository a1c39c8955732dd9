"""ZeroPad, ConstantPad, ReflectionPad, ReplicationPad and CircularPad (1d/2d/3d)."""

from __future__ import annotations

from typing import Any, ClassVar

import flax.linen as fnn

from .._memory_format import channels_last
from .._utils import ntuple
from ..functional.padding import _pad

__all__ = [
    "ZeroPad1d", "ZeroPad2d", "ZeroPad3d",
    "ConstantPad1d", "ConstantPad2d", "ConstantPad3d",
    "ReflectionPad1d", "ReflectionPad2d", "ReflectionPad3d",
    "ReplicationPad1d", "ReplicationPad2d", "ReplicationPad3d",
    "CircularPad1d", "CircularPad2d", "CircularPad3d",
]


class _PadNd(fnn.Module):
    """N-d padding module over :func:`jaxlayers.functional.pad`.

    ``padding`` is an int (same on every side) or a ``2 * num_spatial_dims``
    tuple ``(left, right, top, bottom, front, back)`` — last dim first, as torch.
    """

    padding: Any

    num_spatial_dims: ClassVar[int] = 0
    mode: ClassVar[str] = "constant"

    def __post_init__(self) -> None:
        self._pad_tuple()  # validate at construction
        super().__post_init__()

    @fnn.nowrap  # called by __post_init__, unbound (flax's wrapper needs a scope under tabulate)
    def _pad_tuple(self) -> tuple[int, ...]:
        return ntuple(self.padding, 2 * self.num_spatial_dims, "padding", type(self).__name__)

    def _fill(self) -> float | None:
        return None

    @channels_last
    def __call__(self, input: Any) -> Any:
        return _pad(input, self._pad_tuple(), self.mode, self._fill(), name=type(self).__name__)


class _ConstantPadNd(_PadNd):
    value: float = 0.0

    def _fill(self) -> float:
        return self.value


class _ZeroPadNd(_PadNd):
    def _fill(self) -> float:
        return 0.0


class ZeroPad1d(_ZeroPadNd):
    """Pad with zeros (negative padding crops), as ``torch.nn.ZeroPad1d``.

    Args:
      padding: int, or a 2-tuple (left, right).

    Shape: ``(N, C, *S)`` or ``(C, *S)`` with 1 spatial dim; each grows by its two paddings.

    Example:
      >>> import jax.numpy as jnp
      >>> from jaxlayers import nn
      >>> nn.ZeroPad1d((1, 2)).apply({}, jnp.array([[1.0, 2.0]])).tolist()
      [[0.0, 1.0, 2.0, 0.0, 0.0]]
    """

    num_spatial_dims: ClassVar[int] = 1
    mode: ClassVar[str] = "constant"


class ZeroPad2d(_ZeroPadNd):
    """Pad with zeros (negative padding crops), as ``torch.nn.ZeroPad2d``.

    Args:
      padding: int, or a 4-tuple (left, right, top, bottom).

    Shape: ``(N, C, *S)`` or ``(C, *S)`` with 2 spatial dims; each grows by its two paddings.

    Example:
      >>> import jax.numpy as jnp
      >>> from jaxlayers import nn
      >>> nn.ZeroPad2d(1).apply({}, jnp.ones((1, 2, 2))).shape
      (1, 4, 4)
    """

    num_spatial_dims: ClassVar[int] = 2
    mode: ClassVar[str] = "constant"


class ZeroPad3d(_ZeroPadNd):
    """Pad with zeros (negative padding crops), as ``torch.nn.ZeroPad3d``.

    Args:
      padding: int, or a 6-tuple (left, right, top, bottom, front, back).

    Shape: ``(N, C, *S)`` or ``(C, *S)`` with 3 spatial dims; each grows by its two paddings.

    Example:
      >>> import jax.numpy as jnp
      >>> from jaxlayers import nn
      >>> nn.ZeroPad3d((1, 1, 2, 0, 0, 1)).apply({}, jnp.ones((1, 2, 2, 2))).shape
      (1, 3, 4, 4)
    """

    num_spatial_dims: ClassVar[int] = 3
    mode: ClassVar[str] = "constant"


class ConstantPad1d(_ConstantPadNd):
    """Pad with a constant ``value`` (negative padding crops), as ``torch.nn.ConstantPad1d``.

    Args:
      padding: int, or a 2-tuple (left, right).
      value: fill value.

    Shape: ``(N, C, *S)`` or ``(C, *S)`` with 1 spatial dim; each grows by its two paddings.

    Example:
      >>> import jax.numpy as jnp
      >>> from jaxlayers import nn
      >>> nn.ConstantPad1d(1, 9.0).apply({}, jnp.array([[1.0, 2.0]])).tolist()
      [[9.0, 1.0, 2.0, 9.0]]
    """

    num_spatial_dims: ClassVar[int] = 1
    mode: ClassVar[str] = "constant"


class ConstantPad2d(_ConstantPadNd):
    """Pad with a constant ``value`` (negative padding crops), as ``torch.nn.ConstantPad2d``.

    Args:
      padding: int, or a 4-tuple (left, right, top, bottom).
      value: fill value.

    Shape: ``(N, C, *S)`` or ``(C, *S)`` with 2 spatial dims; each grows by its two paddings.

    Example:
      >>> import jax.numpy as jnp
      >>> from jaxlayers import nn
      >>> nn.ConstantPad2d((1, 0, 0, 1), 9.0).apply({}, jnp.ones((1, 1, 1))).tolist()
      [[[9.0, 1.0], [9.0, 9.0]]]
    """

    num_spatial_dims: ClassVar[int] = 2
    mode: ClassVar[str] = "constant"


class ConstantPad3d(_ConstantPadNd):
    """Pad with a constant ``value`` (negative padding crops), as ``torch.nn.ConstantPad3d``.

    Args:
      padding: int, or a 6-tuple (left, right, top, bottom, front, back).
      value: fill value.

    Shape: ``(N, C, *S)`` or ``(C, *S)`` with 3 spatial dims; each grows by its two paddings.

    Example:
      >>> import jax.numpy as jnp
      >>> from jaxlayers import nn
      >>> nn.ConstantPad3d(1, 0.5).apply({}, jnp.ones((1, 1, 1, 1))).shape
      (1, 3, 3, 3)
    """

    num_spatial_dims: ClassVar[int] = 3
    mode: ClassVar[str] = "constant"


class ReflectionPad1d(_PadNd):
    """Pad by mirroring the input without repeating the edge (padding < size), as ``torch.nn.ReflectionPad1d``.

    Args:
      padding: int, or a 2-tuple (left, right).

    Shape: ``(N, C, *S)`` or ``(C, *S)`` with 1 spatial dim; each grows by its two paddings.

    Example:
      >>> import jax.numpy as jnp
      >>> from jaxlayers import nn
      >>> nn.ReflectionPad1d(2).apply({}, jnp.array([[1.0, 2.0, 3.0]])).tolist()
      [[3.0, 2.0, 1.0, 2.0, 3.0, 2.0, 1.0]]
    """

    num_spatial_dims: ClassVar[int] = 1
    mode: ClassVar[str] = "reflect"


class ReflectionPad2d(_PadNd):
    """Pad by mirroring the input without repeating the edge (padding < size), as ``torch.nn.ReflectionPad2d``.

    Args:
      padding: int, or a 4-tuple (left, right, top, bottom).

    Shape: ``(N, C, *S)`` or ``(C, *S)`` with 2 spatial dims; each grows by its two paddings.

    Example:
      >>> import jax.numpy as jnp
      >>> from jaxlayers import nn
      >>> y = nn.ReflectionPad2d(1).apply({}, jnp.arange(9.0).reshape(1, 3, 3))
      >>> y.shape, y[0, 0].tolist()
      ((1, 5, 5), [4.0, 3.0, 4.0, 5.0, 4.0])
    """

    num_spatial_dims: ClassVar[int] = 2
    mode: ClassVar[str] = "reflect"


class ReflectionPad3d(_PadNd):
    """Pad by mirroring the input without repeating the edge (padding < size), as ``torch.nn.ReflectionPad3d``.

    Args:
      padding: int, or a 6-tuple (left, right, top, bottom, front, back).

    Shape: ``(N, C, *S)`` or ``(C, *S)`` with 3 spatial dims; each grows by its two paddings.

    Example:
      >>> import jax.numpy as jnp
      >>> from jaxlayers import nn
      >>> nn.ReflectionPad3d(1).apply({}, jnp.ones((1, 2, 2, 2))).shape
      (1, 4, 4, 4)
    """

    num_spatial_dims: ClassVar[int] = 3
    mode: ClassVar[str] = "reflect"


class ReplicationPad1d(_PadNd):
    """Pad by repeating the edge values, as ``torch.nn.ReplicationPad1d``.

    Args:
      padding: int, or a 2-tuple (left, right).

    Shape: ``(N, C, *S)`` or ``(C, *S)`` with 1 spatial dim; each grows by its two paddings.

    Example:
      >>> import jax.numpy as jnp
      >>> from jaxlayers import nn
      >>> nn.ReplicationPad1d((2, 1)).apply({}, jnp.array([[1.0, 2.0, 3.0]])).tolist()
      [[1.0, 1.0, 1.0, 2.0, 3.0, 3.0]]
    """

    num_spatial_dims: ClassVar[int] = 1
    mode: ClassVar[str] = "replicate"


class ReplicationPad2d(_PadNd):
    """Pad by repeating the edge values, as ``torch.nn.ReplicationPad2d``.

    Args:
      padding: int, or a 4-tuple (left, right, top, bottom).

    Shape: ``(N, C, *S)`` or ``(C, *S)`` with 2 spatial dims; each grows by its two paddings.

    Example:
      >>> import jax.numpy as jnp
      >>> from jaxlayers import nn
      >>> y = nn.ReplicationPad2d(1).apply({}, jnp.arange(4.0).reshape(1, 2, 2))
      >>> y.shape, y[0, 0].tolist()
      ((1, 4, 4), [0.0, 0.0, 1.0, 1.0])
    """

    num_spatial_dims: ClassVar[int] = 2
    mode: ClassVar[str] = "replicate"


class ReplicationPad3d(_PadNd):
    """Pad by repeating the edge values, as ``torch.nn.ReplicationPad3d``.

    Args:
      padding: int, or a 6-tuple (left, right, top, bottom, front, back).

    Shape: ``(N, C, *S)`` or ``(C, *S)`` with 3 spatial dims; each grows by its two paddings.

    Example:
      >>> import jax.numpy as jnp
      >>> from jaxlayers import nn
      >>> nn.ReplicationPad3d(1).apply({}, jnp.ones((1, 1, 2, 2))).shape
      (1, 3, 4, 4)
    """

    num_spatial_dims: ClassVar[int] = 3
    mode: ClassVar[str] = "replicate"


class CircularPad1d(_PadNd):
    """Pad by wrapping around (padding <= size), as ``torch.nn.CircularPad1d``.

    Args:
      padding: int, or a 2-tuple (left, right).

    Shape: ``(N, C, *S)`` or ``(C, *S)`` with 1 spatial dim; each grows by its two paddings.

    Example:
      >>> import jax.numpy as jnp
      >>> from jaxlayers import nn
      >>> nn.CircularPad1d((1, 2)).apply({}, jnp.array([[1.0, 2.0, 3.0]])).tolist()
      [[3.0, 1.0, 2.0, 3.0, 1.0, 2.0]]
    """

    num_spatial_dims: ClassVar[int] = 1
    mode: ClassVar[str] = "circular"


class CircularPad2d(_PadNd):
    """Pad by wrapping around (padding <= size), as ``torch.nn.CircularPad2d``.

    Args:
      padding: int, or a 4-tuple (left, right, top, bottom).

    Shape: ``(N, C, *S)`` or ``(C, *S)`` with 2 spatial dims; each grows by its two paddings.

    Example:
      >>> import jax.numpy as jnp
      >>> from jaxlayers import nn
      >>> y = nn.CircularPad2d(1).apply({}, jnp.arange(4.0).reshape(1, 2, 2))
      >>> y.shape, y[0, 0].tolist()
      ((1, 4, 4), [3.0, 2.0, 3.0, 2.0])
    """

    num_spatial_dims: ClassVar[int] = 2
    mode: ClassVar[str] = "circular"


class CircularPad3d(_PadNd):
    """Pad by wrapping around (padding <= size), as ``torch.nn.CircularPad3d``.

    Args:
      padding: int, or a 6-tuple (left, right, top, bottom, front, back).

    Shape: ``(N, C, *S)`` or ``(C, *S)`` with 3 spatial dims; each grows by its two paddings.

    Example:
      >>> import jax.numpy as jnp
      >>> from jaxlayers import nn
      >>> nn.CircularPad3d(1).apply({}, jnp.ones((1, 2, 2, 2))).shape
      (1, 4, 4, 4)
    """

    num_spatial_dims: ClassVar[int] = 3
    mode: ClassVar[str] = "circular"
