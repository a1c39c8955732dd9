"""Dropout family: NumPy-reference outputs and gradients for a given mask, statistics
(binomial kept fraction, exact 1/(1-p), channel-wise masks, alpha dropout's mean and
variance), determinism per key, independence across keys, torch's rank rules and
warnings, and every error path."""

import math
import warnings

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
import torch.nn.functional as TF

from jaxlayers import functional as F
from jaxlayers import nn

KEY = jax.random.key(0)
ALPHA_P = -1.7580993408473766


def _binomial_ok(kept, n, q, z=5.0):
    return abs(kept - n * q) <= z * math.sqrt(n * q * (1 - q))


class ReferenceTest(chex.TestCase):
    @chex.variants(with_jit=True, without_jit=True)
    def test_dropout_matches_reference_given_mask(self):
        # output and gradient = NumPy reference x * mask / (1 - p) built from the mask we observe
        p = 0.3
        x = np.random.default_rng(0).normal(size=(4, 50)) + 3.0  # no zeros in x
        cot = np.random.default_rng(1).normal(size=x.shape)
        fn = self.variant(lambda v, k: F.dropout(v, p, key=k))
        y, vjp = jax.vjp(lambda v: fn(v, KEY), jnp.asarray(x))
        mask = np.asarray(y) != 0
        assert 0 < mask.sum() < mask.size
        np.testing.assert_allclose(y, np.where(mask, x / (1 - p), 0.0), rtol=1e-15)
        np.testing.assert_allclose(vjp(jnp.asarray(cot))[0], np.where(mask, cot / (1 - p), 0.0), rtol=1e-15)
        np.testing.assert_array_equal(fn(jnp.asarray(x), KEY) != 0, mask)  # same key, same mask


@pytest.mark.parametrize("p", [0.1, 0.5, 0.8])
def test_dropout_statistics(p):
    n = 20000
    y = np.asarray(jax.jit(lambda k: F.dropout(jnp.ones(n), p, key=k))(KEY))
    kept = y != 0
    assert _binomial_ok(kept.sum(), n, 1 - p)
    assert np.all(y[kept] == 1.0 / (1.0 - p))  # exactly 1/(1-p)


def test_determinism_and_independence():
    f = jax.jit(lambda k: F.dropout(jnp.ones(4000), 0.5, key=k) != 0)
    a, b, c = f(KEY), f(KEY), f(jax.random.key(1))
    np.testing.assert_array_equal(a, b)
    agree = int((a == c).sum())  # independent masks agree on ~half of the entries
    assert _binomial_ok(agree, 4000, 0.5)
    m = nn.Dropout(0.5)
    y1 = m.apply({}, jnp.ones(100), train=True, rngs={"dropout": KEY})
    y2 = m.apply({}, jnp.ones(100), train=True, rngs={"dropout": KEY})
    y3 = m.apply({}, jnp.ones(100), train=True, rngs={"dropout": jax.random.key(7)})
    np.testing.assert_array_equal(y1, y2)
    assert not np.array_equal(y1, y3)


def test_eval_p0_identity_and_p1_zeros():
    x = jnp.asarray(np.random.default_rng(2).normal(size=(2, 3, 4, 4)))
    for fn in (F.dropout, F.dropout2d, F.alpha_dropout, F.feature_alpha_dropout):
        np.testing.assert_array_equal(fn(x, 0.5, training=False), x)  # no key needed
        np.testing.assert_array_equal(fn(x, 0.0, training=True), x)
        y, vjp = jax.vjp(lambda v: fn(v, 1.0, training=True), x)
        np.testing.assert_array_equal(y, np.zeros(x.shape))
        np.testing.assert_array_equal(vjp(jnp.ones_like(x))[0], np.zeros(x.shape))
    # torch's p == 1 shortcut is input * 0: -0 for negatives, NaN for NaN and inf; feature dropout
    # takes it before checking the rank, so a 1-D or 0-D input is zeroed too
    special = np.array([1.0, -2.0, np.nan, np.inf])
    for fn, tfn, shape in [(F.dropout, TF.dropout, (4,)), (F.alpha_dropout, TF.alpha_dropout, (4,)),
                           (F.dropout2d, TF.dropout2d, (4,)), (F.dropout3d, TF.dropout3d, (4,)),
                           (F.feature_alpha_dropout, TF.feature_alpha_dropout, (4,)),
                           (F.dropout2d, TF.dropout2d, (2, 2, 1, 1))]:
        with warnings.catch_warnings():  # both warn that a 1-D input to dropout3d is deprecated
            warnings.simplefilter("ignore", UserWarning)
            want = tfn(torch.tensor(special).reshape(shape), 1.0, True).numpy()
            got = np.asarray(fn(jnp.asarray(special).reshape(shape), 1.0, training=True))
        np.testing.assert_array_equal(got, want)
        np.testing.assert_array_equal(np.signbit(got), np.signbit(want))
    np.testing.assert_array_equal(F.dropout2d(jnp.asarray(3.0), 1.0, training=True), 0.0)
    with pytest.raises(ValueError, match="at least 2 dimensions"):
        F.dropout2d(jnp.ones(3), 0.5, training=True, key=KEY)
    np.testing.assert_array_equal(nn.Dropout(0.5).apply({}, x, train=False), x)


