"""Activation functions with torch's semantics and gradients at the kinks.

Every function keeps ``torch.nn.functional``'s name, argument order and defaults.
``inplace`` is accepted where torch has it and is a no-op (JAX arrays are immutable).

Piecewise functions are written with ``jnp.where`` so that the derivative at a
kink is the one torch's backward formula picks (``relu'(0) = 0``,
``leaky_relu'(0) = negative_slope``, ``elu'(0) = alpha``, ``hardtanh'`` is 0 at
``min_val``/``max_val``, ``hardswish'(-3) = 0`` and ``hardswish'(3) = 1``, ...), and
the comparisons are arranged so that NaN propagates as in torch.  Branches that
could overflow (``exp`` in ELU, softplus) are evaluated on a "safe" input so that
the unselected branch never feeds ``0 * inf = NaN`` into a gradient.
"""

from __future__ import annotations

import functools
import math
import warnings
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from .._memory_format import channels_last
from .._utils import compute_dtype, floating_input, half_in_float32, shape_str

__all__ = [
    "relu",
    "relu6",
    "leaky_relu",
    "prelu",
    "rrelu",
    "elu",
    "selu",
    "celu",
    "gelu",
    "silu",
    "mish",
    "sigmoid",
    "logsigmoid",
    "tanh",
    "hardtanh",
    "hardswish",
    "hardsigmoid",
    "hardshrink",
    "softshrink",
    "tanhshrink",
    "softsign",
    "softplus",
    "threshold",
    "glu",
    "softmax",
    "log_softmax",
    "softmin",
    "softmax2d",
]

# torch's SELU constants (aten/src/ATen/native/Activation.cpp)
SELU_ALPHA = 1.6732632423543772848170429916717
SELU_SCALE = 1.0507009873554804934193349852946


def _arr(x: Any) -> jax.Array:
    return jnp.asarray(x)


def _float(x: Any) -> jax.Array:
    """Integer/bool inputs are promoted to the default float dtype, as torch's
    transcendental activations do."""
    x = jnp.asarray(x)
    if not jnp.issubdtype(x.dtype, jnp.inexact):
        x = x.astype(jnp.result_type(float))
    return x


def _scalar(v: Any, x: jax.Array) -> jax.Array:
    return jnp.asarray(v, dtype=x.dtype)


def _norm_dim(dim: Any, ndim: int, name: str) -> int:
    """torch's dim wrapping: a 0-d tensor accepts dim in [-1, 0]."""
    if not isinstance(dim, int) or isinstance(dim, bool):
        raise TypeError(f"{name}: dim must be an int, got {dim!r}")
    n = max(ndim, 1)
    if not -n <= dim < n:
        raise IndexError(
            f"{name}: dim {dim} out of range for {ndim}-D input (expected to be in range of [{-n}, {n - 1}])"
        )
    return dim % n


# --------------------------------------------------------------------------- ReLU family


def relu(input: Any, inplace: bool = False) -> jax.Array:
    """``max(0, x)``, as ``torch.nn.functional.relu``; ``relu'(0) = 0``.

    Args:
        input: array of any shape.
        inplace: accepted for torch compatibility; a no-op.

    Shape: any shape; the output has the shape of ``input``.

    Example:
        >>> import jax.numpy as jnp
        >>> from jaxlayers import functional as F
        >>> F.relu(jnp.array([-1.0, 2.0])).tolist()
        [0.0, 2.0]
    """
    return _clamp(_arr(input), 0.0, None)


@functools.partial(jax.custom_jvp, nondiff_argnums=(1, 2))
def _clamp(x: jax.Array, lo: float, hi: float | None) -> jax.Array:
    """``min(max(x, lo), hi)`` (``hi=None``: no upper bound) with torch's derivative (its
    ``threshold_backward`` and scalar ``hardtanh_backward``): the tangent is 0 where
    ``x <= lo`` or ``x >= hi`` and passes elsewhere, NaN included.  (torch's vectorised
    ``hardtanh_backward`` stops it at NaN, so torch's own gradient there depends on the
    element's position.)  XLA's ``max``/``min`` keep NaN and, unlike ``where``, join
    XLA:CPU's fusion of the convolution before them (ResNet-18 eval in torch layout:
    57 -> 28 relayouts, 0.75 -> 0.66 s to compile)."""
    x = jnp.maximum(x, _scalar(lo, x))
    return x if hi is None else jnp.minimum(x, _scalar(hi, x))


@_clamp.defjvp
def _clamp_jvp(lo, hi, primals, tangents):
    (x,), (t,) = primals, tangents
    stop = x <= _scalar(lo, x)
    if hi is not None:
        stop = stop | (x >= _scalar(hi, x))
    return _clamp(x, lo, hi), jnp.where(stop, jnp.zeros_like(t), t)


