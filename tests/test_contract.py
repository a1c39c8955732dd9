"""The contract of ../shared/SPEC.md across families: public surface, constructors,
train/eval handling, variable names and layouts, dtypes.  Numerics of each family
are tested in its own file; this file checks that the families fit together."""

from collections import OrderedDict

import flax.linen as fnn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch

import jaxlayers as jl
from jaxlayers import functional as F
from jaxlayers import interop, nn, ops

CATALOGUE_NN = """
Conv1d Conv2d Conv3d ConvTranspose1d ConvTranspose2d ConvTranspose3d LazyConv1d LazyConv2d LazyConv3d
LazyConvTranspose1d LazyConvTranspose2d LazyConvTranspose3d Linear Bilinear Identity LazyLinear
BatchNorm1d BatchNorm2d BatchNorm3d LayerNorm InstanceNorm1d InstanceNorm2d InstanceNorm3d GroupNorm RMSNorm
LocalResponseNorm SwitchNorm1d SwitchNorm2d MaxPool1d MaxPool2d MaxPool3d MaxUnpool1d MaxUnpool2d MaxUnpool3d
AvgPool1d AvgPool2d AvgPool3d AdaptiveAvgPool1d AdaptiveAvgPool2d AdaptiveAvgPool3d AdaptiveMaxPool1d
AdaptiveMaxPool2d AdaptiveMaxPool3d LPPool1d LPPool2d LPPool3d ZeroPad1d ZeroPad2d ZeroPad3d ConstantPad1d
ConstantPad2d ConstantPad3d ReflectionPad1d ReflectionPad2d ReflectionPad3d ReplicationPad1d ReplicationPad2d
ReplicationPad3d CircularPad1d CircularPad2d CircularPad3d ReLU ReLU6 LeakyReLU PReLU ELU SELU CELU GELU SiLU
Mish Sigmoid LogSigmoid Tanh Hardtanh Hardswish Hardsigmoid Hardshrink Softshrink Tanhshrink Softsign Softplus
Threshold GLU Softmax LogSoftmax Softmin Softmax2d Dropout Dropout1d Dropout2d Dropout3d AlphaDropout
FeatureAlphaDropout Embedding EmbeddingBag Sequential Flatten Unflatten RNNCell LSTMCell GRUCell RNN LSTM GRU
MultiheadAttention TransformerEncoderLayer TransformerDecoderLayer TransformerEncoder TransformerDecoder Transformer
""".split()

CATALOGUE_F = """
conv1d conv2d conv3d conv_transpose1d conv_transpose2d conv_transpose3d linear bilinear pad batch_norm layer_norm
instance_norm group_norm rms_norm local_response_norm max_pool1d max_pool2d max_pool3d max_unpool1d max_unpool2d
max_unpool3d avg_pool1d avg_pool2d avg_pool3d adaptive_avg_pool1d adaptive_avg_pool2d adaptive_avg_pool3d
adaptive_max_pool1d adaptive_max_pool2d adaptive_max_pool3d lp_pool1d lp_pool2d lp_pool3d relu relu6 leaky_relu
prelu elu selu celu gelu silu mish sigmoid logsigmoid tanh hardtanh hardswish hardsigmoid hardshrink softshrink
tanhshrink softsign softplus threshold glu softmax log_softmax softmin dropout dropout1d dropout2d dropout3d
alpha_dropout feature_alpha_dropout embedding embedding_bag scaled_dot_product_attention
multi_head_attention_forward
""".split()

CATALOGUE_OPS = """
split chunk squeeze unsqueeze flatten unflatten expand view reshape permute transpose cat concat stack narrow
repeat mean sum var std max min mm bmm matmul
""".split()


def test_public_surface_is_complete():
    assert [n for n in CATALOGUE_NN if not hasattr(nn, n)] == []
    assert [n for n in CATALOGUE_F if not callable(getattr(F, n, None))] == []
    assert [n for n in CATALOGUE_OPS if not callable(getattr(ops, n, None))] == []
    for mod in ("functional", "nn", "ops", "interop", "init"):
        assert hasattr(jl, mod)


# ---------------------------------------------------------------- train / eval

