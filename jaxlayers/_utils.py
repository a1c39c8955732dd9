"""Argument parsing and validation shared by every layer family.

Every error raised from here starts with the layer's name (``"Conv2d: ..."``,
``"max_pool2d: ..."``) so that a user sees which layer, which argument and which
shapes are involved.  Checks run at construction or trace time on static shapes,
never on traced values.
"""

from __future__ import annotations

import functools
import inspect
import math
from typing import Any, Iterable, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from . import config

__all__ = [
    "ntuple",
    "check_input_rank",
    "require_train",
    "accepts_train",
    "index_dtype",
    "shape_str",
]


def shape_str(x: Any) -> str:
    """``(8, 3, 32, 32)`` for an array or a shape."""
    shape = tuple(x.shape) if hasattr(x, "shape") else tuple(x)
    return "(" + ", ".join(str(int(s)) for s in shape) + ("," if len(shape) == 1 else "") + ")"


def _is_int(v: Any) -> bool:
    return isinstance(v, (int, np.integer)) and not isinstance(v, bool)


def check_sizes(layer: str, lowest: int = 0, **sizes: Any) -> None:
    """A layer's size arguments (``in_features=3, ...``): ints (TypeError) of at least ``lowest`` (ValueError)."""
    for arg, v in sizes.items():
        if not _is_int(v):
            raise TypeError(f"{layer}: {arg} must be an int, got {v!r}")
        if v < lowest:
            raise ValueError(f"{layer}: {arg} must be >= {lowest}, got {arg}={v}")


def ntuple(
    value: Any,
    n: int,
    arg: str,
    layer: str,
    *,
    min_value: int | None = None,
) -> tuple[int, ...]:
    """Normalise an int-or-sequence argument to a tuple of ``n`` ints.

    ``ntuple(3, 2, "kernel_size", "Conv2d") == (3, 3)``; a sequence must have
    exactly ``n`` entries.  ``min_value`` bounds every entry from below.
    """
    if _is_int(value):
        out = (int(value),) * n
    elif isinstance(value, (tuple, list)) and all(_is_int(v) for v in value):
        if len(value) == 1 and n > 1:
            out = (int(value[0]),) * n
        elif len(value) != n:
            raise ValueError(
                f"{layer}: {arg} must be an int or a sequence of {n} ints, got {value!r}"
            )
        else:
            out = tuple(int(v) for v in value)
    else:
        raise TypeError(
            f"{layer}: {arg} must be an int or a sequence of {n} ints, got {value!r}"
        )
    if min_value is not None and any(v < min_value for v in out):
        raise ValueError(f"{layer}: {arg} must be >= {min_value} everywhere, got {value!r}")
    return out


def check_input_rank(layer: str, x: Any, ranks: Iterable[int], what: str = "") -> int:
    """Raise unless ``x.ndim`` is one of ``ranks``; return the rank.

    ``what`` describes the expected layouts, e.g. ``"(N, C, H, W) or (C, H, W)"``.
    """
    ranks = tuple(ranks)
    ndim = jnp.ndim(x)
    if ndim not in ranks:
        expected = what or " or ".join(f"{r}-D" for r in ranks)
        raise ValueError(
            f"{layer}: expected {expected} input, got {ndim}-D input of shape {shape_str(jnp.shape(x))}"
        )
    return ndim


def channel_dim(layer: str, channel_axis: Any, ndim: int) -> int:
    """The channel dim of an ``ndim``-D input: 1 for ``channel_axis=1`` (torch's
    ``(N, C, *spatial)``), ``ndim - 1`` for ``-1`` (``(N, *spatial, C)``, what
    channels-last mode passes); anything else is a ValueError naming ``layer``."""
    if _is_int(channel_axis) and ndim >= 2 and channel_axis % ndim in (1, ndim - 1):
        return channel_axis % ndim
    raise ValueError(f"{layer}: channel_axis must be 1 (N, C, *spatial) or -1 (N, *spatial, C), "
                     f"got {channel_axis!r}")


