"""Loss modules, thin over :mod:`jaxlayers.functional.loss`.

Each class keeps torch's constructor arguments (torch's order and defaults) as dataclass fields
and is called as torch's: ``loss(input, target)`` (``MarginRankingLoss``/``CosineEmbeddingLoss``:
``(input1, input2, target)``; triplet losses: ``(anchor, positive, negative)``;
``GaussianNLLLoss``: ``(input, target, var)``; ``CTCLoss``: ``(log_probs, targets, input_lengths,
target_lengths)``).  They hold no parameters: ``loss.apply({}, input, target)``.  Where torch keeps
a ``weight`` (or ``pos_weight``) buffer it is a constructor argument here, and ``init`` also gives
it as a ``batch_stats`` variable under torch's name (so a model holding a weighted loss has torch's
``crit.weight`` key, and a loaded value is the one used); called without it, the loss uses the
argument.  The legacy ``size_average``/``reduce`` arguments map to ``reduction`` at construction,
with torch's warning.

>>> import jax.numpy as jnp
>>> from jaxlayers import nn
>>> loss = nn.CrossEntropyLoss(label_smoothing=0.1)
>>> print(round(float(loss.apply({}, jnp.array([[2.0, 0.0, 0.0]]), jnp.array([0]))), 4))
0.3729
"""

from __future__ import annotations

from typing import Any, Callable, ClassVar, Optional

import flax.linen as fnn
import jax
import jax.numpy as jnp
import numpy as np

from .._memory_format import channels_last
from ..functional import loss as L
from ._options import kw_only

__all__ = [
    "L1Loss",
    "MSELoss",
    "CrossEntropyLoss",
    "NLLLoss",
    "NLLLoss2d",
    "BCELoss",
    "BCEWithLogitsLoss",
    "KLDivLoss",
    "HuberLoss",
    "SmoothL1Loss",
    "SoftMarginLoss",
    "MultiLabelSoftMarginLoss",
    "MultiLabelMarginLoss",
    "MultiMarginLoss",
    "MarginRankingLoss",
    "HingeEmbeddingLoss",
    "CosineEmbeddingLoss",
    "TripletMarginLoss",
    "TripletMarginWithDistanceLoss",
    "PoissonNLLLoss",
    "GaussianNLLLoss",
    "CTCLoss",
]


class _Loss(fnn.Module):
    """Base: ``_fn(*inputs, *[getattr(self, a) for a in _args], reduction, name=<class name>)``.

    ``_fn`` is the family's private implementation; ``_args`` name the fields it takes between the
    inputs and ``reduction``.  Subclasses without ``size_average``/``reduce`` fields have no legacy mapping.
    """

    _fn: ClassVar[Callable[..., Any]]
    _args: ClassVar[tuple[str, ...]] = ()
    _reductions: ClassVar[tuple[str, ...]] = L.REDUCTIONS
    #: fields torch registers as buffers (class weights), ``batch_stats`` variables here
    _buffers: ClassVar[tuple[str, ...]] = ()
    #: whether the target holds class indices (the probe of :meth:`_nnx_probe_inputs`)
    _index_target: ClassVar[bool] = False

    def __post_init__(self) -> None:
        self._parse_reduction(warn=True)
        super().__post_init__()

    @fnn.nowrap  # called by __post_init__, unbound (flax's wrapper needs a scope under tabulate)
    def _parse_reduction(self, warn: bool = False) -> str:
        return L._legacy_reduction(getattr(self, "size_average", None), getattr(self, "reduce", None),
                                   self.reduction, type(self).__name__, self._reductions, warn=warn)

    def __call__(self, *inputs: Any) -> jax.Array:
        args = tuple(self._field(a) for a in self._args)
        return type(self)._fn(*inputs, *args, self._parse_reduction(), name=type(self).__name__)

    def setup(self) -> None:
        # a buffer (``weight``) is a ``batch_stats`` variable where ``init`` creates it or the variables
        # hold it; ``loss.apply({}, ...)`` and an unbound call (``criterion(logits, y)``) use the argument
        creating = self.is_initializing() and self.is_mutable_collection("batch_stats")  # not under
        # init(..., mutable=["params"]) or a lifted transform that creates params only (fnn.vmap ensembles)
        self._held = {name: self.variable("batch_stats", name, lambda v=value: jnp.asarray(v))
                      for name in self._buffers if (value := getattr(self, name)) is not None
                      and (creating or self.has_variable("batch_stats", name))}

    def _field(self, name: str) -> Any:
        """A constructor field, or the variable that holds a buffer."""
        if self.scope is not None and name in self._held:
            return self._held[name].value
        return getattr(self, name)

    @fnn.nowrap
    def _nnx_probe_inputs(self) -> tuple | None:
        """A tiny ``(input, target)`` from which :mod:`jaxlayers.nnx` creates the buffers at construction
        (scores ``(1, C)`` and class 0, or input and target of the weights' broadcast shape); None without
        buffers."""
        shapes = [np.shape(getattr(self, b)) for b in self._buffers if getattr(self, b) is not None]
        if not shapes:
            return None
        shape = np.broadcast_shapes(*shapes)
        if self._index_target:
            return jnp.zeros((1,) + shape[-1:], jnp.float32), jnp.zeros((1,), jnp.int32)
        return jnp.zeros(shape, jnp.float32), jnp.zeros(shape, jnp.float32)


