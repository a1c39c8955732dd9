"""LazyBatchNorm1d/2d/3d, LazyInstanceNorm1d/2d/3d, SyncBatchNorm, CrossMapLRN2d.

The Lazy modules are their eager twins of :mod:`jaxlayers.nn.normalization` with
``num_features`` inferred from the input's channel dim at ``init`` (as torch's, which read
``input.shape[1]``); once initialised, the variables' shapes fix it.  SyncBatchNorm is
BatchNorm over the global batch for inputs of any rank ``(N, C, *)``.  CrossMapLRN2d is
torch's Lua-era cross-channel LRN (see :mod:`jaxlayers.functional.norm_extra`).
"""

from __future__ import annotations

from typing import Any, ClassVar, Optional

import flax.linen as fnn
import jax

from .._memory_format import channels_last
from .._utils import shape_str
from ..functional.norm_extra import _cross_map_lrn2d
from ._options import kw_only
from .normalization import BatchNorm1d, BatchNorm2d, BatchNorm3d, _BatchNorm, _InstanceNorm

__all__ = [
    "LazyBatchNorm1d",
    "LazyBatchNorm2d",
    "LazyBatchNorm3d",
    "LazyInstanceNorm1d",
    "LazyInstanceNorm2d",
    "LazyInstanceNorm3d",
    "SyncBatchNorm",
    "CrossMapLRN2d",
]


def _lazy_num_features(module: fnn.Module, x: jax.Array, axis: int = 1) -> int:
    """``num_features`` of a Lazy norm (its ``_num_features``, which the eager class's ``__call__``
    checks the input against): the field if given, else the variables' shape once they exist,
    else the input's channel dim ``axis``."""
    if module.num_features is not None:
        return module.num_features
    for col, var in (("params", "weight"), ("batch_stats", "running_mean")):
        if module.has_variable(col, var):
            return int(module.get_variable(col, var).shape[0])
    return int(x.shape[axis])


class _LazyBatchNorm(_BatchNorm):
    """``torch.nn.LazyBatchNorm{1,2,3}d``: BatchNorm with ``num_features`` inferred from ``input.shape[1]``.

    Args: torch's ``(eps=1e-5, momentum=0.1, affine=True, track_running_stats=True)``, ``bias`` and the
    Flax options of BatchNorm; ``num_features`` may still be given by keyword.

    Call: ``module(input, *, train)``.  Shape: as the eager class.
    """

    num_features: Optional[int] = kw_only(None)

    _num_features = _lazy_num_features


class LazyBatchNorm1d(_LazyBatchNorm):
    __doc__ = _LazyBatchNorm.__doc__
    ranks: ClassVar[tuple[int, ...]] = BatchNorm1d.ranks
    layout: ClassVar[str] = BatchNorm1d.layout


class LazyBatchNorm2d(_LazyBatchNorm):
    __doc__ = _LazyBatchNorm.__doc__
    ranks: ClassVar[tuple[int, ...]] = BatchNorm2d.ranks
    layout: ClassVar[str] = BatchNorm2d.layout


class LazyBatchNorm3d(_LazyBatchNorm):
    __doc__ = _LazyBatchNorm.__doc__
    ranks: ClassVar[tuple[int, ...]] = BatchNorm3d.ranks
    layout: ClassVar[str] = BatchNorm3d.layout


class _LazyInstanceNorm(_InstanceNorm):
    """``torch.nn.LazyInstanceNorm{1,2,3}d``: InstanceNorm with ``num_features`` inferred from the input.

    Args: torch's ``(eps=1e-5, momentum=0.1, affine=True, track_running_stats=True)`` — note torch's
    Lazy defaults, unlike InstanceNorm's ``False`` — plus ``bias`` and the Flax options.

    Differs from torch: an unbatched ``(C, *spatial)`` input gives ``num_features = C`` (torch reads
    ``input.shape[1]`` and then rejects its own unbatched input).

    Call: ``module(input, *, train)``.  Shape: as the eager class.
    """

    num_features: Optional[int] = kw_only(None)
    affine: bool = True
    track_running_stats: bool = True

    _num_features = _lazy_num_features


class LazyInstanceNorm1d(_LazyInstanceNorm):
    __doc__ = _LazyInstanceNorm.__doc__
    num_spatial_dims: ClassVar[int] = 1


class LazyInstanceNorm2d(_LazyInstanceNorm):
    __doc__ = _LazyInstanceNorm.__doc__
    num_spatial_dims: ClassVar[int] = 2


