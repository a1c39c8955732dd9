"""nn.utils weight_norm / spectral_norm (old hook API and parametrizations) and orthogonal against
torch in float64: torch's state_dict keys load strictly, outputs and gradients match in training
and evaluation, and spectral norm's power-iteration buffers follow torch's over 3 training steps."""

import dataclasses
import warnings
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
import torch.nn.utils as TU
import torch.nn.utils.parametrizations as TP
from oracle import check_grads_through_hessian, close

from jaxlayers import interop, nn
from jaxlayers.nn import utils as U
from jaxlayers.nn.utils import parametrizations as P
from jaxlayers.nn.utils import parametrize

F64 = dict(param_dtype=jnp.float64)


def _torch(fn, module, **kw):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        return fn(module, **kw)


# (torch wrapper, our wrapper, kwargs) -- Conv1d(3, 4, 2) and ConvTranspose1d(3, 4, 2)
CASES = {  # name: torch wrapper, ours, kwargs, ConvTranspose1d instead of Conv1d
    "old_weight_norm": (TU.weight_norm, U.weight_norm, {}, False),
    "old_weight_norm_dim_none": (TU.weight_norm, U.weight_norm, {"dim": None}, True),
    "weight_norm_dim_neg2": (TP.weight_norm, P.weight_norm, {"dim": -2}, False),
    "old_spectral_norm": (TU.spectral_norm, U.spectral_norm, {"n_power_iterations": 2}, True),
    "spectral_norm": (TP.spectral_norm, P.spectral_norm, {}, False),
    "spectral_norm_dim2_eps": (TP.spectral_norm, P.spectral_norm, {"dim": 2, "eps": 1e-3}, True),
}


def _step_fn(jm, cot):
    """One jitted function per case: training output, gradients and buffer updates, and the
    evaluation output and gradients."""

    def loss(params, rest, x, train):
        y, upd = jm.apply({**rest, "params": params}, x, train=train, mutable=["batch_stats"])
        return jnp.sum(y * cot), (y, upd)

    grad = jax.value_and_grad(loss, argnums=(0, 2), has_aux=True)

    @jax.jit
    def step(v, x):
        rest = {k: a for k, a in v.items() if k != "params"}
        (_, (y, upd)), (gp, gx) = grad(v["params"], rest, x, True)
        (_, (ye, upde)), (gpe, gxe) = grad(v["params"], rest, x, False)
        return (y, gp, gx, upd), (ye, gpe, gxe, upde)

    return step


def _torch_loss_grads(tm, x, cot):
    tx = torch.tensor(x, requires_grad=True)
    y = tm(tx)
    tm.zero_grad()
    (y * torch.tensor(cot)).sum().backward()
    return y.detach().numpy(), {n: p.grad.numpy() for n, p in tm.named_parameters()}, tx.grad.numpy()


def _check_grads(got, want, err_msg):
    y, gp, gx = got[:3]
    ty, tg, tgx = want
    close(y, ty, err_msg=err_msg)
    close(interop.variables_to_state_dict({"params": gp}), tg, err_msg=err_msg)
    close(gx, tgx, err_msg=err_msg)


@pytest.mark.parametrize("case", list(CASES))
def test_parametrization_matches_torch_train_and_eval(case, rng):
    tfn, jfn, kw, transposed = CASES[case]
    tcls, jcls = (torch.nn.ConvTranspose1d, nn.ConvTranspose1d) if transposed else (torch.nn.Conv1d, nn.Conv1d)
    tm = _torch(tfn, tcls(3, 4, 2), **kw)
    jm = jfn(jcls(3, 4, 2, **F64), **kw)
    x = rng.standard_normal((2, 3, 6))
    v0 = jax.jit(lambda k, x: jm.init(k, x, train=False))(jax.random.key(0), jnp.asarray(x))
    # torch's keys, in torch's order, with torch's shapes; the strict load checks them again
    assert {k: a.shape for k, a in interop.variables_to_state_dict(v0).items()} == \
        {k: tuple(t.shape) for k, t in tm.state_dict().items()}
    assert list(interop.variables_to_state_dict(v0)) == list(tm.state_dict())
    v = interop.load_state_dict(v0, tm.state_dict())
    cot = rng.standard_normal((2, 4, 5 if not transposed else 7))
    step = _step_fn(jm, cot)
    for _ in range(3):  # training: power iteration (spectral norm) updates the buffers as torch's
        train, _ = step(v, jnp.asarray(x))
        _check_grads(train, _torch_loss_grads(tm, x, cot), case)
        v = {**v, **train[3]}
        close(interop.variables_to_state_dict(v), {k: t.numpy() for k, t in tm.state_dict().items()}, err_msg=case)
    tm.eval()
    _, evaluation = step(v, jnp.asarray(x))
    _check_grads(evaluation, _torch_loss_grads(tm, x, cot), case)
    # evaluation never changes the buffers, even when they are mutable
    close(interop.variables_to_state_dict({**v, **evaluation[3]}), interop.variables_to_state_dict(v))


