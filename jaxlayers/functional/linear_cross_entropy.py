"""``linear_cross_entropy``: a linear projection fused with cross entropy, computed in chunks of rows
so that the ``(tokens, classes)`` logits never exist in full, forward or backward.

``lax.map`` runs over chunks of ``chunk_size`` rows; each chunk's logits, log-softmax and loss are
under ``jax.checkpoint``, so the backward pass recomputes one chunk's logits at a time and
accumulates the weight gradient across chunks.  Values and gradients equal
``cross_entropy(linear(input, weight, bias), target, ...)`` (the unfused form), which is also the
path for K-dimensional weights ``(C, d1, ..., dK, in_features)`` (torch falls back there too).
"""

from __future__ import annotations

import math
from typing import Any

import jax
import jax.numpy as jnp

from .._utils import HALF, compiled, shape_str
from .loss import _check_index_target, _check_label_smoothing, _cross_entropy, _ignored, _legacy_reduction, _reduce

__all__ = ["linear_cross_entropy"]

# rows per chunk by default: about this many logits per chunk (16 MiB in float32)
CHUNK_ELEMENTS = 1 << 22


def _chunk_rows(num_classes: int, rows: int, chunk_size: int | None, options: Any) -> int:
    if chunk_size is None and options is not None:
        chunk_size = getattr(options, "batch_chunk_size", None)
    if chunk_size is None:
        chunk_size = max(1, CHUNK_ELEMENTS // max(num_classes, 1))
    return max(1, min(int(chunk_size), max(rows, 1)))


def _logits(xs: jax.Array, w: jax.Array, b: jax.Array | None, precision: Any) -> jax.Array:
    y = jnp.einsum("ni,c...i->nc...", xs, w, precision=precision)
    return y if b is None else y + b


def _chunk_losses(xp: jax.Array, tp: jax.Array, w: jax.Array, b: Any, weight: Any, ignore_index: int,
                  label_smoothing: float, name: str, precision: Any) -> jax.Array:
    """Per-row losses of ``(chunks, rows, in)`` inputs, one chunk's logits alive at a time."""
    @jax.checkpoint
    def chunk_loss(args: tuple) -> jax.Array:
        xc, tc = args
        return _cross_entropy(_logits(xc, w, b, precision), tc, weight, ignore_index, "none", label_smoothing, name)

    return jax.lax.map(chunk_loss, (xp, tp))


def _linear_cross_entropy(input: Any, linear_weight: Any, target: Any, linear_bias: Any, weight: Any,
                          reduction: str, ignore_index: int | None, label_smoothing: float, chunk_size: int | None,
                          options: Any, name: str, precision: Any = None) -> jax.Array:
    x, w = jnp.asarray(input), jnp.asarray(linear_weight)
    dtype = jnp.result_type(x, w, *(() if linear_bias is None else (linear_bias,)))
    if dtype in HALF:  # float32 throughout, rounded once: gradients summed over rows and chunks in float32
        up = [None if a is None else jnp.asarray(a).astype(jnp.float32) for a in (x, w, linear_bias)]
        return _linear_cross_entropy(up[0], up[1], target, up[2], weight, reduction, ignore_index, label_smoothing,
                                     chunk_size, options, name, precision).astype(dtype)
    t = jnp.asarray(target)
    if x.ndim not in (1, 2):
        raise ValueError(f"{name}: expected input of shape (in_features,) or (N, in_features), got {shape_str(x)}")
    if w.ndim < 2:
        raise ValueError(f"{name}: expected linear_weight of shape (C, [d1, ...,] in_features), got {shape_str(w)}")
    if x.shape[-1] != w.shape[-1]:
        raise ValueError(f"{name}: input {shape_str(x)} and linear_weight {shape_str(w)} differ in their last "
                         "dimension (in_features)")
    num_classes, out_features = w.shape[0], w.shape[1:-1]
    b = None if linear_bias is None else jnp.asarray(linear_bias)
    if b is not None and b.shape != w.shape[:-1]:
        raise ValueError(f"{name}: expected linear_bias of shape {shape_str(w.shape[:-1])}, got {shape_str(b)}")
    if out_features and x.ndim == 1:
        raise ValueError(f"{name}: a K-dimensional linear_weight {shape_str(w)} needs batched input (N, "
                         f"{x.shape[-1]}), got {shape_str(x)}")
    logits_shape = x.shape[:-1] + w.shape[:-1]
    probs = t.shape == logits_shape
    if probs and ignore_index is not None:
        raise ValueError(f"{name}: ignore_index cannot be given when target holds class probabilities "
                         f"(target {shape_str(t)})")
    ignore_index = -100 if ignore_index is None else ignore_index

    if out_features or x.ndim == 1:  # unfused, as torch for K-dim
        xs = x if x.ndim == 2 else x[None]
        logits = _logits(xs, w, b, precision)
        return _cross_entropy(logits if x.ndim == 2 else logits[0], t, weight, ignore_index, reduction,
                              label_smoothing, name)

    # validate once on the whole target (shapes, dtype, concrete indices), then chunk
    n = x.shape[0]
    expected = (n, num_classes) if probs else (n,)
    if t.shape != expected:
        raise ValueError(f"{name}: expected target of class indices of shape ({n},) or class probabilities of shape "
                         f"({n}, {num_classes}) for input {shape_str(x)}, got {shape_str(t)}")
    if not probs:
        _check_index_target(name, t, num_classes, ignore_index)
    elif not jnp.issubdtype(t.dtype, jnp.floating):
        raise TypeError(f"{name}: class-probability targets must be floating point, got {t.dtype}")
    if weight is not None and jnp.shape(weight) != (num_classes,):
        raise ValueError(f"{name}: weight must have shape ({num_classes},), got {shape_str(jnp.shape(weight))}")
    _check_label_smoothing(name, label_smoothing)

    rows = _chunk_rows(num_classes, n, chunk_size, options)
    chunks = math.ceil(n / rows) if n else 0
    pad = chunks * rows - n
    xp = jnp.pad(x, ((0, pad), (0, 0))).reshape(chunks, rows, x.shape[1])
    # padded rows are sliced off below; their target is class 0 so that their loss is finite (a NaN one,
    # e.g. ignore_index wrapped in uint8, times its zero cotangent put NaN into the weight's gradient)
    tp = jnp.pad(t, ((0, pad),) + ((0, 0),) * (t.ndim - 1))
    tp = tp.reshape((chunks, rows) + t.shape[1:])

    per_row = compiled(_chunk_losses, (ignore_index, label_smoothing, name, precision), xp, tp, w, b,
                       None if weight is None else jnp.asarray(weight)).reshape(-1)[:n]
    if reduction != "mean" or probs:
        return _reduce(per_row, reduction)
    valid = (t >= 0) & (t < num_classes)
    wy = jnp.ones(t.shape, per_row.dtype) if weight is None else jnp.asarray(weight, per_row.dtype)[
        jnp.where(valid, t, 0)]
    wy = jnp.where(_ignored(t, ignore_index), 0.0, jnp.where(valid, wy, jnp.nan))
    total = jnp.sum(wy)
    # torch divides the loss and the smoothing term by the weight sum apart: no weight is 0/0 = NaN
    # (one division of their sum would give inf when only the smoothing term is non-zero)
    return jnp.where(total == 0, jnp.nan, _reduce(per_row, reduction, total))


def linear_cross_entropy(input: Any, linear_weight: Any, target: Any, *, linear_bias: Any = None, weight: Any = None,
                         reduction: str = "mean", ignore_index: int | None = None, label_smoothing: float = 0.0,
                         options: Any = None, chunk_size: int | None = None, precision: Any = None) -> jax.Array:
    """``cross_entropy(linear(input, linear_weight, linear_bias), target, ...)`` without materialising
    the logits, as ``torch.nn.functional.linear_cross_entropy``.

    Args:
        input: ``(N, in_features)`` or ``(in_features,)``.
        linear_weight: ``(C, in_features)`` or ``(C, d1, ..., dK, in_features)`` (K-dim loss, unfused).
        target: class indices ``(N,)`` / ``(N, d1, ..., dK)`` / ``()`` or class probabilities of the
            logits' shape ``(N, C, d1, ...)``.
        linear_bias: ``(C, d1, ..., dK)`` or None.
        weight, reduction, label_smoothing: as :func:`cross_entropy`.
        ignore_index: as :func:`cross_entropy` (None means -100; must be None with probabilities).
        options: torch's ``LinearCrossEntropyOptions`` or anything with ``batch_chunk_size``; only that
            field is read (the chunked path is always taken for 2-D weights).
        chunk_size: rows per chunk (jaxlayers); default about ``2**22 / C`` rows.
        precision: ``lax.Precision`` of the projection.

    Shape: ``'none'``: the target's index shape; otherwise a scalar.

    Peak memory of the chunked forward + backward is about ``chunk_size * C`` logits instead of
    ``N * C``; see ``docs/loss.md`` for the measurement.

    Example:
        >>> import jax.numpy as jnp
        >>> from jaxlayers import functional as F
        >>> x, w = jnp.ones((5, 3)), jnp.zeros((7, 3))
        >>> print(round(float(F.linear_cross_entropy(x, w, jnp.arange(5), chunk_size=2)), 4))
        1.9459
    """
    name = "linear_cross_entropy"
    reduction = _legacy_reduction(None, None, reduction, name)
    return _linear_cross_entropy(input, linear_weight, target, linear_bias, weight, reduction, ignore_index,
                                 label_smoothing, chunk_size, options, name, precision)
