"""jaxlayers.init against torch.nn.init: fans, gains, bounds and moments."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch

from jaxlayers import init
from oracle import compiles

SHAPES = [(5, 3), (8, 4, 3, 3), (6, 2, 3), (4, 2, 1, 2, 3)]


@pytest.mark.parametrize("shape", SHAPES)
def test_fans_match_torch(shape):
    assert init.fan_in_and_fan_out(shape) == torch.nn.init._calculate_fan_in_and_fan_out(torch.empty(shape))


@pytest.mark.parametrize("name,param", [("linear", None), ("tanh", None), ("relu", None), ("leaky_relu", 0.2),
                                        ("leaky_relu", math.sqrt(5)), ("selu", None), ("sigmoid", None), ("conv2d", None)])
def test_gain_matches_torch(name, param):
    assert init.calculate_gain(name, param) == pytest.approx(torch.nn.init.calculate_gain(name, param))


def test_fan_needs_two_dims_and_gain_name_checked():
    with pytest.raises(ValueError, match="at least 2 dimensions"):
        init.fan_in_and_fan_out((3,))
    with pytest.raises(ValueError, match="unsupported nonlinearity 'swish'"):
        init.calculate_gain("swish")


def _uniform_bound_check(sample, bound):
    sample = np.asarray(sample)
    assert np.abs(sample).max() <= bound
    assert np.abs(sample).max() > 0.9 * bound  # the whole range is used
    # U(-b, b) has variance b^2/3; 4 standard errors of the sample variance
    n = sample.size
    assert abs(sample.var() - bound**2 / 3) < 4 * bound**2 * math.sqrt(4 / 45 / n)


@pytest.mark.parametrize("shape", [(64, 32), (32, 16, 3, 3), (16, 8, 5)])
def test_torch_weight_default_is_uniform_inverse_sqrt_fan_in(shape):
    fan_in = init.fan_in_and_fan_out(shape)[0]
    w = init.torch_weight_default()(jax.random.key(0), shape, jnp.float32)
    assert w.shape == shape and w.dtype == jnp.float32
    _uniform_bound_check(w, 1 / math.sqrt(fan_in))
    # torch draws from the same distribution
    t = torch.empty(shape)
    torch.nn.init.kaiming_uniform_(t, a=math.sqrt(5))
    assert t.abs().max().item() <= 1 / math.sqrt(fan_in)


def test_uniform_fan_in_bias():
    b = init.uniform_fan_in(16)(jax.random.key(1), (4096,), jnp.float32)
    _uniform_bound_check(b, 0.25)


@pytest.mark.parametrize("mode", ["fan_in", "fan_out"])
def test_kaiming_and_xavier_normal_std(mode):
    shape = (128, 64, 3)
    fan_in, fan_out = init.fan_in_and_fan_out(shape)
    w = np.asarray(init.kaiming_normal(mode=mode, nonlinearity="relu")(jax.random.key(2), shape, jnp.float32))
    want = math.sqrt(2) / math.sqrt(fan_in if mode == "fan_in" else fan_out)
    assert w.std() == pytest.approx(want, rel=0.03)
    x = np.asarray(init.xavier_normal(gain=2.0)(jax.random.key(3), shape, jnp.float32))
    assert x.std() == pytest.approx(2.0 * math.sqrt(2.0 / (fan_in + fan_out)), rel=0.03)
    xu = init.xavier_uniform()(jax.random.key(4), shape, jnp.float32)
    _uniform_bound_check(xu, math.sqrt(6.0 / (fan_in + fan_out)))


def test_constants_and_normal():
    assert np.all(np.asarray(init.ones(None, (2, 3), jnp.float32)) == 1)
    assert np.all(np.asarray(init.zeros(None, (2,), jnp.float64)) == 0)
    n = np.asarray(init.normal(1.0, 0.5)(jax.random.key(5), (20000,), jnp.float32))
    assert n.mean() == pytest.approx(1.0, abs=0.02) and n.std() == pytest.approx(0.5, rel=0.03)


# ----------------------------------------------------------------------------- torch.nn.init names

N = 100_000  # samples for the moment checks
GAIN_CASES = [("linear", None), ("conv1d", None), ("conv_transpose3d", None), ("sigmoid", None), ("tanh", None),
              ("relu", None), ("leaky_relu", None), ("leaky_relu", 0.3), ("leaky_relu", 2), ("selu", None)]


@pytest.mark.parametrize("name,param", GAIN_CASES)
def test_calculate_gain_exact(name, param):
    assert init.calculate_gain(name, param) == torch.nn.init.calculate_gain(name, param)


def test_calculate_gain_errors():
    with pytest.raises(ValueError, match="negative_slope 'x' not a valid number"):
        init.calculate_gain("leaky_relu", "x")
    with pytest.raises(ValueError, match="negative_slope True not a valid number"):
        init.calculate_gain("leaky_relu", True)


def _torch_sample(fn, shape, **kw):
    t = torch.empty(shape, dtype=torch.float64)
    fn(t, **kw)
    return t.numpy()


def _moments_match(ours, theirs, what, bounded):
    """Mean and standard deviation within ~5 standard errors of torch's sample (same distribution);
    for a bounded distribution the sample ranges agree too (both reach the bounds)."""
    ours, theirs = np.asarray(ours, np.float64).ravel(), np.asarray(theirs).ravel()
    sd = theirs.std()
    se = sd / math.sqrt(min(ours.size, theirs.size))
    assert abs(ours.mean() - theirs.mean()) < 7.5 * se, what
    assert abs(ours.std() - sd) < 7.5 * se, what
    if bounded:
        np.testing.assert_allclose([ours.min(), ours.max()], [theirs.min(), theirs.max()], atol=1e-3 * sd,
                                   err_msg=what)


# (our initialiser, torch's function, kwargs, shape): shapes with N entries, OIHW and (out, in)
DIST_CASES = {
    "uniform_": (init.uniform_, torch.nn.init.uniform_, {"a": -2.0, "b": 3.0}, (N,)),
    "normal_": (init.normal_, torch.nn.init.normal_, {"mean": 1.0, "std": 0.5}, (N,)),
    "xavier_uniform_": (init.xavier_uniform_, torch.nn.init.xavier_uniform_, {"gain": 2.0}, (250, 40, 5, 2)),
    "xavier_normal_": (init.xavier_normal_, torch.nn.init.xavier_normal_, {"gain": 0.5}, (500, 200)),
    "kaiming_uniform_": (init.kaiming_uniform_, torch.nn.init.kaiming_uniform_,
                         {"a": 0.2, "mode": "fan_out", "nonlinearity": "leaky_relu"}, (100, 50, 4, 5)),
    "kaiming_normal_": (init.kaiming_normal_, torch.nn.init.kaiming_normal_,
                        {"mode": "fan_in", "nonlinearity": "relu"}, (250, 20, 20)),
    "trunc_normal_": (init.trunc_normal_, torch.nn.init.trunc_normal_,
                      {"mean": 0.5, "std": 2.0, "a": -1.0, "b": 3.0}, (N,)),
}


@pytest.mark.parametrize("case", list(DIST_CASES))
def test_distributions_match_torch(case):
    ours_fn, torch_fn, kw, shape = DIST_CASES[case]
    torch.manual_seed(0)
    ours = ours_fn(**kw)(jax.random.key(7), shape, jnp.float64)
    assert ours.shape == shape and ours.dtype == jnp.float64
    _moments_match(ours, _torch_sample(torch_fn, shape, **kw), case, bounded="normal" not in case or "trunc" in case)


def test_trunc_normal_bounds_and_theory():
    w = np.asarray(init.trunc_normal_(std=1.0, a=-0.5, b=2.0)(jax.random.key(0), (N,), jnp.float64))
    assert w.min() >= -0.5 and w.max() <= 2.0 and w.min() < -0.49 and w.max() > 1.9
    # mean of N(0, 1) truncated to [a, b]: (phi(a) - phi(b)) / (Phi(b) - Phi(a))
    phi = lambda x: math.exp(-x * x / 2) / math.sqrt(2 * math.pi)  # noqa: E731
    Phi = lambda x: (1 + math.erf(x / math.sqrt(2))) / 2  # noqa: E731
    want = (phi(-0.5) - phi(2.0)) / (Phi(2.0) - Phi(-0.5))
    assert abs(w.mean() - want) < 5 * w.std() / math.sqrt(N)


@pytest.mark.parametrize("a,b", [(8.0, 9.0), (-9.0, -8.0), (-2.0, 2.0)])
def test_trunc_normal_in_the_tails_matches_torch(a, b):
    """Intervals in the tails: erfinv(2u - 1) collapsed [8, 9] onto 9 (mean 9, std 0) where torch's
    mean is 8.12; the mirrored inverse CDF gives torch's moments."""
    ours = init.trunc_normal_(0.0, 1.0, a, b)(jax.random.key(1), (N,), jnp.float32)
    assert float(ours.min()) >= a and float(ours.max()) <= b
    torch.manual_seed(0)
    _moments_match(ours, _torch_sample(torch.nn.init.trunc_normal_, (N,), mean=0.0, std=1.0, a=a, b=b),
                   f"[{a}, {b}]", bounded=False)
    assert np.array_equal(init.trunc_normal_(0.0, 1.0, 1.0, 1.0)(jax.random.key(0), (3,)), np.ones(3))  # a == b


