"""Normalisation layers: torch float64 parity (outputs, buffers, gradients),
a NumPy/torch reference for SwitchNorm, equivalences, numerics with a large
offset, mixed precision, cross-device statistics and every error path."""

from __future__ import annotations

import functools

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
import torch.nn.functional as TF
from hypothesis import given, settings
from hypothesis import strategies as st
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from jaxlayers import functional as F
from jaxlayers import config, interop, nn

TOL = dict(rtol=1e-10, atol=1e-10)


def _t(a):
    return torch.tensor(np.asarray(a), dtype=torch.float64)


def _np(t):
    return t.detach().numpy()


def _randomise_affine(tm, rng):
    with torch.no_grad():
        for name in ("weight", "bias"):
            p = getattr(tm, name, None)
            if p is not None:
                p.copy_(_t(rng.normal(size=p.shape)))


def _grads(module, variables, x, g, **kw):
    """Output, d(sum(y*g))/d(input) and d/d(params) of a jaxlayers module (one program per module and
    options: the training steps of a parity check share it)."""
    return _jitted_grads(variables.get("params", {}), {k: v for k, v in variables.items() if k != "params"},
                         jnp.asarray(x), jnp.asarray(g), module, tuple(sorted(kw.items())))


@functools.partial(jax.jit, static_argnums=(4, 5))
def _jitted_grads(params, rest, x, g, module, kw):
    def loss(params, x):
        out = module.apply({**rest, "params": params}, x, **{k: list(v) if k == "mutable" else v for k, v in kw})
        y = out[0] if isinstance(out, tuple) else out
        return jnp.sum(y * g), out

    (_, out), (gp, gx) = jax.value_and_grad(loss, argnums=(0, 1), has_aux=True)(params, x)
    return out, gx, gp


def _torch_grads(tm, x, g):
    xt = _t(x).requires_grad_(True)
    for p in tm.parameters():
        p.grad = None
    y = tm(xt)
    (y * _t(g)).sum().backward()
    return y, xt.grad, {n: p.grad for n, p in tm.named_parameters()}


def _check_parity(tm, m, xs, *, stateful=True, steps_train=True):
    """Run several training steps then an eval step on both; compare outputs,
    input/parameter gradients and (when tracked) the buffers after each step."""
    rng = np.random.default_rng(1)
    variables = interop.state_dict_to_variables(tm.state_dict())
    modes = [True] * (len(xs) - 1) + [False] if steps_train else [False] * len(xs)
    for x, train in zip(xs, modes):
        tm.train(train)
        g = rng.normal(size=x.shape)
        kw = {"train": train} if stateful else {}
        if stateful and train:
            kw["mutable"] = ("batch_stats",)
        out, gx, gp = _grads(m, variables, x, g, **kw)
        y, tgx, tgp = _torch_grads(tm, x, g)
        if isinstance(out, tuple):
            out, updates = out
            variables = {**variables, **updates}
        np.testing.assert_allclose(out, _np(y), **TOL)
        np.testing.assert_allclose(gx, _np(tgx), **TOL)
        assert set(gp) == set(tgp)
        for name in gp:
            np.testing.assert_allclose(gp[name], _np(tgp[name]), **TOL, err_msg=name)
        ours = interop.variables_to_state_dict(variables)
        theirs = tm.state_dict()
        assert set(ours) == set(theirs)
        for k in theirs:
            np.testing.assert_allclose(ours[k], _np(theirs[k]), **TOL, err_msg=k)


# ---------------------------------------------------------------- BatchNorm

BN_SHAPES = [("1d", (6, 3)), ("1d", (4, 3, 5)), ("2d", (3, 3, 4, 5)), ("3d", (2, 3, 3, 2, 4))]
BN_OPTS = [  # affine, track_running_stats, bias
    (True, True, True),
    (False, True, True),
    (True, False, True),
    (True, True, False),
]


BN_CASES = [("2d", (3, 3, 4, 5), m, *o) for m in (0.1, None) for o in BN_OPTS] + [
    (k, s, 0.1, True, True, True) for k, s in BN_SHAPES if k != "2d"]


@pytest.mark.both_settings
@pytest.mark.parametrize("kind,shape,momentum,affine,track,bias", BN_CASES)
def test_batchnorm_torch_parity(kind, shape, momentum, affine, track, bias):
    rng = np.random.default_rng(0)
    kw = dict(eps=1e-3, momentum=momentum, affine=affine, track_running_stats=track, bias=bias)
    tm = getattr(torch.nn, f"BatchNorm{kind}")(shape[1], **kw)
    _randomise_affine(tm, rng)
    m = getattr(nn, f"BatchNorm{kind}")(shape[1], **kw)
    xs = [rng.normal(size=shape) * 3 + 2 for _ in range(3)]
    _check_parity(tm, m, xs)


def test_batchnorm_variables_match_torch_names():
    m = nn.BatchNorm2d(4)
    v = m.init(jax.random.PRNGKey(0), jnp.zeros((2, 4, 3, 3)), train=False)
    assert set(interop.variables_to_state_dict(v)) == set(torch.nn.BatchNorm2d(4).state_dict())
    np.testing.assert_array_equal(v["params"]["weight"], np.ones(4))
    np.testing.assert_array_equal(v["batch_stats"]["running_var"], np.ones(4))
    assert v["params"]["weight"].dtype == jnp.float32
    # not tracked: no buffers; affine=False: no params
    v = nn.BatchNorm2d(4, affine=False, track_running_stats=False).init(
        jax.random.PRNGKey(0), jnp.zeros((2, 4, 3, 3)), train=True)
    assert v == {}


def test_batchnorm_no_update_without_mutable_or_in_eval(rng):
    m = nn.BatchNorm1d(3)
    x = rng.normal(size=(5, 3))
    v = m.init(jax.random.PRNGKey(0), x, train=True)  # init never updates
    np.testing.assert_array_equal(v["batch_stats"]["running_mean"], np.zeros(3))
    assert int(v["batch_stats"]["num_batches_tracked"]) == 0
    y = m.apply(v, x, train=True)  # batch statistics, buffers untouched (immutable)
    np.testing.assert_allclose(y.mean(0), 0, atol=1e-12)
    _, upd = m.apply(v, x, train=False, mutable=["batch_stats"])
    assert jax.tree.all(jax.tree.map(lambda a, b: bool(jnp.all(a == b)), upd["batch_stats"], v["batch_stats"]))


