"""Embedding and EmbeddingBag: torch.nn's lookup tables as Flax linen modules.

Both hold one parameter, ``params["weight"]`` of shape ``(num_embeddings,
embedding_dim)``, initialised N(0, 1) with the ``padding_idx`` row zeroed, as
torch.  The numerics live in :mod:`jaxlayers.functional.sparse`.

``max_norm``: the output is always computed from the renormalised rows.  torch
also writes those rows back into its weight; here that happens only when the
``params`` collection is mutable outside ``init``::

    y = model.apply(variables, idx)                                  # weight untouched
    y, new = model.apply(variables, idx, mutable=["params"])         # new["params"]["weight"]: torch's table
"""

from __future__ import annotations

from typing import Any, Callable

import flax.linen as linen
import jax
import jax.numpy as jnp
import numpy as np
from flax.linen.dtypes import promote_dtype

from .. import init as jinit
from .._utils import check_sizes, shape_str
from ..functional.sparse import _MODES, _embedding, _embedding_bag, _normalise_padding_idx, embedding_renorm
from ._options import InitOptions, set_field
from ._param import param

__all__ = ["Embedding", "EmbeddingBag"]


def _check_common(module: linen.Module) -> None:
    """torch's constructor checks; a negative ``padding_idx`` is held as ``num_embeddings + padding_idx``."""
    layer, num, dim, weight = type(module).__name__, module.num_embeddings, module.embedding_dim, module._weight
    check_sizes(layer, num_embeddings=num, embedding_dim=dim)
    set_field(module, "padding_idx", _normalise_padding_idx(layer, module.padding_idx, int(num)))
    if weight is not None and tuple(np.shape(weight)) != (num, dim):
        raise ValueError(
            f"{layer}: shape of _weight {shape_str(np.shape(weight))} does not match "
            f"(num_embeddings, embedding_dim) = ({num}, {dim})"
        )


def _weight_init(num: int, padding_idx: int | None, weight: Any, custom: Callable | None) -> Callable:
    """torch's default: N(0, 1), then the padding row zeroed (or ``_weight`` as given)."""
    pad = _normalise_padding_idx("Embedding", padding_idx, num)

    def init(key, shape, dtype=jnp.float32):
        if weight is not None:
            return jnp.asarray(weight, dtype)
        w = (custom or jinit.normal(0.0, 1.0))(key, shape, dtype)
        return w if pad is None else w.at[pad].set(0)

    return init


def _pretrained(layer: str, embeddings: Any) -> jax.Array:
    if np.ndim(embeddings) != 2:
        raise ValueError(
            f"{layer}.from_pretrained: embeddings are expected to be 2-D (num_embeddings, embedding_dim), "
            f"got shape {shape_str(np.shape(embeddings))}"
        )
    return jnp.asarray(np.asarray(embeddings) if not isinstance(embeddings, jax.Array) else embeddings)


class _EmbeddingBase(InitOptions):
    def _table(self) -> jax.Array:
        w = param(
            self,
            "weight",
            _weight_init(self.num_embeddings, self.padding_idx, self._weight, self.weight_init),
            (self.num_embeddings, self.embedding_dim),
            self.param_dtype,
        )
        return jax.lax.stop_gradient(w) if self._freeze else w

    def _store_renorm(self, weight: jax.Array, indices: Any) -> None:
        """torch's in-place ``max_norm`` update, when ``params`` is mutable."""
        if self.max_norm is not None and self.is_mutable_collection("params") and not self.is_initializing():
            self.put_variable("params", "weight", embedding_renorm(weight, indices, self.max_norm, self.norm_type))