@half_in_float32
def _hardtanh(input: Any, min_val: float, max_val: float, name: str) -> jax.Array:
    if max_val < min_val:
        raise ValueError(f"{name}: max_val ({max_val}) must be greater than or equal to min_val ({min_val})")
    return _clamp(_arr(input), min_val, max_val)


def hardtanh(input: Any, min_val: float = -1.0, max_val: float = 1.0, inplace: bool = False) -> jax.Array:
    """``clip(x, min_val, max_val)``, as ``torch.nn.functional.hardtanh``.

    The derivative is 1 strictly inside ``(min_val, max_val)`` and 0 elsewhere,
    including at ``min_val`` and ``max_val`` (torch's choice).
    Raises ValueError if ``max_val < min_val``.

    Args:
        input: array of any shape.
        min_val: lower end of the linear region. Default -1.
        max_val: upper end of the linear region. Default 1.
        inplace: accepted for torch compatibility; a no-op.

    Shape: any shape; the output has the shape of ``input``.

    Example:
        >>> import jax.numpy as jnp
        >>> from jaxlayers import functional as F
        >>> F.hardtanh(jnp.array([-2.0, 0.5, 2.0])).tolist()
        [-1.0, 0.5, 1.0]
    """
    return _hardtanh(input, min_val, max_val, "hardtanh")


def relu6(input: Any, inplace: bool = False) -> jax.Array:
    """``min(max(0, x), 6)``, as ``torch.nn.functional.relu6``; derivative 0 at 0 and 6.

    Args:
        input: array of any shape.
        inplace: accepted for torch compatibility; a no-op.

    Shape: any shape; the output has the shape of ``input``.

    Example:
        >>> import jax.numpy as jnp
        >>> from jaxlayers import functional as F
        >>> F.relu6(jnp.array([-1.0, 3.0, 8.0])).tolist()
        [0.0, 3.0, 6.0]
    """
    return _hardtanh(input, 0.0, 6.0, "relu6")


@half_in_float32
def leaky_relu(input: Any, negative_slope: float = 0.01, inplace: bool = False) -> jax.Array:
    """``x if x > 0 else negative_slope * x``, as ``torch.nn.functional.leaky_relu``.

    The derivative at 0 is ``negative_slope`` (torch's choice).

    Args:
        input: array of any shape.
        negative_slope: slope for ``x <= 0``. Default 0.01.
        inplace: accepted for torch compatibility; a no-op.

    Shape: any shape; the output has the shape of ``input``.

    Example:
        >>> import jax.numpy as jnp
        >>> from jaxlayers import functional as F
        >>> F.leaky_relu(jnp.array([-2.0, 3.0]), 0.5).tolist()
        [-1.0, 3.0]
    """
    x = floating_input(input, "leaky_relu")
    return jnp.where(x > 0, x, x * _scalar(negative_slope, x))


@half_in_float32
def _rrelu(input: Any, lower: float, upper: float, training: bool, key: Any, name: str) -> jax.Array:
    lower, upper = float(lower), float(upper)
    if not lower <= upper:
        raise ValueError(f"{name}: lower bound ({lower}) must be less than or equal to the upper bound ({upper})")
    x = _float(input)
    if not training:
        return jnp.where(x > 0, x, x * _scalar((lower + upper) / 2, x))
    if key is None:
        raise ValueError(f"{name}: a PRNG `key` is required when training=True; pass key=jax.random.key(seed) "
                         "(the module takes it from the 'dropout' rng stream)")
    slope = jax.random.uniform(key, x.shape, x.dtype, lower, upper)
    return jnp.where(x > 0, x, x * slope)


def rrelu(input: Any, lower: float = 1.0 / 8, upper: float = 1.0 / 3, training: bool = False,
          inplace: bool = False, *, key: Any = None) -> jax.Array:
    """Randomized leaky ReLU, as ``torch.nn.functional.rrelu``.

    ``x if x > 0 else a * x``: in training ``a ~ U(lower, upper)`` drawn per element from ``key``;
    in evaluation ``a = (lower + upper) / 2`` (a leaky ReLU).  The derivative for ``x <= 0`` is
    ``a`` (the drawn slope in training), as torch's.

    Args:
        input: any shape (integer inputs are promoted to float).
        lower, upper: bounds of the slope, ``lower <= upper`` (ValueError otherwise).
        training: draw random slopes (default False, as torch).
        inplace: no-op.
        key: ``jax.random`` key (keyword-only), required when ``training``; the same key gives
            the same slopes.  torch draws from its global generator, so the random slopes differ
            from torch's.

    Shape: output has the shape of ``input``.

    Example:
        >>> import jax.numpy as jnp
        >>> from jaxlayers import functional as F
        >>> print(F.rrelu(jnp.array([-2.0, 3.0]), 0.1, 0.3))
        [-0.4  3. ]
    """
    return _rrelu(input, lower, upper, training, key, "rrelu")


