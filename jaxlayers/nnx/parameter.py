"""torch's ``nn.Parameter`` as an ``nnx.Param``: ``p.data`` with torch's in-place tensor methods.

Every ``jaxlayers.nnx`` layer holds its parameters as :class:`Parameter` (an
``nnx.Param``: flax's filters, optimizers and transforms treat it as one), so
torch's init and update idioms port as they are written::

    module.weight.data.normal_(mean=0.0, std=0.02)      # Hugging Face's _init_weights
    module.bias.data.zero_()
    module.weight.data[padding_idx].zero_()
    p_ema.data.mul_(decay).add_(p.data, alpha=1 - decay)

The methods write the parameter in place (``set_value``), computing in its dtype
as torch does; random fills take ``generator=`` (a key, an ``nnx.Rngs``) or the
:func:`jaxlayers.init.manual_seed` sequence, as :mod:`jaxlayers.init`.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from .. import init as jinit
from .. import interop
from .._utils import is_torch_tensor, is_variable

__all__ = ["Parameter", "TensorData"]

_NO_FLAG = ("JAX computes gradients of what it is asked to differentiate, so a parameter has no {what}: "
            "freeze with a filter (nnx.DiffState(0, trainable), nnx.Optimizer(model, tx, wrt=trainable)) and "
            "take gradients from nnx.grad (docs/nnx.md)")


def _array(value: Any) -> Any:
    """An operand of torch's in-place methods: a number, an array, a parameter or its ``data``, a torch tensor."""
    if is_variable(value):
        return value.get_value()
    if is_torch_tensor(value):
        return interop.to_numpy(value)
    return value


