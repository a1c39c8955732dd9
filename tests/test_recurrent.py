"""RNNCell/LSTMCell/GRUCell and RNN/LSTM/GRU against torch in float64.

Each parity case loads the torch module's ``state_dict`` through
``interop.state_dict_to_variables`` and compares outputs, final states and the
gradients of one random linear functional of (output, h_n[, c_n]) with respect to
the input, the initial state and every parameter.
"""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from jaxlayers import functional as F
from jaxlayers import interop, nn
from oracle import close

TOL = dict(rtol=1e-10, atol=1e-12)
IN, HID = 3, 4


def _t(a):
    return torch.tensor(np.asarray(a), dtype=torch.float64, requires_grad=True)


def _flatten_states(states):
    return list(states) if isinstance(states, tuple) else [states]


def _check(tmod, jmod, x, hx, rng, *, apply=None, call_kw=None, jit=True):
    """Forward + backward of ``tmod`` (torch) and ``jmod`` (ours) on the same params and data
    (one jitted forward+backward per case, unless ``jit=False``)."""
    call_kw = {"train": False} if call_kw is None else call_kw
    variables = interop.state_dict_to_variables(tmod.state_dict())
    # names and shapes match our own init
    ours = jax.eval_shape(lambda: jmod.init(jax.random.key(0), jnp.asarray(x), **call_kw))
    assert jax.tree.map(jnp.shape, ours) == jax.tree.map(jnp.shape, variables)

    tx = _t(x)
    thx = None if hx is None else (tuple(_t(h) for h in hx) if isinstance(hx, tuple) else _t(hx))
    tout, tstate = tmod(tx, thx) if thx is not None else tmod(tx)
    touts = [tout] + _flatten_states(tstate)
    cot = [rng.standard_normal(tuple(o.shape)) for o in touts]
    sum(((o * torch.tensor(c)).sum() for o, c in zip(touts, cot))).backward()

    def loss(params, x, hx):
        out, state = (apply or jmod.apply)({"params": params}, x, hx, **call_kw)
        outs = [out] + _flatten_states(state)
        return sum(jnp.sum(o * c) for o, c in zip(outs, cot)), outs

    jhx = None if hx is None else jax.tree.map(jnp.asarray, hx)
    vg = jax.value_and_grad(loss, argnums=(0, 1, 2), has_aux=True)
    (_, jouts), grads = (jax.jit(vg) if jit else vg)(
        variables["params"], jnp.asarray(x), jhx)
    for i, (a, b) in enumerate(zip(jouts, touts)):
        close(a, b, **TOL, err_msg=f"output {i}")
    gp, gx, ghx = grads
    close(gx, tx.grad, **TOL, err_msg="grad input")
    if thx is not None:
        for a, b in zip(_flatten_states(ghx), _flatten_states(thx)):
            close(a, b.grad, **TOL, err_msg="grad hx")
    tparams = dict(tmod.named_parameters())
    assert set(gp) == set(tparams)
    for name, p in tparams.items():
        close(gp[name], p.grad, **TOL, err_msg=f"grad {name}")


# ----------------------------------------------------------------------------- layers

LAYER_CASES = {
    # id: (torch class, our class, kwargs, batched, batch_first, with hx)
    "rnn_tanh": (torch.nn.RNN, nn.RNN, {}, True, False, True),
    "rnn_relu_2l_bi_bf_nobias": (torch.nn.RNN, nn.RNN,
                                 dict(num_layers=2, nonlinearity="relu", bias=False, bidirectional=True,
                                      batch_first=True), True, True, False),
    "lstm_2l_bi_proj_bf": (torch.nn.LSTM, nn.LSTM,
                           dict(num_layers=2, bidirectional=True, proj_size=2, batch_first=True), True, True, True),
    "lstm_nobias": (torch.nn.LSTM, nn.LSTM, dict(bias=False), True, False, False),
    "lstm_unbatched_2l": (torch.nn.LSTM, nn.LSTM, dict(num_layers=2), False, False, True),
    "gru_2l_bi": (torch.nn.GRU, nn.GRU, dict(num_layers=2, bidirectional=True), True, False, True),
    "gru_unbatched_bi": (torch.nn.GRU, nn.GRU, dict(bidirectional=True), False, False, False),
}


