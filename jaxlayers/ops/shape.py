"""Shape ops with torch semantics: split, chunk, squeeze, unsqueeze, flatten, view, expand, repeat, ...

Every function takes the array first and torch's ``dim`` arguments (negative
dims count from the end).  Size arguments may be given as varargs or as one
sequence, as in torch: ``view(x, 2, -1) == view(x, (2, -1))``.  Errors are
torch's, raised at trace time: ``IndexError`` for a dim out of range,
``ValueError`` for sizes that do not fit, ``TypeError`` for wrong argument types.
"""

from __future__ import annotations

import math
import operator
from typing import Any, Sequence

import jax.numpy as jnp
import numpy as np

from .._utils import shape_str

__all__ = [
    "flatten",
    "unflatten",
    "split",
    "chunk",
    "squeeze",
    "unsqueeze",
    "expand",
    "view",
    "reshape",
    "permute",
    "transpose",
    "cat",
    "concat",
    "stack",
    "narrow",
    "repeat",
]


def _int(v: Any, op: str, arg: str) -> int:
    if isinstance(v, (bool, np.bool_)):
        raise TypeError(f"{op}: {arg} must be an int, got {v!r}")
    try:
        return operator.index(v)
    except TypeError:
        raise TypeError(f"{op}: {arg} must be an int, got {type(v).__name__} {v!r}") from None


def _dim(dim: int, ndim: int, op: str) -> int:
    """Normalise ``dim`` for an ``ndim``-d array (a 0-d array accepts -1 and 0, as in torch)."""
    dim = _int(dim, op, "dim")
    lo, hi = (-ndim, ndim - 1) if ndim else (-1, 0)
    if not lo <= dim <= hi:
        raise IndexError(f"{op}: dimension out of range (expected to be in range of [{lo}, {hi}], but got {dim})")
    return dim % max(ndim, 1)


def _dims(dim: Any, ndim: int, op: str) -> tuple[int, ...]:
    """An int or a sequence of ints -> normalised, duplicate-free tuple of dims."""
    dims = tuple(dim) if isinstance(dim, (tuple, list)) else (dim,)
    out = tuple(_dim(d, ndim, op) for d in dims)
    for d in out:
        if out.count(d) > 1:
            raise ValueError(f"{op}: dim {d} appears multiple times in the list of dims")
    return out


def _sizes(sizes: tuple, op: str, arg: str = "size") -> tuple[int, ...]:
    """``f(x, 2, 3)`` and ``f(x, (2, 3))`` both give ``(2, 3)``."""
    if len(sizes) == 1 and isinstance(sizes[0], (tuple, list)):
        sizes = tuple(sizes[0])
    return tuple(_int(s, op, arg) for s in sizes)


def flatten(x, start_dim: int = 0, end_dim: int = -1):
    """``torch.flatten``: merge dims ``start_dim..end_dim`` into one.

    Args:
        x: input array.
        start_dim: first dim to merge. Default 0.
        end_dim: last dim to merge. Default -1.

    Shape: ``(*a, S_start, ..., S_end, *b) -> (*a, prod(S), *b)``; a 0-d input gives shape ``(1,)``.

    Example:
        >>> import jax.numpy as jnp
        >>> from jaxlayers import ops
        >>> ops.flatten(jnp.ones((2, 3, 4)), 1).shape
        (2, 12)
    """
    x = jnp.asarray(x)
    if x.ndim == 0:
        _dim(start_dim, 0, "flatten")
        _dim(end_dim, 0, "flatten")
        return jnp.reshape(x, (1,))
    s, e = _dim(start_dim, x.ndim, "flatten"), _dim(end_dim, x.ndim, "flatten")
    if s > e:
        raise ValueError(f"flatten: start_dim ({start_dim}) cannot come after end_dim ({end_dim})")
    shape = x.shape[:s] + (math.prod(x.shape[s : e + 1]),) + x.shape[e + 1 :]
    return jnp.reshape(x, shape)