def test_spectral_norm_init_follows_torch_registration():
    """u, v at registration: normalised normal draws, then (parametrization only) 15 + n power
    iterations; replayed from torch's own draws."""
    for legacy, tfn in ((True, TU.spectral_norm), (False, TP.spectral_norm)):
        m = torch.nn.Linear(5, 4)
        torch.manual_seed(3)
        u0, v0 = torch.empty(4).normal_(0, 1), torch.empty(5).normal_(0, 1)
        torch.manual_seed(3)
        m = _torch(tfn, m)
        sn = P.SpectralNorm(1, 0, 1e-12, legacy=legacy)
        # torch's registration used its module's weight: replay with that weight
        tw = (m.weight_orig if legacy else m.parametrizations.weight.original).detach().numpy()
        u, v = sn.init_buffers(jnp.asarray(tw), jnp.asarray(u0.numpy()), jnp.asarray(v0.numpy()))
        bufs = dict(m.named_buffers())
        tu = bufs["weight_u" if legacy else "parametrizations.weight.0._u"]
        tv = bufs["weight_v" if legacy else "parametrizations.weight.0._v"]
        close(u, tu, err_msg=str(legacy))
        close(v, tv, err_msg=str(legacy))


def test_orthogonal_default_map_as_torch():
    auto = P._AutoOrthogonal(None)
    assert [auto._resolved(s).orthogonal_map for s in ((4, 4), (2, 3, 3), (3, 5))] == \
        ["matrix_exp", "matrix_exp", "householder"]


@pytest.mark.parametrize("omap,shape", [("matrix_exp", (5, 3)), ("cayley", (4, 4)), (None, (3, 5))])
def test_orthogonal_matches_torch(omap, shape, rng):
    out, inp = shape
    tm = TP.orthogonal(torch.nn.Linear(inp, out), orthogonal_map=omap)
    jm = P.orthogonal(nn.Linear(inp, out, **F64), orthogonal_map=omap)
    x = rng.standard_normal((inp, inp))
    cot = rng.standard_normal((inp, out))

    @jax.jit
    def fwd_bwd(v, x):
        def loss(params, x):
            y = jm.apply({**v, "params": params}, x)
            return jnp.sum(y * cot), y

        return jax.value_and_grad(loss, argnums=(0, 1), has_aux=True)(v["params"], x)

    v0 = jax.jit(jm.init)(jax.random.key(0), jnp.asarray(x))  # one program, not the init op by op
    assert list(interop.variables_to_state_dict(v0)) == list(tm.state_dict())
    # our own init is orthogonal: x = I gives W^T + bias
    w0 = (fwd_bwd(v0, jnp.eye(inp))[0][1] - v0["params"]["bias"]).T
    gram = w0.T @ w0 if out >= inp else w0 @ w0.T
    close(gram, np.eye(min(shape)), atol=1e-12)
    with torch.no_grad():  # move away from the trivial point -I
        tm.parametrizations.weight.original.add_(0.3 * torch.tensor(rng.standard_normal(shape)))
    v = interop.load_state_dict(v0, tm.state_dict())
    ty, tg, tgx = _torch_loss_grads(tm, x, cot)
    (_, y), (gp, gx) = fwd_bwd(v, jnp.asarray(x))
    close(y, ty, rtol=1e-9, atol=1e-12)
    close(interop.variables_to_state_dict({"params": gp}), tg, rtol=1e-8, atol=1e-11)
    close(gx, tgx, rtol=1e-9, atol=1e-12)


