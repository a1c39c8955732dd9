"""BatchNorm*, LayerNorm, InstanceNorm*, GroupNorm, RMSNorm, LocalResponseNorm, SwitchNorm*.

Each module creates torch's variables (``params``: ``weight``, ``bias``, and for
SwitchNorm ``mean_weight``, ``var_weight``; ``batch_stats``: ``running_mean``,
``running_var``, ``num_batches_tracked``) and calls one function of
:mod:`jaxlayers.functional.normalization`.  Buffers are updated only with
``train=True`` and ``mutable=["batch_stats"]`` (never during ``init``).

Computation dtype: ``dtype`` (Flax meaning) if given, else the promotion of the
input's and the parameters' dtypes; statistics are always computed in at least
float32 and parameters/buffers stay in ``param_dtype``.
"""

from __future__ import annotations

import warnings
from typing import Any, ClassVar, Optional, Sequence

import flax.linen as fnn
import jax
import jax.numpy as jnp

from .._memory_format import channels_last
from .. import init as jinit
from .._utils import channel_dim, index_dtype, require_train, shape_str
from ..functional import normalization as Fn
from ._options import AffineOptions, InitOptions, StatsOptions, kw_only, set_field
from ._param import param

__all__ = [
    "BatchNorm1d",
    "BatchNorm2d",
    "BatchNorm3d",
    "InstanceNorm1d",
    "InstanceNorm2d",
    "InstanceNorm3d",
    "LayerNorm",
    "GroupNorm",
    "RMSNorm",
    "LocalResponseNorm",
    "SwitchNorm1d",
    "SwitchNorm2d",
    "SwitchNorm3d",
]


def _compute_dtype(module: fnn.Module, x: jax.Array, *params: Any) -> Any:
    """``dtype`` if given, else the promotion of the input's and the parameters' dtypes: the arrays'
    own (a model cast with ``.bfloat16()`` / ``.double()`` keeps ``param_dtype`` float32 in its fields;
    the declared dtype had made every bfloat16 norm return float32)."""
    if module.dtype is not None:
        return module.dtype
    return jnp.result_type(x.dtype, *[jnp.result_type(p) for p in params if p is not None])


def _check_channels(name: str, x: jax.Array, num_features: int, axis: int = 1, arg: str = "num_features") -> None:
    if x.shape[axis] != num_features:
        raise ValueError(
            f"{name}: expected input with {num_features} channels ({arg}={num_features}) at dim {axis}, "
            f"got shape {shape_str(x)}"
        )


def _check_rank(name: str, x: jax.Array, ranks: Sequence[int], what: str) -> None:
    if x.ndim not in ranks:
        raise ValueError(f"{name}: expected {what} input, got {x.ndim}-D input of shape {shape_str(x)}")


class _StatsMixin:
    """Creates the ``batch_stats`` buffers and writes them back."""

    def _optional_buffers(self, c: int, track: bool):
        """``(buffers, running_mean, running_var, num_batches_tracked)``; all None unless ``track``."""
        if not track:
            return None, None, None, None
        buffers = (
            self.variable("batch_stats", "running_mean", lambda: jnp.zeros((c,), self.param_dtype)),
            self.variable("batch_stats", "running_var", lambda: jnp.ones((c,), self.param_dtype)),
            self.variable("batch_stats", "num_batches_tracked", lambda: jnp.zeros((), index_dtype())),
        )
        return (buffers, *(b.value for b in buffers))

    def _num_features(self, x: jax.Array, axis: int = 1) -> int:
        """``num_features`` the input's channel dim ``axis`` must match (the Lazy modules infer it)."""
        return self.num_features

    def _device_axis(self):
        """``(axis_name, axis_index_groups)``, or ``(None, None)`` while initialising: as Flax,
        ``init`` reduces nothing across devices, so it also runs outside ``shard_map``/``pmap``
        (the variables it creates do not depend on the statistics)."""
        if self.is_initializing():
            return None, None
        return self.axis_name, self.axis_index_groups

    def _write_back(self, train: bool, buffers, result: Fn.NormOutput) -> None:
        if buffers is None:
            return
        if train and self.is_mutable_collection("batch_stats") and not self.is_initializing():
            rm, rv, nbt = buffers
            rm.value, rv.value, nbt.value = result.running_mean, result.running_var, result.num_batches_tracked


def _affine_params(module, c_shape, weight: bool, bias: bool):
    w = param(module, "weight", module.weight_init or jinit.ones, c_shape, module.param_dtype) if weight else None
    b = param(module, "bias", module.bias_init or jinit.zeros, c_shape, module.param_dtype) if bias else None
    return w, b


