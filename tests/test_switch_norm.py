"""SwitchNorm1d/2d/3d and F.switch_norm against the authors' reference implementation.

The oracle is the reference code (github.com/switchablenorms/Switchable-Normalization,
devkit/ops/switchable_norm.py) pasted below, adapted only to run on torch 2.x in float64
(``torch.autograd.Variable(buf)`` -> ``buf``) and, for ``variance="biased"``, with ``.var()``
switched to biased; the batch-or-running statistics branch, the same lines in its three classes,
is written once (``_ref_bn_moments``).  Checked: outputs, input and parameter gradients, and buffers over several
training steps then evaluation; loading the reference's ``state_dict`` as is.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
import torch.nn as tnn
from oracle import close

from jaxlayers import functional as F
from jaxlayers import interop, nn


# ----------------------------------------------------------------------------- the reference (adapted)


def _ref_bn_moments(ref, batch_moments):
    """The reference's BN statistics: in training ``batch_moments()``, which also update the buffers
    (moving average, or sums with ``using_moving_average=False``); in evaluation the buffers."""
    if ref.training:
        mean_bn, var_bn = batch_moments()
        if ref.using_moving_average:
            ref.running_mean.mul_(ref.momentum)
            ref.running_mean.add_((1 - ref.momentum) * mean_bn.data)
            ref.running_var.mul_(ref.momentum)
            ref.running_var.add_((1 - ref.momentum) * var_bn.data)
        else:
            ref.running_mean.add_(mean_bn.data)
            ref.running_var.add_(mean_bn.data ** 2 + var_bn.data)
    else:
        mean_bn = ref.running_mean
        var_bn = ref.running_var
    return mean_bn, var_bn


class RefSwitchNorm1d(tnn.Module):
    def __init__(self, num_features, eps=1e-5, momentum=0.997, using_moving_average=True, unbiased=True):
        super().__init__()
        self.eps = eps
        self.momentum = momentum
        self.using_moving_average = using_moving_average
        self.unbiased = unbiased
        self.weight = tnn.Parameter(torch.ones(1, num_features))
        self.bias = tnn.Parameter(torch.zeros(1, num_features))
        self.mean_weight = tnn.Parameter(torch.ones(2))
        self.var_weight = tnn.Parameter(torch.ones(2))
        self.register_buffer('running_mean', torch.zeros(1, num_features))
        self.register_buffer('running_var', torch.zeros(1, num_features))

    def forward(self, x):
        mean_ln = x.mean(1, keepdim=True)
        var_ln = x.var(1, keepdim=True, unbiased=self.unbiased)
        mean_bn, var_bn = _ref_bn_moments(
            self, lambda: (x.mean(0, keepdim=True), x.var(0, keepdim=True, unbiased=self.unbiased)))
        softmax = tnn.Softmax(0)
        mean_weight = softmax(self.mean_weight)
        var_weight = softmax(self.var_weight)
        mean = mean_weight[0] * mean_ln + mean_weight[1] * mean_bn
        var = var_weight[0] * var_ln + var_weight[1] * var_bn
        x = (x - mean) / (var + self.eps).sqrt()
        return x * self.weight + self.bias


class RefSwitchNormNd(tnn.Module):
    """The reference's SwitchNorm2d and SwitchNorm3d (identical bodies up to the rank)."""

    def __init__(self, num_features, d, eps=1e-5, momentum=0.9, using_moving_average=True, using_bn=True,
                 last_gamma=False, unbiased=True):
        super().__init__()
        self.eps = eps
        self.momentum = momentum
        self.using_moving_average = using_moving_average
        self.using_bn = using_bn
        self.last_gamma = last_gamma
        self.unbiased = unbiased
        self.weight = tnn.Parameter(torch.ones(1, num_features, *[1] * d))
        self.bias = tnn.Parameter(torch.zeros(1, num_features, *[1] * d))
        if self.using_bn:
            self.mean_weight = tnn.Parameter(torch.ones(3))
            self.var_weight = tnn.Parameter(torch.ones(3))
        else:
            self.mean_weight = tnn.Parameter(torch.ones(2))
            self.var_weight = tnn.Parameter(torch.ones(2))
        if self.using_bn:
            self.register_buffer('running_mean', torch.zeros(1, num_features, 1))
            self.register_buffer('running_var', torch.zeros(1, num_features, 1))
        if self.last_gamma:
            self.weight.data.fill_(0)

    def forward(self, x):
        shape = x.size()
        N, C = shape[:2]
        x = x.view(N, C, -1)
        mean_in = x.mean(-1, keepdim=True)
        var_in = x.var(-1, keepdim=True, unbiased=self.unbiased)

        mean_ln = mean_in.mean(1, keepdim=True)
        temp = var_in + mean_in ** 2
        var_ln = temp.mean(1, keepdim=True) - mean_ln ** 2

        if self.using_bn:
            def batch_moments():
                mean_bn = mean_in.mean(0, keepdim=True)
                return mean_bn, temp.mean(0, keepdim=True) - mean_bn ** 2

            mean_bn, var_bn = _ref_bn_moments(self, batch_moments)

        softmax = tnn.Softmax(0)
        mean_weight = softmax(self.mean_weight)
        var_weight = softmax(self.var_weight)

        if self.using_bn:
            mean = mean_weight[0] * mean_in + mean_weight[1] * mean_ln + mean_weight[2] * mean_bn
            var = var_weight[0] * var_in + var_weight[1] * var_ln + var_weight[2] * var_bn
        else:
            mean = mean_weight[0] * mean_in + mean_weight[1] * mean_ln
            var = var_weight[0] * var_in + var_weight[1] * var_ln

        x = (x - mean) / (var + self.eps).sqrt()
        x = x.view(shape)
        return x * self.weight + self.bias


