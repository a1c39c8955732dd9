"""embedding and embedding_bag: torch.nn.functional's lookup tables, pure.

What torch does in place is returned here instead: with ``max_norm`` torch
rescales the referenced rows of ``weight`` before the lookup; :func:`embedding`
returns the lookup of the rescaled rows and :func:`embedding_renorm` returns the
whole rescaled table, for callers who want to store it as torch would.

Gradients w.r.t. ``weight`` are torch's exactly: zero for ``padding_idx``,
divided by the index's frequency in the mini-batch with ``scale_grad_by_freq``,
and, with ``max_norm``, the gradient of a plain lookup of the renormalised table
(torch renormalises under ``no_grad``).  They are built from ``stop_gradient``
arithmetic, so forward- and reverse-mode, ``vmap`` and higher orders all work.

Out-of-range indices: with concrete indices (outside ``jit``) an ``IndexError``
names the layer, the index and ``num_embeddings``; with traced indices (inside
``jit``/``vmap``) the lookup of an out-of-range index, negative ones included,
gives a row of NaN -- never another row.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from .._utils import HALF, compiled_when_eager, concrete, explicit_sharding, gathered, gathered_rows, shape_str

__all__ = ["embedding", "embedding_renorm", "embedding_bag"]

_MODES = ("sum", "mean", "max")


# ------------------------------------------------------------------ validation


def _check_weight(name: str, weight: Any) -> None:
    if jnp.ndim(weight) != 2:
        raise ValueError(
            f"{name}: 'weight' must be 2-D (num_embeddings, embedding_dim), got shape {shape_str(jnp.shape(weight))}"
        )


def _check_indices(name: str, arg: str, x: Any) -> jax.Array:
    x = jnp.asarray(x)
    if not jnp.issubdtype(x.dtype, jnp.integer):
        raise TypeError(f"{name}: {arg} must be an integer array of indices, got dtype {np.dtype(x.dtype).name}")
    return x


def _check_range(name: str, indices: jax.Array, num: int) -> None:
    """IndexError for out-of-range indices when their values are known."""
    values = concrete(indices)
    if values is None or values.size == 0:
        return
    bad = (values < 0) | (values >= num)
    if bad.any():
        first = int(values[bad].ravel()[0])
        raise IndexError(
            f"{name}: index {first} is out of range for num_embeddings={num} (valid indices: 0 to {num - 1})"
        )


def _normalise_padding_idx(name: str, padding_idx: int | None, num: int) -> int | None:
    if padding_idx is None:
        return None
    if isinstance(padding_idx, bool) or not isinstance(padding_idx, (int, np.integer)):
        raise TypeError(f"{name}: padding_idx must be an int or None, got {padding_idx!r}")
    padding_idx = int(padding_idx)
    if not -num <= padding_idx < num:
        raise ValueError(
            f"{name}: padding_idx must be within num_embeddings: -{num} <= padding_idx < {num} "
            f"(num_embeddings={num}), got {padding_idx}"
        )
    return padding_idx + num if padding_idx < 0 else padding_idx


def _check_max_norm(name: str, max_norm: Any, norm_type: Any) -> None:
    if max_norm is not None and not isinstance(max_norm, (int, float, np.integer, np.floating)):
        raise TypeError(f"{name}: max_norm must be a float or None, got {max_norm!r}")
    if not isinstance(norm_type, (int, float, np.integer, np.floating)) or isinstance(norm_type, bool):
        raise TypeError(f"{name}: norm_type must be a float, got {norm_type!r}")


# ------------------------------------------------------------------- the core


def _take_rows(weight: jax.Array, indices: jax.Array) -> jax.Array:
    """``weight[indices]``; out-of-range (incl. negative) indices give NaN rows."""
    num = weight.shape[0]
    safe = jnp.where(indices < 0, num, indices)
    # indices sharded over an Explicit mesh: rows alike; a table sharded by rows (unsharded indices): replicated
    sharding = explicit_sharding(safe, weight.ndim - 1) or gathered_rows(weight, safe.ndim)
    if sharding is not None:
        return weight.at[safe].get(mode="fill", fill_value=jnp.nan, out_sharding=sharding)
    return jnp.take(weight, safe, axis=0, mode="fill", fill_value=jnp.nan)


def _renorm_scale(rows: jax.Array, max_norm: float, norm_type: float) -> jax.Array:
    """torch's ``embedding_renorm_`` factor per row: ``max_norm / (norm + 1e-7)``
    where ``norm > max_norm``, else 1 (shape ``(..., 1)``)."""
    norms = jnp.linalg.norm(rows, ord=norm_type, axis=-1, keepdims=True)
    return jnp.where(norms > max_norm, max_norm / (norms + 1e-7), jnp.ones((), rows.dtype)).astype(rows.dtype)


def _grad_scale(indices: jax.Array, num: int, padding_idx: int | None, scale_grad_by_freq: bool,
                dtype: Any) -> jax.Array | None:
    """Per-index factor applied to the gradient (``None``: factor 1 everywhere)."""
    if padding_idx is None and not scale_grad_by_freq:
        return None
    scale = jnp.ones(indices.shape, dtype)
    if scale_grad_by_freq:
        flat = indices.ravel()
        counts = jax.ops.segment_sum(jnp.ones(flat.shape, jnp.int32), flat, num_segments=num)  # exact counts
        per = jnp.take(counts, indices, mode="fill", fill_value=1)
        scale = (1.0 / jnp.maximum(per, 1).astype(jnp.promote_types(dtype, jnp.float32))).astype(dtype)
    if padding_idx is not None:
        scale = jnp.where(indices == padding_idx, jnp.zeros((), dtype), scale)
    return scale


def _lookup(
    indices: jax.Array,
    weight: jax.Array,
    padding_idx: int | None,
    max_norm: float | None,
    norm_type: float,
    scale_grad_by_freq: bool,
) -> jax.Array:
    """Rows of ``weight`` for ``indices`` with torch's forward and gradient."""
    num = weight.shape[0]
    rows = _take_rows(weight, indices)
    out = rows
    if max_norm is not None:
        # Value: the renormalised rows; gradient: that of the plain lookup (torch
        # renormalises the table in place under no_grad).  `rows - sg(rows)` is
        # exactly 0 in the forward pass, so the value is bit-exact.
        renormed = rows * _renorm_scale(jax.lax.stop_gradient(rows), max_norm, norm_type)
        out = jax.lax.stop_gradient(renormed) + (rows - jax.lax.stop_gradient(rows))
    scale = _grad_scale(indices, num, padding_idx, scale_grad_by_freq, out.dtype)
    if scale is not None:
        scale = scale[..., None]
        fixed = jax.lax.stop_gradient(out)
        if not scale_grad_by_freq:  # padding only: a select is cheaper than arithmetic
            out = jnp.where(scale > 0, out, fixed)
        else:
            out = fixed + (out - fixed) * scale
    return out


