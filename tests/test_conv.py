"""Conv*d, ConvTranspose*d, Lazy* and F.conv*d / F.conv_transpose*d against torch (float64)."""

import functools
import inspect
import math

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
import torch.nn.functional as TF
from hypothesis import given
from hypothesis import strategies as st

from jaxlayers import functional as F
from jaxlayers import interop, nn
from oracle import close, jax_fwd_bwd, torch_fwd_bwd

RTOL, ATOL = 1e-10, 1e-11

TORCH_CONV = {1: TF.conv1d, 2: TF.conv2d, 3: TF.conv3d}
TORCH_CONVT = {1: TF.conv_transpose1d, 2: TF.conv_transpose2d, 3: TF.conv_transpose3d}
OUR_CONV = {1: F.conv1d, 2: F.conv2d, 3: F.conv3d}
OUR_CONVT = {1: F.conv_transpose1d, 2: F.conv_transpose2d, 3: F.conv_transpose3d}
CONV_MOD = {1: (nn.Conv1d, torch.nn.Conv1d), 2: (nn.Conv2d, torch.nn.Conv2d), 3: (nn.Conv3d, torch.nn.Conv3d)}
CONVT_MOD = {1: (nn.ConvTranspose1d, torch.nn.ConvTranspose1d), 2: (nn.ConvTranspose2d, torch.nn.ConvTranspose2d),
             3: (nn.ConvTranspose3d, torch.nn.ConvTranspose3d)}


_close = functools.partial(close, rtol=RTOL, atol=ATOL)


def _torch_fwd_bwd(fn, cot_rng, *arrays):
    """torch output and grads w.r.t. every array (None entries skipped)."""
    ts = [None if a is None else torch.from_numpy(np.asarray(a)).requires_grad_() for a in arrays]
    yt = fn(*ts)
    cot = cot_rng.standard_normal(tuple(yt.shape))
    yt.backward(torch.from_numpy(cot))
    return yt.detach().numpy(), cot, [None if t is None else t.grad.numpy() for t in ts]


def _jax_fwd_bwd(fn, cot, *arrays):
    """Our output and grads, forward + backward in one jitted call."""
    idx = [i for i, a in enumerate(arrays) if a is not None]

    @jax.jit
    def run(live, c):
        def f(*live):
            full = list(arrays)
            for i, a in zip(idx, live):
                full[i] = a
            return fn(*full)

        y, vjp = jax.vjp(f, *live)
        return y, vjp(c)

    y, grads = run(tuple(jnp.asarray(arrays[i]) for i in idx), cot)
    out = [None] * len(arrays)
    for i, g in zip(idx, grads):
        out[i] = g
    return y, out


def _compare(ours, theirs, rng, *arrays):
    y_t, cot, g_t = _torch_fwd_bwd(theirs, rng, *arrays)
    y, g = _jax_fwd_bwd(ours, cot, *arrays)
    assert y.shape == y_t.shape and y.dtype == jnp.float64
    _close(y, y_t)
    for a, b in zip(g, g_t):
        if b is not None:
            _close(a, b)


# ----------------------------------------------------------------------------- functional

CONV_CASES = [
    # n, x shape, w shape, kwargs
    (1, (2, 4, 11), (6, 2, 3), dict(stride=2, padding=1, dilation=2, groups=2)),
    (1, (2, 3, 10), (5, 3, 4), dict(padding="same")),
    (1, (2, 3, 10), (5, 3, 4), dict(padding="same", dilation=3)),
    (1, (3, 9), (2, 3, 2), dict(padding="valid", bias=False)),  # unbatched
    (2, (2, 3, 8, 7), (4, 3, 3, 3), dict()),
    (2, (2, 6, 9, 8), (9, 2, 3, 2), dict(stride=(2, 1), padding=(2, 0), dilation=(1, 2), groups=3)),
    (2, (2, 3, 8, 7), (4, 3, 4, 2), dict(padding="same", dilation=(1, 2))),
    (2, (1, 4, 6, 6), (8, 1, 3, 3), dict(groups=4, padding=1, bias=False)),  # depthwise
    (2, (3, 7, 6), (4, 3, 3, 3), dict(stride=3, padding=(0, 2))),  # unbatched
    (2, (2, 2, 5, 5), (3, 2, 5, 5), dict()),  # kernel == input
    (3, (1, 2, 5, 6, 4), (3, 2, 2, 3, 2), dict(stride=(1, 2, 1), padding=1)),
    (3, (2, 4, 4, 3), (4, 1, 3, 2, 2), dict(groups=2, padding="same", dilation=(1, 1, 2), bias=False)),  # unbatched
    # depthwise: the sum-over-taps lowering
    (1, (2, 3, 10), (6, 1, 5), dict(stride=2, padding=2, groups=3)),
    (3, (1, 2, 4, 5, 4), (2, 1, 3, 2, 3), dict(padding=(1, 0, 1), dilation=(1, 2, 1), groups=2)),
    # pointwise (1x1): the GEMM lowering
    (1, (4, 9), (3, 4, 1), dict(padding="same", dilation=2)),  # unbatched
    (2, (2, 5, 6, 7), (3, 5, 1, 1), dict(stride=(2, 3), padding=(1, 0))),
    (3, (2, 3, 3, 4, 2), (2, 3, 1, 1, 1), dict(stride=(1, 2, 1))),
]


@pytest.mark.both_settings
@pytest.mark.parametrize("n,xs,ws,kw", CONV_CASES)
def test_conv_functional_vs_torch(n, xs, ws, kw, rng):
    kw = dict(kw)
    bias = kw.pop("bias", True)
    x, w = rng.standard_normal(xs), rng.standard_normal(ws)
    b = rng.standard_normal(ws[0]) if bias else None
    _compare(lambda x, w, b: OUR_CONV[n](x, w, b, **kw), lambda x, w, b: TORCH_CONV[n](x, w, b, **kw), rng, x, w, b)