class _BatchNorm(_StatsMixin, StatsOptions):
    """N-d batch normalisation, as ``torch.nn.BatchNorm{1,2,3}d``.

    Args:
      num_features: ``C``.
      eps: added to the variance.
      momentum: weight of the new batch in the running averages (torch's
        convention; Flax's ``momentum`` is ``1 −`` this). ``None``: cumulative
        moving average ``1 / num_batches_tracked``.
      affine: learnable ``weight`` (ones) and ``bias`` (zeros).
      track_running_stats: keep ``running_mean``/``running_var``/
        ``num_batches_tracked`` in ``batch_stats`` and use them with
        ``train=False``; if False, batch statistics are used in both modes and
        there are no buffers.
      bias: with ``affine``, whether there is a ``bias`` (torch keyword).
      dtype: computation dtype; param_dtype: parameters and buffers (float32).
      axis_name, axis_index_groups: reduce batch statistics across a named
        device axis under ``shard_map``/``pmap`` (as Flax). Under a sharded
        ``jit`` nothing is needed: statistics are over the global batch.
        ``init`` reduces nothing (as Flax), so it also runs outside the mapped context.
      weight_init, bias_init: override the ones/zeros initialisers.

    Call: ``module(input, *, train)`` — ``train`` is required.

    Shape: ``(N, C)``/``(N, C, L)`` (1d), ``(N, C, H, W)`` (2d), ``(N, C, D, H, W)`` (3d); unchanged.
    """

    num_features: int
    eps: float = 1e-5
    momentum: Optional[float] = 0.1
    affine: bool = True
    track_running_stats: bool = True
    bias: bool = True

    ranks: ClassVar[tuple[int, ...]] = ()
    layout: ClassVar[str] = ""

    @channels_last(native=True)
    @fnn.compact
    def __call__(self, input: jax.Array, *, train: bool | None = None, channel_axis: int = 1) -> jax.Array:
        """``channel_axis`` is set by channels-last mode (-1: ``(N, *spatial, C)``)."""
        name = type(self).__name__
        train = require_train(name, train)
        x = jnp.asarray(input)
        _check_rank(name, x, self.ranks, self.layout)
        axis = channel_dim(name, channel_axis, x.ndim)
        c = self._num_features(x, axis)
        if self.affine or self.track_running_stats:  # else nothing has num_features' shape: torch takes any C
            _check_channels(name, x, c, axis)
        weight, bias = _affine_params(self, (c,), self.affine, self.affine and self.bias)
        x = x.astype(_compute_dtype(self, x, weight, bias))
        buffers, rm, rv, nbt = self._optional_buffers(c, self.track_running_stats)
        axis_name, groups = self._device_axis()
        result = Fn._batch_norm(
            x, rm, rv, weight, bias, train or not self.track_running_stats, self.momentum, self.eps,
            num_batches_tracked=nbt, axis_name=axis_name, axis_index_groups=groups, name=name,
            channel_axis=axis,
        )
        self._write_back(train, buffers, result)
        return result.output


class BatchNorm1d(_BatchNorm):
    __doc__ = _BatchNorm.__doc__
    ranks: ClassVar[tuple[int, ...]] = (2, 3)
    layout: ClassVar[str] = "2-D (N, C) or 3-D (N, C, L)"


class BatchNorm2d(_BatchNorm):
    __doc__ = _BatchNorm.__doc__
    ranks: ClassVar[tuple[int, ...]] = (4,)
    layout: ClassVar[str] = "4-D (N, C, H, W)"


class BatchNorm3d(_BatchNorm):
    __doc__ = _BatchNorm.__doc__
    ranks: ClassVar[tuple[int, ...]] = (5,)
    layout: ClassVar[str] = "5-D (N, C, D, H, W)"


