"""Activation modules, thin over :mod:`jaxlayers.functional.activation`.

Each class keeps torch's constructor arguments (in torch's order, with torch's
defaults) as dataclass fields; ``inplace`` is accepted and ignored.  Parameter-free
modules share one base, :class:`_Activation`, that calls the family's function with
the fields named in ``_args``; argument checks run at construction.
"""

from __future__ import annotations

import warnings
from typing import Any, Callable, ClassVar

import flax.linen as fnn
import jax
import jax.numpy as jnp
from flax.linen.dtypes import promote_dtype

from .._memory_format import channels_last
from .. import init as jinit
from .._utils import require_train, stream_key
from ..functional import activation as A
from ._options import InitOptions, set_field
from ._param import param

__all__ = [
    "ReLU",
    "ReLU6",
    "LeakyReLU",
    "PReLU",
    "RReLU",
    "ELU",
    "SELU",
    "CELU",
    "GELU",
    "SiLU",
    "Mish",
    "Sigmoid",
    "LogSigmoid",
    "Tanh",
    "Hardtanh",
    "Hardswish",
    "Hardsigmoid",
    "Hardshrink",
    "Softshrink",
    "Tanhshrink",
    "Softsign",
    "Softplus",
    "Threshold",
    "GLU",
    "Softmax",
    "LogSoftmax",
    "Softmin",
    "Softmax2d",
]


class _Activation(fnn.Module):
    """Base of the parameter-free activations: ``_fn(input, *[getattr(self, a) for a in _args])``.

    ``_fn`` receives ``name=<class name>`` when ``_named`` is set so that errors name the module.
    """

    _fn: ClassVar[Callable[..., Any]]
    _args: ClassVar[tuple[str, ...]] = ()
    _named: ClassVar[bool] = False

    def __post_init__(self) -> None:
        self._check()
        super().__post_init__()

    @fnn.nowrap  # called by __post_init__, unbound (flax's wrapper needs a scope under tabulate)
    def _check(self) -> None:
        """Constructor-time validation (overridden where torch validates arguments)."""

    def __call__(self, input: Any) -> jax.Array:
        args = tuple(getattr(self, a) for a in self._args)
        if self._named:
            return type(self)._fn(input, *args, name=type(self).__name__)
        return type(self)._fn(input, *args)

    def extra_repr(self) -> str:
        return ", ".join(f"{a}={getattr(self, a)!r}" for a in self._args)


def _static(f: Callable[..., Any]) -> Any:
    return staticmethod(f)


class ReLU(_Activation):
    """``max(0, x)`` elementwise, as ``torch.nn.ReLU``.

    Args:
        inplace: accepted for torch compatibility; a no-op.

    Shape: any shape, output of the same shape.

    Example:
        >>> import jax.numpy as jnp
        >>> from jaxlayers import nn
        >>> nn.ReLU().apply({}, jnp.array([-1.0, 2.0])).tolist()
        [0.0, 2.0]
    """

    inplace: bool = False
    _fn = _static(A.relu)


class ReLU6(_Activation):
    """``min(max(0, x), 6)``, as ``torch.nn.ReLU6``.

    Args:
        inplace: no-op.

    Shape: any shape, output of the same shape.

    Example:
        >>> import jax.numpy as jnp
        >>> from jaxlayers import nn
        >>> nn.ReLU6().apply({}, jnp.array([-1.0, 8.0])).tolist()
        [0.0, 6.0]
    """

    inplace: bool = False
    _fn = _static(A.relu6)


class LeakyReLU(_Activation):
    """``x if x > 0 else negative_slope * x``, as ``torch.nn.LeakyReLU``.

    Args:
        negative_slope: slope for ``x <= 0``. Default 0.01.
        inplace: no-op.

    Shape: any shape, output of the same shape.

    Example:
        >>> import jax.numpy as jnp
        >>> from jaxlayers import nn
        >>> nn.LeakyReLU(0.5).apply({}, jnp.array([-2.0, 3.0])).tolist()
        [-1.0, 3.0]
    """

    negative_slope: float = 0.01
    inplace: bool = False
    _fn = _static(A.leaky_relu)
    _args = ("negative_slope",)


class ELU(_Activation):
    """``x if x > 0 else alpha * (exp(x) - 1)``, as ``torch.nn.ELU``.

    Args:
        alpha: scale of the negative part. Default 1.0.
        inplace: no-op.

    Shape: any shape, output of the same shape.

    Example:
        >>> import jax.numpy as jnp
        >>> from jaxlayers import nn
        >>> round(float(nn.ELU().apply({}, jnp.array(-1.0))), 4)
        -0.6321
    """

    alpha: float = 1.0
    inplace: bool = False
    _fn = _static(A.elu)
    _args = ("alpha",)


