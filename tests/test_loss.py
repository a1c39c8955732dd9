"""Losses against torch (float64): every loss, option and reduction, outputs and gradients
(input, differentiable targets, weights), legacy arguments, modules, jit/vmap, higher-order
gradients, half precision, CTC, and every error path."""

import warnings

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
import torch.nn.functional as TF
from hypothesis import given, settings
from hypothesis import strategies as st
from jax.test_util import check_grads
from oracle import check_grads_through_hessian, close, jax_fwd_bwd, to_numpy, to_torch, torch_fwd_bwd

from jaxlayers import functional as F
from jaxlayers import nn
from jaxlayers import interop

R = np.random.default_rng(0)


def _n(*shape, scale=1.0, shift=0.0):
    return R.normal(size=shape) * scale + shift


def _u(*shape, lo=0.05, hi=0.95):
    return R.uniform(lo, hi, size=shape)


def _pm1(*shape):
    return np.where(R.uniform(size=shape) < 0.5, -1.0, 1.0)


def _idx(high, *shape):
    return R.integers(0, high, size=shape)


def _probs(*shape, axis=1):
    p = R.uniform(0.1, 1.0, size=shape)
    return p / p.sum(axis=axis, keepdims=True)


W = ("weight", "pos_weight")  # torch does not differentiate these (test_weight_gradients checks ours)

# name, functional name, arrays (keyword -> array; floats are differentiated unless listed in nograd),
# kwargs, arrays not differentiated, torch function (None: same name)
CASES = [
    ("ce_idx", "cross_entropy", dict(input=_n(3, 4), target=np.array([0, 3, 1])), {}, ()),
    ("ce_idx_w", "cross_entropy", dict(input=_n(3, 4), target=np.array([0, 3, 1]), weight=_u(4)), {}, W),
    ("ce_ignore_w", "cross_entropy", dict(input=_n(4, 3), target=np.array([0, 2, 1, 2]), weight=_u(3)),
     dict(ignore_index=2), W),
    ("ce_ignore_default", "cross_entropy", dict(input=_n(3, 3), target=np.array([0, -100, 1])), {}, ()),
    ("ce_smooth", "cross_entropy", dict(input=_n(3, 4), target=np.array([0, 3, 1])), dict(label_smoothing=0.2), ()),
    ("ce_smooth_w_ignore", "cross_entropy", dict(input=_n(4, 4), target=np.array([0, 3, 1, 3]), weight=_u(4)),
     dict(label_smoothing=0.3, ignore_index=3), W),
    ("ce_kdim", "cross_entropy", dict(input=_n(2, 3, 2, 2), target=_idx(3, 2, 2, 2), weight=_u(3)), {}, W),
    ("ce_kdim_smooth", "cross_entropy", dict(input=_n(2, 3, 2), target=_idx(3, 2, 2)), dict(label_smoothing=0.1), ()),
    ("ce_unbatched", "cross_entropy", dict(input=_n(5), target=np.array(2)), {}, ()),
    ("ce_probs", "cross_entropy", dict(input=_n(3, 4), target=_probs(3, 4)), {}, ()),
    ("ce_probs_w_smooth", "cross_entropy", dict(input=_n(3, 4), target=_probs(3, 4), weight=_u(4)),
     dict(label_smoothing=0.25), W),
    ("ce_probs_kdim", "cross_entropy", dict(input=_n(2, 3, 2), target=_probs(2, 3, 2)), {}, ()),
    ("ce_probs_unbatched", "cross_entropy", dict(input=_n(4), target=_probs(4, axis=0)), {}, ()),
    ("nll", "nll_loss", dict(input=np.log(_probs(3, 4)), target=np.array([1, 0, 3])), {}, ()),
    ("nll_w_ignore", "nll_loss", dict(input=_n(4, 3), target=np.array([1, 0, 2, 0]), weight=_u(3)),
     dict(ignore_index=0), W),
    ("nll_kdim", "nll_loss", dict(input=_n(2, 3, 2, 2), target=_idx(3, 2, 2, 2)), {}, ()),
    ("bce", "binary_cross_entropy", dict(input=_u(3, 4), target=_u(3, 4)), {}, ()),
    ("bce_w", "binary_cross_entropy", dict(input=_u(3, 4), target=_u(3, 4), weight=_u(4)), {}, W),
    ("bcel", "binary_cross_entropy_with_logits", dict(input=_n(3, 4, scale=3), target=_u(3, 4)), {}, ()),
    ("bcel_w_pos", "binary_cross_entropy_with_logits",
     dict(input=_n(3, 4, scale=3), target=_u(3, 4), weight=_u(3, 1), pos_weight=_u(4, hi=3.0)), {}, W),
    ("mlsm", "multilabel_soft_margin_loss", dict(input=_n(3, 4), target=R.integers(0, 2, (3, 4)) * 1.0), {}, ()),
    ("mlsm_w", "multilabel_soft_margin_loss", dict(input=_n(3, 4), target=_u(3, 4), weight=_u(4)), {}, ()),
    ("mlm", "multilabel_margin_loss", dict(input=_n(3, 4), target=np.array([[3, 0, -1, 1], [1, 2, 3, 0],
                                                                             [-1, 2, 0, 0]])), {}, ()),
    ("mlm_unbatched_dup", "multilabel_margin_loss", dict(input=_n(4), target=np.array([2, 2, 0, -1])), {}, ()),
    ("mm", "multi_margin_loss", dict(input=_n(4, 3), target=np.array([0, 2, 1, 2])), {}, ()),
    ("mm_p2_w", "multi_margin_loss", dict(input=_n(4, 3), target=np.array([0, 2, 1, 2]), weight=_u(3)),
     dict(p=2, margin=0.7), W),
    ("mm_unbatched", "multi_margin_loss", dict(input=_n(5), target=np.array(3)), {}, ()),
    ("softm", "soft_margin_loss", dict(input=_n(3, 4), target=_pm1(3, 4)), {}, ("target",)),
    ("l1", "l1_loss", dict(input=_n(3, 4), target=_n(3, 4)), {}, ()),
    ("l1_w", "l1_loss", dict(input=_n(3, 4), target=_n(3, 4), weight=_u(3, 4)), {}, ()),
    ("mse", "mse_loss", dict(input=_n(3, 4), target=_n(3, 4)), {}, ()),
    ("mse_w", "mse_loss", dict(input=_n(3, 4), target=_n(3, 4), weight=_u(3, 4)), {}, ()),
    ("huber", "huber_loss", dict(input=_n(3, 4, scale=2), target=_n(3, 4)), dict(delta=0.8), ()),
    ("huber_w", "huber_loss", dict(input=_n(3, 4, scale=2), target=_n(3, 4), weight=_u(3, 4)), {}, ()),
    ("sl1", "smooth_l1_loss", dict(input=_n(3, 4, scale=2), target=_n(3, 4)), dict(beta=0.5), ()),
    ("sl1_beta0", "smooth_l1_loss", dict(input=_n(3, 4), target=_n(3, 4)), dict(beta=0.0), ()),
    ("kl", "kl_div", dict(input=np.log(_probs(3, 4)), target=_probs(3, 4)), dict(reduction="batchmean"), ()),
    ("kl_logt", "kl_div", dict(input=np.log(_probs(3, 4)), target=np.log(_probs(3, 4))), dict(log_target=True), ()),
    ("kl_zero_t", "kl_div", dict(input=_n(3, 4), target=np.array([[0.0, 0.5, 0.5, 0.0]] * 3)), {},
     ("target",)),  # torch's d/dtarget is NaN at target == 0, ours is -input
    ("poisson", "poisson_nll_loss", dict(input=_n(3, 4), target=R.poisson(2.0, (3, 4)) * 1.0), {}, ("target",)),
    ("poisson_full_lin", "poisson_nll_loss", dict(input=_u(3, 4, hi=3.0), target=_u(3, 4, lo=1.5, hi=4.0)),
     dict(log_input=False, full=True), ()),
    ("poisson_full_counts", "poisson_nll_loss", dict(input=_n(3, 4), target=R.poisson(2.0, (3, 4)) * 1.0),
     dict(full=True), ("target",)),
    ("gauss", "gaussian_nll_loss", dict(input=_n(3, 4), target=_n(3, 4), var=_u(3, 4)), {}, ()),
    ("gauss_full_dropdim", "gaussian_nll_loss", dict(input=_n(3, 4), target=_n(3, 4), var=_u(3)), dict(full=True), ()),
    ("gauss_one_dim", "gaussian_nll_loss", dict(input=_n(3, 4, 2), target=_n(3, 4, 2), var=_u(3, 1, 2)), {}, ()),
    ("gauss_clamped", "gaussian_nll_loss", dict(input=_n(3, 4), target=_n(3, 4),
                                                var=np.array([1e-9, 0.5, 2.0, 1e-8] * 3).reshape(3, 4)),
     dict(eps=1e-3), ()),
    ("mrank", "margin_ranking_loss", dict(input1=_n(5), input2=_n(5), target=_pm1(5)), dict(margin=0.3), ()),
    ("hinge", "hinge_embedding_loss", dict(input=_n(3, 4, scale=2), target=_pm1(3, 4)), dict(margin=0.8),
     ("target",)),
    ("cosine", "cosine_embedding_loss", dict(input1=_n(4, 3), input2=_n(4, 3), target=_pm1(4)), dict(margin=0.1),
     ("target",)),
    ("cosine_unbatched", "cosine_embedding_loss", dict(input1=_n(3), input2=_n(3), target=np.array(-1.0)),
     dict(margin=-0.9), ("target",)),
    ("triplet", "triplet_margin_loss", dict(anchor=_n(4, 3), positive=_n(4, 3), negative=_n(4, 3)), dict(margin=2.0), ()),
    ("triplet_p1_swap", "triplet_margin_loss", dict(anchor=_n(4, 3), positive=_n(4, 3), negative=_n(4, 3)),
     dict(p=1, swap=True, margin=2.0), ()),
    ("triplet_p3_eps", "triplet_margin_loss", dict(anchor=_n(4, 3), positive=_n(4, 3), negative=_n(4, 3)),
     dict(p=3, eps=1e-2, margin=2.0), ()),
    ("triplet_dist", "triplet_margin_with_distance_loss", dict(anchor=_n(4, 3), positive=_n(4, 3), negative=_n(4, 3)),
     dict(margin=2.0), ()),
    ("triplet_dist_swap", "triplet_margin_with_distance_loss",
     dict(anchor=_n(4, 3), positive=_n(4, 3), negative=_n(4, 3)), dict(margin=3.0, swap=True), ()),
]

