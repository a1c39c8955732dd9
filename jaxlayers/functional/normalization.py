"""Normalisation functions: batch/layer/instance/group/RMS/local-response/switchable.

This file is the **reference**: plain JAX, differentiated by JAX (every
derivative mode works).  Statistics come from two helpers:

* :func:`_moments` — biased mean and variance over some axes, **two-pass**
  (the mean first, then the mean of squared deviations) and in at least
  float32, so that inputs with a large common offset (``1e4 + N(0, 1)`` in
  float32) still normalise correctly; ``E[x²] − E[x]²`` does not.
* :func:`_pool` — pools equal-sized groups of moments along an axis (and over a
  named device axis) with the law of total variance,
  ``var = mean(var_i + (mean_i − mean)²)``, which is as stable as two passes
  over the raw data.  Batch norm is "instance moments over the spatial dims,
  then pooled over the batch", which keeps every reduction over contiguous
  trailing axes.

:func:`_normalize` then applies ``(x − mean) · rsqrt(var + eps) · weight + bias``.
Batch (single device), layer and group norm (torch's layout) go through
:func:`_norm_over`, which ``jaxlayers._lowering.norm`` lowers on CPU under the
``"auto"`` setting where the moments are over trailing or leading axes, or over all but
the channel of torch's layout (guarded raw moments and torch's analytic derivative as a
custom JVP); the
``"reference"`` setting (``jaxlayers.config``) runs the two-pass form here.
Group norm on a channels-last input is :func:`_group_norm_channels_last` under
both settings; instance norm is the reference under both.

Functions that torch lets mutate buffers in place (``batch_norm``,
``instance_norm``, ``switch_norm``) are pure here: they return a
:class:`NormOutput` ``(output, running_mean, running_var, num_batches_tracked)``.
"""

from __future__ import annotations

import math
import operator
from typing import Any, NamedTuple, Sequence

import jax
import jax.numpy as jnp
from jax import lax

from .._lowering import norm as _lowering_norm
from .._memory_format import channels_last
from .._utils import _is_int, channel_dim, compiled, first_finite, one_program, reshape, shape_str

__all__ = [
    "NormOutput",
    "batch_norm",
    "instance_norm",
    "layer_norm",
    "group_norm",
    "rms_norm",
    "local_response_norm",
    "switch_norm",
]

Array = jax.Array


class NormOutput(NamedTuple):
    """What ``batch_norm``/``instance_norm``/``switch_norm`` return.

    ``output`` is torch's return value; the other fields are the buffers after
    the call (what torch would have mutated in place): updated when statistics
    were tracked in training, otherwise the arguments passed in (``None`` stays
    ``None``).
    """

    output: Array
    running_mean: Array | None
    running_var: Array | None
    num_batches_tracked: Array | None


# --------------------------------------------------------------------------- helpers


def _stat_dtype(dtype: Any) -> jnp.dtype:
    """Statistics dtype: float32 for half/bfloat16 inputs, else the input's float dtype."""
    return jnp.promote_types(dtype, jnp.float32)


def _moments(x: Array, axes: Sequence[int]) -> tuple[Array, Array]:
    """Biased mean and variance of ``x`` over ``axes`` (kept as size-1 dims).

    Two passes, in at least float32: ``mean = E[x]``, ``var = E[(x − mean)²]``, the mean
    taken as ``s + E[x − s]`` with ``s`` the slice's first element (0 where it is not finite),
    held constant: exact for a constant slice, whose variance is then exactly 0, as torch's
    (``E[x]`` of twelve 0.1s is not 0.1, and ``eps = 0`` then normalised them to ±1 where torch
    gives NaN).  With no axes the mean is ``x`` and the variance zero.
    """
    x = x.astype(_stat_dtype(x.dtype))
    axes = tuple(axes)
    if not axes:
        return x, jnp.zeros_like(x)
    shift = first_finite(x, axes)
    mean = shift + jnp.mean(x - shift, axes, keepdims=True)
    var = jnp.mean(jnp.square(x - mean), axes, keepdims=True)
    return mean, var


def _pool(
    mean: Array,
    var: Array,
    axis: int,
    axis_name: Any = None,
    axis_index_groups: Any = None,
) -> tuple[Array, Array]:
    """Moments of the union of equal-sized groups given per-group moments.

    Groups run along ``axis`` (and across the devices of ``axis_name``, each
    holding the same number of groups): ``mean = mean_i(mean_i)``,
    ``var = mean_i(var_i + (mean_i − mean)²)``.
    """
    m = jnp.mean(mean, axis, keepdims=True)
    if axis_name is not None:
        m = lax.pmean(m, axis_name, axis_index_groups=axis_index_groups)
    v = jnp.mean(var + jnp.square(mean - m), axis, keepdims=True)
    if axis_name is not None:
        v = lax.pmean(v, axis_name, axis_index_groups=axis_index_groups)
    return m, v