def _static(f: Callable[..., Any]) -> Any:
    return staticmethod(f)


class L1Loss(_Loss):
    """Mean absolute error, as ``torch.nn.L1Loss``; see :func:`jaxlayers.functional.l1_loss`.

    Args:
        size_average, reduce: legacy (mapped to ``reduction``). reduction: ``'none'`` | ``'mean'`` | ``'sum'``.

    Shape: input ``(*)``, target ``(*)``; output scalar, or ``(*)`` with ``'none'``.
    """

    size_average: Optional[bool] = None
    reduce: Optional[bool] = None
    reduction: str = "mean"
    _fn = _static(lambda i, t, reduction, *, name: L._pointwise("l1", i, t, reduction, None, 0.0, name))


class MSELoss(_Loss):
    """Mean squared error, as ``torch.nn.MSELoss``; see :func:`jaxlayers.functional.mse_loss`.

    Args: as :class:`L1Loss`.  Shape: as :class:`L1Loss`.
    """

    size_average: Optional[bool] = None
    reduce: Optional[bool] = None
    reduction: str = "mean"
    _fn = _static(lambda i, t, reduction, *, name: L._pointwise("mse", i, t, reduction, None, 0.0, name))


class HuberLoss(_Loss):
    """Huber loss, as ``torch.nn.HuberLoss``; see :func:`jaxlayers.functional.huber_loss`.

    Args: reduction; delta (> 0, default 1).  Shape: as :class:`L1Loss`.
    """

    reduction: str = "mean"
    delta: float = 1.0
    _args = ("delta",)
    _fn = _static(lambda i, t, delta, reduction, *, name: L._pointwise("huber", i, t, reduction, None, delta, name))


class SmoothL1Loss(_Loss):
    """Smooth L1 loss, as ``torch.nn.SmoothL1Loss``; see :func:`jaxlayers.functional.smooth_l1_loss`.

    Args: size_average, reduce, reduction; beta (>= 0, default 1; 0 is L1).  Shape: as :class:`L1Loss`.
    """

    size_average: Optional[bool] = None
    reduce: Optional[bool] = None
    reduction: str = "mean"
    beta: float = 1.0
    _args = ("beta",)
    _fn = _static(lambda i, t, beta, reduction, *, name: L._pointwise("smooth_l1", i, t, reduction, None, beta, name))


class CrossEntropyLoss(_Loss):
    """Cross entropy of logits, as ``torch.nn.CrossEntropyLoss``; see :func:`jaxlayers.functional.cross_entropy`.

    Args:
        weight: ``(C,)`` class weights (torch's buffer) or None.
        size_average, reduce: legacy. ignore_index: default -100. reduction: ``'none'`` | ``'mean'`` | ``'sum'``.
        label_smoothing: in [0, 1].

    Shape: input ``(N, C)``, ``(N, C, d1, ...)`` or ``(C,)``; target indices ``(N)``, ``(N, d1, ...)``,
    ``()`` or probabilities of the input's shape; output scalar, or the indices' shape with ``'none'``.
    """

    weight: Any = None
    size_average: Optional[bool] = None
    ignore_index: int = -100
    reduce: Optional[bool] = None
    reduction: str = "mean"
    label_smoothing: float = 0.0
    _buffers = ("weight",)
    _index_target = True

    @channels_last(moved=2)
    def __call__(self, input: Any, target: Any) -> jax.Array:
        return L._cross_entropy(input, target, self._field("weight"), self.ignore_index, self._parse_reduction(),
                                self.label_smoothing, type(self).__name__)