REDUCTIONS = ("none", "mean", "sum")


def _cot(shape):
    return np.asarray(np.random.default_rng(1).normal(size=tuple(shape)) + 1.5)


def _diff(arrays, nograd):
    return [k for k, a in arrays.items() if np.issubdtype(a.dtype, np.floating) and k not in nograd]


def _jax_case(fn, arrays, kwargs, nograd, extra_reductions):
    """``(run, inputs)``: ``run(*inputs)`` gives the output, the gradients of ``sum(out * cot)`` w.r.t.
    the floating arrays not in ``nograd``, and the outputs with ``extra_reductions``."""
    diff = _diff(arrays, nograd)
    fixed = {k: jnp.asarray(a) for k, a in arrays.items() if k not in diff}

    def run(d, cot):
        out, vjp = jax.vjp(lambda d: fn(**fixed, **d, **kwargs), d)
        extra = [fn(**fixed, **d, **{**kwargs, "reduction": r}) for r in extra_reductions]
        return out, vjp(cot.astype(out.dtype))[0], extra

    d = {k: jnp.asarray(arrays[k]) for k in diff}
    shape = jax.eval_shape(lambda d: fn(**fixed, **d, **kwargs), d).shape
    return run, (d, jnp.asarray(_cot(shape)))


def _run(fn, arrays, kwargs, nograd, lib, extra_reductions=()):
    """As :func:`_jax_case`, evaluated: torch eagerly, JAX as one jitted call (cheaper than eager
    mode's per-operation compiles on these tiny shapes)."""
    if lib == "torch":
        diff = _diff(arrays, nograd)
        ts = {k: to_torch(a, requires_grad=k in diff) for k, a in arrays.items()}
        out = fn(**ts, **kwargs)
        (out * torch.from_numpy(_cot(out.shape))).sum().backward()
        extra = [fn(**{k: to_torch(a) for k, a in arrays.items()}, **{**kwargs, "reduction": r})
                 for r in extra_reductions]
        return out.detach().numpy(), {k: ts[k].grad.numpy() for k in diff}, extra
    run, inputs = _jax_case(fn, arrays, kwargs, nograd, extra_reductions)
    return jax.jit(run)(*inputs)


def _extra(kwargs):
    return () if "reduction" in kwargs else ("mean", "sum")


@pytest.fixture(scope="module")
def jax_parity():
    """Every parity case's JAX results from ONE jitted function (one compile instead of one per case)."""
    runs = {name: _jax_case(getattr(F, fn), arrays, {"reduction": "none", **kw}, nograd, _extra(kw))
            for name, fn, arrays, kw, nograd in CASES}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # kl_div's 'mean' warning
        inputs = {k: r[1] for k, r in runs.items()}
        fn = jax.jit(lambda inputs: {k: runs[k][0](*inputs[k]) for k in runs})
        # a tiny program: XLA's backend optimisations cost more compile time than they save
        return fn.lower(inputs).compile(compiler_options={"xla_backend_optimization_level": 0})(inputs)


@pytest.mark.parametrize("name,fn,arrays,kwargs,nograd", CASES, ids=[c[0] for c in CASES])
def test_parity_with_torch(jax_parity, name, fn, arrays, kwargs, nograd):
    """Gradients through ``'none'`` (or the case's reduction); outputs of every reduction."""
    extra = _extra(kwargs)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # kl_div's 'mean' warning
        out_t, g_t, e_t = _run(getattr(TF, fn), arrays, {"reduction": "none", **kwargs}, nograd, "torch", extra)
    out_j, g_j, e_j = jax_parity[name]
    assert out_j.shape == out_t.shape
    close(out_j, out_t, err_msg=f"{name} output")
    assert set(g_j) == set(g_t)
    close(g_j, g_t, rtol=1e-9, atol=1e-12, err_msg=f"{name} gradients")
    close(e_j, e_t, err_msg=f"{name} {extra}")


@pytest.mark.parametrize("fn,arrays,kwargs", [
    ("cross_entropy", dict(input=_n(4, 3), target=np.array([0, 2, 1, 2])), dict(label_smoothing=0.2, ignore_index=1)),
    ("cross_entropy", dict(input=_n(2, 3), target=_probs(2, 3)), dict(label_smoothing=0.2)),
    ("nll_loss", dict(input=_n(4, 3), target=np.array([0, 2, 1, 2])), {}),
    ("binary_cross_entropy", dict(input=_u(2, 3), target=_u(2, 3)), {}),
    ("multi_margin_loss", dict(input=_n(4, 3), target=np.array([0, 2, 1, 2])), dict(p=2)),
])
def test_weight_gradients(fn, arrays, kwargs):
    """torch does not differentiate class weights: check ours numerically (the mean's denominator too)."""
    w = jnp.asarray(_u(arrays["input"].shape[1] if fn != "binary_cross_entropy" else 3))
    check_grads(jax.jit(lambda w: getattr(F, fn)(**arrays, weight=w, **kwargs)), (w,), order=1, modes=("rev",))
    if fn == "binary_cross_entropy":
        pw = jnp.asarray(_u(3))
        check_grads(jax.jit(lambda w, pw: F.binary_cross_entropy_with_logits(arrays["input"], arrays["target"],
                                                                             weight=w, pos_weight=pw)),
                    (w, pw), order=1, modes=("rev",))


