"""nn.utils gradient clipping, parameters_to_vector / vector_to_parameters and BatchNorm fusion
against torch.nn.utils in float64."""

import math

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
import torch
import torch.nn.utils as TU
from oracle import close

from jaxlayers import interop, nn
from jaxlayers.nn import utils as U

SHAPES = [(3, 4), (5,), (2, 1, 3)]


def _grads(rng, scale=1.0):
    return [scale * rng.standard_normal(s) for s in SHAPES]


def _torch_params(grads):
    ps = [torch.nn.Parameter(torch.zeros(g.shape)) for g in grads]
    for p, g in zip(ps, grads):
        p.grad = torch.tensor(g)
    return ps


class TestClip(chex.TestCase):
    @chex.variants(with_jit=True, without_jit=True)
    def test_clip_grad_norm_matches_torch(self):
        rng = np.random.default_rng(0)
        for norm_type in (2.0, math.inf, 1.0, 3.0, 0.5, -math.inf, 0.0):
            fn = self.variant(lambda g, m, n=norm_type: U.clip_grad_norm_(g, m, n))  # max_norm may be traced
            for max_norm, scale in ((1.0, 1.0), (100.0, 1.0), (0.3, 0.01)):
                grads = _grads(rng, scale)
                ps = _torch_params(grads)
                tn = TU.clip_grad_norm_(ps, max_norm, norm_type)
                clipped, total = fn({"a": grads[0], "b": {"c": grads[1], "d": grads[2]}}, max_norm)
                msg = f"norm_type={norm_type} max_norm={max_norm}"
                close(total, tn, err_msg=msg)
                close([clipped["a"], clipped["b"]["c"], clipped["b"]["d"]], [p.grad for p in ps], err_msg=msg)

    @chex.variants(with_jit=True, without_jit=True)
    def test_value_total_norm_and_with_norm(self):
        rng = np.random.default_rng(1)
        grads = _grads(rng, 2.0)
        ps = _torch_params(grads)
        TU.clip_grad_value_(ps, 0.7)
        close(self.variant(lambda g: U.clip_grad_value_(g, 0.7))(grads), [p.grad for p in ps])
        total = TU.get_total_norm([torch.tensor(g) for g in grads], 3.0)
        close(self.variant(lambda g: U.get_total_norm(g, 3.0))(grads), total)
        ps = _torch_params(grads)
        TU.clip_grads_with_norm_(ps, 0.5, total)
        close(self.variant(lambda g, t: U.clip_grads_with_norm_(g, 0.5, t))(grads, total.numpy()),
              [p.grad for p in ps])


def test_optax_transformations_use_torchs_numbers(rng):
    grads = {"w": jnp.asarray(rng.standard_normal((3, 4))), "b": jnp.asarray(rng.standard_normal(4))}
    ps = _torch_params([np.asarray(grads["w"]), np.asarray(grads["b"])])
    TU.clip_grad_norm_(ps, 0.5)
    for tx, want in ((U.clip_grad_norm(0.5), ps), (U.clip_grad_value(0.1), None)):
        updates, state = jax.jit(tx.update)(grads, tx.init(grads))
        if want is not None:
            close([updates["w"], updates["b"]], [p.grad for p in want])
        else:
            close(updates, jax.tree.map(lambda g: jnp.clip(g, -0.1, 0.1), grads))
    # optax's own clip_by_global_norm differs by torch's 1e-6 (relative ~2e-6 here)
    ours = U.clip_grad_norm(0.5).update(grads, None)[0]["w"]
    theirs = optax.clip_by_global_norm(0.5).update(grads, optax.EmptyState())[0]["w"]
    assert not np.allclose(ours, theirs, rtol=1e-9, atol=0)


