"""Fold an eval-mode BatchNorm into the preceding Conv/Linear (``torch.nn.utils.fusion``).

The functions work on variable dicts: ``conv_vars = {"params": {"weight", ["bias"]}}`` and
``bn_vars = {"params": {["weight", "bias"]}, "batch_stats": {"running_mean", "running_var", ...}}``
(the variables of a jaxlayers ``Conv*d``/``Linear`` and ``BatchNorm*d``, or
``interop.state_dict_to_variables`` of torch's).  The result is ``{"params": {"weight", "bias"}}``
for a layer *with* a bias (torch's fused module always has one): build the fused jaxlayers layer
with ``bias=True``.  BatchNorm's ``eps`` is not a variable, so it is an argument (default 1e-5).
"""

from __future__ import annotations

from typing import Any, Mapping

import jax
import jax.numpy as jnp

__all__ = ["fuse_conv_bn_eval", "fuse_conv_bn_weights", "fuse_linear_bn_eval", "fuse_linear_bn_weights"]


def _fusion_arrays(w, b, bn_rm, bn_rv, bn_w, bn_b) -> tuple:
    """The inputs of both fusions as torch prepares them: ``(w, b, running_mean, running_var, gamma,
    beta, w_dtype, b_dtype)``, a missing bias zeros, a missing BatchNorm weight/bias ones/zeros, and
    the fused dtypes those of the layer's weight and bias (the weight's when there is no bias)."""
    w, bn_rm, bn_rv = jnp.asarray(w), jnp.asarray(bn_rm), jnp.asarray(bn_rv)
    w_dtype = w.dtype
    b_dtype = jnp.asarray(b).dtype if b is not None else w_dtype
    b = jnp.zeros_like(bn_rm) if b is None else jnp.asarray(b)
    bn_w = jnp.ones_like(bn_rm) if bn_w is None else jnp.asarray(bn_w)
    bn_b = jnp.zeros_like(bn_rm) if bn_b is None else jnp.asarray(bn_b)
    return w, b, bn_rm, bn_rv, bn_w, bn_b, w_dtype, b_dtype


def fuse_conv_bn_weights(conv_w, conv_b, bn_rm, bn_rv, bn_eps, bn_w, bn_b, transpose: bool = False):
    """torch's ``fuse_conv_bn_weights``: ``(fused_weight, fused_bias)``.

    ``w' = w * (gamma / sqrt(var + eps))`` along the output channels (dim 0, dim 1 for a transposed
    conv), ``b' = (b - mean) * gamma / sqrt(var + eps) + beta``.
    """
    conv_w, conv_b, bn_rm, bn_rv, bn_w, bn_b, w_dtype, b_dtype = _fusion_arrays(conv_w, conv_b, bn_rm, bn_rv,
                                                                                 bn_w, bn_b)
    rsqrt = jax.lax.rsqrt(bn_rv + bn_eps)
    shape = ((1, -1) if transpose else (-1, 1)) + (1,) * (conv_w.ndim - 2)
    w = (conv_w * (bn_w * rsqrt).reshape(shape)).astype(w_dtype)
    b = ((conv_b - bn_rm) * rsqrt * bn_w + bn_b).astype(b_dtype)
    return w, b


def fuse_linear_bn_weights(linear_w, linear_b, bn_rm, bn_rv, bn_eps, bn_w, bn_b):
    """torch's ``fuse_linear_bn_weights``: ``w' = w * scale[:, None]``,
    ``b' = (b - mean) * scale + beta`` with ``scale = gamma / sqrt(var + eps)``."""
    linear_w, linear_b, bn_rm, bn_rv, bn_w, bn_b, w_dtype, b_dtype = _fusion_arrays(linear_w, linear_b, bn_rm,
                                                                                     bn_rv, bn_w, bn_b)
    scale = bn_w * jax.lax.rsqrt(bn_rv + bn_eps)
    w = linear_w * scale[:, None].astype(w_dtype)
    b = ((linear_b - bn_rm) * scale + bn_b).astype(b_dtype)
    return w, b


def _variables(fn: str, given: Any, what: str) -> Mapping:
    """A layer's variables: a variables dict, or a ``jaxlayers.nnx`` layer's (torch's call on modules)."""
    if isinstance(given, Mapping):
        return given
    if hasattr(given, "_variables_template"):
        if getattr(given, "training", False):  # torch: "Fusion only for eval!"
            raise ValueError(f"{fn}: fusion only for eval: call .eval() on the {what} first (its {type(given).__name__} "
                             "is in training mode)")
        return given._variables_template()
    raise TypeError(f"{fn}: expected the {what}'s variables ({{'params': ..., 'batch_stats': ...}}) or a "
                    f"jaxlayers.nnx layer, got {type(given).__name__}")


