"""Channels-last execution (``config.memory_format("channels_last")``).

Oracle: the channels-first (torch-layout) result, itself checked against torch
elsewhere.  In channels-last mode each layer must return exactly the
channels-first result with the channel axis moved last, take the same
parameters and buffers, and give the same gradients; whole models too.
"""

from __future__ import annotations

import inspect

import flax.linen as fnn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxlayers.functional as F
from jaxlayers import config, nn
from oracle import check_grads_through_hessian, close, public_functions, relayouts

CL = "channels_last"


def _last(a, rank=None):
    """Channel axis 1 -> last for an array of ``rank`` (any rank >= 3 when None)."""
    ndim = getattr(a, "ndim", 0)
    return jnp.moveaxis(a, 1, -1) if (ndim == rank if rank else ndim >= 3) else a


def _cl_tree(out, rank):
    if isinstance(out, tuple):
        return tuple(_cl_tree(o, rank) for o in out)
    return _last(out, rank)


def _x(shape, seed=0):
    return jnp.asarray(np.random.default_rng(seed).standard_normal(shape))


X1, X2, X3 = _x((2, 3, 9)), _x((2, 4, 6, 7)), _x((2, 3, 4, 5, 6))
W2 = _x((6, 4, 3, 3), 1)
C4 = _x((4,), 2)
KEY = jax.random.key(0)
GRID = jnp.asarray(np.random.default_rng(3).uniform(-1.1, 1.1, (2, 5, 3, 2)))
SAMPLES = jnp.asarray(np.random.default_rng(4).uniform(0, 1, (2, 4, 2)))
SAMPLES3 = jnp.asarray(np.random.default_rng(5).uniform(0, 1, (2, 3, 3)))

