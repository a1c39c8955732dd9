"""AdaptiveLogSoftmaxWithLoss and LinearCrossEntropyLoss / F.linear_cross_entropy against torch
(float64): values and gradients (input and every parameter), torch's variable names, the chunked
path's peak memory against the unfused form, and the error paths."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
import torch.nn.functional as TF
from oracle import close, to_torch, variables_from_torch

from jaxlayers import functional as F
from jaxlayers import interop, nn

R = np.random.default_rng(0)

# --------------------------------------------------------------------------- adaptive softmax

IN, NCLS, CUT = 8, 12, [3, 7]


@pytest.fixture(scope="module")
def asm_pair():
    torch.manual_seed(0)
    tm = torch.nn.AdaptiveLogSoftmaxWithLoss(IN, NCLS, CUT, div_value=2.0, head_bias=True)
    return tm, nn.AdaptiveLogSoftmaxWithLoss(IN, NCLS, CUT, div_value=2.0, head_bias=True), variables_from_torch(tm)


def test_adaptive_variables_match_torch_names_and_shapes(asm_pair):
    tm, ours, _ = asm_pair
    x, t = jnp.ones((2, IN)), jnp.array([0, 11])
    v = jax.eval_shape(ours.init, jax.random.key(0), x, t)
    sd = interop.variables_to_state_dict(jax.tree_util.tree_map(lambda s: np.zeros(s.shape), v))
    assert {k: v.shape for k, v in sd.items()} == {k: tuple(v.shape) for k, v in tm.state_dict().items()}


def test_adaptive_forward_gradients_log_prob_predict(asm_pair):
    tm, ours, v = asm_pair
    x = R.normal(size=(6, IN))
    t = np.array([0, 2, 3, 6, 7, 11])  # shortlist, both clusters, every boundary
    cot = R.normal(size=6)
    xt = to_torch(x, requires_grad=True)
    out_t = tm(xt, torch.tensor(t))
    (out_t.loss + (out_t.output * to_torch(cot)).sum()).backward()

    def f(v, x):
        out = ours.apply(v, x, t)
        return out.loss + jnp.sum(out.output * cot), out

    (_, out), (gv, gx) = jax.jit(jax.value_and_grad(f, argnums=(0, 1), has_aux=True))(v, x)
    close(out.output, out_t.output)
    close(out.loss, out_t.loss)
    close(gx, xt.grad)
    close(interop.variables_to_state_dict(gv), {k: p.grad for k, p in tm.named_parameters()})

    @jax.jit
    def rest(v, x):
        return (ours.apply(v, x, method="log_prob"), ours.apply(v, x, method="predict"), ours.apply(v, x[3], t[3]),
                ours.apply(v, x[3], method="log_prob"))

    lp, pred, one, lp1 = rest(v, x)
    close(lp, tm.log_prob(torch.tensor(x)))
    assert np.array_equal(pred, tm.predict(torch.tensor(x)).numpy())
    close(one.output, tm(torch.tensor(x[3]), torch.tensor(t[3])).output)  # unbatched
    assert one.output.shape == ()
    close(lp1, tm.log_prob(torch.tensor(x[3:4]))[0])


@pytest.mark.parametrize("dtype", ["bfloat16", "float16"])
def test_adaptive_half_precision_log_softmax_in_float32(dtype):
    """The head's and tails' log-softmax of half-precision logits is computed in float32 and
    rounded once: on average no farther from the float64 result than torch's (rounded in the half
    type, ``x - max`` had been twice torch's error at the worst entry)."""
    torch.manual_seed(1)
    tm = torch.nn.AdaptiveLogSoftmaxWithLoss(IN, NCLS, CUT, div_value=2.0, head_bias=True).to(getattr(torch, dtype))
    x = torch.tensor(np.random.default_rng(3).normal(size=(512, IN)) * 4).to(getattr(torch, dtype))
    v = jax.tree.map(lambda a: a.astype(dtype), variables_from_torch(tm))
    ours = nn.AdaptiveLogSoftmaxWithLoss(IN, NCLS, CUT, div_value=2.0, head_bias=True, dtype=dtype)
    lp = ours.apply(v, jnp.asarray(x.float().numpy(), dtype), method="log_prob")
    assert lp.dtype == jnp.dtype(dtype)
    with torch.no_grad():
        half = tm.log_prob(x).double().numpy()
        truth = tm.double().log_prob(x.double()).numpy()  # the same rounded weights and inputs
    err, err_torch = np.abs(np.asarray(lp, np.float64) - truth), np.abs(half - truth)
    assert err.mean() <= err_torch.mean() and err.max() <= 1.5 * err_torch.max(), (err.mean(), err_torch.mean())