@half_in_float32
def _prelu(input: Any, weight: Any, name: str) -> jax.Array:
    x, w = _arr(input), _arr(weight)
    if w.ndim > 1:
        raise ValueError(f"{name}: expected `weight` to be a scalar or 1-D array, got shape {shape_str(w)}")
    channels = x.shape[1] if x.ndim >= 2 else 1
    if w.size != 1 and w.size != channels:
        raise ValueError(
            f"{name}: mismatch of parameter numbers and input channel size: weight has {w.size} "
            f"parameters (shape {shape_str(w)}), input of shape {shape_str(x)} has {channels} channel(s)"
            + (" (1-D and 0-D inputs have 1 channel)" if x.ndim < 2 else " (dim 1)")
        )
    if w.size == 1:
        w = w.reshape(())
    else:
        w = w.reshape((channels,) + (1,) * (x.ndim - 2))
    return jnp.where(x > 0, x, w * x)


@channels_last
def prelu(input: Any, weight: Any) -> jax.Array:
    """``x if x > 0 else weight * x``, as ``torch.nn.functional.prelu``.

    ``weight`` is a scalar or a 1-D array of 1 or ``C`` entries, applied along dim 1
    of a ``(N, C, *)`` input (0-D and 1-D inputs have a single channel).  The
    derivative at 0 is ``weight`` (torch's choice).

    Args:
        input: array of shape ``(N, C, *)`` (or 0-D/1-D: one channel).
        weight: slopes for ``x <= 0``: a scalar, or 1-D with 1 or ``C`` entries.

    Shape: output has the shape of ``input``.

    Example:
        >>> import jax.numpy as jnp
        >>> from jaxlayers import functional as F
        >>> F.prelu(jnp.array([[-2.0, -4.0]]), jnp.array([0.5, 0.25])).tolist()
        [[-1.0, -1.0]]
    """
    return _prelu(input, weight, "prelu")


# --------------------------------------------------------------------------- exponential units


@jax.custom_jvp
def _expm1(z: jax.Array) -> jax.Array:
    """``expm1`` whose derivative is ``exp(z)``, as torch's ``elu_backward``: JAX's rule,
    ``expm1(z) + 1``, loses every digit where ``expm1(z)`` rounds to -1 (``elu'(-20)`` was 0 in
    float32 against torch's 2.1e-9)."""
    return jnp.expm1(z)


@_expm1.defjvp
def _expm1_jvp(primals: tuple, tangents: tuple) -> tuple:
    (z,), (t,) = primals, tangents
    return jnp.expm1(z), jnp.exp(z) * t


def _elu(x: jax.Array, alpha: Any, input_scale: Any = 1.0) -> jax.Array:
    """``x if x > 0 else alpha * expm1(x * input_scale)``; derivative at 0 from the negative branch,
    NaN on the positive one (derivative 1, as torch's ``elu_backward``)."""
    pos = ~(x <= 0)
    safe = jnp.where(pos, jnp.zeros_like(x), x)
    return jnp.where(pos, x, _scalar(alpha, x) * _expm1(safe * _scalar(input_scale, x)))


@half_in_float32
def elu(input: Any, alpha: float = 1.0, inplace: bool = False) -> jax.Array:
    """``x if x > 0 else alpha * (exp(x) - 1)``, as ``torch.nn.functional.elu``; ``elu'(0) = alpha``.

    Args:
        input: array of any shape (integer inputs are promoted to float).
        alpha: scale of the negative branch. Default 1.
        inplace: accepted for torch compatibility; a no-op.

    Shape: any shape; the output has the shape of ``input``.

    Example:
        >>> import jax.numpy as jnp
        >>> from jaxlayers import functional as F
        >>> round(float(F.elu(jnp.array(-1.0))), 4)
        -0.6321
    """
    return _elu(_float(input), alpha)


