"""Transformer encoder/decoder layers and stacks, as ``torch.nn.Transformer*``.

Submodules carry torch's attribute names (``self_attn``, ``linear1``,
``dropout``, ``linear2``, ``norm1``, ``norm2``, ``dropout1``, ``dropout2``;
the decoder adds ``multihead_attn``, ``norm3``, ``dropout3``), stacks hold
``layers`` -> ``"0"``, ``"1"``, ... and ``norm``, so the variables flatten to
torch's ``state_dict`` keys (``layers.0.self_attn.in_proj_weight``, ...).
"""

from __future__ import annotations

from typing import Any, Callable, ClassVar

import flax.linen as fnn
import jax.numpy as jnp
import numpy as np

from .. import init as jinit
from .._utils import require_train, shape_str
from ..functional import activation as _act
from .attention import MultiheadAttention
from .dropout import Dropout
from .linear import Linear
from .normalization import LayerNorm
from ._options import PrecisionOptions, kw_only

__all__ = [
    "TransformerEncoderLayer",
    "TransformerDecoderLayer",
    "TransformerEncoder",
    "TransformerDecoder",
    "Transformer",
]


def _activation_fn(activation: Any, layer: str) -> Callable:
    if isinstance(activation, str):
        if activation == "relu":
            return _act.relu
        if activation == "gelu":
            return _act.gelu
        raise ValueError(f"{layer}: activation should be 'relu', 'gelu' or a callable, not {activation!r}")
    if not callable(activation):
        raise TypeError(f"{layer}: activation should be 'relu', 'gelu' or a callable, got {activation!r}")
    return activation


def _check_common(self: Any) -> None:
    layer = type(self).__name__
    if self.d_model <= 0 or self.nhead <= 0:
        raise ValueError(f"{layer}: d_model and nhead must be > 0, got d_model={self.d_model}, nhead={self.nhead}")
    if self.d_model % self.nhead:
        raise ValueError(f"{layer}: d_model={self.d_model} (embed_dim) must be divisible by nhead={self.nhead}")
    if not 0.0 <= self.dropout <= 1.0:
        raise ValueError(f"{layer}: dropout must be in [0, 1], got {self.dropout}")
    _activation_fn(self.activation, layer)