# ----------------------------------------------------------------------------- parity

CASES = [  # (d, shape, kwargs)
    (0, (6, 4), dict()),
    (0, (5, 3), dict(using_moving_average=False, momentum=0.8)),
    (2, (3, 3, 4, 2), dict()),
    (2, (3, 3, 2, 3), dict(using_bn=False, last_gamma=True)),
    (2, (2, 3, 3, 3), dict(using_moving_average=False)),
    (3, (2, 2, 2, 3, 2), dict(momentum=0.5)),
]


def _ref(d, c, kw, unbiased):
    if d == 0:
        return RefSwitchNorm1d(c, **kw, unbiased=unbiased)
    return RefSwitchNormNd(c, d, **kw, unbiased=unbiased)


PARITY = [(*case, "unbiased") for case in CASES] + [(*CASES[0], "biased"), (*CASES[3], "biased")]


@pytest.mark.parametrize("d,shape,kw,variance", PARITY)
def test_vs_reference_implementation(d, shape, kw, variance, rng):
    c = shape[1]
    ref = _ref(d, c, kw, variance == "unbiased")
    if "momentum" not in kw and d == 2:
        ref.momentum = 0.9  # the reference's 2-d default (0.997 in 1-d and 3-d)
    with torch.no_grad():
        for p in ref.parameters():
            if not kw.get("last_gamma") or p is not ref.weight:
                p.copy_(torch.from_numpy(rng.standard_normal(p.shape)))
    ours = {0: nn.SwitchNorm1d, 2: nn.SwitchNorm2d, 3: nn.SwitchNorm3d}[d](c, **kw, variance=variance,
                                                                            param_dtype=jnp.float64)
    xs = [rng.standard_normal(shape) * 2 + 1 for _ in range(3)]
    shapes = jax.eval_shape(lambda x: ours.init(jax.random.key(0), x, train=False), xs[0])
    assert sorted(interop.variables_to_state_dict_shapes(shapes)) == sorted(ref.state_dict())
    template = jax.tree_util.tree_map(lambda a: np.zeros(a.shape, a.dtype), shapes)
    variables = interop.load_state_dict(template, ref.state_dict())  # the reference checkpoint, as is

    @jax.jit
    def step(variables, x, cot):
        def f(params, x):
            y, upd = ours.apply({**variables, "params": params}, x, train=True, mutable=["batch_stats"])
            return jnp.sum(y * cot), (y, upd)
        (_, (y, upd)), grads = jax.value_and_grad(f, argnums=(0, 1), has_aux=True)(variables["params"], x)
        return y, upd, grads

    evaluate = jax.jit(lambda v, x: ours.apply(v, x, train=False))
    for i, x in enumerate(xs):
        ref.train(i < 2)
        xt = torch.from_numpy(x).requires_grad_()
        yt = ref(xt)
        cot = rng.standard_normal(shape)
        yt.backward(torch.from_numpy(cot))
        if i < 2:
            y, upd, (gp, gx) = step(variables, x, cot)
            variables = {**variables, **upd}
            close(gx, xt.grad)
            for k, p in ref.named_parameters():
                close(gp[k], p.grad, err_msg=k)
                p.grad = None
        else:
            y = evaluate(variables, x)
        close(y, yt, rtol=1e-9, atol=1e-10)
        sd = interop.variables_to_state_dict(variables)
        for k, b in ref.named_buffers():
            close(sd[k], b, err_msg=k)