def unflatten(x, dim: int, sizes):
    """``torch.unflatten``: expand dim ``dim`` into ``sizes`` (one entry may be -1).

    Args:
        x: input array.
        dim: the dim to expand.
        sizes: the new sizes (one may be -1).

    Shape: ``(*a, S_dim, *b) -> (*a, U_1, ..., U_n, *b)`` with ``prod(U) = S_dim``.

    Example:
        >>> import jax.numpy as jnp
        >>> from jaxlayers import ops
        >>> ops.unflatten(jnp.ones((2, 12)), 1, (3, -1)).shape
        (2, 3, 4)
    """
    x = jnp.asarray(x)
    if x.ndim == 0:
        raise ValueError("unflatten: cannot unflatten a 0-d tensor")
    d = _dim(dim, x.ndim, "unflatten")
    if isinstance(sizes, str) or not hasattr(sizes, "__iter__"):
        raise TypeError(f"unflatten: sizes must be a sequence of ints, got {sizes!r}")
    sizes = tuple(_int(s, "unflatten", "sizes") for s in sizes)
    if not sizes:
        raise ValueError("unflatten: sizes must be non-empty")
    if sizes.count(-1) > 1:
        raise ValueError("unflatten: only one dimension can be inferred (-1)")
    if any(s < -1 for s in sizes):
        raise ValueError(f"unflatten: invalid size in {sizes}")
    known = math.prod(s for s in sizes if s != -1)
    if -1 in sizes:
        if known == 0 or x.shape[d] % known:
            raise ValueError(
                f"unflatten: sizes {sizes} don't fit dim {dim} of size {x.shape[d]} in shape {shape_str(x)}"
            )
        sizes = tuple(x.shape[d] // known if s == -1 else s for s in sizes)
    elif known != x.shape[d]:
        raise ValueError(
            f"unflatten: provided sizes {sizes} don't multiply up to the size of dim {dim} ({x.shape[d]}) "
            f"in the input tensor of shape {shape_str(x)}"
        )
    return jnp.reshape(x, x.shape[:d] + sizes + x.shape[d + 1 :])


def _split_at(x, sizes: Sequence[int], d: int) -> tuple:
    starts = np.cumsum((0,) + tuple(sizes[:-1]))
    return tuple(
        jnp.asarray(x)[(slice(None),) * d + (slice(int(s), int(s) + int(n)),)] for s, n in zip(starts, sizes)
    )


def split(x, split_size_or_sections, dim: int = 0) -> tuple:
    """``torch.split``: cut ``x`` along ``dim`` into pieces.

    Unlike ``jnp.split``: an int is the size of each chunk (the last one smaller
    when it does not divide), not the number of chunks; a list gives the sizes
    of the pieces, which must sum to ``x.shape[dim]``.

    Returns a tuple of arrays.

    Args:
        x: input array.
        split_size_or_sections: the size of each piece (int) or the list of sizes.
        dim: the dim to cut. Default 0.

    Shape: the pieces have ``x``'s shape except along ``dim``.

    Example:
        >>> import jax.numpy as jnp
        >>> from jaxlayers import ops
        >>> [p.tolist() for p in ops.split(jnp.arange(5), 2)], [p.shape for p in ops.split(jnp.arange(5), [1, 4])]
        ([[0, 1], [2, 3], [4]], [(1,), (4,)])
    """
    x = jnp.asarray(x)
    if x.ndim == 0:
        raise ValueError("split: expected at least a 1-dimensional tensor")
    d = _dim(dim, x.ndim, "split")
    n = x.shape[d]
    if isinstance(split_size_or_sections, (tuple, list)):
        sizes = tuple(_int(s, "split", "split_sizes") for s in split_size_or_sections)
        if any(s < 0 for s in sizes):
            raise ValueError(f"split_with_sizes: split_sizes must be non-negative, got split_sizes={list(sizes)}")
        if sum(sizes) != n:
            raise ValueError(
                f"split_with_sizes expects split_sizes to sum exactly to {n} (input tensor's size at dimension {d}), "
                f"but got split_sizes={list(sizes)}"
            )
        return _split_at(x, sizes, d)
    size = _int(split_size_or_sections, "split", "split_size")
    if size < 0:
        raise ValueError(f"split expects split_size be non-negative, but got split_size={size}")
    if size == 0:
        if n != 0:
            raise ValueError(f"split_size can only be 0 if dimension size is 0, but got dimension size of {n}")
        return (x,)
    if n == 0:
        return (x,)
    sizes = [size] * (n // size) + ([n % size] if n % size else [])
    return _split_at(x, sizes, d)


def chunk(x, chunks: int, dim: int = 0) -> tuple:
    """``torch.chunk``: split into at most ``chunks`` pieces of size ``ceil(n / chunks)``.

    As in torch (and unlike ``jnp.array_split``) this may return fewer than
    ``chunks`` pieces: ``chunk(arange(6), 4)`` gives sizes ``(2, 2, 2)``.

    Args:
        x: input array.
        chunks: the largest number of pieces.
        dim: the dim to cut. Default 0.

    Shape: pieces of size ``ceil(n / chunks)`` along ``dim``, the last one possibly smaller.

    Example:
        >>> import jax.numpy as jnp
        >>> from jaxlayers import ops
        >>> [p.shape for p in ops.chunk(jnp.arange(6), 4)]
        [(2,), (2,), (2,)]
    """
    x = jnp.asarray(x)
    chunks = _int(chunks, "chunk", "chunks")
    if x.ndim == 0:
        raise ValueError("chunk expects at least a 1-dimensional tensor")
    if chunks <= 0:
        raise ValueError(f"chunk expects `chunks` to be greater than 0, got: {chunks}")
    d = _dim(dim, x.ndim, "chunk")
    n = x.shape[d]
    size = -(-n // chunks)
    if size == 0:  # empty dim: torch returns `chunks` empty pieces
        return tuple(x for _ in range(chunks))
    return split(x, size, d)


def squeeze(x, dim=None):
    """``torch.squeeze``: remove dims of size 1.

    Unlike ``jnp.squeeze``, naming a dim whose size is not 1 is a no-op, not an
    error.  ``dim`` is an int, a tuple of ints, or None (all size-1 dims).

    Args:
        x: input array.
        dim: an int, a tuple of ints, or None (all size-1 dims).

    Shape: ``x``'s shape without the named size-1 dims.

    Example:
        >>> import jax.numpy as jnp
        >>> from jaxlayers import ops
        >>> ops.squeeze(jnp.ones((1, 3, 1)), 1).shape, ops.squeeze(jnp.ones((1, 3, 1))).shape
        ((1, 3, 1), (3,))
    """
    x = jnp.asarray(x)
    if dim is None:
        return jnp.reshape(x, tuple(s for s in x.shape if s != 1))
    dims = _dims(dim, x.ndim, "squeeze")
    if x.ndim == 0:
        return x
    keep = tuple(s for i, s in enumerate(x.shape) if not (i in dims and s == 1))
    return jnp.reshape(x, keep)


def unsqueeze(x, dim: int):
    """``torch.unsqueeze``: insert a size-1 dim at ``dim`` (in ``[-ndim-1, ndim]``).

    Args:
        x: input array.
        dim: position of the new dim, in ``[-ndim-1, ndim]``.

    Shape: ``x``'s shape with a 1 inserted at ``dim``.

    Example:
        >>> import jax.numpy as jnp
        >>> from jaxlayers import ops
        >>> ops.unsqueeze(jnp.ones((2, 3)), -1).shape
        (2, 3, 1)
    """
    x = jnp.asarray(x)
    d = _dim(dim, x.ndim + 1, "unsqueeze")
    return jnp.expand_dims(x, d)


def expand(x, *sizes):
    """``torch.Tensor.expand``: broadcast singleton dims to ``sizes``; -1 keeps a dim.

    New leading dims may be added (they cannot be -1).  Expanding a dim whose
    size is not 1 to another size is an error.  JAX has no views: the result is
    a broadcast (XLA fuses it; no copy is made inside a jitted computation).

    Args:
        x: input array.
        *sizes: the target sizes (varargs or one sequence); -1 keeps a dim.

    Shape: ``sizes`` with each -1 replaced by ``x``'s size.

    Example:
        >>> import jax.numpy as jnp
        >>> from jaxlayers import ops
        >>> ops.expand(jnp.ones((3, 1)), 2, -1, 4).shape
        (2, 3, 4)
    """
    x = jnp.asarray(x)
    sizes = _sizes(sizes, "expand")
    if len(sizes) < x.ndim:
        raise ValueError(
            f"expand: the number of sizes provided ({len(sizes)}) must be greater or equal to the number of "
            f"dimensions in the tensor ({x.ndim}); tensor shape {shape_str(x)}"
        )
    lead = len(sizes) - x.ndim
    out = []
    for i, s in enumerate(sizes):
        if i < lead:
            if s < 0:
                raise ValueError(
                    f"expand: the expanded size of the tensor ({s}) isn't allowed in a leading, "
                    f"non-existing dimension {i}"
                )
            out.append(s)
            continue
        have = x.shape[i - lead]
        if s == -1:
            out.append(have)
        elif s < -1:
            raise ValueError(f"expand: invalid size {s} at dimension {i}; target sizes {list(sizes)}")
        elif have != s and have != 1:
            raise ValueError(
                f"expand: the expanded size of the tensor ({s}) must match the existing size ({have}) at "
                f"non-singleton dimension {i}.  Target sizes: {list(sizes)}.  Tensor sizes: {list(x.shape)}"
            )
        else:
            out.append(s)
    return jnp.broadcast_to(x, tuple(out))


def _infer_shape(shape: tuple[int, ...], numel: int, op: str) -> tuple[int, ...]:
    if shape.count(-1) > 1:
        raise ValueError(f"{op}: only one dimension can be inferred, got shape {list(shape)}")
    for s in shape:
        if s < -1:
            raise ValueError(f"{op}: invalid shape dimension {s} in shape {list(shape)}")
    known = math.prod(s for s in shape if s != -1)
    if -1 in shape:
        if known == 0 or numel % known:
            raise ValueError(f"{op}: shape '{list(shape)}' is invalid for input of size {numel}")
        return tuple(numel // known if s == -1 else s for s in shape)
    if known != numel:
        raise ValueError(f"{op}: shape '{list(shape)}' is invalid for input of size {numel}")
    return shape


def view(x, *shape):
    """``torch.Tensor.view``: the same elements in a new shape; one entry may be -1.

    JAX arrays are immutable, so this is ``reshape`` (there is no aliasing and
    no contiguity requirement).

    Args:
        x: input array.
        *shape: the new shape (varargs or one sequence); one entry may be -1.

    Shape: the number of elements is unchanged.

    Example:
        >>> import jax.numpy as jnp
        >>> from jaxlayers import ops
        >>> ops.view(jnp.arange(6), 2, -1).shape
        (2, 3)
    """
    x = jnp.asarray(x)
    return jnp.reshape(x, _infer_shape(_sizes(shape, "view", "shape"), x.size, "view"))


def reshape(x, *shape):
    """``torch.reshape``: the same elements in a new shape; one entry may be -1.

    Accepts ``reshape(x, 2, -1)`` and ``reshape(x, (2, -1))``.

    Args:
        x: input array.
        *shape: the new shape (varargs or one sequence); one entry may be -1.

    Shape: the number of elements is unchanged.

    Example:
        >>> import jax.numpy as jnp
        >>> from jaxlayers import ops
        >>> ops.reshape(jnp.arange(6), (3, -1)).shape
        (3, 2)
    """
    x = jnp.asarray(x)
    return jnp.reshape(x, _infer_shape(_sizes(shape, "reshape", "shape"), x.size, "reshape"))


def permute(x, *dims):
    """``torch.permute``: reorder dims (``permute(x, 2, 0, 1)`` or ``permute(x, (2, 0, 1))``).

    Args:
        x: input array.
        *dims: a permutation of ``x``'s dims (varargs or one sequence).

    Shape: ``tuple(x.shape[d] for d in dims)``.

    Example:
        >>> import jax.numpy as jnp
        >>> from jaxlayers import ops
        >>> ops.permute(jnp.ones((2, 3, 4)), 2, 0, 1).shape
        (4, 2, 3)
    """
    x = jnp.asarray(x)
    dims = _sizes(dims, "permute", "dims")
    if len(dims) != x.ndim:
        raise ValueError(
            f"permute: number of dimensions in the tensor input does not match the length of the desired "
            f"ordering of dimensions i.e. input.dim() = {x.ndim} is not equal to len(dims) = {len(dims)}"
        )
    norm = tuple(_dim(d, x.ndim, "permute") for d in dims)
    if len(set(norm)) != len(norm):
        raise ValueError(f"permute: duplicate dims are not allowed, got {list(dims)}")
    return jnp.transpose(x, norm) if x.ndim else x


def transpose(x, dim0: int, dim1: int):
    """``torch.transpose``: swap two dims (unlike ``jnp.transpose``, which permutes all).

    Args:
        x: input array.
        dim0, dim1: the dims to swap.

    Shape: ``x``'s shape with ``dim0`` and ``dim1`` swapped.

    Example:
        >>> import jax.numpy as jnp
        >>> from jaxlayers import ops
        >>> ops.transpose(jnp.ones((2, 3, 4)), 0, 2).shape
        (4, 3, 2)
    """
    x = jnp.asarray(x)
    d0, d1 = _dim(dim0, x.ndim, "transpose"), _dim(dim1, x.ndim, "transpose")
    if x.ndim == 0:
        return x
    return jnp.swapaxes(x, d0, d1)


def _tensor_list(tensors, op: str) -> list:
    if hasattr(tensors, "shape") and not isinstance(tensors, (list, tuple)):
        raise TypeError(f"{op}: expected a sequence of tensors, got a single array of shape {shape_str(tensors)}")
    tensors = [jnp.asarray(t) for t in tensors]
    if not tensors:
        raise ValueError(f"{op}: expected a non-empty list of Tensors")
    return tensors


def cat(tensors, dim: int = 0):
    """``torch.cat``: join tensors along an existing dim.

    All tensors need the same rank and the same sizes except along ``dim``.
    As in torch, 1-D empty tensors (shape ``(0,)``) are skipped, and mixed
    dtypes are promoted.

    Args:
        tensors: a non-empty sequence of arrays.
        dim: the dim to join along. Default 0.

    Shape: the common shape, with ``dim`` the sum of the sizes along it.

    Example:
        >>> import jax.numpy as jnp
        >>> from jaxlayers import ops
        >>> ops.cat([jnp.ones((2, 3)), jnp.zeros((1, 3))]).shape
        (3, 3)
    """
    tensors = _tensor_list(tensors, "cat")
    if any(t.ndim == 0 for t in tensors):
        i = next(i for i, t in enumerate(tensors) if t.ndim == 0)
        raise ValueError(f"cat: zero-dimensional tensor (at position {i}) cannot be concatenated")
    dtype = jnp.result_type(*tensors)
    kept = [t for t in tensors if not (t.ndim == 1 and t.shape[0] == 0)]
    if not kept:
        return jnp.zeros((0,), dtype)
    ref = kept[0]
    d = _dim(dim, ref.ndim, "cat")
    for i, t in enumerate(tensors):
        if t.ndim == 1 and t.shape[0] == 0:
            continue
        if t.ndim != ref.ndim:
            raise ValueError(f"cat: tensors must have same number of dimensions: got {ref.ndim} and {t.ndim}")
        for k in range(ref.ndim):
            if k != d and t.shape[k] != ref.shape[k]:
                raise ValueError(
                    f"cat: sizes of tensors must match except in dimension {d}. Expected size {ref.shape[k]} "
                    f"but got size {t.shape[k]} for tensor number {i} in the list."
                )
    return jnp.concatenate([t.astype(dtype) for t in kept], axis=d)


def concat(tensors, dim: int = 0):
    """``torch.concat``: alias of :func:`cat`.

    Args:
        tensors, dim: as :func:`cat`.

    Shape: as :func:`cat`.

    Example:
        >>> import jax.numpy as jnp
        >>> from jaxlayers import ops
        >>> ops.concat([jnp.ones(2), jnp.zeros(1)]).tolist()
        [1.0, 1.0, 0.0]
    """
    return cat(tensors, dim)


def stack(tensors, dim: int = 0):
    """``torch.stack``: join same-shaped tensors along a new dim (in ``[-ndim-1, ndim]``).

    Args:
        tensors: a non-empty sequence of same-shaped arrays.
        dim: position of the new dim. Default 0.

    Shape: the common shape with ``len(tensors)`` inserted at ``dim``.

    Example:
        >>> import jax.numpy as jnp
        >>> from jaxlayers import ops
        >>> ops.stack([jnp.ones(3), jnp.zeros(3)], dim=1).shape
        (3, 2)
    """
    tensors = _tensor_list(tensors, "stack")
    ref = tensors[0]
    for i, t in enumerate(tensors):
        if t.shape != ref.shape:
            raise ValueError(
                f"stack expects each tensor to be equal size, but got {list(ref.shape)} at entry 0 and "
                f"{list(t.shape)} at entry {i}"
            )
    d = _dim(dim, ref.ndim + 1, "stack")
    dtype = jnp.result_type(*tensors)
    return jnp.stack([t.astype(dtype) for t in tensors], axis=d)


def narrow(x, dim: int, start: int, length: int):
    """``torch.narrow``: ``x`` restricted to ``start:start+length`` along ``dim`` (start may be negative).

    Args:
        x: input array.
        dim: the dim to restrict.
        start: first index (negative counts from the end).
        length: number of elements kept.

    Shape: ``x``'s shape with ``length`` along ``dim``.

    Example:
        >>> import jax.numpy as jnp
        >>> from jaxlayers import ops
        >>> ops.narrow(jnp.arange(5), 0, -3, 2).tolist()
        [2, 3]
    """
    x = jnp.asarray(x)
    if x.ndim == 0:
        raise ValueError("narrow() cannot be applied to a 0-dim tensor.")
    d = _dim(dim, x.ndim, "narrow")
    start, length = _int(start, "narrow", "start"), _int(length, "narrow", "length")
    n = x.shape[d]
    if length < 0:
        raise ValueError(f"narrow(): length must be non-negative, got {length}")
    if not -n <= start <= n:
        raise IndexError(f"narrow: start out of range (expected to be in range of [{-n}, {n}], but got {start})")
    if start < 0:
        start += n
    if start + length > n:
        raise ValueError(f"narrow: start ({start}) + length ({length}) exceeds dimension size ({n}).")
    return x[(slice(None),) * d + (slice(start, start + length),)]


def repeat(x, *sizes):
    """``torch.Tensor.repeat``: tile ``x`` ``sizes[i]`` times along each dim.

    This is ``jnp.tile`` (NOT ``jnp.repeat``, which repeats elements; that is
    torch's ``repeat_interleave``).  ``sizes`` may be longer than ``x.ndim``
    (new leading dims) but not shorter.

    Args:
        x: input array.
        *sizes: repetitions per dim (varargs or one sequence), at least ``x.ndim`` of them.

    Shape: ``sizes[i] * s_i`` per dim, ``x``'s shape left-padded with 1s.

    Example:
        >>> import jax.numpy as jnp
        >>> from jaxlayers import ops
        >>> ops.repeat(jnp.array([1, 2]), 2, 2).tolist()
        [[1, 2, 1, 2], [1, 2, 1, 2]]
    """
    x = jnp.asarray(x)
    sizes = _sizes(sizes, "repeat", "repeats")
    if len(sizes) < x.ndim:
        raise ValueError(
            f"repeat: number of dimensions of repeat dims ({len(sizes)}) can not be smaller than number of "
            f"dimensions of tensor ({x.ndim}); tensor shape {shape_str(x)}"
        )
    if any(s < 0 for s in sizes):
        raise ValueError(f"repeat: trying to create tensor with negative dimension: repeats {list(sizes)}")
    return jnp.tile(x, sizes)
