"""Scaled dot-product and multi-head attention, as ``torch.nn.functional``.

Masks follow torch:

* ``scaled_dot_product_attention``: a bool ``attn_mask`` is ``True`` where a
  query **may** attend (torch's SDPA convention); a float mask is added to the
  scores.
* ``multi_head_attention_forward`` (and ``nn.MultiheadAttention``): a bool
  ``attn_mask``/``key_padding_mask`` is ``True`` where attention is **not
  allowed** (torch's MHA convention); a float mask is added to the scores.

Rows whose every score is ``-inf`` (a query that may attend to nothing) give
what torch gives on CPU: zeros from ``scaled_dot_product_attention`` and from
``multi_head_attention_forward(..., need_weights=False)``, NaN from
``multi_head_attention_forward(..., need_weights=True)`` (torch's explicit
softmax path).  Gradients through such rows are zero in the SDPA case.

Randomness: torch's ``key`` is the key *tensor*, so the PRNG key for dropout
is the keyword-only ``dropout_key``.
"""

from __future__ import annotations

import math
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from .._utils import dense_sharding, one_program, shape_str

__all__ = ["scaled_dot_product_attention", "multi_head_attention_forward"]


# ----------------------------------------------------------------------------- helpers


def _dropout(x: jax.Array, p: float, key: Any, layer: str) -> jax.Array:
    """Inverted dropout on attention weights (private; torch's ``F.dropout``)."""
    if p <= 0.0:
        return x
    if key is None:
        raise ValueError(
            f"{layer}: dropout_p={p} needs a PRNG key: pass dropout_key=jax.random.key(...) "
            "(modules take it from the 'dropout' rng stream)"
        )
    if p >= 1.0:
        return jnp.zeros_like(x)
    keep = jax.random.bernoulli(key, 1.0 - p, x.shape)
    return jnp.where(keep, x / (1.0 - p), jnp.zeros((), x.dtype))


def _check_p(p: Any, layer: str) -> float:
    if not 0.0 <= float(p) <= 1.0:
        raise ValueError(f"{layer}: dropout_p must be in [0, 1], got {p}")
    return float(p)


def _mask_to_bias(mask: Any, mask_name: str, dtype: Any, layer: str, *, true_means_masked: bool) -> jax.Array | None:
    """torch's ``_canonical_mask``: a bool mask becomes 0 / -inf, a float mask is kept."""
    if mask is None:
        return None
    mask = jnp.asarray(mask)
    if mask.dtype == jnp.bool_:
        blocked = mask if true_means_masked else jnp.logical_not(mask)
        return jnp.where(blocked, jnp.asarray(-jnp.inf, dtype), jnp.asarray(0.0, dtype))
    if not jnp.issubdtype(mask.dtype, jnp.floating):
        raise TypeError(f"{layer}: only bool and floating types of {mask_name} are supported, got {mask.dtype}")
    return mask.astype(dtype)


def _softmax(scores: jax.Array, safe: bool) -> jax.Array:
    """Softmax over the last axis; ``safe`` gives zeros (and zero gradients) for
    rows that are entirely ``-inf``, as torch's SDPA does, instead of NaN."""
    if not safe:
        return jax.nn.softmax(scores, axis=-1)
    dead = jnp.all(scores == -jnp.inf, axis=-1, keepdims=True)
    w = jax.nn.softmax(jnp.where(dead, jnp.zeros((), scores.dtype), scores), axis=-1)
    return jnp.where(dead, jnp.zeros((), w.dtype), w)


def _causal_bias(L: int, S: int, dtype: Any) -> jax.Array:
    """torch's ``is_causal``: top-left aligned ``tril(ones(L, S))``, from iotas (an ``(L, S)``
    constant in the program would grow it with the sequence: 8 MB at 2048)."""
    allowed = lax.broadcasted_iota(jnp.int32, (L, S), 1) <= lax.broadcasted_iota(jnp.int32, (L, S), 0)
    return jnp.where(allowed, jnp.asarray(0.0, dtype), jnp.asarray(-jnp.inf, dtype))