@half_in_float32
def selu(input: Any, inplace: bool = False) -> jax.Array:
    """``scale * elu(x, alpha)`` with torch's constants, as ``torch.nn.functional.selu``.

    ``alpha = 1.6732632423543772``, ``scale = 1.0507009873554805``; ``selu'(0) = scale * alpha``.

    Args:
        input: array of any shape (integer inputs are promoted to float).
        inplace: accepted for torch compatibility; a no-op.

    Shape: any shape; the output has the shape of ``input``.

    Example:
        >>> import jax.numpy as jnp
        >>> from jaxlayers import functional as F
        >>> round(float(F.selu(jnp.array(1.0))), 4)
        1.0507
    """
    x = _float(input)
    return _scalar(SELU_SCALE, x) * _elu(x, SELU_ALPHA)


@functools.partial(jax.custom_jvp, nondiff_argnums=(1,))
def _celu(x: jax.Array, alpha: float) -> jax.Array:
    return _elu(x, alpha, 1.0 / alpha)


@_celu.defjvp
def _celu_jvp(alpha: float, primals: tuple, tangents: tuple) -> tuple:
    # torch's backward (derivatives.yaml) uses input_scale = 1.0 / float32(alpha).
    (x,), (t,) = primals, tangents
    s = _scalar(1.0 / float(np.float32(alpha)), x)
    pos = ~(x <= 0)  # NaN on the positive branch, as torch
    safe = jnp.where(pos, jnp.zeros_like(x), x)
    d = jnp.where(pos, jnp.ones_like(x), s * _scalar(alpha, x) * jnp.exp(safe * s))
    return _celu(x, alpha), d * t


@half_in_float32
def celu(input: Any, alpha: float = 1.0, inplace: bool = False) -> jax.Array:
    """``x if x > 0 else alpha * (exp(x / alpha) - 1)``, as ``torch.nn.functional.celu``.

    ``celu'(0) = 1``.  As torch, the derivative of the negative branch uses
    ``1 / float32(alpha)`` (a relative difference of ~1e-7 from the exact derivative
    when ``alpha`` is not a float32 number).  Raises ValueError for ``alpha == 0``.

    Args:
        input: array of any shape (integer inputs are promoted to float).
        alpha: scale of the negative branch, non-zero. Default 1.
        inplace: accepted for torch compatibility; a no-op.

    Shape: any shape; the output has the shape of ``input``.

    Example:
        >>> import jax.numpy as jnp
        >>> from jaxlayers import functional as F
        >>> round(float(F.celu(jnp.array(-1.0), alpha=2.0)), 4)
        -0.7869
    """
    if alpha == 0:
        raise ValueError("celu: alpha cannot be 0")
    return _celu(_float(input), float(alpha))


# --------------------------------------------------------------------------- smooth units


@half_in_float32
def _gelu(input: Any, approximate: str, name: str) -> jax.Array:
    if approximate not in ("none", "tanh"):
        raise ValueError(f"{name}: approximate must be either 'none' or 'tanh', got {approximate!r}")
    x = _float(input)
    if approximate == "tanh":
        inner = _scalar(math.sqrt(2.0 / math.pi), x) * (x + _scalar(0.044715, x) * x * x * x)
        return 0.5 * x * (1.0 + jnp.tanh(inner))
    # erfc(-z) = 1 + erf(z) without the cancellation of 1 + erf(z) in the left tail (x < -5: 0 in float32)
    return 0.5 * x * jax.lax.erfc(-x * _scalar(1.0 / math.sqrt(2.0), x))


def gelu(input: Any, approximate: str = "none") -> jax.Array:
    """Gaussian error linear unit, as ``torch.nn.functional.gelu``.

    ``approximate="none"``: ``x * Phi(x) = 0.5 x (1 + erf(x / sqrt 2))``;
    ``approximate="tanh"``: ``0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3)))``.
    Raises ValueError for any other ``approximate``.

    Args:
        input: array of any shape (integer inputs are promoted to float).
        approximate: ``"none"`` (default) or ``"tanh"``.

    Shape: any shape; the output has the shape of ``input``.

    Example:
        >>> import jax.numpy as jnp
        >>> from jaxlayers import functional as F
        >>> round(float(F.gelu(jnp.array(1.0))), 4), round(float(F.gelu(jnp.array(1.0), approximate="tanh")), 4)
        (0.8413, 0.8412)
    """
    return _gelu(input, approximate, "gelu")


@half_in_float32
def sigmoid(input: Any) -> jax.Array:
    """``1 / (1 + exp(-x))``, as ``torch.nn.functional.sigmoid``.

    Args:
        input: array of any shape (integer inputs are promoted to float).

    Shape: any shape; the output has the shape of ``input``.

    Example:
        >>> import jax.numpy as jnp
        >>> from jaxlayers import functional as F
        >>> F.sigmoid(jnp.array([0.0])).tolist()
        [0.5]
    """
    return jax.nn.sigmoid(_float(input))


