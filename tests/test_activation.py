"""Activations: parity with torch (float64) for every function and module, outputs
and gradients, torch's derivative at every kink, hypothesis over the activations'
parameters, and every error path."""

import warnings

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
import torch.nn.functional as TF
from absl.testing import parameterized
from hypothesis import given
from hypothesis import strategies as st

from jaxlayers import functional as F
from jaxlayers import interop, nn

RTOL, ATOL = 1e-10, 1e-12

# Points where the activations have kinks / branch switches, for the default parameters.
KINKS = np.array([0.0, -0.0, 0.5, -0.5, 1.0, -1.0, 3.0, -3.0, 6.0, -6.0, 20.0, -20.0, 25.0, 1e-300])


N = 40  # one input length for every elementwise test: eager-mode compilations are shared


def _grid(extra=()):
    """``N`` points: the kinks, ``extra`` points, then random normals."""
    pts = np.concatenate([KINKS, np.asarray(extra, float)])
    return np.concatenate([pts, np.random.default_rng(1).normal(scale=4.0, size=N - len(pts))])


def _torch_out_grad(tfn, x, cot):
    xt = torch.tensor(x, requires_grad=True)
    y = tfn(xt)
    y.backward(torch.tensor(cot))
    return y.detach().numpy(), xt.grad.numpy()


def _jax_out_grad(jfn, x, cot):
    y, vjp = jax.vjp(jfn, jnp.asarray(x))
    return np.asarray(y), np.asarray(vjp(jnp.asarray(cot))[0])


def _check(jfn, tfn, x, cot=None, rtol=RTOL, atol=ATOL):
    x = np.asarray(x, np.float64)
    y_t = tfn(torch.tensor(x)).detach().numpy()
    if cot is None:
        cot = np.random.default_rng(2).normal(size=y_t.shape) + 1.5
    y_t, g_t = _torch_out_grad(tfn, x, cot)
    y_j, g_j = _jax_out_grad(jfn, x, cot)
    np.testing.assert_allclose(y_j, y_t, rtol=rtol, atol=atol, err_msg="output")
    np.testing.assert_allclose(g_j, g_t, rtol=rtol, atol=atol, err_msg="gradient")


# name, kwargs (same for both), torch function (None: same name in torch.nn.functional)
ELEMENTWISE = [
    ("relu", {}, None),
    ("relu6", {}, None),
    ("leaky_relu", {}, None),
    ("leaky_relu", {"negative_slope": 0.2}, None),
    ("elu", {}, None),
    ("elu", {"alpha": 2.0}, None),
    ("selu", {}, None),
    ("celu", {}, None),
    ("celu", {"alpha": 2.0}, None),
    ("gelu", {}, None),
    ("gelu", {"approximate": "tanh"}, None),
    ("silu", {}, None),
    ("mish", {}, None),
    ("sigmoid", {}, torch.sigmoid),
    ("logsigmoid", {}, None),
    ("tanh", {}, torch.tanh),
    ("hardtanh", {}, None),
    ("hardtanh", {"min_val": -3.0, "max_val": 0.5}, None),
    ("hardswish", {}, None),
    ("hardsigmoid", {}, None),
    ("hardshrink", {}, None),
    ("hardshrink", {"lambd": 1.0}, None),
    ("softshrink", {}, None),
    ("softshrink", {"lambd": 3.0}, None),
    ("tanhshrink", {}, None),
    ("softsign", {}, None),
    ("softplus", {}, None),
    ("softplus", {"beta": 2.0, "threshold": 1.0}, None),
    ("threshold", {"threshold": 0.5, "value": -2.0}, None),
    ("threshold", {"threshold": -1.0, "value": 3.0}, None),
]


def _case_name(name, kw):
    return name + "".join(f"_{k}{v}" for k, v in kw.items())