@pytest.mark.parametrize("dtype", ["float32", "bfloat16", "float16"])
def test_trunc_normal_never_returns_the_bound_of_a_far_tail(dtype):
    """std=0.02 with a=-2 is -100 sigma, where the CDF rounds to 0: erfinv(-1) = -inf was clamped to
    exactly -2 (1 in 128 draws in bfloat16, a std of 0.175 instead of 0.02)."""
    w = np.asarray(init.trunc_normal_(std=0.02)(jax.random.key(0), (512, 512), dtype), np.float32)
    assert w.dtype == np.float32 and np.abs(w).max() < 0.2
    assert abs(w.std() - 0.02) < 1e-3


@pytest.mark.parametrize("dtype", [jnp.bfloat16, jnp.float16])
def test_orthogonal_half_precision_is_a_rounded_float32_matrix(dtype):
    """QR has no half-precision kernel (it raised a KeyError of ml_dtypes); the float32 matrix, rounded."""
    q = init.orthogonal_(gain=2.0)(jax.random.key(0), (6, 4), dtype)
    assert q.dtype == dtype
    np.testing.assert_allclose(np.asarray(q, np.float32), np.asarray(init.orthogonal_(gain=2.0)(
        jax.random.key(0), (6, 4), jnp.float32).astype(dtype), np.float32), rtol=0, atol=0)
    np.testing.assert_allclose(np.asarray(q, np.float32).T @ np.asarray(q, np.float32), 4 * np.eye(4), atol=0.1)


