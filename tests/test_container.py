"""Sequential, Flatten, Unflatten (and Identity inside containers) against torch (float64)."""

from collections import OrderedDict

import functools
import flax.linen as fnn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch

import jaxlayers
from jaxlayers import interop, nn
from oracle import close, to_numpy

RTOL, ATOL = 1e-10, 1e-12


t2n = to_numpy


_close = functools.partial(close, rtol=RTOL, atol=ATOL)


class Scale(fnn.Module):
    """A child that takes ``train`` (records it in the output: x*2 in training, x*3 in evaluation)."""

    @fnn.compact
    def __call__(self, x, *, train: bool | None = None):
        if train is None:
            raise ValueError("Scale: `train` must be given")
        return x * (2.0 if train else 3.0)


def test_sequential_positional_names_and_state_dict_keys(rng):
    tm = torch.nn.Sequential(torch.nn.Linear(4, 5), torch.nn.Flatten(), torch.nn.Linear(5, 2, bias=False))
    model = nn.Sequential(nn.Linear(4, 5), nn.Flatten(), nn.Linear(5, 2, bias=False))
    x = rng.standard_normal((3, 4))
    v = model.init(jax.random.key(0), x)
    assert set(v["params"]) == {"0", "2"}
    assert list(interop.variables_to_state_dict(v).keys()) == list(tm.state_dict().keys())
    sd_vars = interop.state_dict_to_variables(tm.state_dict())
    xt = torch.from_numpy(x).requires_grad_()
    yt = tm(xt)
    _close(model.apply(sd_vars, x), t2n(yt))
    cot = rng.standard_normal(yt.shape)
    gp, gx = jax.grad(lambda p, x: jnp.sum(model.apply({"params": p}, x) * cot), argnums=(0, 1))(sd_vars["params"], x)
    yt.backward(torch.from_numpy(cot))
    _close(gx, t2n(xt.grad))
    _close(gp["0"]["weight"], t2n(tm[0].weight.grad))
    _close(gp["0"]["bias"], t2n(tm[0].bias.grad))
    _close(gp["2"]["weight"], t2n(tm[2].weight.grad))


@pytest.mark.parametrize("mapping", [OrderedDict, dict])
def test_sequential_mapping_names(mapping, rng):
    layers = [("fc1", (3, 4)), ("flat", None), ("head", (4, 2))]
    tm = torch.nn.Sequential(OrderedDict(
        (k, torch.nn.Linear(*a) if a else torch.nn.Flatten()) for k, a in layers))
    model = nn.Sequential(mapping((k, nn.Linear(*a) if a else nn.Flatten()) for k, a in layers))
    x = rng.standard_normal((2, 3))
    v = model.init(jax.random.key(0), x)
    assert list(interop.variables_to_state_dict(v).keys()) == list(tm.state_dict().keys())
    _close(model.apply(interop.state_dict_to_variables(tm.state_dict()), x), t2n(tm(torch.from_numpy(x))))
    assert len(model) == 3
    assert isinstance(model["head"], nn.Linear) and model["head"].out_features == 2
    assert isinstance(model[1], nn.Flatten)


def test_nested_sequential(rng):
    tm = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.Sequential(torch.nn.Linear(4, 4), torch.nn.Linear(4, 1)))
    model = nn.Sequential(nn.Linear(3, 4), nn.Sequential(nn.Linear(4, 4), nn.Linear(4, 1)))
    x = rng.standard_normal((5, 3))
    v = model.init(jax.random.key(0), x)
    keys = list(interop.variables_to_state_dict(v).keys())
    assert keys == list(tm.state_dict().keys()) == ["0.weight", "0.bias", "1.0.weight", "1.0.bias", "1.1.weight", "1.1.bias"]
    y = jax.jit(model.apply)(interop.state_dict_to_variables(tm.state_dict()), x)
    _close(y, t2n(tm(torch.from_numpy(x))))


