"""Adaptive softmax (Grave et al. 2016), the maths of ``torch.nn.AdaptiveLogSoftmaxWithLoss``.

Classes ``[0, cutoffs[0])`` form the shortlist, scored by the head together with one logit per
tail cluster; cluster ``i`` holds classes ``[cutoffs[i], cutoffs[i + 1])`` (the last ends at
``n_classes``) and is scored by a two-matrix projection ``x @ proj.T @ out.T``.
``log p(y) = head_logprob[y]`` in the shortlist, else
``head_logprob[shortlist + i] + cluster_logprob_i[y - cutoffs[i]]``.

Every cluster is evaluated on every row (static shapes; torch gathers each cluster's rows), and
the rows are then selected, so values and gradients equal torch's.
"""

from __future__ import annotations

from typing import Any, NamedTuple, Sequence

import jax
import jax.numpy as jnp

from .._utils import index_dtype, shape_str, take_along
from .activation import log_softmax
from .linear import _linear
from .loss import _check_index_target

__all__ = ["ASMoutput", "adaptive_log_softmax_with_loss", "adaptive_log_prob", "adaptive_predict"]


class ASMoutput(NamedTuple):
    """torch's ``_ASMoutput``: ``output`` (log-probability of each target) and ``loss`` (mean NLL)."""

    output: jax.Array
    loss: jax.Array


def _parse(name: str, input: Any, head_weight: Any, tail_weights: Sequence, cutoffs: Sequence[int],
           head_bias: Any) -> tuple:
    """``(x, batched, head_w, head_b, tails, bounds)`` with ``bounds = [0, *cutoffs, n_classes]``."""
    x = jnp.asarray(input)
    if x.ndim not in (1, 2):
        raise ValueError(f"{name}: expected input of shape (N, in_features) or (in_features,), got {shape_str(x)}")
    cutoffs = [int(c) for c in cutoffs]
    if len(cutoffs) != len(tail_weights):
        raise ValueError(f"{name}: {len(cutoffs)} cutoffs need {len(cutoffs)} tail projections, got {len(tail_weights)}")
    head_w = jnp.asarray(head_weight)
    if head_w.shape[0] != cutoffs[0] + len(cutoffs):
        raise ValueError(f"{name}: head weight of shape {shape_str(head_w)} should have cutoffs[0] + n_clusters = "
                         f"{cutoffs[0] + len(cutoffs)} rows")
    tails = [(jnp.asarray(p), jnp.asarray(o)) for p, o in tail_weights]
    bounds = [0] + cutoffs + [cutoffs[-1] + tails[-1][1].shape[0]]
    for i, (p, o) in enumerate(tails):
        if o.shape[0] != bounds[i + 2] - bounds[i + 1]:
            raise ValueError(f"{name}: tail {i} output weight of shape {shape_str(o)} should have "
                             f"{bounds[i + 2] - bounds[i + 1]} rows (classes {bounds[i + 1]}..{bounds[i + 2] - 1})")
    batched = x.ndim == 2
    return (x if batched else x[None]), batched, head_w, head_bias, tails, bounds


def _head_and_tails(x: jax.Array, head_w: jax.Array, head_b: Any, tails: list, name: str) -> tuple:
    # log_softmax computes half precision in float32 and rounds once, as torch's does
    head_lp = log_softmax(_linear(x, head_w, head_b, name=name), dim=1)
    tail_lps = [log_softmax(_linear(_linear(x, p, name=name), o, name=name), dim=1) for p, o in tails]
    return head_lp, tail_lps


def adaptive_log_softmax_with_loss(input: Any, target: Any, head_weight: Any, tail_weights: Sequence,
                                   cutoffs: Sequence[int], head_bias: Any = None, *,
                                   name: str = "adaptive_log_softmax_with_loss") -> ASMoutput:
    """Log-probability of each target and the mean NLL, as ``AdaptiveLogSoftmaxWithLoss.forward``.

    Args:
        input: ``(N, in_features)`` or ``(in_features,)``.
        target: integer ``(N,)`` or ``()`` in ``[0, n_classes)``.
        head_weight: ``(cutoffs[0] + n_clusters, in_features)``; head_bias: its bias or None.
        tail_weights: per cluster ``(proj_weight (hsz, in_features), out_weight (osz, hsz))``.
        cutoffs: torch's constructor cutoffs (without ``n_classes``).
        name: the layer named in errors.

    Shape: ``output`` ``(N,)`` (``()`` unbatched), ``loss`` scalar.  Out-of-range targets raise an
    IndexError when concrete; under ``jit`` their output (and the loss) is NaN.

    Example:
        >>> import jax.numpy as jnp
        >>> from jaxlayers import functional as F
        >>> x, hw = jnp.ones((2, 4)), jnp.zeros((3, 4))
        >>> tails = [(jnp.zeros((2, 4)), jnp.zeros((3, 2)))]
        >>> out = F.adaptive_log_softmax_with_loss(x, jnp.array([0, 4]), hw, tails, [2])
        >>> print(out.output.shape, round(float(out.loss), 4))
        (2,) 1.6479
    """
    x, batched, head_w, head_b, tails, bounds = _parse(name, input, head_weight, tail_weights, cutoffs, head_bias)
    t = jnp.asarray(target)
    if t.shape != x.shape[:1] if batched else t.shape != ():
        raise ValueError(f"{name}: expected target of shape {shape_str(x.shape[:1]) if batched else '()'} for input "
                         f"of shape {shape_str(input)}, got {shape_str(t)}")
    _check_index_target(name, t, bounds[-1])
    t = t.reshape(-1)
    head_lp, tail_lps = _head_and_tails(x, head_w, head_b, tails, name)
    shortlist = bounds[1]
    cluster = jnp.sum(jnp.stack([t >= b for b in bounds[1:-1]]), axis=0)  # 0: shortlist, i: tail i - 1
    head_index = jnp.where(cluster == 0, t, shortlist + cluster - 1)
    output = take_along(head_lp, jnp.clip(head_index, 0, head_lp.shape[1] - 1)[:, None], 1)[:, 0]
    for i, lp in enumerate(tail_lps):
        local = jnp.clip(t - bounds[i + 1], 0, lp.shape[1] - 1)
        output = output + jnp.where(cluster == i + 1, take_along(lp, local[:, None], 1)[:, 0], 0.0)
    output = jnp.where((t >= 0) & (t < bounds[-1]), output, jnp.nan)
    loss = jnp.mean(-output)
    return ASMoutput(output if batched else output[0], loss)