@pytest.mark.parametrize("t,k,pad", [(6, 3, 1), (6, 3, -1), (4, 1, 0), (2, 5, 2), (3, 3, 0)])
def test_conv_tbc_vs_torch(t, k, pad, rng):
    x, w, b = rng.standard_normal((t, 2, 3)), rng.standard_normal((k, 3, 4)), rng.standard_normal(4)
    _compare(lambda x, w, b: F.conv_tbc(x, w, b, pad), lambda x, w, b: TF.conv_tbc(x, w, b, pad), rng, x, w, b)


@pytest.mark.parametrize("shapes,pad,match", [
    (((5, 3), (3, 3, 4), (4,)), 0, "input must be"),
    (((5, 2, 3), (3, 2, 4), (4,)), 0, r"weight must be \(kernel_width, 3, out_channels\)"),
    (((5, 2, 3), (3, 3, 4), (3,)), 0, r"bias must have shape \(4,\)"),
    (((3, 2, 3), (5, 3, 4), (4,)), 0, "larger than the padded input length 3"),
])
def test_conv_tbc_errors(shapes, pad, match):
    with pytest.raises(ValueError, match=match):
        F.conv_tbc(*(jnp.ones(s) for s in shapes), pad)

CONVT_CASES = [
    (1, (2, 4, 5), (4, 3, 3), dict(stride=2, padding=1, output_padding=1)),
    (1, (2, 4, 5), (4, 2, 3), dict(groups=2, dilation=2, output_padding=1, bias=False)),  # op < dilation
    (1, (4, 6), (4, 1, 2), dict(stride=3, groups=4)),  # unbatched
    (2, (2, 4, 4, 5), (4, 3, 3, 2), dict(stride=(2, 3), padding=(1, 0), output_padding=(1, 2))),
    (2, (2, 4, 4, 5), (4, 3, 2, 2), dict(stride=3, padding=2)),  # padding > dilation*(k-1): crops
    (2, (2, 6, 3, 4), (6, 2, 3, 3), dict(stride=2, padding=1, groups=3, dilation=(2, 1), output_padding=(1, 0))),
    (2, (3, 4, 4), (3, 2, 3, 3), dict(bias=False)),  # unbatched
    (3, (1, 2, 3, 3, 2), (2, 3, 2, 2, 2), dict(stride=2, padding=(0, 1, 0), output_padding=(1, 0, 1))),
    # stride 1, padding > dilation * (k - 1): negative padding of the equivalent convolution, tiny output
    (1, (1, 1, 4), (1, 1, 1), dict(padding=1)),
    (2, (1, 2, 4, 3), (2, 1, 2, 2), dict(padding=(2, 1))),
]


@pytest.mark.both_settings
@pytest.mark.parametrize("n,xs,ws,kw", CONVT_CASES)
def test_conv_transpose_functional_vs_torch(n, xs, ws, kw, rng):
    kw = dict(kw)
    bias = kw.pop("bias", True)
    x, w = rng.standard_normal(xs), rng.standard_normal(ws)
    b = rng.standard_normal(ws[1] * kw.get("groups", 1)) if bias else None
    _compare(lambda x, w, b: OUR_CONVT[n](x, w, b, **kw), lambda x, w, b: TORCH_CONVT[n](x, w, b, **kw), rng, x, w, b)


def test_conv_positional_signature_like_torch(rng):
    x, w, b = rng.standard_normal((1, 4, 7, 7)), rng.standard_normal((6, 2, 3, 3)), rng.standard_normal(6)
    xt, wt, bt = map(torch.from_numpy, (x, w, b))
    _close(F.conv2d(x, w, b, 2, 1, 2, 2), TF.conv2d(xt, wt, bt, 2, 1, 2, 2).numpy())
    wt2 = torch.from_numpy(rng.standard_normal((4, 3, 3, 3)))
    _close(F.conv_transpose2d(x, wt2.numpy(), None, 2, 1, 1, 1, 1),
           TF.conv_transpose2d(xt, wt2, None, 2, 1, 1, 1, 1).numpy())


def test_conv_integer_and_mixed_dtypes_promote():
    x = jnp.ones((1, 1, 3), jnp.int32)
    w = jnp.ones((1, 1, 2), jnp.float32)
    assert F.conv1d(x, w).dtype == jnp.float32
    _close(F.conv1d(x, w), [[[2.0, 2.0]]])


# ------------------------------------------------------------------------------- modules


def _module_compare(ours, theirs, x, rng, **call_kw):
    """Load torch's state_dict into our module; compare outputs and grads (input, weight, bias)."""
    variables = interop.state_dict_to_variables(theirs.state_dict())
    ref_shapes = jax.tree.map(jnp.shape, jax.eval_shape(lambda k, x: ours.init(k, x, **call_kw), jax.random.key(0), x))
    assert ref_shapes == jax.tree.map(jnp.shape, variables)
    xt = torch.from_numpy(x).requires_grad_()
    yt = theirs(xt, **call_kw)
    cot = rng.standard_normal(tuple(yt.shape))
    yt.backward(torch.from_numpy(cot))

    @jax.jit
    def run(params, x, c):
        y, vjp = jax.vjp(lambda p, x: ours.apply({"params": p}, x, **call_kw), params, x)
        return y, vjp(c)

    y, (gp, gx) = run(variables["params"], x, cot)
    assert y.shape == tuple(yt.shape)
    _close(y, yt.detach().numpy())
    _close(gx, xt.grad.numpy())
    _close(gp["weight"], theirs.weight.grad.numpy())
    if theirs.bias is not None:
        _close(gp["bias"], theirs.bias.grad.numpy())
    else:
        assert "bias" not in variables["params"]


