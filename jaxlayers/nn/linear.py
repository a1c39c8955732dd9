"""Linear, Bilinear, Identity, LazyLinear."""

from __future__ import annotations

from typing import Any

import flax.linen as fnn
import jax.numpy as jnp
from flax.linen.dtypes import promote_dtype

from .. import init as jinit
from .._utils import check_sizes, shape_str
from ..functional.linear import _bilinear, _linear
from ._options import LayerOptions
from ._param import param

__all__ = ["Identity", "Linear", "LazyLinear", "Bilinear"]


class Identity(fnn.Module):
    """Returns its input, as ``torch.nn.Identity``.

    ``Identity(*args, **kwargs)``: any arguments are accepted and ignored
    (Flax's own ``parent``/``name`` keywords keep their meaning).

    Args: any positional or keyword arguments; ignored.

    Shape: ``(*) -> (*)``.

    Example:
      >>> import jax.numpy as jnp
      >>> from jaxlayers import nn
      >>> nn.Identity(54, unused=1).apply({}, jnp.ones(2)).tolist()
      [1.0, 1.0]
    """

    def __call__(self, input: Any) -> Any:
        return input


_identity_dataclass_init = Identity.__init__


def _identity_init(self, *args: Any, parent: Any = fnn.module._unspecified_parent, name: str | None = None,
                   **kwargs: Any) -> None:
    del args, kwargs  # torch's Identity ignores its arguments
    _identity_dataclass_init(self, parent=parent, name=name)


Identity.__init__ = _identity_init


def _dense(module: fnn.Module, x, in_features: int, layer: str):
    """The parameters and the call shared by Linear and LazyLinear."""
    w_init = module.weight_init or jinit.torch_weight_default()
    weight = param(module, "weight", w_init, (module.out_features, in_features), module.param_dtype)
    bias = None
    if module.bias:
        b_init = module.bias_init or jinit.uniform_fan_in(in_features)
        bias = param(module, "bias", b_init, (module.out_features,), module.param_dtype)
    x, weight, bias = promote_dtype(x, weight, bias, dtype=module.dtype)
    return _linear(x, weight, bias, name=layer, in_desc=f"in_features={in_features}", precision=module.precision)


def _check_last_dim(layer: str, x, in_features: int) -> None:
    """Validate before any parameter is created so that the layer's message wins."""
    shape = jnp.shape(x)
    if len(shape) == 0:
        raise ValueError(f"{layer}: expected input with at least 1 dimension, got a 0-d input (shape ())")
    if shape[-1] != in_features:
        raise ValueError(
            f"{layer}: expected input with last dimension {in_features} (in_features={in_features}), "
            f"got shape {shape_str(shape)}"
        )


class Linear(LayerOptions):
    """Affine map ``y = x @ weight.T + bias``, as ``torch.nn.Linear``.

    Args:
      in_features: size of each input sample.
      out_features: size of each output sample.
      bias: learn an additive bias (default True).
      dtype: computation dtype (Flax meaning); None infers it from input and params.
      param_dtype: dtype of the parameters (default float32).
      weight_init, bias_init: initialiser overrides; None = torch's defaults
        (weight: ``kaiming_uniform(a=sqrt(5))`` = U(±1/sqrt(in_features)), bias: U(±1/sqrt(in_features))).
      precision: XLA precision of the matmul.

    Variables: ``params/weight`` ``(out_features, in_features)`` (torch's layout) and
    ``params/bias`` ``(out_features,)``.

    Shape: ``(*, in_features) -> (*, out_features)``.

    Example:
      >>> import jax, jax.numpy as jnp
      >>> from jaxlayers import nn
      >>> m, x = nn.Linear(3, 4), jnp.ones((2, 3))
      >>> v = m.init(jax.random.key(0), x)
      >>> v["params"]["weight"].shape, m.apply(v, x).shape
      ((4, 3), (2, 4))
    """

    in_features: int
    out_features: int
    bias: bool = True

    def __post_init__(self) -> None:
        check_sizes(type(self).__name__, in_features=self.in_features, out_features=self.out_features)
        super().__post_init__()

    @fnn.compact
    def __call__(self, input):
        _check_last_dim(type(self).__name__, input, self.in_features)
        return _dense(self, input, self.in_features, type(self).__name__)