class ParityTest(chex.TestCase):
    @chex.variants(with_jit=True, without_jit=True)
    @parameterized.named_parameters(*[(_case_name(n, kw), n, kw, t) for n, kw, t in ELEMENTWISE])
    def test_elementwise(self, name, kw, tfn):
        jfn = getattr(F, name)
        tfn = tfn or getattr(TF, name)
        _check(self.variant(lambda x: jfn(x, **kw)), lambda x: tfn(x, **kw), _grid())

    @chex.variants(with_jit=True, without_jit=True)
    @parameterized.parameters(1, 3)
    def test_prelu(self, c):
        x = np.random.default_rng(3).normal(size=(2, 3, 4))
        x[0, :, 0] = 0.0  # the kink
        w = np.array([0.25, -0.5, 2.0][:c])
        fn = self.variant(F.prelu)
        wt = torch.tensor(w, requires_grad=True)
        xt = torch.tensor(x, requires_grad=True)
        cot = np.random.default_rng(4).normal(size=x.shape)
        yt = TF.prelu(xt, wt)
        yt.backward(torch.tensor(cot))
        y, vjp = jax.vjp(fn, jnp.asarray(x), jnp.asarray(w))
        gx, gw = vjp(jnp.asarray(cot))
        np.testing.assert_allclose(y, yt.detach().numpy(), rtol=RTOL, atol=ATOL)
        np.testing.assert_allclose(gx, xt.grad.numpy(), rtol=RTOL, atol=ATOL)
        np.testing.assert_allclose(gw, wt.grad.numpy(), rtol=RTOL, atol=ATOL)

    @chex.variants(with_jit=True)
    @parameterized.product(name=["softmax", "log_softmax", "softmin"], dim=[0, 1, -1])
    def test_softmax_family(self, name, dim):
        x = np.random.default_rng(5).normal(size=(3, 4, 2)) * 3
        _check(self.variant(lambda x: getattr(F, name)(x, dim)), lambda x: getattr(TF, name)(x, dim), x)

    @chex.variants(with_jit=True)
    @parameterized.parameters(0, 1, -1, -3)
    def test_glu(self, dim):
        x = np.random.default_rng(6).normal(size=(4, 2, 6))
        _check(self.variant(lambda x: F.glu(x, dim)), lambda x: TF.glu(x, dim), x)

    @chex.variants(with_jit=True)
    def test_softmax2d(self):
        for shape in [(2, 3, 2, 2), (3, 2, 2)]:
            x = np.random.default_rng(7).normal(size=shape)
            _check(self.variant(F.softmax2d), torch.nn.Softmax2d(), x)


# --------------------------------------------------------------------------- kinks, explicitly

KINK_CASES = [
    ("relu", {}, [0.0]),
    ("relu6", {}, [0.0, 6.0]),
    ("leaky_relu", {"negative_slope": 0.1}, [0.0]),
    ("hardtanh", {"min_val": -2.0, "max_val": 0.5}, [-2.0, 0.5]),
    ("hardshrink", {"lambd": 0.7}, [-0.7, 0.7]),
    ("softshrink", {"lambd": 0.7}, [-0.7, 0.7]),
    ("threshold", {"threshold": 0.3, "value": 5.0}, [0.3]),
    ("elu", {"alpha": 2.0}, [0.0]),
    ("celu", {"alpha": 2.0}, [0.0]),
    ("selu", {}, [0.0]),
    ("hardswish", {}, [-3.0, 3.0]),
    ("hardsigmoid", {}, [-3.0, 3.0]),
    ("softplus", {"beta": 2.0, "threshold": 3.0}, [1.5]),
]


@pytest.mark.parametrize("name,kw,points", KINK_CASES, ids=[c[0] for c in KINK_CASES])
def test_gradient_at_kinks_matches_torch(name, kw, points):
    x = _grid(points)
    k = len(KINKS)
    tfn, jfn = getattr(TF, name), getattr(F, name)
    _, g_t = _torch_out_grad(lambda t: tfn(t, **kw), x, np.ones_like(x))
    _, g_j = _jax_out_grad(lambda v: jfn(v, **kw), x, np.ones_like(x))
    np.testing.assert_array_equal(g_j[k:k + len(points)], g_t[k:k + len(points)])
    np.testing.assert_allclose(g_j, g_t, rtol=RTOL, atol=ATOL)


def test_documented_kink_values():
    # independent of torch: the derivatives the docs promise
    x = jnp.array([0.0, -3.0, 3.0])
    g = jax.jit(jax.grad(lambda v: jnp.stack([F.relu(v[0]), F.leaky_relu(v[0]), F.elu(v[0], 2.0),
                                             F.hardswish(v[1]), F.hardswish(v[2]),
                                             F.prelu(v[0], jnp.array([0.25]))]) @ jnp.arange(1.0, 7.0)))(x)
    np.testing.assert_allclose(g, [0.0 + 0.01 * 2 + 2.0 * 3 + 0.25 * 6, 0.0, 5.0], rtol=1e-15)