def require_train(layer: str, train: bool | None) -> bool:
    """Modules that behave differently in training and evaluation need ``train``.

    There is no silent default: ``model.apply(v, x)`` on such a module raises.
    """
    if train is None:
        raise ValueError(
            f"{layer}: `train` must be given: call with train=True (training: batch "
            "statistics, dropout active) or train=False (evaluation)"
        )
    if not isinstance(train, (bool, np.bool_)):
        hint = ""
        if isinstance(train, jax.core.Tracer):  # nn.remat / nn.jit trace keyword arguments
            hint = (" (a traced value: flax's lifted transforms trace keyword arguments and `train` is keyword-only "
                    "here, so wrap the layer in a module that takes `train` as a static positional argument, "
                    "e.g. nn.remat(Block, static_argnums=(2,)))")
        raise TypeError(f"{layer}: `train` must be a Python bool, got {type(train).__name__}{hint}")
    return bool(train)


def accepts_train(fn: Any) -> bool:
    """Whether a module or callable takes a ``train`` keyword in ``__call__``."""
    return accepts(fn, "train")


def _call_parameters(fn: Any) -> list[inspect.Parameter]:
    """The parameters of a module's or callable's ``__call__`` (none when they cannot be read)."""
    target = fn.__call__ if hasattr(fn, "__call__") and not inspect.isfunction(fn) else fn
    try:
        return list(inspect.signature(target).parameters.values())
    except (TypeError, ValueError):
        return []


def train_positional(fn: Any) -> bool:
    """Whether ``__call__`` takes ``train`` as its second positional argument (``block(x, train)``):
    a block wrapped by flax's ``nn.remat(Block, static_argnums=(2,))`` must get it by position."""
    params = _call_parameters(fn)
    if params and params[0].name == "self":
        params = params[1:]
    return (len(params) >= 2 and params[1].name == "train"
            and params[1].kind in (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD))


def accepts(fn: Any, keyword: str) -> bool:
    """Whether a module or callable takes the keyword ``keyword`` in ``__call__``."""
    return any(p.name == keyword for p in _call_parameters(fn))


def is_torch_tensor(value: Any) -> bool:
    """Whether ``value`` is a ``torch.Tensor``, without importing torch."""
    return hasattr(value, "detach") and hasattr(value, "cpu")


def is_variable(value: Any) -> bool:
    """Whether ``value`` is an ``nnx.Variable`` (an NNX model's parameter or buffer), by its interface."""
    return hasattr(value, "get_value") and hasattr(value, "set_value")


def stream_key(module: Any, rng: Any) -> Any:
    """The call's ``rng`` key, or one drawn from the module's ``rng_collection`` stream."""
    return module.make_rng(module.rng_collection) if rng is None else rng


def lowest_value(dtype: Any) -> Any:
    """The lowest value of a float (``-inf``) or integer dtype: max pooling's padding."""
    if jnp.issubdtype(dtype, jnp.floating):
        return -jnp.inf
    if jnp.issubdtype(dtype, jnp.integer):
        return jnp.iinfo(dtype).min
    raise TypeError(f"unsupported dtype {dtype}")


def extreme(x: Any, axis: Any = None, keepdims: bool = False, *, op: str = "max", nan: bool = True) -> jax.Array:
    """``jnp.max``/``jnp.min`` (``op``) over ``axis``; with ``nan``, a slice holding a NaN gives NaN
    (torch's max and min propagate NaN).  XLA:CPU (jaxlib 0.10) drops NaNs in the max/min reductions
    it hands to its YNNPACK fusion (arrays of a few thousand elements and more: ``jnp.max`` over
    axis 0 of an ``(8, 1000)`` array holding one NaN returns a number), so the NaN is put back by a
    second reduction; :func:`when_nan` runs that only for inputs that hold a NaN."""
    x = jnp.asarray(x)
    r = (jnp.max if op == "max" else jnp.min)(x, axis=axis, keepdims=keepdims)
    if nan and jnp.issubdtype(x.dtype, jnp.floating):
        r = jnp.where(jnp.any(jnp.isnan(x), axis=axis, keepdims=keepdims), jnp.asarray(jnp.nan, r.dtype), r)
    return r