def _normalize(
    x: Array,
    mean: Array,
    var: Array,
    weight: Array | None,
    bias: Array | None,
    eps: float,
    param_shape: Sequence[int],
    *,
    zero_var_inv_std: bool = False,
) -> Array:
    """``(x − mean) · rsqrt(var + eps) · weight + bias`` in the statistics' dtype,
    returned in ``x.dtype``.  ``weight``/``bias`` are reshaped to ``param_shape``
    (which broadcasts against ``x``).  ``zero_var_inv_std``: torch's batch-norm training
    kernel (instance norm's), whose inverse std is 0 where ``var`` and ``eps`` are both 0
    (a constant slice gives ``bias``, not NaN)."""
    sdt = mean.dtype
    var_eps = var + jnp.asarray(eps, sdt)
    if zero_var_inv_std:  # the inner where keeps rsqrt(0)'s infinite derivative out of the gradient
        zero = (var_eps == 0) & (eps == 0)
        mul = jnp.where(zero, 0, lax.rsqrt(jnp.where(zero, 1, var_eps)))
    else:
        mul = lax.rsqrt(var_eps)
    if weight is not None:
        mul = mul * jnp.reshape(weight, param_shape).astype(sdt)
    y = (x.astype(sdt) - mean) * mul
    if bias is not None:
        y = y + jnp.reshape(bias, param_shape).astype(sdt)
    return y.astype(x.dtype)


def _channel_shape(ndim: int, channels: int, axis: int = 1) -> tuple[int, ...]:
    """``(1, C, 1, ..., 1)`` for an ``(N, C, *spatial)`` input of rank ``ndim`` (``C`` at ``axis``)."""
    return tuple(channels if i == axis % ndim else 1 for i in range(ndim))


def _check_vector(name: str, arg: str, v: Array | None, channels: int, x: Array) -> None:
    if v is not None and tuple(jnp.shape(v)) != (channels,):
        raise ValueError(
            f"{name}: {arg} must have shape ({channels},) for input of shape {shape_str(x)} "
            f"with {channels} channels, got shape {shape_str(jnp.shape(v))}"
        )


def _check_input(name: str, x: Array, rank: int, what: str) -> None:
    """At least ``rank`` dims and a floating dtype."""
    if jnp.ndim(x) < rank:
        raise ValueError(f"{name}: expected {what} input, got {jnp.ndim(x)}-D input of shape {shape_str(x)}")
    _check_floating(name, x)


def _check_floating(name: str, x: Array) -> None:
    """torch's norms have no integer kernels; the result cast back to int would be silently truncated."""
    if not jnp.issubdtype(jnp.result_type(x), jnp.inexact):
        raise TypeError(f"{name}: expected a floating-point input, got dtype {jnp.result_type(x)} "
                        f"(shape {shape_str(x)})")


def _update(running: Array, batch: Array, factor: Any) -> Array:
    """torch's running update: ``(1 − factor) · running + factor · batch``, blended in the
    statistics dtype (float32 for half buffers) and rounded once, as torch's float16 kernel
    (its contiguous bfloat16 kernel rounds every step to bfloat16: not reproduced)."""
    sdt = _stat_dtype(running.dtype)
    batch = jnp.reshape(batch, jnp.shape(running)).astype(sdt)
    return ((1 - factor) * running.astype(sdt) + factor * batch).astype(running.dtype)


def _momentum_factor(name: str, momentum: float | None, num_batches_tracked: Array | None):
    """The weight of the new batch and the new ``num_batches_tracked``.

    ``num_batches_tracked`` is incremented (when given); ``momentum=None`` gives
    the cumulative moving average ``1 / num_batches_tracked``, as torch's modules.
    """
    nbt = None if num_batches_tracked is None else num_batches_tracked + 1
    if momentum is not None:
        return momentum, nbt
    if nbt is None:
        raise ValueError(
            f"{name}: momentum=None (cumulative moving average) needs num_batches_tracked"
        )
    return 1.0 / nbt, nbt


def _device_count(axis_name: Any, axis_index_groups: Any) -> Any:
    if axis_name is None:
        return 1
    return lax.psum(1, axis_name, axis_index_groups=axis_index_groups)


def _check_stats_pair(name: str, running_mean: Any, running_var: Any) -> None:
    if (running_mean is None) != (running_var is None):
        raise ValueError(f"{name}: running_mean and running_var must both be given or both be None")


# --------------------------------------------------------------------------- normalise over axes


def _reference_norm(x, weight, bias, eps, axes, pshape):
    """``(y, mean, var)``: two-pass moments over ``axes``, then :func:`_normalize`."""
    mean, var = _moments(x, axes)
    return _normalize(x, mean, var, weight, bias, eps, pshape), mean, var


def _norm_over(x, weight, bias, eps, axes, pshape):
    """``(y, mean, var)`` of ``(x − mean) · rsqrt(var + eps) · weight + bias`` with the
    biased moments over ``axes``; ``weight``/``bias`` (or ``None``) reshape to ``pshape``.
    The reference is :func:`_reference_norm`; ``jaxlayers._lowering.norm`` may lower it."""
    return compiled(_fused_norm, (eps, tuple(axes), tuple(pshape)), x, weight, bias)


def _fused_norm(x, weight, bias, eps, axes, pshape):
    return _lowering_norm.fused_norm(x, weight, bias, eps, axes, pshape, reference=_reference_norm)


def _multiply(y, weight):
    return y * weight