def test_no_nan_gradient_from_unselected_branch():
    x = jnp.array([1000.0, -1000.0, 500.0])
    fns = (F.elu, F.selu, F.celu, F.softplus, F.mish, F.logsigmoid)
    g = jax.jit(jax.grad(lambda v: sum(fn(v).sum() for fn in fns)))(x)
    assert np.all(np.isfinite(np.asarray(g)))


def test_hardswish_at_infinities_like_torch():
    """Value NaN at -inf (torch's ``x * clamp(x + 3, 0, 6) / 6``), gradients 0 and 1 (not 0 * inf)."""
    x = np.array([-np.inf, np.inf, -1e300, 1e300])
    y_t, g_t = _torch_out_grad(TF.hardswish, x, np.ones_like(x))
    y_j, g_j = _jax_out_grad(F.hardswish, x, np.ones_like(x))
    np.testing.assert_array_equal(y_j, y_t)
    np.testing.assert_array_equal(g_j, g_t)


def test_softplus_beta_zero_like_torch():
    """beta = 0: the value is log(2) / 0 = inf and torch's derivative sigmoid(0) = 0.5 (autodiff of the
    formula gives 0 / 0); second order through the derivative is 0, as torch's double backward."""
    x = np.array([-2.0, 0.0, 3.0])
    y_t, g_t = _torch_out_grad(lambda t: TF.softplus(t, 0.0), x, np.ones_like(x))
    y_j, g_j = _jax_out_grad(lambda v: F.softplus(v, 0.0), x, np.ones_like(x))
    np.testing.assert_array_equal(y_j, y_t)
    np.testing.assert_array_equal(g_j, g_t)
    h = jax.grad(lambda v: jax.grad(lambda u: F.softplus(u, 0.0))(v))(1.0)
    assert float(h) == 0.0


@pytest.mark.parametrize("name", ["relu", "relu6", "leaky_relu", "hardtanh", "hardshrink", "softshrink",
                                  "threshold", "hardswish", "hardsigmoid", "elu", "selu", "celu"])
def test_nan_propagates_like_torch(name):
    """NaN's value and gradient as torch's scalar kernels (one element per call: torch's
    vectorised hardtanh_backward stops the gradient at NaN where its scalar loop passes it)."""
    x = np.array([np.nan, 1.0, -1.0, 0.0])
    kw = {"threshold": 0.0, "value": 0.0} if name == "threshold" else {}
    y_t, g_t = np.transpose([_torch_out_grad(lambda t: getattr(TF, name)(t, **kw), x[i:i + 1], np.ones(1))
                             for i in range(len(x))])[0]
    y_j, g_j = _jax_out_grad(lambda v: getattr(F, name)(v, **kw), x, np.ones_like(x))
    np.testing.assert_allclose(y_j, y_t, rtol=1e-15, atol=0)  # NaN where torch's is NaN
    np.testing.assert_allclose(g_j, g_t, rtol=1e-15, atol=0)


@pytest.mark.parametrize("name", ["relu", "relu6", "hardtanh", "hardsigmoid", "hardswish"])
def test_clamping_activations_lower_to_max_min(name):
    """Their forwards are XLA max/min, not selects: XLA:CPU fuses max/min (not select) with
    the convolution before them, which halved ResNet-18's relayouts in torch layout."""
    hlo = jax.jit(getattr(F, name)).lower(jnp.ones((2, 3))).as_text()
    assert "maximum" in hlo and "select" not in hlo, hlo


@pytest.mark.parametrize("name", ["elu", "selu", "celu"])
def test_exponential_units_keep_tiny_gradients_like_torch(name):
    """Far left the derivative alpha*exp(x) is tiny; computed as expm1(x) + 1 (JAX's rule) it was
    0 in float32 from x = -17 on.  torch's elu_backward uses exp(x)."""
    x = np.array([-20.0, -50.0, -80.0, -1.0], np.float32)
    xt = torch.tensor(x, requires_grad=True)
    getattr(TF, name)(xt).sum().backward()
    g = jax.grad(lambda v: getattr(F, name)(v).sum())(jnp.asarray(x))
    assert np.all(np.asarray(g) > 0)
    np.testing.assert_allclose(np.asarray(g), xt.grad.numpy(), rtol=1e-6)