def _split(v: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Veltkamp's split of float32 ``v`` into 12-bit halves, ``hi + lo == v`` (their products are exact)."""
    t = v * np.float32(4097.0)
    hi = t - (t - v)
    return hi, v - hi


@jax.jit  # one fused loop when called eagerly (op by op: 0.75 s for an EMA step of 10M float32)
def _fma32(a: jax.Array, b: jax.Array, c: jax.Array) -> jax.Array:
    """``a * b + c`` in float32 rounded once, as torch's vectorised kernels (a fused multiply-add), from
    float32 operations on any device, traced or not: Dekker's exact product ``p + e == a * b`` and Knuth's
    exact sum ``s + t == p + c``, then ``s + (t + e)`` (off torch's bits only where ``t + e`` rounds onto a
    tie).  Where the split overflows (|a| or |b| above ~1e34) or a term is not finite, ``a * b + c``."""
    p = a * b
    (ah, al), (bh, bl) = _split(a), _split(b)
    e = ((ah * bh - p) + ah * bl + al * bh) + al * bl
    s = p + c
    v = s - p
    t = (p - (s - v)) + (c - v)
    out = s + (t + e)
    return jnp.where(jnp.isfinite(out), out, p + c)


def _common_dtype(value: Any, other: Any) -> Any:
    """torch's common dtype of ``value op other`` (a number or 0-d operand takes the parameter's) where
    torch computes in float32 (its ``opmath`` for float32 and the half types); None for float64 or a
    non-floating result (then computed as JAX does)."""
    dtype = jnp.result_type(value) if np.ndim(other) == 0 else jnp.result_type(value, other)
    if not jnp.issubdtype(dtype, jnp.floating) or jnp.dtype(dtype).itemsize > 4:
        return None
    return dtype


def _fused_add(value: Any, other: Any, alpha: Any) -> Any:
    """``value + alpha * other`` as torch's ``add_(other, alpha=)`` computes it: ``other`` and ``alpha`` in
    the common dtype, one fused multiply-add in float32 (:func:`_fma32`), rounded to the parameter's dtype.
    float64: JAX's two roundings (1 ulp may differ)."""
    value = jnp.asarray(value)
    common = _common_dtype(value, other)
    if common is None or np.ndim(alpha):
        return value + alpha * jnp.asarray(other)
    o = jnp.asarray(other).astype(common).astype(jnp.float32)
    a = jnp.asarray(alpha).astype(common).astype(jnp.float32)
    return _fma32(a, o, value.astype(jnp.float32)).astype(value.dtype)


def _in_float32(value: Any, other: Any, op: Any) -> Any:
    """``op(value, other)`` as torch's ``mul_``/``div_``: in float32 for half types, rounded once to the
    parameter's dtype, a number operand keeping its float32 value (``mul_(0.37)`` on bfloat16 is not a
    product with bfloat16's 0.369)."""
    value = jnp.asarray(value)
    common = _common_dtype(value, other)
    if common is None:
        return op(value, other)
    o = jnp.asarray(other, jnp.float32 if np.ndim(other) == 0 else common).astype(jnp.float32)
    if op is jnp.divide and np.ndim(o) == 0:
        # XLA rewrites a division by a broadcast number as a product with its reciprocal (1 ulp off torch's
        # true division on a third of the elements): the barrier keeps the division
        o = jax.lax.optimization_barrier(jnp.broadcast_to(o, value.shape))
    return op(value.astype(jnp.float32), o).astype(value.dtype)


class TensorData:
    """``param.data`` or ``param.data[index]``: torch's in-place tensor methods, written into the parameter.

    Each method returns the ``TensorData`` (torch's chaining: ``p.data.mul_(d).add_(q.data, alpha=1 - d)``).
    Reading: ``shape``, ``size()``, ``dim()``, ``numel()``, ``clone()``, arithmetic (``(1 - d) * p.data``)
    and the array's methods give JAX arrays.  Unlike torch, a view by a boolean mask or an integer
    array (``p.data[mask].zero_()``) writes into the parameter (torch's acts on a copy).

    Example:
        >>> import jax.numpy as jnp
        >>> from jaxlayers import nnx
        >>> p = nnx.Parameter(jnp.ones((2, 3)))
        >>> _ = p.data.mul_(2.0).add_(jnp.ones(3), alpha=0.5)
        >>> _ = p.data[0].zero_()
        >>> p[...].tolist()
        [[0.0, 0.0, 0.0], [2.5, 2.5, 2.5]]
    """

    __slots__ = ("_param", "_index")

    def __init__(self, param: nnx.Variable, index: Any = None):
        self._param, self._index = param, index

    def get_value(self) -> Any:
        value = self._param.get_value()
        return value if self._index is None else value[self._index]

    def set_value(self, value: Any) -> None:
        """Write ``value`` (cast to the parameter's dtype, broadcast to the view's shape, as torch's ``copy_``)."""
        old = self.get_value()
        new = jnp.broadcast_to(jnp.asarray(_array(value)).astype(old.dtype), old.shape)
        whole = self._param.get_value()
        self._param.set_value(new if self._index is None else jnp.asarray(whole).at[self._index].set(new))

    def __getitem__(self, index: Any) -> "TensorData":
        if self._index is not None:
            raise TypeError("TensorData: index the parameter's data once (p.data[i, j], not p.data[i][j])")
        parts = index if isinstance(index, tuple) else (index,)
        if not any(p is Ellipsis or p is None for p in parts):  # JAX clamps an integer out of range: torch raises
            for dim, (p, n) in enumerate(zip(parts, self.shape)):
                if isinstance(p, (int, np.integer)) and not isinstance(p, bool) and not -n <= p < n:
                    raise IndexError(f"TensorData: index {p} is out of bounds for dimension {dim} with size {n}")
        return TensorData(self._param, index)

    def __setitem__(self, index: Any, value: Any) -> None:
        self[index].set_value(value)

    def _write(self, value: Any) -> "TensorData":
        self.set_value(value)
        return self

    def _arith(self, value: Any) -> "TensorData":
        """The result of an arithmetic method, written back: as torch, a floating result does not go into an
        integer parameter (``mul_(2.5)`` on int32 is torch's error, not a truncation)."""
        dtype = self.dtype
        if not jnp.issubdtype(dtype, jnp.inexact) and jnp.issubdtype(jnp.result_type(value), jnp.inexact):
            raise TypeError(f"TensorData: result type {jnp.result_type(value)} can't be cast to the parameter's "
                            f"{dtype}, as in torch")
        return self._write(value)

    # torch's in-place methods ---------------------------------------------------------------------
    def zero_(self) -> "TensorData":
        return self._write(0)

    def fill_(self, value: Any) -> "TensorData":
        value = _array(value)
        if np.ndim(value):
            raise ValueError(f"TensorData.fill_: only a number or a 0-d array fills, got shape {np.shape(value)} "
                             "(copy_ takes an array)")
        return self._write(value)

    def copy_(self, src: Any) -> "TensorData":
        return self._write(src)

    def normal_(self, mean: float = 0.0, std: float = 1.0, *, generator: Any = None) -> "TensorData":
        jinit.normal_(self, mean, std, generator=generator)
        return self

    def uniform_(self, from_: float = 0.0, to: float = 1.0, *, generator: Any = None) -> "TensorData":
        """torch's ``uniform_(from=0, to=1)`` (``from`` is a Python keyword: ``from_=``, or by position)."""
        jinit.uniform_(self, from_, to, generator=generator)
        return self

    def mul_(self, other: Any) -> "TensorData":
        return self._arith(_in_float32(self.get_value(), _array(other), jnp.multiply))

    def div_(self, other: Any) -> "TensorData":
        return self._arith(_in_float32(self.get_value(), _array(other), jnp.divide))

    def add_(self, other: Any, *, alpha: float = 1) -> "TensorData":
        """``self += alpha * other``, rounded once as torch's fused multiply-add (see :func:`_fused_add`)."""
        return self._arith(_fused_add(self.get_value(), _array(other), alpha))

    def sub_(self, other: Any, *, alpha: float = 1) -> "TensorData":
        return self._arith(_fused_add(self.get_value(), _array(other), -alpha))

    def lerp_(self, end: Any, weight: Any) -> "TensorData":
        """torch's two-sided formula: exact at both ends (``weight=1`` gives ``end``)."""
        value, end, weight = self.get_value(), jnp.asarray(_array(end)), jnp.asarray(_array(weight))
        common = _common_dtype(value, end)
        if common is not None and not np.ndim(weight):  # torch's kernel: in float32, one fused multiply-add
            v, e = value.astype(jnp.float32), end.astype(common).astype(jnp.float32)
            w = weight.astype(jnp.float32)
            small = jnp.abs(w) < 0.5
            return self._arith(_fma32(jnp.where(small, w, w - 1), e - v, jnp.where(small, v, e)).astype(value.dtype))
        diff = end - value
        return self._arith(jnp.where(jnp.abs(weight) < 0.5, value + weight * diff, end - diff * (1 - weight)))

    def clamp_(self, min: Any = None, max: Any = None) -> "TensorData":  # noqa: A002 (torch's names)
        if min is None and max is None:
            raise ValueError("TensorData.clamp_: at least one of 'min' or 'max' must not be None")
        return self._arith(jnp.clip(self.get_value(), _array(min), _array(max)))

    # torch tensor reads: the values as a JAX array --------------------------------------------------
    def clone(self) -> Any:
        return jnp.array(self.get_value())

    def size(self, dim: int | None = None) -> Any:
        return self.shape if dim is None else self.shape[dim]

    def dim(self) -> int:
        return self.ndim

    def numel(self) -> int:
        return int(np.prod(self.shape))

    def __getattr__(self, name: str) -> Any:  # p.data.sum(), p.data.T: the array's
        return getattr(self.get_value(), name)

    def _binary(op: str) -> Any:  # noqa: N805 (builds the operators below)
        def method(self: "TensorData", other: Any) -> Any:
            return getattr(jnp.asarray(self.get_value()), op)(_array(other))

        method.__name__ = op
        return method

    for _op in ("add", "radd", "sub", "rsub", "mul", "rmul", "truediv", "rtruediv", "pow", "rpow", "matmul",
                "rmatmul", "lt", "le", "gt", "ge"):
        locals()[f"__{_op}__"] = _binary(f"__{_op}__")
    del _op, _binary

    def __neg__(self) -> Any:
        return -jnp.asarray(self.get_value())

    # reading ----------------------------------------------------------------------------------------
    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self.get_value().shape)

    @property
    def dtype(self) -> Any:
        return self.get_value().dtype

    @property
    def ndim(self) -> int:
        return len(self.shape)

    def __jax_array__(self) -> Any:
        return jnp.asarray(self.get_value())

    def __array__(self, dtype: Any = None, copy: Any = None) -> Any:
        return np.asarray(self.get_value(), dtype=dtype)

    def __len__(self) -> int:
        return self.shape[0]

    def __repr__(self) -> str:
        return f"TensorData({self.get_value()!r})"