def _check_channel_args(name: str, x: Array, running_mean: Array | None, running_var: Array | None,
                        weight: Array | None, bias: Array | None, axis: int = 1) -> tuple[int, tuple]:
    """Check the per-channel vectors of batch/instance norm; return ``C`` (at ``axis``) and the broadcast shape."""
    _check_stats_pair(name, running_mean, running_var)
    c = x.shape[axis]
    for arg, v in (("running_mean", running_mean), ("running_var", running_var),
                   ("weight", weight), ("bias", bias)):
        _check_vector(name, arg, v, c, x)
    return c, _channel_shape(x.ndim, c, axis)


def _normalize_with_running(name: str, flag: str, x: Array, running_mean: Array | None, running_var: Array | None,
                            weight: Array | None, bias: Array | None, eps: float, pshape: tuple,
                            num_batches_tracked: Array | None) -> NormOutput:
    """Evaluation: normalise with the running statistics, which come back unchanged."""
    if running_mean is None:
        raise ValueError(f"{name}: running_mean and running_var are needed when {flag}=False")
    out = _normalize(x, jnp.reshape(running_mean, pshape).astype(_stat_dtype(x.dtype)),
                     jnp.reshape(running_var, pshape).astype(_stat_dtype(x.dtype)),
                     weight, bias, eps, pshape)
    return NormOutput(out, running_mean, running_var, num_batches_tracked)


# --------------------------------------------------------------------------- batch norm


def _batch_norm(
    input: Array,
    running_mean: Array | None,
    running_var: Array | None,
    weight: Array | None,
    bias: Array | None,
    training: bool,
    momentum: float | None,
    eps: float,
    *,
    num_batches_tracked: Array | None,
    axis_name: Any,
    axis_index_groups: Any,
    name: str,
    channel_axis: int = 1,
) -> NormOutput:
    x = input
    _check_input(name, x, 2, "(N, C) or (N, C, *spatial)")
    axis = channel_dim(name, channel_axis, x.ndim)
    c, pshape = _check_channel_args(name, x, running_mean, running_var, weight, bias, axis)
    if not training:
        return _normalize_with_running(name, "training", x, running_mean, running_var, weight, bias, eps,
                                       pshape, num_batches_tracked)

    if not eps > 0:
        raise ValueError(f"{name}: eps must be positive during training, got {eps}")
    per_device = x.size // c if c else 0
    if per_device == 1 and (axis_name is None or _device_count(axis_name, axis_index_groups) == 1):
        where = "" if axis_name is None else f" over the devices of axis {axis_name!r}"
        raise ValueError(
            f"{name}: expected more than 1 value per channel when training{where}, got input of shape "
            f"{shape_str(x)}"
        )
    if running_mean is not None:
        factor, nbt = _momentum_factor(name, momentum, num_batches_tracked)
    else:
        factor, nbt = None, num_batches_tracked
    if x.size == 0:  # torch: empty output, buffers unchanged (num_batches_tracked still counts)
        return NormOutput(x, running_mean, running_var, nbt)

    spatial = tuple(i for i in range(1, x.ndim) if i != axis)
    if axis_name is None:
        out, mean, var = _norm_over(x, weight, bias, eps, (0,) + spatial, pshape)
    else:
        inst_mean, inst_var = _moments(x, spatial)
        mean, var = _pool(inst_mean, inst_var, 0, axis_name, axis_index_groups)
        out = _normalize(x, mean, var, weight, bias, eps, pshape)
    if running_mean is None:
        return NormOutput(out, None, None, nbt)
    n = per_device * _device_count(axis_name, axis_index_groups)
    unbiased = var * (n / (n - 1))
    mean, unbiased = lax.stop_gradient(mean), lax.stop_gradient(unbiased)
    return NormOutput(out, _update(running_mean, mean, factor), _update(running_var, unbiased, factor), nbt)


@channels_last(native=True)
def batch_norm(
    input: Array,
    running_mean: Array | None,
    running_var: Array | None,
    weight: Array | None = None,
    bias: Array | None = None,
    training: bool = False,
    momentum: float | None = 0.1,
    eps: float = 1e-5,
    *,
    num_batches_tracked: Array | None = None,
    axis_name: Any = None,
    axis_index_groups: Any = None,
    channel_axis: int = 1,
) -> NormOutput:
    r"""Batch normalisation over ``(N, *spatial)`` per channel, as ``torch.nn.functional.batch_norm``.

    .. math:: y = \frac{x - \mathrm{E}[x]}{\sqrt{\mathrm{Var}[x] + \epsilon}} \cdot \text{weight} + \text{bias}

    In training the batch statistics are used (biased variance) and, when
    ``running_mean``/``running_var`` are given, the buffers are updated with
    ``new = (1 − momentum) · old + momentum · batch`` using the *unbiased*
    batch variance.  In evaluation the running statistics are used.

    Args:
      input: ``(N, C)`` or ``(N, C, *spatial)``.
      running_mean, running_var: ``(C,)`` buffers or ``None`` (no tracking; then
        ``training`` must be True).
      weight, bias: ``(C,)`` affine parameters or ``None``.
      training: use (and track) batch statistics.
      momentum: weight of the new batch; ``None`` means the cumulative moving
        average ``1 / num_batches_tracked`` (needs ``num_batches_tracked``).
      eps: added to the variance.
      num_batches_tracked: optional int counter, incremented in training.
      axis_name, axis_index_groups: reduce the batch statistics across a named
        device axis (``shard_map``/``pmap``), as in Flax; each device must hold
        the same number of samples.
      channel_axis: ``1`` (torch's ``(N, C, *spatial)``) or ``-1`` (``(N, *spatial, C)``,
        which channels-last mode passes; computed in place, no transpose).

    Returns:
      :class:`NormOutput` ``(output, running_mean, running_var,
      num_batches_tracked)``: the output (input's shape and dtype) and the
      buffers as torch would have left them.  Statistics are computed in at
      least float32 (two-pass variance); gradients do not flow into the buffers.

    Shape: ``(N, C, *) -> (N, C, *)``.
    """
    return _batch_norm(input, running_mean, running_var, weight, bias, training, momentum, eps,
                       num_batches_tracked=num_batches_tracked, axis_name=axis_name,
                       axis_index_groups=axis_index_groups, name="batch_norm", channel_axis=channel_axis)