def test_tanhshrink_gradient_is_tanh_squared():
    """tanhshrink' = tanh^2 >= 0; autodiff's 1 - (1 + y)(1 - y) was -1e-8 at x = 1e-8 in float32."""
    x = np.array([1e-8, -1e-4, 0.3, -2.0, 9.0], np.float32)
    g = jax.grad(lambda v: F.tanhshrink(v).sum())(jnp.asarray(x))
    np.testing.assert_allclose(np.asarray(g), np.tanh(x.astype(np.float64)) ** 2, rtol=2e-6, atol=0)


def test_float32_jit_and_vmap():
    x = np.random.default_rng(8).normal(size=(5, 6)).astype(np.float32)
    for name in ("gelu", "silu", "softplus", "mish", "hardswish"):
        y = jax.jit(getattr(F, name))(jnp.asarray(x))
        assert y.dtype == jnp.float32
        np.testing.assert_allclose(y, getattr(TF, name)(torch.tensor(x)).numpy(), rtol=2e-6, atol=1e-6)
    y = jax.vmap(lambda r: F.softmax(r, 0))(jnp.asarray(x, jnp.float64))
    np.testing.assert_allclose(y, TF.softmax(torch.tensor(x, dtype=torch.float64), 1).numpy(), rtol=RTOL)


def test_softmax_dtype_and_scalar():
    x = np.arange(6.0).reshape(2, 3).astype(np.float32)
    y = F.log_softmax(jnp.asarray(x), 1, dtype=jnp.float64)
    assert y.dtype == jnp.float64
    np.testing.assert_allclose(y, TF.log_softmax(torch.tensor(x), 1, dtype=torch.float64).numpy(), rtol=RTOL)
    assert float(F.softmax(jnp.asarray(2.0), 0)) == 1.0
    assert float(F.log_softmax(jnp.asarray(2.0), -1)) == 0.0


@pytest.mark.parametrize("ndim", [0, 1, 2, 3, 4])
@pytest.mark.parametrize("name", ["softmax", "log_softmax", "softmin"])
def test_softmax_implicit_dim_follows_torch_with_warning(name, ndim):
    x = np.random.default_rng(9).normal(size=(2, 3, 4, 5)[:ndim])
    with pytest.warns(UserWarning, match=f"Implicit dimension choice for {name}"):
        y = getattr(F, name)(jnp.asarray(x))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        y_t = getattr(TF, name)(torch.tensor(x)).numpy()
    np.testing.assert_allclose(y, y_t, rtol=RTOL, atol=ATOL)


def test_inplace_is_a_noop():
    x = jnp.array([-1.0, 2.0])
    np.testing.assert_array_equal(F.relu(x, inplace=True), [0.0, 2.0])
    np.testing.assert_array_equal(x, [-1.0, 2.0])
    np.testing.assert_array_equal(nn.ReLU(inplace=True).apply({}, x), [0.0, 2.0])


# --------------------------------------------------------------------------- hypothesis over parameters

# no subnormal parameters: XLA on CPU flushes them to zero, torch does not.
finite = st.floats(-5.0, 5.0, allow_subnormal=False)
positive = st.floats(0.05, 5.0)


def _hyp_x(kinks):
    return _grid(kinks)


@given(slope=st.floats(-2.0, 2.0))
def test_hyp_leaky_relu(slope):
    _check(lambda x: F.leaky_relu(x, slope), lambda x: TF.leaky_relu(x, slope), _hyp_x([0.0]))


@given(alpha=st.one_of(positive, st.floats(-5.0, -0.05)))
def test_hyp_elu_celu(alpha):
    _check(lambda x: F.elu(x, alpha), lambda x: TF.elu(x, alpha), _hyp_x([0.0]))
    _check(lambda x: F.celu(x, alpha), lambda x: TF.celu(x, alpha), _hyp_x([0.0]))


@given(lo=finite, width=st.floats(0.0, 5.0, allow_subnormal=False))
def test_hyp_hardtanh(lo, width):
    hi = lo + width
    _check(lambda x: F.hardtanh(x, lo, hi), lambda x: TF.hardtanh(x, lo, hi), _hyp_x([lo, hi]))


@given(lambd=st.floats(0.0, 5.0, allow_subnormal=False))
def test_hyp_shrinks(lambd):
    pts = _hyp_x([lambd, -lambd])
    _check(lambda x: F.hardshrink(x, lambd), lambda x: TF.hardshrink(x, lambd), pts)
    _check(lambda x: F.softshrink(x, lambd), lambda x: TF.softshrink(x, lambd), pts)


