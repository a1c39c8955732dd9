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
import numpy as np

from .._utils import half_in_float32, index_dtype, nan_max, nan_min, shape_str
from .shape import _dim, _dims

__all__ = ["mean", "sum", "var", "std", "max", "min", "MaxResult", "MinResult"]


class MaxResult(NamedTuple):
    """``torch.return_types.max``: ``values`` and the ``indices`` where they occur.

    Args:
        values: the maxima along ``dim``.
        indices: where they occur (first occurrence).

    Shape: both have the input's shape without ``dim`` (size 1 with ``keepdim``).

    Example:
        >>> import jax.numpy as jnp
        >>> from jaxlayers import ops
        >>> values, indices = ops.max(jnp.array([3.0, 9.0]), 0)
        >>> float(values), int(indices)
        (9.0, 1)
    """

    values: jax.Array
    indices: jax.Array


class MinResult(NamedTuple):
    """``torch.return_types.min``: ``values`` and the ``indices`` where they occur.

    Args:
        values: the minima along ``dim``.
        indices: where they occur (first occurrence).

    Shape: both have the input's shape without ``dim`` (size 1 with ``keepdim``).

    Example:
        >>> import jax.numpy as jnp
        >>> from jaxlayers import ops
        >>> values, indices = ops.min(jnp.array([3.0, 9.0]), 0)
        >>> float(values), int(indices)
        (3.0, 0)
    """

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

    Args:
        x: input array.
        dim: an int, a tuple of ints, or None (all dims).
        keepdim: keep the reduced dims with size 1.
        dtype: accumulate and return in this dtype (keyword-only).

    Shape: the reduced dims are removed, or kept with size 1 when ``keepdim``.

    Example:
        >>> import jax.numpy as jnp
        >>> from jaxlayers import ops
        >>> ops.sum(jnp.ones((2, 3)), dim=1).tolist(), ops.sum(jnp.ones((2, 3)), 1, keepdim=True).shape
        ([3.0, 3.0], (2, 1))
    """
    x = jnp.asarray(x)
    return jnp.sum(x, axis=_axes(x, dim, "sum"), keepdims=keepdim, dtype=dtype)


def mean(x, dim=None, keepdim: bool = False, *, dtype=None):
    """``torch.mean``: mean over ``dim`` (int, tuple, or None = all dims).

    As in torch, an integer or bool input without a floating ``dtype`` is an
    error (``jnp.mean`` would silently promote).

    Args:
        x: input array. Floating or complex unless ``dtype`` is given.
        dim: an int, a tuple of ints, or None (all dims).
        keepdim: keep the reduced dims with size 1.
        dtype: cast to it first (keyword-only).

    Shape: the reduced dims are removed, or kept with size 1 when ``keepdim``.

    Example:
        >>> import jax.numpy as jnp
        >>> from jaxlayers import ops
        >>> ops.mean(jnp.arange(6.0).reshape(2, 3), dim=0).tolist()
        [1.5, 2.5, 3.5]
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
    if isinstance(dim, bool):  # torch's legacy overload var(input, unbiased) over every element
        dim, unbiased = None, dim
    if correction is not None and unbiased is not None:  # torch's overloads take one or the other
        raise TypeError(f"{op}(): give unbiased or correction, not both (got unbiased={unbiased!r}, "
                        f"correction={correction!r})")
    if correction is None:
        unbiased = True if unbiased is None else unbiased
        if not isinstance(unbiased, bool):
            raise TypeError(f"{op}(): unbiased must be a bool, got {unbiased!r}")
        correction = 1 if unbiased else 0
    axes = _axes(x, dim, op)
    n = x.size if axes is None else math.prod(x.shape[a] for a in axes)
    # torch: divisor max(0, N - correction); 0 gives inf/nan like torch (which also warns).
    return _var_core(x, None if x.ndim == 0 else axes, keepdim, float(n - correction))


