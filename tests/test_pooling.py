"""Pooling: functional + linen modules against torch (float64) and NumPy."""

import inspect
import itertools

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
import torch.nn.functional as TF
from hypothesis import given
from hypothesis import strategies as st

from jax import lax

from jaxlayers import config
from jaxlayers import functional as F
from jaxlayers import nn
from jaxlayers._utils import index_dtype
from oracle import close

RTOL, ATOL = 1e-10, 1e-12


@pytest.fixture(params=["reference", "auto"])
def lowering(request):
    """Run a test under each setting of ``jaxlayers.config`` (the CPU lowerings
    of max, average and LP pooling are on under "auto")."""
    with config.lowering(request.param):
        yield request.param

WORKED = np.array(
    [[1, 2, 0, 3, 1], [0, 1, 2, 3, 1], [1, 2, 1, 0, 0], [5, 2, 3, 1, 1], [2, 1, 0, 1, 1]], np.float64
)


def _ties(rng, shape):
    """Small integer values: many ties inside windows."""
    return rng.integers(0, 3, shape).astype(np.float64)


def _parity(jfn, tfn, x, rng, n_out=1, check_grad=True, jit=True, return_grad=False):
    """Outputs, indices (exact) and gradient w.r.t. input against torch float64.

    The forward and the vector-Jacobian product run in one jitted call (one
    compile per case) unless ``jit=False`` (``jfn`` may then be a chex variant).
    """
    tx = torch.tensor(x, requires_grad=True)
    tout = tfn(tx)
    tv = tout[0] if n_out == 2 else tout
    w = rng.normal(size=tuple(tv.shape))

    def fwd_bwd(a):
        if n_out == 2:
            v, vjp, i = jax.vjp(jfn, a, has_aux=True)
            out = (v, i)
        else:
            v, vjp = jax.vjp(jfn, a)
            out = v
        return out, (vjp(jnp.asarray(w, v.dtype))[0] if check_grad else None)

    out, g = (jax.jit(fwd_bwd) if jit else fwd_bwd)(jnp.asarray(x))
    if n_out == 2:
        (v, i), (tv, ti) = out, tout
        assert i.dtype == index_dtype()
        np.testing.assert_array_equal(np.asarray(i), ti.numpy())
    else:
        v = out
    assert v.shape == tuple(tv.shape)
    close(v, tv, RTOL, ATOL, "values")
    if check_grad:
        (tv * torch.tensor(w)).sum().backward()
        close(g, tx.grad, RTOL, ATOL, "input gradient")
    return (out, g) if return_grad else out


# ------------------------------------------------------------------ worked example


def test_worked_example_max_pool():
    x = WORKED[None]
    np.testing.assert_array_equal(F.max_pool2d(x, 3, ceil_mode=True), [[[2, 3], [5, 1]]])
    np.testing.assert_array_equal(F.max_pool2d(x, 3), [[[2]]])
    np.testing.assert_array_equal(nn.MaxPool2d(3, ceil_mode=True).apply({}, x), [[[2, 3], [5, 1]]])
    np.testing.assert_array_equal(nn.MaxPool2d(3).apply({}, x), [[[2]]])
    np.testing.assert_array_equal(TF.max_pool2d(torch.tensor(x), 3, ceil_mode=True).numpy(), [[[2, 3], [5, 1]]])


# ------------------------------------------------------------------ max pool

MAX_CASES = [
    # (n, shape, kwargs)
    (1, (2, 3, 11), dict(kernel_size=3, stride=2, padding=1, dilation=2, ceil_mode=True)),
    (1, (3, 10), dict(kernel_size=4, stride=3, padding=2, ceil_mode=True)),  # unbatched
    (2, (2, 3, 9, 8), dict(kernel_size=3, stride=2, padding=1, dilation=2, ceil_mode=True)),
    (2, (2, 3, 9, 8), dict(kernel_size=(2, 3), stride=(2, 1), padding=(1, 1), dilation=(3, 1), ceil_mode=True)),
    (2, (3, 7, 6), dict(kernel_size=2, ceil_mode=True)),  # unbatched
    (2, (1, 2, 5, 5), dict(kernel_size=4, stride=3, padding=2, ceil_mode=True)),
    (3, (2, 4, 5, 6), dict(kernel_size=(2, 3, 2), stride=(1, 2, 3), padding=(1, 0, 1), dilation=(2, 1, 2))),
]


@pytest.mark.parametrize("n,shape,kw", MAX_CASES)
def test_max_pool_parity(n, shape, kw, rng, lowering):
    x = _ties(rng, shape) if n != 3 else rng.normal(size=shape)  # ties (and distinct values), or random
    jf = getattr(F, f"max_pool{n}d")
    tf = getattr(TF, f"max_pool{n}d")
    _parity(lambda a: jf(a, **kw, return_indices=True), lambda a: tf(a, **kw, return_indices=True), x, rng, 2)


def test_max_pool_nan_and_neg_inf(lowering):
    x = np.array([[[1.0, np.nan, 3.0, np.nan, -np.inf, -np.inf, 2.0, np.nan]]])
    for kw in [dict(kernel_size=3, stride=2, padding=1), dict(kernel_size=2, padding=1, ceil_mode=True)]:
        v, i = F.max_pool1d(x, **kw, return_indices=True)
        tv, ti = TF.max_pool1d(torch.tensor(x), **kw, return_indices=True)
        np.testing.assert_array_equal(np.asarray(v), tv.numpy())
        np.testing.assert_array_equal(np.asarray(i), ti.numpy())



def _torch_loop_max_pool2d(x, k, s, p):
    """Torch's CPU loop for max_pool2d with indices, written out in NumPy."""
    N, C, H, W = x.shape
    Ho, Wo = (H + 2 * p - k) // s + 1, (W + 2 * p - k) // s + 1
    val, idx = np.zeros((N, C, Ho, Wo), x.dtype), np.zeros((N, C, Ho, Wo), np.int64)
    for n, c, i, j in itertools.product(range(N), range(C), range(Ho), range(Wo)):
        best, at = None, -1
        for a, b in itertools.product(range(k), range(k)):
            h, w = i * s - p + a, j * s - p + b
            if 0 <= h < H and 0 <= w < W:
                v = x[n, c, h, w]
                if best is None or v > best or v != v:
                    best, at = v, h * W + w
        val[n, c, i, j], idx[n, c, i, j] = best, at
    return val, idx


@pytest.mark.parametrize("dtype", [np.float32, jnp.bfloat16, np.int32])
def test_max_pool_indices_nan_payloads_signed_zeros(dtype, lowering):
    """Several NaNs with different bit patterns in one window (the last wins),
    -0/+0 ties (the first wins: its index and gradient; its sign in the reference setting),
    -inf-only windows, integer inputs."""
    rng = np.random.default_rng(7)
    x = rng.integers(-2, 3, (2, 2, 7, 6)).astype(np.float32)
    if np.issubdtype(dtype, np.floating) or dtype == jnp.bfloat16:
        bits = np.array([0x7FC00001, 0xFFC00000, 0x7FC00001], np.uint32).view(np.float32)
        x[0, 0, 1, 1:4] = bits
        x[0, 1, 2, 2], x[0, 1, 2, 3], x[0, 1, 3, 2] = -0.0, 0.0, -0.0
        x[1, 0, :3, :3] = -np.inf
        x[1, 1, :2, :2] = [[-0.0, 0.0], [-1.0, -1.0]]  # output (0, 0)'s window: maximum 0, -0.0 first
    x = x.astype(dtype)
    v, i = F.max_pool2d(jnp.asarray(x), 3, 2, 1, return_indices=True)
    if dtype == np.float32:  # the gradient follows torch's pick, the first zero
        g = jax.grad(lambda a: F.max_pool2d(a, 3, 2, 1)[1, 1, 0, 0])(jnp.asarray(x))
        assert float(g[1, 1, 0, 0]) == 1.0 and float(jnp.sum(g)) == 1.0
    ref_v, ref_i = _torch_loop_max_pool2d(x, 3, 2, 1)
    np.testing.assert_array_equal(np.asarray(i), ref_i)
    got, want = np.asarray(v).astype(np.float32), ref_v.astype(np.float32)
    np.testing.assert_array_equal(np.isnan(got), np.isnan(want))
    if lowering == "reference":  # the CPU lowering's maximum may return +0.0 for a -0.0/+0.0 tie (docs/pooling.md)
        np.testing.assert_array_equal(np.signbit(got), np.signbit(want))
    np.testing.assert_array_equal(np.nan_to_num(got), np.nan_to_num(want))
    if lowering == "auto":  # vmapped: the CPU lowering's NaN pass (a lax.cond) then runs for every sample
        vi = jax.vmap(lambda a: F.max_pool2d(a, 3, 2, 1, return_indices=True)[1])(jnp.asarray(x))
        np.testing.assert_array_equal(np.asarray(vi), ref_i)