class TransformerEncoderLayer(PrecisionOptions):
    """Self-attention + feed-forward block, as ``torch.nn.TransformerEncoderLayer``.

    Args:
      d_model: embedding size ``E``; nhead: number of heads (divides ``d_model``).
      dim_feedforward: hidden size of the feed-forward block (2048).
      dropout: dropout after attention, inside and after the feed-forward block,
        and on the attention weights (0.1).
      activation: ``"relu"`` (default), ``"gelu"`` or a callable.
      layer_norm_eps: LayerNorm eps (1e-5).
      batch_first: ``(N, S, E)`` instead of ``(S, N, E)``.
      norm_first: pre-norm (``x + sa(norm1(x))``) instead of post-norm.
      bias: biases in the linear layers, attention projections and LayerNorms.
      dtype, param_dtype, precision: Flax options.
      weight_init: if given, initialiser for every weight with more than one
        dimension (``nn.Transformer`` passes xavier-uniform, as torch does).

    Call: ``(src, src_mask=None, src_key_padding_mask=None, is_causal=False, *, train)``;
    masks as ``MultiheadAttention`` (``src_mask`` ``(S, S)`` or ``(N*nhead, S, S)``).

    Shape: ``src`` ``(S, N, E)``, ``(N, S, E)`` batch_first or ``(S, E)`` unbatched -> same shape.

    Differs from torch: no fused inference fast path / nested tensors (torch's
    fast path zeroes padded positions in eval under ``no_grad``; here padded
    positions are computed as in torch's training path).

    Example:
      >>> import jax, jax.numpy as jnp
      >>> from jaxlayers import nn
      >>> m, x = nn.TransformerEncoderLayer(8, 2, dim_feedforward=16), jnp.ones((5, 1, 8))
      >>> v = m.init(jax.random.key(0), x, train=False)
      >>> v["params"]["linear1"]["weight"].shape, m.apply(v, x, train=False).shape
      ((16, 8), (5, 1, 8))
    """

    d_model: int
    nhead: int
    dim_feedforward: int = 2048
    dropout: float = 0.1
    activation: Any = "relu"
    layer_norm_eps: float = 1e-5
    batch_first: bool = False
    norm_first: bool = False
    bias: bool = True
    weight_init: Callable | None = kw_only(None)

    def __post_init__(self) -> None:
        _check_common(self)
        super().__post_init__()

    def _mha(self, name: str) -> MultiheadAttention:
        return MultiheadAttention(
            self.d_model, self.nhead, dropout=self.dropout, bias=self.bias, batch_first=self.batch_first,
            dtype=self.dtype, param_dtype=self.param_dtype, in_proj_weight_init=self.weight_init,
            out_proj_weight_init=self.weight_init, precision=self.precision, name=name,
        )

    def _linear(self, i: int, o: int, name: str) -> Any:
        return Linear(i, o, bias=self.bias, dtype=self.dtype, param_dtype=self.param_dtype,
                             weight_init=self.weight_init, precision=self.precision, name=name)

    def _norm(self, name: str) -> Any:
        return LayerNorm(self.d_model, eps=self.layer_norm_eps, bias=self.bias, dtype=self.dtype,
                                param_dtype=self.param_dtype, name=name)

    def _ff_block(self, x: Any, train: bool, last_dropout: str, linear1: Any, linear2: Any) -> Any:
        act = _activation_fn(self.activation, type(self).__name__)
        h = Dropout(self.dropout, name="dropout")(act(linear1(x)), train=train)
        return Dropout(self.dropout, name=last_dropout)(linear2(h), train=train)

    def _children(self, attentions: tuple[str, ...], norms: int) -> tuple:
        """The attentions, linear1, linear2 and the norms; while initialising, their variables are
        created in torch's order (attentions, feed-forward, norms: ``parameters()``, ``state_dict``),
        not in the order the forward first calls them, by a call of each on zeros."""
        children = (*(self._mha(n) for n in attentions), self._linear(self.d_model, self.dim_feedforward, "linear1"),
                    self._linear(self.dim_feedforward, self.d_model, "linear2"),
                    *(self._norm(f"norm{i}") for i in range(1, norms + 1)))
        if self.is_initializing():
            z, h = jnp.zeros((1, self.d_model)), jnp.zeros((1, self.dim_feedforward))
            for i, child in enumerate(children):
                if i < len(attentions):
                    child(z, z, z, need_weights=False, train=False)
                else:
                    child(h if i == len(attentions) + 1 else z)
        return children

    @fnn.compact
    def __call__(self, src: Any, src_mask: Any = None, src_key_padding_mask: Any = None,
                 is_causal: bool = False, *, train: bool | None = None) -> Any:
        train = require_train(type(self).__name__, train)
        _check_features(type(self).__name__, "src", src, self.d_model)
        self_attn, linear1, linear2, norm1, norm2 = self._children(("self_attn",), 2)

        def sa_block(x):
            y = self_attn(x, x, x, attn_mask=src_mask, key_padding_mask=src_key_padding_mask,
                          need_weights=False, is_causal=is_causal, train=train)[0]
            return Dropout(self.dropout, name="dropout1")(y, train=train)

        x = src
        if self.norm_first:
            x = x + sa_block(norm1(x))
            x = x + self._ff_block(norm2(x), train, "dropout2", linear1, linear2)
        else:
            x = norm1(x + sa_block(x))
            x = norm2(x + self._ff_block(x, train, "dropout2", linear1, linear2))
        return x


