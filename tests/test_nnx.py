"""jaxlayers.nnx: the NNX front end against torch (float64) and against its linen twin.

One table of (layer, arguments, inputs) with one layer per family; each row is
checked for torch's state_dict keys, torch's outputs and gradients (eval mode,
weights loaded with ``load_state_dict``) and bit-equality with the linen layer in
training mode (same weights, same explicit key).  Then the NNX-specific
behaviour: train()/eval() (one trace per mode), running statistics over training
steps, nnx.Optimizer vs linen + optax, split/merge, vmap, lazy layers, the
containers, and that every linen Module class has an NNX counterpart.
"""

from __future__ import annotations

import copy
from collections import OrderedDict

import flax.linen as fnn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
import torch
from flax import nnx as fnnx

import jaxlayers.nn as nn
import jaxlayers.nnx as jnnx
from jaxlayers import init as jinit
from jaxlayers import interop
from oracle import close, compiles, to_numpy, to_torch

F64 = {"param_dtype": jnp.float64}


def _float_leaves(tree):
    return [a for a in jax.tree_util.tree_leaves(tree) if jnp.issubdtype(jnp.asarray(a).dtype, jnp.floating)]


def _torch_leaves(out):
    if isinstance(out, torch.Tensor):
        return [out]
    return [t for o in out if o is not None for t in _torch_leaves(o)]


# name, args, kwargs (ours only add param_dtype), input shapes (ints: an int input with that many classes)
CASES = {
    "Linear": ((4, 3), {}, [(2, 4)]),
    "Conv2d": ((2, 3, 3), {"padding": 1}, [(1, 2, 5, 5)]),
    "ConvTranspose2d": ((2, 3, 3), {"stride": 2}, [(1, 2, 3, 3)]),
    "BatchNorm2d": ((3,), {}, [(2, 3, 2, 2)]),
    "LayerNorm": ((3,), {}, [(2, 3)]),
    "GroupNorm": ((2, 4), {}, [(2, 4, 3)]),
    "MaxPool2d": ((2,), {"return_indices": True}, [(1, 2, 4, 4)]),
    "AdaptiveAvgPool2d": ((2,), {}, [(1, 2, 5, 5)]),
    "Dropout": ((0.5,), {}, [(3, 4)]),
    "Embedding": ((10, 3), {"padding_idx": 0}, [("int", (2, 3), 10)]),
    "LSTM": ((3, 4), {"batch_first": True}, [(2, 3, 3)]),
    "MultiheadAttention": ((4, 2), {"add_bias_kv": True}, [(3, 2, 4)] * 3),  # own bias_k before out_proj
    "TransformerEncoderLayer": ((4, 2, 8), {}, [(3, 2, 4)]),
    "PReLU": ((), {}, [(2, 3)]),
    "Sequential": (None, {}, [(2, 4)]),
}
HAS_PARAMS = {"Linear", "Conv2d", "ConvTranspose2d", "BatchNorm2d", "LayerNorm", "GroupNorm", "Embedding",
              "LSTM", "MultiheadAttention", "TransformerEncoderLayer", "PReLU"}


def _inputs(shapes, seed=0):
    r = np.random.default_rng(seed)
    return [r.integers(0, s[2], s[1]) if s[0] == "int" else r.standard_normal(s) for s in shapes]


def _build(name, rngs):
    """(torch module, NNX module, linen module) for one row."""
    args, kwargs, _ = CASES[name]
    if name == "Sequential":
        tm = torch.nn.Sequential(torch.nn.Linear(4, 5), torch.nn.Tanh(), torch.nn.Linear(5, 2))
        ours = jnnx.Sequential(jnnx.Linear(4, 5, rngs=rngs, **F64), jnnx.Tanh(), jnnx.Linear(5, 2, rngs=rngs, **F64))
        return tm, ours, nn.Sequential(nn.Linear(4, 5, **F64), nn.Tanh(), nn.Linear(5, 2, **F64))
    extra = F64 if name in HAS_PARAMS else {}
    tm = getattr(torch.nn, name)(*args, **kwargs)
    return tm, getattr(jnnx, name)(*args, rngs=rngs, **kwargs, **extra), getattr(nn, name)(*args, **kwargs, **extra)


@pytest.mark.parametrize("name", list(CASES))
def test_layer_matches_torch_and_linen(name):
    torch.manual_seed(0)
    tm, ours, linen = _build(name, fnnx.Rngs(1))
    sd = tm.state_dict()
    # torch's keys in torch's order, before any call (variables exist after construction)
    assert list(ours.state_dict()) == list(sd)
    for key, value in ours.state_dict().items():
        assert value.shape == tuple(sd[key].shape), key
    ours.load_state_dict(sd)
    close(ours.state_dict(), {k: v.numpy() for k, v in sd.items()})
    inputs = _inputs(CASES[name][2])

    # eval mode: outputs and gradients (input and every parameter) equal torch's
    tm.eval()
    ours.eval()
    tin = [to_torch(a, requires_grad=a.dtype.kind == "f") for a in inputs]
    tout = tm(*tin)
    cots = [np.random.default_rng(7).standard_normal(t.shape) for t in _torch_leaves(tout) if t.is_floating_point()]
    sum(((t * to_torch(c)).sum() for t, c in zip([t for t in _torch_leaves(tout) if t.is_floating_point()], cots)),
        torch.zeros(())).backward()

    def loss(model, *xs):
        out = model(*xs)
        return sum(jnp.sum(o * c) for o, c in zip(_float_leaves(out), cots)), out

    diff = tuple(i + 1 for i, a in enumerate(inputs) if a.dtype.kind == "f")
    vg = fnnx.jit(fnnx.value_and_grad(loss, argnums=(0, *diff), has_aux=True))
    (_, out), grads = vg(ours, *inputs)
    close(jax.tree_util.tree_leaves(out), [to_numpy(t) for t in jax.tree_util.tree_leaves(tout)])
    param_grads = {".".join(map(str, p)): v.get_value() for p, v in fnnx.to_flat_state(grads[0])}
    torch_grads = {k: p.grad.numpy() for k, p in tm.named_parameters() if p.grad is not None}
    assert set(param_grads) == {k for k, _ in tm.named_parameters()}
    close(param_grads, torch_grads)
    for g, i in zip(grads[1:], diff):
        close(g, tin[i - 1].grad.numpy())

    # training mode: bit-equal to the linen layer with the same variables and key,
    # running statistics updated in place as linen's mutable batch_stats
    ours.train()
    variables = interop.state_dict_to_variables(sd)
    key = jax.random.key(3)
    kwargs = {"train": True} if name != "Sequential" and "train" in _call_params(linen) else {}
    if name == "Sequential":  # the NNX container splits the key per child: compare in eval mode instead
        ours.eval()
        kwargs = {"train": False}
    mutable = ["batch_stats"] if kwargs.get("train") else False

    # layers drawing one key take it as `rng=` (the NNX call passes its key there)
    keys = {"rng": key} if "rng" in _call_params(linen) else {"rngs": {"dropout": key}}

    @fnnx.jit  # both in one compile, the variables as arguments on both sides
    def both(m, v, *xs):
        got = m(*xs, rngs=key) if kwargs.get("train") else m(*xs)
        return got, linen.apply(v, *xs, mutable=mutable, **keys, **kwargs)

    got, want = both(ours, variables, *inputs)
    if not mutable:
        want = (want, {})
    for a, b in zip(jax.tree_util.tree_leaves(got), jax.tree_util.tree_leaves(want[0])):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    if "batch_stats" in want[1]:
        close({k: v for k, v in ours.state_dict().items() if k in interop.flatten_variables(want[1]["batch_stats"])},
              interop.flatten_variables(want[1]["batch_stats"]), rtol=0, atol=0)


def _call_params(module):
    import inspect

    return inspect.signature(type(module).__call__).parameters


@pytest.mark.parametrize("name,shape", [("SwitchNorm1d", (4, 3)), ("SwitchNorm2d", (2, 3, 2, 2))])
def test_switch_norm_builds_its_variables_at_construction(name, shape):
    """The constructor's probe input has the layer's rank (SwitchNorm1d takes (N, C): it was given
    (N, C, L) and raised); the NNX layer equals its linen twin in training."""
    ours = getattr(jnnx, name)(3, rngs=fnnx.Rngs(0))
    x = jnp.asarray(np.random.default_rng(0).standard_normal(shape))
    variables = {"params": {k: v for k, v in ours.state_dict().items() if "running" not in k},
                 "batch_stats": {k: v for k, v in ours.state_dict().items() if "running" in k}}
    want, _ = getattr(nn, name)(3).apply(variables, x, train=True, mutable=["batch_stats"])
    close(ours(x), want)


def test_every_linen_module_has_an_nnx_counterpart():
    """Generic: when a family lands in jaxlayers.nn, its NNX classes exist with no further code."""
    names = getattr(nn, "__all__", None) or [n for n in dir(nn) if not n.startswith("_")]
    modules = [n for n in names if isinstance(getattr(nn, n, None), type) and issubclass(getattr(nn, n), fnn.Module)]
    assert len(modules) > 100
    native = {"Sequential", "ModuleList", "ModuleDict", "ParameterList", "ParameterDict"}
    for n in modules:
        cls = getattr(jnnx, n)
        assert issubclass(cls, fnnx.Module) and issubclass(cls, jnnx.Module), n
        assert n in jnnx.__all__, n
        if n not in native:
            assert cls._linen_cls is getattr(nn, n), n
    for n in native:
        assert issubclass(getattr(jnnx, n), jnnx.Module)


def _net(rngs, p=0.5):
    return jnnx.Sequential(OrderedDict(
        conv=jnnx.Conv2d(1, 2, 3, padding=1, rngs=rngs), bn=jnnx.BatchNorm2d(2, rngs=rngs), relu=jnnx.ReLU(),
        flat=jnnx.Flatten(), drop=jnnx.Dropout(p, rngs=rngs), fc=jnnx.Linear(18, 3, rngs=rngs)))


