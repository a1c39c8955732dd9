"""MultiheadAttention."""

from __future__ import annotations

from typing import Any, Callable

import flax.linen as fnn
import jax.numpy as jnp
from flax.linen.dtypes import promote_dtype

from .. import init as jinit
from .._utils import require_train
from ..functional.attention import multi_head_attention_forward
from ._options import PrecisionOptions, kw_only, set_field
from .linear import Linear
from ._param import param

__all__ = ["MultiheadAttention"]


class _OutProj(fnn.Module):
    """Holds ``out_proj.weight`` ``(E, E)`` and ``out_proj.bias`` ``(E,)`` (torch's
    ``NonDynamicallyQuantizableLinear``); the projection itself is applied inside
    ``multi_head_attention_forward``, so this returns the arrays only."""

    features: int
    bias: bool = True
    param_dtype: Any = jnp.float32
    weight_init: Callable | None = None
    bias_init: Callable | None = None

    @fnn.compact
    def __call__(self):
        w = param(self, "weight", self.weight_init or jinit.torch_weight_default(),
                  (self.features, self.features), self.param_dtype)
        b = param(self, "bias", self.bias_init or jinit.zeros, (self.features,), self.param_dtype) if self.bias else None
        return w, b

    def torch_layer(self) -> Linear:
        """The layer torch holds here (a ``Linear``): what ``jaxlayers.nnx`` makes ``attn.out_proj``."""
        return Linear(self.features, self.features, bias=self.bias, param_dtype=self.param_dtype,
                      weight_init=self.weight_init, bias_init=self.bias_init or jinit.zeros, parent=None)