def test_triplet_with_custom_distance():
    a, p, n = _n(4, 3), _n(4, 3), _n(4, 3)

    def dist(lib):
        return lambda x, y: 1.0 - (x * y).sum(-1) / (((x * x).sum(-1) * (y * y).sum(-1)) ** 0.5)

    for swap in (False, True):
        out_t, g_t, _ = _run(lambda **k: TF.triplet_margin_with_distance_loss(distance_function=dist(torch), **k),
                          dict(anchor=a, positive=p, negative=n), dict(swap=swap, margin=1.5), (), "torch")
        out_j, g_j, _ = _run(lambda **k: F.triplet_margin_with_distance_loss(distance_function=dist(jnp), **k),
                          dict(anchor=a, positive=p, negative=n), dict(swap=swap, margin=1.5), (), "jax")
        close(out_j, out_t)
        close(g_j, g_t)


# --------------------------------------------------------------------------- semantics that need a closer look


def test_weighted_mean_and_ignored_targets():
    x, t, w = _n(4, 3), np.array([0, 2, 2, 1]), np.array([0.5, 2.0, 3.0])
    loss = F.cross_entropy(x, t, weight=w, ignore_index=2, reduction="none")
    expected = np.sum(to_numpy(loss)) / (w[0] + w[1])  # ignored targets leave both sums
    close(F.cross_entropy(x, t, weight=w, ignore_index=2), expected)
    assert np.isnan(F.cross_entropy(x, np.full(4, 2), ignore_index=2))  # a mean over nothing
    assert np.isnan(TF.cross_entropy(torch.tensor(x), torch.full((4,), 2), ignore_index=2))


def test_legacy_reduction_arguments():
    x, t = _n(3, 4), _n(3, 4)
    for sa in (None, True, False):
        for rd in (None, True, False):
            if sa is None and rd is None:
                continue
            with pytest.warns(DeprecationWarning, match="mse_loss: size_average and reduce"):
                ours = F.mse_loss(x, t, size_average=sa, reduce=rd)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                close(ours, TF.mse_loss(torch.tensor(x), torch.tensor(t), size_average=sa, reduce=rd))
                module = nn.MSELoss(size_average=sa, reduce=rd)
                close(module.apply({}, x, t), ours)
    with pytest.warns(UserWarning):  # torch's category too
        F.cross_entropy(x, np.array([0, 1, 2]), size_average=False)
    # kl_div: the legacy arguments pick the reduction and 'batchmean' still divides by the batch size
    logp, p = np.log(_n(3, 4) ** 2 + 0.1), _n(3, 4) ** 2
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for sa, rd in ((False, None), (True, None), (None, False)):
            close(F.kl_div(logp, p, size_average=sa, reduce=rd, reduction="batchmean"),
                  TF.kl_div(torch.tensor(logp), torch.tensor(p), size_average=sa, reduce=rd, reduction="batchmean"))


def test_bce_with_logits_stable_float32():
    x = jnp.array([1e4, -1e4, 0.0, 30.0, -30.0], jnp.float32)
    t = jnp.array([0.0, 1.0, 1.0, 0.0, 1.0], jnp.float32)
    pw = jnp.array(3.0, jnp.float32)
    val, grad = jax.value_and_grad(lambda x: F.binary_cross_entropy_with_logits(x, t, pos_weight=pw, reduction="sum"))(x)
    assert val.dtype == jnp.float32 and np.isfinite(val) and np.isfinite(grad).all()
    close(val, TF.binary_cross_entropy_with_logits(torch.tensor(np.asarray(x)), torch.tensor(np.asarray(t)),
                                                   pos_weight=torch.tensor(3.0, dtype=torch.float32), reduction="sum"),
          rtol=1e-6)


def test_bce_derivatives_are_torchs_at_zero_and_one():
    """torch's ``(x - t) / max(x (1 - x), 1e-12)`` and ``-logit(x)``, not the clamped logs' (NaN at 0 and 1)."""
    x, t = np.array([0.0, 1.0, 1e-50, 0.3, 1 - 1e-14]), np.array([0.5, 0.5, 0.2, 0.7, 0.1])
    xt, tt = to_torch(x, requires_grad=True), to_torch(t, requires_grad=True)
    TF.binary_cross_entropy(xt, tt, reduction="sum").backward()
    gx, gt = jax.grad(lambda x, t: F.binary_cross_entropy(x, t, reduction="sum"), (0, 1))(x, t)
    close(gx, xt.grad)
    close(gt, tt.grad)  # +-inf at 0 and 1, as torch
    assert np.abs(np.asarray(gx)[:2]).min() > 1e11
    # second order: the derivative of torch's first derivative
    x, t = np.array([0.2, 0.6, 0.9]), np.array([0.1, 0.5, 1.0])
    xt, tt = to_torch(x, requires_grad=True), to_torch(t, requires_grad=True)
    (g,) = torch.autograd.grad(TF.binary_cross_entropy(xt, tt, reduction="sum"), xt, create_graph=True)
    close(jax.grad(lambda x, t: jax.grad(lambda x: F.binary_cross_entropy(x, t, reduction="sum"))(x).sum(), (0, 1))(
        x, t), torch.autograd.grad(g.sum(), (xt, tt)))


def test_bce_through_a_saturated_float32_sigmoid_has_torchs_finite_gradient():
    z, t = np.array([20.0, -28.0, 0.3], np.float32), np.ones(3, np.float32)  # sigmoid(20) == 1.0 in float32
    zt = torch.tensor(z, requires_grad=True)
    TF.binary_cross_entropy(torch.sigmoid(zt), torch.tensor(t), reduction="sum").backward()
    g = jax.grad(lambda z: F.binary_cross_entropy(jax.nn.sigmoid(z), t, reduction="sum"))(z)
    close(g, zt.grad, rtol=1e-5, atol=1e-7)
    assert np.isfinite(g).all() and g[1] < -0.5


@pytest.mark.parametrize("target", ["index", "probs", "smoothed"])
def test_cross_entropy_large_logit_offset_loses_no_precision(target):
    """log_softmax as ``(x - max) - lse``, as torch: a common offset of 1e4 costs no float32 digits."""
    x = (1e4 + R.normal(size=(6, 5))).astype(np.float32)
    t = _idx(5, 6) if target != "probs" else _probs(6, 5).astype(np.float32)
    kw = dict(label_smoothing=0.2) if target == "smoothed" else {}
    exact = TF.cross_entropy(torch.tensor(x, dtype=torch.float64), torch.tensor(t).to(
        torch.float64 if target == "probs" else torch.int64), reduction="none", **kw).numpy()
    ours = F.cross_entropy(jnp.asarray(x), jnp.asarray(t), reduction="none", **kw)
    assert ours.dtype == jnp.float32
    close(ours, exact, rtol=2e-6, atol=2e-6)


def test_negative_label_smoothing_is_none_as_in_torch():
    x, t = _n(4, 5), np.array([0, 1, 2, 3])
    close(F.cross_entropy(x, t, label_smoothing=-0.1), TF.cross_entropy(to_torch(x), torch.tensor(t), label_smoothing=-0.1))
    close(F.cross_entropy(x, t, label_smoothing=-0.1), F.cross_entropy(x, t))