CONV_MODULE_CASES = [
    (1, (2, 4, 9), (4, 6, 3), dict(stride=2, padding=2, padding_mode="reflect", groups=2)),
    (1, (4, 9), (4, 6, 4), dict(padding="same", padding_mode="circular")),
    (1, (2, 4, 9), (4, 6, 3), dict(padding="valid", padding_mode="replicate", bias=False)),
    (2, (2, 3, 8, 7), (3, 4, 3), dict(padding=1)),
    (2, (2, 3, 8, 7), (3, 4, (3, 2)), dict(stride=(2, 1), padding=(2, 1), dilation=(1, 2), padding_mode="reflect")),
    (2, (2, 4, 8, 7), (4, 6, 4), dict(padding="same", dilation=2, groups=2, padding_mode="replicate")),
    (2, (3, 8, 7), (3, 4, 3), dict(padding=(1, 3), padding_mode="circular", bias=False)),  # unbatched
    (2, (2, 4, 6, 6), (4, 4, 3), dict(padding="same", padding_mode="zeros", groups=4)),
    (3, (1, 2, 5, 4, 6), (2, 3, (2, 3, 2)), dict(padding=1, padding_mode="circular", stride=(1, 1, 2))),
    (3, (2, 4, 4, 5), (2, 3, 3), dict(padding="same", padding_mode="reflect")),  # unbatched
]


@pytest.mark.parametrize("n,xs,args,kw", CONV_MODULE_CASES)
def test_conv_module_vs_torch(n, xs, args, kw, rng):
    ours_cls, torch_cls = CONV_MOD[n]
    _module_compare(ours_cls(*args, **kw), torch_cls(*args, **kw), rng.standard_normal(xs), rng)


CONVT_MODULE_CASES = [
    (1, (2, 4, 5), (4, 6, 3), dict(stride=2, padding=1, output_padding=1, groups=2), {}),
    (1, (4, 5), (4, 3, 3), dict(stride=3, bias=False), dict(output_size=(17,))),  # unbatched
    (2, (2, 4, 4, 5), (4, 3, (3, 2)), dict(stride=(2, 3), padding=(1, 0), dilation=(1, 2)), {}),
    (2, (2, 4, 4, 5), (4, 6, 3), dict(stride=2, padding=1, groups=2), dict(output_size=(2, 6, 8, 10))),
    (2, (2, 4, 4, 5), (4, 3, 3), dict(stride=3, padding=1, dilation=2), dict(output_size=[12, 15])),
    (3, (1, 2, 3, 3, 2), (2, 3, 2), dict(stride=2), dict(output_size=(7, 6, 5))),
]


@pytest.mark.parametrize("n,xs,args,kw,call_kw", CONVT_MODULE_CASES)
def test_conv_transpose_module_vs_torch(n, xs, args, kw, call_kw, rng):
    ours_cls, torch_cls = CONVT_MOD[n]
    _module_compare(ours_cls(*args, **kw), torch_cls(*args, **kw), rng.standard_normal(xs), rng, **call_kw)


LAZY_CASES = [
    (nn.LazyConv1d, torch.nn.LazyConv1d, (2, 4, 9), (6, 3), dict(padding="same", padding_mode="reflect", groups=2)),
    (nn.LazyConv2d, torch.nn.LazyConv2d, (2, 3, 7, 6), (4, 3), dict(stride=2, padding=1)),
    (nn.LazyConv3d, torch.nn.LazyConv3d, (2, 4, 4, 5), (2, 2), dict(dilation=2)),  # unbatched
    (nn.LazyConvTranspose1d, torch.nn.LazyConvTranspose1d, (2, 4, 5), (6, 3), dict(stride=2, groups=2)),
    (nn.LazyConvTranspose2d, torch.nn.LazyConvTranspose2d, (2, 3, 4, 5), (4, 3),
     dict(stride=2, padding=1, output_padding=1)),
    (nn.LazyConvTranspose3d, torch.nn.LazyConvTranspose3d, (1, 2, 3, 2, 2), (3, 2), dict(bias=False)),
]


@pytest.mark.parametrize("ours_cls,torch_cls,xs,args,kw", LAZY_CASES, ids=[c[0].__name__ for c in LAZY_CASES])
def test_lazy_modules_vs_torch(ours_cls, torch_cls, xs, args, kw, rng):
    x = rng.standard_normal(xs)
    theirs = torch_cls(*args, **kw)
    theirs(torch.from_numpy(x))  # materialise torch's lazy parameters
    theirs.zero_grad()
    ours = ours_cls(*args, **kw)
    assert ours.in_channels is None
    _module_compare(ours, theirs, x, rng)
    # after init the weight fixes in_channels: other channel counts are rejected by name
    n = ours.num_spatial_dims
    v = jax.eval_shape(ours.init, jax.random.key(0), x)
    bad = list(xs)
    bad[-n - 1] += 2
    with pytest.raises(ValueError, match=rf"{ours_cls.__name__}: expected input with {xs[-n - 1]} channels"):
        jax.eval_shape(ours.apply, v, np.zeros(bad))


def test_lazy_signature_is_torch_without_in_channels():
    m = nn.LazyConv2d(8, 3, 2, 1)
    assert (m.out_channels, m.kernel_size, m.stride, m.padding) == (8, (3, 3), (2, 2), (1, 1))  # torch's tuples
    t = nn.LazyConvTranspose2d(8, 3, 2, 1, 1, 1, False, 1)
    assert (t.output_padding, t.groups, t.bias, t.dilation) == ((1, 1), 1, False, (1, 1))
    assert isinstance(m, nn.Conv2d) and isinstance(t, nn.ConvTranspose2d)


