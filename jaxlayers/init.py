"""torch's default initialisers as Flax initialisers ``init(key, shape, dtype)``.

Fans are computed as torch's ``_calculate_fan_in_and_fan_out``: for a weight of
shape ``(d0, d1, *k)``, ``fan_in = d1 * prod(k)`` and ``fan_out = d0 * prod(k)``.
That makes ``kaiming_uniform(a=sqrt(5))`` equal to torch's Conv/Linear default
``U(-1/sqrt(fan_in), 1/sqrt(fan_in))`` for both ``(out, in/groups, *k)`` conv
weights and ``(in, out/groups, *k)`` transposed-conv weights, as in torch.
"""

from __future__ import annotations

import math
from typing import Callable, Sequence

import jax
import jax.numpy as jnp

__all__ = [
    "Initializer",
    "fan_in_and_fan_out",
    "calculate_gain",
    "uniform",
    "normal",
    "constant",
    "zeros",
    "ones",
    "kaiming_uniform",
    "kaiming_normal",
    "xavier_uniform",
    "xavier_normal",
    "uniform_fan_in",
    "torch_weight_default",
]

Initializer = Callable[[jax.Array, Sequence[int], jnp.dtype], jax.Array]


def fan_in_and_fan_out(shape: Sequence[int]) -> tuple[int, int]:
    """torch's ``_calculate_fan_in_and_fan_out`` for a weight shape."""
    if len(shape) < 2:
        raise ValueError(
            f"init: fan in and fan out need a weight with at least 2 dimensions, got shape {tuple(shape)}"
        )
    receptive = math.prod(shape[2:]) if len(shape) > 2 else 1
    return int(shape[1]) * receptive, int(shape[0]) * receptive


def calculate_gain(nonlinearity: str, param: float | None = None) -> float:
    """torch.nn.init.calculate_gain."""
    linear = {"linear", "conv1d", "conv2d", "conv3d", "conv_transpose1d",
              "conv_transpose2d", "conv_transpose3d", "sigmoid"}
    if nonlinearity in linear:
        return 1.0
    if nonlinearity == "tanh":
        return 5.0 / 3
    if nonlinearity == "relu":
        return math.sqrt(2.0)
    if nonlinearity == "leaky_relu":
        slope = 0.01 if param is None else float(param)
        return math.sqrt(2.0 / (1 + slope**2))
    if nonlinearity == "selu":
        return 3.0 / 4
    raise ValueError(f"init.calculate_gain: unsupported nonlinearity {nonlinearity!r}")


def uniform(low: float = 0.0, high: float = 1.0) -> Initializer:
    """U(low, high), as ``torch.nn.init.uniform_``."""

    def init(key, shape, dtype=jnp.float32):
        return jax.random.uniform(key, tuple(shape), dtype, minval=low, maxval=high)

    return init


def normal(mean: float = 0.0, std: float = 1.0) -> Initializer:
    """N(mean, std²), as ``torch.nn.init.normal_``."""

    def init(key, shape, dtype=jnp.float32):
        return mean + std * jax.random.normal(key, tuple(shape), dtype)

    return init


def constant(value: float) -> Initializer:
    def init(key, shape, dtype=jnp.float32):
        del key
        return jnp.full(tuple(shape), value, dtype)

    return init


zeros = constant(0.0)
ones = constant(1.0)


def kaiming_uniform(a: float = 0.0, mode: str = "fan_in", nonlinearity: str = "leaky_relu") -> Initializer:
    """``torch.nn.init.kaiming_uniform_``: U(±gain·sqrt(3/fan))."""

    def init(key, shape, dtype=jnp.float32):
        fan_in, fan_out = fan_in_and_fan_out(shape)
        fan = fan_in if mode == "fan_in" else fan_out
        bound = math.sqrt(3.0) * calculate_gain(nonlinearity, a) / math.sqrt(fan) if fan else 0.0
        return jax.random.uniform(key, tuple(shape), dtype, minval=-bound, maxval=bound)

    return init


def kaiming_normal(a: float = 0.0, mode: str = "fan_in", nonlinearity: str = "leaky_relu") -> Initializer:
    """``torch.nn.init.kaiming_normal_``: N(0, (gain/sqrt(fan))²)."""

    def init(key, shape, dtype=jnp.float32):
        fan_in, fan_out = fan_in_and_fan_out(shape)
        fan = fan_in if mode == "fan_in" else fan_out
        std = calculate_gain(nonlinearity, a) / math.sqrt(fan) if fan else 0.0
        return std * jax.random.normal(key, tuple(shape), dtype)

    return init


def xavier_uniform(gain: float = 1.0) -> Initializer:
    def init(key, shape, dtype=jnp.float32):
        fan_in, fan_out = fan_in_and_fan_out(shape)
        bound = gain * math.sqrt(6.0 / (fan_in + fan_out))
        return jax.random.uniform(key, tuple(shape), dtype, minval=-bound, maxval=bound)

    return init


def xavier_normal(gain: float = 1.0) -> Initializer:
    def init(key, shape, dtype=jnp.float32):
        fan_in, fan_out = fan_in_and_fan_out(shape)
        std = gain * math.sqrt(2.0 / (fan_in + fan_out))
        return std * jax.random.normal(key, tuple(shape), dtype)

    return init


def uniform_fan_in(fan_in: int) -> Initializer:
    """U(±1/sqrt(fan_in)): torch's default bias for Conv*/Linear/Bilinear and
    the recurrent weights (with ``fan_in = hidden_size``)."""
    bound = 1.0 / math.sqrt(fan_in) if fan_in > 0 else 0.0
    return uniform(-bound, bound)


def torch_weight_default() -> Initializer:
    """Conv/Linear weight default: ``kaiming_uniform(a=sqrt(5))`` = U(±1/sqrt(fan_in))."""
    return kaiming_uniform(a=math.sqrt(5.0))