@half_in_float32
def tanh(input: Any) -> jax.Array:
    """Hyperbolic tangent, as ``torch.nn.functional.tanh``.

    Args:
        input: array of any shape (integer inputs are promoted to float).

    Shape: any shape; the output has the shape of ``input``.

    Example:
        >>> import jax.numpy as jnp
        >>> from jaxlayers import functional as F
        >>> round(float(F.tanh(jnp.array(1.0))), 4)
        0.7616
    """
    return jnp.tanh(_float(input))


@half_in_float32
def silu(input: Any, inplace: bool = False) -> jax.Array:
    """``x * sigmoid(x)`` (swish), as ``torch.nn.functional.silu``.

    Args:
        input: array of any shape (integer inputs are promoted to float).
        inplace: accepted for torch compatibility; a no-op.

    Shape: any shape; the output has the shape of ``input``.

    Example:
        >>> import jax.numpy as jnp
        >>> from jaxlayers import functional as F
        >>> round(float(F.silu(jnp.array(1.0))), 4)
        0.7311
    """
    x = _float(input)
    return x * jax.nn.sigmoid(x)


@half_in_float32
def mish(input: Any, inplace: bool = False) -> jax.Array:
    """``x * tanh(softplus(x))``, as ``torch.nn.functional.mish``.

    Args:
        input: array of any shape (integer inputs are promoted to float).
        inplace: accepted for torch compatibility; a no-op.

    Shape: any shape; the output has the shape of ``input``.

    Example:
        >>> import jax.numpy as jnp
        >>> from jaxlayers import functional as F
        >>> round(float(F.mish(jnp.array(1.0))), 4)
        0.8651
    """
    x = _float(input)
    return x * jnp.tanh(jnp.logaddexp(x, jnp.zeros_like(x)))


@half_in_float32
def logsigmoid(input: Any) -> jax.Array:
    """``log(sigmoid(x)) = -softplus(-x)``, computed stably, as ``torch.nn.functional.logsigmoid``.

    Args:
        input: array of any shape (integer inputs are promoted to float).

    Shape: any shape; the output has the shape of ``input``.

    Example:
        >>> import jax.numpy as jnp
        >>> from jaxlayers import functional as F
        >>> round(float(F.logsigmoid(jnp.array(0.0))), 4)
        -0.6931
    """
    x = _float(input)
    return -jnp.logaddexp(-x, jnp.zeros_like(x))


@half_in_float32
def softplus(input: Any, beta: float = 1.0, threshold: float = 20.0) -> jax.Array:
    """``log(1 + exp(beta x)) / beta``, as ``torch.nn.functional.softplus``.

    As torch, reverts to the identity (derivative 1) where ``beta * x > threshold``.
    The log branch is evaluated stably (``logaddexp``) and on a safe input so that
    neither branch overflows into the other's gradient.

    Args:
        input: array of any shape (integer inputs are promoted to float).
        beta: sharpness. Default 1.
        threshold: identity where ``beta * x > threshold``. Default 20.

    Shape: any shape; the output has the shape of ``input``.

    Example:
        >>> import jax.numpy as jnp
        >>> from jaxlayers import functional as F
        >>> round(float(F.softplus(jnp.array(1.0))), 4), float(F.softplus(jnp.array(30.0)))
        (1.3133, 30.0)
    """
    return _softplus(_float(input), float(beta), float(threshold))


@functools.partial(jax.custom_jvp, nondiff_argnums=(1, 2))
def _softplus(x: jax.Array, beta: float, threshold: float) -> jax.Array:
    xb = x * _scalar(beta, x)
    linear = xb > _scalar(threshold, x)
    safe = jnp.where(linear, jnp.zeros_like(xb), xb)
    return jnp.where(linear, x, jnp.logaddexp(safe, jnp.zeros_like(safe)) / _scalar(beta, x))


@_softplus.defjvp
def _softplus_jvp(beta: float, threshold: float, primals: tuple, tangents: tuple) -> tuple:
    # torch's backward: z / (z + 1) with z = exp(beta x), 1 where beta x > threshold (finite for
    # beta = 0, where autodiff of the formula gives 0 / 0)
    (x,), (t,) = primals, tangents
    xb = x * _scalar(beta, x)
    linear = xb > _scalar(threshold, x)
    z = jnp.exp(jnp.where(linear, jnp.zeros_like(xb), xb))
    d = jnp.where(linear, jnp.ones_like(x), z / (z + 1))
    return _softplus(x, beta, threshold), d * t


