"""Linear, Bilinear, LazyLinear, Identity and F.linear / F.bilinear against torch (float64)."""

import functools
import math

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from jaxlayers import functional as F
from jaxlayers import interop, nn
from oracle import close, to_numpy

RTOL, ATOL = 1e-10, 1e-12


t2n = to_numpy


def _torch_grads(out, cot, *tensors):
    out.backward(torch.from_numpy(cot))
    return [None if t.grad is None else t2n(t.grad) for t in tensors]


_close = functools.partial(close, rtol=RTOL, atol=ATOL)


# ---------------------------------------------------------------------------------- Linear


@pytest.mark.parametrize(
    "in_f,out_f,bias,shape",
    [(4, 3, True, (2, 4)), (4, 3, False, (2, 4)), (5, 2, True, (5,)), (3, 6, True, (2, 3, 3)), (1, 1, True, (3, 1))],
)
def test_linear_module_vs_torch(in_f, out_f, bias, shape, rng):
    tm = torch.nn.Linear(in_f, out_f, bias=bias)
    variables = interop.state_dict_to_variables(tm.state_dict())
    x = rng.standard_normal(shape)
    model = nn.Linear(in_f, out_f, bias=bias)

    def f(params, x):
        return model.apply({"params": params}, x)

    y = f(variables["params"], x)
    xt = torch.from_numpy(x).requires_grad_()
    yt = tm(xt)
    assert y.shape == tuple(yt.shape) and y.dtype == jnp.float64
    _close(y, t2n(yt))

    cot = rng.standard_normal(yt.shape)
    g_params, g_x = jax.grad(lambda p, x: jnp.sum(f(p, x) * cot), argnums=(0, 1))(variables["params"], x)
    gx_t, gw_t, gb_t = _torch_grads(yt, cot, xt, tm.weight, tm.bias if bias else xt)
    _close(g_x, gx_t)
    _close(g_params["weight"], gw_t)
    if bias:
        _close(g_params["bias"], gb_t)
    else:
        assert "bias" not in variables["params"]


def test_linear_init_shapes_dtypes_and_bounds():
    model = nn.Linear(64, 300)
    v = model.init(jax.random.key(0), jnp.ones((1, 64)))
    w, b = v["params"]["weight"], v["params"]["bias"]
    assert w.shape == (300, 64) and b.shape == (300,)
    assert w.dtype == jnp.float32 and b.dtype == jnp.float32
    bound = 1 / math.sqrt(64)
    for a in (w, b):
        assert float(jnp.max(jnp.abs(a))) <= bound
        assert float(jnp.max(jnp.abs(a))) > 0.95 * bound  # really U(±bound), not narrower
    assert abs(float(jnp.mean(w))) < 0.01
    np.testing.assert_allclose(float(jnp.var(w)), bound**2 / 3, rtol=0.05)  # variance of U(-b, b)
    assert not jnp.allclose(v["params"]["bias"][:64], w[0])


def test_linear_init_overrides_and_dtypes():
    model = nn.Linear(3, 2, weight_init=jax.nn.initializers.ones, bias_init=jax.nn.initializers.zeros,
                      param_dtype=jnp.float64, dtype=jnp.float32)
    v = model.init(jax.random.key(0), jnp.ones((1, 3)))
    assert v["params"]["weight"].dtype == jnp.float64
    np.testing.assert_array_equal(v["params"]["weight"], np.ones((2, 3)))
    np.testing.assert_array_equal(v["params"]["bias"], np.zeros(2))
    y = model.apply(v, jnp.arange(3.0)[None])
    assert y.dtype == jnp.float32
    np.testing.assert_array_equal(y, [[3.0, 3.0]])


def test_linear_bfloat16_compute():
    model = nn.Linear(8, 4, dtype=jnp.bfloat16)
    x = jnp.ones((2, 8), jnp.float32)
    v = model.init(jax.random.key(1), x)
    assert v["params"]["weight"].dtype == jnp.float32
    y = jax.jit(model.apply)(v, x)
    assert y.dtype == jnp.bfloat16
    ref = np.ones((2, 8)) @ np.asarray(v["params"]["weight"], np.float64).T + np.asarray(v["params"]["bias"], np.float64)
    _close(np.asarray(y, np.float64), ref, rtol=2e-2, atol=2e-2)