# ------------------------------------------------------------------ embedding


def _embedding(
    input: Any,
    weight: Any,
    padding_idx: int | None = None,
    max_norm: float | None = None,
    norm_type: float = 2.0,
    scale_grad_by_freq: bool = False,
    *,
    name: str = "embedding",
) -> jax.Array:
    _check_weight(name, weight)
    indices = _check_indices(name, "input", input)
    weight = jnp.asarray(weight)
    num = weight.shape[0]
    padding_idx = _normalise_padding_idx(name, padding_idx, num)
    _check_max_norm(name, max_norm, norm_type)
    _check_range(name, indices, num)
    return compiled_when_eager(_lookup, (padding_idx, max_norm, norm_type, scale_grad_by_freq), indices, weight)


def embedding(
    input: Any,
    weight: Any,
    padding_idx: int | None = None,
    max_norm: float | None = None,
    norm_type: float = 2.0,
    scale_grad_by_freq: bool = False,
    sparse: bool = False,
) -> jax.Array:
    """Look up rows of an embedding table: ``torch.nn.functional.embedding``.

    Args:
      input: integer indices of any shape, in ``[0, num_embeddings)``.
      weight: the table, ``(num_embeddings, embedding_dim)``.
      padding_idx: entries equal to it get no gradient (the row itself is returned
        as stored, as torch does); negative values count from the end.
      max_norm: rows referenced by ``input`` whose ``norm_type``-norm exceeds it are
        rescaled to norm ``max_norm`` (factor ``max_norm / (norm + 1e-7)``) before the
        lookup.  Pure: ``weight`` is not modified; use :func:`embedding_renorm` to get
        the renormalised table torch would have stored.  The gradient is the plain
        lookup's, as in torch.
      norm_type: the p of the p-norm for ``max_norm``.
      scale_grad_by_freq: divide each row's gradient by the number of times its index
        occurs in ``input``.
      sparse: accepted for compatibility; JAX gradients are dense.

    Returns:
      ``weight[input]``, shape ``(*input.shape, embedding_dim)``.

    Shape:
      input ``(*)``, weight ``(V, D)`` -> output ``(*, D)``.

    Out-of-range indices raise ``IndexError`` when ``input`` is concrete; under
    ``jit``/``vmap`` they give rows of NaN (never another row).

    Example:
      >>> import jax.numpy as jnp
      >>> from jaxlayers import functional as F
      >>> w = jnp.arange(6.0).reshape(3, 2)
      >>> F.embedding(jnp.array([[2, 0]]), w).tolist()
      [[[4.0, 5.0], [0.0, 1.0]]]
    """
    del sparse
    return _embedding(input, weight, padding_idx, max_norm, norm_type, scale_grad_by_freq, name="embedding")