class MultiheadAttention(PrecisionOptions):
    """Multi-head attention, as ``torch.nn.MultiheadAttention``.

    Args:
      embed_dim: ``E``, the query (and output) embedding size.
      num_heads: ``H``; must divide ``embed_dim``.
      dropout: dropout on the attention weights (only with ``train=True``).
      bias: input/output projection biases.
      add_bias_kv: learnable ``bias_k``/``bias_v`` ``(1, 1, E)`` appended to key/value.
      add_zero_attn: append a zero key/value position.
      kdim, vdim: key/value embedding sizes (default ``embed_dim``). When either
        differs from ``embed_dim`` the parameters are ``q_proj_weight`` ``(E, E)``,
        ``k_proj_weight`` ``(E, kdim)``, ``v_proj_weight`` ``(E, vdim)`` instead of
        ``in_proj_weight`` ``(3E, E)``.
      batch_first: inputs/outputs ``(N, L, E)`` instead of ``(L, N, E)``.
      dtype: computation dtype; param_dtype: parameter dtype (float32).
      in_proj_weight_init, in_proj_bias_init, out_proj_weight_init, bias_kv_init:
        initialiser overrides (None = torch's: xavier-uniform, zeros,
        U(±1/sqrt(E)) and xavier-normal; ``out_proj.bias`` is zeros).

    Parameters (torch's names): ``in_proj_weight`` or ``q/k/v_proj_weight``,
    ``in_proj_bias`` ``(3E,)``, ``out_proj.weight`` ``(E, E)``, ``out_proj.bias``,
    ``bias_k``, ``bias_v``.

    Call: ``(query, key, value, key_padding_mask=None, need_weights=True,
    attn_mask=None, average_attn_weights=True, is_causal=False, *, train)``;
    masks as torch (bool ``True`` = not allowed, float added; ``attn_mask``
    ``(L, S)`` or ``(N*H, L, S)``, ``key_padding_mask`` ``(N, S)``).

    Shape: query ``(L, N, E)`` (``(N, L, E)`` batch_first, ``(L, E)`` unbatched),
    key/value ``(S, N, kdim/vdim)``; returns ``(attn_output, attn_weights)`` with
    ``attn_output`` shaped like query and ``attn_weights`` ``(N, L, S)`` averaged,
    ``(N, H, L, S)`` per head, or None when ``need_weights=False``.

    Differs from torch: no fused fast path and no nested tensors; results are
    those of torch's reference path (see docs/attention.md).

    Example:
      >>> import jax, jax.numpy as jnp
      >>> from jaxlayers import nn
      >>> m, x = nn.MultiheadAttention(8, 2), jnp.ones((5, 1, 8))    # (L, N, E)
      >>> v = m.init(jax.random.key(0), x, x, x, train=False)
      >>> out, w = m.apply(v, x, x, x, train=False)
      >>> v["params"]["in_proj_weight"].shape, out.shape, w.shape
      ((24, 8), (5, 1, 8), (1, 5, 5))
    """

    embed_dim: int
    num_heads: int
    dropout: float = 0.0
    bias: bool = True
    add_bias_kv: bool = False
    add_zero_attn: bool = False
    kdim: int | None = None
    vdim: int | None = None
    batch_first: bool = False
    in_proj_weight_init: Callable | None = kw_only(None)
    in_proj_bias_init: Callable | None = kw_only(None)
    out_proj_weight_init: Callable | None = kw_only(None)
    bias_kv_init: Callable | None = kw_only(None)

    def __post_init__(self) -> None:
        if self.embed_dim <= 0 or self.num_heads <= 0:
            raise ValueError(
                f"MultiheadAttention: embed_dim and num_heads must be > 0, got embed_dim={self.embed_dim} "
                f"and num_heads={self.num_heads}"
            )
        if self.embed_dim % self.num_heads:
            raise ValueError(
                f"MultiheadAttention: embed_dim={self.embed_dim} must be divisible by num_heads={self.num_heads}"
            )
        if not 0.0 <= self.dropout <= 1.0:
            raise ValueError(f"MultiheadAttention: dropout must be in [0, 1], got {self.dropout}")
        for arg in ("kdim", "vdim"):  # torch's attributes: embed_dim when not given
            if getattr(self, arg) is None:
                set_field(self, arg, self.embed_dim)
        super().__post_init__()

    @property
    def _qkv_same_embed_dim(self) -> bool:
        return self.kdim == self.embed_dim and self.vdim == self.embed_dim

    @property
    def head_dim(self) -> int:
        return self.embed_dim // self.num_heads

    @fnn.compact
    def __call__(
        self,
        query: Any,
        key: Any,
        value: Any,
        key_padding_mask: Any = None,
        need_weights: bool = True,
        attn_mask: Any = None,
        average_attn_weights: bool = True,
        is_causal: bool = False,
        *,
        train: bool | None = None,
    ):
        train = require_train("MultiheadAttention", train)
        E, pd = self.embed_dim, self.param_dtype
        w_init = self.in_proj_weight_init or jinit.xavier_uniform()
        if self._qkv_same_embed_dim:
            in_w = param(self, "in_proj_weight", w_init, (3 * E, E), pd)
            qw = kw = vw = None
        else:
            in_w = None
            qw = param(self, "q_proj_weight", w_init, (E, E), pd)
            kw = param(self, "k_proj_weight", w_init, (E, self.kdim), pd)
            vw = param(self, "v_proj_weight", w_init, (E, self.vdim), pd)
        in_b = param(self, "in_proj_bias", self.in_proj_bias_init or jinit.zeros, (3 * E,), pd) if self.bias else None
        out_w, out_b = _OutProj(E, self.bias, pd, self.out_proj_weight_init, name="out_proj")()
        if self.add_bias_kv:
            kv_init = self.bias_kv_init or jinit.xavier_normal()
            bias_k = param(self, "bias_k", kv_init, (1, 1, E), pd)
            bias_v = param(self, "bias_v", kv_init, (1, 1, E), pd)
        else:
            bias_k = bias_v = None

        query, key, value = jnp.asarray(query), jnp.asarray(key), jnp.asarray(value)
        query, key, value, in_w, qw, kw, vw, in_b, out_w, out_b, bias_k, bias_v = promote_dtype(
            query, key, value, in_w, qw, kw, vw, in_b, out_w, out_b, bias_k, bias_v, dtype=self.dtype
        )
        batched = query.ndim == 3
        if self.batch_first and batched:
            if key.ndim != 3 or value.ndim != 3:
                raise ValueError(
                    f"MultiheadAttention: for batched (3-D) query of shape {tuple(query.shape)}, expected 3-D "
                    f"key and value, got shapes {tuple(key.shape)} and {tuple(value.shape)}"
                )
            query, key, value = (jnp.swapaxes(t, 0, 1) for t in (query, key, value))
        dropout_key = self.make_rng("dropout") if (train and self.dropout > 0.0) else None
        out, weights = multi_head_attention_forward(
            query, key, value, E, self.num_heads, in_w, in_b, bias_k, bias_v, self.add_zero_attn,
            self.dropout, out_w, out_b, training=train, key_padding_mask=key_padding_mask,
            need_weights=need_weights, attn_mask=attn_mask,
            use_separate_proj_weight=not self._qkv_same_embed_dim,
            q_proj_weight=qw, k_proj_weight=kw, v_proj_weight=vw,
            average_attn_weights=average_attn_weights, is_causal=is_causal,
            dropout_key=dropout_key, precision=self.precision, name="MultiheadAttention",
        )
        if self.batch_first and batched:
            out = jnp.swapaxes(out, 0, 1)
        return out, weights
