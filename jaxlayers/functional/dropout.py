"""Dropout family; randomness takes an explicit key.

``dropout(input, p=0.5, training=True, inplace=False, *, key)`` and friends keep
``torch.nn.functional``'s names, argument order and defaults; ``inplace`` is a
no-op.  ``key`` (a ``jax.random`` key) is keyword-only and required whenever the
layer is active (``training=True`` and ``0 < p < 1``); the same key gives the same
mask.  ``p`` must be a Python/NumPy number in ``[0, 1]`` (it decides the static
structure: ``p == 0`` and evaluation return the input, ``p == 1`` returns zeros
with a zero gradient, never ``0/0 = NaN``).

Rank rules are torch 2.13's:

* ``dropout``, ``alpha_dropout``: any shape, elementwise mask.
* ``dropout1d``: ``(N, C, L)`` or unbatched ``(C, L)``; other ranks raise ValueError.
* ``dropout2d``: ``(N, C, H, W)``; a 3-D input is treated, as torch does, as
  ``(N, C, L)`` (channel-wise 1-D dropout) with torch's UserWarning; other ranks
  warn as deprecated and use dim 0 as batch and dim 1 as channels.
* ``dropout3d``: ``(N, C, D, H, W)`` or unbatched ``(C, D, H, W)``; other ranks warn
  as deprecated and are treated as unbatched.
* ``feature_alpha_dropout``: ``(N, C, *)``, one mask entry per ``(n, c)``.

Feature (channel) dropout needs at least 2 dimensions once batched; like torch
this is checked only when the layer is active.
"""

from __future__ import annotations

import math
import numbers
import warnings
from typing import Any

import jax
import jax.numpy as jnp

from .._memory_format import channels_last
from .._utils import HALF, compiled_when_eager, shape_str

__all__ = [
    "dropout",
    "dropout1d",
    "dropout2d",
    "dropout3d",
    "alpha_dropout",
    "feature_alpha_dropout",
]

# -SELU_scale * SELU_alpha: the value SELU saturates to, torch's ``alpha'``.
ALPHA_PRIME = -1.7580993408473766


def check_p(p: Any, name: str) -> float:
    """Validate a dropout probability: a real number in ``[0, 1]``."""
    if isinstance(p, bool) or not isinstance(p, numbers.Real):
        if getattr(p, "shape", None) != ():
            raise TypeError(f"{name}: dropout probability p must be a Python number, got {type(p).__name__}")
        try:
            p = float(p)  # concrete 0-d arrays
        except (TypeError, jax.errors.ConcretizationTypeError):
            raise TypeError(
                f"{name}: dropout probability p must be a Python number (static), got a traced value"
            ) from None
    p = float(p)
    if not 0.0 <= p <= 1.0 or math.isnan(p):
        raise ValueError(f"{name}: dropout probability p has to be between 0 and 1, but got {p}")
    return p


def _need_key(key: Any, name: str, p: float) -> None:
    if key is None:
        raise ValueError(
            f"{name}: a PRNG `key` is required when training=True and 0 < p < 1 (got p={p}); "
            "pass key=jax.random.key(seed) (modules take it from the 'dropout' rng stream)"
        )


def _active(p: float, training: bool) -> bool:
    return bool(training) and p > 0.0


def _apply(x: jax.Array, p: float, key: Any, noise_shape: tuple[int, ...], alpha: bool, name: str) -> jax.Array:
    """The shared kernel (torch's ``_dropout_impl``) for an active layer."""
    if x.size == 0:
        return x
    if p == 1.0:  # torch's input * 0: -0 for negatives, NaN for NaN and inf
        return x * jnp.zeros((), x.dtype)
    if not jnp.issubdtype(x.dtype, jnp.inexact):  # the scale 1/(1-p) would truncate to an int
        raise TypeError(f"{name}: p={p} needs a floating-point input, got {x.dtype} (torch: result type Float "
                        "can't be cast to the input's integer type)")
    _need_key(key, name, p)
    if alpha and x.dtype in HALF:  # op by op: each product and sum rounded to x's dtype, as torch's
        return _masked(x, key, p, noise_shape, alpha)
    return compiled_when_eager(_masked, (p, noise_shape, alpha), x, key)  # eagerly one program


def _masked(x: jax.Array, key: Any, p: float, noise_shape: tuple[int, ...], alpha: bool) -> jax.Array:
    # torch's input * noise (+ b): the mask multiplies, so a dropped inf or NaN gives NaN and a dropped
    # negative -0, as in torch (a select gave 0)
    noise = jax.random.bernoulli(key, 1.0 - p, noise_shape).astype(x.dtype)
    if not alpha:
        return x * (noise * jnp.asarray(1.0 / (1.0 - p), x.dtype))
    a = 1.0 / math.sqrt((1.0 - p) * (1.0 + p * ALPHA_PRIME**2))
    b = (noise - 1) * jnp.asarray(-ALPHA_PRIME * a, x.dtype) + jnp.asarray(-ALPHA_PRIME * a * p, x.dtype)
    return x * (noise * jnp.asarray(a, x.dtype)) + b