def test_orthogonal_without_trivialization():
    tm = TP.orthogonal(torch.nn.Linear(3, 5, bias=False), orthogonal_map="householder", use_trivialization=False)
    jm = P.orthogonal(nn.Linear(3, 5, bias=False, **F64), orthogonal_map="householder", use_trivialization=False)
    x = np.eye(3)
    v0 = jm.init(jax.random.key(0), jnp.asarray(x))
    assert list(interop.variables_to_state_dict(v0)) == list(tm.state_dict()) == ["parametrizations.weight.original"]
    close(jm.apply(interop.load_state_dict(v0, tm.state_dict()), jnp.asarray(x)), tm(torch.tensor(x)).detach())
    # our init: original = geqrf reflectors with torch's sign fix, so the weight is orthonormal
    w = jm.apply(v0, jnp.asarray(x)).T
    close(w.T @ w, np.eye(3), atol=1e-12)


@pytest.mark.parametrize("old", [True, False])
def test_remove_gives_the_plain_module(old, rng):
    x = rng.standard_normal((2, 3))
    if old:
        pairs = [(TU.weight_norm, U.weight_norm, TU.remove_weight_norm, U.remove_weight_norm),
                 (TU.spectral_norm, U.spectral_norm, TU.remove_spectral_norm, U.remove_spectral_norm)]
    else:
        rm_t = lambda m: TP.parametrize.remove_parametrizations(m, "weight")  # noqa: E731
        rm_j = lambda m, v: parametrize.remove_parametrizations(m, v, "weight")  # noqa: E731
        pairs = [(TP.weight_norm, P.weight_norm, rm_t, rm_j), (TP.spectral_norm, P.spectral_norm, rm_t, rm_j),
                 (TP.orthogonal, P.orthogonal, rm_t, rm_j)]
    for tfn, jfn, trm, jrm in pairs:
        tm = _torch(tfn, torch.nn.Linear(3, 4))
        jm = jfn(nn.Linear(3, 4, **F64))
        v = interop.load_state_dict(jm.init(jax.random.key(0), jnp.asarray(x), train=False), tm.state_dict())
        tm.eval()
        trm(tm)
        plain, pv = jrm(jm, v)
        assert isinstance(plain, nn.Linear)
        assert list(interop.variables_to_state_dict(pv)) == list(tm.state_dict()) == ["bias", "weight"]
        close(interop.variables_to_state_dict(pv), {k: t.numpy() for k, t in tm.state_dict().items()})
        close(plain.apply(pv, jnp.asarray(x)), tm(torch.tensor(x)).detach())


def test_removing_spectral_norm_in_training_mode_iterates_as_torch(rng):
    """torch evaluates the tensor in the module's mode: removed in training mode, a spectral norm runs one
    more power iteration (ConvTranspose with 2 iterations: 4e-7 from the evaluation-mode weight)."""
    x = rng.standard_normal((1, 3, 5))
    tm = _torch(TP.spectral_norm, torch.nn.ConvTranspose1d(3, 4, 2), n_power_iterations=2)
    jm = P.spectral_norm(nn.ConvTranspose1d(3, 4, 2, **F64), n_power_iterations=2)
    v = interop.load_state_dict(jm.init(jax.random.key(0), jnp.asarray(x), train=False), tm.state_dict())
    TP.parametrize.remove_parametrizations(tm, "weight")  # tm.training: True
    _, pv = parametrize.remove_parametrizations(jm, v, "weight", train=True)
    close(pv["params"]["weight"], tm.weight.detach(), rtol=1e-12, atol=1e-14)


