"""Packed sequences, as ``torch.nn.utils.rnn``.

torch's ``PackedSequence.data`` holds the valid steps of a ragged batch, time step by time step
(``sum(lengths)`` rows): its length depends on the values of ``lengths``, which ``jit`` cannot
trace.  jaxlayers therefore keeps two views in one pytree:

* torch's four fields, ``data``, ``batch_sizes``, ``sorted_indices``, ``unsorted_indices``,
  with torch's values and layout;
* ``padded`` — the same steps as a time-major ``(T, B, *)`` array in sorted batch order, zeros
  past each sequence's end — and ``lengths`` ``(B,)`` (sorted order): static shapes, used by
  RNN/LSTM/GRU (masking inside their ``lax.scan``) and by :func:`pad_packed_sequence`.

When ``lengths`` is concrete (outside ``jit``, a list or NumPy array), ``pack_padded_sequence``
trims ``T`` to ``max(lengths)`` and materialises ``data``, so every field equals torch's.  With
traced lengths (inside ``jit``) ``data`` is ``None``, ``T`` stays the padded length and
``batch_sizes`` has ``T`` entries (trailing zeros).  A packed sequence that already has ``data``
keeps it through RNN layers, also under ``jit`` (its row count is a static shape).

Example:
  >>> import jax.numpy as jnp
  >>> from jaxlayers.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence
  >>> x = jnp.arange(6.0).reshape(3, 2)          # (T=3, B=2)
  >>> p = pack_padded_sequence(x, [3, 1])
  >>> p.data.tolist(), p.batch_sizes.tolist()
  ([0.0, 1.0, 2.0, 4.0], [2, 1, 1])
  >>> pad_packed_sequence(p)[0].tolist()
  [[0.0, 1.0], [2.0, 0.0], [4.0, 0.0]]
"""

from __future__ import annotations

from typing import Any, NamedTuple, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from ..._utils import concrete, index_dtype, shape_str

__all__ = [
    "PackedSequence",
    "pack_padded_sequence",
    "pad_packed_sequence",
    "pad_sequence",
    "pack_sequence",
    "unpad_sequence",
    "unpack_sequence",
    "invert_permutation",
]


class _PackedFields(NamedTuple):
    """:class:`PackedSequence`'s fields and methods."""

    data: Any
    batch_sizes: Any = None
    sorted_indices: Any = None
    unsorted_indices: Any = None
    padded: Any = None
    lengths: Any = None

    def with_padded(self) -> "PackedSequence":
        """This sequence with ``padded``/``lengths`` filled in from torch's ``data``/``batch_sizes``."""
        if self.padded is not None:
            return self
        if self.data is None or self.batch_sizes is None:
            raise ValueError("PackedSequence: needs (data, batch_sizes) or (padded, lengths)")
        bs = concrete(self.batch_sizes)
        if bs is None:
            raise ValueError("PackedSequence: building the padded view from data needs concrete batch_sizes "
                             "(build it outside jit, or with pack_padded_sequence)")
        bs = bs.astype(np.int64)
        lengths = (bs[None, :] > np.arange(bs[0])[:, None]).sum(1)
        t_idx, b_idx = _packed_positions(bs)
        data = jnp.asarray(self.data)
        padded = jnp.zeros((len(bs), int(bs[0])) + data.shape[1:], data.dtype).at[t_idx, b_idx].set(data)
        return self._replace(padded=padded, lengths=jnp.asarray(lengths, index_dtype()))

    def replace_padded(self, padded: jax.Array) -> "PackedSequence":
        """The same packing (sizes, order) with new padded contents ``(T, B, *)``; ``data`` follows."""
        data = None
        if self.data is not None:
            data = _gather_packed(padded, self.batch_sizes, int(jnp.shape(self.data)[0]))
        return self._replace(data=data, padded=padded)


