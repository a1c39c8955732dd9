"""Dropout, Dropout1d/2d/3d, AlphaDropout, FeatureAlphaDropout.

Thin over :mod:`jaxlayers.functional.dropout`.  Every module takes ``train`` as a
keyword in ``__call__`` (missing ``train`` is an error) and draws its mask from the
``"dropout"`` rng stream::

    y = model.apply(variables, x, train=True, rngs={"dropout": key})
    y = model.apply(variables, x, train=True, rng=key)  # or the key itself, as flax.linen.Dropout
    y = model.apply(variables, x, train=False)      # identity, no rng needed
"""

from __future__ import annotations

from typing import Any, Callable, ClassVar

import flax.linen as fnn
import jax

from .._utils import require_train, stream_key
from .._memory_format import channels_last
from ..functional.dropout import _dropout, _dropout_nd, _feature_alpha_dropout, check_p

__all__ = [
    "Dropout",
    "Dropout1d",
    "Dropout2d",
    "Dropout3d",
    "AlphaDropout",
    "FeatureAlphaDropout",
]


class _DropoutBase(fnn.Module):
    """Shared body: validate ``p`` at construction, then call ``_fn(x, p, train, key, name)``.

    Args:
        p: probability of an element (or a channel) being zeroed, in ``[0, 1]``
            (ValueError at construction otherwise). Default 0.5.
        inplace: accepted for torch compatibility; a no-op.
        rng_collection: Flax rng stream the mask is drawn from. Default ``"dropout"``.
    """

    p: float = 0.5
    inplace: bool = False
    rng_collection: str = "dropout"

    _fn: ClassVar[Callable[..., jax.Array]]

    def __post_init__(self) -> None:
        check_p(self.p, type(self).__name__)
        super().__post_init__()

    def __call__(self, input: Any, *, train: bool | None = None, rng: jax.Array | None = None) -> jax.Array:
        """``rng``: the mask's key, instead of one drawn from ``rng_collection`` (as flax.linen.Dropout)."""
        name = type(self).__name__
        train = require_train(name, train)
        p = float(self.p)
        use_key = train and 0.0 < p < 1.0
        key = stream_key(self, rng) if use_key else None
        return type(self)._fn(input, p, train, key, name)

    def extra_repr(self) -> str:
        return f"p={self.p}"


def _nd(num_spatial_dims: int) -> Any:
    @channels_last(spatial=num_spatial_dims)
    def fn(x, p, train, key, name):
        return _dropout_nd(x, p, train, key, num_spatial_dims, name)

    return staticmethod(fn)


class Dropout(_DropoutBase):
    """Zero elements with probability ``p`` and scale the rest by ``1/(1-p)`` in training;
    identity in evaluation.  As ``torch.nn.Dropout``.

    Args:
        p: zeroing probability in ``[0, 1]``. Default 0.5.
        inplace: no-op.
        rng_collection: Flax rng stream. Default ``"dropout"``.

    Call: ``module(x, train=...)``.  Shape: any shape, output of the same shape.

    Example:
        >>> import jax, jax.numpy as jnp
        >>> from jaxlayers import nn
        >>> m = nn.Dropout(0.5)
        >>> y = m.apply({}, jnp.ones(100), train=True, rngs={"dropout": jax.random.key(0)})
        >>> sorted(set(y.tolist())), m.apply({}, jnp.ones(2), train=False).tolist()
        ([0.0, 2.0], [1.0, 1.0])
    """

    _fn = staticmethod(_dropout)


class Dropout1d(_DropoutBase):
    """Zero whole channels of ``(N, C, L)`` / ``(C, L)`` input, as ``torch.nn.Dropout1d``.

    Args: as :class:`Dropout`.  Call: ``module(x, train=...)``.

    Shape: ``(N, C, L)`` or ``(C, L)``, output of the same shape; other ranks raise ValueError.

    Example:
        >>> import jax, jax.numpy as jnp
        >>> from jaxlayers import nn
        >>> y = nn.Dropout1d().apply({}, jnp.ones((2, 8, 3)), train=True, rngs={"dropout": jax.random.key(0)})
        >>> bool((y == y[..., :1]).all())                   # whole channels are kept or zeroed
        True
    """

    _fn = _nd(1)


class Dropout2d(_DropoutBase):
    """Zero whole channels of ``(N, C, H, W)`` input, as ``torch.nn.Dropout2d``.

    Args: as :class:`Dropout`.  Call: ``module(x, train=...)``.

    Shape: ``(N, C, H, W)``, output of the same shape.  As torch 2.13, a 3-D input is
    read as ``(N, C, L)`` (channel-wise 1-D dropout) with a UserWarning; use
    :class:`Dropout1d` for that.

    Example:
        >>> import jax, jax.numpy as jnp
        >>> from jaxlayers import nn
        >>> y = nn.Dropout2d().apply({}, jnp.ones((2, 8, 3, 3)), train=True, rngs={"dropout": jax.random.key(0)})
        >>> bool((y == y[..., :1, :1]).all())
        True
    """

    _fn = _nd(2)


class Dropout3d(_DropoutBase):
    """Zero whole channels of ``(N, C, D, H, W)`` / ``(C, D, H, W)`` input, as ``torch.nn.Dropout3d``.

    Args: as :class:`Dropout`.  Call: ``module(x, train=...)``.

    Shape: 4-D or 5-D input, output of the same shape.

    Example:
        >>> import jax, jax.numpy as jnp
        >>> from jaxlayers import nn
        >>> y = nn.Dropout3d().apply({}, jnp.ones((2, 8, 2, 2, 2)), train=True, rngs={"dropout": jax.random.key(0)})
        >>> bool((y == y[..., :1, :1, :1]).all())
        True
    """

    _fn = _nd(3)


class AlphaDropout(_DropoutBase):
    """Alpha dropout for SELU networks (keeps zero mean and unit variance), as
    ``torch.nn.AlphaDropout``.

    Args: as :class:`Dropout`.  Call: ``module(x, train=...)``.

    Shape: any shape, output of the same shape.

    Example:
        >>> import jax, jax.numpy as jnp
        >>> from jaxlayers import nn
        >>> nn.AlphaDropout(0.5).apply({}, jnp.ones(100), train=True, rngs={"dropout": jax.random.key(0)}).shape
        (100,)
    """

    _fn = staticmethod(lambda x, p, train, key, name: _dropout(x, p, train, key, name, alpha=True))


class FeatureAlphaDropout(_DropoutBase):
    """Alpha dropout of whole channels of ``(N, C, *)`` input, as ``torch.nn.FeatureAlphaDropout``.

    Args: as :class:`Dropout`.  Call: ``module(x, train=...)``.

    Shape: ``(N, C, *)``, output of the same shape.

    Example:
        >>> import jax, jax.numpy as jnp
        >>> from jaxlayers import nn
        >>> y = nn.FeatureAlphaDropout(0.5).apply({}, jnp.ones((2, 8, 3)), train=True, rngs={"dropout": jax.random.key(0)})
        >>> bool((y == y[..., :1]).all())
        True
    """

    _fn = staticmethod(channels_last(_feature_alpha_dropout))
