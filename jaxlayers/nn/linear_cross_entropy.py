"""LinearCrossEntropyLoss, thin over :func:`jaxlayers.functional.linear_cross_entropy`."""

from __future__ import annotations

import math
from typing import Any, Optional

import jax
import jax.numpy as jnp
from flax.linen.dtypes import promote_dtype

from ..functional.linear_cross_entropy import _linear_cross_entropy
from ..functional.loss import _legacy_reduction
from ._options import LayerOptions, kw_only
from .adaptive_softmax import _LinearParams

__all__ = ["LinearCrossEntropyLoss"]


class LinearCrossEntropyLoss(LayerOptions):
    """A ``Linear`` projection to class logits fused with cross entropy, computed in chunks of rows,
    as ``torch.nn.LinearCrossEntropyLoss``.

    Args:
        in_features: size of each input sample.
        num_classes: number of classes ``C``.
        out_features: ``(d1, ..., dK)`` for a K-dimensional loss (keyword only). Default ``()``.
        bias: learn a bias (keyword only). Default False.
        reduction, weight, ignore_index, label_smoothing, options: as
            :func:`jaxlayers.functional.linear_cross_entropy` (keyword only; ``weight`` is torch's buffer,
            given here as an array).
        chunk_size: rows per chunk (jaxlayers; default about ``2**22 / C``).
        dtype, param_dtype, weight_init, bias_init, precision: Flax options.

    Variables (torch's keys): ``linear.weight`` ``(C * d1 * ... * dK, in_features)``, ``linear.bias``
    ``(C * d1 * ... * dK,)`` (torch stores them flat and reshapes in ``forward``; so does this).

    Shape: input ``(N, in_features)`` or ``(in_features,)``; target ``(N,)``, ``(N, d1, ..., dK)``, ``()``
    or probabilities ``(N, C, d1, ...)``; output scalar, or the index shape with ``'none'``.

    Example:
        >>> import jax, jax.numpy as jnp
        >>> from jaxlayers import nn
        >>> loss = nn.LinearCrossEntropyLoss(4, 10, bias=True)
        >>> x, t = jnp.ones((6, 4)), jnp.arange(6)
        >>> v = loss.init(jax.random.key(0), x, t)
        >>> {k: w.shape for k, w in v["params"]["linear"].items()}
        {'weight': (10, 4), 'bias': (10,)}
    """

    in_features: int
    num_classes: int
    out_features: tuple = kw_only(())
    bias: bool = kw_only(False)
    reduction: str = kw_only("mean")
    weight: Any = kw_only(None)
    ignore_index: Optional[int] = kw_only(None)
    label_smoothing: float = kw_only(0.0)
    options: Any = kw_only(None)
    chunk_size: Optional[int] = kw_only(None)

    def __post_init__(self) -> None:
        name = type(self).__name__
        if self.weight is not None and tuple(self.weight.shape) != (self.num_classes,):
            raise ValueError(f"{name}: expected weight shape ({self.num_classes},), got {tuple(self.weight.shape)}")
        if not 0.0 <= self.label_smoothing <= 1.0:
            raise ValueError(f"{name}: label_smoothing must be in [0, 1], got {self.label_smoothing}")
        _legacy_reduction(None, None, self.reduction, name)
        super().__post_init__()

    def _nnx_probe_inputs(self) -> tuple:
        """A tiny ``(input, target)`` for :mod:`jaxlayers.nnx` to create the variables at construction."""
        return jnp.zeros((1, self.in_features), jnp.float32), jnp.zeros((1,) + tuple(self.out_features), jnp.int32)

    def setup(self) -> None:
        self.linear = _LinearParams(in_features=self.in_features,
                                    out_features=math.prod(self.out_features) * self.num_classes, bias=self.bias,
                                    param_dtype=self.param_dtype, weight_init=self.weight_init,
                                    bias_init=self.bias_init)

    def __call__(self, input: Any, target: Any) -> jax.Array:
        w, b = self.linear()
        input, w, b = promote_dtype(input, w, b, dtype=self.dtype)
        shape = (self.num_classes, *self.out_features)
        w = w.reshape(shape + (self.in_features,))
        b = None if b is None else b.reshape(shape)
        return _linear_cross_entropy(input, w, target, b, self.weight, self.reduction, self.ignore_index,
                                         self.label_smoothing, self.chunk_size, self.options, type(self).__name__,
                                         self.precision)