class Embedding(_EmbeddingBase):
    """A lookup table of ``num_embeddings`` vectors of size ``embedding_dim``: ``torch.nn.Embedding``.

    Args:
      num_embeddings: size of the table.
      embedding_dim: size of each vector.
      padding_idx: this row is initialised to zeros and gets no gradient (negative
        values count from the end).
      max_norm: rows looked up with a ``norm_type``-norm above it are rescaled to
        ``max_norm``; see the module docstring for how the stored weight is updated.
      norm_type: the p of the p-norm for ``max_norm``.
      scale_grad_by_freq: divide gradients by the frequency of each index in the batch.
      sparse: accepted; JAX gradients are dense.
      _weight: initial table ``(num_embeddings, embedding_dim)`` used by ``init``.
      _freeze: no gradient flows to the weight (``from_pretrained(freeze=True)``).
      dtype: computation dtype (default: the parameter's).
      param_dtype: parameter dtype (float32).
      weight_init: initialiser override (default N(0, 1)); the padding row is zeroed after it.

    Shape:
      input ``(*)`` of integers -> output ``(*, embedding_dim)``.

    Variables:
      ``params["weight"]``: ``(num_embeddings, embedding_dim)``.

    Out-of-range indices raise ``IndexError`` outside ``jit`` and give NaN rows under it.

    Example:
      >>> import jax, jax.numpy as jnp
      >>> from jaxlayers import nn
      >>> m, idx = nn.Embedding(10, 3, padding_idx=0), jnp.array([[0, 4, 9]])
      >>> v = m.init(jax.random.key(0), idx)
      >>> v["params"]["weight"].shape, m.apply(v, idx).shape, m.apply(v, idx)[0, 0].tolist()
      ((10, 3), (1, 3, 3), [0.0, 0.0, 0.0])
    """

    num_embeddings: int
    embedding_dim: int
    padding_idx: int | None = None
    max_norm: float | None = None
    norm_type: float = 2.0
    scale_grad_by_freq: bool = False
    sparse: bool = False
    _weight: Any = None
    _freeze: bool = False

    def __post_init__(self) -> None:
        _check_common(self)
        super().__post_init__()

    @linen.compact
    def __call__(self, input: Any) -> jax.Array:
        weight = self._table()
        self._store_renorm(weight, input)
        (weight,) = promote_dtype(weight, dtype=self.dtype)
        return _embedding(input, weight, self.padding_idx, self.max_norm, self.norm_type,
                          self.scale_grad_by_freq, name=type(self).__name__)

    @classmethod
    def from_pretrained(
        cls,
        embeddings: Any,
        freeze: bool = True,
        padding_idx: int | None = None,
        max_norm: float | None = None,
        norm_type: float = 2.0,
        scale_grad_by_freq: bool = False,
        sparse: bool = False,
        **kwargs: Any,
    ) -> tuple["Embedding", dict]:
        """``torch.nn.Embedding.from_pretrained``: ``(module, variables)`` holding ``embeddings``.

        ``freeze=True`` stops every gradient to the weight.  The padding row is kept as
        given (not zeroed), as torch.  Extra keywords (``dtype``, ...) go to the module.

        Args:
          embeddings: the table, ``(num_embeddings, embedding_dim)``.
          freeze, padding_idx, max_norm, norm_type, scale_grad_by_freq, sparse: as the constructor.

        Shape: embeddings ``(V, D)``; the module maps ``(*)`` to ``(*, D)``.

        Example:
          >>> import jax.numpy as jnp
          >>> from jaxlayers import nn
          >>> m, v = nn.Embedding.from_pretrained(jnp.eye(3))
          >>> m.apply(v, jnp.array([2])).tolist()
          [[0.0, 0.0, 1.0]]
        """
        table = _pretrained(cls.__name__, embeddings)
        kwargs.setdefault("param_dtype", table.dtype)
        module = cls(table.shape[0], table.shape[1], padding_idx, max_norm, norm_type, scale_grad_by_freq,
                     sparse, _freeze=bool(freeze), **kwargs)
        return module, {"params": {"weight": table}}


