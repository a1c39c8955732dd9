"""Shape ops with torch semantics: split, chunk, squeeze, unsqueeze, flatten, view, expand, repeat, ..."""

from __future__ import annotations

import math

import jax.numpy as jnp

from .._utils import shape_str

__all__ = ["flatten", "unflatten"]


def _dim(dim: int, ndim: int, op: str) -> int:
    lo, hi = (-ndim, ndim - 1) if ndim else (-1, 0)
    if not isinstance(dim, int) or not lo <= dim <= hi:
        raise IndexError(f"{op}: dimension out of range (expected to be in range of [{lo}, {hi}], but got {dim})")
    return dim % max(ndim, 1)


def flatten(x, start_dim: int = 0, end_dim: int = -1):
    """``torch.flatten``: merge dims ``start_dim..end_dim`` into one."""
    if x.ndim == 0:
        return jnp.reshape(x, (1,))
    s, e = _dim(start_dim, x.ndim, "flatten"), _dim(end_dim, x.ndim, "flatten")
    if s > e:
        raise ValueError(f"flatten: start_dim ({start_dim}) cannot come after end_dim ({end_dim})")
    shape = x.shape[:s] + (math.prod(x.shape[s : e + 1]),) + x.shape[e + 1 :]
    return jnp.reshape(x, shape)


def unflatten(x, dim: int, sizes):
    """``torch.unflatten``: expand dim ``dim`` into ``sizes`` (one entry may be -1)."""
    d = _dim(dim, x.ndim, "unflatten")
    sizes = tuple(int(s) for s in sizes)
    if sizes.count(-1) > 1:
        raise ValueError("unflatten: only one dimension can be inferred (-1)")
    known = math.prod(s for s in sizes if s != -1)
    if -1 in sizes:
        if known == 0 or x.shape[d] % known:
            raise ValueError(f"unflatten: sizes {sizes} don't fit dim {dim} of size {x.shape[d]} in shape {shape_str(x)}")
        sizes = tuple(x.shape[d] // known if s == -1 else s for s in sizes)
    elif known != x.shape[d]:
        raise ValueError(
            f"unflatten: provided sizes {sizes} don't multiply up to the size of dim {dim} ({x.shape[d]}) in the input tensor of shape {shape_str(x)}"
        )
    return jnp.reshape(x, x.shape[:d] + sizes + x.shape[d + 1 :])