def test_constructor_positional_order_like_torch():
    m = nn.Conv2d(16, 33, (3, 5), (2, 1), (4, 2), (3, 1), 1, False, "reflect")
    assert (m.stride, m.padding, m.dilation, m.groups, m.bias, m.padding_mode) == ((2, 1), (4, 2), (3, 1), 1, False,
                                                                                     "reflect")
    t = nn.ConvTranspose2d(4, 6, 3, 2, 1, 1, 2, False, 1)
    theirs = torch.nn.ConvTranspose2d(4, 6, 3, 2, 1, 1, 2, False, 1)
    assert (t.output_padding, t.groups, t.bias, t.dilation) == (theirs.output_padding, 2, False, theirs.dilation)
    params = inspect.signature(nn.Conv2d).parameters
    for name in ("dtype", "param_dtype", "weight_init", "bias_init", "precision"):
        assert params[name].kind is inspect.Parameter.KEYWORD_ONLY  # Flax options are keyword-only


def test_state_dict_keys_and_variables_round_trip():
    theirs = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.ConvTranspose2d(4, 2, 2, stride=2))
    ours = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ConvTranspose2d(4, 2, 2, stride=2))
    x = np.random.default_rng(0).standard_normal((1, 3, 6, 6))
    v = jax.eval_shape(ours.init, jax.random.key(0), x)
    assert interop.variables_to_state_dict(v).keys() == theirs.state_dict().keys()
    loaded = interop.load_state_dict(v, theirs.state_dict(), cast=False)
    _close(jax.jit(ours.apply)(loaded, x), theirs(torch.from_numpy(x)).detach().numpy())


@pytest.mark.parametrize(
    "module,weight_shape,fan_in",
    [(nn.Conv2d(16, 8, 3, groups=2), (8, 8, 3, 3), 72), (nn.Conv1d(5, 300, 4), (300, 5, 4), 20),
     (nn.ConvTranspose2d(6, 16, (3, 2), groups=2), (6, 8, 3, 2), 48), (nn.LazyConv3d(40, 2), (40, 3, 2, 2, 2), 24)],
)
def test_default_init_is_torch_uniform_fan_in(module, weight_shape, fan_in):
    n = module.num_spatial_dims
    x = jnp.ones((1, weight_shape[0] if module.transposed else weight_shape[1] * module.groups) + (4,) * n)
    v = jax.jit(module.init)(jax.random.key(1), x)["params"]
    w, b = v["weight"], v["bias"]
    assert w.shape == weight_shape and b.shape == (module.out_channels,)
    assert w.dtype == jnp.float32 and b.dtype == jnp.float32
    bound = 1 / math.sqrt(fan_in)
    for a in (w, b):
        assert float(jnp.max(jnp.abs(a))) <= bound
    assert float(jnp.max(jnp.abs(w))) > 0.97 * bound
    np.testing.assert_allclose(float(jnp.var(w)), bound**2 / 3, rtol=0.1)
    assert abs(float(jnp.mean(w))) < 0.05 * bound * 3


def test_init_overrides_dtype_and_param_dtype():
    m = nn.Conv1d(2, 3, 2, weight_init=jax.nn.initializers.ones, bias_init=jax.nn.initializers.zeros,
                  param_dtype=jnp.float64, dtype=jnp.float32)
    x = np.ones((1, 2, 4))
    v = jax.jit(m.init)(jax.random.key(0), x)
    assert v["params"]["weight"].dtype == jnp.float64
    _close(v["params"]["weight"], np.ones((3, 2, 2)))
    y = jax.jit(m.apply)(v, x)
    assert y.dtype == jnp.float32
    _close(y, np.full((1, 3, 3), 4.0))
    m16 = nn.Conv2d(2, 3, 3, dtype=jnp.bfloat16)
    v16 = jax.eval_shape(m16.init, jax.random.key(0), jnp.ones((1, 2, 5, 5)))
    out16 = jax.eval_shape(m16.apply, v16, jnp.ones((1, 2, 5, 5)))
    assert out16.dtype == jnp.bfloat16 and v16["params"]["weight"].dtype == jnp.float32


# -------------------------------------------------------------- jit / no-jit, float32, vmap