class TransformerDecoderLayer(TransformerEncoderLayer):
    """Self-attention + cross-attention + feed-forward block, as ``torch.nn.TransformerDecoderLayer``.

    Args: as :class:`TransformerEncoderLayer` (same constructor); the layer adds
    ``multihead_attn``, ``norm3`` and ``dropout3``.

    Call: ``(tgt, memory, tgt_mask=None, memory_mask=None, tgt_key_padding_mask=None,
    memory_key_padding_mask=None, tgt_is_causal=False, memory_is_causal=False, *, train)``.

    Shape: ``tgt`` ``(T, N, E)`` (``(N, T, E)`` batch_first, ``(T, E)`` unbatched),
    ``memory`` ``(S, N, E)`` -> shape of ``tgt``.

    Example:
      >>> import jax, jax.numpy as jnp
      >>> from jaxlayers import nn
      >>> m = nn.TransformerDecoderLayer(8, 2, dim_feedforward=16)
      >>> tgt, memory = jnp.ones((5, 1, 8)), jnp.ones((5, 1, 8))
      >>> v = m.init(jax.random.key(0), tgt, memory, train=False)
      >>> m.apply(v, tgt, memory, train=False).shape
      (5, 1, 8)
    """

    @fnn.compact
    def __call__(self, tgt: Any, memory: Any, tgt_mask: Any = None, memory_mask: Any = None,
                 tgt_key_padding_mask: Any = None, memory_key_padding_mask: Any = None,
                 tgt_is_causal: bool = False, memory_is_causal: bool = False, *,
                 train: bool | None = None) -> Any:
        layer = type(self).__name__
        train = require_train(layer, train)
        _check_features(layer, "tgt", tgt, self.d_model)
        _check_features(layer, "memory", memory, self.d_model)
        self_attn, cross_attn, linear1, linear2, norm1, norm2, norm3 = self._children(("self_attn", "multihead_attn"), 3)

        def sa_block(x):
            y = self_attn(x, x, x, attn_mask=tgt_mask, key_padding_mask=tgt_key_padding_mask,
                          is_causal=tgt_is_causal, need_weights=False, train=train)[0]
            return Dropout(self.dropout, name="dropout1")(y, train=train)

        def mha_block(x):
            y = cross_attn(x, memory, memory, attn_mask=memory_mask, key_padding_mask=memory_key_padding_mask,
                           is_causal=memory_is_causal, need_weights=False, train=train)[0]
            return Dropout(self.dropout, name="dropout2")(y, train=train)

        x = tgt
        if self.norm_first:
            x = x + sa_block(norm1(x))
            x = x + mha_block(norm2(x))
            x = x + self._ff_block(norm3(x), train, "dropout3", linear1, linear2)
        else:
            x = norm1(x + sa_block(x))
            x = norm2(x + mha_block(x))
            x = norm3(x + self._ff_block(x, train, "dropout3", linear1, linear2))
        return x


def _check_features(layer: str, arg: str, x: Any, d_model: int) -> None:
    shape = tuple(np.shape(x))
    if len(shape) not in (2, 3) or shape[-1] != d_model:
        raise ValueError(
            f"{layer}: expected {arg} of shape (S, N, d_model={d_model}), (N, S, d_model) or unbatched "
            f"(S, d_model), got {shape_str(shape)}"
        )


class _Layers(fnn.Module):
    """torch's ``ModuleList`` of deep copies: children ``"0"``, ``"1"``, ... of one template."""

    torch_container: ClassVar[bool] = True  # jaxlayers.nnx indexes its children: enc.layers[0]
    template: fnn.Module
    num_layers: int

    @fnn.compact
    def __call__(self, x: Any, *args: Any, **kwargs: Any) -> Any:
        for i in range(self.num_layers):
            x = self.template.clone(parent=self, name=str(i))(x, *args, **kwargs)
        return x