def test_train_eval_switch_and_one_trace_per_mode():
    model = _net(fnnx.Rngs(0))
    assert model.training and model.bn.training and model.drop.training
    traces = []

    @fnnx.jit
    def fwd(m, x):
        traces.append(1)
        return m(x)

    x = jnp.asarray(np.random.default_rng(0).standard_normal((4, 1, 3, 3)), jnp.float32)
    a, b = fwd(model, x), fwd(model, x)
    assert not np.array_equal(a, b)  # a new dropout mask per call
    assert int(model.bn.num_batches_tracked[...]) == 2
    assert model.eval() is model and not model.training and not model.drop.training
    c, d = fwd(model, x), fwd(model, x)
    np.testing.assert_array_equal(c, d)
    assert int(model.bn.num_batches_tracked[...]) == 2  # eval: running stats untouched
    model.train()
    fwd(model, x)
    assert len(traces) == 2  # one trace per mode
    # Flax's own flags: nnx.view, set_attributes; a flax nnx.Dropout child follows train()/eval()
    view = fnnx.view(model, deterministic=True, use_running_average=True)
    assert not view.bn.training and not view.drop.training and model.bn.training
    model.set_attributes(use_running_average=True)  # freeze BatchNorm, keep dropout
    assert not model.bn.training and model.drop.training
    mixed = jnnx.Sequential(jnnx.Linear(3, 3, rngs=fnnx.Rngs(0)), fnnx.Dropout(0.5, rngs=fnnx.Rngs(1)))
    mixed.eval()
    assert mixed[1].deterministic
    x = jnp.ones((2, 3))
    np.testing.assert_array_equal(mixed(x), mixed[0](x))
    with pytest.raises(TypeError, match="train: mode must be a bool"):
        model.train("yes")


def test_batchnorm_buffers_match_torch_after_training_steps():
    tm = torch.nn.Sequential(torch.nn.Conv2d(2, 3, 3), torch.nn.BatchNorm2d(3, momentum=0.2))
    ours = jnnx.Sequential(jnnx.Conv2d(2, 3, 3, rngs=fnnx.Rngs(0), **F64),
                           jnnx.BatchNorm2d(3, momentum=0.2, rngs=fnnx.Rngs(0), **F64))
    ours.load_state_dict(tm.state_dict())
    step = fnnx.jit(lambda m, x: m(x))
    for i in range(3):
        x = np.random.default_rng(i).standard_normal((4, 2, 5, 5))
        close(step(ours, x), tm(to_torch(x)))
    sd = tm.state_dict()
    assert int(sd["1.num_batches_tracked"]) == 3
    close(ours.state_dict(), {k: v.numpy() for k, v in sd.items()})


def test_optimizer_step_equals_linen_and_optax():
    rngs = fnnx.Rngs(0)
    model = jnnx.Sequential(jnnx.Linear(4, 6, rngs=rngs, **F64), jnnx.BatchNorm1d(6, rngs=rngs, **F64),
                            jnnx.ReLU(), jnnx.Linear(6, 2, rngs=rngs, **F64))
    linen = nn.Sequential(nn.Linear(4, 6, **F64), nn.BatchNorm1d(6, **F64), nn.ReLU(), nn.Linear(6, 2, **F64))
    variables = interop.state_dict_to_variables(model.state_dict())
    tx = optax.sgd(0.1, momentum=0.9)
    x, y = np.random.default_rng(0).standard_normal((8, 4)), np.random.default_rng(1).standard_normal((8, 2))

    opt = fnnx.Optimizer(model, tx, wrt=fnnx.Param)

    @fnnx.jit
    def nnx_step(model, opt):
        loss, grads = fnnx.value_and_grad(lambda m: jnp.mean((m(x) - y) ** 2))(model)
        opt.update(model, grads)
        return loss

    def linen_loss(params, stats):
        out, upd = linen.apply({"params": params, "batch_stats": stats}, x, train=True, mutable=["batch_stats"])
        return jnp.mean((out - y) ** 2), upd["batch_stats"]

    params, stats, opt_state = variables["params"], variables["batch_stats"], tx.init(variables["params"])
    @jax.jit
    def linen_step(params, stats, opt_state):
        (loss, stats), grads = jax.value_and_grad(linen_loss, has_aux=True)(params, stats)
        updates, opt_state = tx.update(grads, opt_state, params)
        return loss, optax.apply_updates(params, updates), stats, opt_state

    for _ in range(2):
        loss = nnx_step(model, opt)
        want_loss, params, stats, opt_state = linen_step(params, stats, opt_state)
        close(loss, want_loss, rtol=1e-13)
    close(model.state_dict(), interop.variables_to_state_dict({"params": params, "batch_stats": stats}), rtol=1e-12)


def test_split_merge_state_dict_round_trip_and_strict_report():
    model = _net(fnnx.Rngs(0)).eval()
    x = jnp.ones((2, 1, 3, 3))
    graphdef, state = fnnx.split(model)
    merged = fnnx.merge(graphdef, state)
    np.testing.assert_array_equal(merged(x), model(x))
    assert list(merged.state_dict()) == list(model.state_dict())  # torch's order survives merge
    other = _net(fnnx.Rngs(5)).eval()
    assert not np.array_equal(other(x), model(x))
    report = other.load_state_dict(model.state_dict())
    assert report.ok
    with pytest.raises(ValueError, match="read-only"):  # torch's shares memory: a write there loads a weight
        np.copyto(other.state_dict()["conv.bias"], 7.0)
    np.testing.assert_array_equal(other(x), model(x))
    assert [k for k, _ in model.named_parameters()] == ["conv.weight", "conv.bias", "bn.weight", "bn.bias",
                                                        "fc.weight", "fc.bias"]
    assert [k for k, _ in model.named_buffers()] == ["bn.running_mean", "bn.running_var", "bn.num_batches_tracked"]
    assert len(list(model.parameters())) == 6 and all(isinstance(p, fnnx.Param) for p in model.parameters())
    assert [n for n, _ in model.named_children()] == ["conv", "bn", "relu", "flat", "drop", "fc"]
    assert len(list(model.modules())) == 7 and list(model.children())[0] is model.conv
    assert isinstance(model.state_dict(keep_vars=True)["bn.running_mean"], fnnx.BatchStat)

    sd = model.state_dict()
    bad = {k: v for k, v in sd.items() if k != "fc.bias"}
    bad["fc.extra"] = np.zeros(1)
    bad["conv.weight"] = np.zeros((1, 1, 1, 1))
    with pytest.raises(interop.StateDictMismatchError) as err:
        other.load_state_dict(bad)
    msg = str(err.value)
    assert "fc.bias" in msg and "fc.extra" in msg and "conv.weight" in msg
    del bad["conv.weight"]
    report = other.load_state_dict(bad, strict=False)
    assert report.missing == ("conv.weight", "fc.bias") and report.unexpected == ("fc.extra",)


def test_vmap_ensemble_scan_and_vmap_over_inputs():
    @fnnx.split_rngs(splits=3)
    @fnnx.vmap(in_axes=(0,), out_axes=0)
    def ensemble(rngs):
        return jnnx.Linear(4, 4, rngs=rngs)

    models = ensemble(fnnx.Rngs(0))
    assert models.weight.shape == (3, 4, 4)
    x = jnp.asarray(np.random.default_rng(0).standard_normal((5, 4)), jnp.float32)
    w, b = np.asarray(models.weight[...], np.float64), np.asarray(models.bias[...], np.float64)
    out = fnnx.vmap(lambda m, x: m(x), in_axes=(0, None))(models, x)
    close(out, np.einsum("ni,koi->kno", np.asarray(x), w) + b[:, None], rtol=1e-5, atol=1e-6)

    @fnnx.scan(in_axes=(fnnx.Carry, 0), out_axes=fnnx.Carry)
    def stack(x, layer):  # the three layers applied in turn, one compiled body
        return layer(x)

    want = np.asarray(x, np.float64)
    for k in range(3):
        want = want @ w[k].T + b[k]
    close(stack(x, models), want, rtol=1e-5, atol=1e-5)
    single = jnnx.Linear(4, 2, rngs=fnnx.Rngs(0))
    close(fnnx.vmap(lambda m, x: m(x), in_axes=(None, 0))(single, x[:, None]), single(x)[:, None], rtol=1e-6)


def test_lazy_layers_create_variables_at_the_first_call():
    linen = nn.LazyConv2d(4, 3, padding=1)
    model = jnnx.LazyConv2d(4, 3, padding=1, rngs=fnnx.Rngs(0))
    assert model.state_dict() == {}
    x = jnp.asarray(np.random.default_rng(0).standard_normal((1, 2, 4, 4)), jnp.float32)
    y = fnnx.jit(lambda m, x: m(x))(model, x)  # created inside nnx.jit, propagated out
    assert {k: v.shape for k, v in model.state_dict().items()} == {"weight": (4, 2, 3, 3), "bias": (4,)}
    np.testing.assert_array_equal(y, linen.apply(interop.state_dict_to_variables(model.state_dict()), x))
    np.testing.assert_array_equal(model(x), y)
    with pytest.raises(ValueError, match="LazyConv2d"):
        model(jnp.ones((1, 3, 4, 4)))


def test_embedding_from_pretrained_and_from_linen():
    table = np.arange(12.0).reshape(4, 3)
    emb = jnnx.Embedding.from_pretrained(table)
    np.testing.assert_array_equal(emb(jnp.array([2, 0])), table[[2, 0]])
    linen = nn.LayerNorm(3)
    variables = linen.init(jax.random.key(0), jnp.ones((1, 3)))
    wrapped = jnnx.from_linen(linen, variables)
    assert isinstance(wrapped, jnnx.LayerNorm) and list(wrapped.state_dict()) == ["weight", "bias"]
    x = jnp.arange(6.0).reshape(2, 3)
    np.testing.assert_array_equal(wrapped(x), linen.apply(variables, x))


