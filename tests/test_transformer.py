"""Transformer layers and stacks against torch (float64): a torch model's state_dict loads
into the jaxlayers twin through interop.state_dict_to_variables, and outputs and gradients
w.r.t. the inputs and every parameter agree; error paths."""

import functools
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch

from jaxlayers import interop, nn
from oracle import close

E, H, FF, S, T, N = 8, 2, 12, 5, 4, 2
TOL = dict(rtol=1e-9, atol=1e-11)


_close = functools.partial(close, **TOL)


def _t(a):
    return None if a is None else torch.tensor(a)


def _seq(rng, n, batched=True, batch_first=False):
    if not batched:
        return rng.normal(size=(n, E))
    return rng.normal(size=(N, n, E) if batch_first else (n, N, E))


def _compare(t_model, j_model, inputs, kwargs, rng):
    """Outputs and gradients (inputs + every parameter) of torch vs jaxlayers (jitted)."""
    t_model.eval()  # dropout off; grads enabled keeps torch off its inference fast path
    tin = [torch.tensor(a, requires_grad=True) for a in inputs]
    out_t = t_model(*tin, **{k: _t(v) if isinstance(v, np.ndarray) else v for k, v in kwargs.items()})
    r = rng.normal(size=tuple(out_t.shape))
    (out_t * torch.tensor(r)).sum().backward()
    variables = interop.state_dict_to_variables(t_model.state_dict())

    def loss(params, *xs):
        out = j_model.apply({"params": params}, *xs, train=False, **kwargs)
        return jnp.sum(out * r), out

    grad_fn = jax.jit(jax.grad(loss, argnums=tuple(range(len(inputs) + 1)), has_aux=True))  # one compile, not
    grads, out = grad_fn(variables["params"], *inputs)                                      # op-by-op dispatch
    _close(out, out_t.detach().numpy())
    for g, x in zip(grads[1:], tin):
        _close(g, x.grad.numpy())
    flat = interop.flatten_variables(grads[0])
    named = dict(t_model.named_parameters())  # names match torch's state_dict keys
    assert set(flat) == set(named)
    for k, p in named.items():
        _close(flat[k], p.grad.numpy(), err_msg=k)


ENC_CASES = {
    "post_norm_masks": (dict(), dict(mask="float", kpm=True)),
    "pre_norm_gelu_bf": (dict(norm_first=True, activation="gelu", batch_first=True), dict(mask="bool", kpm=True)),
    "no_bias": (dict(bias=False, layer_norm_eps=1e-3), dict(mask="causal")),
    "causal_hint": (dict(batch_first=True), dict(mask="causal", is_causal=True)),
}


@pytest.mark.parametrize("norm_first", [False, True])
def test_variables_in_torchs_order(norm_first):
    """Parameters are created in torch's order (attention, feed-forward, norms), whatever order the
    forward calls them in: state_dict keys and parameters_to_vector's order equal torch's (the norms had
    come between the attention and the feed-forward)."""
    x = jnp.ones((3, 1, E))
    pairs = [(torch.nn.TransformerEncoderLayer(E, H, FF, norm_first=norm_first),
              nn.TransformerEncoderLayer(E, H, FF, norm_first=norm_first), (x,)),
             (torch.nn.TransformerDecoderLayer(E, H, FF, norm_first=norm_first),
              nn.TransformerDecoderLayer(E, H, FF, norm_first=norm_first), (x, x)),
             (torch.nn.Transformer(E, H, 1, 1, FF, norm_first=norm_first),
              nn.Transformer(E, H, 1, 1, FF, norm_first=norm_first), (x, x))]
    for t, ours, args in pairs:
        template = ours.init(jax.random.key(0), *args, train=False)
        assert list(interop.variables_to_state_dict(template)) == list(t.state_dict())
        # parameters_to_vector's default order: the init variables' (creation) order
        assert list(interop.flatten_variables(template["params"])) == [n for n, _ in t.named_parameters()]