@pytest.mark.parametrize("fn,tfn", [(F.dropout, TF.dropout), (F.alpha_dropout, TF.alpha_dropout),
                                    (F.dropout2d, TF.dropout2d), (F.feature_alpha_dropout, TF.feature_alpha_dropout)])
def test_every_outcome_is_one_of_torchs(fn, tfn):
    """The masks differ (torch's generator), so compare the sets of outcomes per input value: the
    mask multiplies, as torch's, so a dropped inf or NaN is NaN and a dropped negative -0; float32
    values to the last bit."""
    values = np.array([1.0, 3.0, -2.0, np.inf, -np.inf, np.nan], np.float32)
    x = np.tile(values, (64, 1))[:, :, None, None]  # (N, C, 1, 1): feature dropout masks per (n, c)
    torch.manual_seed(0)
    want = tfn(torch.tensor(x), 0.3, True).numpy()
    got = np.asarray(fn(jnp.asarray(x), 0.3, training=True, key=KEY))

    def outcomes(y, c):  # the distinct values of column c, with their sign; NaN as one outcome
        return {"nan" if np.isnan(v) else f"{float(v)!r}/{np.signbit(v)}" for v in y[:, c].ravel()}

    for c, v in enumerate(values):
        assert outcomes(got, c) == outcomes(want, c), v


@pytest.mark.parametrize("shape,fn,chan_axes", [
    ((8, 16, 5), F.dropout1d, (0, 1)),
    ((16, 5), F.dropout1d, (0,)),
    ((8, 16, 3, 3), F.dropout2d, (0, 1)),
    ((8, 16, 2, 2, 2), F.dropout3d, (0, 1)),
    ((16, 2, 2, 2), F.dropout3d, (0,)),
])
def test_channel_masks(shape, fn, chan_axes):
    p = 0.5
    y = np.asarray(fn(jnp.ones(shape), p, key=KEY))
    spatial = tuple(range(len(chan_axes), len(shape)))
    per_chan = y.reshape(y.shape[:len(chan_axes)] + (-1,))
    assert np.all(per_chan.min(-1) == per_chan.max(-1))  # whole channels kept or zeroed
    assert set(np.unique(y)) <= {0.0, 2.0}
    n = int(np.prod(shape[:len(chan_axes)]))
    assert _binomial_ok((per_chan[..., 0] != 0).sum(), n, 1 - p)
    assert spatial


def test_dropout2d_3d_input_follows_torch_with_warning():
    x = jnp.ones((8, 16, 5))
    with pytest.warns(UserWarning, match="dropout2d: Received a 3D input .* interpreted as shape \\(N, C, L\\)"):
        y = np.asarray(F.dropout2d(x, 0.5, key=KEY))
    assert np.all(y.min(-1) == y.max(-1))  # channel = dim 1 of (N, C, L)
    assert len(np.unique(y.reshape(-1, 5).min(-1))) == 2
    with pytest.warns(UserWarning, match="Received a 3D input"):
        nn.Dropout2d(0.5).apply({}, x, train=False)
    with pytest.warns(UserWarning, match="dropout2d: Received a 2-D input to dropout2d, which is deprecated"):
        F.dropout2d(jnp.ones((4, 3)), 0.5, key=KEY)
    with pytest.warns(UserWarning, match="dropout3d: Received a 3-D input to dropout3d, which is deprecated"):
        y = np.asarray(F.dropout3d(jnp.ones((6, 2, 2)), 0.5, key=KEY))
    assert np.all(y.reshape(6, -1).min(-1) == y.reshape(6, -1).max(-1))  # unbatched: channel = dim 0
    # torch agrees that these shapes are accepted with the same warnings
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        TF.dropout2d(torch.ones(8, 16, 5), 0.5)
        assert any("3D input to dropout2d" in str(m.message) for m in w)