def test_linear_float32_jit_vs_torch(rng):
    tm = torch.nn.Linear(16, 8)
    variables = interop.state_dict_to_variables({k: v.float() for k, v in tm.state_dict().items()})
    x = rng.standard_normal((4, 16)).astype(np.float32)
    y = jax.jit(nn.Linear(16, 8, precision="highest").apply)(variables, x)
    assert y.dtype == jnp.float32
    _close(y, t2n(tm(torch.from_numpy(x).double())), rtol=1e-5, atol=1e-5)


def test_linear_vmap_matches_batched(rng):
    tm = torch.nn.Linear(5, 3)
    variables = interop.state_dict_to_variables(tm.state_dict())
    x = rng.standard_normal((6, 5))
    model = nn.Linear(5, 3)
    y = jax.vmap(lambda xi: model.apply(variables, xi))(x)
    _close(y, t2n(tm(torch.from_numpy(x))))


class LinearVariantsTest(chex.TestCase):
    @chex.variants(with_jit=True, without_jit=True)
    def test_linear_and_bilinear(self):
        rng = np.random.default_rng(3)
        tl = torch.nn.Linear(4, 3)
        tb = torch.nn.Bilinear(2, 3, 4)
        vl = interop.state_dict_to_variables(tl.state_dict())
        vb = interop.state_dict_to_variables(tb.state_dict())
        x, x1, x2 = rng.standard_normal((2, 4)), rng.standard_normal((5, 2)), rng.standard_normal((5, 3))

        y = self.variant(nn.Linear(4, 3).apply)(vl, x)
        chex.assert_trees_all_close(y, t2n(tl(torch.from_numpy(x))), rtol=RTOL, atol=ATOL)
        yb = self.variant(nn.Bilinear(2, 3, 4).apply)(vb, x1, x2)
        chex.assert_trees_all_close(yb, t2n(tb(torch.from_numpy(x1), torch.from_numpy(x2))), rtol=RTOL, atol=ATOL)
        yf = self.variant(F.linear)(x, vl["params"]["weight"], vl["params"]["bias"])
        chex.assert_trees_all_close(yf, y, rtol=RTOL, atol=ATOL)


def test_linear_jaxpr_has_no_transpose():
    jaxpr = jax.make_jaxpr(F.linear)(jnp.ones((2, 4)), jnp.ones((3, 4)), jnp.ones(3))
    prims = [eqn.primitive.name for eqn in jaxpr.jaxpr.eqns]
    assert "dot_general" in prims and "transpose" not in prims


# ---------------------------------------------------------------------------------- functional


@pytest.mark.parametrize("xshape,wshape,bshape", [
    ((2, 4), (3, 4), (3,)), ((2, 4), (3, 4), None), ((2, 4), (3, 4), ()), ((2, 4), (3, 4), (2, 3)),
    ((2, 4), (4,), None), ((4,), (4,), ()), ((2, 5, 4), (4,), ()),  # a 1-D weight: no feature dim
])
def test_functional_linear_vs_torch(xshape, wshape, bshape, rng):
    x = rng.standard_normal(xshape)
    w = rng.standard_normal(wshape)
    b = None if bshape is None else rng.standard_normal(bshape)
    xt, wt = torch.from_numpy(x).requires_grad_(), torch.from_numpy(w).requires_grad_()
    bt = None if b is None else torch.from_numpy(b).requires_grad_()
    yt = torch.nn.functional.linear(xt, wt, bt)
    y = F.linear(x, w, b)
    _close(y, t2n(yt))
    cot = rng.standard_normal(yt.shape)
    argnums = (0, 1) if b is None else (0, 1, 2)
    grads = jax.grad(lambda *a: jnp.sum(F.linear(*a) * cot), argnums=argnums)(x, w, *([] if b is None else [b]))
    tg = _torch_grads(yt, cot, xt, wt, *([] if bt is None else [bt]))
    for g, gt in zip(grads, tg):
        _close(g, gt)