def test_eager_calls_trace_nothing_after_the_first():
    """An eager call runs the layer's apply compiled once per configuration and shapes: linen's
    apply traced every parameter's initializer again (a Linear call took 1.2 ms, flax.nnx 0.16)."""
    x = jnp.asarray(np.random.default_rng(0).normal(size=(4, 3, 5, 5)), jnp.float32)
    layers = [jnnx.Conv2d(3, 4, 3, rngs=fnnx.Rngs(0)), jnnx.BatchNorm2d(3, rngs=fnnx.Rngs(0)),
              jnnx.Dropout(0.3, rngs=fnnx.Rngs(0))]
    with compiles("/jax/core/compile/jaxpr_trace_duration") as traces:
        for layer in layers:
            first = layer(x)
            before = len(traces)
            second = layer(x)
            assert len(traces) == before, type(layer).__name__
            if isinstance(layer, jnnx.Dropout):  # a fresh mask per call
                assert not np.array_equal(first, second)
    assert float(layers[1].num_batches_tracked.get_value()) == 2  # the running statistics were written back
    # calls whose values are checked eagerly (indices, losses) keep their errors: not traced
    with pytest.raises(IndexError, match="Embedding: index 12 is out of range"):
        jnnx.Embedding(10, 3, rngs=fnnx.Rngs(0))(jnp.array([12]))
    with pytest.raises(ValueError, match="BCELoss: all elements of input should be between 0 and 1"):
        jnnx.BCELoss()(jnp.array([1.5]), jnp.array([1.0]))


def test_fractional_max_pool_draws_windows_in_every_mode():
    """torch's FractionalMaxPool draws random windows in training and eval alike: the keys
    come from the constructor's rngs (advancing, under nnx.jit too) or the call's rngs=key,
    and equal the linen layer's with the same key."""
    x = jnp.asarray(np.random.default_rng(0).normal(size=(2, 3, 9, 9)))
    pool = jnnx.FractionalMaxPool2d(2, output_size=4, rngs=fnnx.Rngs(0))
    first, second = pool(x), fnnx.jit(lambda m, a: m(a))(pool, x)
    assert first.shape == (2, 3, 4, 4) and not np.array_equal(first, second)
    assert pool.eval()(x).shape == (2, 3, 4, 4)
    key = jax.random.key(3)
    got = jnnx.FractionalMaxPool3d(2, output_ratio=0.5, return_indices=True)(x[:, :, None].repeat(4, 2), rngs=key)
    want = nn.FractionalMaxPool3d(2, output_ratio=0.5, return_indices=True).apply(
        {}, x[:, :, None].repeat(4, 2), rng=key)
    for g, w in zip(got, want):
        np.testing.assert_array_equal(g, w)
    with pytest.raises(ValueError, match="FractionalMaxPool2d: needs randomness in every call"):
        jnnx.FractionalMaxPool2d(2, output_size=4)(x)


def test_containers_nest_as_torch():
    """A ModuleList of ModuleLists (transformer and U-Net blocks), a ModuleDict of ModuleLists and a
    Sequential holding a ParameterList: torch's keys, and a torch state_dict loads into them."""
    rngs = fnnx.Rngs(0)
    net = jnnx.Sequential(OrderedDict(
        blocks=jnnx.ModuleList([jnnx.ModuleList([jnnx.Linear(2, 3, rngs=rngs)]) for _ in range(2)]),
        heads=jnnx.ModuleDict({"a": jnnx.ModuleList([jnnx.Linear(3, 1, rngs=rngs)])}),
        extra=jnnx.ParameterList([jnp.ones(2)])))
    tnet = torch.nn.Sequential(OrderedDict(
        blocks=torch.nn.ModuleList([torch.nn.ModuleList([torch.nn.Linear(2, 3)]) for _ in range(2)]),
        heads=torch.nn.ModuleDict({"a": torch.nn.ModuleList([torch.nn.Linear(3, 1)])}),
        extra=torch.nn.ParameterList([torch.ones(2)])))
    assert list(net.state_dict()) == list(tnet.state_dict())
    net.load_state_dict(tnet.state_dict())
    close(net.blocks[1][0].weight[...], tnet.blocks[1][0].weight.detach().numpy(), rtol=1e-6)
    assert net.blocks[np.int64(1)] is net.blocks[1]  # any integer index, as torch


def test_sequential_list_edits_as_torch():
    """del (renumbering named children too), insert, pop, item assignment and + give torch's keys."""
    rngs = fnnx.Rngs(0)
    j = jnnx.Sequential(OrderedDict(a=jnnx.Linear(2, 2, rngs=rngs), b=jnnx.Tanh(), c=jnnx.Linear(2, 3, rngs=rngs)))
    t = torch.nn.Sequential(OrderedDict(a=torch.nn.Linear(2, 2), b=torch.nn.Tanh(), c=torch.nn.Linear(2, 3)))
    edits = [lambda m, nn_: m.__delitem__(1), lambda m, nn_: m.insert(1, nn_.ReLU()),
             lambda m, nn_: m.pop(0), lambda m, nn_: m.__setitem__(-1, nn_.Identity())]
    for edit in edits:
        edit(j, jnnx), edit(t, torch.nn)
        assert list(j.state_dict()) == list(t.state_dict()) and len(j) == len(t)
    assert list((j + j).state_dict()) == list((t + t).state_dict())


