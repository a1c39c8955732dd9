"""Max/min reductions that keep torch's NaN propagation at real sizes.

XLA:CPU (jaxlib 0.10) drops NaNs in the max/min reductions it hands to its YNNPACK fusion
(arrays of a few thousand elements and more); ``jaxlayers._utils.nan_max``/``nan_min`` put them
back, and every max/min reduction of the library goes through them (adaptive max pooling,
the inf-norms of ``pairwise_distance`` and of ``clip_grad_norm_``, ``ops.max``/``ops.min`` over
all elements)."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
import torch.nn.functional as TF

from jaxlayers import functional as F
from jaxlayers import ops
from jaxlayers._utils import nan_max, nan_min
from jaxlayers.nn.utils import get_total_norm

CASES = [((8, 1000), 0), ((1000, 8), 1), ((4, 8192), None), ((2, 3, 64, 64), (2, 3)), ((16, 512), 1)]


@pytest.mark.parametrize("shape,axis", CASES)
@pytest.mark.parametrize("fill", ["nan", "infs", "finite"])
def test_nan_max_and_min_match_numpy(shape, axis, fill):
    """NumPy's max/min (NaN propagates); with +inf and -inf together (a NaN sum, the checked
    branch) the result is still exact; keepdims too."""
    x = np.random.default_rng(0).normal(size=shape).astype(np.float32)
    if fill == "nan":
        x.reshape(-1)[[5, x.size // 2]] = np.nan
    elif fill == "infs":
        x.reshape(-1)[[3, 9]] = [np.inf, -np.inf]
    for ours, ref in ((nan_max, np.max), (nan_min, np.min)):
        for keepdims in (False, True):
            got = jax.jit(lambda a: ours(a, axis, keepdims))(x)
            np.testing.assert_array_equal(np.asarray(got), ref(x, axis=axis, keepdims=keepdims))


def test_plain_jnp_max_drops_the_nan_here():
    """Why the helpers exist: documents the XLA:CPU behaviour on this jaxlib (skipped where the
    backend propagates the NaN itself, e.g. a fixed jaxlib or a GPU)."""
    x = np.zeros((8, 1000), np.float32)
    x[3, 1] = np.nan
    if np.isnan(np.asarray(jax.jit(lambda a: jnp.max(a, 0))(x))[1]):
        pytest.skip("this backend's max reduction propagates NaN")
    assert np.isnan(np.asarray(jax.jit(lambda a: nan_max(a, 0))(x))[1])


def test_nan_max_integers_vmap_and_grad():
    """Integer inputs (no NaN to look for), vmap (the cond becomes a select) and the gradient,
    which is ``jnp.max``'s."""
    xi = np.arange(24, dtype=np.int32).reshape(4, 6)
    np.testing.assert_array_equal(np.asarray(nan_max(xi, 1)), xi.max(1))
    x = np.random.default_rng(1).normal(size=(3, 4, 700))
    x[1, 2, 5] = np.nan
    got = jax.vmap(lambda a: nan_max(a, 1))(x)
    np.testing.assert_array_equal(np.asarray(got), np.max(x, axis=2))
    y = np.random.default_rng(2).normal(size=(6, 800))
    np.testing.assert_allclose(jax.grad(lambda a: jnp.sum(nan_max(a, 1)))(y),
                               jax.grad(lambda a: jnp.sum(jnp.max(a, 1)))(y))


def test_inf_norms_propagate_nan_as_torch():
    """pairwise_distance with p=±inf and the max/min gradient norm of clip_grad_norm_."""
    a = np.random.default_rng(4).normal(size=(4, 8192)).astype(np.float32)
    b = np.zeros_like(a)
    a[1, 77] = np.nan
    for p in (math.inf, -math.inf):
        got = jax.jit(lambda u, v, p=p: F.pairwise_distance(u, v, p))(a, b)
        want = TF.pairwise_distance(torch.tensor(a), torch.tensor(b), p)
        np.testing.assert_array_equal(np.asarray(got), want.numpy())
        tg = [torch.tensor(a)]
        want_norm = torch.nn.utils.get_total_norm(tg, p)
        np.testing.assert_array_equal(np.asarray(jax.jit(lambda g, p=p: get_total_norm([g], p))(a)),
                                      want_norm.numpy())


def test_ops_max_min_over_all_elements_propagate_nan():
    """``ops.max(x)`` / ``ops.min(x)`` (torch.max/min without dim): NaN, and the gradient split
    over the NaNs as torch's evenly_distribute_backward."""
    x = np.random.default_rng(5).normal(size=(8, 1000)).astype(np.float32)
    x[3, 1] = np.nan
    for ours, theirs in ((ops.max, torch.max), (ops.min, torch.min)):
        assert np.isnan(float(jax.jit(ours)(x)))
        xt = torch.tensor(x, requires_grad=True)
        theirs(xt).backward()
        np.testing.assert_array_equal(np.asarray(jax.jit(jax.grad(ours))(x)), xt.grad.numpy())