# (name, function of the activation arrays, activations in channels-first layout)
FUNCTIONS = [
    ("conv1d", lambda x: F.conv1d(x, _x((5, 3, 3), 1), _x((5,), 2), stride=2, padding=1), (X1,)),
    ("conv2d", lambda x: F.conv2d(x, W2, _x((6,), 2), padding="same"), (X2,)),
    ("conv3d", lambda x: F.conv3d(x, _x((2, 3, 2, 2, 2), 1), stride=(1, 2, 1)), (X3,)),
    ("conv_transpose1d", lambda x: F.conv_transpose1d(x, _x((3, 2, 3), 1), stride=2, output_padding=1), (X1,)),
    ("conv_transpose2d", lambda x: F.conv_transpose2d(x, _x((4, 2, 3, 3), 1), _x((4,), 2), stride=2,
                                                      groups=2), (X2,)),
    ("conv_transpose3d", lambda x: F.conv_transpose3d(x, _x((3, 2, 2, 2, 2), 1), stride=2), (X3,)),
    ("batch_norm", lambda x: F.batch_norm(x, C4 * 0, C4 ** 2, C4, C4 + 1, training=True), (X2,)),
    ("batch_norm:eval", lambda x: F.batch_norm(x, C4, C4 ** 2, C4, None), (X2,)),
    ("instance_norm", lambda x: F.instance_norm(x, weight=C4, bias=C4), (X2,)),
    ("group_norm", lambda x: F.group_norm(x, 2, C4, C4), (X2,)),
    ("local_response_norm", lambda x: F.local_response_norm(x, 3), (X2,)),
    ("switch_norm", lambda x: F.switch_norm(x, C4 * 0, C4 ** 2, C4, C4, jnp.ones(3), jnp.ones(3), training=True),
     (X2,)),
    ("max_pool1d", lambda x: F.max_pool1d(x, 3, 2, return_indices=True), (X1,)),
    ("max_pool2d", lambda x: F.max_pool2d(x, 3, 2, 1, ceil_mode=True, return_indices=True), (X2,)),
    ("max_pool3d", lambda x: F.max_pool3d(x, 2), (X3,)),
    ("avg_pool1d", lambda x: F.avg_pool1d(x, 3, 2, 1), (X1,)),
    ("avg_pool2d", lambda x: F.avg_pool2d(x, 3, 2, 1, count_include_pad=False), (X2,)),
    ("avg_pool3d", lambda x: F.avg_pool3d(x, 2), (X3,)),
    ("lp_pool1d", lambda x: F.lp_pool1d(x * x, 2, 3), (X1,)),
    ("lp_pool2d", lambda x: F.lp_pool2d(x * x, 3, 2), (X2,)),
    ("lp_pool3d", lambda x: F.lp_pool3d(x * x, 2, 2), (X3,)),
    ("adaptive_avg_pool1d", lambda x: F.adaptive_avg_pool1d(x, 4), (X1,)),
    ("adaptive_avg_pool2d", lambda x: F.adaptive_avg_pool2d(x, (3, 1)), (X2,)),
    ("adaptive_avg_pool3d", lambda x: F.adaptive_avg_pool3d(x, 2), (X3,)),
    ("adaptive_max_pool1d", lambda x: F.adaptive_max_pool1d(x, 4, return_indices=True), (X1,)),
    ("adaptive_max_pool2d", lambda x: F.adaptive_max_pool2d(x, (4, 3), return_indices=True), (X2,)),
    ("adaptive_max_pool3d", lambda x: F.adaptive_max_pool3d(x, 2), (X3,)),
    ("max_unpool1d", lambda x, i: F.max_unpool1d(x, i, 2, output_size=X1.shape[2:]),
     F.max_pool1d(X1, 2, return_indices=True)),
    ("max_unpool2d", lambda x, i: F.max_unpool2d(x, i, 2, output_size=X2.shape[2:]),
     F.max_pool2d(X2, 2, return_indices=True)),
    ("max_unpool3d", lambda x, i: F.max_unpool3d(x, i, 2, output_size=X3.shape[2:]),
     F.max_pool3d(X3, 2, return_indices=True)),
    ("fractional_max_pool2d", lambda x: F.fractional_max_pool2d(x, 2, output_size=(3, 4), return_indices=True,
                                                                _random_samples=SAMPLES), (X2,)),
    ("fractional_max_pool3d", lambda x: F.fractional_max_pool3d(x, 2, output_size=2,
                                                                _random_samples=SAMPLES3),
     (X3,)),
    ("dropout1d", lambda x: F.dropout1d(x, 0.5, key=KEY), (X1,)),
    ("dropout2d", lambda x: F.dropout2d(x, 0.5, key=KEY), (X2,)),
    ("dropout3d", lambda x: F.dropout3d(x, 0.5, key=KEY), (X3,)),
    ("feature_alpha_dropout", lambda x: F.feature_alpha_dropout(x, 0.5, key=KEY), (X2,)),
    ("interpolate", lambda x: F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=False), (X2,)),
    ("interpolate:3d", lambda x: F.interpolate(x, size=(5, 3, 4), mode="trilinear"), (X3,)),
    ("upsample", lambda x: F.upsample(x, size=7, mode="linear"), (X1,)),
    ("upsample_nearest", lambda x: F.upsample_nearest(x, scale_factor=2), (X2,)),
    ("upsample_bilinear", lambda x: F.upsample_bilinear(x, size=(5, 5)), (X2,)),
    ("grid_sample", lambda x: F.grid_sample(x, GRID, align_corners=False), (X2,)),
    ("pixel_shuffle", lambda x: F.pixel_shuffle(x, 2), (X2,)),
    ("pixel_unshuffle", lambda x: F.pixel_unshuffle(x, 2), (_x((2, 3, 4, 6)),)),
    ("channel_shuffle", lambda x: F.channel_shuffle(x, 2), (X2,)),
    ("native_channel_shuffle", lambda x: F.native_channel_shuffle(x, 2), (X2,)),
    ("prelu", lambda x: F.prelu(x, C4), (X2,)),
    ("softmax2d", lambda x: F.softmax2d(x), (X2,)),
    ("cross_entropy", lambda x, t: F.cross_entropy(x, t, C4, reduction="none", label_smoothing=0.1),
     (X2, jnp.asarray(np.random.default_rng(6).integers(0, 4, (2, 6, 7))))),
    ("cross_entropy:probabilities", lambda x, t: F.cross_entropy(x, t), (X2, jax.nn.softmax(_x((2, 4, 6, 7), 7), 1))),
    ("nll_loss", lambda x, t: F.nll_loss(x, t, reduction="none"),
     (X3, jnp.asarray(np.random.default_rng(8).integers(0, 3, (2, 4, 5, 6))))),
]

