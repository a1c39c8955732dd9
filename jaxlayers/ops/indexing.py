"""Indexing ops with torch semantics: ``gather``.

``torch.gather`` differs from ``jnp.take_along_axis``: the index may be smaller than
the input in every dim but ``dim`` (the input is cut to the index's shape there), and
a negative or too large index is an error, never wrapped.
"""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np

from .. import interop
from .._utils import concrete, is_torch_tensor, shape_str
from .shape import _dim

__all__ = ["gather"]


def gather(input, dim: int, index, *, sparse_grad: bool = False):
    """``torch.gather``: ``out[i][j][k] = input[index[i][j][k]][j][k]`` for ``dim=0`` (and so on).

    Args:
        input: the source array.
        dim: the dim ``index`` indexes along (negative counts from the end).
        index: int32/int64 array with ``input``'s number of dims (0-d counts as 1-d); along every other dim
            ``index.shape[d] <= input.shape[d]``.  Indices must lie in ``[0, input.shape[dim])``:
            a concrete index outside is torch's error (``IndexError`` here); under tracing it
            cannot be checked and gives NaN (floating inputs) or the dtype's fill value, never a
            wrapped element.
        sparse_grad: accepted for torch's signature; gradients are dense in JAX.

    Shape: ``index``'s shape.

    Example:
        >>> import jax.numpy as jnp
        >>> from jaxlayers import ops
        >>> q = jnp.array([[1., 2., 3.], [4., 5., 6.]])
        >>> ops.gather(q, 1, jnp.array([[2], [0]])).tolist()   # DQN's q.gather(1, actions)
        [[3.0], [4.0]]
    """
    index, input = (interop.to_numpy(a) if is_torch_tensor(a) else a for a in (index, input))
    x, out_shape = jnp.asarray(input), np.shape(index)
    dtype = np.dtype(getattr(index, "dtype", None) or np.asarray(index).dtype)
    if dtype not in (np.int32, np.int64):  # torch's rule; unsigned indices would wrap inside take_along_axis
        raise TypeError(f"gather(): Expected dtype int32/int64 for index, got {dtype}")
    if max(len(out_shape), 1) != max(x.ndim, 1):  # a 0-d array counts as 1-d, as torch's check
        raise ValueError(f"gather(): Index tensor must have the same number of dimensions as input tensor; "
                         f"input {shape_str(x)}, index {shape_str(out_shape)}")
    d = _dim(dim, x.ndim, "gather")
    values = concrete(index)  # checked before any cast: int64 values past int32 would wrap in jnp.asarray
    x, index = jnp.atleast_1d(x), jnp.atleast_1d(jnp.asarray(index))
    if any(i > s for k, (i, s) in enumerate(zip(index.shape, x.shape)) if k != d):
        raise ValueError(f"gather(): Size does not match at a dimension other than {d}: index {shape_str(index)} "
                         f"is larger than input {shape_str(x)}")
    n = x.shape[d]
    if values is not None and values.size:
        low, high = int(values.min()), int(values.max())
        if low < 0 or high >= n:
            bad = low if low < 0 else high
            raise IndexError(f"gather(): index {bad} is out of bounds for dimension {d} with size {n}")
    x = x[tuple(slice(None) if k == d else slice(0, i) for k, i in enumerate(index.shape))]
    out = jnp.take_along_axis(x, jnp.where(index < 0, n, index), axis=d, mode="fill")
    return out.reshape(out_shape)