class SELU(_Activation):
    """``scale * elu(x, alpha)`` with torch's constants, as ``torch.nn.SELU``.

    Args:
        inplace: no-op.

    Shape: any shape, output of the same shape.

    Example:
        >>> import jax.numpy as jnp
        >>> from jaxlayers import nn
        >>> round(float(nn.SELU().apply({}, jnp.array(1.0))), 4)
        1.0507
    """

    inplace: bool = False
    _fn = _static(A.selu)


class CELU(_Activation):
    """``x if x > 0 else alpha * (exp(x / alpha) - 1)``, as ``torch.nn.CELU``.

    Args:
        alpha: Default 1.0; must be non-zero (ValueError at construction).
        inplace: no-op.

    Shape: any shape, output of the same shape.

    Example:
        >>> import jax.numpy as jnp
        >>> from jaxlayers import nn
        >>> round(float(nn.CELU(2.0).apply({}, jnp.array(-1.0))), 4)
        -0.7869
    """

    alpha: float = 1.0
    inplace: bool = False
    _fn = _static(A.celu)
    _args = ("alpha",)

    @fnn.nowrap
    def _check(self) -> None:
        if self.alpha == 0:
            raise ValueError("CELU: alpha cannot be 0")


class GELU(_Activation):
    """Gaussian error linear unit, as ``torch.nn.GELU``.

    Args:
        approximate: ``"none"`` (exact, erf) or ``"tanh"``. Default ``"none"``;
            anything else raises ValueError at construction.

    Shape: any shape, output of the same shape.

    Example:
        >>> import jax.numpy as jnp
        >>> from jaxlayers import nn
        >>> round(float(nn.GELU().apply({}, jnp.array(1.0))), 4)
        0.8413
    """

    approximate: str = "none"
    _fn = _static(A._gelu)
    _args = ("approximate",)
    _named = True

    @fnn.nowrap
    def _check(self) -> None:
        if self.approximate not in ("none", "tanh"):
            raise ValueError(f"GELU: approximate must be either 'none' or 'tanh', got {self.approximate!r}")


class SiLU(_Activation):
    """``x * sigmoid(x)``, as ``torch.nn.SiLU``.

    Args:
        inplace: no-op.

    Shape: any shape, output of the same shape.

    Example:
        >>> import jax.numpy as jnp
        >>> from jaxlayers import nn
        >>> round(float(nn.SiLU().apply({}, jnp.array(1.0))), 4)
        0.7311
    """

    inplace: bool = False
    _fn = _static(A.silu)


class Mish(_Activation):
    """``x * tanh(softplus(x))``, as ``torch.nn.Mish``.

    Args:
        inplace: no-op.

    Shape: any shape, output of the same shape.

    Example:
        >>> import jax.numpy as jnp
        >>> from jaxlayers import nn
        >>> round(float(nn.Mish().apply({}, jnp.array(1.0))), 4)
        0.8651
    """

    inplace: bool = False
    _fn = _static(A.mish)


class Sigmoid(_Activation):
    """``1 / (1 + exp(-x))``, as ``torch.nn.Sigmoid``.

    Args: none.

    Shape: any shape, output of the same shape.

    Example:
        >>> import jax.numpy as jnp
        >>> from jaxlayers import nn
        >>> nn.Sigmoid().apply({}, jnp.array([0.0])).tolist()
        [0.5]
    """

    _fn = _static(A.sigmoid)


class LogSigmoid(_Activation):
    """``log(sigmoid(x))``, as ``torch.nn.LogSigmoid``.

    Args: none.

    Shape: any shape, output of the same shape.

    Example:
        >>> import jax.numpy as jnp
        >>> from jaxlayers import nn
        >>> round(float(nn.LogSigmoid().apply({}, jnp.array(0.0))), 4)
        -0.6931
    """

    _fn = _static(A.logsigmoid)


class Tanh(_Activation):
    """``tanh(x)``, as ``torch.nn.Tanh``.

    Args: none.

    Shape: any shape, output of the same shape.

    Example:
        >>> import jax.numpy as jnp
        >>> from jaxlayers import nn
        >>> round(float(nn.Tanh().apply({}, jnp.array(1.0))), 4)
        0.7616
    """

    _fn = _static(A.tanh)