# public functions whose input is not an (N, C, *spatial) activation, or whose
# layout is not about channels (linear_cross_entropy: hidden states (N, D)), see arrays as given
EXEMPT = {"pad", "fold", "unfold", "affine_grid", "layer_norm", "rms_norm", "linear_cross_entropy"}


def test_every_layer_over_channels_honours_the_setting():
    """A public function documented over ``(N, C, ...)`` input is decorated (or exempt)."""
    missing = []
    for name in public_functions():
        fn = getattr(F, name)
        if not inspect.isfunction(fn) or name in EXEMPT:
            continue
        doc = inspect.getdoc(fn) or ""
        if "(N, C, " in doc and not getattr(fn, "channels_last", False):
            missing.append(name)
    assert not missing, f"layers over (N, C, *spatial) without channels_last: {missing}"
    tested = {n.split(":")[0] for n, _, _ in FUNCTIONS}
    decorated = {n for n in public_functions() if getattr(getattr(F, n), "channels_last", False)}
    assert decorated <= tested, f"decorated but not in this file's table: {decorated - tested}"


@pytest.mark.parametrize("name,fn,xs", FUNCTIONS, ids=[f[0] for f in FUNCTIONS])
def test_function_in_channels_last_equals_channels_first(name, fn, xs):
    """channels-last result == channels-first result with the channel axis moved last."""
    rank = xs[0].ndim

    def both(*xs):  # one jit: the setting is read while tracing
        with config.memory_format(CL):
            got = fn(*(_last(x, rank) for x in xs))
        return got, fn(*xs)

    got, want = jax.jit(both)(*xs)
    close(got, _cl_tree(want, rank), rtol=1e-12, atol=1e-12, err_msg=name)


GRADIENT_ROWS = ("conv2d", "batch_norm", "instance_norm", "group_norm", "max_unpool2d", "cross_entropy")


@pytest.mark.parametrize("name", GRADIENT_ROWS)
def test_gradients_in_channels_last_equal_channels_first(name):
    _, fn, xs = next(row for row in FUNCTIONS if row[0] == name)

    def scalar(x, *rest):
        out = fn(x, *rest)
        return jnp.sum(jnp.sin(out[0] if isinstance(out, tuple) else out))

    want = jax.grad(scalar)(*xs)
    with config.memory_format(CL):
        got = jax.grad(scalar)(*(_last(x, xs[0].ndim) for x in xs))
    close(got, _last(want), rtol=1e-10, atol=1e-12, err_msg=name)


@pytest.mark.parametrize("n", [1, 2])
def test_transposed_conv_weight_gradient_in_channels_last(n):
    """The weight gradient of a strided transposed convolution (per-tap GEMMs) in channels-last
    mode: the same values as in torch's layout, from a program that slices the output gradient
    in place instead of relaying it per tap (with the input gradient here: 1-d 12 -> 7 relayouts, 2-d 18 -> 5)."""
    rng = np.random.default_rng(n)
    x = jnp.asarray(rng.standard_normal((2, 6) + (5,) * n))
    w = jnp.asarray(rng.standard_normal((6, 4) + (4,) * n))
    conv = getattr(F, f"conv_transpose{n}d")

    def loss(x, w):  # a sum over all outputs: the same in either layout
        return jnp.sum(jnp.sin(conv(x, w, stride=2, padding=1)))

    want = jax.jit(jax.grad(loss, (0, 1)))(x, w)
    with config.memory_format(CL):
        program = jax.jit(jax.grad(loss, (0, 1))).lower(_last(x, n + 2), w).compile()
    got = program(_last(x, n + 2), w)
    close(got[0], _last(want[0], n + 2), rtol=1e-10, atol=1e-12)
    close(got[1], want[1], rtol=1e-10, atol=1e-12)
    assert relayouts(program) <= 7, relayouts(program)


def test_channels_last_under_jit_is_part_of_the_cache_key():
    f = jax.jit(lambda x: F.avg_pool2d(x, 2))
    assert f(X2).shape == (2, 4, 3, 3)
    with config.memory_format(CL):
        assert f(X2).shape == (2, 2, 3, 7)  # read as (N, H, W, C) = (2, 4, 6, 7), pooled over H, W