@given(beta=st.one_of(positive, st.floats(-5.0, -0.05)), thr=st.floats(-5.0, 30.0))
def test_hyp_softplus(beta, thr):
    _check(lambda x: F.softplus(x, beta, thr), lambda x: TF.softplus(x, beta, thr), _hyp_x([thr / beta]),
           rtol=1e-9)


@given(thr=finite, value=finite)
def test_hyp_threshold(thr, value):
    _check(lambda x: F.threshold(x, thr, value), lambda x: TF.threshold(x, thr, value), _hyp_x([thr]))


@given(w=st.lists(st.floats(-3.0, 3.0), min_size=1, max_size=1) | st.lists(st.floats(-3.0, 3.0), min_size=3,
                                                                             max_size=3))
def test_hyp_prelu(w):
    x = np.linspace(-2.0, 2.0, 24).reshape(2, 3, 4)
    w = np.asarray(w)
    _check(lambda v: F.prelu(v, jnp.asarray(w)), lambda v: TF.prelu(v, torch.tensor(w)), x)


# --------------------------------------------------------------------------- modules

MODULES = [
    ("ReLU", ()), ("ReLU6", ()), ("LeakyReLU", (0.2,)), ("ELU", (0.7,)), ("SELU", ()), ("CELU", (1.3,)),
    ("GELU", ()), ("GELU", ("tanh",)), ("SiLU", ()), ("Mish", ()), ("Sigmoid", ()), ("LogSigmoid", ()),
    ("Tanh", ()), ("Hardtanh", (-2.0, 0.5)), ("Hardswish", ()), ("Hardsigmoid", ()), ("Hardshrink", (0.3,)),
    ("Softshrink", (0.3,)), ("Tanhshrink", ()), ("Softsign", ()), ("Softplus", (2.0, 1.0)),
    ("Threshold", (0.1, 20.0)), ("GLU", ()), ("GLU", (1,)), ("Softmax", (1,)), ("LogSoftmax", (-1,)),
    ("Softmin", (0,)), ("Softmax2d", ()),
]


@pytest.mark.parametrize("name,args", MODULES, ids=[f"{n}{a}" for n, a in MODULES])
def test_module_parity(name, args):
    x = np.random.default_rng(10).normal(scale=3.0, size=(2, 4, 3, 2))
    x[0, 0, 0] = [0.0, -3.0]
    mod = getattr(nn, name)(*args)
    _check(lambda v: mod.apply({}, v), getattr(torch.nn, name)(*args), x)


def test_modules_keep_torch_signatures():
    assert nn.LeakyReLU().negative_slope == 0.01
    assert (nn.Hardtanh().min_val, nn.Hardtanh().max_val) == (-1.0, 1.0)
    with pytest.warns(DeprecationWarning, match="`min_value` is deprecated and renamed to `min_val`"):
        old = nn.Hardtanh(min_value=-2.0, max_value=0.5)  # torch's deprecated names replace the new ones
    assert (old.min_val, old.max_val) == (torch.nn.Hardtanh(min_value=-2.0, max_value=0.5).min_val, 0.5)
    assert (nn.Softplus().beta, nn.Softplus().threshold) == (1.0, 20.0)
    assert nn.GELU().approximate == "none" and nn.GLU().dim == -1 and nn.Softmax().dim is None
    t = nn.Threshold(0.5, 2.0, True)
    assert (t.threshold, t.value, t.inplace) == (0.5, 2.0, True)
    with pytest.raises(TypeError):
        nn.Threshold()


@pytest.mark.parametrize("num_parameters", [1, 3])
def test_prelu_module_parity_and_state_dict(num_parameters):
    torch.manual_seed(0)
    tm = torch.nn.PReLU(num_parameters, init=0.1)
    with torch.no_grad():
        tm.weight.uniform_(-1.0, 1.0)
    m = nn.PReLU(num_parameters, init=0.1)
    variables = interop.state_dict_to_variables(tm.state_dict())
    x = np.random.default_rng(11).normal(size=(2, 3, 4))
    x[0, :, 0] = 0.0
    cot = np.random.default_rng(12).normal(size=x.shape)
    y, vjp = jax.vjp(lambda v, xx: m.apply(v, xx), variables, jnp.asarray(x))
    gv, gx = vjp(jnp.asarray(cot))
    xt = torch.tensor(x, requires_grad=True)
    yt = tm(xt)
    yt.backward(torch.tensor(cot))
    np.testing.assert_allclose(y, yt.detach().numpy(), rtol=RTOL, atol=ATOL)
    np.testing.assert_allclose(gx, xt.grad.numpy(), rtol=RTOL, atol=ATOL)
    np.testing.assert_allclose(gv["params"]["weight"], tm.weight.grad.numpy(), rtol=RTOL, atol=ATOL)