class _InstanceNorm(_StatsMixin, StatsOptions):
    """N-d instance normalisation, as ``torch.nn.InstanceNorm{1,2,3}d``.

    Args:
      num_features: ``C``.
      eps, momentum: as torch (``momentum=None`` is treated as 0, as torch does).
      affine: learnable per-channel ``weight``/``bias`` (default False).
      track_running_stats: keep running averages of the instance statistics and
        use them with ``train=False`` (default False: instance statistics in both modes).
      bias: with ``affine``, whether there is a ``bias``.
      dtype, param_dtype, axis_name, axis_index_groups, weight_init, bias_init: as BatchNorm.

    Call: ``module(input, *, train)`` — ``train`` is required (it matters with
    ``track_running_stats``).  As torch, a channel count different from
    ``num_features`` is an error only with ``affine`` or ``track_running_stats``.

    Shape: ``(N, C, *spatial)`` or unbatched ``(C, *spatial)``; unchanged.
    """

    num_features: int
    eps: float = 1e-5
    momentum: Optional[float] = 0.1
    affine: bool = False
    track_running_stats: bool = False
    bias: bool = True

    num_spatial_dims: ClassVar[int] = 0

    @channels_last(native=True)
    @fnn.compact
    def __call__(self, input: jax.Array, *, train: bool | None = None, channel_axis: int = 1) -> jax.Array:
        """``channel_axis`` is set by channels-last mode (-1: ``(N, *spatial, C)``)."""
        name = type(self).__name__
        train = require_train(name, train)
        x = jnp.asarray(input)
        d = self.num_spatial_dims
        _check_rank(name, x, (d + 1, d + 2), f"{d + 1}-D (C, *spatial) or {d + 2}-D (N, C, *spatial)")
        given, unbatched = x, x.ndim == d + 1
        if unbatched:
            x = x[None]
        axis = channel_dim(name, channel_axis, x.ndim)
        c = x.shape[axis]
        given_axis = axis - 1 if unbatched else axis  # the channel dim of the caller's input
        if self.affine or self.track_running_stats:
            _check_channels(name, given, self._num_features(x, axis), axis=given_axis)
        elif c != self._num_features(x, axis):  # nothing has num_features' shape: torch warns and runs
            warnings.warn(f"{name}: input's size at dim={given_axis} does not match num_features. You can "
                          "silence this warning by not passing in num_features, which is not used because "
                          "affine=False", stacklevel=2)
        weight, bias = _affine_params(self, (c,), self.affine, self.affine and self.bias)
        x = x.astype(_compute_dtype(self, x, weight, bias))
        buffers, rm, rv, nbt = self._optional_buffers(c, self.track_running_stats)
        axis_name, groups = self._device_axis()
        result = Fn._instance_norm(
            x, rm, rv, weight, bias, train or not self.track_running_stats,
            0.0 if self.momentum is None else self.momentum, self.eps,
            num_batches_tracked=nbt, axis_name=axis_name, axis_index_groups=groups, name=name,
            channel_axis=axis,
        )
        self._write_back(train, buffers, result)
        return result.output[0] if unbatched else result.output


class InstanceNorm1d(_InstanceNorm):
    __doc__ = _InstanceNorm.__doc__
    num_spatial_dims: ClassVar[int] = 1


class InstanceNorm2d(_InstanceNorm):
    __doc__ = _InstanceNorm.__doc__
    num_spatial_dims: ClassVar[int] = 2


class InstanceNorm3d(_InstanceNorm):
    __doc__ = _InstanceNorm.__doc__
    num_spatial_dims: ClassVar[int] = 3


class _TrailingShape:
    """``normalized_shape`` held as torch's modules hold it: a tuple of ints, checked at construction."""

    def __post_init__(self) -> None:
        set_field(self, "normalized_shape", Fn._normalized_shape(type(self).__name__, self.normalized_shape))
        super().__post_init__()


class LayerNorm(_TrailingShape, AffineOptions):
    """Layer normalisation over the trailing dims, as ``torch.nn.LayerNorm``.

    Args:
      normalized_shape: int or tuple of the trailing dims to normalise over.
      eps: added to the variance.
      elementwise_affine: learnable ``weight`` (ones) and ``bias`` (zeros) of shape ``normalized_shape``.
      bias: with ``elementwise_affine``, whether there is a ``bias``.
      dtype, param_dtype, weight_init, bias_init: Flax-side options.

    Shape: ``(*, *normalized_shape)``; unchanged.
    """

    normalized_shape: Any
    eps: float = 1e-5
    elementwise_affine: bool = True
    bias: bool = True

    @fnn.compact
    def __call__(self, input: jax.Array) -> jax.Array:
        name = type(self).__name__
        shape = self.normalized_shape
        x = jnp.asarray(input)
        Fn._check_trailing(name, x, shape)
        ea = self.elementwise_affine
        weight, bias = _affine_params(self, shape, ea, ea and self.bias)
        x = x.astype(_compute_dtype(self, x, weight, bias))
        return Fn._layer_norm(x, shape, weight, bias, self.eps, name=name)