def test_optax_transformations_refuse_torchs_deprecated_call():
    """torch's deprecated ``clip_grad_norm(parameters, max_norm)`` shares the transform's name: called
    that way it had returned a transform and clipped nothing."""
    grads = {"w": jnp.ones(2)}
    with pytest.raises(TypeError, match=r"max_norm must be a number, got dict; .* is clip_grad_norm_\(grads, max_norm\)"):
        U.clip_grad_norm(grads, 1.0)
    with pytest.raises(TypeError, match=r"clip_value must be a number, got dict"):
        U.clip_grad_value(grads)
    U.clip_grad_norm(jnp.float32(1.0), "inf"), U.clip_grad_value(1)  # numbers and 0-d arrays


def test_half_precision_norms_accumulate_in_float32_as_torch():
    """Squares of 300 overflow float16 and of 1e-4 underflow: torch's vector_norm accumulates in float32."""
    for value, n in ((300.0, 3), (1e-4, 100)):
        q = torch.nn.Parameter(torch.zeros(n, dtype=torch.float16))
        q.grad = torch.full((n,), value, dtype=torch.float16)
        total_t = TU.clip_grad_norm_([q], 1.0)
        clipped, total = U.clip_grad_norm_([jnp.full((n,), value, jnp.float16)], 1.0)
        assert total.dtype == jnp.float16 and clipped[0].dtype == jnp.float16
        close(np.float32(total), total_t.float(), rtol=1e-3)
        close(np.asarray(clipped[0], np.float32), q.grad.float(), rtol=1e-3)


def test_nonfinite_and_empty():
    g = [jnp.array([1.0, jnp.inf])]
    with pytest.raises(RuntimeError, match=r"^The total norm of order 2.0 for gradients from `parameters` is non-fin"):
        U.clip_grad_norm_(g, 1.0, error_if_nonfinite=True)
    with pytest.raises(RuntimeError, match="non-finite"):
        U.get_total_norm([jnp.array([jnp.nan])], error_if_nonfinite=True)
    # torch scales by the non-finite norm when the check is off; so do we
    clipped, total = U.clip_grad_norm_(g, 1.0)
    assert np.isinf(total) and np.asarray(clipped[0])[0] == 0.0
    # under jit the check cannot run: no error, the norm is returned
    assert np.isinf(jax.jit(lambda g: U.get_total_norm(g, error_if_nonfinite=True))(g))
    assert float(U.get_total_norm([])) == 0.0
    # a NaN in a large leaf (where XLA:CPU's max reduction drops NaNs) gives a NaN max norm, as torch
    big = np.random.default_rng(0).normal(size=(8, 4096)).astype(np.float32)
    big[3, 100] = np.nan
    for p in (math.inf, -math.inf):
        want = torch.nn.utils.get_total_norm([torch.tensor(big)], p)
        assert np.isnan(want) and np.isnan(jax.jit(lambda g: U.get_total_norm(g, p))([big, big[:2]]))


def test_parameters_to_vector_in_torchs_order(rng):
    tm = torch.nn.Sequential(torch.nn.Linear(2, 3), torch.nn.BatchNorm1d(3), torch.nn.Linear(3, 2))
    jm = nn.Sequential(nn.Linear(2, 3, param_dtype=jnp.float64), nn.BatchNorm1d(3, param_dtype=jnp.float64),
                       nn.Linear(3, 2, param_dtype=jnp.float64))
    # an eager init keeps the creation order (torch's); jit/eval_shape outputs would sort the keys
    v = interop.load_state_dict(jm.init(jax.random.key(0), jnp.ones((2, 2)), train=False), tm.state_dict())
    want = TU.parameters_to_vector(tm.parameters())
    close(U.parameters_to_vector(v), want)  # buffers are left out, as model.parameters()
    # jit returns dicts with sorted keys: names= restores torch's order
    names = [n for n, _ in tm.named_parameters()]
    sorted_params = jax.jit(lambda p: p)(v["params"])
    close(U.parameters_to_vector(sorted_params, names=names), want)
    new = rng.standard_normal(want.shape[0])
    TU.vector_to_parameters(torch.tensor(new), tm.parameters())
    back = U.vector_to_parameters(jnp.asarray(new), v)
    close(interop.variables_to_state_dict({"params": back}), dict(tm.named_parameters()))
    assert back["0"]["weight"].dtype == jnp.float64
    # a list of arrays is taken in its order
    lst = U.vector_to_parameters(jnp.arange(5.0), [jnp.zeros((2, 2)), jnp.zeros(1)])
    assert [a.tolist() for a in lst] == [[[0.0, 1.0], [2.0, 3.0]], [4.0]]
    with pytest.raises(ValueError, match=r"vector_to_parameters: expected a 1-D vec of 5 entries.*got shape \(4,\)"):
        U.vector_to_parameters(jnp.zeros(4), [jnp.zeros((2, 2)), jnp.zeros(1)])
    with pytest.raises(TypeError, match="vector_to_parameters: expected vec to be an array"):
        U.vector_to_parameters([1.0], [jnp.zeros(1)])
    with pytest.raises(ValueError, match="parameters_to_vector: names do not match"):
        U.parameters_to_vector(v, names=["0.weight"])


