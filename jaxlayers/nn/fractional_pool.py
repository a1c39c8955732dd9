"""FractionalMaxPool2d, FractionalMaxPool3d over :mod:`jaxlayers.functional.fractional_pool`."""

from __future__ import annotations

from typing import Any, ClassVar

import flax.linen as fnn
import jax

from .._memory_format import channels_last
from .._utils import stream_key
from ..functional.fractional_pool import _fractional_args, _fractional_max_pool

__all__ = ["FractionalMaxPool2d", "FractionalMaxPool3d"]


class _FractionalMaxPoolNd(fnn.Module):
    """N-d fractional max pooling, as ``torch.nn.FractionalMaxPool{2,3}d``.

    Args:
      kernel_size: int or tuple of ``num_spatial_dims`` ints.
      output_size: int or tuple: the output's spatial size; or
      output_ratio: number or tuple in ``(0, 1)``: ``o = int(size * ratio)``.  Exactly one of
        the two (ValueError otherwise, as torch).
      return_indices: also return the argmax indices, flat over each plane's spatial dims.
      _random_samples: fixed ``(N, C, num_spatial_dims)`` samples in ``[0, 1)`` (torch's order:
        W, H in 2-d; T, H, W in 3-d); None draws new ones on every call.
      rng_collection: Flax rng stream of the samples. Default ``"dropout"``.

    Call: ``module(x)``; as torch, the windows are random in training and evaluation alike, so
    ``apply`` needs ``rngs={"dropout": key}`` (or the call's ``rng=key``) unless ``_random_samples`` is given.

    Shape: ``(N, C, *spatial)`` or ``(C, *spatial)`` ``-> (N, C, *output_size)``; needs
    ``output_size + kernel_size - 1 <= size`` in every spatial dim (``<`` in 3-d, as torch).

    Differs from torch: the samples come from the rng stream, not torch's global generator.
    """

    kernel_size: Any
    output_size: Any = None
    output_ratio: Any = None
    return_indices: bool = False
    _random_samples: Any = None
    rng_collection: str = "dropout"

    num_spatial_dims: ClassVar[int] = 0

    def __post_init__(self) -> None:
        _fractional_args(type(self).__name__, self.num_spatial_dims, self.kernel_size, self.output_size,
                         self.output_ratio, module=True)
        super().__post_init__()

    @channels_last
    def __call__(self, input: Any, *, rng: jax.Array | None = None) -> jax.Array | tuple[jax.Array, jax.Array]:
        """``rng``: the windows' key, instead of one drawn from ``rng_collection``."""
        key = stream_key(self, rng) if self._random_samples is None else None
        return _fractional_max_pool(input, self.kernel_size, self.output_size, self.output_ratio,
                                    self.return_indices, self._random_samples, key, self.num_spatial_dims,
                                    type(self).__name__, module=True)


class FractionalMaxPool2d(_FractionalMaxPoolNd):
    """2-d fractional max pooling, as ``torch.nn.FractionalMaxPool2d``.

    Example:
      >>> import jax, jax.numpy as jnp
      >>> from jaxlayers import nn
      >>> pool = nn.FractionalMaxPool2d(3, output_ratio=(0.5, 0.5))
      >>> pool.apply({}, jnp.ones((2, 4, 10, 9)), rngs={"dropout": jax.random.key(0)}).shape
      (2, 4, 5, 4)
    """

    num_spatial_dims: ClassVar[int] = 2


class FractionalMaxPool3d(_FractionalMaxPoolNd):
    """3-d fractional max pooling, as ``torch.nn.FractionalMaxPool3d``.

    Example:
      >>> import jax, jax.numpy as jnp
      >>> from jaxlayers import nn
      >>> pool = nn.FractionalMaxPool3d(2, output_size=(3, 2, 2))
      >>> pool.apply({}, jnp.ones((1, 2, 6, 5, 5)), rngs={"dropout": jax.random.key(0)}).shape
      (1, 2, 3, 2, 2)
    """

    num_spatial_dims: ClassVar[int] = 3


def _full_docs() -> None:
    body = _FractionalMaxPoolNd.__doc__.split("\n", 1)[1]
    for cls in (FractionalMaxPool2d, FractionalMaxPool3d):
        head, example = cls.__doc__.split("\n", 1)
        cls.__doc__ = f"{head}\n{body}\n{example}"


_full_docs()