def test_cross_entropy_edge_reductions_like_torch():
    # all-zero class weights with label smoothing: NaN (0/0), not inf
    x, t, w = _n(2, 3), np.array([0, 0]), np.array([0.0, 1.0, 1.0])
    for red in REDUCTIONS:
        close(F.cross_entropy(x, t, weight=w, label_smoothing=0.1, reduction=red),
              TF.cross_entropy(to_torch(x), torch.tensor(t), weight=to_torch(w), label_smoothing=0.1, reduction=red))
    # no classes: empty sums, NaN means
    e = np.zeros((2, 0))
    for red in REDUCTIONS:
        close(F.cross_entropy(e, e, reduction=red), TF.cross_entropy(to_torch(e), to_torch(e), reduction=red))
        close(F.cross_entropy(e, np.array([-100, -100]), reduction=red),
              TF.cross_entropy(to_torch(e), torch.tensor([-100, -100]), reduction=red))
    # an unbatched (C,) input takes a (1,) index target too, as torch's (a scalar for every reduction;
    # torch's own backward then raises a size mismatch, ours differentiates as for the () target)
    v = _n(5)
    for fn in ("cross_entropy", "nll_loss"):
        for red in REDUCTIONS:
            close(getattr(F, fn)(v, np.array([2]), reduction=red),
                  getattr(TF, fn)(to_torch(v), torch.tensor([2]), reduction=red))
    close(jax.grad(lambda a: F.cross_entropy(a, np.array([2])))(v), jax.grad(lambda a: F.cross_entropy(a, np.array(2)))(v))
    # an empty batch of multi_margin_loss: torch's empty result ('sum'/'mean' read uninitialised memory
    # there; ours are an empty sum and NaN); the reshape to (0, -1) had raised ZeroDivisionError
    want = TF.multi_margin_loss(torch.zeros(0, 5), torch.zeros(0, dtype=torch.long), reduction="none")
    close(F.multi_margin_loss(np.zeros((0, 5)), np.zeros(0, np.int64), reduction="none"), want)
    close(F.multi_margin_loss(np.zeros((0, 5)), np.zeros(0, np.int64), reduction="sum"), 0.0)


def test_half_precision_computed_in_float32():
    x = jnp.asarray(_n(4, 5), jnp.bfloat16)
    t = jnp.array([0, 4, 2, 1])
    out = F.cross_entropy(x, t)
    assert out.dtype == jnp.bfloat16
    close(out.astype(jnp.float32), F.cross_entropy(x.astype(jnp.float32), t), rtol=1e-2)
    out16 = F.mse_loss(jnp.asarray(_n(3), jnp.float16), jnp.asarray(_n(3), jnp.float16))
    assert out16.dtype == jnp.float16


def test_l1_kinks_follow_torch():
    x = np.array([0.0, 1.0, 2.0])
    for fn in ("l1_loss", "smooth_l1_loss"):
        kw = {"beta": 0.0} if fn == "smooth_l1_loss" else {}
        kw["reduction"] = "sum"
        gt = _run(getattr(TF, fn), dict(input=x, target=np.array([0.0, 1.0, 3.0])), kw, ("target",), "torch")[1]
        gj = _run(getattr(F, fn), dict(input=x, target=np.array([0.0, 1.0, 3.0])), kw, ("target",), "jax")[1]
        close(gj, gt)
    # clamp_min kinks pass the gradient (torch), the margin loops' `z > 0` do not
    z = dict(input1=np.array([1.0, 0.5]), input2=np.array([1.0, 0.0]), target=np.array([1.0, 1.0]))
    close(_run(F.margin_ranking_loss, z, {"margin": 0.0}, ("target",), "jax")[1],
          _run(TF.margin_ranking_loss, z, {"margin": 0.0}, ("target",), "torch")[1])
    m = dict(input=np.array([[1.0, 0.0, 2.0]]), target=np.array([2]))
    close(_run(F.multi_margin_loss, m, {}, (), "jax")[1], _run(TF.multi_margin_loss, m, {}, (), "torch")[1])


# --------------------------------------------------------------------------- modules


MODULES = [
    (nn.CrossEntropyLoss, torch.nn.CrossEntropyLoss, dict(weight=_u(4), ignore_index=1, label_smoothing=0.1),
     (_n(5, 4), np.array([0, 1, 3, 2, 1]))),
    (nn.NLLLoss, torch.nn.NLLLoss, dict(weight=_u(4)), (_n(5, 4), np.array([0, 1, 3, 2, 1]))),
    (nn.NLLLoss2d, torch.nn.NLLLoss2d, {}, (_n(2, 3, 2, 2), _idx(3, 2, 2, 2))),
    (nn.BCELoss, torch.nn.BCELoss, dict(weight=_u(3)), (_u(2, 3), _u(2, 3))),
    (nn.BCEWithLogitsLoss, torch.nn.BCEWithLogitsLoss, dict(pos_weight=_u(3)), (_n(2, 3), _u(2, 3))),
    (nn.MultiLabelSoftMarginLoss, torch.nn.MultiLabelSoftMarginLoss, dict(weight=_u(3)), (_n(2, 3), _u(2, 3))),
    (nn.MultiLabelMarginLoss, torch.nn.MultiLabelMarginLoss, {}, (_n(2, 3), np.array([[2, -1, 0], [0, 1, -1]]))),
    (nn.MultiMarginLoss, torch.nn.MultiMarginLoss, dict(p=2, margin=0.5, weight=_u(3)), (_n(2, 3), np.array([2, 0]))),
    (nn.SoftMarginLoss, torch.nn.SoftMarginLoss, {}, (_n(2, 3), _pm1(2, 3))),
    (nn.L1Loss, torch.nn.L1Loss, {}, (_n(2, 3), _n(2, 3))),
    (nn.MSELoss, torch.nn.MSELoss, dict(reduction="sum"), (_n(2, 3), _n(2, 3))),
    (nn.HuberLoss, torch.nn.HuberLoss, dict(delta=0.5), (_n(2, 3), _n(2, 3))),
    (nn.SmoothL1Loss, torch.nn.SmoothL1Loss, dict(beta=0.5), (_n(2, 3), _n(2, 3))),
    (nn.KLDivLoss, torch.nn.KLDivLoss, dict(reduction="batchmean", log_target=True),
     (np.log(_probs(2, 3)), np.log(_probs(2, 3)))),
    (nn.PoissonNLLLoss, torch.nn.PoissonNLLLoss, dict(log_input=False, full=True, eps=1e-3), (_u(2, 3), _u(2, 3, hi=4))),
    (nn.GaussianNLLLoss, torch.nn.GaussianNLLLoss, dict(full=True, eps=1e-3), (_n(2, 3), _n(2, 3), _u(2, 3))),
    (nn.MarginRankingLoss, torch.nn.MarginRankingLoss, dict(margin=0.2), (_n(3), _n(3), _pm1(3))),
    (nn.HingeEmbeddingLoss, torch.nn.HingeEmbeddingLoss, dict(margin=0.5), (_n(3), _pm1(3))),
    (nn.CosineEmbeddingLoss, torch.nn.CosineEmbeddingLoss, dict(margin=0.2), (_n(3, 2), _n(3, 2), _pm1(3))),
    (nn.TripletMarginLoss, torch.nn.TripletMarginLoss, dict(margin=2.0, p=1.0, swap=True),
     (_n(3, 2), _n(3, 2), _n(3, 2))),
    (nn.TripletMarginWithDistanceLoss, torch.nn.TripletMarginWithDistanceLoss, dict(margin=2.0, swap=True),
     (_n(3, 2), _n(3, 2), _n(3, 2))),
]


@pytest.mark.parametrize("ours,theirs,kwargs,inputs", MODULES, ids=[m[0].__name__ for m in MODULES])
def test_modules_vs_torch(ours, theirs, kwargs, inputs):
    tkw = {k: to_torch(v) if isinstance(v, np.ndarray) else v for k, v in kwargs.items()}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # NLLLoss2d's deprecation
        expected = theirs(**tkw)(*[to_torch(a) for a in inputs])
        state_dict = theirs(**tkw).state_dict()  # torch's buffers (weight, pos_weight), or nothing
    # built with other class weights (reversed), which torch's state_dict then replaces
    module = ours(**{k: jnp.asarray(v[::-1]) if isinstance(v, np.ndarray) else v for k, v in kwargs.items()})
    variables = module.init(jax.random.key(0), *inputs)
    assert set(variables) <= {"batch_stats"} and list(interop.flatten_variables(variables.get("batch_stats", {}))) \
        == list(state_dict)
    apply = jax.jit(module.apply)
    close(apply(interop.load_state_dict(variables, state_dict) if variables else {}, *inputs), expected)
    if not variables:
        close(module(*inputs), expected)  # called unbound, as torch's criterion(logits, y)
    if not variables:
        return
    unloaded = theirs(**{k: v.flip(-1) if isinstance(v, torch.Tensor) else v for k, v in tkw.items()})
    without = unloaded(*[to_torch(a) for a in inputs])  # without variables (or unbound): the argument
    close(apply({}, *inputs), without)
    close(module(*inputs), without)