class GroupNorm(AffineOptions):
    """Group normalisation, as ``torch.nn.GroupNorm``.

    Args:
      num_groups: groups the channels are split into (must divide ``num_channels``).
      num_channels: ``C``.
      eps: added to the variance.
      affine: learnable per-channel ``weight`` (ones) and ``bias`` (zeros).
      bias: with ``affine``, whether there is a ``bias`` (torch keyword).
      dtype, param_dtype, weight_init, bias_init: Flax-side options.

    Shape: ``(N, C, *)``; unchanged.
    """

    num_groups: int
    num_channels: int
    eps: float = 1e-5
    affine: bool = True
    bias: bool = True

    def __post_init__(self) -> None:
        if self.num_groups <= 0 or self.num_channels % self.num_groups:
            raise ValueError(
                f"GroupNorm: num_channels={self.num_channels} must be divisible by num_groups={self.num_groups}"
            )
        super().__post_init__()

    @channels_last(native=True)
    @fnn.compact
    def __call__(self, input: jax.Array, *, channel_axis: int = 1) -> jax.Array:
        """``channel_axis`` is set by channels-last mode (-1: ``(N, *spatial, C)``)."""
        name = type(self).__name__
        x = jnp.asarray(input)
        if x.ndim < 2:
            raise ValueError(f"{name}: expected (N, C, *) input, got {x.ndim}-D input of shape {shape_str(x)}")
        _check_channels(name, x, self.num_channels, channel_dim(name, channel_axis, x.ndim), arg="num_channels")
        weight, bias = _affine_params(self, (self.num_channels,), self.affine, self.affine and self.bias)
        x = x.astype(_compute_dtype(self, x, weight, bias))
        return Fn._group_norm(x, self.num_groups, weight, bias, self.eps, name=name, channel_axis=channel_axis)


class RMSNorm(_TrailingShape, InitOptions):
    """Root-mean-square normalisation, as ``torch.nn.RMSNorm``.

    Args:
      normalized_shape: int or tuple of trailing dims.
      eps: added to the mean square; ``None`` = machine epsilon of the
        computation dtype (float32 for bfloat16 inputs, as torch's opmath).
      elementwise_affine: learnable ``weight`` (ones) of shape ``normalized_shape``.
      dtype, param_dtype, weight_init: Flax-side options.

    Shape: ``(*, *normalized_shape)``; unchanged.
    """

    normalized_shape: Any
    eps: Optional[float] = None
    elementwise_affine: bool = True

    @fnn.compact
    def __call__(self, x: jax.Array) -> jax.Array:  # torch's RMSNorm.forward(x)
        name = type(self).__name__
        shape = self.normalized_shape
        x = jnp.asarray(x)
        Fn._check_trailing(name, x, shape)
        weight = None
        if self.elementwise_affine:
            weight = param(self, "weight", self.weight_init or jinit.ones, shape, self.param_dtype)
        x = x.astype(_compute_dtype(self, x, weight))
        return Fn._rms_norm(x, shape, weight, self.eps, name=name)


class LocalResponseNorm(fnn.Module):
    """Local response normalisation across channels, as ``torch.nn.LocalResponseNorm``.

    Args: size (neighbouring channels), alpha, beta, k — torch's defaults.

    Shape: ``(N, C, *)`` with at least 3 dims; unchanged.
    """

    size: int
    alpha: float = 1e-4
    beta: float = 0.75
    k: float = 1.0

    @channels_last
    def __call__(self, input: jax.Array) -> jax.Array:
        return Fn._local_response_norm(jnp.asarray(input), self.size, self.alpha, self.beta, self.k,
                                       name=type(self).__name__)