@pytest.mark.skipif(not hasattr(jaxlayers.nn, "Conv2d"), reason="nn.Conv2d not available yet")
def test_conv_flatten_linear_state_dict(rng):
    tm = torch.nn.Sequential(torch.nn.Conv2d(2, 3, 3), torch.nn.Flatten(), torch.nn.Linear(3 * 4 * 4, 5))
    model = nn.Sequential(nn.Conv2d(2, 3, 3), nn.Flatten(), nn.Linear(3 * 4 * 4, 5))
    x = rng.standard_normal((2, 2, 6, 6))
    v = model.init(jax.random.key(0), x)
    assert list(interop.variables_to_state_dict(v).keys()) == list(tm.state_dict().keys())
    _close(model.apply(interop.state_dict_to_variables(tm.state_dict()), x), t2n(tm(torch.from_numpy(x))),
           rtol=1e-9, atol=1e-10)


def test_sequential_passes_train_only_to_children_that_take_it():
    model = nn.Sequential(nn.Linear(2, 2, weight_init=jax.nn.initializers.ones, bias_init=jax.nn.initializers.zeros),
                          Scale(), jax.nn.relu, nn.Identity())
    x = jnp.array([[1.0, -2.0]])
    v = model.init(jax.random.key(0), x, train=False)
    np.testing.assert_array_equal(model.apply(v, x, train=True), [[0.0, 0.0]])  # relu(2 * (1 - 2))
    np.testing.assert_array_equal(model.apply(v, -x, train=True), [[2.0, 2.0]])
    np.testing.assert_array_equal(model.apply(v, -x, train=False), [[3.0, 3.0]])
    with pytest.raises(ValueError, match="Scale: `train` must be given"):
        model.apply(v, x)


def test_sequential_errors():
    with pytest.raises(TypeError, match=r"Sequential: child '1' is not callable"):
        nn.Sequential(nn.Identity(), 3)
    with pytest.raises(TypeError, match=r"Sequential: give the layers positionally or as layers=, not both"):
        nn.Sequential(nn.Identity(), layers=(nn.Identity(),))
    with pytest.raises(ValueError, match=r"Sequential: 1 names for 2 layers"):
        nn.Sequential(layers=(nn.Identity(), nn.Identity()), names=("a",))
    # torch's child-name rule (an empty or dotted name made state_dict keys collide or nest)
    for names, exc, match in ((("",), ValueError, "key '' must be a non-empty string without '.'"),
                              (("a.b",), ValueError, "key 'a.b' must be"), ((1,), TypeError, "keys must be strings"),
                              (("a", "a"), ValueError, r"duplicate keys in \['a', 'a'\]")):
        with pytest.raises(exc, match=f"Sequential: {match}"):
            nn.Sequential(layers=tuple(nn.Identity() for _ in names), names=names)
    with pytest.raises(TypeError, match="Sequential: keys must be strings"):
        nn.Sequential(OrderedDict([(0, nn.Identity())]))


@pytest.mark.parametrize("start,end", [(1, -1), (0, -1), (2, 3), (-3, -2)])
def test_flatten_module_vs_torch(start, end, rng):
    x = rng.standard_normal((2, 3, 4, 5))
    y = nn.Flatten(start, end).apply({}, x)
    _close(y, t2n(torch.nn.Flatten(start, end)(torch.from_numpy(x))))
    assert nn.Flatten().apply({}, x).shape == (2, 60)


@pytest.mark.parametrize("dim,sizes", [(1, (2, 6)), (-1, (3, -1)), (0, (1, 2)), (1, [3, 2, 2])])
def test_unflatten_module_vs_torch(dim, sizes, rng):
    x = rng.standard_normal((2, 12))
    y = nn.Unflatten(dim, sizes).apply({}, x)
    _close(y, t2n(torch.nn.Unflatten(dim, tuple(sizes))(torch.from_numpy(x))))