class Parameter(nnx.Param):
    """torch's ``nn.Parameter(tensor)``: an ``nnx.Param`` with ``.data`` (:class:`TensorData`),
    ``dim()`` and ``numel()``; reading ``requires_grad`` or ``grad`` is an AttributeError, and setting
    ``requires_grad`` a TypeError, that says what JAX does instead.  Custom modules use it as torch's: ``self.cls_token = nnx.Parameter(jnp.zeros((1, 1, d)))``.

    Example:
        >>> import jax.numpy as jnp
        >>> from jaxlayers import nnx
        >>> p = nnx.Parameter(jnp.zeros((2, 3)))
        >>> _ = p.data.fill_(0.5)
        >>> p.dim(), p.numel(), float(p[0, 0])
        (2, 6, 0.5)
    """

    __slots__ = ()

    @property
    def data(self) -> TensorData:
        return TensorData(self)

    @data.setter
    def data(self, value: Any) -> None:  # torch's p.data = t replaces the values (shape and dtype too)
        self.set_value(jnp.asarray(_array(value)))

    def dim(self) -> int:
        return self.get_value().ndim

    def numel(self) -> int:
        return int(self.get_value().size)

    def _no_requires_grad(self, value: bool) -> None:
        raise TypeError("Parameter.requires_grad: " + _NO_FLAG.format(what="requires_grad flag"))

    requires_grad = property(None, _no_requires_grad)  # reading falls to __getattr__: an AttributeError

    def __getattr__(self, name: str) -> Any:
        """``p.grad`` and ``p.requires_grad`` are AttributeErrors that say what JAX does instead (so
        ``hasattr``/``getattr(p, name, default)`` work)."""
        if name in ("grad", "requires_grad"):
            raise AttributeError(f"Parameter.{name}: " + _NO_FLAG.format(what=name))
        return super().__getattr__(name)