@pytest.mark.parametrize("a,b", [(-2.0, 2.0), (-np.inf, np.inf)])
def test_trunc_normal_at_the_uniform_draws_zero(a, b, monkeypatch):
    """A uniform draw of exactly 0 (about one in 2^23) is the upper bound's CDF, which rounds to 1 for
    a bound beyond ~5.3 sigma: ndtri(1) = inf gave b (100 sigma at std=0.02) or inf."""
    monkeypatch.setattr(jax.random, "uniform", lambda key, shape, dtype: jnp.zeros(shape, dtype))
    w = np.asarray(init.trunc_normal_(std=0.02, a=a, b=b)(jax.random.key(0), (4,)))
    assert np.all(np.isfinite(w)) and np.all(np.abs(w) < 6 * 0.02), w


@pytest.mark.parametrize("fn", [init.normal_(), init.kaiming_normal_(), init.xavier_uniform_(), init.uniform_(-1.0, 1.0)])
def test_half_precision_draws_are_rounded_float32_draws(fn):
    """A bfloat16 weight is a float32 draw rounded once, as torch's (drawn in bfloat16 a normal took
    128 distinct values, max |x| 2.9)."""
    shape = (64, 64)
    w16 = np.asarray(fn(jax.random.key(3), shape, jnp.bfloat16), np.float32)
    w32 = np.asarray(fn(jax.random.key(3), shape, jnp.float32).astype(jnp.bfloat16), np.float32)
    assert np.array_equal(w16, w32)
    assert len(np.unique(w16)) > 500