def test_prelu_module_init():
    v = nn.PReLU().init(jax.random.key(0), jnp.ones((2, 5)))
    assert v["params"]["weight"].shape == (1,) and v["params"]["weight"].dtype == jnp.float32
    np.testing.assert_array_equal(v["params"]["weight"], [0.25])
    v = nn.PReLU(5, 0.3, param_dtype=jnp.float64).init(jax.random.key(0), jnp.ones((2, 5, 3)))
    np.testing.assert_array_equal(v["params"]["weight"], np.full(5, 0.3))
    assert nn.PReLU(num_parameters=2, init=-1.0).init_value == -1.0
    v = nn.PReLU(2, weight_init=jax.nn.initializers.ones).init(jax.random.key(0), jnp.ones((1, 2)))
    np.testing.assert_array_equal(v["params"]["weight"], [1.0, 1.0])
    # bfloat16 compute, float32 parameters
    m = nn.PReLU(2, dtype=jnp.bfloat16)
    v = m.init(jax.random.key(0), jnp.ones((1, 2)))
    assert m.apply(v, -jnp.ones((1, 2))).dtype == jnp.bfloat16 and v["params"]["weight"].dtype == jnp.float32


def test_module_softmax_implicit_dim_warns():
    x = jnp.ones((2, 3))
    with pytest.warns(UserWarning, match="Implicit dimension choice for Softmax"):
        y = nn.Softmax().apply({}, x)
    np.testing.assert_allclose(y, np.full((2, 3), 1 / 3), rtol=RTOL)


# --------------------------------------------------------------------------- errors


def test_errors_functions():
    x = jnp.ones((2, 3))
    with pytest.raises(ValueError, match=r"hardtanh: max_val \(0.0\) must be greater.*min_val \(1.0\)"):
        F.hardtanh(x, 1.0, 0.0)
    with pytest.raises(ValueError, match="softshrink: lambd must be >= 0, got -1"):
        F.softshrink(x, -1.0)
    with pytest.raises(ValueError, match="celu: alpha cannot be 0"):
        F.celu(x, 0.0)
    with pytest.raises(ValueError, match="gelu: approximate must be either 'none' or 'tanh', got 'foo'"):
        F.gelu(x, approximate="foo")
    with pytest.raises(ValueError, match=r"glu: halving dimension must be even, but dimension 1 .*\(2, 3\) has size 3"):
        F.glu(x, 1)
    with pytest.raises(ValueError, match="glu: does not support 0-D input"):
        F.glu(jnp.asarray(1.0))
    with pytest.raises(IndexError, match=r"glu: dim 2 out of range for 2-D input .*\[-2, 1\]"):
        F.glu(x, 2)
    with pytest.raises(IndexError, match=r"softmax: dim -3 out of range for 2-D input"):
        F.softmax(x, -3)
    with pytest.raises(IndexError, match=r"log_softmax: dim 1 out of range for 0-D input"):
        F.log_softmax(jnp.asarray(1.0), 1)
    with pytest.raises(TypeError, match="softmin: dim must be an int, got 1.0"):
        F.softmin(x, 1.0)
    with pytest.raises(ValueError, match=r"softmax2d: expected \(N, C, H, W\) or \(C, H, W\) input, got 2-D .*\(2, 3\)"):
        F.softmax2d(x)
    with pytest.raises(ValueError, match=r"prelu: mismatch .*weight has 2 parameters.*\(2, 3\) has 3 channel"):
        F.prelu(x, jnp.ones(2))
    with pytest.raises(ValueError, match=r"prelu: mismatch .*1-D and 0-D inputs have 1 channel"):
        F.prelu(jnp.ones(3), jnp.ones(3))
    with pytest.raises(ValueError, match=r"prelu: expected `weight` to be a scalar or 1-D array, got shape \(3, 1\)"):
        F.prelu(x, jnp.ones((3, 1)))