def _check_stack(self: Any, layer_field: str) -> None:
    name = type(self).__name__
    if not isinstance(self.num_layers, (int, np.integer)) or self.num_layers < 1:
        raise ValueError(f"{name}: num_layers must be an int >= 1, got {self.num_layers!r}")
    if not isinstance(getattr(self, layer_field), fnn.Module):
        raise TypeError(f"{name}: {layer_field} must be a flax module (e.g. a TransformerEncoderLayer), "
                        f"got {type(getattr(self, layer_field)).__name__}")


class TransformerEncoder(fnn.Module):
    """A stack of ``num_layers`` copies of ``encoder_layer``, as ``torch.nn.TransformerEncoder``.

    Args:
      encoder_layer: the layer to copy (its parameters are not shared; each copy
        is initialised independently, as torch's deep copies are after a re-init).
      num_layers: number of copies, children ``layers.0`` ... ``layers.{n-1}``.
      norm: optional final layer norm (child ``norm``).
      enable_nested_tensor, mask_check: accepted for torch compatibility; no effect
        (there is no nested-tensor fast path).

    Call: ``(src, mask=None, src_key_padding_mask=None, is_causal=None, *, train)``.
    ``is_causal=None`` (torch's auto-detection) gives the same result as False.

    Shape: as the layer.

    Differs from torch: torch initialises the copies identically (deep copies of
    one layer); here each copy draws its own initial parameters. Loaded state_dicts
    are unaffected.

    Example:
      >>> import jax, jax.numpy as jnp
      >>> from jaxlayers import nn
      >>> m = nn.TransformerEncoder(nn.TransformerEncoderLayer(8, 2, 16), num_layers=2)
      >>> x = jnp.ones((5, 1, 8))
      >>> v = m.init(jax.random.key(0), x, train=False)
      >>> sorted(v["params"]["layers"]), m.apply(v, x, train=False).shape
      (['0', '1'], (5, 1, 8))
    """

    encoder_layer: fnn.Module
    num_layers: int
    norm: fnn.Module | None = None
    enable_nested_tensor: bool = True
    mask_check: bool = True

    def __post_init__(self) -> None:
        _check_stack(self, "encoder_layer")
        super().__post_init__()

    @fnn.compact
    def __call__(self, src: Any, mask: Any = None, src_key_padding_mask: Any = None,
                 is_causal: bool | None = None, *, train: bool | None = None) -> Any:
        train = require_train(type(self).__name__, train)
        x = _Layers(self.encoder_layer, self.num_layers, name="layers")(
            src, src_mask=mask, src_key_padding_mask=src_key_padding_mask, is_causal=bool(is_causal), train=train)
        if self.norm is not None:
            x = self.norm(x)
        return x


class TransformerDecoder(fnn.Module):
    """A stack of ``num_layers`` copies of ``decoder_layer``, as ``torch.nn.TransformerDecoder``.

    Args:
      decoder_layer: the layer to copy; num_layers: number of copies
      (``layers.0`` ...); norm: optional final layer norm (``norm``).

    Call: ``(tgt, memory, tgt_mask=None, memory_mask=None, tgt_key_padding_mask=None,
    memory_key_padding_mask=None, tgt_is_causal=None, memory_is_causal=False, *, train)``.

    Shape: as the layer.

    Example:
      >>> import jax, jax.numpy as jnp
      >>> from jaxlayers import nn
      >>> m = nn.TransformerDecoder(nn.TransformerDecoderLayer(8, 2, 16), num_layers=2)
      >>> tgt, memory = jnp.ones((5, 1, 8)), jnp.ones((5, 1, 8))
      >>> v = m.init(jax.random.key(0), tgt, memory, train=False)
      >>> sorted(v["params"]["layers"]), m.apply(v, tgt, memory, train=False).shape
      (['0', '1'], (5, 1, 8))
    """

    decoder_layer: fnn.Module
    num_layers: int
    norm: fnn.Module | None = None

    def __post_init__(self) -> None:
        _check_stack(self, "decoder_layer")
        super().__post_init__()

    @fnn.compact
    def __call__(self, tgt: Any, memory: Any, tgt_mask: Any = None, memory_mask: Any = None,
                 tgt_key_padding_mask: Any = None, memory_key_padding_mask: Any = None,
                 tgt_is_causal: bool | None = None, memory_is_causal: bool = False, *,
                 train: bool | None = None) -> Any:
        train = require_train(type(self).__name__, train)
        x = _Layers(self.decoder_layer, self.num_layers, name="layers")(
            tgt, memory, tgt_mask=tgt_mask, memory_mask=memory_mask,
            tgt_key_padding_mask=tgt_key_padding_mask, memory_key_padding_mask=memory_key_padding_mask,
            tgt_is_causal=bool(tgt_is_causal), memory_is_causal=memory_is_causal, train=train)
        if self.norm is not None:
            x = self.norm(x)
        return x