def _feature(x: jax.Array, p: float, key: Any, alpha: bool, name: str) -> jax.Array:
    """Channel dropout on a batched ``(N, C, *)`` input: one mask entry per ``(n, c)``; ``p == 1``
    zeroes any input, as torch's shortcut does before it checks the rank."""
    if x.ndim < 2 and p < 1.0:
        raise ValueError(
            f"{name}: feature dropout requires at least 2 dimensions (N, C, *), got input of shape {shape_str(x)}"
        )
    return _apply(x, p, key, x.shape[:2] + (1,) * (x.ndim - 2), alpha, name)


def _dropout(input: Any, p: float, training: bool, key: Any, name: str, alpha: bool = False) -> jax.Array:
    p = check_p(p, name)
    x = jnp.asarray(input)
    if not _active(p, training):
        return x
    return _apply(x, p, key, x.shape, alpha, name)


def dropout(input: Any, p: float = 0.5, training: bool = True, inplace: bool = False, *, key: Any = None) -> jax.Array:
    """Zero each element with probability ``p`` and scale the rest by ``1 / (1 - p)``,
    as ``torch.nn.functional.dropout``.

    Args:
        input: any shape.
        p: probability of an element being zeroed, in ``[0, 1]`` (ValueError otherwise).
        training: identity when False.
        inplace: no-op.
        key: ``jax.random`` key (keyword-only), required when ``training`` and ``0 < p < 1``.

    Shape: output has the shape of ``input``.

    Example:
        >>> import jax, jax.numpy as jnp
        >>> from jaxlayers import functional as F
        >>> y = F.dropout(jnp.ones(100), p=0.5, key=jax.random.key(0))
        >>> sorted(set(y.tolist())), F.dropout(jnp.ones(2), training=False).tolist()
        ([0.0, 2.0], [1.0, 1.0])
    """
    return _dropout(input, p, training, key, "dropout")


def alpha_dropout(input: Any, p: float = 0.5, training: bool = False, inplace: bool = False, *, key: Any = None) -> jax.Array:
    """Alpha dropout for SELU networks, as ``torch.nn.functional.alpha_dropout``.

    Dropped elements are set to ``alpha' = -scale * alpha`` of SELU, then everything
    is mapped by ``a * x + b`` with ``a = ((1 - p)(1 + p alpha'^2))^(-1/2)`` and
    ``b = -a alpha' p``, which keeps zero mean and unit variance.  Note torch's
    default ``training=False``.  ``p == 1`` gives zeros (as torch).

    Args:
        input: any shape.
        p: probability of an element being dropped, in ``[0, 1]``.
        training: identity when False (the default, as torch).
        inplace: no-op.
        key: ``jax.random`` key (keyword-only), required when active.

    Shape: output has the shape of ``input``.

    Example:
        >>> import jax, jax.numpy as jnp
        >>> from jaxlayers import functional as F
        >>> F.alpha_dropout(jnp.ones(100), 0.5, training=True, key=jax.random.key(0)).shape
        (100,)
    """
    return _dropout(input, p, training, key, "alpha_dropout", alpha=True)


def _dropout_nd(input: Any, p: float, training: bool, key: Any, num_spatial_dims: int, name: str,
                alpha: bool = False) -> jax.Array:
    """Channel-wise dropout with torch 2.13's rank rules for ``dropout{1,2,3}d``."""
    p = check_p(p, name)
    x = jnp.asarray(input)
    batched_rank = num_spatial_dims + 2
    if num_spatial_dims == 1:
        if x.ndim not in (2, 3):
            raise ValueError(
                f"{name}: expected (N, C, L) or (C, L) input (2-D or 3-D), got {x.ndim}-D input of shape "
                f"{shape_str(x)}; {name} is channel-wise dropout over 1 spatial dimension"
            )
    elif x.ndim not in (batched_rank - 1, batched_rank):
        warnings.warn(
            f"{name}: Received a {x.ndim}-D input to {name}, which is deprecated and will result in an "
            f"error in a future release. To retain the behavior and silence this warning, please use "
            f"dropout instead. Note that {name} exists to provide channel-wise dropout on inputs with "
            f"{num_spatial_dims} spatial dimensions, a channel dimension, and an optional batch dimension "
            f"(i.e. {batched_rank - 1}D or {batched_rank}D inputs).",
            UserWarning,
            stacklevel=3,
        )
    if num_spatial_dims == 2:
        if x.ndim == 3:
            warnings.warn(
                f"{name}: Received a 3D input to {name} and assuming that channel-wise 1D dropout behavior "
                "is desired - input is interpreted as shape (N, C, L), where C is the channel dim. This "
                "behavior will change in a future release to interpret the input as one without a batch "
                "dimension, i.e. shape (C, H, W). To maintain the 1D channel-wise dropout behavior, please "
                "switch to using dropout1d instead.",
                UserWarning,
                stacklevel=3,
            )
        batched = True  # torch never adds a batch dim here
    else:
        batched = x.ndim == batched_rank
    if not _active(p, training):
        return x
    if not batched:
        if x.ndim == 0 and p < 1.0:  # named with the shape given, not the unsqueezed one
            raise ValueError(f"{name}: feature dropout requires at least 2 dimensions (N, C, *), got input of "
                             f"shape {shape_str(x)}")
        return _feature(x[None], p, key, alpha, name)[0]
    return _feature(x, p, key, alpha, name)