def test_leave_parametrized_false_and_chained_parametrizations(rng):
    tm = TP.spectral_norm(torch.nn.Linear(3, 4))
    jm = P.spectral_norm(nn.Linear(3, 4, **F64))
    x = rng.standard_normal((2, 3))
    v = interop.load_state_dict(jm.init(jax.random.key(0), jnp.asarray(x), train=False), tm.state_dict())
    _, pv = parametrize.remove_parametrizations(jm, v, "weight", leave_parametrized=False)
    close(pv["params"]["weight"], tm.parametrizations.weight.original.detach())
    assert "batch_stats" not in pv
    with pytest.raises(ValueError, match="leave_parametrized=False.*weight_norm"):
        wn = P.weight_norm(nn.Linear(3, 4))
        parametrize.remove_parametrizations(wn, wn.init(jax.random.key(0), jnp.ones((1, 3))), "weight", False)
    # two tensors of one module: keys as torch, removal of the inner one keeps the outer
    tm = _torch(TU.weight_norm, TP.weight_norm(torch.nn.Linear(3, 4), "bias"), name="weight")
    jm = U.weight_norm(P.weight_norm(nn.Linear(3, 4, **F64), "bias"), "weight")
    v = interop.load_state_dict(jm.init(jax.random.key(0), jnp.asarray(x)), tm.state_dict())
    assert set(interop.variables_to_state_dict(v)) == set(tm.state_dict())
    close(jm.apply(v, jnp.asarray(x)), tm(torch.tensor(x)).detach())
    assert parametrize.is_parametrized(jm, "bias") and parametrize.is_parametrized(jm, "weight")
    plain, pv = parametrize.remove_parametrizations(jm, v, "bias")
    assert not parametrize.is_parametrized(plain, "bias") and parametrize.is_parametrized(plain, "weight")
    close(plain.apply(pv, jnp.asarray(x)), tm(torch.tensor(x)).detach())


def test_transparent_naming_in_a_sequential_and_jit(rng):
    model = nn.Sequential(U.weight_norm(nn.Conv1d(3, 4, 2, **F64)), nn.ReLU(),
                          P.spectral_norm(nn.Conv1d(4, 2, 2, **F64)))
    tmodel = torch.nn.Sequential(_torch(TU.weight_norm, torch.nn.Conv1d(3, 4, 2)), torch.nn.ReLU(),
                                 TP.spectral_norm(torch.nn.Conv1d(4, 2, 2)))
    x = rng.standard_normal((2, 3, 6))
    v0 = jax.jit(lambda k, x: model.init(k, x, train=False))(jax.random.key(0), jnp.asarray(x))
    assert list(interop.variables_to_state_dict(v0)) == list(tmodel.state_dict())
    v = interop.load_state_dict(v0, tmodel.state_dict())
    step = jax.jit(lambda v, x: model.apply(v, x, train=True, mutable=["batch_stats"]))
    for _ in range(2):
        y, upd = step(v, jnp.asarray(x))
        v = {**v, **upd}
        close(y, tmodel(torch.tensor(x)).detach())
    close(interop.variables_to_state_dict(v), {k: t.numpy() for k, t in tmodel.state_dict().items()})
    # float32 parameters (the default) keep their dtype through the wrapper
    v32 = jax.eval_shape(P.orthogonal(nn.Linear(3, 3)).init, jax.random.key(1), jnp.ones((1, 3), jnp.float32))
    assert {a.dtype for a in jax.tree.leaves(v32)} == {jnp.dtype(jnp.float32)}


def test_errors():
    x = jnp.ones((1, 3, 5))
    with pytest.raises(ValueError, match="weight_norm: module Conv1d has no parameter 'kernel'"):
        U.weight_norm(nn.Conv1d(3, 4, 2), "kernel").init(jax.random.key(0), x)
    with pytest.raises(IndexError, match="weight_norm: dim out of range.*got 3"):
        P.weight_norm(nn.Conv1d(3, 4, 2), dim=3).init(jax.random.key(0), x)
    with pytest.raises(IndexError, match="spectral_norm: dim out of range.*got -4"):
        P.spectral_norm(nn.Conv1d(3, 4, 2), dim=-4).init(jax.random.key(0), x, train=False)
    with pytest.raises(ValueError, match="spectral_norm: expected n_power_iterations to be positive"):
        U.spectral_norm(nn.Conv1d(3, 4, 2), n_power_iterations=0)
    with pytest.raises(ValueError, match="spectral_norm: expected n_power_iterations to be positive"):
        P.spectral_norm(nn.Conv1d(3, 4, 2), n_power_iterations=0)
    with pytest.raises(ValueError, match="spectral_norm: `train` must be given"):
        P.spectral_norm(nn.Conv1d(3, 4, 2)).init(jax.random.key(0), x)
    with pytest.raises(ValueError, match="orthogonal: expected a matrix"):
        P.orthogonal(nn.Linear(3, 4), "bias").init(jax.random.key(0), jnp.ones((1, 3)))
    with pytest.raises(ValueError, match="orthogonal_map has to be one of"):
        P.orthogonal(nn.Linear(3, 4), orthogonal_map="qr")
    with pytest.raises(ValueError, match="'weight' of Linear is already parametrized by weight_norm"):
        P.spectral_norm(P.weight_norm(nn.Linear(3, 4)))
    with pytest.raises(TypeError, match="register_parametrization: expected a flax.linen Module"):
        P.weight_norm(torch.nn.Linear(3, 4))
    m = P.weight_norm(nn.Linear(3, 4))
    v = m.init(jax.random.key(0), jnp.ones((1, 3)))
    with pytest.raises(ValueError, match="remove_spectral_norm: 'weight' of Linear is not parametrized by Spectral"):
        U.remove_spectral_norm(m, v)