@given(
    batch=st.lists(st.integers(1, 3), min_size=0, max_size=3),
    in_f=st.integers(1, 5),
    out_f=st.integers(1, 5),
    bias=st.booleans(),
)
def test_functional_linear_hypothesis(batch, in_f, out_f, bias):
    rng = np.random.default_rng(len(batch) * 100 + in_f * 10 + out_f)
    x = rng.standard_normal((*batch, in_f))
    w = rng.standard_normal((out_f, in_f))
    b = rng.standard_normal(out_f) if bias else None
    yt = torch.nn.functional.linear(torch.from_numpy(x), torch.from_numpy(w), None if b is None else torch.from_numpy(b))
    y = F.linear(x, w, b)
    assert y.shape == tuple(yt.shape)
    _close(y, t2n(yt))


@given(batch=st.lists(st.integers(1, 3), min_size=0, max_size=2), in1=st.integers(1, 4), in2=st.integers(1, 4),
       out=st.integers(1, 4))
def test_functional_bilinear_hypothesis(batch, in1, in2, out):
    rng = np.random.default_rng(in1 * 100 + in2 * 10 + out)
    x1, x2 = rng.standard_normal((*batch, in1)), rng.standard_normal((*batch, in2))
    w, b = rng.standard_normal((out, in1, in2)), rng.standard_normal(out)
    yt = torch.nn.functional.bilinear(*(torch.from_numpy(a) for a in (x1, x2, w, b)))
    y = F.bilinear(x1, x2, w, b)
    assert y.shape == tuple(yt.shape)
    _close(y, t2n(yt))


# ---------------------------------------------------------------------------------- Bilinear


@pytest.mark.parametrize("bias", [True, False])
def test_bilinear_module_vs_torch(bias, rng):
    tm = torch.nn.Bilinear(3, 2, 4, bias=bias)
    variables = interop.state_dict_to_variables(tm.state_dict())
    x1, x2 = rng.standard_normal((5, 3)), rng.standard_normal((5, 2))
    model = nn.Bilinear(3, 2, 4, bias=bias)

    def f(params, a, b):
        return model.apply({"params": params}, a, b)

    t1, t2 = torch.from_numpy(x1).requires_grad_(), torch.from_numpy(x2).requires_grad_()
    yt = tm(t1, t2)
    _close(f(variables["params"], x1, x2), t2n(yt))
    cot = rng.standard_normal(yt.shape)
    gp, g1, g2 = jax.grad(lambda p, a, b: jnp.sum(f(p, a, b) * cot), argnums=(0, 1, 2))(variables["params"], x1, x2)
    tg = _torch_grads(yt, cot, t1, t2, tm.weight, *([tm.bias] if bias else []))
    _close(g1, tg[0])
    _close(g2, tg[1])
    _close(gp["weight"], tg[2])
    if bias:
        _close(gp["bias"], tg[3])


def test_bilinear_init_bounds():
    v = nn.Bilinear(16, 3, 40).init(jax.random.key(0), jnp.ones((1, 16)), jnp.ones((1, 3)))
    w, b = v["params"]["weight"], v["params"]["bias"]
    assert w.shape == (40, 16, 3) and b.shape == (40,)
    bound = 1 / math.sqrt(16)
    assert float(jnp.max(jnp.abs(w))) <= bound and float(jnp.max(jnp.abs(w))) > 0.95 * bound
    assert float(jnp.max(jnp.abs(b))) <= bound and float(jnp.max(jnp.abs(b))) > 0.5 * bound


# ---------------------------------------------------------------------------------- LazyLinear, Identity


def test_lazy_linear_infers_in_features(rng):
    model = nn.LazyLinear(3)
    x = rng.standard_normal((2, 7))
    v = model.init(jax.random.key(0), x)
    assert v["params"]["weight"].shape == (3, 7) and v["params"]["bias"].shape == (3,)
    bound = 1 / math.sqrt(7)
    assert float(jnp.max(jnp.abs(v["params"]["weight"]))) <= bound
    tm = torch.nn.Linear(7, 3)
    sd_vars = interop.state_dict_to_variables(tm.state_dict())
    _close(model.apply(sd_vars, x), t2n(tm(torch.from_numpy(x))))
    with pytest.raises(ValueError, match=r"LazyLinear: expected input with last dimension 7 \(in_features=7\), got shape \(2, 5\)"):
        model.apply(sd_vars, np.ones((2, 5)))
    assert nn.LazyLinear(2, bias=False).init(jax.random.key(0), x)["params"].keys() == {"weight"}