def test_flatten_unflatten_grads_and_vmap(rng):
    x = rng.standard_normal((4, 2, 3))
    model = nn.Sequential(nn.Flatten(), nn.Unflatten(1, (3, 2)))
    xt = torch.from_numpy(x).requires_grad_()
    yt = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Unflatten(1, (3, 2)))(xt)
    cot = rng.standard_normal(yt.shape)
    y, vjp = jax.vjp(lambda x: model.apply({}, x), x)
    yt.backward(torch.from_numpy(cot))
    _close(y, t2n(yt))
    _close(vjp(cot)[0], t2n(xt.grad))
    yv = jax.vmap(lambda xi: nn.Flatten(0).apply({}, xi))(x)
    _close(yv, x.reshape(4, 6))


def test_flatten_unflatten_errors():
    with pytest.raises(ValueError, match=r"flatten: start_dim \(2\) cannot come after end_dim \(1\)"):
        nn.Flatten(2, 1).apply({}, jnp.ones((2, 3, 4)))
    with pytest.raises(IndexError, match=r"flatten: dimension out of range"):
        nn.Flatten(1).apply({}, jnp.ones((2,)))
    with pytest.raises(ValueError, match=r"unflatten: provided sizes \(5, 2\) don't multiply up to the size of dim 1 \(12\)"):
        nn.Unflatten(1, (5, 2)).apply({}, jnp.ones((2, 12)))


def test_sequential_indexing_slicing(rng):
    tm = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.Linear(4, 4), torch.nn.Linear(4, 2))
    model = nn.Sequential(nn.Linear(3, 4), nn.Linear(4, 4), nn.Linear(4, 2))
    assert len(model) == 3 and model[-1].out_features == 2 and model["1"].in_features == 4
    tail = model[1:]
    assert isinstance(tail, nn.Sequential) and len(tail) == 2 and tail.names == ("1", "2")
    x = rng.standard_normal((2, 4))
    v = tail.init(jax.random.key(0), x)
    assert list(interop.variables_to_state_dict(v).keys()) == list(tm[1:].state_dict().keys())
    _close(tail.apply(interop.state_dict_to_variables(tm[1:].state_dict()), x), t2n(tm[1:](torch.from_numpy(x))))
    with pytest.raises(IndexError, match=r"Sequential: index 3 is out of range for 3 children"):
        model[3]
    with pytest.raises(KeyError, match=r"Sequential: no child named 'x'"):
        model["x"]


class _Features(torch.nn.Module):
    """torch's feature-extractor idiom: a Sequential indexed and sliced in forward."""

    def __init__(self):
        super().__init__()
        self.body = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.Tanh(), torch.nn.Linear(4, 2))

    def forward(self, x):
        return self.body(x), self.body[0](x), self.body[:2](x), self.body[1:](self.body[0](x))


class _SetupFeatures(fnn.Module):
    def setup(self):
        self.body = nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 2))

    def __call__(self, x):
        return self.body(x), self.body[0](x), self.body[:2](x), self.body[1:](self.body[0](x))


class _CompactFeatures(fnn.Module):
    @fnn.compact
    def __call__(self, x):
        body = nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 2), name="body")
        return body(x), body[0](x), body[:2](x), body[1:](body[0](x))


@pytest.mark.parametrize("parent", [_SetupFeatures, _CompactFeatures])
def test_sequential_children_indexed_in_a_parent_use_its_variables(parent, rng):
    """``self.body[0](x)`` and ``self.body[:2](x)`` inside ``apply`` are the container's own children:
    in a setup parent they had created a second, untied copy (``body/layers_0``), in a compact one
    raised flax's CallCompactUnboundModuleError."""
    tm, x = _Features(), rng.standard_normal((2, 3))
    v = parent().init(jax.random.key(0), x)
    assert list(interop.variables_to_state_dict(v)) == list(tm.state_dict())
    _close(parent().apply(interop.state_dict_to_variables(tm.state_dict()), x),
           [t2n(t) for t in tm(torch.from_numpy(x))])


