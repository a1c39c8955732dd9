"""CosineSimilarity, PairwiseDistance: thin over :mod:`jaxlayers.functional.distance`.
No variables; called as ``module.apply({}, x1, x2)``.
"""

from __future__ import annotations

from typing import Any

import flax.linen as fnn
import jax

from ..functional import distance as _D

__all__ = ["CosineSimilarity", "PairwiseDistance"]


class CosineSimilarity(fnn.Module):
    """Cosine similarity of ``x1`` and ``x2`` along ``dim``, as ``torch.nn.CosineSimilarity``.

    Args:
        dim: the dimension of the vectors. Default 1.
        eps: lower bound of each norm. Default 1e-8.

    Shape: the broadcast shape of ``x1`` and ``x2`` without ``dim``.

    Example:
        >>> import jax.numpy as jnp
        >>> from jaxlayers import nn
        >>> nn.CosineSimilarity().apply({}, jnp.ones((2, 3)), jnp.ones((2, 3))).round(6)
        Array([1., 1.], dtype=float32)
    """

    dim: int = 1
    eps: float = 1e-8

    def __call__(self, x1: Any, x2: Any) -> jax.Array:
        return _D._cosine_similarity(x1, x2, self.dim, self.eps, type(self).__name__)


class PairwiseDistance(fnn.Module):
    """``||x1 - x2 + eps||_p`` over the last dim, as ``torch.nn.PairwiseDistance``.

    Args:
        p: the norm degree. Default 2.
        eps: added to the difference. Default 1e-6.
        keepdim: keep the reduced dim. Default False.

    Shape: ``(N, D), (N, D) -> (N,)`` (``(N, 1)`` with ``keepdim``).

    Example:
        >>> import jax.numpy as jnp
        >>> from jaxlayers import nn
        >>> nn.PairwiseDistance(eps=0.0).apply({}, jnp.array([[3.0, 0.0]]), jnp.array([[0.0, 4.0]]))
        Array([5.], dtype=float32)
    """

    p: float = 2.0
    eps: float = 1e-6
    keepdim: bool = False

    def __call__(self, x1: Any, x2: Any) -> jax.Array:
        return _D._pairwise_distance(x1, x2, self.p, self.eps, self.keepdim, type(self).__name__)