def test_identity_ignores_arguments(rng):
    m = nn.Identity(54, unused_argument1=0.1, unused_argument2=False)
    x = rng.standard_normal((3, 2))
    t = torch.nn.Identity(54, unused_argument1=0.1, unused_argument2=False)
    v = m.init(jax.random.key(0), x)
    assert not v.get("params")
    _close(m.apply(v, x), t2n(t(torch.from_numpy(x))))
    seq = nn.Sequential(nn.Identity("anything"), nn.Linear(2, 2))
    v = seq.init(jax.random.key(0), x)
    assert set(v["params"]) == {"1"}
    assert jax.jit(seq.apply)(v, x).shape == (3, 2)


# ---------------------------------------------------------------------------------- errors


def test_linear_errors():
    v = nn.Linear(4, 3).init(jax.random.key(0), jnp.ones((1, 4)))
    with pytest.raises(ValueError, match=r"^Linear: expected input with last dimension 4 \(in_features=4\), got shape \(2, 5\)"):
        nn.Linear(4, 3).apply(v, jnp.ones((2, 5)))
    with pytest.raises(ValueError, match=r"Linear: expected input with last dimension 4 \(in_features=4\), got shape \(2, 5\)"):
        nn.Linear(4, 3).init(jax.random.key(0), jnp.ones((2, 5)))
    with pytest.raises(ValueError, match=r"Linear: .*0-d input"):
        nn.Linear(4, 3).apply(v, jnp.ones(()))
    with pytest.raises(ValueError, match=r"LazyLinear: .*0-d input"):
        nn.LazyLinear(3).init(jax.random.key(0), jnp.ones(()))
    with pytest.raises(ValueError, match=r"linear: expected input with last dimension 4 \(weight.shape\[-1\]=4\), got shape \(2, 5\)"):
        F.linear(jnp.ones((2, 5)), jnp.ones((3, 4)))
    with pytest.raises(ValueError, match=r"linear: .*0-d input"):
        F.linear(jnp.ones(()), jnp.ones((3, 4)))
    with pytest.raises(ValueError, match=r"linear: weight must be 2-D \(out_features, in_features\) or 1-D "
                                         r"\(in_features,\), got shape \(2, 3, 4\)"):
        F.linear(jnp.ones((2, 4)), jnp.ones((2, 3, 4)))
    with pytest.raises(ValueError, match=r"linear: bias of shape \(4,\) does not broadcast to the output shape \(2, 3\)"):
        F.linear(jnp.ones((2, 4)), jnp.ones((3, 4)), jnp.ones(4))


@pytest.mark.parametrize("make,exc,match", [
    (lambda: nn.Linear(3, -2), ValueError, r"^Linear: out_features must be >= 0, got out_features=-2"),
    (lambda: nn.Linear(-1, 3), ValueError, r"^Linear: in_features must be >= 0, got in_features=-1"),
    (lambda: nn.Linear(2.5, 3), TypeError, r"^Linear: in_features must be an int, got 2.5"),
    (lambda: nn.LazyLinear(-1), ValueError, r"^LazyLinear: out_features must be >= 0"),
    (lambda: nn.Bilinear(0, 3, 2), ValueError, r"^Bilinear: in1_features must be >= 1, got in1_features=0"),
    (lambda: nn.Bilinear(3, 2, -1), ValueError, r"^Bilinear: out_features must be >= 0"),
])
def test_layer_sizes_are_checked_at_construction(make, exc, match):
    """torch refuses these when the layer is built (negative dims, Bilinear's in1_features > 0); they
    failed at the first call with an XLA dimension error or a confusing input message."""
    with pytest.raises(exc, match=match):
        make()


def test_zero_sizes_build_as_in_torch():
    x = jnp.ones((2, 0))
    assert nn.Linear(0, 3).apply(nn.Linear(0, 3).init(jax.random.key(0), x), x).shape == (2, 3)
    assert nn.Bilinear(3, 2, 0).init(jax.random.key(0), jnp.ones((2, 3)), jnp.ones((2, 2)))["params"]["weight"].shape \
        == (0, 3, 2)


