"""jaxlayers.ops against torch (float64): shape ops, reductions, mm/bmm/matmul."""

import functools
import warnings

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from jaxlayers import ops
from jaxlayers._utils import index_dtype
from oracle import check_grads_through_hessian, close, to_numpy

RTOL, ATOL = 1e-10, 1e-12


t2n = to_numpy


_close = functools.partial(close, rtol=RTOL, atol=ATOL)


def _torch_leaves(t):
    if isinstance(t, torch.Tensor):
        return [t]
    return [leaf for v in t for leaf in _torch_leaves(v)]


def _many(pairs, *arrays, grad=True):
    """Check several (jaxlayers_fn, torch_fn) pairs on the same inputs with ONE compile."""
    _check_vs_torch(lambda *a: tuple(j(*a) for j, _ in pairs), lambda *a: tuple(t(*a) for _, t in pairs),
                    *arrays, grad=grad)


def _check_vs_torch(jfn, tfn, *arrays, grad=True, seed=0):
    """Outputs (tree of arrays) and VJP w.r.t. every float input, jaxlayers vs torch.

    The jaxlayers side runs as ONE jitted function (outputs and gradients together):
    one compile per case is much cheaper than op-by-op dispatch.
    """
    ts = [torch.from_numpy(np.asarray(a)).requires_grad_(grad) for a in arrays]
    yt = tfn(*ts)
    yts = _torch_leaves(yt)
    rng = np.random.default_rng(seed)
    diff = [grad and b.requires_grad for b in yts]  # integer outputs (indices) carry no gradient
    cots = [rng.standard_normal(b.shape) if d else None for b, d in zip(yts, diff)]

    def loss(*a):
        y = jfn(*a)
        return sum((jnp.sum(o * c) for o, c in zip(jax.tree.leaves(y), cots) if c is not None), 0.0), y

    if grad:
        (_, y), gs = jax.jit(jax.value_and_grad(loss, argnums=tuple(range(len(arrays))), has_aux=True))(*arrays)
    else:
        y = jax.jit(jfn)(*arrays)
    ys = jax.tree.leaves(y)
    assert len(ys) == len(yts)
    for a, b in zip(ys, yts):
        assert tuple(a.shape) == tuple(b.shape), (a.shape, b.shape)
        _close(a, t2n(b))
    if grad:
        torch.autograd.backward([b for b, d in zip(yts, diff) if d], [torch.from_numpy(c) for c in cots if c is not None])
        for g, t in zip(gs, ts):
            _close(g, torch.zeros_like(t) if t.grad is None else t.grad)
    return y


X = np.random.default_rng(0).standard_normal((2, 3, 4))


# ---------------------------------------------------------------------------------- shape ops


def test_split():
    cases = [(2, 0), (2, 2), (3, -1), ([1, 2], 1), ([1, 0, 3], 2), ((4,), 2), (5, 1)]
    _many([(lambda x, a=a, d=d: ops.split(x, a, d), lambda x, a=a, d=d: torch.split(x, a, d)) for a, d in cases], X)


@pytest.mark.parametrize("n", [6, 5, 1, 0])
def test_chunk(n):
    x = np.arange(float(n))
    _many([(lambda x, c=c: ops.chunk(x, c, 0), lambda x, c=c: torch.chunk(x, c, 0)) for c in (1, 2, 3, 4, 6)], x)


def test_chunk_sizes_are_torchs():
    assert [c.shape[0] for c in ops.chunk(jnp.arange(6), 4)] == [2, 2, 2]
    assert [c.shape[0] for c in ops.chunk(jnp.arange(10), 4)] == [3, 3, 3, 1]


@pytest.mark.parametrize("shape", [(1, 3, 1), (), (1,)])
def test_squeeze(shape):
    x = np.random.default_rng(1).standard_normal(shape)
    dims = [0, -1] + ([(0, -1), 1, (1, 2), (0, 1, 2)] if len(shape) == 3 else [])
    pairs = [(lambda x: ops.squeeze(x), lambda x: torch.squeeze(x))]
    pairs += [(lambda x, d=d: ops.squeeze(x, d), lambda x, d=d: torch.squeeze(x, d)) for d in dims]
    _many(pairs, x)


def test_unsqueeze_flatten_unflatten():
    pairs = [(lambda x, d=d: ops.unsqueeze(x, d), lambda x, d=d: torch.unsqueeze(x, d)) for d in (0, 1, 3, -1, -4)]
    pairs += [(lambda x, s=s, e=e: ops.flatten(x, s, e), lambda x, s=s, e=e: torch.flatten(x, s, e))
              for s, e in [(0, -1), (1, 2), (0, 1), (-2, -1), (2, 2)]]
    pairs += [(lambda x, d=d, z=z: ops.unflatten(x, d, z), lambda x, d=d, z=z: torch.unflatten(x, d, z))
              for d, z in [(1, (3, 1)), (2, (2, -1)), (-1, (2, 2)), (0, (1, 2))]]
    _many(pairs, X)


def test_flatten_0d():
    _check_vs_torch(lambda x: ops.flatten(x), lambda x: torch.flatten(x), np.array(3.0))