class PackedSequence(_PackedFields):
    """A ragged batch, as ``torch.nn.utils.rnn.PackedSequence`` (a pytree).

    Fields: torch's ``data`` (``(sum(lengths), *)``, ``None`` when built from traced lengths),
    ``batch_sizes`` ``(T,)``, ``sorted_indices`` and ``unsorted_indices`` (``None`` when the batch
    was already sorted; given ``sorted_indices`` alone, ``unsorted_indices`` is its inverse, as
    torch's constructor makes it), then ``padded`` ``(T, B, *)`` (time-major, sorted order, zeros
    past the ends) and ``lengths`` ``(B,)`` (sorted order).  Build it with :func:`pack_padded_sequence`
    or :func:`pack_sequence`; ``PackedSequence(data, batch_sizes[, sorted_indices])`` from torch's
    fields also works (with concrete ``batch_sizes``).
    """

    __slots__ = ()

    def __new__(cls, data: Any, batch_sizes: Any = None, sorted_indices: Any = None, unsorted_indices: Any = None,
                padded: Any = None, lengths: Any = None) -> "PackedSequence":
        if unsorted_indices is None and sorted_indices is not None:
            unsorted_indices = invert_permutation(sorted_indices)
        return super().__new__(cls, data, batch_sizes, sorted_indices, unsorted_indices, padded, lengths)


def invert_permutation(permutation: Any) -> Any:
    """The inverse permutation (torch's ``rnn.invert_permutation``); ``None`` stays ``None``."""
    if permutation is None:
        return None
    permutation = jnp.asarray(permutation)
    return jnp.zeros_like(permutation).at[permutation].set(jnp.arange(permutation.shape[0], dtype=permutation.dtype))