class JitVariantsTest(chex.TestCase):
    @chex.variants(with_jit=True, without_jit=True)
    def test_cross_entropy_module(self):
        x, t = _n(4, 3), np.array([0, 2, 1, 2])
        module = nn.CrossEntropyLoss(label_smoothing=0.1, ignore_index=1)
        fn = self.variant(lambda x, t: module.apply({}, x, t))
        close(fn(x, t), TF.cross_entropy(torch.tensor(x), torch.tensor(t), label_smoothing=0.1, ignore_index=1))

    @chex.variants(with_jit=True, without_jit=True)
    def test_bce_with_logits(self):
        x, t, pw = _n(3, 2), _u(3, 2), _u(2)
        fn = self.variant(lambda x, t: F.binary_cross_entropy_with_logits(x, t, pos_weight=pw))
        close(fn(x, t), TF.binary_cross_entropy_with_logits(torch.tensor(x), torch.tensor(t), pos_weight=torch.tensor(pw)))


def test_jit_out_of_range_targets_give_nan():
    x = jnp.asarray(_n(3, 4))
    ce = jax.jit(lambda t: F.cross_entropy(x, t, reduction="none"))
    out = ce(jnp.array([0, 7, -100]))
    assert np.isfinite(out[0]) and np.isnan(out[1]) and out[2] == 0.0
    assert np.isnan(jax.jit(lambda t: F.cross_entropy(x, t))(jnp.array([0, -3, 1])))
    assert np.isnan(jax.jit(lambda t: F.multi_margin_loss(x, t, reduction="none"))(jnp.array([0, 4, 1])))[1]
    mlm = jax.jit(lambda t: F.multilabel_margin_loss(x[:1], t, reduction="none"))(jnp.array([[0, 9, -1, 1]]))
    assert np.isnan(mlm).all()


def test_vmap_matches_batched():
    x, t = jnp.asarray(_n(5, 4)), jnp.array([0, 3, 1, 2, 3])
    per = jax.jit(jax.vmap(lambda x, t: F.cross_entropy(x, t)))(x, t)  # unbatched (C,) / () per example
    close(per, F.cross_entropy(x, t, reduction="none"))
    a, p, n = (jnp.asarray(_n(5, 2, 3)) for _ in range(3))
    close(jax.jit(jax.vmap(lambda a, p, n: F.triplet_margin_loss(a, p, n)))(a, p, n),
          [TF.triplet_margin_loss(*(torch.tensor(np.asarray(v[i])) for v in (a, p, n))) for i in range(5)])


def test_higher_order_gradients():
    """Second order, forward and reverse, through two smooth losses at once (one function, jitted)."""
    t, v = jnp.asarray(_probs(2, 3)), jnp.asarray(_u(2, 3, lo=0.5, hi=1.5))
    y = jnp.asarray(_n(2, 3))  # the other losses: first order in the parity table

    @jax.jit
    def f(x, v):
        return F.cross_entropy(x, t, label_smoothing=0.1) + F.gaussian_nll_loss(x, y, v)

    check_grads_through_hessian(f, (jnp.asarray(_n(2, 3)), v))


@settings(max_examples=6)
@given(spatial=st.lists(st.integers(1, 3), min_size=0, max_size=2), n=st.integers(1, 3), c=st.integers(1, 4),
       reduction=st.sampled_from(REDUCTIONS), smooth=st.sampled_from([0.0, 0.3]), seed=st.integers(0, 2**16))
def test_hypothesis_cross_entropy_shapes(spatial, n, c, reduction, smooth, seed):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, c, *spatial))
    t = rng.integers(0, c, size=(n, *spatial))
    ours = jax.jit(lambda x, t: F.cross_entropy(x, t, reduction=reduction, label_smoothing=smooth))(x, t)
    theirs = TF.cross_entropy(torch.tensor(x), torch.tensor(t), reduction=reduction, label_smoothing=smooth)
    assert ours.shape == tuple(theirs.shape)
    close(ours, theirs)


@settings(max_examples=6)
@given(shape=st.lists(st.integers(1, 3), min_size=0, max_size=3), reduction=st.sampled_from(REDUCTIONS),
       beta=st.sampled_from([0.0, 0.5]), seed=st.integers(0, 2**16))
def test_hypothesis_smooth_l1_shapes(shape, reduction, beta, seed):
    rng = np.random.default_rng(seed)
    x, t = rng.normal(size=shape), rng.normal(size=shape)
    close(jax.jit(lambda x, t: F.smooth_l1_loss(x, t, reduction=reduction, beta=beta))(x, t),
          TF.smooth_l1_loss(torch.tensor(x), torch.tensor(t), reduction=reduction, beta=beta))


# --------------------------------------------------------------------------- CTC

T_, N_, C_ = 6, 3, 4
_ctc = jax.jit(F.ctc_loss, static_argnames=("blank", "reduction", "zero_infinity"))


def _ctc_case():
    rng = np.random.default_rng(5)
    logits = rng.normal(size=(T_, N_, C_))
    targets = np.array([[1, 1, 2], [3, 2, 0], [2, 0, 0]])  # repeated label needs a blank between
    return logits, targets, np.array([6, 5, 3]), np.array([3, 2, 1])


@pytest.mark.parametrize("layout", ["padded", "concatenated"])
def test_ctc_vs_torch(layout):
    logits, targets, il, tl = _ctc_case()
    if layout == "concatenated":
        targets = np.concatenate([targets[i, :tl[i]] for i in range(N_)])
    # gradients compared through log_softmax: torch's raw d/d(log_probs) assumes normalised inputs
    kw = dict(input_lengths=il, target_lengths=tl, reduction="none")
    out_t, g_t, e_t = _run(lambda logits, **k: TF.ctc_loss(logits.log_softmax(-1), torch.tensor(targets), **k),
                           dict(logits=logits), {k: to_torch(v) if k != "reduction" else v for k, v in kw.items()},
                           (), "torch", ("mean", "sum"))
    out_j, g_j, e_j = _run(lambda logits, **k: F.ctc_loss(jax.nn.log_softmax(logits, -1), targets, **k),
                           dict(logits=logits), kw, (), "jax", ("mean", "sum"))
    close(out_j, out_t)
    close(g_j, g_t, rtol=1e-9)
    close(e_j, e_t)
    if layout == "concatenated":  # traced targets and lengths: padded to len(targets) inside jit
        traced = _ctc(jax.nn.log_softmax(logits, -1), targets, il, tl, reduction="none")
        close(traced, out_t)


def test_ctc_blank_unbatched_module():
    logits, targets, il, tl = _ctc_case()
    lp = jax.nn.log_softmax(jnp.asarray(logits), -1)
    tgt = np.where(targets == 3, 0, targets)  # classes 0..2, blank = 3
    expected = TF.ctc_loss(torch.tensor(np.asarray(lp)), torch.tensor(tgt), torch.tensor(il), torch.tensor(tl),
                           blank=3, reduction="none")
    close(jax.jit(nn.CTCLoss(blank=3, reduction="none").apply)({}, lp, tgt, il, tl), expected)
    close(_ctc(lp[:, 1], tgt[1], il[1], tl[1], blank=3, reduction="sum"), expected[1])
    # torch also takes an unbatched sequence's targets padded, as (1, S)
    close(_ctc(lp[:, 1], tgt[1:2], il[1], tl[1], blank=3, reduction="sum"), expected[1])