@half_in_float32
def softsign(input: Any) -> jax.Array:
    """``x / (1 + |x|)``, as ``torch.nn.functional.softsign``.

    Args:
        input: array of any shape (integer inputs are promoted to float).

    Shape: any shape; the output has the shape of ``input``.

    Example:
        >>> import jax.numpy as jnp
        >>> from jaxlayers import functional as F
        >>> F.softsign(jnp.array([-1.0, 3.0])).tolist()
        [-0.5, 0.75]
    """
    x = _float(input)
    return x / (1 + jnp.abs(x))


@jax.custom_jvp
def _tanhshrink(x: jax.Array) -> jax.Array:
    return x - jnp.tanh(x)


@_tanhshrink.defjvp
def _tanhshrink_jvp(primals: tuple, tangents: tuple) -> tuple:
    # 1 - tanh'(x) written as tanh(x)^2: autodiff's 1 - (1 + y)(1 - y) came out -1e-8 at x = 1e-8 in float32
    (x,), (t,) = primals, tangents
    y = jnp.tanh(x)
    return x - y, y * y * t


@half_in_float32
def tanhshrink(input: Any) -> jax.Array:
    """``x - tanh(x)``, as ``torch.nn.functional.tanhshrink``.

    Args:
        input: array of any shape (integer inputs are promoted to float).

    Shape: any shape; the output has the shape of ``input``.

    Example:
        >>> import jax.numpy as jnp
        >>> from jaxlayers import functional as F
        >>> round(float(F.tanhshrink(jnp.array(1.0))), 4)
        0.2384
    """
    x = _float(input)
    return _tanhshrink(x)


# --------------------------------------------------------------------------- hard units


@jax.custom_jvp
def _hardsigmoid(x: jax.Array) -> jax.Array:
    return jnp.clip(x + 3, 0, 6) / 6  # torch's formula


@_hardsigmoid.defjvp
def _hardsigmoid_jvp(primals: tuple, tangents: tuple) -> tuple:
    # torch's backward multiplies by the float constant 1.0f / 6.0f, even in float64.
    (x,), (t,) = primals, tangents
    inside = (x > -3) & (x < 3)
    d = jnp.where(inside, _scalar(float(np.float32(1.0) / np.float32(6.0)), x), jnp.zeros_like(x))
    return _hardsigmoid(x), d * t


@half_in_float32
def hardsigmoid(input: Any, inplace: bool = False) -> jax.Array:
    """``relu6(x + 3) / 6``, as ``torch.nn.functional.hardsigmoid``; derivative 0 at -3 and 3.

    As torch, the derivative inside ``(-3, 3)`` is the float32 number ``1/6``, also in float64.

    Args:
        input: array of any shape (integer inputs are promoted to float).
        inplace: accepted for torch compatibility; a no-op.

    Shape: any shape; the output has the shape of ``input``.

    Example:
        >>> import jax.numpy as jnp
        >>> from jaxlayers import functional as F
        >>> F.hardsigmoid(jnp.array([-3.0, 0.0, 3.0])).tolist()
        [0.0, 0.5, 1.0]
    """
    return _hardsigmoid(_float(input))


@half_in_float32
def hardswish(input: Any, inplace: bool = False) -> jax.Array:
    """``x * relu6(x + 3) / 6``, as ``torch.nn.functional.hardswish``.

    Derivative (torch's choice at the kinks): 0 for ``x <= -3``, ``x / 3 + 1/2`` for
    ``-3 < x < 3``, 1 for ``x >= 3``.

    Args:
        input: array of any shape (integer inputs are promoted to float).
        inplace: accepted for torch compatibility; a no-op.

    Shape: any shape; the output has the shape of ``input``.

    Example:
        >>> import jax.numpy as jnp
        >>> from jaxlayers import functional as F
        >>> F.hardswish(jnp.array([-3.0, 1.5, 4.0])).tolist()
        [-0.0, 1.125, 4.0]
    """
    return _hardswish(_float(input))


@jax.custom_jvp
def _hardswish(x: jax.Array) -> jax.Array:
    return x * jnp.clip(x + 3, 0, 6) / 6  # torch's formula: NaN at -inf (-inf * 0), as torch


@_hardswish.defjvp
def _hardswish_jvp(primals: tuple, tangents: tuple) -> tuple:
    # torch's backward: 0 up to -3, x/3 + 1/2 inside, 1 from 3 on (finite at +-inf, where autodiff of
    # the formula gives NaN)
    (x,), (t,) = primals, tangents
    d = jnp.where(x <= -3, jnp.zeros_like(x), jnp.where(x < 3, x / 3 + 0.5, jnp.ones_like(x)))
    return _hardswish(x), d * t


def _hardshrink(input: Any, lambd: float) -> jax.Array:
    x = floating_input(input, "hardshrink")
    lam = _scalar(lambd, x)
    return jnp.where((x >= -lam) & (x <= lam), jnp.zeros_like(x), x)