class EmbeddingBag(_EmbeddingBase):
    """Sums, means or maxima of bags of embeddings, without the intermediate rows: ``torch.nn.EmbeddingBag``.

    Args:
      num_embeddings, embedding_dim, max_norm, norm_type, scale_grad_by_freq, sparse,
      padding_idx, _weight: as :class:`Embedding` (``padding_idx`` entries are also
        left out of their bag).
      mode: ``"sum"``, ``"mean"`` (default) or ``"max"``.
      include_last_offset: ``offsets`` has one more entry, the end of the last bag.
      _freeze, dtype, param_dtype, weight_init: Flax-side, as :class:`Embedding`.

    Call:
      ``model.apply(variables, input, offsets=None, per_sample_weights=None)``.

    Shape:
      input ``(B, N)`` (no offsets) or ``(L,)`` with ``offsets`` ``(B,)`` (``(B + 1,)``
      with ``include_last_offset``) -> output ``(B, embedding_dim)``; empty bags give zeros.

    Example:
      >>> import jax, jax.numpy as jnp
      >>> from jaxlayers import nn
      >>> m, idx, offsets = nn.EmbeddingBag(10, 3, mode="sum"), jnp.array([1, 2, 4, 5, 8]), jnp.array([0, 2])
      >>> v = m.init(jax.random.key(0), idx, offsets)
      >>> v["params"]["weight"].shape, m.apply(v, idx, offsets).shape
      ((10, 3), (2, 3))
    """

    num_embeddings: int
    embedding_dim: int
    max_norm: float | None = None
    norm_type: float = 2.0
    scale_grad_by_freq: bool = False
    mode: str = "mean"
    sparse: bool = False
    _weight: Any = None
    include_last_offset: bool = False
    padding_idx: int | None = None
    _freeze: bool = False

    def __post_init__(self) -> None:
        _check_common(self)
        if self.mode not in _MODES:
            raise ValueError(f"{type(self).__name__}: mode has to be one of sum, mean or max, got {self.mode!r}")
        super().__post_init__()

    @linen.compact
    def __call__(self, input: Any, offsets: Any = None, per_sample_weights: Any = None) -> jax.Array:
        weight = self._table()
        self._store_renorm(weight, input)
        if per_sample_weights is not None:
            weight, per_sample_weights = promote_dtype(weight, per_sample_weights, dtype=self.dtype)
        else:
            (weight,) = promote_dtype(weight, dtype=self.dtype)
        return _embedding_bag(input, weight, offsets, self.max_norm, self.norm_type, self.scale_grad_by_freq,
                              self.mode, per_sample_weights, self.include_last_offset, self.padding_idx,
                              name=type(self).__name__)

    @classmethod
    def from_pretrained(
        cls,
        embeddings: Any,
        freeze: bool = True,
        max_norm: float | None = None,
        norm_type: float = 2.0,
        scale_grad_by_freq: bool = False,
        mode: str = "mean",
        sparse: bool = False,
        include_last_offset: bool = False,
        padding_idx: int | None = None,
        **kwargs: Any,
    ) -> tuple["EmbeddingBag", dict]:
        """``torch.nn.EmbeddingBag.from_pretrained``: ``(module, variables)``; ``freeze`` as Embedding's.

        Args:
          embeddings: the table, ``(num_embeddings, embedding_dim)``.
          freeze, max_norm, norm_type, scale_grad_by_freq, mode, sparse, include_last_offset,
            padding_idx: as the constructor.

        Shape: embeddings ``(V, D)``; the module maps bags to ``(B, D)``.

        Example:
          >>> import jax.numpy as jnp
          >>> from jaxlayers import nn
          >>> m, v = nn.EmbeddingBag.from_pretrained(jnp.eye(3), mode="sum")
          >>> m.apply(v, jnp.array([[0, 2], [1, 1]])).tolist()
          [[1.0, 0.0, 1.0], [0.0, 2.0, 0.0]]
        """
        table = _pretrained(cls.__name__, embeddings)
        kwargs.setdefault("param_dtype", table.dtype)
        module = cls(table.shape[0], table.shape[1], max_norm, norm_type, scale_grad_by_freq, mode, sparse,
                     None, include_last_offset, padding_idx, _freeze=bool(freeze), **kwargs)
        return module, {"params": {"weight": table}}