def holds_nan(x: Any) -> Any:
    """Whether ``x`` holds a NaN, as a traced bool (``None`` for a dtype without NaN): NaN of
    the sum of ``x`` (one fast reduction; also true for ``+inf`` with ``-inf`` or an overflow,
    which only sends :func:`when_nan` to the slower branch)."""
    x = jnp.asarray(x)
    if not jnp.issubdtype(x.dtype, jnp.floating) or x.size == 0:
        return None
    return jnp.isnan(jnp.sum(x))


def when_nan(x: Any, fn: Any, flag: Any = False) -> Any:
    """``fn(x, nan)``, with ``nan=True`` only when ``x`` holds a NaN: a ``lax.cond`` on
    :func:`holds_nan` of ``x``, or on ``flag``, a :func:`holds_nan` computed before (then ``x``
    may be any pytree; ``None``: no NaN possible).  The cond also keeps XLA from fusing the
    branch with what is computed outside it."""
    flag = holds_nan(x) if flag is False else flag
    if flag is None:
        return fn(x, False)
    return jax.lax.cond(flag, lambda x: fn(x, True), lambda x: fn(x, False), x)


def nan_max(x: Any, axis: Any = None, keepdims: bool = False) -> jax.Array:
    """``jnp.max`` that propagates NaN on every backend (see :func:`extreme`)."""
    return when_nan(x, lambda x, nan: extreme(x, axis, keepdims, op="max", nan=nan))


def nan_min(x: Any, axis: Any = None, keepdims: bool = False) -> jax.Array:
    """``jnp.min`` that propagates NaN on every backend (see :func:`extreme`)."""
    return when_nan(x, lambda x, nan: extreme(x, axis, keepdims, op="min", nan=nan))


def bins_tile(sel: np.ndarray, inside: np.ndarray) -> bool:
    """Whether the ``(out, K)`` static index table ``sel`` (with mask ``inside``) of a pool's bins
    along a dim tiles one stretch of it: ``out`` disjoint runs of ``K`` consecutive elements, so
    that the bins are a slice and a reshape of the input."""
    return bool(inside.all()) and np.array_equal(sel, sel[0, 0] + np.arange(sel.size).reshape(sel.shape))


def sgn(x: Any) -> jax.Array:
    """torch's ``sgn``: ``sign(x)``, but 0 at NaN (``jnp.sign`` gives NaN)."""
    return jnp.where(jnp.isnan(x), jnp.zeros_like(x), jnp.sign(x))


def abs_sign_grad(x: Any) -> jax.Array:
    """``|x|`` with torch's derivative ``sgn(x)``: 0 at 0 (JAX's ``abs`` has slope 1 there) and at NaN."""
    return x * jax.lax.stop_gradient(sgn(x))


@functools.partial(jax.custom_jvp, nondiff_argnums=(1,))
def clamp_min(x: jax.Array, lo: float) -> jax.Array:
    """``torch.clamp_min(x, lo)``: NaN stays NaN (XLA's ``max``; ``where(x >= lo, x, lo)`` made it
    ``lo``), with torch's derivative: 1 where ``x >= lo``, the bound included, else 0 (NaN too)."""
    return jnp.maximum(x, jnp.asarray(lo, x.dtype))


@clamp_min.defjvp
def _clamp_min_jvp(lo: float, primals: tuple, tangents: tuple) -> tuple:
    (x,), (t,) = primals, tangents
    return clamp_min(x, lo), jnp.where(x >= jnp.asarray(lo, x.dtype), t, jnp.zeros_like(t))


@functools.partial(jax.custom_jvp, nondiff_argnums=(1,))
def clamp_min_straight_through(x: jax.Array, lo: float) -> jax.Array:
    """``max(x, lo)`` whose derivative is 1 everywhere: torch clamps under ``no_grad`` (the norms of
    ``cosine_similarity``, the variance of ``gaussian_nll_loss``).  ``x + stop_gradient(max(x, lo) - x)``
    gave NaN at ``x = inf``."""
    return jnp.maximum(x, jnp.asarray(lo, x.dtype))