def test_batchnorm_zero_size_batch():
    tm = torch.nn.BatchNorm2d(3)
    with torch.no_grad():
        tm.running_mean.fill_(0.5)
    m = nn.BatchNorm2d(3)
    v = interop.state_dict_to_variables(tm.state_dict())
    x = np.zeros((0, 3, 4, 4))
    y, upd = m.apply(v, x, train=True, mutable=["batch_stats"])
    ty = tm(_t(x))
    assert y.shape == ty.shape
    for k, t in tm.state_dict().items():
        if k in interop.BUFFER_NAMES:
            np.testing.assert_array_equal(interop.variables_to_state_dict(upd)[k], _np(t), err_msg=k)


class TestFunctionalBatchNorm(chex.TestCase):
    @chex.variants(with_jit=True, without_jit=True)
    def test_matches_torch_and_returns_buffers(self):
        rng = np.random.default_rng(0)
        x = rng.normal(size=(4, 3, 5)) + 1.0
        rm, rv, w, b = rng.normal(size=3), rng.uniform(1, 2, 3), rng.normal(size=3), rng.normal(size=3)
        fn = self.variant(functools.partial(F.batch_norm, training=True, momentum=0.2, eps=1e-4))
        out = fn(x, rm, rv, w, b, num_batches_tracked=jnp.asarray(3))
        trm, trv = _t(rm), _t(rv)
        ty = torch.nn.functional.batch_norm(_t(x), trm, trv, _t(w), _t(b), True, 0.2, 1e-4)
        np.testing.assert_allclose(out.output, _np(ty), **TOL)
        np.testing.assert_allclose(out.running_mean, _np(trm), **TOL)
        np.testing.assert_allclose(out.running_var, _np(trv), **TOL)
        assert int(out.num_batches_tracked) == 4
        ev = self.variant(functools.partial(F.batch_norm, training=False))(x, rm, rv, w, b)
        ty = torch.nn.functional.batch_norm(_t(x), _t(rm), _t(rv), _t(w), _t(b), False)
        np.testing.assert_allclose(ev.output, _np(ty), **TOL)
        assert ev.running_mean is rm or np.array_equal(ev.running_mean, rm)

    def test_float32_jit(self):
        rng = np.random.default_rng(0)
        x = rng.normal(size=(8, 4, 6, 6))
        w, b = rng.normal(size=4), rng.normal(size=4)
        out = jax.jit(lambda *a: F.batch_norm(*a, training=True).output)(
            x.astype(np.float32), None, None, w.astype(np.float32), b.astype(np.float32))
        assert out.dtype == jnp.float32
        ty = torch.nn.functional.batch_norm(_t(x), None, None, _t(w), _t(b), True)
        np.testing.assert_allclose(out, _np(ty), rtol=1e-5, atol=2e-5)


@pytest.mark.parametrize("norm", ["batch", "instance"])
def test_float16_running_statistics_match_torch_bit_for_bit(norm):
    """float16 buffers: torch blends in float32 and rounds once (instance norm: each instance's
    update, then their mean); the batch statistic rounded to float16 and blended in float16 was an
    ulp off in about a third of the values, and the error repeated every step."""
    rng = np.random.default_rng(0)
    x, rm, rv = (torch.tensor(a).half() for a in (rng.normal(size=(4, 64, 5)) * 2 + 1.3, rng.normal(size=64),
                                                  rng.uniform(0.5, 1.5, 64)))
    out = getattr(F, f"{norm}_norm")(*(jnp.asarray(t.numpy()) for t in (x, rm, rv)), None, None, True, 0.1)
    getattr(TF, f"{norm}_norm")(x, rm, rv, None, None, True, 0.1)  # updates rm, rv in place
    np.testing.assert_array_equal(out.running_mean, rm.numpy())
    np.testing.assert_array_equal(out.running_var, rv.numpy())


# ---------------------------------------------------------------- InstanceNorm


IN_CASES = [(2, a, t, True) for a in (False, True) for t in (False, True)] + [
    (2, True, True, False), (1, True, True, True), (3, True, False, False)]


@pytest.mark.parametrize("d,affine,track,batched", IN_CASES)
def test_instancenorm_torch_parity(d, affine, track, batched):
    rng = np.random.default_rng(0)
    shape = ((3,) if batched else ()) + (2,) + (4, 3, 2)[:d]
    tm = getattr(torch.nn, f"InstanceNorm{d}d")(2, eps=1e-3, momentum=0.3, affine=affine,
                                                 track_running_stats=track)
    _randomise_affine(tm, rng)
    m = getattr(nn, f"InstanceNorm{d}d")(2, eps=1e-3, momentum=0.3, affine=affine, track_running_stats=track)
    xs = [rng.normal(size=shape) * 2 + 1 for _ in range(3)]
    _check_parity(tm, m, xs)


def test_instance_norm_functional_running_stats(rng):
    x = rng.normal(size=(3, 2, 7))
    rm, rv = rng.normal(size=2), rng.uniform(1, 2, 2)
    out = F.instance_norm(x, rm, rv, momentum=0.25)
    trm, trv = _t(rm), _t(rv)
    ty = torch.nn.functional.instance_norm(_t(x), trm, trv, momentum=0.25)
    np.testing.assert_allclose(out.output, _np(ty), **TOL)
    np.testing.assert_allclose(out.running_mean, _np(trm), **TOL)
    np.testing.assert_allclose(out.running_var, _np(trv), **TOL)
    ev = F.instance_norm(x, rm, rv, use_input_stats=False)
    ty = torch.nn.functional.instance_norm(_t(x), _t(rm), _t(rv), use_input_stats=False)
    np.testing.assert_allclose(ev.output, _np(ty), **TOL)