def test_constants_eye_dirac_exact():
    for ours, theirs, kw in ((init.constant_, torch.nn.init.constant_, {"val": 0.3}),
                             (init.ones_, torch.nn.init.ones_, {}), (init.zeros_, torch.nn.init.zeros_, {})):
        np.testing.assert_array_equal(np.asarray(ours(**kw)(None, (2, 3), jnp.float64)),
                                      _torch_sample(theirs, (2, 3), **kw))
    for shape in ((3, 5), (5, 3)):
        np.testing.assert_array_equal(np.asarray(init.eye_()(None, shape, jnp.float64)),
                                      _torch_sample(torch.nn.init.eye_, shape))
    for shape, groups in (((4, 4, 3), 1), ((6, 2, 3, 2), 2), ((4, 3, 1, 3, 2), 1), ((6, 4, 3, 3), 3)):
        np.testing.assert_array_equal(np.asarray(init.dirac_(groups)(None, shape, jnp.float64)),
                                      _torch_sample(torch.nn.init.dirac_, shape, groups=groups),
                                      err_msg=str((shape, groups)))


def test_dirac_conv_is_identity(rng):
    from jaxlayers import functional as F

    x = jnp.asarray(rng.standard_normal((2, 4, 5, 6)))
    w = init.dirac_()(None, (4, 4, 3, 3), jnp.float64)
    np.testing.assert_array_equal(np.asarray(F.conv2d(x, w, padding=1)), np.asarray(x))
    wg = init.dirac_(2)(None, (4, 2, 3, 3), jnp.float64)
    np.testing.assert_array_equal(np.asarray(F.conv2d(x, wg, padding=1, groups=2)), np.asarray(x))


@pytest.mark.parametrize("shape,gain", [((300, 200), 2.0), ((4, 2, 3, 3), 0.5)])
def test_orthogonal_(shape, gain):
    w = np.asarray(init.orthogonal_(gain)(jax.random.key(1), shape, jnp.float64)).reshape(shape[0], -1)
    gram = w @ w.T if w.shape[0] <= w.shape[1] else w.T @ w
    np.testing.assert_allclose(gram, gain**2 * np.eye(min(w.shape)), atol=1e-12)
    if w.size > 1000:  # Haar-distributed like torch's: the entries' variance is gain^2 / max(rows, cols)
        t = _torch_sample(torch.nn.init.orthogonal_, shape, gain=gain)
        assert w.var() == pytest.approx(gain**2 / max(w.shape), rel=0.03) == t.var()


def test_sparse_():
    w = np.asarray(init.sparse_(0.3, std=0.5)(jax.random.key(3), (10, 2000), jnp.float64))
    t = _torch_sample(torch.nn.init.sparse_, (10, 2000), sparsity=0.3, std=0.5)
    np.testing.assert_array_equal((w == 0).sum(0), (t == 0).sum(0))  # ceil(0.3 * 10) = 3 per column
    assert w[w != 0].std() == pytest.approx(0.5, rel=0.03)
    assert len({tuple(np.flatnonzero(c == 0)) for c in w.T[:50]}) > 10  # random rows per column