@pytest.mark.parametrize("kind", ["conv2d", "conv_transpose1d", "linear"])
def test_fusion_matches_torch(kind, rng):
    if kind == "conv2d":
        t_layer, j_layer = torch.nn.Conv2d(3, 4, 2), nn.Conv2d(3, 4, 2, param_dtype=jnp.float64)
        t_bn, x = torch.nn.BatchNorm2d(4, eps=1e-3), rng.standard_normal((2, 3, 5, 5))
    elif kind == "conv_transpose1d":
        t_layer = torch.nn.ConvTranspose1d(3, 4, 2, bias=False)
        j_layer = nn.ConvTranspose1d(3, 4, 2, bias=False, param_dtype=jnp.float64)
        t_bn, x = torch.nn.BatchNorm1d(4, affine=False), rng.standard_normal((2, 3, 5))
    else:
        t_layer, j_layer = torch.nn.Linear(3, 4), nn.Linear(3, 4, param_dtype=jnp.float64)
        t_bn, x = torch.nn.BatchNorm1d(4), rng.standard_normal((6, 3))
    with torch.no_grad():  # non-trivial running statistics and affine parameters
        t_bn.running_mean.copy_(torch.tensor(rng.standard_normal(4)))
        t_bn.running_var.copy_(torch.tensor(rng.uniform(0.5, 2.0, 4)))
        if t_bn.affine:
            t_bn.weight.copy_(torch.tensor(rng.standard_normal(4)))
            t_bn.bias.copy_(torch.tensor(rng.standard_normal(4)))
    t_layer.eval()
    t_bn.eval()
    transpose = kind == "conv_transpose1d"
    if kind == "linear":
        fused_t = torch.nn.utils.fusion.fuse_linear_bn_eval(t_layer, t_bn)
        fused = U.fuse_linear_bn_eval(interop.state_dict_to_variables(t_layer.state_dict()),
                                      interop.state_dict_to_variables(t_bn.state_dict()), eps=t_bn.eps)
    else:
        fused_t = torch.nn.utils.fusion.fuse_conv_bn_eval(t_layer, t_bn, transpose=transpose)
        fused = U.fuse_conv_bn_eval(interop.state_dict_to_variables(t_layer.state_dict()),
                                    interop.state_dict_to_variables(t_bn.state_dict()), transpose, eps=t_bn.eps)
    close(interop.variables_to_state_dict(fused), {k: fused_t.state_dict()[k] for k in ("weight", "bias")})
    # the fused layer (with a bias) equals layer -> BN in evaluation
    fused_layer = j_layer.clone(bias=True)
    close(fused_layer.apply(fused, jnp.asarray(x)), t_bn(t_layer(torch.tensor(x))).detach())