@pytest.mark.parametrize("reduction", ["none", "mean"])
def test_multi_margin_takes_every_target_layout_torch_takes(reduction):
    """torch reads a 0-D input as one class and any target of one entry per row (0-D or 1-D), shaping
    the unreduced loss like the target."""
    rng = np.random.default_rng(4)
    for xs, ts in [((), ()), ((), (1,)), ((3,), (1,)), ((1, 3), ()), ((1, 3), (1,)), ((2, 3), (2,))]:
        x, w = rng.normal(size=xs), rng.uniform(size=xs[-1:] or (1,))
        t = rng.integers(0, xs[-1] if xs else 1, ts)
        expected = TF.multi_margin_loss(torch.tensor(x), torch.tensor(t), p=2, weight=torch.tensor(w),
                                        margin=1.5, reduction=reduction).numpy()
        got = F.multi_margin_loss(x, t, p=2, weight=w, margin=1.5, reduction=reduction)
        assert got.shape == expected.shape, (xs, ts)
        close(got, expected)


def test_ctc_zero_infinity_and_jit():
    logits, targets, il, tl = _ctc_case()
    il = np.array([6, 1, 3])  # entry 1: two labels in one frame, impossible
    lp_t = torch.tensor(logits, requires_grad=True)
    TF.ctc_loss(lp_t.log_softmax(-1), torch.tensor(targets), torch.tensor(il), torch.tensor(tl),
                zero_infinity=True).backward()

    def f(logits, il, tl, zero_infinity=True, reduction="mean"):
        return _ctc(jax.nn.log_softmax(logits, -1), targets, il, tl, zero_infinity=zero_infinity, reduction=reduction)

    val, grad = jax.value_and_grad(f)(jnp.asarray(logits), il, tl)
    assert np.isfinite(val) and np.isfinite(grad).all()
    close(grad, lp_t.grad)
    assert np.isinf(f(jnp.asarray(logits), il, tl, zero_infinity=False, reduction="none")[1])
    bad = f(jnp.asarray(logits), jnp.array([7, 6, 3]), jnp.array([3, 4, 1]), zero_infinity=False, reduction="none")
    assert np.isnan(bad[:2]).all() and np.isfinite(bad[2])  # traced lengths out of range: NaN, not another loss


# --------------------------------------------------------------------------- errors

X34, T3 = _n(3, 4), np.array([0, 1, 2])
ERRORS = [
    (lambda: F.cross_entropy(X34, T3 * 1.0), TypeError, r"cross_entropy: .*integer dtype.*float64"),
    (lambda: F.cross_entropy(X34, np.array([0, 1])), ValueError, r"cross_entropy: expected target .*\(3,\).*got .*\(2,\)"),
    (lambda: F.cross_entropy(X34, np.array([0, 4, 1])), IndexError, r"cross_entropy: target index 4 .*4 classes"),
    (lambda: F.cross_entropy(X34, T3, weight=np.ones(3)), ValueError, r"cross_entropy: weight .*4 classes.*\(3,\)"),
    (lambda: F.cross_entropy(X34, T3, label_smoothing=1.5), ValueError, r"cross_entropy: label_smoothing"),
    (lambda: F.cross_entropy(X34, R.integers(0, 4, (3, 4))), TypeError, r"cross_entropy: .*probabilities"),
    (lambda: F.cross_entropy(np.array(1.0), np.array(0)), ValueError, r"cross_entropy: .*0-D"),
    (lambda: F.cross_entropy(X34, T3, reduction="avg"), ValueError, r"cross_entropy: 'avg' is not a valid"),
    (lambda: F.nll_loss(X34, _probs(3, 4)), ValueError, r"nll_loss: expected target of class indices"),
    (lambda: F.nll_loss(X34, np.array([0, -1, 1])), IndexError, r"nll_loss: target index -1 .*4 classes"),
    (lambda: F.binary_cross_entropy(_u(3), _u(2)), ValueError, r"binary_cross_entropy: expected target .*\(3,\)"),
    (lambda: F.binary_cross_entropy(np.array([0.5, 1.5]), _u(2)), ValueError, r"binary_cross_entropy: .*between 0 and 1"),
    (lambda: F.binary_cross_entropy_with_logits(X34, _u(3, 4), pos_weight=np.ones(3)), ValueError,
     r"binary_cross_entropy_with_logits: pos_weight of shape \(3,\)"),
    (lambda: F.multi_margin_loss(X34, T3, p=3), ValueError, r"multi_margin_loss: only p == 1 and p == 2"),
    (lambda: F.multi_margin_loss(X34, np.array([[0], [1], [2]])), ValueError, r"multi_margin_loss: expected target"),
    (lambda: F.multi_margin_loss(_n(2, 3, 4), T3), ValueError, r"multi_margin_loss: expected input of shape"),
    (lambda: F.multilabel_margin_loss(X34, np.array([[4, -1, 0, 0]] * 3)), IndexError,
     r"multilabel_margin_loss: target value 4"),
    (lambda: F.multilabel_margin_loss(X34, np.array([[3, 0, -1, 7]] * 3)), IndexError,  # after the -1 too
     r"multilabel_margin_loss: target value 7 .*\[-1, 3\]"),
    (lambda: F.multilabel_margin_loss(X34, np.array([[3, -2, 0, 1]] * 3)), IndexError,
     r"multilabel_margin_loss: target value -2"),
    (lambda: F.multilabel_margin_loss(_n(2, 0), np.zeros((2, 0), np.int64)), ValueError,
     r"multilabel_margin_loss: expected input with at least one class"),
    (lambda: F.cross_entropy(X34, _probs(3, 4), ignore_index=1), ValueError,
     r"cross_entropy: ignore_index=1 is not supported for a target of class probabilities"),
    (lambda: F.binary_cross_entropy(_u(3), _u(3), weight=np.ones((2, 3))), ValueError,
     r"binary_cross_entropy: weight of shape \(2, 3\) does not broadcast to the input's shape \(3,\)"),
    (lambda: F.binary_cross_entropy_with_logits(_n(3), _u(3), pos_weight=np.ones((2, 3))), ValueError,
     r"binary_cross_entropy_with_logits: pos_weight of shape \(2, 3\)"),
    (lambda: F.triplet_margin_loss(X34, X34, X34, margin=0.0), ValueError,
     r"triplet_margin_loss: margin must be greater than 0"),
    (lambda: nn.TripletMarginLoss(margin=-1.0), ValueError, r"TripletMarginLoss: margin must be greater than 0"),
    (lambda: F.ctc_loss(np.zeros((4, 3)), [1, 2, 1], 4, 2), ValueError, r"ctc_loss: .*sum must be len\(targets\)"),
    (lambda: F.ctc_loss(np.zeros((4, 0, 3)), np.zeros((0, 2), np.int64), [], []), ValueError,
     r"ctc_loss: log_probs must not be empty"),
    (lambda: F.multilabel_margin_loss(X34, X34), TypeError, r"multilabel_margin_loss: .*integer"),
    (lambda: F.l1_loss(X34, X34, weight=np.ones(4)), ValueError, r"l1_loss: weight and input must have the same size"),
    (lambda: F.mse_loss(X34, _n(2, 4)), ValueError, r"mse_loss: target of shape \(2, 4\) does not broadcast"),
    (lambda: F.smooth_l1_loss(X34, X34, beta=-1.0), ValueError, r"smooth_l1_loss: beta"),
    (lambda: F.huber_loss(X34, X34, delta=0.0), ValueError, r"huber_loss: delta"),
    (lambda: F.kl_div(X34, X34, reduction="batch"), ValueError, r"kl_div: 'batch' is not a valid"),
    (lambda: F.gaussian_nll_loss(X34, X34, -_u(3, 4)), ValueError, r"gaussian_nll_loss: var has negative"),
    (lambda: F.gaussian_nll_loss(X34, X34, -1.0), ValueError, r"gaussian_nll_loss: var has negative"),
    (lambda: F.gaussian_nll_loss(X34, X34, _u(4)), ValueError, r"gaussian_nll_loss: var of shape \(4,\) is of incorrect"),
    (lambda: F.margin_ranking_loss(_n(3), _n(3, 1), _pm1(3)), ValueError, r"margin_ranking_loss: .*same dimension"),
    (lambda: F.cosine_embedding_loss(X34, X34, _pm1(3, 1)), ValueError, r"cosine_embedding_loss: 0-D or 1-D target"),
    (lambda: F.cosine_embedding_loss(_n(4), _n(4), _pm1(3)), ValueError, r"cosine_embedding_loss: 1-D target expects 2-D"),
    (lambda: F.triplet_margin_loss(X34, X34, _n(4)), ValueError, r"triplet_margin_loss: .*same number of dimensions"),
    (lambda: nn.TripletMarginLoss(p=-1.0).apply({}, X34, X34, X34), ValueError, r"TripletMarginLoss: p must be >= 0"),
    # a target that does not broadcast raises naming the loss (JAX's broadcasting error did not)
    (lambda: F.soft_margin_loss(X34, _n(3, 2)), ValueError, r"soft_margin_loss: target of shape \(3, 2\) does not"),
    (lambda: F.multilabel_soft_margin_loss(X34, _n(3, 2)), ValueError, r"multilabel_soft_margin_loss: target"),
    (lambda: F.poisson_nll_loss(X34, _n(3, 2)), ValueError, r"poisson_nll_loss: target of shape"),
    (lambda: F.kl_div(X34, _n(3, 2), reduction="sum"), ValueError, r"kl_div: target of shape"),
    (lambda: F.hinge_embedding_loss(X34, _n(3, 2)), ValueError, r"hinge_embedding_loss: target of shape"),
    (lambda: F.triplet_margin_with_distance_loss(X34, X34, X34, margin=0.0), ValueError,
     r"triplet_margin_with_distance_loss: margin must be greater than 0"),
    (lambda: nn.CrossEntropyLoss().apply({}, X34, np.array([0, 9, 1])), IndexError,
     r"CrossEntropyLoss: target index 9"),
    (lambda: nn.BCELoss(reduction="mean_all"), ValueError, r"BCELoss: 'mean_all' is not a valid"),
    (lambda: nn.MultiMarginLoss(p=3), ValueError, r"MultiMarginLoss: only p == 1"),
    (lambda: nn.TripletMarginWithDistanceLoss(margin=-1.0), ValueError, r"TripletMarginWithDistanceLoss: margin"),
    (lambda: nn.GaussianNLLLoss().apply({}, X34, X34, _u(2)), ValueError, r"GaussianNLLLoss: var of shape"),
]
LP = np.log(np.full((5, 2, 3), 1 / 3))
CTC_ERRORS = [
    (lambda: F.ctc_loss(LP[None], [[1]] * 2, [5, 5], [1, 1]), ValueError, r"ctc_loss: expected log_probs of shape"),
    (lambda: F.ctc_loss(LP[:0], [[1]] * 2, [0, 0], [1, 1]), ValueError, r"ctc_loss: log_probs must not be empty"),
    (lambda: F.ctc_loss(LP, np.array([[1.0], [1.0]]), [5, 5], [1, 1]), TypeError, r"ctc_loss: targets must hold integer"),
    (lambda: F.ctc_loss(LP, [[1], [1]], [5, 5, 5], [1, 1]), ValueError, r"ctc_loss: input_lengths must have shape \(2,\)"),
    (lambda: F.ctc_loss(LP, [[1], [1]], [5, 5], [1.0, 1.0]), TypeError, r"ctc_loss: target_lengths must hold integers"),
    (lambda: F.ctc_loss(LP, [[1], [1]], [6, 5], [1, 1]), ValueError, r"ctc_loss: input_lengths must be in \[0, 5\]"),
    (lambda: F.ctc_loss(LP, [[1], [1]], [5, 5], [2, 1]), ValueError, r"ctc_loss: target_lengths \[2, 1\] do not fit"),
    (lambda: F.ctc_loss(LP, [1, 2], [5, 5], [2, 1]), ValueError, r"ctc_loss: .*sum must be len\(targets\)"),
    (lambda: F.ctc_loss(LP, [[1], [3]], [5, 5], [1, 1]), IndexError, r"ctc_loss: target index 3 .*3 classes"),
    (lambda: F.ctc_loss(LP, [[1], [1]], [5, 5], [1, 1], blank=3), IndexError, r"ctc_loss: blank 3"),
    (lambda: F.ctc_loss(LP, [[[1]], [[1]]], [5, 5], [1, 1]), ValueError, r"ctc_loss: targets must be padded"),
    (lambda: nn.CTCLoss().apply({}, LP[:, 0], [[1], [1]], 5, 1), ValueError, r"CTCLoss: unbatched log_probs .* \(1, S\)"),
]