class NLLLoss(_Loss):
    """Negative log likelihood, as ``torch.nn.NLLLoss``; see :func:`jaxlayers.functional.nll_loss`.

    Args: weight, size_average, ignore_index, reduce, reduction: as :class:`CrossEntropyLoss`.

    Shape: input log-probabilities ``(N, C)``, ``(N, C, d1, ...)`` or ``(C,)``; target ``(N)``,
    ``(N, d1, ...)`` or ``()``; output scalar, or the target's shape with ``'none'``.
    """

    weight: Any = None
    size_average: Optional[bool] = None
    ignore_index: int = -100
    reduce: Optional[bool] = None
    reduction: str = "mean"
    _buffers = ("weight",)
    _index_target = True

    @channels_last
    def __call__(self, input: Any, target: Any) -> jax.Array:
        return L._cross_entropy(input, target, self._field("weight"), self.ignore_index, self._parse_reduction(), 0.0,
                                type(self).__name__, log_probs=True)


class NLLLoss2d(NLLLoss):
    """``torch.nn.NLLLoss2d`` (deprecated in torch): :class:`NLLLoss` on ``(N, C, H, W)`` inputs."""


class BCELoss(_Loss):
    """Binary cross entropy, as ``torch.nn.BCELoss``; see :func:`jaxlayers.functional.binary_cross_entropy`.

    Args: weight (broadcast to the input) or None; size_average, reduce, reduction.

    Shape: input ``(*)`` in [0, 1], target ``(*)``; output scalar, or ``(*)`` with ``'none'``.
    """

    weight: Any = None
    size_average: Optional[bool] = None
    reduce: Optional[bool] = None
    reduction: str = "mean"
    _fn = _static(lambda i, t, weight, reduction, *, name: L._binary_cross_entropy(i, t, weight, reduction, name))
    _args = ("weight",)
    _buffers = ("weight",)


class BCEWithLogitsLoss(_Loss):
    """Sigmoid + BCE, as ``torch.nn.BCEWithLogitsLoss``; see
    :func:`jaxlayers.functional.binary_cross_entropy_with_logits`.

    Args: weight, size_average, reduce, reduction; pos_weight (broadcast from the right, e.g. ``(C,)``).

    Shape: input ``(*)``, target ``(*)``; output scalar, or ``(*)`` with ``'none'``.
    """

    weight: Any = None
    size_average: Optional[bool] = None
    reduce: Optional[bool] = None
    reduction: str = "mean"
    pos_weight: Any = None
    _buffers = ("weight", "pos_weight")

    def __call__(self, input: Any, target: Any) -> jax.Array:
        return L._binary_cross_entropy_with_logits(input, target, self._field("weight"), self._parse_reduction(),
                                                   self._field("pos_weight"), type(self).__name__)


class KLDivLoss(_Loss):
    """Kullback-Leibler divergence, as ``torch.nn.KLDivLoss``; see :func:`jaxlayers.functional.kl_div`.

    Args: size_average, reduce; reduction ``'none'`` | ``'batchmean'`` | ``'mean'`` | ``'sum'``; log_target.

    Shape: input ``(*)``, target ``(*)``; output scalar, or ``(*)`` with ``'none'``.
    """

    size_average: Optional[bool] = None
    reduce: Optional[bool] = None
    reduction: str = "mean"
    log_target: bool = False
    _args = ("log_target",)
    _reductions = L.REDUCTIONS + ("batchmean",)
    _fn = _static(lambda i, t, log_target, reduction, *, name: L._kl_div(i, t, reduction, log_target, name))

    def __call__(self, *inputs: Any) -> jax.Array:
        if self.size_average is None and self.reduce is None and self.reduction == "mean":  # torch's, per call
            L._warn_kl_div_mean("KLDivLoss")
        return super().__call__(*inputs)