X4 = jnp.ones((2, 4, 6, 6))
TRAIN_MODULES = [
    (lambda: nn.BatchNorm2d(4), X4),
    (lambda: nn.InstanceNorm2d(4), X4),
    (lambda: nn.SwitchNorm2d(4), X4),
    (lambda: nn.Dropout(0.5), X4),
    (lambda: nn.Dropout2d(0.5), X4),
    (lambda: nn.AlphaDropout(0.5), X4),
    (lambda: nn.FeatureAlphaDropout(0.5), X4),
    (lambda: nn.LSTM(6, 3), jnp.ones((5, 2, 6))),
    (lambda: nn.GRU(6, 3), jnp.ones((5, 2, 6))),
    (lambda: nn.RNN(6, 3), jnp.ones((5, 2, 6))),
    (lambda: nn.TransformerEncoderLayer(6, 2, 8), jnp.ones((5, 2, 6))),
]


@pytest.mark.parametrize("make,x", TRAIN_MODULES, ids=lambda v: "" if not callable(v) else type(v()).__name__)
def test_leaving_out_train_is_a_clear_error(make, x):
    module = make()
    variables = module.init({"params": jax.random.key(0), "dropout": jax.random.key(1)}, x, train=False)
    with pytest.raises(ValueError, match=f"{type(module).__name__}: `train` must be given"):
        module.apply(variables, x)


def test_mha_needs_train():
    mha = nn.MultiheadAttention(6, 2)
    q = jnp.ones((3, 2, 6))
    v = mha.init(jax.random.key(0), q, q, q, train=False)
    with pytest.raises(ValueError, match="MultiheadAttention: `train` must be given"):
        mha.apply(v, q, q, q)


def test_sequential_passes_train_and_updates_batch_stats():
    model = nn.Sequential(nn.Conv2d(4, 3, 3), nn.BatchNorm2d(3), nn.ReLU(), nn.Dropout(0.5), nn.Flatten())
    v = model.init(jax.random.key(0), X4, train=False)
    assert set(v) == {"params", "batch_stats"}
    y, upd = model.apply(v, X4, train=True, mutable=["batch_stats"], rngs={"dropout": jax.random.key(2)})
    assert int(upd["batch_stats"]["1"]["num_batches_tracked"]) == 1
    assert float(jnp.mean(y == 0)) > 0.3  # dropout active
    y_eval = model.apply(v, X4, train=False)
    assert y_eval.shape == y.shape
    with pytest.raises(ValueError, match="BatchNorm2d: `train` must be given"):
        model.apply(v, X4)


# ------------------------------------------------------ constructors & layouts


def _shapes(module, *args, **kwargs):
    v = module.init({"params": jax.random.key(0), "dropout": jax.random.key(1)}, *args, **kwargs)
    return {k: tuple(np.shape(a)) for k, a in interop.variables_to_state_dict(v).items()}


def _torch_shapes(module):
    return {k: tuple(t.shape) for k, t in module.state_dict().items()}


def test_spec_constructor_examples_match_torch_variables():
    conv = nn.Conv2d(16, 33, (3, 5), stride=(2, 1), padding=(4, 2), dilation=(3, 1))
    assert _shapes(conv, jnp.ones((1, 16, 20, 20))) == _torch_shapes(
        torch.nn.Conv2d(16, 33, (3, 5), stride=(2, 1), padding=(4, 2), dilation=(3, 1)))
    bn = nn.BatchNorm2d(100, affine=False)
    assert _shapes(bn, jnp.ones((2, 100, 2, 2)), train=False) == _torch_shapes(torch.nn.BatchNorm2d(100, affine=False))
    lstm = nn.LSTM(input_size=2, hidden_size=3, num_layers=2, batch_first=True)
    assert _shapes(lstm, jnp.ones((4, 5, 2)), train=False) == _torch_shapes(
        torch.nn.LSTM(input_size=2, hidden_size=3, num_layers=2, batch_first=True))
    tconv = nn.ConvTranspose2d(6, 4, 3, groups=2)
    assert _shapes(tconv, jnp.ones((1, 6, 5, 5))) == _torch_shapes(torch.nn.ConvTranspose2d(6, 4, 3, groups=2))


