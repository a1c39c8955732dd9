"""torch's default initialisers as Flax initialisers ``init(key, shape, dtype)``.

Fans are computed as torch's ``_calculate_fan_in_and_fan_out``: for a weight of
shape ``(d0, d1, *k)``, ``fan_in = d1 * prod(k)`` and ``fan_out = d0 * prod(k)``.
That makes ``kaiming_uniform(a=sqrt(5))`` equal to torch's Conv/Linear default
``U(-1/sqrt(fan_in), 1/sqrt(fan_in))`` for both ``(out, in/groups, *k)`` conv
weights and ``(in, out/groups, *k)`` transposed-conv weights, as in torch.

Every ``torch.nn.init`` function has a namesake with torch's trailing underscore that takes
torch's arguments (minus the tensor) and returns an initialiser:
``init.kaiming_uniform_(a=0.1, mode="fan_out")(key, (8, 4, 3, 3), jnp.float32)``; it can be
passed wherever a module takes ``weight_init``/``bias_init``.  torch's ``generator`` is replaced
by the ``key``.  Given an ``nnx.Param`` first, it is torch's call and fills it in place
(``init.kaiming_normal_(m.weight, mode="fan_out", generator=key)``; without a generator the keys
of :func:`manual_seed`'s sequence).  Distribution arguments are checked when the initialiser is built, shape
requirements (``fan`` needs 2 dims, ``eye_`` 2, ``dirac_`` 3 to 5) when it is called.
"""

from __future__ import annotations

import functools
import math
import numbers
import threading
from typing import Any, Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from ._utils import compiled_when_eager, is_variable

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
    "calculate_fan_in_and_fan_out",
    "uniform_",
    "normal_",
    "constant_",
    "ones_",
    "zeros_",
    "eye_",
    "dirac_",
    "xavier_uniform_",
    "xavier_normal_",
    "kaiming_uniform_",
    "kaiming_normal_",
    "trunc_normal_",
    "orthogonal_",
    "sparse_",
    "eye",
    "dirac",
    "orthogonal",
    "sparse",
    "manual_seed",
]

Initializer = Callable[[jax.Array, Sequence[int], jnp.dtype], jax.Array]