def test_alpha_dropout_formula_and_statistics():
    p = 0.2
    a = ((1 - p) * (1 + p * ALPHA_P**2)) ** -0.5
    b = -a * ALPHA_P * p
    x = np.random.default_rng(3).normal(size=200000)
    y, vjp = jax.vjp(lambda v: F.alpha_dropout(v, p, training=True, key=KEY), jnp.asarray(x))
    y = np.asarray(y)
    dropped = np.isclose(y, a * ALPHA_P + b, rtol=0, atol=1e-12) & ~np.isclose(x, ALPHA_P, atol=1e-9)
    np.testing.assert_allclose(y[~dropped], a * x[~dropped] + b, rtol=1e-13)
    assert _binomial_ok(dropped.sum(), x.size, p)
    np.testing.assert_allclose(vjp(jnp.ones_like(y))[0], np.where(dropped, 0.0, a), rtol=1e-13)
    assert abs(y.mean()) < 0.01 and abs(y.std() - 1.0) < 0.01  # mean and variance preserved
    # torch's own alpha dropout keeps the same moments (oracle for the formula)
    torch.manual_seed(0)
    yt = TF.alpha_dropout(torch.tensor(x), p, True).numpy()
    assert abs(yt.mean() - y.mean()) < 0.02 and abs(yt.std() - y.std()) < 0.02
    assert np.isclose(np.unique(yt[np.isclose(yt, a * ALPHA_P + b)]), a * ALPHA_P + b).all()


def test_feature_alpha_dropout_channels():
    p = 0.5
    x = jnp.asarray(np.random.default_rng(4).normal(size=(8, 16, 9)))
    y = np.asarray(nn.FeatureAlphaDropout(p).apply({}, x, train=True, rngs={"dropout": KEY}))
    a = ((1 - p) * (1 + p * ALPHA_P**2)) ** -0.5
    b = -a * ALPHA_P * p
    dropped = np.all(np.isclose(y, a * ALPHA_P + b, atol=1e-12), axis=-1)
    np.testing.assert_allclose(y[~dropped], a * np.asarray(x)[~dropped] + b, rtol=1e-13)
    assert 0 < dropped.sum() < dropped.size


def test_modules_and_sequential():
    from jaxlayers.nn import Sequential
    x = jnp.ones((2, 3, 4, 4))
    for m in (nn.Dropout(), nn.Dropout2d(), nn.Dropout3d(0.3), nn.AlphaDropout(0.1), nn.FeatureAlphaDropout()):
        np.testing.assert_array_equal(m.apply({}, x, train=False), x)
        y = m.apply({}, x, train=True, rngs={"dropout": KEY})
        assert y.shape == x.shape and not np.array_equal(y, x)
    np.testing.assert_array_equal(nn.Dropout1d(0.5).apply({}, jnp.ones((3, 4)), train=False), jnp.ones((3, 4)))
    model = Sequential(nn.ReLU(), nn.Dropout(0.5))
    y = model.apply({}, x, train=True, rngs={"dropout": KEY})
    assert set(np.unique(np.asarray(y))) == {0.0, 2.0}
    assert nn.Dropout().p == 0.5 and nn.Dropout(0.2, True).inplace