def test_containers_use_torch_keys():
    class Net(jnnx.Module):
        def __init__(self, rngs):
            self.blocks = jnnx.ModuleDict({"conv": jnnx.Conv2d(1, 2, 3, rngs=rngs), "act": jnnx.ReLU()})
            self.heads = jnnx.ModuleList([jnnx.Linear(2, 2, rngs=rngs) for _ in range(3)])
            self.scales = jnnx.ParameterList([jnp.ones(2), jnp.zeros((2, 2))])
            self.extra = jnnx.ParameterDict({"shift": jnp.zeros(3)})

    class TNet(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.blocks = torch.nn.ModuleDict({"conv": torch.nn.Conv2d(1, 2, 3), "act": torch.nn.ReLU()})
            self.heads = torch.nn.ModuleList([torch.nn.Linear(2, 2) for _ in range(3)])
            self.scales = torch.nn.ParameterList([torch.ones(2), torch.zeros(2, 2)])
            self.extra = torch.nn.ParameterDict({"shift": torch.zeros(3)})

    net, tnet = Net(fnnx.Rngs(0)), TNet()
    assert list(net.state_dict()) == list(tnet.state_dict())
    net.load_state_dict(tnet.state_dict())
    close(net.heads[1].weight[...], tnet.heads[1].weight.detach().numpy(), rtol=1e-6)
    net.eval()
    assert not net.heads[2].training
    ml = net.heads
    assert len(ml) == 3 and ml[-1] is ml[2] and len(ml[1:]) == 2 and ml[1:][0] is ml[1]
    first = ml[0]
    del ml[0]
    assert len(ml) == 2 and [k for k, _ in ml.named_children()] == ["0", "1"] and ml[0] is not first
    ml.insert(0, first)
    assert ml[0] is first and len(ml) == 3
    assert "conv" in net.blocks and list(net.blocks.keys()) == ["conv", "act"]
    assert isinstance(net.scales[1], fnnx.Param) and net.extra["shift"].shape == (3,)
    seq = jnnx.Sequential(jnnx.Linear(2, 2, rngs=fnnx.Rngs(0)), jax.nn.relu)
    assert len(seq) == 2 and list(seq)[1] is jax.nn.relu and seq.append(jnnx.Tanh())[2] is not None
    assert list(seq[1:].state_dict()) == [] and list(seq[:1].state_dict()) == ["0.weight", "0.bias"]


def test_errors_name_the_layer():
    with pytest.raises(TypeError, match="Linear: creating its parameters needs a key"):
        jnnx.Linear(4, 3)
    with pytest.raises(ValueError, match="Conv2d"):
        jnnx.Conv2d(3, 4, 3, groups=2, rngs=fnnx.Rngs(0))  # the linen dataclass's check, run once
    with pytest.raises(ValueError, match=r"Linear: expected input with last dimension 4"):
        jnnx.Linear(4, 3, rngs=fnnx.Rngs(0))(jnp.ones((2, 5)))
    with pytest.raises(ValueError, match="Dropout: training mode needs randomness"):
        jnnx.Dropout(0.5)(jnp.ones(3))
    np.testing.assert_array_equal(jnnx.Dropout(0.5).eval()(jnp.ones(3)), jnp.ones(3))
    with pytest.raises(TypeError, match="Dropout: rngs must be"):
        jnnx.Dropout(0.5, rngs="seed")
    with pytest.raises(TypeError, match="Sequential: child '0' is a flax.linen module"):
        jnnx.Sequential(nn.ReLU())
    with pytest.raises(TypeError, match="Sequential: child '0' is neither an NNX module nor callable"):
        jnnx.Sequential(3)
    with pytest.raises(IndexError, match="ModuleList: index 3 is out of range for 1"):
        jnnx.ModuleList([jnnx.ReLU()])[3]
    with pytest.raises(KeyError, match="no dots"):
        jnnx.ModuleDict({"a.b": jnnx.ReLU()})
    with pytest.raises(KeyError, match="ModuleDict: no entry 'x'"):
        jnnx.ModuleDict()["x"]
    with pytest.raises(TypeError, match="ParameterList: entry '0' must be an array"):
        jnnx.ParameterList(["w"])
    with pytest.raises(TypeError, match="LinenLayer is abstract"):
        jnnx.LinenLayer()
    with pytest.raises(TypeError, match="from_linen: expected a flax.linen Module"):
        jnnx.from_linen(jnnx.ReLU())


def test_nnx_trainer_config_and_tiny_run(tmp_path):
    import pathlib
    import sys

    root = pathlib.Path(__file__).resolve().parents[1]
    sys.path.insert(0, str(root / "examples"))
    import nnx_train
    import train_classifier as tc
    from jaxlayers_examples.config import ConfigError, load_config

    cfg = load_config(tc.Config, root / "configs" / "digits_cnn_nnx.yaml",
                      ["model.channels=[4]", "model.convs_per_stage=1", "data.subset=256", "train.batch_size=32",
                       "train.epochs=1", "train.eval_batch_size=64"])
    assert cfg.model.frontend == "nnx"
    with pytest.raises(ConfigError, match="model.frontend must be 'linen' or 'nnx'"):
        load_config(tc.Config, root / "configs" / "digits_cnn.yaml", ["model.frontend=torch"])
    model, history = nnx_train.train_nnx(cfg, tmp_path, log=lambda *a: None)
    assert len(history) == 1 and np.isfinite(history[0]["test_loss"])
    assert int(model.state_dict()["bn0_0.num_batches_tracked"]) == 256 * 3 // 4 // 32
    saved = interop.load_safetensors(tmp_path / "model.safetensors")
    assert list(saved) == sorted(model.state_dict())


def test_tied_weights_are_listed_under_every_name_as_torch():
    """A module or a parameter shared by two attributes (tied weights): state_dict lists it under
    each name, as torch's, so torch's state_dict loads strictly (the aliases were dropped: a strict
    load of torch's reported them unexpected); named_parameters lists it once, as torch's."""
    class Tied(jnnx.Module):
        def __init__(self, rngs):
            super().__init__()
            self.a = jnnx.Linear(2, 2, rngs=rngs)
            self.b = self.a
            self.emb = jnnx.Embedding(5, 2, rngs=rngs)
            self.head = jnnx.Linear(2, 5, bias=False, rngs=rngs)
            self.head.weight = self.emb.weight

    class TorchTied(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.a = torch.nn.Linear(2, 2)
            self.b = self.a
            self.emb = torch.nn.Embedding(5, 2)
            self.head = torch.nn.Linear(2, 5, bias=False)
            self.head.weight = self.emb.weight

    ours, theirs = Tied(fnnx.Rngs(0)), TorchTied()
    assert list(ours.state_dict()) == list(theirs.state_dict())
    ours.load_state_dict(theirs.state_dict())
    for key, value in theirs.state_dict().items():
        np.testing.assert_allclose(ours.state_dict()[key], value.numpy(), rtol=1e-6)  # loaded as float32
    assert [k for k, _ in ours.named_parameters()] == [k for k, _ in theirs.named_parameters()]


# ---------------------------------------------------------------- custom modules, ensembles, lazy loads


class _Chain(jnnx.Module):
    """A custom model as users write it: children assigned in ``__init__`` (not in name order), run in
    ``children()`` order, a branch on ``self.training``; no ``super().__init__()``."""

    def __init__(self, rngs):
        self.zeta = jnnx.Linear(2, 3, rngs=rngs)
        self.act = jnnx.Tanh()
        self.alpha = jnnx.Linear(3, 2, rngs=rngs)

    def __call__(self, x):
        for m in self.children():
            x = m(x)
        return x * 2 if self.training else x


class _TorchChain(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.zeta, self.act, self.alpha = torch.nn.Linear(2, 3), torch.nn.Tanh(), torch.nn.Linear(3, 2)

    def forward(self, x):
        for m in self.children():
            x = m(x)
        return x * 2 if self.training else x


def test_custom_module_keeps_torch_order_and_mode_through_merge_and_jit():
    """The children's order survives nnx.merge (as inside nnx.jit: it was sorted by name there, so
    children() ran alpha first), and training follows train()/eval() with one trace per mode."""
    ours, theirs = _Chain(fnnx.Rngs(0)), _TorchChain()
    ours.load_state_dict(theirs.state_dict())
    merged = fnnx.merge(*fnnx.split(ours))
    assert list(merged.state_dict()) == list(theirs.state_dict())
    assert [n for n, _ in merged.named_children()] == [n for n, _ in theirs.named_children()]
    traces = []

    @fnnx.jit
    def fwd(m, x):
        traces.append(1)
        return m(x)

    x = np.ones((1, 2))
    for mode in (True, False, True):
        assert ours.train(mode).training is theirs.train(mode).training is mode
        close(fwd(ours, x), theirs(to_torch(x)), rtol=1e-6, atol=1e-6)
    assert len(traces) == 2
    del merged.zeta, theirs.zeta  # deleted and assigned again: last, as torch
    merged.zeta, theirs.zeta = jnnx.Linear(2, 3, rngs=fnnx.Rngs(1)), torch.nn.Linear(2, 3)
    assert list(merged.state_dict()) == list(theirs.state_dict())


ENSEMBLES = {  # layer, whether it keeps a (forked) stream
    "Dropout": (lambda rngs: jnnx.Dropout(0.5, rngs=rngs), True),
    "BatchNorm1d": (lambda rngs: jnnx.BatchNorm1d(4, rngs=rngs), False),
    "LSTM": (lambda rngs: jnnx.LSTM(4, 4, num_layers=2, dropout=0.5, rngs=rngs), True),
}


@pytest.mark.parametrize("name", list(ENSEMBLES))
def test_ensembles_of_layers_that_take_train(name):
    """nnx.split_rngs + nnx.vmap ensembles: each layer holds its own fork of the stream it draws (the
    caller's Rngs, restored unsplit by split_rngs, was held before) and BatchNorm none."""
    make, draws = ENSEMBLES[name]

    @fnnx.split_rngs(splits=3)
    @fnnx.vmap(in_axes=(0,), out_axes=0)
    def create(rngs):
        return make(rngs)

    models = create(fnnx.Rngs(0))
    assert (models.rngs is not None) is draws
    x = np.random.default_rng(0).standard_normal((2, 4))
    out = fnnx.vmap(lambda m, x: m(x), in_axes=(0, None))(models, x)
    out = np.asarray(out[0] if isinstance(out, tuple) else out)
    assert out.shape == (3, 2, 4)
    if name == "BatchNorm1d":
        for member in out:
            close(member, torch.nn.BatchNorm1d(4)(to_torch(x)), rtol=1e-5, atol=1e-5)
    else:
        assert not np.allclose(out[0], out[1])  # each member draws from its own stream


def test_lazy_layers_load_a_state_dict_before_the_first_call():
    """torch's lazy modules take their shapes from the state_dict: no dummy forward needed."""
    torch.manual_seed(0)
    sd = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.BatchNorm1d(3)).state_dict()
    theirs = torch.nn.Sequential(torch.nn.LazyLinear(3), torch.nn.LazyBatchNorm1d())
    ours = jnnx.Sequential(jnnx.LazyLinear(3), jnnx.LazyBatchNorm1d())  # no rngs: the values come from sd
    assert repr(ours.load_state_dict(sd)) == repr(theirs.load_state_dict(sd)) == "<All keys matched successfully>"
    assert list(ours.state_dict()) == list(theirs.state_dict())
    x = np.random.default_rng(0).standard_normal((2, 4))
    close(ours.eval()(x), theirs.eval()(to_torch(x)), rtol=1e-5, atol=1e-6)
    # a key the state_dict lacks is missing (and not created), a stray one unexpected, as torch's
    partial = {"weight": sd["0.weight"], "extra": sd["0.bias"]}
    assert repr(jnnx.LazyLinear(3).load_state_dict(partial, strict=False)) == \
        repr(torch.nn.LazyLinear(3).load_state_dict(partial, strict=False))
    conv = torch.nn.Conv1d(6, 4, 1, groups=2).state_dict()
    lazy = jnnx.LazyConv1d(4, 1, groups=2)
    lazy.load_state_dict(conv)
    assert {k: v.shape for k, v in lazy.state_dict().items()} == {k: tuple(v.shape) for k, v in conv.items()}


def test_load_state_dict_returns_torchs_named_tuple_and_raises_a_runtime_error():
    theirs, ours = torch.nn.Linear(2, 2), jnnx.Linear(2, 2, rngs=fnnx.Rngs(0))
    partial = {"weight": theirs.weight.detach(), "extra": torch.zeros(1)}
    got, want = ours.load_state_dict(partial, strict=False), theirs.load_state_dict(partial, strict=False)
    missing, unexpected = got
    assert (missing, unexpected) == (want.missing_keys, want.unexpected_keys) == (["bias"], ["extra"])
    assert repr(got) == repr(want) and got.missing == ("bias",) and got.unexpected == ("extra",)  # former names
    variables = interop.state_dict_to_variables(ours.state_dict())
    for load in (lambda: theirs.load_state_dict({}), lambda: ours.load_state_dict({}),
                 lambda: interop.load_state_dict(variables, {})):
        with pytest.raises(RuntimeError, match="(?i)missing key"):
            load()
    with pytest.raises(ValueError, match="missing keys: weight, bias"):
        ours.load_state_dict({})


@pytest.mark.parametrize("container, key", [("ModuleDict", "values"), ("ModuleDict", "training"),
                                            ("Sequential", "eval")])
def test_container_keys_that_are_attributes_raise_torchs_key_error(container, key):
    """A child named ``values`` or ``eval`` shadowed the method: ``seq.eval()`` did nothing."""
    for nn_ in (torch.nn, jnnx):
        with pytest.raises(KeyError, match=f"attribute '{key}' already exists"):
            getattr(nn_, container)(OrderedDict([(key, nn_.ReLU())]))


def test_container_copies_and_pops_as_torch():
    """ModuleDict(other ModuleDict), update(ModuleDict), ParameterDict(ParameterDict); ModuleList.pop."""
    for nn_ in (torch.nn, jnnx):
        a = nn_.ModuleDict({"act": nn_.ReLU(), "tanh": nn_.Tanh()})
        b, c = nn_.ModuleDict(a), nn_.ModuleDict({"x": nn_.Identity()})
        c.update(a)
        assert list(b) == ["act", "tanh"] and list(c) == ["x", "act", "tanh"] and b["act"] is c["act"] is a["act"]
        ml = nn_.ModuleList([nn_.ReLU(), nn_.Tanh(), nn_.Sigmoid(), nn_.Identity()])
        popped = [ml.pop(1), ml.pop(-1), ml.pop(slice(0, 1))]
        assert [type(p).__name__ for p in popped] == ["Tanh", "Identity", "ModuleList"]
        assert [n for n, _ in ml.named_children()] == ["0"] and type(ml[0]).__name__ == "Sigmoid"
    pd = jnnx.ParameterDict({"w": jnp.ones(2)})
    assert jnnx.ParameterDict(pd)["w"] is pd["w"]
    plist = jnnx.ParameterList([jnp.ones(2), jnp.zeros(3)])
    assert plist.pop(0).shape == (2,) and list(plist.state_dict()) == ["0"]


def test_sequential_passes_rngs_only_to_children_that_take_it():
    class Block(jnnx.Module):  # a custom child whose call takes no rngs
        def __init__(self):
            self.act = jnnx.Tanh()

        def __call__(self, x):
            return self.act(x)

    class Noisy(jnnx.Module):
        def __init__(self):
            self.drop = jnnx.Dropout(0.5)

        def __call__(self, x, rngs=None):
            return self.drop(x, rngs=rngs)

    key, x = jax.random.key(1), jnp.ones(8)
    got = jnnx.Sequential(Block(), Noisy())(x, rngs=key)
    np.testing.assert_array_equal(got, jnnx.Dropout(0.5)(jnp.tanh(x), rngs=jax.random.fold_in(key, 1)))


class _OwnAfterChild(jnnx.Module):
    def __init__(self, rngs):
        self.lin = jnnx.Linear(2, 2, rngs=rngs)
        self.scale_buf = fnnx.BatchStat(jnp.zeros(2))  # a buffer assigned before the parameter
        self.w = fnnx.Param(jnp.ones(2))


class _TorchOwnAfterChild(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.lin = torch.nn.Linear(2, 2)
        self.register_buffer("scale_buf", torch.zeros(2))
        self.w = torch.nn.Parameter(torch.ones(2))


def test_own_parameters_and_buffers_come_before_children_as_torch():
    """torch lists a module's own parameters, then its own buffers, then its children, whatever the
    assignment order: zip(torch_model.parameters(), model.parameters()) pairs the same tensors."""
    ours, theirs = _OwnAfterChild(fnnx.Rngs(0)), _TorchOwnAfterChild()
    assert list(ours.state_dict()) == list(theirs.state_dict()) == ["w", "scale_buf", "lin.weight", "lin.bias"]
    assert [k for k, _ in ours.named_parameters()] == [k for k, _ in theirs.named_parameters()]
    ours.load_state_dict(theirs.state_dict())
    for p, q in zip(ours.parameters(), theirs.parameters()):
        close(p.get_value(), q.detach(), rtol=1e-6, atol=1e-7)  # float32 variables from torch's float64


ATTRIBUTES = [  # (torch module, jaxlayers.nnx module, attributes torch holds)
    (lambda m: m.Linear(3, 4, bias=False), ("in_features", "out_features", "bias")),
    (lambda m: m.Conv2d(3, 4, 3, stride=(2, 1), padding=1), ("in_channels", "out_channels", "kernel_size", "stride",
                                                             "padding", "dilation", "groups", "padding_mode")),
    (lambda m: m.Conv1d(2, 2, 3, padding="same"), ("kernel_size", "padding")),
    (lambda m: m.ConvTranspose3d(2, 2, [3, 1, 2], stride=2, output_padding=1), ("kernel_size", "stride",
                                                                                "output_padding", "padding")),
    (lambda m: m.LayerNorm(5, elementwise_affine=False), ("normalized_shape", "eps", "weight", "bias")),
    (lambda m: m.RMSNorm([2, 3]), ("normalized_shape",)),
    (lambda m: m.BatchNorm2d(4, affine=False), ("num_features", "momentum", "weight", "bias")),
    (lambda m: m.MultiheadAttention(6, 2), ("embed_dim", "num_heads", "kdim", "vdim", "head_dim", "batch_first")),
    (lambda m: m.LSTM(3, 5, 2), ("input_size", "hidden_size", "num_layers", "bidirectional")),
    (lambda m: m.Embedding(7, 3, padding_idx=-1), ("num_embeddings", "embedding_dim", "padding_idx")),
]


def _value(v):
    return v if v is None or isinstance(v, (int, float, str, tuple)) else "array"


class _NNXNamespace:
    """``jaxlayers.nnx`` classes constructed with a fixed ``rngs`` (``build(NNX)``)."""

    def __getattr__(self, name):
        cls = getattr(jnnx, name)
        return lambda *a, **k: cls(*a, rngs=fnnx.Rngs(0), **k)


@pytest.mark.parametrize("build,attrs", ATTRIBUTES, ids=[a[1][0] + str(i) for i, a in enumerate(ATTRIBUTES)])
def test_constructor_settings_are_attributes_as_torch(build, attrs):
    """Ported code reads them (``model.fc = Linear(model.fc.in_features, 10)``, ResNet's init loop's
    ``m.kernel_size[0] * m.kernel_size[1] * m.out_channels``); torch normalises the conv arguments to
    tuples, normalized_shape to a tuple, kdim/vdim to embed_dim.  A switched-off weight/bias is None
    (NNX; a linen module's ``bias`` is its constructor flag)."""
    theirs, linen, ours = build(torch.nn), build(nn), build(_NNXNamespace())
    for a in attrs:
        assert _value(getattr(ours, a)) == _value(getattr(theirs, a)), (a, "nnx")
        if a not in ("weight", "bias"):
            assert _value(getattr(linen, a)) == _value(getattr(theirs, a)), (a, "linen")


def test_linen_methods_and_static_methods_are_forwarded():
    assert np.array_equal(jnnx.Transformer.generate_square_subsequent_mask(4),
                          torch.nn.Transformer.generate_square_subsequent_mask(4).numpy())
    asm = jnnx.AdaptiveLogSoftmaxWithLoss(8, 10, [4], rngs=fnnx.Rngs(0))
    ref = nn.AdaptiveLogSoftmaxWithLoss(8, 10, [4])
    variables = {"params": interop.state_dict_to_variables(asm.state_dict())["params"]}
    x = np.random.default_rng(0).normal(size=(3, 8)).astype(np.float32)
    close(asm.log_prob(x), ref.apply(variables, x, method="log_prob"))
    assert np.array_equal(asm.predict(x), ref.apply(variables, x, method="predict"))
    with pytest.raises(AttributeError, match="'ReLU' object has no attribute 'weight'"):
        jnnx.ReLU().weight


def test_parameter_containers_take_torchs_keywords():
    assert list(jnnx.ParameterList(values=[jnp.ones(2)]).state_dict()) == ["0"]
    assert list(jnnx.ParameterDict(parameters={"a": jnp.ones(2)}).state_dict()) == ["a"]


def test_settings_written_as_in_torch_reconfigure_the_layer():
    """``for m in model.modules(): m.momentum = ...`` and ``drop.p = 0`` change what the layer does, as in
    torch (the value had read back changed while the layer kept the old one); the variables are kept."""
    x = np.arange(12.0).reshape(4, 3)
    bn, theirs = jnnx.BatchNorm1d(3, rngs=fnnx.Rngs(0)), torch.nn.BatchNorm1d(3)
    step = fnnx.jit(lambda m, x: m(x))
    step(bn, x / 2), theirs(to_torch(x / 2))
    bn.momentum = theirs.momentum = 0.5
    step(bn, x), theirs(to_torch(x))
    close(bn.running_mean.get_value(), theirs.running_mean, rtol=1e-6)
    drop = jnnx.Dropout(0.5, rngs=fnnx.Rngs(0))
    drop.p = 0.0
    assert drop.p == 0.0 and np.array_equal(drop(np.ones(8)), np.ones(8))
    lstm = jnnx.LSTM(2, 3, 2, rngs=fnnx.Rngs(0))  # dropout raised after construction: it had asked for rngs
    count = int(lstm.rngs.count.get_value())
    lstm(np.ones((4, 1, 2)))
    assert int(lstm.rngs.count.get_value()) == count  # dropout 0 spends no key
    lstm.dropout = 0.5
    masks = [np.asarray(lstm(np.ones((4, 1, 2)))[0]) for _ in range(2)]
    assert not np.allclose(*masks) and int(lstm.rngs.count.get_value()) == count + 2
    # an RNN's bias is its flag, as torch's; a loss's class weight is the array
    assert jnnx.LSTM(3, 4, rngs=fnnx.Rngs(0)).bias is torch.nn.LSTM(3, 4).bias is True
    close(jnnx.LinearCrossEntropyLoss(4, 5, weight=jnp.arange(5.0), rngs=fnnx.Rngs(0)).weight, np.arange(5.0))


def test_linen_methods_do_not_replace_the_nnx_ones():
    class Custom(fnn.Module):
        @fnn.compact
        def __call__(self, x):
            return nn.Linear(3, 2)(x)

        def train(self, x):  # a method torch's Module also has
            return x

    model = Custom()
    layer = jnnx.from_linen(model, model.init(jax.random.key(0), np.ones((1, 3))))
    assert layer.eval() is layer and not layer.training


def test_double_and_apply_as_torch():
    """``model.double()`` casts floating parameters and buffers (float32 variables had held a float64
    torch state_dict at ~1e-7); ``model.apply(fn)`` visits children first, then the module."""
    ours = jnnx.Sequential(jnnx.Conv2d(3, 4, 3, rngs=fnnx.Rngs(0)), jnnx.BatchNorm2d(4, rngs=fnnx.Rngs(0)),
                           jnnx.Flatten(), jnnx.Linear(36, 2, rngs=fnnx.Rngs(0)))
    theirs = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.BatchNorm2d(4), torch.nn.Flatten(),
                                 torch.nn.Linear(36, 2)).double()
    assert ours.double() is ours
    ours.load_state_dict(theirs.state_dict())
    assert {k: str(v.dtype) for k, v in ours.state_dict().items()} == {
        k: str(v.dtype).replace("torch.", "") for k, v in theirs.state_dict().items()}
    x = np.random.default_rng(0).normal(size=(2, 3, 5, 5))
    close(ours(x), theirs(to_torch(x)), rtol=1e-12, atol=1e-12)
    seen = []
    ours.apply(lambda m: seen.append(type(m).__name__))
    assert seen == ["Conv2d", "BatchNorm2d", "Flatten", "Linear", "Sequential"]
    assert ours.float().state_dict()["0.weight"].dtype == np.float32
    lazy = jnnx.Sequential(jnnx.LazyLinear(3, rngs=fnnx.Rngs(0)), jnnx.LazyBatchNorm1d(rngs=fnnx.Rngs(0))).double()
    lazy(np.ones((4, 5), np.float32))  # created at the first call in the cast dtype, as torch's lazy modules
    assert {str(v.dtype) for v in lazy.state_dict().values()} == {"float64", "int64"}
    cpu = jax.devices("cpu")[0]  # torch's model.to(device) (a TypeError before): a device, a dtype or both
    assert ours.to("cpu") is ours and ours.to(cpu, jnp.float32) is ours
    assert ours[0].weight.dtype == jnp.float32 and ours[0].weight.get_value().devices() == {cpu}
    with pytest.raises(ValueError, match=r"Sequential.to: no device 'cuda:99' here .* 'cuda' is JAX's 'gpu'"):
        ours.to("cuda:99")
    with pytest.raises(TypeError, match="Sequential.to: expected a floating dtype or a device, got 'cpux'"):
        ours.to("cpux")


def test_an_abstract_model_casts_and_loads_torchs_weights():
    """torch's meta device + load: a model from nnx.eval_shape (no weights computed) takes ``.double()``
    (a TypeError on its ShapeDtypeStructs before) and ``load_state_dict``, then runs as torch."""
    ours = fnnx.eval_shape(lambda: jnnx.Sequential(jnnx.Conv2d(3, 4, 3, rngs=fnnx.Rngs(0)),
                                                    jnnx.BatchNorm2d(4, rngs=fnnx.Rngs(0))))
    theirs = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.BatchNorm2d(4)).double()
    assert ours.double().load_state_dict(theirs.state_dict()).ok
    x = np.random.default_rng(0).normal(size=(2, 3, 5, 5))
    close(ours(x), theirs(to_torch(x)), rtol=1e-12, atol=1e-12)


def test_apply_reaches_flax_containers_and_settings_keep_the_trace():
    """apply(fn) had visited an nnx.List/nnx.Dict but not the layers in it (model.apply(_init_weights)
    left them at their default init); assigning a setting its current value does not retrace; a
    module's training flag is settable as torch's."""
    class Net(jnnx.Module):
        def __init__(self):
            self.blocks = fnnx.List([jnnx.Linear(2, 2, rngs=fnnx.Rngs(0)), jnnx.Linear(2, 2, rngs=fnnx.Rngs(1))])
            self.heads = fnnx.Dict({"a": jnnx.Linear(2, 1, rngs=fnnx.Rngs(2))})
            self.tied = self.heads["a"]

    net, seen = Net(), []
    net.apply(lambda m: seen.append(type(m).__name__))
    assert seen == ["Linear", "Linear", "List", "Linear", "Dict", "Net"]  # the tied layer once, as torch
    bn, traces = jnnx.BatchNorm1d(3, rngs=fnnx.Rngs(0)), []
    step = fnnx.jit(lambda m, x: traces.append(1) or m(x))
    for _ in range(3):
        bn.momentum = 0.1
        step(bn, np.ones((4, 3)))
    assert len(traces) == 1
    bn.training = False
    assert not bn.training and bn.train().training


def test_parametrized_layers_through_from_linen_load_torchs_state_dict():
    """from_linen(weight_norm(nn.Conv1d(...))) had created no variables, so a torch state_dict was all
    unexpected keys; the wrapper's probe is its layer's.  An NNX layer given to weight_norm says how."""
    from jaxlayers.nn.utils import parametrizations as P

    x = np.random.default_rng(0).normal(size=(2, 4, 7))
    for ours, theirs in ((P.weight_norm, torch.nn.utils.parametrizations.weight_norm),
                         (P.spectral_norm, torch.nn.utils.parametrizations.spectral_norm)):
        layer, ref = jnnx.from_linen(ours(nn.Conv1d(4, 6, 3)), rngs=fnnx.Rngs(0)), theirs(torch.nn.Conv1d(4, 6, 3))
        assert list(layer.state_dict()) == list(ref.state_dict())
        layer.load_state_dict(ref.state_dict())
        close(layer.eval()(x), ref.eval()(to_torch(x)), rtol=1e-5, atol=1e-6)
    with pytest.raises(TypeError, match=r"for NNX wrap the linen layer.*from_linen\(<weight_norm, spectral_norm, ...>\(jaxlayers.nn.Conv1d"):
        P.weight_norm(jnnx.Conv1d(4, 6, 3, rngs=fnnx.Rngs(0)))


def test_transformer_stacks_keep_their_final_norm():
    """A child stored under the name of a linen field (TransformerEncoder's ``norm``) had been taken for a
    setting: the norm's variables went nowhere and the call failed."""
    r = fnnx.Rngs(0)
    enc = jnnx.TransformerEncoder(jnnx.TransformerEncoderLayer(8, 2, 16, dropout=0.0, rngs=r), 2,
                                  jnnx.LayerNorm(8, rngs=r), rngs=r)
    ref = torch.nn.TransformerEncoder(torch.nn.TransformerEncoderLayer(8, 2, 16, dropout=0.0), 2,
                                      torch.nn.LayerNorm(8), enable_nested_tensor=False)
    assert list(enc.state_dict()) == list(ref.state_dict())
    enc.load_state_dict(ref.state_dict())
    x = np.random.default_rng(0).normal(size=(5, 3, 8))
    close(enc.eval()(x), ref.eval()(to_torch(x)), rtol=1e-5, atol=1e-6)
    with pytest.raises(TypeError, match=r"TransformerEncoder.norm: a layer given to the constructor .* norm=\.\.\."):
        enc.norm = jnnx.LayerNorm(8, rngs=r)  # the call would not use it


@pytest.mark.parametrize("dtype", ["float32", "bfloat16", "float16"])
def test_parameter_data_arithmetic_has_torchs_bits(dtype):
    """EMA-style in-place updates round as torch's CPU kernels, eagerly and under ``nnx.jit``: ``add_``/
    ``sub_`` with ``alpha`` one fused multiply-add (``alpha`` and a number operand in the common dtype),
    ``lerp_`` one per element, half types computed in float32 with a ``mul_`` number kept in float32 (two
    roundings had left 1 ulp on ~28 % of float32 elements, and ``mul_(0.37)`` on bfloat16 had multiplied
    by bfloat16's 0.369); a sharded parameter stays sharded."""
    rng = np.random.default_rng(1)
    w0, w1 = rng.normal(size=(2, 4096)).astype(np.float32)
    tdt = getattr(torch, dtype)
    steps = [lambda d, o: d.mul_(0.999).add_(o, alpha=1 - 0.999), lambda d, o: d.sub_(o, alpha=0.37),
             lambda d, o: d.lerp_(o, 0.3), lambda d, o: d.lerp_(o, 0.7), lambda d, o: d.div_(3.0).mul_(0.37),
             lambda d, o: d.add_(0.1, alpha=0.3)]
    class Pair(fnnx.Module):
        def __init__(self):
            self.p, self.o = jnnx.Parameter(jnp.asarray(w0).astype(dtype)), jnnx.Parameter(jnp.asarray(w1).astype(dtype))

    jitted = fnnx.jit(lambda m, i: [steps[i](m.p.data, m.o[...])] and None, static_argnums=1)
    for run in ("eager", "nnx.jit"):
        pair = Pair()
        ours, other = pair.p, pair.o
        theirs, t_other = torch.tensor(w0).to(tdt), torch.tensor(w1).to(tdt)
        for i, step in enumerate(steps):
            step(ours.data, other[...]) if run == "eager" else jitted(pair, i)
            step(theirs, t_other)
            np.testing.assert_array_equal(np.asarray(ours[...].astype(jnp.float32)), theirs.float().numpy(),
                                          err_msg=f"{run} {i}")
    mixed, t_mixed = jnnx.Parameter(jnp.asarray(w0).astype(dtype)), torch.tensor(w0).to(tdt)
    mixed.data.add_(jnp.asarray(w1 * 100), alpha=0.37)  # a float32 operand: computed in the common float32
    t_mixed.add_(torch.tensor(w1 * 100), alpha=0.37)
    np.testing.assert_array_equal(np.asarray(mixed[...].astype(jnp.float32)), t_mixed.float().numpy())
    mesh = jax.make_mesh((2,), ("d",), axis_types=(jax.sharding.AxisType.Auto,), devices=jax.devices()[:2])
    sharding = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec("d"))
    sharded = jnnx.Parameter(jax.device_put(jnp.asarray(w0).astype(dtype), sharding))
    sharded.data.mul_(0.999).add_(jnp.asarray(w1).astype(dtype), alpha=0.001).lerp_(jnp.asarray(w1).astype(dtype), 0.3)
    assert sharded[...].sharding == sharding