def test_init_errors():
    key = jax.random.key(0)
    with pytest.raises(ValueError, match=r"kaiming_uniform_: fan in and fan out need a weight with at least 2 "
                                         r"dimensions, got shape \(3,\)"):
        init.kaiming_uniform_()(key, (3,))
    with pytest.raises(ValueError, match="xavier_normal_: fan in and fan out need"):
        init.xavier_normal_()(key, (3,))
    with pytest.raises(ValueError, match="kaiming_normal_: mode 'fan_avg' not supported"):
        init.kaiming_normal_(mode="fan_avg")
    with pytest.raises(ValueError, match="unsupported nonlinearity 'gelu'"):
        init.kaiming_uniform_(nonlinearity="gelu")
    with pytest.raises(ValueError, match="kaiming_uniform: mode 'bogus' not supported"):  # the legacy name too
        init.kaiming_uniform(mode="bogus")
    with pytest.raises(ValueError, match=r"init.uniform_: expects a \[from, to\) range, but found from=1 > to=-1"):
        init.uniform_(1, -1)
    with pytest.raises(ValueError, match="init.normal_: expects std >= 0.0"):
        init.normal_(0.0, -1.0)
    with pytest.raises(ValueError, match=r"eye_: only tensors with 2 dimensions are supported, got shape \(2, 2, 2\)"):
        init.eye_()(key, (2, 2, 2))
    with pytest.raises(ValueError, match=r"dirac_: only tensors with 3, 4, or 5 dimensions"):
        init.dirac_()(key, (2, 2))
    with pytest.raises(ValueError, match="dirac_: dim 0 .size 5. must be divisible by groups=2"):
        init.dirac_(2)(key, (5, 2, 3))
    with pytest.raises(ValueError, match="orthogonal_: only tensors with 2 or more dimensions"):
        init.orthogonal_()(key, (4,))
    with pytest.raises(ValueError, match="sparse_: only tensors with 2 dimensions"):
        init.sparse_(0.1)(key, (4, 2, 2))
    with pytest.raises(ValueError, match="trunc_normal_: expected a <= b"):
        init.trunc_normal_(a=1.0, b=0.0)


def test_kaiming_mode_is_case_insensitive_as_torch():
    w = torch.empty(400, 4)
    torch.nn.init.kaiming_uniform_(w, mode="FAN_IN")  # torch lower-cases the mode
    bound = math.sqrt(3.0) * init.calculate_gain("leaky_relu", 0.0) / math.sqrt(4)
    for f in (init.kaiming_uniform_, init.kaiming_uniform):
        ours = np.abs(np.asarray(f(mode="FAN_IN")(jax.random.key(0), (400, 4))))
        assert ours.max() <= bound and ours.max() > 0.9 * bound and np.abs(w.numpy()).max() <= bound


def test_every_torch_init_name_exists():
    """torch.nn.init's public functions, its deprecated underscore-less names included."""
    names = [n for n in dir(torch.nn.init) if not n.startswith("_") and callable(getattr(torch.nn.init, n))
             and getattr(getattr(torch.nn.init, n), "__module__", None) == "torch.nn.init"]
    assert len(names) > 20
    assert not [n for n in names if not hasattr(init, n)]
    for name in ("eye", "dirac", "orthogonal", "sparse"):
        assert getattr(init, name) is getattr(init, name + "_")