@pytest.mark.parametrize("dim,sizes", [(1, (3, 1)), (2, (2, -1)), (-1, (2, 2)), (0, (1, 2))])
def test_unflatten(dim, sizes):
    _check_vs_torch(lambda x: ops.unflatten(x, dim, sizes), lambda x: torch.unflatten(x, dim, sizes), X)


@pytest.mark.parametrize("shape,sizes", [((3, 1), [(3, 4), (-1, 4), (2, 3, 4), (2, -1, -1)]), ((1,), [(5,)]),
                                         ((), [(2, 3)]), ((2, 1, 1), [(2, 0, 3)])])
def test_expand(shape, sizes):
    x = np.random.default_rng(2).standard_normal(shape)
    pairs = [(lambda x, z=z: ops.expand(x, *z), lambda x, z=z: x.expand(*z)) for z in sizes]
    pairs += [(lambda x, z=z: ops.expand(x, z), lambda x, z=z: x.expand(z)) for z in sizes]
    _many(pairs, x)


def test_view_reshape_permute_transpose():
    shapes = [(6, 4), (-1, 4), (24,), (2, -1, 3), (-1,), (4, 3, 2, 1)]
    pairs = [(lambda x, z=z: ops.view(x, *z), lambda x, z=z: x.view(*z)) for z in shapes]
    pairs += [(lambda x, z=z: ops.reshape(x, z), lambda x, z=z: torch.reshape(x, z)) for z in shapes]
    perms = [(2, 0, 1), (0, 1, 2), (-1, -3, -2)]
    pairs += [(lambda x, p=p: ops.permute(x, *p), lambda x, p=p: x.permute(*p)) for p in perms]
    pairs += [(lambda x, p=p: ops.permute(x, p), lambda x, p=p: torch.permute(x, p)) for p in perms]
    pairs += [(lambda x, a=a, b=b: ops.transpose(x, a, b), lambda x, a=a, b=b: torch.transpose(x, a, b))
              for a, b in [(0, 1), (0, 2), (-1, 1), (1, 1)]]
    _many(pairs, X)


def test_cat_stack():
    rng = np.random.default_rng(4)
    a, b = rng.standard_normal((2, 3)), rng.standard_normal((2, 3))
    pairs = []
    for d in (0, 1, -1):
        pairs += [(lambda a, b, d=d: ops.cat([a, b], d), lambda a, b, d=d: torch.cat([a, b], d)),
                  (lambda a, b, d=d: ops.concat((a, b), d), lambda a, b, d=d: torch.concat((a, b), d)),
                  (lambda a, b, d=d: ops.stack([a, b], d), lambda a, b, d=d: torch.stack([a, b], d))]
    pairs += [(lambda a, b, d=d: ops.stack([a, b], d), lambda a, b, d=d: torch.stack([a, b], d)) for d in (2, -3)]
    pairs += [(lambda a, b: ops.cat([a, b[:, :1]], 1), lambda a, b: torch.cat([a, b[:, :1]], 1))]
    _many(pairs, a, b)


def test_cat_legacy_empty():
    a, e = np.random.default_rng(5).standard_normal((2, 3)), np.zeros((0,))
    _check_vs_torch(lambda a, e: ops.cat([a, e], 1), lambda a, e: torch.cat([a, e], 1), a, e, grad=False)
    _check_vs_torch(lambda e: ops.cat([e, e]), lambda e: torch.cat([e, e]), e, grad=False)


def test_narrow_repeat():
    pairs = [(lambda x, a=a: ops.narrow(x, *a), lambda x, a=a: torch.narrow(x, *a))
             for a in [(0, 0, 1), (1, 1, 2), (2, -2, 2), (-1, 4, 0), (2, -4, 4)]]
    reps = [(1, 1, 1), (2, 1, 3), (2, 2, 1, 2), (1, 0, 1)]
    pairs += [(lambda x, r=r: ops.repeat(x, *r), lambda x, r=r: x.repeat(*r)) for r in reps]
    pairs += [(lambda x, r=r: ops.repeat(x, r), lambda x, r=r: x.repeat(r)) for r in reps]
    _many(pairs, X)


@pytest.mark.parametrize("dim,index_shape", [(0, (2, 3, 4)), (1, (2, 5, 4)), (-1, (1, 2, 6)), (2, (2, 3, 0))])
def test_gather_matches_torch(dim, index_shape):
    """torch.gather (DQN's ``q.gather(1, actions)``): the index may be smaller than the input in the other
    dims, and larger along ``dim``; values and the input's gradient as torch's."""
    n = X.shape[dim]
    index = np.random.default_rng(1).integers(0, n, index_shape)
    _check_vs_torch(lambda x: ops.gather(x, dim, index), lambda x: torch.gather(x, dim, torch.from_numpy(index)), X)
    check_grads_through_hessian(lambda x: ops.gather(x, dim, index), (X,))
    if dim % 3 and index_shape[0] == X.shape[0]:  # vmap over the batch: each example's dim is one lower
        close(jax.vmap(lambda x, i: ops.gather(x, dim % 3 - 1, i))(X, index), ops.gather(X, dim, index))
    close(ops.gather(jnp.array(3.0), 0, jnp.array(0)), torch.gather(torch.tensor(3.0), 0, torch.tensor(0)))