def test_adaptive_errors_and_jit_nan(asm_pair):
    _, ours, v = asm_pair
    x = jnp.ones((2, IN))
    with pytest.raises(IndexError, match=r"AdaptiveLogSoftmaxWithLoss: target index 12 .*12 classes"):
        ours.apply(v, x, jnp.array([0, 12]))
    with pytest.raises(ValueError, match=r"AdaptiveLogSoftmaxWithLoss: expected target of shape \(2,\)"):
        ours.apply(v, x, jnp.array([[0, 1]]))
    for bad in ([], [5, 3], [0, 4], [3, 12], [3, 3]):
        with pytest.raises(ValueError, match="AdaptiveLogSoftmaxWithLoss: cutoffs should be"):
            nn.AdaptiveLogSoftmaxWithLoss(IN, NCLS, bad).init(jax.random.key(0), x, jnp.array([0, 1]))
    out = jax.jit(lambda t: ours.apply(v, x, t))(jnp.array([1, 40]))
    assert np.isfinite(out.output[0]) and np.isnan(out.output[1]) and np.isnan(out.loss)


# --------------------------------------------------------------------------- linear cross entropy

N, H, C = 7, 3, 5


def _lce_case(probs=False):
    x, w, b = R.normal(size=(N, H)), R.normal(size=(C, H)), R.normal(size=(C,))
    if probs:
        t = R.uniform(0.1, 1, size=(N, C))
        t /= t.sum(1, keepdims=True)
    else:
        t = np.array([0, 4, 1, 2, 2, 3, 1])
    return x, w, b, t


LCE_CASES = [
    dict(),
    dict(weight=True, ignore_index=2, reduction="mean"),
    dict(weight=True, label_smoothing=0.2, ignore_index=1),
    dict(reduction="sum", label_smoothing=0.1),
    dict(reduction="none", weight=True),
    dict(probs=True, weight=True, label_smoothing=0.3),
    dict(probs=True, reduction="none"),
]


@pytest.mark.parametrize("case", LCE_CASES, ids=[str(sorted(c.items())) for c in LCE_CASES])
def test_linear_cross_entropy_vs_torch(case):
    case = dict(case)
    x, w, b, t = _lce_case(case.pop("probs", False))
    cw = R.uniform(0.2, 2.0, size=C) if case.pop("weight", False) else None
    xt, wt, bt = (to_torch(a, requires_grad=True) for a in (x, w, b))
    out_t = TF.linear_cross_entropy(xt, wt, torch.tensor(t), linear_bias=bt, weight=to_torch(cw), **case)
    cot = R.normal(size=tuple(out_t.shape))
    (out_t * to_torch(cot)).sum().backward()

    def f(x, w, b):
        return F.linear_cross_entropy(x, w, t, linear_bias=b, weight=cw, chunk_size=3, **case)  # 3 chunks, 2 padded

    out, vjp = jax.vjp(jax.jit(f), x, w, b)
    close(out, out_t)
    close(vjp(jnp.asarray(cot)), (xt.grad, wt.grad, bt.grad))


@pytest.mark.parametrize("chunk_size", [None, 64])
def test_linear_cross_entropy_half_precision_accumulates_in_float32(chunk_size):
    """bfloat16 input and weights: float32 throughout, rounded once. The bias gradient (a sum over rows)
    and the weight gradient summed over chunks had been accumulated in bfloat16, 7x torch's error; now
    every gradient is at least as close to the float64 truth as torch's bfloat16 ones."""
    rng = np.random.default_rng(0)
    n, v, d = 512, 300, 32
    bf = [jnp.asarray(a, jnp.bfloat16) for a in (rng.standard_normal((n, d)), rng.standard_normal((v, d)) * 0.2,
                                                rng.standard_normal(v))]
    t = rng.integers(0, v, n)
    exact = [torch.tensor(np.asarray(a, np.float64), requires_grad=True) for a in bf]
    TF.cross_entropy(TF.linear(*exact), torch.tensor(t)).backward()
    half = [torch.tensor(np.asarray(a, np.float64)).to(torch.bfloat16).requires_grad_() for a in bf]
    TF.cross_entropy(TF.linear(*half), torch.tensor(t)).backward()
    loss, grads = jax.value_and_grad(
        lambda x, w, b: F.linear_cross_entropy(x, w, jnp.asarray(t), linear_bias=b, chunk_size=chunk_size)
        .astype(jnp.float32), (0, 1, 2))(*bf)
    for g, e, h in zip(grads, exact, half):
        assert g.dtype == jnp.bfloat16
        err = lambda a: np.linalg.norm(np.asarray(a, np.float64) - e.grad.numpy()) / np.linalg.norm(e.grad.numpy())  # noqa: E731
        assert err(g) <= err(h.grad.double()), (err(g), err(h.grad.double()))


def test_linear_cross_entropy_zero_weight_sum_is_nan_as_torch():
    """torch divides the loss and the smoothing term by the weight sum apart: 0/0 is NaN (not inf)."""
    x, w, t, cw = R.normal(size=(2, 3)), np.eye(3), np.array([0, 0]), np.array([0.0, 1.0, 1.0])
    for ls in (0.0, 0.1):
        out = F.linear_cross_entropy(x, w, t, weight=cw, label_smoothing=ls)
        close(out, TF.linear_cross_entropy(to_torch(x), to_torch(w), torch.tensor(t), weight=to_torch(cw),
                                           label_smoothing=ls))
        assert np.isnan(out)


