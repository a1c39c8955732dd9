"""Gradient clipping on pytrees with torch's numbers (``torch.nn.utils.clip_grad``).

torch mutates ``p.grad`` in place; here the functions take a pytree of gradients and return the
clipped pytree.  The total norm is computed as torch does: the ``norm_type`` norm of each leaf,
then the ``norm_type`` norm of those norms, and the clip coefficient is
``min(max_norm / (total_norm + 1e-6), 1)`` (``optax.clip_by_global_norm`` has no ``1e-6`` and
only supports the 2-norm).

``error_if_nonfinite=True`` raises ``RuntimeError`` (torch's type and message) when the total norm
is concrete (outside ``jit``); under ``jit`` the norm is a tracer and no check is possible.
"""

from __future__ import annotations

import collections.abc

import math
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from ..._utils import concrete, extreme, is_variable, one_program

__all__ = [
    "get_total_norm",
    "clip_grads_with_norm_",
    "clip_grad_norm_",
    "clip_grad_value_",
    "clip_grad_norm",
    "clip_grad_value",
]


@one_program  # eagerly (clip_grad_norm_ over a model's gradients) one program per leaf shape
def _vector_norm(x: jax.Array, p: float, axis: int | tuple[int, ...] | None = None,
                 keepdims: bool = False) -> jax.Array:
    """``torch.linalg.vector_norm(x, p, dim=axis, keepdim=keepdims)`` (``axis=None``: over every
    element, a 0-d result): accumulated in at least float32 and returned in ``x``'s dtype, as torch
    (float16 squares of 300 overflow, of 1e-4 underflow).  Also weight and spectral norm's 2-norm."""
    if axis is None:
        x, axis, keepdims = jnp.ravel(x), 0, False
    a = jnp.abs(x)
    a = a.astype(jnp.promote_types(a.dtype, jnp.float32))
    if abs(p) == math.inf:
        # NaN kept by a second reduction, not `nan_max`'s lax.cond: a cond per leaf of a
        # ResNet-50 tree compiled in 2.7-4.9 s against 0.6-1.2 s for p=2
        norm = extreme(a, axis, keepdims, op="max" if p > 0 else "min")
    elif p == 0:
        norm = jnp.sum(a != 0, axis=axis, keepdims=keepdims).astype(a.dtype)
    elif p == 1:
        norm = jnp.sum(a, axis=axis, keepdims=keepdims)
    elif p == 2:
        norm = jnp.sqrt(jnp.sum(a * a, axis=axis, keepdims=keepdims))
    else:
        norm = jnp.sum(a ** p, axis=axis, keepdims=keepdims) ** (1.0 / p)
    return norm.astype(x.dtype)


def _leaves(tensors: Any, fn: str = "get_total_norm") -> list:
    _check_pytree(tensors, fn)
    return [jnp.asarray(t) for t in jax.tree.leaves(tensors)]


def _check_pytree(grads: Any, fn: str) -> None:
    params = isinstance(grads, (list, tuple)) and any(is_variable(g) for g in grads)  # list(parameters())
    if params or isinstance(grads, collections.abc.Iterator):  # torch's model.parameters(): gradients are returned
        raise TypeError(f"{fn}: expected the gradients as a pytree (jax.grad's / nnx.grad's output), got an "
                        f"iterator such as model.parameters(); JAX keeps no .grad on parameters: clip the "
                        f"gradients and use the returned ones")


def get_total_norm(tensors: Any, norm_type: float = 2.0, error_if_nonfinite: bool = False,
                   foreach: bool | None = None) -> jax.Array:
    """The ``norm_type`` norm of all leaves of a pytree, as ``torch.nn.utils.get_total_norm``.

    Args:
      tensors: a pytree of arrays (e.g. gradients).
      norm_type: ``p`` of the p-norm; ``inf`` for the max norm.
      error_if_nonfinite: raise ``RuntimeError`` (torch's message) if the norm is nan or inf (only
        checkable outside ``jit``).
      foreach: accepted for torch compatibility; ignored.

    Shape: a 0-d array (``0.0`` for an empty tree).

    Raises:
      RuntimeError: ``norm_type`` ``inf`` or ``-inf`` with an empty leaf (the max has no identity), as
        torch.

    Example:
      >>> import jax.numpy as jnp
      >>> float(get_total_norm({"a": jnp.array([3.0]), "b": jnp.array([4.0])}))
      5.0
    """
    del foreach
    p = float(norm_type)
    leaves = _leaves(tensors)
    if not leaves:
        return jnp.asarray(0.0)
    if abs(p) == math.inf or p < 0:  # no identity: an empty leaf's norm is undefined (torch raises)
        _check_not_empty(leaves, p)
    total = _vector_norm(jnp.stack([_vector_norm(g, p) for g in leaves]), p)
    if error_if_nonfinite and concrete(total) is not None and not bool(jnp.isfinite(total)):
        raise RuntimeError(
            f"The total norm of order {p} for gradients from `parameters` is non-finite, so it "
            "cannot be clipped. To disable this error and scale the gradients by the non-finite norm anyway, "
            "set `error_if_nonfinite=False`")
    return total


def _check_not_empty(leaves: list, p: float) -> None:
    """torch's ``RuntimeError`` for the max/min norm of an empty leaf (no identity to start from)."""
    for i, g in enumerate(leaves):
        if g.size == 0:
            raise RuntimeError(f"get_total_norm: cannot compute the {p} norm on an empty tensor (leaf {i}, shape "
                               f"{tuple(g.shape)}) because the operation does not have an identity")


