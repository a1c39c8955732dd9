"""mm, bmm, matmul with torch's rank checks.

``jnp.matmul`` already follows the same broadcasting and 1-D rules as
``torch.matmul``; what differs is that torch's ``mm``/``bmm`` refuse other
ranks, and that every shape error here is a ``ValueError`` naming the shapes
at trace time.  Mixed dtypes are promoted (JAX's rule; torch raises).
``precision`` is passed to XLA (``jax.lax.Precision``), e.g. ``"highest"`` for
full float32 accuracy on TPU/GPU.
"""

from __future__ import annotations

import jax.numpy as jnp

from .._utils import shape_str

__all__ = ["mm", "bmm", "matmul"]


def _dims_str(shape) -> str:
    return "x".join(str(int(s)) for s in shape)


def mm(input, mat2, *, precision=None):
    """``torch.mm``: ``(n, m) @ (m, p) -> (n, p)``; both operands must be 2-D.

    Args:
        input: ``(n, m)``.
        mat2: ``(m, p)``.
        precision: ``jax.lax.Precision`` of the product (keyword-only; not in torch).

    Shape: ``(n, m), (m, p) -> (n, p)``.

    Example:
        >>> import jax.numpy as jnp
        >>> from jaxlayers import ops
        >>> ops.mm(jnp.ones((2, 3)), jnp.ones((3, 4))).shape
        (2, 4)
    """
    a, b = jnp.asarray(input), jnp.asarray(mat2)
    if a.ndim != 2:
        raise ValueError(f"mm: self must be a matrix, got shape {shape_str(a)}")
    if b.ndim != 2:
        raise ValueError(f"mm: mat2 must be a matrix, got shape {shape_str(b)}")
    if a.shape[1] != b.shape[0]:
        raise ValueError(
            f"mm: mat1 and mat2 shapes cannot be multiplied ({_dims_str(a.shape)} and {_dims_str(b.shape)})"
        )
    return jnp.matmul(a, b, precision=precision)


def bmm(input, mat2, *, precision=None):
    """``torch.bmm``: ``(b, n, m) @ (b, m, p) -> (b, n, p)``; both 3-D, same batch, no broadcasting.

    Args:
        input: ``(b, n, m)``.
        mat2: ``(b, m, p)``.
        precision: ``jax.lax.Precision`` of the product (keyword-only; not in torch).

    Shape: ``(b, n, m), (b, m, p) -> (b, n, p)``.

    Example:
        >>> import jax.numpy as jnp
        >>> from jaxlayers import ops
        >>> ops.bmm(jnp.ones((5, 2, 3)), jnp.ones((5, 3, 4))).shape
        (5, 2, 4)
    """
    a, b = jnp.asarray(input), jnp.asarray(mat2)
    if a.ndim != 3:
        raise ValueError(f"bmm: batch1 must be a 3D tensor, got shape {shape_str(a)}")
    if b.ndim != 3:
        raise ValueError(f"bmm: batch2 must be a 3D tensor, got shape {shape_str(b)}")
    if b.shape[:2] != (a.shape[0], a.shape[2]):
        raise ValueError(
            f"bmm: expected size for first two dimensions of batch2 tensor to be: [{a.shape[0]}, {a.shape[2]}] "
            f"but got: [{b.shape[0]}, {b.shape[1]}] (batch1 {shape_str(a)}, batch2 {shape_str(b)})"
        )
    return jnp.matmul(a, b, precision=precision)


def matmul(input, other, *, precision=None):
    """``torch.matmul``: matrix product with torch's rank rules.

    * 1-D @ 1-D: dot product (0-d result).
    * 2-D @ 2-D: matrix product.
    * 1-D first operand: a 1 is prepended to its shape and removed after; 1-D second
      operand: a 1 is appended and removed after.
    * otherwise batched: the leading (batch) dims broadcast, the last two multiply.

    Args:
        input, other: arrays of at least 1 dimension.
        precision: ``jax.lax.Precision`` of the product (keyword-only; not in torch).

    Shape: ``(*b1, n, m) @ (*b2, m, p) -> (*broadcast(b1, b2), n, p)``.
    0-d operands are an error (use ``*``).

    Example:
        >>> import jax.numpy as jnp
        >>> from jaxlayers import ops
        >>> ops.matmul(jnp.ones(3), jnp.ones((2, 3, 4))).shape, float(ops.matmul(jnp.ones(3), jnp.ones(3)))
        ((2, 4), 3.0)
    """
    a, b = jnp.asarray(input), jnp.asarray(other)
    if a.ndim == 0 or b.ndim == 0:
        raise ValueError(
            f"matmul: both arguments to matmul need to be at least 1D, but they are {a.ndim}D and {b.ndim}D"
        )
    ka = a.shape[-1]
    kb = b.shape[0] if b.ndim == 1 else b.shape[-2]
    if ka != kb:
        raise ValueError(
            f"matmul: shapes {shape_str(a)} and {shape_str(b)} cannot be multiplied "
            f"(contracted dims {ka} and {kb} differ)"
        )
    batch_a, batch_b = a.shape[:-2], b.shape[:-2]
    for i in range(1, min(len(batch_a), len(batch_b)) + 1):
        sa, sb = batch_a[-i], batch_b[-i]
        if sa != sb and sa != 1 and sb != 1:
            raise ValueError(
                f"matmul: the batch dims of {shape_str(a)} and {shape_str(b)} do not broadcast: size {sa} "
                f"must match size {sb} at non-singleton batch dimension {-i - 2}"
            )
    return jnp.matmul(a, b, precision=precision)