def test_instance_norm_eps_zero_constant_channel_as_torch():
    """torch's batch-norm training kernel, which instance norm runs, takes 1/std = 0 where var and eps
    are both 0: a constant channel gives ``bias`` and zero input and weight gradients, not NaN."""
    rng = np.random.default_rng(0)
    x, w, b, g = rng.normal(size=(2, 3, 4)), rng.normal(size=3), rng.normal(size=3), rng.normal(size=(2, 3, 4))
    x[0, 1] = 0.1
    y, vjp = jax.vjp(lambda x, w, b: F.instance_norm(x, None, None, w, b, eps=0.0).output, x, w, b)
    tx, tw, tb = (torch.tensor(a, requires_grad=True) for a in (x, w, b))
    ty = TF.instance_norm(tx, None, None, tw, tb, eps=0.0)
    ty.backward(torch.tensor(g))
    np.testing.assert_allclose(y, _np(ty), **TOL)
    assert np.all(np.asarray(y)[0, 1] == b[1])
    for ours, theirs in zip(vjp(jnp.asarray(g)), (tx, tw, tb)):
        np.testing.assert_allclose(ours, _np(theirs.grad), **TOL)


# ---------------------------------------------------------------- LayerNorm, GroupNorm, RMSNorm, LRN


@pytest.mark.both_settings
@pytest.mark.parametrize("normalized_shape,shape,affine,bias", [
    (5, (2, 3, 5), True, True), (5, (2, 3, 5), True, False), (5, (2, 3, 5), False, True),
    ((3, 5), (2, 3, 5), True, True), ((2, 3, 4), (2, 3, 4), True, True)])
def test_layernorm_torch_parity(normalized_shape, shape, affine, bias):
    rng = np.random.default_rng(0)
    tm = torch.nn.LayerNorm(normalized_shape, eps=1e-4, elementwise_affine=affine, bias=bias)
    _randomise_affine(tm, rng)
    m = nn.LayerNorm(normalized_shape, eps=1e-4, elementwise_affine=affine, bias=bias)
    _check_parity(tm, m, [rng.normal(size=shape) + 3], stateful=False, steps_train=False)


@pytest.mark.both_settings
@pytest.mark.parametrize("groups,channels,shape_tail,affine,bias", [
    (2, 4, (5,), True, True), (2, 4, (5,), False, True), (2, 4, (5,), True, False),
    (4, 4, (5,), True, True), (1, 4, (5,), True, True), (2, 4, (3, 2), True, True)])
def test_groupnorm_torch_parity(groups, channels, shape_tail, affine, bias):
    rng = np.random.default_rng(0)
    tm = torch.nn.GroupNorm(groups, channels, eps=1e-4, affine=affine, bias=bias)
    _randomise_affine(tm, rng)
    m = nn.GroupNorm(groups, channels, eps=1e-4, affine=affine, bias=bias)
    _check_parity(tm, m, [rng.normal(size=(3, channels) + shape_tail) - 2], stateful=False, steps_train=False)


@settings(max_examples=3)
@given(n=st.integers(1, 3), g=st.integers(1, 3), cpg=st.integers(2, 3), spatial=st.lists(st.integers(1, 4), max_size=2))
def test_group_norm_functional_hypothesis(n, g, cpg, spatial):
    rng = np.random.default_rng(n * 100 + g * 10 + cpg)
    x = rng.normal(size=(n, g * cpg, *spatial))
    w, b = rng.normal(size=g * cpg), rng.normal(size=g * cpg)
    ours = F.group_norm(x, g, w, b)
    theirs = torch.nn.functional.group_norm(_t(x), g, _t(w), _t(b))
    np.testing.assert_allclose(ours, _np(theirs), rtol=1e-9, atol=1e-9)


@pytest.mark.both_settings
@pytest.mark.parametrize("normalized_shape,shape,eps,affine", [
    (4, (3, 4), None, True), (4, (3, 4), 1e-3, True), (4, (3, 4), 1e-3, False), ((2, 4), (3, 2, 4), None, True)])
def test_rmsnorm_torch_parity(normalized_shape, shape, eps, affine):
    rng = np.random.default_rng(0)
    tm = torch.nn.RMSNorm(normalized_shape, eps=eps, elementwise_affine=affine)
    _randomise_affine(tm, rng)
    m = nn.RMSNorm(normalized_shape, eps=eps, elementwise_affine=affine)
    _check_parity(tm, m, [rng.normal(size=shape) * 1e-8 if eps is None else rng.normal(size=shape)],
                  stateful=False, steps_train=False)


def test_rms_norm_default_eps_is_machine_epsilon():
    x = np.full((2, 3), 1e-9, np.float32)
    # with eps = finfo(float32).eps the tiny input is damped, not blown up to 1
    expected = 1e-9 / np.sqrt(1e-18 + np.finfo(np.float32).eps)
    np.testing.assert_allclose(F.rms_norm(x, 3), expected, rtol=1e-5)
    ty = torch.nn.functional.rms_norm(torch.tensor(x), (3,))
    np.testing.assert_allclose(F.rms_norm(x, 3), ty.numpy(), rtol=1e-5)


@pytest.mark.parametrize("size,shape", [(2, (2, 6, 4)), (5, (2, 6, 4)), (3, (2, 5, 3, 3))])
def test_local_response_norm_torch_parity(size, shape):
    rng = np.random.default_rng(size)
    x = rng.normal(size=shape) * 3
    kw = dict(alpha=0.3, beta=0.6, k=1.5)
    tm = torch.nn.LocalResponseNorm(size, **kw)
    m = nn.LocalResponseNorm(size, **kw)
    _check_parity(tm, m, [x], stateful=False, steps_train=False)


# ---------------------------------------------------------------- SwitchNorm: tests/test_switch_norm.py


# ---------------------------------------------------------------- equivalences


def test_groupnorm_equivalences(rng):
    x = rng.normal(size=(3, 4, 5, 2)) * 2 + 1
    w, b = rng.normal(size=4), rng.normal(size=4)
    np.testing.assert_allclose(F.group_norm(x, 4, w, b), F.instance_norm(x, weight=w, bias=b).output, **TOL)
    ln = F.layer_norm(x, (4, 5, 2))
    np.testing.assert_allclose(F.group_norm(x, 1), ln, **TOL)
    # and against the modules (GroupNorm(1, C) with affine = LN then per-channel affine)
    ref = ln * w[:, None, None] + b[:, None, None]
    np.testing.assert_allclose(F.group_norm(x, 1, w, b), ref, **TOL)


