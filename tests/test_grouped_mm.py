"""F.grouped_mm against a per-group NumPy loop (float64, values and gradients) and
torch's CPU kernel (float32 forward: torch 2.13 has no CPU backward for it)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from jaxlayers import functional as F
from oracle import close, to_torch

G = 3


def _spans(offs):
    starts = np.concatenate([[0], offs[:-1]])
    return list(zip(starts, offs))


def _numpy_grouped_mm(a, b, offs):
    """The four forms, one group at a time."""
    if offs is None:
        return np.stack([a[g] @ b[g] for g in range(a.shape[0])])
    if a.ndim == 2 and b.ndim == 3:
        out = np.zeros((a.shape[0], b.shape[2]))
        for g, (s, e) in enumerate(_spans(offs)):
            out[s:e] = a[s:e] @ b[g]
        return out
    if a.ndim == 3:
        out = np.zeros((a.shape[1], b.shape[1]))
        for g, (s, e) in enumerate(_spans(offs)):
            out[:, s:e] = a[g] @ b[:, s:e]
        return out
    return np.stack([a[:, s:e] @ b[s:e] for s, e in _spans(offs)])


# (mat_a shape, mat_b shape, offs): each form, with an empty group and a tail past offs[-1]
FORMS = {
    "rows": ((10, 4), (G, 4, 8), [2, 2, 9]),
    "cols": ((G, 4, 8), (8, 12), [4, 4, 10]),
    "k": ((4, 12), (12, 8), [0, 8, 11]),
    "batched": ((G, 4, 8), (G, 8, 4), None),
}
_JITTED = {}


def _fn(form):
    if form not in _JITTED:
        _JITTED[form] = jax.jit(lambda a, b, offs: F.grouped_mm(a, b, offs=offs))
    return _JITTED[form]


@pytest.mark.parametrize("form", sorted(FORMS))
def test_values_and_gradients_vs_numpy(form):
    sa, sb, offs = FORMS[form]
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=sa), rng.normal(size=sb)
    o = None if offs is None else np.array(offs, np.int32)
    expected = _numpy_grouped_mm(a, b, o)
    out, vjp = jax.vjp(lambda a, b: _fn(form)(a, b, o), jnp.asarray(a), jnp.asarray(b))
    close(out, expected)
    # gradient of sum(ct * out): by linearity the product of ct with the other operand, per group
    ct = rng.normal(size=expected.shape)
    ga, gb = vjp(jnp.asarray(ct))
    eps_a = np.zeros_like(a)
    num_ga = np.zeros_like(a)
    for idx in np.ndindex(a.shape):  # exact for a bilinear map: one unit perturbation per entry
        eps_a[idx] = 1.0
        num_ga[idx] = np.sum(ct * _numpy_grouped_mm(eps_a, b, o))
        eps_a[idx] = 0.0
    num_gb = np.zeros_like(b)
    eps_b = np.zeros_like(b)
    for idx in np.ndindex(b.shape):
        eps_b[idx] = 1.0
        num_gb[idx] = np.sum(ct * _numpy_grouped_mm(a, eps_b, o))
        eps_b[idx] = 0.0
    close(ga, num_ga)
    close(gb, num_gb)


@pytest.mark.parametrize("form", sorted(FORMS))
def test_forward_vs_torch_float32(form):
    sa, sb, offs = FORMS[form]
    rng = np.random.default_rng(1)
    a, b = rng.normal(size=sa).astype(np.float32), rng.normal(size=sb).astype(np.float32)
    o = None if offs is None else np.array(offs, np.int32)
    expected = torch.nn.functional.grouped_mm(to_torch(a), to_torch(b), offs=to_torch(o)).numpy()
    out = np.asarray(F.grouped_mm(a, b, offs=o))
    if form in ("rows", "cols"):  # torch leaves the part past offs[-1] unwritten; here it is zero
        tail = slice(offs[-1], None)
        keep = (tail, slice(None)) if form == "rows" else (slice(None), tail)
        assert not out[keep].any()
        out, expected = np.delete(out, np.s_[offs[-1]:], axis=0 if form == "rows" else 1), \
            np.delete(expected, np.s_[offs[-1]:], axis=0 if form == "rows" else 1)
    close(out, expected, rtol=1e-5, atol=1e-5)


@settings(max_examples=15, deadline=None)
@given(cuts=st.lists(st.integers(0, 10), min_size=G, max_size=G), seed=st.integers(0, 2**16))
def test_random_offsets_under_jit_vs_numpy(cuts, seed):
    # traced offsets (no value checks): the masks follow any non-decreasing offs, one compile
    offs = np.sort(np.array(cuts, np.int32))
    rng = np.random.default_rng(seed)
    a, b = rng.normal(size=(10, 4)), rng.normal(size=(G, 4, 8))
    close(_fn("rows")(a, b, offs), _numpy_grouped_mm(a, b, offs))


def test_out_dtype_and_promotion():
    a, b = np.ones((4, 2), np.float32), np.ones((2, 2, 3), np.float32)
    offs = np.array([1, 4])
    assert F.grouped_mm(a.astype(jnp.bfloat16), b.astype(jnp.bfloat16), offs=offs, out_dtype=jnp.float32).dtype == jnp.float32
    assert F.grouped_mm(a, b.astype(np.float64), offs=offs).dtype == jnp.result_type(np.float32, np.float64)


@pytest.mark.parametrize(
    "call,exc,match",
    [
        (lambda: F.grouped_mm(np.ones((4, 2)), np.ones((2, 2, 3))), ValueError, r"grouped_mm: offs is required"),
        (lambda: F.grouped_mm(np.ones((2, 4, 2)), np.ones((2, 2, 3)), offs=np.array([1, 2])), ValueError,
         r"offs is required when an operand is 2-D and must be None when both are 3-D"),
        (lambda: F.grouped_mm(np.ones((4, 2)), np.ones((2, 3, 3)), offs=np.array([1, 4])), ValueError,
         r"grouped_mm: contraction dimension of mat_a \(shape \(4, 2\), last dim\) and mat_b \(shape \(2, 3, 3\)"),
        (lambda: F.grouped_mm(np.ones((4, 2)), np.ones((2, 2, 3)), offs=np.array([1, 2, 4])), ValueError,
         r"grouped_mm: offs has 3 entries but the 3-D operand has 2 groups"),
        (lambda: F.grouped_mm(np.ones((4, 2)), np.ones((2, 2, 3)), offs=np.array([3, 1])), ValueError,
         r"grouped_mm: offs must be non-negative and non-decreasing, got \[3, 1\]"),
        (lambda: F.grouped_mm(np.ones((4, 2)), np.ones((2, 2, 3)), offs=np.array([1, 5])), ValueError,
         r"grouped_mm: offs\[-1\]=5 is past the end of the grouped dimension \(rows of mat_a of size 4\)"),
        (lambda: F.grouped_mm(np.ones((4, 2)), np.ones((2, 2, 3)), offs=np.array([1.0, 4.0])), ValueError,
         r"grouped_mm: offs must be a 1-D integer array"),
        (lambda: F.grouped_mm(np.ones((2, 4, 2)), np.ones((3, 2, 3))), ValueError, r"same number of groups"),
        (lambda: F.grouped_mm(np.ones(4), np.ones((2, 4, 3)), offs=np.array([1, 2])), ValueError, r"2-D or 3-D"),
        (lambda: F.grouped_mm(np.ones((4, 2), np.int32), np.ones((2, 2, 3)), offs=np.array([1, 4])), TypeError,
         r"grouped_mm: mat_a must be a floating-point array, got dtype int32"),
        (lambda: F.grouped_mm(np.ones((4, 2)), np.ones((2, 2, 3)), offs=np.array([1, 4]), bias=np.ones(3)),
         NotImplementedError, r"grouped_mm: bias is not supported"),
    ],
)
def test_errors(call, exc, match):
    with pytest.raises(exc, match=match):
        call()