def _layer_data(tcls, kwargs, batched, batch_first, with_hx, rng, L=5, N=2):
    x = rng.standard_normal(((N, L, IN) if batch_first else (L, N, IN)) if batched else (L, IN))
    hx = None
    if with_hx:
        d = 2 if kwargs.get("bidirectional") else 1
        lead = (d * kwargs.get("num_layers", 1),) + ((N,) if batched else ())
        h0 = rng.standard_normal(lead + (kwargs.get("proj_size", 0) or HID,))
        hx = (h0, rng.standard_normal(lead + (HID,))) if tcls is torch.nn.LSTM else h0
    return x, hx


@pytest.mark.parametrize("case", list(LAYER_CASES))
def test_layer_parity(case, rng):
    tcls, jcls, kwargs, batched, batch_first, with_hx = LAYER_CASES[case]
    torch.manual_seed(0)
    tmod = tcls(IN, HID, **kwargs)
    x, hx = _layer_data(tcls, kwargs, batched, batch_first, with_hx, rng)
    _check(tmod, jcls(IN, HID, **kwargs), x, hx, rng)


class TestLSTMJit(chex.TestCase):
    @chex.variants(with_jit=True, without_jit=True)
    def test_lstm_jit_parity(self):
        rng = np.random.default_rng(1)
        torch.manual_seed(1)
        tmod = torch.nn.LSTM(IN, HID, batch_first=True)
        jmod = nn.LSTM(IN, HID, batch_first=True)
        x, hx = _layer_data(torch.nn.LSTM, {}, True, True, True, rng)
        apply = self.variant(lambda v, x, hx, train: jmod.apply(v, x, hx, train=train), static_argnums=3)
        _check(tmod, jmod, x, hx, rng, apply=lambda v, x, hx, train: apply(v, x, hx, train), jit=False)


def test_state_dict_roundtrip_and_keys():
    torch.manual_seed(0)
    tmod = torch.nn.LSTM(IN, HID, num_layers=2, bidirectional=True, proj_size=2)
    jmod = nn.LSTM(IN, HID, num_layers=2, bidirectional=True, proj_size=2)
    x = jnp.zeros((4, 2, IN))
    ours = jax.jit(lambda k: jmod.init(k, x, train=False))(jax.random.key(0))
    sd = interop.variables_to_state_dict(ours)
    assert sd.keys() == tmod.state_dict().keys()
    assert interop.check_state_dict(tmod.state_dict(), ours).ok
    # our params load into torch and give torch's answer
    tmod.load_state_dict({k: torch.tensor(v, dtype=torch.float64) for k, v in sd.items()})
    xt = np.random.default_rng(0).standard_normal((4, 2, IN))
    out, (h, c) = jax.jit(lambda v, x: jmod.apply(v, x, train=False))(
        jax.tree.map(lambda a: jnp.asarray(a, jnp.float64), ours), xt)
    tout, (th, tc) = tmod(torch.tensor(xt))
    close(out, tout, **TOL, err_msg="out")
    close(h, th, **TOL, err_msg="h_n")
    close(c, tc, **TOL, err_msg="c_n")


def test_default_init_matches_torch_distribution():
    h = 64
    m = nn.GRU(5, h, num_layers=2, bidirectional=True)
    params = jax.jit(lambda k: m.init(k, jnp.zeros((1, 1, 5)), train=False))(jax.random.key(0))["params"]
    bound = 1 / np.sqrt(h)
    for name, p in params.items():
        p = np.asarray(p)
        assert p.dtype == np.float32, name
        assert np.abs(p).max() <= bound, name
        assert np.abs(p).max() > 0.9 * bound, name  # uniform over the whole range
        assert abs(p.std() - bound / np.sqrt(3)) < 0.15 * bound, name
    cell = nn.LSTMCell(5, h, weight_init=jax.nn.initializers.zeros)
    cp = jax.jit(lambda k: cell.init(k, jnp.zeros((5,))))(jax.random.key(0))["params"]
    assert not np.any(np.asarray(cp["weight_ih"])) and np.any(np.asarray(cp["bias_ih"]))