# ---------------------------------------------------------------- numerics


def _offset_input(shape):
    x64 = 1e4 + np.random.default_rng(0).normal(size=shape)
    return x64.astype(np.float32), x64


def _ref_norm(x, axes):
    m = x.mean(axes, keepdims=True)
    return (x - m) / np.sqrt(((x - m) ** 2).mean(axes, keepdims=True) + 1e-5)


@pytest.mark.parametrize("name", ["batch", "batch_channels_last", "batch_1d", "layer", "group",
                                  "group_channels_last", "instance", "switch_bn"])
def test_large_offset_float32(name):
    """Each norm (and each lowering path: trailing axes, leading axes, channels-last group
    norm) on 1e4 + N(0, 1) in float32 against float64."""
    x32, x64 = _offset_input((16, 8, 16, 16))
    if name.endswith("channels_last"):
        x32, x64 = x32.transpose(0, 2, 3, 1), x64.transpose(0, 2, 3, 1)
    elif name == "batch_1d":
        x32, x64 = x32.reshape(128, 256), x64.reshape(128, 256)
    fns = {
        "batch": (lambda x: F.batch_norm(x, None, None, training=True).output, (0, 2, 3)),
        "batch_channels_last": (lambda x: F.batch_norm(x, None, None, training=True, channel_axis=-1).output,
                                (0, 1, 2)),
        "batch_1d": (lambda x: F.batch_norm(x, None, None, training=True).output, (0,)),
        "group_channels_last": (lambda x: F.group_norm(x, 1, channel_axis=-1), (1, 2, 3)),
        "layer": (lambda x: F.layer_norm(x, (8, 16, 16)), (1, 2, 3)),
        "group": (lambda x: F.group_norm(x, 1), (1, 2, 3)),
        "instance": (lambda x: F.instance_norm(x).output, (2, 3)),
        "switch_bn": (lambda x: F.switch_norm(x, None, None, mean_weight=jnp.array([-1e3, -1e3, 1e3]),
                                              var_weight=jnp.array([-1e3, -1e3, 1e3]), training=True,
                                              variance="biased").output,
                      (0, 2, 3)),
    }
    fn, axes = fns[name]
    y = jax.jit(fn)(x32)
    assert y.dtype == jnp.float32
    np.testing.assert_allclose(y, _ref_norm(x64, axes), atol=1e-2)


@pytest.mark.parametrize("shape,axes", [((32, 128, 768), (2,)), ((32, 64, 32, 32), (0, 2, 3)),
                                        ((32, 32, 32, 64), (0, 1, 2))])
def test_large_offset_long_rows(shape, axes):
    """Long reductions (a transformer's LayerNorm over 768 features; a BatchNorm over
    4096 positions, in torch's layout and channels-last): a mean taken as E[x] of the
    unshifted input errs by ~2e-2 here."""
    x32, x64 = _offset_input(shape)
    if axes == (2,):
        y = jax.jit(lambda x: F.layer_norm(x, (shape[-1],)))(x32)
    else:
        channel_axis = 1 if axes == (0, 2, 3) else -1
        y = jax.jit(lambda x: F.batch_norm(x, None, None, training=True, channel_axis=channel_axis).output)(x32)
    np.testing.assert_allclose(y, _ref_norm(x64, axes), atol=5e-3)


def test_large_offset_naive_variance_fails():
    """The check above can fail: E[x²] − E[x]² in float32 is far off."""
    x32, x64 = _offset_input((16, 8, 16, 16))
    xj = jnp.asarray(x32)
    m = jnp.mean(xj, (0, 2, 3), keepdims=True)
    v = jnp.maximum(jnp.mean(xj * xj, (0, 2, 3), keepdims=True) - m * m, 0)
    naive = (xj - m) / jnp.sqrt(v + 1e-5)
    assert np.max(np.abs(np.asarray(naive) - _ref_norm(x64, (0, 2, 3)))) > 1e-2


def test_bfloat16_compute_float32_stats(rng):
    x = rng.normal(size=(8, 4, 6, 6)) * 2 + 3
    m = nn.BatchNorm2d(4, dtype=jnp.bfloat16)
    v = m.init(jax.random.PRNGKey(0), x, train=False)
    y, upd = jax.jit(lambda v, x: m.apply(v, x, train=True, mutable=["batch_stats"]))(v, x.astype(jnp.bfloat16))
    assert y.dtype == jnp.bfloat16
    assert v["params"]["weight"].dtype == jnp.float32
    assert upd["batch_stats"]["running_mean"].dtype == jnp.float32
    np.testing.assert_allclose(np.asarray(y, np.float64), _ref_norm(x, (0, 2, 3)), atol=5e-2)
    np.testing.assert_allclose(upd["batch_stats"]["running_mean"], 0.1 * x.mean((0, 2, 3)), atol=2e-2)
    mod = nn.GroupNorm(2, 4, dtype=jnp.bfloat16)
    vv = mod.init(jax.random.PRNGKey(0), x)
    y = mod.apply(vv, x)
    assert y.dtype == jnp.bfloat16 and vv["params"]["weight"].dtype == jnp.float32
    np.testing.assert_allclose(np.asarray(y, np.float64), _np(torch.nn.functional.group_norm(_t(x), 2)), atol=5e-2)


# ---------------------------------------------------------------- cross-device


def _mesh():
    if jax.device_count() < 4:
        pytest.skip("needs 4 devices (XLA_FLAGS=--xla_force_host_platform_device_count=4)")
    return Mesh(np.array(jax.devices()[:4]), ("batch",))