@pytest.mark.parametrize("case", list(ENC_CASES))
def test_encoder_state_dict_parity(case, rng):
    opts, call = ENC_CASES[case]
    torch.manual_seed(0)
    t_layer = torch.nn.TransformerEncoderLayer(E, H, FF, 0.0, **opts)
    t_model = torch.nn.TransformerEncoder(t_layer, 2, torch.nn.LayerNorm(E, bias=opts.get("bias", True)),
                                          enable_nested_tensor=False)
    j_model = nn.TransformerEncoder(nn.TransformerEncoderLayer(E, H, FF, 0.0, **opts), 2,
                                    nn.LayerNorm(E, bias=opts.get("bias", True)))
    bf = opts.get("batch_first", False)
    src = _seq(rng, S, batch_first=bf)
    kw = {}
    if call.get("mask") == "float":
        kw["mask"] = rng.normal(size=(S, S))
    elif call.get("mask") == "bool":
        kw["mask"] = np.triu(rng.random((S, S)) < 0.5, 1)
    elif call.get("mask") == "causal":
        kw["mask"] = np.asarray(torch.nn.Transformer.generate_square_subsequent_mask(S))
    if call.get("kpm"):
        kpm = np.zeros((N, S), bool)
        kpm[0, -2:] = True
        kw["src_key_padding_mask"] = kpm
    if call.get("is_causal"):
        kw["is_causal"] = True
    _compare(t_model, j_model, [src], kw, rng)


@pytest.mark.parametrize("norm_first", [False, True])
def test_decoder_layer_parity(norm_first, rng):
    torch.manual_seed(1)
    t_model = torch.nn.TransformerDecoderLayer(E, H, FF, 0.0, norm_first=norm_first)
    j_model = nn.TransformerDecoderLayer(E, H, FF, 0.0, norm_first=norm_first)
    tgt, mem = _seq(rng, T), _seq(rng, S)
    mkpm = np.zeros((N, S), bool)
    mkpm[1, 0] = True
    kw = dict(tgt_mask=np.triu(np.full((T, T), -np.inf), 1), memory_mask=rng.normal(size=(T, S)),
              tgt_key_padding_mask=np.where(np.arange(T) == T - 1, -1e4, 0.0)[None].repeat(N, 0),
              memory_key_padding_mask=mkpm)
    _compare(t_model, j_model, [tgt, mem], kw, rng)


def test_transformer_parity_and_keys(rng):
    torch.manual_seed(2)
    t_model = torch.nn.Transformer(E, H, 1, 2, FF, 0.0, activation=torch.nn.functional.gelu, batch_first=True)
    j_model = nn.Transformer(E, H, 1, 2, FF, 0.0, activation="gelu", batch_first=True)
    src, tgt = _seq(rng, S, batch_first=True), _seq(rng, T, batch_first=True)
    kw = dict(tgt_mask=np.asarray(nn.Transformer.generate_square_subsequent_mask(T)),
              src_key_padding_mask=np.array([[False] * S, [False] * (S - 1) + [True]]))
    _compare(t_model, j_model, [src, tgt], kw, rng)


@pytest.mark.parametrize("custom", ["encoder", "both"])
def test_transformer_custom_encoder_decoder_state_dict(custom, rng):
    """custom_encoder/custom_decoder live under torch's `encoder.*`/`decoder.*` keys (they were
    stored as `custom_encoder.*`, so a torch state_dict did not load)."""
    torch.manual_seed(4)
    t_kw, j_kw = {}, {}
    if custom in ("encoder", "both"):
        t_kw["custom_encoder"] = torch.nn.TransformerEncoder(
            torch.nn.TransformerEncoderLayer(E, H, FF, 0.0, norm_first=True), 1, enable_nested_tensor=False)
        j_kw["custom_encoder"] = nn.TransformerEncoder(nn.TransformerEncoderLayer(E, H, FF, 0.0, norm_first=True), 1)
    if custom in ("decoder", "both"):
        t_kw["custom_decoder"] = torch.nn.TransformerDecoder(
            torch.nn.TransformerDecoderLayer(E, H, FF, 0.0), 2, torch.nn.LayerNorm(E))
        j_kw["custom_decoder"] = nn.TransformerDecoder(nn.TransformerDecoderLayer(E, H, FF, 0.0), 2, nn.LayerNorm(E))
    t_model = torch.nn.Transformer(E, H, 1, 1, FF, 0.0, **t_kw)
    j_model = nn.Transformer(E, H, 1, 1, FF, 0.0, **j_kw)
    src, tgt = _seq(rng, S), _seq(rng, T)
    v = j_model.init(jax.random.key(0), src, tgt, train=False)
    assert sorted(v["params"]) == ["decoder", "encoder"]
    assert set(interop.variables_to_state_dict(v)) == set(t_model.state_dict())
    _compare(t_model, j_model, [src, tgt], dict(tgt_mask=np.asarray(nn.Transformer.generate_square_subsequent_mask(T))),
             rng)