class SoftMarginLoss(_Loss):
    """Two-class logistic loss, as ``torch.nn.SoftMarginLoss``; see :func:`jaxlayers.functional.soft_margin_loss`.

    Args: size_average, reduce, reduction.  Shape: as :class:`L1Loss`.
    """

    size_average: Optional[bool] = None
    reduce: Optional[bool] = None
    reduction: str = "mean"
    _fn = _static(L._soft_margin_loss)


class MultiLabelSoftMarginLoss(_Loss):
    """As ``torch.nn.MultiLabelSoftMarginLoss``; see :func:`jaxlayers.functional.multilabel_soft_margin_loss`.

    Args: weight ``(C,)`` or None; size_average, reduce, reduction.

    Shape: input ``(N, C)`` or ``(C,)``, target of the same shape; output scalar, or ``(N,)`` with ``'none'``.
    """

    weight: Any = None
    size_average: Optional[bool] = None
    reduce: Optional[bool] = None
    reduction: str = "mean"
    _args = ("weight",)
    _buffers = ("weight",)
    _fn = _static(L._multilabel_soft_margin_loss)


class MultiLabelMarginLoss(_Loss):
    """As ``torch.nn.MultiLabelMarginLoss``; see :func:`jaxlayers.functional.multilabel_margin_loss`.

    Args: size_average, reduce, reduction.

    Shape: input ``(N, C)`` or ``(C,)``, integer target of the same shape (``-1`` ends a row's targets);
    output scalar, or ``(N,)`` with ``'none'``.
    """

    size_average: Optional[bool] = None
    reduce: Optional[bool] = None
    reduction: str = "mean"
    _fn = _static(L._multilabel_margin_loss)


class MultiMarginLoss(_Loss):
    """Multi-class hinge loss, as ``torch.nn.MultiMarginLoss``; see :func:`jaxlayers.functional.multi_margin_loss`.

    Args: p (1 or 2), margin, weight ``(C,)`` or None, size_average, reduce, reduction.

    Shape: input ``(N, C)`` or ``(C,)``, target ``(N,)`` or ``()``; output scalar, or the target's shape.
    """

    p: int = 1
    margin: float = 1.0
    weight: Any = None
    size_average: Optional[bool] = None
    reduce: Optional[bool] = None
    reduction: str = "mean"
    _args = ("p", "margin", "weight")
    _buffers = ("weight",)
    _index_target = True
    _fn = _static(L._multi_margin_loss)

    def __post_init__(self) -> None:
        if self.p not in (1, 2):
            raise ValueError(f"MultiMarginLoss: only p == 1 and p == 2 are supported, got p={self.p!r}")
        super().__post_init__()


class MarginRankingLoss(_Loss):
    """As ``torch.nn.MarginRankingLoss``, called ``(input1, input2, target)``; see
    :func:`jaxlayers.functional.margin_ranking_loss`.

    Args: margin (default 0), size_average, reduce, reduction.  Shape: ``(N)`` or ``()`` each; output scalar or ``(N)``.
    """

    margin: float = 0.0
    size_average: Optional[bool] = None
    reduce: Optional[bool] = None
    reduction: str = "mean"
    _args = ("margin",)
    _fn = _static(L._margin_ranking_loss)


class HingeEmbeddingLoss(_Loss):
    """As ``torch.nn.HingeEmbeddingLoss``; see :func:`jaxlayers.functional.hinge_embedding_loss`.

    Args: margin (default 1), size_average, reduce, reduction.  Shape: as :class:`L1Loss`.
    """

    margin: float = 1.0
    size_average: Optional[bool] = None
    reduce: Optional[bool] = None
    reduction: str = "mean"
    _args = ("margin",)
    _fn = _static(L._hinge_embedding_loss)


class CosineEmbeddingLoss(_Loss):
    """As ``torch.nn.CosineEmbeddingLoss``, called ``(input1, input2, target)``; see
    :func:`jaxlayers.functional.cosine_embedding_loss`.

    Args: margin (default 0), size_average, reduce, reduction.

    Shape: inputs ``(N, D)`` or ``(D,)``, target ``(N,)`` or ``()``; output scalar, or the target's shape.
    """

    margin: float = 0.0
    size_average: Optional[bool] = None
    reduce: Optional[bool] = None
    reduction: str = "mean"
    _args = ("margin",)
    _fn = _static(L._cosine_embedding_loss)