def test_parametrization_functions_check_grads(rng):
    """Forward and reverse derivatives of the reference maths (float64, tiny inputs); the orthogonal maps'
    gradients are checked against torch above."""
    from jax.test_util import check_grads

    v, g = jnp.asarray(rng.standard_normal((3, 2, 2))), jnp.asarray(rng.uniform(0.5, 1.5, (3, 1, 1)))
    check_grads_through_hessian(lambda v, g: P.weight_norm_fn(v, g, 0), (v, g))
    w = jnp.asarray(rng.standard_normal((3, 4)))
    u, vv = jnp.asarray(rng.standard_normal(3)), jnp.asarray(rng.standard_normal(4))
    check_grads(jax.jit(lambda w: P.spectral_norm_fn(w, u, vv, 0)), (w,), order=1, modes=("fwd", "rev"))


def test_any_module_any_tensor_keeps_torchs_order(rng):
    """A recurrent weight and a wrapped BatchNorm (its running statistics pass through the wrapper);
    an eager init keeps torch's state_dict order."""
    x = rng.standard_normal((5, 2, 3))
    tm = _torch(TU.weight_norm, torch.nn.LSTM(3, 4), name="weight_hh_l0")
    jm = U.weight_norm(nn.LSTM(3, 4, **F64), "weight_hh_l0")
    v0 = jm.init(jax.random.key(0), jnp.asarray(x), train=False)
    assert list(interop.variables_to_state_dict(v0)) == list(tm.state_dict())
    v = interop.load_state_dict(v0, tm.state_dict())
    close(jm.apply(v, jnp.asarray(x), train=False)[0], tm(torch.tensor(x))[0].detach())
    tb = _torch(TU.weight_norm, torch.nn.BatchNorm1d(3), dim=None)
    jb = U.weight_norm(nn.BatchNorm1d(3, **F64), dim=None)
    xb = rng.standard_normal((6, 3))
    v0 = jb.init(jax.random.key(0), jnp.asarray(xb), train=False)
    assert list(interop.variables_to_state_dict(v0)) == list(tb.state_dict())
    v = interop.load_state_dict(v0, tb.state_dict())
    y, upd = jb.apply(v, jnp.asarray(xb), train=True, mutable=["batch_stats"])
    close(y, tb(torch.tensor(xb)).detach())
    close(interop.variables_to_state_dict({**v, **upd}), {k: t.numpy() for k, t in tb.state_dict().items()})


def test_wrapper_names_in_compact_and_setup_parents():
    import flax.linen as fnn

    class Compact(fnn.Module):
        @fnn.compact
        def __call__(self, x):
            return U.weight_norm(nn.Conv1d(3, 4, 2), module_name="conv")(x)

    class Setup(fnn.Module):
        def setup(self):
            self.conv = P.weight_norm(nn.Conv1d(3, 4, 2))

        def __call__(self, x):
            return self.conv(x)

    x = jnp.ones((1, 3, 5))
    assert sorted(interop.variables_to_state_dict(jax.eval_shape(Compact().init, jax.random.key(0), x))) == \
        ["conv.bias", "conv.weight_g", "conv.weight_v"]
    assert sorted(interop.variables_to_state_dict(jax.eval_shape(Setup().init, jax.random.key(0), x))) == \
        ["conv.bias", "conv.parametrizations.weight.original0", "conv.parametrizations.weight.original1"]