def adaptive_log_prob(input: Any, head_weight: Any, tail_weights: Sequence, cutoffs: Sequence[int],
                      head_bias: Any = None, *, name: str = "adaptive_log_prob") -> jax.Array:
    """Log-probabilities of every class, as ``AdaptiveLogSoftmaxWithLoss.log_prob``.

    Args: as :func:`adaptive_log_softmax_with_loss` without ``target``.

    Shape: ``(N, in_features) -> (N, n_classes)``; ``(in_features,) -> (n_classes,)``.

    Example:
        >>> import jax.numpy as jnp
        >>> from jaxlayers import functional as F
        >>> lp = F.adaptive_log_prob(jnp.ones((2, 4)), jnp.zeros((3, 4)), [(jnp.zeros((2, 4)), jnp.zeros((3, 2)))], [2])
        >>> print(lp.shape, round(float(jnp.exp(lp).sum(1)[0]), 4))
        (2, 5) 1.0
    """
    x, batched, head_w, head_b, tails, bounds = _parse(name, input, head_weight, tail_weights, cutoffs, head_bias)
    head_lp, tail_lps = _head_and_tails(x, head_w, head_b, tails, name)
    shortlist = bounds[1]
    parts = [head_lp[:, :shortlist]] + [lp + head_lp[:, shortlist + i, None] for i, lp in enumerate(tail_lps)]
    out = jnp.concatenate(parts, axis=1)
    return out if batched else out[0]


def adaptive_predict(input: Any, head_weight: Any, tail_weights: Sequence, cutoffs: Sequence[int],
                     head_bias: Any = None, *, name: str = "adaptive_predict") -> jax.Array:
    """The most likely class, as ``AdaptiveLogSoftmaxWithLoss.predict`` (argmax of :func:`adaptive_log_prob`).

    Shape: ``(N, in_features) -> (N,)``; ``(in_features,) -> ()``.  Indices are int64 with x64, else int32.

    Example:
        >>> import jax.numpy as jnp
        >>> from jaxlayers import functional as F
        >>> hw = jnp.zeros((3, 4)).at[0].set(1.0)
        >>> print(F.adaptive_predict(jnp.ones((1, 4)), hw, [(jnp.zeros((2, 4)), jnp.zeros((3, 2)))], [2]).tolist())
        [0]
    """
    lp = adaptive_log_prob(input, head_weight, tail_weights, cutoffs, head_bias, name=name)
    return jnp.argmax(lp, axis=-1).astype(index_dtype())


def _check_cutoffs(name: str, in_features: int, n_classes: int, cutoffs: Sequence, div_value: float) -> list[int]:
    """torch's constructor checks; returns the cutoffs as ints."""
    cutoffs = list(cutoffs)
    if len(cutoffs) == 0:
        raise ValueError(f"{name}: cutoffs should be a sequence of length larger than 0")
    if (cutoffs != sorted(cutoffs) or min(cutoffs) <= 0 or max(cutoffs) > n_classes - 1
            or len(set(cutoffs)) != len(cutoffs) or any(int(c) != c for c in cutoffs)):
        raise ValueError(f"{name}: cutoffs should be a sequence of unique, positive integers sorted in an increasing "
                         f"order, where each value is between 1 and n_classes-1 ({n_classes - 1}), got {cutoffs}")
    return [int(c) for c in cutoffs]


def _tail_shapes(in_features: int, n_classes: int, cutoffs: Sequence[int], div_value: float) -> list[tuple]:
    """torch's tail sizes: cluster ``i`` projects to ``in_features // div_value ** (i + 1)``."""
    bounds = list(cutoffs) + [n_classes]
    out = []
    for i in range(len(cutoffs)):
        hsz = int(in_features // (div_value ** (i + 1)))
        out.append(((hsz, in_features), (bounds[i + 1] - bounds[i], hsz)))
    return out

