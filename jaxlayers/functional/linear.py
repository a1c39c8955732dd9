"""linear and bilinear (torch.nn.functional.linear / bilinear)."""

from __future__ import annotations

from typing import Any

import jax.numpy as jnp
from jax import lax

from .._utils import HALF, add_bias, dense_sharding, one_program, shape_str

__all__ = ["linear", "bilinear"]


def _promote(*arrays):
    present = [jnp.asarray(a) for a in arrays if a is not None]
    dtype = jnp.result_type(*present)
    return tuple(None if a is None else jnp.asarray(a, dtype) for a in arrays)


@one_program  # eagerly one program per shapes (its half precision is float32 rounded once: equal)
def _linear(x, weight, bias=None, *, name: str = "linear", in_desc: str | None = None, precision: Any = None):
    """N-d core of :func:`linear`; ``name``/``in_desc`` label errors (``Linear``, ``in_features=4``)."""
    x, weight, bias = _promote(x, weight, bias)
    if weight.ndim not in (1, 2):
        raise ValueError(
            f"{name}: weight must be 2-D (out_features, in_features) or 1-D (in_features,), got shape "
            f"{shape_str(weight)}")
    in_features = weight.shape[-1]
    in_desc = in_desc or f"weight.shape[-1]={in_features}"
    if x.ndim == 0:
        raise ValueError(f"{name}: expected input with at least 1 dimension, got a 0-d input (shape ())")
    if x.shape[-1] != in_features:
        raise ValueError(
            f"{name}: expected input with last dimension {in_features} ({in_desc}), got shape {shape_str(x)}"
        )
    out_shape = x.shape[:-1] + weight.shape[:-1]  # a 1-D weight (torch's matrix-vector case) drops the dim
    if bias is not None:
        try:
            shape = jnp.broadcast_shapes(out_shape, bias.shape)
        except ValueError:
            shape = None
        if shape != out_shape:
            raise ValueError(
                f"{name}: bias of shape {shape_str(bias)} does not broadcast to the output shape "
                f"{shape_str(out_shape)} (weight {shape_str(weight)})"
            )
    # Contract the last dim of x with the last dim of the (out, in) weight: no transpose.
    # half precision: float32 products and bias, rounded once (torch's result)
    acc = jnp.float32 if x.dtype in HALF else None
    y = lax.dot_general(x, weight, (((x.ndim - 1,), (weight.ndim - 1,)), ((), ())), precision=precision,
                        preferred_element_type=acc, out_sharding=dense_sharding(x, weight))
    return add_bias(y, bias).astype(x.dtype)


def linear(input, weight, bias=None, *, precision=None):
    """``torch.nn.functional.linear``: ``y = x @ weight.T + bias``.

    Args:
      input: ``(*, in_features)``.
      weight: ``(out_features, in_features)`` (torch's layout), or ``(in_features,)``: the output
        then has no feature dim, as torch's.
      bias: ``(out_features,)`` or None (anything that broadcasts to the output).
      precision: XLA precision of the matmul (``jax.lax.Precision``), keyword only.

    Shape: ``(*, in_features) -> (*, out_features)``.

    The product contracts the last dims of ``input`` and ``weight`` with
    ``lax.dot_general``; no transposed copy of the weight is made.
    Mixed dtypes are promoted (torch raises).

    Example:
      >>> import jax.numpy as jnp
      >>> from jaxlayers import functional as F
      >>> y = F.linear(jnp.ones((2, 3)), jnp.ones((4, 3)), jnp.full(4, 0.5))
      >>> y.shape, y[0].tolist()
      ((2, 4), [3.5, 3.5, 3.5, 3.5])
    """
    return _linear(input, weight, bias, name="linear", precision=precision)


def _bilinear(x1, x2, weight, bias=None, *, name: str = "bilinear", precision: Any = None):
    x1, x2, weight, bias = _promote(x1, x2, weight, bias)
    if weight.ndim != 3:
        raise ValueError(
            f"{name}: weight must be 3-D (out_features, in1_features, in2_features), got shape {shape_str(weight)}"
        )
    if x1.ndim == 0 or x2.ndim == 0:
        raise ValueError(
            f"{name}: expected inputs with at least 1 dimension, got shapes {shape_str(x1)} and {shape_str(x2)}"
        )
    if x1.shape[:-1] != x2.shape[:-1]:
        raise ValueError(
            f"{name}: input batch dimensions do not match: got input1 {shape_str(x1)} and input2 {shape_str(x2)}"
        )
    out, in1, in2 = weight.shape
    if x1.shape[-1] != in1:
        raise ValueError(
            f"{name}: expected input1 with last dimension {in1} (in1_features={in1}), got shape {shape_str(x1)}"
        )
    if x2.shape[-1] != in2:
        raise ValueError(
            f"{name}: expected input2 with last dimension {in2} (in2_features={in2}), got shape {shape_str(x2)}"
        )
    if bias is not None and bias.shape != (out,):
        raise ValueError(f"{name}: expected bias of shape ({out},) (out_features={out}), got shape {shape_str(bias)}")
    # (*, in1) x (out, in1, in2) -> (*, out, in2), then contract in2 with x2 (batched over *, out).
    t = lax.dot_general(x1, weight, (((x1.ndim - 1,), (1,)), ((), ())), precision=precision)
    y = jnp.einsum("...oj,...j->...o", t, x2, precision=precision)
    return add_bias(y, bias)


def bilinear(input1, input2, weight, bias=None, *, precision=None):
    """``torch.nn.functional.bilinear``: ``y_o = x1 @ weight[o] @ x2 + bias_o``.

    Args:
      input1: ``(*, in1_features)``.
      input2: ``(*, in2_features)``, the same leading dims as ``input1``.
      weight: ``(out_features, in1_features, in2_features)``.
      bias: ``(out_features,)`` or None.
      precision: XLA precision of the contractions, keyword only.

    Shape: ``(*, in1), (*, in2) -> (*, out_features)``.

    Example:
      >>> import jax.numpy as jnp
      >>> from jaxlayers import functional as F
      >>> y = F.bilinear(jnp.ones((2, 3)), jnp.ones((2, 5)), jnp.ones((4, 3, 5)))
      >>> y.shape, float(y[0, 0])
      ((2, 4), 15.0)
    """
    return _bilinear(input1, input2, weight, bias, name="bilinear", precision=precision)