def test_fusion_errors():
    conv = {"params": {"weight": jnp.ones((4, 3, 2))}}
    bn = {"batch_stats": {"running_mean": jnp.zeros(5), "running_var": jnp.ones(5)}}
    with pytest.raises(ValueError, match=r"fuse_conv_bn_eval: the conv weight.s output-channel dim \(0\) has 4 entries but the BatchNorm has 5"):
        U.fuse_conv_bn_eval(conv, bn)
    with pytest.raises(ValueError, match="fuse_conv_bn_eval: the BatchNorm variables have no running statistics"):
        U.fuse_conv_bn_eval(conv, {"params": {}})
    with pytest.raises(ValueError, match=r"fuse_linear_bn_eval: to fuse, the Linear's out_features \(4\)"):
        U.fuse_linear_bn_eval({"params": {"weight": jnp.ones((4, 3))}}, bn)


def test_mixed_dtypes_scale_in_float32_and_round_once_as_torch():
    """A bfloat16 and a float32 gradient: the float32 coefficient multiplies the bfloat16 gradient in
    float32 (torch's opmath), rounded once; rounding the coefficient to bfloat16 first is off by an ulp."""
    values = ([1.0, 3.0, 5.0, 7.0], [3.0])
    ps = [torch.nn.Parameter(torch.zeros(len(v), dtype=d)) for v, d in zip(values, (torch.bfloat16, torch.float32))]
    for p, v in zip(ps, values):
        p.grad = torch.tensor(v, dtype=p.dtype)
    total_t = TU.clip_grad_norm_(ps, 1.0)
    clipped, total = U.clip_grad_norm_([jnp.asarray(values[0], jnp.bfloat16), jnp.asarray(values[1], jnp.float32)], 1.0)
    assert total.dtype == jnp.float32 and [c.dtype for c in clipped] == [jnp.bfloat16, jnp.float32]
    close(total, total_t)
    assert float(clipped[0][-1]) == 0.72265625 == ps[0].grad[-1].item()
    close([np.float32(c) for c in clipped], [p.grad.float() for p in ps], rtol=0, atol=0)


def test_empty_leaf_with_the_infinity_norm():
    for p in (math.inf, -math.inf, -1.0, -0.5):  # negative orders have no identity either (it gave 0.5 for -1)
        with pytest.raises(RuntimeError, match="cannot compute the .*norm on an empty tensor"):
            TU.get_total_norm([torch.zeros(0), torch.ones(2)], p)
        with pytest.raises(RuntimeError, match=rf"get_total_norm: cannot compute the {p} norm on an empty "
                                               r"tensor \(leaf 0, shape \(0,\)\)"):
            U.get_total_norm([jnp.zeros(0), jnp.ones(2)], p)
        with pytest.raises(RuntimeError, match=rf"get_total_norm: cannot compute the {p} norm .*leaf 1, shape \(2, 0"):
            U.clip_grad_norm_({"a": jnp.ones(2), "b": jnp.zeros((2, 0))}, 1.0, p)
    # other norms of an empty leaf are 0, as torch
    close(U.get_total_norm([jnp.zeros(0), jnp.full(2, 2.0)], 1.0),
          TU.get_total_norm([torch.zeros(0), torch.full((2,), 2.0)], 1.0))


@pytest.mark.parametrize("max_norm", [0.7, 1.3, 0.1])
def test_bfloat16_clip_coefficient_is_torchs(max_norm):
    """torch's coefficient is reciprocal(total + 1e-6) * max_norm, each rounded to bfloat16, with max_norm
    itself unrounded; dividing a rounded max_norm was a bfloat16 step off (0.1299 vs 0.1309)."""
    grads = [np.linspace(-2, 3, 7).astype(np.float32), np.linspace(1, 4, 5).astype(np.float32)]
    ps = [torch.nn.Parameter(torch.zeros(len(g), dtype=torch.bfloat16)) for g in grads]
    for p, g in zip(ps, grads):
        p.grad = torch.tensor(g).bfloat16()
    total = TU.get_total_norm([p.grad for p in ps])
    TU.clip_grads_with_norm_(ps, max_norm, total)
    ours = U.clip_grads_with_norm_([jnp.asarray(g, jnp.bfloat16) for g in grads], max_norm,
                                   jnp.asarray(total.float().numpy(), jnp.bfloat16))
    close([np.float32(c) for c in ours], [p.grad.float() for p in ps], rtol=0, atol=0)