@pytest.mark.filterwarnings("ignore:LSTM. dropout=0.5 has no effect")  # re-emitted when flax clones
def test_dropout_between_layers():
    torch.manual_seed(0)
    # p=1 zeroes the input of layer 2 in both libraries: deterministic, comparable with torch
    tmod = torch.nn.GRU(IN, HID, num_layers=2, dropout=1.0).train()
    x = np.random.default_rng(0).standard_normal((5, 2, IN))
    v = interop.state_dict_to_variables(tmod.state_dict())
    tout, th = tmod(torch.tensor(x))
    # one compiled function for every p (dropout is a static module field, so rebuild per p)
    def run(p, train, key):
        return nn.GRU(IN, HID, num_layers=2, dropout=p).apply(v, x, train=train, rngs={"dropout": key})

    f = jax.jit(run, static_argnums=(0, 1))
    out, h = f(1.0, True, jax.random.key(0))
    close(out, tout, **TOL, err_msg="out")
    close(h, th, **TOL, err_msg="h_n")
    # p=0.5: random, reproducible per key, off in evaluation
    a, b, c = (f(0.5, True, jax.random.key(k))[0] for k in (1, 1, 2))
    ev = f(0.5, False, jax.random.key(0))[0]
    np.testing.assert_array_equal(a, b)
    assert not np.allclose(a, c) and not np.allclose(a, ev)
    # evaluation ignores dropout
    close(ev, tmod.eval()(torch.tensor(x))[0], **TOL, err_msg="eval out")
    # single layer: dropout has no effect (as torch, with a warning), no rng needed
    with pytest.warns(UserWarning, match="LSTM: dropout=0.5 has no effect"):
        one = nn.LSTM(IN, HID, dropout=0.5)
    g = jax.jit(lambda v, x, train: one.apply(v, x, train=train)[0], static_argnums=2)
    vv = jax.jit(lambda k: one.init(k, x, train=False))(jax.random.key(0))
    np.testing.assert_array_equal(g(vv, x, True), g(vv, x, False))


def test_train_is_required():
    m = nn.LSTM(IN, HID)
    x = jnp.zeros((4, 2, IN))
    with pytest.raises(ValueError, match="LSTM: `train` must be given"):
        jax.eval_shape(lambda: m.init(jax.random.key(0), x))
    with pytest.raises(ValueError, match="LSTM: `train` must be given"):
        jax.eval_shape(lambda: m.apply(m.init(jax.random.key(0), x, train=False), x))
    with pytest.raises(TypeError, match="GRU: `train` must be a Python bool"):
        jax.eval_shape(lambda: nn.GRU(IN, HID).init(jax.random.key(0), x, train="yes"))