class ConvVariants(chex.TestCase):
    @chex.variants(with_jit=True, without_jit=True)
    def test_functional_float32_and_vmap(self):
        r = np.random.default_rng(3)
        x = r.standard_normal((3, 2, 4, 7, 6)).astype(np.float32)  # vmap axis, N, C, H, W
        w = r.standard_normal((6, 2, 3, 3)).astype(np.float32)
        b = r.standard_normal(6).astype(np.float32)
        f = self.variant(lambda x, w, b: F.conv2d(x, w, b, stride=(1, 2), padding="valid", groups=2))
        y = jax.vmap(f, in_axes=(0, None, None))(x, w, b)
        assert y.dtype == jnp.float32
        ref = TF.conv2d(torch.from_numpy(x.reshape(6, 4, 7, 6)).double(), torch.from_numpy(w).double(),
                        torch.from_numpy(b).double(), stride=(1, 2), groups=2).numpy()
        _close(y.reshape(ref.shape), ref, rtol=1e-5, atol=1e-5)
        _close(f(x[1], w, b), y[1], rtol=1e-6, atol=1e-6)
        wt = r.standard_normal((4, 3, 2, 2)).astype(np.float32)
        g = self.variant(lambda x, w: F.conv_transpose2d(x, w, None, 2, 0, 1))
        yt = g(x[0], wt)
        ref_t = TF.conv_transpose2d(torch.from_numpy(x[0]).double(), torch.from_numpy(wt).double(), None, 2, 0, 1)
        _close(yt, ref_t.numpy(), rtol=1e-5, atol=1e-5)

    @chex.variants(with_jit=True, without_jit=True)
    def test_module_float32_apply_and_grad(self):
        theirs = torch.nn.Conv2d(3, 4, 3, padding=1, padding_mode="reflect").float()
        ours = nn.Conv2d(3, 4, 3, padding=1, padding_mode="reflect")
        v = interop.state_dict_to_variables(theirs.state_dict())
        x = np.random.default_rng(4).standard_normal((2, 3, 5, 6)).astype(np.float32)
        loss = self.variant(jax.value_and_grad(lambda v, x: jnp.sum(ours.apply(v, x) ** 2)))
        val, g = loss(v, x)
        assert g["params"]["weight"].dtype == jnp.float32
        tt = theirs.double()
        lt = (tt(torch.from_numpy(x).double()) ** 2).sum()
        lt.backward()
        _close(val, lt.item(), rtol=1e-5, atol=1e-4)
        _close(g["params"]["weight"], tt.weight.grad.numpy(), rtol=1e-4, atol=1e-4)
        _close(g["params"]["bias"], tt.bias.grad.numpy(), rtol=1e-4, atol=1e-4)


# ------------------------------------------------------- derivatives through the module

from jax import lax  # noqa: E402


def test_conv_module_grad_of_grad_and_jvp(rng):
    """Forward mode and second order still work through the module (CPU custom-JVP path)."""
    m = nn.Conv2d(3, 4, 3, padding=1)
    x = jnp.asarray(rng.standard_normal((2, 3, 6, 6)))
    v = jax.tree_util.tree_map(lambda a: a.astype(jnp.float64), m.init(jax.random.key(0), x))
    tv = jax.tree_util.tree_map(jnp.ones_like, v)
    _, ty = jax.jvp(lambda v: m.apply(v, x), (v,), (tv,))
    w, b = v["params"]["weight"], v["params"]["bias"]
    ref = lax.conv_general_dilated(x, jnp.ones_like(w), (1, 1), ((1, 1), (1, 1))) + 1.0
    _close(ty, ref)
    def hvp(conv):
        loss = lambda w: jnp.sum((conv(w) + b[:, None, None]) ** 2)  # noqa: E731
        return jax.grad(lambda w: jnp.vdot(jax.grad(loss)(w), w))(w)

    h = hvp(lambda w: F.conv2d(x, w, padding=1))
    _close(h, hvp(lambda w: lax.conv_general_dilated(x, w, (1, 1), ((1, 1), (1, 1)))))


# ------------------------------------------------------------------------------------ errors


@pytest.mark.parametrize(
    "make,exc,match",
    [
        (lambda: nn.Conv2d(3, 4, 3, groups=2), ValueError, r"Conv2d: in_channels=3 must be divisible by groups=2"),
        (lambda: nn.Conv2d(4, 3, 3, groups=2), ValueError, r"Conv2d: out_channels=3 must be divisible by groups=2"),
        (lambda: nn.Conv2d(4, 4, 3, groups=0), ValueError, r"Conv2d: groups must be >= 1, got groups=0"),
        (lambda: nn.Conv2d(0, 4, 3), ValueError, r"Conv2d: in_channels must be >= 1, got in_channels=0"),
        (lambda: nn.Conv1d(2.0, 4, 3), TypeError, r"Conv1d: in_channels must be an int"),
        (lambda: nn.Conv2d(3, 4, 3, padding=-1), ValueError, r"Conv2d: negative padding is not supported"),
        (lambda: nn.Conv2d(3, 4, 3, padding=(1, 2, 3)), ValueError, r"Conv2d: padding must be an int or a sequence of 2"),
        (lambda: nn.Conv2d(3, 4, 3, padding="full"), ValueError, r"Conv2d: padding must be 'same', 'valid'"),
        (lambda: nn.Conv2d(3, 4, 3, padding_mode="mirror"), ValueError, r"Conv2d: padding_mode must be one of"),
        (lambda: nn.Conv2d(3, 4, 3, stride=2, padding="same"), ValueError,
         r"Conv2d: padding='same' is not supported for strided convolutions"),
        (lambda: nn.Conv3d(3, 4, 3, stride=(1, 0, 1)), ValueError, r"Conv3d: stride must be >= 1"),
        (lambda: nn.Conv1d(3, 4, 3, dilation=0), ValueError, r"Conv1d: dilation must be >= 1"),
        (lambda: nn.Conv2d(3, 4, (3, 0)), ValueError, r"Conv2d: kernel_size must be >= 1"),
        (lambda: nn.ConvTranspose2d(3, 4, 3, padding_mode="reflect"), ValueError,
         r"ConvTranspose2d: only padding_mode='zeros' is supported"),
        (lambda: nn.ConvTranspose2d(3, 4, 3, padding="same"), TypeError, r"ConvTranspose2d: padding must be an int"),
        (lambda: nn.ConvTranspose2d(3, 4, 3, stride=2, output_padding=2), ValueError,
         r"ConvTranspose2d: output_padding must be smaller than either stride or dilation"),
        (lambda: nn.ConvTranspose1d(3, 4, 3, output_padding=-1), ValueError,
         r"ConvTranspose1d: output_padding must be non-negative"),
        (lambda: nn.LazyConvTranspose2d(3, 3, groups=2), ValueError,
         r"LazyConvTranspose2d: out_channels=3 must be divisible by groups=2"),
    ],
)
def test_constructor_errors(make, exc, match):
    with pytest.raises(exc, match=match):
        make()