def test_vector_to_parameters_keeps_a_tuple():
    out = U.vector_to_parameters(jnp.arange(3.0), (jnp.zeros(2), jnp.zeros(1)))
    assert type(out) is tuple and [a.tolist() for a in out] == [[0.0, 1.0], [2.0]]
    assert type(U.vector_to_parameters(jnp.arange(3.0), [jnp.zeros(2), jnp.zeros(1)])) is list


def test_vector_round_trip_of_an_nnx_models_parameters():
    """torch's ``parameters_to_vector(model.parameters())`` (a generator: it raised a TypeError) and
    ``vector_to_parameters(vec, model.parameters())``, which writes the model's parameters in place."""
    from flax import nnx as fnnx

    import jaxlayers.nnx as jnnx

    ours, theirs = jnnx.Linear(3, 2, rngs=fnnx.Rngs(0)), torch.nn.Linear(3, 2)
    ours.load_state_dict(theirs.state_dict())
    close(U.parameters_to_vector(ours.parameters()), TU.parameters_to_vector(theirs.parameters()).detach(),
          rtol=1e-6)
    TU.vector_to_parameters(torch.arange(8.0, dtype=torch.float64), theirs.parameters())
    U.vector_to_parameters(jnp.arange(8.0), ours.parameters())
    close(ours.state_dict(), {k: v.detach() for k, v in theirs.state_dict().items()})


def test_clipping_model_parameters_says_gradients_are_returned():
    """torch's ``clip_grad_norm_(model.parameters(), 1.0)`` had failed inside JAX ("dtype object is not a
    valid JAX array type")."""
    params = iter([jnp.ones(2)])
    with pytest.raises(TypeError, match=r"clip_grad_norm_: expected the gradients as a pytree.*model.parameters"):
        U.clip_grad_norm_(params, 1.0)
    from flax import nnx as fnnx

    with pytest.raises(TypeError, match=r"clip_grad_norm_: expected the gradients"):  # list(model.parameters())
        U.clip_grad_norm_([fnnx.Param(jnp.ones(2))], 1.0)
    with pytest.raises(TypeError, match=r"clip_grad_value_: expected the gradients"):
        U.clip_grad_value_((p for p in [jnp.ones(2)]), 1.0)


def test_fusion_takes_nnx_layers_and_their_eps_as_torch():
    """torch's fuse_conv_bn_eval(conv, bn) reads the BatchNorm's eps; given NNX layers (an AttributeError
    before) it does too: with eps=1e-3, 1e-5 put the fused weight 3e-4 off."""
    from flax import nnx as fnnx

    import jaxlayers.nnx as jnnx

    tc, tb = torch.nn.Conv2d(3, 4, 3).double().eval(), torch.nn.BatchNorm2d(4, eps=1e-3).double().eval()
    with torch.no_grad():
        tb.running_mean.uniform_(-1, 1), tb.running_var.uniform_(0.1, 0.3)
    conv, bn = jnnx.Conv2d(3, 4, 3, rngs=fnnx.Rngs(0)).double(), jnnx.BatchNorm2d(4, eps=1e-3, rngs=fnnx.Rngs(0)).double()
    conv.load_state_dict(tc.state_dict()), bn.load_state_dict(tb.state_dict())
    with pytest.raises(ValueError, match="fuse_conv_bn_eval: fusion only for eval"):  # torch asserts too
        U.fuse_conv_bn_eval(conv, bn)
    fused, want = U.fuse_conv_bn_eval(conv=conv.eval(), bn=bn.eval()), torch.nn.utils.fusion.fuse_conv_bn_eval(tc, tb)
    close(fused["params"], {"weight": want.weight.detach(), "bias": want.bias.detach()}, rtol=1e-12)
    with pytest.raises(TypeError, match="fuse_linear_bn_eval: expected the Linear's variables"):
        U.fuse_linear_bn_eval([1.0], bn)