class LazyLinear(LayerOptions):
    """``torch.nn.LazyLinear``: a :class:`Linear` whose ``in_features`` is read from the input at init.

    Args: as :class:`Linear` without ``in_features``.  Once initialised, the
    ``weight`` shape fixes ``in_features``; an input with another last dim is an error.

    Shape: ``(*, H_in) -> (*, out_features)``.

    Example:
      >>> import jax, jax.numpy as jnp
      >>> from jaxlayers import nn
      >>> m, x = nn.LazyLinear(4), jnp.ones((2, 3))
      >>> v = m.init(jax.random.key(0), x)
      >>> v["params"]["weight"].shape, m.apply(v, x).shape
      ((4, 3), (2, 4))
    """

    out_features: int
    bias: bool = True

    def __post_init__(self) -> None:
        check_sizes(type(self).__name__, out_features=self.out_features)
        super().__post_init__()

    @fnn.compact
    def __call__(self, input):
        layer = type(self).__name__
        if self.has_variable("params", "weight"):
            in_features = self.get_variable("params", "weight").shape[-1]
        else:
            if jnp.ndim(input) == 0:
                raise ValueError(f"{layer}: expected input with at least 1 dimension, got a 0-d input (shape ())")
            in_features = jnp.shape(input)[-1]
        _check_last_dim(layer, input, in_features)
        return _dense(self, input, in_features, layer)


class Bilinear(LayerOptions):
    """``y = x1 @ weight[o] @ x2 + bias[o]``, as ``torch.nn.Bilinear``.

    Args:
      in1_features, in2_features: sizes of the two inputs' samples.
      out_features: size of each output sample.
      bias: learn an additive bias (default True).
      dtype, param_dtype, weight_init, bias_init, precision: as :class:`Linear`.
        torch's default init is U(±1/sqrt(in1_features)) for weight and bias.

    Variables: ``params/weight`` ``(out_features, in1_features, in2_features)``, ``params/bias`` ``(out_features,)``.

    Shape: ``(*, in1_features), (*, in2_features) -> (*, out_features)``.

    Example:
      >>> import jax, jax.numpy as jnp
      >>> from jaxlayers import nn
      >>> m, x1, x2 = nn.Bilinear(3, 5, 4), jnp.ones((2, 3)), jnp.ones((2, 5))
      >>> v = m.init(jax.random.key(0), x1, x2)
      >>> v["params"]["weight"].shape, m.apply(v, x1, x2).shape
      ((4, 3, 5), (2, 4))
    """

    in1_features: int
    in2_features: int
    out_features: int
    bias: bool = True

    def __post_init__(self) -> None:
        check_sizes(type(self).__name__, 1, in1_features=self.in1_features)  # torch: in1_features must be > 0
        check_sizes(type(self).__name__, in2_features=self.in2_features, out_features=self.out_features)
        super().__post_init__()

    @fnn.compact
    def __call__(self, input1, input2):
        layer = type(self).__name__
        default = jinit.uniform_fan_in(self.in1_features)
        weight = param(self, "weight", self.weight_init or default,
                       (self.out_features, self.in1_features, self.in2_features), self.param_dtype)
        bias = None
        if self.bias:
            bias = param(self, "bias", self.bias_init or default, (self.out_features,), self.param_dtype)
        input1, input2, weight, bias = promote_dtype(input1, input2, weight, bias, dtype=self.dtype)
        return _bilinear(input1, input2, weight, bias, name=layer, precision=self.precision)