@pytest.mark.parametrize("call", [
    lambda: F.conv2d(_x((4, 6, 7)), W2),
    lambda: nn.Conv2d(4, 6, 3).init(KEY, _x((6, 7, 4))),
    lambda: F.max_pool1d(_x((6, 7)), 2),
    lambda: nn.MaxPool3d(2).init(KEY, X2),
])
def test_channels_last_needs_batched_input(call):
    with config.memory_format(CL), pytest.raises(ValueError, match="channels_last.*batched"):
        call()


IN_PLACE_LAYERS = [
    ("batch_norm", lambda x, **k: F.batch_norm(x, C4 * 0, C4 ** 2, C4, C4, training=True, **k)),
    ("instance_norm", lambda x, **k: F.instance_norm(x, C4 * 0, C4 ** 2, C4, C4, **k)),
    ("group_norm", lambda x, **k: F.group_norm(x, 2, C4, C4, **k)),
    ("adaptive_avg_pool2d", lambda x, **k: F.adaptive_avg_pool2d(x, (3, 2), **k)),
]


@pytest.mark.parametrize("name,fn", IN_PLACE_LAYERS, ids=[r[0] for r in IN_PLACE_LAYERS])
def test_layers_compute_channels_last_in_place(name, fn):
    """batch/instance/group norm and adaptive average pooling take channel_axis=-1 (what the
    mode passes) and reduce in place."""
    close(fn(_last(X2), channel_axis=-1), _cl_tree(fn(X2), 4), rtol=1e-12, atol=1e-12)
    with pytest.raises(ValueError, match=f"{name}: channel_axis must be 1 .* or -1"):
        fn(X2, channel_axis=2)



@pytest.mark.both_settings
@pytest.mark.parametrize("name,fn", IN_PLACE_LAYERS[:3], ids=[r[0] for r in IN_PLACE_LAYERS[:3]])
def test_in_place_norms_under_check_grads(name, fn):
    """The in-place norms (channels-last batch norm's lowering, group norm's per-channel
    moments) differentiate correctly in forward and reverse mode, to second order."""
    def out(x):
        y = fn(x, channel_axis=-1)
        return y.output if hasattr(y, "output") else y

    check_grads_through_hessian(out, (_last(X2),))


# pooling runs channels-last in place through the window code and its lowering (values,
# indices, first and second derivatives), under both engine settings
IN_PLACE_POOLS = [
    ("max_pool1d", lambda x, **k: F.max_pool1d(x, 3, 2, 1, dilation=2, return_indices=True, **k), X1),
    ("max_pool2d", lambda x, **k: F.max_pool2d(x, 3, 2, 1, ceil_mode=True, return_indices=True, **k), X2),
    ("max_pool3d", lambda x, **k: F.max_pool3d(x, 2, (1, 2, 2), **k), X3),
    ("avg_pool1d", lambda x, **k: F.avg_pool1d(x, 3, 2, 1, ceil_mode=True, **k), X1),
    ("avg_pool2d", lambda x, **k: F.avg_pool2d(x, 3, 2, 1, count_include_pad=False, **k), X2),
    ("avg_pool3d", lambda x, **k: F.avg_pool3d(x, 2, divisor_override=3, **k), X3),
    ("lp_pool2d", lambda x, **k: F.lp_pool2d(x * x + 0.1, 3, 2, ceil_mode=True, **k), X2),
    ("lp_pool1d", lambda x, **k: F.lp_pool1d(x, float("inf"), 2, **k), X1),
]


@pytest.mark.parametrize("setting", ["reference", "auto"])
@pytest.mark.parametrize("name,fn,x", IN_PLACE_POOLS, ids=[p[0] for p in IN_PLACE_POOLS])
def test_pools_compute_channels_last_in_place(name, fn, x, setting):
    rank = x.ndim

    def scalar(x, **k):
        out = fn(x, **k)
        return jnp.sum(jnp.sin(out[0] if isinstance(out, tuple) else out))

    def run(x):  # one jit: values, gradient and a forward-over-reverse product, both layouts
        xl = _last(x, rank)
        hvp = lambda f, a: jax.jvp(jax.grad(f), (a,), (jnp.cos(a),))[1]
        first = (fn(x), jax.grad(scalar)(x), hvp(scalar, x))
        last = (fn(xl, channel_axis=-1), jax.grad(lambda a: scalar(a, channel_axis=-1))(xl),
                hvp(lambda a: scalar(a, channel_axis=-1), xl))
        return first, last

    with config.lowering(setting):
        first, last = jax.jit(run)(x)
    close(last, _cl_tree(first, rank), rtol=1e-12, atol=1e-12, err_msg=name)