@functools.partial(jax.custom_jvp, nondiff_argnums=(1, 2, 3))
def _var_core(x, axes, keepdim, dof):
    dev = x - jnp.mean(x, axis=axes, keepdims=True)
    sq = jnp.real(dev * jnp.conj(dev)) if jnp.iscomplexobj(dev) else dev * dev
    return jnp.sum(sq, axis=axes, keepdims=keepdim) / builtins.max(0.0, dof)


@_var_core.defjvp
def _var_core_jvp(axes, keepdim, dof, primals, tangents):
    # torch's var_backward: 2 (x - mean) / (N - correction), the divisor not clamped at 0 (a
    # negative one gives finite gradients), and over all dims with N <= correction inf, or NaN
    # where x equals the mean.  Written out so that the mean's (analytically zero) contribution
    # does not turn a zero divisor's inf into nan.
    (x,), (t,) = primals, tangents
    dev = x - jnp.mean(x, axis=axes, keepdims=True)
    if axes is None and dof <= 0:
        coef = jnp.where(dev == 0, jnp.nan, jnp.inf).astype(jnp.real(dev).dtype)
    else:
        coef = 2 * jnp.conj(dev) / dof if dof else jnp.conj(dev) * jnp.inf
    prod = jnp.real(coef * t)
    return _var_core(x, axes, keepdim, dof), jnp.sum(prod, axis=axes, keepdims=keepdim)


@half_in_float32  # torch's accumulate type: float32, rounded once (the sqrt too)
def var(x, dim=None, unbiased: bool | None = None, keepdim: bool = False, *, correction=None):
    """``torch.var``: variance over ``dim`` with divisor ``max(0, N - correction)``.

    ``unbiased=True`` (the default) is ``correction=1``, Bessel's correction;
    ``False`` is 0; giving both is a TypeError, as torch.  Note that
    ``jnp.var`` defaults to the biased estimate (``ddof=0``); torch and this
    function default to the unbiased one.  ``N <= correction`` gives inf/nan.

    Args:
        x: input array. Floating or complex.
        dim: an int, a tuple of ints, or None (all dims); a bool is torch's legacy
            ``var(input, unbiased)`` (every element).
        unbiased: Bessel's correction (None: True).
        keepdim: keep the reduced dims with size 1.
        correction: divisor ``N - correction`` (keyword-only; instead of ``unbiased``).

    Shape: the reduced dims are removed, or kept with size 1 when ``keepdim``.

    Example:
        >>> import jax.numpy as jnp
        >>> from jaxlayers import ops
        >>> x = jnp.array([1.0, 2.0, 3.0, 4.0])
        >>> round(float(ops.var(x)), 4), float(ops.var(x, correction=0))
        (1.6667, 1.25)
    """
    return _var(x, dim, unbiased, keepdim, correction, "var")


@half_in_float32
def std(x, dim=None, unbiased: bool | None = None, keepdim: bool = False, *, correction=None):
    """``torch.std``: ``sqrt(var(x, dim, unbiased, keepdim, correction=correction))``.

    Unbiased by default (``jnp.std`` defaults to ``ddof=0``).

    Args:
        x: input array. Floating or complex.
        dim: an int, a tuple of ints, or None (all dims); a bool is torch's legacy
            ``var(input, unbiased)`` (every element).
        unbiased: Bessel's correction (None: True).
        keepdim: keep the reduced dims with size 1.
        correction: as :func:`var` (keyword-only).

    Shape: the reduced dims are removed, or kept with size 1 when ``keepdim``.

    Example:
        >>> import jax.numpy as jnp
        >>> from jaxlayers import ops
        >>> round(float(ops.std(jnp.array([1.0, 3.0]))), 4)
        1.4142
    """
    return _sqrt_zero_grad(_var(x, dim, unbiased, keepdim, correction, "std"))


@jax.custom_jvp
def _sqrt_zero_grad(v):
    """``sqrt`` whose derivative at 0 is 0, as torch's ``std_backward`` (which masks ``grad / (2 std)``
    where ``std == 0``): a constant slice gets a zero gradient, not ``inf * 0 = NaN``."""
    return jnp.sqrt(v)


