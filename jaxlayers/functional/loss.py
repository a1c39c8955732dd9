"""Loss functions with ``torch.nn.functional``'s names, signatures and numerics.

Every loss is a private implementation ``_<loss>(..., reduction, name)`` that the public
function (torch's signature, legacy ``size_average``/``reduce`` included) and the
``jaxlayers.nn`` module both call, so arguments are parsed once and errors name the caller.

Shared pieces:

* :func:`_legacy_reduction` — torch's ``_Reduction.legacy_get_string``: ``size_average`` and
  ``reduce`` map to a reduction (both ``None`` or ``True``: ``'mean'``; ``reduce`` only: ``'sum'``;
  ``reduce=False``: ``'none'``) with a :class:`LegacyReductionWarning`.
* :func:`_reduce` — ``'none'`` / ``'sum'`` / ``'mean'``; a weighted mean is ``sum(loss) / weight_sum``.
  A mean over nothing is NaN, as in torch.
* Half-precision inputs (bfloat16, float16) are computed in float32 and the result is cast back
  to the input dtype (torch returns the input dtype too).
* Class-index targets are checked eagerly when they are concrete (``IndexError`` naming the loss,
  the index and the number of classes).  Under ``jit`` the values are unknown: an out-of-range
  index that is not ``ignore_index`` gives a NaN loss (and NaN means), never another class's loss.
* Hinges follow torch's derivative at the kink: ``clamp_min(z, 0)`` passes the gradient at
  ``z == 0`` (margin ranking, hinge embedding, cosine embedding, triplet losses), the
  ``if (z > 0)`` loops of the multi-class margin losses do not; ``l1``'s derivative at 0 is 0.
"""

from __future__ import annotations

import math
import warnings
from typing import Any, Callable

import jax
import jax.numpy as jnp
from jax import lax
import numpy as np

from .._memory_format import channels_last
from . import distance as _distance
from .._utils import (abs_sign_grad, batch_sharding, clamp_min, clamp_min_straight_through, compiled, compute_dtype,
                      concrete, explicit_sharding, one_program, shape_str, take_along)

__all__ = [
    "LegacyReductionWarning",
    "cross_entropy",
    "nll_loss",
    "binary_cross_entropy",
    "binary_cross_entropy_with_logits",
    "multilabel_soft_margin_loss",
    "multilabel_margin_loss",
    "multi_margin_loss",
    "soft_margin_loss",
    "l1_loss",
    "mse_loss",
    "huber_loss",
    "smooth_l1_loss",
    "kl_div",
    "poisson_nll_loss",
    "gaussian_nll_loss",
    "margin_ranking_loss",
    "hinge_embedding_loss",
    "cosine_embedding_loss",
    "triplet_margin_loss",
    "triplet_margin_with_distance_loss",
    "ctc_loss",
]

REDUCTIONS = ("none", "mean", "sum")


class LegacyReductionWarning(DeprecationWarning, UserWarning):
    """``size_average`` / ``reduce`` given: torch's "will be deprecated" warning (a UserWarning in
    torch, a DeprecationWarning as well here)."""


# --------------------------------------------------------------------------- shared helpers


def _legacy_reduction(size_average: Any, reduce: Any, reduction: str, name: str,
                      allowed: tuple[str, ...] = REDUCTIONS, warn: bool = True) -> str:
    """torch's ``_Reduction.legacy_get_string`` plus a check of ``reduction``."""
    if size_average is not None or reduce is not None:
        size_average = True if size_average is None else size_average
        reduce = True if reduce is None else reduce
        reduction = "mean" if (size_average and reduce) else ("sum" if reduce else "none")
        if warn:
            warnings.warn(f"{name}: size_average and reduce args will be deprecated, please use "
                          f"reduction='{reduction}' instead.", LegacyReductionWarning, stacklevel=3)
    if reduction not in allowed:
        raise ValueError(f"{name}: {reduction!r} is not a valid value for reduction; expected one of {allowed}")
    return reduction


def _reduce(loss: jax.Array, reduction: str, weight_sum: Any = None) -> jax.Array:
    """``'none'``: ``loss``; ``'sum'``: its sum; ``'mean'``: ``sum / weight_sum`` (default: the count)."""
    if reduction == "none":
        return loss
    if reduction == "sum":
        return jnp.sum(loss)
    if weight_sum is None:
        return jnp.mean(loss)
    return jnp.sum(loss) / weight_sum


def _floats(*arrays: Any) -> tuple[Any, list]:
    """``(out_dtype, arrays)``: the float arrays promoted together, half precision computed in
    float32; ``out_dtype`` is the promoted input dtype the result is cast back to."""
    arrs = [None if a is None else jnp.asarray(a) for a in arrays]
    dts = [a.dtype for a in arrs if a is not None and jnp.issubdtype(a.dtype, jnp.floating)]
    out = jnp.result_type(*dts) if dts else jnp.result_type(float)
    comp = jnp.float32 if jnp.finfo(out).bits < 32 else out
    return out, [None if a is None else a.astype(comp) for a in arrs]


def _check_same_shape(name: str, input: jax.Array, target: jax.Array, what: str = "target") -> None:
    if input.shape != target.shape:
        raise ValueError(f"{name}: expected {what} of the input's shape {shape_str(input)}, got {shape_str(target)}")


def _broadcast_warn(name: str, input: jax.Array, target: jax.Array) -> tuple[jax.Array, jax.Array]:
    """torch's pointwise regression losses: warn on a target of another size, then broadcast."""
    if input.shape != target.shape:
        warnings.warn(f"{name}: Using a target size ({shape_str(target)}) that is different to the input size "
                      f"({shape_str(input)}). This will likely lead to incorrect results due to broadcasting. "
                      "Please ensure they have the same size.", UserWarning, stacklevel=4)
    _check_broadcast(name, input, target)
    return tuple(jnp.broadcast_arrays(input, target))


def _elementwise_weight(name: str, weight: Any, input: jax.Array) -> jax.Array | None:
    if weight is None:
        return None
    weight = jnp.asarray(weight)
    if weight.shape != input.shape:
        raise ValueError(f"{name}: weight and input must have the same size, got weight {shape_str(weight)} "
                         f"and input {shape_str(input)}")
    return weight


def _class_weight(name: str, weight: Any, num_classes: int) -> jax.Array | None:
    if weight is None:
        return None
    weight = jnp.asarray(weight)
    if weight.shape != (num_classes,):
        raise ValueError(f"{name}: weight must be defined for all {num_classes} classes (shape ({num_classes},)) "
                         f"or None, got shape {shape_str(weight)}")
    return weight


def _check_index_target(name: str, target: jax.Array, num_classes: int, ignore_index: Any = None,
                        what: str = "target") -> None:
    """Integer dtype, and every concrete index in ``[0, num_classes)`` unless it is ``ignore_index``."""
    if not jnp.issubdtype(target.dtype, jnp.integer):
        raise TypeError(f"{name}: expected {what} of class indices with an integer dtype, got {target.dtype} "
                        f"(shape {shape_str(target)})")
    t = concrete(target)
    if t is None or t.size == 0:
        return
    bad = (t < 0) | (t >= num_classes)
    if ignore_index is not None:
        bad &= t != ignore_index
    if bad.any():
        raise IndexError(f"{name}: {what} index {int(t[bad].flat[0])} is out of range for {num_classes} classes "
                         f"(expected values in [0, {num_classes - 1}]"
                         + (f" or ignore_index={ignore_index})" if ignore_index is not None else ")"))


def _pick(values: jax.Array, index: jax.Array, axis: int, num_classes: int) -> tuple[jax.Array, jax.Array]:
    """``values`` at ``index`` along ``axis`` and whether the index was in range (clipped gather)."""
    valid = (index >= 0) & (index < num_classes)
    safe = jnp.where(valid, index, 0)
    picked = take_along(values, jnp.expand_dims(safe, axis), axis, mode="promise_in_bounds")
    return jnp.squeeze(picked, axis), valid


def _hinge_gt(z: jax.Array) -> jax.Array:
    """``z if z > 0 else 0`` with derivative 0 at ``z == 0`` (torch's margin-loss loops)."""
    return jnp.where(z > 0, z, jnp.zeros_like(z))


# --------------------------------------------------------------------------- class-index losses


def _class_layout(name: str, input: jax.Array, target: jax.Array, probs_allowed: bool) -> tuple[bool, bool]:
    """``(batched, probabilities)`` for ``(N, C, d1, ...)`` / ``(C,)`` inputs; checks target shape/dtype."""
    if input.ndim < 1:
        raise ValueError(f"{name}: expected input of shape (C,), (N, C) or (N, C, d1, ...), got 0-D input")
    batched = input.ndim >= 2
    probs = probs_allowed and target.shape == input.shape
    if probs:
        if not jnp.issubdtype(target.dtype, jnp.floating):
            raise TypeError(f"{name}: a target of the input's shape {shape_str(input)} holds class probabilities "
                            f"and must be floating point, got {target.dtype}")
        return batched, True
    expected = (input.shape[0],) + input.shape[2:] if batched else ()
    if target.shape != expected and not (not batched and target.shape == (1,)):  # torch takes (1,) for (C,)
        extra = f" or class probabilities of shape {shape_str(input)}" if probs_allowed else ""
        raise ValueError(f"{name}: expected target of class indices of shape {shape_str(expected)}{extra} for input "
                         f"of shape {shape_str(input)}, got target of shape {shape_str(target)}")
    if not jnp.issubdtype(target.dtype, jnp.integer):
        raise TypeError(f"{name}: expected target of class indices with an integer dtype for input of shape "
                        f"{shape_str(input)} and target of shape {shape_str(target)}, got {target.dtype} "
                        "(class probabilities need a target of the input's shape)")
    return batched, False