def hardshrink(input: Any, lambd: float = 0.5) -> jax.Array:
    """``x if |x| > lambd else 0``, as ``torch.nn.functional.hardshrink``; derivative 0 at ``±lambd``.

    Args:
        input: array of any shape.
        lambd: half-width of the zeroed band. Default 0.5.

    Shape: any shape; the output has the shape of ``input``.

    Example:
        >>> import jax.numpy as jnp
        >>> from jaxlayers import functional as F
        >>> F.hardshrink(jnp.array([-1.0, 0.25, 2.0])).tolist()
        [-1.0, 0.0, 2.0]
    """
    return _hardshrink(input, lambd)


@half_in_float32
def _softshrink(input: Any, lambd: float, name: str) -> jax.Array:
    if not lambd >= 0:
        raise ValueError(f"{name}: lambd must be >= 0, got {lambd}")
    x = floating_input(input, name)
    lam = _scalar(lambd, x)
    return jnp.where(jnp.abs(x) <= lam, jnp.zeros_like(x), x - jnp.sign(x) * lam)


def softshrink(input: Any, lambd: float = 0.5) -> jax.Array:
    """``x - lambd`` above ``lambd``, ``x + lambd`` below ``-lambd``, else 0, as
    ``torch.nn.functional.softshrink``; derivative 0 at ``±lambd``.

    Raises ValueError for ``lambd < 0``.

    Args:
        input: array of any shape.
        lambd: shrinkage, ``>= 0``. Default 0.5.

    Shape: any shape; the output has the shape of ``input``.

    Example:
        >>> import jax.numpy as jnp
        >>> from jaxlayers import functional as F
        >>> F.softshrink(jnp.array([-1.0, 0.25, 2.0])).tolist()
        [-0.5, 0.0, 1.5]
    """
    return _softshrink(input, lambd, "softshrink")


@half_in_float32
def threshold(input: Any, threshold: float, value: float, inplace: bool = False) -> jax.Array:
    """``x if x > threshold else value``, as ``torch.nn.functional.threshold``;
    derivative 0 at ``threshold``.

    Args:
        input: array of any shape.
        threshold: values ``<= threshold`` are replaced.
        value: the replacement.
        inplace: accepted for torch compatibility; a no-op.

    Shape: any shape; the output has the shape of ``input``.

    Example:
        >>> import jax.numpy as jnp
        >>> from jaxlayers import functional as F
        >>> F.threshold(jnp.array([0.5, 2.0]), 1.0, -1.0).tolist()
        [-1.0, 2.0]
    """
    x = _arr(input)
    return jnp.where(x <= _scalar(threshold, x), _scalar(value, x), x)


# --------------------------------------------------------------------------- GLU, softmax family


@half_in_float32
def _glu(input: Any, dim: int, name: str) -> jax.Array:
    x = _float(input)
    if x.ndim == 0:
        raise ValueError(f"{name}: does not support 0-D input (scalars) because the halving size must be even")
    d = _norm_dim(dim, x.ndim, name)
    if x.shape[d] % 2:
        raise ValueError(
            f"{name}: halving dimension must be even, but dimension {dim} of input shape "
            f"{shape_str(x)} has size {x.shape[d]}"
        )
    a, b = jnp.split(x, 2, axis=d)
    return a * jax.nn.sigmoid(b)


def glu(input: Any, dim: int = -1) -> jax.Array:
    """Gated linear unit ``a * sigmoid(b)`` with ``a, b`` the two halves of ``input``
    along ``dim``, as ``torch.nn.functional.glu``.

    Args:
        input: array of at least 1-D, even size along ``dim`` (integer inputs are promoted to float).
        dim: the dimension to halve. Default -1.

    Shape: ``(*, 2M, *) -> (*, M, *)``.  Raises ValueError for an odd size or a 0-D
    input, IndexError for ``dim`` out of range.

    Example:
        >>> import jax.numpy as jnp
        >>> from jaxlayers import functional as F
        >>> F.glu(jnp.ones((2, 6))).shape
        (2, 3)
    """
    return _glu(input, dim, "glu")


def _softmax_dim(name: str, ndim: int, dim: Any, stacklevel: int) -> int:
    if dim is None:
        # torch's legacy rule (torch.nn.functional._get_softmax_dim), with its warning.
        warnings.warn(
            f"Implicit dimension choice for {name} has been deprecated. "
            "Change the call to include dim=X as an argument.",
            UserWarning,
            stacklevel=stacklevel,
        )
        dim = 0 if ndim in (0, 1, 3) else 1
    return _norm_dim(dim, ndim, name)