@pytest.mark.parametrize("call,exc,match", ERRORS + CTC_ERRORS, ids=[m for _, _, m in ERRORS + CTC_ERRORS])
def test_errors(call, exc, match):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with pytest.raises(exc, match=match):
            call()


@pytest.mark.parametrize("n,c,most", [(4, 100, 90), (6, 40, 3)])
def test_multilabel_margin_long_target_lists_match_torch(n, c, most):
    # target lists longer than one scan block (32 slots), duplicates, entries after the -1, ties
    rng = np.random.default_rng(n)
    x = np.round(rng.normal(size=(n, c)) * 3) / 3
    t = np.full((n, c), -1)
    for r in range(n):
        k = int(rng.integers(0, most + 1))
        t[r, :k] = rng.integers(0, c, k)
        if c > k + 2:
            t[r, k + 1] = rng.integers(0, c)
    xt = torch.tensor(x, requires_grad=True)
    want = torch.nn.functional.multilabel_margin_loss(xt, torch.tensor(t), reduction="none")
    g = rng.normal(size=n)
    want.backward(torch.tensor(g))
    got, vjp = jax.vjp(lambda a: F.multilabel_margin_loss(a, jnp.asarray(t), reduction="none"), jnp.asarray(x))
    close(got, want)
    close(vjp(jnp.asarray(g))[0], xt.grad)


# --------------------------------------------------------------------------- special values


_NAN, _INF = float("nan"), float("inf")
_ONES2 = np.ones(2)
SPECIAL_CASES = [  # (id, name, positional arrays (the float ones differentiated), keywords)
    ("margin_ranking_nan", "margin_ranking_loss", ([_NAN, 0.5], [0.0, 0.0], [1.0, -1.0]), {"reduction": "none"}),
    ("hinge_embedding_nan", "hinge_embedding_loss", ([_NAN, 0.5], [-1.0, -1.0]), {"reduction": "none"}),
    ("triplet_nan", "triplet_margin_loss", ([[0.0, 0.0]], [[_NAN, 1.0]], [[0.0, 0.0]]), {}),
    ("cosine_embedding_inf", "cosine_embedding_loss", ([[0.0, 0.0]], [[_INF, 0.0]], [-1.0]), {}),
    ("cross_entropy_inf_logit", "cross_entropy", ([[_INF, 0.0], [1.0, 2.0]], np.array([1, 0])), {}),
    ("gaussian_nll_inf_var", "gaussian_nll_loss", ([0.0, 1.0], [0.0, 0.0], [_INF, 2.0]), {}),
    ("huber_inf_difference", "huber_loss", ([_INF, -_INF, 0.5], [0.0, 0.0, 0.0]), {"reduction": "sum"}),
    ("huber_inf_delta", "huber_loss", ([3.0, -2.0], [0.0, 0.0]), {"delta": _INF, "reduction": "sum"}),
    ("smooth_l1_inf_difference", "smooth_l1_loss", ([-_INF, 0.5], [0.0, 0.0]), {"reduction": "sum"}),
    ("l1_nan", "l1_loss", ([_NAN, 0.5], [0.0, 0.0]), {"reduction": "sum"}),
    ("bce_logits_far_left", "binary_cross_entropy_with_logits", ([-30.0, -100.0, 40.0], [0.0, 0.0, 1.0]),
     {"reduction": "sum"}),
    ("bce_logits_pos_weight", "binary_cross_entropy_with_logits", ([-30.0, 2.0, 40.0], [0.0, 0.5, 1.0]),
     {"pos_weight": np.array([3.0, 3.0, 3.0]), "reduction": "sum"}),
    ("normalize_nan", "normalize", ([[_NAN, 1.0], [3.0, 4.0]],), {}),
    ("pairwise_distance_p1_nan", "pairwise_distance", ([[_NAN, 1.0]], [[0.0, 0.0]]), {"p": 1.0}),
    ("pairwise_distance_pinf_nan", "pairwise_distance", ([[_NAN, 1.0, 3.0]], [[0.0, 0.0, 0.0]]), {"p": _INF}),
]


