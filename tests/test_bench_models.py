"""The benchmark models (benchmarks/models.py): the jaxlayers twins load the torch
models' state_dicts and match them in float64 (eval outputs; training-mode outputs,
BatchNorm buffer updates and every parameter's gradient); the three frameworks
build the same architecture (parameter counts); the NNX ResNet gives its linen
twin's outputs."""

import pathlib
import sys
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
from flax import nnx as fnnx

from jaxlayers import interop
from oracle import close, to_torch, variables_from_torch

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1] / "benchmarks"))

import bench_models  # noqa: E402
import models as M  # noqa: E402

V, S, N = 11, 8, 2
LM_KW = {
    "transformer": dict(vocab_size=V, d_model=16, nhead=2, num_layers=2, dim_feedforward=24, max_len=S),
    "lstm": dict(vocab_size=V, embed_dim=6, hidden_size=8, num_layers=2),
}


def _build(name, framework):
    if name == "resnet18":
        return M.resnet(framework, 18, num_classes=5, width=8)
    if name == "bottleneck_imagenet_stem":  # ResNet-50's pieces, two stages (cheaper to compile)
        cls = {"jaxlayers": M.JLResNet, "flax": M.FlaxResNet, "torch": M.TorchResNet}[framework]
        return cls(block="bottleneck", layers=(1, 1), num_classes=5, width=4, small_input=False)
    if name == "mobilenet_v2":  # three stages at a quarter width: every block kind, strides 1 and 2
        return M.mobilenet_v2(framework, num_classes=5, width_mult=0.25,
                              settings=((1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 1, 2)))
    return (M.transformer_lm if name == "transformer" else M.lstm_lm)(framework, **LM_KW[name])


def _input(name, rng):
    if name == "resnet18":
        return rng.normal(size=(N, 3, 16, 16))
    if name in ("bottleneck_imagenet_stem", "mobilenet_v2"):
        return rng.normal(size=(N, 3, 32, 32))
    return rng.integers(0, V, (N, S))


@partial(jax.jit, static_argnums=0)
def _eval(j_model, variables, x):
    """A jaxlayers (linen) model's eval output; one compile per model and shapes, shared by the tests."""
    return j_model.apply(variables, x, train=False)


def _torch_train_grads(t_model, x, rng):
    """torch's training-mode output for ``x``, the cotangent used, and the gradients of
    ``sum(out * cot)`` w.r.t. every parameter (and ``x`` when floating) by state_dict key."""
    t_model.train()
    xt = to_torch(x, requires_grad=np.issubdtype(x.dtype, np.floating))
    out = t_model(xt)
    cot = rng.normal(size=out.shape)
    (out * to_torch(cot)).sum().backward()
    grads = {k: p.grad.numpy() for k, p in t_model.named_parameters()}
    if xt.requires_grad:
        grads["input"] = xt.grad.numpy()
    return out.detach().numpy(), cot, grads


def _buffers(t_model):
    return {k: v.numpy() for k, v in t_model.state_dict().items() if k.rsplit(".", 1)[-1] in interop.BUFFER_NAMES}


def _jax_train_grads(j_model, variables, x, cot):
    """jaxlayers' training-mode output, updated batch_stats and gradients (as torch's keys)."""
    has_bn = "batch_stats" in variables
    wrt_x = jnp.issubdtype(x.dtype, jnp.floating)

    def loss(params, x):
        if has_bn:
            out, upd = j_model.apply({**variables, "params": params}, x, train=True, mutable=["batch_stats"])
            stats = upd["batch_stats"]
        else:
            out, stats = j_model.apply({**variables, "params": params}, x, train=True), {}
        return jnp.sum(out * cot), (out, stats)

    argnums = (0, 1) if wrt_x else (0,)
    g, (out, stats) = jax.grad(loss, argnums=argnums, has_aux=True)(variables["params"], x)
    g_params = g[0]
    grads = interop.flatten_variables(g_params)
    if wrt_x:
        grads["input"] = g[1]
    return out, interop.flatten_variables(stats), grads


@pytest.mark.parametrize("name", ["resnet18", "bottleneck_imagenet_stem", "mobilenet_v2", "transformer", "lstm"])
def test_jaxlayers_model_eval_matches_torch(name, rng):
    """The whole model in eval mode from the torch twin's weights (float64)."""
    torch.manual_seed(0)
    t_model, j_model = _build(name, "torch").eval(), _build(name, "jaxlayers")
    x = _input(name, rng)
    with torch.no_grad():
        expected = t_model(to_torch(x)).numpy()
    out = _eval(j_model, variables_from_torch(t_model), jnp.asarray(x))
    close(out, expected)


def test_nnx_resnet_matches_linen_twin_and_torch(rng):
    """The NNX ResNet-18 (bench_nnx's) takes the torch twin's state_dict under torch's keys and
    gives the linen jaxlayers twin's eval outputs exactly, and torch's (float64)."""
    torch.manual_seed(0)
    t_model, j_model = _build("resnet18", "torch").eval(), _build("resnet18", "jaxlayers")
    model = M.resnet("nnx", 18, num_classes=5, width=8, param_dtype=jnp.float64)
    assert list(model.state_dict()) == list(t_model.state_dict())
    model.load_state_dict(t_model.state_dict())
    assert not model.eval().layer4[1].bn2.training
    x = jnp.asarray(_input("resnet18", rng))
    out = fnnx.jit(lambda m, x: m(x))(model, x)
    np.testing.assert_array_equal(out, _eval(j_model, variables_from_torch(t_model), x))
    with torch.no_grad():
        close(out, t_model(to_torch(x)).numpy())