def test_bilinear_errors():
    w = jnp.ones((4, 2, 3))
    with pytest.raises(ValueError, match=r"bilinear: input batch dimensions do not match: got input1 \(5, 2\) and input2 \(6, 3\)"):
        F.bilinear(jnp.ones((5, 2)), jnp.ones((6, 3)), w)
    with pytest.raises(ValueError, match=r"bilinear: expected input1 with last dimension 2 \(in1_features=2\), got shape \(5, 3\)"):
        F.bilinear(jnp.ones((5, 3)), jnp.ones((5, 3)), w)
    with pytest.raises(ValueError, match=r"bilinear: expected input2 with last dimension 3 \(in2_features=3\), got shape \(5, 2\)"):
        F.bilinear(jnp.ones((5, 2)), jnp.ones((5, 2)), w)
    with pytest.raises(ValueError, match=r"bilinear: weight must be 3-D"):
        F.bilinear(jnp.ones((5, 2)), jnp.ones((5, 3)), jnp.ones((2, 3)))
    with pytest.raises(ValueError, match=r"bilinear: expected bias of shape \(4,\)"):
        F.bilinear(jnp.ones((5, 2)), jnp.ones((5, 3)), w, jnp.ones(3))
    with pytest.raises(ValueError, match=r"bilinear: expected inputs with at least 1 dimension"):
        F.bilinear(jnp.ones(()), jnp.ones((3,)), w)
    m = nn.Bilinear(2, 3, 4)
    with pytest.raises(ValueError, match=r"Bilinear: input batch dimensions do not match"):
        m.init(jax.random.key(0), jnp.ones((5, 2)), jnp.ones((4, 3)))
    with pytest.raises(ValueError, match=r"Bilinear: expected input2 with last dimension 3 \(in2_features=3\)"):
        m.init(jax.random.key(0), jnp.ones((5, 2)), jnp.ones((5, 4)))


@pytest.mark.parametrize("op", ["linear", "conv2d", "conv_transpose1d"])
def test_half_precision_bias_gradient_accumulates_in_float32(op, rng):
    """A bfloat16 bias gradient is a sum over every row/position; summed in bfloat16 it was 18-21 %
    off (linear at 8192 rows, conv at 4x16x16 positions). torch accumulates in float32: the linear
    result and its gradients are torch's bit for bit (on an Intel Xeon with AMX 10 of 131072 input
    gradients and 2 of the 64 weight gradients differ by 1-2 ulps), the convolutions' bias gradient within 1 ulp."""
    shapes = {"linear": ((64, 128, 16), (4, 16)), "conv2d": ((4, 3, 16, 16), (4, 3, 3, 3)),
              "conv_transpose1d": ((4, 3, 64), (3, 4, 4))}[op]
    x, w, b = rng.standard_normal(shapes[0]), rng.standard_normal(shapes[1]), rng.standard_normal(4)
    kw = {"conv2d": {"padding": 1}, "conv_transpose1d": {"stride": 2}}.get(op, {})
    jf, tf = getattr(F, op), getattr(torch.nn.functional, op)
    tb = [torch.tensor(a).to(torch.bfloat16).requires_grad_() for a in (x, w, b)]
    yt = tf(*tb, **kw)
    g = rng.normal(1.0, 1.0, tuple(yt.shape))
    yt.backward(torch.tensor(g).to(torch.bfloat16))
    gb = jnp.asarray(g, jnp.bfloat16)
    y, vjp = jax.vjp(lambda *a: jf(*a, **kw), *(jnp.asarray(a, jnp.bfloat16) for a in (x, w, b)))
    grads = vjp(gb)
    assert y.dtype == jnp.bfloat16 and all(d.dtype == jnp.bfloat16 for d in grads)
    want_b = tb[2].grad.float().numpy()
    if op == "linear":  # torch's, bit for bit but for a few products on CPUs whose bf16 GEMM differs (AMX)
        for got, want in zip((y,) + grads, (yt,) + tuple(t.grad for t in tb)):
            got, want = np.asarray(got, np.float32), want.detach().float().numpy()
            assert np.mean(got == want) > 0.9
            np.testing.assert_allclose(got, want, rtol=2 ** -6, atol=2 ** -6)
    else:
        np.testing.assert_allclose(np.asarray(grads[2], np.float32), want_b, rtol=2 ** -7)
    channel = g.ndim - 1 if op == "linear" else 1
    truth = g.sum(axis=tuple(i for i in range(g.ndim) if i != channel))
    np.testing.assert_allclose(np.asarray(grads[2], np.float32), truth, rtol=2 ** -7)