def _ignored(target: jax.Array, ignore_index: int) -> jax.Array:
    """``target == ignore_index`` by value: an ``ignore_index`` outside the target's integer dtype
    matches nothing (in JAX ``uint8 == -100`` compares with 156, silently ignoring class 156)."""
    info = jnp.iinfo(target.dtype)
    if not info.min <= ignore_index <= info.max:
        return jnp.zeros(target.shape, bool)
    return target == ignore_index


def _class_weights(weight: jax.Array, target: jax.Array) -> jax.Array:
    """``weight[target]``; over a mesh of ``Explicit`` axes with the target sharded (its batch), sharded alike."""
    sharding = explicit_sharding(target)
    return weight[target] if sharding is None else weight.at[target].get(out_sharding=sharding)


def _nll_terms(scores: jax.Array, target: jax.Array, weight: Any, ignore_index: int,
               lse: Any = 0.0) -> tuple[jax.Array, jax.Array]:
    """Per-element ``-w[y] * (scores[y] - lse)`` (class axis 1) and ``w[y]``; 0 for ``ignore_index``,
    NaN out of range."""
    num_classes = scores.shape[1]
    picked, valid = _pick(scores, target, 1, num_classes)
    picked = picked - lse
    w = jnp.ones_like(picked) if weight is None else _class_weights(weight.astype(scores.dtype),
                                                                  jnp.where(valid, target, 0))
    ignored = _ignored(target, ignore_index)
    w = jnp.where(ignored, 0.0, jnp.where(valid, w, jnp.nan))
    loss = jnp.where(ignored, 0.0, -w * picked)
    return loss, w


def _class_broadcast(weight: jax.Array, ndim: int) -> jax.Array:
    return weight.reshape((1, -1) + (1,) * (ndim - 2))


def _check_label_smoothing(name: str, label_smoothing: float) -> None:
    if not label_smoothing <= 1.0:  # a negative value means no smoothing, as in torch's functions
        raise ValueError(f"{name}: label_smoothing must be at most 1.0, got {label_smoothing}")


def _shifted_logits(x: jax.Array, axis: int) -> tuple[jax.Array, jax.Array]:
    """``(x - m, log(sum(exp(x - m))))`` over ``axis`` with ``m`` the (finite) max, as torch's
    log_softmax: ``log_softmax(x) = (x - m) - lse`` never adds ``m`` back, so a large common
    offset of the logits costs no precision.  The shift carries no gradient (the loss does not
    depend on it); with no classes the sum is 0 and ``lse`` is taken as 0."""
    if x.shape[axis] == 0:
        return x, jnp.zeros(x.shape[:axis] + x.shape[axis + 1:], x.dtype)
    m = jax.lax.stop_gradient(jnp.max(x, axis=axis, keepdims=True))
    xs = x - jnp.where(m == -jnp.inf, 0.0, m)  # a +inf or NaN max gives NaN everywhere, as torch
    return xs, jnp.log(jnp.sum(jnp.exp(xs), axis=axis))


def _cross_entropy(input: Any, target: Any, weight: Any, ignore_index: int, reduction: str,
                   label_smoothing: float, name: str, log_probs: bool = False) -> jax.Array:
    """Cross entropy (``log_probs=False``) or NLL (``log_probs=True``) over class axis 1."""
    out_dtype, (x,) = _floats(input)
    t = jnp.asarray(target)
    batched, probs = _class_layout(name, x, t, probs_allowed=not log_probs)
    if probs:  # the result's dtype promotes with the target's, as torch's (bfloat16 logits, float32 target)
        out_dtype = jnp.result_type(out_dtype, t.dtype)
        x = x.astype(jnp.result_type(x.dtype, compute_dtype(out_dtype)))
    _check_label_smoothing(name, label_smoothing)
    num_classes = x.shape[1] if batched else x.shape[0]
    w = _class_weight(name, weight, num_classes)
    if probs and ignore_index >= 0:
        raise ValueError(f"{name}: ignore_index={ignore_index} is not supported for a target of class "
                         f"probabilities (shape {shape_str(t)}); only index targets can be ignored")
    if not probs:
        _check_index_target(name, t, num_classes, ignore_index)
    # one program per shape and options when called outside jit (op by op it compiled ~25)
    static = (ignore_index, reduction, label_smoothing, log_probs, probs, batched, np.dtype(out_dtype))
    return compiled(_cross_entropy_terms, static, x, t, w)


def _cross_entropy_terms(x: jax.Array, t: jax.Array, w: jax.Array | None, ignore_index: int, reduction: str,
                         label_smoothing: float, log_probs: bool, probs: bool, batched: bool,
                         out_dtype: Any) -> jax.Array:
    """:func:`_cross_entropy`'s arithmetic on checked arrays."""
    if not batched:
        x, t = x[None], t[None] if probs or t.ndim == 0 else t  # a (1,) index target is batch-shaped
    num_classes = x.shape[1]
    # log_softmax(x)[c] = xs[c] - lse (xs: the max-shifted logits) is never materialised: sums over
    # classes of a * logp are sum(a * xs) - lse * sum(a), and the index path gathers xs[y] - lse
    x, lse = (x, 0.0) if log_probs else _shifted_logits(x, axis=1)
    wb = None if w is None else _class_broadcast(w.astype(x.dtype), x.ndim)

    def class_sum(a: Any) -> jax.Array:  # sum_c a_c * logp_c
        if a is None:
            return jnp.sum(x, axis=1) - lse * num_classes
        return jnp.sum(a * x, axis=1) - lse * jnp.sum(jnp.broadcast_to(a, x.shape), axis=1)

    if probs:
        t = t.astype(x.dtype)
        if label_smoothing > 0:
            t = t * (1 - label_smoothing) + label_smoothing / num_classes
        loss = -class_sum(t if wb is None else t * wb)
        weight_sum = None
    else:
        loss, wy = _nll_terms(x, t, w, ignore_index, lse)
        weight_sum = jnp.sum(wy)
        if label_smoothing > 0:  # reduced apart, as torch: all-zero weights give NaN, not inf
            smooth = jnp.where(_ignored(t, ignore_index), 0.0, -class_sum(wb))
            parts = [(1 - label_smoothing, loss), (label_smoothing / num_classes, smooth)]
            return sum(c * _reduce(v if batched else v[0], reduction, weight_sum) for c, v in parts).astype(out_dtype)
    if not batched:
        loss = loss[0]
    if probs and num_classes == 0 and reduction == "mean":  # torch divides by numel / C = 0 / 0
        return jnp.full((), jnp.nan, out_dtype)
    return _reduce(loss, reduction, weight_sum).astype(out_dtype)


@channels_last(moved=2)
def cross_entropy(input: Any, target: Any, weight: Any = None, size_average: Any = None, ignore_index: int = -100,
                  reduce: Any = None, reduction: str = "mean", label_smoothing: float = 0.0) -> jax.Array:
    """Cross entropy of logits, as ``torch.nn.functional.cross_entropy``.

    Args:
        input: logits ``(N, C)``, ``(N, C, d1, ..., dK)`` or unbatched ``(C,)``.
        target: class indices (integer, shape of ``input`` without dim 1) or class probabilities
            (floating point, the input's shape).
        weight: ``(C,)`` per-class weights or None.
        ignore_index: index target value that contributes neither loss nor weight (indices only).
        reduction: ``'none'`` | ``'mean'`` | ``'sum'``; with indices the mean is
            ``sum(w[y] * l) / sum(w[y])`` over targets that are not ignored (NaN if none);
            with probabilities it divides by ``N * d1 * ... * dK``.
        label_smoothing: ``eps`` <= 1: targets become ``(1 - eps) * target + eps / C`` (a negative
            ``eps`` smooths nothing, as in torch).
        size_average, reduce: legacy torch arguments (mapped to ``reduction``, with a warning).

    Shape: ``'none'``: ``(N, d1, ..., dK)`` (``()`` unbatched); otherwise a scalar.

    Under ``jit``, an index outside ``[0, C)`` that is not ``ignore_index`` gives NaN.

    Example:
        >>> import jax.numpy as jnp
        >>> from jaxlayers import functional as F
        >>> print(round(float(F.cross_entropy(jnp.array([[2.0, 0.0, 0.0]]), jnp.array([0]))), 4))
        0.2395
    """
    reduction = _legacy_reduction(size_average, reduce, reduction, "cross_entropy")
    return _cross_entropy(input, target, weight, ignore_index, reduction, label_smoothing, "cross_entropy")


