"""LazyBatchNorm*, LazyInstanceNorm*, SyncBatchNorm and CrossMapLRN2d against torch (float64)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P
from oracle import close

from jaxlayers import functional as F
from jaxlayers import interop, nn


def _train_step_vs_torch(ours, theirs, x, rng, lazy_torch=True):
    """One training step: outputs, input and parameter gradients, updated buffers; then evaluation."""
    xt = torch.from_numpy(x).requires_grad_()
    if lazy_torch:  # materialise torch's lazy parameters on a copy of the input
        theirs(torch.from_numpy(x))
        theirs.zero_grad()
        theirs.load_state_dict({k: v for k, v in theirs.state_dict().items()})
    with torch.no_grad():
        for name, b in theirs.named_buffers():
            if name == "running_mean":
                b.copy_(torch.from_numpy(rng.standard_normal(b.shape)))
            elif name == "running_var":
                b.copy_(torch.from_numpy(rng.random(b.shape) + 0.5))
        for p in theirs.parameters():
            p.copy_(torch.from_numpy(rng.standard_normal(p.shape)))
    shapes = jax.eval_shape(lambda x: ours.init(jax.random.key(0), x, train=False), x)
    assert sorted(interop.variables_to_state_dict_shapes(shapes)) == sorted(theirs.state_dict())
    template = jax.tree_util.tree_map(lambda s: np.zeros(s.shape, s.dtype), shapes)
    v = interop.load_state_dict(template, theirs.state_dict(), cast=False)
    theirs.train()
    yt = theirs(xt)
    cot = rng.standard_normal(yt.shape)
    yt.backward(torch.from_numpy(cot))

    def f(params, x):
        y, upd = ours.apply({**v, "params": params}, x, train=True, mutable=["batch_stats"])
        return jnp.sum(y * cot), (y, upd)

    (_, (y, upd)), (gp, gx) = jax.jit(jax.value_and_grad(f, argnums=(0, 1), has_aux=True))(v.get("params", {}), x)
    close(y, yt)
    close(gx, xt.grad)
    for k, p in theirs.named_parameters():
        close(gp[k], p.grad, err_msg=k)
    sd = interop.variables_to_state_dict({**v, **upd})
    for k, b in theirs.state_dict().items():
        close(sd[k], b, err_msg=k)
    theirs.eval()
    close(jax.jit(lambda v, x: ours.apply(v, x, train=False))({**v, **upd}, x), theirs(torch.from_numpy(x)))
    return v


LAZY = [
    (nn.LazyBatchNorm1d, torch.nn.LazyBatchNorm1d, (6, 3), {}),
    (nn.LazyBatchNorm2d, torch.nn.LazyBatchNorm2d, (3, 4, 3, 2), dict(momentum=None)),
    (nn.LazyBatchNorm3d, torch.nn.LazyBatchNorm3d, (2, 2, 3, 2, 2), dict(eps=1e-3, momentum=0.3)),
    (nn.LazyInstanceNorm1d, torch.nn.LazyInstanceNorm1d, (2, 3, 5), {}),
    (nn.LazyInstanceNorm2d, torch.nn.LazyInstanceNorm2d, (2, 4, 3, 3), dict(momentum=0.2)),
    (nn.LazyInstanceNorm3d, torch.nn.LazyInstanceNorm3d, (2, 2, 2, 3, 2), dict(affine=False)),
]


@pytest.mark.parametrize("ours_cls,torch_cls,shape,kw", LAZY, ids=[c[0].__name__ for c in LAZY])
def test_lazy_norms_vs_torch(ours_cls, torch_cls, shape, kw, rng):
    x = rng.standard_normal(shape) * 2 + 0.5
    ours = ours_cls(**kw)
    assert ours.num_features is None
    v = _train_step_vs_torch(ours, torch_cls(**kw), x, rng)
    # the variables fix num_features once they exist
    bad = list(shape)
    bad[1] += 1
    with pytest.raises(ValueError, match=rf"{ours_cls.__name__}: expected input with {shape[1]} channels"):
        jax.eval_shape(lambda x: ours.apply(v, x, train=False), jnp.zeros(bad))


def test_lazy_signatures_and_stateless_variants(rng):
    m = nn.LazyBatchNorm2d(1e-3, 0.2, False, False)
    assert (m.eps, m.momentum, m.affine, m.track_running_stats, m.num_features) == (1e-3, 0.2, False, False, None)
    x = rng.standard_normal((3, 2, 2, 2))
    assert m.init(jax.random.key(0), x, train=False) == {}
    close(m.apply({}, x, train=False), torch.nn.LazyBatchNorm2d(1e-3, 0.2, False, False)(torch.from_numpy(x)))
    assert nn.LazyInstanceNorm1d().affine and nn.LazyInstanceNorm1d().track_running_stats  # torch's Lazy defaults
    # unbatched instance norm: num_features from the channel dim (torch reads shape[1] and fails)
    v = nn.LazyInstanceNorm1d().init(jax.random.key(0), x[0, :, :, 0], train=False)
    assert v["params"]["weight"].shape == (2,)


def test_sync_batch_norm_any_rank_vs_torch(rng):
    x = rng.standard_normal((3, 2, 2, 3, 1, 2)) * 3 - 1  # (N, C, *) of rank 6
    _train_step_vs_torch(nn.SyncBatchNorm(2, momentum=0.3), torch.nn.SyncBatchNorm(2, momentum=0.3), x, rng,
                         lazy_torch=False)


def _mesh():
    if jax.device_count() < 4:
        pytest.skip("needs 4 devices (XLA_FLAGS=--xla_force_host_platform_device_count=4)")
    return Mesh(np.array(jax.devices()[:4]), ("batch",))


def test_sync_batch_norm_global_batch_sharded_jit_and_shard_map(rng):
    mesh = _mesh()
    x = rng.standard_normal((8, 3, 5)) * 2 + 1
    tm = torch.nn.SyncBatchNorm(3).train()
    yt = tm(torch.from_numpy(x))
    m = nn.SyncBatchNorm(3, param_dtype=jnp.float64)
    v = m.init(jax.random.key(0), x, train=False)
    step = jax.jit(lambda v, x: m.apply(v, x, train=True, mutable=["batch_stats"]))
    xs = jax.device_put(x, NamedSharding(mesh, P("batch")))
    y, upd = step(v, xs)
    assert len(xs.sharding.device_set) == 4
    close(y, yt)
    close(upd["batch_stats"]["running_var"], tm.running_var)
    m4 = nn.SyncBatchNorm(3, axis_name="batch", param_dtype=jnp.float64)
    sharded = jax.jit(jax.shard_map(lambda v, x: m4.apply(v, x, train=True, mutable=["batch_stats"]), mesh=mesh,
                                    in_specs=(P(), P("batch")), out_specs=(P("batch"), P()), check_vma=False))
    y4, upd4 = sharded(v, x)
    close(y4, yt)
    close(upd4["batch_stats"]["running_mean"], tm.running_mean)


CROSS_MAP = [(7, 5), (6, 4), (3, 5), (5, 2)]


@pytest.mark.parametrize("c,size", CROSS_MAP)
def test_cross_map_lrn2d_vs_torch(c, size, rng):
    x = rng.standard_normal((2, c, 3, 2)) * 3
    kw = dict(alpha=0.3, beta=0.75, k=2.0)
    xt = torch.from_numpy(x).requires_grad_()
    yt = torch.nn.CrossMapLRN2d(size, **kw)(xt)
    cot = rng.standard_normal(x.shape)
    yt.backward(torch.from_numpy(cot))
    m = nn.CrossMapLRN2d(size, **kw)
    y, gx = jax.jit(lambda x, cot: (lambda y, vjp: (y, vjp(cot)[0]))(*jax.vjp(lambda x: m.apply({}, x), x)))(x, cot)
    close(y, yt)
    close(gx, xt.grad)  # torch's hand-written backward, not the forward's derivative
    if c > size // 2 + 2:  # not LocalResponseNorm: torch's running sum keeps channel 0
        assert not np.allclose(y, F.local_response_norm(x, size, **kw))


def test_cross_map_lrn2d_forward_mode_and_jit(rng):
    x = rng.standard_normal((1, 5, 2, 2))
    f = jax.jit(lambda x: nn.CrossMapLRN2d(3, alpha=0.5).apply({}, x))
    # forward and reverse mode agree: reverse mode is the transpose of the custom_jvp (torch's backward)
    close(jax.jacrev(f)(x), jax.jacfwd(f)(x))


def test_errors():
    with pytest.raises(ValueError, match=r"CrossMapLRN2d: expected 4-D input \(N, C, H, W\), got 3-D input of shape \(2, 3, 4\)"):
        nn.CrossMapLRN2d(3).apply({}, jnp.ones((2, 3, 4)))
    with pytest.raises(ValueError, match=r"CrossMapLRN2d: size must be a positive int, got 0"):
        nn.CrossMapLRN2d(0)
    with pytest.raises(ValueError, match=r"SyncBatchNorm: process_group has no JAX equivalent"):
        nn.SyncBatchNorm(3, process_group="group")
    with pytest.raises(ValueError, match=r"SyncBatchNorm: expected at least 2-D \(N, C, \*\) input, got 1-D input of shape \(3,\)"):
        nn.SyncBatchNorm(3).init(jax.random.key(0), jnp.ones(3), train=False)
    with pytest.raises(ValueError, match=r"SyncBatchNorm: expected input with 3 channels"):
        nn.SyncBatchNorm(3).init(jax.random.key(0), jnp.ones((2, 4, 2)), train=False)
    with pytest.raises(ValueError, match=r"SyncBatchNorm: number of input channels should be non-zero"):
        nn.SyncBatchNorm(0).init(jax.random.key(0), jnp.ones((2, 0, 3)), train=False)  # torch: every call
    with pytest.raises(TypeError, match=r"CrossMapLRN2d: expected a floating-point input, got int32"):
        nn.CrossMapLRN2d(3).apply({}, jnp.ones((1, 3, 2, 2), jnp.int32))  # torch: no integer kernel
    with pytest.raises(ValueError, match=r"LazyBatchNorm2d: expected 4-D \(N, C, H, W\) input, got 3-D"):
        nn.LazyBatchNorm2d().init(jax.random.key(0), jnp.ones((2, 4, 2)), train=False)
    with pytest.raises(ValueError, match=r"LazyInstanceNorm2d: expected 3-D \(C, \*spatial\) or 4-D"):
        nn.LazyInstanceNorm2d().init(jax.random.key(0), jnp.ones((2, 4)), train=False)
    with pytest.raises(ValueError, match=r"LazyBatchNorm1d: `train` must be given"):
        nn.LazyBatchNorm1d().init(jax.random.key(0), jnp.ones((2, 4)))