def test_tabulate_summarises_every_family():
    """Layers that validate their arguments at construction ran a flax-wrapped method there, which
    asserted a scope under ``Module.tabulate`` (a bare AssertionError)."""
    model = nn.Sequential(nn.ZeroPad2d(1), nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.Hardtanh(-1, 1), nn.ReLU(),
                          nn.Flatten(), nn.Linear(64, 2))
    table = model.tabulate(jax.random.key(0), jnp.ones((1, 3, 4, 4)), train=False)
    assert all(f"{name}" in table for name in ("ZeroPad2d", "Conv2d", "BatchNorm2d", "Hardtanh", "Linear"))
    assert "MSELoss" in nn.MSELoss().tabulate(jax.random.key(0), jnp.ones(3), jnp.zeros(3))


# --------------------------------------------------------------------------- ModuleList / ModuleDict / ParameterList / ParameterDict

from oracle import close  # noqa: E402


class TorchNet(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.module_list = torch.nn.ModuleList([torch.nn.Linear(3, 4), torch.nn.Tanh(), torch.nn.Linear(4, 4)])
        self.blocks = torch.nn.ModuleDict({"norm": torch.nn.BatchNorm1d(4), "proj": torch.nn.Linear(4, 2)})
        self.nested = torch.nn.ModuleList([torch.nn.ModuleList([torch.nn.Linear(2, 2)]),
                                           torch.nn.Sequential(torch.nn.Linear(2, 2), torch.nn.Sigmoid())])
        self.plist = torch.nn.ParameterList([torch.nn.Parameter(torch.randn(2)), torch.nn.Parameter(torch.randn(2))])
        self.pdict = torch.nn.ParameterDict({"scale": torch.nn.Parameter(torch.randn(2)),
                                             "shift": torch.nn.Parameter(torch.randn(()))})

    def forward(self, x):
        for m in self.module_list[:-1]:
            x = m(x)
        x = self.module_list[-1](x)
        x = self.blocks["proj"](self.blocks["norm"](x))
        x = self.nested[1](self.nested[0][0](x))
        x = x * self.plist[0] + self.plist[-1]
        return x * self.pdict["scale"] + self.pdict["shift"]


def _forward(self, x, train):
    for m in self.module_list[:-1]:
        x = m(x)
    x = self.module_list[-1](x)
    x = self.blocks["proj"](self.blocks["norm"](x, train=train))
    x = self.nested[1](self.nested[0][0](x))
    assert len(self.module_list) == 3 and len(self.plist) == 2 and "norm" in self.blocks and "x" not in self.blocks
    assert list(self.blocks.keys()) == ["norm", "proj"] and list(self.pdict) == ["scale", "shift"]
    x = x * self.plist[0] + self.plist[-1]
    return x * self.pdict["scale"] + self.pdict["shift"]


class SetupNet(fnn.Module):
    def setup(self):
        self.module_list = nn.ModuleList([nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 4)])
        self.blocks = nn.ModuleDict({"norm": nn.BatchNorm1d(4), "proj": nn.Linear(4, 2)})
        self.nested = nn.ModuleList([nn.ModuleList([nn.Linear(2, 2)]), nn.Sequential(nn.Linear(2, 2), nn.Sigmoid())])
        self.plist = nn.ParameterList([jnp.zeros(2), (jax.nn.initializers.normal(), (2,))])
        self.pdict = nn.ParameterDict([("scale", jnp.ones(2)), ("shift", jnp.zeros(()))])

    def __call__(self, x, *, train):
        return _forward(self, x, train)


class CompactNet(fnn.Module):
    @fnn.compact
    def __call__(self, x, *, train):
        ns = type("NS", (), {})()
        ns.module_list = nn.ModuleList([nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 4)], name="module_list")
        ns.blocks = nn.ModuleDict({"norm": nn.BatchNorm1d(4), "proj": nn.Linear(4, 2)}, name="blocks")
        ns.nested = nn.ModuleList([nn.ModuleList([nn.Linear(2, 2)]), nn.Sequential(nn.Linear(2, 2), nn.Sigmoid())],
                                  name="nested")
        ns.plist = nn.ParameterList([jnp.zeros(2), jnp.ones(2)], name="plist")
        ns.pdict = nn.ParameterDict({"scale": jnp.ones(2), "shift": jnp.zeros(())}, name="pdict")
        return _forward(ns, x, train)