@pytest.mark.parametrize("cls", ["BatchNorm2d", "SwitchNorm2d"])
def test_sharded_jit_global_batch_statistics(cls, rng):
    mesh = _mesh()
    x = rng.normal(size=(8, 3, 4, 4)) * 2 + 1
    m = getattr(nn, cls)(3)
    v = m.init(jax.random.PRNGKey(0), x, train=False)
    step = jax.jit(lambda v, x: m.apply(v, x, train=True, mutable=["batch_stats"]))
    y1, u1 = step(v, x)
    xs = jax.device_put(x, NamedSharding(mesh, P("batch")))
    y4, u4 = step(v, xs)
    assert len(xs.sharding.device_set) == 4
    np.testing.assert_allclose(y4, y1, **TOL)
    chex.assert_trees_all_close(u4, u1, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("cls", ["BatchNorm2d", "SwitchNorm2d", "InstanceNorm2d"])
def test_shard_map_axis_name(cls, rng):
    mesh = _mesh()
    x = rng.normal(size=(8, 3, 4, 4)) * 2 + 1
    kw = {"track_running_stats": True} if cls == "InstanceNorm2d" else {}
    m1 = getattr(nn, cls)(3, **kw)
    m4 = getattr(nn, cls)(3, axis_name="batch", **kw)
    v = m1.init(jax.random.PRNGKey(0), x, train=False)
    y1, u1 = m1.apply(v, x, train=True, mutable=["batch_stats"])

    def step(v, x):
        return m4.apply(v, x, train=True, mutable=["batch_stats"])

    sharded = jax.jit(jax.shard_map(step, mesh=mesh, in_specs=(P(), P("batch")), out_specs=(P("batch"), P()),
                                    check_vma=False))
    y4, u4 = sharded(v, x)
    np.testing.assert_allclose(y4, y1, **TOL)
    chex.assert_trees_all_close(u4, u1, rtol=1e-10, atol=1e-12)
    # without axis_name the statistics would be per-device: the check can fail
    if cls != "InstanceNorm2d":
        local = jax.jit(jax.shard_map(lambda v, x: m1.apply(v, x, train=True, mutable=["batch_stats"]),
                                      mesh=mesh, in_specs=(P(), P("batch")), out_specs=(P("batch"), P()),
                                      check_vma=False))
        assert not np.allclose(local(v, x)[0], y1)


def test_batch_norm_under_an_explicit_mesh(rng):
    """JAX 0.10's jax.make_mesh gives Explicit axes, where slicing the sharded batch for the moments' shift
    raised a ShardingTypeError; the result equals the unsharded one."""
    x = rng.normal(size=(8, 3, 4, 4)) * 3 + 5
    m = nn.BatchNorm2d(3)
    v = m.init(jax.random.PRNGKey(0), x, train=False)
    step = jax.jit(lambda v, x: m.apply(v, x, train=True, mutable=["batch_stats"]))
    want = step(v, x)
    mesh = jax.make_mesh((4,), ("batch",), axis_types=(jax.sharding.AxisType.Explicit,))
    with jax.set_mesh(mesh):
        got = step(v, jax.device_put(x, NamedSharding(mesh, P("batch"))))
    chex.assert_trees_all_close(got, want, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("channel_axis", [1, -1])
def test_group_norm_under_an_explicit_mesh(channel_axis, rng):
    """GroupNorm reshapes the channels, keeping the batch: under an Explicit mesh JAX refused the reshape
    of the sharded array (ShardingTypeError); values and gradients now equal the unsharded ones."""
    x = jnp.asarray(rng.normal(size=(8, 6, 3, 3)) * 2 + 1)
    x = x if channel_axis == 1 else jnp.moveaxis(x, 1, -1)
    w, b = jnp.asarray(rng.normal(size=6)), jnp.asarray(rng.normal(size=6))
    step = jax.jit(jax.value_and_grad(lambda x, w: jnp.sum(jnp.sin(F.group_norm(x, 3, w, b, channel_axis=channel_axis))),
                                      (0, 1)))
    want = step(x, w)
    mesh = jax.make_mesh((4,), ("batch",), axis_types=(jax.sharding.AxisType.Explicit,))
    with jax.set_mesh(mesh):
        got = step(jax.device_put(x, NamedSharding(mesh, P("batch"))), w)
    chex.assert_trees_all_close(got, want, rtol=1e-10, atol=1e-12)


def test_one_value_per_channel_over_the_devices_is_torchs_error():
    """One sample per group of devices: torch's ValueError, not a ZeroDivisionError from n / (n - 1)."""
    m = nn.BatchNorm1d(3, axis_name="batch", axis_index_groups=[[0], [1], [2], [3]])
    v = m.init(jax.random.PRNGKey(0), jnp.ones((2, 3)), train=False)
    step = jax.shard_map(lambda x: m.apply(v, x, train=True, mutable=["batch_stats"])[0], mesh=_mesh(),
                         in_specs=P("batch"), out_specs=P("batch"))
    with pytest.raises(ValueError, match="more than 1 value per channel when training over the devices of axis"):
        step(jnp.ones((4, 3)))


# ---------------------------------------------------------------- errors


def _init(m, x, **kw):
    return m.init(jax.random.PRNGKey(0), jnp.asarray(x), **kw)


@pytest.mark.parametrize("cls", ["BatchNorm2d", "InstanceNorm2d", "SwitchNorm2d"])
def test_train_missing(cls):
    with pytest.raises(ValueError, match=f"{cls}: `train` must be given"):
        _init(getattr(nn, cls)(3), np.zeros((2, 3, 4, 4)))
    with pytest.raises(TypeError, match=f"{cls}: `train` must be a Python bool"):
        _init(getattr(nn, cls)(3), np.zeros((2, 3, 4, 4)), train=1)


def test_traced_train_says_how_to_keep_it_static():
    """flax's lifted jit/remat trace keyword arguments: the error says why and what to do."""
    import flax.linen as fnn

    with pytest.raises(TypeError, match=r"BatchNorm1d: `train` must be a Python bool, got .*Tracer \(a traced value: "
                                        r".*static_argnums"):
        fnn.jit(nn.BatchNorm1d)(3).init(jax.random.key(0), jnp.ones((2, 3)), train=True)


@pytest.mark.parametrize("module,shape,match", [
    (nn.BatchNorm2d(3), (2, 4, 4, 4), r"BatchNorm2d: expected input with 3 channels \(num_features=3\).*\(2, 4, 4, 4\)"),
    (nn.BatchNorm1d(3), (2, 4), r"BatchNorm1d: expected input with 3 channels"),
    (nn.BatchNorm2d(3), (2, 3, 4), r"BatchNorm2d: expected 4-D \(N, C, H, W\) input, got 3-D"),
    (nn.BatchNorm1d(3), (2, 3, 4, 4), r"BatchNorm1d: expected 2-D \(N, C\) or 3-D \(N, C, L\) input"),
    (nn.BatchNorm3d(3), (2, 3, 4, 4), r"BatchNorm3d: expected 5-D"),
    (nn.InstanceNorm2d(3, affine=True), (2, 4, 4, 4),
     r"InstanceNorm2d: expected input with 3 channels \(num_features=3\) at dim 1, got shape \(2, 4, 4, 4\)"),
    (nn.InstanceNorm1d(3, track_running_stats=True), (4, 5),
     r"InstanceNorm1d: expected input with 3 channels \(num_features=3\) at dim 0, got shape \(4, 5\)"),
    (nn.InstanceNorm1d(3), (2, 3, 4, 4), r"InstanceNorm1d: expected 2-D \(C, \*spatial\) or 3-D"),
    (nn.SwitchNorm2d(3), (2, 3, 4), r"SwitchNorm2d: expected 4-D"),
    (nn.SwitchNorm1d(3), (2, 4), r"SwitchNorm1d: expected input with 3 channels"),
])
def test_wrong_channels_and_rank(module, shape, match):
    with pytest.raises(ValueError, match=match):
        _init(module, np.zeros(shape), train=True)


def test_instance_norm_without_parameters_warns_on_channels_as_torch():
    """Without affine parameters or running statistics nothing has num_features' shape:
    torch runs and warns, naming the caller's channel dim."""
    x = np.random.default_rng(0).normal(size=(2, 4, 3))
    for arr, dim in ((x, 1), (x[0], 0)):
        with pytest.warns(UserWarning, match=rf"InstanceNorm1d: input's size at dim={dim} does not match num_features"):
            y = nn.InstanceNorm1d(3).apply({}, arr, train=True)
        np.testing.assert_allclose(y, torch.nn.InstanceNorm1d(3)(_t(arr)).numpy(), **TOL)


@pytest.mark.parametrize("module,shape,match", [
    (nn.LayerNorm((4, 5)), (2, 5, 4), r"LayerNorm: normalized_shape=\(4, 5\) does not match .*\(2, 5, 4\)"),
    (nn.LayerNorm(5), (2, 4), r"LayerNorm: normalized_shape=\(5,\)"),
    (nn.RMSNorm((3, 3)), (3,), r"RMSNorm: normalized_shape=\(3, 3\) does not match"),
    (nn.GroupNorm(2, 4), (2, 6, 3), r"GroupNorm: expected input with 4 channels \(num_channels=4\)"),
    (nn.GroupNorm(2, 4), (4,), r"GroupNorm: expected \(N, C, \*\) input, got 1-D"),
    (nn.LocalResponseNorm(2), (2, 4), r"LocalResponseNorm: expected 3-D or higher"),
])
def test_shape_errors(module, shape, match):
    with pytest.raises(ValueError, match=match):
        _init(module, np.zeros(shape))


def test_constructor_and_functional_errors(rng):
    with pytest.raises(ValueError, match="GroupNorm: num_channels=5 must be divisible by num_groups=2"):
        nn.GroupNorm(2, 5)
    with pytest.raises(ValueError, match="group_norm: num_channels=5 must be divisible by num_groups=2"):
        F.group_norm(np.zeros((2, 5, 3)), 2)
    with pytest.raises(TypeError, match="layer_norm: normalized_shape must be an int or a sequence"):
        F.layer_norm(np.zeros((2, 3)), 3.5)
    with pytest.raises(ValueError, match="layer_norm: weight must have shape"):
        F.layer_norm(np.zeros((2, 3)), 3, np.ones(4))
    # integer input: torch has no integer kernels; the result would be truncated to int
    ints = np.arange(24).reshape(2, 3, 4)
    for call in (lambda: F.layer_norm(ints, (4,)), lambda: F.rms_norm(ints, (4,)), lambda: F.group_norm(ints, 3),
                 lambda: F.batch_norm(ints, None, None, training=True), lambda: F.instance_norm(ints),
                 lambda: F.local_response_norm(ints, 2)):
        with pytest.raises(TypeError, match=r"_norm: expected a floating-point input, got dtype int"):
            call()
    # BatchNorm without affine and running statistics takes any channel count, as torch
    x = rng.standard_normal((2, 3, 5))
    np.testing.assert_allclose(nn.BatchNorm1d(4, affine=False, track_running_stats=False).apply({}, x, train=False),
                               torch.nn.BatchNorm1d(4, affine=False, track_running_stats=False)(_t(x)), **TOL)
    with pytest.raises(TypeError, match="instance_norm: momentum must be a float, got None"):
        F.instance_norm(np.zeros((2, 3, 4)), np.zeros(3), np.ones(3), momentum=None)
    with pytest.raises(ValueError, match="BatchNorm1d: expected more than 1 value per channel when training"):
        _init(nn.BatchNorm1d(3), np.zeros((1, 3)), train=True)
    with pytest.raises(ValueError, match="InstanceNorm1d: expected more than 1 spatial element"):
        _init(nn.InstanceNorm1d(3), np.zeros((2, 3, 1)), train=True)
    with pytest.raises(ValueError, match="batch_norm: running_mean and running_var are needed when training=False"):
        F.batch_norm(np.zeros((2, 3)), None, None)
    with pytest.raises(ValueError, match="batch_norm: running_mean and running_var must both be given"):
        F.batch_norm(np.zeros((2, 3)), np.zeros(3), None, training=True)
    with pytest.raises(ValueError, match=r"batch_norm: running_mean must have shape \(3,\)"):
        F.batch_norm(np.zeros((2, 3)), np.zeros(4), np.ones(4), training=True)
    with pytest.raises(ValueError, match=r"batch_norm: momentum=None .* needs num_batches_tracked"):
        F.batch_norm(np.ones((2, 3)), np.zeros(3), np.ones(3), training=True, momentum=None)
    with pytest.raises(ValueError, match=r"switch_norm: mean_weight must have shape \(3,\)"):
        F.switch_norm(np.ones((2, 3, 4)), None, None, mean_weight=np.ones(2))
    with pytest.raises(TypeError, match=r"local_response_norm: size must be an int, got 2.5"):  # torch raises too
        F.local_response_norm(jnp.ones((1, 3, 4)), 2.5)
    with pytest.raises(ValueError, match="local_response_norm: size must be >= 1"):
        F.local_response_norm(np.ones((2, 3, 4)), 0)
    with pytest.raises(ValueError, match="instance_norm: expected .*at least one spatial dim"):
        F.instance_norm(np.ones((2, 3)))
    with pytest.raises(ValueError, match="batch_norm: eps must be positive during training, got 0"):
        F.batch_norm(np.ones((2, 3)), None, None, training=True, eps=0)  # torch 2.13 raises too


@pytest.mark.parametrize("call", [lambda: F.layer_norm(np.ones((2, 4)), (4.7,)),
                                  lambda: F.rms_norm(np.ones((2, 4)), [4.0]),
                                  lambda: _init(nn.LayerNorm((4.7,)), np.ones((2, 4))),
                                  lambda: _init(nn.RMSNorm((2, True)), np.ones((2, 1))),
                                  ], ids=["layer_norm", "rms_norm", "LayerNorm", "RMSNorm"])
def test_normalized_shape_entries_must_be_ints_as_torch(call, request):
    """A float (or bool) entry was truncated (``(4.7,)`` normalised over 4); torch raises TypeError."""
    name = request.node.callspec.id
    with pytest.raises(TypeError, match=f"^{name}: normalized_shape must be an int or a sequence of ints"):
        call()


def test_norms_where_a_review_found_the_lowering_wrong():
    """float32 rows near 1e18 overflow Σx² (the raw moments' guard took an infinite variance:
    every value normalised to 0), a traced eps (the lowering's derivative in eps was 0), an
    infinite first element of a channel (its shift made the running mean NaN, torch's is inf):
    the lowering gives the reference's results."""
    big = (1e18 * (1 + 1e-3 * np.random.default_rng(9).standard_normal((2, 64)))).astype(np.float32)
    x = np.random.default_rng(0).standard_normal((3, 4)).astype(np.float32)
    inf_first = np.random.default_rng(1).standard_normal((4, 3, 2, 2)).astype(np.float32)
    inf_first[0, 0, 0, 0] = np.inf
    m = nn.BatchNorm2d(3)
    variables = m.init(jax.random.key(0), inf_first, train=True)

    @jax.jit  # one program per setting (read while tracing); arrays as arguments, not folded constants
    def run(big, x, inf_first):
        return (F.layer_norm(big, (64,)), F.batch_norm(big.T, np.zeros(2), np.ones(2), training=True)[2],
                jax.grad(lambda e: jnp.sum(F.layer_norm(x, (4,), eps=e) ** 3))(0.5),
                m.apply(variables, inf_first, train=True, mutable=["batch_stats"])[1]["batch_stats"]["running_mean"])

    got = run(big, x, inf_first)
    with config.lowering("reference"):
        want = run(big, x, inf_first)
    assert np.isfinite(np.asarray(got[1])).all() and float(got[2]) != 0 and np.isinf(float(got[3][0]))
    np.testing.assert_allclose(got[0], want[0], atol=1e-4)
    np.testing.assert_allclose(got[1], want[1], rtol=1e-5)
    np.testing.assert_allclose(got[2], want[2], rtol=1e-5)
    np.testing.assert_array_equal(np.isinf(got[3]), np.isinf(want[3]))


@pytest.mark.both_settings
def test_constant_slices_normalise_as_torch():
    """A constant slice has mean exactly its value and variance exactly 0, as torch's: with
    eps = 0 layer and group norm give NaN (0/0) (not group norm on a channels-last input, whose plain
    mean trades that case for speed: ±1, docs/normalization.md), with a tiny eps instance norm gives 0 (torch's float64: 9e-13, float32: 1.5e-4; in float32
    the plain two-pass mean of twelve 0.1s is not 0.1, which normalised them to ±1, or with eps
    1e-10 to 1.5e-3).  Each group of two channels holds its own constant."""
    for value, n in ((0.1, 12), (0.7, 7), (1.1, 10)):
        x = np.full((2, 6, n), value, np.float32) * (1 + np.arange(6) // 2)[:, None].astype(np.float32)
        xt = torch.tensor(x, dtype=torch.float64)
        for got, want in ((F.layer_norm(x, (n,), eps=0), TF.layer_norm(xt, (n,), eps=0)),
                          (F.group_norm(x, 3, eps=0), TF.group_norm(xt, 3, eps=0)),
                          (F.instance_norm(x, eps=1e-10)[0], TF.instance_norm(xt, eps=1e-10))):
            np.testing.assert_allclose(np.asarray(got), want.numpy(), rtol=0, atol=1e-9)  # NaN where torch's


def test_layer_norm_wide_parameter_gradients_match_torch():
    """normalized_shape of 2**14 elements: the weight/bias gradients take the CPU
    column-sum-as-product path (``_sum_over``); they still equal torch's in float64."""
    from jaxlayers._lowering import norm as N

    rng = np.random.default_rng(11)
    shape = (3, 4, 64, 64)
    x, w, b, g = (rng.normal(size=s) for s in (shape, shape[1:], shape[1:], shape))
    gx, gw, gb = jax.vjp(lambda x, w, b: F.layer_norm(x, shape[1:], w, b), x, w, b)[1](jnp.asarray(g))
    tx, tw, tb = (torch.tensor(a, requires_grad=True) for a in (x, w, b))
    torch.nn.functional.layer_norm(tx, shape[1:], tw, tb).backward(torch.tensor(g))
    for ours, theirs in ((gx, tx), (gw, tw), (gb, tb)):
        np.testing.assert_allclose(ours, theirs.grad.numpy(), rtol=1e-9, atol=1e-10)
    v = jnp.asarray(rng.normal(size=(5, 2, 1 << 14)))
    np.testing.assert_allclose(N._sum_over(v, (0, 1)), np.sum(np.asarray(v), (0, 1), keepdims=True), rtol=1e-12)
    np.testing.assert_allclose(N._sum_over(v, (0, 2)), np.sum(np.asarray(v), (0, 2), keepdims=True), rtol=1e-12)


def test_rms_norm_wide_weight_gradient_matches_torch_and_jvp_works():
    """A 2**14-element RMSNorm weight: its gradient is summed by the CPU product path
    (custom JVP of the scaling), equal to torch's; forward mode still works."""
    rng = np.random.default_rng(12)
    shape = (3, 4, 64, 64)
    x, w, g = (rng.normal(size=s) for s in (shape, shape[1:], shape))
    fn = lambda x, w: F.rms_norm(x, shape[1:], w, 1e-6)  # noqa: E731
    gx, gw = jax.vjp(fn, x, w)[1](jnp.asarray(g))
    tx, tw = (torch.tensor(a, requires_grad=True) for a in (x, w))
    torch.nn.functional.rms_norm(tx, shape[1:], tw, 1e-6).backward(torch.tensor(g))
    np.testing.assert_allclose(gx, tx.grad.numpy(), rtol=1e-9, atol=1e-10)
    np.testing.assert_allclose(gw, tw.grad.numpy(), rtol=1e-9, atol=1e-10)
    dw = rng.normal(size=w.shape)
    _, t = jax.jvp(lambda w: fn(x, w), (jnp.asarray(w),), (jnp.asarray(dw),))
    rms = np.sqrt(np.mean(x ** 2, axis=(1, 2, 3), keepdims=True) + 1e-6)
    np.testing.assert_allclose(t, x / rms * dw, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("norm", ["layer", "batch"])
@pytest.mark.parametrize("offset", [0.0, 1.99, 2.01, 7.9, 1e4])
def test_guarded_moments_accuracy_around_the_switch(norm, offset):
    """Raw moments up to the mean² = 4·var switch (every slice here has its mean at ``offset``
    standard deviations), shifted ones above: the float32 output stays within 5e-6 of float64 on
    either side for layer norm, 2.5e-5 for batch norm, whose sums down the batch err more (seen:
    at most 2e-6 and 1e-5; torch's float32 2e-7 to 1e-6; with the switch at 64, at 7.9 std: 1.5e-5
    to 2e-5 and 4.5e-5 to 1.2e-4).  At 1e4 within 1e-4 (seen: 3e-5)."""
    shape, axes = ((16, 768), (1,)) if norm == "layer" else ((48, 4, 4, 4), (0, 2, 3))
    z = np.random.default_rng(0).normal(size=shape)
    x = (offset + (z - z.mean(axes, keepdims=True)) / z.std(axes, keepdims=True)).astype(np.float32)
    fn = (lambda x: F.layer_norm(x, (768,))) if norm == "layer" else (
        lambda x: F.batch_norm(x, None, None, training=True).output)
    atol = 1e-4 if offset > 100 else {"layer": 5e-6, "batch": 2.5e-5}[norm]
    np.testing.assert_allclose(jax.jit(fn)(x), _ref_norm(x.astype(np.float64), axes), rtol=0, atol=atol)


def test_guarded_moments_under_vmap():
    """Under vmap the branch choice is per call, not per example: results equal the unbatched ones."""
    rng = np.random.default_rng(14)
    xs = np.stack([rng.normal(size=(6, 32)), 1e4 + rng.normal(size=(6, 32))]).astype(np.float32)
    fn = lambda x: F.layer_norm(x, (32,))  # noqa: E731  (lowered: moments over the trailing axis)
    batched = jax.vmap(fn)(xs)
    np.testing.assert_allclose(batched[0], fn(xs[0]), rtol=1e-5, atol=1e-5)
    for i in range(2):  # (the offset example is only as exact as float32 holds 1e4 + N(0, 1))
        np.testing.assert_allclose(batched[i], _ref_norm(xs[i].astype(np.float64), (1,)), atol=2e-3)


@pytest.mark.parametrize("offset", [1.0, 50.0])
@pytest.mark.parametrize("axes", [(0, 2), (1, 2), (0, 1)])
def test_guarded_moments_equal_shifted_and_two_pass(offset, axes):
    """Both branches of the CPU lowering's guard (offset 1: raw moments, 50: shifted) give the
    two-pass moments (float64), for interleaved, trailing and leading axes."""
    from jaxlayers._lowering import norm as N

    x = jnp.asarray(np.random.default_rng(15).normal(size=(4, 6, 5)) * 2 + offset)
    guarded = N._guarded_moments(x, axes)
    chex.assert_trees_all_close(guarded, N._shifted_moments(x, axes), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(guarded[1], np.var(np.asarray(x), axes, keepdims=True), rtol=1e-12)


# ------------------------------------------- axis_name outside a mapped context


@pytest.mark.parametrize("cls,shape,kw", [
    ("BatchNorm1d", (2, 3), {}),
    ("BatchNorm2d", (2, 3, 2, 2), {}),
    ("InstanceNorm2d", (2, 3, 2, 2), {"track_running_stats": True, "affine": True}),
    ("SwitchNorm2d", (2, 3, 2, 2), {}),
])
def test_axis_name_init_outside_mapped_context(cls, shape, kw, rng):
    # init skips the cross-device reduction (as Flax): no "unbound axis name" error,
    # and the same variables as without axis_name
    x = rng.normal(size=shape)
    m = getattr(nn, cls)(3, axis_name="batch", **kw)
    v = m.init(jax.random.PRNGKey(0), x, train=True)
    chex.assert_trees_all_equal(v, getattr(nn, cls)(3, **kw).init(jax.random.PRNGKey(0), x, train=True))
    # ... while apply still reduces over the axis: outside a mapped context it fails
    with pytest.raises(NameError, match="unbound axis name"):
        m.apply(v, x, train=True)