class Hardtanh(_Activation):
    """``clip(x, min_val, max_val)``, as ``torch.nn.Hardtanh``.

    Args:
        min_val: Default -1.0.
        max_val: Default 1.0; ValueError at construction if ``max_val < min_val``.
        inplace: no-op.
        min_value, max_value: torch's deprecated names of ``min_val`` / ``max_val``; given, they
            replace them (with torch's deprecation warning).

    Shape: any shape, output of the same shape.

    Example:
        >>> import jax.numpy as jnp
        >>> from jaxlayers import nn
        >>> nn.Hardtanh(-2.0, 2.0).apply({}, jnp.array([-3.0, 1.0, 3.0])).tolist()
        [-2.0, 1.0, 2.0]
    """

    min_val: float = -1.0
    max_val: float = 1.0
    inplace: bool = False
    min_value: float | None = None
    max_value: float | None = None
    _fn = _static(A._hardtanh)
    _args = ("min_val", "max_val")
    _named = True

    @fnn.nowrap
    def _check(self) -> None:
        for old, new in (("min_value", "min_val"), ("max_value", "max_val")):
            if getattr(self, old) is not None:
                warnings.warn(f"keyword argument `{old}` is deprecated and renamed to `{new}`", DeprecationWarning,
                              stacklevel=4)
                set_field(self, new, getattr(self, old))
        if self.max_val < self.min_val:
            raise ValueError(
                f"Hardtanh: max_val ({self.max_val}) must be greater than or equal to min_val ({self.min_val})"
            )


class Hardswish(_Activation):
    """``x * relu6(x + 3) / 6``, as ``torch.nn.Hardswish``.

    Args:
        inplace: no-op.

    Shape: any shape, output of the same shape.

    Example:
        >>> import jax.numpy as jnp
        >>> from jaxlayers import nn
        >>> nn.Hardswish().apply({}, jnp.array([-3.0, 1.5, 4.0])).tolist()
        [-0.0, 1.125, 4.0]
    """

    inplace: bool = False
    _fn = _static(A.hardswish)


class Hardsigmoid(_Activation):
    """``relu6(x + 3) / 6``, as ``torch.nn.Hardsigmoid``.

    Args:
        inplace: no-op.

    Shape: any shape, output of the same shape.

    Example:
        >>> import jax.numpy as jnp
        >>> from jaxlayers import nn
        >>> nn.Hardsigmoid().apply({}, jnp.array([-3.0, 0.0, 3.0])).tolist()
        [0.0, 0.5, 1.0]
    """

    inplace: bool = False
    _fn = _static(A.hardsigmoid)


class Hardshrink(_Activation):
    """``x if |x| > lambd else 0``, as ``torch.nn.Hardshrink``.

    Args:
        lambd: Default 0.5.

    Shape: any shape, output of the same shape.

    Example:
        >>> import jax.numpy as jnp
        >>> from jaxlayers import nn
        >>> nn.Hardshrink().apply({}, jnp.array([-1.0, 0.25, 2.0])).tolist()
        [-1.0, 0.0, 2.0]
    """

    lambd: float = 0.5
    _fn = _static(A.hardshrink)
    _args = ("lambd",)


class Softshrink(_Activation):
    """Shrink towards 0 by ``lambd``, as ``torch.nn.Softshrink``.

    Args:
        lambd: Default 0.5; must be >= 0 (ValueError at construction).

    Shape: any shape, output of the same shape.

    Example:
        >>> import jax.numpy as jnp
        >>> from jaxlayers import nn
        >>> nn.Softshrink().apply({}, jnp.array([-1.0, 0.25, 2.0])).tolist()
        [-0.5, 0.0, 1.5]
    """

    lambd: float = 0.5
    _fn = _static(A._softshrink)
    _args = ("lambd",)
    _named = True

    @fnn.nowrap
    def _check(self) -> None:
        if not self.lambd >= 0:
            raise ValueError(f"Softshrink: lambd must be >= 0, got {self.lambd}")


class Tanhshrink(_Activation):
    """``x - tanh(x)``, as ``torch.nn.Tanhshrink``.

    Args: none.

    Shape: any shape, output of the same shape.

    Example:
        >>> import jax.numpy as jnp
        >>> from jaxlayers import nn
        >>> round(float(nn.Tanhshrink().apply({}, jnp.array(1.0))), 4)
        0.2384
    """

    _fn = _static(A.tanhshrink)


class Softsign(_Activation):
    """``x / (1 + |x|)``, as ``torch.nn.Softsign``.

    Args: none.

    Shape: any shape, output of the same shape.

    Example:
        >>> import jax.numpy as jnp
        >>> from jaxlayers import nn
        >>> nn.Softsign().apply({}, jnp.array([-1.0, 3.0])).tolist()
        [-0.5, 0.75]
    """

    _fn = _static(A.softsign)