@clamp_min_straight_through.defjvp
def _clamp_min_straight_through_jvp(lo: float, primals: tuple, tangents: tuple) -> tuple:
    (x,), (t,) = primals, tangents
    return clamp_min_straight_through(x, lo), t


HALF = (jnp.bfloat16, jnp.float16)


def matmul_wt(x: Any, w: Any, precision: Any = None) -> jax.Array:
    """``x @ w.T`` over the last axis of ``x`` (any leading dims), ``w`` as stored ``(out, in)``."""
    return jax.lax.dot_general(x, w, (((x.ndim - 1,), (1,)), ((), ())), precision=precision,
                               out_sharding=dense_sharding(x, w))


def dense_sharding(x: Any, w: Any, out_dim: int = 0) -> Any:
    """Over a mesh of ``Explicit`` axes, the sharding of ``x`` times a weight ``w`` over the last dim of ``x``:
    the leading dims as ``x``'s, the output features as ``w``'s dim ``out_dim`` (0: torch's ``(out, in)``
    layout; 1: a transposed ``(in, out)`` weight), none for a 1-D weight (:func:`product_sharding`)."""
    return product_sharding(x, w, [("x", i) for i in range(x.ndim - 1)] + [("w", out_dim)] * (w.ndim == 2))


def compute_dtype(dtype: Any) -> Any:
    """The dtype torch computes ``dtype`` in (its "opmath" type): float32 for bfloat16/float16, else itself."""
    return jnp.float32 if dtype in HALF else dtype


def add_bias(y: Any, bias: Any) -> Any:
    """``y + bias`` (``bias`` broadcast to ``y``); in float32 for a half-precision ``y``, rounded once,
    so that the bias gradient (a sum over every other dim) accumulates in float32 as torch's does: summed
    in bfloat16 it was 18-21 % off at a few thousand rows (conv and linear)."""
    if bias is None:
        return y
    if y.dtype in HALF:
        return (y.astype(jnp.float32) + jnp.asarray(bias).astype(jnp.float32)).astype(y.dtype)
    return y + bias


def floating_input(x: Any, name: str) -> jax.Array:
    """``x`` as an array; an integer/bool one is a TypeError naming the function, where torch raises too
    (a float constant such as a slope or a scale would otherwise be truncated, or ints silently promoted)."""
    x = jnp.asarray(x)
    if not jnp.issubdtype(x.dtype, jnp.inexact):
        raise TypeError(f"{name}: expected a floating-point input, got {x.dtype} (torch does not implement it for "
                        "integer tensors)")
    return x


def half_in_float32(fn: Any) -> Any:
    """``fn`` of a bfloat16/float16 ``input`` (its first argument) computed in float32 and rounded once,
    as torch's kernels do (their "opmath" type): in the half type itself constants round too
    (``threshold(x, 0.3, ...)`` compared with 0.30078125), every step rounds, and float16 intermediates
    underflow (``sigmoid`` below -11, ``normalize(p=1)``'s gradient of 2048-wide rows)."""

    @functools.wraps(fn)
    def wrapper(input: Any, *args: Any, **kwargs: Any) -> Any:
        dtype = getattr(input, "dtype", None)
        if dtype in HALF:
            return fn(jnp.asarray(input).astype(jnp.float32), *args, **kwargs).astype(dtype)
        return fn(input, *args, **kwargs)

    return wrapper


def upper_triangle(d: Any) -> jax.Array:
    """The entries above the diagonal of a square ``(N, N)`` ``d``, row-major (``pdist``'s order:
    pairs ``(0, 1), (0, 2), ..., (1, 2), ...``)."""
    n = d.shape[0]
    i, j = np.triu_indices(n, 1)
    return jnp.reshape(d, -1)[i * n + j]