def test_gather_errors_as_torch():
    x = jnp.asarray(X)
    with pytest.raises(IndexError, match=r"gather\(\): index 4 is out of bounds for dimension 2 with size 4"):
        ops.gather(x, 2, np.full((1, 1, 1), 4))
    with pytest.raises(IndexError, match="index -1 is out of bounds"):  # torch does not wrap it
        ops.gather(x, 0, np.full((1, 1, 1), -1))
    with pytest.raises(ValueError, match=r"Size does not match at a dimension other than 0: index \(2, 4, 4\)"):
        ops.gather(x, 0, np.zeros((2, 4, 4), int))
    with pytest.raises(ValueError, match="same number of dimensions"):
        ops.gather(x, 0, np.zeros((2, 3), int))
    with pytest.raises(TypeError, match="Expected dtype int32/int64 for index, got float"):
        ops.gather(x, 0, np.zeros((1, 1, 1)))
    with pytest.raises(TypeError, match="got uint32"):  # unsigned indices had wrapped silently under jit
        ops.gather(x, 0, np.zeros((1, 1, 1), np.uint32))
    with pytest.raises(IndexError, match=f"index {2**32 + 1} is out of bounds"):  # checked before a cast to int32
        ops.gather(x, 1, np.full((1, 1, 1), 2**32 + 1, np.int64))
    close(ops.gather(jnp.arange(5.0), 0, np.int64(1)), torch.gather(torch.arange(5.0), 0, torch.tensor(1)))
    idx = torch.tensor([[[1]], [[2]]])  # torch tensors as they come in a port
    close(ops.gather(torch.from_numpy(X), 1, idx), torch.gather(torch.from_numpy(X), 1, idx))
    traced = jax.jit(lambda i: ops.gather(x, 1, i))(np.array([[[3]], [[-1]]]))  # unchecked: never wrapped
    assert np.isnan(np.asarray(traced)).all()


def test_repeat_is_tiling_not_jnp_repeat():
    np.testing.assert_array_equal(ops.repeat(jnp.array([1, 2]), 2), [1, 2, 1, 2])


# ---------------------------------------------------------------------------------- reductions


def test_sum_mean():
    pairs = [(ops.sum, torch.sum), (ops.mean, torch.mean)]
    for d in (0, -1, (0, 2), [1], ()):
        for k in (False, True):
            pairs += [(lambda x, d=d, k=k: ops.sum(x, d, k), lambda x, d=d, k=k: torch.sum(x, d, k)),
                      (lambda x, d=d, k=k: ops.mean(x, d, k), lambda x, d=d, k=k: torch.mean(x, d, k))]
    _many(pairs, X)


@pytest.mark.parametrize("dim", [None, 0, -1, (0, 2)])
def test_var_std(dim):
    pairs = []
    for unbiased, correction in [(True, None), (False, None), (None, 0), (None, 2), (None, 1.5)]:
        tkw = {"unbiased": unbiased} if correction is None else {"correction": correction}
        for k in (False, True):
            for op in ("var", "std"):
                pairs.append((lambda x, op=op, u=unbiased, c=correction, k=k: getattr(ops, op)(x, dim, u, k, correction=c),
                              lambda x, op=op, k=k, tkw=tkw: getattr(torch, op)(x, dim, keepdim=k, **tkw)))
    _many(pairs, X)


def test_reductions_where_a_review_found_them_wrong():
    """A NumPy integer dim of max/min reduces (it was taken as torch.max(input, other): elementwise);
    complex max/min, var with unbiased and correction, unflatten with an int size raise as torch."""
    x = np.array([[1.0, 5.0], [7.0, 2.0]])
    for op, d in (("max", np.int64(1)), ("min", np.int32(0))):
        values, indices = getattr(ops, op)(x, d)
        want = getattr(torch, op)(torch.tensor(x), int(d))
        _close(values, want.values.numpy())
        np.testing.assert_array_equal(indices, want.indices.numpy())
    with pytest.raises(TypeError, match=r"max\(\): complex input"):
        ops.max(np.array([1 + 5j, 2j]))
    with pytest.raises(TypeError, match=r"min\(\): complex input"):
        ops.min(np.array([[1 + 5j, 2j]]), 1)
    with pytest.raises(TypeError, match=r"var\(\): give unbiased or correction, not both"):
        ops.var(x, 0, False, correction=1)
    with pytest.raises(TypeError, match=r"unflatten: sizes must be a sequence of ints, got 4"):
        ops.unflatten(np.ones((2, 8)), 1, 4)