# --------------------------------------------------------------------------- instance norm


@one_program
def _instance_norm(
    input: Array,
    running_mean: Array | None,
    running_var: Array | None,
    weight: Array | None,
    bias: Array | None,
    use_input_stats: bool,
    momentum: float,
    eps: float,
    *,
    num_batches_tracked: Array | None,
    axis_name: Any,
    axis_index_groups: Any,
    name: str,
    channel_axis: int = 1,
) -> NormOutput:
    x = input
    _check_input(name, x, 3, "(N, C, *spatial) with at least one spatial dim")
    if momentum is None:  # torch's instance_norm takes a float (its modules map None to 0 themselves)
        raise TypeError(f"{name}: momentum must be a float, got None")
    axis = channel_dim(name, channel_axis, x.ndim)
    c, pshape = _check_channel_args(name, x, running_mean, running_var, weight, bias, axis)
    if not use_input_stats:
        return _normalize_with_running(name, "use_input_stats", x, running_mean, running_var, weight, bias, eps,
                                       pshape, num_batches_tracked)
    spatial_axes = tuple(i for i in range(1, x.ndim) if i != axis)
    spatial = math.prod(x.shape[i] for i in spatial_axes)
    if spatial == 1:
        raise ValueError(
            f"{name}: expected more than 1 spatial element when training, got input of shape {shape_str(x)}"
        )
    if x.size == 0:
        return NormOutput(x, running_mean, running_var, num_batches_tracked)
    mean, var = _moments(x, spatial_axes)
    out = _normalize(x, mean, var, weight, bias, eps, pshape, zero_var_inv_std=True)
    if running_mean is None:
        return NormOutput(out, None, None, num_batches_tracked)

    def update(running, stat):
        """torch: each instance's update of the buffer (rounded to its dtype), averaged over the batch."""
        per_instance = jax.vmap(_update, (None, 0, None))(running, lax.stop_gradient(stat), momentum)
        avg = jnp.mean(per_instance.astype(stat.dtype), 0)
        if axis_name is not None:
            avg = lax.pmean(avg, axis_name, axis_index_groups=axis_index_groups)
        return avg.astype(running.dtype)

    return NormOutput(out, update(running_mean, mean), update(running_var, var * (spatial / (spatial - 1))),
                      num_batches_tracked)


@channels_last(native=True)
def instance_norm(
    input: Array,
    running_mean: Array | None = None,
    running_var: Array | None = None,
    weight: Array | None = None,
    bias: Array | None = None,
    use_input_stats: bool = True,
    momentum: float = 0.1,
    eps: float = 1e-5,
    *,
    num_batches_tracked: Array | None = None,
    axis_name: Any = None,
    axis_index_groups: Any = None,
    channel_axis: int = 1,
) -> NormOutput:
    r"""Instance normalisation per sample and channel, as ``torch.nn.functional.instance_norm``.

    Statistics over the spatial dims of each ``(n, c)``.  With
    ``use_input_stats`` and buffers given, the buffers are updated with the
    batch-average of the per-instance mean and unbiased variance
    (``new = (1 − momentum) · old + momentum · avg``), as torch does;
    ``num_batches_tracked`` is passed through unchanged (torch never increments it
    for instance norm).  Without ``use_input_stats`` the running statistics are used.

    Args:
      input: ``(N, C, *spatial)`` with at least one spatial dim.
      running_mean, running_var: ``(C,)`` buffers or ``None``.
      weight, bias: ``(C,)`` or ``None``.
      use_input_stats: normalise with the instance statistics.
      momentum, eps: as torch.
      axis_name, axis_index_groups: average the buffer update across devices.
      channel_axis: ``1`` or ``-1`` (``(N, *spatial, C)``, what channels-last mode passes).

    Returns:
      :class:`NormOutput` ``(output, running_mean, running_var, num_batches_tracked)``.

    Shape: ``(N, C, *) -> (N, C, *)``.
    """
    return _instance_norm(input, running_mean, running_var, weight, bias, use_input_stats, momentum, eps,
                          num_batches_tracked=num_batches_tracked, axis_name=axis_name,
                          axis_index_groups=axis_index_groups, name="instance_norm", channel_axis=channel_axis)


# --------------------------------------------------------------------------- layer / group / rms


