"""grouped_mm (torch.nn.functional.grouped_mm): one matrix product per group, as in
Mixture-of-Experts layers, with the groups of a 2-D operand given by end offsets."""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from .._utils import concrete, shape_str

__all__ = ["grouped_mm"]

_NAME = "grouped_mm"


def _group_mask(offs: jax.Array, length: int) -> jax.Array:
    """``(G, length)`` booleans: position ``i`` is in group ``g`` when
    ``offs[g - 1] <= i < offs[g]`` (``offs[-1]`` is 0); positions past ``offs[-1]`` are in none."""
    ends = offs.astype(jnp.int32)
    starts = jnp.concatenate([jnp.zeros((1,), jnp.int32), ends[:-1]])
    i = jnp.arange(length, dtype=jnp.int32)
    return (i >= starts[:, None]) & (i < ends[:, None])


def _check_offs(offs: Any, groups: int | None, length: int, what: str) -> jax.Array:
    offs = jnp.asarray(offs)
    if offs.ndim != 1 or not jnp.issubdtype(offs.dtype, jnp.integer):
        raise ValueError(f"{_NAME}: offs must be a 1-D integer array of group end offsets, got "
                         f"{offs.dtype} of shape {shape_str(offs)}")
    if groups is not None and offs.shape[0] != groups:
        raise ValueError(f"{_NAME}: offs has {offs.shape[0]} entries but the 3-D operand has {groups} groups")
    values = concrete(offs)
    if values is not None and values.size:
        if (values < 0).any() or (np.diff(values) < 0).any():
            raise ValueError(f"{_NAME}: offs must be non-negative and non-decreasing, got {values.tolist()}")
        if values[-1] > length:
            raise ValueError(f"{_NAME}: offs[-1]={int(values[-1])} is past the end of the grouped dimension "
                             f"({what} of size {length})")
    return offs


def grouped_mm(mat_a: Any, mat_b: Any, *, offs: Any = None, bias: Any = None, out_dtype: Any = None,
               precision: Any = None) -> jax.Array:
    """``torch.nn.functional.grouped_mm``: a matrix product per group.

    The operands are 2-D or 3-D; a 3-D operand lists its groups on axis 0, a 2-D one
    is cut into groups along one dimension by ``offs`` (``offs[g]`` is where group
    ``g`` ends; ``offs[-1]`` may stop short, the rest is left out):

    * ``(M, K) x (G, K, N) -> (M, N)``: the rows of ``mat_a`` in group ``g`` times
      ``mat_b[g]`` (MoE experts over tokens sorted by expert); rows past ``offs[-1]``
      are zero (torch leaves them unwritten).
    * ``(G, M, K) x (K, N) -> (M, N)``: ``mat_a[g]`` times the columns of ``mat_b`` in
      group ``g``; columns past ``offs[-1]`` are zero.
    * ``(M, K) x (K, N) -> (G, M, N)``: the product over the ``K`` positions of group
      ``g`` (the weight gradient of the first form).
    * ``(G, M, K) x (G, K, N) -> (G, M, N)``: a batched product (``offs=None``).

    Written as one dense product over the groups with the others masked out (what
    ``lax.ragged_dot`` does on CPU), so every transform works: ``jvp``, ``vmap``,
    ``hessian``; the arithmetic is ``G`` times that of the groups alone.

    Args:
      mat_a: ``(M, K)`` or ``(G, M, K)``.
      mat_b: ``(G, K, N)``, ``(K, N)``.
      offs: 1-D integer array of the ``G`` group ends, non-decreasing (checked when
        its values are known); required when an operand is 2-D, else None.
      bias: not supported, as in torch (raises NotImplementedError).
      out_dtype: dtype of the result (the product accumulates in it); default: the
        promoted input dtype.  torch's CPU kernel accepts only the input dtype.
      precision: XLA precision of the products (``jax.lax.Precision``).

    Shape: see the four forms above.

    Example:
      >>> import jax.numpy as jnp
      >>> from jaxlayers import functional as F
      >>> tokens = jnp.ones((5, 2))                     # rows 0-1 to expert 0, rows 2-4 to expert 1
      >>> experts = jnp.stack([jnp.eye(2), 2 * jnp.eye(2)])
      >>> F.grouped_mm(tokens, experts, offs=jnp.array([2, 5]))[:, 0].tolist()
      [1.0, 1.0, 2.0, 2.0, 2.0]
    """
    a, b = jnp.asarray(mat_a), jnp.asarray(mat_b)
    if bias is not None:
        raise NotImplementedError(f"{_NAME}: bias is not supported (torch's grouped_mm raises too)")
    if a.ndim not in (2, 3) or b.ndim not in (2, 3):
        raise ValueError(f"{_NAME}: mat_a and mat_b must be 2-D or 3-D, got shapes {shape_str(a)} and {shape_str(b)}")
    for arr, arg in ((a, "mat_a"), (b, "mat_b")):
        if not jnp.issubdtype(arr.dtype, jnp.floating):
            raise TypeError(f"{_NAME}: {arg} must be a floating-point array, got dtype {arr.dtype}")
    if a.shape[-1] != b.shape[-2]:
        raise ValueError(f"{_NAME}: contraction dimension of mat_a (shape {shape_str(a)}, last dim) and mat_b "
                         f"(shape {shape_str(b)}, second to last dim) must match")
    dtype = jnp.result_type(a.dtype, b.dtype)
    out_dtype = dtype if out_dtype is None else jnp.dtype(out_dtype)
    a, b = a.astype(dtype), b.astype(dtype)
    both_3d = a.ndim == 3 and b.ndim == 3
    if both_3d != (offs is None):
        raise ValueError(f"{_NAME}: offs is required when an operand is 2-D and must be None when both are 3-D "
                         f"(shapes {shape_str(a)} and {shape_str(b)})")
    if both_3d and a.shape[0] != b.shape[0]:
        raise ValueError(f"{_NAME}: mat_a and mat_b must have the same number of groups, got shapes "
                         f"{shape_str(a)} and {shape_str(b)}")
    dot = lambda x, y, spec: jnp.einsum(spec, x, y, precision=precision, preferred_element_type=out_dtype)
    zero = jnp.zeros((), dtype)
    if both_3d:
        return dot(a, b, "gmk,gkn->gmn")
    if a.ndim == 2 and b.ndim == 3:   # rows of mat_a grouped
        mask = _group_mask(_check_offs(offs, b.shape[0], a.shape[0], "rows of mat_a"), a.shape[0])
        return dot(jnp.where(mask[:, :, None], a[None], zero), b, "gmk,gkn->mn")
    if a.ndim == 3:                   # columns of mat_b grouped
        mask = _group_mask(_check_offs(offs, a.shape[0], b.shape[1], "columns of mat_b"), b.shape[1])
        return dot(a, jnp.where(mask[:, None, :], b[None], zero), "gmk,gkn->mn")
    mask = _group_mask(_check_offs(offs, None, a.shape[1], "the contraction dim"), a.shape[1])   # K grouped
    return dot(jnp.where(mask[:, None, :], a[None], zero), b, "gmk,kn->gmn")