class TorchNet(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.features = torch.nn.Sequential(OrderedDict(
            conv=torch.nn.Conv2d(3, 4, 3, padding=1), bn=torch.nn.BatchNorm2d(4), act=torch.nn.PReLU(4),
            pool=torch.nn.MaxPool2d(2)))
        self.norm = torch.nn.LayerNorm([4, 3, 3])
        self.embed = torch.nn.Embedding(10, 5, padding_idx=0)
        self.head = torch.nn.Linear(4 * 3 * 3 + 5, 2)

    def forward(self, x, ids):
        h = self.norm(self.features(x)).flatten(1)
        return self.head(torch.cat([h, self.embed(ids)], dim=1))


class JaxNet(fnn.Module):
    def setup(self):
        self.features = nn.Sequential(OrderedDict(
            conv=nn.Conv2d(3, 4, 3, padding=1), bn=nn.BatchNorm2d(4), act=nn.PReLU(4), pool=nn.MaxPool2d(2)))
        self.norm = nn.LayerNorm((4, 3, 3))
        self.embed = nn.Embedding(10, 5, padding_idx=0)
        self.head = nn.Linear(4 * 3 * 3 + 5, 2)

    def __call__(self, x, ids, *, train: bool):
        h = ops.flatten(self.norm(self.features(x, train=train)), 1)
        return self.head(ops.cat([h, self.embed(ids)], dim=1))


def test_mixed_model_state_dict_keys_load_and_agree_with_torch():
    tnet = TorchNet()
    x = np.random.default_rng(0).standard_normal((2, 3, 6, 6))
    ids = np.array([0, 7])
    jnet = JaxNet()
    template = jnet.init(jax.random.key(0), jnp.asarray(x), jnp.asarray(ids), train=False)
    assert list(interop.variables_to_state_dict(template)) == list(tnet.state_dict())
    variables = interop.load_state_dict(template, tnet.state_dict(), cast=False)
    for mode in (False, True):  # eval first: torch updates its running stats in a training forward
        tnet.train(mode)
        want = tnet(torch.from_numpy(x), torch.from_numpy(ids)).detach().numpy()
        got = jnet.apply(variables, jnp.asarray(x), jnp.asarray(ids), train=mode,
                         mutable=["batch_stats"] if mode else False)
        got = got[0] if mode else got
        np.testing.assert_allclose(np.asarray(got), want, rtol=1e-10, atol=1e-12)


def test_inplace_is_accepted_as_a_no_op():
    x = jnp.linspace(-2, 2, 9)
    np.testing.assert_array_equal(nn.ReLU(inplace=True).apply({}, x), jnp.maximum(x, 0))
    np.testing.assert_array_equal(F.relu(x, inplace=True), jnp.maximum(x, 0))
    d = nn.Dropout(0.5, inplace=True)
    np.testing.assert_array_equal(d.apply({}, x, train=False), x)


def test_unbatched_inputs_and_index_dtype():
    conv = nn.Conv2d(3, 2, 3)
    v = conv.init(jax.random.key(0), jnp.ones((3, 5, 5)))
    batched = conv.apply(v, jnp.ones((1, 3, 5, 5)))
    np.testing.assert_allclose(conv.apply(v, jnp.ones((3, 5, 5))), batched[0], rtol=1e-6)
    _, idx = F.max_pool2d(jnp.ones((1, 1, 4, 4)), 2, return_indices=True)
    assert idx.dtype == jnp.int64  # x64 is on in the test session
    assert ops.max(jnp.ones((3, 2)), dim=0).indices.dtype == jnp.int64


def test_bfloat16_compute_with_float32_params():
    model = nn.Sequential(nn.Conv2d(3, 4, 3, dtype=jnp.bfloat16), nn.BatchNorm2d(4, dtype=jnp.bfloat16),
                          nn.ReLU(), nn.Flatten(), nn.Linear(4 * 9, 2, dtype=jnp.bfloat16))
    x = jnp.ones((2, 3, 5, 5), jnp.float32)
    v = model.init(jax.random.key(0), x, train=False)
    assert all(a.dtype == jnp.float32 for a in jax.tree_util.tree_leaves(v["params"]))
    y, upd = jax.jit(lambda v, x: model.apply(v, x, train=True, mutable=["batch_stats"]))(v, x)
    assert y.dtype == jnp.bfloat16
    assert upd["batch_stats"]["1"]["running_mean"].dtype == jnp.float32
