"""Every public function under every JAX transform, in float64, under both engine settings.

A table gives each function of ``jaxlayers.functional`` a small input away from
kinks and ties.  For each entry and setting:

* ``jax.test_util.check_grads(..., order=1, modes=("fwd", "rev"))`` — forward and
  reverse mode (``jvp``, ``linearize``, ``vjp``, ``grad``) against finite differences,
  and forward mode through the reverse-mode pullback (forward-over-reverse: the
  path of ``jax.hessian`` and hessian-vector products) to second order;
* one jitted bundle of ``vmap``, ``vmap(grad)``, ``grad(vmap)``, ``jax.checkpoint`` and a
  ``lax.scan`` body, each compared with plain calls.

``test_table_covers_the_public_surface`` fails when a public function has no
row, so a new family cannot skip this.  Rows of one family with equal inputs run as
one case (their outputs concatenated: a small function does not pay a case's
fixed cost alone); a failing group names the rows that fail alone.  Families with lowerings
(``LOWERED_FAMILIES``) run under ``"reference"`` and ``"auto"``; for the others
the two settings run the same code.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import lax

import jaxlayers.functional as F
from jaxlayers import config
from oracle import check_grads_through_hessian, close, compiles, public_functions

LOWERED_FAMILIES = {"conv", "grid_sample", "normalization", "pooling", "resampling"}  # families with a jaxlayers/_lowering module
KEY = jax.random.key(0)

# points where some function has a kink: inputs keep away from them
_KINKS = np.array([0.0, 0.5, -0.5, 1.0, -1.0, 1.5, -1.5, 3.0, -3.0, 6.0, 2.0, -2.0])


def _x(*shape, seed=0, scale=1.0, positive=False):
    """Distinct values, at least 0.05 from every kink (and from each other by >= 1e-3)."""
    n = int(np.prod(shape))
    rng = np.random.default_rng(seed + 17 * n)
    v = rng.permutation(np.linspace(0.07, 1.9, n)) * (1 if positive else rng.choice([-1, 1], n))
    for k in _KINKS:
        near = np.abs(v - k) < 0.05
        v[near] = k + 0.06 * np.sign(v[near] - k + 1e-9)
    return jnp.asarray(v.reshape(shape) * scale)


_T01 = jnp.asarray([[0.2, 0.9, 0.5], [0.0, 1.0, 0.7]])  # targets in [0, 1]
_U2 = jnp.asarray([[[0.3, 0.6], [0.8, 0.1]]])  # fractional pooling's samples, (N, C, dims)
_U3 = jnp.asarray([[[0.3, 0.6, 0.2]]])


# name -> (function of float arrays, example arrays)
ROWS = [
    # activation
    *[(n, (getattr(F, n), (_x(2, 5),))) for n in (
        "relu", "relu6", "leaky_relu", "elu", "selu", "celu", "gelu", "silu", "mish", "sigmoid", "logsigmoid",
        "tanh", "hardtanh", "hardswish", "hardsigmoid", "hardshrink", "softshrink", "tanhshrink", "softsign",
        "softplus")],
    ("prelu", (F.prelu, (_x(2, 3, 4), _x(3, seed=1, positive=True) * 0.2))),
    ("threshold", (lambda x: F.threshold(x, 0.5, -2.0), (_x(2, 5),))),
    ("glu", (lambda x: F.glu(x, -1), (_x(2, 6),))),
    ("softmax", (lambda x: F.softmax(x, dim=-1), (_x(2, 5),))),
    ("log_softmax", (lambda x: F.log_softmax(x, dim=-1), (_x(2, 5),))),
    ("softmin", (lambda x: F.softmin(x, dim=-1), (_x(2, 5),))),
    ("softmax2d", (F.softmax2d, (_x(1, 3, 2, 2),))),
    # attention
    ("scaled_dot_product_attention", (lambda q, k, v: F.scaled_dot_product_attention(q, k, v, is_causal=True),
                                      (_x(1, 2, 3, 4), _x(1, 2, 3, 4, seed=1), _x(1, 2, 3, 4, seed=2)))),
    ("multi_head_attention_forward", (
        lambda q, w, ow: F.multi_head_attention_forward(q, q, q, 4, 2, w, None, None, None, False, 0.0, ow, None,
                                                        need_weights=False)[0],
        (_x(3, 1, 4), _x(12, 4, seed=1, scale=0.5), _x(4, 4, seed=2, scale=0.5)))),
    # convolution
    ("conv1d", (lambda x, w, b: F.conv1d(x, w, b, padding=1), (_x(1, 2, 5), _x(3, 2, 3, seed=1), _x(3, seed=2)))),
    ("conv2d", (lambda x, w: F.conv2d(x, w, stride=(1, 2), padding=1), (_x(1, 2, 4, 4), _x(2, 2, 3, 3, seed=1)))),
    ("conv3d", (lambda x, w: F.conv3d(x, w, padding=1), (_x(1, 1, 3, 3, 3), _x(2, 1, 2, 2, 2, seed=1)))),
    # a function's further rows are named "function[path]": the depthwise and pointwise lowerings
    ("conv2d[depthwise]", (lambda x, w: F.conv2d(x, w, stride=(2, 1), padding=1, groups=2),
                           (_x(1, 2, 4, 3), _x(4, 1, 3, 2, seed=1)))),
    ("conv1d[pointwise]", (lambda x, w: F.conv1d(x, w, stride=2, padding=1), (_x(2, 3, 5), _x(2, 3, 1, seed=1)))),
    ("conv_tbc", (lambda x, w, b: F.conv_tbc(x, w, b, 1), (_x(5, 2, 3), _x(3, 3, 4, seed=1), _x(4, seed=2)))),
    ("conv_transpose1d", (lambda x, w: F.conv_transpose1d(x, w, stride=2, padding=1),
                          (_x(1, 2, 4), _x(2, 3, 3, seed=1)))),
    ("conv_transpose2d", (lambda x, w: F.conv_transpose2d(x, w, stride=2),
                          (_x(1, 2, 3, 3), _x(2, 2, 2, 2, seed=1)))),
    ("conv_transpose3d", (lambda x, w: F.conv_transpose3d(x, w, stride=(2, 1, 1), padding=(0, 1, 0)),
                          (_x(1, 1, 2, 2, 2), _x(1, 2, 2, 3, 1, seed=1)))),
    # dropout (a fixed key: a fixed linear map)
    *[(n, (lambda x, n=n: getattr(F, n)(x, 0.4, training=True, key=KEY), (_x(2, 3, 4),))) for n in (
        "dropout", "dropout1d", "dropout2d", "dropout3d", "alpha_dropout", "feature_alpha_dropout")],
    # linear
    ("linear", (F.linear, (_x(2, 3), _x(4, 3, seed=1), _x(4, seed=2)))),
    ("bilinear", (F.bilinear, (_x(2, 3), _x(2, 2, seed=1), _x(4, 3, 2, seed=2), _x(4, seed=3)))),
    # grouped_mm: rows of mat_a grouped (one group empty, one row past offs[-1]), and the contraction
    # dim (the columns form is the rows form transposed; tests/test_grouped_mm.py checks all four)
    ("grouped_mm[rows]", (lambda a, b: F.grouped_mm(a, b, offs=jnp.array([2, 2, 5])), (_x(6, 3), _x(3, 3, 2, seed=1)))),
    ("grouped_mm[k]", (lambda a, b: F.grouped_mm(a, b, offs=jnp.array([2, 5])), (_x(2, 5), _x(5, 3, seed=1)))),
    # normalisation
    ("batch_norm", (lambda x, w, b: F.batch_norm(x, None, None, w, b, training=True).output,
                    (_x(3, 2, 4), _x(2, seed=1), _x(2, seed=2)))),
    ("instance_norm", (lambda x, w: F.instance_norm(x, weight=w).output, (_x(2, 2, 4), _x(2, seed=1)))),
    ("layer_norm", (lambda x, w, b: F.layer_norm(x, (4,), w, b), (_x(3, 4), _x(4, seed=1), _x(4, seed=2)))),
    ("group_norm", (lambda x, w: F.group_norm(x, 2, w), (_x(2, 4, 3), _x(4, seed=1)))),
    ("rms_norm", (lambda x, w: F.rms_norm(x, (4,), w), (_x(3, 4), _x(4, seed=1)))),
    ("local_response_norm", (lambda x: F.local_response_norm(x, 3), (_x(2, 4, 3),))),
    ("switch_norm", (lambda x, w: F.switch_norm(x, None, None, w, None, training=True).output,
                     (_x(3, 2, 4), _x(2, seed=1)))),
    # padding
    ("pad", (lambda x: F.pad(x, (1, 2, 2, 1), mode="reflect"), (_x(1, 2, 4, 4),))),
    # pooling
    ("max_pool1d", (lambda x: F.max_pool1d(x, 2, 1), (_x(1, 2, 5),))),
    ("max_pool2d", (lambda x: F.max_pool2d(x, 3, 2, 1), (_x(1, 2, 5, 5),))),
    ("max_pool3d", (lambda x: F.max_pool3d(x, 2), (_x(1, 1, 4, 4, 4),))),
    *[(f"max_unpool{d}d", (
        lambda x, d=d: getattr(F, f"max_unpool{d}d")(
            x, *getattr(F, f"max_pool{d}d")(jnp.arange(4.0 ** d).reshape((1, 1) + (4,) * d), 2,
                                            return_indices=True)[1:], 2),
        (_x(*(1, 1) + (2,) * d),))) for d in (1, 2, 3)],
    ("avg_pool1d", (lambda x: F.avg_pool1d(x, 3, 2, 1, ceil_mode=True), (_x(1, 2, 6),))),
    ("avg_pool2d", (lambda x: F.avg_pool2d(x, 3, 2, 1, count_include_pad=False), (_x(1, 2, 5, 5),))),
    ("avg_pool3d", (lambda x: F.avg_pool3d(x, 2, divisor_override=3), (_x(1, 1, 4, 4, 4),))),
    ("adaptive_avg_pool1d", (lambda x: F.adaptive_avg_pool1d(x, 3), (_x(1, 2, 7),))),
    ("adaptive_avg_pool2d", (lambda x: F.adaptive_avg_pool2d(x, (3, 2)), (_x(1, 2, 5, 5),))),
    ("adaptive_avg_pool3d", (lambda x: F.adaptive_avg_pool3d(x, 2), (_x(1, 1, 3, 3, 3),))),
    ("adaptive_max_pool1d", (lambda x: F.adaptive_max_pool1d(x, 3), (_x(1, 2, 7),))),
    ("adaptive_max_pool2d", (lambda x: F.adaptive_max_pool2d(x, (3, 2)), (_x(1, 2, 5, 5),))),
    ("adaptive_max_pool3d", (lambda x: F.adaptive_max_pool3d(x, 2), (_x(1, 1, 3, 3, 3),))),
    # torch's *_with_indices twins: the output, differentiated (the indices are integers)
    *[(f"{n}_with_indices", (lambda x, n=n, a=a: getattr(F, f"{n}_with_indices")(x, *a)[0], (_x(*shape),)))
      for n, a, shape in (("max_pool1d", (2, 1), (1, 2, 5)), ("max_pool2d", (3, 2, 1), (1, 2, 5, 5)),
                          ("max_pool3d", (2,), (1, 1, 4, 4, 4)), ("adaptive_max_pool1d", (3,), (1, 2, 7)),
                          ("adaptive_max_pool2d", ((3, 2),), (1, 2, 5, 5)),
                          ("adaptive_max_pool3d", (2,), (1, 1, 3, 3, 3)))],
    ("lp_pool1d", (lambda x: F.lp_pool1d(x, 2, 2), (_x(1, 2, 6, positive=True),))),
    ("lp_pool2d", (lambda x: F.lp_pool2d(x, 3, 2), (_x(1, 2, 4, 4, positive=True),))),
    ("lp_pool3d", (lambda x: F.lp_pool3d(x, 2, 2), (_x(1, 1, 2, 2, 2, positive=True),))),
    # recurrent (weights closed over: the input and state are differentiated)
    *[(n, (lambda x, h, n=n, g=g: getattr(F, n)(x, h, _x(3 * g, 3, seed=1), _x(3 * g, 3, seed=2),
                                                _x(3 * g, seed=3), _x(3 * g, seed=4)),
           (_x(2, 3), _x(2, 3, seed=5)))) for n, g in (("rnn_tanh_cell", 1), ("rnn_relu_cell", 1),
                                                     ("gru_cell", 3))],
    ("lstm_cell", (lambda x, h, c: jnp.stack(F.lstm_cell(x, (h, c), _x(12, 3, seed=1), _x(12, 3, seed=2))),
                   (_x(2, 3), _x(2, 3, seed=5), _x(2, 3, seed=6)))),
    *[(n, (lambda x, h, n=n, g=g: getattr(F, n)(x, h, [_x(g * 3, 2, seed=1), _x(g * 3, 3, seed=2),
                                                       _x(g * 3, seed=3), _x(g * 3, seed=4)])[0],
           (_x(2, 1, 2, scale=0.5), _x(1, 1, 3, seed=5)))) for n, g in (("rnn_tanh", 1), ("rnn_relu", 1),
                                                                       ("gru", 3))],
    ("rnn", (lambda x, h: F.rnn(x, h, [_x(3, 2, seed=1), _x(3, 3, seed=2)], bias=False)[0],
             (_x(2, 1, 2, scale=0.5), _x(1, 1, 3, seed=5)))),
    ("lstm", (lambda x, h, c: F.lstm(x, (h, c), [_x(12, 2, seed=1), _x(12, 3, seed=2), _x(12, seed=3),
                                                  _x(12, seed=4)])[0],
              (_x(2, 1, 2, scale=0.5), _x(1, 1, 3, seed=5), _x(1, 1, 3, seed=6)))),
    # sparse
    ("embedding", (lambda w: F.embedding(jnp.array([[0, 2], [3, 2]]), w), (_x(4, 3),))),
    ("embedding_renorm", (lambda w: F.embedding_renorm(w, jnp.array([0, 2]), 0.5), (_x(4, 3),))),
    ("embedding_bag", (lambda w, s: F.embedding_bag(jnp.array([0, 2, 1, 3, 2]), w, jnp.array([0, 2]),
                                                    mode="sum", per_sample_weights=s),
                       (_x(4, 3), _x(5, seed=1)))),
    # 2-D input, bags of one length: reductions over dim 1 (torch's pick for max), not segments
    ("embedding_bag[fixed]", (lambda w, s: F.embedding_bag(jnp.array([[0, 2], [1, 3], [2, 1]]), w, mode="sum",
                                                           per_sample_weights=s), (_x(4, 3), _x(3, 2, seed=1)))),
    ("embedding_bag[fixed_max]", (lambda w: F.embedding_bag(jnp.array([[0, 2, 1], [3, 1, 0]]), w, mode="max",
                                                            padding_idx=1), (_x(4, 3),))),
    # losses (targets closed over; margins chosen so that hinges stay on one side)
    ("cross_entropy", (lambda x: F.cross_entropy(x, jnp.array([0, 2, 4]), label_smoothing=0.1), (_x(3, 5),))),
    ("nll_loss", (lambda x: F.nll_loss(jax.nn.log_softmax(x), jnp.array([0, 2, 4])), (_x(3, 5),))),
    ("binary_cross_entropy", (lambda x: F.binary_cross_entropy(jax.nn.sigmoid(x), _T01), (_x(2, 3),))),
    ("binary_cross_entropy_with_logits", (lambda x, w: F.binary_cross_entropy_with_logits(x, _T01, pos_weight=w),
                                          (_x(2, 3), _x(3, seed=1, positive=True)))),
    ("multilabel_soft_margin_loss", (lambda x: F.multilabel_soft_margin_loss(x, jnp.round(_T01)), (_x(2, 3),))),
    ("multilabel_margin_loss", (lambda x: F.multilabel_margin_loss(x, jnp.array([[2, 0, -1], [1, -1, 0]])),
                                (_x(2, 3, scale=0.1),))),
    ("multi_margin_loss", (lambda x: F.multi_margin_loss(x, jnp.array([0, 2]), p=2), (_x(2, 3, scale=0.1),))),
    ("soft_margin_loss", (lambda x: F.soft_margin_loss(x, jnp.sign(_x(2, 3, seed=1))), (_x(2, 3),))),
    ("l1_loss", (lambda x: F.l1_loss(x, jnp.zeros((2, 3))), (_x(2, 3),))),
    ("mse_loss", (lambda x, y: F.mse_loss(x, y, reduction="sum"), (_x(2, 3), _x(2, 3, seed=1)))),
    ("huber_loss", (lambda x: F.huber_loss(x, jnp.zeros((2, 3))), (_x(2, 3),))),
    ("smooth_l1_loss", (lambda x: F.smooth_l1_loss(x, jnp.zeros((2, 3))), (_x(2, 3),))),
    ("kl_div", (lambda x: F.kl_div(jax.nn.log_softmax(x), jax.nn.softmax(_x(2, 3, seed=1)), reduction="batchmean"),
                (_x(2, 3),))),
    ("poisson_nll_loss", (lambda x: F.poisson_nll_loss(x, jnp.array([[0.0, 2.0, 3.0]]), full=True), (_x(1, 3),))),
    ("gaussian_nll_loss", (lambda x, v: F.gaussian_nll_loss(x, jnp.zeros((2, 3)), v),
                           (_x(2, 3), _x(2, 3, seed=1, positive=True)))),
    ("margin_ranking_loss", (lambda a, b: F.margin_ranking_loss(a, b, jnp.array([1.0, -1.0, 1.0]), margin=5.0),
                             (_x(3), _x(3, seed=1)))),
    ("hinge_embedding_loss", (lambda x: F.hinge_embedding_loss(x, jnp.array([[1.0, -1.0, -1.0]])), (_x(1, 3),))),
    ("cosine_embedding_loss", (lambda a, b: F.cosine_embedding_loss(a, b, jnp.array([1.0, -1.0]), margin=-1.0),
                               (_x(2, 3), _x(2, 3, seed=1)))),
    ("triplet_margin_loss", (lambda a, p, n: F.triplet_margin_loss(a, p, n, margin=5.0, swap=True),
                             (_x(2, 3), _x(2, 3, seed=1), _x(2, 3, seed=2)))),
    ("triplet_margin_with_distance_loss", (
        lambda a, p, n: F.triplet_margin_with_distance_loss(a, p, n, margin=5.0),
        (_x(2, 3), _x(2, 3, seed=1), _x(2, 3, seed=2)))),
    ("ctc_loss", (lambda x: F.ctc_loss(jax.nn.log_softmax(x), jnp.array([[1, 2], [2, 2]]), jnp.array([4, 3]),
                                       jnp.array([2, 1])), (_x(4, 2, 3),))),
    ("adaptive_log_softmax_with_loss", (
        lambda x, h, p, o: F.adaptive_log_softmax_with_loss(x, jnp.array([0, 4]), h, [(p, o)], [2]).output,
        (_x(2, 4), _x(3, 4, seed=1), _x(2, 4, seed=2), _x(3, 2, seed=3)))),
    ("adaptive_log_prob", (lambda x, h, p, o: F.adaptive_log_prob(x, h, [(p, o)], [2]),
                           (_x(2, 4), _x(3, 4, seed=1), _x(2, 4, seed=2), _x(3, 2, seed=3)))),
    ("linear_cross_entropy", (lambda x, w: F.linear_cross_entropy(x, w, jnp.array([0, 3, 1])),
                              (_x(3, 4), _x(5, 4, seed=1)))),
    # distances and small functions
    ("cosine_similarity", (F.cosine_similarity, (_x(2, 3), _x(2, 3, seed=1)))),
    ("pairwise_distance", (F.pairwise_distance, (_x(2, 3), _x(2, 3, seed=1)))),
    ("pdist", (F.pdist, (_x(4, 3),))),
    ("normalize", (F.normalize, (_x(2, 3),))),
    ("gumbel_softmax", (lambda x: F.gumbel_softmax(x, tau=0.7, key=KEY), (_x(2, 4),))),
    # resampling and rearrangement
    ("interpolate", (lambda x: F.interpolate(x, scale_factor=2, mode="bicubic", align_corners=True),
                     (_x(1, 2, 3, 3),))),
    ("interpolate[phased]", (lambda x: F.interpolate(x, size=(16, 6), mode="bicubic", antialias=True),
                             (_x(1, 2, 8, 12),))),  # x2 and antialiased /2: taps, not matrices, under "auto"
    ("upsample", (lambda x: F.upsample(x, size=5, mode="linear"), (_x(1, 2, 3),))),
    ("upsample_nearest", (lambda x: F.upsample_nearest(x, scale_factor=2), (_x(1, 1, 2, 2),))),
    ("upsample_bilinear", (lambda x: F.upsample_bilinear(x, size=(3, 4)), (_x(1, 1, 2, 2),))),
    ("grid_sample", (lambda x, g: F.grid_sample(x, g, align_corners=False), (_x(1, 2, 4, 4), _x(1, 3, 3, 2, scale=0.5)))),
    ("affine_grid", (lambda t: F.affine_grid(t, (1, 1, 3, 4), align_corners=False), (_x(1, 2, 3),))),
    ("pixel_shuffle", (lambda x: F.pixel_shuffle(x, 2), (_x(1, 4, 2, 2),))),
    ("pixel_unshuffle", (lambda x: F.pixel_unshuffle(x, 2), (_x(1, 1, 4, 4),))),
    ("channel_shuffle", (lambda x: F.channel_shuffle(x, 2), (_x(1, 4, 2, 2),))),
    ("native_channel_shuffle", (lambda x: F.native_channel_shuffle(x, 2), (_x(1, 4, 2, 2),))),
    ("unfold", (lambda x: F.unfold(x, 2, padding=1, stride=2), (_x(1, 2, 4, 4),))),
    ("fold", (lambda x: F.fold(x, (3, 3), 2), (_x(1, 8, 4),))),
    # more pooling and activations
    ("fractional_max_pool2d", (lambda x: F.fractional_max_pool2d(x, 2, output_size=3, _random_samples=_U2),
                               (_x(1, 2, 5, 5),))),
    ("fractional_max_pool3d", (lambda x: F.fractional_max_pool3d(x, 2, output_size=2, _random_samples=_U3),
                               (_x(1, 1, 4, 4, 4),))),
    *[(f"fractional_max_pool{d}d_with_indices", (
        lambda x, d=d, u=u: getattr(F, f"fractional_max_pool{d}d_with_indices")(x, 2, output_size=2,
                                                                                _random_samples=u)[0],
        (_x(*(1, u.shape[1]) + (4,) * d),))) for d, u in ((2, _U2), (3, _U3))],
    ("rrelu", (lambda x: F.rrelu(x, training=True, key=KEY), (_x(2, 5),))),
]
TABLE = dict(ROWS)

# public names that are not differentiable array functions: types, name helpers, integer outputs
# (their parity, jit and vmap are tested in their family's file)
NOT_FUNCTIONS = {"NormOutput", "rnn_weight_names", "ASMoutput", "LegacyReductionWarning", "adaptive_predict",
                 "one_hot"}


FAMILY = public_functions()


def test_table_covers_the_public_surface():
    missing = sorted(set(FAMILY) - {n.split("[")[0] for n in TABLE} - NOT_FUNCTIONS)
    assert not missing, f"functions without a row in the transform table: {missing}"
    assert len(ROWS) == len(TABLE), "duplicate rows"


def _same_inputs(a, b):
    return len(a) == len(b) and all(np.shape(x) == np.shape(y) and np.result_type(x) == np.result_type(y)
                                    and np.array_equal(x, y) for x, y in zip(a, b))


def _groups():
    """Rows of one family with equal inputs, in table order: each group runs as one case (the members'
    outputs flattened and concatenated), so that a small function does not pay a case's fixed cost (its
    ~11 traces, lowerings and compiles) alone: the 25 activations as one case took 2.8 s instead of 6.9."""
    groups = []  # (family, [names])
    for name, (_, args) in ROWS:
        family = FAMILY.get(name.split("[")[0])
        group = next((g for g in groups if g[0] == family and _same_inputs(TABLE[g[1][0]][1], args)), None)
        if group is None:
            groups.append((family, [name]))
        else:
            group[1].append(name)
    return [names for _, names in groups]


GROUPS = _groups()


def _joined(names):
    """One function of the group's inputs: its members' outputs, flattened and concatenated."""
    fns = [TABLE[n][0] for n in names]
    if len(fns) == 1:
        return fns[0]
    return lambda *a: jnp.concatenate([jnp.ravel(f(*a)) for f in fns])


def _cases():
    for names in GROUPS:
        settings = ("reference", "auto") if FAMILY.get(names[0].split("[")[0]) in LOWERED_FAMILIES else ("auto",)
        for s in settings:
            yield pytest.param(tuple(names), s, id=f"{'+'.join(names)}-{s}")


def _bundle(fn, n_args):
    """One jit of: ``vmap``, ``vmap(grad)``, ``grad(vmap)``, ``jax.checkpoint``, ``grad(checkpoint)`` and a ``lax.scan``
    body of ``fn``, beside the plain calls they must equal."""
    argnums = tuple(range(n_args))

    def loss(*a):
        return jnp.sum(jnp.sin(fn(*a)))

    def run(*args):
        second = [0.5 * a + 0.03 for a in args]
        batched = [jnp.stack([a, b]) for a, b in zip(args, second)]
        _, scanned = lax.scan(lambda c, _: (c, fn(*args)), 0.0, None, length=2)
        batched_loss = lambda *b: jnp.sum(jnp.sin(jax.vmap(fn)(*b)))  # noqa: E731
        transformed = (jax.vmap(fn)(*batched), jax.vmap(jax.grad(loss, argnums))(*batched),
                       jax.grad(batched_loss, argnums)(*batched),
                       jax.checkpoint(fn)(*args), jax.grad(jax.checkpoint(loss), argnums)(*args), scanned[1])
        y, g1, g2 = fn(*args), jax.grad(loss, argnums)(*args), jax.grad(loss, argnums)(*second)
        stacked = [jnp.stack([u, v]) for u, v in zip(g1, g2)]
        plain = (jnp.stack([y, fn(*second)]), stacked, stacked, y, g1, y)
        return transformed, plain

    return jax.jit(run)


def _program(fn, args, setting):
    """The forward and the gradient programs (lowerings may apply to either alone)."""
    with config.lowering(setting):
        return (jax.jit(fn).lower(*args).as_text(),
                jax.jit(jax.grad(lambda *a: jnp.sum(jnp.sin(fn(*a))))).lower(*args).as_text())


def _check_transforms(fn, args, setting):
    with config.lowering(setting):
        check_grads_through_hessian(fn, args, atol=1e-5, rtol=1e-5)
        transformed, plain = _bundle(fn, len(args))(*args)
        close(transformed, plain, rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("names,setting", list(_cases()))
def test_every_transform(names, setting):
    fn, args = _joined(names), TABLE[names[0]][1]
    if setting == "reference" and _program(fn, args, "reference") == _program(fn, args, "auto"):
        pytest.skip("no lowering applies to these rows: both settings give the same program (run under 'auto')")
    try:
        _check_transforms(fn, args, setting)
    except Exception:
        if len(names) == 1:
            raise
        failing = []  # name the rows that fail, each alone
        for name in names:
            try:
                _check_transforms(*TABLE[name], setting)
            except Exception as e:
                failing.append(f"{name}: {type(e).__name__}: {str(e)[:2000]}")
        raise AssertionError(f"{len(failing)} of the group's rows fail alone:\n" + "\n".join(failing)) from None


def test_groups_join_rows_of_one_family_with_equal_inputs():
    assert sorted(n for names in GROUPS for n in names) == sorted(TABLE)
    for names in GROUPS:
        assert len({FAMILY.get(n.split("[")[0]) for n in names}) == 1, names
        assert all(_same_inputs(TABLE[n][1], TABLE[names[0]][1]) for n in names), names
    assert ["relu", "relu6"] == next(g for g in GROUPS if "relu" in g)[:2]  # the activations run as one case


# functions whose code holds control flow or custom derivatives (lax.cond / scan / map, custom_jvp):
# called outside jit, these must not trace and compile their closures again on every call
EAGER_ROWS = ["layer_norm", "group_norm", "batch_norm", "instance_norm", "ctc_loss", "multilabel_margin_loss",
              "linear_cross_entropy", "adaptive_max_pool2d", "max_pool2d", "pdist", "lstm", "gru",
              "interpolate[phased]", "grid_sample"]


def test_eager_calls_compile_once():
    again = {}
    with compiles() as found:
        for name in EAGER_ROWS:
            fn, args = TABLE[name]
            jax.block_until_ready(fn(*args))
            before = len(found)
            jax.block_until_ready(fn(*args))
            again[name] = len(found) - before
    assert not any(again.values()), again


# functions that run their arithmetic as one program outside jit (``_utils.compiled`` after the checks):
# op by op their first call compiled 25-47 programs and each later call dispatched as many.
# name -> (function, its inputs from x (7, 3): built before the compilations are counted)
ONE_PROGRAM = {
    "cross_entropy": (lambda x, y: F.cross_entropy(x, y, label_smoothing=0.1), lambda x: (x, jnp.arange(7) % 3)),
    "ctc_loss": (lambda lp: F.ctc_loss(lp, jnp.array([[1, 2]]), jnp.array([7]), jnp.array([2])),
                 lambda x: (jax.nn.log_softmax(x[:, None]),)),
    "grid_sample": (lambda x, g: F.grid_sample(x, g, mode="bicubic", align_corners=True),
                    lambda x: (x[None, None], jnp.tile(x[None, :, :2, None] / 9, (1, 1, 1, 2)))),
    "fractional_max_pool2d": (lambda x: F.fractional_max_pool2d(x, 2, output_size=2, _random_samples=x[:, :1, :2]),
                              lambda x: (x[None],)),
    "embedding": (lambda w, i: F.embedding(i, w, padding_idx=1, max_norm=1.0), lambda x: (x, jnp.array([[0, 1], [6, 1]]))),
    "embedding_bag": (lambda w, i, o: F.embedding_bag(i, w, o, mode="max", padding_idx=2),
                      lambda x: (x, jnp.array([0, 2, 6, 2, 3]), jnp.array([0, 2, 2]))),
    "embedding_renorm": (lambda w, i: F.embedding_renorm(w, i, 0.5), lambda x: (x, jnp.array([0, 3, 3]))),
    "conv_transpose1d": (lambda x, w, b: F.conv_transpose1d(x, w, b, stride=2, padding=1, groups=3),
                         lambda x: (x.T[None], x[:3, None, :2], x[0])),
    "conv2d": (lambda x, w: F.conv2d(x, w, padding=1, groups=1), lambda x: (x[None, None], x[None, None, :3])),
    "switch_norm": (lambda x, m, v: F.switch_norm(x, m, v, training=True).output, lambda x: (x[None], x[:, 0], x[:, 1] ** 2)),
    "poisson_nll_loss": (lambda x, t: F.poisson_nll_loss(x, t, full=True, reduction="sum"), lambda x: (x, x * 3)),
    "cosine_embedding_loss": (lambda a, b, t: F.cosine_embedding_loss(a, b, t, margin=0.1),
                              lambda x: (x, x[::-1], jnp.sign(x[:, 0] - 0.5))),
    "instance_norm": (lambda x, m, v: F.instance_norm(x, m, v, use_input_stats=True).output,
                      lambda x: (x[None], x[:, 0], x[:, 1] ** 2)),
    "rms_norm": (lambda x, w: F.rms_norm(x, (3,), w), lambda x: (x, x[0])),
    "linear": (lambda x, w, b: F.linear(x, w, b), lambda x: (x, x[:5], x[0, :1] + x[:5, 0])),
    "dropout": (lambda x, k: F.dropout(x, 0.3, key=k), lambda x: (x, jax.random.key(3))),
    "unfold": (lambda x: F.unfold(x, 2, padding=1), lambda x: (x[None, None],)),
    "fold": (lambda x: F.fold(x, (4, 3), 2), lambda x: (jnp.tile(x[:4], (1, 2))[None],)),
    "affine_grid": (lambda t: F.affine_grid(t, (1, 1, 4, 5), align_corners=False), lambda x: (x[None, :2],)),
    "lstm_cell": (lambda x, h, c, w, u: F.lstm_cell(x, (h, c), w, u)[1],
                  lambda x: (x[:2], x[2:4], x[4:6], jnp.tile(x[:4], (3, 1)), jnp.tile(x[:4], (3, 1)))),
    "scaled_dot_product_attention": (lambda q: F.scaled_dot_product_attention(q, q * 2, q, is_causal=True),
                                     lambda x: (x[None],)),
    "multi_head_attention_forward": (
        lambda q, w, o, m: F.multi_head_attention_forward(q, q, q, 3, 1, w, None, None, None, True, 0.0, o, None,
                                                          key_padding_mask=m)[0],
        lambda x: (x[:, None], jnp.tile(x[:3] - 0.5, (3, 1)), x[:3] - 0.5, x[None, :, 0] > 0.5)),
}


@pytest.mark.parametrize("name", sorted(ONE_PROGRAM))
def test_eager_first_call_compiles_one_program(name):
    """The first eager call compiles the function once (and a cast of an argument or two), not op by op."""
    fn, make = ONE_PROGRAM[name]
    args = jax.block_until_ready(make(jnp.asarray(np.linspace(0.1, 0.9, 7 * 3).reshape(7, 3))))  # a fresh shape
    with compiles() as found:
        jax.block_until_ready(fn(*args))
    assert len(found) <= 3, f"{name}: {len(found)} programs compiled by one eager call"  # + argument casts


def test_one_program_falls_back_to_the_call_as_it_is():
    """A function under ``_utils.one_program`` whose program cannot be traced (an array argument read as a value)
    gives the eager call's result, and its errors are the eager call's own, not chained to the traced attempt's."""
    a, p, n = (jnp.asarray(np.linspace(-1, 1, 6).reshape(2, 3) * k) for k in (1.0, 0.5, -2.0))
    close(F.triplet_margin_loss(a, p, n, margin=jnp.asarray(0.7)), F.triplet_margin_loss(a, p, n, margin=0.7),
          rtol=0, atol=0)
    with pytest.raises(ValueError, match="margin must be greater than 0") as raised:
        F.triplet_margin_loss(a, p, n, margin=jnp.asarray(-1.0))
    assert raised.value.__context__ is None
    with pytest.raises(ValueError, match="normalized_shape") as raised:
        F.rms_norm(a, (4,))
    assert raised.value.__context__ is None
    assert F.rms_norm(a, 3).shape == a.shape  # an int, then a float equal to it: the float is refused again
    with pytest.raises(TypeError):
        F.rms_norm(a, 3.0)