def test_torch_calls_on_a_parameter_fill_it_in_place():
    """torch's ``for m in model.modules(): init.kaiming_normal_(m.weight, mode="fan_out")`` loop: the call
    had bound the weight to ``a`` and returned an initialiser, leaving the model at its default init."""
    from flax import nnx as fnnx

    import jaxlayers.nnx as jnnx

    conv = jnnx.Conv2d(64, 64, 3, rngs=fnnx.Rngs(0))
    assert init.kaiming_normal_(conv.weight, mode="fan_out", nonlinearity="relu") is conv.weight
    np.testing.assert_allclose(np.std(conv.weight[...]), math.sqrt(2 / (64 * 9)), rtol=0.03)  # default: 0.024
    init.trunc_normal_(conv.weight, std=0.02)  # ViT/ConvNeXt; it had raised an unclear ValueError
    np.testing.assert_allclose(np.std(conv.weight[...]), 0.02, rtol=0.03)  # the bounds +-2 are 100 std away
    init.constant_(conv.weight, 0.5), init.zeros_(tensor=conv.bias)
    assert (conv.weight[...] == 0.5).all() and not conv.bias[...].any()
    key = jax.random.key(3)
    init.normal_(conv.weight, 0.0, 0.01, generator=key)
    np.testing.assert_allclose(conv.weight[...], 0.01 * jax.random.normal(key, (64, 64, 3, 3), jnp.float32), rtol=1e-6)
    init.manual_seed(1)
    first = np.asarray(init.uniform_(conv.bias, -1, 1)[...])
    init.manual_seed(1)
    np.testing.assert_array_equal(init.uniform_(conv.bias, -1, 1)[...], first)  # as torch.manual_seed
    with pytest.raises(TypeError, match="JAX arrays are immutable.*pass the module's nnx.Param"):
        init.normal_(jnp.ones((2, 2)), 0.0, 1.0)
    # constant's value may be an array (PReLU(init=array) builds its weight so); torch's keyword names
    np.testing.assert_allclose(init.constant(np.array([0.1, 0.2]))(None, (3, 2)), [[0.1, 0.2]] * 3, rtol=1e-6)
    init.uniform(conv.bias, a=2.0, b=3.0), init.constant(conv.weight, val=0.25)
    assert (conv.bias[...] >= 2).all() and (conv.weight[...] == 0.25).all()


def test_torch_calls_inside_jit_with_generators_and_deprecated_names():
    """A first draw inside nnx.jit had stored a tracer as the global key (every later call failed); torch's
    deprecated names (init.normal(w, ...)) had returned an initialiser and left the weight as it was; an
    nnx.Rngs generator advances as torch's Generator; integer parameters take fills, not random draws."""
    from flax import nnx as fnnx

    import jaxlayers.nnx as jnnx

    lin = jnnx.Linear(8, 8, rngs=fnnx.Rngs(0))
    fnnx.jit(lambda m: init.normal_(m.weight, std=0.01))(lin)
    init.normal_(lin.weight)  # eager, after the traced draw
    for deprecated, args in ((init.normal, (0.0, 0.5)), (init.xavier_uniform, ()), (init.kaiming_normal, ())):
        before = np.asarray(lin.weight[...])
        deprecated(lin.weight, *args)
        assert not np.array_equal(before, lin.weight[...]), deprecated.__name__
    init.constant(lin.bias, 0.25)
    assert (lin.bias[...] == 0.25).all()
    other, rngs = jnnx.Linear(8, 8, rngs=fnnx.Rngs(0)), fnnx.Rngs(0)
    init.normal_(lin.weight, generator=rngs), init.normal_(other.weight, generator=rngs)
    assert not np.array_equal(lin.weight[...], other.weight[...])
    counts = fnnx.Param(jnp.zeros(3, jnp.int32))
    with pytest.raises(TypeError, match="normal_: expected a floating-point parameter, got int32"):
        init.normal_(counts)
    assert init.ones_(counts)[...].tolist() == [1, 1, 1]


@pytest.mark.parametrize("name", ["trunc_normal_", "normal_", "kaiming_normal_", "orthogonal_", "sparse_", "dirac_"])
def test_eager_draw_is_one_program_equal_to_the_jitted_draw(name):
    """Called outside jit, a drawn initialiser compiles one program per shape (op by op, trunc_normal_
    had compiled ~15 at each new weight shape, orthogonal_ and sparse_ 9, dirac_ 21), and gives what a jitted init
    (NNX's constructors, ``jax.jit(model.init)``) gives, bit for bit (op by op its float32 values were an
    ulp away)."""
    draw = getattr(init, name)(*{"sparse_": (0.5,)}.get(name, ()))
    shape, key = {"dirac_": (3, 5, 29)}.get(name, (3, 29)), jax.random.key(5)  # a shape no other test draws
    with compiles() as found:
        eager = draw(key, shape, jnp.float32)
    assert len(found) <= 1, f"{name}: {len(found)} programs"
    np.testing.assert_array_equal(np.asarray(eager), np.asarray(jax.jit(lambda k: draw(k, shape, jnp.float32))(key)))