@pytest.mark.parametrize("net", [SetupNet, CompactNet])
def test_containers_load_torch_state_dict_and_match(net, rng):
    torch.manual_seed(0)
    tm = TorchNet()
    with torch.no_grad():  # non-trivial running statistics
        tm.blocks["norm"].running_mean.copy_(torch.randn(4))
        tm.blocks["norm"].running_var.copy_(torch.rand(4) + 0.5)
    tm.eval()
    model = net()
    x = rng.standard_normal((5, 3))
    template = model.init(jax.random.key(0), x, train=False)  # eager: keeps the creation order
    sd = tm.state_dict()
    assert list(interop.variables_to_state_dict(template).keys()) == list(sd.keys())
    variables = interop.load_state_dict(template, sd, cast=False)  # strict
    xt = torch.from_numpy(x).requires_grad_()
    yt = tm(xt)
    cot = rng.standard_normal(yt.shape)
    yt.backward(torch.from_numpy(cot))

    def loss(p, x):
        return jnp.sum(model.apply({**variables, "params": p}, x, train=False) * cot)

    y = jax.jit(lambda v, x: model.apply(v, x, train=False))(variables, x)
    close(y, yt)
    gp, gx = jax.jit(jax.grad(loss, argnums=(0, 1)))(variables["params"], x)
    close(gx, xt.grad)
    torch_grads = {k: p.grad for k, p in tm.named_parameters()}
    ours = interop.variables_to_state_dict({"params": gp})
    assert set(ours) == set(torch_grads)
    for k in torch_grads:
        close(ours[k], torch_grads[k], err_msg=k)
    # training: batch statistics flow through the ModuleDict child and update its buffers
    tm.train()
    y, upd = jax.jit(lambda v, x: model.apply(v, x, train=True, mutable=["batch_stats"]))(variables, x)
    close(y, tm(torch.from_numpy(x)))
    close(upd["batch_stats"]["blocks"]["norm"]["running_mean"], tm.blocks["norm"].running_mean)


def test_parameter_list_values_and_initialisers():
    class P(fnn.Module):
        def setup(self):
            self.pl = nn.ParameterList([np.arange(3.0), (jax.nn.initializers.constant(2.0), 4, jnp.float64)])

        def __call__(self):
            assert [a.shape for a in self.pl] == [(3,), (4,)] and len(self.pl[0:1]) == 1
            return self.pl[0].sum() + self.pl[1].sum()

    out, v = P().init_with_output(jax.random.key(0))
    assert float(out) == 3.0 + 8.0
    assert v["params"]["pl"]["0"].dtype == jnp.float64 and v["params"]["pl"]["1"].dtype == jnp.float64
    assert list(interop.variables_to_state_dict(v)) == ["pl.0", "pl.1"]


def test_module_list_slice_and_unbound_access():
    ml = nn.ModuleList([nn.Linear(2, 3), nn.ReLU()])
    assert len(ml) == 2 and isinstance(ml[0], nn.Linear) and isinstance(ml[-1], nn.ReLU)
    assert isinstance(ml[1:], nn.ModuleList) and len(ml[1:]) == 1 and ml[1:].names == ("1",)
    md = nn.ModuleDict({"a": nn.ReLU()})
    assert md.keys() == ("a",) and isinstance(md["a"], nn.ReLU) and "a" in md