def test_std_gradient_is_zero_where_the_std_is():
    """torch's std_backward masks grad / (2 std) where std == 0 (sqrt's derivative would give inf * 0)."""
    x = np.array([[1.0, 1.0, 1.0], [1.0, 2.0, 4.0]])
    _check_vs_torch(lambda x: ops.std(x, 1), lambda x: torch.std(x, 1), x)
    _check_vs_torch(lambda x: ops.std(x[:1], correction=0), lambda x: torch.std(x[:1], correction=0), x)
    check_grads_through_hessian(lambda x: ops.std(x, 1), (jnp.asarray(x[1:] * [[1.0, -2.0, 0.5]]),))


def test_var_default_is_unbiased_and_degenerate_divisor():
    x = jnp.array([1.0, 2.0, 4.0])
    _close(ops.var(x), np.var(np.asarray(x), ddof=1))
    m = np.arange(6.0).reshape(2, 3)  # torch's legacy overload var(input, unbiased): every element
    for op in ("var", "std"):
        for unbiased in (False, True):
            _close(getattr(ops, op)(jnp.asarray(m), unbiased), getattr(torch, op)(torch.from_numpy(m), unbiased))
    one = torch.tensor([3.0])
    np.testing.assert_array_equal(np.isnan(ops.var(jnp.array([3.0]))), np.isnan(t2n(torch.var(one))))
    two = np.array([1.0, 2.0])
    np.testing.assert_array_equal(ops.var(two, correction=2), t2n(torch.var(torch.from_numpy(two), correction=2)))
    np.testing.assert_array_equal(ops.var(two, correction=3), t2n(torch.var(torch.from_numpy(two), correction=3)))


@pytest.mark.parametrize("op", ["var", "std"])
def test_var_std_gradients_where_n_is_at_most_the_correction(op):
    """torch's var_backward: 2 (x - mean) / (N - correction) with the divisor not clamped (finite
    gradients for a negative one), and over all dims inf, or NaN where x equals the mean; std's
    gradient through it (0 where the std is infinite and the divisor negative)."""
    x = np.array([[1.0, 2.0, 4.0], [3.0, 3.0, 3.0]])
    for dim in (1, None):
        for c in (3, 5):
            got = jax.grad(lambda x: jnp.sum(getattr(ops, op)(x, dim, correction=c)))(jnp.asarray(x))
            xt = torch.tensor(x, requires_grad=True)
            yt = getattr(torch, op)(xt, correction=c) if dim is None else getattr(torch, op)(xt, dim, correction=c)
            want = t2n(torch.autograd.grad(yt.sum(), xt)[0])
            np.testing.assert_allclose(np.asarray(got), want, rtol=1e-12, err_msg=f"{op} dim={dim} c={c}")


@pytest.mark.parametrize("op", ["var", "std"])
def test_var_std_half_precision_rounds_once_as_torch(op):
    """torch computes a bfloat16/float16 variance (and its sqrt) in float32 and rounds once."""
    rng = np.random.default_rng(3)
    x = rng.standard_normal((64, 5)) * rng.uniform(0.1, 20, (64, 1))
    for dtype, tdtype in [(jnp.bfloat16, torch.bfloat16), (jnp.float16, torch.float16)]:
        got = getattr(ops, op)(jnp.asarray(x, dtype), 1)
        assert got.dtype == dtype
        want = getattr(torch, op)(torch.tensor(x).to(tdtype), 1).float().numpy()
        np.testing.assert_array_equal(np.asarray(got, np.float32), want)


@pytest.mark.parametrize("op", ["max", "min"])
def test_max_min_dim(op):
    jf, tf = getattr(ops, op), getattr(torch, op)
    cases = [(0, False), (1, True), (-1, False), (2, True)]
    _many([(lambda x, d=d, k=k: jf(x, d, k), lambda x, d=d, k=k: tf(x, d, k)) for d, k in cases] + [(jf, tf)], X)
    res = jf(X, 1)
    assert type(res).__name__ == ("MaxResult" if op == "max" else "MinResult")
    assert res.values is res[0] and res.indices is res[1]
    assert res.indices.dtype == index_dtype() == jnp.int64  # x64 is on in the suite


@pytest.mark.parametrize("op", ["max", "min"])
def test_max_min_ties_first_occurrence_and_grads(op):
    x = np.array([[1.0, 5.0, 5.0, 0.0], [2.0, 2.0, 2.0, 2.0], [-1.0, -3.0, -3.0, -3.0]])
    if op == "min":
        x = -x
    jf, tf = getattr(ops, op), getattr(torch, op)
    res = _check_vs_torch(lambda x: jf(x, 1), lambda x: tf(x, 1), x)  # grads go to the one index, as torch
    np.testing.assert_array_equal(res.indices, [1, 0, 0])
    _check_vs_torch(lambda x: jf(x), lambda x: tf(x), x)  # global: gradient split evenly between ties