def _packed_positions(batch_sizes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Concrete ``(time, batch)`` of every row of torch's packed ``data``."""
    t = np.repeat(np.arange(len(batch_sizes)), batch_sizes)
    b = np.concatenate([np.arange(n) for n in batch_sizes]) if len(batch_sizes) else np.zeros(0, np.int64)
    return t, b


def _gather_packed(padded: jax.Array, batch_sizes: Any, n: int) -> jax.Array:
    """torch's packed ``data`` (``n`` rows) from the padded view; jit-safe given a static ``n``."""
    known = concrete(batch_sizes)
    if known is not None:
        t, b = _packed_positions(known.astype(np.int64))
        return padded[t, b]
    offsets = jnp.cumsum(batch_sizes)
    j = jnp.arange(n)
    t = jnp.searchsorted(offsets, j, side="right")
    b = j - jnp.where(t > 0, offsets[jnp.maximum(t - 1, 0)], 0)
    return padded[t, b]


def pack_padded_sequence(input: Any, lengths: Any, batch_first: bool = False,
                         enforce_sorted: bool = True) -> PackedSequence:
    """Pack a padded batch of ragged sequences, as ``torch.nn.utils.rnn.pack_padded_sequence``.

    Args:
      input: ``(T, B, *)`` (``(B, T, *)`` with ``batch_first``), padded past each length.
      lengths: ``(B,)`` the sequences' lengths (list, NumPy or JAX array; traced lengths are
        allowed under ``jit``, see the module docstring).
      batch_first: the layout of ``input``.
      enforce_sorted: the lengths must be in decreasing order; ``False`` sorts them (stable, as
        torch's CPU sort) and records ``sorted_indices``/``unsorted_indices``.

    Returns:
      A :class:`PackedSequence`.

    Raises ValueError for lengths that are not positive, longer than ``T``, of the wrong shape, or
    not decreasing with ``enforce_sorted=True`` (checked when ``lengths`` is concrete).
    """
    fn = "pack_padded_sequence"
    input = jnp.asarray(input)
    if input.ndim < 2:
        raise ValueError(f"{fn}: expected input of at least 2 dims (T, B, *), got shape {shape_str(input)}")
    x = jnp.swapaxes(input, 0, 1) if batch_first else input
    t_max, batch = x.shape[0], x.shape[1]
    known = concrete(lengths)
    lengths = known.astype(np.int64) if known is not None else jnp.asarray(lengths)
    concrete_lengths = known is not None
    if lengths.ndim != 1 or lengths.shape[0] != batch:
        raise ValueError(f"{fn}: expected lengths of shape ({batch},) (one per batch element), got "
                         f"{shape_str(lengths.shape)} for input {shape_str(input)} (batch_first={batch_first})")
    if batch == 0:
        raise ValueError(f"{fn}: cannot pack empty tensors (a batch of 0 sequences, input {shape_str(input)}), "
                         "as torch")
    if concrete_lengths:
        if batch and lengths.min() <= 0:
            raise ValueError(f"{fn}: every length must be positive, got lengths {lengths.tolist()}")
        if batch and lengths.max() > t_max:
            raise ValueError(f"{fn}: lengths {lengths.tolist()} exceed the sequence length {t_max} of input "
                             f"{shape_str(input)} (batch_first={batch_first})")
        if enforce_sorted and np.any(np.diff(lengths) > 0):
            raise ValueError(f"{fn}: `lengths` array must be sorted in decreasing order when `enforce_sorted` "
                             f"is True, got {lengths.tolist()}; pass enforce_sorted=False to pack unsorted "
                             "sequences")
    sorted_indices = unsorted_indices = None
    if not enforce_sorted:  # stable, as torch's CPU sort
        if concrete_lengths:
            order = np.argsort(-lengths, kind="stable")
            lengths = lengths[order]
            sorted_indices = jnp.asarray(order, index_dtype())
            unsorted_indices = jnp.asarray(np.argsort(order), index_dtype())
        else:
            sorted_indices = jnp.argsort(-lengths, stable=True).astype(index_dtype())
            unsorted_indices = invert_permutation(sorted_indices)
            lengths = lengths[sorted_indices]
        x = jnp.take(x, sorted_indices, axis=1)
    if concrete_lengths:
        t_max = int(lengths.max()) if batch else 0
        x = x[:t_max]
    xp = np if concrete_lengths else jnp  # concrete lengths: sizes as NumPy, even while tracing x
    valid = xp.arange(t_max)[:, None] < lengths[None, :]  # (T, B)
    padded = jnp.where(jnp.asarray(valid).reshape(valid.shape + (1,) * (x.ndim - 2)), x, jnp.zeros((), x.dtype))
    batch_sizes = valid.sum(1)
    data = None
    if concrete_lengths:
        data = _gather_packed(padded, batch_sizes, int(lengths.sum()))
    batch_sizes = jnp.asarray(batch_sizes, index_dtype())
    return PackedSequence(data, batch_sizes, sorted_indices, unsorted_indices, padded,
                          jnp.asarray(lengths, index_dtype()))


def pad_packed_sequence(sequence: PackedSequence, batch_first: bool = False, padding_value: float = 0.0,
                        total_length: int | None = None) -> tuple[jax.Array, jax.Array]:
    """Unpack to a padded batch, as ``torch.nn.utils.rnn.pad_packed_sequence``.

    Args:
      sequence: a :class:`PackedSequence`.
      batch_first: return ``(B, T, *)`` instead of ``(T, B, *)``.
      padding_value: the value past each sequence's end.
      total_length: pad the time dim to this length (at least the longest sequence).

    Returns:
      ``(padded, lengths)`` in the original batch order; ``lengths`` ``(B,)`` int.

    Shape: ``T = total_length`` or ``len(batch_sizes)`` (``max(lengths)`` for concrete lengths).
    """
    fn = "pad_packed_sequence"
    if not isinstance(sequence, PackedSequence):
        raise TypeError(f"{fn}: expected a PackedSequence, got {type(sequence).__name__}")
    sequence = sequence.with_padded()
    padded, lengths = sequence.padded, sequence.lengths
    t_max = padded.shape[0]
    if total_length is not None:
        if total_length < t_max:
            raise ValueError(f"{fn}: expected total_length to be at least the length of the longest sequence in "
                             f"input, but got total_length={total_length} and max sequence length being {t_max}")
        padded = jnp.concatenate([padded, jnp.zeros((total_length - t_max,) + padded.shape[1:], padded.dtype)])
    if padding_value != 0:
        steps = jnp.arange(padded.shape[0])
        valid = steps[:, None] < lengths[None, :]
        padded = jnp.where(valid.reshape(valid.shape + (1,) * (padded.ndim - 2)), padded,
                           jnp.asarray(padding_value, padded.dtype))
    if sequence.unsorted_indices is not None:
        padded = jnp.take(padded, sequence.unsorted_indices, axis=1)
        lengths = jnp.take(lengths, sequence.unsorted_indices)
    return (jnp.swapaxes(padded, 0, 1) if batch_first else padded), lengths


def pad_sequence(sequences: Sequence[Any], batch_first: bool = False, padding_value: float = 0.0,
                 padding_side: str = "right") -> jax.Array:
    """Pad a list of ``(L_i, *)`` arrays to one array, as ``torch.nn.utils.rnn.pad_sequence``.

    Shape: ``(max L_i, B, *)`` or ``(B, max L_i, *)`` with ``batch_first``; ``padding_side``
    ``"left"`` pads before each sequence.

    Example:
      >>> import jax.numpy as jnp
      >>> pad_sequence([jnp.ones(2), jnp.ones(1)], batch_first=True).tolist()
      [[1.0, 1.0], [1.0, 0.0]]
    """
    fn = "pad_sequence"
    if padding_side not in ("left", "right"):
        raise ValueError(f"{fn}: padding_side must be 'left' or 'right', got {padding_side!r}")
    seqs = [jnp.asarray(s) for s in sequences]
    if not seqs:
        raise ValueError(f"{fn}: received an empty list of sequences")
    trail = seqs[0].shape[1:]
    for i, s in enumerate(seqs):
        if s.ndim < 1 or s.shape[1:] != trail:
            raise ValueError(f"{fn}: every sequence must have shape (L, *{trail}), sequence {i} has shape "
                             f"{shape_str(s)}")
    t_max = max(s.shape[0] for s in seqs)
    dtype = seqs[0].dtype  # torch's: the first sequence's
    rows = []
    for s in seqs:
        pad = jnp.full((t_max - s.shape[0],) + trail, padding_value, dtype)
        rows.append(jnp.concatenate([s.astype(dtype), pad] if padding_side == "right" else [pad, s.astype(dtype)]))
    out = jnp.stack(rows, axis=0 if batch_first else 1)
    return out


def pack_sequence(sequences: Sequence[Any], enforce_sorted: bool = True) -> PackedSequence:
    """Pack a list of ``(L_i, *)`` arrays, as ``torch.nn.utils.rnn.pack_sequence``."""
    lengths = [int(np.shape(s)[0]) for s in sequences]
    return pack_padded_sequence(pad_sequence(sequences), lengths, enforce_sorted=enforce_sorted)


def unpad_sequence(padded_sequences: Any, lengths: Any, batch_first: bool = False) -> list:
    """Split a padded batch into a list of ``(L_i, *)`` arrays, as
    ``torch.nn.utils.rnn.unpad_sequence`` (``lengths`` must be concrete)."""
    fn = "unpad_sequence"
    if concrete(lengths) is None:
        raise ValueError(f"{fn}: needs concrete lengths (the outputs' shapes depend on them)")
    x = jnp.asarray(padded_sequences)
    if not batch_first:
        x = jnp.swapaxes(x, 0, 1)
    lengths = np.asarray(lengths).astype(np.int64)
    if lengths.shape != (x.shape[0],) or (len(lengths) and lengths.max() > x.shape[1]):
        raise ValueError(f"{fn}: lengths {lengths.tolist()} do not fit a batch of shape {shape_str(padded_sequences)} "
                         f"(batch_first={batch_first})")
    return [x[i, :n] for i, n in enumerate(lengths)]


def unpack_sequence(packed_sequences: PackedSequence) -> list:
    """A list of ``(L_i, *)`` arrays from a :class:`PackedSequence`, as
    ``torch.nn.utils.rnn.unpack_sequence``."""
    padded, lengths = pad_packed_sequence(packed_sequences, batch_first=True)
    return unpad_sequence(padded, np.asarray(lengths), batch_first=True)