def test_parameter_data_takes_torchs_in_place_methods():
    """``m.weight.data.normal_(0, 0.02)``, ``.zero_()``, ``data[padding_idx].zero_()`` (Hugging Face's
    ``_init_weights``) and the EMA update ``pe.data.mul_(d).add_(p.data, alpha=1 - d)`` had failed on an
    nnx.Param with an error naming JAX's array type; torch's in-place methods now write the parameter."""
    rng = np.random.default_rng(0)
    w0, w1 = rng.normal(size=(4, 3)), rng.normal(size=(4, 3))
    ours, theirs = jnnx.Parameter(jnp.asarray(w0)), torch.nn.Parameter(torch.tensor(w0))
    other, t_other = jnnx.Parameter(jnp.asarray(w1)), torch.tensor(w1)
    steps = [lambda d, o: d.mul_(0.9).add_(o, alpha=0.1), lambda d, o: d.sub_(o, alpha=2.0).div_(3.0),
             lambda d, o: d.lerp_(o, 0.25), lambda d, o: d.clamp_(-0.5, 0.5), lambda d, o: d[1].fill_(7.0),
             lambda d, o: d[:, 0].zero_(), lambda d, o: d[2:].copy_(o[0])]
    for step in steps:
        step(ours.data, other.data)
        with torch.no_grad():
            step(theirs.data, t_other)
        close(ours[...], theirs.detach(), rtol=1e-15, atol=0)
    assert (ours.dim(), ours.numel(), isinstance(ours, fnnx.Param)) == (theirs.dim(), theirs.numel(), True)
    emb = jnnx.Embedding(10, 4, padding_idx=0, rngs=fnnx.Rngs(0))  # the layers' parameters are Parameters
    emb.weight.data.normal_(0.0, 0.02, generator=jax.random.key(1))
    emb.weight.data[emb.padding_idx].zero_()
    assert not np.any(emb.weight[0]) and 0.005 < float(jnp.std(emb.weight[1:])) < 0.04
    half = jnnx.Linear(3, 2, rngs=fnnx.Rngs(0)).bfloat16()
    half.bias.data.add_(np.float64(1.0) / 3)  # computed and stored in the parameter's dtype, as torch
    assert half.bias.dtype == jnp.bfloat16
    half.bias.data = np.zeros(5)  # torch's p.data = t replaces the values
    assert half.bias.shape == (5,)
    assert type(jnnx.ParameterList([jnp.ones(2)])[0]) is jnnx.Parameter
    emb2 = jnnx.Embedding(16, 4, rngs=fnnx.Rngs(0))  # nanoGPT's crop_block_size: torch's module reads the new shape
    with pytest.raises(ValueError, match=r"Embedding.weight: a parameter of shape \(8, 4\) cannot replace one of "
                                         r"shape \(16, 4\).*from_pretrained"):
        emb2.weight = jnnx.Parameter(emb2.weight[:8])
    emb2.weight.data = emb2.weight[:8]
    with pytest.raises(ValueError, match="Embedding: a parameter's shape differs from what the layer's settings give"):
        emb2(np.array([1]))  # flax's ScopeParamShapeError before
    with pytest.raises(TypeError, match="Parameter.requires_grad: JAX computes gradients .*nnx.DiffState"):
        emb.weight.requires_grad = False
    with pytest.raises(AttributeError, match=r"Parameter.grad: .* has no grad"):
        emb.weight.grad
    assert getattr(emb.weight, "requires_grad", "none") == "none"  # duck-typing code keeps working
    ema = jnnx.Parameter(jnp.asarray(w0))  # torch's other EMA spelling, and tensor reads
    ema.data.mul_(0.9).add_((1 - 0.9) * other.data)
    close(ema[...], 0.9 * w0 + 0.1 * w1, rtol=1e-15, atol=1e-15)
    assert ema.data.size() == (4, 3) and ema.data.size(0) == 4 and ema.data.numel() == 12
    close(ema.data.clone(), ema[...], rtol=0, atol=0)
    ints = jnnx.Parameter(jnp.ones(3, jnp.int32))
    with pytest.raises(TypeError, match="result type float.* can't be cast to the parameter's int32"):
        ints.data.mul_(2.5)  # torch's error; it had truncated to 2
    ints.data.fill_(1.5)  # a fill casts, as torch's
    with pytest.raises(IndexError, match="index 4 is out of bounds for dimension 0 with size 4"):
        ours.data[4].zero_()  # JAX had clamped it to the last row, silently
    with pytest.raises(ValueError, match="at least one of 'min' or 'max'"):
        ours.data.clamp_()
    lerp = jnnx.Parameter(jnp.asarray(w0))
    lerp.data.lerp_(jnp.asarray(w1), 1.0)  # exact at the end, as torch's two-sided formula
    assert np.array_equal(lerp[...], w1)