@pytest.mark.parametrize("name", ["transformer", "lstm"])
def test_jaxlayers_lm_training_matches_torch(name, rng):
    """Training-mode logits and every parameter's gradient of the whole LM."""
    torch.manual_seed(0)
    t_model, j_model = _build(name, "torch"), _build(name, "jaxlayers")
    x = _input(name, rng)
    variables = variables_from_torch(t_model)
    t_out, cot, t_grads = _torch_train_grads(t_model, x, rng)
    out, _, grads = jax.jit(partial(_jax_train_grads, j_model))(variables, jnp.asarray(x), jnp.asarray(cot))
    close(out, t_out)
    close(grads, t_grads, rtol=1e-9)


@pytest.mark.parametrize("block", ["basic", "bottleneck", "inverted_residual"])
def test_jaxlayers_block_training_matches_torch(block, rng):
    """A ResNet block (strided, with its downsample shortcut) and a MobileNetV2 block (residual,
    depthwise) in training mode: output, BatchNorm buffer updates, gradients w.r.t. the input and
    every parameter."""
    torch.manual_seed(0)
    if block == "basic":
        t_model, j_model = M.TorchBasicBlock(4, 8, 2), M.JLBasicBlock(4, 8, 2)
    elif block == "bottleneck":
        t_model, j_model = M.TorchBottleneck(8, 4, 2), M.JLBottleneck(8, 4, 2)
    else:
        t_model, j_model = M.TorchInvertedResidual(4, 4, 1, 3), M.JLInvertedResidual(4, 4, 1, 3)
    x = rng.normal(size=(N, 4 if block == "inverted_residual" else t_model.conv1.in_channels, 6, 6))
    variables = variables_from_torch(t_model)
    t_out, cot, t_grads = _torch_train_grads(t_model, x, rng)
    out, stats, grads = jax.jit(partial(_jax_train_grads, j_model))(variables, jnp.asarray(x), jnp.asarray(cot))
    close(out, t_out)
    close(stats, _buffers(t_model))
    close(grads, t_grads, rtol=1e-9)


def _num_params(tree):
    return sum(int(np.prod(a.shape)) for a in jax.tree.leaves(tree))


@pytest.mark.parametrize("name", ["resnet18", "bottleneck_imagenet_stem", "mobilenet_v2", "transformer", "lstm"])
def test_same_architecture_in_three_frameworks(name, rng):
    x = _input(name, rng)
    t_count = sum(p.numel() for p in _build(name, "torch").parameters())
    xj = jnp.asarray(x)
    j_vars = jax.eval_shape(lambda: _build(name, "jaxlayers").init(jax.random.key(0), xj, train=False))
    xf = xj if name in LM_KW else jnp.asarray(x.transpose(0, 2, 3, 1))
    f_vars = jax.eval_shape(lambda: _build(name, "flax").init(jax.random.key(0), xf, train=False))
    assert _num_params(j_vars["params"]) == t_count
    f_out = jax.eval_shape(lambda v: _build(name, "flax").apply(v, xf, train=False), f_vars)
    if name == "lstm":  # flax's LSTM cell has one bias per gate, torch's two
        kw = LM_KW["lstm"]
        assert _num_params(f_vars["params"]) == t_count - kw["num_layers"] * 4 * kw["hidden_size"]
        assert f_out.shape == (N, S, V)
    else:
        assert _num_params(f_vars["params"]) == t_count
        assert f_out.shape == ((N, S, V) if name in LM_KW else (N, 5))
        if name not in LM_KW:
            assert _num_params(f_vars["batch_stats"]) == 2 * sum(
                m.num_features for m in _build(name, "torch").modules() if isinstance(m, torch.nn.BatchNorm2d))


def test_count_relayouts():
    """Transposes and copies that move elements count; layout bitcasts and size-1 dims do not."""
    hlo = "\n".join([
        "  %p = f32[3,2]{1,0} parameter(0)",
        "  %q = f32[4,1]{1,0} parameter(1)",
        "  %t.1 = f32[2,3]{1,0} transpose(%p), dimensions={1,0}",  # moves
        "  %t.2 = f32[2,3]{0,1} transpose(%p), dimensions={1,0}",  # bitcast
        "  %c = f32[2,3]{0,1} copy(%t.1)",  # moves
        "  %c.2 = f32[2,3]{1,0} copy(%t.1), metadata={op_name=\"x\"}",  # same layout
        "  ROOT %u = f32[1,4]{0,1} transpose(%q), dimensions={1,0}",  # only a size-1 dim moves
        "  %transpose_copy_fusion = f32[3,2]{1,0} fusion(%p), kind=kLoop",
    ])
    assert bench_models.count_relayouts(hlo) == 2


def test_builder_errors():
    with pytest.raises(ValueError, match="resnet: depth must be one of"):
        M.resnet("torch", 19)
    with pytest.raises(ValueError, match="models: framework must be one of"):
        M.lstm_lm("keras")