def test_pools_channel_axis_errors():
    with pytest.raises(ValueError, match=r"max_pool2d: channel_axis=-1 expects a batched .* got shape \(6, 7, 4\)"):
        F.max_pool2d(_x((6, 7, 4)), 2, channel_axis=-1)
    with pytest.raises(ValueError, match="avg_pool1d: channel_axis must be 1 .* or -1"):
        F.avg_pool1d(X1, 2, channel_axis=0)


def test_adaptive_avg_pool_channel_axis_needs_batched_input():
    with pytest.raises(ValueError, match=r"adaptive_avg_pool2d: channel_axis=-1 expects a batched .* got shape \(6, 7, 4\)"):
        F.adaptive_avg_pool2d(_x((6, 7, 4)), 2, channel_axis=-1)


def test_setting_errors_and_environment():
    with pytest.raises(ValueError, match="memory_format must be one of"):
        config.set_memory_format("channels_first")
    with pytest.raises(ValueError, match="memory_format must be one of"):
        with config.memory_format("NHWC"):
            pass
    assert config.get_memory_format() == "contiguous"


class _Net(fnn.Module):
    """A small CNN over most channel-aware module families."""

    @fnn.compact
    def __call__(self, x, train: bool):
        x = nn.Conv2d(3, 8, 3, padding=1, padding_mode="reflect")(x)
        x = F.relu(nn.BatchNorm2d(8)(x, train=train))
        x = nn.MaxPool2d(2)(x)
        x = nn.GroupNorm(2, 8)(nn.ConvTranspose2d(8, 8, 2, stride=2)(x))
        x = nn.Dropout2d(0.3)(nn.LazyConv2d(8, 3, stride=2)(x), train=train)
        x = nn.InstanceNorm2d(8, affine=True)(nn.ZeroPad2d(1)(x), train=train)
        x = nn.PixelShuffle(2)(nn.Upsample(scale_factor=2)(nn.AvgPool2d(2)(x)))
        x = nn.AdaptiveMaxPool2d((2, 3))(x)
        return nn.Linear(12, 5)(nn.Flatten()(x))


def test_model_in_channels_last_matches_channels_first():
    """Same parameters (init in either mode), outputs, running stats and gradients;
    Flatten gives torch's (C, H, W) order, so the Linear after it needs no change."""
    x = _x((2, 3, 8, 8))
    net = _Net()
    rngs = {"params": KEY, "dropout": jax.random.key(1)}
    init = jax.jit(lambda x: net.init(rngs, x, train=False))  # the setting is read while tracing
    v = init(x)
    with config.memory_format(CL):
        v_last = init(_last(x))
    close(v_last, v)

    def loss(params, x, stats):
        y, upd = net.apply({"params": params, "batch_stats": stats}, x, train=True, mutable=["batch_stats"],
                           rngs={"dropout": jax.random.key(2)})
        return jnp.sum(y * jnp.arange(5.0)), (y, upd["batch_stats"])

    def both(params, x, stats):  # one jit: the setting is read while tracing
        first = jax.value_and_grad(loss, has_aux=True)(params, x, stats)
        with config.memory_format(CL):
            last = jax.value_and_grad(loss, has_aux=True)(params, _last(x), stats)
        return first, last

    first, last = jax.jit(both)(v["params"], x, v["batch_stats"])
    close(last, first, rtol=1e-10, atol=1e-12)


def test_nnx_model_in_channels_last():
    from flax import nnx

    from jaxlayers import nnx as jnnx

    x = _x((2, 4, 6, 6))
    conv = jnnx.Conv2d(4, 3, 3, rngs=nnx.Rngs(0))
    bn = jnnx.BatchNorm2d(3, rngs=nnx.Rngs(0))
    want = bn(conv(x))
    with config.memory_format(CL):
        got = bn(conv(_last(x)))
        # built inside the block: the parameters come from a torch-layout probe all the same
        conv_in, bn_in = jnnx.Conv2d(4, 3, 3, rngs=nnx.Rngs(0)), jnnx.BatchNorm2d(3, rngs=nnx.Rngs(0))
        got_in = bn_in(conv_in(_last(x)))
    close(got, _last(want))
    close(got_in, got)