class Softplus(_Activation):
    """``log(1 + exp(beta x)) / beta``, linear where ``beta x > threshold``, as ``torch.nn.Softplus``.

    Args:
        beta: Default 1.0.
        threshold: Default 20.0.

    Shape: any shape, output of the same shape.

    Example:
        >>> import jax.numpy as jnp
        >>> from jaxlayers import nn
        >>> round(float(nn.Softplus().apply({}, jnp.array(1.0))), 4)
        1.3133
    """

    beta: float = 1.0
    threshold: float = 20.0
    _fn = _static(A.softplus)
    _args = ("beta", "threshold")


class Threshold(_Activation):
    """``x if x > threshold else value``, as ``torch.nn.Threshold``.

    Args:
        threshold: the value to threshold at (required).
        value: the replacement value (required).
        inplace: no-op.

    Shape: any shape, output of the same shape.

    Example:
        >>> import jax.numpy as jnp
        >>> from jaxlayers import nn
        >>> nn.Threshold(1.0, -1.0).apply({}, jnp.array([0.5, 2.0])).tolist()
        [-1.0, 2.0]
    """

    threshold: float
    value: float
    inplace: bool = False
    _fn = _static(A.threshold)
    _args = ("threshold", "value")


class GLU(_Activation):
    """Gated linear unit ``a * sigmoid(b)`` over the halves of ``dim``, as ``torch.nn.GLU``.

    Args:
        dim: the dimension to split. Default -1.

    Shape: ``(*, 2M, *) -> (*, M, *)``.

    Example:
        >>> import jax.numpy as jnp
        >>> from jaxlayers import nn
        >>> nn.GLU().apply({}, jnp.ones((2, 6))).shape
        (2, 3)
    """

    dim: int = -1
    _fn = _static(A._glu)
    _args = ("dim",)
    _named = True


class _SoftmaxBase(_Activation):
    dim: int | None = None
    _kind: ClassVar[str]

    def __call__(self, input: Any) -> jax.Array:
        # stacklevel 4: warning -> _softmax_dim -> _softmax_family -> here -> caller
        return A._softmax_family(input, self.dim, None, type(self).__name__, self._kind, 3)

    def extra_repr(self) -> str:
        return f"dim={self.dim!r}"


class Softmax(_SoftmaxBase):
    """Softmax along ``dim``, as ``torch.nn.Softmax``.

    Args:
        dim: the dimension summing to 1. ``None`` uses torch's deprecated implicit
            rule (dim 0 for 0-, 1-, 3-D input, else dim 1) with torch's UserWarning.

    Shape: any shape, output of the same shape.

    Example:
        >>> import jax.numpy as jnp
        >>> from jaxlayers import nn
        >>> nn.Softmax(dim=-1).apply({}, jnp.zeros((1, 4))).tolist()
        [[0.25, 0.25, 0.25, 0.25]]
    """

    _kind = "softmax"


class LogSoftmax(_SoftmaxBase):
    """``log(softmax(x, dim))``, as ``torch.nn.LogSoftmax``.

    Args:
        dim: as in :class:`Softmax`.

    Shape: any shape, output of the same shape.

    Example:
        >>> import jax.numpy as jnp
        >>> from jaxlayers import nn
        >>> round(float(nn.LogSoftmax(dim=0).apply({}, jnp.zeros(2))[0]), 4)
        -0.6931
    """

    _kind = "log_softmax"


class Softmin(_SoftmaxBase):
    """``softmax(-x, dim)``, as ``torch.nn.Softmin``.

    Args:
        dim: as in :class:`Softmax`.

    Shape: any shape, output of the same shape.

    Example:
        >>> import jax.numpy as jnp
        >>> from jaxlayers import nn
        >>> [round(v, 4) for v in nn.Softmin(dim=0).apply({}, jnp.array([1.0, 2.0])).tolist()]
        [0.7311, 0.2689]
    """

    _kind = "softmin"


class Softmax2d(_Activation):
    """Softmax over channels at every spatial location, as ``torch.nn.Softmax2d``.

    Args: none.

    Shape: ``(N, C, H, W)`` or ``(C, H, W)``, output of the same shape; other ranks raise ValueError.

    Example:
        >>> import jax.numpy as jnp
        >>> from jaxlayers import nn
        >>> nn.Softmax2d().apply({}, jnp.zeros((1, 4, 2, 2)))[0, :, 0, 0].tolist()
        [0.25, 0.25, 0.25, 0.25]
    """

    _fn = _static(channels_last(A._softmax2d))
    _named = True


