"""Data parallelism under a mesh of ``Explicit`` axes (``jax.make_mesh``'s default in JAX 0.10, with
``jax.set_mesh``): JAX asks reshapes, gathers, scatters and loop carries for their outputs' sharding, and
had refused these functions with a ShardingTypeError.  Each now gives the unsharded values and
gradients with the batch sharded over 4 host devices (lowerings step aside there: ``_lowering.enabled``);
the convolutions, channel rearrangements and CTC also with channels sharded (tensor parallelism)."""

from __future__ import annotations

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

from jaxlayers import functional as F

R = np.random.default_rng(0)
X = jnp.asarray(R.normal(size=(8, 4, 6, 6)))
T = jnp.asarray(R.integers(0, 4, size=(8,)))
LSTM_W = {k: jnp.asarray(R.normal(size=s)) for k, s in
          {"weight_ih_l0": (12, 6), "weight_hh_l0": (12, 3), "bias_ih_l0": (12,), "bias_hh_l0": (12,)}.items()}

CASES = {  # name: (function of the sharded arrays, the arrays; the first is differentiated)
    "max_pool2d": (lambda x: F.max_pool2d(x, 3, 2, 1), (X,)),
    "avg_pool2d": (lambda x: F.avg_pool2d(x, 2), (X,)),
    "max_unpool2d": (lambda x: F.max_unpool2d(*F.max_pool2d(x, 2, return_indices=True), 2), (X,)),
    "pixel_shuffle": (lambda x: F.pixel_shuffle(x, 2), (X,)),
    "pixel_unshuffle": (lambda x: F.pixel_unshuffle(x, 2), (X,)),
    "unfold_fold": (lambda x: F.fold(F.unfold(x, 2), (6, 6), 2), (X,)),
    "group_norm": (lambda x: F.group_norm(x, 2), (X,)),
    "cross_entropy_weight": (lambda x, t: F.cross_entropy(x, t, weight=jnp.arange(1.0, 5.0)), (X[:, :, 0, 0], T)),
    "embedding": (lambda t: F.embedding(t, X[0, :, 0]), (T,)),
    "embedding_bag_max": (lambda t: F.embedding_bag(t, X[0, :, 0], mode="max", padding_idx=1), (T.reshape(4, 2),)),
    "embedding_bag_weighted": (lambda p, t: F.embedding_bag(t, X[0, :, 0], per_sample_weights=p, mode="sum"),
                               (X[:, 0, 0, :2], T.reshape(4, 2).repeat(2, axis=0))),
    "embedding_bag_offsets": (lambda p, t: F.embedding_bag(t, X[0, :, 0], jnp.array([0, 3, 3, 5]),
                                                           per_sample_weights=p, mode="sum"),  # gathered
                              (X[:, 0, 0, 0], T)),
    # a table sharded by rows (vocabulary parallel), indices unsharded
    "embedding_table": (lambda w: F.embedding(jnp.array([[0, 5], [7, 3]]), w), (X[:, :, 0, 0],)),
    "embedding_renorm_table": (lambda w: F.embedding_renorm(w, jnp.array([0, 2, 7]), 0.5), (X[:, :, 0, 0],)),
    "embedding_bag_table": (lambda w: F.embedding_bag(jnp.array([[0, 5], [7, 7]]), w, mode="max"), (X[:, :, 0, 0],)),
    "pdist": (lambda x: F.pdist(x), (X[:, :, 0, 0],)),  # pairs across the batch: gathered on every device
    "pdist_p3": (lambda x: F.pdist(x, 3.0), (X[:, :, 0, 0],)),
    "lstm": (lambda x: F.rnn(x, None, LSTM_W, mode="LSTM", batch_first=True)[0], (X[:, :, 0],)),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_batch_sharded_over_an_explicit_mesh(name):
    fn, args = CASES[name]
    differentiable = args[0].dtype.kind == "f"

    def run(*a):
        out = fn(*a)
        if not differentiable:
            return out
        return out, jax.grad(lambda first: jnp.sum(jnp.sin(fn(first, *a[1:]))))(a[0])

    mesh = jax.make_mesh((4,), ("batch",), axis_types=(jax.sharding.AxisType.Explicit,))
    _sharded_equals_unsharded(run, args, mesh, [P("batch")] * len(args))


def _sharded_equals_unsharded(run, args, mesh, specs):
    """``jax.jit(run)`` on ``args`` placed by ``specs`` under ``mesh`` equals it on the unsharded ``args``; the
    sharded result."""
    step = jax.jit(run)
    want = step(*args)
    with jax.set_mesh(mesh):
        got = step(*(jax.device_put(a, NamedSharding(mesh, s)) for a, s in zip(args, specs)))
    chex.assert_trees_all_close(got, want, rtol=1e-10, atol=1e-12)
    return got


def test_a_table_sharded_by_columns_keeps_its_sharding():
    """Only a table's rows are gathered whole; its embedding dim stays sharded (model parallel)."""
    mesh = jax.make_mesh((4,), ("model",), axis_types=(jax.sharding.AxisType.Explicit,))
    w = X[0, :, :, :2].reshape(4, 12).T  # (12, 4)
    lookup = jax.jit(lambda w: F.embedding(jnp.array([[0, 5], [7, 3]]), w))
    with jax.set_mesh(mesh):
        out = lookup(jax.device_put(w, NamedSharding(mesh, P(None, "model"))))
        assert jax.typeof(out).sharding.spec == P(None, None, "model")
    chex.assert_trees_all_close(out, lookup(w))



# Tensor parallelism over a ("batch", "model") mesh: (function, arrays, each array's PartitionSpec, the
# output's expected spec or None where it is not asserted).  JAX's convolution asks for its output's sharding,
# and reshapes that split or merge a sharded channel dim refuse to guess it: these had raised a ShardingTypeError.
TP_X = jnp.asarray(R.normal(size=(4, 8, 5, 5)))
TP_W = jnp.asarray(R.normal(size=(6, 8, 3, 3)))
TP_IN, TP_OUT, TP_IH, TP_HH = (jnp.asarray(R.normal(size=s)) for s in [(24, 8), (8, 8), (24, 3), (24, 6)])
TP_CASES = {
    "conv2d_out_channels": (lambda x, w: F.conv2d(x, w, padding=1), (TP_X, TP_W),
                            (P("batch"), P("model")), P("batch", "model")),
    "conv2d_in_channels": (lambda x, w: F.conv2d(x, w, stride=2), (TP_X, TP_W),
                           (P("batch", "model"), P(None, "model")), P("batch")),
    "conv2d_depthwise": (lambda x, w: F.conv2d(x, w, padding=1, groups=8), (TP_X, TP_W[0, :, None]),
                         (P(None, "model"), P("model")), P(None, "model")),
    "conv_transpose2d": (lambda x, w: F.conv_transpose2d(x, w, stride=2, padding=1), (TP_X, TP_W.transpose(1, 0, 2, 3)),
                         (P("batch", "model"), P("model")), P("batch")),
    "conv1d_bias": (lambda x, w, b: F.conv1d(x, w, b), (TP_X[:, :, 0], TP_W[..., 0, :2], TP_W[:, 0, 0, 0]),
                    (P("batch"), P("model"), P("model")), P("batch", "model")),
    "conv_tbc": (lambda x, w, b: F.conv_tbc(x, w, b, pad=1),
                 (TP_X[:, :, 0].transpose(2, 0, 1), TP_W[..., 0, :].transpose(2, 1, 0), TP_W[:, 0, 0, 0]),
                 (P(None, "batch"), P(None, None, "model"), P("model")), P(None, "batch", "model")),
    "linear": (lambda x, w: F.linear(x, w), (TP_X[:, :, 0, 0], TP_W[..., 0, 0]), (P("batch"), P("model")),
               P("batch", "model")),
    "linear_row_parallel": (lambda x, w: F.linear(x, w), (TP_X[:, :, 0, 0], TP_W[..., 0, 0]),
                            (P("batch", "model"), P(None, "model")), P("batch")),
    "mha_column_then_row_parallel": (  # Megatron's split: in_proj by rows (heads), out_proj by columns
        lambda q, w_in, w_out: F.multi_head_attention_forward(q, q, q, 8, 2, w_in, None, None, None, False, 0.0,
                                                              w_out, None, need_weights=False)[0],
        (TP_X[:, :, :3, 0].transpose(2, 0, 1), TP_IN, TP_OUT),
        (P(None, "batch"), P("model"), P(None, "model")), P(None, "batch")),
    "lstm_hidden_sharded": (
        lambda x, w_ih, w_hh: F.rnn(x, None, {"weight_ih_l0": w_ih, "weight_hh_l0": w_hh}, mode="LSTM", bias=False,
                                    batch_first=True)[0],
        (TP_X[:, :5, :3, 0], TP_IH, TP_HH),
        (P("batch"), P("model"), P("model")), P("batch", None, "model")),
    "cross_entropy_vocab_parallel": (lambda x: F.cross_entropy(x, jnp.array([0, 5, 7, 2]), label_smoothing=0.1),
                                     (TP_X[:, :, 0, 0],), (P("batch", "model"),), P()),
    "multilabel_margin_vocab_parallel": (
        lambda x: F.multilabel_margin_loss(x, jnp.array([[0, 5, -1, 0] * 2, [7, -1, 1, 1] * 2] * 2), reduction="none"),
        (TP_X[:, :, 0, 0],), (P("batch", "model"),), P("batch")),
    "batch_norm_training": (lambda x, w: F.batch_norm(x, None, None, w, training=True).output,
                            (TP_X, TP_W[0, :, 0, 0]), (P("batch", "model"), P("model")), P("batch", "model")),
    "group_norm": (lambda x: F.group_norm(x, 2), (TP_X,), (P("batch", "model"),), P("batch", "model")),
    "max_pool2d": (lambda x: F.max_pool2d(x, 2, 2, 1), (TP_X,), (P("batch", "model"),), P("batch", "model")),
    "pixel_shuffle": (lambda x: F.pixel_shuffle(x, 2), (TP_X,), (P("batch", "model"),), P("batch", "model")),
    "pixel_unshuffle": (lambda x: F.pixel_unshuffle(x[:, :, :4, :4], 2), (TP_X,), (P("batch", "model"),),
                        P("batch", "model")),
    "channel_shuffle": (lambda x: F.channel_shuffle(x, 2), (TP_X,), (P("batch", "model"),), None),
    "fold": (lambda x: F.fold(x, (3, 3), 2), (TP_X[:, :, :4, 0],), (P("batch", "model"),), None),
    "ctc_loss_replicated_targets": (
        lambda x: F.ctc_loss(jax.nn.log_softmax(x), jnp.array([[1, 2], [2, 2], [1, 1], [3, 1]]),
                             jnp.array([5, 3, 4, 5]), jnp.array([2, 1, 2, 2]), reduction="none"),
        (TP_X[0, :5, :4, :4],), (P(None, "batch"),), P("batch")),
}


@pytest.mark.parametrize("name", sorted(TP_CASES))
def test_tensor_parallel_over_an_explicit_mesh(name):
    fn, args, specs, out_spec = TP_CASES[name]

    def run(*a):
        return fn(*a), jax.grad(lambda *b: jnp.sum(jnp.sin(fn(*b))), argnums=tuple(range(len(a))))(*a)

    mesh = jax.make_mesh((2, 2), ("batch", "model"), axis_types=(jax.sharding.AxisType.Explicit,) * 2)
    got = _sharded_equals_unsharded(run, args, mesh, specs)
    if out_spec is not None:  # the output stays sharded (no device holds the whole of it)
        spec = tuple(jax.typeof(got[0]).sharding.spec)
        assert spec + (None,) * (got[0].ndim - len(spec)) == tuple(out_spec) + (None,) * (got[0].ndim - len(out_spec))


def test_nnx_megatron_mlp_trains_as_unsharded():
    """An NNX model with its first Linear split by rows (column parallel) and its second by columns (row
    parallel), the batch sharded too: two SGD steps give the unsharded losses, the parameters keep their
    shardings."""
    import optax
    from flax import nnx as fnnx

    from jaxlayers import nnx

    def build():
        return nnx.Sequential(nnx.Linear(8, 16, rngs=fnnx.Rngs(0)), nnx.ReLU(), nnx.Linear(16, 4, rngs=fnnx.Rngs(1)))

    @fnnx.jit
    def step(model, opt, x, y):
        loss, grads = fnnx.value_and_grad(lambda m: optax.softmax_cross_entropy_with_integer_labels(m(x), y).mean())(model)
        opt.update(model, grads)
        return loss

    x, y = X[:, :2, 0, :4].reshape(8, 8), T
    model = build()
    opt = fnnx.Optimizer(model, optax.sgd(0.1), wrt=fnnx.Param)
    want = [step(model, opt, x, y) for _ in range(2)]
    specs = {"0.weight": P("model"), "0.bias": P("model"), "2.weight": P(None, "model"), "2.bias": P()}
    mesh = jax.make_mesh((2, 2), ("batch", "model"), axis_types=(jax.sharding.AxisType.Explicit,) * 2)
    with jax.set_mesh(mesh):
        model = build()
        for name, p in model.named_parameters():
            p.value = jax.device_put(p.value, NamedSharding(mesh, specs[name]))
        opt = fnnx.Optimizer(model, optax.sgd(0.1), wrt=fnnx.Param)
        x, y = (jax.device_put(a, NamedSharding(mesh, P("batch"))) for a in (x, y))
        got = [step(model, opt, x, y) for _ in range(2)]
        assert {k: tuple(jax.typeof(p.value).sharding.spec)[:1] for k, p in model.named_parameters()} == {
            "0.weight": ("model",), "0.bias": ("model",), "2.weight": (None,), "2.bias": (None,)}
        assert tuple(jax.typeof(model[2].weight.value).sharding.spec) == (None, "model")
    chex.assert_trees_all_close(got, want, rtol=1e-6)


def test_load_state_dict_keeps_a_sharded_models_placement():
    """Loading torch weights into a model placed on a mesh keeps each parameter's sharding, as torch's in-place
    copy keeps its device (the loaded arrays had come back as NumPy, replicated by the next step)."""
    from flax import nnx as fnnx

    from jaxlayers import interop, nn, nnx

    sd = {"weight": np.arange(48.0).reshape(6, 8), "bias": np.arange(6.0)}
    mesh = jax.make_mesh((2,), ("model",), axis_types=(jax.sharding.AxisType.Explicit,))
    with jax.set_mesh(mesh):
        layer = nnx.Linear(8, 6, rngs=fnnx.Rngs(0))
        layer.weight.value = jax.device_put(layer.weight.value, NamedSharding(mesh, P("model")))
        layer.load_state_dict(sd)
        assert tuple(jax.typeof(layer.weight.value).sharding.spec) == ("model", None)
        variables = jax.device_put(nn.Linear(8, 6).init(jax.random.key(0), jnp.ones((1, 8))),
                                   NamedSharding(mesh, P("model")))
        loaded = interop.load_state_dict(variables, sd)
        assert tuple(jax.typeof(loaded["params"]["bias"]).sharding.spec) == ("model",)
        with pytest.raises(ValueError, match="'bias' is missing from the state_dict"):  # abstract: nothing to keep
            interop.load_state_dict(jax.eval_shape(lambda: variables), {"weight": sd["weight"]}, strict=False)
    np.testing.assert_array_equal(np.asarray(layer.weight.value), sd["weight"])
    np.testing.assert_array_equal(np.asarray(loaded["params"]["weight"]), sd["weight"])
