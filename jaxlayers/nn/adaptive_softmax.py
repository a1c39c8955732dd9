"""AdaptiveLogSoftmaxWithLoss, thin over :mod:`jaxlayers.functional.adaptive_softmax`."""

from __future__ import annotations

from typing import Any, ClassVar, Sequence

import flax.linen as fnn
import jax
import jax.numpy as jnp
from flax.linen.dtypes import promote_dtype

from .. import init as jinit
from ..functional import adaptive_softmax as A
from ._options import AffineOptions
from ._param import param
from .linear import Linear

__all__ = ["AdaptiveLogSoftmaxWithLoss"]


class _LinearParams(AffineOptions):
    """The variables of a torch ``Linear`` (``weight`` ``(out, in)``, optional ``bias``) without its call."""

    in_features: int = 1
    out_features: int = 1
    bias: bool = True

    @fnn.compact
    def __call__(self) -> tuple[jax.Array, jax.Array | None]:
        w = param(self, "weight", self.weight_init or jinit.torch_weight_default(),
                  (self.out_features, self.in_features), self.param_dtype)
        b = None
        if self.bias:
            b = param(self, "bias", self.bias_init or jinit.uniform_fan_in(self.in_features), (self.out_features,),
                      self.param_dtype)
        return w, b

    def torch_layer(self) -> Linear:
        """The layer torch holds here (a ``Linear``): what ``jaxlayers.nnx`` makes ``head``, ``tail[i][j]``."""
        return Linear(self.in_features, self.out_features, bias=self.bias, param_dtype=self.param_dtype,
                      weight_init=self.weight_init, bias_init=self.bias_init, parent=None)


class _Cluster(AffineOptions):
    """torch's ``Sequential(Linear(in, hsz, bias=False), Linear(hsz, osz, bias=False))``: children ``"0"``, ``"1"``."""

    torch_container: ClassVar[bool] = True
    proj: tuple = ()
    outw: tuple = ()

    @fnn.compact
    def __call__(self) -> tuple[jax.Array, jax.Array]:
        kw = dict(bias=False, param_dtype=self.param_dtype, weight_init=self.weight_init)
        p, _ = _LinearParams(in_features=self.proj[1], out_features=self.proj[0], name="0", **kw)()
        o, _ = _LinearParams(in_features=self.outw[1], out_features=self.outw[0], name="1", **kw)()
        return p, o


class _Tail(AffineOptions):
    """torch's ``tail`` ModuleList: child ``"i"`` is cluster ``i``'s :class:`_Cluster`."""

    torch_container: ClassVar[bool] = True
    shapes: tuple = ()

    @fnn.compact
    def __call__(self) -> list[tuple[jax.Array, jax.Array]]:
        return [_Cluster(proj=p, outw=o, param_dtype=self.param_dtype, weight_init=self.weight_init, name=str(i))()
                for i, (p, o) in enumerate(self.shapes)]


class AdaptiveLogSoftmaxWithLoss(AffineOptions):
    """Efficient softmax approximation for large vocabularies, as ``torch.nn.AdaptiveLogSoftmaxWithLoss``.

    Args:
        in_features: size of each input sample.
        n_classes: number of classes.
        cutoffs: increasing cluster boundaries in ``[1, n_classes - 1]``.
        div_value: cluster ``i``'s projection has ``in_features // div_value ** (i + 1)`` features. Default 4.
        head_bias: the head has a bias. Default False.
        dtype, param_dtype, weight_init, bias_init: Flax options (torch's Linear initialisation by default).

    Variables (torch's keys): ``head.weight`` ``(cutoffs[0] + n_clusters, in_features)``, ``head.bias``,
    ``tail.{i}.0.weight`` ``(hsz_i, in_features)``, ``tail.{i}.1.weight`` ``(osz_i, hsz_i)``.

    Call ``(input, target)`` -> ``ASMoutput(output, loss)``; methods ``log_prob(input)`` and
    ``predict(input)`` (``module.apply(v, x, method="log_prob")``; in :mod:`jaxlayers.nnx`,
    ``asm(x, method="log_prob")``).

    Shape: input ``(N, in_features)`` or ``(in_features,)``, target ``(N,)`` or ``()``; output like the
    target, loss scalar; ``log_prob``: ``(N, n_classes)``; ``predict``: ``(N,)``.

    Example:
        >>> import jax, jax.numpy as jnp
        >>> from jaxlayers import nn
        >>> asm = nn.AdaptiveLogSoftmaxWithLoss(8, 10, cutoffs=[4, 8])
        >>> x, t = jnp.ones((3, 8)), jnp.array([0, 5, 9])
        >>> v = asm.init(jax.random.key(0), x, t)
        >>> sorted(v["params"]["tail"]["1"])
        ['0', '1']
        >>> asm.apply(v, x, method="log_prob").shape
        (3, 10)
    """

    in_features: int
    n_classes: int
    cutoffs: Sequence[int]
    div_value: float = 4.0
    head_bias: bool = False

    def setup(self) -> None:
        name = type(self).__name__
        self._cut = A._check_cutoffs(name, self.in_features, self.n_classes, self.cutoffs, self.div_value)
        head_size = self._cut[0] + len(self._cut)
        self.head = _LinearParams(in_features=self.in_features, out_features=head_size, bias=self.head_bias,
                                  param_dtype=self.param_dtype, weight_init=self.weight_init, bias_init=self.bias_init)
        self.tail = _Tail(shapes=tuple(A._tail_shapes(self.in_features, self.n_classes, self._cut, self.div_value)),
                          param_dtype=self.param_dtype, weight_init=self.weight_init)

    def _nnx_probe_inputs(self) -> tuple:
        """A tiny ``(input, target)`` for :mod:`jaxlayers.nnx` to create the variables at construction."""
        return jnp.zeros((1, self.in_features), jnp.float32), jnp.zeros((1,), jnp.int32)

    def _weights(self, input: Any) -> tuple:
        hw, hb = self.head()
        tails = self.tail()
        flat = [hw, hb] + [w for pair in tails for w in pair]
        input, *flat = promote_dtype(input, *flat, dtype=self.dtype)
        hw, hb, rest = flat[0], flat[1], flat[2:]
        return input, hw, hb, [(rest[2 * i], rest[2 * i + 1]) for i in range(len(tails))]

    def __call__(self, input: Any, target: Any) -> A.ASMoutput:
        x, hw, hb, tails = self._weights(input)
        return A.adaptive_log_softmax_with_loss(x, target, hw, tails, self._cut, hb, name=type(self).__name__)

    def log_prob(self, input: Any) -> jax.Array:
        x, hw, hb, tails = self._weights(input)
        return A.adaptive_log_prob(x, hw, tails, self._cut, hb, name=type(self).__name__)

    def predict(self, input: Any) -> jax.Array:
        x, hw, hb, tails = self._weights(input)
        return A.adaptive_predict(x, hw, tails, self._cut, hb, name=type(self).__name__)