def clip_grads_with_norm_(grads: Any, max_norm: float, total_norm: Any, foreach: bool | None = None) -> Any:
    """Scale ``grads`` by ``min(max_norm / (total_norm + 1e-6), 1)``, as
    ``torch.nn.utils.clip_grads_with_norm_``; returns the scaled pytree.

    Example:
      >>> import jax.numpy as jnp
      >>> [round(float(v), 4) for v in clip_grads_with_norm_([jnp.array([3.0, 4.0])], 1.0, 5.0)[0]]
      [0.6, 0.8]
    """
    del foreach
    total_norm = jnp.asarray(total_norm)
    dt = total_norm.dtype
    ct = jnp.promote_types(dt, jnp.float32)
    # torch: max_norm / (total + 1e-6) is reciprocal(total + 1e-6) * max_norm, each step rounded to the
    # norm's dtype, max_norm itself not (a bfloat16 max_norm had moved the coefficient by one step)
    denom = (total_norm.astype(ct) + 1e-6).astype(dt)
    coef = jnp.minimum(((1 / denom.astype(ct)).astype(dt).astype(ct) * max_norm).astype(dt), 1.0)
    return jax.tree.map(lambda g: _scale(jnp.asarray(g), coef), grads)


def _scale(g: jax.Array, coef: jax.Array) -> jax.Array:
    """``g * coef`` as torch's ``g.mul_(coef)``: in ``g``'s compute type (float32 for float16 and
    bfloat16 gradients, whatever ``coef``'s dtype), rounded once to ``g``'s dtype."""
    ct = jnp.promote_types(g.dtype, jnp.float32)
    return (g.astype(ct) * coef.astype(ct)).astype(g.dtype)


def clip_grad_norm_(grads: Any, max_norm: float, norm_type: float = 2.0, error_if_nonfinite: bool = False,
                    foreach: bool | None = None) -> tuple[Any, jax.Array]:
    """Clip the total norm of ``grads``, as ``torch.nn.utils.clip_grad_norm_``.

    Args:
      grads: a pytree of gradients.
      max_norm: the largest allowed total norm.
      norm_type: ``p`` of the norm (``inf`` allowed).
      error_if_nonfinite: raise ``RuntimeError`` for a nan/inf total norm (outside ``jit``).
      foreach: ignored.

    Returns:
      ``(clipped_grads, total_norm)`` — torch returns the norm and mutates the gradients.

    Example:
      >>> import jax.numpy as jnp
      >>> g, n = clip_grad_norm_({"w": jnp.array([3.0, 4.0])}, 1.0)
      >>> float(n), [round(float(v), 4) for v in g["w"]]
      (5.0, [0.6, 0.8])
    """
    _check_pytree(grads, "clip_grad_norm_")
    total = get_total_norm(grads, norm_type, error_if_nonfinite)
    return clip_grads_with_norm_(grads, max_norm, total), total


def clip_grad_value_(grads: Any, clip_value: float, foreach: bool | None = None) -> Any:
    """Clamp every gradient to ``[-clip_value, clip_value]``, as ``torch.nn.utils.clip_grad_value_``.

    Example:
      >>> import jax.numpy as jnp
      >>> clip_grad_value_([jnp.array([-3.0, 0.5])], 1.0)[0].tolist()
      [-1.0, 0.5]
    """
    del foreach
    v = float(clip_value)
    _check_pytree(grads, "clip_grad_value_")
    return jax.tree.map(lambda g: jnp.clip(g, -v, v), grads)


def _transform_argument(fn: str, arg: str, value: Any, torch_form: str) -> None:
    """The transforms take numbers: torch's deprecated ``clip_grad_norm(parameters, max_norm)`` has the
    same name, and called that way it had returned a transform and clipped nothing."""
    if isinstance(value, bool) or not (hasattr(value, "__float__") and np.ndim(value) == 0):  # a 0-d array too
        raise TypeError(f"{fn}: {arg} must be a number, got {type(value).__name__}; {fn} here is an optax "
                        f"transform ({fn}({arg}) in optax.chain). torch's {fn}(parameters, {arg}) is "
                        f"{torch_form}, which returns the clipped gradients")


def clip_grad_norm(max_norm: float, norm_type: float = 2.0):
    """An ``optax.GradientTransformation`` applying :func:`clip_grad_norm_` to the updates
    (torch's numbers: ``1e-6`` in the coefficient, any ``norm_type``).

    Example:
      >>> import optax, jax.numpy as jnp
      >>> tx = optax.chain(clip_grad_norm(1.0), optax.sgd(1.0))
      >>> u, _ = tx.update({"w": jnp.array([3.0, 4.0])}, tx.init({"w": jnp.zeros(2)}))
      >>> [round(float(v), 4) for v in u["w"]]
      [-0.6, -0.8]
    """
    import optax

    _transform_argument("clip_grad_norm", "max_norm", max_norm, "clip_grad_norm_(grads, max_norm)")

    def update(updates, state, params=None):
        del params
        return clip_grad_norm_(updates, max_norm, norm_type)[0], state

    return optax.GradientTransformation(lambda params: optax.EmptyState(), update)


def clip_grad_value(clip_value: float):
    """An ``optax.GradientTransformation`` applying :func:`clip_grad_value_` to the updates."""
    import optax

    _transform_argument("clip_grad_value", "clip_value", clip_value, "clip_grad_value_(grads, clip_value)")

    def update(updates, state, params=None):
        del params
        return clip_grad_value_(updates, clip_value), state

    return optax.GradientTransformation(lambda params: optax.EmptyState(), update)