class _SwitchNorm(_StatsMixin, StatsOptions):
    """Switchable Normalization (Luo et al. 2018) as the authors' reference implementation
    (github.com/switchablenorms/Switchable-Normalization, ``devkit/ops/switchable_norm.py``).

    Normalises with softmax-weighted mixtures of instance- (IN), layer- (LN) and batch-norm (BN)
    means and variances (formulas: ``jaxlayers.functional.switch_norm``, docs/normalization.md).
    A reference checkpoint (its ``state_dict``) loads as is: same names and shapes.

    Args (the reference's, in its order):
      num_features: ``C``.
      eps: added to the mixed variance. Default 1e-5.
      momentum: weight of the *old* running value (the reference's convention, not torch's):
        ``running = momentum · running + (1 − momentum) · batch``.  Default 0.997 (1d, 3d), 0.9 (2d).
      using_moving_average: exponential running averages; False keeps the reference's running sums
        (``running_mean += μ_bn``, ``running_var += μ_bn² + σ²_bn``).
      using_bn (2d, 3d): mix BN statistics; False: IN and LN only, two logits and no buffers.
      last_gamma (2d, 3d): initialise ``weight`` to zeros (for the last norm of a residual block).
      variance (keyword): ``"unbiased"`` (the reference: unbiased instance variance, unbiased LN/BN
        variances in 1d) or ``"biased"`` (every variance biased: one-hot logits give exactly
        InstanceNorm, LayerNorm, BatchNorm).
      dtype, param_dtype, axis_name, axis_index_groups, weight_init, bias_init: as BatchNorm
        (``axis_name`` reduces only the batch statistics).

    Variables: ``params``: ``weight`` (ones) and ``bias`` (zeros) of shape ``(1, C)`` (1d),
    ``(1, C, 1, 1)`` (2d), ``(1, C, 1, 1, 1)`` (3d); ``mean_weight``, ``var_weight`` logits (ones):
    ``(2,)`` (LN, BN) in 1d, ``(3,)`` (IN, LN, BN) in 2d/3d, ``(2,)`` (IN, LN) with
    ``using_bn=False``.  ``batch_stats``: ``running_mean``, ``running_var`` (zeros) of shape
    ``(1, C)`` (1d) or ``(1, C, 1)`` (2d, 3d) — the reference's, no ``num_batches_tracked``.

    Call: ``module(input, *, train)``.

    Shape: ``(N, C)`` (1d, as the reference), ``(N, C, H, W)`` (2d), ``(N, C, D, H, W)`` (3d); unchanged.
    """

    num_features: int
    eps: float = 1e-5
    momentum: float = 0.997
    using_moving_average: bool = True
    using_bn: bool = True
    last_gamma: bool = False
    variance: str = kw_only("unbiased")

    num_spatial_dims: ClassVar[int] = 0

    def __post_init__(self) -> None:
        if self.variance not in Fn._SWITCH_VARIANCES:
            raise ValueError(f"{type(self).__name__}: variance must be one of {Fn._SWITCH_VARIANCES}, "
                             f"got {self.variance!r}")
        super().__post_init__()

    @channels_last
    @fnn.compact
    def __call__(self, input: jax.Array, *, train: bool | None = None) -> jax.Array:
        name = type(self).__name__
        train = require_train(name, train)
        x = jnp.asarray(input)
        d = self.num_spatial_dims
        _check_rank(name, x, (d + 2,), "2-D (N, C)" if d == 0 else f"{d + 2}-D (N, C, *spatial)")
        _check_channels(name, x, self.num_features)
        c = self.num_features
        using_bn = self.using_bn or d == 0
        pshape = (1, c) + (1,) * d
        w_init = self.weight_init or (jinit.zeros if self.last_gamma else jinit.ones)
        weight = param(self, "weight", w_init, pshape, self.param_dtype)
        bias = param(self, "bias", self.bias_init or jinit.zeros, pshape, self.param_dtype)
        k = 3 if using_bn and d else 2
        mean_weight = param(self, "mean_weight", jinit.ones, (k,), self.param_dtype)
        var_weight = param(self, "var_weight", jinit.ones, (k,), self.param_dtype)
        x = x.astype(_compute_dtype(self, x, weight, bias, mean_weight, var_weight))
        axis_name, groups = self._device_axis()
        rm = rv = None
        if using_bn:
            bshape = (1, c) if d == 0 else (1, c, 1)
            rm = self.variable("batch_stats", "running_mean", lambda: jnp.zeros(bshape, self.param_dtype))
            rv = self.variable("batch_stats", "running_var", lambda: jnp.zeros(bshape, self.param_dtype))
        result = Fn._switch_norm(
            x, None if rm is None else rm.value, None if rv is None else rv.value, weight, bias, mean_weight,
            var_weight, train, self.momentum, self.eps, using_bn=using_bn,
            using_moving_average=self.using_moving_average, variance=self.variance, num_batches_tracked=None,
            axis_name=axis_name, axis_index_groups=groups, name=name,
        )
        if rm is not None and train and self.is_mutable_collection("batch_stats") and not self.is_initializing():
            rm.value, rv.value = result.running_mean, result.running_var
        return result.output


class SwitchNorm1d(_SwitchNorm):
    __doc__ = _SwitchNorm.__doc__
    num_spatial_dims: ClassVar[int] = 0


class SwitchNorm2d(_SwitchNorm):
    __doc__ = _SwitchNorm.__doc__
    momentum: float = 0.9
    num_spatial_dims: ClassVar[int] = 2


class SwitchNorm3d(_SwitchNorm):
    __doc__ = _SwitchNorm.__doc__
    num_spatial_dims: ClassVar[int] = 3