def test_private_children_keep_torchs_order_through_merge():
    """torch registers ``self._fc = Linear(...)`` as a child (EfficientNet-PyTorch names every child so);
    the order of state_dict() must survive nnx.split/merge, which rebuilds attributes sorted by name."""

    class Net(jnnx.Module):
        def __init__(self):
            self._conv_stem = jnnx.Conv2d(3, 4, 3, bias=False, rngs=fnnx.Rngs(0))
            self._bn0 = jnnx.BatchNorm2d(4, rngs=fnnx.Rngs(0))
            self._fc = jnnx.Linear(4, 2, rngs=fnnx.Rngs(0))

    merged = fnnx.merge(*fnnx.split(Net()))
    assert [k for k, _ in merged.named_children()] == ["_conv_stem", "_bn0", "_fc"]


def test_torch_gradient_habits_say_what_to_do_instead():
    """``model.layer1.requires_grad_(False)`` had raised flax's AttributeError (and flax's hint for
    ``p.requires_grad = False`` sets a label nothing reads); ``model.zero_grad()`` likewise."""
    model = jnnx.Sequential(jnnx.Linear(2, 2, rngs=fnnx.Rngs(0)))
    with pytest.raises(TypeError, match=r"Sequential.requires_grad_: .*nnx.DiffState\(0, trainable\)"):
        model.requires_grad_(False)
    with pytest.raises(TypeError, match="Linear.zero_grad: gradients are not stored on the model"):
        model[0].zero_grad()