def embedding_renorm(weight: Any, input: Any, max_norm: float, norm_type: float = 2.0) -> jax.Array:
    """The table torch's ``embedding``/``embedding_bag`` leave behind with ``max_norm``.

    Pure version of ``torch.embedding_renorm_(weight, input, max_norm, norm_type)``:
    every row referenced by ``input`` whose ``norm_type``-norm exceeds ``max_norm``
    is multiplied by ``max_norm / (norm + 1e-7)``; the others are unchanged.

    Args:
      weight: the table, ``(num_embeddings, embedding_dim)``.
      input: integer indices of any shape; only their rows are renormalised.
      max_norm: the largest allowed ``norm_type``-norm.
      norm_type: the p of the p-norm. Default 2.

    Shape:
      weight ``(V, D)``, input ``(*)`` -> ``(V, D)``.

    Example:
      >>> import jax.numpy as jnp
      >>> from jaxlayers import functional as F
      >>> w = jnp.array([[3.0, 4.0], [0.0, 2.0]])
      >>> w = F.embedding_renorm(w, jnp.array([0]), max_norm=1.0)   # store it, as torch would
      >>> [[round(v, 4) for v in row] for row in w.tolist()]       # row 1 not looked up: unchanged
      [[0.6, 0.8], [0.0, 2.0]]
    """
    name = "embedding_renorm"
    _check_weight(name, weight)
    indices = _check_indices(name, "input", input)
    weight = jnp.asarray(weight)
    if max_norm is None:
        raise TypeError(f"{name}: max_norm must be a float, got None")
    _check_max_norm(name, max_norm, norm_type)
    num = weight.shape[0]
    _check_range(name, indices, num)
    return compiled_when_eager(_renormed, (max_norm, norm_type), weight, indices)


def _renormed(weight: jax.Array, indices: jax.Array, max_norm: float, norm_type: float) -> jax.Array:
    flat = indices.ravel()  # only these rows are read and written, as torch (not the whole table)
    rows = weight.at[flat].get(out_sharding=gathered_rows(weight, 1))  # a table sharded by rows: replicated
    return weight.at[flat].set(rows * _renorm_scale(rows, max_norm, norm_type), mode="drop",
                               out_sharding=explicit_sharding(weight))  # and written back in place


# -------------------------------------------------------------- embedding_bag