def _attend(q, k, v, bias, *, scale, dropout_p, dropout_key, safe, precision, layer):
    """``softmax(q k^T * scale + bias) v`` over the last two axes; returns (out, weights).

    Products accumulate, and the softmax runs, in at least float32, rounded to the inputs' dtype
    at the end, as torch's CPU kernels (in bfloat16 the scores, softmax and weights rounded at
    every step were 2-4x further from float64 than torch)."""
    dtype = jnp.result_type(q, k, v)
    acc = jnp.promote_types(dtype, jnp.float32)
    scores = jnp.einsum("...ld,...sd->...ls", q, k, precision=precision, preferred_element_type=acc)
    scores = scores * jnp.asarray(scale, acc)
    if bias is not None:
        scores = scores + bias.astype(acc)
    w = _softmax(scores, safe)
    w = _dropout(w, dropout_p, dropout_key, layer)
    out = jnp.einsum("...ls,...sd->...ld", w, v.astype(acc), precision=precision)
    return out.astype(dtype), w.astype(dtype)


def _broadcastable(shape: tuple, target: tuple) -> bool:
    try:
        return tuple(np.broadcast_shapes(tuple(shape), tuple(target))) == tuple(target)
    except ValueError:
        return False


# ----------------------------------------------------------------------------- SDPA