def _eps(bn: Any, eps: float | None) -> float:
    """The BatchNorm's eps: given, else the NNX layer's own (torch reads the module's), else torch's 1e-5."""
    if eps is not None:
        return eps
    return getattr(bn, "eps", 1e-5) if not isinstance(bn, Mapping) else 1e-5


def _bn(fn: str, bn_vars: Any) -> tuple:
    bn_vars = _variables(fn, bn_vars, "BatchNorm")
    stats = bn_vars.get("batch_stats", {})
    if "running_mean" not in stats or "running_var" not in stats:
        raise ValueError(f"{fn}: the BatchNorm variables have no running statistics (batch_stats running_mean/"
                         "running_var); fusion needs track_running_stats=True")
    params = bn_vars.get("params", {})
    return stats["running_mean"], stats["running_var"], params.get("weight"), params.get("bias")


def _layer(fn: str, vars_: Any, what: str) -> tuple:
    params = _variables(fn, vars_, what).get("params", {})
    if "weight" not in params:
        raise ValueError(f"{fn}: the {what} variables have no params 'weight'")
    return params["weight"], params.get("bias")


def fuse_conv_bn_eval(conv: Mapping, bn: Mapping, transpose: bool = False, *,
                      eps: float | None = None) -> dict:
    """Variables of one conv equal to ``conv -> BatchNorm`` in evaluation, as
    ``torch.nn.utils.fusion.fuse_conv_bn_eval`` (on variables, not modules).

    Args:
      conv: the conv's variables (``params`` ``weight`` and optional ``bias``), or a
        ``jaxlayers.nnx`` conv (torch's argument names).
      bn: the BatchNorm's variables (running statistics required), or a ``jaxlayers.nnx``
        BatchNorm.
      transpose: the conv is transposed (weight ``(in, out/groups, *k)``).
      eps: the BatchNorm's ``eps``; default: the NNX BatchNorm's own, or torch's 1e-5 for variables.

    Returns:
      ``{"params": {"weight": ..., "bias": ...}}`` for the same conv with ``bias=True``.

    Example:
      >>> import jax.numpy as jnp
      >>> conv = {"params": {"weight": jnp.ones((2, 1, 1, 1))}}
      >>> bn = {"batch_stats": {"running_mean": jnp.ones(2), "running_var": jnp.full(2, 4.0)}}
      >>> fused = fuse_conv_bn_eval(conv, bn, eps=0.0)
      >>> fused["params"]["weight"].ravel().tolist(), fused["params"]["bias"].tolist()
      ([0.5, 0.5], [-0.5, -0.5])
    """
    fn = "fuse_conv_bn_eval"
    w, b = _layer(fn, conv, "conv")
    rm, rv, g, beta = _bn(fn, bn)
    out_ch = jnp.shape(w)[1 if transpose else 0]
    if jnp.shape(rm)[0] != out_ch:
        raise ValueError(f"{fn}: the conv weight's output-channel dim ({1 if transpose else 0}) has {out_ch} "
                         f"entries but the BatchNorm has {jnp.shape(rm)[0]} features (weight {tuple(jnp.shape(w))}, "
                         f"transpose={transpose}; a grouped transposed conv cannot be fused, as in torch)")
    w, b = fuse_conv_bn_weights(w, b, rm, rv, _eps(bn, eps), g, beta, transpose)
    return {"params": {"weight": w, "bias": b}}


def fuse_linear_bn_eval(linear: Mapping, bn: Mapping, *, eps: float | None = None) -> dict:
    """Variables of one Linear equal to ``Linear -> BatchNorm1d`` in evaluation, as
    ``torch.nn.utils.fusion.fuse_linear_bn_eval``.

    The BatchNorm must have ``out_features`` features, or 1 (broadcast), as torch requires.  Variables
    or ``jaxlayers.nnx`` layers, ``eps`` as :func:`fuse_conv_bn_eval`.  Returns ``{"params": {"weight": (out, in), "bias": (out,)}}``.
    """
    fn = "fuse_linear_bn_eval"
    w, b = _layer(fn, linear, "Linear")
    rm, rv, g, beta = _bn(fn, bn)
    out, nf = jnp.shape(w)[0], jnp.shape(rm)[0]
    if not (nf == out or nf == 1):
        raise ValueError(f"{fn}: to fuse, the Linear's out_features ({out}) must equal the BatchNorm's "
                         f"num_features ({nf}), or the BatchNorm must have 1 feature")
    w, b = fuse_linear_bn_weights(w, b, rm, rv, _eps(bn, eps), g, beta)
    return {"params": {"weight": w, "bias": b}}