def _check_bags(name: str, input: jax.Array, offsets: Any, include_last_offset: bool) -> tuple[jax.Array | None, int]:
    """The checked offsets (``None`` for 2-D input: bags of one length) and the number of bags."""
    if input.ndim == 2:
        if offsets is not None:
            raise ValueError(
                f"{name}: if input is 2-D, offsets has to be None, as input is treated as a mini-batch of "
                f"fixed length sequences; got input of shape {shape_str(input.shape)} and offsets of shape "
                f"{shape_str(jnp.shape(offsets))}"
            )
        return None, input.shape[0]
    if input.ndim != 1:
        raise ValueError(
            f"{name}: input has to be 1-D (with offsets) or 2-D, got {input.ndim}-D input of shape {shape_str(input.shape)}"
        )
    if offsets is None:
        raise ValueError(f"{name}: offsets has to be a 1-D array of bag starts when input is 1-D, got None")
    offsets = _check_indices(name, "offsets", offsets)
    if offsets.ndim != 1:
        raise ValueError(f"{name}: offsets has to be a 1-D array, got shape {shape_str(offsets.shape)}")
    if include_last_offset and offsets.shape[0] == 0:
        raise ValueError(f"{name}: include_last_offset=True needs at least one offset, got offsets of shape (0,)")
    num_bags = offsets.shape[0] - 1 if include_last_offset else offsets.shape[0]
    values = concrete(offsets)
    if values is not None and values.size > 0:
        if values[0] != 0:
            raise ValueError(
                f"{name}: offsets[0] has to be 0, i.e. the first bag has to start at position 0, got {int(values[0])}"
            )
        if values[-1] > input.shape[0]:
            raise ValueError(
                f"{name}: offsets[-1] can not be greater than input's length {input.shape[0]}, got {int(values[-1])}"
            )
        if include_last_offset and values[-1] != input.shape[0]:  # torch's kernels disagree there (by mode, dtype)
            raise ValueError(f"{name}: with include_last_offset=True, offsets[-1] has to be input's length "
                             f"{input.shape[0]} (the end of the last bag), got {int(values[-1])}")
        if (np.diff(values) < 0).any():
            raise ValueError(f"{name}: offsets must be non-decreasing, got {values.tolist()}")
    return offsets, num_bags


def _embedding_bag(
    input: Any,
    weight: Any,
    offsets: Any = None,
    max_norm: float | None = None,
    norm_type: float = 2.0,
    scale_grad_by_freq: bool = False,
    mode: str = "mean",
    per_sample_weights: Any = None,
    include_last_offset: bool = False,
    padding_idx: int | None = None,
    *,
    name: str = "embedding_bag",
) -> jax.Array:
    _check_weight(name, weight)
    indices = _check_indices(name, "input", input)
    weight = jnp.asarray(weight)
    num, dim = weight.shape
    if mode not in _MODES:
        raise ValueError(f"{name}: mode has to be one of sum, mean or max, got {mode!r}")
    if mode == "max" and scale_grad_by_freq:
        raise ValueError(f"{name}: max mode does not support scaling the gradient by the frequency (scale_grad_by_freq=True)")
    padding_idx = _normalise_padding_idx(name, padding_idx, num)
    _check_max_norm(name, max_norm, norm_type)
    if per_sample_weights is not None:
        if mode != "sum":
            raise ValueError(
                f"{name}: per_sample_weights is only supported for mode='sum', got mode={mode!r}"
            )
        per_sample_weights = jnp.asarray(per_sample_weights)
        if per_sample_weights.shape != indices.shape:
            raise ValueError(
                f"{name}: per_sample_weights (shape {shape_str(per_sample_weights.shape)}) must have the same "
                f"shape as the input (shape {shape_str(indices.shape)})"
            )
        if not jnp.issubdtype(per_sample_weights.dtype, jnp.floating):
            raise TypeError(
                f"{name}: per_sample_weights must be a floating-point array, got dtype {per_sample_weights.dtype}"
            )
    if indices.ndim == 1:  # bags of any length: each device needs the whole input where a mesh shards it
        indices, offsets, per_sample_weights = gathered(indices), gathered(offsets), gathered(per_sample_weights)
    offsets, num_bags = _check_bags(name, indices, offsets, include_last_offset)
    _check_range(name, indices, num)
    static = (num_bags, padding_idx, max_norm, norm_type, scale_grad_by_freq, mode)
    return compiled_when_eager(_bags, static, indices, weight, offsets, per_sample_weights)