X4 = np.zeros((8, 4, 32, 32))


@pytest.mark.parametrize(
    "module,x,call_kw,match",
    [
        (nn.Conv2d(3, 4, 3), X4, {}, r"Conv2d: expected input with 3 channels \(in_channels=3\), got shape \(8, 4, 32, 32\)"),
        (nn.Conv2d(4, 4, 3), np.zeros((4, 32)), {}, r"Conv2d: expected \(N, C, H, W\) or \(C, H, W\) input, got 2-D"),
        (nn.Conv1d(4, 4, 3), X4, {}, r"Conv1d: expected \(N, C, L\) or \(C, L\) input, got 4-D"),
        (nn.Conv2d(4, 4, 5, padding=1), np.zeros((1, 4, 2, 9)), {},
         r"Conv2d: kernel size \(5, 5\) .* larger than the padded input size \(4, 11\)"),
        (nn.Conv2d(4, 4, 3, dilation=3, padding_mode="reflect", padding=1), np.zeros((1, 4, 4, 9)), {},
         r"Conv2d: kernel size \(3, 3\) \(dilated: \(7, 7\)\) is larger"),
        (nn.Conv2d(4, 4, 3, padding=4, padding_mode="reflect"), np.zeros((1, 4, 4, 9)), {},
         r"Conv2d: reflect padding must be smaller"),
        (nn.LazyConv2d(6, 3, groups=3), X4, {}, r"LazyConv2d: in_channels=4 \(inferred from input of shape "
                                                 r"\(8, 4, 32, 32\)\) must be divisible by groups=3"),
        (nn.ConvTranspose2d(4, 2, 3, stride=2), X4, dict(output_size=(66, 67)),
         r"ConvTranspose2d: requested an output size of \(66, 67\), but valid sizes range from \(65, 65\) to \(66, 66\)"),
        (nn.ConvTranspose2d(4, 2, 3, stride=2), X4, dict(output_size=(1, 66, 66)),
         r"ConvTranspose2d: for 4-D input, output_size must have 2 or 4 elements"),
        (nn.ConvTranspose2d(3, 2, 3), X4, {}, r"ConvTranspose2d: expected input with 3 channels \(in_channels=3\)"),
        (nn.ConvTranspose1d(4, 2, 2, padding=3), np.zeros((4, 3)), {},
         r"ConvTranspose1d: the output size \(-2,\) is too small"),
    ],
)
def test_call_errors(module, x, call_kw, match):
    with pytest.raises(ValueError, match=match):
        jax.eval_shape(lambda k, x: module.init(k, x, **call_kw), jax.random.key(0), x)


@pytest.mark.parametrize(
    "call,exc,match",
    [
        (lambda: F.conv2d(X4, np.zeros((4, 3, 3, 3))), ValueError,
         r"conv2d: expected input with 3 channels \(weight of shape \(4, 3, 3, 3\), groups=1\), got shape \(8, 4, 32, 32\)"),
        (lambda: F.conv2d(X4, np.zeros((3, 2, 3, 3)), groups=2), ValueError, r"conv2d: groups=2 must divide out_channels=3"),
        (lambda: F.conv2d(X4, np.zeros((4, 4, 3))), ValueError, r"conv2d: weight must be \(out_channels, in_channels/groups"),
        (lambda: F.conv2d(X4, np.zeros((4, 4, 3, 3)), np.zeros(3)), ValueError, r"conv2d: bias must have shape \(4,\)"),
        (lambda: F.conv2d(X4, np.zeros((4, 4, 3, 3)), stride=2, padding="same"), ValueError,
         r"conv2d: padding='same' is not supported for strided"),
        (lambda: F.conv2d(X4, np.zeros((4, 4, 3, 3)), padding=(1, -1)), ValueError, r"conv2d: negative padding"),
        (lambda: F.conv2d(X4, np.zeros((4, 4, 33, 3))), ValueError, r"conv2d: kernel size \(33, 3\) .*larger"),
        (lambda: F.conv2d(X4, np.zeros((4, 4, 0, 3))), ValueError, r"conv2d: kernel size must be positive"),
        (lambda: F.conv2d(X4, np.zeros((4, 4, 3, 3)), groups=1.5), TypeError, r"conv2d: groups must be an int"),
        (lambda: F.conv2d(X4, np.zeros((0, 4, 3, 3))), ValueError, r"conv2d: weight has no output channels \(shape \(0, 4, 3, 3\)\)"),
        (lambda: F.conv_transpose2d(X4, np.zeros((4, 0, 3, 3))), ValueError, r"conv_transpose2d: weight has no output channels"),
        (lambda: F.conv_transpose1d(np.zeros((2, 0, 5)), np.zeros((0, 3, 3))), ValueError,
         r"conv_transpose1d: weight has no input channels"),
        (lambda: F.conv1d(X4, np.zeros((4, 4, 3))), ValueError, r"conv1d: expected \(N, C, L\) or \(C, L\) input"),
        (lambda: F.conv3d(X4[None], np.zeros((4, 4, 3, 3, 3)), dilation=(1, 0, 1)), ValueError,
         r"conv3d: dilation must be >= 1"),
        (lambda: F.conv_transpose2d(X4, np.zeros((3, 4, 3, 3))), ValueError,
         r"conv_transpose2d: expected input with 3 channels \(weight of shape \(3, 4, 3, 3\)\)"),
        (lambda: F.conv_transpose2d(X4, np.zeros((4, 4, 3, 3)), groups=3), ValueError,
         r"conv_transpose2d: groups=3 must divide in_channels=4"),
        (lambda: F.conv_transpose2d(X4, np.zeros((4, 4, 3, 3)), output_padding=1), ValueError,
         r"conv_transpose2d: output_padding must be smaller than either stride or dilation, got output_padding=\(1, 1\)"),
        (lambda: F.conv_transpose2d(X4, np.zeros((4, 4, 3, 3)), padding="same"), TypeError,
         r"conv_transpose2d: padding must be an int or a tuple"),
        (lambda: F.conv_transpose2d(X4, np.zeros((4, 4, 3))), ValueError, r"conv_transpose2d: weight must be"),
        (lambda: F.conv_transpose2d(X4, np.zeros((4, 2, 3, 3)), np.zeros(4), groups=1), ValueError,
         r"conv_transpose2d: bias must have shape \(2,\)"),
    ],
)
def test_functional_errors(call, exc, match):
    with pytest.raises(exc, match=match):
        call()