def test_max_min_nan_and_0d_and_elementwise():
    x = np.array([[1.0, np.nan, 3.0, np.nan]])
    for op in ("max", "min"):
        v, i = getattr(ops, op)(x, 1)
        tv, ti = getattr(torch, op)(torch.from_numpy(x), 1)
        np.testing.assert_array_equal(v, t2n(tv))
        np.testing.assert_array_equal(i, t2n(ti))
        np.testing.assert_array_equal(getattr(ops, op)(x), t2n(getattr(torch, op)(torch.from_numpy(x))))
        # the global reduction's gradient is split evenly over the NaNs (torch), not NaN everywhere
        _check_vs_torch(lambda x, op=op: getattr(ops, op)(x), lambda x, op=op: getattr(torch, op)(x), x)
    s = np.array(2.5)
    _check_vs_torch(lambda s: ops.max(s, 0), lambda s: torch.max(s, 0), s)
    a, b = np.array([1.0, 4.0]), np.array([3.0, 2.0])
    _check_vs_torch(lambda a, b: ops.max(a, b), torch.max, a, b)
    _check_vs_torch(lambda a, b: ops.min(a, b), torch.min, a, b)


def test_max_indices_int32_without_x64():
    with jax.enable_x64(False):
        res = ops.max(jnp.ones((2, 3), jnp.float32), 1)
        assert res.indices.dtype == jnp.int32
        assert index_dtype() == jnp.int32


# ---------------------------------------------------------------------------------- matmul


def test_matmul():
    rng = np.random.default_rng(6)
    cases = [((3,), (3,)), ((2, 3), (3,)), ((3,), (3, 4)), ((2, 3), (3, 4)), ((5, 2, 3), (3,)), ((3,), (5, 3, 4)),
             ((5, 2, 3), (3, 4)), ((2, 3), (5, 3, 4)), ((5, 1, 2, 3), (4, 3, 2)), ((1, 2, 3), (6, 3, 2))]
    arrays = [rng.standard_normal(s) for case in cases for s in case]
    pairs = [(lambda *a, i=i: ops.matmul(a[2 * i], a[2 * i + 1]), lambda *a, i=i: torch.matmul(a[2 * i], a[2 * i + 1]))
             for i in range(len(cases))]
    _many(pairs, *arrays)


def test_mm_bmm():
    rng = np.random.default_rng(7)
    a, b = rng.standard_normal((2, 3)), rng.standard_normal((3, 4))
    _check_vs_torch(ops.mm, torch.mm, a, b)
    a, b = rng.standard_normal((5, 2, 3)), rng.standard_normal((5, 3, 4))
    _check_vs_torch(ops.bmm, torch.bmm, a, b)


class OpsVariantsTest(chex.TestCase):
    @chex.variants(with_jit=True, without_jit=True)
    def test_ops_under_jit(self):
        rng = np.random.default_rng(8)
        x = rng.standard_normal((4, 6))
        xt = torch.from_numpy(x)
        f = self.variant(lambda x: (ops.split(x, 4, 1), ops.chunk(x, 3, 0), ops.squeeze(ops.unsqueeze(x, 0), 0),
                                    ops.max(x, 1), ops.var(x, 0, correction=0), ops.repeat(x, 2, 1),
                                    ops.matmul(x, x.T), ops.expand(x[:, :1], -1, 3)))
        got = f(x)
        want = (torch.split(xt, 4, 1), torch.chunk(xt, 3, 0), xt, torch.max(xt, 1), torch.var(xt, 0, correction=0),
                xt.repeat(2, 1), xt @ xt.T, xt[:, :1].expand(-1, 3))
        want = [t2n(t) for t in want]
        chex.assert_trees_all_close(jax.tree.leaves(got), jax.tree.leaves(want), rtol=RTOL, atol=ATOL)


def test_float32_jit_and_vmap():
    rng = np.random.default_rng(9)
    a, b = rng.standard_normal((4, 2, 3)).astype(np.float32), rng.standard_normal((4, 3, 5)).astype(np.float32)
    y = jax.jit(lambda a, b: ops.bmm(a, b, precision="highest"))(a, b)
    assert y.dtype == jnp.float32
    _close(y, t2n(torch.bmm(torch.from_numpy(a).double(), torch.from_numpy(b).double())), rtol=1e-5, atol=1e-5)
    y2 = jax.vmap(lambda a, b: ops.mm(a, b, precision="highest"))(a, b)
    _close(y2, y, rtol=1e-6, atol=1e-6)
    s = jax.jit(jax.vmap(lambda a: ops.std(a, 1)))(a)
    _close(s, t2n(torch.std(torch.from_numpy(a).double(), 2)), rtol=1e-5, atol=1e-5)


# ---------------------------------------------------------------------------------- hypothesis

shapes = st.lists(st.integers(0, 4), min_size=1, max_size=4).map(tuple)


@given(shape=shapes, data=st.data())
def test_hyp_split_chunk(shape, data):
    x = np.arange(float(np.prod(shape))).reshape(shape)
    xt = torch.from_numpy(x)
    dim = data.draw(st.integers(-len(shape), len(shape) - 1))
    n = shape[dim]
    size, chunks = data.draw(st.integers(1, 5)), data.draw(st.integers(1, 5))
    spec = jax.ShapeDtypeStruct(shape, jnp.float64)  # shape rules: no compile needed
    assert [a.shape for a in jax.eval_shape(lambda x: ops.split(x, size, dim), spec)] == \
        [tuple(t.shape) for t in torch.split(xt, size, dim)]
    assert [a.shape for a in jax.eval_shape(lambda x: ops.chunk(x, chunks, dim), spec)] == \
        [tuple(t.shape) for t in torch.chunk(xt, chunks, dim)]
    sections = data.draw(st.lists(st.integers(0, 3), min_size=1, max_size=4))
    assume(sum(sections) <= n)
    sections = sections + [n - sum(sections)]
    parts = jax.jit(lambda x: ops.split(x, sections, dim))(x)
    for p, t in zip(parts, torch.split(xt, sections, dim), strict=True):
        np.testing.assert_array_equal(p, t2n(t))