def _bags(flat: jax.Array, weight: jax.Array, offsets: jax.Array | None, per_sample_weights: jax.Array | None,
          num_bags: int, padding_idx: int | None, max_norm: float | None, norm_type: float,
          scale_grad_by_freq: bool, mode: str) -> jax.Array:
    """:func:`embedding_bag`'s arithmetic on checked arguments (``offsets`` ``None``: 2-D input)."""
    if offsets is None:  # bags of one length: reductions over dim 1 (a batch sharded over a mesh stays so)
        segments = None
        bag_sum = lambda v: jnp.sum(v, axis=1)  # noqa: E731
    else:
        # Bag of position i: the last b with offsets[b] <= i.  Traced offsets are not checked: positions
        # past a last offset below input's length, with include_last_offset, land in bag `num_bags` (dropped).
        segments = jnp.searchsorted(offsets, jnp.arange(flat.shape[0]), side="right") - 1
        bag_sum = lambda v: jax.ops.segment_sum(v, segments, num_segments=num_bags)  # noqa: E731
    rows = _lookup(flat, weight, padding_idx, max_norm, norm_type, scale_grad_by_freq)
    keep = None if padding_idx is None else (flat != padding_idx)
    if mode == "max":
        return _bag_max(rows, segments, num_bags, keep) if segments is not None else _fixed_bag_max(rows, keep)
    dtype = rows.dtype
    if dtype in HALF:  # torch accumulates half-precision bags in float32 (a bf16 sum stops growing at 256-512)
        rows = rows.astype(jnp.float32)
    if per_sample_weights is not None:
        rows = rows * per_sample_weights.astype(dtype).astype(rows.dtype)[..., None]
    if keep is not None:
        rows = jnp.where(keep[..., None], rows, jnp.zeros((), rows.dtype))
    out = bag_sum(rows)
    if mode == "mean":
        counts = bag_sum(jnp.ones(flat.shape, jnp.int32) if keep is None else keep.astype(jnp.int32))
        out = out / jnp.maximum(counts, 1).astype(out.dtype)[:, None]
    return out.astype(dtype)


def _fixed_bag_max(rows: jax.Array, keep: jax.Array | None) -> jax.Array:
    """:func:`_bag_max` for bags of one length, ``rows`` ``(B, L, D)``: reductions over dim 1."""
    bags, length, dim = rows.shape
    if length == 0 or bags == 0:
        return jnp.zeros((bags, dim), rows.dtype)
    valid = jnp.ones((bags, length), bool) if keep is None else keep
    first = jnp.argmax(valid, axis=1)                                          # (B,)
    first_nan = jnp.isnan(jnp.take_along_axis(rows, first[:, None, None], axis=1)[:, 0])  # (B, D)
    vals = jax.lax.stop_gradient(jnp.where(valid[..., None] & ~jnp.isnan(rows), rows, -jnp.inf))
    hit = valid[..., None] & (vals == jnp.max(vals, axis=1, keepdims=True))
    pick = jnp.where(first_nan, first[:, None], jnp.argmax(hit, axis=1))        # (B, D): first of equal maxima
    out = jnp.take_along_axis(rows, pick[:, None], axis=1)[:, 0]
    return jnp.where(jnp.any(valid, axis=1)[:, None], out, jnp.zeros((), out.dtype))


