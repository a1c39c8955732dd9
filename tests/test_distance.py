"""cosine_similarity, pairwise_distance, pdist, normalize, one_hot, gumbel_softmax and
CosineSimilarity / PairwiseDistance against torch (float64) and NumPy."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
import torch.nn.functional as TF
from jax.test_util import check_grads
from oracle import close, jax_fwd_bwd, torch_fwd_bwd

from jaxlayers import functional as F
from jaxlayers import nn
from jaxlayers._utils import index_dtype

RNG = np.random.default_rng(0)
A = RNG.normal(size=(4, 5))
B = RNG.normal(size=(4, 5))
TINY = np.where(np.arange(4)[:, None] == 1, 1e-10, A)  # one row with a norm below eps
INT = np.round(RNG.normal(size=(4, 5)) * 1.5)  # ties and zeros
INT[2] = INT[0]  # a zero distance


def _parity_many(cases):
    """``[(jfn, tfn, arrays), ...]``: outputs and gradients w.r.t. every array, one jitted call."""
    cts, want = [], []
    for _, tfn, arrays in cases:
        cts.append(RNG.normal(size=tuple(tfn(*[torch.from_numpy(a) for a in arrays]).shape)))
        want.append(torch_fwd_bwd(tfn, cts[-1], *arrays))

    @jax.jit
    def run(arrays, cts):
        return [jax_fwd_bwd(c[0], ct, *a) for c, a, ct in zip(cases, arrays, cts)]

    got = run([[jnp.asarray(a) for a in c[2]] for c in cases], cts)
    for i, ((j_out, j_g), (t_out, t_g)) in enumerate(zip(got, want)):
        close(j_out, t_out, err_msg=f"output of case {i}")
        for k, (g, t) in enumerate(zip(j_g, t_g)):
            close(g, np.zeros_like(g) if t is None else t, err_msg=f"gradient {k} of case {i}")


def test_cosine_similarity_matches_torch():
    _parity_many([
        (lambda a, b: F.cosine_similarity(a, b), lambda a, b: TF.cosine_similarity(a, b), (A, B)),
        (lambda a, b: F.cosine_similarity(a, b, dim=0), lambda a, b: TF.cosine_similarity(a, b, dim=0), (A, B)),
        (lambda a, b: F.cosine_similarity(a, b, dim=-1), lambda a, b: TF.cosine_similarity(a, b, dim=-1),
         (A, B[:1])),  # broadcasting
        (lambda a, b: F.cosine_similarity(a, b), lambda a, b: TF.cosine_similarity(a, b), (TINY, B)),
        (lambda a, b: F.cosine_similarity(a, b, eps=0.5), lambda a, b: TF.cosine_similarity(a, b, eps=0.5),
         (0.1 * A, B)),  # the clamp does not enter the gradient, as torch's no_grad clamp
        (lambda a, b: F.cosine_similarity(a, b), lambda a, b: TF.cosine_similarity(a, b),
         (np.zeros((2, 3)), B[:2, :3])),
    ])


P_VALUES = [0, 0.5, 1, 1.5, 2, 3, math.inf, -math.inf]


def test_pairwise_distance_matches_torch():
    cases = []
    for p in P_VALUES:
        cases.append((lambda a, b, p=p: F.pairwise_distance(a, b, p), lambda a, b, p=p: TF.pairwise_distance(a, b, p),
                      (A, B)))
        cases.append((lambda a, b, p=p: F.pairwise_distance(a, b, p, eps=0.0),
                      lambda a, b, p=p: TF.pairwise_distance(a, b, p, eps=0.0), (INT, INT[::-1].copy())))
    cases.append((lambda a, b: F.pairwise_distance(a, b, keepdim=True),
                  lambda a, b: TF.pairwise_distance(a, b, keepdim=True), (A, B[:1])))
    cases.append((lambda a, b: F.pairwise_distance(a, b), lambda a, b: TF.pairwise_distance(a, b), (A[0], B[0])))
    # 0-d inputs stay 0-d with keepdim
    cases.append((lambda a, b: F.pairwise_distance(a, b, keepdim=True),
                  lambda a, b: TF.pairwise_distance(a, b, keepdim=True), (np.array(A[0, 0]), np.array(B[0, 0]))))
    _parity_many(cases)


def test_pdist_and_normalize_match_torch():
    cases = []
    for p in P_VALUES:
        if p >= 0:
            cases.append((lambda a, p=p: F.pdist(a, p), lambda a, p=p: TF.pdist(a, p), (INT,)))
        cases.append((lambda a, p=p: F.normalize(a, p, dim=0), lambda a, p=p: TF.normalize(a, p, dim=0), (INT,)))
    cases += [
        (lambda a: F.pdist(a), lambda a: TF.pdist(a), (A,)),
        (lambda a: F.normalize(a), lambda a: TF.normalize(a), (TINY,)),  # norm below eps
        (lambda a: F.normalize(a, dim=-1, eps=2.0), lambda a: TF.normalize(a, dim=-1, eps=2.0), (A,)),
    ]
    _parity_many(cases)


def test_pdist_order_and_sizes():
    x = np.array([[0.0, 0.0], [3.0, 4.0], [0.0, 1.0]])
    close(F.pdist(x), [5.0, 1.0, np.hypot(3, 3)])
    assert F.pdist(np.zeros((1, 3))).shape == (0,)


def test_check_grads():
    # forward mode checks the custom JVP rule, reverse mode its transpose and second order
    check_grads(jax.jit(lambda a, b: F.cosine_similarity(a, b)), (A[:2, :3], B[:2, :3]), order=1, modes=("fwd",))
    check_grads(jax.jit(lambda a: F.pdist(a, 3.0)), (A[:3, :2],), order=2, modes=("rev",))
    for p in (1.0, math.inf):  # the full-matrix derivative of the reference
        check_grads(jax.jit(lambda a, p=p: F.pdist(a, p)), (A[:3, :2],), order=2, modes=("fwd", "rev"))


def test_modules_match_torch():
    tA, tB = torch.from_numpy(A), torch.from_numpy(B)
    close(nn.CosineSimilarity(dim=0, eps=1e-3).apply({}, A, B), torch.nn.CosineSimilarity(dim=0, eps=1e-3)(tA, tB))
    close(nn.PairwiseDistance(p=1.5, keepdim=True).apply({}, A, B),
          torch.nn.PairwiseDistance(p=1.5, keepdim=True)(tA, tB))


def test_one_hot():
    t = np.array([[0, 3], [1, 1]])
    y = F.one_hot(t)
    assert y.dtype == index_dtype()
    np.testing.assert_array_equal(y, TF.one_hot(torch.from_numpy(t)).numpy())
    np.testing.assert_array_equal(F.one_hot(t, 6), TF.one_hot(torch.from_numpy(t), 6).numpy())
    np.testing.assert_array_equal(F.one_hot(input=t, num_classes=6),  # torch's keyword (its docs say tensor)
                                  TF.one_hot(input=torch.from_numpy(t), num_classes=6).numpy())
    np.testing.assert_array_equal(jax.jit(lambda a: F.one_hot(a, 5))(t), TF.one_hot(torch.from_numpy(t), 5).numpy())
    with pytest.raises(ValueError, match="one_hot: num_classes=-1 .* pass num_classes explicitly"):
        jax.jit(F.one_hot)(t)


def test_gumbel_softmax_equals_numpy_formula():
    key = jax.random.key(3)
    logits = RNG.normal(size=(3, 4))
    g = np.asarray(jax.random.gumbel(key, logits.shape, jnp.float64))
    z = (logits + g) / 0.7
    soft = np.exp(z - z.max(0)) / np.exp(z - z.max(0)).sum(0)
    w = RNG.normal(size=(3, 4))

    @jax.jit
    def run(a):
        soft, hard = (F.gumbel_softmax(a, 0.7, h, dim=0, key=key) for h in (False, True))
        grads = [jax.grad(lambda b, h=h: jnp.sum(F.gumbel_softmax(b, 0.7, h, dim=0, key=key) * w))(a)
                 for h in (False, True)]
        return soft, hard, grads

    got_soft, hard, (gs, gh) = run(logits)
    close(got_soft, soft)
    np.testing.assert_array_equal(hard, np.eye(3)[soft.argmax(0)].T)
    close(gh, gs)  # straight-through: the hard sample's gradient is the soft sample's
    assert np.abs(np.asarray(gh)).max() > 0


def test_gumbel_softmax_argmax_frequencies_follow_softmax():
    logits = np.array([0.5, -1.0, 1.2, 0.0])
    n = 20000
    y = jax.jit(lambda k: F.gumbel_softmax(jnp.broadcast_to(logits, (n, 4)), hard=True, key=k))(jax.random.key(0))
    freq = np.asarray(y).mean(0)
    np.testing.assert_allclose(freq, np.exp(logits) / np.exp(logits).sum(), atol=0.015)


@pytest.mark.parametrize("call,exc,match", [
    (lambda: F.cosine_similarity(A, B[:3]), ValueError, r"cosine_similarity: x1 of shape \(4, 5\) and x2 of shape"),
    (lambda: F.cosine_similarity(A, B, dim=2), IndexError, "cosine_similarity: dim 2 out of range"),
    (lambda: F.pairwise_distance(A, B[:3]), ValueError, "pairwise_distance: x1 of shape"),
    (lambda: F.pairwise_distance(A, B, p="2"), TypeError, "pairwise_distance: p must be a number"),
    (lambda: F.pdist(A[None]), ValueError, r"pdist: expected 2-D input \(N, M\), got 3-D"),
    (lambda: F.pdist(A, -1), ValueError, "pdist: p must be non-negative"),
    (lambda: F.normalize(A, dim=3), IndexError, "normalize: dim 3 out of range"),
    (lambda: F.normalize(A, out=A), TypeError, "normalize: out= is not supported"),
    (lambda: F.one_hot(np.array([1, -1])), ValueError, "one_hot: class values must be non-negative"),
    (lambda: F.one_hot(np.array([1, 3]), 3), ValueError, "smaller than num_classes=3"),
    (lambda: F.one_hot(np.zeros((0,), np.int64)), ValueError, "empty tensor"),
    (lambda: F.one_hot(np.array([1, 2]), -2), ValueError, "num_classes must be -1 or non-negative"),
    (lambda: F.one_hot(np.array([1.0, 2.0])), TypeError, "one_hot: expected an integer tensor"),
    (lambda: F.gumbel_softmax(A), ValueError, "gumbel_softmax: a PRNG key is required"),
    (lambda: F.gumbel_softmax(A, dim=2, key=jax.random.key(0)), IndexError, "gumbel_softmax: dim 2"),
    (lambda: nn.CosineSimilarity(dim=5).apply({}, A, B), IndexError, "CosineSimilarity: dim 5"),
    (lambda: nn.PairwiseDistance().apply({}, A, B[:3]), ValueError, "PairwiseDistance: x1 of shape"),
    (lambda: F.cosine_similarity(A, B, eps=-1.0), ValueError, "cosine_similarity: eps must be non-negative"),
    (lambda: F.pairwise_distance(np.zeros((2, 0)), np.zeros((2, 0)), p=np.inf), ValueError,
     "pairwise_distance: the inf norm of an empty last dim"),
], ids=range(19))
def test_errors(call, exc, match):
    with pytest.raises(exc, match=match):
        call()


@pytest.mark.parametrize("p", [float("inf"), 1.0, 2.0, 0.5, 0.0])
def test_pdist_non_finite_rows_match_torch(p):
    """Values and gradients with NaN and infinite entries, NaNs where torch's: the distance matrix
    is one fused reduction; p = inf puts NaNs back (XLA:CPU's max reduction drops them) when the
    input holds a NaN or an infinity (inf - inf); p = 0 counts as torch's pdist, min(ceil(|d|), 1),
    NaN where a difference is.  The gradients of p = 1 and inf take the sign of a NaN difference as
    0 (the norms' rule, and the full matrix's diagonal needs it where a row holds an infinity) where
    torch's pdist kernels give NaN: there ours are finite, elsewhere torch's."""
    x = np.random.default_rng(4).normal(size=(16, 12))
    x[3, 7] = np.nan
    x[10, 2] = x[12, 2] = np.inf
    x[14, 5] = -np.inf
    g = np.random.default_rng(5).normal(size=120)
    got, grad = jax.jit(lambda a, g: jax_fwd_bwd(lambda a: F.pdist(a, p), g, a))(x, g)
    xt = torch.tensor(x, requires_grad=True)
    want = TF.pdist(xt, p)
    (want_grad,) = torch.autograd.grad(want, xt, torch.tensor(g))
    for k, (a, b) in enumerate(((got, want.detach().numpy()), (grad[0], want_grad.numpy()))):
        a = np.asarray(a)
        if k == 1 and p in (1.0, float("inf")):
            assert not np.isnan(a).any() and np.isnan(b).any()
        else:
            np.testing.assert_array_equal(np.isnan(a), np.isnan(b))
        close(np.where(np.isnan(b), 0, a), np.where(np.isnan(b), 0, b))


def test_pdist_gradient_stores_no_pair_differences():
    """Reverse mode keeps (N, N) matrices: no (N, N, M) or (N (N - 1) / 2, M) array of differences."""
    x = jax.ShapeDtypeStruct((64, 8), jnp.float32)
    text = jax.jit(jax.grad(lambda a: jnp.sum(jnp.sin(F.pdist(a))))).lower(x).compile().as_text()
    entry = text[text.index("ENTRY"):]
    assert "[64,64,8]" not in entry and "[2016,8]" not in entry, entry


def test_normalize_half_precision_computes_in_float32():
    """float16 normalize(p=1) of 2048-wide rows: its gradient's n**-2 (~4e-7) fell into float16's
    subnormals, 21x torch's error; computed in float32 it is closer to the float64 truth than torch's."""
    rng = np.random.default_rng(0)
    xh = jnp.asarray(rng.standard_normal((4, 2048)), jnp.float16)
    gh = jnp.asarray(rng.standard_normal((4, 2048)), jnp.float16)
    xd, gd = np.asarray(xh, np.float64), np.asarray(gh, np.float64)
    xt = torch.tensor(xd, requires_grad=True)
    truth = torch.autograd.grad(torch.nn.functional.normalize(xt, p=1), xt, torch.tensor(gd))[0].numpy()
    xt16 = torch.tensor(xd).half().requires_grad_()
    theirs = torch.autograd.grad(torch.nn.functional.normalize(xt16, p=1), xt16, torch.tensor(gd).half())[0]
    y, vjp = jax.vjp(lambda x: F.normalize(x, p=1), xh)
    ours = np.asarray(vjp(gh)[0], np.float64)
    assert y.dtype == jnp.float16
    err = lambda a: np.linalg.norm(a - truth) / np.linalg.norm(truth)  # noqa: E731
    assert err(ours) <= err(theirs.double().numpy())


@pytest.mark.parametrize("call", [lambda: F.cosine_similarity(jnp.arange(6).reshape(2, 3), jnp.ones((2, 3), int)),
                                  lambda: F.normalize(jnp.arange(3)), lambda: F.pdist(jnp.arange(6).reshape(3, 2))])
def test_integer_inputs_are_type_errors_as_torch(call):
    with pytest.raises(TypeError, match=r"(cosine_similarity|normalize|pdist): expected a floating-point input, got int"):
        call()


def test_cosine_similarity_promotes_an_integer_input_as_torch():
    a, b = np.array([[1, 2], [0, 3]]), np.array([[1.0, 0.0], [2.0, 2.0]])
    close(F.cosine_similarity(jnp.asarray(a), jnp.asarray(b)), TF.cosine_similarity(torch.tensor(a), torch.tensor(b)))


@pytest.mark.parametrize("fn", ["pairwise_distance", "cosine_similarity"])
def test_distance_half_precision_norms_in_float32(fn):
    """float16 squares overflow past 255 and underflow below 2.4e-4: pairwise_distance of [300, 300]
    was inf and cosine_similarity of a row of 1e-4 with itself inf; torch's norms accumulate in float32."""
    rows = np.array([[300.0, 300.0], [1e-4, 1e-4], [3.0, -4.0]])
    other = {"pairwise_distance": np.zeros_like(rows), "cosine_similarity": rows * [[1.0, 0.5]]}[fn]
    xt = torch.tensor(rows).half().requires_grad_()
    yt = getattr(TF, fn)(xt, torch.tensor(other).half())
    yt.sum().backward()
    y, vjp = jax.vjp(lambda x: getattr(F, fn)(x, jnp.asarray(other, jnp.float16)), jnp.asarray(rows, jnp.float16))
    assert y.dtype == jnp.float16 and bool(jnp.all(jnp.isfinite(y)))
    close(y, yt, rtol=2e-3, atol=1e-3)
    close(vjp(jnp.ones_like(y))[0], xt.grad, rtol=2e-3, atol=1e-3)


def test_pdist_half_precision_and_rows_without_coordinates():
    x = jnp.array([[300.0, 300.0], [0.0, 0.0], [3.0, 4.0]], jnp.float16)
    got = F.pdist(x)
    assert got.dtype == jnp.float16
    close(got, TF.pdist(torch.tensor(np.asarray(x, np.float64))), rtol=1e-3)  # torch's CPU kernel has no float16
    for p in (0.0, 1.0, 2.0, math.inf):
        close(F.pdist(jnp.zeros((3, 0)), p), TF.pdist(torch.zeros(3, 0, dtype=torch.float64), p))