def test_float32_bfloat16_and_vmap():
    m = nn.LSTM(IN, HID, bidirectional=True)
    x64 = np.random.default_rng(0).standard_normal((5, 2, IN))
    v = jax.jit(lambda k: m.init(k, jnp.zeros((5, 2, IN), jnp.float32), train=False))(jax.random.key(0))
    v64 = jax.tree.map(lambda a: a.astype(jnp.float64), v)
    f = jax.jit(lambda v, x, dtype: m.clone(dtype=dtype).apply(v, x, train=False), static_argnums=2)
    ref, (rh, rc) = f(v64, x64, None)
    out, (h, c) = f(v, x64.astype(np.float32), None)
    assert out.dtype == h.dtype == c.dtype == jnp.float32
    np.testing.assert_allclose(out, ref, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(c, rc, rtol=1e-5, atol=1e-5)
    outb, (hb, cb) = f(v, x64.astype(np.float32), jnp.bfloat16)
    assert outb.dtype == jnp.bfloat16 and cb.dtype == jnp.bfloat16
    assert v["params"]["weight_ih_l0"].dtype == jnp.float32
    np.testing.assert_allclose(np.asarray(outb, np.float32), ref, atol=5e-2)
    # vmap over unbatched sequences == the batched call
    vo, (vh, vc) = jax.jit(jax.vmap(lambda x: m.apply(v64, x, train=False), in_axes=1,
                                    out_axes=(1, (1, 1))))(x64)
    np.testing.assert_allclose(vo, ref, **TOL)
    np.testing.assert_allclose(vh, rh, **TOL)
    np.testing.assert_allclose(vc, rc, **TOL)


# ----------------------------------------------------------------------------- cells

CELL_CASES = {
    "rnn_tanh": (torch.nn.RNNCell, nn.RNNCell, {}, True, True),
    "rnn_relu_nobias": (torch.nn.RNNCell, nn.RNNCell, dict(nonlinearity="relu", bias=False), True, False),
    "lstm": (torch.nn.LSTMCell, nn.LSTMCell, {}, True, True),
    "lstm_unbatched": (torch.nn.LSTMCell, nn.LSTMCell, {}, False, False),
    "gru": (torch.nn.GRUCell, nn.GRUCell, {}, True, True),
    "gru_unbatched_nobias": (torch.nn.GRUCell, nn.GRUCell, dict(bias=False), False, True),
}


@pytest.mark.parametrize("case", list(CELL_CASES))
def test_cell_parity(case, rng):
    tcls, jcls, kwargs, batched, with_hx = CELL_CASES[case]
    torch.manual_seed(0)
    tmod = tcls(IN, HID, **kwargs)
    jmod = jcls(IN, HID, **kwargs)
    lead = (2,) if batched else ()
    x = rng.standard_normal(lead + (IN,))
    hx = None
    if with_hx:
        hx = rng.standard_normal(lead + (HID,))
        if tcls is torch.nn.LSTMCell:
            hx = (hx, rng.standard_normal(lead + (HID,)))

    # cells return h' or (h', c'): wrap so that _check sees (output, state)
    class TorchWrap(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.cell = tmod

        def forward(self, x, hx=None):
            out = self.cell(x, hx)
            return (out[0], out[1]) if isinstance(out, tuple) else (out, ())

        def state_dict(self):
            return tmod.state_dict()

        def named_parameters(self):
            return tmod.named_parameters()

    def apply(v, x, hx):
        out = jmod.apply(v, x, hx)
        return (out[0], out[1]) if isinstance(out, tuple) else (out, ())

    _check(TorchWrap(), jmod, x, hx, rng, apply=apply, call_kw={})


def test_functional_matches_module_and_cells():
    rng = np.random.default_rng(3)
    torch.manual_seed(0)
    t = torch.nn.LSTM(IN, HID, num_layers=2, proj_size=2)
    x = rng.standard_normal((4, 2, IN))
    flat = [jnp.asarray(p.detach().numpy()) for p in t._flat_weights]
    out, (h, c) = F.lstm(x, None, flat, num_layers=2, proj_size=2)
    tout, (th, tc) = t(torch.tensor(x))
    close(out, tout, **TOL, err_msg="out")
    close(c, tc, **TOL, err_msg="c_n")
    # one step of the layer function == the cell function
    w = {k: jnp.asarray(v.numpy()) for k, v in torch.nn.GRU(IN, HID).state_dict().items()}
    o1, _ = F.gru(x[:1], None, w)
    o2 = F.gru_cell(x[0], None, w["weight_ih_l0"], w["weight_hh_l0"], w["bias_ih_l0"], w["bias_hh_l0"])
    np.testing.assert_allclose(o1[0], o2, **TOL)
    tc_ = torch.rnn_relu_cell(torch.tensor(x[0]), torch.tensor(np.ones((2, HID))), *[torch.tensor(np.asarray(a)) for a in (
        w["weight_ih_l0"][:HID], w["weight_hh_l0"][:HID, :], w["bias_ih_l0"][:HID], w["bias_hh_l0"][:HID])])
    jc = F.rnn_relu_cell(x[0], np.ones((2, HID)), w["weight_ih_l0"][:HID], w["weight_hh_l0"][:HID],
                         w["bias_ih_l0"][:HID], w["bias_hh_l0"][:HID])
    close(jc, tc_, **TOL, err_msg="rnn_relu_cell")
    assert F.rnn_weight_names(1, True, True, 2) == [n for n, _ in torch.nn.LSTM(1, 3, bidirectional=True,
                                                                              proj_size=2).named_parameters()]


@pytest.mark.parametrize("mode,gates", [("LSTM", 4), ("GRU", 3), ("RNN_TANH", 1)])
def test_time_loop_reads_whole_gate_arrays(mode, gates):
    """The scan's per-step inputs are one (T, N, H) projection per gate, not slices of a (T, N, G*H)
    one (which made XLA:CPU's loop 1.3-1.6x slower; docs/recurrent.md)."""
    T, N, H = 5, 2, 3
    w = {k: jnp.asarray(v.numpy()) for k, v in torch.nn.LSTM(IN, H).state_dict().items()}
    if mode != "LSTM":
        w = {k: v[: gates * H] for k, v in w.items()}
    jaxpr = jax.make_jaxpr(lambda x: F.rnn(x, None, w, mode=mode))(jnp.ones((T, N, IN)))

    def scans(jaxpr):
        for eqn in jaxpr.eqns:
            if eqn.primitive.name == "scan":
                yield eqn
            for sub in jax.core.jaxprs_in_params(eqn.params):
                yield from scans(sub)

    (scan,) = scans(jaxpr.jaxpr)
    xs = [v.aval.shape for v in scan.invars[scan.params["num_consts"] + scan.params["num_carry"]:]]
    assert xs == [(T, N, H)] * gates, xs


@given(L=st.integers(1, 4), N=st.integers(1, 3), layers=st.integers(1, 3), bi=st.booleans(),
       bf=st.booleans(), proj=st.integers(0, 3), batched=st.booleans())
def test_output_shapes_match_torch(L, N, layers, bi, bf, proj, batched):
    t = torch.nn.LSTM(2, 4, num_layers=layers, bidirectional=bi, batch_first=bf, proj_size=proj)
    m = nn.LSTM(2, 4, num_layers=layers, bidirectional=bi, batch_first=bf, proj_size=proj)
    shape = ((N, L, 2) if bf else (L, N, 2)) if batched else (L, 2)
    tout, (th, tc) = t(torch.zeros(shape))

    def f(x):
        v = m.init(jax.random.key(0), x, train=False)
        return m.apply(v, x, train=False)

    out, (h, c) = jax.eval_shape(f, jax.ShapeDtypeStruct(shape, jnp.float32))
    assert (out.shape, h.shape, c.shape) == (tuple(tout.shape), tuple(th.shape), tuple(tc.shape))


# ----------------------------------------------------------------------------- errors

def _init(m, x, hx=None, **kw):
    return jax.eval_shape(lambda: m.init(jax.random.key(0), jnp.zeros(x), hx, **kw))


@pytest.mark.parametrize("make, exc, match", [
    (lambda: nn.LSTM(IN, 0), ValueError, r"LSTM: hidden_size must be >= 1, got hidden_size=0"),
    (lambda: nn.GRU(IN, -1), ValueError, r"GRU: hidden_size must be >= 1"),
    (lambda: nn.RNN(IN, HID, num_layers=0), ValueError, r"RNN: num_layers must be >= 1, got num_layers=0"),
    (lambda: nn.RNN(IN, 2.5), TypeError, r"RNN: hidden_size must be an int"),
    (lambda: nn.GRU(0, HID), ValueError, r"GRU: input_size must be >= 1, got input_size=0"),  # as torch (cells take 0)
    (lambda: nn.LSTM(IN, HID, dropout=1.5), ValueError, r"LSTM: dropout should be a number in range \[0, 1\]"),
    (lambda: nn.GRU(IN, HID, dropout=-0.1), ValueError, r"GRU: dropout should be a number"),
    (lambda: nn.LSTM(IN, HID, proj_size=HID), ValueError, r"LSTM: proj_size has to be smaller than hidden_size"),
    (lambda: nn.LSTM(IN, HID, proj_size=-1), ValueError, r"LSTM: proj_size must be >= 0"),
    (lambda: nn.RNN(IN, HID, nonlinearity="gelu"), ValueError, r"RNN: unknown nonlinearity 'gelu'"),
    (lambda: nn.RNNCell(IN, HID, nonlinearity="sigmoid"), ValueError, r"RNNCell: unknown nonlinearity"),
    (lambda: nn.GRUCell(IN, 0), ValueError, r"GRUCell: hidden_size must be >= 1"),
])
def test_constructor_errors(make, exc, match):
    with pytest.raises(exc, match=match):
        make()


H2 = (2, 2, HID)  # 2 layers, batch 2


@pytest.mark.parametrize("mod, x, hx, match", [
    (nn.LSTM(IN, HID), (5, 2, IN + 1), None, r"LSTM: expected input with 3 features \(input_size=3\), got shape \(5, 2, 4\)"),
    (nn.GRU(IN, HID), (2, 3, 5, IN), None, r"GRU: expected a 3-D input \(L, N, H_in\) or a 2-D unbatched"),
    (nn.RNN(IN, HID, batch_first=True), (IN,), None, r"RNN: expected a 3-D input \(N, L, H_in\)"),
    (nn.GRU(IN, HID, num_layers=2), (5, 2, IN), np.zeros((2, 3, HID)),
     r"GRU: expected h_0 of shape \(2, 2, 4\) \(num_layers\*num_directions=2, batch=2, hidden_size=4\), got \(2, 3, 4\)"),
    (nn.GRU(IN, HID, num_layers=2), (5, 2, IN), np.zeros((2, 2, HID + 1)), r"GRU: expected h_0 of shape \(2, 2, 4\)"),
    (nn.RNN(IN, HID, bidirectional=True), (5, 2, IN), np.zeros((1, 2, HID)),
     r"RNN: expected h_0 of shape \(2, 2, 4\) \(num_layers\*num_directions=2"),
    (nn.RNN(IN, HID), (5, IN), np.zeros((1, 2, HID)), r"RNN: for unbatched 2-D input, h_0 should be 2-D, got 3-D"),
    (nn.RNN(IN, HID), (5, 2, IN), np.zeros((1, HID)), r"RNN: for batched 3-D input, h_0 should be 3-D"),
    (nn.GRU(IN, HID), (0, 2, IN), None, r"GRU: expected a sequence length larger than 0"),
    (nn.LSTM(IN, HID, batch_first=True), (2, 0, IN), None, r"LSTM: expected a sequence length larger than 0"),
    (nn.LSTM(IN, HID, num_layers=2, proj_size=2), (5, 2, IN), (np.zeros(H2), np.zeros(H2)),
     r"LSTM: expected h_0 of shape \(2, 2, 2\) .*proj_size=2\), got \(2, 2, 4\)"),
    (nn.LSTM(IN, HID, num_layers=2, proj_size=2), (5, 2, IN), (np.zeros((2, 2, 2)), np.zeros((2, 2, 2))),
     r"LSTM: expected c_0 of shape \(2, 2, 4\)"),
])
def test_call_errors(mod, x, hx, match):
    with pytest.raises(ValueError, match=match):
        _init(mod, x, hx, train=False)


def test_call_type_errors():
    with pytest.raises(TypeError, match=r"LSTM: hx must be a tuple \(h_0, c_0\)"):
        _init(nn.LSTM(IN, HID), (5, 2, IN), np.zeros((1, 2, HID)), train=False)
    with pytest.raises(TypeError, match=r"GRU: hx must be an array h_0"):
        _init(nn.GRU(IN, HID), (5, 2, IN), (np.zeros((1, 2, HID)),), train=False)
    with pytest.raises(TypeError, match=r"LSTMCell: hx must be a tuple \(h_0, c_0\)"):
        _init(nn.LSTMCell(IN, HID), (2, IN), np.zeros((2, HID)))


@pytest.mark.parametrize("mod, x, hx, match", [
    (nn.RNNCell(IN, HID), (2, 5, IN), None, r"RNNCell: expected input of shape \(batch, input_size\) or \(input_size,\), got 3-D"),
    (nn.GRUCell(IN, HID), (2, IN + 2), None, r"GRUCell: expected input with 3 features \(input_size=3\), got shape \(2, 5\)"),
    (nn.GRUCell(IN, HID), (2, IN), np.zeros((3, HID)), r"GRUCell: expected hx of shape \(2, 4\) \(batch, hidden_size\), got \(3, 4\)"),
    (nn.RNNCell(IN, HID), (IN,), np.zeros((1, HID)), r"RNNCell: expected hx of shape \(4,\) \(hidden_size,\) for unbatched"),
    (nn.LSTMCell(IN, HID), (2, IN), (np.zeros((2, HID)), np.zeros((2, HID + 1))), r"LSTMCell: expected c_0 of shape \(2, 4\)"),
])
def test_cell_call_errors(mod, x, hx, match):
    with pytest.raises(ValueError, match=match):
        _init(mod, x, hx)


def test_functional_errors():
    w = {k: jnp.asarray(v.numpy()) for k, v in torch.nn.LSTM(IN, HID, num_layers=2).state_dict().items()}
    x = np.zeros((5, 2, IN))
    with pytest.raises(ValueError, match=r"lstm: weights do not match the configuration: missing \[\], unexpected \['weight_ih_l1'"):
        F.lstm(x, None, w)  # num_layers defaults to 1: the l1 weights are unexpected
    with pytest.raises(ValueError, match=r"lstm: expected 8 weights"):
        F.lstm(x, None, list(w.values())[:3], num_layers=2)
    with pytest.raises(ValueError, match=r"lstm: dropout=0.5 with train=True needs a PRNG `key`"):
        F.lstm(x, None, w, num_layers=2, dropout=0.5, train=True)
    with pytest.raises(ValueError, match=r"gru: proj_size is only supported for LSTM"):
        F.gru(x, None, w, proj_size=1)
    with pytest.raises(ValueError, match=r"rnn: mode must be one of"):
        F.rnn(x, None, w, mode="LSTM2")
    with pytest.raises(ValueError, match=r"lstm: num_layers must be a positive int, got 0"):
        F.lstm(x, None, w, num_layers=0)
    with pytest.raises(ValueError, match=r"lstm: dropout must be a probability in \[0, 1\]"):
        F.lstm(x, None, w, num_layers=2, dropout=2.0)
    with pytest.raises(ValueError, match=r"lstm: expected weight_hh_l1 of shape \(16, 4\), got \(16, 3\)"):
        F.lstm(x, None, {**w, "weight_hh_l1": w["weight_ih_l0"]}, num_layers=2)
    with pytest.raises(ValueError, match=r"lstm: proj_size must be smaller than hidden_size"):
        F.lstm(x, None, list(w.values())[:4] + [jnp.zeros((4, 4))], proj_size=4)
    with pytest.raises(ValueError, match=r"lstm_cell: expected weight_ih of shape \(4\*hidden_size, input_size\)"):
        F.lstm_cell(x[0], None, w["weight_ih_l0"], w["weight_ih_l0"])
    with pytest.raises(ValueError, match=r"gru_cell: expected bias_hh of shape \(12,\), got \(16,\)"):
        F.gru_cell(x[0], None, w["weight_ih_l0"][:12], w["weight_hh_l0"][:12], None, w["bias_hh_l0"])


@pytest.mark.parametrize("mode", ["LSTM", "GRU", "RNN_TANH"])
def test_half_precision_sequences_and_cells_run_in_float32(mode):
    """bfloat16 layers compute gates, states and the scan's weight-gradient sums in float32 and round
    once: output and every gradient at least as close to the float64 truth as torch's bfloat16 ones
    (they had been 3-6x torch's error, the bias gradients most)."""
    rng = np.random.default_rng(0)
    length, batch, n_in, hidden = 24, 8, 4, 16
    tcls = {"LSTM": torch.nn.LSTM, "GRU": torch.nn.GRU, "RNN_TANH": torch.nn.RNN}[mode]
    exact = tcls(n_in, hidden).double()
    ws = {n: jnp.asarray(p.detach().numpy(), jnp.bfloat16) for n, p in exact.named_parameters()}
    half = tcls(n_in, hidden).to(torch.bfloat16)
    with torch.no_grad():
        for (n, pe), ph in zip(exact.named_parameters(), half.parameters()):
            pe.copy_(torch.tensor(np.asarray(ws[n], np.float64)))
            ph.copy_(pe)
    x = jnp.asarray(rng.standard_normal((length, batch, n_in)), jnp.bfloat16)
    g = jnp.asarray(rng.standard_normal((length, batch, hidden)), jnp.bfloat16)
    xt = torch.tensor(np.asarray(x, np.float64))
    out = exact(xt)[0]
    out.backward(torch.tensor(np.asarray(g, np.float64)))
    out_h = half(xt.to(torch.bfloat16))[0]
    out_h.backward(torch.tensor(np.asarray(g, np.float64)).to(torch.bfloat16))
    fn = {"LSTM": F.lstm, "GRU": F.gru, "RNN_TANH": F.rnn_tanh}[mode]
    y, vjp = jax.vjp(lambda w: fn(x, None, w)[0], ws)
    grads = vjp(g)[0]
    assert y.dtype == jnp.bfloat16

    def err(a, truth):
        a, truth = np.asarray(a, np.float64), np.asarray(truth, np.float64)
        return np.linalg.norm(a - truth) / np.linalg.norm(truth)

    assert err(y, out.detach()) <= err(out_h.detach().double(), out.detach())
    for (n, pe), ph in zip(exact.named_parameters(), half.parameters()):
        assert err(grads[n], pe.grad) <= err(ph.grad.double(), pe.grad), n
    cell = {"LSTM": F.lstm_cell, "GRU": F.gru_cell, "RNN_TANH": F.rnn_tanh_cell}[mode]
    h = cell(x[0], None, ws["weight_ih_l0"], ws["weight_hh_l0"], ws["bias_ih_l0"], ws["bias_hh_l0"])
    assert all(a.dtype == jnp.bfloat16 for a in (h if isinstance(h, tuple) else (h,)))