@one_program  # its checks read only shapes, dtypes and options: they run while tracing
def scaled_dot_product_attention(
    query: Any,
    key: Any,
    value: Any,
    attn_mask: Any = None,
    dropout_p: float = 0.0,
    is_causal: bool = False,
    scale: float | None = None,
    enable_gqa: bool = False,
    *,
    dropout_key: Any = None,
    precision: Any = None,
) -> jax.Array:
    r"""Scaled dot-product attention, as ``torch.nn.functional.scaled_dot_product_attention``.

    .. math:: \mathrm{softmax}(Q K^\top \cdot \mathrm{scale} + \mathrm{bias})\, V

    Args:
      query: ``(..., Hq, L, E)``.
      key: ``(..., H, S, E)``.
      value: ``(..., H, S, Ev)``; query, key and value must share one dtype (as torch:
        a ``TypeError`` otherwise).
      attn_mask: at least 2-D, broadcastable to ``(..., Hq, L, S)``. bool: ``True`` = may
        attend (the opposite of ``MultiheadAttention``'s masks); float: added to the scores,
        float32 or the query's dtype (as torch; other dtypes raise ``TypeError``).
      dropout_p: dropout on the attention weights, always applied when > 0 (as torch:
        pass 0.0 in evaluation).
      is_causal: apply ``tril(ones(L, S))`` (top-left aligned); with ``attn_mask`` too,
        both apply (bool: mask AND tril; float: mask plus ``-inf`` above the diagonal), as
        torch's default CPU kernel.
      scale: defaults to ``1/sqrt(E)`` (with ``E == 0`` the scores are 0, as torch).
      enable_gqa: grouped-query attention: ``H`` divides ``Hq`` and each key/value
        head serves ``Hq/H`` query heads (torch's ``repeat_interleave``).
      dropout_key: PRNG key for dropout (keyword-only; torch's ``key`` is the key tensor).
      precision: ``jax.lax.Precision`` for the two matmuls.

    Shape: output ``(..., Hq, L, Ev)``. Query rows with no allowed key give zeros.

    Example:
      >>> import jax.numpy as jnp
      >>> from jaxlayers import functional as F
      >>> q = k = jnp.ones((1, 2, 3, 4))                            # (N, H, L, E): equal scores
      >>> v = jnp.broadcast_to(jnp.arange(3.0)[:, None], (1, 2, 3, 4))  # key s has value s
      >>> y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
      >>> y.shape, [round(t, 4) for t in y[0, 0, :, 0].tolist()]   # mean over keys 0..l
      ((1, 2, 3, 4), [0.0, 0.5, 1.0])
    """
    layer = "scaled_dot_product_attention"
    query, key, value = jnp.asarray(query), jnp.asarray(key), jnp.asarray(value)
    for nm, t in (("query", query), ("key", key), ("value", value)):
        if t.ndim < 2:
            raise ValueError(f"{layer}: expected {nm} with at least 2 dims (..., L, E), got shape {shape_str(t)}")
    if query.shape[-1] != key.shape[-1]:
        raise ValueError(
            f"{layer}: query and key must have the same embedding size (last dim), got query "
            f"{shape_str(query)} and key {shape_str(key)}"
        )
    if key.shape[-2] != value.shape[-2]:
        raise ValueError(
            f"{layer}: key and value must have the same sequence length (dim -2), got key "
            f"{shape_str(key)} and value {shape_str(value)}"
        )
    if not query.dtype == key.dtype == value.dtype:
        raise TypeError(
            f"{layer}: expected query, key and value to have the same dtype (as torch), got query "
            f"{query.dtype}, key {key.dtype} and value {value.dtype}"
        )
    if attn_mask is not None:
        attn_mask = jnp.asarray(attn_mask)
        if attn_mask.ndim < 2:
            raise ValueError(
                f"{layer}: attn_mask must have at least 2 dims (..., L, S) (as torch), got shape "
                f"{shape_str(attn_mask)} for query {shape_str(query)} and key {shape_str(key)}"
            )
        # torch: bool, float32 or the query's dtype
        if attn_mask.dtype not in (jnp.dtype(jnp.bool_), jnp.dtype(jnp.float32), query.dtype):
            raise TypeError(
                f"{layer}: attn_mask must be bool, float32 or the query's dtype (as torch), got attn_mask "
                f"{attn_mask.dtype} with query {query.dtype}"
            )
    dropout_p = _check_p(dropout_p, layer)
    if enable_gqa and min(query.ndim, key.ndim, value.ndim) < 3:
        raise ValueError(f"{layer}: enable_gqa needs a heads dim (-3) in query, key and value, got query "
                         f"{shape_str(query)}, key {shape_str(key)} and value {shape_str(value)}")
    if enable_gqa:
        hq, hk, hv = query.shape[-3], key.shape[-3], value.shape[-3]
        if hq % hk or hq % hv:
            raise ValueError(
                f"{layer}: enable_gqa needs the number of query heads ({hq}) to be a multiple of the "
                f"key heads ({hk}) and value heads ({hv})"
            )
        key = jnp.repeat(key, hq // hk, axis=-3)
        value = jnp.repeat(value, hq // hv, axis=-3)
    L, S, E = query.shape[-2], key.shape[-2], query.shape[-1]
    try:
        batch = np.broadcast_shapes(query.shape[:-2], key.shape[:-2], value.shape[:-2])
    except ValueError:
        raise ValueError(
            f"{layer}: the batch dims of query {shape_str(query)}, key {shape_str(key)} and value "
            f"{shape_str(value)} do not broadcast"
        ) from None
    dtype = jnp.promote_types(query.dtype, jnp.float32)  # the scores' dtype: a float32 mask is not rounded to half
    bias = _mask_to_bias(attn_mask, "attn_mask", dtype, layer, true_means_masked=False)
    if bias is not None and not _broadcastable(bias.shape, tuple(batch) + (L, S)):
        raise ValueError(
            f"{layer}: attn_mask of shape {shape_str(bias)} does not broadcast to the attention "
            f"scores' shape {shape_str(tuple(batch) + (L, S))} (..., L, S)"
        )
    if is_causal:  # with attn_mask too: both apply, as torch's default CPU kernel
        causal = _causal_bias(L, S, dtype)
        bias = causal if bias is None else bias + causal
    if E == 0:
        scale = 1.0  # empty dot products are 0 whatever the scale (torch scales q and k before them)
    else:
        scale = 1.0 / math.sqrt(E) if scale is None else float(scale)
    out, _ = _attend(query, key, value, bias, scale=scale, dropout_p=dropout_p, dropout_key=dropout_key,
                     safe=True, precision=precision, layer=layer)
    return out


# ----------------------------------------------------------------------------- MHA


def _linear(x, w, b, precision):
    y = jnp.einsum("...i,oi->...o", x, w, precision=precision, out_sharding=dense_sharding(x, w))
    return y if b is None else y + b


@one_program  # its checks read only shapes, dtypes and options: they run while tracing
def multi_head_attention_forward(
    query: Any,
    key: Any,
    value: Any,
    embed_dim_to_check: int,
    num_heads: int,
    in_proj_weight: Any,
    in_proj_bias: Any,
    bias_k: Any,
    bias_v: Any,
    add_zero_attn: bool,
    dropout_p: float,
    out_proj_weight: Any,
    out_proj_bias: Any,
    training: bool = True,
    key_padding_mask: Any = None,
    need_weights: bool = True,
    attn_mask: Any = None,
    use_separate_proj_weight: bool = False,
    q_proj_weight: Any = None,
    k_proj_weight: Any = None,
    v_proj_weight: Any = None,
    static_k: Any = None,
    static_v: Any = None,
    average_attn_weights: bool = True,
    is_causal: bool = False,
    *,
    dropout_key: Any = None,
    precision: Any = None,
    name: str = "multi_head_attention_forward",
) -> tuple[jax.Array, jax.Array | None]:
    r"""Multi-head attention, as ``torch.nn.functional.multi_head_attention_forward``.

    Sequence-first layout as torch's function (``nn.MultiheadAttention`` handles
    ``batch_first``).  Bool masks: ``True`` = not allowed; float masks are added.

    Args:
      query: ``(L, N, E)`` or unbatched ``(L, E)``.
      key: ``(S, N, Ek)`` or ``(S, Ek)``; value: ``(S, N, Ev)`` or ``(S, Ev)``.
      embed_dim_to_check: ``E``; num_heads: ``H`` (must divide ``E``).
      in_proj_weight: ``(3E, E)`` packed q/k/v weight (unless ``use_separate_proj_weight``).
      in_proj_bias: ``(3E,)`` or None.  bias_k, bias_v: ``(1, 1, E)``, ``(1, E)`` or ``(E,)``, or None.
      add_zero_attn: append a zero key/value position.
      dropout_p: attention-weight dropout, applied only when ``training``.
      out_proj_weight: ``(E, E)``; out_proj_bias: ``(E,)`` or None.
      key_padding_mask: ``(N, S)`` (``(S,)`` unbatched), bool or float; with ``static_k``,
        ``(N, S')`` over the static keys (as torch).
      need_weights: also return the attention weights (and use torch's explicit
        softmax path: fully-masked rows give NaN, as in torch).
      attn_mask: ``(L, S)`` or ``(N*H, L, S)``, bool or float.
      q_proj_weight, k_proj_weight, v_proj_weight: ``(E, E)``, ``(E, Ek)``, ``(E, Ev)``.
      static_k, static_v: ``(N*H, S', E/H)`` replacing the projected key/value (``attn_mask``
        stays ``(L, S)``-sized, as torch, so it only fits when ``S' == S``).
      average_attn_weights: average the returned weights over heads.
      is_causal: torch's hint: requires ``attn_mask``; when there is no
        ``key_padding_mask`` and ``need_weights=False`` a causal mask replaces
        ``attn_mask`` (as torch does), otherwise ``attn_mask`` is used as given.
      dropout_key: PRNG key for dropout (keyword-only).
      name: layer name used in error messages.

    Shape: ``attn_output`` ``(L, N, E)`` (``(L, E)`` unbatched); ``attn_weights``
    ``(N, L, S)`` averaged or ``(N, H, L, S)`` per head (batch dim dropped when
    unbatched), with ``S`` counting ``bias_k`` and the zero-attention position.

    Example:
      >>> import jax.numpy as jnp
      >>> from jaxlayers import functional as F
      >>> E, H, x = 8, 2, jnp.ones((5, 1, 8))                       # (L, N, E)
      >>> out, w = F.multi_head_attention_forward(
      ...     x, x, x, E, H, jnp.ones((3 * E, E)), None, None, None, False, 0.0,
      ...     jnp.eye(E), None, training=False)
      >>> out.shape, w.shape
      ((5, 1, 8), (1, 5, 5))
    """
    layer = name
    query, key, value = jnp.asarray(query), jnp.asarray(key), jnp.asarray(value)
    H = int(num_heads)
    if H <= 0:
        raise ValueError(f"{layer}: num_heads must be > 0, got {num_heads}")

    # ---- ranks (torch's _mha_shape_check)
    if query.ndim not in (2, 3):
        raise ValueError(
            f"{layer}: expected query of shape (L, N, E) or unbatched (L, E), got {query.ndim}-D query "
            f"of shape {shape_str(query)}"
        )
    batched = query.ndim == 3
    kind, kpm_rank, kpm_dims = ("batched (3-D)", 2, "(N, S)") if batched else ("unbatched (2-D)", 1, "(S,)")
    if key.ndim != query.ndim or value.ndim != query.ndim:
        raise ValueError(
            f"{layer}: for {kind} query {shape_str(query)}, expected {query.ndim}-D key and value, got "
            f"key {shape_str(key)} and value {shape_str(value)}"
        )
    if key_padding_mask is not None and jnp.ndim(key_padding_mask) != kpm_rank:
        raise ValueError(
            f"{layer}: for {kind} query, key_padding_mask must be {kpm_rank}-D {kpm_dims}, got shape "
            f"{shape_str(jnp.shape(key_padding_mask))}"
        )
    if attn_mask is not None and jnp.ndim(attn_mask) not in (2, 3):
        raise ValueError(
            f"{layer}: attn_mask must be 2-D (L, S) or 3-D (N*num_heads, L, S), got shape "
            f"{shape_str(jnp.shape(attn_mask))}"
        )
    if not batched:
        query, key, value = query[:, None], key[:, None], value[:, None]
        if key_padding_mask is not None:
            key_padding_mask = jnp.asarray(key_padding_mask)[None]

    L, N, E = query.shape
    S = key.shape[0]
    if E != embed_dim_to_check:
        raise ValueError(f"{layer}: expected query with embedding dim {embed_dim_to_check} (embed_dim), got shape {shape_str(query)}")
    D = E // H
    if D * H != E:
        raise ValueError(f"{layer}: embed_dim {E} is not divisible by num_heads {H}")
    if key.shape[1] != N or value.shape[1] != N:
        raise ValueError(
            f"{layer}: query, key and value must share the batch size N, got query {shape_str(query)}, "
            f"key {shape_str(key)}, value {shape_str(value)} (sequence-first (L, N, E))"
        )
    if use_separate_proj_weight:
        if key.shape[0] != value.shape[0]:
            raise ValueError(
                f"{layer}: key and value must have the same sequence length, got key {shape_str(key)} "
                f"and value {shape_str(value)}"
            )
        for nm, w, x, want in (("q_proj_weight", q_proj_weight, query, "embed_dim"),
                               ("k_proj_weight", k_proj_weight, key, "kdim"),
                               ("v_proj_weight", v_proj_weight, value, "vdim")):
            if w is None:
                raise ValueError(f"{layer}: use_separate_proj_weight=True but {nm} is None")
            if tuple(jnp.shape(w)) != (E, x.shape[-1]):
                raise ValueError(
                    f"{layer}: {nm} of shape {shape_str(jnp.shape(w))} does not fit: expected "
                    f"{shape_str((E, x.shape[-1]))} (embed_dim, {want}) for input of shape {shape_str(x)}"
                )
    else:
        if key.shape != value.shape or key.shape[-1] != E:
            raise ValueError(
                f"{layer}: key and value must both have shape (S, N, embed_dim={E}) when kdim = vdim = "
                f"embed_dim, got key {shape_str(key)} and value {shape_str(value)}"
            )
        if in_proj_weight is None or tuple(jnp.shape(in_proj_weight)) != (3 * E, E):
            raise ValueError(
                f"{layer}: in_proj_weight must have shape {shape_str((3 * E, E))}, got "
                f"{None if in_proj_weight is None else shape_str(jnp.shape(in_proj_weight))}"
            )
    if (bias_k is None) != (bias_v is None):
        raise ValueError(f"{layer}: bias_k and bias_v must both be given or both be None")
    dropout_p = _check_p(dropout_p, layer)

    dtype = jnp.promote_types(query.dtype, jnp.float32)  # the scores' dtype: a float32 mask is not rounded to half
    kpm = _mask_to_bias(key_padding_mask, "key_padding_mask", dtype, layer, true_means_masked=True)
    if is_causal and attn_mask is None:
        raise ValueError(
            f"{layer}: is_causal=True is a hint that needs attn_mask as well (as torch); build one "
            "with Transformer.generate_square_subsequent_mask(L)"
        )
    causal_only = bool(is_causal) and kpm is None and not need_weights
    am = _mask_to_bias(attn_mask, "attn_mask", dtype, layer, true_means_masked=True)  # checks its dtype
    am = None if causal_only else am
    if attn_mask is not None:  # shape is checked even when the causal hint replaces it
        shp = tuple(jnp.shape(attn_mask))
        want = (L, S) if len(shp) == 2 else (N * H, L, S)
        if shp != want:
            kind = "2-D (L, S)" if len(shp) == 2 else "3-D (N*num_heads, L, S)"
            raise ValueError(
                f"{layer}: attn_mask has shape {shape_str(shp)} but a {kind} mask must have shape "
                f"{shape_str(want)} for query {shape_str(query if batched else query[:, 0])}, key "
                f"{shape_str(key if batched else key[:, 0])}, num_heads={H}"
            )
    # torch checks key_padding_mask against the keys actually attended: static_k's length when given
    # (attn_mask, checked above, stays tied to the key input's length S, as torch)
    S_kpm = S if static_k is None or jnp.ndim(static_k) != 3 else jnp.shape(static_k)[1]
    if kpm is not None and tuple(kpm.shape) != (N, S_kpm):
        want = (N, S_kpm) if batched else (S_kpm,)
        of = (f"static_k of shape {shape_str(jnp.shape(static_k))}" if static_k is not None else
              f"key of shape {shape_str(key if batched else key[:, 0])}")
        raise ValueError(
            f"{layer}: key_padding_mask has shape {shape_str(kpm.shape if batched else kpm.shape[1:])} "
            f"but must have shape {shape_str(want)} ({'N, S' if batched else 'S'}) for {of}"
        )

    # ---- input projections
    if use_separate_proj_weight:
        if in_proj_bias is None:
            bq = bk = bv = None
        else:
            bq, bk, bv = jnp.split(jnp.asarray(in_proj_bias), 3)
        wq, wk, wv = q_proj_weight, k_proj_weight, v_proj_weight
    else:
        wq, wk, wv = jnp.split(jnp.asarray(in_proj_weight), 3)
        bq = bk = bv = None
        if in_proj_bias is not None:
            bq, bk, bv = jnp.split(jnp.asarray(in_proj_bias), 3)
    q = _linear(query, wq, bq, precision)
    k = _linear(key, wk, bk, precision)
    v = _linear(value, wv, bv, precision)

    # ---- extra key/value positions
    def pad_last(m):
        return None if m is None else jnp.pad(m, [(0, 0)] * (m.ndim - 1) + [(0, 1)])

    if bias_k is not None:
        if static_k is not None or static_v is not None:
            raise ValueError(f"{layer}: bias_k/bias_v cannot be added to static_k/static_v")
        for nm, b in (("bias_k", bias_k), ("bias_v", bias_v)):
            # torch's bias.repeat(1, N, 1) takes (1, 1, E), (1, E) and (E,)
            if tuple(jnp.shape(b)) not in ((1, 1, E), (1, E), (E,)):
                raise ValueError(f"{layer}: {nm} must have shape {shape_str((1, 1, E))}, {shape_str((1, E))} or "
                                 f"{shape_str((E,))}, got {shape_str(jnp.shape(b))}")
        k = jnp.concatenate([k, jnp.broadcast_to(jnp.asarray(bias_k, k.dtype).reshape(1, 1, E), (1, N, E))], axis=0)
        v = jnp.concatenate([v, jnp.broadcast_to(jnp.asarray(bias_v, v.dtype).reshape(1, 1, E), (1, N, E))], axis=0)
        am, kpm = pad_last(am), pad_last(kpm)

    # (S, N, E) -> (N, H, S, D), the order of torch's view(S, N*H, D).transpose(0, 1)
    def heads(t):
        return t.reshape(t.shape[0], N, H, D).transpose(1, 2, 0, 3)

    q = heads(q)
    k, v = heads(k), heads(v)
    for nm, st, cur in (("static_k", static_k, "k"), ("static_v", static_v, "v")):
        if st is not None:
            st = jnp.asarray(st)
            if st.ndim != 3 or st.shape[0] != N * H or st.shape[2] != D:
                raise ValueError(
                    f"{layer}: {nm} must have shape (N*num_heads={N * H}, S, head_dim={D}), got {shape_str(st)}"
                )
            if cur == "k":
                k = st.reshape(N, H, st.shape[1], D)
            else:
                v = st.reshape(N, H, st.shape[1], D)
    if k.shape[2] != v.shape[2]:
        raise ValueError(f"{layer}: static key and value lengths differ: {k.shape[2]} vs {v.shape[2]}")
    if add_zero_attn:
        k = jnp.concatenate([k, jnp.zeros((N, H, 1, D), k.dtype)], axis=2)
        v = jnp.concatenate([v, jnp.zeros((N, H, 1, D), v.dtype)], axis=2)
        am, kpm = pad_last(am), pad_last(kpm)
    S2 = k.shape[2]
    if am is not None and am.shape[-1] != S2:
        raise ValueError(
            f"{layer}: attn_mask covers the key input's {S} positions but static_k/static_v have "
            f"{S2 - bool(add_zero_attn)}: with static keys of another length give no attn_mask (torch fails too)"
        )

    # ---- merged additive bias (N or 1, H or 1, L, S2)
    bias = None
    if am is not None:
        bias = am[None, None] if am.ndim == 2 else am.reshape(N, H, L, S2)
    if kpm is not None:
        kb = kpm[:, None, None, :]
        bias = kb if bias is None else bias + kb
    if causal_only:
        bias = _causal_bias(L, S2, dtype)

    p = dropout_p if training else 0.0
    if need_weights:
        out, w = _attend(q, k, v, bias, scale=math.sqrt(1.0 / D), dropout_p=p, dropout_key=dropout_key,
                         safe=False, precision=precision, layer=layer)
    else:
        out, w = _attend(q, k, v, bias, scale=1.0 / math.sqrt(D), dropout_p=p, dropout_key=dropout_key,
                         safe=True, precision=precision, layer=layer)
        w = None
    out = out.transpose(2, 0, 1, 3).reshape(L, N, E)
    out = _linear(out, out_proj_weight, out_proj_bias, precision)
    if w is not None and average_attn_weights:
        w = w.mean(axis=1)
    if not batched:
        out = out[:, 0]
        if w is not None:
            w = w[0]
    return out, w
