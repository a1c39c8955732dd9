"""Reductions with torch semantics: mean, sum, var, std, max, min.

``dim`` is an int, a tuple of ints, or None (all dims); duplicated dims are an
error, as in torch.  ``max``/``min`` with a ``dim`` return a ``(values,
indices)`` named tuple like ``torch.return_types.max``; indices are int64 when
``jax_enable_x64`` is on and int32 otherwise (torch: always int64).
"""

from __future__ import annotations

import builtins
import functools
import math
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from .._utils import index_dtype, shape_str
from .shape import _dim, _dims

__all__ = ["mean", "sum", "var", "std", "max", "min", "MaxResult", "MinResult"]


class MaxResult(NamedTuple):
    """``torch.return_types.max``: ``values`` and the ``indices`` where they occur."""

    values: jax.Array
    indices: jax.Array


class MinResult(NamedTuple):
    """``torch.return_types.min``: ``values`` and the ``indices`` where they occur."""

    values: jax.Array
    indices: jax.Array


def _axes(x, dim: Any, op: str) -> tuple[int, ...] | None:
    """None (all dims) or a normalised tuple; torch treats ``dim=()``/``[]`` as all dims."""
    if dim is None:
        return None
    if isinstance(dim, (tuple, list)) and len(dim) == 0:
        return None
    axes = _dims(dim, x.ndim, op)
    return axes if x.ndim else None


def sum(x, dim=None, keepdim: bool = False, *, dtype=None):  # noqa: A001 - torch's name
    """``torch.sum``: sum over ``dim`` (int, tuple, or None = all dims).

    Shape: the reduced dims are removed, or kept with size 1 when ``keepdim``.
    """
    x = jnp.asarray(x)
    return jnp.sum(x, axis=_axes(x, dim, "sum"), keepdims=keepdim, dtype=dtype)


def mean(x, dim=None, keepdim: bool = False, *, dtype=None):
    """``torch.mean``: mean over ``dim`` (int, tuple, or None = all dims).

    As in torch, an integer or bool input without a floating ``dtype`` is an
    error (``jnp.mean`` would silently promote).
    """
    x = jnp.asarray(x)
    out_dtype = jnp.dtype(dtype) if dtype is not None else x.dtype
    if not jnp.issubdtype(out_dtype, jnp.inexact):
        raise TypeError(
            "mean(): could not infer output dtype. Input dtype must be either a floating point or complex "
            f"dtype. Got: {x.dtype}"
        )
    return jnp.mean(x.astype(out_dtype), axis=_axes(x, dim, "mean"), keepdims=keepdim)


def _var(x, dim, unbiased, keepdim, correction, op):
    x = jnp.asarray(x)
    if not jnp.issubdtype(x.dtype, jnp.inexact):
        raise TypeError(f"{op}(): input dtype should be floating point or complex, got {x.dtype}")
    if correction is None:
        if not isinstance(unbiased, bool):
            raise TypeError(f"{op}(): unbiased must be a bool, got {unbiased!r}")
        correction = 1 if unbiased else 0
    axes = _axes(x, dim, op)
    n = x.size if axes is None else math.prod(x.shape[a] for a in axes)
    # torch: divisor max(0, N - correction); 0 gives inf/nan like torch (which also warns).
    return _var_core(x, axes, keepdim, builtins.max(0.0, n - correction))


@functools.partial(jax.custom_jvp, nondiff_argnums=(1, 2, 3))
def _var_core(x, axes, keepdim, divisor):
    dev = x - jnp.mean(x, axis=axes, keepdims=True)
    sq = jnp.real(dev * jnp.conj(dev)) if jnp.iscomplexobj(dev) else dev * dev
    return jnp.sum(sq, axis=axes, keepdims=keepdim) / divisor