# --------------------------------------------------------------------------------- hypothesis


def _torch_shape(fn, *args, **kw):
    try:
        return tuple(fn(*args, **kw).shape)
    except RuntimeError:
        return None


@given(
    n=st.integers(1, 2),
    batched=st.booleans(),
    size=st.lists(st.integers(1, 9), min_size=2, max_size=2),
    kernel=st.lists(st.integers(1, 4), min_size=2, max_size=2),
    stride=st.integers(1, 3),
    padding=st.one_of(st.integers(0, 3), st.sampled_from(["same", "valid"])),
    dilation=st.integers(1, 3),
)
def test_conv_output_shape_rule_matches_torch(n, batched, size, kernel, stride, padding, dilation):
    x = torch.zeros(((2,) if batched else ()) + (2,) + tuple(size[:n]))
    w = torch.zeros((3, 2) + tuple(kernel[:n]))
    if padding == "same" and stride > 1:
        with pytest.raises(ValueError, match="same"):
            OUR_CONV[n](x.numpy(), w.numpy(), None, stride, padding, dilation)
        return
    expected = _torch_shape(TORCH_CONV[n], x, w, None, stride, padding, dilation)
    try:
        ours = jax.eval_shape(lambda a, b: OUR_CONV[n](a, b, None, stride, padding, dilation), x.numpy(), w.numpy()).shape
    except ValueError:
        ours = None
    assert ours == expected


@given(
    n=st.integers(1, 2),
    batched=st.booleans(),
    size=st.lists(st.integers(1, 6), min_size=2, max_size=2),
    kernel=st.lists(st.integers(1, 4), min_size=2, max_size=2),
    stride=st.integers(1, 3),
    padding=st.integers(0, 3),
    output_padding=st.integers(0, 2),
    dilation=st.integers(1, 3),
    groups=st.sampled_from([1, 2]),
)
def test_conv_transpose_output_shape_rule_matches_torch(n, batched, size, kernel, stride, padding, output_padding,
                                                        dilation, groups):
    x = torch.zeros(((2,) if batched else ()) + (2,) + tuple(size[:n]))
    w = torch.zeros((2, 3) + tuple(kernel[:n]))
    args = (None, stride, padding, output_padding, groups, dilation)
    expected = _torch_shape(TORCH_CONVT[n], x, w, *args)
    try:
        ours = jax.eval_shape(lambda a, b: OUR_CONVT[n](a, b, *args), x.numpy(), w.numpy()).shape
    except ValueError:
        ours = None
    assert ours == expected


@given(
    size=st.integers(1, 7),
    kernel=st.integers(1, 4),
    stride=st.integers(1, 4),
    padding=st.integers(0, 2),
    extra=st.integers(-1, 4),
)
def test_output_size_rule_matches_torch(size, kernel, stride, padding, extra):
    theirs = torch.nn.ConvTranspose1d(1, 1, kernel, stride, padding)
    ours = nn.ConvTranspose1d(1, 1, kernel, stride, padding)
    target = (size - 1) * stride - 2 * padding + kernel + extra
    x = torch.zeros(1, 1, size)
    try:
        expected = tuple(theirs(x, output_size=[target]).shape)
    except (ValueError, RuntimeError):
        expected = None
    try:
        got = jax.eval_shape(lambda a: ours.init_with_output(jax.random.key(0), a, output_size=[target])[0],
                             x.numpy()).shape
    except ValueError:
        got = None
    assert got == expected


# Convolutions whose compilation, or their gradients', aborted XLA:CPU (its operand swapper built an invalid
# convolution): input, weight, function name, keywords.  The guard computes them without a convolution op.
XLA_ABORTS = [
    ((1, 1, 3, 4), (1, 1, 2, 2), "conv2d", dict(stride=2, padding=(0, 1))),
    ((1, 2, 3, 2, 6), (1, 2, 2, 2, 2), "conv3d", dict(stride=(3, 2, 2), padding=(0, 0, 1))),
    ((1, 2, 3, 5, 1), (2, 1, 2, 2, 2), "conv_transpose3d",
     dict(stride=2, padding=1, output_padding=(2, 0, 1), groups=2, dilation=(3, 1, 2))),
]