class LazyInstanceNorm3d(_LazyInstanceNorm):
    __doc__ = _LazyInstanceNorm.__doc__
    num_spatial_dims: ClassVar[int] = 3


class SyncBatchNorm(_BatchNorm):
    """Batch normalisation over the global batch, as ``torch.nn.SyncBatchNorm``.

    Args:
      num_features, eps, momentum, affine, track_running_stats, bias: as BatchNorm.
      process_group: torch's; only ``None`` (every device) is accepted here — a subset of devices
        is ``axis_index_groups`` (ValueError otherwise).
      axis_name, axis_index_groups: the named device axis of ``shard_map``/``pmap`` the statistics
        are reduced over.  Under a ``jit`` whose input is sharded along the batch nothing is
        needed: the statistics are already over the global batch.
      dtype, param_dtype, weight_init, bias_init: Flax options.

    Call: ``module(input, *, train)``.

    Shape: ``(N, C, *)`` of any rank >= 2; unchanged.

    Example:
      >>> import jax, jax.numpy as jnp
      >>> from jaxlayers import nn
      >>> bn = nn.SyncBatchNorm(3)
      >>> x = jnp.arange(48.0).reshape(4, 3, 2, 2)
      >>> v = bn.init(jax.random.key(0), x, train=False)
      >>> y, upd = bn.apply(v, x, train=True, mutable=["batch_stats"])
      >>> print(y.shape, [round(float(m), 2) for m in upd["batch_stats"]["running_mean"]])
      (4, 3, 2, 2) [1.95, 2.35, 2.75]
    """

    num_features: int
    eps: float = 1e-5
    momentum: Optional[float] = 0.1
    affine: bool = True
    track_running_stats: bool = True
    process_group: Any = None
    bias: bool = kw_only(True)

    ranks: ClassVar[tuple[int, ...]] = tuple(range(2, 33))
    layout: ClassVar[str] = "at least 2-D (N, C, *)"

    def __post_init__(self) -> None:
        if self.process_group is not None:
            raise ValueError(
                "SyncBatchNorm: process_group has no JAX equivalent; use axis_name (and axis_index_groups for a "
                f"subset of devices), got process_group={self.process_group!r}"
            )
        super().__post_init__()

    def _num_features(self, x: jax.Array, axis: int) -> int:
        if x.shape[axis] == 0:  # torch checks this on every call (an empty batch is fine)
            raise ValueError(f"SyncBatchNorm: number of input channels should be non-zero, got input of shape "
                             f"{shape_str(x)}")
        return super()._num_features(x, axis)


class CrossMapLRN2d(fnn.Module):
    """Cross-channel local response normalisation, as ``torch.nn.CrossMapLRN2d``.

    ``y[c] = x[c] * (k + alpha / size * S[c]) ** -beta`` where ``S[c]`` is torch's running sum of
    squares over a channel window (not :class:`LocalResponseNorm`'s centred window: torch's
    recurrence never drops channel 0, so for ``c > (size - 1) // 2 + 1`` the window is channel 0
    plus ``[c - p + 1, c + p - 1]`` with ``p = (size - 1) // 2 + 1``).  The gradient is torch's
    hand-written backward (a window ``[c - ipp, c + size - 1 - ipp]``, ``ipp = int(size - (size - 1) / 2)``),
    which is not the derivative of the forward; both are reproduced exactly.

    Args: size, alpha (1e-4), beta (0.75), k (1) — torch's.

    Shape: ``(N, C, H, W)`` only (ValueError otherwise); unchanged.

    Differs from torch: ``size=1`` has a gradient here (torch's backward raises).

    Example:
      >>> import jax.numpy as jnp
      >>> from jaxlayers import nn
      >>> y = nn.CrossMapLRN2d(3, alpha=3.0, beta=1.0).apply({}, jnp.ones((1, 4, 1, 1)))
      >>> [round(float(v), 3) for v in y.ravel()]  # windows: {0, 1}, {0, 1, 2}, {0, 1, 2, 3}, {0, 2, 3}
      [0.333, 0.25, 0.2, 0.25]
    """

    size: int
    alpha: float = 1e-4
    beta: float = 0.75
    k: float = 1.0

    def __post_init__(self) -> None:
        if isinstance(self.size, bool) or not isinstance(self.size, int) or self.size < 1:
            raise ValueError(f"CrossMapLRN2d: size must be a positive int, got {self.size!r}")
        super().__post_init__()

    @channels_last
    def __call__(self, input: Any) -> jax.Array:
        return _cross_map_lrn2d(input, self.size, self.alpha, self.beta, self.k, "CrossMapLRN2d")
