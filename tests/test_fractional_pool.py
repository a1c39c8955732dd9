"""FractionalMaxPool2d/3d and F.fractional_max_pool2d/3d against torch (float64 and float32)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
import torch.nn.functional as TF
from hypothesis import given, settings
from hypothesis import strategies as st
from oracle import check_grads_through_hessian, close

from jaxlayers import functional as F
from jaxlayers import nn
from jaxlayers._utils import index_dtype

OURS = {2: F.fractional_max_pool2d, 3: F.fractional_max_pool3d}
THEIRS = {2: TF.fractional_max_pool2d, 3: TF.fractional_max_pool3d}
MODULES = {2: nn.FractionalMaxPool2d, 3: nn.FractionalMaxPool3d}

# (d, input shape, kernel, output_size): overlapping windows (k > stride) so that a tap can be
# the maximum of two windows and its gradient accumulates
CASES = [
    (2, (2, 3, 11, 9), 3, (7, 5)),
    (2, (3, 10, 7), (2, 3), (4, 5)),  # unbatched
    (3, (2, 2, 7, 6, 8), (2, 3, 2), (5, 3, 6)),
    (3, (2, 5, 5, 6), 2, (3, 3, 4)),  # unbatched
]

_fwd = {d: jax.jit(lambda x, s, k, o, d=d: OURS[d](x, k, o, return_indices=True, _random_samples=s),
                   static_argnums=(2, 3)) for d in (2, 3)}


def _samples(rng, shape, d, dtype=np.float64):
    n = shape[0] if len(shape) == d + 2 else 1
    return rng.random((n, shape[-d - 1], d)).astype(dtype)


@pytest.mark.parametrize("d,shape,k,o", CASES)
def test_vs_torch_outputs_indices_gradients(d, shape, k, o, rng):
    x = rng.standard_normal(shape)
    s = _samples(rng, shape, d)
    xt = torch.from_numpy(x).requires_grad_()
    yt, it = THEIRS[d](xt, k, o, return_indices=True, _random_samples=torch.from_numpy(s))
    cot = rng.standard_normal(yt.shape)
    yt.backward(torch.from_numpy(cot))
    y, i = _fwd[d](x, s, k, o)
    np.testing.assert_array_equal(y, yt.detach().numpy())
    np.testing.assert_array_equal(i, it.numpy())
    assert i.dtype == index_dtype()
    gx = jax.vjp(lambda x: _fwd[d](x, s, k, o)[0], x)[1](cot)[0]
    close(gx, xt.grad)
    assert np.sum(np.asarray(xt.grad) != 0) > 0
    # float32: torch's interval arithmetic runs in the input's dtype; ours too
    x32, s32 = x.astype(np.float32), s.astype(np.float32)
    y32, i32 = _fwd[d](x32, s32, k, o)
    yt32, it32 = THEIRS[d](torch.from_numpy(x32), k, o, return_indices=True, _random_samples=torch.from_numpy(s32))
    np.testing.assert_array_equal(y32, yt32.numpy())
    np.testing.assert_array_equal(i32, it32.numpy())


@pytest.mark.parametrize("d", [2, 3])
def test_ties_nan_and_output_ratio_vs_torch(d, rng):
    shape = (2, 3, 9, 8) if d == 2 else (2, 2, 6, 7, 5)
    x = rng.integers(0, 3, shape).astype(np.float64)  # many ties: torch keeps the first maximum
    x.reshape(-1)[::7] = np.nan  # a NaN wins its window (torch keeps the last one)
    x.reshape(-1)[3::11] = -np.inf
    s = _samples(rng, shape, d)
    ratio = (0.5, 0.7) if d == 2 else (0.6, 0.5, 0.7)
    yt, it = THEIRS[d](torch.from_numpy(x), 2, output_ratio=ratio, return_indices=True,
                       _random_samples=torch.from_numpy(s))
    y, i = jax.jit(lambda x, s: OURS[d](x, 2, output_ratio=ratio, return_indices=True, _random_samples=s))(x, s)
    np.testing.assert_array_equal(y, yt.numpy())
    np.testing.assert_array_equal(i, it.numpy())
    assert np.isnan(y).any()


@pytest.mark.parametrize("d", [2, 3])
def test_random_windows_follow_torch_interval_rule(d):
    """With fresh samples from a key every window start sequence starts at 0, ends at L - k and
    steps by floor(alpha) or ceil(alpha); different planes get different sequences."""
    size, k, o = 23, 3, 8
    shape = (16, 8) + (size,) * d
    x = jnp.broadcast_to(jnp.arange(size ** d, dtype=jnp.float64).reshape((size,) * d), shape)
    f = jax.jit(lambda x, key: OURS[d](x, k, o, return_indices=True, key=key))
    y, i = f(x, jax.random.key(1))
    y2 = f(x, jax.random.key(1))[0]
    np.testing.assert_array_equal(y, y2)
    # increasing input: the argmax is the window's last tap; recover the starts along the last dim
    starts = np.asarray(i)[(0,) * 0 + (slice(None), slice(None)) + (0,) * (d - 1)] % size - (k - 1)  # (N, C, o)
    alpha = (size - k) / (o - 1)
    assert np.all(starts[..., 0] == 0) and np.all(starts[..., -1] == size - k)
    steps = np.diff(starts, axis=-1)
    assert set(np.unique(steps)) <= {int(np.floor(alpha)), int(np.ceil(alpha))}
    assert len({tuple(r) for r in starts.reshape(-1, o)}) > 3  # random across planes
    np.testing.assert_array_equal(np.asarray(y).reshape(-1), np.asarray(i).reshape(-1).astype(np.float64))


def test_half_precision_starts_stay_inside_the_row():
    """bfloat16 samples where torch's interval rule rounds a start to L - k + 1 (torch asserts): the
    window is clamped to the row's last one; it had read the next row's first element."""
    L, O = 148, 134
    x = jnp.broadcast_to(jnp.arange(L, dtype=jnp.bfloat16) % 7, (1, 1, 8, L))
    x = x + 10 * jnp.arange(8, dtype=jnp.bfloat16)[:, None]  # each row larger than the last
    u = jnp.asarray([[[0.50390625, 0.5]]], jnp.bfloat16)
    _, i = OURS[2](x, 2, (4, O), return_indices=True, _random_samples=u)
    rows = np.asarray(i) // L
    assert np.all(np.diff(rows, axis=-1) == 0), "a window left its row"
    assert np.all(np.asarray(i) % L <= L - 1)


def test_module_rng_stream_fixed_samples_and_vmap(rng):
    x = rng.standard_normal((2, 3, 10, 10))
    m = nn.FractionalMaxPool2d(2, output_size=(5, 4))
    apply = jax.jit(lambda x, key: m.apply({}, x, rngs={"dropout": key}))
    a, b, c = apply(x, jax.random.key(0)), apply(x, jax.random.key(0)), apply(x, jax.random.key(1))
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)
    s = _samples(rng, x.shape, 2)
    fixed = nn.FractionalMaxPool2d(2, output_ratio=0.5, return_indices=True, _random_samples=s)
    y, i = jax.jit(fixed.apply)({}, x)
    tm = torch.nn.FractionalMaxPool2d(2, output_ratio=0.5, return_indices=True, _random_samples=torch.from_numpy(s))
    yt, it = tm(torch.from_numpy(x))
    np.testing.assert_array_equal(y, yt.numpy())
    np.testing.assert_array_equal(i, it.numpy())
    # vmap over an extra leading axis with per-example samples
    xs, ss = np.stack([x, -x]), np.stack([s, s[::-1]])
    f = jax.jit(jax.vmap(lambda x, s: F.fractional_max_pool2d(x, 2, (5, 4), _random_samples=s)))
    yv = f(xs, ss)
    yt1 = TF.fractional_max_pool2d(torch.from_numpy(-x), 2, (5, 4), _random_samples=torch.from_numpy(s[::-1].copy()))
    np.testing.assert_array_equal(yv[1], yt1.numpy())


def test_check_grads_second_order(rng):
    x = rng.permutation(16).astype(np.float64).reshape(1, 1, 4, 4) / 7.0  # distinct values: no ties
    s = _samples(rng, x.shape, 2)
    check_grads_through_hessian(lambda x: F.fractional_max_pool2d(x, 2, 3, _random_samples=s), (x,))


@settings(max_examples=8)
@given(h=st.integers(3, 9), w=st.integers(3, 9), k=st.integers(1, 3), r=st.floats(0.3, 0.95))
def test_output_shape_rule_vs_torch(h, w, k, r):
    x = torch.zeros(1, 1, h, w)
    try:
        expected = THEIRS[2](x, k, output_ratio=(r, r), _random_samples=torch.full((1, 1, 2), 0.5)).shape
    except RuntimeError:
        with pytest.raises(ValueError, match="fractional_max_pool2d: .* is too large"):
            F.fractional_max_pool2d(np.zeros((1, 1, h, w)), k, output_ratio=r, key=jax.random.key(0))
        return
    f = lambda x: F.fractional_max_pool2d(x, k, output_ratio=r, key=jax.random.key(0))  # noqa: E731
    assert jax.eval_shape(f, jnp.zeros((1, 1, h, w))).shape == expected


def test_errors():
    x = jnp.zeros((1, 2, 6, 6))
    key = jax.random.key(0)
    with pytest.raises(ValueError, match=r"fractional_max_pool2d: expected 3-D or 4-D input \(C, H, W\) or \(N, C, H, W\), "
                                         r"got 5-D input of shape \(1, 1, 2, 6, 6\)"):
        F.fractional_max_pool2d(x[None], 2, 3, key=key)
    with pytest.raises(ValueError, match=r"fractional_max_pool3d: expected 4-D or 5-D input"):
        F.fractional_max_pool3d(x[0, 0], 2, 3, key=key)
    with pytest.raises(ValueError, match=r"fractional_max_pool2d: requires specifying either an output_size or an output_ratio"):
        F.fractional_max_pool2d(x, 2, key=key)
    with pytest.raises(ValueError, match=r"FractionalMaxPool2d: requires specifying either"):
        nn.FractionalMaxPool2d(2)
    with pytest.raises(ValueError, match=r"FractionalMaxPool3d: only one of output_size and output_ratio"):
        nn.FractionalMaxPool3d(2, 3, 0.5)
    for bad in (0.0, 1.0, (0.5, 1.5)):
        with pytest.raises(ValueError, match=r"FractionalMaxPool2d: output_ratio must be between 0 and 1"):
            nn.FractionalMaxPool2d(2, output_ratio=bad)
    with pytest.raises(TypeError, match=r"fractional_max_pool2d: output_ratio must be a number or a sequence of 2"):
        F.fractional_max_pool2d(x, 2, output_ratio=(0.5, 0.5, 0.5), key=key)
    with pytest.raises(ValueError, match=r"fractional_max_pool2d: kernel_size=\(6, 6\) with output_size=\(2, 2\) is too "
                                         r"large for input of shape \(1, 2, 6, 6\)"):
        F.fractional_max_pool2d(x, 6, 2, key=key)
    with pytest.raises(ValueError, match=r"FractionalMaxPool2d: kernel_size must be >= 1"):
        nn.FractionalMaxPool2d(0, 2)
    with pytest.raises(ValueError, match=r"fractional_max_pool2d: expected _random_samples of shape \(1, 2, 2\) \(or "
                                         r"more rows.*for input of shape \(1, 2, 6, 6\), got \(1, 2, 3\)"):
        F.fractional_max_pool2d(x, 2, 3, _random_samples=jnp.zeros((1, 2, 3)))
    two = np.random.default_rng(0).uniform(size=(2, 2, 2))  # torch uses the first N rows of more
    np.testing.assert_array_equal(
        F.fractional_max_pool2d(x, 2, 3, _random_samples=two),
        TF.fractional_max_pool2d(torch.from_numpy(np.array(x)), 2, 3, _random_samples=torch.from_numpy(two)).numpy())
    with pytest.raises(ValueError, match=r"fractional_max_pool2d: a PRNG `key` is required"):
        F.fractional_max_pool2d(x, 2, 3)
    with pytest.raises(TypeError, match=r"fractional_max_pool2d: expected a floating-point input, got int"):
        F.fractional_max_pool2d(jnp.zeros((1, 2, 6, 6), jnp.int32), 2, 3, key=key)
    with pytest.raises(ValueError, match=r"FractionalMaxPool2d: expected 3-D or 4-D input"):
        nn.FractionalMaxPool2d(2, 3).apply({}, jnp.zeros((6, 6)), rngs={"dropout": key})