@_var_core.defjvp
def _var_core_jvp(axes, keepdim, divisor, primals, tangents):
    # torch's var_backward: 2 (x - mean) / divisor.  Written out so that the mean's
    # (analytically zero) contribution does not turn a zero divisor's inf into nan.
    (x,), (t,) = primals, tangents
    dev = x - jnp.mean(x, axis=axes, keepdims=True)
    prod = jnp.real(jnp.conj(dev) * t) if jnp.iscomplexobj(dev) else dev * t
    return _var_core(x, axes, keepdim, divisor), 2 * jnp.sum(prod, axis=axes, keepdims=keepdim) / divisor


def var(x, dim=None, unbiased: bool = True, keepdim: bool = False, *, correction=None):
    """``torch.var``: variance over ``dim`` with divisor ``max(0, N - correction)``.

    ``correction`` (keyword) overrides ``unbiased`` (``unbiased=True`` is
    ``correction=1``, Bessel's correction; ``False`` is 0).  Note that
    ``jnp.var`` defaults to the biased estimate (``ddof=0``); torch and this
    function default to the unbiased one.  ``N <= correction`` gives inf/nan.
    """
    return _var(x, dim, unbiased, keepdim, correction, "var")


def std(x, dim=None, unbiased: bool = True, keepdim: bool = False, *, correction=None):
    """``torch.std``: ``sqrt(var(x, dim, unbiased, keepdim, correction=correction))``.

    Unbiased by default (``jnp.std`` defaults to ``ddof=0``).
    """
    return jnp.sqrt(_var(x, dim, unbiased, keepdim, correction, "std"))


def _extremum(x, dim, keepdim, op, result_type):
    x = jnp.asarray(x)
    reduce_fn, arg_fn = (jnp.max, jnp.argmax) if op == "max" else (jnp.min, jnp.argmin)
    if dim is None:
        if x.size == 0:
            raise ValueError(
                f"{op}(): Expected reduction dim to be specified for input.numel() == 0. Specify the reduction "
                "dim with the 'dim' argument."
            )
        # Gradient split evenly between ties, as torch's all-reduce max/min.
        return reduce_fn(x, keepdims=keepdim)
    if isinstance(dim, (tuple, list)):
        raise TypeError(f"{op}(): dim must be an int (use amax/amin-style reductions for several dims), got {dim!r}")
    if hasattr(dim, "shape"):  # torch.max(input, other): elementwise
        return (jnp.maximum if op == "max" else jnp.minimum)(x, dim)
    d = _dim(dim, x.ndim, op)
    if x.ndim == 0:
        return result_type(x, jnp.zeros((), index_dtype()))
    if x.shape[d] == 0:
        raise ValueError(f"{op}(): Expected reduction dim {d} to have non-zero size; input shape {shape_str(x)}")
    idx = arg_fn(x, axis=d, keepdims=True)  # first occurrence on ties, as torch on CPU
    values = jnp.take_along_axis(x, idx, axis=d)  # gradient goes to that one index, as torch
    if not keepdim:
        values, idx = jnp.squeeze(values, d), jnp.squeeze(idx, d)
    return result_type(values, idx.astype(index_dtype()))


def max(x, dim=None, keepdim: bool = False):  # noqa: A001 - torch's name
    """``torch.max``.

    * ``max(x)``: the global maximum (a 0-d array; gradient split evenly between ties, as torch).
    * ``max(x, dim, keepdim=False)``: a :class:`MaxResult` ``(values, indices)`` named tuple, like
      ``torch.return_types.max``; ``indices`` is the first occurrence of the maximum (torch on CPU) and
      has dtype int64 when ``jax_enable_x64`` is on, int32 otherwise (torch: int64). The gradient of
      ``values`` flows to that index only, as in torch.
    * ``max(x, other)`` with an array ``other``: elementwise ``maximum``.

    NaN propagates: a slice containing NaN has value NaN and the index of its first NaN.
    """
    return _extremum(x, dim, keepdim, "max", MaxResult)


def min(x, dim=None, keepdim: bool = False):  # noqa: A001 - torch's name
    """``torch.min``: as :func:`max`, with :class:`MinResult` ``(values, indices)`` for a ``dim``.

    Indices are int64 when ``jax_enable_x64`` is on, int32 otherwise (torch: int64).
    """
    return _extremum(x, dim, keepdim, "min", MinResult)