@pytest.mark.parametrize("family", ["max", "avg"])
def test_pool_derivatives_every_mode(family, lowering):
    """Forward mode, reverse mode, Hessian and vmapped gradients against torch.
    Max and average pooling have custom JVPs whose tangents JAX transposes
    through stride phases, so each mode takes a different path.  Max: a window
    of only -inf sends its gradient to the first in-bounds element, as torch."""
    rng = np.random.default_rng(3)
    x = _ties(rng, (2, 2, 7, 6))
    if family == "max":
        x[0, 0, :2, :2] = -np.inf
        jf = lambda a: F.max_pool2d(a, 3, 2, 1)  # noqa: E731
        tf = lambda a: TF.max_pool2d(a, 3, 2, 1)  # noqa: E731
    else:
        jf = lambda a: F.avg_pool2d(a, 3, 2, 1, ceil_mode=True, count_include_pad=False)  # noqa: E731
        tf = lambda a: TF.avg_pool2d(a, 3, 2, 1, ceil_mode=True, count_include_pad=False)  # noqa: E731
    tx = torch.tensor(x, requires_grad=True)
    ty = tf(tx)
    w = rng.normal(size=tuple(ty.shape))
    v = rng.normal(size=x.shape)
    (ty * torch.tensor(w)).sum().backward()
    _, t_jvp = torch.func.jvp(tf, (torch.tensor(x),), (torch.tensor(v),))
    xs = np.nan_to_num(x[:1, :1, :5, :4], neginf=-3.0)
    th = torch.autograd.functional.hessian(lambda a: (tf(a) ** 2).sum(), torch.tensor(xs))

    @jax.jit
    def derivatives(x, w, v, xs):  # one program for every mode
        g = jax.grad(lambda a: (jf(a) * w).sum())(x)
        tangent = jax.jvp(jf, (x,), (v,))[1]
        h = jax.hessian(lambda a: (jf(a) ** 2).sum())(xs)
        per_sample = jax.vmap(jax.grad(lambda a, c: (jf(a[None]) * c).sum()))(x, w)
        return g, tangent, h, per_sample

    g, tangent, h, per_sample = derivatives(*map(jnp.asarray, (x, w, v, xs)))
    close(g, tx.grad, RTOL, ATOL, "gradient")
    if family == "max":
        assert g[0, 0, 0, 0] != 0  # the -inf window's gradient reached its first in-bounds element
    close(tangent, t_jvp, RTOL, ATOL, "jvp")
    close(h, th, RTOL, ATOL, "hessian")
    close(per_sample, tx.grad, RTOL, ATOL, "vmapped per-sample gradients")


class PoolVariants(chex.TestCase):
    """Every family under jit and without, with indices and gradients."""

    @chex.variants(with_jit=True, without_jit=True)
    def test_all_families(self):
        rng = np.random.default_rng(1)
        x = _ties(rng, (2, 3, 8, 7))
        cases = [
            (lambda a: F.max_pool2d(a, 3, 2, 1, 1, True, True), lambda a: TF.max_pool2d(a, 3, 2, 1, 1, True, True), 2),
            (lambda a: F.adaptive_avg_pool2d(a, (3, 5)), lambda a: TF.adaptive_avg_pool2d(a, (3, 5)), 1),
            (lambda a: F.adaptive_max_pool2d(a, (3, 5), True), lambda a: TF.adaptive_max_pool2d(a, (3, 5), True), 2),
        ]
        for jf, tf, n_out in cases:
            _parity(self.variant(jf), tf, x, rng, n_out, jit=False)


# ------------------------------------------------------------------ avg pool

AVG_CASES = [
    (1, (2, 3, 11), dict(kernel_size=3, stride=2, padding=1, ceil_mode=True)),
    (1, (3, 10), dict(kernel_size=4, stride=3, padding=2, ceil_mode=True, count_include_pad=False)),
    (2, (2, 3, 9, 8), dict(kernel_size=3, stride=2, padding=1)),
    (2, (2, 3, 9, 8), dict(kernel_size=3, stride=2, padding=1, ceil_mode=True, count_include_pad=False)),
    (2, (2, 3, 9, 8), dict(kernel_size=(2, 3), stride=(3, 2), padding=(1, 1), ceil_mode=True, divisor_override=5)),
    (2, (3, 7, 6), dict(kernel_size=4, stride=3, padding=2, ceil_mode=True)),
    (3, (2, 5, 6, 7), dict(kernel_size=3, stride=2, padding=1, ceil_mode=True, count_include_pad=False)),
    (3, (1, 2, 5, 6, 7), dict(kernel_size=(2, 3, 2), divisor_override=7)),
]


@pytest.mark.parametrize("n,shape,kw", AVG_CASES)
def test_avg_pool_parity(n, shape, kw, rng, lowering):
    x = rng.normal(size=shape)
    jf, tf = getattr(F, f"avg_pool{n}d"), getattr(TF, f"avg_pool{n}d")
    _parity(lambda a: jf(a, **kw), lambda a: tf(a, **kw), x, rng)


@pytest.mark.parametrize("n,kw", [(1, dict(kernel_size=3, stride=2, padding=1)),
                                  (2, dict(kernel_size=3, stride=2, padding=1, count_include_pad=False, ceil_mode=True)),
                                  (2, dict(kernel_size=2, divisor_override=-3)),
                                  (3, dict(kernel_size=2, padding=1, count_include_pad=False))])
def test_avg_pool_of_integers_truncates_as_torch(n, kw):
    """torch's int64 kernel: integer window sums divided with truncation towards zero (it was a
    TypeError here); negative sums and divisors included."""
    x = np.random.default_rng(n).integers(-9, 10, (2, 3) + (5,) * n).astype(np.int64)
    got = getattr(F, f"avg_pool{n}d")(x, **kw)
    want = getattr(TF, f"avg_pool{n}d")(torch.tensor(x), **kw)
    assert got.dtype == np.int64
    np.testing.assert_array_equal(np.asarray(got), want.numpy())


def test_avg_pool_ceil_overhang_divisor_numpy():
    # L=6, k=3, s=2, p=1, ceil: windows start -1, 1, 3, 5; the last, [5, 8), runs past the
    # padded input (L + p = 7): torch divides it by 2 (count_include_pad) or 1 (input elements).
    x = np.arange(1.0, 7.0)[None, None]
    out = np.asarray(F.avg_pool1d(x, 3, 2, 1, ceil_mode=True))
    np.testing.assert_allclose(out[0, 0], [(0 + 1 + 2) / 3, (2 + 3 + 4) / 3, (4 + 5 + 6) / 3, (6 + 0) / 2], rtol=1e-14)
    out = np.asarray(F.avg_pool1d(x, 3, 2, 1, ceil_mode=True, count_include_pad=False))
    np.testing.assert_allclose(out[0, 0], [(1 + 2) / 2, (2 + 3 + 4) / 3, (4 + 5 + 6) / 3, 6 / 1], rtol=1e-14)
    out = np.asarray(F.avg_pool1d(x, 3, 2, 1, ceil_mode=True, count_include_pad=False))
    np.testing.assert_allclose(out, TF.avg_pool1d(torch.tensor(x), 3, 2, 1, True, False).numpy(), rtol=1e-14)


# ------------------------------------------------------------------ adaptive