def test_errors_modules():
    with pytest.raises(ValueError, match=r"Hardtanh: max_val \(1.0\) must be greater"):
        nn.Hardtanh(2.0, 1.0)
    with pytest.raises(ValueError, match="Softshrink: lambd must be >= 0"):
        nn.Softshrink(-0.5)
    with pytest.raises(ValueError, match="CELU: alpha cannot be 0"):
        nn.CELU(0.0)
    with pytest.raises(ValueError, match="GELU: approximate must be either 'none' or 'tanh', got 'erf'"):
        nn.GELU("erf")
    with pytest.raises(ValueError, match="GLU: halving dimension must be even"):
        nn.GLU().apply({}, jnp.ones((2, 3)))
    with pytest.raises(IndexError, match="Softmax: dim 2 out of range for 2-D input"):
        nn.Softmax(2).apply({}, jnp.ones((2, 3)))
    with pytest.raises(ValueError, match=r"Softmax2d: expected \(N, C, H, W\) or \(C, H, W\) input, got 5-D"):
        nn.Softmax2d().apply({}, jnp.ones((1, 1, 1, 1, 1)))
    with pytest.raises(ValueError, match=r"PReLU: mismatch .*weight has 3 parameters.*has 4 channel"):
        nn.PReLU(3).init(jax.random.key(0), jnp.ones((2, 4)))
    with pytest.raises(ValueError, match="PReLU: num_parameters must be >= 1, got 0"):
        nn.PReLU(0)
    with pytest.raises(TypeError, match="PReLU: num_parameters must be an int, got 2.0"):
        nn.PReLU(2.0)
    with pytest.raises(TypeError, match="PReLU: give the initial slope once"):
        nn.PReLU(1, 0.2, init=0.3)


# --------------------------------------------------------------------------- RReLU

from oracle import check_grads_through_hessian, close  # noqa: E402


@pytest.mark.parametrize("lower,upper", [(1 / 8, 1 / 3), (0.2, 0.2), (-0.5, 0.7)])
def test_rrelu_eval_vs_torch(lower, upper, rng):
    x = rng.standard_normal((3, 4, 5))
    x[0, 0, :2] = 0.0  # the kink: torch's slope for x <= 0
    xt = torch.from_numpy(x).requires_grad_()
    yt = TF.rrelu(xt, lower, upper, training=False)
    cot = rng.standard_normal(x.shape)
    yt.backward(torch.from_numpy(cot))
    y, vjp = jax.vjp(lambda x: F.rrelu(x, lower, upper), x)
    close(y, yt)
    close(vjp(cot)[0], xt.grad)
    close(nn.RReLU(lower, upper).apply({}, x, train=False), torch.nn.RReLU(lower, upper).eval()(torch.from_numpy(x)))


def test_rrelu_training_slopes_formula_and_gradient(rng):
    lower, upper = 0.1, 0.4
    x = rng.standard_normal((64, 64))
    x[0, :3] = 0.0
    key = jax.random.key(3)
    f = jax.jit(lambda x, key: F.rrelu(x, lower, upper, training=True, key=key))
    y = f(x, key)
    np.testing.assert_array_equal(y, f(x, key))  # same key, same slopes
    neg = x < 0
    slopes = np.asarray(y)[neg] / x[neg]
    # the slopes are U(lower, upper): bounds, mean and standard deviation
    assert slopes.min() >= lower and slopes.max() < upper
    assert abs(slopes.mean() - (lower + upper) / 2) < 0.01
    assert abs(slopes.std() - (upper - lower) / np.sqrt(12)) < 0.01
    np.testing.assert_array_equal(np.asarray(y)[x > 0], x[x > 0])
    assert not np.allclose(slopes, slopes[0])
    # given the same slopes, torch's backward (grad * noise) equals ours
    noise = np.ones_like(x)
    noise[neg] = slopes
    cot = rng.standard_normal(x.shape)
    gx = jax.vjp(lambda x: f(x, key), x)[1](cot)[0]
    gt = torch.ops.aten.rrelu_with_noise_backward(torch.from_numpy(cot), torch.from_numpy(x), torch.from_numpy(noise),
                                                  lower, upper, True, False)
    close(np.asarray(gx)[x != 0], gt.numpy()[x != 0])
    close(np.asarray(gx)[neg], slopes * cot[neg])
    assert np.all((np.asarray(gx)[x == 0] / cot[x == 0] >= lower) & (np.asarray(gx)[x == 0] / cot[x == 0] < upper))
    # second-order gradients (the slopes are fixed by the key) in both modes
    xs = x[2:4, :3] + np.sign(x[2:4, :3]) * 0.1  # away from the kink
    check_grads_through_hessian(lambda x: F.rrelu(x, lower, upper, training=True, key=key), (xs,))