class _TripletLoss(_Loss):
    def __post_init__(self) -> None:
        if self.margin <= 0:
            raise ValueError(f"{type(self).__name__}: margin must be greater than 0, got {self.margin}")
        super().__post_init__()


class TripletMarginLoss(_TripletLoss):
    """As ``torch.nn.TripletMarginLoss``, called ``(anchor, positive, negative)``; see
    :func:`jaxlayers.functional.triplet_margin_loss`.

    Args: margin (> 0, default 1), p (2), eps (1e-6), swap (False), size_average, reduce, reduction.

    Shape: ``(N, D)`` or ``(D,)`` each; output scalar, or ``(N,)`` with ``'none'``.
    """

    margin: float = 1.0
    p: float = 2.0
    eps: float = 1e-6
    swap: bool = False
    size_average: Optional[bool] = None
    reduce: Optional[bool] = None
    reduction: str = "mean"
    _args = ("margin", "p", "eps", "swap")
    _fn = _static(L._triplet_margin_loss)


class TripletMarginWithDistanceLoss(_TripletLoss):
    """As ``torch.nn.TripletMarginWithDistanceLoss`` (keyword-only arguments), called ``(anchor, positive,
    negative)``; see :func:`jaxlayers.functional.triplet_margin_with_distance_loss`.

    Args: distance_function (default pairwise 2-norm distance), margin (> 0, default 1), swap, reduction.

    Shape: as the distances; output scalar, or the distances' shape with ``'none'``.
    """

    distance_function: Optional[Callable] = kw_only(None)
    margin: float = kw_only(1.0)
    swap: bool = kw_only(False)
    reduction: str = kw_only("mean")
    _args = ("distance_function", "margin", "swap")
    _fn = _static(L._triplet_margin_with_distance_loss)


class PoissonNLLLoss(_Loss):
    """As ``torch.nn.PoissonNLLLoss``; see :func:`jaxlayers.functional.poisson_nll_loss`.

    Args: log_input (True), full (False), size_average, eps (1e-8), reduce, reduction.  Shape: as :class:`L1Loss`.
    """

    log_input: bool = True
    full: bool = False
    size_average: Optional[bool] = None
    eps: float = 1e-8
    reduce: Optional[bool] = None
    reduction: str = "mean"
    _args = ("log_input", "full", "eps")
    _fn = _static(L._poisson_nll_loss)


class GaussianNLLLoss(_Loss):
    """As ``torch.nn.GaussianNLLLoss`` (keyword-only arguments), called ``(input, target, var)``; see
    :func:`jaxlayers.functional.gaussian_nll_loss`.

    Args: full (False), eps (1e-6), reduction.

    Shape: input ``(N, *)``, target ``(N, *)``, var ``(N, *)``, ``(N, *)`` with one dim 1, or ``(N, *)``
    without the last dim; output scalar, or the input's shape with ``'none'``.
    """

    full: bool = kw_only(False)
    eps: float = kw_only(1e-6)
    reduction: str = kw_only("mean")
    _args = ("full", "eps")
    _fn = _static(L._gaussian_nll_loss)


class CTCLoss(_Loss):
    """Connectionist Temporal Classification, as ``torch.nn.CTCLoss``, called ``(log_probs, targets,
    input_lengths, target_lengths)``; see :func:`jaxlayers.functional.ctc_loss`.

    Args: blank (0), reduction (``'mean'`` divides each loss by its target length), zero_infinity (False).

    Shape: log_probs ``(T, N, C)`` or ``(T, C)``; targets ``(N, S)`` or concatenated 1-D; lengths ``(N,)``;
    output scalar, or ``(N,)`` with ``'none'``.
    """

    blank: int = 0
    reduction: str = "mean"
    zero_infinity: bool = False

    def __call__(self, log_probs: Any, targets: Any, input_lengths: Any, target_lengths: Any) -> jax.Array:
        return L._ctc_loss(log_probs, targets, input_lengths, target_lengths, self.blank, self._parse_reduction(),
                           self.zero_infinity, type(self).__name__)