def _normalized_shape(name: str, normalized_shape: Any) -> tuple[int, ...]:
    """An int or a sequence of ints; a float or bool entry is a TypeError, as torch's (``int()`` truncated it)."""
    if _is_int(normalized_shape):
        return (int(normalized_shape),)
    try:
        shape = tuple(operator.index(s) for s in normalized_shape)
    except TypeError:
        shape = None
    if shape is None or any(isinstance(s, bool) for s in normalized_shape):
        raise TypeError(f"{name}: normalized_shape must be an int or a sequence of ints, got {normalized_shape!r}")
    if not shape:
        raise ValueError(f"{name}: normalized_shape must not be empty")
    return shape


def _check_trailing(name: str, x: Array, shape: tuple[int, ...]) -> None:
    _check_floating(name, x)
    k = len(shape)
    if jnp.ndim(x) < k or tuple(jnp.shape(x)[jnp.ndim(x) - k:]) != shape:
        raise ValueError(
            f"{name}: normalized_shape={shape} does not match the trailing dims of input of "
            f"shape {shape_str(x)} (expected input of shape (*, {', '.join(map(str, shape))}))"
        )


def _check_param(name: str, arg: str, v: Array | None, shape: tuple[int, ...]) -> None:
    if v is not None and tuple(jnp.shape(v)) != shape:
        raise ValueError(f"{name}: {arg} must have shape {shape_str(shape)}, got shape {shape_str(jnp.shape(v))}")


def _layer_norm(input, normalized_shape, weight, bias, eps, *, name):
    shape = _normalized_shape(name, normalized_shape)
    _check_trailing(name, input, shape)
    _check_param(name, "weight", weight, shape)
    _check_param(name, "bias", bias, shape)
    axes = tuple(range(input.ndim - len(shape), input.ndim))
    return _norm_over(input, weight, bias, eps, axes, shape)[0]


def layer_norm(
    input: Array,
    normalized_shape: int | Sequence[int],
    weight: Array | None = None,
    bias: Array | None = None,
    eps: float = 1e-5,
) -> Array:
    r"""Layer normalisation over the trailing ``normalized_shape`` dims, as
    ``torch.nn.functional.layer_norm``.

    .. math:: y = \frac{x - \mathrm{E}[x]}{\sqrt{\mathrm{Var}[x] + \epsilon}} \cdot \text{weight} + \text{bias}

    Args:
      input: ``(*, *normalized_shape)``.
      normalized_shape: int or tuple: the trailing dims to normalise over.
      weight, bias: of shape ``normalized_shape`` or ``None``.
      eps: added to the (biased) variance.

    Shape: unchanged.
    """
    return _layer_norm(input, normalized_shape, weight, bias, eps, name="layer_norm")