@channels_last
def nll_loss(input: Any, target: Any, weight: Any = None, size_average: Any = None, ignore_index: int = -100,
             reduce: Any = None, reduction: str = "mean") -> jax.Array:
    """Negative log likelihood of log-probabilities, as ``torch.nn.functional.nll_loss``.

    Args:
        input: log-probabilities ``(N, C)``, ``(N, C, d1, ..., dK)`` or ``(C,)``.
        target: integer class indices of shape ``(N,)``, ``(N, d1, ..., dK)`` or ``()``.
        weight, ignore_index, reduction, size_average, reduce: as :func:`cross_entropy`.

    Shape: ``'none'``: the target's shape; otherwise a scalar.

    Example:
        >>> import jax.numpy as jnp
        >>> from jaxlayers import functional as F
        >>> print(float(F.nll_loss(jnp.array([[-1.0, -2.0], [-3.0, -4.0]]), jnp.array([1, 0]))))
        2.5
    """
    reduction = _legacy_reduction(size_average, reduce, reduction, "nll_loss")
    return _cross_entropy(input, target, weight, ignore_index, reduction, 0.0, "nll_loss", log_probs=True)


# --------------------------------------------------------------------------- binary losses


@jax.custom_jvp
def _bce_terms(x: jax.Array, t: jax.Array) -> jax.Array:
    """``-(t * log(x) + (1 - t) * log(1 - x))``, both logs clamped at ``-100`` (torch)."""
    return (t - 1) * jnp.maximum(jnp.log1p(-x), -100.0) - t * jnp.maximum(jnp.log(x), -100.0)


_BCE_EPS = float(np.float32(1e-12))  # torch's clamp of x(1 - x) in the input derivative (a C float)


@_bce_terms.defjvp
def _bce_terms_jvp(primals, tangents):
    """torch's derivatives, not the clamped logs': ``(x - t) / max(x(1 - x), 1e-12)`` for the input
    (finite at 0 and 1, so a saturated sigmoid gives 0, not NaN) and ``-logit(x)`` for the target."""
    x, t = primals
    dx, dt = tangents
    d_input = (x - t) / jnp.maximum(x * (1 - x), _BCE_EPS)
    return _bce_terms(x, t), d_input * dx + (jnp.log1p(-x) - jnp.log(x)) * dt


def _binary_cross_entropy(input: Any, target: Any, weight: Any, reduction: str, name: str) -> jax.Array:
    out_dtype, (x, t, w) = _floats(input, target, weight)
    _check_same_shape(name, x, t)
    xc = concrete(input)
    if xc is not None and xc.size and not ((xc >= 0) & (xc <= 1)).all():
        raise ValueError(f"{name}: all elements of input should be between 0 and 1")
    loss = _bce_terms(x, t)
    if w is not None:
        loss = loss * _broadcast_to(name, w, loss.shape, "weight")
    return _reduce(loss, reduction).astype(out_dtype)


def _check_broadcast(name: str, input: jax.Array, target: jax.Array) -> None:
    """A target that does not broadcast with the input raises naming the loss (not JAX's
    "incompatible shapes for broadcasting" from inside the formula)."""
    try:
        jnp.broadcast_shapes(input.shape, target.shape)
    except ValueError:
        raise ValueError(f"{name}: target of shape {shape_str(target)} does not broadcast with input of shape "
                         f"{shape_str(input)}") from None


def _broadcast_to(name: str, a: jax.Array, shape: tuple, what: str) -> jax.Array:
    try:
        return jnp.broadcast_to(a, shape)
    except ValueError:
        raise ValueError(f"{name}: {what} of shape {shape_str(a)} does not broadcast to the input's shape "
                         f"{shape_str(shape)}") from None


def binary_cross_entropy(input: Any, target: Any, weight: Any = None, size_average: Any = None,
                         reduce: Any = None, reduction: str = "mean") -> jax.Array:
    """Binary cross entropy of probabilities, as ``torch.nn.functional.binary_cross_entropy``.

    ``l = -w * (t * log(x) + (1 - t) * log(1 - x))`` with both logs clamped at ``-100`` (torch).

    Args:
        input: probabilities in ``[0, 1]``, any shape (checked when concrete: ValueError).
        target: same shape as ``input`` (differentiable).
        weight: broadcastable to ``input`` or None.
        reduction, size_average, reduce: as :func:`cross_entropy` (plain mean).

    Shape: ``'none'``: the input's shape; otherwise a scalar.

    Example:
        >>> import jax.numpy as jnp
        >>> from jaxlayers import functional as F
        >>> print(round(float(F.binary_cross_entropy(jnp.array([0.5, 0.9]), jnp.array([1.0, 1.0]))), 4))
        0.3993
    """
    reduction = _legacy_reduction(size_average, reduce, reduction, "binary_cross_entropy")
    return _binary_cross_entropy(input, target, weight, reduction, "binary_cross_entropy")


@jax.custom_jvp
def _logit_bce(x: jax.Array, t: jax.Array, log_weight: jax.Array) -> jax.Array:
    """``(1 - t) x - log_weight * log_sigmoid(x)`` (``log_weight = 1 + (pos_weight - 1) t``) with torch's
    derivative in ``x``, ``log_weight * sigmoid(x) - (log_weight - 1 + t)`` (``sigmoid(x) - t`` without
    ``pos_weight``): autodiff's ``(1 - t) - log_weight * sigmoid(-x)`` cancels, to 0 from ``x = -17``
    in float32 (torch: 4e-8)."""
    return (1 - t) * x - log_weight * jax.nn.log_sigmoid(x)


@_logit_bce.defjvp
def _logit_bce_jvp(primals: tuple, tangents: tuple) -> tuple:
    (x, t, lw), (dx, dt, dlw) = primals, tangents
    log_sig = jax.nn.log_sigmoid(x)
    slope = lw * jax.nn.sigmoid(x) - (lw - 1 + t)
    return (1 - t) * x - lw * log_sig, slope * dx - x * dt - log_sig * dlw


def _binary_cross_entropy_with_logits(input: Any, target: Any, weight: Any, reduction: str, pos_weight: Any,
                                      name: str) -> jax.Array:
    out_dtype, (x, t, w, pw) = _floats(input, target, weight, pos_weight)
    _check_same_shape(name, x, t)
    if pw is not None:
        log_weight = (_broadcast_to(name, pw, x.shape, "pos_weight") - 1) * t + 1
    else:
        log_weight = jnp.ones_like(x)
    loss = _logit_bce(x, t, log_weight)
    if w is not None:
        loss = loss * _broadcast_to(name, w, loss.shape, "weight")
    return _reduce(loss, reduction).astype(out_dtype)


def binary_cross_entropy_with_logits(input: Any, target: Any, weight: Any = None, size_average: Any = None,
                                     reduce: Any = None, reduction: str = "mean", pos_weight: Any = None) -> jax.Array:
    """Sigmoid + binary cross entropy in one stable step, as
    ``torch.nn.functional.binary_cross_entropy_with_logits``.

    ``l = (1 - t) * x - (1 + (pos_weight - 1) * t) * log_sigmoid(x)``, times ``weight``; finite for
    logits of any size (``log_sigmoid`` never overflows).

    Args:
        input: logits, any shape.
        target: same shape as ``input`` (differentiable).
        weight: broadcastable to ``input`` or None.
        pos_weight: weight of positive examples, broadcast against ``input`` from the right
            (``(C,)`` for ``(N, C)`` input) or None.
        reduction, size_average, reduce: as :func:`binary_cross_entropy`.

    Shape: ``'none'``: the input's shape; otherwise a scalar.

    Example:
        >>> import jax.numpy as jnp
        >>> from jaxlayers import functional as F
        >>> print(round(float(F.binary_cross_entropy_with_logits(jnp.array([0.0, 1e4]), jnp.array([1.0, 1.0]))), 4))
        0.3466
    """
    reduction = _legacy_reduction(size_average, reduce, reduction, "binary_cross_entropy_with_logits")
    return _binary_cross_entropy_with_logits(input, target, weight, reduction, pos_weight,
                                             "binary_cross_entropy_with_logits")


# --------------------------------------------------------------------------- margin losses


@one_program
def _multilabel_soft_margin_loss(input: Any, target: Any, weight: Any, reduction: str, name: str) -> jax.Array:
    out_dtype, (x, t, w) = _floats(input, target, weight)
    if x.ndim < 1:
        raise ValueError(f"{name}: expected input of shape (C,) or (N, C), got 0-D input")
    _check_broadcast(name, x, t)
    loss = -(t * jax.nn.log_sigmoid(x) + (1 - t) * jax.nn.log_sigmoid(-x))
    if w is not None:
        loss = loss * w
    loss = jnp.sum(loss, axis=-1) / x.shape[-1]
    return _reduce(loss, reduction).astype(out_dtype)