def test_children_of_composite_layers_are_layers_as_torch():
    """A composite layer's children had held variables only (Submodule): ``enc.layers[0]`` raised, an
    ``isinstance(m, Linear)`` init loop skipped the transformer's linear layers silently, and no child could
    be called alone."""
    r = fnnx.Rngs(0)
    enc = jnnx.TransformerEncoder(jnnx.TransformerEncoderLayer(8, 2, 16, dropout=0.0, rngs=r), 2,
                                  jnnx.LayerNorm(8, rngs=r), rngs=r).double()
    ref = torch.nn.TransformerEncoder(torch.nn.TransformerEncoderLayer(8, 2, 16, dropout=0.0), 2,
                                      torch.nn.LayerNorm(8), enable_nested_tensor=False).double()
    enc.load_state_dict(ref.state_dict())
    enc.eval(), ref.eval()
    assert sorted(n for n, _ in enc.named_modules()) == sorted(  # `dropout` is the layers' rate setting
        n for n, _ in ref.named_modules() if not n.endswith(".dropout"))
    linears = [n for n, m in ref.named_modules() if isinstance(m, torch.nn.Linear)]  # out_proj is one too
    assert [n for n, m in enc.named_modules() if isinstance(m, jnnx.Linear)] == linears
    for m in enc.modules():  # torch's init loop, on both
        if isinstance(m, jnnx.Linear):
            jinit.constant_(m.bias, 0.5)
    for m in ref.modules():
        if isinstance(m, torch.nn.Linear):
            torch.nn.init.constant_(m.bias, 0.5)
    x = np.random.default_rng(0).normal(size=(5, 3, 8))
    xt = to_torch(x)
    assert len(enc.layers) == len(ref.layers) == 2
    close(enc(x), ref(xt), rtol=1e-12, atol=1e-12)
    close(enc.layers[-1](x), ref.layers[-1](xt), rtol=1e-12, atol=1e-12)
    close(enc.layers[0].linear1(x), ref.layers[0].linear1(xt), rtol=1e-12, atol=1e-12)
    close(enc.layers[0].self_attn.out_proj(x), ref.layers[0].self_attn.out_proj(xt), rtol=1e-12, atol=1e-12)
    close(enc.layers[1].self_attn(x, x, x)[0], ref.layers[1].self_attn(xt, xt, xt)[0], rtol=1e-12, atol=1e-12)
    assert [type(m).__name__ for m in enc.layers] == ["TransformerEncoderLayer"] * 2
    assert not enc.layers[0].self_attn.training and enc.train().layers[1].linear2.training
    with pytest.raises(TypeError, match="TransformerEncoderLayer.dropout: this layer is a child that "
                                        "TransformerEncoder built .* would not change TransformerEncoder's call"):
        enc.layers[0].dropout = 0.1
    with pytest.raises(TypeError, match="Dropout.p: this layer is a child that TransformerEncoder built"):
        for m in enc.modules():  # torch's loop setting dropout: it had found no Dropout, silently
            if isinstance(m, jnnx.Dropout):
                m.p = 0.3
    with pytest.raises(TypeError, match="TransformerEncoderLayer.linear1: a child that TransformerEncoderLayer built "
                                        "from its own definition cannot be replaced"):
        enc.layers[0].linear1 = jnnx.Linear(8, 16, rngs=r)  # torch's surgery: the call would not use it
    with pytest.raises(TypeError, match="cannot be deleted"):  # nor by del, then an assignment
        del enc.layers[0].linear1
    with pytest.raises(TypeError, match="num_layers = 3 would change the layer's variables .*layers.2"):
        enc.num_layers = 3  # it had failed inside the refresh, leaving the layer rebuilt and broken
    with pytest.raises(ValueError, match="as a child of TransformerEncoderLayer it has no stream of its own"):
        jnnx.TransformerEncoderLayer(8, 2, 16, rngs=r).self_attn.train()(x, x, x)
    clone = copy.deepcopy(enc.layers[0])  # torch's _get_clones: a copy belongs to no parent
    clone.dropout = 0.5
    assert clone.self_attn.dropout == 0.5
    with pytest.raises(TypeError, match="child that TransformerEncoderLayer built"):  # its children are its own
        clone.norm1.eps = 1e-3
    bn = jnnx.BatchNorm1d(3, rngs=r)
    with pytest.raises(TypeError, match=r"BatchNorm1d.affine = False would change the layer's variables \(bias, weight\)"):
        bn.affine = False  # torch's BatchNorm keeps using its weight: here it had been dropped silently
    with pytest.raises(IndexError, match="_Layers: index 2 is out of range for 2 children"):
        enc.layers[2]
    layer = jnnx.TransformerEncoderLayer(8, 2, 16, dropout=0.0, rngs=r)
    layer.dropout = 0.25  # its own setting: its children follow
    assert layer.self_attn.dropout == 0.25
    asm, asm_ref = jnnx.AdaptiveLogSoftmaxWithLoss(8, 20, [5, 10], rngs=r), torch.nn.AdaptiveLogSoftmaxWithLoss(8, 20, [5, 10])
    assert [n for n, _ in asm.named_modules()] == [n for n, _ in asm_ref.named_modules()]
    assert ((asm.head.out_features, asm.tail[0][0].out_features, asm.tail[1][1].in_features, len(asm.tail))
            == (asm_ref.head.out_features, asm_ref.tail[0][0].out_features, asm_ref.tail[1][1].in_features, 2))