@settings(max_examples=15)
@given(shape=shapes, data=st.data())
def test_hyp_shape_ops(shape, data):
    x = np.arange(float(np.prod(shape))).reshape(shape)
    xt = torch.from_numpy(x)
    nd = len(shape)
    dims = tuple(data.draw(st.lists(st.integers(-nd, nd - 1), max_size=3, unique_by=lambda d: d % nd)))
    d = data.draw(st.integers(-nd - 1, nd))
    perm = data.draw(st.permutations(range(nd)))
    reps = data.draw(st.lists(st.integers(0, 3), min_size=nd, max_size=nd + 2))
    s, e = sorted(data.draw(st.lists(st.integers(0, nd - 1), min_size=2, max_size=2)))
    new = list(x.shape)
    new[data.draw(st.integers(0, nd - 1))] = -1
    if not x.size:
        new = list(x.shape)
    got = jax.jit(lambda x: (ops.squeeze(x, dims), ops.unsqueeze(x, d), ops.permute(x, *perm), ops.repeat(x, *reps),
                             ops.flatten(x, s, e), ops.view(x, new)))(x)
    want = (torch.squeeze(xt, dims), torch.unsqueeze(xt, d), xt.permute(*perm), xt.repeat(*reps),
            torch.flatten(xt, s, e), xt.view(new))
    for a, b in zip(got, want, strict=True):
        assert a.shape == tuple(b.shape)
        np.testing.assert_array_equal(a, t2n(b))


@settings(max_examples=10)
@given(shape=st.lists(st.integers(1, 4), min_size=1, max_size=3).map(tuple), data=st.data())
def test_hyp_reductions(shape, data):
    x = np.random.default_rng(sum(shape)).standard_normal(shape)
    xt = torch.from_numpy(x)
    nd = len(shape)
    dims = tuple(data.draw(st.lists(st.integers(0, nd - 1), min_size=1, max_size=nd, unique=True)))
    keep = data.draw(st.booleans())
    corr = data.draw(st.sampled_from([0, 1, 2]))
    d = data.draw(st.integers(-nd, nd - 1))
    got = jax.jit(lambda x: (ops.sum(x, dims, keep), ops.mean(x, dims, keep), ops.var(x, dims, keepdim=keep, correction=corr),
                             *ops.max(x, d, keep), *ops.min(x, d, keep)))(x)
    want = (torch.sum(xt, dims, keep), torch.mean(xt, dims, keep), torch.var(xt, dims, keepdim=keep, correction=corr),
            *torch.max(xt, d, keep), *torch.min(xt, d, keep))
    for a, b in zip(got, want, strict=True):
        assert a.shape == tuple(b.shape)
        np.testing.assert_allclose(a, t2n(b), rtol=RTOL, atol=ATOL)


@settings(max_examples=15)
@given(data=st.data())
def test_hyp_matmul(data):
    nb_a, nb_b = data.draw(st.integers(0, 2)), data.draw(st.integers(0, 2))
    bcast = data.draw(st.lists(st.integers(1, 3), min_size=2, max_size=2))
    n, k, m = (data.draw(st.integers(1, 3)) for _ in range(3))
    one_a, one_b = data.draw(st.booleans()), data.draw(st.booleans())
    ba = [data.draw(st.sampled_from([1, s])) for s in bcast[2 - nb_a:]]
    bb = [data.draw(st.sampled_from([1, s])) for s in bcast[2 - nb_b:]]
    sa = (k,) if one_a else (*ba, n, k)
    sb = (k,) if one_b else (*bb, k, m)
    rng = np.random.default_rng(n * 9 + k * 3 + m)
    a, b = rng.standard_normal(sa), rng.standard_normal(sb)
    want = t2n(torch.matmul(torch.from_numpy(a), torch.from_numpy(b)))
    got = jax.jit(ops.matmul)(a, b)
    assert got.shape == want.shape
    _close(got, want)


# ---------------------------------------------------------------------------------- errors