def test_unbatched_and_callable_activation(rng):
    torch.manual_seed(3)
    act_t = lambda x: torch.tanh(x) * 2  # noqa: E731
    act_j = lambda x: jnp.tanh(x) * 2  # noqa: E731
    t_model = torch.nn.TransformerEncoderLayer(E, H, FF, 0.0, activation=act_t)
    j_model = nn.TransformerEncoderLayer(E, H, FF, 0.0, activation=act_j)
    _compare(t_model, j_model, [_seq(rng, S, batched=False)], dict(src_key_padding_mask=np.eye(S, dtype=bool)[0]),
             rng)


def test_init_and_mask_helper():
    m = nn.Transformer(E, H, 1, 1, FF)
    x = jnp.zeros((S, N, E))
    v = jax.jit(lambda k: m.init(k, x, x[:T], train=False))(jax.random.key(0))
    sd = interop.variables_to_state_dict(v)
    t = torch.nn.Transformer(E, H, 1, 1, FF)
    assert {k: a.shape for k, a in sd.items()} == {k: tuple(p.shape) for k, p in t.state_dict().items()}
    bound = np.sqrt(6 / (E + FF))  # xavier-uniform on every matrix, as torch's _reset_parameters
    w = sd["encoder.layers.0.linear1.weight"]
    assert np.abs(w).max() <= bound and np.abs(w).max() > 1 / np.sqrt(E)
    assert np.all(sd["decoder.norm.weight"] == 1) and np.all(sd["decoder.layers.0.self_attn.in_proj_bias"] == 0)
    mask = nn.Transformer.generate_square_subsequent_mask(4)
    np.testing.assert_array_equal(mask, torch.nn.Transformer.generate_square_subsequent_mask(4).numpy())
    assert mask.dtype == jnp.float32


def test_dropout_train_mode(rng):
    m = nn.TransformerEncoderLayer(E, H, FF, dropout=0.3)
    x = _seq(rng, S)
    v = m.init(jax.random.key(0), x, train=False)
    ev = m.apply(v, x, train=False)
    a = m.apply(v, x, train=True, rngs={"dropout": jax.random.key(1)})
    b = m.apply(v, x, train=True, rngs={"dropout": jax.random.key(1)})
    c = m.apply(v, x, train=True, rngs={"dropout": jax.random.key(2)})
    _close(a, b)
    assert not np.allclose(a, c) and not np.allclose(a, ev)
    m0 = nn.TransformerEncoderLayer(E, H, FF, dropout=0.0)
    _close(m0.apply(v, x, train=True), ev)