def multilabel_soft_margin_loss(input: Any, target: Any, weight: Any = None, size_average: Any = None,
                                reduce: Any = None, reduction: str = "mean") -> jax.Array:
    """Multi-label one-versus-all logistic loss, as ``torch.nn.functional.multilabel_soft_margin_loss``.

    ``l_n = -mean_c w_c (t_c log_sigmoid(x_c) + (1 - t_c) log_sigmoid(-x_c))``.

    Args:
        input: ``(N, C)`` or ``(C,)`` logits.
        target: 0/1 labels of the input's shape.
        weight: ``(C,)`` (broadcast) or None.
        reduction, size_average, reduce: as :func:`cross_entropy` (plain mean over ``N``).

    Shape: ``'none'``: ``(N,)``; otherwise a scalar.

    Example:
        >>> import jax.numpy as jnp
        >>> from jaxlayers import functional as F
        >>> print(round(float(F.multilabel_soft_margin_loss(jnp.array([[0.0, 2.0]]), jnp.array([[1.0, 0.0]]))), 4))
        1.41
    """
    reduction = _legacy_reduction(size_average, reduce, reduction, "multilabel_soft_margin_loss")
    return _multilabel_soft_margin_loss(input, target, weight, reduction, "multilabel_soft_margin_loss")


def _margin_layout(name: str, x: jax.Array) -> None:
    if x.ndim not in (1, 2):
        raise ValueError(f"{name}: expected input of shape (C,) or (N, C), got {x.ndim}-D input of shape {shape_str(x)}")


def _multilabel_margin_loss(input: Any, target: Any, reduction: str, name: str) -> jax.Array:
    out_dtype, (x,) = _floats(input)
    t = jnp.asarray(target)
    _margin_layout(name, x)
    _check_same_shape(name, x, t)
    num_classes = x.shape[-1]
    if not jnp.issubdtype(t.dtype, jnp.integer):
        raise TypeError(f"{name}: expected target of class indices with an integer dtype, got {t.dtype}")
    if num_classes == 0:
        raise ValueError(f"{name}: expected input with at least one class, got shape {shape_str(x)}")
    # the targets of a row are its entries before the first negative one
    listed = jnp.cumprod((t >= 0).astype(jnp.int32), axis=-1).astype(bool)
    tc = concrete(target)
    if tc is not None and tc.size:
        bad = (tc < -1) | (tc >= num_classes)  # every entry, also after the -1 that ends a row (torch)
        if bad.any():
            raise IndexError(f"{name}: target value {int(tc[bad][0])} is out of range for {num_classes} classes "
                             f"(expected values in [-1, {num_classes - 1}]; -1 ends a row)")
    valid = (t >= 0) & (t < num_classes)
    safe = jnp.where(valid, t, 0)
    x_y = take_along(x, safe, -1)  # x_y[..., j] = x[..., t_j]
    # is_target[..., i]: class i is listed (a scatter of the listed slots; no (C, C) one-hot)
    rows = x.shape[:-1]
    lead = tuple(jnp.broadcast_to(jnp.arange(r).reshape((-1,) + (1,) * (len(rows) - k)), t.shape)
                 for k, r in enumerate(rows))
    is_target = jnp.zeros(x.shape, bool).at[lead + (safe,)].max(listed & valid)
    loss = compiled(_multilabel_hinge_sum, (), x, x_y, listed, is_target) / num_classes
    loss = jnp.where(jnp.any(listed & ~valid, axis=-1), jnp.nan, loss)
    return _reduce(loss, reduction).astype(out_dtype)


# Target slots per step of multilabel_margin_loss's scan (a (..., slots, C) block each).
_MLM_SLOTS = 32