def test_shape_op_errors():
    x = jnp.ones((2, 3, 4))
    with pytest.raises(IndexError, match=r"split: dimension out of range \(expected to be in range of \[-3, 2\], but got 3\)"):
        ops.split(x, 1, 3)
    with pytest.raises(ValueError, match=r"split_with_sizes expects split_sizes to sum exactly to 3 .* split_sizes=\[1, 1\]"):
        ops.split(x, [1, 1], 1)
    with pytest.raises(ValueError, match=r"split_with_sizes: split_sizes must be non-negative"):
        ops.split(x, [4, -1], 1)
    with pytest.raises(ValueError, match=r"split expects split_size be non-negative, but got split_size=-1"):
        ops.split(x, -1)
    with pytest.raises(ValueError, match=r"split_size can only be 0 if dimension size is 0"):
        ops.split(x, 0)
    with pytest.raises(ValueError, match=r"split: expected at least a 1-dimensional tensor"):
        ops.split(jnp.ones(()), 1)
    with pytest.raises(TypeError, match=r"split: split_size must be an int"):
        ops.split(x, 1.5)
    with pytest.raises(ValueError, match=r"chunk expects `chunks` to be greater than 0, got: 0"):
        ops.chunk(x, 0)
    with pytest.raises(ValueError, match=r"chunk expects at least a 1-dimensional tensor"):
        ops.chunk(jnp.ones(()), 2)
    with pytest.raises(IndexError, match=r"squeeze: dimension out of range"):
        ops.squeeze(x, 3)
    with pytest.raises(ValueError, match=r"squeeze: dim 0 appears multiple times"):
        ops.squeeze(x, (0, -3))
    with pytest.raises(IndexError, match=r"unsqueeze: dimension out of range \(expected to be in range of \[-4, 3\], but got 4\)"):
        ops.unsqueeze(x, 4)
    with pytest.raises(TypeError, match=r"unsqueeze: dim must be an int"):
        ops.unsqueeze(x, 1.0)
    with pytest.raises(ValueError, match=r"flatten: start_dim \(2\) cannot come after end_dim \(1\)"):
        ops.flatten(x, 2, 1)
    with pytest.raises(ValueError, match=r"unflatten: provided sizes \(2, 2\) don't multiply up to the size of dim 1 \(3\)"):
        ops.unflatten(x, 1, (2, 2))
    with pytest.raises(ValueError, match=r"unflatten: only one dimension can be inferred"):
        ops.unflatten(x, 2, (-1, -1))
    with pytest.raises(ValueError, match=r"unflatten: sizes \(3, -1\) don't fit dim 2"):
        ops.unflatten(x, 2, (3, -1))
    with pytest.raises(ValueError, match=r"unflatten: cannot unflatten a 0-d tensor"):
        ops.unflatten(jnp.ones(()), 0, (1,))


def test_expand_view_permute_errors():
    x = jnp.ones((3, 1))
    with pytest.raises(ValueError, match=r"expand: the number of sizes provided \(1\) must be greater or equal to the number of dimensions in the tensor \(2\)"):
        ops.expand(x, 4)
    with pytest.raises(ValueError, match=r"expand: the expanded size of the tensor \(4\) must match the existing size \(3\) at non-singleton dimension 0"):
        ops.expand(x, 4, 2)
    with pytest.raises(ValueError, match=r"expand: the expanded size of the tensor \(-1\) isn't allowed in a leading, non-existing dimension 0"):
        ops.expand(x, -1, 3, 2)
    with pytest.raises(ValueError, match=r"expand: invalid size -2"):
        ops.expand(x, 3, -2)
    y = jnp.ones((2, 6))
    for op in ("view", "reshape"):
        with pytest.raises(ValueError, match=rf"{op}: only one dimension can be inferred"):
            getattr(ops, op)(y, -1, -1)
        with pytest.raises(ValueError, match=rf"{op}: shape '\[5, -1\]' is invalid for input of size 12"):
            getattr(ops, op)(y, 5, -1)
        with pytest.raises(ValueError, match=rf"{op}: shape '\[3, 5\]' is invalid for input of size 12"):
            getattr(ops, op)(y, (3, 5))
        with pytest.raises(ValueError, match=rf"{op}: invalid shape dimension -2"):
            getattr(ops, op)(y, -2, -6)
    with pytest.raises(ValueError, match=r"permute: .*input.dim\(\) = 2 is not equal to len\(dims\) = 3"):
        ops.permute(y, 0, 1, 2)
    with pytest.raises(ValueError, match=r"permute: duplicate dims are not allowed"):
        ops.permute(y, 1, -1)
    with pytest.raises(IndexError, match=r"permute: dimension out of range"):
        ops.permute(y, 0, 2)
    with pytest.raises(IndexError, match=r"transpose: dimension out of range \(expected to be in range of \[-2, 1\], but got 2\)"):
        ops.transpose(y, 0, 2)
    with pytest.raises(ValueError, match=r"repeat: number of dimensions of repeat dims \(1\) can not be smaller than number of dimensions of tensor \(2\)"):
        ops.repeat(y, 2)
    with pytest.raises(ValueError, match=r"repeat: trying to create tensor with negative dimension"):
        ops.repeat(y, 2, -1)