def test_rrelu_module_training_uses_dropout_stream(rng):
    x = rng.standard_normal((4, 8))
    m = nn.RReLU()
    y1 = m.apply({}, x, train=True, rngs={"dropout": jax.random.key(0)})
    y2 = m.apply({}, x, train=True, rngs={"dropout": jax.random.key(0)})
    y3 = m.apply({}, x, train=True, rngs={"dropout": jax.random.key(1)})
    np.testing.assert_array_equal(y1, y2)
    assert not np.allclose(y1, y3)
    s = np.asarray(y1)[x < 0] / x[x < 0]
    assert s.min() >= 1 / 8 and s.max() < 1 / 3


def test_rrelu_errors():
    with pytest.raises(ValueError, match=r"rrelu: lower bound \(0.5\) must be less than or equal to the upper bound \(0.2\)"):
        F.rrelu(jnp.ones(3), 0.5, 0.2)
    with pytest.raises(ValueError, match=r"RReLU: lower bound \(0.5\)"):
        nn.RReLU(0.5, 0.2)
    with pytest.raises(ValueError, match=r"rrelu: a PRNG `key` is required when training=True"):
        F.rrelu(jnp.ones(3), training=True)
    with pytest.raises(ValueError, match=r"RReLU: `train` must be given"):
        nn.RReLU().apply({}, jnp.ones(3))


_HALF_EXACT = ["hardtanh", "relu6", "leaky_relu", "elu", "selu", "celu", "sigmoid", "tanh", "silu", "logsigmoid",
               "softplus", "hardsigmoid", "hardswish", "hardshrink", "softshrink", "threshold", "softmax", "glu"]
# (hardshrink: torch compares in the half type, its lambd rounded; so does ours)
_HALF_COMPOSED = ["gelu", "mish", "softsign", "tanhshrink", "log_softmax"]  # torch rounds inside


def _half_case(name):
    two_d = name in ("softmax", "log_softmax")
    args = {"threshold": (0.3, 0.7), "softplus": (1.0, 0.3), "softshrink": (0.3,), "hardshrink": (0.3,),
            "hardtanh": (-0.301, 0.301), "leaky_relu": (0.1,)}.get(name, ())
    shape = (-1, 61) if two_d else (-1,)
    extra = (1,) if two_d else ()
    return (lambda x: getattr(F, name)(x.reshape(shape), *args, *extra),
            lambda x: getattr(TF, name)(x.reshape(shape), *args, *extra))


@pytest.mark.parametrize("dtype", ["bfloat16", "float16"])
def test_half_precision_activations_compute_in_float32(dtype):
    """torch computes half-precision activations in float32 and rounds once (its opmath type): the
    results are torch's bit for bit; where torch composes ops in the half type (gelu's tail, mish,
    softsign, tanhshrink, log_softmax) ours are the correctly rounded ones, at least as close to the
    float64 truth as torch's. In the half type itself constants rounded (threshold 0.3 -> 0.30078125
    flipped branches) and float16 sigmoid underflowed to 0 below -11."""
    jdt, tdt = getattr(jnp, dtype), getattr(torch, dtype)
    x = jnp.asarray(np.concatenate([np.linspace(-12, 12, 1826), [0.30078125, -0.30078125, -11.5, -14.0]]), jdt)
    xd = torch.tensor(np.asarray(x, np.float64))
    for name in _HALF_EXACT + _HALF_COMPOSED:
        jf, tf = _half_case(name)
        got = jf(x)
        assert got.dtype == jdt, name
        got = np.asarray(got, np.float64)
        want = tf(xd.to(tdt)).double().numpy()
        if name in _HALF_EXACT:
            np.testing.assert_array_equal(got, want, err_msg=name)
        else:
            truth = tf(xd).numpy()
            assert np.nanmax(np.abs(got - truth)) <= np.nanmax(np.abs(want - truth)), name
    assert float(F.sigmoid(jnp.asarray(-11.5, jnp.float16))) > 0


@pytest.mark.parametrize("name", ["leaky_relu", "hardshrink", "softshrink"])
def test_integer_input_is_a_type_error_where_torch_raises(name):
    """A float slope/lambda would be truncated to an int (leaky_relu([-3, 2]) gave [0, 2])."""
    with pytest.raises(TypeError, match=rf"{name}: expected a floating-point input, got int32"):
        getattr(F, name)(jnp.array([-3, 2], jnp.int32))