def test_errors(rng):
    with pytest.raises(ValueError, match=r"TransformerEncoderLayer: d_model=6 \(embed_dim\) must be divisible by nhead=4"):
        nn.TransformerEncoderLayer(6, 4)
    with pytest.raises(ValueError, match="TransformerDecoderLayer: activation should be 'relu', 'gelu' or a callable, not 'tanh'"):
        nn.TransformerDecoderLayer(E, H, activation="tanh")
    with pytest.raises(TypeError, match="activation should be"):
        nn.TransformerEncoderLayer(E, H, activation=3)
    with pytest.raises(ValueError, match="TransformerEncoderLayer: dropout must be in"):
        nn.TransformerEncoderLayer(E, H, dropout=2.0)
    with pytest.raises(ValueError, match="Transformer: d_model=10 .* must be divisible by nhead=4"):
        nn.Transformer(10, 4)
    with pytest.raises(ValueError, match="TransformerEncoder: num_layers must be an int >= 1"):
        nn.TransformerEncoder(nn.TransformerEncoderLayer(E, H), 0)
    with pytest.raises(TypeError, match="TransformerDecoder: decoder_layer must be a flax module"):
        nn.TransformerDecoder(lambda x: x, 2)
    layer = nn.TransformerEncoderLayer(E, H, FF)
    x = jnp.zeros((S, N, E))
    with pytest.raises(ValueError, match="TransformerEncoderLayer: `train` must be given"):
        layer.init(jax.random.key(0), x)
    with pytest.raises(ValueError, match=r"TransformerEncoderLayer: expected src of shape \(S, N, d_model=8\).*got \(5, 2, 6\)"):
        layer.init(jax.random.key(0), x[..., :6], train=False)
    with pytest.raises(ValueError, match="is_causal=True is a hint that needs attn_mask"):
        layer.init(jax.random.key(0), x, is_causal=True, train=False)
    with pytest.raises(ValueError, match=r"attn_mask has shape \(4, 4\) but a 2-D \(L, S\) mask must have shape \(5, 5\)"):
        layer.init(jax.random.key(0), x, src_mask=np.zeros((4, 4)), train=False)
    with pytest.raises(ValueError, match="TransformerEncoder: `train` must be given"):
        nn.TransformerEncoder(layer, 2).init(jax.random.key(0), x)
    tr = nn.Transformer(E, H, 1, 1, FF)
    with pytest.raises(ValueError, match=r"Transformer: the batch size of src \(5, 2, 8\) and tgt \(4, 3, 8\) must be equal"):
        tr.init(jax.random.key(0), x, jnp.zeros((T, 3, E)), train=False)
    with pytest.raises(ValueError, match="Transformer: the feature size of src .* must equal d_model=8"):
        tr.init(jax.random.key(0), x, jnp.zeros((T, N, 4)), train=False)
    with pytest.raises(ValueError, match="must both be batched"):
        tr.init(jax.random.key(0), x, jnp.zeros((T, E)), train=False)
    with pytest.raises(ValueError, match="Transformer: `train` must be given"):
        tr.init(jax.random.key(0), x, x)


# ---------------------------------------------------------------- with and without jit (chex variants)

import chex  # noqa: E402
from absl.testing import parameterized  # noqa: E402


class VariantsTest(chex.TestCase):
    @chex.variants(with_jit=True, without_jit=True)
    @parameterized.parameters(False, True)
    def test_encoder_layer_output_and_input_grad(self, norm_first):
        rng = np.random.default_rng(7)
        torch.manual_seed(1)
        t = torch.nn.TransformerEncoderLayer(E, H, FF, 0.0, norm_first=norm_first, batch_first=True).double().eval()
        variables = interop.state_dict_to_variables(t.state_dict())
        m = nn.TransformerEncoderLayer(E, H, FF, 0.0, norm_first=norm_first, batch_first=True)
        src = rng.normal(size=(N, S, E))
        mask = np.asarray(torch.nn.Transformer.generate_square_subsequent_mask(S, dtype=torch.float64))
        fn = self.variant(lambda x: m.apply(variables, x, src_mask=mask, train=False))
        tx = torch.tensor(src, requires_grad=True)
        ty = t(tx, src_mask=torch.tensor(mask))
        cot = rng.normal(size=ty.shape)
        ty.backward(torch.tensor(cot))
        y, vjp = jax.vjp(fn, src)
        chex.assert_shape(y, (N, S, E))
        chex.assert_trees_all_close((y, vjp(jnp.asarray(cot))[0]), (ty.detach().numpy(), tx.grad.numpy()),
                                    rtol=1e-9, atol=1e-11)