def test_linear_cross_entropy_kdim_unbatched_and_module():
    torch.manual_seed(1)
    tm = torch.nn.LinearCrossEntropyLoss(H, C, out_features=(2,), bias=True, label_smoothing=0.1)
    ours = nn.LinearCrossEntropyLoss(H, C, out_features=(2,), bias=True, label_smoothing=0.1)
    x, t = R.normal(size=(4, H)), R.integers(0, C, size=(4, 2))
    close(jax.jit(ours.apply)(variables_from_torch(tm), x, t), tm(torch.tensor(x), torch.tensor(t)))
    x1, w, _, _ = _lce_case()
    close(F.linear_cross_entropy(x1[0], w, 3), TF.linear_cross_entropy(torch.tensor(x1[0]), torch.tensor(w),
                                                                        torch.tensor(3)))


def test_linear_cross_entropy_peak_memory():
    """4096 tokens x 32000 classes, hidden 64, float32: compiled forward+backward temp memory of the
    chunked form is <= 1/4 of the unfused form's (lowered and compiled only, never run)."""
    x = jax.ShapeDtypeStruct((4096, 64), jnp.float32)
    w = jax.ShapeDtypeStruct((32000, 64), jnp.float32)
    t = jax.ShapeDtypeStruct((4096,), jnp.int32)

    def temp(f):
        return jax.jit(jax.grad(f, argnums=(0, 1))).lower(x, w, t).compile().memory_analysis().temp_size_in_bytes

    fused = temp(lambda x, w, t: F.linear_cross_entropy(x, w, t))
    unfused = temp(lambda x, w, t: F.cross_entropy(x @ w.T, t))
    assert unfused >= 4096 * 32000 * 4  # the logits exist there
    assert fused <= unfused / 4, (fused, unfused)


@pytest.mark.parametrize("call,exc,match", [
    (lambda: F.linear_cross_entropy(np.ones((2, 3)), np.ones((5, 4)), np.array([0, 1])), ValueError,
     r"linear_cross_entropy: input \(2, 3\) and linear_weight \(5, 4\) differ"),
    (lambda: F.linear_cross_entropy(np.ones((2, 3)), np.ones((5, 3)), np.ones((2, 5)) / 5, ignore_index=1),
     ValueError, r"linear_cross_entropy: ignore_index cannot be given"),
    (lambda: F.linear_cross_entropy(np.ones((2, 3)), np.ones((5, 3)), np.array([0, 1]), linear_bias=np.ones(4)),
     ValueError, r"linear_cross_entropy: expected linear_bias of shape \(5,\)"),
    (lambda: F.linear_cross_entropy(np.ones(3), np.ones((5, 2, 3)), np.array(0)), ValueError,
     r"linear_cross_entropy: a K-dimensional linear_weight"),
    (lambda: F.linear_cross_entropy(np.ones((2, 3)), np.ones((5, 3)), np.array([0, 5])), IndexError,
     r"linear_cross_entropy: target index 5 .*5 classes"),
    (lambda: F.linear_cross_entropy(np.ones((2, 3)), np.ones((5, 3)), np.array([0, 1, 2])), ValueError,
     r"linear_cross_entropy: expected target"),
    (lambda: F.linear_cross_entropy(np.ones((2, 3)), np.ones((5, 3)), np.array([0, 1]), weight=np.ones(4)),
     ValueError, r"linear_cross_entropy: weight must have shape \(5,\)"),
    (lambda: nn.LinearCrossEntropyLoss(3, 5, weight=np.ones(4)), ValueError,
     r"LinearCrossEntropyLoss: expected weight shape \(5,\)"),
    (lambda: nn.LinearCrossEntropyLoss(3, 5, reduction="avg"), ValueError, r"LinearCrossEntropyLoss: 'avg'"),
])
def test_linear_cross_entropy_errors(call, exc, match):
    with pytest.raises(exc, match=match):
        call()


@pytest.mark.slow  # the NNX construction runs linen's init eagerly (op by op): ~4 s of compiles
def test_nnx_twins(asm_pair):
    """jaxlayers.nnx builds these from the linen classes: variables at construction (the layer's
    ``_nnx_probe_inputs``), torch's keys."""
    from flax import nnx as fnnx

    from jaxlayers import nnx as jnnx

    tm, ours, v = asm_pair
    twin = jnnx.AdaptiveLogSoftmaxWithLoss(IN, NCLS, CUT, div_value=2.0, head_bias=True, param_dtype=jnp.float64,
                                           rngs=fnnx.Rngs(0))
    assert list(twin.state_dict()) == list(tm.state_dict())
    twin.load_state_dict(tm.state_dict())
    x, t = R.normal(size=(3, IN)), np.array([0, 5, 11])
    close(twin(x, t).loss, tm(torch.tensor(x), torch.tensor(t)).loss)