@pytest.mark.both_settings
@pytest.mark.parametrize("case", range(len(XLA_ABORTS)))
def test_convolutions_xla_aborts_on_are_computed_by_taps(case, rng):
    """Value, gradients and a second derivative compile (the process survives) and match torch."""
    xs, ws, name, kw = XLA_ABORTS[case]
    fn = functools.partial(getattr(F, name), **kw)
    x, w = rng.standard_normal(xs), rng.standard_normal(ws)
    ct = rng.standard_normal(jax.eval_shape(fn, x, w).shape)

    def run(x, w):
        second = jax.grad(lambda x, w: jnp.sum(jax.grad(lambda u, v: jnp.sum(jnp.sin(fn(u, v))), (0, 1))(x, w)[0] ** 2),
                          (0, 1))(x, w)
        return jax_fwd_bwd(fn, ct, x, w), second

    (out, grads), second = jax.jit(run)(x, w)
    t_out, t_grads = torch_fwd_bwd(functools.partial(getattr(TF, name), **kw), ct, x, w)
    _close(out, t_out)
    _close(grads, t_grads)
    assert all(np.isfinite(np.asarray(s)).all() and np.abs(np.asarray(s)).sum() > 0 for s in second)


def test_swap_hazard_flags_the_aborting_convolutions_not_common_ones():
    from jaxlayers.functional.conv import _swap_hazard

    def conv(spatial, kernel, stride, pad, dilation=None):
        n = len(spatial)
        return _swap_hazard(spatial, kernel, stride, [(p, p) for p in pad], (1,) * n, dilation or (1,) * n)

    def convt(spatial, kernel, stride, pad, output_padding, dilation):  # as _conv_transpose_nd builds it
        pairs = [(d * (k - 1) - p, d * (k - 1) - p + op) for k, d, p, op in zip(kernel, dilation, pad, output_padding)]
        return _swap_hazard(spatial, kernel, (1,) * len(spatial), pairs, stride, dilation)

    assert conv((3, 4), (2, 2), (2, 2), (0, 1))
    assert conv((3, 2, 6), (2, 2, 2), (3, 2, 2), (0, 0, 1))
    assert convt((3, 5, 1), (2, 2, 2), (2, 2, 2), (1, 1, 1), (2, 0, 1), (3, 1, 2))
    assert not conv((56, 56), (3, 3), (2, 2), (1, 1))  # ResNet's strided 3x3
    assert not conv((56, 56), (1, 1), (2, 2), (0, 0))  # its 1x1 shortcut
    assert not conv((224, 224), (2, 2), (2, 2), (0, 0))  # patchify
    assert not conv((7, 7), (7, 7), (1, 1), (3, 3))
    assert not convt((28, 28), (2, 2), (2, 2), (0, 0), (0, 0), (1, 1))  # U-Net's up-convolution
    assert not convt((14, 14), (3, 3), (2, 2), (1, 1), (1, 1), (1, 1))
    assert not conv((8,), (2,), (2,), (1,))  # one spatial dim: never swapped


# ------------------------------------------------------------------ what a review found


def test_low_precision_paths_sum_in_float32_as_torch():
    """bfloat16 through the tiny-map GEMM (its input gradient a sum of the taps' slices) and
    through the taps fallback where XLA would abort: summed in float32 and rounded once (they were
    rounded once per tap). The oracle is the exact sum (torch in float64 of the bfloat16 inputs)
    rounded once to bfloat16: torch's own bits on AVX-512 CPUs, while its AVX2 bfloat16 kernel rounds
    differently (35 of these 64 values on an AMD EPYC without AVX-512)."""
    rng = np.random.default_rng(0)
    x, w = rng.standard_normal((1, 16, 2, 2)), rng.standard_normal((16, 16, 3, 3))
    xs, ws = rng.standard_normal((1, 16, 9, 4)), rng.standard_normal((1, 16, 2, 2))  # a swap hazard

    def exact(a):  # float64 of the bfloat16-rounded values
        return torch.tensor(a).bfloat16().double()

    def rounded_once(t):
        return t.bfloat16().float().numpy()

    def ours(x, w):
        xb, wb = jnp.asarray(x, jnp.bfloat16), jnp.asarray(w, jnp.bfloat16)
        return jax.vjp(lambda x: F.conv2d(x, wb, padding=1), xb)[1](jnp.ones((1, 16, 2, 2), jnp.bfloat16))[0]

    xt = exact(x).requires_grad_(True)
    want = torch.autograd.grad(TF.conv2d(xt, exact(w), padding=1), xt, torch.ones(1, 16, 2, 2, dtype=torch.float64))[0]
    np.testing.assert_array_equal(np.asarray(ours(x, w), np.float32), rounded_once(want))
    got = F.conv2d(jnp.asarray(xs, jnp.bfloat16), jnp.asarray(ws, jnp.bfloat16), stride=2, padding=(0, 1))
    want = TF.conv2d(exact(xs), exact(ws), stride=2, padding=(0, 1))
    np.testing.assert_array_equal(np.asarray(got, np.float32), rounded_once(want))


def test_channels_last_depthwise_weight_gradient_and_transposed_output_size():
    """Channels-last mode: an infinite input reaches only its taps of the depthwise weight
    gradient (the identity product behind the taps-major weights made the channel's every tap
    NaN), and ConvTranspose reads a full output_size as (N, *spatial, C) (it read (N, C, ...):
    a silently wrong size)."""
    from jaxlayers import config

    x = np.ones((1, 2, 3, 3))
    x[0, 1, 2, 2] = np.inf
    w = np.ones((2, 1, 2, 2))

    def loss(w, x):
        return jnp.sum(F.conv2d(x, w, groups=2))

    want = jax.grad(loss)(w, x)
    with config.memory_format("channels_last"):
        got = jax.grad(loss)(w, np.moveaxis(x, 1, -1))
    np.testing.assert_array_equal(np.asarray(got), np.asarray(want))
    m = nn.ConvTranspose2d(4, 10, 3, 2, 1)
    xc = jnp.ones((1, 5, 5, 4))
    with config.memory_format("channels_last"):
        v = m.init(jax.random.key(0), xc)
        assert m.apply(v, xc, output_size=(1, 9, 10, 10)).shape == (1, 9, 10, 10)