@_sqrt_zero_grad.defjvp
def _sqrt_zero_grad_jvp(primals, tangents):
    (v,), (dv,) = primals, tangents
    r = _sqrt_zero_grad(v)
    zero = r == 0
    return r, jnp.where(zero, jnp.zeros_like(dv), dv / (2 * jnp.where(zero, jnp.ones_like(r), r)))


@functools.partial(jax.custom_jvp, nondiff_argnums=(1, 2))
def _all_reduce(x, op, keepdim):
    return (nan_max if op == "max" else nan_min)(x, None, keepdim)  # XLA:CPU's own can drop a NaN


@_all_reduce.defjvp
def _all_reduce_jvp(op, keepdim, primals, tangents):
    """torch's ``evenly_distribute_backward``: the gradient split evenly over the elements equal to
    the result, NaN counting as equal to a NaN result (``jnp.max``'s own rule finds no NaN)."""
    (x,), (dx,) = primals, tangents
    m = _all_reduce(x, op, True)
    mask = (x == m) | (jnp.isnan(x) & jnp.isnan(m))
    dm = jnp.sum(jnp.where(mask, dx, jnp.zeros_like(dx)), keepdims=True) / jnp.sum(mask).astype(dx.dtype)
    return (m, dm) if keepdim else (m.reshape(()), dm.reshape(()))


def _extremum(x, dim, keepdim, op, result_type):
    x = jnp.asarray(x)
    if jnp.issubdtype(x.dtype, jnp.complexfloating):
        raise TypeError(f"{op}(): complex input is not ordered (torch raises too), got {x.dtype}")
    reduce_fn, arg_fn = (jnp.max, jnp.argmax) if op == "max" else (jnp.min, jnp.argmin)
    if dim is None:
        if x.size == 0:
            raise ValueError(
                f"{op}(): Expected reduction dim to be specified for input.numel() == 0. Specify the reduction "
                "dim with the 'dim' argument."
            )
        # Gradient split evenly between ties (NaNs included), as torch's all-reduce max/min.
        return _all_reduce(x, op, bool(keepdim)) if jnp.issubdtype(x.dtype, jnp.inexact) else reduce_fn(
            x, keepdims=keepdim)
    if isinstance(dim, (tuple, list)):
        raise TypeError(f"{op}(): dim must be an int (use amax/amin-style reductions for several dims), got {dim!r}")
    if isinstance(dim, (jax.Array, np.ndarray)):  # torch.max(input, other): elementwise (a NumPy int is a dim)
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

    Args:
        x: input array.
        dim: None (global maximum), an int, or an array ``other`` (elementwise).
        keepdim: keep ``dim`` with size 1.

    Shape: ``max(x)`` is 0-d; with ``dim`` both results drop ``dim`` (size 1 with ``keepdim``).

    Example:
        >>> import jax.numpy as jnp
        >>> from jaxlayers import ops
        >>> x = jnp.array([[1.0, 5.0], [7.0, 2.0]])
        >>> r = ops.max(x, dim=1)
        >>> float(ops.max(x)), r.values.tolist(), r.indices.tolist()
        (7.0, [5.0, 7.0], [1, 0])
    """
    return _extremum(x, dim, keepdim, "max", MaxResult)


def min(x, dim=None, keepdim: bool = False):  # noqa: A001 - torch's name
    """``torch.min``: as :func:`max`, with :class:`MinResult` ``(values, indices)`` for a ``dim``.

    Indices are int64 when ``jax_enable_x64`` is on, int32 otherwise (torch: int64).

    Args:
        x: input array.
        dim: None (global minimum), an int, or an array ``other`` (elementwise).
        keepdim: keep ``dim`` with size 1.

    Shape: as :func:`max`.

    Example:
        >>> import jax.numpy as jnp
        >>> from jaxlayers import ops
        >>> x = jnp.array([[1.0, 5.0], [7.0, 2.0]])
        >>> r = ops.min(x, dim=1)
        >>> float(ops.min(x)), r.values.tolist(), r.indices.tolist()
        (1.0, [1.0, 2.0], [0, 1])
    """
    return _extremum(x, dim, keepdim, "min", MinResult)