def test_cat_stack_narrow_errors():
    a, b = jnp.ones((2, 3)), jnp.ones((2, 4))
    with pytest.raises(ValueError, match=r"cat: expected a non-empty list of Tensors"):
        ops.cat([])
    with pytest.raises(TypeError, match=r"cat: expected a sequence of tensors, got a single array"):
        ops.cat(a)
    with pytest.raises(ValueError, match=r"cat: sizes of tensors must match except in dimension 0. Expected size 3 but got size 4 for tensor number 1"):
        ops.cat([a, b])
    with pytest.raises(ValueError, match=r"cat: tensors must have same number of dimensions: got 2 and 3"):
        ops.cat([a, jnp.ones((2, 3, 1))])
    with pytest.raises(ValueError, match=r"cat: zero-dimensional tensor \(at position 1\) cannot be concatenated"):
        ops.cat([a, jnp.ones(())])
    with pytest.raises(IndexError, match=r"cat: dimension out of range"):
        ops.cat([a, a], 2)
    with pytest.raises(ValueError, match=r"stack expects each tensor to be equal size, but got \[2, 3\] at entry 0 and \[2, 4\] at entry 1"):
        ops.stack([a, b])
    with pytest.raises(ValueError, match=r"stack: expected a non-empty list of Tensors"):
        ops.stack([])
    with pytest.raises(IndexError, match=r"stack: dimension out of range \(expected to be in range of \[-3, 2\], but got 3\)"):
        ops.stack([a, a], 3)
    with pytest.raises(ValueError, match=r"narrow\(\) cannot be applied to a 0-dim tensor"):
        ops.narrow(jnp.ones(()), 0, 0, 1)
    with pytest.raises(IndexError, match=r"narrow: start out of range \(expected to be in range of \[-3, 3\], but got 4\)"):
        ops.narrow(a, 1, 4, 0)
    with pytest.raises(ValueError, match=r"narrow: start \(2\) \+ length \(2\) exceeds dimension size \(3\)"):
        ops.narrow(a, 1, 2, 2)
    with pytest.raises(ValueError, match=r"narrow\(\): length must be non-negative"):
        ops.narrow(a, 1, 0, -1)


def test_reduction_errors():
    x = jnp.ones((2, 3))
    with pytest.raises(TypeError, match=r"mean\(\): could not infer output dtype"):
        ops.mean(jnp.ones((2, 3), jnp.int32))
    with pytest.raises(ValueError, match=r"sum: dim 1 appears multiple times"):
        ops.sum(x, (1, -1))
    with pytest.raises(IndexError, match=r"mean: dimension out of range"):
        ops.mean(x, 2)
    with pytest.raises(TypeError, match=r"var\(\): input dtype should be floating point"):
        ops.var(jnp.ones(3, jnp.int32))
    with pytest.raises(TypeError, match=r"std\(\): unbiased must be a bool"):
        ops.std(x, 0, 1)
    with pytest.raises(IndexError, match=r"max: dimension out of range"):
        ops.max(x, 2)
    with pytest.raises(TypeError, match=r"min\(\): dim must be an int"):
        ops.min(x, (0, 1))
    with pytest.raises(ValueError, match=r"max\(\): Expected reduction dim 1 to have non-zero size"):
        ops.max(jnp.ones((2, 0)), 1)
    with pytest.raises(ValueError, match=r"min\(\): Expected reduction dim to be specified for input.numel\(\) == 0"):
        ops.min(jnp.ones((2, 0)))


def test_matmul_errors():
    with pytest.raises(ValueError, match=r"mm: self must be a matrix, got shape \(3,\)"):
        ops.mm(jnp.ones(3), jnp.ones((3, 2)))
    with pytest.raises(ValueError, match=r"mm: mat2 must be a matrix, got shape \(2, 3, 2\)"):
        ops.mm(jnp.ones((2, 3)), jnp.ones((2, 3, 2)))
    with pytest.raises(ValueError, match=r"mm: mat1 and mat2 shapes cannot be multiplied \(2x3 and 4x5\)"):
        ops.mm(jnp.ones((2, 3)), jnp.ones((4, 5)))
    with pytest.raises(ValueError, match=r"bmm: batch1 must be a 3D tensor"):
        ops.bmm(jnp.ones((2, 3)), jnp.ones((2, 3, 2)))
    with pytest.raises(ValueError, match=r"bmm: batch2 must be a 3D tensor"):
        ops.bmm(jnp.ones((2, 2, 3)), jnp.ones((3, 2)))
    with pytest.raises(ValueError, match=r"bmm: expected size for first two dimensions of batch2 tensor to be: \[2, 3\] but got: \[3, 3\]"):
        ops.bmm(jnp.ones((2, 2, 3)), jnp.ones((3, 3, 2)))
    with pytest.raises(ValueError, match=r"matmul: both arguments to matmul need to be at least 1D, but they are 0D and 2D"):
        ops.matmul(jnp.ones(()), jnp.ones((2, 2)))
    with pytest.raises(ValueError, match=r"matmul: shapes \(2, 3\) and \(2,\) cannot be multiplied"):
        ops.matmul(jnp.ones((2, 3)), jnp.ones(2))
    with pytest.raises(ValueError, match=r"matmul: the batch dims of \(2, 2, 3\) and \(3, 3, 2\) do not broadcast"):
        ops.matmul(jnp.ones((2, 2, 3)), jnp.ones((3, 3, 2)))


@pytest.fixture(autouse=True)
def _quiet_torch_dof_warning():
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*degrees of freedom is <= 0")
        yield