def _bag_max(rows: jax.Array, segments: jax.Array, num_bags: int, keep: jax.Array | None) -> jax.Array:
    """Each bag's maximum per column, picked as torch picks it: the bag's first row
    (padding skipped), then every later row greater than the current pick (``>``:
    the first of equal maxima wins, and a NaN counts only as the first row).  The
    result is a gather of the picked rows, so the gradient goes to those alone.
    Empty bags (or bags of padding only) give zeros."""
    length = rows.shape[0]
    if length == 0 or num_bags == 0:
        return jnp.zeros((num_bags, rows.shape[1]), rows.dtype)
    pos = jnp.arange(length)
    valid = segments < num_bags  # positions past include_last_offset's last bag
    if keep is not None:
        valid = valid & keep
    first = jax.ops.segment_min(jnp.where(valid, pos, length), segments, num_segments=num_bags)
    empty = first >= length
    first = jnp.minimum(first, length - 1)
    first_nan = jnp.isnan(rows[first])                                        # (bags, D)
    neg = jnp.asarray(-jnp.inf, rows.dtype)
    vals = jax.lax.stop_gradient(jnp.where(valid[:, None] & ~jnp.isnan(rows), rows, neg))
    best = jax.ops.segment_max(vals, segments, num_segments=num_bags)          # (bags, D)
    hit = valid[:, None] & (vals == best[jnp.minimum(segments, num_bags - 1)])
    pick = jax.ops.segment_min(jnp.where(hit, pos[:, None], length), segments, num_segments=num_bags)
    pick = jnp.where(first_nan, first[:, None], jnp.minimum(pick, length - 1))
    out = jnp.take_along_axis(rows, pick, axis=0)
    return jnp.where(empty[:, None], jnp.zeros((), out.dtype), out)


def embedding_bag(
    input: Any,
    weight: Any,
    offsets: Any = None,
    max_norm: float | None = None,
    norm_type: float = 2,
    scale_grad_by_freq: bool = False,
    mode: str = "mean",
    sparse: bool = False,
    per_sample_weights: Any = None,
    include_last_offset: bool = False,
    padding_idx: int | None = None,
) -> jax.Array:
    """Sums, means or maxima of bags of embeddings: ``torch.nn.functional.embedding_bag``.

    Computed with segment reductions (``jax.ops.segment_sum``/``segment_max``), no
    loop over bags.

    Args:
      input: integer indices; 2-D ``(B, N)`` is ``B`` bags of ``N`` indices, 1-D
        ``(L,)`` needs ``offsets``.
      weight: the table, ``(num_embeddings, embedding_dim)``.
      offsets: 1-D start position of each bag in a 1-D ``input`` (``offsets[0] == 0``,
        non-decreasing); ``None`` for 2-D input.
      max_norm, norm_type, scale_grad_by_freq: as :func:`embedding` (not with
        ``mode="max"`` for ``scale_grad_by_freq``).
      mode: ``"sum"``, ``"mean"`` or ``"max"`` (per feature; as torch, the first of
        tied maxima takes the gradient and a NaN counts only as the bag's first row).
      sparse: accepted for compatibility; JAX gradients are dense.
      per_sample_weights: float weights of ``input``'s shape, ``mode="sum"`` only.
      include_last_offset: ``offsets`` has one more entry than bags, the last being
        the end of the last bag, ``len(input)`` (ignored for 2-D input, as torch).
      padding_idx: entries equal to it are left out of their bag (not counted by the
        mean) and get no gradient.

    Returns:
      ``(B, embedding_dim)``; empty bags (and bags holding only ``padding_idx``) are zeros.

    Shape:
      ``B = input.shape[0]`` for 2-D input, else ``len(offsets)`` (minus 1 with
      ``include_last_offset``).

    Out-of-range indices raise ``IndexError`` when ``input`` is concrete and give NaN
    under ``jit``/``vmap``.  Offsets are validated (``ValueError``) only when concrete.

    Example:
      >>> import jax.numpy as jnp
      >>> from jaxlayers import functional as F
      >>> w = jnp.arange(6.0).reshape(3, 2)
      >>> F.embedding_bag(jnp.array([0, 2, 1]), w, jnp.array([0, 2]), mode="sum").tolist()
      [[4.0, 6.0], [2.0, 3.0]]
    """
    del sparse
    return _embedding_bag(
        input, weight, offsets, max_norm, norm_type, scale_grad_by_freq, mode,
        per_sample_weights, include_last_offset, padding_idx, name="embedding_bag",
    )