def fan_in_and_fan_out(shape: Sequence[int], name: str = "init") -> tuple[int, int]:
    """torch's ``_calculate_fan_in_and_fan_out`` for a weight shape ``(d0, d1, *k)``:
    ``(d1 * prod(k), d0 * prod(k))``; ``name`` is used in the error message."""
    if len(shape) < 2:
        raise ValueError(
            f"{name}: fan in and fan out need a weight with at least 2 dimensions, got shape {tuple(shape)}"
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
        if param is None:
            slope = 0.01
        elif isinstance(param, numbers.Real) and not isinstance(param, bool):
            slope = float(param)
        else:
            raise ValueError(f"init.calculate_gain: negative_slope {param!r} not a valid number")
        return math.sqrt(2.0 / (1 + slope**2))
    if nonlinearity == "selu":
        return 3.0 / 4
    raise ValueError(f"init.calculate_gain: unsupported nonlinearity {nonlinearity!r}")


def _wide(dtype: Any) -> Any:
    """The dtype random numbers are drawn in before rounding once to ``dtype``: at least float32, as
    torch (drawn in bfloat16 a normal took 128 distinct values, max |x| 2.9, and a mean bias of
    -0.011 sigma)."""
    return jnp.promote_types(dtype, jnp.float32)


def _uniform(key: Any, shape: Sequence[int], dtype: Any, low: float, high: float) -> jax.Array:
    return jax.random.uniform(key, tuple(shape), _wide(dtype), minval=low, maxval=high).astype(dtype)


def _normal(key: Any, shape: Sequence[int], dtype: Any, std: float, mean: float = 0.0) -> jax.Array:
    # outside a trace one program per shape and parameters, not the draw, a product and a sum compiled apart
    return compiled_when_eager(_drawn_normal, (tuple(shape), dtype, std, mean), key)


def _drawn_normal(key: Any, shape: tuple, dtype: Any, std: float, mean: float) -> jax.Array:
    return (mean + std * jax.random.normal(key, shape, _wide(dtype))).astype(dtype)


def uniform(low: float = 0.0, high: float = 1.0) -> Initializer:
    """U(low, high), as ``torch.nn.init.uniform_``."""
    if not low <= high:
        raise ValueError(f"init.uniform_: expects a [from, to) range, but found from={low} > to={high}")

    def init(key, shape, dtype=jnp.float32):
        return _uniform(key, shape, dtype, low, high)

    return init


def normal(mean: float = 0.0, std: float = 1.0) -> Initializer:
    """N(mean, std²), as ``torch.nn.init.normal_``."""
    if not std >= 0:
        raise ValueError(f"init.normal_: expects std >= 0.0, got std={std}")

    def init(key, shape, dtype=jnp.float32):
        return _normal(key, shape, dtype, std, mean)

    return init


def constant(value: float) -> Initializer:
    def init(key, shape, dtype=jnp.float32):
        del key
        return jnp.full(tuple(shape), value, dtype)

    return init


zeros = constant(0.0)
ones = constant(1.0)


def _fan(fn: str, shape: Sequence[int], mode: str) -> int:
    fan_in, fan_out = fan_in_and_fan_out(shape, fn)
    return fan_in if mode == "fan_in" else fan_out


def kaiming_uniform(a: float = 0.0, mode: str = "fan_in", nonlinearity: str = "leaky_relu",
                    *, _name: str = "kaiming_uniform") -> Initializer:
    """``torch.nn.init.kaiming_uniform_``: U(±gain·sqrt(3/fan))."""
    mode = _check_mode(_name, mode, nonlinearity, a)

    def init(key, shape, dtype=jnp.float32):
        fan = _fan(_name, shape, mode)
        bound = math.sqrt(3.0) * calculate_gain(nonlinearity, a) / math.sqrt(fan) if fan else 0.0
        return _uniform(key, shape, dtype, -bound, bound)

    return init


def kaiming_normal(a: float = 0.0, mode: str = "fan_in", nonlinearity: str = "leaky_relu",
                   *, _name: str = "kaiming_normal") -> Initializer:
    """``torch.nn.init.kaiming_normal_``: N(0, (gain/sqrt(fan))²)."""
    mode = _check_mode(_name, mode, nonlinearity, a)

    def init(key, shape, dtype=jnp.float32):
        fan = _fan(_name, shape, mode)
        std = calculate_gain(nonlinearity, a) / math.sqrt(fan) if fan else 0.0
        return _normal(key, shape, dtype, std)

    return init


def xavier_uniform(gain: float = 1.0, *, _name: str = "xavier_uniform") -> Initializer:
    """``torch.nn.init.xavier_uniform_``: U(±gain·sqrt(6/(fan_in+fan_out)))."""

    def init(key, shape, dtype=jnp.float32):
        fan_in, fan_out = fan_in_and_fan_out(shape, _name)
        bound = gain * math.sqrt(6.0 / (fan_in + fan_out)) if fan_in + fan_out else 0.0
        return _uniform(key, shape, dtype, -bound, bound)

    return init


def xavier_normal(gain: float = 1.0, *, _name: str = "xavier_normal") -> Initializer:
    """``torch.nn.init.xavier_normal_``: N(0, gain²·2/(fan_in+fan_out))."""

    def init(key, shape, dtype=jnp.float32):
        fan_in, fan_out = fan_in_and_fan_out(shape, _name)
        std = gain * math.sqrt(2.0 / (fan_in + fan_out)) if fan_in + fan_out else 0.0
        return _normal(key, shape, dtype, std)

    return init


def uniform_fan_in(fan_in: int) -> Initializer:
    """U(±1/sqrt(fan_in)): torch's default bias for Conv*/Linear/Bilinear and
    the recurrent weights (with ``fan_in = hidden_size``)."""
    bound = 1.0 / math.sqrt(fan_in) if fan_in > 0 else 0.0
    return uniform(-bound, bound)


def torch_weight_default() -> Initializer:
    """Conv/Linear weight default: ``kaiming_uniform(a=sqrt(5))`` = U(±1/sqrt(fan_in))."""
    return kaiming_uniform(a=math.sqrt(5.0))


# ----------------------------------------------------------------------------- torch.nn.init names

calculate_fan_in_and_fan_out = fan_in_and_fan_out


def _shape(shape: Sequence[int]) -> tuple[int, ...]:
    return tuple(int(d) for d in shape)


def uniform_(a: float = 0.0, b: float = 1.0) -> Initializer:
    """``torch.nn.init.uniform_``: U(a, b).

    Example:
      >>> import jax
      >>> w = uniform_(-1.0, 1.0)(jax.random.key(0), (2, 3))
      >>> w.shape, bool((abs(w) <= 1).all())
      ((2, 3), True)
    """
    return uniform(a, b)


def normal_(mean: float = 0.0, std: float = 1.0) -> Initializer:
    """``torch.nn.init.normal_``: N(mean, std²)."""
    return normal(mean, std)


def constant_(val: float) -> Initializer:
    """``torch.nn.init.constant_``: every entry ``val``."""
    return constant(val)


def ones_() -> Initializer:
    """``torch.nn.init.ones_``."""
    return constant(1.0)


def zeros_() -> Initializer:
    """``torch.nn.init.zeros_``."""
    return constant(0.0)


def eye_() -> Initializer:
    """``torch.nn.init.eye_``: the identity of a 2-D ``(n, m)`` weight (Linear keeps its inputs).

    Example:
      >>> eye_()(None, (2, 3)).tolist()
      [[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]]
    """

    def init(key, shape, dtype=jnp.float32):
        del key
        shape = _shape(shape)
        if len(shape) != 2:
            raise ValueError(f"eye_: only tensors with 2 dimensions are supported, got shape {shape}")
        return jnp.eye(*shape, dtype=dtype)

    return init


def dirac_(groups: int = 1) -> Initializer:
    """``torch.nn.init.dirac_``: a Dirac delta conv weight ``(out, in, *k)`` (3-, 4- or 5-D) that keeps
    the first ``min(out/groups, in)`` input channels of each group (identity for equal sizes).

    Example:
      >>> dirac_()(None, (2, 2, 3))[:, :, 1].tolist()
      [[1.0, 0.0], [0.0, 1.0]]
    """
    groups = int(groups)
    if groups < 1:
        raise ValueError(f"dirac_: groups must be a positive int, got {groups}")

    def init(key, shape, dtype=jnp.float32):
        del key
        shape = _shape(shape)
        if len(shape) not in (3, 4, 5):
            raise ValueError(f"dirac_: only tensors with 3, 4, or 5 dimensions are supported, got shape {shape}")
        if shape[0] % groups:
            raise ValueError(f"dirac_: dim 0 (size {shape[0]}) must be divisible by groups={groups}")
        return compiled_when_eager(_dirac, (shape, dtype, groups))  # one program per shape, not op by op

    return init


def _dirac(shape: tuple, dtype: Any, groups: int) -> jax.Array:
    per = shape[0] // groups
    m = min(per, shape[1])
    out = jnp.arange(groups)[:, None] * per + jnp.arange(m)[None, :]
    inp = jnp.broadcast_to(jnp.arange(m)[None, :], out.shape)
    center = tuple(k // 2 for k in shape[2:])
    return jnp.zeros(shape, dtype).at[(out.ravel(), inp.ravel()) + center].set(1)


def xavier_uniform_(gain: float = 1.0) -> Initializer:
    """``torch.nn.init.xavier_uniform_``: U(±gain·sqrt(6/(fan_in+fan_out)))."""
    return xavier_uniform(gain, _name="xavier_uniform_")


def xavier_normal_(gain: float = 1.0) -> Initializer:
    """``torch.nn.init.xavier_normal_``: N(0, gain²·2/(fan_in+fan_out))."""
    return xavier_normal(gain, _name="xavier_normal_")


def _check_mode(fn: str, mode: str, nonlinearity: str, a: float) -> str:
    """The mode, lower-cased as torch does; validates it, the nonlinearity and the slope."""
    if not isinstance(mode, str) or mode.lower() not in ("fan_in", "fan_out"):
        raise ValueError(f"{fn}: mode {mode!r} not supported, please use one of fan_in, fan_out")
    calculate_gain(nonlinearity, a)
    return mode.lower()


def kaiming_uniform_(a: float = 0.0, mode: str = "fan_in", nonlinearity: str = "leaky_relu") -> Initializer:
    """``torch.nn.init.kaiming_uniform_``: U(±gain·sqrt(3/fan)), ``gain = calculate_gain(nonlinearity, a)``,
    ``fan`` the fan-in or fan-out (``mode``).

    Example:
      >>> import jax, math
      >>> w = kaiming_uniform_(a=math.sqrt(5))(jax.random.key(0), (4, 16))
      >>> bool((abs(w) <= 0.25).all())
      True
    """
    return kaiming_uniform(a, mode, nonlinearity, _name="kaiming_uniform_")


def kaiming_normal_(a: float = 0.0, mode: str = "fan_in", nonlinearity: str = "leaky_relu") -> Initializer:
    """``torch.nn.init.kaiming_normal_``: N(0, (gain/sqrt(fan))²)."""
    return kaiming_normal(a, mode, nonlinearity, _name="kaiming_normal_")


def trunc_normal_(mean: float = 0.0, std: float = 1.0, a: float = -2.0, b: float = 2.0) -> Initializer:
    """``torch.nn.init.trunc_normal_``: N(mean, std²) truncated to ``[a, b]`` (absolute bounds).

    By the inverse CDF: a probability drawn uniformly between the bounds' CDFs, then ``ndtri``, in at
    least float32, on the side of the mirror where the interval's CDF is small (so accurate: an
    interval in the upper tail is sampled as its mirror image and negated), never at a CDF of 0 or
    1 (the probabilities are a float32 grid of step ``2^-23`` of the interval's mass, kept below the
    upper bound's CDF: a wide interval's tails end near 5.2 sigma; at a CDF of 1, torch's default
    ``std=0.02`` had put about one weight in 2^23 at exactly ``b``, 100 sigma).
    (torch 2.13 samples by rejection; the distribution is the same.  Inverting ``2 Φ − 1`` with
    ``erfinv`` instead, as older torch did, put values of exactly ``a`` where ``Φ(a)`` rounds to 0,
    and collapsed an interval in the tail onto ``b``.)

    Example:
      >>> import jax
      >>> w = trunc_normal_(std=2.0, a=-1.0, b=1.0)(jax.random.key(0), (1000,))
      >>> bool((abs(w) <= 1).all())
      True
    """
    if not a <= b:
        raise ValueError(f"trunc_normal_: expected a <= b, got a={a}, b={b}")
    alpha, beta = (a - mean) / std, (b - mean) / std
    flip = alpha > -beta  # more of the interval above the mean: sample its mirror image
    if flip:
        alpha, beta = -beta, -alpha
    lo, hi = (0.5 * math.erfc(-t / math.sqrt(2.0)) for t in (alpha, beta))  # Φ, accurate in the lower tail

    def init(key, shape, dtype=jnp.float32):
        # outside a trace one program per shape and parameters (op by op, ndtri's polynomials compiled ~15)
        return compiled_when_eager(_truncated_normal, (_shape(shape), dtype, lo, hi, flip, std, mean, a, b), key)

    return init


def _truncated_normal(key: Any, shape: tuple, dtype: Any, lo: float, hi: float, flip: bool, std: float, mean: float,
                      a: float, b: float) -> jax.Array:
    """:func:`trunc_normal_`'s draw: ``lo``, ``hi`` the bounds' CDFs (of the mirror image if ``flip``)."""
    wide = _wide(dtype)
    u = jax.random.uniform(key, shape, wide)  # [0, 1): the probability is in (lo, hi]
    top = jnp.asarray(hi, wide)
    # below hi: where hi rounds to 1 (an upper bound beyond ~5.3 sigma), ndtri(1) is inf (the value b)
    p = jnp.minimum(top - jnp.asarray(hi - lo, wide) * u, jnp.nextafter(top, jnp.zeros((), wide)))
    x = jax.scipy.special.ndtri(p)
    x = (-x if flip else x) * std + mean
    return jnp.clip(x, a, b).astype(dtype)


def orthogonal_(gain: float = 1.0) -> Initializer:
    """``torch.nn.init.orthogonal_``: a (semi-)orthogonal ``(rows, prod(rest))`` matrix from the QR of a
    normal draw (signs fixed by ``diag(R)``), times ``gain``, reshaped to the weight's shape.

    Example:
      >>> import jax, jax.numpy as jnp
      >>> q = orthogonal_()(jax.random.key(0), (3, 5))
      >>> bool(jnp.allclose(q @ q.T, jnp.eye(3), atol=1e-5))
      True
    """

    def init(key, shape, dtype=jnp.float32):
        shape = _shape(shape)
        if len(shape) < 2:
            raise ValueError(f"orthogonal_: only tensors with 2 or more dimensions are supported, got shape {shape}")
        if math.prod(shape) == 0:
            return jnp.zeros(shape, dtype)
        return compiled_when_eager(_orthogonal, (shape, dtype, gain), key)

    return init


def _orthogonal(key: Any, shape: tuple, dtype: Any, gain: float) -> jax.Array:
    rows = shape[0]
    cols = math.prod(shape) // rows
    flat = jax.random.normal(key, (rows, cols), _wide(dtype))  # QR in at least float32, rounded once
    if rows < cols:
        flat = flat.T
    q, r = jnp.linalg.qr(flat)
    q = q * jnp.sign(jnp.diagonal(r))[None, :]
    if rows < cols:
        q = q.T
    return (gain * q).reshape(shape).astype(dtype)


def sparse_(sparsity: float, std: float = 0.01) -> Initializer:
    """``torch.nn.init.sparse_``: a 2-D weight from N(0, std²) with ``ceil(sparsity * rows)`` zeros
    in every column (at random rows).

    Example:
      >>> import jax
      >>> w = sparse_(0.5)(jax.random.key(0), (4, 3))
      >>> (w == 0).sum(axis=0).tolist()
      [2, 2, 2]
    """
    if not 0.0 <= float(sparsity) <= 1.0:
        raise ValueError(f"sparse_: sparsity must be in [0, 1], got {sparsity}")

    def init(key, shape, dtype=jnp.float32):
        shape = _shape(shape)
        if len(shape) != 2:
            raise ValueError(f"sparse_: only tensors with 2 dimensions are supported, got shape {shape}")
        return compiled_when_eager(_sparse, (shape, dtype, int(math.ceil(sparsity * shape[0])), std), key)

    return init


def _sparse(key: Any, shape: tuple, dtype: Any, num_zeros: int, std: float) -> jax.Array:
    k_val, k_perm = jax.random.split(key)
    w = _normal(k_val, shape, dtype, std)
    rank = jnp.argsort(jnp.argsort(jax.random.uniform(k_perm, shape), axis=0), axis=0)
    return jnp.where(rank < num_zeros, jnp.zeros((), dtype), w)


# ---------------------------------------------------------------- torch's call on a parameter

_generator: dict[str, Any] = {"seed": 0, "drawn": 0}
_generator_lock = threading.Lock()


def manual_seed(seed: int) -> None:
    """Seed the keys that torch-style in-place calls (``init.normal_(m.weight, std=0.01)``) draw when
    given no ``generator``, as ``torch.manual_seed`` seeds torch's global generator (default seed 0).
    The sequence advances in Python: inside ``jax.jit`` one trace draws one key for every call of the
    compiled function, so pass ``generator=`` there.

    Args:
      seed: an int.

    Example:
      >>> import jax.numpy as jnp
      >>> from flax import nnx
      >>> w = nnx.Param(jnp.zeros(3))
      >>> manual_seed(0); a = normal_(w)[...]
      >>> manual_seed(0); bool((normal_(w)[...] == a).all())
      True
    """
    with _generator_lock:
        _generator.update(seed=int(seed), drawn=0)


def _next_key() -> jax.Array:
    with _generator_lock:
        _generator["drawn"] += 1
        seed, drawn = _generator["seed"], _generator["drawn"]
    return jax.random.fold_in(jax.random.key(seed), drawn)  # built per draw: never a stored tracer


def _key(generator: Any, fn: str) -> jax.Array:
    """torch's ``generator``: a key, or an ``nnx.Rngs``/``RngStream`` that advances as torch's does."""
    if generator is None:
        return _next_key()
    if hasattr(generator, "params") and callable(getattr(generator, "params")):  # nnx.Rngs
        return generator.params()
    if callable(generator) and not isinstance(generator, jax.Array):  # nnx.RngStream
        return generator()
    if isinstance(generator, jax.Array) and (jnp.issubdtype(generator.dtype, jax.dtypes.prng_key)
                                             or generator.shape == (2,)):
        return generator
    raise TypeError(f"{fn}: generator must be a jax.random key, an nnx.Rngs or an nnx.RngStream, "
                    f"got {type(generator).__name__}")


# deterministic fills, which torch also runs on integer tensors
_FILLS = ("constant_", "ones_", "zeros_", "eye_", "dirac_", "constant")


# torch's keyword names of the deprecated functions whose arguments are named differently here
_TORCH_KEYWORDS = {"uniform": {"a": "low", "b": "high"}, "constant": {"val": "value"}}


def _is_tensor(value: Any, fn: str) -> bool:
    """A parameter to fill: an ``nnx.Variable``; or an array given where the first argument is a number
    (``constant`` takes an array value: ``PReLU(init=array)``)."""
    return is_variable(value) or (
        fn not in ("constant", "constant_") and isinstance(value, (jax.Array, np.ndarray)) and np.ndim(value) > 0)


def _torch_call(fn: Callable[..., Initializer]) -> Callable[..., Any]:
    """``fn(*args)`` returns an initialiser, as before; ``fn(param, *args, generator=key)`` is torch's
    call: it fills an ``nnx.Param`` (any ``nnx.Variable``) in place and returns it, with the key
    ``generator`` or the next one of :func:`manual_seed`'s sequence.  An array is immutable: a
    TypeError says what to write instead (the call had bound the array to the first argument, ``a``
    or ``mean``, and silently changed nothing)."""

    @functools.wraps(fn)
    def call(*args: Any, generator: Any = None, **kwargs: Any) -> Any:
        tensor = kwargs.pop("tensor", None)
        if tensor is None and args and _is_tensor(args[0], fn.__name__):
            tensor, args = args[0], args[1:]
        if tensor is not None:  # torch's call: torch's keyword names
            kwargs = {_TORCH_KEYWORDS.get(fn.__name__, {}).get(k, k): v for k, v in kwargs.items()}
        if tensor is None:
            if generator is not None:
                raise TypeError(f"{fn.__name__}: generator= goes with a parameter to fill "
                                f"({fn.__name__}(param, ..., generator=key)); the initialiser takes the key")
            return fn(*args, **kwargs)
        if not is_variable(tensor):
            raise TypeError(f"{fn.__name__}: JAX arrays are immutable, so a {type(tensor).__name__} cannot be filled "
                            f"in place; pass the module's nnx.Param ({fn.__name__}(m.weight, ...)), or build "
                            f"the array with {fn.__name__}(...)(key, shape, dtype)")
        value = jnp.asarray(tensor.get_value())
        if not jnp.issubdtype(value.dtype, jnp.inexact) and fn.__name__ not in _FILLS:
            raise TypeError(f"{fn.__name__}: expected a floating-point parameter, got {value.dtype} (torch does not "
                            "draw random values into integer tensors)")
        tensor.set_value(fn(*args, **kwargs)(_key(generator, fn.__name__), value.shape, value.dtype))
        return tensor

    return call


# torch's functions and its deprecated names without the underscore (torch.nn.init.normal(tensor, ...)),
# whose factory forms here take the same arguments after the tensor
_IN_PLACE = ("uniform_", "normal_", "constant_", "ones_", "zeros_", "eye_", "dirac_", "xavier_uniform_",
             "xavier_normal_", "kaiming_uniform_", "kaiming_normal_", "trunc_normal_", "orthogonal_", "sparse_",
             "uniform", "normal", "constant", "xavier_uniform", "xavier_normal", "kaiming_uniform", "kaiming_normal")
for _name in _IN_PLACE:
    globals()[_name] = _torch_call(globals()[_name])


# torch's deprecated names without the underscore (``torch.nn.init.orthogonal`` etc.); torch warns,
# these do not, as ``uniform``/``normal``/``xavier_*``/``kaiming_*`` here do not
eye = eye_
dirac = dirac_
orthogonal = orthogonal_
sparse = sparse_