class PReLU(InitOptions):
    """``x if x > 0 else weight * x`` with a learnable ``weight``, as ``torch.nn.PReLU``.

    Args:
        num_parameters: 1 (one slope shared by all channels) or the number of
            channels ``C`` (dim 1 of the input). Default 1.
        init: initial value of every slope. Default 0.25.  (Stored as the field
            ``init_value``, because ``init`` is a Flax method; ``PReLU(3, 0.1)``
            and ``PReLU(num_parameters=3, init=0.1)`` both work.)
        dtype: computation dtype (Flax meaning). Default: inferred.
        param_dtype: dtype of ``weight``. Default float32.
        weight_init: initialiser override for ``weight``; ``None`` = constant ``init``.

    Variables: ``params/weight`` of shape ``(num_parameters,)``.

    Shape: ``(*)``, output of the same shape; with ``num_parameters = C`` the input must
    be ``(N, C, *)`` (ValueError otherwise).

    Example:
        >>> import jax, jax.numpy as jnp
        >>> from jaxlayers import nn
        >>> m = nn.PReLU()
        >>> v = m.init(jax.random.key(0), jnp.array([-2.0, 1.0]))
        >>> v["params"]["weight"].tolist(), m.apply(v, jnp.array([-2.0, 1.0])).tolist()
        ([0.25], [-0.5, 1.0])
    """

    num_parameters: int = 1
    init_value: float = 0.25

    def __post_init__(self) -> None:
        n = self.num_parameters
        if not isinstance(n, int) or isinstance(n, bool):
            raise TypeError(f"PReLU: num_parameters must be an int, got {n!r}")
        if n < 1:
            raise ValueError(f"PReLU: num_parameters must be >= 1, got {n}")
        super().__post_init__()

    @channels_last
    @fnn.compact
    def __call__(self, input: Any) -> jax.Array:
        init_fn = self.weight_init if self.weight_init is not None else jinit.constant(self.init_value)
        weight = param(self, "weight", init_fn, (self.num_parameters,), self.param_dtype)
        x, weight = promote_dtype(jnp.asarray(input), weight, dtype=self.dtype)
        return A._prelu(x, weight, "PReLU")


_prelu_dataclass_init = PReLU.__init__


def _prelu_init(self: PReLU, *args: Any, init: Any = None, **kwargs: Any) -> None:
    if init is not None:
        if "init_value" in kwargs or len(args) >= 2:
            raise TypeError("PReLU: give the initial slope once, as init= or init_value=")
        kwargs["init_value"] = init
    _prelu_dataclass_init(self, *args, **kwargs)


PReLU.__init__ = _prelu_init  # torch's keyword `init`


class RReLU(fnn.Module):
    """Randomized leaky ReLU, as ``torch.nn.RReLU``: ``x if x > 0 else a * x``.

    In training ``a ~ U(lower, upper)`` per element, drawn from the ``rng_collection`` stream
    (``"dropout"``); in evaluation ``a = (lower + upper) / 2``.

    Args:
        lower: lower bound of the slope. Default 1/8.
        upper: upper bound of the slope. Default 1/3 (``lower <= upper``, ValueError otherwise).
        inplace: no-op.
        rng_collection: Flax rng stream of the slopes. Default ``"dropout"``.

    Call: ``module(x, *, train)`` (required, as Dropout);
    ``apply(v, x, train=True, rngs={"dropout": key})``.

    Shape: any shape, output of the same shape.

    Example:
        >>> import jax.numpy as jnp
        >>> from jaxlayers import nn
        >>> print(nn.RReLU(0.1, 0.3).apply({}, jnp.array([-2.0, 3.0]), train=False))
        [-0.4  3. ]
    """

    lower: float = 1.0 / 8
    upper: float = 1.0 / 3
    inplace: bool = False
    rng_collection: str = "dropout"

    def __post_init__(self) -> None:
        if not float(self.lower) <= float(self.upper):
            raise ValueError(f"RReLU: lower bound ({self.lower}) must be less than or equal to the upper "
                             f"bound ({self.upper})")
        super().__post_init__()

    def __call__(self, input: Any, *, train: bool | None = None, rng: jax.Array | None = None) -> jax.Array:
        """``rng``: the slopes' key, instead of one drawn from ``rng_collection``."""
        train = require_train("RReLU", train)
        key = stream_key(self, rng) if train else None
        return A._rrelu(input, self.lower, self.upper, train, key, "RReLU")

    def extra_repr(self) -> str:
        return f"lower={self.lower}, upper={self.upper}"