@pytest.mark.parametrize("make,shape", [
    (lambda m: m.LayerNorm(8), (2, 3, 8)), (lambda m: m.BatchNorm2d(8), (2, 8, 3, 3)),
    (lambda m: m.GroupNorm(2, 8), (2, 8, 3)), (lambda m: m.RMSNorm(8), (2, 8)),
], ids=["LayerNorm", "BatchNorm2d", "GroupNorm", "RMSNorm"])
def test_norms_of_a_cast_model_return_its_dtype_as_torch(make, shape):
    """After model.bfloat16() the norms had computed in their declared param_dtype (float32), so a
    'bfloat16' transformer ran in float32 from its first LayerNorm on."""
    x = np.random.default_rng(0).normal(size=shape)
    ours, theirs = make(_NNXNamespace()).bfloat16(), make(torch.nn).bfloat16()
    for mode in ("train", "eval"):
        getattr(ours, mode)(), getattr(theirs, mode)()
        got = ours(jnp.asarray(x, jnp.bfloat16))
        want = theirs(torch.tensor(x, dtype=torch.bfloat16))
        assert got.dtype == jnp.bfloat16, mode
        close(np.asarray(got, np.float32), want.float().detach(), rtol=2e-2, atol=2e-2)


def test_sync_batch_norm_with_an_axis_name_builds_and_trains_under_shard_map():
    """Building an NNX norm with axis_name had traced a training call outside any mapped context (its
    check for random keys): NameError, unbound axis name."""
    from jax.sharding import Mesh, PartitionSpec as Spec

    x = np.random.default_rng(0).normal(size=(8, 3, 2))
    ours, theirs = jnnx.SyncBatchNorm(3, axis_name="b", rngs=fnnx.Rngs(0)), torch.nn.BatchNorm1d(3)
    mesh = Mesh(np.array(jax.devices()[:4]), ("b",))
    step = fnnx.shard_map(lambda m, x: m(x), mesh=mesh, in_specs=(Spec(), Spec("b")), out_specs=Spec("b"))
    close(step(ours, jnp.asarray(x, jnp.float32)), theirs(to_torch(x)), rtol=1e-5, atol=1e-5)
    close(ours.running_var.get_value(), theirs.running_var, rtol=1e-5)  # unbiased over the global batch


def test_weighted_losses_hold_torch_buffers():
    """torch registers a weighted loss's ``weight`` (``pos_weight``) as a buffer, so a model holding
    ``self.crit = nn.CrossEntropyLoss(weight=w)`` has ``crit.weight`` in its state_dict: here too,
    built without a key, loaded from torch's, and the loaded value is the one the call uses."""
    class TorchNet(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = torch.nn.Linear(4, 3)
            self.crit = torch.nn.CrossEntropyLoss(weight=torch.tensor([0.5, 2.0, 1.0]))
            self.bce = torch.nn.BCEWithLogitsLoss(pos_weight=torch.tensor([3.0, 1.0, 0.5]))

    class Net(jnnx.Module):
        def __init__(self, rngs):
            self.fc = jnnx.Linear(4, 3, rngs=rngs)
            self.crit = jnnx.CrossEntropyLoss(weight=jnp.ones(3))
            self.bce = jnnx.BCEWithLogitsLoss(pos_weight=jnp.ones(3))

    theirs, ours = TorchNet(), Net(fnnx.Rngs(0))
    assert list(ours.state_dict()) == list(theirs.state_dict()) == [
        "fc.weight", "fc.bias", "crit.weight", "bce.pos_weight"]
    ours.load_state_dict(theirs.state_dict())
    x = np.random.default_rng(0).normal(size=(5, 4))
    t, y = np.array([0, 2, 1, 1, 0]), np.random.default_rng(1).uniform(size=(5, 3))
    out = ours.fc(jnp.asarray(x))
    with torch.no_grad():
        ref = theirs.fc(torch.tensor(x))
        close(ours.crit(out, jnp.asarray(t)), theirs.crit(ref, torch.tensor(t)), atol=1e-6, rtol=1e-5)
        close(ours.bce(out, jnp.asarray(y)), theirs.bce(ref, torch.tensor(y)), atol=1e-6, rtol=1e-5)
    assert list(jnnx.NLLLoss().state_dict()) == []  # no weight: no buffer, as torch
    ours.crit.weight = theirs.crit.weight = torch.tensor([2.0, 0.0, 1.0])  # torch's buffer assignment
    bn = jnnx.BatchNorm1d(3).eval()
    bn.running_mean = np.ones(3)  # a bare array had replaced the variable, and the next call failed
    with torch.no_grad():
        close(ours.crit(out, jnp.asarray(t)), theirs.crit(ref, torch.tensor(t)), atol=1e-6, rtol=1e-5)
    close(bn(np.ones((2, 3))), np.zeros((2, 3)), atol=1e-6, rtol=0)
    with pytest.raises(ValueError, match=r"BatchNorm1d.running_var: a buffer of shape \(4,\) cannot replace"):
        bn.running_var = np.ones(4)


def test_buffer_assignment_in_a_users_module_as_torch():
    """``self.pe = t`` on a registered buffer replaces its values (any shape, as torch's user modules), so
    the buffer stays in ``state_dict()`` and ``nnx.state``; flax alone replaces the variable by an array."""

    class Ours(jnnx.Module):
        def __init__(self):
            self.pe = fnnx.BatchStat(jnp.zeros((4, 3)))

        def __call__(self, x):
            return x + self.pe[...][: x.shape[0]]

    class Theirs(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.register_buffer("pe", torch.zeros(4, 3))

    ours, theirs = Ours(), Theirs()
    ours.pe = theirs.pe = torch.arange(15.0).reshape(5, 3)
    assert isinstance(ours.pe, fnnx.BatchStat)
    close(ours.state_dict(), theirs.state_dict())
    close(fnnx.state(ours, fnnx.BatchStat)["pe"].get_value(), theirs.pe)
    step = fnnx.jit(lambda m, x: m(x))
    close(step(ours, jnp.ones((2, 3))), theirs.pe[:2] + 1)
    ours.pe, theirs.pe = np.ones((2, 3)), torch.ones(2, 3)  # a NumPy array too; the next jitted call sees it
    close(step(ours, jnp.ones((2, 3))), np.full((2, 3), 2.0))
    other, their_other = Ours(), Theirs()
    other.pe, their_other.pe = ours.pe, theirs.pe  # shared, then the name rebound: the other keeps the old one
    ours.pe = theirs.pe = torch.zeros(1, 3)
    close(other.state_dict(), their_other.state_dict())
    mapped = fnnx.recursive_map(lambda _, v: v.get_value() + 7 if isinstance(v, fnnx.Variable) else v, other)
    assert not isinstance(vars(mapped)["pe"], fnnx.Variable)  # flax's own writes keep flax's rule
    close(other.pe[...], np.ones((2, 3)))  # and leave the source alone


@pytest.mark.parametrize("value", [3.0, "x", [1.0, 2.0, 3.0], "array"])
@pytest.mark.parametrize("name", ["running_mean", "weight"])
def test_assigning_what_torch_refuses_to_a_parameter_or_buffer_raises(name, value):
    """torch raises TypeError for a non-tensor given to a buffer and a non-Parameter given to a parameter
    (flax put the value there and dropped the variable from ``state_dict()``); None, a Parameter, and an
    array for a buffer are taken, as torch takes them."""
    ours, theirs = jnnx.BatchNorm1d(3), torch.nn.BatchNorm1d(3)
    ours_value, their_value = (np.ones(3), torch.ones(3)) if value == "array" else (value, value)
    refused = name == "weight" or value != "array"
    kind = "parameter" if name == "weight" else "buffer"
    if not refused:
        setattr(theirs, name, their_value)
        setattr(ours, name, ours_value)
        close(ours.state_dict()[name], theirs.state_dict()[name])
    else:
        with pytest.raises(TypeError, match=f"cannot assign '[a-zA-Z.]+' as {kind} '{name}'"):
            setattr(theirs, name, their_value)
        with pytest.raises(TypeError, match=f"BatchNorm1d.{name}: cannot assign '{type(ours_value).__name__}' as "):
            setattr(ours, name, ours_value)
        assert name in ours.state_dict()
    setattr(ours, name, None)  # torch takes None: the entry leaves state_dict
    setattr(theirs, name, None)
    assert list(ours.state_dict()) == list(theirs.state_dict())
    user = jnnx.Sequential(jnnx.Linear(2, 2, rngs=fnnx.Rngs(0)))
    with pytest.raises(TypeError, match="as parameter 'weight'"):
        user[0].weight = jnp.zeros((2, 2))
    user[0].weight = jnnx.Parameter(jnp.zeros((2, 2)))
    assert not user[0].state_dict()["weight"].any()


def test_layers_with_fixed_initialisers_need_no_key():
    """torch builds ``nn.BatchNorm2d(64)``, ``nn.LayerNorm(d)``, ``nn.PReLU()`` without a seed (ones,
    zeros, 0.25): so do these, with torch's values, also under ``nnx.eval_shape``; a layer whose
    initialiser draws (Linear) still asks for a key, naming itself."""
    for ours, theirs in [(jnnx.BatchNorm2d(4), torch.nn.BatchNorm2d(4)), (jnnx.LayerNorm(3), torch.nn.LayerNorm(3)),
                         (jnnx.GroupNorm(2, 4), torch.nn.GroupNorm(2, 4)), (jnnx.PReLU(2), torch.nn.PReLU(2))]:
        sd = theirs.state_dict()
        assert list(ours.state_dict()) == list(sd)
        for k, v in ours.state_dict().items():
            np.testing.assert_array_equal(v, sd[k].numpy(), err_msg=k)
    abstract = fnnx.eval_shape(lambda: jnnx.BatchNorm2d(4))
    assert abstract.running_var.get_value().shape == (4,)
    lazy = jnnx.LazyBatchNorm2d()
    lazy(jnp.ones((2, 3, 2, 2)))
    assert lazy.weight.get_value().shape == (3,)
    for build in (lambda: jnnx.Linear(4, 3), lambda: fnnx.eval_shape(lambda: jnnx.Conv2d(2, 3, 3))):
        with pytest.raises(TypeError, match="(Linear|Conv2d): creating its parameters needs a key"):
            build()