def _group_norm(input, num_groups, weight, bias, eps, *, name, channel_axis=1):
    x = input
    _check_input(name, x, 2, "(N, C, *)")
    last = channel_dim(name, channel_axis, x.ndim) == x.ndim - 1 and x.ndim > 2  # (N, *spatial, C)
    n, c = x.shape[0], x.shape[-1 if last else 1]
    if num_groups <= 0 or c % num_groups:
        raise ValueError(
            f"{name}: num_channels={c} must be divisible by num_groups={num_groups} "
            f"(input of shape {shape_str(x)})"
        )
    _check_vector(name, "weight", weight, c, x)
    _check_vector(name, "bias", bias, c, x)
    g = num_groups
    if last:
        return _group_norm_channels_last(x, g, weight, bias, eps)
    # (N, G, C/G, S): moments over (C/G, S), weight/bias per (G, C/G)
    shape, pshape = (n, g, c // g, math.prod(x.shape[2:])), (1, g, c // g, 1)
    out = _norm_over(reshape(x, shape), weight, bias, eps, (2, 3), pshape)[0]
    return reshape(out, x.shape)


def _group_norm_channels_last(x, g, weight, bias, eps):
    """Group norm of ``(N, *spatial, C)`` in place: the two-pass moments as per-channel
    means over the positions (``(N, S, C) -> (N, C)``), then means over each group's
    channels.  The same statistics as one reduction over the grouped axes ``(S, C/G)``
    of ``(N, S, G, C/G)``, which XLA:CPU runs 2-3x slower (32x32x32x64, GroupNorm(8),
    one interleaved run: forward 3.8 -> 1.5 ms, forward+backward 7.5 -> 4.5 ms;
    flax.linen 3.4 / 4.8 ms)."""
    n, c = x.shape[0], x.shape[-1]
    rows = reshape(x, (n, math.prod(x.shape[1:-1]), c))

    def group_mean(v):  # (N, S, C) -> (N, 1, C): the mean over each channel's group
        per_group = jnp.mean(reshape(jnp.mean(v, 1), (n, g, c // g)), 2, keepdims=True)
        return reshape(jnp.broadcast_to(per_group, (n, g, c // g)), (n, 1, c))

    mean = group_mean(rows.astype(_stat_dtype(x.dtype)))
    var = group_mean(jnp.square(rows.astype(mean.dtype) - mean))
    return reshape(_normalize(rows, mean, var, weight, bias, eps, (1, 1, c)), x.shape)


@channels_last(native=True)
def group_norm(
    input: Array,
    num_groups: int,
    weight: Array | None = None,
    bias: Array | None = None,
    eps: float = 1e-5,
    *,
    channel_axis: int = 1,
) -> Array:
    r"""Group normalisation, as ``torch.nn.functional.group_norm``.

    The ``C`` channels are split into ``num_groups`` groups; each sample's group
    (its channels and all spatial positions) is normalised with its own mean and
    biased variance, then the per-channel ``weight``/``bias`` are applied.

    Args:
      input: ``(N, C, *)``; ``C`` divisible by ``num_groups``.
      num_groups: number of groups.
      weight, bias: ``(C,)`` or ``None``.
      eps: added to the variance.
      channel_axis: ``1`` (``(N, C, *)``) or ``-1`` (``(N, *spatial, C)``, what channels-last mode passes).

    Shape: unchanged.
    """
    return _group_norm(input, num_groups, weight, bias, eps, name="group_norm", channel_axis=channel_axis)


@one_program
def _rms_norm(input, normalized_shape, weight, eps, *, name):
    shape = _normalized_shape(name, normalized_shape)
    _check_trailing(name, input, shape)
    _check_param(name, "weight", weight, shape)
    sdt = _stat_dtype(input.dtype)
    if eps is None:
        eps = float(jnp.finfo(sdt).eps)
    axes = tuple(range(input.ndim - len(shape), input.ndim))
    x = input.astype(sdt)
    y = x * lax.rsqrt(jnp.mean(jnp.square(x), axes, keepdims=True) + jnp.asarray(eps, sdt))
    if weight is not None:
        y = _lowering_norm.scale_trailing(y, weight.astype(sdt), reference=_multiply)
    return y.astype(input.dtype)


def rms_norm(
    input: Array,
    normalized_shape: int | Sequence[int],
    weight: Array | None = None,
    eps: float | None = None,
) -> Array:
    r"""Root-mean-square normalisation, as ``torch.nn.functional.rms_norm``.

    .. math:: y = \frac{x}{\sqrt{\mathrm{E}[x^2] + \epsilon}} \cdot \text{weight}

    over the trailing ``normalized_shape`` dims.  ``eps=None`` means the machine
    epsilon of the computation dtype (float32 for bfloat16/float16 inputs, as
    torch's ``opmath`` type; float64 for float64 inputs).

    Shape: unchanged.
    """
    return _rms_norm(input, normalized_shape, weight, eps, name="rms_norm")


def _local_response_norm(input, size, alpha, beta, k, *, name):
    x = input
    _check_input(name, x, 3, "3-D or higher (N, C, *)")
    if not _is_int(size):  # torch: pad() needs ints (a float size was truncated)
        raise TypeError(f"{name}: size must be an int, got {size!r}")
    if int(size) < 1:
        raise ValueError(f"{name}: size must be >= 1, got {size}")
    size = int(size)
    sdt = _stat_dtype(x.dtype)
    sq = jnp.square(x.astype(sdt))
    pad = [(0, 0)] * x.ndim
    pad[1] = (size // 2, (size - 1) // 2)
    window = (1, size) + (1,) * (x.ndim - 2)
    summed = lax.reduce_window(sq, 0.0, lax.add, window, (1,) * x.ndim, pad)  # a literal 0: JAX's differentiable window sum
    div = jnp.power(summed * (alpha / size) + k, beta)
    return (x.astype(sdt) / div).astype(x.dtype)


@channels_last
def local_response_norm(
    input: Array,
    size: int,
    alpha: float = 1e-4,
    beta: float = 0.75,
    k: float = 1.0,
) -> Array:
    r"""Local response normalisation across channels, as ``torch.nn.functional.local_response_norm``.

    .. math:: b_c = a_c \left(k + \frac{\alpha}{n} \sum_{c'=c-\lfloor n/2 \rfloor}^{c+\lceil n/2 \rceil - 1} a_{c'}^2\right)^{-\beta}

    with zero padding past the channel ends (the sum is always divided by ``n = size``).

    Shape: ``(N, C, *) -> (N, C, *)``, at least 3-D.
    """
    return _local_response_norm(input, size, alpha, beta, k, name="local_response_norm")


# --------------------------------------------------------------------------- switchable norm

_SWITCH_VARIANCES = ("unbiased", "biased")


def _check_channel_sized(name: str, arg: str, v: Array | None, channels: int, x: Array) -> None:
    """``v`` holds one value per channel: ``(C,)`` or the reference's ``(1, C)``/``(1, C, 1)``/``(1, C, 1, 1)``."""
    if v is None:
        return
    shape = tuple(jnp.shape(v))
    if math.prod(shape) != channels or (shape and max(shape) != channels and channels != 1):
        raise ValueError(
            f"{name}: {arg} must hold {channels} values (shape ({channels},) or (1, {channels}, 1, ...)) for input "
            f"of shape {shape_str(x)}, got shape {shape_str(shape)}"
        )


def _switch_stats(x: Array, unbiased: bool, using_bn: bool, axis_name: Any, axis_index_groups: Any,
                  name: str) -> tuple[list[Array], list[Array], Array | None, Array | None]:
    """The reference's statistics as lists ``[means], [vars]`` plus the BN pair (or None).

    2-D ``(N, C)``: LN over C and BN over N (the reference's SwitchNorm1d).  N-d: IN over the
    spatial dims (unbiased with ``unbiased``), LN/BN pooled from the IN moments,
    ``var = mean(var_in + (mean_in − mean)²)`` (the reference's ``E[var_in + mean_in²] − mean²``).
    """
    if x.ndim == 2:
        n, c = x.shape
        mean_ln, var_ln = _moments(x, (1,))
        mean_bn, var_bn = _moments(x, (0,))
        if axis_name is not None:
            mean_bn, var_bn = _pool(mean_bn, var_bn, 0, axis_name, axis_index_groups)
        if unbiased:
            count = n * _device_count(axis_name, axis_index_groups)
            var_ln = var_ln * (c / (c - 1))
            var_bn = var_bn * (count / (count - 1))
        return [mean_ln], [var_ln], mean_bn, var_bn
    s = math.prod(x.shape[2:])
    mean_in, var_in = _moments(x, range(2, x.ndim))  # (N, C, 1...)
    if unbiased:
        var_in = var_in * (s / (s - 1))
    mean_ln, var_ln = _pool(mean_in, var_in, 1)  # (N, 1, 1...)
    mean_bn = var_bn = None
    if using_bn:
        mean_bn, var_bn = _pool(mean_in, var_in, 0, axis_name, axis_index_groups)  # (1, C, 1...)
    return [mean_in, mean_ln], [var_in, var_ln], mean_bn, var_bn


@one_program  # its checks read only shapes: one program when called eagerly (op by op: 31)
def _switch_norm(
    input: Array,
    running_mean: Array | None,
    running_var: Array | None,
    weight: Array | None,
    bias: Array | None,
    mean_weight: Array | None,
    var_weight: Array | None,
    training: bool,
    momentum: float,
    eps: float,
    *,
    using_bn: bool,
    using_moving_average: bool,
    variance: str,
    num_batches_tracked: Array | None,
    axis_name: Any,
    axis_index_groups: Any,
    name: str,
) -> NormOutput:
    x = input
    if variance not in _SWITCH_VARIANCES:
        raise ValueError(f"{name}: variance must be one of {_SWITCH_VARIANCES}, got {variance!r}")
    _check_input(name, x, 2, "(N, C) or (N, C, *spatial)")
    _check_stats_pair(name, running_mean, running_var)
    c = x.shape[1]
    flat = x.ndim == 2
    using_bn = using_bn or flat
    for arg, v in (("running_mean", running_mean), ("running_var", running_var), ("weight", weight),
                   ("bias", bias)):
        _check_channel_sized(name, arg, v, c, x)
    k = 2 if flat or not using_bn else 3
    mean_weight = jnp.zeros((k,)) if mean_weight is None else mean_weight
    var_weight = jnp.zeros((k,)) if var_weight is None else var_weight
    _check_param(name, "mean_weight", mean_weight, (k,))
    _check_param(name, "var_weight", var_weight, (k,))
    unbiased = variance == "unbiased"
    if flat and unbiased and c == 1:
        raise ValueError(f"{name}: expected more than 1 channel for the unbiased layer variance of (N, C) input, "
                         f"got input of shape {shape_str(x)}")
    if x.size == 0:
        raise ValueError(f"{name}: expected a non-empty input, got input of shape {shape_str(x)}")
    if not flat and math.prod(x.shape[2:]) == 1:
        raise ValueError(
            f"{name}: expected more than 1 spatial element (instance statistics), got input of shape {shape_str(x)}"
        )
    track = using_bn and running_mean is not None
    use_batch = training or not track
    if flat and use_batch and x.shape[0] == 1 and axis_name is None:
        raise ValueError(
            f"{name}: expected more than 1 value per channel when training, got input of shape {shape_str(x)}"
        )
    sdt = _stat_dtype(x.dtype)
    means, variances, mean_bn, var_bn = _switch_stats(x, unbiased, using_bn, axis_name if use_batch else None,
                                                      axis_index_groups, name)
    new_mean, new_var, nbt = running_mean, running_var, num_batches_tracked
    stat_shape = (1, c) + (1,) * (x.ndim - 2)
    if using_bn and not use_batch:
        mean_bn = jnp.reshape(running_mean, stat_shape).astype(sdt)
        var_bn = jnp.reshape(running_var, stat_shape).astype(sdt)
    elif training and track:
        bm, bv = lax.stop_gradient(mean_bn), lax.stop_gradient(var_bn)
        rm, rv = running_mean, running_var
        if using_moving_average:  # the reference: momentum weighs the old value
            new_mean = momentum * rm + (1 - momentum) * jnp.reshape(bm, rm.shape)
            new_var = momentum * rv + (1 - momentum) * jnp.reshape(bv, rv.shape)
        else:  # the reference's running sums (of E[x] and E[x²])
            new_mean = rm + jnp.reshape(bm, rm.shape)
            new_var = rv + jnp.reshape(jnp.square(bm) + bv, rv.shape)
        new_mean, new_var = new_mean.astype(rm.dtype), new_var.astype(rv.dtype)
        nbt = None if num_batches_tracked is None else num_batches_tracked + 1
    if using_bn:
        means, variances = means + [mean_bn], variances + [var_bn]
    mw = jax.nn.softmax(mean_weight.astype(sdt))
    vw = jax.nn.softmax(var_weight.astype(sdt))
    mean = sum(mw[i] * m for i, m in enumerate(means))
    var = sum(vw[i] * v for i, v in enumerate(variances))
    out = _normalize(x, mean, var, weight, bias, eps, stat_shape)
    return NormOutput(out, new_mean, new_var, nbt)


@channels_last
def switch_norm(
    input: Array,
    running_mean: Array | None,
    running_var: Array | None,
    weight: Array | None = None,
    bias: Array | None = None,
    mean_weight: Array | None = None,
    var_weight: Array | None = None,
    training: bool = False,
    momentum: float = 0.9,
    eps: float = 1e-5,
    *,
    using_bn: bool = True,
    using_moving_average: bool = True,
    variance: str = "unbiased",
    num_batches_tracked: Array | None = None,
    axis_name: Any = None,
    axis_index_groups: Any = None,
) -> NormOutput:
    r"""Switchable normalisation (Luo et al. 2018) as the authors' reference implementation
    (github.com/switchablenorms/Switchable-Normalization, ``devkit/ops/switchable_norm.py``);
    no torch equivalent.

    For ``x`` of shape ``(N, C, *spatial)`` (S spatial positions) with instance (IN), layer (LN) and
    batch (BN) statistics

    .. math::
        \mu_{in} = \mathrm{E}_{s}[x],\ \sigma^2_{in} = 	frac{S}{S-1}\mathrm{Var}_{s}[x],\quad
        \mu_{ln} = \mathrm{E}_c[\mu_{in}],\ \sigma^2_{ln} = \mathrm{E}_c[\sigma^2_{in} + \mu_{in}^2] - \mu_{ln}^2,\quad
        \mu_{bn} = \mathrm{E}_n[\mu_{in}],\ \sigma^2_{bn} = \mathrm{E}_n[\sigma^2_{in} + \mu_{in}^2] - \mu_{bn}^2

    (the reference's unbiased instance variance; ``variance="biased"`` drops the ``S/(S−1)``, so
    that one-hot logits give exactly IN, LN and BN), the output is

    .. math::
        y = rac{x - \sum_k w_k \mu_k}{\sqrt{\sum_k w'_k \sigma^2_k + \epsilon}} \cdot 	ext{weight} + 	ext{bias},
        \quad w = \mathrm{softmax}(	ext{mean\_weight}),\ w' = \mathrm{softmax}(	ext{var\_weight})

    with ``k`` over (IN, LN, BN), or (IN, LN) with ``using_bn=False``.  A 2-D ``(N, C)`` input is
    the reference's SwitchNorm1d: LN over ``C`` and BN over ``N`` only (unbiased variances), two
    logits (LN, BN).  Variances are computed two-pass / pooled (stable for large offsets).

    In training the BN statistics come from the batch (over the devices of ``axis_name``) and the
    buffers are updated as the reference: ``running = momentum · running + (1 − momentum) · batch``
    (``momentum`` weighs the *old* value), or, with ``using_moving_average=False``, the running sums
    ``running_mean += μ_bn``, ``running_var += μ_bn² + σ²_bn``.  In evaluation the buffers replace
    the BN statistics (batch statistics when none are given).

    Args:
      input: ``(N, C)`` or ``(N, C, *spatial)`` with more than one spatial element.
      running_mean, running_var: ``C`` values each (``(C,)``, or the reference's ``(1, C)`` /
        ``(1, C, 1)``; returned in the shape given), or ``None``.
      weight, bias: ``C`` values each (any such shape) or ``None``.
      mean_weight, var_weight: ``(3,)`` logits (IN, LN, BN), ``(2,)`` for (IN, LN) with
        ``using_bn=False`` or (LN, BN) for 2-D input; ``None`` = equal weights.
      training: batch statistics and buffer updates.
      momentum: weight of the old running value (reference: 0.9 in 2-d, 0.997 in 1-d/3-d).
      eps: added to the mixed variance.
      using_bn: mix BN statistics (N-d input).
      using_moving_average: exponential averages, or running sums (see above).
      variance: ``"unbiased"`` (the reference) or ``"biased"`` (every variance biased).
      num_batches_tracked: optional step counter, incremented when buffers are updated.
      axis_name, axis_index_groups: named device axis for the BN statistics (``shard_map``/``pmap``).

    Returns:
      :class:`NormOutput` ``(output, running_mean, running_var, num_batches_tracked)``.

    Shape: ``(N, C, *) -> (N, C, *)``.

    Example:
      >>> import jax.numpy as jnp
      >>> from jaxlayers import functional as F
      >>> x = jnp.arange(16.0).reshape(2, 2, 4)
      >>> out = F.switch_norm(x, jnp.zeros(2), jnp.ones(2), training=True)
      >>> out.output.shape, [round(float(m), 2) for m in out.running_mean]
      ((2, 2, 4), [0.55, 0.95])
    """
    return _switch_norm(input, running_mean, running_var, weight, bias, mean_weight, var_weight, training,
                        momentum, eps, using_bn=using_bn, using_moving_average=using_moving_average,
                        variance=variance, num_batches_tracked=num_batches_tracked, axis_name=axis_name,
                        axis_index_groups=axis_index_groups, name="switch_norm")