def _softmax_family(input: Any, dim: Any, dtype: Any, name: str, kind: str, stacklevel: int) -> jax.Array:
    x = _arr(input)
    if dtype is not None:
        x = x.astype(dtype)
    x = _float(x)
    d = _softmax_dim(name, x.ndim, dim, stacklevel + 1)
    scalar = x.ndim == 0
    if scalar:
        x = x.reshape((1,))
    if kind == "softmin":
        x = -x
    xc = x.astype(compute_dtype(x.dtype))  # torch's opmath: float32, rounded once
    y = (jax.nn.log_softmax(xc, axis=d) if kind == "log_softmax" else jax.nn.softmax(xc, axis=d)).astype(x.dtype)
    return y.reshape(()) if scalar else y


def softmax(input: Any, dim: int | None = None, _stacklevel: int = 3, dtype: Any = None) -> jax.Array:
    """``exp(x) / sum(exp(x), dim)``, as ``torch.nn.functional.softmax``.

    ``dtype`` casts the input first.  ``dim=None`` follows torch's deprecated
    implicit rule -- dim 0 for 0-, 1- and 3-D inputs, dim 1 otherwise -- and emits
    torch's ``UserWarning``; pass ``dim`` explicitly.  IndexError for ``dim`` out of range.

    Args:
        input: array of any shape.
        dim: the dimension that sums to 1 (``None``: torch's deprecated implicit choice).
        _stacklevel: torch's private warning-level argument.
        dtype: cast ``input`` to it first.

    Shape: any shape; the output has the shape of ``input``.

    Example:
        >>> import jax.numpy as jnp
        >>> from jaxlayers import functional as F
        >>> F.softmax(jnp.zeros(4), dim=0).tolist()
        [0.25, 0.25, 0.25, 0.25]
    """
    return _softmax_family(input, dim, dtype, "softmax", "softmax", _stacklevel)


def log_softmax(input: Any, dim: int | None = None, _stacklevel: int = 3, dtype: Any = None) -> jax.Array:
    """``log(softmax(x, dim))`` computed stably, as ``torch.nn.functional.log_softmax``.

    Same ``dim``/``dtype`` rules as :func:`softmax`.

    Args:
        input: array of any shape.
        dim, _stacklevel, dtype: as :func:`softmax`.

    Shape: any shape; the output has the shape of ``input``.

    Example:
        >>> import jax.numpy as jnp
        >>> from jaxlayers import functional as F
        >>> round(float(F.log_softmax(jnp.zeros(2), dim=0)[0]), 4)
        -0.6931
    """
    return _softmax_family(input, dim, dtype, "log_softmax", "log_softmax", _stacklevel)


def softmin(input: Any, dim: int | None = None, _stacklevel: int = 3, dtype: Any = None) -> jax.Array:
    """``softmax(-x, dim)``, as ``torch.nn.functional.softmin``.

    Same ``dim``/``dtype`` rules as :func:`softmax`.

    Args:
        input: array of any shape.
        dim, _stacklevel, dtype: as :func:`softmax`.

    Shape: any shape; the output has the shape of ``input``.

    Example:
        >>> import jax.numpy as jnp
        >>> from jaxlayers import functional as F
        >>> [round(v, 4) for v in F.softmin(jnp.array([1.0, 2.0]), dim=0).tolist()]
        [0.7311, 0.2689]
    """
    return _softmax_family(input, dim, dtype, "softmin", "softmin", _stacklevel)


@half_in_float32
def _softmax2d(input: Any, name: str) -> jax.Array:
    x = _arr(input)
    if x.ndim not in (3, 4):
        raise ValueError(f"{name}: expected (N, C, H, W) or (C, H, W) input, got {x.ndim}-D input of shape {shape_str(x)}")
    return jax.nn.softmax(_float(x), axis=-3)


@channels_last
def softmax2d(input: Any) -> jax.Array:
    """Softmax over the channels at every spatial location, as ``torch.nn.Softmax2d``
    (torch has no functional form; this is ``softmax(input, dim=-3)``).

    Args:
        input: ``(N, C, H, W)`` or ``(C, H, W)`` (ValueError otherwise).

    Shape: ``(N, C, H, W)`` or ``(C, H, W)``, output of the same shape.

    Example:
        >>> import jax.numpy as jnp
        >>> from jaxlayers import functional as F
        >>> F.softmax2d(jnp.zeros((1, 4, 2, 2)))[0, :, 0, 0].tolist()
        [0.25, 0.25, 0.25, 0.25]
    """
    return _softmax2d(input, "softmax2d")