@pytest.mark.parametrize("old", [True, False])
def test_spectral_norm_default_dim_looks_through_other_wrappers(old, rng):
    """A ConvTranspose1d whose bias is weight-normalised: spectral norm's default dim is still 1."""
    tsn, jsn, twn, jwn = (TU.spectral_norm, U.spectral_norm, TU.weight_norm, U.weight_norm) if old else \
        (TP.spectral_norm, P.spectral_norm, TP.weight_norm, P.weight_norm)
    tm = _torch(tsn, _torch(twn, torch.nn.ConvTranspose1d(2, 3, 2), name="bias"))
    jm = jsn(jwn(nn.ConvTranspose1d(2, 3, 2, **F64), "bias"))
    x = rng.standard_normal((2, 2, 5))
    v0 = jm.init(jax.random.key(0), jnp.asarray(x), train=False)
    assert {k: a.shape for k, a in interop.variables_to_state_dict(v0).items()} == \
        {k: tuple(t.shape) for k, t in tm.state_dict().items()}
    v = interop.load_state_dict(v0, tm.state_dict())
    y, upd = jm.apply(v, jnp.asarray(x), train=True, mutable=["batch_stats"])
    close(y, tm(torch.tensor(x)).detach())
    close(interop.variables_to_state_dict({**v, **upd}), {k: t.numpy() for k, t in tm.state_dict().items()})


def test_half_precision_weight_norm_accumulates_in_float32_as_torch():
    """Squares of 200 overflow float16 (weight 0 instead of 0.5) and of 1e-4 underflow (NaN)."""
    for value in (200.0, 1e-4):
        for tfn, jfn in ((TU.weight_norm, U.weight_norm), (TP.weight_norm, P.weight_norm)):
            tm = _torch(tfn, torch.nn.Linear(4, 1, bias=False, dtype=torch.float16))
            with torch.no_grad():
                for name, t in tm.named_parameters():
                    t.fill_(1.0 if name.endswith(("_g", "original0")) else value)
            jm = jfn(nn.Linear(4, 1, bias=False, param_dtype=jnp.float16))
            x = jnp.ones((1, 4), jnp.float16)
            v = interop.load_state_dict(jm.init(jax.random.key(0), x), tm.state_dict())
            y = jm.apply(v, x)
            assert y.dtype == jnp.float16
            close(np.float32(y), tm(torch.ones(1, 4, dtype=torch.float16)).detach().float(), rtol=1e-3,
                  err_msg=f"{tfn.__module__} {value}")
            close(np.float32(y), [[2.0]], rtol=1e-3)  # four weights of 0.5
        # the parametrization's init: g = ||v|| rounded to float16
        g = P.WeightNorm(0).init(None, jnp.full((1, 4), value, jnp.float16))["g"]
        assert g.dtype == jnp.float16 and np.float32(g[0, 0]) == np.float16(2 * value)


@pytest.mark.parametrize("old", [True, False])
def test_half_precision_spectral_norm_accumulates_in_float32_as_torch(old):
    """W = 20 (2, 300) in float16: W^T u has 300 entries of ~28 whose squares sum past float16's max."""
    tm = _torch(TU.spectral_norm if old else TP.spectral_norm, torch.nn.Linear(300, 2, bias=False, dtype=torch.float16))
    with torch.no_grad():
        (tm.weight_orig if old else tm.parametrizations.weight.original).fill_(20.0)
    jm = (U.spectral_norm if old else P.spectral_norm)(nn.Linear(300, 2, bias=False, param_dtype=jnp.float16))
    x = np.linspace(-1, 1, 600).reshape(2, 300)
    v0 = jm.init(jax.random.key(0), jnp.ones((1, 300), jnp.float16), train=False)
    v = interop.load_state_dict(v0, tm.state_dict())
    y, upd = jm.apply(v, jnp.asarray(x, jnp.float16), train=True, mutable=["batch_stats"])
    ty = tm(torch.tensor(x, dtype=torch.float16)).detach()
    assert y.dtype == jnp.float16 and np.all(np.isfinite(np.float32(y)))
    close(np.float32(y), ty.float(), rtol=2e-3, atol=1e-3)
    close({k: np.float32(a) for k, a in interop.variables_to_state_dict({**v, **upd}).items()},
          {k: t.float().numpy() for k, t in tm.state_dict().items()}, rtol=2e-3, atol=1e-3)