def _as_child(module: Any) -> Any:
    """A fresh, unattached deep copy of ``module`` for ``setup`` to adopt under the attribute it is
    assigned to (a non-module callable is used as given)."""
    return module.copy(parent=None) if isinstance(module, fnn.Module) else module


class Transformer(PrecisionOptions):
    """Encoder-decoder transformer, as ``torch.nn.Transformer``.

    Args:
      d_model=512, nhead=8, num_encoder_layers=6, num_decoder_layers=6,
      dim_feedforward=2048, dropout=0.1, activation="relu", custom_encoder=None,
      custom_decoder=None, layer_norm_eps=1e-5, batch_first=False, norm_first=False,
      bias=True (torch's order and defaults); then dtype, param_dtype, precision.

    Children ``encoder`` (``layers.*``, ``norm``) and ``decoder`` (``layers.*``,
    ``norm``). Every weight with more than one dimension is xavier-uniform
    initialised, as torch's ``_reset_parameters``.

    ``custom_encoder``/``custom_decoder`` (flax modules called as ``TransformerEncoder``/
    ``TransformerDecoder``) replace the built stacks and are stored, as in torch, as the
    children ``encoder``/``decoder`` (a copy each), so a torch ``Transformer(custom_encoder=...)``
    state_dict loads unchanged. Differs from torch: a custom module keeps its own
    initialisers (torch's ``_reset_parameters`` re-initialises its matrices xavier-uniform too).

    Call: ``(src, tgt, src_mask=None, tgt_mask=None, memory_mask=None,
    src_key_padding_mask=None, tgt_key_padding_mask=None, memory_key_padding_mask=None,
    src_is_causal=None, tgt_is_causal=None, memory_is_causal=False, *, train)``.

    Shape: ``src`` ``(S, N, E)``, ``tgt`` ``(T, N, E)`` (batch_first: ``(N, S, E)``,
    ``(N, T, E)``; unbatched ``(S, E)``, ``(T, E)``) -> ``(T, N, E)`` (like ``tgt``).

    Example:
      >>> import jax, jax.numpy as jnp
      >>> from jaxlayers import nn
      >>> m = nn.Transformer(8, 2, num_encoder_layers=1, num_decoder_layers=1, dim_feedforward=16)
      >>> src, tgt = jnp.ones((5, 1, 8)), jnp.ones((5, 1, 8))
      >>> mask = nn.Transformer.generate_square_subsequent_mask(5)
      >>> v = m.init(jax.random.key(0), src, tgt, tgt_mask=mask, train=False)
      >>> m.apply(v, src, tgt, tgt_mask=mask, train=False).shape
      (5, 1, 8)
    """

    d_model: int = 512
    nhead: int = 8
    num_encoder_layers: int = 6
    num_decoder_layers: int = 6
    dim_feedforward: int = 2048
    dropout: float = 0.1
    activation: Any = "relu"
    custom_encoder: Any = None
    custom_decoder: Any = None
    layer_norm_eps: float = 1e-5
    batch_first: bool = False
    norm_first: bool = False
    bias: bool = True

    def __post_init__(self) -> None:
        _check_common(self)
        super().__post_init__()

    def setup(self) -> None:
        opts = dict(dim_feedforward=self.dim_feedforward, dropout=self.dropout, activation=self.activation,
                    layer_norm_eps=self.layer_norm_eps, batch_first=self.batch_first,
                    norm_first=self.norm_first, bias=self.bias, dtype=self.dtype,
                    param_dtype=self.param_dtype, precision=self.precision,
                    weight_init=jinit.xavier_uniform())

        def final_norm():
            return LayerNorm(self.d_model, eps=self.layer_norm_eps, bias=self.bias,
                                    dtype=self.dtype, param_dtype=self.param_dtype)

        # A module-valued field is adopted under the field's name (``custom_encoder``); a copy
        # assigned here is a child named ``encoder``/``decoder``, as torch's attributes, so its
        # parameters flatten to torch's ``encoder.*``/``decoder.*`` state_dict keys.
        if self.custom_encoder is not None:
            self.encoder = _as_child(self.custom_encoder)
        else:
            self.encoder = TransformerEncoder(
                TransformerEncoderLayer(self.d_model, self.nhead, **opts), self.num_encoder_layers, final_norm())
        if self.custom_decoder is not None:
            self.decoder = _as_child(self.custom_decoder)
        else:
            self.decoder = TransformerDecoder(
                TransformerDecoderLayer(self.d_model, self.nhead, **opts), self.num_decoder_layers, final_norm())

    def __call__(self, src: Any, tgt: Any, src_mask: Any = None, tgt_mask: Any = None, memory_mask: Any = None,
                 src_key_padding_mask: Any = None, tgt_key_padding_mask: Any = None,
                 memory_key_padding_mask: Any = None, src_is_causal: bool | None = None,
                 tgt_is_causal: bool | None = None, memory_is_causal: bool = False, *,
                 train: bool | None = None) -> Any:
        train = require_train("Transformer", train)
        s, t = tuple(np.shape(src)), tuple(np.shape(tgt))
        if len(s) == 3 and len(t) == 3:
            b = 0 if self.batch_first else 1
            if s[b] != t[b]:
                raise ValueError(
                    f"Transformer: the batch size of src {shape_str(s)} and tgt {shape_str(t)} must be equal "
                    f"(batch dim {b}, batch_first={self.batch_first})"
                )
        elif len(s) != len(t):
            raise ValueError(f"Transformer: src {shape_str(s)} and tgt {shape_str(t)} must both be batched (3-D) "
                             "or both unbatched (2-D)")
        if s[-1] != self.d_model or t[-1] != self.d_model:
            raise ValueError(f"Transformer: the feature size of src {shape_str(s)} and tgt {shape_str(t)} must "
                             f"equal d_model={self.d_model}")
        memory = self.encoder(src, mask=src_mask, src_key_padding_mask=src_key_padding_mask,
                              is_causal=src_is_causal, train=train)
        return self.decoder(tgt, memory, tgt_mask=tgt_mask, memory_mask=memory_mask,
                            tgt_key_padding_mask=tgt_key_padding_mask,
                            memory_key_padding_mask=memory_key_padding_mask,
                            tgt_is_causal=tgt_is_causal, memory_is_causal=memory_is_causal, train=train)

    @staticmethod
    def generate_square_subsequent_mask(sz: int, dtype: Any = jnp.float32) -> Any:
        """``(sz, sz)`` float mask: 0 on and below the diagonal, ``-inf`` above (torch's).

        Args:
          sz: the sequence length.
          dtype: the mask's dtype. Default float32.

        Shape: ``(sz, sz)``.

        Example:
          >>> from jaxlayers import nn
          >>> nn.Transformer.generate_square_subsequent_mask(3).tolist()
          [[0.0, -inf, -inf], [0.0, 0.0, -inf], [0.0, 0.0, 0.0]]
        """
        return jnp.triu(jnp.full((int(sz), int(sz)), -jnp.inf, dtype), k=1)