def take_along(values: Any, index: Any, axis: int, **kwargs: Any) -> jax.Array:
    """``jnp.take_along_axis(values, index, axis, **kwargs)``; where a mesh of ``Explicit`` axes shards ``axis``
    (the classes of vocabulary-parallel logits), JAX refuses to guess the result's sharding: the gather then
    runs as on an ``Auto`` axis (each device picks what it holds, summed across them), the result sharded
    as ``values`` but along ``axis``."""
    if not _explicitly_sharded(values, [axis % values.ndim]):
        return jnp.take_along_axis(values, index, axis=axis, **kwargs)
    spec = list(_explicit_spec(values)[1])
    spec[axis % values.ndim] = None
    gather = lambda v, i: jnp.take_along_axis(v, i, axis=axis, **kwargs)  # noqa: E731
    return jax.sharding.auto_axes(gather, out_sharding=jax.sharding.PartitionSpec(*spec))(values, index)


def first_finite(x: Any, axes: Sequence[int]) -> jax.Array:
    """Each slice's first element over ``axes`` (kept as size-1 dims), 0 where that is not finite,
    held constant (``stop_gradient``): the shift of stable moments ``s + E[x − s]``, exact for a
    constant slice (an infinite shift would make ``inf − inf`` a NaN mean)."""
    index = tuple(slice(0, 1) if i in axes else slice(None) for i in range(x.ndim))
    if _explicitly_sharded(x, axes):  # slicing a dim sharded in an Explicit mesh is refused: slice it as Auto
        shift = jax.sharding.auto_axes(lambda a: a[index], out_sharding=jax.sharding.PartitionSpec())(x)
    else:
        shift = x[index]
    return jax.lax.stop_gradient(jnp.where(jnp.isfinite(shift), shift, jnp.zeros((), x.dtype)))


def has_explicit_axes(mesh: Any) -> bool:
    """Whether ``mesh`` (concrete or abstract) has an ``Explicit`` axis (JAX 0.10's ``jax.make_mesh``
    default), where JAX asks reshapes, gathers, scatters and loop carries for their outputs' sharding."""
    explicit = getattr(jax.sharding.AxisType, "Explicit", None)
    return explicit is not None and any(t == explicit for t in getattr(mesh, "axis_types", ()))


def _explicit_spec(x: Any) -> tuple[Any, tuple] | None:
    """``(mesh, spec)`` of ``x`` sharded over a mesh of ``Explicit`` axes, the spec one entry per dim;
    None where no dim of ``x`` is sharded there."""
    sharding = getattr(jax.typeof(x), "sharding", None)
    mesh = getattr(sharding, "mesh", None)
    if mesh is None or not has_explicit_axes(mesh):
        return None
    spec = tuple(getattr(sharding, "spec", ()))
    spec = spec + (None,) * (x.ndim - len(spec))
    return (mesh, spec) if any(s is not None for s in spec) else None


def _explicitly_sharded(x: Any, axes: Sequence[int]) -> bool:
    """Whether a dim of ``x`` among ``axes`` is sharded over an ``Explicit`` mesh."""
    found = _explicit_spec(x)
    return found is not None and any(found[1][i] is not None for i in axes)


def _named(mesh: Any, spec: Sequence[Any]) -> Any:
    return jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec(*spec))