def _np_adaptive(x, outs, op):
    """NumPy loop reference with torch's bins."""
    spatial = x.shape[2:]
    res = np.empty(x.shape[:2] + tuple(outs))
    for cell in itertools.product(*[range(o) for o in outs]):
        sl = tuple(slice((c * s) // o, -((-(c + 1) * s) // o)) for c, s, o in zip(cell, spatial, outs))
        res[(slice(None), slice(None)) + cell] = op(x[(slice(None), slice(None)) + sl].reshape(x.shape[:2] + (-1,)), -1)
    return res


ADAPTIVE_CASES = [
    (1, (2, 3, 11), 4),
    (1, (3, 5), 8),  # unbatched, larger than input
    (2, (2, 3, 33, 17), (7, 7)),
    (2, (2, 3, 9, 8), (None, 5)),
    (2, (2, 3, 5, 4), (9, 7)),  # larger than input
    (2, (3, 6, 4), (3, 2)),  # divisible, unbatched
    (2, (2, 3, 4, 3), 1),  # global
    (3, (1, 2, 5, 6, 7), (2, None, 3)),
    (3, (2, 5, 3, 4), (4, 4, 6)),
]


@pytest.mark.parametrize("n,shape,out", ADAPTIVE_CASES)
def test_adaptive_avg_pool_parity(n, shape, out, rng):
    x = rng.normal(size=shape)
    jf, tf = getattr(F, f"adaptive_avg_pool{n}d"), getattr(TF, f"adaptive_avg_pool{n}d")
    y = _parity(lambda a: jf(a, out), lambda a: tf(a, out), x, rng)
    if len(shape) == n + 2:
        outs = tuple(s if o is None else o for o, s in zip((out,) * n if not isinstance(out, tuple) else out,
                                                            shape[2:]))
        np.testing.assert_allclose(np.asarray(y), _np_adaptive(x, outs, np.mean), rtol=1e-12)


@pytest.mark.parametrize("n,shape,out", ADAPTIVE_CASES)
def test_adaptive_max_pool_parity(n, shape, out, rng):
    x = _ties(rng, shape) if n != 1 else rng.normal(size=shape)
    jf, tf = getattr(F, f"adaptive_max_pool{n}d"), getattr(TF, f"adaptive_max_pool{n}d")
    (y, _) = _parity(lambda a: jf(a, out, True), lambda a: tf(a, out, True), x, rng, 2)
    # no indices, not differentiated: the values' own path (the bins' slots folded, outermost dim first)
    np.testing.assert_array_equal(np.asarray(jf(jnp.asarray(x), out)), tf(torch.tensor(x), out).numpy())
    if len(shape) == n + 2:
        outs = tuple(s if o is None else o for o, s in zip((out,) * n if not isinstance(out, tuple) else out,
                                                            shape[2:]))
        np.testing.assert_array_equal(np.asarray(y), _np_adaptive(x, outs, np.max))


@pytest.mark.parametrize("name,args,shape", [
    ("max_pool1d_with_indices", (3, 2, 1, 1, True, False), (2, 3, 8)),  # return_indices=False positionally
    ("max_pool2d_with_indices", (3, 2, 1), (2, 3, 7, 6)),
    ("max_pool3d_with_indices", (2,), (1, 2, 4, 5, 4)),
    ("adaptive_max_pool1d_with_indices", (3, False), (3, 7)),
    ("adaptive_max_pool2d_with_indices", ((3, 2),), (2, 3, 7, 5)),
    ("adaptive_max_pool3d_with_indices", (2,), (1, 2, 3, 5, 4)),
    ("fractional_max_pool2d_with_indices", (2, (3, 3), None, False, np.array([[[0.3, 0.7]]] * 2).repeat(3, 1)),
     (2, 3, 6, 7)),
    ("fractional_max_pool3d_with_indices", (2, 2, None, False, np.full((1, 2, 3), 0.4)), (1, 2, 4, 5, 4)),
])
def test_with_indices_twins_always_return_indices(name, args, shape, rng):
    """torch's ``F.*_with_indices`` return ``(output, indices)`` even with ``return_indices=False``."""
    x = rng.normal(size=shape)
    (y, i), (yt, it) = getattr(F, name)(x, *args), getattr(TF, name)(
        torch.tensor(x), *[torch.tensor(a) if isinstance(a, np.ndarray) else a for a in args])
    np.testing.assert_array_equal(np.asarray(y), yt.numpy())
    np.testing.assert_array_equal(np.asarray(i), it.numpy())
    assert inspect.signature(getattr(F, name)) == inspect.signature(getattr(F, name.removesuffix("_with_indices")))
    with pytest.raises(TypeError, match=name):
        getattr(F, name)(x, *args, bogus=1)


@pytest.mark.parametrize("seed", range(2))
def test_adaptive_max_indices_ties_nan_zeros_match_torch(seed, lowering):
    """torch's pick on random bins full of ties, -inf, signed zeros and NaNs (1-d to 3-d,
    overlapping and repeated bins): indices, value bits and the gradient."""
    rng = np.random.default_rng(100 + seed)
    for _ in range(4):
        nd = int(rng.integers(1, 4))
        spatial, outs = tuple(rng.integers(1, 8, nd).tolist()), tuple(rng.integers(1, 6, nd).tolist())
        x = rng.integers(-2, 2, (2, 2) + spatial).astype(np.float64)
        x[x == 0] = rng.choice([0.0, -0.0], size=int((x == 0).sum()))
        if rng.random() < 0.5:
            x.reshape(-1)[rng.integers(0, x.size, 3)] = np.nan
        if rng.random() < 0.3:
            x.reshape(-1)[rng.integers(0, x.size, x.size // 2)] = -np.inf
        f, tf = getattr(F, f"adaptive_max_pool{nd}d"), getattr(TF, f"adaptive_max_pool{nd}d")
        v, i = f(x, outs, True)
        tv, ti = tf(torch.tensor(x), outs, True)
        np.testing.assert_array_equal(np.asarray(i), ti.numpy())
        np.testing.assert_array_equal(np.asarray(v), tv.numpy())
        np.testing.assert_array_equal(np.signbit(np.asarray(v)), np.signbit(tv.numpy()))
        w = rng.normal(size=tv.shape)
        g = jax.jit(jax.grad(lambda a: jnp.sum(jnp.nan_to_num(f(a, outs)) * w)))(jnp.asarray(x))
        xt = torch.tensor(x, requires_grad=True)
        (torch.nan_to_num(tf(xt, outs)) * torch.tensor(w)).sum().backward()
        np.testing.assert_array_equal(np.asarray(g), xt.grad.numpy())


LARGE_WINDOWS = [  # more taps than the window code unrolls: the bins path (values, indices, gradient)
    ((2, 3, 14, 14), dict(kernel_size=14), False),  # global, as max_pool2d(x, x.shape[2:])
    ((1, 2, 20, 17), dict(kernel_size=(8, 7), stride=(3, 2), padding=(4, 3), dilation=(2, 1), ceil_mode=True), True),
    ((1, 2, 30), dict(kernel_size=25, stride=1, padding=12), False),
    ((1, 1, 4, 10, 12), dict(kernel_size=(2, 5, 6), stride=2, padding=(1, 2, 3), dilation=(1, 2, 1)), False),
]


@pytest.mark.parametrize("shape,kw,channels_last", LARGE_WINDOWS)
def test_large_window_max_pool_matches_torch(shape, kw, channels_last, lowering):
    rng = np.random.default_rng(5)
    n = len(shape) - 2
    f, tf = getattr(F, f"max_pool{n}d"), getattr(TF, f"max_pool{n}d")
    if channels_last:
        g = f
        f = lambda a, **k: jax.tree.map(lambda r: jnp.moveaxis(r, -1, 1),
                                        g(jnp.moveaxis(a, 1, -1), channel_axis=-1, **k))
    grad_of = jax.jit(jax.grad(lambda a, w: jnp.sum(jnp.nan_to_num(f(a, **kw)) * w)))  # one program for the kinds
    for kind in ("ties", "nan", "ninf"):
        x = np.round(rng.normal(size=shape) * 2) / 2
        if kind == "nan":
            x[rng.random(shape) < 0.02] = np.nan
        if kind == "ninf":
            x[rng.random(shape) < 0.7] = -np.inf
        xt = torch.tensor(x, requires_grad=True)
        tv, ti = tf(xt, return_indices=True, **kw)
        w = rng.normal(size=tv.shape)
        (torch.nan_to_num(tv) * torch.tensor(w)).sum().backward()
        v, i = f(jnp.asarray(x), return_indices=True, **kw)
        np.testing.assert_array_equal(np.asarray(v), tv.detach().numpy(), err_msg=kind)
        np.testing.assert_array_equal(np.asarray(i), ti.numpy(), err_msg=kind)
        values = f(jnp.asarray(x), **kw)  # no indices, not differentiated: the values' own path
        np.testing.assert_array_equal(np.asarray(values), tv.detach().numpy(), err_msg=kind)
        grad = grad_of(jnp.asarray(x), w)
        np.testing.assert_array_equal(np.asarray(grad), xt.grad.numpy(), err_msg=kind)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_adaptive_max_nan_at_real_sizes(dtype, lowering):
    """A NaN reaches its bin at sizes where XLA:CPU's max reduction (its YNNPACK fusion)
    drops NaNs: global and (7, 7) pooling of 2x8x64x64, with and without indices."""
    x = np.random.default_rng(3).normal(size=(2, 8, 64, 64)).astype(dtype)
    x[1, 5, 40, 9] = np.nan
    for out in (1, (7, 7), (8, 4)):  # bins that tile the input (a reshape) and that do not (a gather)
        want_v, want_i = TF.adaptive_max_pool2d(torch.tensor(x), out, True)
        got = jax.jit(lambda a: F.adaptive_max_pool2d(a, out))(x)
        v, i = jax.jit(lambda a: F.adaptive_max_pool2d(a, out, True))(x)
        for y in (got, v):
            np.testing.assert_array_equal(np.asarray(y), want_v.numpy())
        np.testing.assert_array_equal(np.asarray(i), want_i.numpy())


def test_adaptive_max_nan():
    x = np.array([[[1.0, np.nan, 3.0, np.nan, 2.0, 5.0, 5.0]]])
    v, i = F.adaptive_max_pool1d(x, 3, True)
    tv, ti = TF.adaptive_max_pool1d(torch.tensor(x), 3, True)
    np.testing.assert_array_equal(np.asarray(v), tv.numpy())
    np.testing.assert_array_equal(np.asarray(i), ti.numpy())


# ------------------------------------------------------------------ LP pool

LP_CASES = [
    (1, (2, 3, 11), 2, dict(kernel_size=3, stride=2, ceil_mode=True)),
    (2, (2, 3, 9, 8), 3, dict(kernel_size=(2, 3), stride=(2, 1), ceil_mode=True)),
    (2, (3, 7, 6), float("inf"), dict(kernel_size=2, ceil_mode=True)),
    (3, (1, 2, 5, 6, 7), 2, dict(kernel_size=2, stride=2, ceil_mode=True)),
]


def test_lp_pool_inf_gradient_of_a_zero_window_matches_torch():
    # |x|'s slope at 0 is sign(0) = 0 in torch (JAX's abs: 1); windows of zeros are common after ReLU
    x = np.array([[[0.0, -0.0, 0.0, 0.5, -2.5, 1.0]]])
    xt = torch.tensor(x, requires_grad=True)
    TF.lp_pool1d(xt, float("inf"), 3, 3).sum().backward()
    g = jax.grad(lambda a: F.lp_pool1d(a, float("inf"), 3, 3).sum())(jnp.asarray(x))
    np.testing.assert_array_equal(np.asarray(g), xt.grad.numpy())


@pytest.mark.parametrize("n,shape,p,kw", LP_CASES)
def test_lp_pool_parity(n, shape, p, kw, rng, lowering):
    x = rng.normal(size=shape)
    if p == 1.5:
        x = np.abs(x)
    jf, tf = getattr(F, f"lp_pool{n}d"), getattr(TF, f"lp_pool{n}d")
    _parity(lambda a: jf(a, p, **kw), lambda a: tf(a, p, **kw), x, rng)


def test_lp_pool_sign_convention_and_zero_grad(rng):
    # p = 1: a negative window sum stays negative; p = 2 on an all-zero window: output 0, gradient 0.
    x = np.array([[[-1.0, -2.0, 3.0, 0.5, 0.0, 0.0]]])
    for p in (1, 2, 3):
        _, g = _parity(lambda a: F.lp_pool1d(a, p, 2), lambda a: TF.lp_pool1d(a, p, 2), x, rng, return_grad=True)
        assert np.all(np.asarray(g)[..., 4:] == 0)
        assert p == 3 or np.all(np.isfinite(np.asarray(g)))  # p = 3: (-9) ** (1/3) is NaN, as in torch


# ------------------------------------------------------------------ unpool

UNPOOL_CASES = [
    (1, (2, 3, 11), dict(kernel_size=3, stride=2, padding=1), None),  # overlapping windows: repeated indices
    (1, (3, 10), dict(kernel_size=2), (11,)),
    (2, (2, 3, 9, 7), dict(kernel_size=3, stride=2, padding=1), None),
    (2, (2, 3, 9, 8), dict(kernel_size=2, stride=2), (2, 3, 9, 9)),
    (2, (3, 7, 6), dict(kernel_size=2), (7, 6)),
    (3, (1, 2, 5, 6, 7), dict(kernel_size=2, stride=2), (5, 6, 7)),
]


@pytest.mark.parametrize("n,shape,kw,out", UNPOOL_CASES)
def test_max_unpool_parity(n, shape, kw, out, rng):
    x = rng.normal(size=shape)
    tv, ti = getattr(TF, f"max_pool{n}d")(torch.tensor(x), **kw, return_indices=True)
    i = jnp.asarray(ti.numpy(), index_dtype())
    mod = getattr(nn, f"MaxUnpool{n}d")(**kw)
    _parity(lambda a: mod.apply({}, a, i, output_size=out),
            lambda a: getattr(TF, f"max_unpool{n}d")(a, ti, **kw, output_size=out), tv.detach().numpy(), rng)
    if n == 2:
        y = F.max_unpool2d(tv.detach().numpy(), i, **kw, output_size=out)
        np.testing.assert_array_equal(np.asarray(y), TF.max_unpool2d(tv, ti, **kw, output_size=out).detach().numpy())


def test_max_unpool_out_of_range_indices_raise_or_drop_under_jit():
    # known values: torch's error; traced (jit) values cannot be checked: dropped
    for bad in (99, -1):
        with pytest.raises(IndexError, match=rf"max_unpool1d: found an invalid max index {bad} .* = 4"):
            F.max_unpool1d(jnp.ones((1, 1, 2)), jnp.array([[[1, bad]]]), 2)
        with pytest.raises(RuntimeError, match="invalid max index"):
            TF.max_unpool1d(torch.ones(1, 1, 2), torch.tensor([[[1, bad]]]), 2)
    y = jax.jit(lambda i: F.max_unpool1d(jnp.ones((1, 1, 2)), i, 2))(jnp.array([[[1, 99]]]))
    np.testing.assert_array_equal(np.asarray(y), [[[0, 1, 0, 0]]])


# ------------------------------------------------------------------ modules


MODULES = ["MaxPool", "MaxUnpool", "AvgPool", "AdaptiveAvgPool", "AdaptiveMaxPool", "LPPool"]


@pytest.mark.parametrize("family", MODULES)
@pytest.mark.parametrize("n", [1, 2, 3])
def test_module_signature_matches_torch(family, n):
    name = f"{family}{n}d"
    ours = [p for p in inspect.signature(getattr(nn, name)).parameters if p not in ("parent", "name")]
    theirs = list(inspect.signature(getattr(torch.nn, name).__init__).parameters)[1:]
    assert ours == theirs
    for p in theirs:
        d = inspect.signature(getattr(torch.nn, name).__init__).parameters[p].default
        if d is not inspect.Parameter.empty:
            assert inspect.signature(getattr(nn, name)).parameters[p].default == d


MODULE_CASES = [
    ("MaxPool2d", (3, 2, 1, 2, True, True), (2, 3, 9, 8)),
    ("MaxPool3d", (2, 1, 1, 1, False, True), (1, 2, 4, 5, 3)),
    ("AvgPool2d", (3, 2, 1, True, True, 4), (3, 9, 8)),
    ("AvgPool3d", (2, 2, 1, True, False), (1, 2, 5, 6, 7)),
    ("AdaptiveAvgPool2d", ((7, None),), (2, 3, 33, 17)),
    ("AdaptiveMaxPool3d", ((2, 3, 5), True), (2, 5, 3, 4)),
    ("AdaptiveMaxPool1d", (4,), (2, 3, 11)),
    ("LPPool2d", (2, 3, 2, True), (2, 3, 9, 8)),
    ("LPPool1d", (3, 2), (3, 10)),
]


@pytest.mark.parametrize("name,args,shape", MODULE_CASES)
def test_module_parity(name, args, shape, rng):
    x = _ties(rng, shape) + 0.5
    mod = getattr(nn, name)(*args)
    tmod = getattr(torch.nn, name)(*args)
    assert mod.init(jax.random.key(0), x) == {}
    two = getattr(mod, "return_indices", False)
    _parity(lambda a: mod.apply({}, a), tmod, x, rng, 2 if two else 1)


def test_float32_jit_and_vmap(rng):
    x32 = jnp.asarray(rng.normal(size=(2, 3, 9, 8)), jnp.float32)
    x64 = np.asarray(x32, np.float64)
    fns = [
        (lambda a: F.max_pool2d(a, 3, 2, 1, ceil_mode=True), lambda a: TF.max_pool2d(a, 3, 2, 1, ceil_mode=True)),
        (lambda a: F.avg_pool2d(a, 3, 2, 1, ceil_mode=True), lambda a: TF.avg_pool2d(a, 3, 2, 1, ceil_mode=True)),
        (lambda a: F.adaptive_avg_pool2d(a, (4, 3)), lambda a: TF.adaptive_avg_pool2d(a, (4, 3))),
        (lambda a: F.adaptive_max_pool2d(a, (4, 3)), lambda a: TF.adaptive_max_pool2d(a, (4, 3))),
    ]
    for jf, tf in fns:
        y = jax.jit(jf)(x32)
        assert y.dtype == jnp.float32
        np.testing.assert_allclose(np.asarray(y), tf(torch.tensor(x64)).numpy(), rtol=1e-5, atol=1e-6)
        yv = jax.jit(jax.vmap(jf))(x32)  # vmap over the batch: unbatched (C, H, W) inputs
        np.testing.assert_allclose(np.asarray(yv), np.asarray(y), rtol=1e-5, atol=1e-6)


# ------------------------------------------------------------------ errors


def test_errors():
    x = jnp.zeros((1, 2, 5, 5))
    with pytest.raises(ValueError, match="max_pool2d: padding should be at most half"):
        F.max_pool2d(x, 3, padding=2)
    with pytest.raises(ValueError, match="avg_pool2d: padding should be at most half"):
        F.avg_pool2d(x, 2, padding=2)
    with pytest.raises(ValueError, match="MaxPool2d: padding should be at most half"):
        nn.MaxPool2d(3, padding=2).apply({}, x)
    with pytest.raises(ValueError, match="max_pool2d: kernel_size=.*larger than the padded input.*too small"):
        F.max_pool2d(x, 6)
    with pytest.raises(ValueError, match=r"avg_pool3d: input of spatial size \(2, 3, 3\) is smaller than kernel_size"):
        F.avg_pool3d(jnp.zeros((1, 2, 3, 3)), 4)
    # torch's 3-d average pools need input >= kernel whatever the padding (its 1-d/2-d ones and max_pool3d don't)
    with pytest.raises(ValueError, match=r"avg_pool3d: input of spatial size \(1, 4, 4\) is smaller"):
        F.avg_pool3d(jnp.zeros((1, 1, 1, 4, 4)), 3, padding=1)
    with pytest.raises(ValueError, match=r"lp_pool3d: input of spatial size \(2, 2, 5\) is smaller"):
        F.lp_pool3d(jnp.ones((1, 1, 2, 2, 5)), 2, (4, 4, 1), 3, ceil_mode=True)
    with pytest.raises(TypeError, match=r"adaptive_avg_pool2d: output_size must be an int or a sequence of 2"):
        F.adaptive_avg_pool2d(jnp.zeros((1, 1, 2, 3)), None)
    with pytest.raises(TypeError, match=r"adaptive_max_pool1d: output_size entries must be ints,"):
        F.adaptive_max_pool1d(jnp.zeros((1, 1, 3)), (None,))
    with pytest.raises(ValueError, match=r"max_unpool2d: output_size should have 2 or 4 elements"):
        F.max_unpool2d(jnp.zeros((2, 3, 1)), jnp.zeros((2, 3, 1), int), 2, padding=1, output_size=[2, 5, 1])
    with pytest.raises(ValueError, match="lp_pool1d: kernel_size=.*larger"):
        F.lp_pool1d(jnp.zeros((1, 2, 3)), 2, 4)
    with pytest.raises(ValueError, match="max_pool2d: kernel_size must be >= 1"):
        F.max_pool2d(x, 0)
    with pytest.raises(ValueError, match="MaxPool2d: stride must be >= 1"):
        nn.MaxPool2d(2, stride=-1)
    with pytest.raises(ValueError, match="AvgPool1d: padding must be >= 0"):
        nn.AvgPool1d(2, padding=-1)
    with pytest.raises(ValueError, match="max_pool1d: dilation must be >= 1"):
        F.max_pool1d(jnp.zeros((1, 1, 5)), 2, dilation=0)
    with pytest.raises(ValueError, match="LPPool2d: kernel_size must be an int or a sequence of 2"):
        nn.LPPool2d(2, (2, 2, 2))
    with pytest.raises(TypeError, match="avg_pool2d: kernel_size must be an int"):
        F.avg_pool2d(x, 2.5)
    with pytest.raises(ValueError, match=r"max_pool2d: expected \(N, C, H, W\) or \(C, H, W\) input, got 2-D"):
        F.max_pool2d(jnp.zeros((5, 5)), 2)
    with pytest.raises(ValueError, match=r"AdaptiveAvgPool3d: expected .* got 2-D"):
        nn.AdaptiveAvgPool3d(1).apply({}, jnp.zeros((5, 5)))
    with pytest.raises(ValueError, match="max_pool1d: spatial dims of the input must be non-empty"):
        F.max_pool1d(jnp.zeros((1, 2, 0)), 1)
    with pytest.raises(ValueError, match="adaptive_avg_pool2d: output_size must be >= 0"):
        F.adaptive_avg_pool2d(x, (-1, 2))
    with pytest.raises(ValueError, match="adaptive_max_pool2d: output_size must be an int or a sequence of 2"):
        F.adaptive_max_pool2d(x, (1, 2, 3))
    with pytest.raises(TypeError, match="AdaptiveMaxPool2d: output_size entries must be ints or None"):
        nn.AdaptiveMaxPool2d((2.0, 2)).apply({}, x)
    with pytest.raises(ValueError, match="avg_pool2d: divisor_override must be non-zero"):
        F.avg_pool2d(x, 2, divisor_override=0)
    with pytest.raises(TypeError, match=r"avg_pool2d: expected a real \(integer or floating-point\) input, got dtype bool"):
        F.avg_pool2d(jnp.zeros((1, 2, 4, 4), bool), 2)
    with pytest.raises(ValueError, match="lp_pool2d: norm_type must be non-zero"):
        F.lp_pool2d(x, 0, 2)
    with pytest.raises(TypeError, match="LPPool1d: norm_type must be a number"):
        nn.LPPool1d("2", 2).apply({}, jnp.zeros((1, 2, 4)))
    v, i = F.max_pool2d(jnp.ones((1, 2, 4, 4)), 2, return_indices=True)
    with pytest.raises(TypeError, match="max_unpool2d: indices must be an integer array"):
        F.max_unpool2d(v, i.astype(jnp.float32), 2)
    with pytest.raises(ValueError, match="MaxUnpool2d: indices must have the shape of input"):
        nn.MaxUnpool2d(2).apply({}, v, i[..., :1])
    with pytest.raises(ValueError, match=r"max_unpool2d: output_size \(6, 4\) is unreachable.*dim 0 must be strictly "
                                         r"between 2 and 6"):
        F.max_unpool2d(v, i, 2, output_size=(6, 4))
    with pytest.raises(ValueError, match="max_unpool2d: output_size should have 2 or 4 elements"):
        F.max_unpool2d(v, i, 2, output_size=(4, 4, 4))
    # torch agrees on the unreachable size
    with pytest.raises(ValueError, match="invalid output_size"):
        TF.max_unpool2d(torch.ones(1, 2, 2, 2), torch.zeros(1, 2, 2, 2, dtype=torch.long), 2, output_size=(6, 4))


# ------------------------------------------------------------------ hypothesis: output-shape rules vs torch


def _torch_shape_or_error(fn):
    try:
        return tuple(fn().shape)
    except RuntimeError:
        return None


@given(
    n=st.integers(1, 3),
    size=st.integers(1, 12),
    k=st.integers(1, 5),
    s=st.integers(1, 4),
    p=st.integers(0, 3),
    d=st.integers(1, 3),
    ceil=st.booleans(),
    avg=st.booleans(),
)
def test_hypothesis_window_pool_shapes(n, size, k, s, p, d, ceil, avg):
    shape = (1, 2) + (size,) * n
    if avg:
        d = 1
        jf = lambda a: getattr(F, f"avg_pool{n}d")(a, k, s, p, ceil)  # noqa: E731
        tf = lambda: getattr(TF, f"avg_pool{n}d")(torch.zeros(shape), k, s, p, ceil)  # noqa: E731
    else:
        jf = lambda a: getattr(F, f"max_pool{n}d")(a, k, s, p, d, ceil, True)[1]  # noqa: E731
        tf = lambda: getattr(TF, f"max_pool{n}d")(torch.zeros(shape), k, s, p, d, ceil, True)[1]  # noqa: E731
    expected = _torch_shape_or_error(tf)
    if expected is None:
        with pytest.raises(ValueError, match=f"{'avg' if avg else 'max'}_pool{n}d: "):
            jax.eval_shape(jf, jax.ShapeDtypeStruct(shape, jnp.float64))
    else:
        assert jax.eval_shape(jf, jax.ShapeDtypeStruct(shape, jnp.float64)).shape == expected


@given(
    n=st.integers(1, 3),
    sizes=st.lists(st.integers(1, 9), min_size=3, max_size=3),
    outs=st.lists(st.one_of(st.none(), st.integers(0, 12)), min_size=3, max_size=3),
    use_max=st.booleans(),
)
def test_hypothesis_adaptive_shapes(n, sizes, outs, use_max):
    shape = (2, 1) + tuple(sizes[:n])
    out = tuple(o if (o is not None or n > 1) else 3 for o in outs[:n])  # torch's 1-d takes no None
    fam = "adaptive_max_pool" if use_max else "adaptive_avg_pool"
    expected = tuple(getattr(TF, f"{fam}{n}d")(torch.zeros(shape), out).shape)
    got = jax.eval_shape(lambda a: getattr(F, f"{fam}{n}d")(a, out), jax.ShapeDtypeStruct(shape, jnp.float64))
    assert got.shape == expected


@given(n=st.integers(1, 3), size=st.integers(1, 6), k=st.integers(1, 3), s=st.integers(1, 3),
       p=st.integers(0, 1), delta=st.integers(-3, 3))
def test_hypothesis_unpool_sizes(n, size, k, s, p, delta):
    shape = (1, 1) + (size,) * n
    default = (size - 1) * s + k - 2 * p
    out = (default + delta,) * n
    x = torch.zeros(shape)
    idx = torch.zeros(shape, dtype=torch.long)
    try:
        expected = tuple(getattr(TF, f"max_unpool{n}d")(x, idx, k, s, p, output_size=out).shape)
    except (ValueError, RuntimeError):
        expected = None
    jf = lambda a, i: getattr(F, f"max_unpool{n}d")(a, i, k, s, p, output_size=out)  # noqa: E731
    args = (jax.ShapeDtypeStruct(shape, jnp.float64), jax.ShapeDtypeStruct(shape, index_dtype()))
    if expected is None:
        with pytest.raises(ValueError, match=f"max_unpool{n}d: "):
            jax.eval_shape(jf, *args)
    else:
        assert jax.eval_shape(jf, *args).shape == expected


# ------------------------------------------------------------------ lowering vs reference

LOWERED_CASES = [
    ("max2d_indices", lambda a: F.max_pool2d(a, (2, 3), (2, 1), 1, (2, 1), True, True), (2, 3, 9, 8)),
    ("avg2d", lambda a: F.avg_pool2d(a, 3, 2, 1, ceil_mode=True, count_include_pad=False), (2, 3, 7, 6)),
    ("lp1d", lambda a: F.lp_pool1d(a, 2, 3, 2, ceil_mode=True), (2, 3, 11)),
    ("max2d_disjoint", lambda a: F.max_pool2d(a, 2, ceil_mode=True), (2, 3, 7, 6)),  # windows as strided taps
    ("avg2d_disjoint", lambda a: F.avg_pool2d(a, (2, 3), ceil_mode=True), (2, 3, 7, 8)),
    ("adaptive_max2d", lambda a: F.adaptive_max_pool2d(a, (4, 3)), (2, 3, 9, 8)),
    ("adaptive_max1d", lambda a: F.adaptive_max_pool1d(a, 4), (2, 3, 11)),
    ("adaptive_max3d_upsampling", lambda a: F.adaptive_max_pool3d(a, (5, 2, 7)), (1, 2, 3, 4, 5)),
    ("adaptive_max2d_indices", lambda a: F.adaptive_max_pool2d(a, (3, 5), True), (2, 3, 7, 9)),
    ("max1d_gaps", lambda a: F.max_pool1d(a, 2, 3, 1, ceil_mode=True), (2, 3, 11)),  # kernel < stride
    ("avg3d_disjoint", lambda a: F.avg_pool3d(a, 2, ceil_mode=True), (1, 2, 5, 4, 3)),
    ("max2d_channels_last", lambda a: F.max_pool2d(a, 3, 2, 1, channel_axis=-1), (2, 7, 6, 3)),
]


def _transforms(f):
    """One jitted program: values (and indices), vjp, jvp and a second
    derivative (vmap: test_vmap_checkpoint_scan)."""
    def first(a):
        out = f(a)
        return out[0] if isinstance(out, tuple) else out

    def run(x, t, ct):
        out = f(x)
        y, vjp = jax.vjp(first, x)
        _, tangent = jax.jvp(first, (x,), (t,))
        hvp = jax.grad(lambda a: jnp.sum(jax.grad(lambda b: jnp.sum(first(b) ** 2))(a) * t))(x)
        return out, vjp(ct)[0], tangent, hvp
    return jax.jit(run)


@pytest.mark.parametrize("name,f,shape", LOWERED_CASES, ids=[c[0] for c in LOWERED_CASES])
def test_lowering_matches_reference(name, f, shape):
    """The CPU lowerings (jaxlayers._lowering.pooling) against the reference:
    values, indices, vjp, jvp and second derivatives, on inputs with ties,
    -inf windows and a NaN."""
    rng = np.random.default_rng(5)
    x = _ties(rng, shape)
    x.reshape(-1)[:3] = -np.inf
    x.reshape(-1)[7] = np.nan
    out_shape = jax.eval_shape(f, jax.ShapeDtypeStruct(shape, jnp.float64))
    out_shape = out_shape[0] if isinstance(out_shape, tuple) else out_shape
    args = (jnp.asarray(x), jnp.asarray(rng.normal(size=shape)), jnp.asarray(rng.normal(size=out_shape.shape)))
    results = {}
    for mode in ("reference", "auto"):
        with config.lowering(mode):
            results[mode] = _transforms(f)(*args)
    close(results["auto"], results["reference"], 1e-12, 1e-12, name)
    # the lowering is really used: a different derivative under "auto" on CPU
    def jvp_text():
        first = lambda a: jax.tree.leaves(f(a))[0]  # noqa: E731
        return jax.jit(lambda a, t: jax.jvp(first, (a,), (t,))).lower(*args[:2]).as_text()

    with config.lowering("reference"):
        ref_text = jvp_text()
    with config.lowering("auto"):
        assert (jvp_text() != ref_text) == (jax.default_backend() == "cpu")


# ------------------------------------------------------------------ transforms: check_grads, vmap, checkpoint, scan

# every pooling function (1-d: the N-d code is shared, and small programs compile fast)
TRANSFORM_CASES = [
    ("max_pool", lambda a: F.max_pool1d(a, 3, 2, 1, ceil_mode=True)),
    ("max_pool_indices", lambda a: F.max_pool1d(a, 2, 1, dilation=2, return_indices=True)[0]),
    ("avg_pool", lambda a: F.avg_pool1d(a, 3, 2, 1, ceil_mode=True, count_include_pad=False)),
    ("lp_pool", lambda a: F.lp_pool1d(a, 2, 2, 1)),
    ("adaptive_avg_pool", lambda a: F.adaptive_avg_pool1d(a, 3)),
    ("adaptive_max_pool", lambda a: F.adaptive_max_pool1d(a, 3)),
    ("max_unpool", lambda a: F.max_unpool1d(a, jnp.array([[[0, 3, 4]]]), 2, output_size=(6,))),
]
_TRANSFORM_IDS = [c[0] for c in TRANSFORM_CASES]


def test_vmap_checkpoint_scan(lowering):
    """Every pooling function: vmap over unbatched inputs against the batched
    call, jax.checkpoint inside lax.scan, and the scan's gradient against the
    vmapped one (one program for all)."""
    xs = jnp.asarray(np.random.default_rng(4).normal(size=(3, 1, 7)))

    def per_function(name, f):
        if name == "max_unpool":  # indices of shape (1, 1, 3): one plane at a time
            f, xs_ = (lambda a, f=f: f(a[None])[0]), xs[..., :3]
            direct = jnp.stack([f(a) for a in xs_])
        else:
            xs_ = xs
            direct = f(xs_)
        mapped = jax.vmap(f)(xs_)

        def scanned(v):
            return lax.scan(lambda c, a: (c, jax.checkpoint(f)(a)), 0.0, v)[1]

        g_scan = jax.grad(lambda v: jnp.sum(jnp.sin(scanned(v))))(xs_)
        g_vmap = jax.grad(lambda v: jnp.sum(jnp.sin(jax.vmap(f)(v))))(xs_)
        return direct, mapped, scanned(xs_), g_scan, g_vmap

    lowered = ("max_pool", "max_pool_indices", "avg_pool", "lp_pool", "adaptive_max_pool")  # others: one program
    cases = [(name, f) for name, f in TRANSFORM_CASES if lowering == "reference" or name in lowered]
    results = jax.jit(lambda: {name: per_function(name, f) for name, f in cases})()
    for name, (direct, mapped, scan_out, g_scan, g_vmap) in results.items():
        close(mapped, direct, 1e-13, 1e-13, f"{name} vmap")
        close(scan_out, direct, 1e-13, 1e-13, f"{name} scan")
        close(g_scan, g_vmap, 1e-13, 1e-13, f"{name} scan gradient")


# ------------------------------------------------------------------ program size does not grow with the input


SIZE_CASES = [
    ("adaptive_max_pool2d(1)", lambda a: F.adaptive_max_pool2d(a, 1, True)),
    ("adaptive_max_pool2d((7,7))", lambda a: F.adaptive_max_pool2d(a, (7, 7), True)),
    ("adaptive_max_pool2d((3,3))", lambda a: F.adaptive_max_pool2d(a, (3, 3), True)),
    ("adaptive_max_pool2d((7,7)) values", lambda a: F.adaptive_max_pool2d(a, (7, 7))),
    ("adaptive_avg_pool2d(1)", lambda a: F.adaptive_avg_pool2d(a, 1)),
    ("adaptive_avg_pool2d((7,7))", lambda a: F.adaptive_avg_pool2d(a, (7, 7))),
    ("adaptive_avg_pool2d((3,3))", lambda a: F.adaptive_avg_pool2d(a, (3, 3))),
    ("max_pool2d(3,2,1,return_indices)", lambda a: F.max_pool2d(a, 3, 2, 1, return_indices=True)),
    ("max_pool2d(3,2,1)", lambda a: F.max_pool2d(a, 3, 2, 1)),
    ("max_pool2d(2) channels-last", lambda a: F.max_pool2d(a, 2, channel_axis=-1)),
    ("avg_pool2d(3,2,1)", lambda a: F.avg_pool2d(a, 3, 2, 1)),
    # windows that grow with the input (global pooling written as a pool over the whole map)
    ("max_pool2d(x, x.shape[2:], return_indices)", lambda a: F.max_pool2d(a, a.shape[2:], return_indices=True)),
    ("max_pool2d(x, x.shape[2:])", lambda a: F.max_pool2d(a, a.shape[2:])),
    ("avg_pool2d(x, x.shape[2:])", lambda a: F.avg_pool2d(a, a.shape[2:])),
    ("lp_pool2d(x, 2, x.shape[2:])", lambda a: F.lp_pool2d(a, 2, a.shape[2:])),
    ("max_unpool2d", lambda a: F.max_unpool2d(a, jnp.zeros(a.shape, index_dtype()), 2)),
    ("lp_pool2d", lambda a: F.lp_pool2d(a, 2, 3, 2)),
    ("lp_pool2d(inf)", lambda a: F.lp_pool2d(a, float("inf"), 3, 2)),
    ("embedding_bag", lambda a: F.embedding_bag(jnp.zeros(a.shape[2:], jnp.int32), a[0, 0], mode="max")),
    # the convolution lowerings that unroll over kernel taps or move channels (jaxlayers/_lowering/conv.py)
    ("conv2d depthwise 3x3", lambda a: F.conv2d(a, jnp.ones((6, 1, 3, 3)), stride=2, padding=1, groups=3)),
    ("conv2d pointwise", lambda a: F.conv2d(a, jnp.ones((4, 3, 1, 1)), stride=2)),
]


@pytest.mark.parametrize("name,f", SIZE_CASES, ids=[c[0] for c in SIZE_CASES])
def test_program_size_independent_of_input_size(name, f):
    """Forward, and forward+backward, lowered (never run) at 14x14 and 224x224: the same
    program up to a few lines (no loops over positions or bins).  Both sizes are
    multiples of 7 and neither of 3: bins that tile the input are a reshape, others
    a gather, each a fixed handful of ops."""
    def lines(fn, size):
        x = jax.ShapeDtypeStruct((2, 3, size, size), jnp.float32)
        return len(jax.jit(fn).lower(x).as_text().splitlines())

    def fwd_bwd(a):
        return jax.grad(lambda b: jnp.sum(jax.tree.leaves(f(b))[0]))(a)

    for fn in (f, fwd_bwd):  # under differentiation adaptive max pooling's forward is another program
        small, large = lines(fn, 14), lines(fn, 224)
        assert abs(small - large) <= 6, (name, fn.__name__, small, large)


def test_adaptive_bins_that_do_not_tile_are_read_slot_by_slot():
    """Adaptive bins of 23 -> 7 and 11 -> 5 elements (overlapping, not tiling).  The forward's
    maxima are an elementwise ``max`` folded over each dim's slots (one read of ``out``
    positions per slot, 8 slots per iteration of one loop per dim), with no reduction over
    gathered bins and no NaN pass (an elementwise ``max`` propagates NaN); XLA:CPU ran the
    gathered bins 2-8x slower.  The differentiated program (torch's pick, searched over the
    bins as static slices, padded and stacked) keeps only the index reads of the pick (4)."""
    x = jax.ShapeDtypeStruct((2, 3, 23, 11), jnp.float32)

    def pool(a):
        return F.adaptive_max_pool2d(a, (7, 5))

    fwd = jax.jit(pool).lower(x).as_text()
    assert "stablehlo.reduce" not in fwd and "stablehlo.case" not in fwd and "stablehlo.if" not in fwd
    assert fwd.count("stablehlo.while") == 2 and fwd.count("stablehlo.maximum") == 2 * 8, fwd
    grad = jax.jit(jax.grad(lambda a: jnp.sum(jnp.sin(pool(a))))).lower(x).as_text()
    assert grad.count("stablehlo.gather") <= 4, grad.count("stablehlo.gather")


# ------------------------------------------------------------------ empty batches


EMPTY_CASES = [
    ("max_pool2d", lambda a: F.max_pool2d(a, 3, 2, 1, return_indices=True),
     lambda t: TF.max_pool2d(t, 3, 2, 1, return_indices=True)),
    ("avg_pool2d", lambda a: F.avg_pool2d(a, 3, 2, 1), lambda t: TF.avg_pool2d(t, 3, 2, 1)),
    ("adaptive_avg_pool2d", lambda a: F.adaptive_avg_pool2d(a, 5), lambda t: TF.adaptive_avg_pool2d(t, 5)),
    ("adaptive_avg_pool1d", lambda a: F.adaptive_avg_pool1d(a[..., 0], 5), lambda t: TF.adaptive_avg_pool1d(t[..., 0], 5)),
    ("adaptive_max_pool2d", lambda a: F.adaptive_max_pool2d(a, (5, 3), True),
     lambda t: TF.adaptive_max_pool2d(t, (5, 3), True)),
    ("lp_pool2d", lambda a: F.lp_pool2d(a, 2, 3), lambda t: TF.lp_pool2d(t, 2, 3)),
    ("max_pool3d", lambda a: F.max_pool3d(a[:, None], 2), lambda t: TF.max_pool3d(t[:, None], 2)),
    ("max_unpool2d", lambda a: F.max_unpool2d(a, jnp.zeros(a.shape, index_dtype()), 2),
     lambda t: TF.max_unpool2d(t, torch.zeros(t.shape, dtype=torch.long), 2)),
    ("fractional_max_pool2d", lambda a: F.fractional_max_pool2d(a, 2, 3, key=jax.random.key(0)),
     lambda t: TF.fractional_max_pool2d(t, 2, 3)),
]


@pytest.mark.parametrize("name,jf,tf", EMPTY_CASES, ids=[c[0] for c in EMPTY_CASES])
def test_empty_batch(name, jf, tf):
    shapes = lambda out: [tuple(o.shape) for o in (out if isinstance(out, tuple) else (out,))]  # noqa: E731
    expected = shapes(tf(torch.zeros(0, 3, 8, 8)))
    assert shapes(jax.eval_shape(jf, jax.ShapeDtypeStruct((0, 3, 8, 8), jnp.float64))) == expected
    if name.startswith(("adaptive", "fractional")):  # these raised ZeroDivisionError before; run them
        assert shapes(jf(jnp.zeros((0, 3, 8, 8)))) == expected


def test_empty_channels_as_torch():
    # torch: adaptive average pooling accepts empty channels; the others raise
    assert F.adaptive_avg_pool2d(jnp.zeros((2, 0, 8, 8)), 5).shape == tuple(
        TF.adaptive_avg_pool2d(torch.zeros(2, 0, 8, 8), 5).shape)
    assert F.adaptive_max_pool2d(jnp.zeros((0, 8, 8)), 5).shape == tuple(
        TF.adaptive_max_pool2d(torch.zeros(0, 8, 8), 5).shape)
    for jf, tf in [(F.max_pool2d, TF.max_pool2d), (F.avg_pool2d, TF.avg_pool2d),
                   (lambda a, k: F.adaptive_max_pool2d(a, k), lambda a, k: TF.adaptive_max_pool2d(a, k))]:
        with pytest.raises(RuntimeError):
            tf(torch.zeros(2, 0, 8, 8), 2)
        with pytest.raises(ValueError, match="_pool2d: the channel dim of the input must be non-empty"):
            jf(jnp.zeros((2, 0, 8, 8)), 2)


# ------------------------------------------------------------------ what a review found


def test_adaptive_average_of_infinities_stays_in_its_bins(lowering):
    """Bins that do not tile their dim: an infinite or NaN value reaches only its own bins, as
    torch's sums (the dense averaging matrix multiplied it by the other bins' zeros: NaN in every
    bin); the gradient is torch's whatever the input holds."""
    x = np.ones((2, 2, 5, 7))
    x[0, 0, 0, 0], x[0, 1, 2, 3], x[1, 0, 4, 6] = np.inf, np.nan, -np.inf
    g = np.random.default_rng(3).normal(size=(2, 2, 3, 4))
    got = jax.jit(lambda a, g: jax.vjp(lambda a: F.adaptive_avg_pool2d(a, (3, 4)), a)[1](g)[0])(x, g)
    xt = torch.tensor(x, requires_grad=True)
    want = TF.adaptive_avg_pool2d(xt, (3, 4))
    close(F.adaptive_avg_pool2d(x, (3, 4)), want.detach().numpy(), equal_nan=True)
    close(got, torch.autograd.grad(want, xt, torch.tensor(g))[0].numpy())
    # under vmap, one element with a NaN sends the whole batch to the exact form
    close(jax.vmap(lambda a: F.adaptive_avg_pool1d(a, 3))(x[:, :, 0, :5]),
          TF.adaptive_avg_pool1d(torch.tensor(x[:, :, 0, :5]), 3).numpy(), equal_nan=True)


@pytest.mark.parametrize("dtype", ["bfloat16", "float16"])
def test_low_precision_average_sums_in_float32_as_torch(dtype, lowering):
    """avg_pool and lp_pool add in float32 and round once, as torch (bfloat16 sums of
    1 + 3 * 2**-8 lost the small terms: 0.25 where torch gives 0.2539)."""
    x = np.random.default_rng(4).standard_normal((2, 3, 9, 9)).astype(np.float32)
    x[0, 0, 0, :4] = [1.0, 2 ** -8, 2 ** -8, 2 ** -8]
    xj, xt = jnp.asarray(x, dtype), torch.tensor(x).to(getattr(torch, dtype))
    for got, want in ((F.avg_pool2d(xj, 3, 1, 1), TF.avg_pool2d(xt, 3, 1, 1)),
                      (F.avg_pool1d(xj[0], 4), TF.avg_pool1d(xt[0], 4)),
                      (F.lp_pool2d(xj, 2, 3), TF.lp_pool2d(xt, 2, 3))):
        np.testing.assert_array_equal(np.asarray(got, np.float32), want.float().numpy())


def test_unpool_full_output_size_in_channels_last_mode():
    """In channels-last mode a full output_size (``x.shape``, ``(N, H, W, C)``) names the spatial
    sizes at ``[1:-1]``; it was read as ``(W, C)``."""
    x = np.random.default_rng(5).standard_normal((2, 5, 7, 3))
    with config.memory_format("channels_last"):
        v, i = F.max_pool2d(x, 2, return_indices=True)
        full = F.max_unpool2d(v, i, 2, output_size=x.shape)
        close(full, F.max_unpool2d(v, i, 2, output_size=x.shape[1:3]))
        close(nn.MaxUnpool2d(2).apply({}, v, i, output_size=x.shape), full)
    assert full.shape == x.shape


@pytest.mark.parametrize("dtype", [jnp.bool_, jnp.complex64])
def test_bool_and_complex_inputs_raise_naming_the_function(dtype):
    x = jnp.zeros((1, 2, 4, 4), dtype)
    for name, call in (("max_pool2d", lambda: F.max_pool2d(x, 2)), ("avg_pool2d", lambda: F.avg_pool2d(x, 2)),
                       ("adaptive_max_pool2d", lambda: F.adaptive_max_pool2d(x, 2)),
                       ("adaptive_avg_pool2d", lambda: F.adaptive_avg_pool2d(x, 3))):
        with pytest.raises(TypeError, match=f"{name}: expected a real"):
            call()