def test_container_errors():
    with pytest.raises(TypeError, match=r"ModuleList is not callable; iterate over it"):
        nn.ModuleList([nn.ReLU()]).init(jax.random.key(0), jnp.ones(2))
    with pytest.raises(TypeError, match=r"ModuleDict is not callable"):
        nn.ModuleDict({"a": nn.ReLU()}).apply({}, jnp.ones(2))
    with pytest.raises(TypeError, match=r"ParameterList is not callable"):
        nn.ParameterList([jnp.ones(2)]).init(jax.random.key(0))
    with pytest.raises(TypeError, match=r"ModuleList: child '1' is not a flax.linen Module: builtin_function_or_method"):
        nn.ModuleList([nn.ReLU(), print])
    with pytest.raises(TypeError, match=r"ModuleList: modules must be an iterable of items, got dict"):
        nn.ModuleList({"a": nn.ReLU()})
    with pytest.raises(TypeError, match=r"ModuleDict: keys must be strings"):
        nn.ModuleDict({1: nn.ReLU()})
    with pytest.raises(ValueError, match=r"ModuleDict: key 'a.b' must be a non-empty string without '.'"):
        nn.ModuleDict({"a.b": nn.ReLU()})
    with pytest.raises(ValueError, match=r"ModuleDict: duplicate keys"):
        nn.ModuleDict([("a", nn.ReLU()), ("a", nn.Tanh())])
    with pytest.raises(TypeError, match=r"ParameterList: entry '0' must be an array or \(init, shape\[, dtype\]\)"):
        nn.ParameterList([nn.ReLU()])
    with pytest.raises(ValueError, match=r"ParameterDict: entry 'w' must be an array or \(init, shape\[, dtype\]\)"):
        nn.ParameterDict({"w": (jax.nn.initializers.ones,)})
    ml = nn.ModuleList([nn.ReLU()])
    with pytest.raises(IndexError, match=r"ModuleList: index 1 is out of range for 1 modules"):
        ml[1]
    with pytest.raises(TypeError, match=r"ModuleList: indices must be integers or slices, got str"):
        ml["0"]
    with pytest.raises(KeyError, match=r"ModuleDict: no module named 'b'"):
        nn.ModuleDict({"a": nn.ReLU()})["b"]
    with pytest.raises(ValueError, match=r"ParameterList: parameters exist only inside init/apply"):
        nn.ParameterList([jnp.ones(2)])[0]

    class Bad(fnn.Module):
        def setup(self):
            self.pl = nn.ParameterList([jnp.ones(2)])
            self.pd = nn.ParameterDict({"a": jnp.ones(2)})

        def __call__(self, which):
            return self.pl[which] if isinstance(which, int) else self.pd[which]

    with pytest.raises(IndexError, match=r"ParameterList: index -2 is out of range for 1 parameters"):
        Bad().init(jax.random.key(0), -2)
    with pytest.raises(KeyError, match=r"ParameterDict: no parameter named 'b'"):
        Bad().init(jax.random.key(0), "b")


class _PositionalTrainBlock(fnn.Module):
    @fnn.compact
    def __call__(self, x, train):
        return nn.ReLU()(nn.BatchNorm1d(4)(nn.Linear(4, 4)(x), train=train))


def test_sequential_of_remat_blocks_taking_train_by_position():
    """The README's nn.remat(Block, static_argnums=(2,)) in a Sequential (ResNet's layerN): Sequential gave
    `train` by keyword, which flax's lifted remat counted wrongly (an error from inside jax.checkpoint)."""
    x = np.random.default_rng(0).normal(size=(3, 4)).astype(np.float32)
    remat = nn.Sequential(fnn.remat(_PositionalTrainBlock, static_argnums=(2,))(),
                          fnn.remat(_PositionalTrainBlock, static_argnums=(2,))())
    plain = nn.Sequential(_PositionalTrainBlock(), _PositionalTrainBlock())
    v = plain.init(jax.random.key(0), x, train=False)
    for train in (False, True):
        want = plain.apply(v, x, train=train, mutable=["batch_stats"])
        got = remat.apply(v, x, train=train, mutable=["batch_stats"])
        jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-6), got, want)