def test_old_spectral_norm_rejects_a_negative_dim():
    with pytest.raises(RuntimeError, match="permute"):  # torch's old hook
        _torch(TU.spectral_norm, torch.nn.Linear(3, 4), dim=-1)
    with pytest.raises(ValueError, match="spectral_norm: expected dim to be non-negative.*got dim=-1"):
        U.spectral_norm(nn.Linear(3, 4), dim=-1)
    # the parametrization takes a negative dim, as torch's
    jm = P.spectral_norm(nn.Conv1d(3, 4, 2), dim=-1)
    v = jm.init(jax.random.key(0), jnp.ones((1, 3, 5)), train=False)
    assert v["batch_stats"]["parametrizations"]["weight"]["0"]["_u"].shape == (2,)


@pytest.mark.parametrize("legacy", [False, True])
def test_spectral_norm_of_a_vector_as_torch(legacy, rng):
    """A 1-D weight: the parametrization normalises it exactly, with no u/v buffers (torch's
    ``_SpectralNorm`` for ndim 1); the old hook runs its power method on it as an (n, 1) matrix."""
    torch.manual_seed(0)
    wrap_t = TU.spectral_norm if legacy else TP.spectral_norm
    tm = wrap_t(torch.nn.Linear(3, 4), "bias")
    jm = (U.spectral_norm if legacy else P.spectral_norm)(nn.Linear(3, 4, param_dtype=jnp.float64), "bias")
    x = rng.standard_normal((5, 3))
    v = jm.init(jax.random.key(0), jnp.asarray(x), train=False)
    sd = {k: t.double() for k, t in tm.state_dict().items()}
    assert sorted(interop.variables_to_state_dict(v)) == sorted(sd)
    v = interop.load_state_dict(v, sd)
    tm.double().train()
    xt = torch.tensor(x, requires_grad=True)
    yt = tm(xt)
    yt.sum().backward()
    y, vjp = jax.vjp(lambda v, x: jm.apply(v, x, train=True, mutable=["batch_stats"])[0], v, jnp.asarray(x))
    close(y, yt)
    close(vjp(jnp.ones_like(y))[1], xt.grad)


@dataclasses.dataclass(frozen=True)
class _Reparam(parametrize.Parametrization):
    """A custom parametrization: the stored tensor ``original`` through ``fn``."""

    fn: Any = None

    def slots(self, tensor_name):
        return {"original": ("params", ("parametrizations", tensor_name, "original"))}

    def init(self, key, tensor):
        return {"original": tensor}

    def forward(self, values, train, update):
        return self.fn(values["original"]), {}


@pytest.mark.parametrize("what,fn,torch_fn", [
    ("shape", lambda w: w[:, :2], lambda w: w[:, :2]),
    ("dtype", lambda w: w.astype(jnp.float16), lambda w: w.half()),
])
def test_custom_parametrization_may_change_the_tensor_only_when_unsafe(what, fn, torch_fn):
    """torch refuses a parametrization that changes the tensor's shape or dtype unless unsafe=True
    (register_parametrization had no unsafe argument and no check)."""
    class TorchReparam(torch.nn.Module):
        def forward(self, w):
            return torch_fn(w)

    with pytest.raises(ValueError, match=f"may not change the {what}"):
        torch.nn.utils.parametrize.register_parametrization(torch.nn.Linear(3, 4), "weight", TorchReparam())
    x = jnp.ones((2, 3))
    with pytest.raises(ValueError, match=f"may not change the {what} of the tensor, unless the `unsafe` flag"):
        parametrize.register_parametrization(nn.Linear(3, 4), "weight", _Reparam(fn)).init(jax.random.key(0), x)
    if what == "dtype":  # allowed with unsafe=True (a changed shape would fail in Linear's forward, as torch's)
        m = parametrize.register_parametrization(nn.Linear(3, 4), "weight", _Reparam(fn), unsafe=True)
        v = m.init(jax.random.key(0), x)
        assert v["params"]["parametrizations"]["weight"]["original"].dtype == jnp.float32