def _multilabel_hinge_sum(x: jax.Array, x_y: jax.Array, listed: jax.Array, is_target: jax.Array) -> jax.Array:
    """``sum_{j listed} sum_{i not a target} max(0, 1 - x_y[j] + x[i])`` per row: a scan over
    blocks of target slots, each block's ``(..., slots, C)`` hinges summed in one fused pass and
    skipped (``lax.cond``) once no row lists a target there, so memory is ``O(C)`` per row (the
    pairs of all slots and classes took ``C²``: 2 GB at 32x4000) and time follows the longest
    target list; the body is rematerialised, so the gradient stores no block either."""
    c = x.shape[-1]
    nb = -(-c // _MLM_SLOTS)
    width = nb * _MLM_SLOTS

    def blocks(a, fill):  # (..., C) -> (nb, ..., slots)
        a = jnp.pad(a, [(0, 0)] * (a.ndim - 1) + [(0, width - c)], constant_values=fill)
        return jnp.moveaxis(a.reshape(a.shape[:-1] + (nb, _MLM_SLOTS)), -2, 0)

    def body(acc, blk):
        xy, lst = blk

        def add(acc):
            z = 1 - xy[..., :, None] + x[..., None, :]
            keep = lst[..., :, None] & ~is_target[..., None, :]
            return acc + jnp.sum(jnp.where(keep, _hinge_gt(z), jnp.zeros((), z.dtype)), axis=(-2, -1))

        return lax.cond(jnp.any(lst), add, lambda acc: acc, acc), None

    acc0 = jnp.zeros_like(jnp.sum(x, axis=-1))  # sharded as the rows are (the sum itself is dead code)
    total, _ = lax.scan(jax.checkpoint(body), acc0, (blocks(x_y, 0), blocks(listed, False)))
    return total


def multilabel_margin_loss(input: Any, target: Any, size_average: Any = None, reduce: Any = None,
                           reduction: str = "mean") -> jax.Array:
    """Multi-class multi-label hinge loss, as ``torch.nn.functional.multilabel_margin_loss``.

    ``l_n = sum_{j listed} sum_{i not a target} max(0, 1 - (x[y_j] - x[i])) / C``; a row's targets are its
    entries before the first negative one.

    Args:
        input: ``(N, C)`` or ``(C,)``.
        target: integer, the input's shape, padded with ``-1``.
        reduction, size_average, reduce: as :func:`cross_entropy` (plain mean).

    Shape: ``'none'``: ``(N,)`` (``()`` unbatched); otherwise a scalar.  Under ``jit`` a listed index
    ``>= C`` gives NaN.

    Example:
        >>> import jax.numpy as jnp
        >>> from jaxlayers import functional as F
        >>> x = jnp.array([[0.1, 0.2, 0.4, 0.8]])
        >>> print(round(float(F.multilabel_margin_loss(x, jnp.array([[3, 0, -1, 1]]))), 4))
        0.85
    """
    reduction = _legacy_reduction(size_average, reduce, reduction, "multilabel_margin_loss")
    return _multilabel_margin_loss(input, target, reduction, "multilabel_margin_loss")


def _multi_margin_loss(input: Any, target: Any, p: int, margin: float, weight: Any, reduction: str,
                       name: str) -> jax.Array:
    if p not in (1, 2):
        raise ValueError(f"{name}: only p == 1 and p == 2 are supported, got p={p!r}")
    out_dtype, (x,) = _floats(input)
    t = jnp.asarray(target)
    in_shape = x.shape
    x = x.reshape(1) if x.ndim == 0 else x  # as torch: a 0-D input is one class
    _margin_layout(name, x)
    frames = x.shape[0] if x.ndim == 2 else 1
    if t.ndim > 1 or t.size != frames:  # torch takes any target of `frames` elements up to 1-D, shaping the loss
        raise ValueError(f"{name}: expected target of shape {shape_str(x.shape[:-1])} for input of shape "
                         f"{shape_str(in_shape)}, got {shape_str(t)}")
    out_shape, x, t = t.shape, x.reshape(frames, x.shape[-1]), t.reshape(frames)
    num_classes = x.shape[-1]
    _check_index_target(name, t, num_classes)
    w = _class_weight(name, weight, num_classes)
    x_y, valid = _pick(x, t, -1, num_classes)
    h = _hinge_gt(margin - x_y[..., None] + x)
    if p == 2:
        h = h * h
    if w is not None:
        h = h * w.astype(x.dtype)[jnp.where(valid, t, 0)][..., None]
    h = jnp.where(jnp.arange(num_classes) == t[..., None], 0.0, h)
    loss = jnp.where(valid, jnp.sum(h, axis=-1) / num_classes, jnp.nan).reshape(out_shape)
    return _reduce(loss, reduction).astype(out_dtype)


def multi_margin_loss(input: Any, target: Any, p: int = 1, margin: float = 1.0, weight: Any = None,
                      size_average: Any = None, reduce: Any = None, reduction: str = "mean") -> jax.Array:
    """Multi-class hinge loss, as ``torch.nn.functional.multi_margin_loss``.

    ``l_n = sum_{i != y} w[y] * max(0, margin - x[y] + x[i])^p / C``.

    Args:
        input: ``(N, C)``, ``(C,)`` or ``()`` (one class, as torch).
        target: integer class indices, one per row: ``(N,)`` or ``()`` (torch also takes ``()`` for
            ``N = 1`` and ``(1,)`` unbatched).
        p: 1 or 2.
        margin: default 1.
        weight: ``(C,)`` or None.
        reduction, size_average, reduce: as :func:`cross_entropy` (plain mean).

    Shape: ``'none'``: the target's shape; otherwise a scalar.  Under ``jit`` an out-of-range index gives NaN.

    Example:
        >>> import jax.numpy as jnp
        >>> from jaxlayers import functional as F
        >>> x = jnp.array([[0.1, 0.2, 0.4, 0.8]])
        >>> print(round(float(F.multi_margin_loss(x, jnp.array([3]))), 4))
        0.325
    """
    reduction = _legacy_reduction(size_average, reduce, reduction, "multi_margin_loss")
    return _multi_margin_loss(input, target, p, margin, weight, reduction, "multi_margin_loss")


@one_program
def _soft_margin_loss(input: Any, target: Any, reduction: str, name: str) -> jax.Array:
    out_dtype, (x, t) = _floats(input, target)
    _check_broadcast(name, x, t)
    loss = jnp.logaddexp(0.0, -t * x)
    return _reduce(loss, reduction).astype(out_dtype)


def soft_margin_loss(input: Any, target: Any, size_average: Any = None, reduce: Any = None,
                     reduction: str = "mean") -> jax.Array:
    """Two-class logistic loss ``log(1 + exp(-y x))``, as ``torch.nn.functional.soft_margin_loss``.

    Args:
        input: any shape.
        target: ``+1``/``-1`` labels of the input's shape.
        reduction, size_average, reduce: as :func:`cross_entropy` (plain mean).

    Shape: ``'none'``: the input's shape; otherwise a scalar.  Computed as ``logaddexp(0, -y x)``, which
    stays finite where torch's ``log1p(exp(-y x))`` overflows.

    Example:
        >>> import jax.numpy as jnp
        >>> from jaxlayers import functional as F
        >>> print(round(float(F.soft_margin_loss(jnp.array([0.0, 2.0]), jnp.array([1.0, -1.0]))), 4))
        1.41
    """
    reduction = _legacy_reduction(size_average, reduce, reduction, "soft_margin_loss")
    return _soft_margin_loss(input, target, reduction, "soft_margin_loss")


# --------------------------------------------------------------------------- regression losses


def _pointwise(kind: str, input: Any, target: Any, reduction: str, weight: Any, param: float,
               name: str) -> jax.Array:
    """l1 / mse / huber (``param`` = delta) / smooth_l1 (``param`` = beta) with torch's weighting."""
    out_dtype, (x, t) = _floats(input, target)
    w = _elementwise_weight(name, weight, x)
    x, t = _broadcast_warn(name, x, t)
    d = x - t
    if kind == "smooth_l1" and param < 0:
        raise ValueError(f"{name}: beta must be >= 0 (negative values are not supported), got {param}")
    if kind == "huber" and param <= 0:
        raise ValueError(f"{name}: delta must be > 0, got {param}")
    if kind == "l1" or (kind == "smooth_l1" and param == 0):
        loss = abs_sign_grad(d)
    elif kind == "mse":
        loss = d * d
    else:
        z = d * jax.lax.stop_gradient(jnp.sign(d))  # |d|, slope sign(d): NaN at NaN, as torch's backward
        inner = z < param
        # each branch on inputs safe for it, so that the other's derivative (0 * inf) stays out of the
        # gradient at an infinite difference or an infinite delta
        dq, zl = jnp.where(inner, d, 0.0), jnp.where(inner, param, z)
        if kind == "huber":
            loss = jnp.where(inner, 0.5 * dq * dq, param * (zl - 0.5 * param))
        else:
            loss = jnp.where(inner, 0.5 * dq * dq / param, zl - 0.5 * param)
    weight_sum = None
    if w is not None:
        loss = loss * w.astype(loss.dtype)
        weight_sum = jnp.sum(w) if kind in ("l1", "mse") else None  # torch: huber's weighted mean is a plain mean
    return _reduce(loss, reduction, weight_sum).astype(out_dtype)


def l1_loss(input: Any, target: Any, size_average: Any = None, reduce: Any = None, reduction: str = "mean",
            weight: Any = None) -> jax.Array:
    """Mean absolute error ``|x - y|``, as ``torch.nn.functional.l1_loss``.

    Args:
        input: any shape.
        target: broadcast with ``input`` (torch warns when the sizes differ; so does this).
        reduction, size_average, reduce: as :func:`cross_entropy`.
        weight: elementwise weights of the input's shape; the mean is then ``sum(w l) / sum(w)``.

    Shape: ``'none'``: the broadcast shape; otherwise a scalar.  The derivative at ``x == y`` is 0 (torch).

    Example:
        >>> import jax.numpy as jnp
        >>> from jaxlayers import functional as F
        >>> print(float(F.l1_loss(jnp.array([1.0, 2.0]), jnp.array([0.0, 4.0]))))
        1.5
    """
    reduction = _legacy_reduction(size_average, reduce, reduction, "l1_loss")
    return _pointwise("l1", input, target, reduction, weight, 0.0, "l1_loss")


def mse_loss(input: Any, target: Any, size_average: Any = None, reduce: Any = None, reduction: str = "mean",
             weight: Any = None) -> jax.Array:
    """Mean squared error ``(x - y)^2``, as ``torch.nn.functional.mse_loss``.

    Args: as :func:`l1_loss`.

    Shape: ``'none'``: the broadcast shape; otherwise a scalar.

    Example:
        >>> import jax.numpy as jnp
        >>> from jaxlayers import functional as F
        >>> print(float(F.mse_loss(jnp.array([1.0, 2.0]), jnp.array([0.0, 4.0]))))
        2.5
    """
    reduction = _legacy_reduction(size_average, reduce, reduction, "mse_loss")
    return _pointwise("mse", input, target, reduction, weight, 0.0, "mse_loss")


def huber_loss(input: Any, target: Any, reduction: str = "mean", delta: float = 1.0, weight: Any = None) -> jax.Array:
    """Huber loss, as ``torch.nn.functional.huber_loss``.

    ``0.5 d^2`` for ``|d| < delta``, else ``delta (|d| - 0.5 delta)``, ``d = x - y``.

    Args:
        input, target: as :func:`l1_loss`.
        reduction: ``'none'`` | ``'mean'`` | ``'sum'``.
        delta: threshold (> 0). Default 1.
        weight: elementwise weights of the input's shape; the mean stays ``mean(w l)`` (torch).

    Shape: ``'none'``: the broadcast shape; otherwise a scalar.

    Example:
        >>> import jax.numpy as jnp
        >>> from jaxlayers import functional as F
        >>> print(float(F.huber_loss(jnp.array([0.5, 3.0]), jnp.array([0.0, 0.0]))))
        1.3125
    """
    reduction = _legacy_reduction(None, None, reduction, "huber_loss")
    return _pointwise("huber", input, target, reduction, weight, delta, "huber_loss")


def smooth_l1_loss(input: Any, target: Any, size_average: Any = None, reduce: Any = None, reduction: str = "mean",
                   beta: float = 1.0) -> jax.Array:
    """Smooth L1 loss, as ``torch.nn.functional.smooth_l1_loss``.

    ``0.5 d^2 / beta`` for ``|d| < beta``, else ``|d| - 0.5 beta``; ``beta == 0`` is :func:`l1_loss`.

    Args:
        input, target, reduction, size_average, reduce: as :func:`l1_loss`.
        beta: threshold (>= 0). Default 1.

    Shape: ``'none'``: the broadcast shape; otherwise a scalar.

    Example:
        >>> import jax.numpy as jnp
        >>> from jaxlayers import functional as F
        >>> print(float(F.smooth_l1_loss(jnp.array([0.5, 3.0]), jnp.array([0.0, 0.0]))))
        1.3125
    """
    reduction = _legacy_reduction(size_average, reduce, reduction, "smooth_l1_loss")
    return _pointwise("smooth_l1", input, target, reduction, None, beta, "smooth_l1_loss")


# --------------------------------------------------------------------------- distribution losses


def _kl_div(input: Any, target: Any, reduction: str, log_target: bool, name: str) -> jax.Array:
    out_dtype, (x, t) = _floats(input, target)
    _check_broadcast(name, x, t)
    if log_target:
        loss = jnp.exp(t) * (t - x)
    else:  # xlogy(t, t) - t * x: 0 where t == 0 (value and derivative), NaN for t < 0 as in torch
        zero = t == 0
        loss = jnp.where(zero, 0.0, t * jnp.log(jnp.where(zero, 1.0, t))) - t * x
    if reduction == "batchmean":
        total = jnp.sum(loss)
        return (total / x.shape[0] if x.ndim else total).astype(out_dtype)
    return _reduce(loss, reduction).astype(out_dtype)


def kl_div(input: Any, target: Any, size_average: Any = None, reduce: Any = None, reduction: str = "mean",
           log_target: bool = False) -> jax.Array:
    """Kullback-Leibler divergence, as ``torch.nn.functional.kl_div``.

    ``l = t (log t - x)`` (``input`` is a log-probability), or ``exp(t) (t - x)`` with ``log_target``.

    Args:
        input: log-probabilities, any shape.
        target: probabilities (log-probabilities with ``log_target``), broadcast with ``input``.
        reduction: ``'none'`` | ``'batchmean'`` (sum / ``input.shape[0]``, the KL divergence) |
            ``'mean'`` (over every element; warns, as torch) | ``'sum'``.
        log_target: whether ``target`` is in log space.
        size_average, reduce: legacy torch arguments.

    Shape: ``'none'``: the broadcast shape; otherwise a scalar.

    Example:
        >>> import jax.numpy as jnp
        >>> from jaxlayers import functional as F
        >>> p = jnp.array([[0.5, 0.5]])
        >>> print(round(float(F.kl_div(jnp.log(jnp.array([[0.25, 0.75]])), p, reduction="batchmean")), 4))
        0.1438
    """
    if size_average is None and reduce is None and reduction == "mean":
        _warn_kl_div_mean("kl_div")
    legacy = _legacy_reduction(size_average, reduce, reduction, "kl_div", REDUCTIONS + ("batchmean",))
    out = _kl_div(input, target, legacy, log_target, "kl_div")
    if legacy != reduction == "batchmean" and jnp.ndim(input):
        # torch: legacy arguments pick the reduction, and 'batchmean' still divides by the batch size
        return out / jnp.shape(input)[0]
    return out


def _warn_kl_div_mean(name: str, stacklevel: int = 2) -> None:
    """torch's warning for ``kl_div``/``KLDivLoss`` with ``reduction='mean'``."""
    warnings.warn(f"{name}: reduction: 'mean' divides the total loss by both the batch size and the support "
                  "size. 'batchmean' divides only by the batch size, and aligns with the KL div math "
                  "definition.", UserWarning, stacklevel=stacklevel + 1)


@one_program
def _poisson_nll_loss(input: Any, target: Any, log_input: bool, full: bool, eps: float, reduction: str,
                      name: str) -> jax.Array:
    out_dtype, (x, t) = _floats(input, target)
    _check_broadcast(name, x, t)
    if log_input:
        loss = jnp.exp(x) - t * x
    else:
        loss = x - t * jnp.log(x + eps)
    if full:
        big = t > 1
        ts = jnp.where(big, t, 2.0)
        stirling = ts * jnp.log(ts) - ts + 0.5 * jnp.log(2 * math.pi * ts)
        loss = loss + jnp.where(big, stirling, 0.0)
    return _reduce(loss, reduction).astype(out_dtype)


def poisson_nll_loss(input: Any, target: Any, log_input: bool = True, full: bool = False, size_average: Any = None,
                     eps: float = 1e-8, reduce: Any = None, reduction: str = "mean") -> jax.Array:
    """Poisson negative log likelihood, as ``torch.nn.functional.poisson_nll_loss``.

    ``exp(x) - t x`` (``log_input``) or ``x - t log(x + eps)``; ``full`` adds Stirling's
    ``t log t - t + 0.5 log(2 pi t)`` where ``t > 1``.

    Args:
        input: rate (or log-rate with ``log_input``), any shape.
        target: counts, broadcast with ``input``.
        log_input, full, eps: as torch.
        reduction, size_average, reduce: as :func:`cross_entropy` (plain mean).

    Shape: ``'none'``: the broadcast shape; otherwise a scalar.

    Example:
        >>> import jax.numpy as jnp
        >>> from jaxlayers import functional as F
        >>> print(round(float(F.poisson_nll_loss(jnp.array([0.0, 1.0]), jnp.array([1.0, 2.0]))), 4))
        0.8591
    """
    reduction = _legacy_reduction(size_average, reduce, reduction, "poisson_nll_loss")
    return _poisson_nll_loss(input, target, log_input, full, eps, reduction, "poisson_nll_loss")


def _gaussian_nll_loss(input: Any, target: Any, var: Any, full: bool, eps: float, reduction: str,
                       name: str) -> jax.Array:
    if isinstance(var, (int, float)) and not isinstance(var, bool):
        if var < 0:
            raise ValueError(f"{name}: var has negative entry/entries (var={var})")
        dtype = jnp.result_type(input)
        var = jnp.full(jnp.shape(input), var, dtype if jnp.issubdtype(dtype, jnp.inexact) else jnp.result_type(float))
    out_dtype, (x, t, v) = _floats(input, target, var)
    vc = concrete(var)
    if vc is not None and (vc < 0).any():
        raise ValueError(f"{name}: var has negative entry/entries")
    if v.shape != x.shape:
        if v.shape == x.shape[:-1]:
            v = v[..., None]
        elif not (v.ndim == x.ndim and sum(b for a, b in zip(x.shape, v.shape) if a != b) == 1):
            raise ValueError(f"{name}: var of shape {shape_str(v)} is of incorrect size for input of shape "
                             f"{shape_str(x)} (expected the input's shape, the input's shape without the last "
                             "dim, or the input's shape with one dim of size 1)")
    negative = v < 0
    # clamp at eps as torch does under no_grad: the value is clamped, the gradient passes unchanged
    v = clamp_min_straight_through(v, float(eps))
    loss = 0.5 * (jnp.log(v) + (x - t) ** 2 / v)
    if full:
        loss = loss + 0.5 * math.log(2 * math.pi)
    loss = jnp.where(negative, jnp.nan, loss)
    return _reduce(loss, reduction).astype(out_dtype)


def gaussian_nll_loss(input: Any, target: Any, var: Any, full: bool = False, eps: float = 1e-6,
                      reduction: str = "mean") -> jax.Array:
    """Gaussian negative log likelihood, as ``torch.nn.functional.gaussian_nll_loss``.

    ``0.5 (log(max(var, eps)) + (x - t)^2 / max(var, eps))`` (+ ``0.5 log(2 pi)`` with ``full``); the
    clamp at ``eps`` does not stop the gradient (torch clamps under ``no_grad``).

    Args:
        input: expectations, any shape.
        target: samples, broadcast with ``input``.
        var: variances: the input's shape, the input's shape without its last dim, the input's shape
            with exactly one dim of size 1, or a float.  Negative entries: ValueError when concrete,
            NaN under ``jit``.
        full, eps: as torch.
        reduction: ``'none'`` | ``'mean'`` | ``'sum'``.

    Shape: ``'none'``: the input's shape; otherwise a scalar.

    Example:
        >>> import jax.numpy as jnp
        >>> from jaxlayers import functional as F
        >>> print(round(float(F.gaussian_nll_loss(jnp.array([1.0]), jnp.array([2.0]), jnp.array([1.0]))), 4))
        0.5
    """
    reduction = _legacy_reduction(None, None, reduction, "gaussian_nll_loss")
    return _gaussian_nll_loss(input, target, var, full, eps, reduction, "gaussian_nll_loss")


# --------------------------------------------------------------------------- embedding / ranking losses


@one_program
def _margin_ranking_loss(input1: Any, input2: Any, target: Any, margin: float, reduction: str,
                         name: str) -> jax.Array:
    out_dtype, (x1, x2, t) = _floats(input1, input2, target)
    if not x1.ndim == x2.ndim == t.ndim:
        raise ValueError(f"{name}: all input tensors should have the same dimension, got input1 {shape_str(x1)}, "
                         f"input2 {shape_str(x2)} and target {shape_str(t)}")
    loss = clamp_min(-t * (x1 - x2) + margin, 0.0)
    return _reduce(loss, reduction).astype(out_dtype)


def margin_ranking_loss(input1: Any, input2: Any, target: Any, margin: float = 0, size_average: Any = None,
                        reduce: Any = None, reduction: str = "mean") -> jax.Array:
    """Ranking hinge ``max(0, -y (x1 - x2) + margin)``, as ``torch.nn.functional.margin_ranking_loss``.

    Args:
        input1, input2: scores of the same rank as ``target`` (broadcast).
        target: ``+1`` (``x1`` should rank higher) or ``-1``.
        margin: default 0.
        reduction, size_average, reduce: as :func:`cross_entropy` (plain mean).

    Shape: ``'none'``: the broadcast shape; otherwise a scalar.

    Example:
        >>> import jax.numpy as jnp
        >>> from jaxlayers import functional as F
        >>> print(float(F.margin_ranking_loss(jnp.array([1.0, 2.0]), jnp.array([2.0, 1.0]), jnp.array([1.0, 1.0]))))
        0.5
    """
    reduction = _legacy_reduction(size_average, reduce, reduction, "margin_ranking_loss")
    return _margin_ranking_loss(input1, input2, target, margin, reduction, "margin_ranking_loss")


@one_program
def _hinge_embedding_loss(input: Any, target: Any, margin: float, reduction: str, name: str) -> jax.Array:
    out_dtype, (x, t) = _floats(input, target)
    _check_broadcast(name, x, t)
    margin_term = jnp.where(t != 1, clamp_min(margin - x, 0.0), 0.0)
    self_term = jnp.where(t != -1, x, 0.0)
    return _reduce(margin_term + self_term, reduction).astype(out_dtype)


def hinge_embedding_loss(input: Any, target: Any, margin: float = 1.0, size_average: Any = None, reduce: Any = None,
                         reduction: str = "mean") -> jax.Array:
    """Hinge embedding loss, as ``torch.nn.functional.hinge_embedding_loss``.

    ``x`` where ``y == 1``, ``max(0, margin - x)`` where ``y == -1`` (both terms for other labels, as torch).

    Args:
        input: distances, any shape.
        target: ``+1``/``-1`` labels, broadcast with ``input``.
        margin: default 1.
        reduction, size_average, reduce: as :func:`cross_entropy` (plain mean).

    Shape: ``'none'``: the broadcast shape; otherwise a scalar.

    Example:
        >>> import jax.numpy as jnp
        >>> from jaxlayers import functional as F
        >>> print(round(float(F.hinge_embedding_loss(jnp.array([0.3, 0.2]), jnp.array([1.0, -1.0]))), 4))
        0.55
    """
    reduction = _legacy_reduction(size_average, reduce, reduction, "hinge_embedding_loss")
    return _hinge_embedding_loss(input, target, margin, reduction, "hinge_embedding_loss")


@one_program
def _cosine_embedding_loss(input1: Any, input2: Any, target: Any, margin: float, reduction: str,
                           name: str) -> jax.Array:
    out_dtype, (x1, x2, t) = _floats(input1, input2, target)
    if t.ndim not in (0, 1):
        raise ValueError(f"{name}: 0-D or 1-D target expected, multi-target not supported; got target of "
                         f"shape {shape_str(t)}")
    want = t.ndim + 1
    if x1.ndim != want or x2.ndim != want:
        raise ValueError(f"{name}: {t.ndim}-D target expects {want}-D inputs, got input1 {shape_str(x1)} and "
                         f"input2 {shape_str(x2)}")
    eps = 1e-12
    prod = jnp.sum(x1 * x2, axis=-1)
    mag1 = jnp.sum(x1 * x1, axis=-1) + eps
    mag2 = jnp.sum(x2 * x2, axis=-1) + eps
    cos = prod / jnp.sqrt(mag1 * mag2)
    loss = jnp.where(t == 1, 1 - cos, 0.0) + jnp.where(t == -1, clamp_min(cos - margin, 0.0), 0.0)
    return _reduce(loss, reduction).astype(out_dtype)


def cosine_embedding_loss(input1: Any, input2: Any, target: Any, margin: float = 0, size_average: Any = None,
                          reduce: Any = None, reduction: str = "mean") -> jax.Array:
    """Cosine embedding loss, as ``torch.nn.functional.cosine_embedding_loss``.

    ``1 - cos(x1, x2)`` where ``y == 1``, ``max(0, cos(x1, x2) - margin)`` where ``y == -1``
    (cosine with torch's ``1e-12`` added to both squared norms).

    Args:
        input1, input2: ``(N, D)`` or ``(D,)``.
        target: ``(N,)`` or ``()`` labels ``+1``/``-1``.
        margin: default 0.
        reduction, size_average, reduce: as :func:`cross_entropy` (plain mean).

    Shape: ``'none'``: the target's shape; otherwise a scalar.

    Example:
        >>> import jax.numpy as jnp
        >>> from jaxlayers import functional as F
        >>> a, b = jnp.array([[1.0, 0.0]]), jnp.array([[1.0, 1.0]])
        >>> print(round(float(F.cosine_embedding_loss(a, b, jnp.array([1.0]))), 4))
        0.2929
    """
    reduction = _legacy_reduction(size_average, reduce, reduction, "cosine_embedding_loss")
    return _cosine_embedding_loss(input1, input2, target, margin, reduction, "cosine_embedding_loss")


def _pairwise_distance(x1: jax.Array, x2: jax.Array, p: float = 2.0, eps: float = 1e-6) -> jax.Array:
    """torch's ``pairwise_distance`` (the ``p``-norm of ``x1 - x2 + eps`` over the last dim), the
    triplet losses' default distance: :func:`jaxlayers.functional.distance.pairwise_distance`."""
    return _distance._pairwise_distance(x1, x2, p, eps, False, "pairwise_distance")


def _check_triplet(name: str, a: jax.Array, p: jax.Array, n: jax.Array) -> None:
    if not a.ndim == p.ndim == n.ndim:
        raise ValueError(f"{name}: the anchor, positive, and negative tensors are expected to have the same number "
                         f"of dimensions, but got: anchor {shape_str(a)}, positive {shape_str(p)}, and negative "
                         f"{shape_str(n)}")


def _triplet_margin_with_distance_loss(anchor: Any, positive: Any, negative: Any, distance_function: Any,
                                       margin: float, swap: bool, reduction: str, name: str) -> jax.Array:
    if margin <= 0:
        raise ValueError(f"{name}: margin must be greater than 0, got {margin}")
    out_dtype, (a, p, n) = _floats(anchor, positive, negative)
    _check_triplet(name, a, p, n)
    dist = distance_function if distance_function is not None else _pairwise_distance
    d_pos, d_neg = dist(a, p), dist(a, n)
    if swap:
        d_neg = jnp.minimum(d_neg, dist(p, n))
    loss = clamp_min(margin + d_pos - d_neg, 0.0)
    return _reduce(loss, reduction).astype(out_dtype)


@one_program
def _triplet_margin_loss(anchor: Any, positive: Any, negative: Any, margin: float, p: float, eps: float, swap: bool,
                         reduction: str, name: str) -> jax.Array:
    if not p >= 0:  # p = 0 counts the differing entries, as torch
        raise ValueError(f"{name}: p must be >= 0, got {p}")
    return _triplet_margin_with_distance_loss(anchor, positive, negative,
                                              lambda x1, x2: _pairwise_distance(x1, x2, p, eps), margin, swap,
                                              reduction, name)


def triplet_margin_loss(anchor: Any, positive: Any, negative: Any, margin: float = 1.0, p: float = 2,
                        eps: float = 1e-6, swap: bool = False, size_average: Any = None, reduce: Any = None,
                        reduction: str = "mean") -> jax.Array:
    """Triplet loss ``max(0, d(a, p) - d(a, n) + margin)``, as ``torch.nn.functional.triplet_margin_loss``.

    ``d`` is torch's pairwise distance ``||x1 - x2 + eps||_p`` over the last dim.

    Args:
        anchor, positive, negative: ``(N, D)`` or ``(D,)`` (same rank).
        margin: > 0, default 1.
        p: norm degree (>= 0 or ``inf``; 0 counts the non-zero entries). Default 2.
        eps: added to the difference. Default 1e-6.
        swap: use ``min(d(a, n), d(p, n))`` as the negative distance.
        reduction, size_average, reduce: as :func:`cross_entropy` (plain mean).

    Shape: ``'none'``: ``(N,)``; otherwise a scalar.

    Example:
        >>> import jax.numpy as jnp
        >>> from jaxlayers import functional as F
        >>> a, p, n = jnp.zeros((1, 2)), jnp.ones((1, 2)), jnp.full((1, 2), 2.0)
        >>> print(round(float(F.triplet_margin_loss(a, p, n)), 4))
        0.0
    """
    reduction = _legacy_reduction(size_average, reduce, reduction, "triplet_margin_loss")
    return _triplet_margin_loss(anchor, positive, negative, margin, p, eps, swap, reduction, "triplet_margin_loss")


def triplet_margin_with_distance_loss(anchor: Any, positive: Any, negative: Any, *,
                                      distance_function: Callable | None = None, margin: float = 1.0,
                                      swap: bool = False, reduction: str = "mean") -> jax.Array:
    """Triplet loss with any distance, as ``torch.nn.functional.triplet_margin_with_distance_loss``.

    Args:
        anchor, positive, negative: arrays of the same rank.
        distance_function: ``(x1, x2) -> distances``; default torch's pairwise (2-norm) distance.
        margin: > 0. Default 1.
        swap: use ``min(d(a, n), d(p, n))`` as the negative distance.
        reduction: ``'none'`` | ``'mean'`` | ``'sum'``.

    Shape: ``'none'``: the distances' shape; otherwise a scalar.

    Example:
        >>> import jax.numpy as jnp
        >>> from jaxlayers import functional as F
        >>> a, p, n = jnp.zeros((1, 2)), jnp.ones((1, 2)), jnp.ones((1, 2))
        >>> l1 = lambda x, y: jnp.abs(x - y).sum(-1)
        >>> print(float(F.triplet_margin_with_distance_loss(a, p, n, distance_function=l1)))
        1.0
    """
    name = "triplet_margin_with_distance_loss"
    reduction = _legacy_reduction(None, None, reduction, name)
    return _triplet_margin_with_distance_loss(anchor, positive, negative, distance_function, margin, swap,
                                              reduction, name)


# --------------------------------------------------------------------------- CTC


def _logsumexp(*xs: jax.Array) -> jax.Array:
    """``log(sum(exp(x)))`` of a few arrays; ``-inf`` when all are ``-inf``, with zero (not NaN)
    gradients flowing into ``-inf`` entries."""
    m = jax.lax.stop_gradient(jnp.maximum(xs[0], xs[1]) if len(xs) == 2 else
                              jnp.maximum(jnp.maximum(xs[0], xs[1]), xs[2]))
    m = jnp.where(jnp.isfinite(m), m, 0.0)
    s = sum(jnp.exp(x - m) for x in xs)
    pos = s > 0
    return jnp.where(pos, jnp.log(jnp.where(pos, s, 1.0)) + m, -jnp.inf)


def _lengths(name: str, what: str, lengths: Any, batch: int, unbatched: bool) -> jax.Array:
    arr = jnp.asarray(lengths)
    if not jnp.issubdtype(arr.dtype, jnp.integer):
        raise TypeError(f"{name}: {what} must hold integers, got {arr.dtype}")
    if unbatched and arr.size == 1:
        arr = arr.reshape(1)
    if arr.shape != (batch,):
        raise ValueError(f"{name}: {what} must have shape ({batch},) (one length per batch entry), got "
                         f"{shape_str(arr)}")
    return arr


def _ctc_loss(log_probs: Any, targets: Any, input_lengths: Any, target_lengths: Any, blank: int, reduction: str,
              zero_infinity: bool, name: str) -> jax.Array:
    out_dtype, (lp,) = _floats(log_probs)
    if lp.ndim not in (2, 3):
        raise ValueError(f"{name}: expected log_probs of shape (T, N, C) or (T, C), got {shape_str(lp)}")
    unbatched = lp.ndim == 2
    if unbatched:
        lp = lp[:, None]
    T, N, C = lp.shape
    if T == 0 or N == 0:
        raise ValueError(f"{name}: log_probs must not be empty, got {shape_str(log_probs)}")
    if not 0 <= blank < C:
        raise IndexError(f"{name}: blank {blank} is out of range for {C} classes")
    tg = jnp.asarray(targets)
    if not jnp.issubdtype(tg.dtype, jnp.integer):
        raise TypeError(f"{name}: targets must hold integer class indices, got {tg.dtype}")
    il = _lengths(name, "input_lengths", input_lengths, N, unbatched)
    tl = _lengths(name, "target_lengths", target_lengths, N, unbatched)
    if unbatched and tg.shape[:-1] not in ((), (1,)):  # 1-D: concatenated (their length is the target length)
        raise ValueError(f"{name}: unbatched log_probs {shape_str(lp[:, 0])} need targets of shape (S,) or (1, S), "
                         f"got {shape_str(tg)}")
    if tg.ndim not in (1, 2) or (tg.ndim == 2 and tg.shape[0] != N):
        raise ValueError(f"{name}: targets must be padded (N, S) = ({N}, S) or concatenated 1-D, got "
                         f"{shape_str(tg)} for log_probs {shape_str(log_probs)}")
    ilc, tlc = concrete(il), concrete(tl)
    if ilc is not None and ((ilc < 0) | (ilc > T)).any():
        raise ValueError(f"{name}: input_lengths must be in [0, {T}] (T of log_probs {shape_str(log_probs)}), "
                         f"got {ilc.tolist()}")
    if tlc is not None:
        limit = tg.shape[1] if tg.ndim == 2 else tg.shape[0]
        total = tlc.max(initial=0) if tg.ndim == 2 else tlc.sum()
        if (tlc < 0).any() or (total > limit if tg.ndim == 2 else total != limit):
            raise ValueError(f"{name}: target_lengths {tlc.tolist()} do not fit targets of shape {shape_str(tg)} "
                             + ("(each must be <= S)" if tg.ndim == 2 else "(their sum must be len(targets))"))
    if tg.ndim == 1:  # concatenated -> padded
        S = int(tlc.max(initial=0)) if tlc is not None else tg.shape[0]
        offsets = jnp.cumsum(tl) - tl
        idx = jnp.clip(offsets[:, None] + jnp.arange(S), 0, max(tg.shape[0] - 1, 0))
        tg = tg[idx] if tg.shape[0] else jnp.zeros((N, S), tg.dtype)
    S = tg.shape[1]
    tgc = concrete(tg)
    if tgc is not None and tlc is not None:
        bad = (np.arange(S) < tlc[:, None]) & ((tgc < 0) | (tgc >= C))
        if bad.any():
            raise IndexError(f"{name}: target index {int(tgc[bad][0])} is out of range for {C} classes")
    # one program per shape and options when called outside jit (op by op it compiled ~45)
    return compiled(_ctc_nll, (blank, reduction, zero_infinity, unbatched, np.dtype(out_dtype)), lp, tg, il, tl)


def _ctc_nll(lp: jax.Array, tg: jax.Array, il: jax.Array, tl: jax.Array, blank: int, reduction: str,
             zero_infinity: bool, unbatched: bool, out_dtype: Any) -> jax.Array:
    """:func:`_ctc_loss`'s arithmetic on checked arrays: ``lp`` ``(T, N, C)``, padded targets ``(N, S)``."""
    T, N, C = lp.shape
    S = tg.shape[1]
    rows = batch_sharding(lp, 2, axis=1)  # an Explicit mesh sharding the batch: per-row arrays sharded so too
    if rows is not None:
        tg, il, tl = (jax.sharding.reshard(a, batch_sharding(lp, a.ndim, axis=1)) for a in (tg, il, tl))
    used = jnp.arange(S) < tl[:, None]
    L = 2 * S + 1
    labels = jnp.where(used, tg, blank)
    ext = jnp.full((N, L), blank, labels.dtype, device=rows).at[:, 1::2].set(labels)
    valid = (ext >= 0) & (ext < C)  # under jit an out-of-range label gives NaN
    lp_ext = jnp.take_along_axis(lp, jnp.broadcast_to(jnp.where(valid, ext, 0)[None], (T, N, L)), axis=2)
    lp_ext = jnp.where(valid, lp_ext, jnp.nan)
    skip = jnp.zeros((N, L), bool, device=rows)  # s -> s + 2 allowed between two different labels
    if S > 1:
        skip = skip.at[:, 3::2].set(labels[:, 1:] != labels[:, :-1])
    alpha = _ctc_alpha(lp_ext, skip, il)
    end = jnp.take_along_axis(alpha, 2 * tl[:, None], axis=1)[:, 0]
    before = jnp.where(tl > 0, jnp.take_along_axis(alpha, jnp.maximum(2 * tl - 1, 0)[:, None], axis=1)[:, 0], -jnp.inf)
    nll = -_logsumexp(end, before)
    nll = jnp.where(il == 0, jnp.where(tl == 0, 0.0, jnp.inf), nll)
    nll = jnp.where((il > T) | (il < 0) | (tl > S) | (tl < 0), jnp.nan, nll)  # unchecked under jit
    if zero_infinity:
        nll = jnp.where(jnp.isinf(nll), 0.0, nll)
    if reduction == "mean":
        return jnp.mean(nll / jnp.maximum(tl, 1).astype(nll.dtype)).astype(out_dtype)
    if unbatched:
        nll = nll[0]
    return _reduce(nll, reduction).astype(out_dtype)


def _ctc_alpha(lp_ext: jax.Array, skip: jax.Array, il: jax.Array) -> jax.Array:
    """The forward variables after each row's last input step: ``lp_ext`` ``(T, N, L)`` holds the
    log-probabilities of the blank-extended labels, ``skip`` ``(N, L)`` where ``s -> s + 2`` is allowed."""
    T, N, L = lp_ext.shape
    neg = jnp.full((N, 1), -jnp.inf, lp_ext.dtype, device=batch_sharding(lp_ext, 2, axis=1))
    alpha0 = jnp.where(jnp.arange(L) < 2, lp_ext[0], -jnp.inf)

    def step(alpha: jax.Array, inp: tuple) -> tuple:
        lpt, t = inp
        a1 = jnp.concatenate([neg, alpha[:, :-1]], axis=1)
        a2 = jnp.where(skip, jnp.concatenate([neg, neg, alpha[:, :-2]], axis=1)[:, :L], -jnp.inf)
        new = lpt + _logsumexp(alpha, a1, a2)
        return jnp.where((t < il)[:, None], new, alpha), None

    alpha, _ = jax.lax.scan(step, alpha0, (lp_ext[1:], jnp.arange(1, T)))
    return alpha


def ctc_loss(log_probs: Any, targets: Any, input_lengths: Any, target_lengths: Any, blank: int = 0,
             reduction: str = "mean", zero_infinity: bool = False) -> jax.Array:
    """Connectionist Temporal Classification loss, as ``torch.nn.functional.ctc_loss``.

    The negative log of the summed probability of every alignment of each target, by the
    log-space forward algorithm (``lax.scan`` over time; compile time does not depend on ``T``).

    Args:
        log_probs: ``(T, N, C)`` or unbatched ``(T, C)`` log-probabilities (``log_softmax`` output).
        targets: padded ``(N, S)`` or concatenated 1-D (``sum(target_lengths)``) class indices
            (not ``blank``); ``(S,)`` or padded ``(1, S)`` unbatched.
        input_lengths, target_lengths: ``(N,)`` integer arrays or sequences (scalars unbatched).
        blank: the blank class. Default 0.
        reduction: ``'none'`` | ``'mean'`` (each loss divided by its target length, then the batch
            mean) | ``'sum'``.
        zero_infinity: replace infinite losses (impossible alignments) and their gradients by 0.

    Shape: ``'none'``: ``(N,)`` (``()`` unbatched); otherwise a scalar.

    The gradient is the true derivative with respect to ``log_probs``.  torch's backward returns
    ``exp(log_probs) * g`` more (it assumes ``log_probs`` comes from ``log_softmax``); through a
    ``log_softmax`` both give the same gradient.  An impossible alignment (loss ``inf``) without
    ``zero_infinity`` has gradient 0 here, NaN in torch.  Concrete lengths and targets are checked
    (ValueError / IndexError); under ``jit`` an out-of-range length or label gives NaN for that
    entry, and with traced concatenated targets the padded width is ``len(targets)``.

    Example:
        >>> import jax, jax.numpy as jnp
        >>> from jaxlayers import functional as F
        >>> lp = jax.nn.log_softmax(jnp.zeros((3, 1, 2)), -1)
        >>> print(round(float(F.ctc_loss(lp, jnp.array([[1]]), [3], [1])), 4))
        0.2877
    """
    reduction = _legacy_reduction(None, None, reduction, "ctc_loss")
    return _ctc_loss(log_probs, targets, input_lengths, target_lengths, blank, reduction, zero_infinity, "ctc_loss")