@channels_last(spatial=1)
def dropout1d(input: Any, p: float = 0.5, training: bool = True, inplace: bool = False, *, key: Any = None) -> jax.Array:
    """Zero whole channels of ``(N, C, L)`` or ``(C, L)`` input, as ``torch.nn.functional.dropout1d``.

    Each channel is zeroed with probability ``p``; kept channels are scaled by ``1 / (1 - p)``.
    Other ranks raise ValueError.  ``key`` as in :func:`dropout`.

    Args:
        input: ``(N, C, L)`` or ``(C, L)``.
        p: probability of a channel being zeroed, in ``[0, 1]``.
        training: identity when False.
        inplace: no-op.
        key: ``jax.random`` key (keyword-only), required when active.

    Shape: output has the shape of ``input``.

    Example:
        >>> import jax, jax.numpy as jnp
        >>> from jaxlayers import functional as F
        >>> y = F.dropout1d(jnp.ones((2, 8, 3)), key=jax.random.key(0))
        >>> bool((y == y[..., :1]).all())                   # whole channels are kept or zeroed
        True
    """
    return _dropout_nd(input, p, training, key, 1, "dropout1d")


@channels_last(spatial=2)
def dropout2d(input: Any, p: float = 0.5, training: bool = True, inplace: bool = False, *, key: Any = None) -> jax.Array:
    """Zero whole channels of ``(N, C, H, W)`` input, as ``torch.nn.functional.dropout2d``.

    Like torch 2.13, a 3-D input is read as ``(N, C, L)`` (1-D channel dropout) with a
    UserWarning, and other ranks warn as deprecated.  ``key`` as in :func:`dropout`.

    Args:
        input: ``(N, C, H, W)``.
        p: probability of a channel being zeroed, in ``[0, 1]``.
        training: identity when False.
        inplace: no-op.
        key: ``jax.random`` key (keyword-only), required when active.

    Shape: output has the shape of ``input``.

    Example:
        >>> import jax, jax.numpy as jnp
        >>> from jaxlayers import functional as F
        >>> y = F.dropout2d(jnp.ones((2, 8, 3, 3)), key=jax.random.key(0))
        >>> bool((y == y[..., :1, :1]).all())               # whole channels are kept or zeroed
        True
    """
    return _dropout_nd(input, p, training, key, 2, "dropout2d")


@channels_last(spatial=3)
def dropout3d(input: Any, p: float = 0.5, training: bool = True, inplace: bool = False, *, key: Any = None) -> jax.Array:
    """Zero whole channels of ``(N, C, D, H, W)`` or ``(C, D, H, W)`` input, as
    ``torch.nn.functional.dropout3d``.

    Other ranks warn as deprecated (as torch) and are treated as unbatched.
    ``key`` as in :func:`dropout`.

    Args:
        input: ``(N, C, D, H, W)`` or ``(C, D, H, W)``.
        p: probability of a channel being zeroed, in ``[0, 1]``.
        training: identity when False.
        inplace: no-op.
        key: ``jax.random`` key (keyword-only), required when active.

    Shape: output has the shape of ``input``.

    Example:
        >>> import jax, jax.numpy as jnp
        >>> from jaxlayers import functional as F
        >>> y = F.dropout3d(jnp.ones((2, 8, 2, 2, 2)), key=jax.random.key(0))
        >>> bool((y == y[..., :1, :1, :1]).all())           # whole channels are kept or zeroed
        True
    """
    return _dropout_nd(input, p, training, key, 3, "dropout3d")


def _feature_alpha_dropout(input: Any, p: float, training: bool, key: Any, name: str) -> jax.Array:
    p = check_p(p, name)
    x = jnp.asarray(input)
    if not _active(p, training):
        return x
    return _feature(x, p, key, True, name)


@channels_last
def feature_alpha_dropout(input: Any, p: float = 0.5, training: bool = False, inplace: bool = False, *,
                          key: Any = None) -> jax.Array:
    """Alpha dropout of whole channels of ``(N, C, *)`` input, as
    ``torch.nn.functional.feature_alpha_dropout`` (torch's default ``training=False``).

    Same affine map as :func:`alpha_dropout`, one mask entry per ``(n, c)``.

    Args:
        input: ``(N, C, *)``.
        p: probability of a channel being dropped, in ``[0, 1]``.
        training: identity when False (the default, as torch).
        inplace: no-op.
        key: ``jax.random`` key (keyword-only), required when active.

    Shape: output has the shape of ``input``.

    Example:
        >>> import jax, jax.numpy as jnp
        >>> from jaxlayers import functional as F
        >>> y = F.feature_alpha_dropout(jnp.ones((2, 8, 3)), 0.5, training=True, key=jax.random.key(0))
        >>> bool((y == y[..., :1]).all())                   # one mask entry per (n, c)
        True
    """
    return _feature_alpha_dropout(input, p, training, key, "feature_alpha_dropout")