def test_default_variables_match_reference_shapes():
    v = jax.jit(lambda x: nn.SwitchNorm2d(3).init(jax.random.key(0), x, train=False))(jnp.zeros((2, 3, 2, 2)))
    ref = RefSwitchNormNd(3, 2)
    assert {k: tuple(a.shape) for k, a in interop.variables_to_state_dict(v).items()} == \
        {k: tuple(t.shape) for k, t in ref.state_dict().items()}
    assert nn.SwitchNorm2d(3).momentum == 0.9 and nn.SwitchNorm1d(3).momentum == 0.997
    assert nn.SwitchNorm3d(3).momentum == 0.997
    np.testing.assert_array_equal(v["params"]["mean_weight"], np.ones(3))
    v1 = jax.eval_shape(lambda x: nn.SwitchNorm1d(4).init(jax.random.key(0), x, train=False), jnp.zeros((2, 4)))
    assert v1["params"]["mean_weight"].shape == (2,) and v1["batch_stats"]["running_var"].shape == (1, 4)


def test_biased_one_hot_is_in_ln_bn(rng):
    """variance="biased": one-hot logits give exactly InstanceNorm, LayerNorm, BatchNorm (training)."""
    x = rng.normal(size=(3, 4, 5, 2)) * 2 + 1
    w, b = rng.normal(size=4), rng.normal(size=4)

    @jax.jit
    def both(x):
        got = [F.switch_norm(x, None, None, w, b, logits, logits, training=True, variance=v).output
               for logits in jnp.where(jnp.eye(3, dtype=bool), 1e3, -1e3) for v in ("biased", "unbiased")]
        want = [F.instance_norm(x, weight=w, bias=b).output,
                F.layer_norm(x, (4, 5, 2)) * w[:, None, None] + b[:, None, None],
                F.batch_norm(x, None, None, w, b, training=True).output]
        return got, want

    got, want = both(x)
    for which in range(3):
        close(got[2 * which], want[which], err_msg=str(which))
    assert not np.allclose(got[1], want[0])  # the reference's unbiased instance variance is not InstanceNorm's


def test_axis_name_bn_statistics_2d_input(rng):
    """(N, C) input: the BN moments over the devices of axis_name equal those of the whole batch."""
    x = rng.normal(size=(8, 3))
    rm, rv = jnp.zeros((1, 3)), jnp.zeros((1, 3))
    full = jax.jit(lambda x: F.switch_norm(x, rm, rv, training=True))(x)
    f = jax.jit(jax.vmap(lambda x: F.switch_norm(x, rm, rv, training=True, axis_name="d"), axis_name="d"))
    split = f(x.reshape(2, 4, 3))
    close(split.output.reshape(8, 3), full.output)
    close(split.running_var[0], full.running_var)


def test_errors():
    x = jnp.ones((2, 3, 4, 4))
    with pytest.raises(ValueError, match=r"SwitchNorm1d: expected 2-D \(N, C\) input, got 3-D input of shape \(2, 3, 4\)"):
        nn.SwitchNorm1d(3).init(jax.random.key(0), jnp.ones((2, 3, 4)), train=True)
    with pytest.raises(ValueError, match=r"SwitchNorm3d: expected 5-D \(N, C, \*spatial\) input"):
        nn.SwitchNorm3d(3).init(jax.random.key(0), x, train=True)
    with pytest.raises(ValueError, match=r"SwitchNorm2d: variance must be one of \('unbiased', 'biased'\), got 'x'"):
        nn.SwitchNorm2d(3, variance="x")
    with pytest.raises(ValueError, match=r"switch_norm: mean_weight must have shape \(2,\), got shape \(3,\)"):
        F.switch_norm(x, None, None, mean_weight=jnp.ones(3), using_bn=False)
    with pytest.raises(ValueError, match=r"switch_norm: running_mean must hold 3 values"):
        F.switch_norm(x, jnp.zeros((1, 2, 1)), jnp.zeros(3))
    with pytest.raises(ValueError, match=r"switch_norm: expected more than 1 spatial element"):
        F.switch_norm(jnp.ones((2, 3, 1, 1)), None, None)
    with pytest.raises(ValueError, match=r"switch_norm: expected more than 1 value per channel when training"):
        F.switch_norm(jnp.ones((1, 3)), None, None, training=True)
    with pytest.raises(ValueError, match=r"switch_norm: expected more than 1 channel for the unbiased layer variance"):
        F.switch_norm(jnp.ones((4, 1)), None, None)
    with pytest.raises(ValueError, match=r"switch_norm: expected \(N, C\) or \(N, C, \*spatial\) input, got 1-D"):
        F.switch_norm(jnp.ones(3), None, None)