def reshape(x: Any, shape: Sequence[int]) -> jax.Array:
    """``jnp.reshape(x, shape)`` that keeps the sharding of ``x`` over a mesh of ``Explicit`` axes, where JAX
    refuses to guess it: a sharded dim that the reshape leaves whole (the batch, while the channels split
    into groups or a pixel shuffle's factors) stays sharded; so does a sharded dim split into several whose
    first its devices divide (channels ``C * r * r`` sharded -> ``C`` sharded), and several merged whose first
    alone is sharded.  Any other sharded dim is gathered (its devices' blocks are no blocks of the result)."""
    shape = tuple(int(s) for s in shape)
    if -1 in shape:
        known = math.prod(s for s in shape if s != -1)
        shape = tuple(x.size // known if s == -1 else s for s in shape)
    found = None if 0 in x.shape else _explicit_spec(x)
    if found is None:
        return jnp.reshape(x, shape)
    mesh, spec = found
    out, i, j = [None] * len(shape), 0, 0
    while i < x.ndim and j < len(shape):  # groups of dims with equal products, in order
        a, b, pa, pb = i + 1, j + 1, x.shape[i], shape[j]
        while pa != pb:
            if pa < pb:
                pa, a = pa * x.shape[a], a + 1
            else:
                pb, b = pb * shape[b], b + 1
        sharded = [k for k in range(i, a) if spec[k] is not None]
        if sharded:  # the sharded dim must lead its group (size-1 dims aside) before and after the reshape
            first_in = next(k for k in range(i, a) if x.shape[k] != 1 or k == a - 1)
            first_out = next(k for k in range(j, b) if shape[k] != 1 or k == b - 1)
            if sharded == [first_in] and ((a - i, b - j) == (1, 1) or (
                    (b - j == 1 or a - i == 1) and shape[first_out] % _devices(mesh, spec[first_in]) == 0)):
                out[first_out] = spec[first_in]
        i, j = a, b
    return jnp.reshape(x, shape, out_sharding=_named(mesh, out))


def _devices(mesh: Any, entry: Any) -> int:
    """How many devices a spec entry (an axis name, a tuple of them, or None) splits a dim over."""
    names = () if entry is None else (entry,) if isinstance(entry, str) else tuple(entry)
    return math.prod(mesh.shape[n] for n in names)


def batch_sharding(x: Any, ndim: int, axis: int = 0, out_axis: int = 0) -> Any:
    """Over a mesh of ``Explicit`` axes that shards ``x``'s dim ``axis`` (its batch) alone, the sharding
    of a rank-``ndim`` array sharded the same way along its dim ``out_axis`` (a result or an initial state
    of the same batch); else None."""
    found = _explicit_spec(x)
    if found is None or any(s is not None for i, s in enumerate(found[1]) if i != axis):
        return None
    out = [None] * ndim
    out[out_axis] = found[1][axis]
    return _named(found[0], out)


def explicit_sharding(x: Any, extra: int = 0) -> Any:
    """``x``'s sharding over a mesh of ``Explicit`` axes, with ``extra`` unsharded trailing dims (a
    gather's rows); else None."""
    found = _explicit_spec(x)
    return None if found is None else _named(found[0], found[1] + (None,) * extra)


def product_sharding(x: Any, w: Any, dims: Sequence[tuple[str, int] | None]) -> Any:
    """Where a mesh of ``Explicit`` axes shards ``x`` or a weight ``w``, the sharding of their product (a
    convolution, a linear layer), which JAX refuses to guess: output dim ``i`` sharded as dim ``dims[i][1]``
    of ``"x"`` or ``"w"`` (``dims[i][0]``), or whole (None; an axis already used by an earlier dim too).  A
    contraction over sharded dims is summed across their devices.  Else None.

    Example (the batch of ``x`` and the output channels of ``w``): ``[("x", 0), ("w", 0), None, None]``."""
    xs, ws = _explicit_spec(x), _explicit_spec(w)
    if xs is None and ws is None:
        return None
    specs = {"x": xs[1] if xs else None, "w": ws[1] if ws else None}
    out, used = [], set()
    for dim in dims:
        entry = None if dim is None or specs[dim[0]] is None else specs[dim[0]][dim[1]]
        names = set() if entry is None else {entry} if isinstance(entry, str) else set(entry)
        out.append(None if names & used else entry)
        used |= names
    return _named((xs or ws)[0], out)


def scan_carry(body: Any, carry: Any, xs: Any) -> Any:
    """``carry`` resharded as ``body(carry, x)`` returns it, where a mesh of ``Explicit`` axes shards the
    carry, the scanned ``xs`` or what ``body`` closes over (a hidden size sharded by its weight, tensor
    parallel): ``lax.scan`` needs one type in and out, and a zero initial state is replicated.  Else
    ``carry``.  (Traced abstractly, not run.)"""
    leaves = jax.tree.leaves((carry, xs))
    if not any(_explicit_spec(a) for a in leaves) and not has_explicit_axes(jax.sharding.get_abstract_mesh()):
        return carry
    for _ in range(3):  # until the carry's sharding is the one the body returns
        out = jax.eval_shape(lambda c, x: body(c, jax.tree.map(lambda a: a[0], x))[0], carry, xs)
        wanted = jax.tree.map(lambda t: t.sharding, out)
        if jax.tree.map(lambda a: jax.typeof(a).sharding, carry) == wanted:
            break
        carry = jax.tree.map(jax.sharding.reshard, carry, wanted)
    return carry


def gathered_rows(table: Any, index_ndim: int) -> Any:
    """Where a mesh of ``Explicit`` axes shards ``table``'s rows (a vocabulary-parallel embedding), the
    sharding of a gather of its rows by unsharded indices of rank ``index_ndim``: the rows replicated, the
    other dims sharded as the table's; else None (JAX infers it)."""
    found = _explicit_spec(table)
    if found is None or found[1][0] is None:
        return None
    return _named(found[0], (None,) * index_ndim + found[1][1:])


def gathered(x: Any) -> Any:
    """``x`` replicated where a mesh of ``Explicit`` axes shards it (a function that pairs every example
    with every other needs the whole batch on each device, as ``Auto`` axes would gather it); else ``x``."""
    found = _explicit_spec(x) if isinstance(x, jax.Array) else None
    return x if found is None else jax.sharding.reshard(x, _named(found[0], (None,) * x.ndim))


def broadcast_like(a: Any, like: Any) -> jax.Array:
    """``jnp.broadcast_to(a, like.shape)`` with ``like``'s sharding over a mesh of ``Explicit`` axes (a
    replicated per-position constant broadcast to a sharded batch, then selected with it)."""
    return jnp.broadcast_to(a, like.shape, out_sharding=explicit_sharding(like))


def concrete(x: Any) -> np.ndarray | None:
    """``x`` as NumPy when its values are known (not a tracer under jit/vmap/grad), else None:
    value checks (offsets, lengths, targets) run only when the values are there to check."""
    if isinstance(x, jax.core.Tracer):
        return None
    return np.asarray(x)


def index_dtype() -> jnp.dtype:
    """int64 when ``jax_enable_x64`` is on, else int32 (torch always uses int64)."""
    return jnp.int64 if jax.config.jax_enable_x64 else jnp.int32


def always_indices(fn: Any, example: str) -> Any:
    """torch's ``F.<fn>_with_indices``: ``fn`` returning ``(output, indices)`` whatever ``return_indices`` says.

    ``example`` is the docstring's doctest body (lines after ``>>>``-prompted imports).
    """
    signature = inspect.signature(fn)
    name = f"{fn.__name__}_with_indices"

    def with_indices(*args: Any, **kwargs: Any) -> Any:
        try:
            bound = signature.bind(*args, **kwargs)
        except TypeError as e:
            raise TypeError(f"{name}: {e}") from None
        bound.arguments["return_indices"] = True
        return fn(*bound.args, **bound.kwargs)

    with_indices.__name__ = with_indices.__qualname__ = name
    with_indices.__module__ = fn.__module__
    with_indices.__signature__ = signature
    with_indices.__doc__ = f"""{fn.__name__} that always returns ``(output, indices)``, as ``torch.nn.functional.{name}``.

    Args:
      as :func:`{fn.__name__}`; ``return_indices`` is accepted and ignored, as in torch.

    Shape: as :func:`{fn.__name__}`; ``indices`` has the output's shape.

    Example:
      >>> import jax, jax.numpy as jnp
      >>> from jaxlayers import functional as F
{example}
    """
    return with_indices


def compiled(fn: Any, static: tuple, *arrays: Any) -> Any:
    """``fn(*arrays, *static)`` as one program compiled once per shape and ``static``
    arguments (hashable), so that calls outside ``jit`` do not trace, and compile, the
    function's ``lax.cond``/``lax.scan``/custom-derivative closures again on every call
    (``F.layer_norm`` eagerly: 62-85 ms a call instead of ~1).  Inside ``jit`` it is
    inlined.  ``fn`` must be a module-level function (it is part of the cache key);
    unhashable ``static`` values (an array ``eps``) run ``fn`` directly."""
    try:
        hash(static)
    except TypeError:
        return fn(*arrays, *static)
    # jit's cache compares static values with ==: with their types in the key, 2.0 does not reuse 2's program
    # (whose checks, run while tracing, accepted an int)
    return _compiled_call(fn, (static, _types(static)), config.get_autotune(), *arrays)


def _types(value: Any) -> Any:
    """``value``'s types, nested through tuples and lists."""
    if isinstance(value, (tuple, list)):
        return type(value), tuple(_types(v) for v in value)
    return type(value)


def compiled_when_eager(fn: Any, static: tuple, *arrays: Any) -> Any:
    """:func:`compiled` outside any trace; under ``jit``, ``grad`` or ``vmap`` ``fn`` runs inline, so the
    traced program is the function's own.  A nested ``jit`` changes what a gradient saves and where XLA
    lays arrays out: the weight gradient of a transposed convolution in channels-last mode took 12 and 18
    relayouts (1-d, 2-d) instead of 7 and 5."""
    if any(isinstance(a, jax.core.Tracer) for a in jax.tree_util.tree_leaves(arrays)):
        return fn(*arrays, *static)
    return compiled(fn, static, *arrays)


_FAILED_PROGRAMS: set = set()  # one_program calls (function, arguments, shapes) whose program failed


def one_program(fn: Any) -> Any:
    """Decorates a module-level function whose checks read only shapes, dtypes and its non-array arguments:
    called eagerly, it runs as one program compiled per shapes and other arguments (:func:`compiled_when_eager`:
    inline under a trace), its checks while tracing.  Arguments that cannot be hashed run it as it is, and so
    does a call whose program fails, so that errors and arrays read as values are what they were."""

    @functools.wraps(fn)
    def call(*args: Any, **kwargs: Any) -> Any:
        values = args + tuple(kwargs.values())
        where = tuple(_holds_arrays(v) for v in values)
        fixed = tuple(None if w else v for w, v in zip(where, values))
        arrays = [v for w, v in zip(where, values) if w]
        static = (fn, where, fixed, tuple(kwargs))
        try:
            failed = (static, _types(fixed), tuple((a.shape, a.dtype) for a in jax.tree_util.tree_leaves(arrays)))
            hash(failed)
        except TypeError:
            failed = None
        if failed is None or failed not in _FAILED_PROGRAMS:
            try:
                return compiled_when_eager(_called_with, static, *arrays)
            except Exception:  # noqa: BLE001 - an error, or an array argument read as a value (a 0-d array
                if failed is not None:  # for an int): the call as it is raises its own error (without this
                    _FAILED_PROGRAMS.add(failed)  # one) or gives its result, and so do later such calls
        return fn(*args, **kwargs)

    return call


def _holds_arrays(value: Any) -> bool:
    """An array, or a tuple, list or dict of arrays (``None`` entries allowed): traced by :func:`one_program`."""
    leaves = jax.tree_util.tree_leaves(value)
    return bool(leaves) and all(isinstance(v, (jax.Array, np.ndarray)) for v in leaves)


def _called_with(*values: Any) -> Any:
    """``fn(*args, **kwargs)`` from :func:`one_program`'s arrays and the static rest."""
    fn, where, fixed, names = values[-4:]
    arrays = iter(values[:-4])
    merged = [next(arrays) if w else f for w, f in zip(where, fixed)]
    n = len(merged) - len(names)
    return fn(*merged[:n], **dict(zip(names, merged[n:])))


@functools.partial(jax.jit, static_argnums=(0, 1, 2))
def _compiled_call(fn: Any, typed_static: tuple, autotune: bool, *arrays: Any) -> Any:
    static = typed_static[0]
    # ``autotune`` is part of the cache key: a lowering may measure its candidates while tracing
    return fn(*arrays, *static)