def test_errors():
    x = jnp.ones((2, 3))
    for bad in (-0.1, 1.5, float("nan")):
        with pytest.raises(ValueError, match="dropout: dropout probability p has to be between 0 and 1"):
            F.dropout(x, bad, key=KEY)
    with pytest.raises(ValueError, match="alpha_dropout: dropout probability p has to be between 0 and 1, but got 2.0"):
        F.alpha_dropout(x, 2.0, True, key=KEY)
    with pytest.raises(TypeError, match="dropout: dropout probability p must be a Python number"):
        F.dropout(x, "0.5", key=KEY)
    for cls in (nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.Dropout3d, nn.AlphaDropout, nn.FeatureAlphaDropout):
        with pytest.raises(ValueError, match=f"{cls.__name__}: dropout probability p has to be between 0 and 1, but got -0.5"):
            cls(-0.5)
        with pytest.raises(ValueError, match=f"{cls.__name__}: `train` must be given"):
            cls(0.5).apply({}, jnp.ones((2, 3, 4, 4, 4)))
    with pytest.raises(ValueError, match="dropout2d: a PRNG `key` is required when training=True and 0 < p < 1"):
        F.dropout2d(jnp.ones((2, 3, 4, 4)), 0.5)
    with pytest.raises(ValueError, match="dropout: a PRNG `key` is required"):
        F.dropout(x)
    with pytest.raises(ValueError, match=r"dropout1d: expected \(N, C, L\) or \(C, L\) input .*got 4-D input of shape \(1, 2, 3, 4\)"):
        F.dropout1d(jnp.ones((1, 2, 3, 4)), key=KEY)
    with pytest.raises(ValueError, match=r"Dropout1d: expected \(N, C, L\) or \(C, L\) input .*got 1-D"):
        nn.Dropout1d().apply({}, jnp.ones(3), train=False)
    with pytest.warns(UserWarning), pytest.raises(ValueError, match=r"dropout2d: feature dropout requires at least 2 dimensions .*\(4,\)"):
        F.dropout2d(jnp.ones(4), key=KEY)
    with pytest.warns(UserWarning), pytest.raises(ValueError, match=r"dropout3d: feature dropout .*got input of shape \(\)"):
        F.dropout3d(jnp.ones(()), key=KEY)  # the shape given, not the unsqueezed (1,)
    with pytest.raises(ValueError, match="feature_alpha_dropout: feature dropout requires at least 2 dimensions"):
        F.feature_alpha_dropout(jnp.ones(4), 0.5, True, key=KEY)
    with pytest.raises(ValueError, match="FeatureAlphaDropout: feature dropout requires"):
        nn.FeatureAlphaDropout().apply({}, jnp.ones(4), train=True, rngs={"dropout": KEY})
    with pytest.raises(TypeError, match="Dropout: `train` must be a Python bool"):
        nn.Dropout().apply({}, x, train="yes")


def test_layers_drawing_one_key_take_it_as_rng():
    """``rng=key`` (as flax.linen.Dropout) is the functional call's key; without it the key
    comes from the ``dropout`` stream (``make_rng``), a different one."""
    x = jnp.asarray(np.random.default_rng(0).normal(size=(2, 3, 9, 9)))
    key = jax.random.key(4)
    cases = [
        (nn.Dropout(0.4), {"train": True}, lambda: F.dropout(x, 0.4, key=key)),
        (nn.Dropout2d(0.4), {"train": True}, lambda: F.dropout2d(x, 0.4, key=key)),
        (nn.AlphaDropout(0.4), {"train": True}, lambda: F.alpha_dropout(x, 0.4, True, key=key)),
        (nn.RReLU(), {"train": True}, lambda: F.rrelu(x, training=True, key=key)),
        (nn.FractionalMaxPool2d(2, output_size=4), {}, lambda: F.fractional_max_pool2d(x, 2, 4, key=key)),
    ]
    for layer, kw, want in cases:
        got = layer.apply({}, x, rng=key, **kw)
        np.testing.assert_array_equal(got, want(), err_msg=type(layer).__name__)
        assert not np.array_equal(layer.apply({}, x, rngs={"dropout": key}, **kw), got)
    np.testing.assert_array_equal(nn.Dropout(0.4).apply({}, x, train=False, rng=key), x)


@pytest.mark.parametrize("name", ["dropout", "alpha_dropout"])
def test_integer_input_needs_p_0_or_1_as_torch(name):
    """torch raises for an integer input at 0 < p < 1 (the scale cannot be cast back); ours gave the
    kept values unscaled. p = 0 and p = 1 work on integers in both."""
    x, key = jnp.arange(6, dtype=jnp.int32), jax.random.key(0)
    fn = getattr(F, name)
    with pytest.raises(TypeError, match=rf"{name}: p=0.3 needs a floating-point input, got int32"):
        fn(x, 0.3, training=True, key=key)
    for p in (0.0, 1.0):
        want = getattr(TF, name)(torch.arange(6), p, training=True).numpy()
        np.testing.assert_array_equal(fn(x, p, training=True, key=key), want)