@pytest.mark.parametrize("name,arrays,kw", [c[1:] for c in SPECIAL_CASES], ids=[c[0] for c in SPECIAL_CASES])
def test_special_values_like_torch(name, arrays, kw):
    """NaN and infinities (values and gradients) as torch, one element per case where torch's
    clamp_min keeps NaN, sgn(NaN) is 0, and an unused branch's 0 * inf stays out of the gradient;
    BCE with logits keeps sigmoid(x) - t exact far from 0 (autodiff's 1 - sigmoid(-x) cancels)."""
    arrays = [np.asarray(a, np.float64) if np.asarray(a).dtype.kind == "f" else np.asarray(a) for a in arrays]
    kw_t = {k: torch.tensor(v) if isinstance(v, np.ndarray) else v for k, v in kw.items()}
    kw_j = {k: jnp.asarray(v) if isinstance(v, np.ndarray) else v for k, v in kw.items()}
    want, want_grads = torch_fwd_bwd(lambda *ts: getattr(TF, name)(*ts, **kw_t), np.ones(()), *arrays)
    got, got_grads = jax_fwd_bwd(lambda *xs: getattr(F, name)(*xs, **kw_j), np.ones(np.shape(want)),
                                 *(jnp.asarray(a) for a in arrays))
    close(got, want, rtol=1e-12, atol=0, err_msg="value")
    for i, (g, w) in enumerate(zip(got_grads, want_grads)):
        if w is not None:  # torch has no derivative for some targets
            close(g, w, rtol=1e-12, atol=0, err_msg=f"gradient {i}")


def test_triplet_margin_loss_p0_counts_as_torch():
    """p = 0 counts the entries of ``a - p + eps`` that are not 0, as torch (it was rejected);
    the count has no gradient (torch gives None, we give zeros)."""
    a, p, n = _n(4, 3), _n(4, 3), _n(4, 3)
    for reduction in ("mean", "none"):
        want = TF.triplet_margin_loss(*(torch.tensor(v) for v in (a, p, n)), p=0, margin=2.0, reduction=reduction)
        close(F.triplet_margin_loss(a, p, n, p=0, margin=2.0, reduction=reduction), want.numpy())
    assert not np.asarray(jax.grad(lambda a: F.triplet_margin_loss(a, p, n, p=0))(a)).any()


def test_uint8_targets_ignore_by_value():
    """uint8 class targets (segmentation masks): JAX compared them with ignore_index=-100 as 156,
    silently dropping class 156; torch compares values."""
    x = np.random.default_rng(0).normal(size=(3, 160))
    t = np.array([156, 3, 156])
    for fn in ("cross_entropy", "nll_loss"):
        want = getattr(TF, fn)(torch.tensor(x), torch.tensor(t), reduction="none")  # int64: no wrap in torch
        close(getattr(F, fn)(jnp.asarray(x), jnp.asarray(t, jnp.uint8), reduction="none"), want)
    close(F.cross_entropy(jnp.asarray(x), jnp.asarray(t, jnp.uint8), label_smoothing=0.1),
          TF.cross_entropy(torch.tensor(x), torch.tensor(t), label_smoothing=0.1))
    # linear_cross_entropy's mean divides by the weight of the same targets (its own comparison had
    # dropped class 156 from it: 3x torch's mean)
    h, w = np.random.default_rng(1).normal(size=(3, 4)), np.random.default_rng(2).normal(size=(160, 4))
    wt = torch.tensor(w, requires_grad=True)
    want = TF.cross_entropy(torch.tensor(h) @ wt.T, torch.tensor(t))
    want.backward()
    for chunk_size in (None, 2):
        loss, dw = jax.value_and_grad(lambda w_: F.linear_cross_entropy(
            jnp.asarray(h), w_, jnp.asarray(t, jnp.uint8), chunk_size=chunk_size))(jnp.asarray(w))
        close(loss, want)
        close(dw, wt.grad)
    # 6 classes, chunks of 2 rows: the padded row's target had been ignore_index, 156 in uint8, an
    # out-of-range class whose NaN loss (sliced off) times a zero cotangent made dW NaN
    t6, w6 = np.array([0, 5, 2]), w[:6]
    wt = torch.tensor(w6, requires_grad=True)
    TF.cross_entropy(torch.tensor(h) @ wt.T, torch.tensor(t6)).backward()
    dw = jax.grad(lambda w_: F.linear_cross_entropy(jnp.asarray(h), w_, jnp.asarray(t6, jnp.uint8),
                                                    chunk_size=2))(jnp.asarray(w6))
    close(dw, wt.grad)


def test_loss_dtype_and_nan_rules_as_torch():
    # a float var with integer input promotes (it was truncated to 0 and clamped to eps: 2e5)
    close(F.gaussian_nll_loss(jnp.array([1, 2, 3]), jnp.array([1.5, 2.0, 2.0]), 0.5),
          TF.gaussian_nll_loss(torch.tensor([1, 2, 3]), torch.tensor([1.5, 2.0, 2.0], dtype=torch.float64), 0.5))
    # the slope of a NaN difference is NaN in huber/smooth_l1 (torch's x/b branch), 0 only for l1
    for fn in ("smooth_l1_loss", "huber_loss", "l1_loss"):
        a = torch.tensor([float("nan"), 3.0, 0.2], dtype=torch.float64, requires_grad=True)
        getattr(TF, fn)(a, torch.zeros(3, dtype=torch.float64), reduction="sum").backward()
        close(jax.grad(lambda v: getattr(F, fn)(v, jnp.zeros(3), reduction="sum"))(jnp.array([np.nan, 3.0, 0.2])),
              a.grad)
    # probability targets: the result's dtype promotes with the target's
    logits, probs = jnp.array([[0.3, -1.2, 2.0]], jnp.bfloat16), jnp.array([[0.2, 0.3, 0.5]], jnp.float32)
    assert F.cross_entropy(logits, probs).dtype == jnp.float32


def test_kl_div_module_warns_about_mean_as_torch():
    x, t = jnp.log(jnp.array([[0.25, 0.75]])), jnp.array([[0.5, 0.5]])
    with pytest.warns(UserWarning, match="KLDivLoss: reduction: 'mean' divides the total loss"):
        nn.KLDivLoss().apply({}, x, t)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        nn.KLDivLoss(reduction="batchmean").apply({}, x, t)


def test_weighted_loss_inside_a_params_only_transform():
    """A model holding ``nn.CrossEntropyLoss(weight=w)`` under ``fnn.vmap`` over its params (an
    ensemble) or ``init(..., mutable=["params"])``: the buffer is not created where ``batch_stats`` is not
    mutable (it had raised ScopeCollectionNotFound), and the loss uses the argument."""
    import flax.linen as fnn

    w = jnp.array([1.0, 2.0, 3.0])

    class Net(fnn.Module):
        @fnn.compact
        def __call__(self, x, t):
            return nn.CrossEntropyLoss(weight=w)(nn.Linear(4, 3)(x), t)

    x, t = jnp.asarray(_n(2, 4)), jnp.array([0, 2])
    ensemble = fnn.vmap(Net, variable_axes={"params": 0}, split_rngs={"params": True}, in_axes=None, axis_size=3)
    v = ensemble().init(jax.random.key(0), x, t)
    assert set(v) == {"params"}
    p = v["params"]["Linear_0"]
    for i, got in enumerate(ensemble().apply(v, x, t)):
        logits = to_torch(x) @ to_torch(p["weight"][i]).double().T + to_torch(p["bias"][i]).double()
        close(got, TF.cross_entropy(logits, to_torch(t), weight=to_torch(w).double()), rtol=1e-5, atol=1e-6)
    assert nn.CrossEntropyLoss(weight=w).init(jax.random.key(0), x[:, :3], t, mutable=["params"]) == {}
